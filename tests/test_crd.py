"""The OctaviaDeployment API: CRD file, schema, CEL rules and the operator's own validation.

The API-server side runs on a REAL kube-apiserver (``kube_cluster``, tests/kube): the CRD that
deploy/operator.yaml installed must be Established, the CRD generated from the current model must
be accepted (server-side apply and create, ``dryRun=All``), and every resource is sent with
``dryRun=All`` and ``fieldValidation=Strict`` (what kubectl does by default), so the structural
schema, unknown fields, CEL rules and defaulting are the API server's own. Every invalid resource
must be refused by the API server AND by the operator's pydantic model, each for the case's own
reason: the CEL rules and the Python validators are two copies of the same rules.
"""
from __future__ import annotations

import copy
import pathlib
import uuid

import pydantic
import pytest
import yaml

import k8stools
from kube.cluster import ApiError
from kube.plugin import release_namespace
from octavia_operator import crd as crdmod
from octavia_operator.spec import parse_spec

ROOT = pathlib.Path(__file__).resolve().parents[1]
CRD_PATH = ROOT / "deploy" / "crds" / crdmod.CRD_FILE
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml")) + [ROOT / "octavia.yaml"]
CRD_API = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
DRY_RUN = {"dryRun": "All", "fieldValidation": "Strict"}


@pytest.fixture(scope="module")
def crd():
    return yaml.safe_load(CRD_PATH.read_text())


@pytest.fixture(scope="module")
def namespace(kube_cluster):
    """One namespace for the module's dry runs (a dry-run create needs an existing namespace)."""
    name = f"test-crd-{uuid.uuid4().hex[:5]}"
    kube_cluster.add_namespace(name)
    yield name
    release_namespace(kube_cluster, name)


def minimal() -> dict:
    return {"apiVersion": "octavia-operator.dev/v1alpha1", "kind": "OctaviaDeployment",
            "metadata": {"name": "octavia", "namespace": "openstack"},
            "spec": {"cloud": {"credentialsSecret": {"name": "openstack-admin"}}}}


def api_server_errors(cluster, namespace: str, obj: dict) -> list[str]:
    """What the real API server says to a dry-run create (strict field validation) of ``obj``."""
    return k8stools.server_dry_run(cluster, [obj], namespace)


def operator_errors(obj: dict) -> list[str]:
    try:
        parse_spec(obj["spec"])
    except pydantic.ValidationError as exc:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    return []


# ----------------------------------------------------------------------------- offline: the file


def test_crd_file_is_generated_from_the_model():
    assert CRD_PATH.read_text() == crdmod.dump_crd(), \
        "deploy/crds is stale: run `python -m octavia_operator.crd > deploy/crds/" + crdmod.CRD_FILE + "`"


def test_crd_shape(crd):
    v = crd["spec"]["versions"][0]
    assert v["subresources"] == {"status": {}}
    assert [c["name"] for c in v["additionalPrinterColumns"]][:3] == ["Ready", "Reason", "API"]
    assert crd["spec"]["names"]["shortNames"] == ["octd"]


def test_every_field_is_described(crd):
    def walk(node, path):
        for name, child in (node.get("properties") or {}).items():
            if path == "" and name == "metadata":  # ObjectMeta: Kubernetes documents it (the model keeps it bare)
                continue
            assert child.get("description"), f"{path}.{name} has no description"
            walk(child, f"{path}.{name}")
            if isinstance(child.get("items"), dict):
                walk(child["items"], f"{path}.{name}[]")
    walk(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], "")


def test_unbounded_maps_and_lists_carry_limits_for_cel_cost(crd):
    """The API server estimates CEL cost from maxItems/maxProperties/maxLength: rules over
    unbounded collections are rejected at CRD creation (the real server accepting the CRD, below,
    proves the whole estimate; this names the limits the config rules depend on)."""
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    config = spec["properties"]["config"]
    assert config["maxProperties"] and config["additionalProperties"]["maxProperties"]


# ----------------------------------------------------------------------------- the real API server: the CRD


@pytest.mark.kube
def test_installed_crd_is_established_with_its_names(kube_cluster, crd):
    """deploy/operator.yaml's CRD was accepted (every CEL rule compiled, within the cost budget) and serves."""
    live = kube_cluster.admin.get(*CRD_API, crdmod.CRD_NAME)
    assert live, f"{crdmod.CRD_NAME} is not installed"
    conditions = {c["type"]: c["status"] for c in live["status"]["conditions"]}
    assert conditions.get("Established") == "True", conditions
    assert conditions.get("NamesAccepted") == "True", conditions
    assert "octd" in live["status"]["acceptedNames"]["shortNames"]
    assert live["status"]["acceptedNames"]["kind"] == "OctaviaDeployment"
    # the installed CRD is the committed one (deploy/operator.yaml is in sync with deploy/crds)
    assert live["spec"]["versions"][0]["schema"] == crd["spec"]["versions"][0]["schema"]
    # and it serves: the short name resolves through discovery
    assert kube_cluster.api.resolve("octd") == ("octavia-operator.dev/v1alpha1", "OctaviaDeployment")


@pytest.mark.kube
def test_generated_crd_is_accepted_as_an_upgrade(kube_cluster):
    """The CRD of the current model (not just the committed file), server-side applied over the installed one."""
    assert k8stools.server_dry_run(kube_cluster, [crdmod.build_crd()], apply=True) == []


@pytest.mark.kube
def test_generated_crd_is_accepted_as_a_new_crd(kube_cluster):
    """A create validates everything afresh (an update tolerates CEL rules the stored CRD already had):
    the same CRD under another group, created with dryRun=All."""
    new = crdmod.build_crd()
    group = "dry-run.octavia-operator.dev"
    new["spec"]["group"] = group
    new["metadata"]["name"] = f"{new['spec']['names']['plural']}.{group}"
    assert k8stools.server_dry_run(kube_cluster, [new]) == []


@pytest.mark.kube
def test_a_broken_crd_is_refused(kube_cluster):
    """The CRD checks can fail: a CEL rule that does not compile is refused by the server."""
    bad = crdmod.build_crd()
    spec = bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec.setdefault("x-kubernetes-validations", []).append({"rule": "isIPv9(self.release)", "message": "x"})
    (problem,) = k8stools.server_dry_run(kube_cluster, [bad], apply=True)
    assert problem.startswith("CustomResourceDefinition/") and " 422 " in problem and "isIPv9" in problem


# ----------------------------------------------------------------------------- valid resources


@pytest.mark.kube
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid(kube_cluster, namespace, path):
    resources = [o for o in yaml.safe_load_all(path.read_text()) if o and o.get("kind") == "OctaviaDeployment"]
    assert resources, f"{path.name} holds no OctaviaDeployment"
    for obj in resources:
        assert api_server_errors(kube_cluster, namespace, obj) == []
        assert operator_errors(obj) == []


@pytest.mark.kube
def test_minimal_resource_gets_the_models_defaults(kube_cluster, namespace):
    obj = minimal()
    obj["metadata"]["namespace"] = namespace
    served = kube_cluster.admin.request(
        "POST", kube_cluster.admin.path(obj["apiVersion"], obj["kind"], namespace), obj, params=DRY_RUN)
    spec = parse_spec(obj["spec"])
    assert spec.deletionPolicy == "Retain"
    assert spec.database.mode == "embedded" and spec.messaging.mode == "embedded"
    assert spec.amphora.ssh.enabled is False
    assert spec.amphora.image.tag == "amphora"
    assert spec.managementNetwork.name == "lb-mgmt-net"
    assert spec.healthManager.heartbeatPort == 5555
    assert spec.identity.roles == ["admin"]
    # the API server applied the same defaults (schema defaults come from the same model)
    got = served["spec"]
    assert got["managementNetwork"]["cidr"] == spec.managementNetwork.cidr == "172.31.0.0/24"
    assert got["amphora"]["flavor"]["ramMB"] == spec.amphora.flavor.ramMB
    assert got["release"] == spec.release
    assert got["hostAgent"]["interfaceName"] == spec.hostAgent.interfaceName == "o-hm0"
    assert got["certificates"]["renewBeforeDays"] == spec.certificates.renewBeforeDays
    assert got["deletionPolicy"] == spec.deletionPolicy
    assert got["healthManager"]["heartbeatPort"] == spec.healthManager.heartbeatPort
    assert got["cloud"]["credentialsSecret"]["key"] == spec.cloud.credentialsSecret.key
    # ... and every other value the server filled in is the model's too
    model = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    leaves = list(_leaves(got))
    assert len(leaves) > 30, leaves
    for path, value in leaves:
        where = "spec." + ".".join(map(str, path))
        assert _at(model, path) == value, f"{where}: server {value!r}, model {_at(model, path)!r}"


def _leaves(node, path=()):
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    else:
        yield path, node


def _at(node, path):
    for k in path:
        if not isinstance(node, dict) or k not in node:
            return "<not in the model>"
        node = node[k]
    return node


VALID_EDGE_CASES = [
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


@pytest.mark.kube
@pytest.mark.parametrize("changes", VALID_EDGE_CASES, ids=[",".join(c) for c in VALID_EDGE_CASES])
def test_both_layers_accept_valid_edge_cases(kube_cluster, namespace, changes):
    """Edge cases that are valid: both layers accept them (guards against over-strict rules)."""
    obj = with_changes(changes)
    assert api_server_errors(kube_cluster, namespace, obj) == [], changes
    assert operator_errors(obj) == [], changes


# ----------------------------------------------------------------------------- invalid resources


def _set(obj: dict, dotted: str, value):
    node = obj["spec"]
    keys = dotted.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    if value is DELETE:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value


def with_changes(changes: dict) -> dict:
    obj = minimal()
    for path, value in changes.items():
        _set(obj, path, value if value is DELETE else copy.deepcopy(value))
    return obj


DELETE = object()

# (id, {dotted.path: value}, substring expected in the API server's refusal (message or causes),
#  substring expected in the operator's error)
INVALID = [
    ("bad-cidr", {"managementNetwork.cidr": "172.31.0.0/33"},
     "spec.managementNetwork.cidr: Invalid value: cidr must be a CIDR", "not a CIDR"),
    ("cidr-not-a-cidr", {"managementNetwork.cidr": "lb-mgmt"},
     "spec.managementNetwork.cidr: Invalid value: cidr must be a CIDR", "not a CIDR"),
    ("cidr-host-bits", {"managementNetwork.cidr": "172.31.0.5/24"},
     "spec.managementNetwork.cidr: Invalid value: cidr must be a network address", "host bits"),
    ("pool-outside-cidr", {"managementNetwork.allocationPool": {"start": "172.31.1.10", "end": "172.31.1.20"}},
     "spec.managementNetwork.allocationPool: Invalid value: allocationPool must lie inside cidr",
     "must lie inside cidr"),
    ("pool-start-after-end", {"managementNetwork.allocationPool": {"start": "172.31.0.200", "end": "172.31.0.10"}},
     "spec.managementNetwork.allocationPool: Invalid value: start must not be after end", "is after end"),
    ("pool-not-ip", {"managementNetwork.allocationPool": {"start": "a.b.c.d", "end": "172.31.0.10"}},
     'spec.managementNetwork.allocationPool.start: Invalid value: "a.b.c.d": must be an IP address',
     "allocationPool"),
    ("pool-mixed-family", {"managementNetwork.cidr": "fd00:42::/64",
                           "managementNetwork.allocationPool": {"start": "fd00:42::10", "end": "172.31.0.10"}},
     "spec.managementNetwork.allocationPool: Invalid value: start and end must be of the same IP family",
     "same IP family"),
    # strict field validation (400): what kubectl does by default
    ("unknown-field", {"amphora.imageTag": "amphora"}, 'unknown field "spec.amphora.imageTag"', "imageTag"),
    ("unknown-top-field", {"replicas": 3}, 'unknown field "spec.replicas"', "replicas"),
    ("wrong-enum-topology", {"amphora.topology": "ACTIVE_ACTIVE"},
     'spec.amphora.topology: Unsupported value: "ACTIVE_ACTIVE"', "topology"),
    ("wrong-enum-deletion-policy", {"deletionPolicy": "Orphan"},
     'spec.deletionPolicy: Unsupported value: "Orphan"', "deletionPolicy"),
    ("wrong-enum-driver", {"hostAgent.driver": "macvtap"},
     'spec.hostAgent.driver: Unsupported value: "macvtap"', "driver"),
    ("unknown-release", {"release": "2023.1"}, 'spec.release: Unsupported value: "2023.1"', "release"),
    ("negative-replicas", {"api.replicas": -1},
     "spec.api.replicas in body should be greater than or equal to 0", "replicas"),
    ("too-many-replicas", {"worker.replicas": 1000},
     "spec.worker.replicas in body should be less than or equal to 64", "replicas"),
    ("missing-cloud-secret-name", {"cloud.credentialsSecret": {"key": "clouds.yaml"}},
     "spec.cloud.credentialsSecret.name: Required value", "name"),
    ("missing-cloud", {"cloud": DELETE}, "spec.cloud: Required value", "cloud"),
    ("bad-secret-name", {"cloud.credentialsSecret": {"name": "Not_A_Name"}},
     'spec.cloud.credentialsSecret.name: Invalid value: "Not_A_Name"', "pattern"),
    ("heartbeat-port-zero", {"healthManager.heartbeatPort": 0},
     "spec.healthManager.heartbeatPort in body should be greater than or equal to 1", "heartbeatPort"),
    ("heartbeat-port-too-big", {"healthManager.heartbeatPort": 70000},
     "spec.healthManager.heartbeatPort in body should be less than or equal to 65535", "heartbeatPort"),
    ("two-databases", {"database": {"external": {"connectionSecret": {"name": "db"}}, "embedded": {}}},
     "spec.database: Invalid value: set at most one of external, managed and embedded",
     "at most one of external, managed and embedded"),
    ("two-messaging", {"messaging": {"external": {"transportURLSecret": {"name": "mq"}}, "embedded": {}}},
     "spec.messaging: Invalid value: set at most one of external, managed and embedded",
     "at most one of external, managed and embedded"),
    ("image-url-and-id", {"amphora.image": {"url": "https://x.example/a.qcow2",
                                            "id": "d6d3c84d-685f-4927-85ac-ce7594a14a20"}},
     "spec.amphora.image: Invalid value: set at most one of url and id", "at most one of url and id"),
    ("image-url-not-http", {"amphora.image": {"url": "ftp://x.example/a.qcow2"}},
     'spec.amphora.image.url: Invalid value: "ftp://x.example/a.qcow2": must be an http(s) URL', "http(s) URL"),
    ("checksum-without-url", {"amphora.image": {"checksum": "md5:" + "0" * 32}},
     "spec.amphora.image.checksum: Invalid value: checksum needs url", "checksum needs url"),
    ("bad-checksum", {"amphora.image": {"url": "https://x.example/a", "checksum": "sha1:abc"}},
     'spec.amphora.image.checksum: Invalid value: "sha1:abc"', "checksum"),
    ("bad-endpoint-url", {"identity.endpoints": {"public": "octavia.example.com:9876"}},
     'spec.identity.endpoints.public: Invalid value: "octavia.example.com:9876": must be an http(s) URL',
     "http(s) URL"),
    ("policy-custom-without-configmap", {"policy": {"rules": "custom"}},
     "spec.policy: Invalid value: configMap is set exactly when rules is custom",
     "configMap is set exactly when rules is custom"),
    ("policy-configmap-without-custom", {"policy": {"configMap": {"name": "my-policy"}}},
     "spec.policy: Invalid value: configMap is set exactly when rules is custom",
     "configMap is set exactly when rules is custom"),
    ("policy-unknown-rules", {"policy": {"rules": "open-bar"}},
     'spec.policy.rules: Unsupported value: "open-bar"', "rules"),
    ("renew-window-too-long", {"certificates": {"clientValidityDays": 30, "renewBeforeDays": 30}},
     "spec.certificates: Invalid value: renewBeforeDays must be less than clientValidityDays",
     "renewBeforeDays must be less than"),
    ("one-user-ca-only", {"certificates": {"serverCASecret": "my-server-ca"}},
     "spec.certificates: Invalid value: give both serverCASecret and clientCASecret",
     "both serverCASecret and clientCASecret"),
    ("same-ca-for-both-roles", {"certificates": {"serverCASecret": "my-ca", "clientCASecret": "my-ca"}},
     "spec.certificates: Invalid value: the server CA and the client CA must be different Secrets",
     "must be different Secrets"),
    ("small-ca-key", {"certificates": {"caKeySize": 1024}},
     "spec.certificates.caKeySize in body should be greater than or equal to 2048", "caKeySize"),
    ("secret-in-config", {"config": {"database": {"connection": "mysql+pymysql://u:p@h/o"}}},
     "spec.config: Invalid value: secret options", "secret option"),
    ("heartbeat-key-in-config", {"config": {"health_manager": {"heartbeat_key": "insecure"}}},
     "spec.config: Invalid value: secret options", "secret option"),
    ("bad-config-section-name", {"config": {"controller worker": {"a": "b"}}},
     "spec.config: Invalid value: keys must match", "pattern"),
    ("interface-name-too-long", {"hostAgent.interfaceName": "o-hm0-far-too-long-name"},
     'spec.hostAgent.interfaceName: Invalid value: "o-hm0-far-too-long-name"', "interfaceName"),
    ("flavor-ram-too-small", {"amphora.flavor": {"ramMB": 64}},
     "spec.amphora.flavor.ramMB in body should be greater than or equal to 256", "ramMB"),
    ("bad-network-id", {"managementNetwork.networkId": "not-a-uuid"},
     'spec.managementNetwork.networkId: Invalid value: "not-a-uuid"', "networkId"),
    ("bad-quantity", {"api.resources": {"limits": {"memory": "lots"}}},
     'spec.api.resources.limits.memory: Invalid value: "lots"', "memory"),
    ("roles-empty", {"identity.roles": []}, "spec.identity.roles in body should have at least 1 items", "roles"),
    ("jobboard-embedded-and-external", {"jobboard": {"enabled": True, "embedded": {},
                                                     "external": {"hosts": ["redis.example"]}}},
     "spec.jobboard: Invalid value: set at most one of embedded and external", "at most one of embedded"),
    ("jobboard-external-db-without-persistence", {"jobboard": {"enabled": True},
                                                  "database": {"external": {"connectionSecret": {"name": "db"}}}},
     "spec: Invalid value: jobboard.enabled with database.external needs jobboard.persistence",
     "needs jobboard.persistence"),
    ("jobboard-sentinel-tls-without-sentinel", {"jobboard": {"enabled": True, "external": {
        "hosts": ["redis.example"], "sentinelTLS": {"caSecret": {"name": "redis-ca"}}}}},
     "spec.jobboard.external.sentinelTLS: Invalid value: sentinelTLS needs sentinel", "sentinelTLS needs sentinel"),
    ("jobboard-two-hosts-without-sentinel", {"jobboard": {"enabled": True, "external": {
        "hosts": ["redis-a.example", "redis-b.example"]}}},
     "spec.jobboard.external.hosts: Invalid value: more than one host needs sentinel",
     "more than one host needs sentinel"),
    ("logging-external-without-targets", {"amphora.logging": {"mode": "External"}},
     "spec.amphora.logging: Invalid value: mode External needs adminTargets or tenantTargets",
     "needs adminTargets or tenantTargets"),
    ("logging-targets-without-external", {"amphora.logging": {"mode": "Receiver", "adminTargets": ["10.0.0.1:514"]}},
     "spec.amphora.logging: Invalid value: adminTargets and tenantTargets are for mode External",
     "are for mode External"),
    ("logging-receiver-over-tcp", {"amphora.logging": {"mode": "Receiver", "protocol": "TCP"}},
     "spec.amphora.logging: Invalid value: the receiver on the health-manager nodes takes UDP",
     "takes UDP"),
    ("logging-no-local-storage-alone", {"amphora.logging": {"mode": "External", "tenantTargets": ["10.0.0.1:514"],
                                                             "disableLocalLogStorage": True}},
     "spec.amphora.logging: Invalid value: disableLocalLogStorage needs forwardAllLogs",
     "disableLocalLogStorage needs forwardAllLogs"),
    ("logging-bracketed-ipv6-target", {"amphora.logging": {"mode": "External", "adminTargets": ["[fd00::5]:514"]}},
     'spec.amphora.logging.adminTargets[0]: Invalid value: "[fd00::5]:514"', "adminTargets"),
    ("providers-default-not-enabled", {"providers": {"enabled": ["amphora"], "default": "ovn"}},
     "spec.providers: Invalid value: default must be one of enabled", "default must be one of enabled"),
    ("providers-ovn-without-settings", {"providers": {"enabled": ["amphora", "ovn"]}},
     "spec.providers: Invalid value: ovn is set exactly when enabled lists ovn", "ovn is set exactly when"),
    ("providers-ovn-settings-not-enabled", {"providers": {"ovn": {"connectionSecret": "ovn-dbs"}}},
     "spec.providers: Invalid value: ovn is set exactly when enabled lists ovn", "ovn is set exactly when"),
    ("providers-twice", {"providers": {"enabled": ["amphora", "amphora"]}},
     "spec.providers.enabled[1]: Duplicate value", "twice"),
    ("providers-unknown", {"providers": {"enabled": ["f5"]}},
     'spec.providers.enabled[0]: Unsupported value: "f5"', "enabled"),
    ("jobboard-expiration-too-short", {"jobboard": {"enabled": True, "expirationSeconds": 1}},
     "spec.jobboard.expirationSeconds in body should be greater than or equal to 5", "expirationSeconds"),
]


@pytest.mark.kube
@pytest.mark.parametrize("case_id,changes,api_expect,op_expect", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_resources_are_rejected_by_both_layers(kube_cluster, namespace, case_id, changes, api_expect,
                                                       op_expect):
    obj = with_changes(changes)  # named "octavia": no case's substring can match the object's name
    try:
        kube_cluster.admin.request("POST", kube_cluster.admin.path(obj["apiVersion"], obj["kind"], namespace),
                                   {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}, params=DRY_RUN)
    except ApiError as e:
        refusal = e
    else:
        pytest.fail(f"{case_id}: the API server admits it")
    status = refusal.body if isinstance(refusal.body, dict) else {}
    texts = [status.get("message", "")] + [
        f"{c.get('field', '')}: {c.get('message', '')}" for c in (status.get("details") or {}).get("causes") or []]
    assert 400 <= refusal.status < 500, f"{case_id}: {refusal}"
    assert any(api_expect in t for t in texts), f"{case_id}: refused for another reason: {texts}"
    # a rule that cannot evaluate (a malformed address reaching ip(), a missing key) is noise for the
    # user next to the field's own message: every rule guards what another rule reports
    assert not [t for t in texts if "evaluating rule" in t or "no such key" in t], f"{case_id}: {texts}"
    op = operator_errors(obj)
    assert op, f"{case_id}: the operator's validation accepts what the API server rejects"
    assert any(op_expect in e for e in op), f"{case_id}: wrong operator reason: {op}"


def test_there_are_at_least_twenty_invalid_cases():
    assert len(INVALID) >= 20
    assert len({c[0] for c in INVALID}) == len(INVALID)
