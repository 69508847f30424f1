"""How the operator writes an OctaviaDeployment's status, against the real API server: the merge patch a
reconcile computes lands on the object it read, and never on one deleted and made again under the same name
while the reconcile ran (a reconcile that started before a delete wrote, by name, a status computed from
the old object onto the new one: its unchanged fields, the OpenStack IDs among them, were left out)."""
from __future__ import annotations

import uuid

import pytest

from kube.plugin import release_namespace

pytestmark = pytest.mark.kube

API = "octavia-operator.dev/v1alpha1"


def _obj(ns: str) -> dict:
    return {"apiVersion": API, "kind": "OctaviaDeployment", "metadata": {"name": "octavia", "namespace": ns},
            "spec": {"cloud": {"credentialsSecret": {"name": "openstack-admin"}}}}


def test_the_status_lands_only_on_the_object_it_was_computed_for(kube_cluster, operator_sa):
    from octavia_operator.backends.kube import Replaced
    ns = f"test-status-{uuid.uuid4().hex[:5]}"
    kube_cluster.add_namespace(ns)
    admin, k = kube_cluster.admin, operator_sa.kube
    try:
        admin.create(_obj(ns))
        first = k.get(API, "OctaviaDeployment", "octavia", ns)
        uid = first["metadata"]["uid"]
        assert "status" not in first

        # merge-patch semantics, with the operator's own identity (RBAC: the status subresource)
        k.patch_status(API, "OctaviaDeployment", "octavia", ns, uid, first.get("status"),
                       {"observedGeneration": 1, "openstack": {"networkId": "n1", "imageId": "i1"}})
        got = k.get(API, "OctaviaDeployment", "octavia", ns)["status"]
        assert got == {"observedGeneration": 1, "openstack": {"networkId": "n1", "imageId": "i1"}}
        k.patch_status(API, "OctaviaDeployment", "octavia", ns, uid, got,
                       {"openstack": {"networkId": None, "subnetId": "s1"}, "observedGeneration": None,
                        "publicEndpoint": "https://lb.example.test:9876"})
        got = k.get(API, "OctaviaDeployment", "octavia", ns)["status"]
        assert got == {"openstack": {"imageId": "i1", "subnetId": "s1"},
                       "publicEndpoint": "https://lb.example.test:9876"}

        # deleted and made again under the same name: what was computed for the first is refused
        admin.delete(API, "OctaviaDeployment", "octavia", ns)
        assert k.get(API, "OctaviaDeployment", "octavia", ns) is None
        with pytest.raises(Replaced):
            k.patch_status(API, "OctaviaDeployment", "octavia", ns, uid, got, {"observedGeneration": 2})
        admin.create(_obj(ns))
        second = k.get(API, "OctaviaDeployment", "octavia", ns)
        assert second["metadata"]["uid"] != uid
        with pytest.raises(Replaced):
            k.patch_status(API, "OctaviaDeployment", "octavia", ns, uid, got,
                           {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]})
        assert "status" not in k.get(API, "OctaviaDeployment", "octavia", ns)
    finally:
        release_namespace(kube_cluster, ns)
