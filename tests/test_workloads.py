"""Issue 4 end to end: Secrets, ConfigMap, db-sync Job, host agent and the four services, applied by
the real reconcile through the real Kubernetes layer, with the real loopback cloud behind it.

The API server is real (tests/kube): the controllers roll the Deployments out, the StatefulSets
bind the PersistentVolumes the fixture made, the Job runs, and kwok plays the kubelets of the
nodes (pods become Ready, Job pods succeed) while nothing runs inside the pods.
"""
from __future__ import annotations

import base64
import configparser
import json
import time

import pytest

from octd_helpers import API, REF, env, image_url  # noqa: F401 - fixtures
from oscount import WriteCounter
from octavia_operator import names as n

pytestmark = [pytest.mark.openstack, pytest.mark.kube]

LABEL = "octavia.{ns}.octavia-operator.dev/o-hm0"


def converge(env, timeout: float = 120) -> dict:
    return env.converge(timeout)


def reconcile_until(env, done, rounds: int = 6):
    return env.reconcile_until(done, rounds, pause=1)


def children(env) -> dict[tuple[str, str], dict]:
    return env.children()


def test_everything_is_applied_owned_and_ready_follows(env):
    conds = converge(env)
    assert conds["Ready"]["status"] == "True", {k: (v["status"], v["reason"], v["message"]) for k, v in conds.items()}
    cr = env.cr()
    uid = cr["metadata"]["uid"]
    kids = children(env)
    for (kind, name) in [("ConfigMap", "octavia-config"), ("Secret", "octavia-config-secrets"),
                         ("Secret", "octavia-certs"), ("Secret", "octavia-passphrases"), ("Secret", "octavia-keystone"),
                         ("Secret", "octavia-database"), ("Secret", "octavia-messaging"), ("Secret", "octavia-ssh"),
                         ("StatefulSet", "octavia-mariadb"), ("StatefulSet", "octavia-rabbitmq"),
                         ("ConfigMap", "octavia-hostagent"), ("DaemonSet", "octavia-hostagent"),
                         ("Service", "octavia-api"), ("PodDisruptionBudget", "octavia-api"),
                         ("Deployment", "octavia-api"), ("Deployment", "octavia-worker"),
                         ("Deployment", "octavia-health-manager"), ("Deployment", "octavia-housekeeping")]:
        obj = kids[(kind, name)]
        assert obj["metadata"]["ownerReferences"][0]["uid"] == uid, (kind, name)
    assert any(k[0] == "Job" and k[1].startswith("octavia-db-sync-") for k in kids)

    # octavia.conf carries the cloud's IDs and the ports' addresses, and no secret
    conf = configparser.ConfigParser(interpolation=None)
    conf.read_string(kids[("ConfigMap", "octavia-config")]["data"]["octavia.conf"])
    ids = cr["status"]["openstack"]
    ports = cr["status"]["healthManagerPorts"]
    assert conf["controller_worker"]["amp_boot_network_list"] == ids["networkId"]
    assert conf["controller_worker"]["amp_secgroup_list"] == ids["amphoraSecurityGroupId"]
    assert conf["controller_worker"]["amp_flavor_id"] == ids["flavorId"]
    assert conf["controller_worker"]["amp_image_owner_id"] == ids["imageOwnerId"]
    assert conf["controller_worker"]["amp_ssh_key_name"] == f"octavia-ssh-{env.sfx}"
    assert conf["health_manager"]["controller_ip_port_list"] == ", ".join(
        sorted(f"{p['ip']}:5555" for p in ports.values()))
    assert conf["keystone_authtoken"]["username"] == f"octavia-{env.sfx}"
    passphrases = {k: base64.b64decode(v).decode()
                   for k, v in kids[("Secret", "octavia-passphrases")]["data"].items()}
    text = kids[("ConfigMap", "octavia-config")]["data"]["octavia.conf"]
    for secret_value in passphrases.values():
        assert secret_value not in text
    # ... which are in the secrets file instead
    sconf = configparser.ConfigParser(interpolation=None)
    sconf.read_string(base64.b64decode(kids[("Secret", "octavia-config-secrets")]["data"]["secrets.conf"]).decode())
    assert sconf["health_manager"]["heartbeat_key"] == passphrases["heartbeat-key"]
    assert len(sconf["certificates"]["server_certs_key_passphrase"]) == 32
    for bad in ("insecure", "foobar", "not-secure-passphrase"):
        assert bad not in sconf["health_manager"]["heartbeat_key"]
    # certificate expiry dates in status
    assert set(cr["status"]["certificates"]) == {"serverCAExpires", "clientCAExpires", "clientCertificateExpires"}

    # the host agents get each node's port; the nodes where o-hm0 is ready are labelled
    doc = json.loads(kids[("ConfigMap", "octavia-hostagent")]["data"]["assignments.json"])
    assert doc["networkId"] == ids["networkId"] and sorted(doc["nodes"]) == ["node-0", "node-1"]
    assert doc["nodes"]["node-0"]["mac"] == ports["node-0"]["mac"]
    label = LABEL.format(ns=env.ns)
    for node_name in ("node-0", "node-1"):
        assert env.kube_api.get("nodes", node_name)["metadata"]["labels"][label] == "ready"
    # one health manager per ready node; controllers only where o-hm0 is ready
    hm = kids[("Deployment", "octavia-health-manager")]
    assert hm["spec"]["replicas"] == 2
    assert hm["spec"]["template"]["spec"]["nodeSelector"][label] == "ready"
    assert cr["status"]["apiEndpoint"] == f"http://octavia-api.{env.ns}.svc:9876"

    # converged: nothing is written, in Kubernetes or in OpenStack
    conn = env.conn()
    env.kube.writes.entries.clear()
    with WriteCounter(conn) as w:
        out, _ = env.reconcile()
    assert env.kube.writes.entries == [] and w.writes == [] and out.status_patch == {}


def test_a_spec_change_changes_exactly_the_right_objects(env):
    converge(env)
    hashes = {k: v["spec"]["template"]["metadata"]["annotations"][n.CONFIG_HASH_ANNOTATION]
              for k, v in children(env).items() if k[0] == "Deployment"}
    env.kube_api.patch(REF, "octavia", {"spec": {"config": {"controller_worker": {"amp_active_retries": "42"}}}},
                       env.ns)
    env.kube.writes.entries.clear()
    reconcile_until(env, lambda: env.conditions()["ConfigReady"]["status"] == "True" and "amp_active_retries = 42"
                    in env.kube_api.get("configmaps", "octavia-config", env.ns)["data"]["octavia.conf"])
    after = children(env)
    # what the operator wrote (the controllers update the status of Deployments, ReplicaSets and the
    # PodDisruptionBudget while the pods roll; that is theirs)
    changed = {(kind, name) for verb, kind, name in env.kube.writes.entries if kind != "OctaviaDeployment"}
    assert changed == {("ConfigMap", "octavia-config"), ("Deployment", "octavia-api"),
                       ("Deployment", "octavia-worker"), ("Deployment", "octavia-health-manager"),
                       ("Deployment", "octavia-housekeeping")}, changed
    for k, h in hashes.items():  # the pods roll because their template's config hash changed
        assert after[k]["spec"]["template"]["metadata"]["annotations"][n.CONFIG_HASH_ANNOTATION] != h
    assert "amp_active_retries = 42" in after[("ConfigMap", "octavia-config")]["data"]["octavia.conf"]
    # and the rollout really happens: every pod of the api runs the new template
    env.converge(timeout=60)
    pods = env.kube_api.objects("pods", env.ns, labels="app.kubernetes.io/component=api")
    assert pods and all(p["metadata"]["annotations"][n.CONFIG_HASH_ANNOTATION] ==
                        after[("Deployment", "octavia-api")]["spec"]["template"]["metadata"]["annotations"][
                            n.CONFIG_HASH_ANNOTATION] for p in pods if not p["metadata"].get("deletionTimestamp"))


def test_a_deleted_or_edited_child_is_restored(env):
    converge(env)
    api, ns = env.kube_api, env.ns
    original = children(env)
    api.delete("deployments", "octavia-worker", ns)
    api.patch("configmaps", "octavia-config", {"data": {"octavia.conf": "[DEFAULT]\ndebug = true\n"}}, ns)
    api.patch("deployments", "octavia-api", {"spec": {"replicas": 7}}, ns)
    reconcile_until(env, lambda: api.exists("deployments", "octavia-worker", ns)
                    and api.get("deployments", "octavia-api", ns)["spec"]["replicas"] == 2)
    now = children(env)
    assert ("Deployment", "octavia-worker") in now
    assert now[("ConfigMap", "octavia-config")]["data"] == original[("ConfigMap", "octavia-config")]["data"]
    assert now[("Deployment", "octavia-api")]["spec"]["replicas"] == 2


def test_a_failed_db_sync_is_reported_retried_and_replaced_once_fixed(env, monkeypatch):
    """The Job really fails (kwok's pod-fail stage: the image tag ':fail' exits 1), the Job controller
    gives up after its own retries, the condition says so with what the pod reported, the operator
    replaces the Job with backoff, and once the cause is fixed (here: the image) the new Job succeeds
    and the failed ones are removed."""
    monkeypatch.setenv("OCTAVIA_OPERATOR_JOB_RETRY_DELAY", "5")
    env.kube_api.patch(REF, "octavia", {"spec": {"images": {"dbSync": "registry.invalid/octavia-api:fail"}}}, env.ns)
    env.converge(timeout=150, until=lambda: env.conditions().get("DatabaseSynced", {}).get("reason")
                 == "DatabaseSyncFailed")
    cond = env.conditions()["DatabaseSynced"]
    [job] = env.kube_api.objects("jobs", env.ns)
    name = job["metadata"]["name"]
    assert cond["status"] == "False" and name in cond["message"] and "BackoffLimitExceeded" in cond["message"]
    assert "exit code 1" in cond["message"] and "retried at" in cond["message"]
    assert env.conditions()["ServicesReady"]["reason"] == "Waiting"
    # after the backoff the failed Job is replaced (same name, attempt 2), not left to rot
    env.converge(timeout=60, until=lambda: (env.kube_api.get("jobs", name, env.ns) or {}).get("metadata", {}).get(
        "annotations", {}).get("octavia-operator.dev/attempt") == "2")
    assert "attempt 2" in env.conditions()["DatabaseSynced"]["message"]
    # the cause is fixed: the default image; a new Job migrates, and the failed one goes
    env.kube_api.patch(REF, "octavia", {"spec": {"images": {"dbSync": None}}}, env.ns)
    conds = env.converge(timeout=120)
    assert conds["DatabaseSynced"]["reason"] == "Synced"
    jobs = [j["metadata"]["name"] for j in env.kube_api.objects("jobs", env.ns)]
    assert len(jobs) == 1 and jobs[0] != name, jobs


def test_a_node_losing_its_agent_loses_its_label(env):
    converge(env)
    label = LABEL.format(ns=env.ns)
    [pod] = [p for p in env.kube_api.objects("pods", env.ns, labels="app.kubernetes.io/component=hostagent")
             if p["spec"].get("nodeName") == "node-1"]
    # the agent's readiness probe fails (what kwok reports for the kubelet)
    conds = [c for c in pod["status"]["conditions"] if c["type"] != "Ready"] + [
        {"type": "Ready", "status": "False", "lastTransitionTime": "2026-12-01T00:00:00Z"}]
    env.kube_api.patch("pods", pod["metadata"]["name"], {"status": {"conditions": conds}}, env.ns,
                       subresource="status")
    events = reconcile_until(env, lambda: env.conditions()["HostAgentReady"]["reason"] == "Partial")
    assert label not in (env.kube_api.get("nodes", "node-1")["metadata"].get("labels") or {})
    assert env.kube_api.get("nodes", "node-0")["metadata"]["labels"][label] == "ready"
    assert env.conditions()["HostAgentReady"]["reason"] == "Partial"
    assert any(e[1] == "NodeNotReady" for e in events)
    assert children(env)[("Deployment", "octavia-health-manager")]["spec"]["replicas"] == 1


def test_the_service_password_rotates_on_request_only(env):
    from octavia_operator.backends.openstack import compute
    assert converge(env)["Ready"]["status"] == "True"
    old_pw = base64.b64decode(env.kube_api.get("secrets", "octavia-keystone", env.ns)["data"]["password"]).decode()
    old_hash = children(env)[("Deployment", "octavia-worker")]["spec"]["template"]["metadata"]["annotations"][
        n.CONFIG_HASH_ANNOTATION]
    env.kube_api.patch(REF, "octavia", {"metadata": {"annotations": {
        "octavia-operator.dev/rotate-service-password": "2026-11-25"}}}, env.ns)
    events = reconcile_until(env, lambda: (env.cr()["status"].get("rotations") or {}).get("servicePassword")
                             == "2026-11-25")
    assert any(e[1] == "PasswordRotated" for e in events)
    new_pw = base64.b64decode(env.kube_api.get("secrets", "octavia-keystone", env.ns)["data"]["password"]).decode()
    assert new_pw != old_pw
    assert converge(env)["Ready"]["status"] == "True"  # level-based: a transient hiccup waits for the next round
    # Keystone has the new password, the old one no longer works
    compute.connect_as(env.os, f"octavia-{env.sfx}", new_pw, "service", "Default", "Default").authorize()
    with pytest.raises(Exception):
        compute.connect_as(env.os, f"octavia-{env.sfx}", old_pw, "service", "Default", "Default").authorize()
    # the services get it (the secrets file changed, so the pods roll)
    secrets_conf = base64.b64decode(env.kube_api.get("secrets", "octavia-config-secrets", env.ns)["data"][
        "secrets.conf"]).decode()
    assert f"password = {new_pw}" in secrets_conf
    assert children(env)[("Deployment", "octavia-worker")]["spec"]["template"]["metadata"]["annotations"][
        n.CONFIG_HASH_ANNOTATION] != old_hash
    # the same request is not handled twice
    env.reconcile()
    assert base64.b64decode(env.kube_api.get("secrets", "octavia-keystone", env.ns)["data"]["password"]).decode() \
        == new_pw


def test_managed_database_is_created_on_a_real_mariadb_and_dropped_on_delete(env, os_db_admin):
    import uuid

    import pymysql

    from octavia_operator.spec import parse_spec
    from octavia_operator.steps import workloads

    db = f"octavia_{uuid.uuid4().hex[:8]}"
    env.kube_api.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mariadb-root", "namespace": env.ns},
                         "data": {"password": base64.b64encode(os_db_admin["password"].encode()).decode()}})
    env.kube_api.patch(REF, "octavia", {"spec": {"database": {"embedded": None, "managed": {
        "host": os_db_admin["host"], "port": int(os_db_admin["port"]), "adminUser": os_db_admin["user"],
        "adminSecret": {"name": "mariadb-root", "key": "password"}, "databaseName": db, "userName": db[:32],
        "userHost": "127.0.0.1"}},
        # the jobboard's persistence database is made next to it, for the same user
        "jobboard": {"enabled": True, "external": {"hosts": ["redis.example.test"]}}}}, env.ns)
    reconcile_until(env, lambda: env.conditions()["DatabaseReady"]["status"] == "True"
                    and env.conditions()["JobboardReady"]["status"] == "True")
    cond = env.conditions()["DatabaseReady"]
    assert cond["status"] == "True" and cond["reason"] == "Managed", cond
    assert env.conditions()["JobboardReady"]["reason"] == "External"
    secret = {k: base64.b64decode(v).decode()
              for k, v in env.kube_api.get("secrets", "octavia-database", env.ns)["data"].items()}
    # the operator's user can connect to its databases with the generated password
    for name in (db, f"{db}_persistence"):
        with pymysql.connect(host=os_db_admin["host"], port=int(os_db_admin["port"]), user=db[:32],
                             password=secret["password"], database=name) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE t (i INT)")
    assert f"@{os_db_admin['host']}:{os_db_admin['port']}/{db}" in secret["connection"]
    # the persistence URL is in secrets.conf, never in the ConfigMap
    reconcile_until(env, lambda: env.conditions()["ConfigReady"]["status"] == "True")
    conf = env.kube_api.get("configmaps", "octavia-config", env.ns)["data"]["octavia.conf"]
    secrets_conf = base64.b64decode(env.kube_api.get("secrets", "octavia-config-secrets", env.ns)["data"][
        "secrets.conf"]).decode()
    assert f"/{db}_persistence" in secrets_conf and "_persistence" not in conf
    assert "jobboard_enabled = true" in conf and "redis.example.test" in conf
    # deletionPolicy Delete drops exactly those databases and that user
    ctx = env.context()
    ctx.spec = parse_spec(ctx.raw_spec)
    done = workloads.teardown_backing_services(ctx)
    assert done
    with pymysql.connect(host=os_db_admin["host"], port=int(os_db_admin["port"]), user=os_db_admin["user"],
                         password=os_db_admin["password"]) as conn, conn.cursor() as cur:
        for name in (db, f"{db}_persistence"):
            cur.execute("SHOW DATABASES LIKE %s", (name,))
            assert cur.fetchall() == ()


def test_server_ca_rotation_on_request_keeps_the_old_ca_trusted(env):
    from cryptography import x509
    converge(env)

    def certs():
        data = env.kube_api.get("secrets", "octavia-certs", env.ns)["data"]
        return {k: base64.b64decode(v) for k, v in data.items()}

    before = certs()
    old_ca = x509.load_pem_x509_certificate(before["server_ca.cert.pem"])
    env.kube_api.patch(REF, "octavia", {"metadata": {"annotations": {
        "octavia-operator.dev/rotate-server-ca": "2026-11-25"}}}, env.ns)
    reconcile_until(env, lambda: (env.cr()["status"].get("rotations") or {}).get("rotate_server_ca") == "2026-11-25")
    after = certs()
    new_ca = x509.load_pem_x509_certificate(after["server_ca.cert.pem"])
    assert new_ca.serial_number != old_ca.serial_number
    bundle = x509.load_pem_x509_certificates(after["server_ca.bundle.pem"])
    assert {c.serial_number for c in bundle} >= {old_ca.serial_number, new_ca.serial_number}
    assert env.cr()["status"]["rotations"]["rotate_server_ca"] == "2026-11-25"
    # handled once: the next reconcile does not rotate again
    env.reconcile()
    assert certs()["server_ca.cert.pem"] == after["server_ca.cert.pem"]
    # the client side is untouched by a server-CA rotation
    assert after["client_ca.cert.pem"] == before["client_ca.cert.pem"]


def octavia_db(os_db_admin):
    """The loopback cloud's Octavia database, where the tests put amphora rows (nothing boots one here)."""
    import pymysql
    return pymysql.connect(host=os_db_admin["host"], port=int(os_db_admin["port"]), user=os_db_admin["user"],
                           password=os_db_admin["password"], database="octavia", autocommit=True)


def test_a_changed_health_manager_list_is_pushed_to_live_amphorae(env, os_db_admin):
    import uuid

    assert converge(env)["Ready"]["status"] == "True"
    first = env.cr()["status"]["amphoraConfig"]
    assert first["controllerIPPortList"].count(":5555") == 2
    # an amphora in the cloud's Octavia database (nothing can boot a real one here): the operator
    # must ask it to reload its configuration through the real Octavia API when the list changes
    amp_id, lb_id = str(uuid.uuid4()), str(uuid.uuid4())
    db = octavia_db(os_db_admin)
    try:
        with db.cursor() as cur:
            cur.execute("INSERT INTO load_balancer (id, project_id, provisioning_status, operating_status, enabled) "
                        "VALUES (%s, 'test', 'ACTIVE', 'ONLINE', 1)", (lb_id,))
            cur.execute("INSERT INTO amphora (id, status, cert_busy, load_balancer_id) VALUES "
                        "(%s, 'ALLOCATED', 0, %s)", (amp_id, lb_id))
        env.nodes.add("node-2")
        env.converge(timeout=120, until=lambda: (env.cr()["status"].get("amphoraConfig") or {}).get(
            "controllerIPPortList", "").count(":5555") == 3)
        status = env.cr()["status"]["amphoraConfig"]
        assert status["amphoraeConfigured"] >= 1
        # once per change: a converged reconcile pushes nothing again
        conn = env.conn()
        with WriteCounter(conn) as w:
            env.reconcile()
        assert not [u for m, u in w.writes if "/amphorae/" in u]
    finally:
        with db.cursor() as cur:
            cur.execute("DELETE FROM amphora WHERE id = %s", (amp_id,))
            cur.execute("DELETE FROM load_balancer WHERE id = %s", (lb_id,))
        db.close()


def test_a_failed_amphora_push_is_retried_alone_with_backoff_until_it_succeeds(env, os_db_admin, monkeypatch):
    """The real Octavia API refuses the config call for one amphora (an ALLOCATED row whose load balancer is
    missing: a 500). The push is not recorded as done: ServicesReady is False with AmphoraConfigFailed naming
    it, the amphora is retried alone after the backoff, and once the cause is gone it succeeds and the
    condition clears."""
    import uuid

    monkeypatch.setenv("OCTAVIA_OPERATOR_AMPHORA_RETRY_DELAY", "3")
    assert converge(env)["Ready"]["status"] == "True"
    good, bad, lb_id = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    db = octavia_db(os_db_admin)
    try:
        with db.cursor() as cur:
            cur.execute("INSERT INTO load_balancer (id, project_id, provisioning_status, operating_status, enabled) "
                        "VALUES (%s, 'test', 'ACTIVE', 'ONLINE', 1)", (lb_id,))
            cur.execute("INSERT INTO amphora (id, status, cert_busy, load_balancer_id) VALUES "
                        "(%s, 'ALLOCATED', 0, %s)", (good, lb_id))
            cur.execute("INSERT INTO amphora (id, status, cert_busy, load_balancer_id) VALUES "
                        "(%s, 'ALLOCATED', 0, NULL)", (bad,))
        env.nodes.add("node-2")
        env.converge(timeout=120, until=lambda: env.conditions().get("ServicesReady", {}).get("reason")
                     == "AmphoraConfigFailed")
        st = env.cr()["status"]["amphoraConfig"]
        assert st["controllerIPPortList"].count(":5555") == 3
        assert st["failed"] == [bad] and st["attempts"] >= 1 and st["retryAt"]
        cond = env.conditions()["ServicesReady"]
        assert cond["status"] == "False" and bad in cond["message"] and "retried at" in cond["message"]
        assert env.conditions()["Ready"]["status"] == "False"

        # before the retry time: no call at all; after it: only the failed amphora is asked again
        conn = env.conn()
        with WriteCounter(conn) as w:
            env.reconcile()
        asked = [u for m, u in w.writes if "/amphorae/" in u]
        assert all(bad in u for u in asked) and not any(good in u for u in asked), asked

        with db.cursor() as cur:   # the cause goes away
            cur.execute("UPDATE amphora SET load_balancer_id = %s WHERE id = %s", (lb_id, bad))
        conds = env.converge(timeout=60, until=lambda: env.conditions().get("ServicesReady", {}).get("status")
                             == "True")
        assert conds["Ready"]["status"] == "True"
        st = env.cr()["status"]["amphoraConfig"]
        assert not st.get("failed") and not st.get("retryAt")
        with WriteCounter(conn) as w:   # done: nothing is pushed again
            env.reconcile()
        assert not [u for m, u in w.writes if "/amphorae/" in u]
    finally:
        with db.cursor() as cur:
            cur.execute("DELETE FROM amphora WHERE id IN (%s, %s)", (good, bad))
            cur.execute("DELETE FROM load_balancer WHERE id = %s", (lb_id,))
        db.close()


def test_server_side_apply_removes_what_the_spec_dropped_and_leaves_the_rest_alone(env):
    """Children are written with server-side apply under the operator's field manager: a key removed
    from the spec disappears from the child, fields other managers own stay, and a quantity the server
    canonicalises (0.5 CPU is stored as 500m) does not cause a write on every reconcile."""
    for node_name in ("node-0", "node-1", "worker-0"):
        env.kube_api.patch("nodes", node_name, {"metadata": {"labels": {"example.com/zone": "a"}}})
    env.kube_api.patch(REF, "octavia", {"spec": {"api": {
        "nodeSelector": {"example.com/zone": "a"},
        "resources": {"requests": {"cpu": "0.5", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}}}}, env.ns)
    converge(env)
    api = env.kube_api.get("deployments", "octavia-api", env.ns)
    pod = api["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"example.com/zone": "a"}
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "500m", "memory": "256Mi"},
                                                 "limits": {"memory": "1Gi"}}
    env.kube.writes.entries.clear()
    out, _ = env.reconcile()
    assert env.kube.writes.entries == [] and out.status_patch == {}

    # another manager's fields: an annotation on the Deployment, a restart stamp on its pod template
    env.cluster.admin.patch("apps/v1", "Deployment", "octavia-api", {
        "metadata": {"annotations": {"example.com/owner": "team-lb"}},
        "spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-12-01"}}}}},
        env.ns)
    env.kube_api.patch(REF, "octavia", {"spec": {"api": {"nodeSelector": None,
                                                         "resources": {"limits": None}}}}, env.ns)
    reconcile_until(env, lambda: "nodeSelector" not in env.kube_api.get("deployments", "octavia-api", env.ns)[
        "spec"]["template"]["spec"])
    api = env.kube_api.get("deployments", "octavia-api", env.ns)
    assert api["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "500m", "memory": "256Mi"}}
    assert api["metadata"]["annotations"]["example.com/owner"] == "team-lb"
    assert api["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] == "2026-12-01"
    managers = {m["manager"] for m in api["metadata"]["managedFields"] if m["operation"] == "Apply"}
    assert managers == {"octavia-operator"}


def test_an_unbound_claim_is_named_and_a_storage_class_fixes_it(env):
    """No volume for the embedded MariaDB's claim (no provisioner, no default StorageClass): the
    condition names the claim and the reason the controller gave. Setting a storage class re-creates
    the server (its claim never bound, nothing is lost); once bound, a size change is reported, not
    retried against the immutable claim template forever."""
    env.cluster.admin.delete("v1", "PersistentVolume", f"{env.ns}-mariadb")
    env.converge(timeout=90, until=lambda: env.conditions().get("DatabaseReady", {}).get("reason")
                 == "VolumeNotBound")
    cond = env.conditions()["DatabaseReady"]
    assert cond["status"] == "False" and "data-octavia-mariadb-0" in cond["message"]
    assert "no persistent volumes available" in cond["message"]
    assert "spec.database.embedded.storageClassName" in cond["message"]

    pv = f"{env.ns}-fast"[:63]
    env.cluster.add_pv(pv, "5Gi", storage_class="fast-test")
    env.extra_cleanup.append(lambda: env.cluster.admin.delete("v1", "PersistentVolume", pv))
    env.kube_api.patch(REF, "octavia", {"spec": {"database": {"embedded": {"storageClassName": "fast-test"}}}},
                       env.ns)
    before = env.kube_api.get("statefulsets", "octavia-mariadb", env.ns)["metadata"]["uid"]
    env.converge(timeout=120, until=lambda: env.conditions()["DatabaseReady"]["status"] == "True")
    sts = env.kube_api.get("statefulsets", "octavia-mariadb", env.ns)
    assert sts["metadata"]["uid"] != before  # re-created, with the new claim template
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast-test"
    assert env.kube_api.get("persistentvolumeclaims", "data-octavia-mariadb-0", env.ns)["spec"]["volumeName"] == pv

    # bound now: a bigger size cannot be applied to the claim template; it is said, not retried as a 422
    env.kube_api.patch(REF, "octavia", {"spec": {"database": {"embedded": {"storageSize": "8Gi"}}}}, env.ns)
    reconcile_until(env, lambda: env.conditions()["DatabaseReady"]["reason"] == "StorageChangeIgnored")
    cond = env.conditions()["DatabaseReady"]
    assert cond["status"] == "True" and "8Gi" in cond["message"] and "2Gi" in cond["message"]
    assert env.kube_api.get("statefulsets", "octavia-mariadb", env.ns)["spec"]["volumeClaimTemplates"][0][
        "spec"]["resources"]["requests"]["storage"] == "2Gi"
    env.kube.writes.entries.clear()
    env.reconcile()
    assert ("apply", "StatefulSet", "octavia-mariadb") not in env.kube.writes.entries


def test_outdated_amphorae_are_rolled_onto_the_current_image_through_failovers(env, os_db_admin):
    """spec.amphora.rollout against the real Octavia API (the loopback cloud's): amphora and load-balancer
    rows the test makes, on an older image; the failover calls are observed as Octavia records them (the
    load balancer PENDING_UPDATE; no worker runs here, so the test plays the worker's result: the old
    amphora DELETED, a new one on the current image, the load balancer ACTIVE again, or ERROR)."""
    import uuid

    assert converge(env)["Ready"]["status"] == "True"
    image = env.ids()["imageId"]
    old_image = str(uuid.uuid4())
    env.kube_api.patch(REF, "octavia", {"spec": {"amphora": {"rolloutStrategy": {"maxConcurrent": 1,
                                                                                "pauseSeconds": 0}}}}, env.ns)
    single, pair = str(uuid.uuid4()), str(uuid.uuid4())
    amps = {"s": (single, "STANDALONE"), "m": (pair, "MASTER"), "b": (pair, "BACKUP")}
    ids = {k: str(uuid.uuid4()) for k in amps}
    db = octavia_db(os_db_admin)

    def sql(statement: str, *args):
        with db.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall()

    def lb_status(lb: str) -> str:
        return sql("SELECT provisioning_status FROM load_balancer WHERE id = %s", lb)[0][0]

    def in_flight() -> set[str]:
        return set(((env.cr()["status"].get("amphoraRollout") or {}).get("inFlight") or {}).values())

    def worker_finishes(lb: str) -> str:
        """What Octavia's worker does after a failover; returns the amphora it replaced."""
        old_id = ((env.cr()["status"].get("amphoraRollout") or {}).get("inFlight") or {})[lb]
        [(role,)] = sql("SELECT role FROM amphora WHERE id = %s", old_id)
        sql("UPDATE amphora SET status = 'DELETED' WHERE id = %s", old_id)
        new = str(uuid.uuid4())
        made.append(new)
        sql("INSERT INTO amphora (id, status, cert_busy, load_balancer_id, role, image_id, created_at) VALUES "
            "(%s, 'ALLOCATED', 0, %s, %s, %s, UTC_TIMESTAMP())", new, lb, role, image)
        sql("UPDATE load_balancer SET provisioning_status = 'ACTIVE' WHERE id = %s", lb)
        return old_id

    made: list[str] = []
    try:
        for lb, topology in ((single, "SINGLE"), (pair, "ACTIVE_STANDBY")):
            sql("INSERT INTO load_balancer (id, project_id, provisioning_status, operating_status, enabled, topology) "
                "VALUES (%s, 'test', 'ACTIVE', 'ONLINE', 1, %s)", lb, topology)
        for k, (lb, role) in amps.items():
            sql("INSERT INTO amphora (id, status, cert_busy, load_balancer_id, role, image_id, created_at) VALUES "
                "(%s, 'ALLOCATED', 0, %s, %s, %s, UTC_TIMESTAMP())", ids[k], lb, role, old_image)

        # Manual (the default): reported, nothing failed over
        env.reconcile_until(lambda: env.conditions()["AmphoraeUpToDate"]["reason"] == "Outdated", rounds=3)
        assert env.cr()["status"]["amphoraRollout"]["outdated"] == 3
        assert lb_status(single) == lb_status(pair) == "ACTIVE"
        assert env.conditions()["Ready"]["status"] == "True"

        # the one-shot request: one load balancer at a time, one amphora at a time
        env.kube_api.patch(REF, "octavia", {"metadata": {"annotations": {
            "octavia-operator.dev/rollout-amphorae": "r1"}}}, env.ns)
        replaced: list[str] = []
        for _ in range(6):
            out, _ = env.reconcile()
            pending = [lb for lb in (single, pair) if lb_status(lb) == "PENDING_UPDATE"]
            if not pending:
                break
            assert len(pending) == 1, "two load balancers failed over at once (maxConcurrent 1)"
            flying = in_flight()
            assert len(flying) == 1
            if pending[0] == pair:     # never both halves of the pair: the other one is still ALLOCATED
                assert len(sql("SELECT id FROM amphora WHERE load_balancer_id = %s AND status = 'ALLOCATED'",
                               pair)) == 2
            replaced.append(worker_finishes(pending[0]))
        env.reconcile_until(lambda: env.conditions()["AmphoraeUpToDate"]["reason"] == "UpToDate", rounds=3)
        # the BACKUP of the pair went before its MASTER, each amphora exactly once
        assert sorted(replaced) == sorted(ids.values()) and replaced.index(ids["b"]) < replaced.index(ids["m"])
        st = env.cr()["status"]["amphoraRollout"]
        assert st["phase"] == "Done" and st["completed"] == 3 and st["outdated"] == 0
        assert env.cr()["status"]["rotations"]["rolloutAmphorae"] == "r1"
        # handled once: nothing more happens on later reconciles
        env.reconcile()
        assert lb_status(single) == lb_status(pair) == "ACTIVE"

        # the first failure stops it and says so; a new request starts again
        newer = str(uuid.uuid4())
        for a in made:
            sql("UPDATE amphora SET image_id = %s WHERE id = %s", newer, a)
        env.kube_api.patch(REF, "octavia", {"metadata": {"annotations": {
            "octavia-operator.dev/rollout-amphorae": "r2"}}}, env.ns)
        env.reconcile()
        [pending] = [lb for lb in (single, pair) if lb_status(lb) == "PENDING_UPDATE"]
        flying_amp = next(iter(in_flight()))
        sql("UPDATE load_balancer SET provisioning_status = 'ERROR' WHERE id = %s", pending)
        env.reconcile_until(lambda: env.conditions()["AmphoraeUpToDate"]["reason"] == "RolloutFailed", rounds=3)
        cond = env.conditions()["AmphoraeUpToDate"]
        assert cond["status"] == "False" and pending in cond["message"] and flying_amp in cond["message"]
        assert env.conditions()["Ready"]["status"] == "False"
        env.reconcile()
        assert [lb for lb in (single, pair) if lb_status(lb) == "PENDING_UPDATE"] == []   # stopped
    finally:
        sql("DELETE FROM amphora WHERE load_balancer_id IN (%s, %s)", single, pair)
        sql("DELETE FROM load_balancer WHERE id IN (%s, %s)", single, pair)
        db.close()
