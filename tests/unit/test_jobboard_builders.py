"""spec.jobboard in the pure builders: [task_flow], the embedded Valkey, db-sync, the TLS mounts."""
from __future__ import annotations

import base64

from octavia_operator.builders import config as cfg
from octavia_operator.builders import kube as kb
from octavia_operator.releases import images
from octavia_operator.spec import parse_spec

CLOUD = cfg.CloudValues(auth_url="http://keystone:5000/v3", image_owner_id="p", flavor_id="f", network_id="n",
                        amphora_secgroup_id="s", health_manager_ips={"a": "172.31.0.5"})


def _inputs(jobboard: dict, **extra) -> kb.Inputs:
    spec = parse_spec({"cloud": {"credentialsSecret": {"name": "c"}}, "jobboard": jobboard, **extra})
    secrets = cfg.SecretValues(database_url="mysql+pymysql://o:pw@db/octavia",
                               persistence_url="mysql+pymysql://o:pw@db/octavia_persistence",
                               jobboard_password="jb-pw")
    return kb.Inputs("octavia", "ns1", "uid-1", spec, cloud=CLOUD, secrets=secrets)


def test_off_by_default_and_nothing_rendered():
    inp = _inputs({})
    conf = cfg.parse(kb.octavia_conf(inp))
    assert not conf.has_section("task_flow")
    assert not any(o["kind"] == "StatefulSet" and "valkey" in o["metadata"]["name"] for o in kb.build(inp))
    job = kb.db_sync_job(inp, images("2026.1", inp.spec.images), "/bin")
    assert "initContainers" not in job["spec"]["template"]["spec"]


def test_embedded_valkey_config_and_statefulset():
    inp = _inputs({"enabled": True, "expirationSeconds": 12})
    tf = cfg.parse(kb.octavia_conf(inp))["task_flow"]
    assert tf["jobboard_enabled"] == "true" and tf["jobboard_backend_driver"] == "redis_taskflow_driver"
    assert tf["jobboard_backend_hosts"] == "octavia-valkey.ns1.svc" and tf["jobboard_backend_port"] == "6379"
    assert tf["jobboard_expiration_time"] == "12"
    assert "jobboard_backend_password" not in tf and "persistence_connection" not in tf
    sec = cfg.parse(kb.secrets_conf(inp))["task_flow"]
    assert sec["jobboard_backend_password"] == "jb-pw"
    assert sec["persistence_connection"].endswith("/octavia_persistence")
    svc, sts = kb.embedded_valkey(inp, images("2026.1", inp.spec.images))
    pod = sts["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["command"][-1].endswith("/etc/valkey/valkey.conf")
    # the password reaches the server through a Secret-mounted file, never the command line or env values
    assert pod["volumes"][0]["secret"]["secretName"] == "octavia-jobboard"
    assert all("value" not in e for e in c["env"])
    assert "jb-pw" not in repr(sts)
    assert svc["spec"]["clusterIP"] == "None" and sts["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]
    assert "requirepass s3cret" in kb.valkey_conf("s3cret")


def test_db_sync_makes_and_migrates_the_persistence_database():
    inp = _inputs({"enabled": True})
    img = images("2026.1", inp.spec.images)
    job = kb.db_sync_job(inp, img, "/venv/bin")
    init = job["spec"]["template"]["spec"]["initContainers"]
    assert [c["name"] for c in init] == ["persistence-database", "upgrade-persistence"]
    assert init[0]["command"][0] == "/venv/bin/python"
    assert {"name": "DB_ROOT_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "octavia-database",
                                                                      "key": "root-password"}}} in init[0]["env"]
    assert init[1]["command"][-1] == "upgrade_persistence"
    # turning the jobboard on is a new db-sync Job (the persistence schema has to be made)
    off = kb.db_sync_job(_inputs({}), img, "/venv/bin")
    assert off["metadata"]["name"] != job["metadata"]["name"]
    # a managed database: the operator makes the persistence database itself
    managed = _inputs({"enabled": True}, database={"managed": {"host": "db", "adminSecret": {"name": "a", "key": "p"}}})
    init = kb.db_sync_job(managed, img, "/venv/bin")["spec"]["template"]["spec"]["initContainers"]
    assert [c["name"] for c in init] == ["upgrade-persistence"]


def test_external_sentinel_tls_files_are_mounted_where_the_config_says():
    inp = _inputs({"enabled": True, "persistence": {"connectionSecret": {"name": "p"}},
                   "external": {"hosts": ["s0", "s1"], "port": 26379, "sentinel": "mymaster",
                                "tls": {"caSecret": {"name": "ca", "key": "bundle.pem"},
                                        "clientCertificateSecret": "client"},
                                "sentinelTLS": {"caSecret": {"name": "sca"}}}},
                  database={"external": {"connectionSecret": {"name": "db"}}})
    tf = cfg.parse(kb.octavia_conf(inp))["task_flow"]
    assert tf["jobboard_backend_hosts"] == "s0, s1" and tf["jobboard_redis_sentinel"] == "mymaster"
    files = {}
    for opt in ("jobboard_redis_backend_ssl_options", "jobboard_redis_sentinel_ssl_options"):
        for kv in tf[opt].split(","):
            k, v = kv.split(":", 1)
            if k.startswith("ssl_") and v.startswith("/"):
                files[v] = opt
    vols, mounts = kb._octavia_volumes(inp)
    projected = next(v for v in vols if v["name"] == "jobboard-tls")["projected"]["sources"]
    mounted = {f"{kb.n.JOBBOARD_TLS_DIR}/{i['path']}": s["secret"]["name"] for s in projected for i in s["secret"]["items"]}
    assert set(files) == set(mounted)
    assert mounted[f"{kb.n.JOBBOARD_TLS_DIR}/server-ca.crt"] == "ca"
    assert mounted[f"{kb.n.JOBBOARD_TLS_DIR}/client.key"] == "client"
    assert next(m for m in mounts if m["name"] == "jobboard-tls")["mountPath"] == kb.n.JOBBOARD_TLS_DIR
    assert not any("valkey" in o["metadata"]["name"] for o in kb.build(inp))
    placeholders = kb.generated_secret_placeholders(inp)
    assert not any(o["metadata"]["name"] == "octavia-jobboard" for o in placeholders)


def test_embedded_placeholder_secret_listed():
    inp = _inputs({"enabled": True})
    sec = next(o for o in kb.generated_secret_placeholders(inp) if o["metadata"]["name"] == "octavia-jobboard")
    assert base64.b64decode(sec["data"]["password"]) == b"<generated>"

