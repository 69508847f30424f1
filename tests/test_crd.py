"""The OctaviaDeployment API: CRD file, schema, CEL rules and the operator's own validation.

Every invalid resource is checked by the API-server layers (structural schema via jsonschema,
CEL via tests/celk8s.py) AND by the operator's pydantic model, which must agree: the CEL
rules and the Python validators are two copies of the same rules.
"""
from __future__ import annotations

import copy
import pathlib

import pydantic
import pytest
import yaml

import celk8s
import k8stools
from octavia_operator import crd as crdmod
from octavia_operator.spec import parse_spec

ROOT = pathlib.Path(__file__).resolve().parents[1]
CRD_PATH = ROOT / "deploy" / "crds" / crdmod.CRD_FILE
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml")) + [ROOT / "octavia.yaml"]


@pytest.fixture(scope="module")
def crd():
    return yaml.safe_load(CRD_PATH.read_text())


def minimal() -> dict:
    return {"apiVersion": "octavia-operator.dev/v1alpha1", "kind": "OctaviaDeployment",
            "metadata": {"name": "octavia", "namespace": "openstack"},
            "spec": {"cloud": {"credentialsSecret": {"name": "openstack-admin"}}}}


def api_server_errors(crd: dict, obj: dict) -> list[str]:
    """What the API server would say: schema errors first, then CEL (only on a schema-valid object)."""
    errs = k8stools.validate_custom_resource(crd, obj)
    if errs:
        return errs
    return [f"{e.full_path}: {e.message}" + (f" [{e.error}]" if e.error else "") for e in celk8s.validate(crd, obj)]


def operator_errors(obj: dict) -> list[str]:
    try:
        parse_spec(obj["spec"])
    except pydantic.ValidationError as exc:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    return []


def test_crd_file_is_generated_from_the_model():
    assert CRD_PATH.read_text() == crdmod.dump_crd(), \
        "deploy/crds is stale: run `python -m octavia_operator.crd > deploy/crds/" + crdmod.CRD_FILE + "`"


def test_crd_is_a_valid_apiextensions_v1_crd(crd):
    assert k8stools.validate_manifests([crd]) == []
    assert k8stools.check_crd(crd) == []
    v = crd["spec"]["versions"][0]
    assert v["subresources"] == {"status": {}}
    assert [c["name"] for c in v["additionalPrinterColumns"]][:3] == ["Ready", "Reason", "API"]
    assert crd["spec"]["names"]["shortNames"] == ["octd"]


def test_every_cel_rule_compiles(crd):
    assert celk8s.compile_all(crd) == []


def test_every_field_is_described(crd):
    def walk(node, path):
        for name, child in (node.get("properties") or {}).items():
            assert child.get("description"), f"{path}.{name} has no description"
            walk(child, f"{path}.{name}")
            if isinstance(child.get("items"), dict):
                walk(child["items"], f"{path}.{name}[]")
    walk(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], "")


def test_unbounded_maps_and_lists_carry_limits_for_cel_cost(crd):
    """The API server estimates CEL cost from maxItems/maxProperties/maxLength: rules over
    unbounded collections are rejected at CRD creation."""
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    config = spec["properties"]["config"]
    assert config["maxProperties"] and config["additionalProperties"]["maxProperties"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid(crd, path):
    for obj in yaml.safe_load_all(path.read_text()):
        if obj and obj.get("kind") == "OctaviaDeployment":
            assert api_server_errors(crd, obj) == []
            assert operator_errors(obj) == []


def test_minimal_resource_gets_safe_defaults(crd):
    obj = minimal()
    assert api_server_errors(crd, obj) == []
    spec = parse_spec(obj["spec"])
    assert spec.deletionPolicy == "Retain"
    assert spec.database.mode == "embedded" and spec.messaging.mode == "embedded"
    assert spec.amphora.ssh.enabled is False
    assert spec.amphora.image.tag == "amphora"
    assert spec.managementNetwork.name == "lb-mgmt-net"
    assert spec.healthManager.heartbeatPort == 5555
    assert spec.identity.roles == ["admin"]
    # the API server applies the same defaults (schema defaults come from the same model)
    defaulted = celk8s.apply_defaults(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], copy.deepcopy(obj))
    assert defaulted["spec"]["managementNetwork"]["cidr"] == spec.managementNetwork.cidr
    assert defaulted["spec"]["amphora"]["flavor"]["ramMB"] == spec.amphora.flavor.ramMB
    assert defaulted["spec"]["release"] == spec.release
    assert defaulted["spec"]["hostAgent"]["interfaceName"] == "o-hm0"


def _set(obj: dict, dotted: str, value):
    node = obj["spec"]
    keys = dotted.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    if value is DELETE:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value


DELETE = object()

# (id, {dotted.path: value}, substring expected in the API server's error, substring expected in the operator's)
INVALID = [
    ("bad-cidr", {"managementNetwork.cidr": "172.31.0.0/33"}, "cidr must be a CIDR", "not a CIDR"),
    ("cidr-not-a-cidr", {"managementNetwork.cidr": "lb-mgmt"}, "cidr must be a CIDR", "not a CIDR"),
    ("cidr-host-bits", {"managementNetwork.cidr": "172.31.0.5/24"}, "network address", "host bits"),
    ("pool-outside-cidr", {"managementNetwork.allocationPool": {"start": "172.31.1.10", "end": "172.31.1.20"}},
     "allocationPool must lie inside cidr", "must lie inside cidr"),
    ("pool-start-after-end", {"managementNetwork.allocationPool": {"start": "172.31.0.200", "end": "172.31.0.10"}},
     "start must not be after end", "is after end"),
    ("pool-not-ip", {"managementNetwork.allocationPool": {"start": "a.b.c.d", "end": "172.31.0.10"}},
     "must be an IP address", "allocationPool"),
    ("pool-mixed-family", {"managementNetwork.cidr": "fd00:42::/64",
                           "managementNetwork.allocationPool": {"start": "fd00:42::10", "end": "172.31.0.10"}},
     "same IP family", "same IP family"),
    ("unknown-field", {"amphora.imageTag": "amphora"}, "imageTag", "imageTag"),
    ("unknown-top-field", {"replicas": 3}, "replicas", "replicas"),
    ("wrong-enum-topology", {"amphora.topology": "ACTIVE_ACTIVE"}, "ACTIVE_ACTIVE", "topology"),
    ("wrong-enum-deletion-policy", {"deletionPolicy": "Orphan"}, "Orphan", "deletionPolicy"),
    ("wrong-enum-driver", {"hostAgent.driver": "macvtap"}, "macvtap", "driver"),
    ("unknown-release", {"release": "2023.1"}, "2023.1", "release"),
    ("negative-replicas", {"api.replicas": -1}, "-1", "replicas"),
    ("too-many-replicas", {"worker.replicas": 1000}, "1000", "replicas"),
    ("missing-cloud-secret-name", {"cloud.credentialsSecret": {"key": "clouds.yaml"}}, "name", "name"),
    ("missing-cloud", {"cloud": DELETE}, "cloud", "cloud"),
    ("bad-secret-name", {"cloud.credentialsSecret": {"name": "Not_A_Name"}}, "Not_A_Name", "pattern"),
    ("heartbeat-port-zero", {"healthManager.heartbeatPort": 0}, "0", "heartbeatPort"),
    ("heartbeat-port-too-big", {"healthManager.heartbeatPort": 70000}, "70000", "heartbeatPort"),
    ("two-databases", {"database": {"external": {"connectionSecret": {"name": "db"}}, "embedded": {}}},
     "at most one of external, managed and embedded", "at most one of external, managed and embedded"),
    ("two-messaging", {"messaging": {"external": {"transportURLSecret": {"name": "mq"}}, "embedded": {}}},
     "at most one of external, managed and embedded", "at most one of external, managed and embedded"),
    ("image-url-and-id", {"amphora.image": {"url": "https://x.example/a.qcow2",
                                            "id": "d6d3c84d-685f-4927-85ac-ce7594a14a20"}},
     "at most one of url and id", "at most one of url and id"),
    ("image-url-not-http", {"amphora.image": {"url": "ftp://x.example/a.qcow2"}}, "http(s) URL", "http(s) URL"),
    ("checksum-without-url", {"amphora.image": {"checksum": "md5:" + "0" * 32}}, "checksum needs url",
     "checksum needs url"),
    ("bad-checksum", {"amphora.image": {"url": "https://x.example/a", "checksum": "sha1:abc"}}, "sha1:abc",
     "checksum"),
    ("bad-endpoint-url", {"identity.endpoints": {"public": "octavia.example.com:9876"}}, "http(s) URL",
     "http(s) URL"),
    ("renew-window-too-long", {"certificates": {"clientValidityDays": 30, "renewBeforeDays": 30}},
     "renewBeforeDays must be less than clientValidityDays", "renewBeforeDays must be less than"),
    ("one-user-ca-only", {"certificates": {"serverCASecret": "my-server-ca"}},
     "both serverCASecret and clientCASecret", "both serverCASecret and clientCASecret"),
    ("same-ca-for-both-roles", {"certificates": {"serverCASecret": "my-ca", "clientCASecret": "my-ca"}},
     "must be different Secrets", "must be different Secrets"),
    ("small-ca-key", {"certificates": {"caKeySize": 1024}}, "1024", "caKeySize"),
    ("secret-in-config", {"config": {"database": {"connection": "mysql+pymysql://u:p@h/o"}}},
     "secret options", "secret option"),
    ("heartbeat-key-in-config", {"config": {"health_manager": {"heartbeat_key": "insecure"}}},
     "secret options", "secret option"),
    ("bad-config-section-name", {"config": {"controller worker": {"a": "b"}}}, "keys must match", "pattern"),
    ("interface-name-too-long", {"hostAgent.interfaceName": "o-hm0-far-too-long-name"}, "o-hm0-far-too-long-name",
     "interfaceName"),
    ("flavor-ram-too-small", {"amphora.flavor": {"ramMB": 64}}, "64", "ramMB"),
    ("bad-network-id", {"managementNetwork.networkId": "not-a-uuid"}, "not-a-uuid", "networkId"),
    ("bad-quantity", {"api.resources": {"limits": {"memory": "lots"}}}, "lots", "memory"),
    ("roles-empty", {"identity.roles": []}, "roles", "roles"),
]


@pytest.mark.parametrize("case_id,changes,api_expect,op_expect", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_resources_are_rejected_by_both_layers(crd, case_id, changes, api_expect, op_expect):
    obj = minimal()
    for path, value in changes.items():
        _set(obj, path, copy.deepcopy(value))
    api = api_server_errors(crd, obj)
    assert api, f"{case_id}: the API server would accept it"
    assert any(api_expect in e for e in api), f"{case_id}: wrong reason: {api}"
    op = operator_errors(obj)
    assert op, f"{case_id}: the operator's validation accepts what the API server rejects"
    assert any(op_expect in e for e in op), f"{case_id}: wrong operator reason: {op}"


def test_there_are_at_least_twenty_invalid_cases():
    assert len(INVALID) >= 20


def test_cel_and_python_agree_on_valid_edge_cases(crd):
    """Edge cases that are valid: both layers accept them (guards against over-strict rules)."""
    cases = [
        {"managementNetwork.cidr": "fd00:42::/64",
         "managementNetwork.allocationPool": {"start": "fd00:42::10", "end": "fd00:42::ff"}},
        {"managementNetwork.allocationPool": {"start": "172.31.0.10", "end": "172.31.0.10"}},
        {"managementNetwork.cidr": "10.0.0.0/8", "managementNetwork.allocationPool": {"start": "10.0.1.0",
                                                                                       "end": "10.255.0.1"}},
        {"certificates": {"serverCASecret": "a-ca", "clientCASecret": "b-ca"}},
        {"config": {"DEFAULT": {"debug": "true"}, "api_settings": {"allow_tls_terminated_listeners": "False"}}},
        {"database": {"managed": {"host": "db", "adminSecret": {"name": "root", "key": "password"}}}},
        {"api.resources": {"requests": {"cpu": 1, "memory": "1Gi"}}},
    ]
    for changes in cases:
        obj = minimal()
        for path, value in changes.items():
            _set(obj, path, copy.deepcopy(value))
        assert api_server_errors(crd, obj) == [], changes
        assert operator_errors(obj) == [], changes
