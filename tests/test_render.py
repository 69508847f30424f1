"""`octavia-operator render`: every object it prints is strictly valid Kubernetes, and sane.

Validity is the real API server's word (``kube_cluster``, tests/kube): a dry-run create with strict
field validation of everything rendered, in a fresh namespace. Tests of the pure builders stay offline.
"""
from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import copy

import pytest
import yaml

import k8stools
from octavia_operator.builders import config as cfg
from octavia_operator.cli import render_resource
from octavia_operator.builders import kube
from octavia_operator.spec import SECRET_CONFIG_KEYS, parse_spec

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = [ROOT / "octavia.yaml"] + sorted((ROOT / "examples").glob("*.yaml"))


def operator_cli() -> list[str]:
    exe = shutil.which("octavia-operator", path=str(pathlib.Path(sys.executable).parent))
    assert exe, "the octavia-operator console script is not installed next to this Python"
    return [exe]


def render(path: pathlib.Path) -> list[dict]:
    out = subprocess.run(operator_cli() + ["render", "-f", str(path)], capture_output=True, text=True, check=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module", params=EXAMPLES, ids=lambda p: p.name)
def rendered(request):
    return request.param, render(request.param)


def _resources(path: pathlib.Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "OctaviaDeployment"]


def test_the_cli_prints_what_render_resource_returns(rendered):
    path, objs = rendered
    assert objs == [o for res in _resources(path) for o in render_resource(res)]


def test_no_example_pairs_linuxbridge_with_a_release_whose_neutron_lacks_it():
    """Neutron removed its Linux bridge driver in 2025.1, the oldest release the CRD accepts: an example
    offering `hostAgent.driver: linuxbridge` would offer something no supported release has."""
    for path in EXAMPLES:
        for res in _resources(path):
            spec = parse_spec(res["spec"])
            assert spec.hostAgent.driver == "ovs", f"{path.name}: {res['metadata']['name']} uses linuxbridge"


@pytest.mark.kube
def test_render_output_passes_strict_validation(rendered, kube_cluster, kube_namespace):
    """Every object, rendered into a fresh namespace, is admitted by the real API server (dryRun=All,
    fieldValidation=Strict); the ServiceAccounts and Secrets they name need not exist for that."""
    path, _ = rendered
    objs = []
    for res in _resources(path):
        res = copy.deepcopy(res)
        res["metadata"].pop("namespace", None)
        objs += render_resource(res, kube_namespace)
    assert objs and all(o["metadata"]["namespace"] == kube_namespace for o in objs)
    assert k8stools.server_dry_run(kube_cluster, objs, kube_namespace) == []
    # and the built-in kinds exist with these fields on the chart's oldest Kubernetes (offline lint)
    assert k8stools.validate_manifests(objs, k8s_version=k8stools.kube_version_floor()) == []


@pytest.mark.kube
def test_the_dry_run_refuses_a_broken_rendered_object(kube_cluster, kube_namespace):
    """The check above can fail: the server refuses a rendered Deployment with a misspelled field."""
    res = _resources(ROOT / "octavia.yaml")[0]
    res = {**res, "metadata": {"name": res["metadata"]["name"]}}
    dep = next(o for o in render_resource(res, kube_namespace) if o["kind"] == "Deployment")
    dep["spec"]["template"]["spec"]["hostNetwrok"] = True
    (problem,) = k8stools.server_dry_run(kube_cluster, [dep], kube_namespace)
    assert "hostNetwrok" in problem and ": 400 " in problem


# what cannot be regenerated: outlives the resource under deletionPolicy Retain (no ownerReference)
DURABLE = {"octavia-keystone", "octavia-passphrases", "octavia-certs", "octavia-database", "octavia-messaging",
           "octavia-ssh"}


def test_every_child_is_owned_and_labelled(rendered):
    path, objs = rendered
    policies = {r["metadata"]["name"]: parse_spec(r["spec"]).deletionPolicy for r in _resources(path)}
    for o in objs:
        md = o["metadata"]
        owner = md["labels"]["app.kubernetes.io/instance"]
        durable = o["kind"] == "Secret" and md["name"].replace(owner, "octavia", 1) in DURABLE
        if durable and policies[owner] == "Retain":
            assert "ownerReferences" not in md, md["name"]
            continue
        assert md["ownerReferences"][0]["kind"] == "OctaviaDeployment", md["name"]
        assert md["ownerReferences"][0]["controller"] is True
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
                    "app.kubernetes.io/managed-by", "app.kubernetes.io/part-of"):
            assert key in md["labels"], (md["name"], key)


def test_every_container_states_its_command(rendered):
    _, objs = rendered
    for o in objs:
        tmpl = o.get("spec", {}).get("template")
        if not tmpl or o["kind"] == "StatefulSet":  # the MariaDB/RabbitMQ images' own entrypoints set them up
            continue
        for c in tmpl["spec"]["containers"]:
            assert c.get("command"), (o["metadata"]["name"], c["name"])
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert "ALL" in c["securityContext"]["capabilities"]["drop"]


def test_configmaps_hold_no_secret(rendered):
    _, objs = rendered
    for o in objs:
        if o["kind"] != "ConfigMap":
            continue
        for text in o["data"].values():
            for section, key in SECRET_CONFIG_KEYS:
                assert f"\n{key} =" not in text, (o["metadata"]["name"], section, key)
            assert "<transport_url>" not in text and "<heartbeat_key>" not in text


def test_the_seed_keys_are_in_octavia_conf():
    spec = parse_spec({"cloud": {"credentialsSecret": {"name": "c"}}, "amphora": {"ssh": {"enabled": True}}})
    cloud = cfg.CloudValues(auth_url="http://keystone:5000/v3", image_owner_id="proj-1", flavor_id="flv-1",
                            network_id="net-1", amphora_secgroup_id="sg-1",
                            health_manager_ips={"node-b": "172.31.0.12", "node-a": "172.31.0.11"})
    conf = cfg.parse(cfg.render_octavia_conf(spec, cloud))
    cw = conf["controller_worker"]
    assert cw["amp_image_tag"] == "amphora" and cw["amp_image_owner_id"] == "proj-1"
    assert cw["amp_flavor_id"] == "flv-1" and cw["amp_boot_network_list"] == "net-1"
    assert cw["amp_secgroup_list"] == "sg-1" and cw["amp_ssh_key_name"] == "octavia_ssh_key"
    assert cw["network_driver"] == "allowed_address_pairs_driver"
    assert cw["compute_driver"] == "compute_nova_driver"
    assert cw["amphora_driver"] == "amphora_haproxy_rest_driver"
    hm = conf["health_manager"]
    assert hm["bind_port"] == "5555"
    assert hm["controller_ip_port_list"] == "172.31.0.11:5555, 172.31.0.12:5555"
    assert conf["keystone_authtoken"]["username"] == "octavia"
    assert conf["service_auth"]["project_name"] == "service"
    assert conf["certificates"]["ca_certificate"].endswith("server_ca.cert.pem")
    assert conf["haproxy_amphora"]["client_cert"].endswith("client.cert-and-key.pem")
    assert conf["oslo_messaging"]["topic"] == "octavia_prov"
    for section, key in SECRET_CONFIG_KEYS:
        assert not conf.has_option(section, key) if conf.has_section(section) else True


def test_secrets_conf_has_exactly_the_secret_keys():
    text = cfg.render_secrets_conf(cfg.SecretValues(transport_url="rabbit://u:p@mq:5672/", database_url="mysql+pymysql://o:p@db/octavia",
                                                    heartbeat_key="hk", service_password="pw", ca_key_passphrase="cp",
                                                    server_certs_key_passphrase="x" * 32))
    conf = cfg.parse(text)
    got = {(s, k) for s in conf.sections() for k in conf[s]}
    assert got <= set(SECRET_CONFIG_KEYS)
    assert conf["DEFAULT"]["transport_url"] == "rabbit://u:p@mq:5672/"
    assert conf["certificates"]["server_certs_key_passphrase"] == "x" * 32


def test_ipv6_controller_addresses_are_bracketed():
    spec = parse_spec({"cloud": {"credentialsSecret": {"name": "c"}}})
    cloud = cfg.CloudValues(health_manager_ips={"n": "fd00:42::5"})
    conf = cfg.parse(cfg.render_octavia_conf(spec, cloud))
    assert conf["health_manager"]["controller_ip_port_list"] == "[fd00:42::5]:5555"


def test_overrides_are_merged_last():
    spec = parse_spec({"cloud": {"credentialsSecret": {"name": "c"}},
                       "config": {"controller_worker": {"loadbalancer_topology": "ACTIVE_STANDBY"},
                                  "house_keeping": {"amphora_expiry_age": "3600"}}})
    conf = cfg.parse(cfg.render_octavia_conf(spec, cfg.CloudValues()))
    assert conf["controller_worker"]["loadbalancer_topology"] == "ACTIVE_STANDBY"
    assert conf["house_keeping"]["amphora_expiry_age"] == "3600"


def test_config_change_changes_pod_hash_and_nothing_else_does():
    base = {"cloud": {"credentialsSecret": {"name": "c"}}}
    a = kube.Inputs("o", "ns", "u", parse_spec(base))
    b = kube.Inputs("o", "ns", "u", parse_spec({**base, "config": {"DEFAULT": {"debug": "true"}}}))
    a2 = kube.Inputs("o", "ns", "u", parse_spec(base))
    assert kube.config_hash(a) == kube.config_hash(a2)
    assert kube.config_hash(a) != kube.config_hash(b)
    c = kube.Inputs("o", "ns", "u", parse_spec(base), certs_digest="renewed")
    assert kube.config_hash(a) != kube.config_hash(c)


def test_amphora_talking_services_run_only_where_o_hm0_is_ready():
    inp = kube.Inputs("octavia", "openstack", "u", parse_spec({"cloud": {"credentialsSecret": {"name": "c"}}}))
    objs = {(o["kind"], o["metadata"]["name"]): o for o in kube.build(inp)}
    label = "octavia.openstack.octavia-operator.dev/o-hm0"
    for comp in ("worker", "health-manager", "housekeeping"):
        pod = objs[("Deployment", f"octavia-{comp}")]["spec"]["template"]["spec"]
        assert pod["hostNetwork"] is True
        assert pod["nodeSelector"][label] == "ready"
        assert pod["nodeSelector"]["node-role.kubernetes.io/control-plane"] == ""
    api = objs[("Deployment", "octavia-api")]["spec"]["template"]["spec"]
    assert "hostNetwork" not in api and label not in api.get("nodeSelector", {})
    hm = objs[("Deployment", "octavia-health-manager")]["spec"]["template"]["spec"]["containers"][0]
    assert hm["ports"] == [{"name": "heartbeat", "containerPort": 5555, "hostPort": 5555, "protocol": "UDP"}]


def test_external_database_and_messaging_have_no_embedded_servers():
    objs = render(ROOT / "examples" / "production.yaml")
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objs}
    assert ("StatefulSet", "octavia-mariadb") not in kinds and ("StatefulSet", "octavia-rabbitmq") not in kinds
    assert ("Secret", "octavia-database") not in kinds


def test_render_rejects_an_invalid_resource_with_a_clear_message(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "apiVersion": "octavia-operator.dev/v1alpha1", "kind": "OctaviaDeployment", "metadata": {"name": "x"},
        "spec": {"cloud": {"credentialsSecret": {"name": "c"}},
                 "managementNetwork": {"cidr": "172.31.0.0/24",
                                       "allocationPool": {"start": "10.0.0.1", "end": "10.0.0.9"}}}}))
    res = subprocess.run(operator_cli() + ["render", "-f", str(bad)], capture_output=True, text=True)
    assert res.returncode == 2
    assert "must lie inside cidr" in res.stderr
    assert res.stdout == ""


def test_crd_subcommand_prints_the_crd():
    res = subprocess.run(operator_cli() + ["crd"], capture_output=True, text=True, check=True)
    assert (ROOT / "deploy" / "crds" / "octaviadeployments.octavia-operator.dev.yaml").read_text() == res.stdout


def test_run_subcommand_takes_kopfs_flags():
    res = subprocess.run(operator_cli() + ["run", "--help"], capture_output=True, text=True)
    assert res.returncode == 0
    for flag in ("--all-namespaces", "--namespace", "--standalone", "--liveness", "--lease", "--lease-namespace"):
        assert flag in res.stdout, flag
