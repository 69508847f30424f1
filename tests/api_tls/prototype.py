#!/usr/bin/env python3
"""Prototype of spec.api.tls (in-pod TLS for the Octavia API) with real processes. Not a pytest module.

What it proves (docs/api-exposure-notes.md has the measured results):

* the installed pyuwsgi wheel has no SSL (``--https-socket`` is an unknown option);
* the real Octavia API (octavia.wsgi.api under the venv's uWSGI, the operator's own flags, auth_strategy
  noauth, a database URL that points at a closed port) listens on 127.0.0.1 only, and an haproxy sidecar
  (Debian bookworm's package) terminates TLS on the API port with a certificate from a "Secret"
  (tls.crt + tls.key files, a chain signed by a test CA);
* ``https://127.0.0.1:PORT/healthcheck`` answers 200 and verifies against the test CA (and fails against
  another CA), plain http to the TLS port is refused;
* haproxy sets ``X-Forwarded-Proto: https`` and Octavia ([oslo_middleware] enable_proxy_headers_parsing)
  then writes https:// links (``GET /``); directly on the backend, without the header, they are http://;
* both processes run as uid/gid 42437 in a mount namespace whose root filesystem is read-only (only /dev,
  /dev/shm, /proc, /sys stay as they are, as in a container with readOnlyRootFilesystem: true); with
  ``--tmpfs /tmp`` a writable /tmp (an emptyDir) is added, to compare.

Run as root (unshare, mount, setpriv) on a Debian 12 host:

    .venv/bin/python tests/api_tls/prototype.py [--venv /opt/octavia-venv] [--keep DIR] [--no-readonly]

haproxy: ``$HAPROXY``, or ``haproxy`` on PATH, else the script unpacks Debian's haproxy package (and the two
libraries it needs that a minimal Debian lacks) into its work directory with ``apt-get download`` and
``dpkg-deb -x``: nothing is installed on the host. Every process it starts is stopped by PID at the end.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

UID = GID = 42437
SERVICE_NAME = "octavia-api.openstack.svc"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------------
# PKI: a root CA, an intermediate CA, a server certificate (the chain cert-manager would put in tls.crt)
# ---------------------------------------------------------------------------------------------------

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer: str, issuer_key, *, ca: bool, sans: list[x509.GeneralName] | None = None):
    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    else:
        b = (b.add_extension(x509.SubjectAlternativeName(sans or []), critical=False)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    return b.sign(issuer_key, hashes.SHA256())


def make_pki(d: Path) -> dict[str, Path]:
    import ipaddress
    pem = serialization.Encoding.PEM
    root_key, inter_key, srv_key, other_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    root = _cert("test root CA", root_key, "test root CA", root_key, ca=True)
    inter = _cert("test intermediate CA", inter_key, "test root CA", root_key, ca=True)
    srv = _cert(SERVICE_NAME, srv_key, "test intermediate CA", inter_key, ca=False,
                sans=[x509.DNSName(SERVICE_NAME), x509.DNSName("localhost"),
                      x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    other = _cert("another CA", other_key, "another CA", other_key, ca=True)
    secret = d / "secret"          # what a kubernetes.io/tls Secret volume holds
    secret.mkdir(parents=True)
    (secret / "tls.crt").write_bytes(srv.public_bytes(pem) + inter.public_bytes(pem))
    (secret / "tls.key").write_bytes(srv_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    (secret / "ca.crt").write_bytes(root.public_bytes(pem))
    (d / "other-ca.crt").write_bytes(other.public_bytes(pem))
    for p in secret.iterdir():
        p.chmod(0o644)
    # the Secret volume's items: tls.crt -> tls.pem, tls.key -> tls.pem.key (haproxy's "crt" loads the
    # key from <crt>.key when the PEM has none: ssl-load-extra-files, default "all")
    sidecar = d / "api-tls"
    sidecar.mkdir()
    shutil.copy(secret / "tls.crt", sidecar / "tls.pem")
    shutil.copy(secret / "tls.key", sidecar / "tls.pem.key")
    return {"ca": secret / "ca.crt", "other_ca": d / "other-ca.crt", "crt": sidecar / "tls.pem"}


# ---------------------------------------------------------------------------------------------------
# Config files
# ---------------------------------------------------------------------------------------------------

OCTAVIA_CONF = """\
[DEFAULT]
debug = false
use_stderr = true

[api_settings]
bind_host = 127.0.0.1
bind_port = {backend_port}
auth_strategy = noauth
healthcheck_enabled = true

[oslo_middleware]
# X-Forwarded-Proto (set by the TLS sidecar) -> wsgi.url_scheme = https -> https:// links
enable_proxy_headers_parsing = true

[database]
# nothing listens there: /healthcheck and GET / must not need the database
connection = mysql+pymysql://octavia:x@127.0.0.1:1/octavia
max_retries = 0
"""

HAPROXY_CFG = """\
# TLS sidecar of the Octavia API: terminates TLS on the API port, forwards plain HTTP to uWSGI on loopback.
# No user/group/chroot/pidfile/stats socket: it runs as the pod's uid and writes nothing to disk.
global
    log stdout format raw local0 info
    maxconn 2048
    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
    ssl-default-bind-ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305

defaults
    mode http
    log global
    option httplog
    option forwardfor
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout http-request 30s

frontend octavia-api
    bind {bind} ssl crt {crt} alpn http/1.1
    http-request set-header X-Forwarded-Proto https
    default_backend octavia-api

backend octavia-api
    server api 127.0.0.1:{backend_port}
"""


def uwsgi_command(venv: Path, backend_port: int, conf: Path, secrets_conf: Path, processes: int) -> list[str]:
    # operator/octavia_operator/builders/kube.py api_command, with --http-socket on loopback only
    return [str(venv / "bin" / "uwsgi"), "--http-socket", f"127.0.0.1:{backend_port}",
            "--module", "octavia.wsgi.api:application",
            "--pyargv", f"--config-file {conf} --config-file {secrets_conf}",
            "--master", "--processes", str(processes), "--threads", "4", "--die-on-term", "--lazy-apps",
            "--add-header", "Connection: close", "--buffer-size", "65535", "--thunder-lock",
            "--enable-threads", "--http-auto-chunked", "--http-raw-body"]


# ---------------------------------------------------------------------------------------------------
# haproxy from Debian's package, unpacked (not installed)
# ---------------------------------------------------------------------------------------------------

def find_haproxy(work: Path) -> tuple[str, dict[str, str]]:
    exe = os.environ.get("HAPROXY") or shutil.which("haproxy")
    if exe:
        return exe, {}
    debs = work / "debs"
    debs.mkdir()
    subprocess.run(["apt-get", "download", "haproxy", "libopentracing-c-wrapper0", "libopentracing1"],
                   cwd=debs, check=True, capture_output=True)
    root = work / "haproxy-root"
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return str(root / "usr/sbin/haproxy"), {"LD_LIBRARY_PATH": str(root / "usr/lib/x86_64-linux-gnu")}


# ---------------------------------------------------------------------------------------------------
# Processes: uid 42437, read-only root filesystem (a private mount namespace)
# ---------------------------------------------------------------------------------------------------

def confined(argv: list[str], *, readonly: bool, tmpfs: list[str]) -> list[str]:
    """argv run as 42437:42437 (no supplementary groups, no capabilities) in a private mount namespace in
    which / is remounted read-only and each of ``tmpfs`` is a fresh tmpfs (an emptyDir)."""
    setup = []
    if readonly:
        setup.append("mount -o remount,bind,ro /")
    setup += [f"mount -t tmpfs -o mode=1777,size=16m tmpfs {p}" for p in tmpfs]
    drop = ["setpriv", f"--reuid={UID}", f"--regid={GID}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs"]
    script = " && ".join(setup + ['exec "$@"']) if setup else 'exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *drop, *argv]


def start(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    fh = open(log, "ab")
    p = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         env=env, start_new_session=True)
    fh.close()
    return p


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)


# ---------------------------------------------------------------------------------------------------
# Client checks
# ---------------------------------------------------------------------------------------------------

def https_get(port: int, path: str, cafile: Path, host: str = SERVICE_NAME) -> tuple[int, str, dict]:
    ctx = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n"
                      f"Connection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            info = {"tls_version": s.version(), "cipher": s.cipher()[0],
                    "peer_chain_len": len(s.get_unverified_chain() or []) if hasattr(s, "get_unverified_chain") else None}
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2:]
        body = out
    return status, body.decode(errors="replace"), info


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Accept": "application/json",
                                                                            **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_port(port: int, procs: list[subprocess.Popen], timeout: float = 120) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"process {p.args[-1] if p.args else p.pid} exited with {p.returncode}")
        try:
            if http_get(port, "/healthcheck")[0] == 200:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"127.0.0.1:{port}/healthcheck not ready in {timeout}s")


def listeners(port: int) -> list[str]:
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout
    return sorted({line.split()[3] for line in out.splitlines() if line.strip()})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--venv", default="/opt/octavia-venv", type=Path)
    ap.add_argument("--keep", type=Path, help="write the config files and logs here (else a temp dir, removed)")
    ap.add_argument("--no-readonly", action="store_true", help="do not remount / read-only")
    ap.add_argument("--tmpfs", action="append", default=[], help="a writable tmpfs (emptyDir) at this path")
    ap.add_argument("--processes", type=int, default=1, help="uWSGI --processes (the operator uses 2)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root (unshare, mount, setpriv)", file=sys.stderr)
        return 2
    work = a.keep or Path(tempfile.mkdtemp(prefix="api-tls-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    results: dict[str, object] = {}

    # 1. pyuwsgi and SSL
    r = subprocess.run([str(a.venv / "bin" / "uwsgi"), "--https-socket", "127.0.0.1:1,/x,/y"],
                       capture_output=True, text=True, timeout=20)
    results["pyuwsgi_https_socket"] = (r.stdout + r.stderr).strip().splitlines()[:2]

    pki = make_pki(work)
    tls_port, backend_port = free_port(), free_port()
    conf_dir = work / "etc-octavia"
    (conf_dir / "secrets.d").mkdir(parents=True)
    (conf_dir / "octavia.conf").write_text(OCTAVIA_CONF.format(backend_port=backend_port))
    (conf_dir / "secrets.d" / "secrets.conf").write_text("[DEFAULT]\n")
    (work / "haproxy.cfg").write_text(HAPROXY_CFG.format(bind=f"127.0.0.1:{tls_port}", crt=pki["crt"],
                                                         backend_port=backend_port))
    haproxy, hp_env = find_haproxy(work)
    for p in work.rglob("*"):
        p.chmod(p.stat().st_mode | 0o055)   # readable by 42437 (as a Secret/ConfigMap volume would be)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONUNBUFFERED": "1", "HOME": "/var/lib/octavia"}
    check = subprocess.run([haproxy, "-c", "-f", str(work / "haproxy.cfg")], capture_output=True, text=True,
                           env={**env, **hp_env})
    results["haproxy_config_check"] = (check.returncode, check.stdout.strip()[-200:], check.stderr.strip()[-400:])
    results["haproxy_version"] = subprocess.run([haproxy, "-v"], capture_output=True, text=True,
                                                env={**env, **hp_env}).stdout.splitlines()[0]

    procs: list[subprocess.Popen] = []
    try:
        ro = not a.no_readonly
        api = start(confined(uwsgi_command(a.venv, backend_port, conf_dir / "octavia.conf",
                                           conf_dir / "secrets.d" / "secrets.conf", a.processes),
                             readonly=ro, tmpfs=a.tmpfs), work / "uwsgi.log", env)
        procs.append(api)
        sidecar = start(confined([haproxy, "-db", "-f", str(work / "haproxy.cfg")], readonly=ro, tmpfs=a.tmpfs),
                        work / "haproxy.log", {**env, **hp_env})
        procs.append(sidecar)
        results["api_ready_after_s"] = round(wait_port(backend_port, procs), 1)
        results["readonly_root"] = ro
        results["tmpfs"] = a.tmpfs
        ps = subprocess.run(["ps", "-eo", "uid,gid,comm"], capture_output=True, text=True).stdout
        results["processes_as_42437"] = sorted({line.split()[2] for line in ps.splitlines()[1:]
                                                if line.split()[0] == str(UID)})
        results["listen_backend"] = listeners(backend_port)
        results["listen_tls"] = listeners(tls_port)

        # 2. https with the test CA
        status, body, info = https_get(tls_port, "/healthcheck", pki["ca"])
        results["https_healthcheck"] = {"status": status, "body": body.strip()[:80], **info}
        status, body, _ = https_get(tls_port, "/", pki["ca"])
        links = [lk["href"] for v in json.loads(body)["versions"][:1] for lk in v["links"]]
        results["https_root_links"] = {"status": status, "links": links}
        # 3. another CA must not verify
        try:
            https_get(tls_port, "/healthcheck", pki["other_ca"])
            results["wrong_ca"] = "VERIFIED (unexpected)"
        except ssl.SSLCertVerificationError as e:
            results["wrong_ca"] = f"refused: {e.verify_message}"
        # 4. plain http on the TLS port
        try:
            results["plain_http_on_tls_port"] = http_get(tls_port, "/healthcheck")
        except Exception as e:  # noqa: BLE001
            results["plain_http_on_tls_port"] = f"{type(e).__name__}: {e}"[:160]
        # 5. the backend directly: links follow X-Forwarded-Proto
        results["backend_links_no_header"] = [lk["href"] for lk in
                                              json.loads(http_get(backend_port, "/")[1])["versions"][0]["links"]]
        results["backend_links_xfp_https"] = [lk["href"] for lk in json.loads(
            http_get(backend_port, "/", {"X-Forwarded-Proto": "https"})[1])["versions"][0]["links"]]
        # 6. a database-backed call fails (no database) while /healthcheck stays 200
        status, body, _ = https_get(tls_port, "/v2/lbaas/loadbalancers", pki["ca"])
        results["db_call_without_db"] = {"status": status, "body": body.strip()[:160]}
        results["https_healthcheck_after"] = https_get(tls_port, "/healthcheck", pki["ca"])[0]
        results["both_alive"] = all(p.poll() is None for p in procs)
    finally:
        for p in reversed(procs):
            stop(p)
        results["uwsgi_log_errors"] = [ln for ln in (work / "uwsgi.log").read_text(errors="replace").splitlines()
                                       if any(w in ln for w in ("Read-only", "Permission denied", "ERROR", "Errno"))][:10]
        results["haproxy_log_tail"] = (work / "haproxy.log").read_text(errors="replace").splitlines()[-4:]
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    ok = (results.get("https_healthcheck", {}).get("status") == 200
          and all(h.startswith("https://") for h in results.get("https_root_links", {}).get("links", ["x"]))
          and str(results.get("wrong_ca", "")).startswith("refused"))
    print("RESULT:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
