"""Tests for tests/k8stools.py: the offline lint of built-in objects (kubernetes-validate, strict), the
dry runs on the real API server, and the Helm lookup."""
import os
import subprocess

import pytest

import k8stools
from k8stools import server_dry_run, validate_manifests


def deployment():
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "hostNetwork": False,
                    "containers": [{"name": "web", "image": "nginx:1.27",
                                    "ports": [{"containerPort": 80}],
                                    "resources": {"limits": {"memory": "128Mi", "cpu": "500m"}}}],
                },
            },
        },
    }


def test_valid_deployment_passes():
    assert validate_manifests([deployment()]) == []
    assert validate_manifests([deployment()], k8s_version=k8stools.SUPPORTED_K8S_VERSIONS[-1]) == []


def test_misspelled_field_fails_in_strict_mode():
    d = deployment()
    d["spec"]["template"]["spec"]["hostNetwrok"] = True
    (problem,) = validate_manifests([d])
    assert "spec.template.spec" in problem and "hostNetwrok" in problem


def test_wrong_type_fails():
    d = deployment()
    d["spec"]["replicas"] = "two"
    (problem,) = validate_manifests([d])
    assert "spec.replicas" in problem and "integer" in problem
    d = deployment()
    d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = [80]
    assert len(validate_manifests([d])) == 1


def test_missing_required_field_fails():
    d = deployment()
    del d["spec"]["selector"]
    (problem,) = validate_manifests([d])
    assert "selector" in problem


def test_every_object_is_reported_by_name():
    good, bad = deployment(), deployment()
    bad["metadata"]["name"] = "broken"
    bad["spec"]["paused"] = "yes"
    problems = validate_manifests([good, bad, None])
    assert len(problems) == 1 and problems[0].startswith("Deployment/broken:")


def test_default_version_is_supported_and_current():
    assert k8stools.DEFAULT_K8S_VERSION in k8stools.SUPPORTED_K8S_VERSIONS
    major_minor = [tuple(map(int, v.split("."))) for v in k8stools.SUPPORTED_K8S_VERSIONS]
    assert tuple(map(int, k8stools.DEFAULT_K8S_VERSION.split("."))) >= (1, 30)
    assert major_minor == sorted(major_minor)


def test_unknown_kind_without_crd_is_an_error():
    (problem,) = validate_manifests([{"apiVersion": "example.dev/v1alpha1", "kind": "Thing",
                                      "metadata": {"name": "x"}}])
    assert "no schema" in problem


# ----------------------------------------------------------------------------- custom resources (offline)


def crd():
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.dev"},
        "spec": {
            "group": "example.dev", "scope": "Namespaced",
            "names": {"plural": "things", "singular": "thing", "kind": "Thing", "listKind": "ThingList"},
            "versions": [{
                "name": "v1alpha1", "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {"type": "object", "properties": {
                        "replicas": {"type": "integer", "minimum": 0}}}}}},
            }],
        },
    }


def thing(**spec):
    return {"apiVersion": "example.dev/v1alpha1", "kind": "Thing", "metadata": {"name": "t", "namespace": "default"},
            "spec": spec}


def test_custom_resources_of_a_declared_kind_are_not_validated_offline():
    bad = thing(replicas=-1, unknownField=1)  # only a real API server would refuse it
    assert validate_manifests([bad], crds=[crd()]) == []
    assert validate_manifests([crd(), bad]) == []
    # another version of the group is not declared
    other = {**bad, "apiVersion": "example.dev/v1"}
    (problem,) = validate_manifests([crd(), other])
    assert problem.startswith("Thing/t:") and "no schema" in problem


def test_crd_objects_themselves_are_validated_as_built_in_objects():
    assert validate_manifests([crd()]) == []
    typo = crd()
    typo["spec"]["versions"][0]["servd"] = True
    (problem,) = validate_manifests([typo])
    assert problem.startswith("CustomResourceDefinition/things.example.dev:") and "servd" in problem


def test_floor_lint_knows_only_the_fields_of_that_release():
    """A field newer than the floor is an error for the floor: that is what the floor lint is for."""
    d = deployment()
    # Pod-level resources (spec.resources): alpha in 1.32, not in 1.31's schema
    d["spec"]["template"]["spec"]["resources"] = {"limits": {"cpu": "1"}}
    assert validate_manifests([d], k8s_version=k8stools.SUPPORTED_K8S_VERSIONS[-1]) == []
    (problem,) = validate_manifests([d], k8s_version="1.31")
    assert "resources" in problem


def test_kube_version_floor_comes_from_chart_yaml(monkeypatch, tmp_path):
    assert k8stools.kube_version_floor() in k8stools.SUPPORTED_K8S_VERSIONS
    chart = tmp_path / "deploy" / "charts" / "octavia-operator" / "Chart.yaml"
    chart.parent.mkdir(parents=True)
    monkeypatch.setattr(k8stools, "REPO_ROOT", tmp_path)
    chart.write_text('kubeVersion: ">=1.33.0-0"\n')
    assert k8stools.kube_version_floor() == "1.33"
    chart.write_text('kubeVersion: "1.33.x"\n')
    with pytest.raises(ValueError):
        k8stools.kube_version_floor()


# ----------------------------------------------------------------------------- the real API server


@pytest.mark.kube
def test_server_dry_run_admits_a_valid_object_and_stores_nothing(kube_cluster, kube_namespace):
    d = deployment()
    assert server_dry_run(kube_cluster, [d], kube_namespace) == []
    assert kube_cluster.admin.get("apps/v1", "Deployment", "web", kube_namespace) is None
    assert d["metadata"]["namespace"] == "default"  # the caller's object is not modified


@pytest.mark.kube
def test_server_dry_run_is_strict_about_unknown_fields(kube_cluster, kube_namespace):
    d = deployment()
    d["spec"]["template"]["spec"]["hostNetwrok"] = True
    (problem,) = server_dry_run(kube_cluster, [d], kube_namespace)
    assert problem.startswith("Deployment/web: 400 BadRequest:")
    assert 'unknown field "spec.template.spec.hostNetwrok"' in problem


@pytest.mark.kube
def test_server_dry_run_reports_every_refusal_with_its_causes(kube_cluster, kube_namespace):
    good, bad = deployment(), deployment()
    bad["metadata"]["name"] = "broken"
    bad["spec"]["replicas"] = -2
    bad["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    problems = server_dry_run(kube_cluster, [good, None, bad], kube_namespace)
    assert len(problems) == 1, problems
    assert problems[0].startswith("Deployment/broken: 422 Invalid:")
    assert "spec.replicas" in problems[0] and "spec.template.metadata.labels" in problems[0]


@pytest.mark.kube
def test_server_dry_run_namespaces(kube_cluster, kube_namespace):
    d = deployment()
    d["metadata"]["namespace"] = "does-not-exist"
    (problem,) = server_dry_run(kube_cluster, [d])  # the object's own namespace
    assert problem.startswith("Deployment/web: 404 NotFound:") and "does-not-exist" in problem
    assert server_dry_run(kube_cluster, [d], kube_namespace) == []  # replaced by the given one
    # a cluster-scoped object keeps no namespace
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": f"dry-run-{kube_namespace}"}, "rules": []}
    assert server_dry_run(kube_cluster, [role], kube_namespace) == []


@pytest.mark.kube
def test_server_dry_run_create_or_apply(kube_cluster, kube_namespace):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": kube_namespace},
          "data": {"a": "1"}}
    kube_cluster.admin.create(cm)
    (problem,) = server_dry_run(kube_cluster, [cm])
    assert problem.startswith("ConfigMap/c: 409 AlreadyExists:")
    changed = {**cm, "data": {"a": "2"}}
    assert server_dry_run(kube_cluster, [changed], apply=True) == []
    assert kube_cluster.admin.get("v1", "ConfigMap", "c", kube_namespace)["data"] == {"a": "1"}
    changed["datta"] = {}
    (problem,) = server_dry_run(kube_cluster, [changed], apply=True)
    # (kube-apiserver 1.36 answers an apply with an unknown field with 500, not 400: still a refusal)
    assert problem.startswith("ConfigMap/c: ") and ".datta: field not declared in schema" in problem


@pytest.mark.kube
def test_server_dry_run_validates_custom_resources_with_their_crd(kube_cluster, kube_namespace):
    obj = {"apiVersion": "octavia-operator.dev/v1alpha1", "kind": "OctaviaDeployment",
           "metadata": {"name": "o"}, "spec": {"cloud": {"credentialsSecret": {"name": "c"}}}}
    assert server_dry_run(kube_cluster, [obj], kube_namespace) == []
    obj["spec"]["amphora"] = {"topology": "TRIPLE"}
    (problem,) = server_dry_run(kube_cluster, [obj], kube_namespace)
    assert problem.startswith("OctaviaDeployment/o: 422 Invalid:") and 'Unsupported value: "TRIPLE"' in problem


@pytest.mark.kube
def test_server_dry_run_reports_kinds_the_server_does_not_serve(kube_cluster):
    (problem,) = server_dry_run(kube_cluster, [thing(replicas=1)])
    assert problem.startswith("Thing/t: not served by this API server")
    (problem,) = server_dry_run(kube_cluster, [{**deployment(), "kind": "Deploymnet"}])
    assert problem.startswith("Deploymnet/web: not served by this API server")


# ----------------------------------------------------------------------------- helm


def test_helm_binary_skips_or_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(k8stools, "REPO_ROOT", tmp_path)
    monkeypatch.delenv("HELM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        k8stools.helm_binary()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        k8stools.helm_binary()
    fake = tmp_path / ".tools" / "bin" / "helm"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert k8stools.helm_binary() == str(fake)


def test_get_helm_script_is_idempotent():
    helm = k8stools.helm_binary()  # skips (fails under CI) until tests/tools/get-helm.sh ran
    if helm != str(k8stools.REPO_ROOT / ".tools" / "bin" / "helm"):
        pytest.skip("helm does not come from tests/tools/get-helm.sh here")
    script = k8stools.REPO_ROOT / "tests" / "tools" / "get-helm.sh"
    # a second run must not download anything: it only reports the installed version
    res = subprocess.run([str(script)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PATH": "/usr/bin:/bin", "npm_config_offline": "true"})
    assert res.returncode == 0, res.stderr
    assert "already installed" in res.stdout and "v4." in res.stdout
    version = subprocess.run([helm, "version", "--short"], capture_output=True, text=True, timeout=60)
    assert version.stdout.startswith("v4.")
