"""Shared pieces of the end-to-end tests: an image server, Nodes, a spec that is safe on the shared cloud."""
from __future__ import annotations

import base64
import contextlib
import http.server
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator

import pytest
import yaml

from cloud.plugin import tiny_qcow2
from octavia_operator import handlers
from octavia_operator import reconcile as r
from octavia_operator.k8s import Kube
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


def node(name: str, control_plane: bool = True) -> dict:
    labels = {"kubernetes.io/hostname": name}
    if control_plane:
        labels["node-role.kubernetes.io/control-plane"] = ""
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
            "spec": {"podCIDRs": ["10.244.0.0/24"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.10"}]}}


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
    kube_api: Any
    kube: Kube
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
            self.kube.merge_patch(API, "OctaviaDeployment", self.name, self.ns, {"status": out.status_patch},
                                  subresource="status")
        return out, ctx

    def reconcile_until(self, done: Any, rounds: int = 4) -> list:
        """Reconcile until ``done()``, returning the events posted. Under load the loopback cloud
        may answer a transient error; the operator converges on the next round (level-based),
        as it does under kopf with its retries."""
        events: list = []
        for _ in range(rounds):
            out, _ = self.reconcile()
            events += out.events
            if done():
                return events
        raise AssertionError(f"not converged after {rounds} reconciles: "
                             f"{ {k: (v['status'], v['reason']) for k, v in self.conditions().items()} }")

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


@pytest.fixture
def env(kube_api, kube_namespace, os_cloud, os_cloud_config, fake_agent_hosts, image_url):
    assert {"node-0", "node-1", "node-2"} <= set(fake_agent_hosts)
    sfx = uuid.uuid4().hex[:8]
    ns = kube_namespace
    kube_api.create_crd(CRD)
    doc = yaml.safe_load(open(os_cloud_config["clouds_yaml"]).read())
    clouds_yaml = yaml.safe_dump({"clouds": {"admin-cloud": doc["clouds"][os_cloud_config["cloud"]]}}).encode()
    kube_api.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "openstack-admin", "namespace": ns},
                     "data": {"clouds.yaml": base64.b64encode(clouds_yaml).decode()}})
    for n_ in ("node-0", "node-1"):
        kube_api.create(node(n_))
    kube_api.create(node("worker-0", control_plane=False))
    cidr = random_cidr()
    kube_api.create({"apiVersion": API, "kind": "OctaviaDeployment", "metadata": {"name": "octavia", "namespace": ns},
                     "spec": spec_for(sfx, image_url, cidr)})
    e = Env(kube_api, Kube(kube_api.api_client()), ns, "octavia", sfx, os_cloud, clouds_yaml)
    yield e
    # leave nothing behind: the operator's own teardown, then whatever the test made by hand
    try:
        ctx = e.context()
        from octavia_operator.spec import parse_spec
        ctx.spec = parse_spec(ctx.raw_spec)
        ctx.out["cloud"] = handlers.cloud_from_secret(ctx)
        cloud_steps.teardown(ctx)
    finally:
        for fn in reversed(e.extra_cleanup):
            try:
                fn()
            except Exception:  # noqa: BLE001
                pass


