"""What the benchmarks share: the loopback cloud, a real Kubernetes control plane with kwok nodes, the operator
as its own process (the chart's ServiceAccount, so RBAC applies), fake Neutron agents for many hosts, request
counting. Not a benchmark itself.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
warnings.simplefilter("ignore")

REF = "octaviadeployments.octavia-operator.dev"
# the operator's defaults, over the shortened timings tests/kube/plugin.py gives a test's operator
PRODUCTION = {"OCTAVIA_OPERATOR_RETRY_DELAY": "15", "OCTAVIA_OPERATOR_RETRY_MAX": "300",
              "OCTAVIA_OPERATOR_DEBOUNCE": "2", "OCTAVIA_OPERATOR_JOB_RETRY_DELAY": "60",
              "MALLOC_ARENA_MAX": "2"}   # as the operator's image (Dockerfile) sets it
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def cloud_base() -> pathlib.Path:
    return pathlib.Path(os.environ.get("OSCLOUD_BASE", "/tmp/oscloud/run"))


def admin_connection() -> Any:
    import openstack.config
    import openstack.connection
    base = cloud_base()
    return openstack.connection.Connection(config=openstack.config.OpenStackConfig(
        config_files=[str(base / "clouds.yaml")]).get_one(cloud="oscloud"))


def operator_clouds_yaml() -> bytes:
    """The clouds.yaml the operator gets in its credentials Secret (cloud name admin-cloud)."""
    import yaml
    doc = yaml.safe_load((cloud_base() / "clouds.yaml").read_text())
    return yaml.safe_dump({"clouds": {"admin-cloud": doc["clouds"]["oscloud"]}}).encode()


def neutron_sql(sql: str) -> None:
    subprocess.run(["mariadb", f"--socket={cloud_base() / 'run' / 'mysql.sock'}", "-uroot", "neutron"],
                   input=sql.encode(), check=True, capture_output=True)


@contextlib.contextmanager
def fake_agents(hosts: list[str]) -> Iterator[None]:
    """'Open vSwitch agent' rows for ``hosts`` (as tests/cloud/oscloud-up.sh makes for its FAKE_OVS_AGENT_HOSTS),
    so that ports bound to them bind; removed afterwards. Host names are checked: they go into SQL."""
    for h in hosts:
        assert re.fullmatch(r"[A-Za-z0-9._-]+", h), h
    marker = f"bench-{uuid.uuid4().hex[:8]}"   # in `binary`: only our rows are removed
    rows = ", ".join(
        f"(UUID(), 'Open vSwitch agent', '{marker}', 'N/A', '{h}', 1, UTC_TIMESTAMP(), UTC_TIMESTAMP(), "
        "UTC_TIMESTAMP() + INTERVAL 1 DAY, '{\"bridge_mappings\": {}, \"tunnel_types\": [\"vxlan\"], "
        "\"tunneling_ip\": \"127.0.0.1\", \"integration_bridge\": \"br-int\", \"datapath_type\": \"system\", "
        "\"ovs_hybrid_plug\": false}', 0, 1)" for h in hosts)
    if hosts:
        neutron_sql("INSERT INTO agents (id, agent_type, `binary`, topic, host, admin_state_up, created_at, "
                    "started_at, heartbeat_timestamp, configurations, `load`, resources_synced) VALUES " + rows)
    try:
        yield
    finally:
        neutron_sql(f"DELETE FROM agents WHERE `binary`='{marker}'")


@contextlib.contextmanager
def port_quota(conn: Any, project: str = "service", ports: int = -1) -> Iterator[None]:
    """The service project's port quota raised for the benchmark, restored afterwards."""
    proj = conn.identity.find_project(project, domain_id="default")
    before = conn.network.get_quota(proj.id)
    conn.network.update_quota(proj.id, ports=ports)
    try:
        yield
    finally:
        conn.network.update_quota(proj.id, ports=before.ports)


def counts(metrics: dict) -> dict[str, int]:
    """From the operator's /metrics: OpenStack requests, all and writes (POST/PUT/PATCH/DELETE; a token request
    is a POST to identity too, so the benchmarks start counting once the operator holds its token)."""
    total = writes = 0
    for (name, labels), value in metrics.items():
        if name != "octavia_operator_openstack_requests_total":
            continue
        total += int(value)
        if dict(labels).get("method") in WRITES:
            writes += int(value)
    return {"requests": total, "writes": writes}


def peak_rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    out = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0]) / 1024
    return out["VmRSS"], out["VmHWM"]


def node_names(prefix: str, count: int, start: int = 0) -> list[str]:
    return [f"{prefix}-{i:03d}" for i in range(start, start + count)]


def add_nodes(cluster: Any, names: list[str], workers: int = 16) -> None:
    """Create kwok nodes as fast as the API server takes them (no waiting for each to be Ready)."""
    from kube.cluster import KWOK_ANNOTATION

    def one(name: str) -> None:
        cluster.admin.create({"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": name, "annotations": {KWOK_ANNOTATION: "fake"},
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok",
                       "node-role.kubernetes.io/control-plane": ""}}})
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, names))


def delete_nodes(cluster: Any, names: list[str], workers: int = 16) -> None:
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda n: cluster.admin.delete("v1", "Node", n), names))


def wait(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    t0 = time.monotonic()
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def spec(sfx: str, image_url: str, cidr: str, **overrides: Any) -> dict:
    """tests/octd_helpers.spec_for, with ``overrides`` merged into its top-level sections."""
    from octd_helpers import spec_for
    s = spec_for(sfx, image_url, cidr)
    for k, v in overrides.items():
        s[k] = {**s.get(k, {}), **v} if isinstance(v, dict) else v
    return s


def wide_cidr() -> tuple[str, dict]:
    """A /21 management network (2000 addresses in its pool) for hundreds of health-manager ports."""
    a = uuid.uuid4().int % 200 + 20
    b = (uuid.uuid4().int % 30) * 8
    cidr = f"10.{a}.{b}.0/21"
    return cidr, {"cidr": cidr, "allocationPool": {"start": f"10.{a}.{b}.10", "end": f"10.{a}.{b + 7}.250"}}


@dataclass
class Stage:
    """One real control plane, the operator manifests, a namespace with the credentials Secret and the embedded
    servers' volumes, and (optionally) the operator process."""

    workdir: pathlib.Path = field(default_factory=lambda: pathlib.Path(tempfile.mkdtemp(prefix="bench-")))
    ns: str = "bench"
    cluster: Any = None
    identity: Any = None
    op: Any = None

    def start(self) -> "Stage":
        from kube.cluster import KubeCluster, assets_dir
        from kube.plugin import install_operator_manifests, service_account
        from octd_helpers import credentials_secret, volumes_for
        self.cluster = KubeCluster(assets_dir(), self.workdir).start()
        install_operator_manifests(self.cluster)
        self.cluster.add_namespace(self.ns)
        self.cluster.api.create(credentials_secret(self.ns, operator_clouds_yaml()))
        volumes_for(self.cluster, self.ns)
        self.identity = service_account(self.cluster, self.workdir)
        return self

    def start_operator(self, env: dict[str, str] | None = None) -> Any:
        """The operator with its production timings (not the tests' shortened ones), plus ``env``."""
        from kube.plugin import start_operator
        # the chart's arguments (its default log level, info): --verbose would log every HTTP body
        self.op = start_operator(self.identity, self.workdir / "operator.log",
                                 argv=["run", "--namespace", self.ns, "--standalone"],
                                 env={**PRODUCTION, **(env or {})})
        wait(lambda: _metrics_up(self.op), 60, "the operator's /metrics")
        return self.op

    def stop_operator(self) -> None:
        if self.op is not None:
            self.op.stop()
            self.op = None

    @property
    def api(self) -> Any:
        return self.cluster.api

    def deployment(self) -> dict:
        return self.api.get(REF, "octavia", self.ns) or {}

    def status(self) -> dict:
        return self.deployment().get("status") or {}

    def conditions(self) -> dict[str, str]:
        return conditions_of(self.deployment())

    def create(self, spec_: dict) -> None:
        self.api.create({"apiVersion": "octavia-operator.dev/v1alpha1", "kind": "OctaviaDeployment",
                         "metadata": {"name": "octavia", "namespace": self.ns}, "spec": spec_})

    def delete_deployment(self, timeout: float = 300) -> None:
        """deletionPolicy Delete: the running operator removes what it made in OpenStack."""
        if self.api.get(REF, "octavia", self.ns) is None:
            return
        self.api.delete(REF, "octavia", self.ns)
        deadline = time.monotonic() + timeout
        while self.api.get(REF, "octavia", self.ns) is not None and time.monotonic() < deadline:
            time.sleep(0.5)

    def stop(self) -> None:
        self.stop_operator()
        if self.cluster is not None:
            self.cluster.stop()


def conditions_of(obj: dict | None) -> dict[str, str]:
    return {c["type"]: c["status"] for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def _metrics_up(op: Any) -> bool:
    if not op.alive:
        raise RuntimeError(f"the operator exited with {op.popen.returncode}:\n{op.tail()}")
    try:
        op.metrics()
        return True
    except OSError:
        return False


def cleanup_cloud(conn: Any, marker: str) -> None:
    """Delete what a run with names containing ``marker`` left behind (after a failure)."""
    def named(items: Any) -> list[Any]:
        return [x for x in items if marker in (x.name or "")]
    for net in named(conn.network.networks()):
        for p in conn.network.ports(network_id=net.id):
            conn.network.delete_port(p)
        conn.network.delete_network(net)
    for svc in named(conn.identity.services()):
        for ep in conn.identity.endpoints(service_id=svc.id):
            conn.identity.delete_endpoint(ep)
        conn.identity.delete_service(svc)
    for lister, deleter in ((conn.network.security_groups, conn.network.delete_security_group),
                            (conn.identity.users, conn.identity.delete_user),
                            (conn.image.images, conn.image.delete_image),
                            (lambda: conn.compute.flavors(is_public=None), conn.compute.delete_flavor),
                            (conn.compute.keypairs, conn.compute.delete_keypair)):
        for x in named(lister()):
            deleter(x)


@contextlib.contextmanager
def staged(conn: Any, marker: str) -> Iterator[Stage]:
    """A started Stage; afterwards it is stopped and what names ``marker`` in the cloud is deleted."""
    stage = Stage().start()
    try:
        yield stage
    finally:
        try:
            stage.stop()
        finally:
            cleanup_cloud(conn, marker)
