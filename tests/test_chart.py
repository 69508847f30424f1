"""The Helm chart (deploy/charts/octavia-operator) and the plain install (deploy/operator.yaml).

Needs Helm (``tests/tools/get-helm.sh``); the tests skip without it, except under CI=true.
What the chart installs is validated by a REAL API server (``kube_cluster``, tests/kube, Kubernetes
1.36): server-side dry runs (``dryRun=All``, ``fieldValidation=Strict``). The chart's kubeVersion
floor, a release we cannot run here, is linted offline for the built-in kinds (kubernetes-validate).
After changing the CRD or the chart, run ``.venv/bin/python tests/test_chart.py``: it copies
deploy/crds/octaviadeployments.octavia-operator.dev.yaml into the chart's crds/ and regenerates
deploy/operator.yaml.
"""
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

import k8stools
from kube.plugin import release_namespace

ROOT = k8stools.REPO_ROOT
CHART = ROOT / "deploy" / "charts" / "octavia-operator"
CRD_SOURCE = ROOT / "deploy" / "crds" / "octaviadeployments.octavia-operator.dev.yaml"
CRD_COPY = CHART / "crds" / CRD_SOURCE.name
OPERATOR_YAML = ROOT / "deploy" / "operator.yaml"
NAMESPACE = "octavia-operator"
RELEASE = "octavia-operator"
OPERATOR_YAML_ARGS = ["--namespace", NAMESPACE, "--include-crds", "--set", "createNamespace=true"]
OPERATOR_YAML_HEADER = (
    "# The octavia-operator installed with plain manifests: kubectl apply -f deploy/operator.yaml\n"
    "# (CRDs, Namespace octavia-operator, ServiceAccount, RBAC, Deployment; see docs/install.md).\n"
    "# Generated from deploy/charts/octavia-operator with\n"
    f"#   helm template {RELEASE} deploy/charts/octavia-operator {' '.join(OPERATOR_YAML_ARGS)}\n"
    "# by `python tests/test_chart.py`. Do not edit: change the chart and regenerate.\n"
)
# The chart's kubeVersion floor (Chart.yaml: >=1.31): the CRD's CEL rules use the IP/CIDR library
# (isIP, isCIDR, ip(), cidr()), which CRD validation has from Kubernetes 1.31 on. The real API server
# of the tests is newer: the floor is linted offline (built-in kinds only).
FLOOR = k8stools.kube_version_floor()


def _require(path: Path) -> None:
    if not path.exists():
        msg = f"{path.relative_to(ROOT)} does not exist yet"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)


def helm(*args: str, helm_bin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([helm_bin or k8stools.helm_binary(), *args], capture_output=True, text=True,
                          timeout=120, check=check, env={**os.environ, "HELM_CACHE_HOME": "/tmp/helm-cache",
                                                         "HELM_CONFIG_HOME": "/tmp/helm-config",
                                                         "HELM_DATA_HOME": "/tmp/helm-data"})


def render(*args: str, helm_bin: str | None = None, release: str = RELEASE, namespace: str = NAMESPACE) -> list[dict]:
    out = helm("template", release, str(CHART), "--namespace", namespace, *args, helm_bin=helm_bin).stdout
    return k8stools.load_yaml_documents(out)


def render_operator_yaml(helm_bin: str | None = None) -> str:
    out = helm("template", RELEASE, str(CHART), *OPERATOR_YAML_ARGS, helm_bin=helm_bin).stdout
    return OPERATOR_YAML_HEADER + out


def by_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


# ----------------------------------------------------------------------------- the CRD copy


def test_chart_crd_is_identical_to_the_source():
    _require(CRD_SOURCE)
    assert CRD_COPY.read_bytes() == CRD_SOURCE.read_bytes(), (
        f"the chart's CRD is stale: run .venv/bin/python tests/test_chart.py")


def chart_crds() -> list[dict]:
    return [d for f in sorted((CHART / "crds").glob("*.yaml")) for d in k8stools.load_yaml_documents(f.read_text())]


@pytest.mark.kube
def test_crds_are_accepted_by_the_api_server(kube_cluster):
    """Every CRD of the chart, server-side applied with dryRun=All: structural schema, every CEL rule
    compiling within the cost budget (the API server's own checks)."""
    _require(CRD_SOURCE)
    crds = chart_crds()
    assert {c["metadata"]["name"] for c in crds} == {
        "octaviadeployments.octavia-operator.dev"}
    assert k8stools.server_dry_run(kube_cluster, crds, apply=True) == []
    # the floor knows every field of the CRD objects themselves
    assert k8stools.validate_manifests(crds, k8s_version=FLOOR) == []


def test_kube_version_floor():
    assert FLOOR == "1.31"
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == f">={FLOOR}.0-0"
    assert FLOOR in k8stools.SUPPORTED_K8S_VERSIONS
    res = helm("template", RELEASE, str(CHART), "--kube-version", f"{FLOOR}.0", check=False)
    assert res.returncode == 0, res.stderr
    older = f"1.{int(FLOOR.split('.')[1]) - 1}.9"
    res = helm("template", RELEASE, str(CHART), "--kube-version", older, check=False)
    assert res.returncode != 0 and "kubeVersion" in res.stderr, res.stderr


# ----------------------------------------------------------------------------- helm lint / template


VARIANTS = {
    "default": [],
    "watch-namespace": ["--set", "watchNamespace=openstack"],
    "ha": ["--set", "replicaCount=3"],
    "ha-namespaced": ["--set", "replicaCount=2", "--set", "watchNamespace=openstack"],
    "no-leader-election": ["--set", "leaderElection.enabled=false"],
    "custom": ["--set", "image.tag=1.2.3", "--set", "logLevel=debug", "--set", "liveness.enabled=false",
               "--set", "serviceAccount.name=op", "--set-json", 'extraArgs=["--priority=10"]',
               "--set-json", 'imagePullSecrets=[{"name":"regcred"}]',
               "--set-json", 'tolerations=[{"key":"k","operator":"Exists"}]',
               "--set-json", 'extraEnv=[{"name":"X","value":"y"}]'],
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_lint_strict(variant):
    res = helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, *VARIANTS[variant], check=False)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.fixture
def two_namespaces(kube_cluster):
    """A release namespace and a watched one, both fresh (a dry-run create needs the namespace)."""
    names = [f"chart-{kind}-{uuid.uuid4().hex[:5]}" for kind in ("release", "watched")]
    for n in names:
        kube_cluster.add_namespace(n)
    yield names
    for n in names:
        release_namespace(kube_cluster, n)


@pytest.mark.kube
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_objects_pass_strict_validation(kube_cluster, two_namespaces, variant):
    """What ``helm install`` would create, dry-run on the real API server with strict field validation
    (a release of its own, so nothing collides with the installed operator), and linted for the floor."""
    release_ns, watched_ns = two_namespaces
    args = [a.replace("watchNamespace=openstack", f"watchNamespace={watched_ns}") for a in VARIANTS[variant]]
    release = f"dry-{variant}"
    objs = render("--include-crds", *args, release=release, namespace=release_ns)
    assert by_kind(objs, "Deployment")
    crds = by_kind(objs, "CustomResourceDefinition")
    others = [o for o in objs if o["kind"] != "CustomResourceDefinition"]
    assert crds and others
    # the CRDs exist already (deploy/operator.yaml): applied; everything else is created
    assert k8stools.server_dry_run(kube_cluster, crds, apply=True) == []
    assert k8stools.server_dry_run(kube_cluster, others) == []
    assert k8stools.validate_manifests(objs, k8s_version=FLOOR) == []


@pytest.mark.kube
def test_a_broken_chart_object_is_refused(kube_cluster, two_namespaces):
    """The dry run can fail: a misspelled field in the rendered Deployment is refused (strict)."""
    objs = render(release="dry-broken", namespace=two_namespaces[0])
    dep, c = _container(objs)
    c["imagePullPolcy"] = "Always"
    (problem,) = k8stools.server_dry_run(kube_cluster, [dep])
    assert problem.startswith(f"Deployment/{dep['metadata']['name']}: 400") and "imagePullPolcy" in problem


def _container(objs):
    (dep,) = by_kind(objs, "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return dep, c


def test_default_deployment():
    objs = render()
    dep, c = _container(objs)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert c["image"] == f"ghcr.io/octavia-operator/octavia-operator:{chart['appVersion']}"
    assert c["command"] == ["octavia-operator"]
    assert c["args"][:3] == ["run", "--all-namespaces", "--standalone"]
    assert dep["metadata"]["namespace"] == NAMESPACE
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert {"mountPath": "/tmp", "name": "tmp"} in c["volumeMounts"]
    assert pod["serviceAccountName"] == by_kind(objs, "ServiceAccount")[0]["metadata"]["name"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in c["args"]
    assert c["livenessProbe"]["httpGet"]["port"] == "health"
    assert not by_kind(objs, "Namespace")


def test_custom_values_reach_the_deployment():
    dep, c = _container(render(*VARIANTS["custom"]))
    assert c["image"].endswith(":1.2.3")
    assert "--debug" in c["args"] and "--priority=10" in c["args"]
    assert not any(a.startswith("--liveness") for a in c["args"]) and "livenessProbe" not in c
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "op"
    assert {"name": "X", "value": "y"} in c["env"]


def test_invalid_values_are_refused():
    res = helm("template", RELEASE, str(CHART), "--set", "replicaCount=2", "--set", "leaderElection.enabled=false",
               check=False)
    assert res.returncode != 0 and "leaderElection" in res.stderr
    res = helm("template", RELEASE, str(CHART), "--set", "leaderElection.renewDeadlineSeconds=20", check=False)
    assert res.returncode != 0 and "renewDeadlineSeconds < leaseDurationSeconds" in res.stderr
    res = helm("template", RELEASE, str(CHART), "--set", "logLevel=loud", check=False)
    assert res.returncode != 0 and "logLevel" in res.stderr


# ----------------------------------------------------------------------------- RBAC


def _rules(obj):
    return [(g, r, v) for rule in obj["rules"] for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]]


NAMESPACED_RESOURCES = {"secrets", "configmaps", "services", "serviceaccounts", "persistentvolumeclaims",
                        "deployments", "statefulsets", "daemonsets", "jobs", "poddisruptionbudgets",
                        "pods", "pods/log", "events", "octaviadeployments", "octaviadeployments/status",
                        "octaviadeployments/finalizers", "ingresses", "httproutes"}


def test_rbac_all_namespaces_is_least_privilege():
    objs = render()
    (role,) = by_kind(objs, "ClusterRole")
    (binding,) = by_kind(objs, "ClusterRoleBinding")
    # the only namespaced grant: the leader-election Lease, in the operator's own namespace
    (lease_role,) = by_kind(objs, "Role")
    assert lease_role["metadata"]["namespace"] == NAMESPACE
    assert _rules(lease_role) == [("coordination.k8s.io", "leases", v) for v in ("get", "create", "patch")]
    rules = _rules(role)
    assert all("*" not in t for t in rules)
    assert not {v for _, _, v in rules} & {"escalate", "bind", "impersonate", "deletecollection", "update"} - {
        v for _, r, v in rules if r == "octaviadeployments/finalizers"}
    res = {r for _, r, _ in rules}
    assert res == NAMESPACED_RESOURCES | {"nodes", "customresourcedefinitions", "namespaces"}
    # no get: the operator lists nodes (and patches the o-hm0 ready label), it never reads one by name
    assert {v for _, r, v in rules if r == "nodes"} == {"list", "watch", "patch"}
    assert {v for _, r, v in rules if r == "pods/log"} == {"get"}
    assert {v for _, r, v in rules if r == "pods"} == {"list"}
    assert {v for _, r, v in rules if r == "secrets"} == {"get", "list", "watch", "create", "patch"}
    # delete only for the db-sync Jobs, embedded servers' StatefulSets and their claims that never bound, and
    # the exposure object of a previous spec.api.expose type (Ingress, HTTPRoute, LoadBalancer Service)
    assert {r for _, r, v in rules if v == "delete"} == {"jobs", "statefulsets", "persistentvolumeclaims",
                                                         "ingresses", "httproutes", "services"}
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "octavia-operator", "namespace": NAMESPACE}]


def test_rbac_watch_namespace_uses_a_role_there():
    objs = render(*VARIANTS["watch-namespace"])
    [role] = [r for r in by_kind(objs, "Role") if r["metadata"]["namespace"] == "openstack"]
    [rb] = [r for r in by_kind(objs, "RoleBinding") if r["metadata"]["namespace"] == "openstack"]
    (crole,) = by_kind(objs, "ClusterRole")
    assert {r for _, r, _ in _rules(role)} == NAMESPACED_RESOURCES
    # only truly cluster-scoped things stay in the ClusterRole; no namespace listing needed
    assert {r for _, r, _ in _rules(crole)} == {"nodes", "customresourcedefinitions"}
    assert rb["subjects"][0]["namespace"] == NAMESPACE
    _, c = _container(objs)
    assert "--namespace=openstack" in c["args"] and "--all-namespaces" not in c["args"]


def test_leader_election():
    """On by default (even with one replica: a rolling upgrade then never runs two operators at once)."""
    for variant, replicas in (("default", 1), ("ha", 3), ("ha-namespaced", 2)):
        objs = render(*VARIANTS[variant])
        dep, c = _container(objs)
        assert dep["spec"]["replicas"] == replicas and dep["spec"]["strategy"]["type"] == "RollingUpdate"
        assert "--standalone" in c["args"] and "--lease=octavia-operator" in c["args"]
        assert f"--lease-namespace={NAMESPACE}" in c["args"]
        assert {"--lease-duration=15", "--renew-deadline=10", "--retry-period=2"} <= set(c["args"])
        assert any(r["metadata"]["name"].endswith("-leader-election") for r in by_kind(objs, "RoleBinding"))
        assert not by_kind(objs, "ClusterKopfPeering") and not by_kind(objs, "KopfPeering")
    objs = render(*VARIANTS["no-leader-election"])
    dep, c = _container(objs)
    assert dep["spec"]["strategy"]["type"] == "Recreate" and not any(a.startswith("--lease") for a in c["args"])
    assert not by_kind(objs, "Role")


# ----------------------------------------------------------------------------- deploy/operator.yaml


def test_operator_yaml_is_up_to_date():
    _require(OPERATOR_YAML)
    assert OPERATOR_YAML.read_text() == render_operator_yaml(), (
        "deploy/operator.yaml is stale: run .venv/bin/python tests/test_chart.py")


@pytest.mark.kube
def test_operator_yaml_passes_strict_validation(kube_cluster):
    """deploy/operator.yaml is installed in the test cluster; every object, server-side applied again
    with dryRun=All and strict field validation, is admitted; the floor lint passes too."""
    _require(OPERATOR_YAML)
    objs = k8stools.load_yaml_documents(OPERATOR_YAML.read_text())
    assert k8stools.server_dry_run(kube_cluster, objs, apply=True) == []
    assert k8stools.validate_manifests(objs, k8s_version=FLOOR) == []
    kinds = [o["kind"] for o in objs]
    assert kinds.count("CustomResourceDefinition") == 1
    (ns,) = by_kind(objs, "Namespace")
    assert ns["metadata"]["name"] == NAMESPACE
    # the CRDs and the Namespace come before anything that needs them
    assert kinds.index("Namespace") < min(kinds.index(k) for k in ("ServiceAccount", "Deployment"))
    for o in objs:
        if o["kind"] in ("ServiceAccount", "Deployment"):
            assert o["metadata"]["namespace"] == NAMESPACE


if __name__ == "__main__":
    helm_bin = os.environ.get("HELM") or str(ROOT / ".tools" / "bin" / "helm")
    if not Path(helm_bin).exists():
        sys.exit(f"no helm at {helm_bin}: run tests/tools/get-helm.sh")
    # sync the chart's copy of the CRD, then regenerate deploy/operator.yaml from the chart
    CRD_COPY.write_bytes(CRD_SOURCE.read_bytes())
    print(f"copied {CRD_SOURCE.relative_to(ROOT)} to {CRD_COPY.relative_to(ROOT)}")
    OPERATOR_YAML.write_text(render_operator_yaml(helm_bin))
    print(f"wrote {OPERATOR_YAML.relative_to(ROOT)}")
