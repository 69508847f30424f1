"""Tests for tests/k8stools.py: strict offline validation of built-in objects and custom resources."""
import copy
import os
import subprocess

import pytest

import k8stools
from k8stools import crd_to_jsonschema, validate_custom_resource, validate_manifests


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


# ----------------------------------------------------------------------------- custom resources


def crd():
    spec_schema = {
        "type": "object",
        "required": ["cloud"],
        "properties": {
            "cloud": {"type": "object", "required": ["secretName"],
                      "properties": {"secretName": {"type": "string", "minLength": 1},
                                     "region": {"type": "string", "default": "RegionOne"}}},
            "topology": {"type": "string", "enum": ["SINGLE", "ACTIVE_STANDBY"], "default": "SINGLE"},
            "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "format": "int32"},
            "weight": {"type": "integer", "format": "int32"},
            "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
            "port": {"x-kubernetes-int-or-string": True},
            "caBundle": {"type": "string", "nullable": True},
            "config": {"type": "object", "additionalProperties": {
                "type": "object", "additionalProperties": {"type": "string"}}},
            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "empty": {"type": "object"},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "nodes": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                      "items": {"type": "object", "required": ["name"],
                                "properties": {"name": {"type": "string"}, "hostID": {"type": "string"}}}},
            "network": {"type": "object",
                        "properties": {"cidr": {"type": "string"}, "poolStart": {"type": "string"}},
                        "x-kubernetes-validations": [
                            {"rule": "!has(self.poolStart) || cidr(self.cidr).containsIP(self.poolStart)",
                             "message": "pool outside CIDR"}]},
            "since": {"type": "string", "format": "date-time"},
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.dev"},
        "spec": {
            "group": "example.dev", "scope": "Namespaced",
            "names": {"plural": "things", "singular": "thing", "kind": "Thing", "listKind": "ThingList"},
            "versions": [{
                "name": "v1alpha1", "served": True, "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                   "metadata": {"type": "object"}, "spec": spec_schema,
                                   "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                    "required": ["spec"]}},
            }],
        },
    }


def thing(**spec):
    spec.setdefault("cloud", {"secretName": "cloud"})
    return {"apiVersion": "example.dev/v1alpha1", "kind": "Thing",
            "metadata": {"name": "t", "namespace": "ns", "labels": {"a": "b"}}, "spec": spec}


def test_valid_custom_resource_passes():
    full = thing(topology="ACTIVE_STANDBY", replicas=3, ratio=0.5, port="https", caBundle=None,
                 config={"DEFAULT": {"debug": "true"}}, extra={"anything": {"goes": [1]}}, empty={},
                 tags=["a", "b"], nodes=[{"name": "n1", "hostID": "h1"}, {"name": "n2"}],
                 network={"cidr": "10.0.0.0/24", "poolStart": "10.0.0.5"}, since="2026-01-01T00:00:00Z")
    assert validate_custom_resource(crd(), full) == []
    assert validate_custom_resource(crd(), thing(port=443)) == []
    # ... and through validate_manifests, with the CRD given or in the same list
    assert validate_manifests([full], crds=[crd()]) == []
    assert validate_manifests([crd(), full]) == []


@pytest.mark.parametrize("spec_patch, expected", [
    ({"unknownField": 1}, "unknownField"),                                  # unknown field: rejected
    ({"cloud": {"secretName": "c", "regoin": "x"}}, "regoin"),               # nested misspelling
    ({"empty": {"x": 1}}, "spec.empty"),                                    # object with no fields
    ({"nodes": [{"name": "a", "hostId": "x"}]}, "hostId"),                  # unknown field in list item
    ({"topology": "TRIPLE"}, "TRIPLE"),                                     # enum
    ({"replicas": -1}, "spec.replicas"),                                    # minimum
    ({"replicas": 11}, "spec.replicas"),                                    # maximum
    ({"replicas": "3"}, "spec.replicas"),                                   # type
    ({"weight": 2**40}, "int32"),                                          # int32
    ({"ratio": 0}, "spec.ratio"),                                           # exclusiveMinimum (bool)
    ({"port": 1.5}, "spec.port"),                                           # int-or-string
    ({"caBundle": 5}, "spec.caBundle"),
    ({"cloud": {}}, "secretName"),                                          # required
    ({"cloud": {"secretName": ""}}, "spec.cloud.secretName"),               # minLength
    ({"config": {"DEFAULT": {"debug": True}}}, "spec.config.DEFAULT.debug"),  # additionalProperties type
    ({"tags": ["a", "a"]}, "spec.tags"),                                    # list-type set
    ({"nodes": [{"name": "a"}, {"name": "a"}]}, "duplicate"),               # list-type map
    ({"since": "yesterday"}, "spec.since"),                                 # date-time format
    ({"network": {"cidr": "10.0.0.0/24", "poolStart": "10.0.1.5"}}, "pool outside CIDR"),  # CEL
])
def test_invalid_custom_resource_fails(spec_patch, expected):
    obj = thing(**spec_patch)
    problems = validate_custom_resource(crd(), obj)
    assert len(problems) == 1, problems
    assert expected in problems[0]


def test_custom_resource_root_is_checked():
    obj = thing()
    obj["spex"] = {}
    assert any("spex" in p for p in validate_custom_resource(crd(), obj))
    obj = thing()
    obj["metadata"]["nmae"] = "x"
    assert any("nmae" in p for p in validate_custom_resource(crd(), obj))
    obj = thing()
    obj["apiVersion"] = "example.dev/v1"
    assert any("serves no version" in p for p in validate_custom_resource(crd(), obj))
    obj = thing()
    obj["kind"] = "Other"
    assert validate_custom_resource(crd(), obj) != []
    obj = thing()
    del obj["spec"]
    assert any("spec" in p for p in validate_custom_resource(crd(), obj))


def test_defaults_are_applied_before_validation():
    c = crd()
    props = c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    props["topology"]["default"] = "NOT_IN_ENUM"
    assert any("NOT_IN_ENUM" in p for p in validate_custom_resource(c, thing()))
    # the caller's object is not modified
    obj = thing()
    before = copy.deepcopy(obj)
    validate_custom_resource(crd(), obj)
    assert obj == before


def test_non_strict_mode_allows_unknown_fields():
    assert validate_custom_resource(crd(), thing(unknownField=1), strict=False) == []
    assert validate_custom_resource(crd(), thing(unknownField=1)) != []


def test_cel_can_be_turned_off_and_transition_rules_use_old():
    bad = thing(network={"cidr": "10.0.0.0/24", "poolStart": "10.0.1.5"})
    assert validate_custom_resource(crd(), bad, cel=False) == []
    c = crd()
    props = c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    props["topology"]["x-kubernetes-validations"] = [{"rule": "self == oldSelf", "message": "immutable"}]
    assert validate_custom_resource(c, thing(topology="SINGLE")) == []
    assert validate_custom_resource(c, thing(topology="SINGLE"), old=thing(topology="ACTIVE_STANDBY")) == \
        ["spec.topology: immutable"]


def test_json_schema_conversion():
    js = crd_to_jsonschema(crd())
    spec = js["properties"]["spec"]
    assert spec["additionalProperties"] is False
    assert "additionalProperties" not in spec["properties"]["extra"]          # preserve-unknown-fields
    assert spec["properties"]["caBundle"]["type"] == ["string", "null"]        # nullable
    assert spec["properties"]["port"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert spec["properties"]["ratio"]["exclusiveMinimum"] == 0 and "minimum" not in spec["properties"]["ratio"]
    assert not any(k.startswith("x-kubernetes") for k in _all_keys(js))
    assert js["properties"]["apiVersion"] == {"const": "example.dev/v1alpha1"}
    assert js["properties"]["kind"] == {"const": "Thing"}


def _all_keys(node):
    if isinstance(node, dict):
        for k, v in node.items():
            yield k
            if k not in ("properties",):
                yield from _all_keys(v)
            else:
                for sub in v.values():
                    yield from _all_keys(sub)
    elif isinstance(node, list):
        for v in node:
            yield from _all_keys(v)


def test_crd_itself_is_validated():
    assert validate_manifests([crd()]) == []
    bad = crd()
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["network"][
        "x-kubernetes-validations"].append({"rule": "isIPv9(self.cidr)"})
    bad["metadata"]["name"] = "wrong.example.dev"
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["since"][
        "exclusiveMinimum"] = 3
    problems = validate_manifests([bad])
    assert len(problems) == 4, problems  # name, CEL, exclusiveMinimum (schema + structural check)
    text = "\n".join(problems)
    assert "metadata.name must be things.example.dev" in text and "isIPv9" in text
    typo = crd()
    typo["spec"]["versions"][0]["servd"] = True
    assert any("servd" in p for p in validate_manifests([typo]))


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
