"""The chart grants exactly what the operator uses.

Every request the operator's ServiceAccount made during the test session is in the audit logs of the
real API servers the tests started (tests/kube/cluster.py): the operator processes of
test_operator_process.py and test_install.py (namespaced and all-namespaces modes, Helm and plain
manifests) and the reconciles run as that ServiceAccount by test_provisioning.py and
test_workloads.py (db-sync failures, storage changes, node labels...). The last test of the session
compares those requests with the rules of the chart's ClusterRole: nothing used is refused, nothing
granted is unused.

One grant is not a request of its own: ``update`` on ``octaviadeployments/finalizers``, which the
admission plugin OwnerReferencesPermissionEnforcement (enabled in the test clusters, as on OpenShift)
checks when a child with ``blockOwnerDeletion`` is written. ``test_the_finalizers_grant_is_needed``
shows that without it the operator could not write its children.
"""
from __future__ import annotations

import pathlib

import pytest
import yaml

from kube.cluster import AUDIT_LOGS, ApiError, read_audit
from kube.plugin import OPERATOR_USER

pytestmark = pytest.mark.kube

ROOT = pathlib.Path(__file__).resolve().parents[1]
OPERATOR_YAML = ROOT / "deploy" / "operator.yaml"
# the tests whose requests, together, exercise every code path that needs a permission
EXERCISED_BY = ("test_operator_process.py", "test_install.py", "test_provisioning.py", "test_workloads.py",
                "test_api_exposure.py", "test_release_upgrade.py")
ADMISSION_ONLY = {("octavia-operator.dev", "octaviadeployments/finalizers", "update")}


def granted() -> set[tuple[str, str, str]]:
    """(apiGroup, resource[/subresource], verb) of the ClusterRole and the leader-election Role in
    deploy/operator.yaml (the chart's default values, all namespaces)."""
    roles = [d for d in yaml.safe_load_all(OPERATOR_YAML.read_text()) if d and d["kind"] in ("ClusterRole", "Role")]
    assert [r["kind"] for r in roles] == ["ClusterRole", "Role"]   # the Role: the leader-election Lease
    return {(g, r, v) for role in roles for rule in role["rules"] for g in rule["apiGroups"]
            for r in rule["resources"] for v in rule["verbs"]}


def used(events: list[dict]) -> tuple[set[tuple[str, str, str]], list[str]]:
    """What the requests needed: server-side apply is a patch that needs create when it creates (201)."""
    out: set[tuple[str, str, str]] = set()
    refused = []
    for ev in events:
        ref = ev.get("objectRef")
        if not ref or not ref.get("resource"):
            continue  # discovery (/api, /apis): granted to every authenticated user
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        code = (ev.get("responseStatus") or {}).get("code")
        key = (ref.get("apiGroup", ""), resource, ev["verb"])
        if code == 403:
            if "cannot find RESTMapping" in (ev.get("responseStatus") or {}).get("message", ""):
                continue   # admission had not discovered the new kind yet (transient; see kube.plugin)
            refused.append(f"{key}: {ev.get('requestURI')}")
            continue
        out.add(key)
        if ev["verb"] == "patch" and code == 201:
            out.add((key[0], resource, "create"))
    return out, refused


@pytest.mark.last
def test_the_chart_grants_exactly_what_the_operator_uses(request):
    selected = {item.path.name for item in request.session.items}
    missing = [f for f in EXERCISED_BY if f not in selected]
    if missing:
        pytest.skip(f"compares the requests of the whole suite; not selected here: {', '.join(missing)}")
    failed = [r.nodeid for r in request.session.items if r.path.name in EXERCISED_BY
              and getattr(r, "_rbac_outcome", "passed") != "passed"]
    if failed:
        pytest.fail(f"tests that exercise the operator failed, so its requests are incomplete: {failed}")
    uses, refused = used(read_audit(AUDIT_LOGS, OPERATOR_USER))
    assert uses, "no request of the operator's ServiceAccount in the audit logs"
    assert refused == [], f"refused requests: {refused}"
    grants = granted()
    assert uses - grants == set(), f"used but not granted: {sorted(uses - grants)}"
    unused = grants - uses - ADMISSION_ONLY
    assert unused == set(), f"granted but never used (remove them from the chart): {sorted(unused)}"


def test_the_finalizers_grant_is_needed(kube_cluster, kube_namespace, tmp_path):
    """Without update on octaviadeployments/finalizers, the API server (OwnerReferencesPermissionEnforcement)
    refuses a child with blockOwnerDeletion; with the chart's ClusterRole it admits it."""
    from kube.plugin import service_account
    admin, ns = kube_cluster.admin, kube_namespace
    owner = admin.create({"apiVersion": "octavia-operator.dev/v1alpha1", "kind": "OctaviaDeployment",
                          "metadata": {"name": "owner", "namespace": ns},
                          "spec": {"cloud": {"credentialsSecret": {"name": "x"}}}})
    [role] = [d for d in yaml.safe_load_all(OPERATOR_YAML.read_text()) if d and d["kind"] == "ClusterRole"]
    without = [r for r in role["rules"] if "octaviadeployments/finalizers" not in r["resources"]]
    assert len(without) == len(role["rules"]) - 1
    admin.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "no-finalizers", "namespace": ns}})
    admin.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                  "metadata": {"name": "no-finalizers", "namespace": ns},
                  "rules": [r for r in without if "nodes" not in r["resources"]
                            and "customresourcedefinitions" not in r["resources"]]})
    admin.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                  "metadata": {"name": "no-finalizers", "namespace": ns},
                  "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "no-finalizers"},
                  "subjects": [{"kind": "ServiceAccount", "name": "no-finalizers", "namespace": ns}]})
    child = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "child", "namespace": ns, "ownerReferences": [{
                 "apiVersion": "octavia-operator.dev/v1alpha1", "kind": "OctaviaDeployment", "name": "owner",
                 "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]},
             "data": {"a": "b"}}
    weak = kube_cluster.rest_for_token(service_account(kube_cluster, tmp_path, ns, "no-finalizers").token)
    with pytest.raises(ApiError) as err:
        weak.apply(child, manager="octavia-operator")
    assert err.value.status == 403 and "blockOwnerDeletion" in str(err.value)
    strong = kube_cluster.rest_for_token(service_account(kube_cluster, tmp_path).token)
    assert strong.apply(child, manager="octavia-operator")["metadata"]["name"] == "child"
