"""Loaded by the operator process of tests/test_crash_consistency.py (this directory is put first on
its PYTHONPATH): counts the operator's writes, to OpenStack (keystoneauth's Session) and to Kubernetes
(the kubernetes client's ApiClient, which octavia_operator.backends.kube uses), and SIGKILLs the
process right after the N-th one has been answered, before the operator sees the answer.

OCTAVIA_TEST_WRITE_LOG   a file: one line per write, "<n> <openstack|kube> <METHOD> <path>"
OCTAVIA_TEST_KILL_AFTER  N (0 or unset: count only)
Events are not counted (posting one is not a state change worth a kill point), nor token requests.
"""
import os
import signal
import threading

_LOG = os.environ.get("OCTAVIA_TEST_WRITE_LOG")
_KILL = int(os.environ.get("OCTAVIA_TEST_KILL_AFTER") or 0)
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}

if _LOG:
    _lock = threading.Lock()
    _count = [0]

    def _hit(kind, method, url):
        with _lock:
            _count[0] += 1
            n = _count[0]
            with open(_LOG, "a") as f:
                f.write(f"{n} {kind} {method} {url.split('?')[0]}\n")
        if n == _KILL:
            os.kill(os.getpid(), signal.SIGKILL)

    from keystoneauth1 import session as _ks

    _request = _ks.Session.request

    def request(self, url, method, *args, **kwargs):
        resp = _request(self, url, method, *args, **kwargs)
        if method.upper() in _WRITES and "/auth/tokens" not in url and resp is not None and resp.status_code < 400:
            _hit("openstack", method.upper(), url)
        return resp

    _ks.Session.request = request

    from kubernetes.client import api_client as _kac

    _call_api = _kac.ApiClient.call_api

    def call_api(self, method, url, *args, **kwargs):
        resp = _call_api(self, method, url, *args, **kwargs)
        if method.upper() in _WRITES and "/events" not in url and 200 <= getattr(resp, "status", 0) < 300:
            _hit("kube", method.upper(), url)
        return resp

    _kac.ApiClient.call_api = call_api
