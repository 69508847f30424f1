"""The real Octavia (PyPI, the default release's series, own venv) accepts the rendered files.

Renders octavia.conf and secrets.conf for a realistic deployment (SSH on, ACTIVE_STANDBY, spec
overrides, a CA bundle, an IPv6 health-manager address, UUIDs from a cloud) with the database URL
of a fresh database on the loopback MariaDB (made by octavia_operator.database), then:
  (a) ``octavia-db-manage upgrade head`` builds Octavia's schema through that URL;
  (b) ``oslo-config-validator`` over Octavia's own option namespaces finds no unknown option in
      either file (and does find a bogus one: negative test), and no rendered option is deprecated;
  (c) oslo.config, loaded by ``octavia.common.config.init`` as every Octavia program does, gives
      back the rendered values, and the secrets come from secrets.conf only.
Needs: tests/octavia_real/install-octavia.sh (fixture octavia_venv) and the loopback cloud's MariaDB.
"""
from __future__ import annotations

import json
import pathlib
import re
import uuid

import pymysql
import pytest

from octavia_operator.builders import config as cfg
from octavia_operator.releases import RELEASES
from octavia_operator.spec import DEFAULT_RELEASE, SECRET_CONFIG_KEYS, parse_spec
from octavia_real.plugin import HERE, OCTAVIA_NAMESPACES

pytestmark = pytest.mark.openstack

PROBE = HERE / "octavia_probe.py"

HM_IPS = {"node-0": "172.31.0.10", "node-1": "172.31.0.11", "node-2": "fd00:31::12"}


def _spec(extra_config: dict | None = None):
    config = {"controller_worker": {"amp_active_retries": "100", "workers": "2"},
              "house_keeping": {"amphora_expiry_age": "3600"},
              "DEFAULT": {"debug": "true"}}
    for section, opts in (extra_config or {}).items():
        config.setdefault(section, {}).update(opts)
    return parse_spec({
        "cloud": {"credentialsSecret": {"name": "cloud"}, "caBundleSecret": {"name": "cloud-ca"},
                  "region": "RegionTwo", "interface": "internal"},
        "amphora": {"ssh": {"enabled": True, "keyName": "octavia-debug"}, "topology": "ACTIVE_STANDBY",
                    "image": {"tag": "amphora-2026"}, "logging": {"mode": "Receiver"}},
        "healthManager": {"heartbeatPort": 5556},
        "identity": {"serviceUser": "octavia-svc", "serviceProject": "service"},
        "config": config,
    })


CLOUD = cfg.CloudValues(
    auth_url="https://keystone.example.test:5000/v3",
    image_owner_id=uuid.uuid4().hex, flavor_id=str(uuid.uuid4()), network_id=str(uuid.uuid4()),
    amphora_secgroup_id=str(uuid.uuid4()), health_manager_ips=HM_IPS)


def _secrets(db_url: str) -> cfg.SecretValues:
    return cfg.SecretValues(
        transport_url="rabbit://octavia:Rabbit-Pa$s@rabbitmq.octavia.svc:5672/",
        database_url=db_url,
        heartbeat_key="Hb-" + uuid.uuid4().hex,
        service_password="Svc-" + uuid.uuid4().hex,
        ca_key_passphrase="Ca-" + uuid.uuid4().hex,
        server_certs_key_passphrase=uuid.uuid4().hex,       # 32 characters, as Octavia requires
    )


@pytest.fixture
def rendered(tmp_path: pathlib.Path, octavia_db: dict):
    spec = _spec()
    secrets = _secrets(octavia_db["url"])
    conf = tmp_path / "octavia.conf"
    sec = tmp_path / "secrets.conf"
    conf.write_text(cfg.render_octavia_conf(spec, CLOUD))
    sec.write_text(cfg.render_secrets_conf(secrets))
    return {"conf": conf, "secrets_conf": sec, "secrets": secrets, "spec": spec, "db": octavia_db}


def test_default_release_is_the_installed_octavia(octavia_run):
    out = octavia_run(["python", "-c", "import importlib.metadata as m; print(m.version('octavia'))"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(".")[0] == RELEASES[DEFAULT_RELEASE].octavia_version, out.stdout


def test_db_manage_upgrade_head_builds_the_schema(rendered, octavia_run):
    db = rendered["db"]
    out = octavia_run(["octavia-db-manage", "--config-file", str(rendered["conf"]),
                       "--config-file", str(rendered["secrets_conf"]), "upgrade", "head"])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert db["password"] not in out.stdout + out.stderr
    conn = pymysql.connect(host=db["host"], port=db["port"], user=db["user"], password=db["password"],
                           database=db["database"])
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT version_num FROM alembic_version")
            versions = cur.fetchall()
            cur.execute("SHOW TABLES")
            tables = {r[0] for r in cur.fetchall()}
    finally:
        conn.close()
    assert len(versions) == 1 and versions[0][0]
    assert {"load_balancer", "amphora", "listener", "pool", "member", "health_monitor"} <= tables
    # and `current` agrees that the database is at head
    cur_out = octavia_run(["octavia-db-manage", "--config-file", str(rendered["conf"]),
                           "--config-file", str(rendered["secrets_conf"]), "current"])
    assert cur_out.returncode == 0 and "(head)" in cur_out.stdout + cur_out.stderr, cur_out.stderr[-2000:]


def _validate(octavia_run, path: pathlib.Path, extra_namespaces: tuple[str, ...] = ()):
    args = ["oslo-config-validator", "--fatal-warnings", "--input-file", str(path)]
    for ns in OCTAVIA_NAMESPACES + extra_namespaces:
        args += ["--namespace", ns]
    return octavia_run(args)


def _errors(out) -> list[str]:
    return re.findall(r"ERROR:oslo_config.validator:(\S+) is not part of the sample config", out.stderr)


def test_validator_finds_no_unknown_option(rendered, octavia_run):
    for path in (rendered["conf"], rendered["secrets_conf"]):
        out = _validate(octavia_run, path)
        assert out.returncode == 0 and _errors(out) == [], (path.name, _errors(out), out.stderr[-3000:])


def test_validator_catches_a_bogus_option(tmp_path, octavia_run):
    spec = _spec({"controller_worker": {"amp_bogus_retries": "3"}, "bogus_section": {"x": "1"}})
    path = tmp_path / "octavia.conf"
    path.write_text(cfg.render_octavia_conf(spec, CLOUD))
    out = _validate(octavia_run, path)
    assert out.returncode != 0
    assert set(_errors(out)) == {"controller_worker/amp_bogus_retries", "bogus_section/x"}, out.stderr[-3000:]
    sec = tmp_path / "secrets.conf"
    sec.write_text(cfg.render_secrets_conf(_secrets("mysql+pymysql://u:p@h/octavia")) + "\n[database]\nconection = x\n")
    out = _validate(octavia_run, sec)
    assert out.returncode != 0 and _errors(out) == ["database/conection"], out.stderr[-3000:]


def _probe(octavia_run, *files: pathlib.Path) -> dict:
    out = octavia_run(["python", str(PROBE), *map(str, files)],
                      env={"SECRET_KEYS": json.dumps([list(k) for k in SECRET_CONFIG_KEYS])})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_oslo_config_reads_back_what_was_rendered(rendered, octavia_run):
    s = rendered["secrets"]
    got = _probe(octavia_run, rendered["conf"], rendered["secrets_conf"])
    assert got["unknown"] == [] and got["deprecated"] == [] and got["errors"] == [], \
        (got["unknown"], got["deprecated"], got["errors"])
    v = got["values"]
    # health manager: the list Octavia hands to the amphorae, IPv6 bracketed, the spec's port
    assert v["health_manager.controller_ip_port_list"] == ["172.31.0.10:5556", "172.31.0.11:5556",
                                                           "[fd00:31::12]:5556"]
    assert v["health_manager.bind_port"] == 5556
    assert v["health_manager.heartbeat_key"] == s.heartbeat_key
    assert v["database.connection"] == rendered["db"]["url"]
    assert v["DEFAULT.transport_url"] == s.transport_url          # the `$` survived (escaped as $$)
    assert v["keystone_authtoken.password"] == v["service_auth.password"] == s.service_password
    assert v["neutron.password"] == s.service_password
    assert v["certificates.ca_private_key_passphrase"] == s.ca_key_passphrase
    assert v["certificates.server_certs_key_passphrase"] == [s.server_certs_key_passphrase]
    # controller worker: IDs from the cloud, topology, ssh key, overrides typed by Octavia
    assert v["controller_worker.amp_boot_network_list"] == [CLOUD.network_id]
    assert v["controller_worker.amp_secgroup_list"] == [CLOUD.amphora_secgroup_id]
    assert v["controller_worker.amp_flavor_id"] == CLOUD.flavor_id
    assert v["controller_worker.amp_image_owner_id"] == CLOUD.image_owner_id
    assert v["controller_worker.amp_image_tag"] == "amphora-2026"
    assert v["controller_worker.amp_ssh_key_name"] == "octavia-debug"
    assert v["controller_worker.loadbalancer_topology"] == "ACTIVE_STANDBY"
    assert v["controller_worker.amp_active_retries"] == 100 and v["controller_worker.workers"] == 2
    assert v["house_keeping.amphora_expiry_age"] == 3600 and v["DEFAULT.debug"] is True
    # log offloading to the receivers beside the health managers: IPv6 unbracketed, as Octavia splits them
    assert v["amphora_agent.admin_log_targets"] == ["172.31.0.10:10514", "172.31.0.11:10514", "fd00:31::12:10514"]
    assert v["amphora_agent.tenant_log_targets"] == ["172.31.0.10:20514", "172.31.0.11:20514", "fd00:31::12:20514"]
    assert v["amphora_agent.log_protocol"] == "UDP" and v["amphora_agent.forward_all_logs"] is False
    # region, interface and CA bundle reach every client Octavia builds
    assert v["nova.region_name"] == v["glance.region_name"] == v["neutron.region_name"] == "RegionTwo"
    assert v["nova.endpoint_type"] == v["glance.endpoint_type"] == "internalURL"
    assert v["neutron.valid_interfaces"] == ["internal"]
    assert v["keystone_authtoken.www_authenticate_uri"] == CLOUD.auth_url
    assert v["service_auth.username"] == "octavia-svc"
    # Neutron: Octavia's KeystoneSession('neutron') finds complete credentials in [neutron] itself
    na = got["neutron_auth"]
    assert na["plugin"] == "Password" and na["password_set"] is True
    assert (na["auth_url"], na["username"], na["project_name"]) == (CLOUD.auth_url, "octavia-svc", "service")
    assert na["cafile"].endswith("ca.crt")


def test_secrets_come_only_from_secrets_conf(rendered, octavia_run):
    s = rendered["secrets"]
    rendered_secrets = {"DEFAULT.transport_url": s.transport_url, "database.connection": rendered["db"]["url"],
                        "health_manager.heartbeat_key": s.heartbeat_key,
                        "keystone_authtoken.password": s.service_password,
                        "service_auth.password": s.service_password, "neutron.password": s.service_password,
                        "certificates.ca_private_key_passphrase": s.ca_key_passphrase,
                        "certificates.server_certs_key_passphrase": [s.server_certs_key_passphrase]}
    empty = rendered["conf"].with_name("empty.conf")
    empty.write_text("")
    defaults = _probe(octavia_run, empty)["secrets"]
    alone = _probe(octavia_run, rendered["conf"])["secrets"]
    only = _probe(octavia_run, rendered["secrets_conf"])["secrets"]
    assert set(rendered_secrets) <= set(alone)
    for key, value in rendered_secrets.items():
        assert alone[key] == defaults[key] != value, (key, alone[key])   # octavia.conf sets none of them
        assert only[key] == value, key
    text = rendered["conf"].read_text()
    for value in (s.heartbeat_key, s.service_password, s.ca_key_passphrase, s.server_certs_key_passphrase,
                  rendered["db"]["password"], "Rabbit-Pa"):
        assert value not in text


def test_probe_reports_deprecated_options(tmp_path, octavia_run):
    """The deprecation check can fail: [neutron] endpoint_type is deprecated since 2023.2."""
    path = tmp_path / "octavia.conf"
    path.write_text(cfg.render_octavia_conf(_spec({"neutron": {"endpoint_type": "internalURL"}}), CLOUD))
    got = _probe(octavia_run, path)
    assert got["deprecated"] == ["neutron.endpoint_type"]


def test_jobboard_options_are_read_as_octavia_reads_them(tmp_path, octavia_run, octavia_db):
    """spec.jobboard (external: Sentinel, ACL users, TLS both ways): every [task_flow] option is one that
    Octavia knows, typed as it types them, and the secret ones come only from secrets.conf."""
    spec = parse_spec({
        "cloud": {"credentialsSecret": {"name": "cloud"}},
        "database": {"external": {"connectionSecret": {"name": "db"}}},
        "jobboard": {"enabled": True, "expirationSeconds": 45, "saveLogbook": True,
                     "persistence": {"connectionSecret": {"name": "persistence"}},
                     "external": {"hosts": ["sentinel-0.redis", "sentinel-1.redis", "fd00::26"], "port": 26379,
                                  "sentinel": "mymaster", "database": 3, "keyPrefix": "octavia_east",
                                  "username": "octavia", "passwordSecret": {"name": "redis", "key": "password"},
                                  "sentinelUsername": "sentinel-user",
                                  "sentinelPasswordSecret": {"name": "redis", "key": "sentinel-password"},
                                  "tls": {"caSecret": {"name": "redis-ca"}, "clientCertificateSecret": "redis-client"},
                                  "sentinelTLS": {"caSecret": {"name": "sentinel-ca"}}}},
    })
    secrets = cfg.SecretValues(**{**_secrets(octavia_db["url"]).__dict__, "persistence_url": octavia_db["url"],
                                  "jobboard_password": "Redis-Pa$s", "jobboard_sentinel_password": "Sentinel-pw"})
    conf, sec = tmp_path / "octavia.conf", tmp_path / "secrets.conf"
    conf.write_text(cfg.render_octavia_conf(spec, CLOUD))
    sec.write_text(cfg.render_secrets_conf(secrets))
    for path in (conf, sec):
        out = _validate(octavia_run, path)
        assert out.returncode == 0 and _errors(out) == [], (path.name, _errors(out), out.stderr[-3000:])
    got = _probe(octavia_run, conf, sec)
    assert got["unknown"] == [] and got["deprecated"] == [] and got["errors"] == [], got
    v = got["values"]
    assert v["task_flow.jobboard_enabled"] is True
    assert v["task_flow.jobboard_backend_driver"] == "redis_taskflow_driver"
    assert v["task_flow.jobboard_backend_hosts"] == ["sentinel-0.redis", "sentinel-1.redis", "fd00::26"]
    assert v["task_flow.jobboard_backend_port"] == 26379
    assert v["task_flow.jobboard_redis_sentinel"] == "mymaster"
    assert v["task_flow.jobboard_redis_backend_db"] == 3
    assert v["task_flow.jobboard_backend_namespace"] == "octavia_east"
    assert v["task_flow.jobboard_backend_username"] == "octavia"
    assert v["task_flow.jobboard_redis_sentinel_username"] == "sentinel-user"
    assert v["task_flow.jobboard_expiration_time"] == 45 and v["task_flow.jobboard_save_logbook"] is True
    assert v["task_flow.jobboard_redis_backend_ssl_options"] == {
        "ssl": "True", "ssl_ca_certs": "/etc/octavia/jobboard-tls/server-ca.crt", "ssl_cert_reqs": "required",
        "ssl_certfile": "/etc/octavia/jobboard-tls/client.crt", "ssl_keyfile": "/etc/octavia/jobboard-tls/client.key"}
    assert v["task_flow.jobboard_redis_sentinel_ssl_options"] == {
        "ssl": "True", "ssl_ca_certs": "/etc/octavia/jobboard-tls/sentinel-ca.crt", "ssl_cert_reqs": "required"}
    assert v["task_flow.jobboard_backend_password"] == "Redis-Pa$s"       # the `$` survived
    assert v["task_flow.jobboard_redis_sentinel_password"] == "Sentinel-pw"
    assert v["task_flow.persistence_connection"] == octavia_db["url"]
    text = conf.read_text()
    assert "Redis-Pa" not in text and "Sentinel-pw" not in text and octavia_db["password"] not in text
    # the persistence database takes taskflow's tables (octavia-db-manage upgrade_persistence)
    out = octavia_run(["octavia-db-manage", "--config-file", str(conf), "--config-file", str(sec),
                       "upgrade_persistence"])
    assert out.returncode == 0, out.stderr[-3000:]


def test_ovn_provider_options_are_the_providers_own(tmp_path, octavia_run):
    """spec.providers with ovn (TLS): [api_settings], [driver_agent] and [ovn] as Octavia and
    ovn-octavia-provider define them (its oslo.config namespace), the connections only in secrets.conf."""
    spec = parse_spec({"cloud": {"credentialsSecret": {"name": "cloud"}},
                       "providers": {"enabled": ["amphora", "ovn"], "default": "ovn",
                                     "ovn": {"connectionSecret": "ovn-dbs", "tlsSecret": "ovn-client"}}})
    secrets = cfg.SecretValues(**{**_secrets("mysql+pymysql://o:p@db/octavia").__dict__,
                                  "ovn_nb_connection": "ssl:10.0.0.5:6641,ssl:10.0.0.6:6641",
                                  "ovn_sb_connection": "ssl:10.0.0.5:6642"})
    conf, sec = tmp_path / "octavia.conf", tmp_path / "secrets.conf"
    conf.write_text(cfg.render_octavia_conf(spec, CLOUD))
    sec.write_text(cfg.render_secrets_conf(secrets))
    for path in (conf, sec):
        out = _validate(octavia_run, path, ("octavia.api.drivers.ovn",))
        assert out.returncode == 0 and _errors(out) == [], (path.name, _errors(out), out.stderr[-3000:])
    parsed = cfg.parse(conf.read_text())
    assert parsed["api_settings"]["enabled_provider_drivers"] == \
        "amphora:The Octavia Amphora driver.,ovn:Octavia OVN driver."
    assert parsed["api_settings"]["default_provider_driver"] == "ovn"
    assert parsed["driver_agent"]["enabled_provider_agents"] == "ovn"
    assert parsed["ovn"]["ovn_sb_ca_cert"] == "/etc/octavia/ovn-tls/ca.crt"
    assert "10.0.0.5" not in conf.read_text() and "ssl:10.0.0.5:6642" in sec.read_text()
