"""Tests of the loopback OpenStack harness (tests/cloud, fixtures in cloud.plugin).

The `openstack`-marked tests really talk to the cloud: they are the quickest way to tell
"the test cloud is broken" from "the code under test is broken". The others check the
plugin's skip / fail / autostart decisions without needing a cloud."""
import os
import pathlib
import subprocess
import sys
import uuid

import pytest

from cloud.plugin import decide, tiny_qcow2

TESTS_DIR = pathlib.Path(__file__).resolve().parent


# ---------------------------------------------------------------- plugin logic, no cloud needed

@pytest.mark.parametrize("reason, ci, autostart, expected", [
    (None, False, False, "ready"),
    (None, True, True, "ready"),
    ("down", False, False, "skip"),
    ("down", True, False, "fail"),
    ("down", False, True, "start"),
    ("down", True, True, "start"),
])
def test_decide(reason, ci, autostart, expected):
    assert decide(reason, ci=ci, autostart=autostart) == expected


def test_unique_name(unique_name):
    assert unique_name.startswith("t-") and len(unique_name) == 10
    int(unique_name[2:], 16)


INNER_TESTS = '''
import pytest

@pytest.mark.openstack
def test_marked_only():
    pass

def test_uses_os_cloud(os_cloud):
    pass

def test_no_cloud_needed():
    pass
'''


def _run_inner_pytest(tmp_path, **env):
    """Run a pytest session in a subprocess with only cloud.plugin loaded (imported as a namespace
    package from tests/), against `OSCLOUD_BASE=tmp_path/none` where no cloud is."""
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    full_env = {k: v for k, v in os.environ.items() if k not in ("CI", "OSCLOUD_AUTOSTART", "PYTEST_ADDOPTS")}
    # no third-party plugins: the inner session must depend on cloud.plugin alone
    full_env.update(PYTHONPATH=str(TESTS_DIR), OSCLOUD_BASE=str(tmp_path / "none"),
                    PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "cloud.plugin", "-p", "no:cacheprovider", "-rA",
         "--strict-markers", str(tmp_path / "test_inner.py")],
        cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=300)


def test_no_cloud_skips_with_reason(tmp_path):
    r = _run_inner_pytest(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed, 2 skipped" in r.stdout, r.stdout
    assert "loopback OpenStack not available: no " in r.stdout
    assert "OSCLOUD_AUTOSTART=1" in r.stdout


def test_no_cloud_fails_in_ci(tmp_path):
    r = _run_inner_pytest(tmp_path, CI="true")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "1 passed, 2 errors" in r.stdout, r.stdout
    assert "CI=true and the loopback OpenStack is not available" in r.stdout
    assert "skipped" not in r.stdout.splitlines()[-1]


# ---------------------------------------------------------------- the real cloud

@pytest.mark.openstack
def test_autostart_failure_is_reported(tmp_path, os_cloud_config):
    """With the cloud running, a second one (other OSCLOUD_BASE) cannot start: ports are taken.
    Autostart must then fail loudly, with the script's explanation, and leave nothing behind."""
    r = _run_inner_pytest(tmp_path, OSCLOUD_AUTOSTART="1")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "1 passed, 2 errors" in r.stdout, r.stdout
    assert "oscloud-up.sh failed" in r.stdout
    assert "already in use" in r.stdout
    assert not (tmp_path / "none" / "run").exists() or not list((tmp_path / "none" / "run").glob("*.pid"))



@pytest.mark.openstack
def test_cloud_config(os_cloud_config):
    assert set(os_cloud_config) >= {"clouds_yaml", "cloud", "auth_url", "region"}
    assert os_cloud_config["cloud"] == "oscloud"
    assert os_cloud_config["auth_url"] == "http://127.0.0.1:5000/v3"
    assert os_cloud_config["region"] == "RegionOne"
    assert pathlib.Path(os_cloud_config["clouds_yaml"]).stat().st_mode & 0o077 == 0


@pytest.mark.openstack
def test_catalog(os_cloud):
    types = {s.type for s in os_cloud.identity.services()}
    assert {"identity", "network", "image", "compute", "load-balancer"} <= types


@pytest.mark.openstack
def test_identity_project_user_role_service_endpoint(os_cloud, unique_name):
    idt = os_cloud.identity
    proj = idt.create_project(name=unique_name, domain_id="default")
    try:
        user = idt.create_user(name=unique_name, password=uuid.uuid4().hex, domain_id="default",
                               default_project_id=proj.id)
        try:
            role = idt.find_role("admin")
            idt.assign_project_role_to_user(proj, user, role)
            assert idt.validate_user_has_project_role(proj, user, role)
        finally:
            idt.delete_user(user)
        svc = idt.create_service(name=unique_name, type=f"x-{unique_name}")
        try:
            ep = idt.create_endpoint(service_id=svc.id, interface="public", url="http://127.0.0.1:19876",
                                     region_id="RegionOne")
            assert idt.get_endpoint(ep.id).url == "http://127.0.0.1:19876"
            idt.delete_endpoint(ep)
        finally:
            idt.delete_service(svc)
    finally:
        idt.delete_project(proj)


@pytest.mark.openstack
def test_fake_agents_are_alive(os_cloud, fake_agent_hosts):
    assert fake_agent_hosts, "FAKE_OVS_AGENT_HOSTS is empty"
    agents = {a.host: a for a in os_cloud.network.agents(agent_type="Open vSwitch agent")}
    for host in fake_agent_hosts:
        assert host in agents, (host, sorted(agents))
        assert agents[host].is_alive and agents[host].is_admin_state_up


@pytest.mark.openstack
def test_health_mgr_port_binds_on_fake_agent_host(os_cloud, unique_name, fake_agent_hosts):
    host = fake_agent_hosts[-1]
    net = os_cloud.network.create_network(name=unique_name)
    try:
        os_cloud.network.create_subnet(network_id=net.id, ip_version=4, cidr="172.31.9.0/24",
                                       allocation_pools=[{"start": "172.31.9.10", "end": "172.31.9.20"}])
        sg = os_cloud.network.create_security_group(name=unique_name)
        try:
            os_cloud.network.create_security_group_rule(
                security_group_id=sg.id, direction="ingress", protocol="udp", port_range_min=5555,
                port_range_max=5555, ethertype="IPv4")
            port = os_cloud.network.create_port(network_id=net.id, name=unique_name,
                                                device_owner="Octavia:health-mgr", binding_host_id=host,
                                                security_group_ids=[sg.id])
            port = os_cloud.network.get_port(port.id)
            assert port.device_owner == "Octavia:health-mgr"
            assert port.binding_host_id == host
            assert port.binding_vif_type == "ovs"
            assert port.fixed_ips[0]["ip_address"].startswith("172.31.9.")
            unbound = os_cloud.network.create_port(network_id=net.id, binding_host_id=f"no-agent-{unique_name}")
            assert os_cloud.network.get_port(unbound.id).binding_vif_type == "binding_failed"
        finally:
            for p in os_cloud.network.ports(network_id=net.id):
                os_cloud.network.delete_port(p)
            os_cloud.network.delete_security_group(sg)
    finally:
        os_cloud.network.delete_network(net)


@pytest.mark.openstack
def test_image_upload_and_find_by_tag(os_cloud, unique_name):
    img = os_cloud.image.create_image(name=unique_name, disk_format="qcow2", container_format="bare",
                                      data=tiny_qcow2(), tags=[unique_name], visibility="private")
    try:
        img = os_cloud.image.get_image(img.id)
        assert img.status == "active"
        assert [i.id for i in os_cloud.image.images(tag=unique_name)] == [img.id]
    finally:
        os_cloud.image.delete_image(img)


@pytest.mark.openstack
def test_flavor_and_keypair(os_cloud, unique_name):
    flv = os_cloud.compute.create_flavor(name=unique_name, ram=1024, vcpus=1, disk=2, is_public=False)
    try:
        kp = os_cloud.compute.create_keypair(name=unique_name)
        try:
            assert os_cloud.compute.get_keypair(unique_name).fingerprint == kp.fingerprint
            assert os_cloud.compute.find_flavor(flv.id).ram == 1024
        finally:
            os_cloud.compute.delete_keypair(kp)
    finally:
        os_cloud.compute.delete_flavor(flv)


@pytest.mark.openstack
def test_load_balancer_api_answers(os_cloud):
    # never create LBs here: without a worker they stay PENDING_CREATE and cannot be deleted
    assert isinstance(list(os_cloud.load_balancer.load_balancers()), list)
    assert "amphora" in {p.name for p in os_cloud.load_balancer.providers()}


@pytest.mark.openstack
def test_os_db_admin_creates_database_and_user(os_db_admin, unique_name):
    import pymysql

    assert os_db_admin["user"] != "os"
    name = unique_name.replace("-", "_")
    password = uuid.uuid4().hex
    admin = pymysql.connect(host=os_db_admin["host"], port=os_db_admin["port"], user=os_db_admin["user"],
                            password=os_db_admin["password"], autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
            cur.execute(f"CREATE USER '{name}'@'127.0.0.1' IDENTIFIED BY %s", (password,))
            cur.execute(f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{name}'@'127.0.0.1'")
        user = pymysql.connect(host=os_db_admin["host"], port=os_db_admin["port"], user=name,
                               password=password, database=name, autocommit=True)
        try:
            with user.cursor() as cur:
                cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))")
                cur.execute("INSERT INTO t VALUES (1, 'ok')")
                cur.execute("SELECT v FROM t")
                assert cur.fetchall() == (("ok",),)
                cur.execute("SHOW DATABASES")
                visible = {r[0] for r in cur.fetchall()}
                assert name in visible and "keystone" not in visible
        finally:
            user.close()
        with pytest.raises(pymysql.err.OperationalError):
            pymysql.connect(host=os_db_admin["host"], port=os_db_admin["port"], user=name,
                            password="wrong", database=name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{name}'@'127.0.0.1'")
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()
