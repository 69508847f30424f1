"""Shared pieces of the end-to-end tests: an image server, a spec that is safe on the shared cloud, and
``env``: one OctaviaDeployment on the real API server, with kwok nodes and the loopback cloud."""
from __future__ import annotations

import base64
import contextlib
import http.server
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator

import pytest
import yaml

from cloud.plugin import tiny_qcow2
from octavia_operator import handlers
from octavia_operator.steps import runner as r
from octavia_operator.backends.kube import Kube
from octavia_operator.steps import cloud as cloud_steps

CRD = "deploy/crds/octaviadeployments.octavia-operator.dev.yaml"
REF = "octaviadeployments.octavia-operator.dev"
API = "octavia-operator.dev/v1alpha1"


@contextlib.contextmanager
def serve_image() -> Iterator[str]:
    """A tiny valid qcow2 over HTTP on 127.0.0.1 (a port the OS picks); yields its URL."""
    data = tiny_qcow2()

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/amphora.qcow2"
    finally:
        srv.shutdown()
        srv.server_close()


def random_cidr() -> str:
    return f"10.{uuid.uuid4().int % 200 + 20}.{uuid.uuid4().int % 250}.0/24"


def spec_for(sfx: str, image_url: str, cidr: str) -> dict:
    return {
        "cloud": {"credentialsSecret": {"name": "openstack-admin"}, "cloudName": "admin-cloud"},
        "deletionPolicy": "Delete",
        "identity": {"serviceUser": f"octavia-{sfx}",
                     # the loopback catalog already has the load-balancer service at this URL: adopted as is
                     "endpoints": {"public": "http://127.0.0.1:9876", "internal": "http://127.0.0.1:9876",
                                   "admin": "http://127.0.0.1:9876"}},
        "amphora": {"image": {"url": image_url, "tag": f"amphora-{sfx}", "name": f"amphora-{sfx}"},
                    "flavor": {"name": f"amphora-{sfx}", "vcpus": 1, "ramMB": 512, "diskGB": 1},
                    "ssh": {"enabled": True, "keyName": f"octavia-ssh-{sfx}"}},
        "managementNetwork": {"name": f"lb-mgmt-net-{sfx}", "subnetName": f"lb-mgmt-subnet-{sfx}", "cidr": cidr,
                              "allocationPool": {"start": cidr.replace("0/24", "10"),
                                                 "end": cidr.replace("0/24", "200")},
                              "securityGroups": {"amphora": f"lb-mgmt-sec-grp-{sfx}",
                                                 "healthManager": f"lb-health-mgr-sec-grp-{sfx}"}},
        "healthManager": {"nodeSelector": {"node-role.kubernetes.io/control-plane": ""}},
        # fast keys for tests (RSA-4096 CAs are the default)
        "certificates": {"keyType": "ECDSA"},
    }


@pytest.fixture(scope="module")
def image_url():
    with serve_image() as url:
        yield url


@dataclass
class Env:
    """One OctaviaDeployment on the real API server (tests/kube) against the loopback cloud, reconciled
    inside the test process by the real reconcile, as the operator's ServiceAccount (RBAC applies)."""

    cluster: Any
    kube_api: Any            # kube.cluster.Api, as the cluster admin: what the test itself does
    kube: Kube               # the operator's client, with the chart's ServiceAccount token
    nodes: Any               # kube.plugin.Nodes
    ns: str
    name: str
    sfx: str
    os: Any
    clouds_yaml: bytes
    extra_cleanup: list = field(default_factory=list)

    def cr(self) -> dict:
        return self.kube_api.get(REF, self.name, self.ns)

    def context(self) -> r.Context:
        live = self.cr()
        return r.Context(name=self.name, namespace=self.ns, uid=live["metadata"]["uid"],
                         generation=live["metadata"]["generation"], raw_spec=live["spec"],
                         status=dict(live.get("status") or {}), kube=self.kube,
                         annotations=dict(live["metadata"].get("annotations") or {}),
                         cloud_factory=handlers.cloud_from_secret)

    def reconcile(self) -> tuple[r.Outcome, r.Context]:
        ctx = self.context()
        out = r.reconcile(ctx)
        if out.status_patch:
            self.kube.patch_status(API, "OctaviaDeployment", self.name, self.ns, ctx.uid, ctx.status,
                                   out.status_patch)
        return out, ctx

    def reconcile_until(self, done: Any, rounds: int = 4, pause: float = 0.0) -> list:
        """Reconcile until ``done()``, returning the events posted. Under load the loopback cloud
        may answer a transient error; the operator converges on the next round (level-based),
        as it does under kopf with its retries."""
        events: list = []
        for i in range(rounds):
            out, _ = self.reconcile()
            events += out.events
            if done():
                return events
            if pause and i < rounds - 1:
                time.sleep(pause)
        raise AssertionError(f"not converged after {rounds} reconciles: "
                             f"{ {k: (v['status'], v['reason'], v['message'][:200]) for k, v in self.conditions().items()} }")

    def converge(self, timeout: float = 120, until: Any = None) -> dict[str, dict]:
        """Reconcile, letting the real controllers and kwok act in between, until Ready (or ``until()``)."""
        done = until or (lambda: self.conditions().get("Ready", {}).get("status") == "True")
        deadline = time.monotonic() + timeout
        while True:
            self.reconcile()
            if done():
                return self.conditions()
            if time.monotonic() > deadline:
                raise AssertionError("not converged in time: " + repr(
                    {k: (v["status"], v["reason"], v["message"][:300]) for k, v in self.conditions().items()
                     if v["status"] != "True"}))
            time.sleep(1)

    def conn(self) -> Any:
        """The operator's own (cached) connection for this deployment."""
        ctx = self.context()
        from octavia_operator.spec import parse_spec
        ctx.spec = parse_spec(ctx.raw_spec)
        return handlers.cloud_from_secret(ctx)

    def conditions(self) -> dict[str, dict]:
        return {c["type"]: c for c in (self.cr().get("status") or {}).get("conditions") or []}

    def ids(self) -> dict:
        return (self.cr().get("status") or {}).get("openstack") or {}

    def children(self) -> dict[tuple[str, str], dict]:
        """Every object the operator made for this deployment, by (kind, name)."""
        out = {}
        for ref in ("configmaps", "secrets", "deployments", "daemonsets", "statefulsets", "jobs", "services",
                    "serviceaccounts", "poddisruptionbudgets"):
            for o in self.kube_api.objects(ref, self.ns, labels="app.kubernetes.io/managed-by=octavia-operator"):
                out[(o["kind"], o["metadata"]["name"])] = o
        return out


def clouds_yaml_for(os_cloud_config: dict) -> bytes:
    """The loopback cloud's admin entry, as the cloud `admin-cloud` (what the credentials Secret holds)."""
    doc = yaml.safe_load(open(os_cloud_config["clouds_yaml"]).read())
    return yaml.safe_dump({"clouds": {"admin-cloud": doc["clouds"][os_cloud_config["cloud"]]}}).encode()


def credentials_secret(ns: str, clouds_yaml: bytes) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "openstack-admin", "namespace": ns},
            "type": "Opaque", "data": {"clouds.yaml": base64.b64encode(clouds_yaml).decode()}}


def volumes_for(cluster: Any, ns: str, name: str = "octavia",
                servers: tuple[str, ...] = ("mariadb", "rabbitmq")) -> list[str]:
    """One PersistentVolume for each embedded server's claim (no provisioner in the test cluster)."""
    made = []
    for server in servers:
        pv = f"{ns}-{server}"[:63]
        cluster.add_pv(pv, "10Gi", claim=(ns, f"data-{name}-{server}-0"))
        made.append(pv)
    return made


@pytest.fixture
def env(kube_cluster, kube_namespace, kube_nodes, operator_sa, os_cloud, os_cloud_config, fake_agent_hosts,
        image_url):
    assert {"node-0", "node-1", "node-2"} <= set(fake_agent_hosts)
    sfx = uuid.uuid4().hex[:8]
    ns = kube_namespace
    api = kube_cluster.api
    clouds_yaml = clouds_yaml_for(os_cloud_config)
    api.create(credentials_secret(ns, clouds_yaml))
    for n_ in ("node-0", "node-1"):
        kube_nodes.add(n_)
    kube_nodes.add("worker-0", control_plane=False)
    pvs = volumes_for(kube_cluster, ns)
    cidr = random_cidr()
    api.create({"apiVersion": API, "kind": "OctaviaDeployment", "metadata": {"name": "octavia", "namespace": ns},
                "spec": spec_for(sfx, image_url, cidr)})
    e = Env(kube_cluster, api, operator_sa.kube, kube_nodes, ns, "octavia", sfx, os_cloud, clouds_yaml)
    yield e
    # leave nothing behind: the operator's own teardown, then whatever the test made by hand
    try:
        ctx = e.context()
        from octavia_operator.spec import parse_spec
        ctx.spec = parse_spec(ctx.raw_spec)
        ctx.out.cloud = handlers.cloud_from_secret(ctx)
        cloud_steps.teardown(ctx)
    finally:
        for fn in reversed(e.extra_cleanup):
            try:
                fn()
            except Exception:  # noqa: BLE001
                pass
        for pv in pvs:
            kube_cluster.admin.delete("v1", "PersistentVolume", pv)
