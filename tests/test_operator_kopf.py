"""The operator's real kopf handlers against the emulated Kubernetes API (tests/kube).

kopf runs ``octavia_operator.handlers`` in a background thread; the tests create the CRD, a
credentials Secret and an OctaviaDeployment through the API, and watch what the operator does.
"""
from __future__ import annotations

import base64
import pathlib
import time
import uuid

import pytest
import yaml

from octavia_operator import handlers

pytestmark = pytest.mark.kube

ROOT = pathlib.Path(__file__).resolve().parents[1]
CRD = ROOT / "deploy" / "crds" / "octaviadeployments.octavia-operator.dev.yaml"
FINALIZER = "octavia-operator.dev/finalizer"
ENV = {"OCTAVIA_OPERATOR_RETRY_DELAY": "0.5", "OCTAVIA_OPERATOR_RETRY_MAX": "1"}


@pytest.fixture
def operator_env(kube_api, monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    # the operator's own client must reach this test's API server
    handlers.set_kube(None)
    yield
    handlers.set_kube(None)


def resource(ns: str, name: str = "octavia", spec: dict | None = None) -> dict:
    return {"apiVersion": "octavia-operator.dev/v1alpha1", "kind": "OctaviaDeployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec or {"cloud": {"credentialsSecret": {"name": "openstack-admin"}, "cloudName": "admin-cloud"}}}


def unexpected_errors(op) -> list[str]:
    """kopf logs retried handlers ("failed temporarily") at ERROR level; anything else is a bug."""
    return [r.getMessage() for r in op.errors() if "failed temporarily" not in r.getMessage()]


def conditions(obj: dict | None) -> dict[str, dict]:
    return {c["type"]: c for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def clouds_yaml_secret(ns: str, os_cloud_config: dict) -> dict:
    doc = yaml.safe_load(open(os_cloud_config["clouds_yaml"]).read())
    entry = doc["clouds"][os_cloud_config["cloud"]]
    data = yaml.safe_dump({"clouds": {"admin-cloud": entry}}).encode()
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "openstack-admin", "namespace": ns},
            "type": "Opaque", "data": {"clouds.yaml": base64.b64encode(data).decode()}}


def test_resource_gets_finalizer_and_honest_conditions(kube_api, kube_namespace, run_kopf, wait_for, operator_env):
    kube_api.create_crd(str(CRD))
    ns = kube_namespace
    with run_kopf("octavia_operator.handlers", namespace=ns, env=ENV, fail_on_errors=False) as op:
        kube_api.create(resource(ns))
        obj = op.wait_for(lambda: (o := kube_api.get("octaviadeployments.octavia-operator.dev", "octavia", ns))
                          and "Ready" in conditions(o) and o, timeout=20)
        assert FINALIZER in obj["metadata"]["finalizers"]
        conds = conditions(obj)
        assert conds["SpecValid"]["status"] == "True"
        # no credentials Secret yet: said plainly, and retried
        assert conds["CloudReachable"]["status"] == "False"
        assert conds["CloudReachable"]["reason"] == "CredentialsSecretNotFound"
        assert conds["Ready"]["status"] == "False"
        for c in conds.values():
            assert set(c) == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}
            assert c["observedGeneration"] == obj["metadata"]["generation"]
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
        assert unexpected_errors(op) == []


def test_invalid_spec_is_reported_and_nothing_else_runs(kube_api, kube_namespace, run_kopf, operator_env):
    """The emulator does not enforce the CRD schema (a real API server would refuse this first):
    the operator's own validation must catch it."""
    kube_api.create_crd(str(CRD))
    ns = kube_namespace
    spec = {"cloud": {"credentialsSecret": {"name": "openstack-admin"}},
            "managementNetwork": {"cidr": "172.31.0.0/24", "allocationPool": {"start": "10.9.0.1", "end": "10.9.0.2"}}}
    with run_kopf("octavia_operator.handlers", namespace=ns, env=ENV, fail_on_errors=False) as op:
        kube_api.create(resource(ns, spec=spec))
        obj = op.wait_for(lambda: (o := kube_api.get("octaviadeployments.octavia-operator.dev", "octavia", ns))
                          and "Ready" in conditions(o) and o, timeout=20)
        conds = conditions(obj)
        assert conds["SpecValid"]["status"] == "False" and conds["SpecValid"]["reason"] == "InvalidSpec"
        assert "must lie inside cidr" in conds["SpecValid"]["message"]
        assert conds["CloudReachable"]["reason"] == "Waiting"
        assert conds["Ready"]["reason"] == "InvalidSpec"
        assert unexpected_errors(op) == []


@pytest.mark.openstack
def test_late_secret_converges_and_delete_removes_owned_cloud_resources(
        kube_api, kube_namespace, run_kopf, operator_env, os_cloud, os_cloud_config, fake_agent_hosts):
    from octd_helpers import node, random_cidr, serve_image, spec_for
    kube_api.create_crd(str(CRD))
    ns = kube_namespace
    ref = "octaviadeployments.octavia-operator.dev"
    sfx = uuid.uuid4().hex[:8]
    for name in ("node-0", "node-1"):
        kube_api.create(node(name))
    with serve_image() as image_url, \
            run_kopf("octavia_operator.handlers", namespace=ns, env=ENV, fail_on_errors=False) as op:
        kube_api.create(resource(ns, spec=spec_for(sfx, image_url, random_cidr())))
        op.wait_for(lambda: conditions(kube_api.get(ref, "octavia", ns)).get("CloudReachable", {}).get("reason")
                    == "CredentialsSecretNotFound", timeout=20)
        kube_api.create(clouds_yaml_secret(ns, os_cloud_config))
        obj = op.wait_for(lambda: (o := kube_api.get(ref, "octavia", ns))
                          and conditions(o).get("HealthManagerPortsReady", {}).get("status") == "True" and o,
                          timeout=120)
        assert "authenticated to http://127.0.0.1" in conditions(obj)["CloudReachable"]["message"]
        ids = obj["status"]["openstack"]
        assert os_cloud.network.get_network(ids["networkId"]).name == f"lb-mgmt-net-{sfx}"
        # a node joining is noticed through the Node watch, without touching the resource
        kube_api.create(node("node-2"))
        op.wait_for(lambda: "node-2" in (kube_api.get(ref, "octavia", ns)["status"].get("healthManagerPorts") or {}),
                    timeout=60)
        port_id = kube_api.get(ref, "octavia", ns)["status"]["healthManagerPorts"]["node-2"]["portId"]
        assert os_cloud.network.get_port(port_id).binding_host_id == "node-2"
        # deletionPolicy Delete: the finalizer removes what the deployment owns, then lets go
        kube_api.delete(ref, "octavia", ns)
        op.wait_for(lambda: kube_api.get(ref, "octavia", ns) is None, timeout=120)
        assert os_cloud.network.find_network(ids["networkId"]) is None
        assert os_cloud.network.find_port(port_id) is None
        assert os_cloud.identity.find_user(f"octavia-{sfx}", domain_id="default") is None
        assert unexpected_errors(op) == []


@pytest.mark.openstack
def test_retain_keeps_every_cloud_resource(kube_api, kube_namespace, run_kopf, operator_env, os_cloud,
                                           os_cloud_config, fake_agent_hosts):
    from octd_helpers import node, random_cidr, serve_image, spec_for
    from octavia_operator.steps import cloud as cloud_steps
    kube_api.create_crd(str(CRD))
    ns = kube_namespace
    ref = "octaviadeployments.octavia-operator.dev"
    sfx = uuid.uuid4().hex[:8]
    kube_api.create(node("node-0"))
    kube_api.create(clouds_yaml_secret(ns, os_cloud_config))
    spec = {**spec_for(sfx, "http://unused.invalid/", random_cidr()), "deletionPolicy": "Retain"}
    with serve_image() as image_url, \
            run_kopf("octavia_operator.handlers", namespace=ns, env=ENV, fail_on_errors=False) as op:
        spec["amphora"]["image"]["url"] = image_url
        kube_api.create(resource(ns, spec=spec))
        obj = op.wait_for(lambda: (o := kube_api.get(ref, "octavia", ns))
                          and conditions(o).get("HealthManagerPortsReady", {}).get("status") == "True" and o,
                          timeout=120)
        uid = obj["metadata"]["uid"]
        ids = obj["status"]["openstack"]
        kube_api.delete(ref, "octavia", ns)
        op.wait_for(lambda: kube_api.get(ref, "octavia", ns) is None, timeout=30)
    try:
        assert os_cloud.network.get_network(ids["networkId"])
        assert os_cloud.image.get_image(ids["imageId"])
        assert os_cloud.compute.get_flavor(ids["flavorId"])
        assert os_cloud.identity.find_user(f"octavia-{sfx}", domain_id="default") is not None
    finally:  # clean up the shared cloud with the operator's own teardown
        from octavia_operator import reconcile as r
        from octavia_operator.spec import parse_spec
        ctx = r.Context(name="octavia", namespace=ns, uid=uid, generation=1, raw_spec=spec,
                        status=obj["status"], kube=None)
        ctx.spec = parse_spec(spec)
        from octavia_operator.openstack import session
        doc = yaml.safe_load(open(os_cloud_config["clouds_yaml"]).read())
        ctx.out["cloud"] = session.connect(yaml.safe_dump({"clouds": {"c": doc["clouds"][os_cloud_config["cloud"]]}})
                                           .encode(), "c", os_cloud_config["region"], "public")

        class NoSecrets:
            def read_secret(self, *a):
                return None
        ctx.kube = NoSecrets()
        cloud_steps.teardown(ctx)
