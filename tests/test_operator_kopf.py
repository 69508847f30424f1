"""The operator's real kopf handlers against the emulated Kubernetes API (tests/kube).

kopf runs ``octavia_operator.handlers`` in a background thread; the tests create the CRD, a
credentials Secret and an OctaviaDeployment through the API, and watch what the operator does.
"""
from __future__ import annotations

import base64
import pathlib
import time

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
def test_late_secret_converges_to_cloud_reachable_and_delete_releases_the_finalizer(
        kube_api, kube_namespace, run_kopf, operator_env, os_cloud_config):
    kube_api.create_crd(str(CRD))
    ns = kube_namespace
    ref = "octaviadeployments.octavia-operator.dev"
    with run_kopf("octavia_operator.handlers", namespace=ns, env=ENV, fail_on_errors=False) as op:
        kube_api.create(resource(ns))
        op.wait_for(lambda: conditions(kube_api.get(ref, "octavia", ns)).get("CloudReachable", {}).get("reason")
                    == "CredentialsSecretNotFound", timeout=20)
        kube_api.create(clouds_yaml_secret(ns, os_cloud_config))
        obj = op.wait_for(lambda: (o := kube_api.get(ref, "octavia", ns))
                          and conditions(o).get("CloudReachable", {}).get("status") == "True" and o, timeout=30)
        assert "authenticated to http://127.0.0.1" in conditions(obj)["CloudReachable"]["message"]
        # the rest is not built yet, and says so
        assert conditions(obj)["IdentityReady"]["reason"] == "NotImplemented"
        # converged: once kopf has finished its bookkeeping, nothing writes to the resource any more
        time.sleep(2)
        rv = kube_api.get(ref, "octavia", ns)["metadata"]["resourceVersion"]
        time.sleep(3)
        assert kube_api.get(ref, "octavia", ns)["metadata"]["resourceVersion"] == rv
        kube_api.delete(ref, "octavia", ns)
        op.wait_for(lambda: kube_api.get(ref, "octavia", ns) is None, timeout=20)
        assert unexpected_errors(op) == []
