"""The operator as users run it: ``octavia-operator run`` in its own process, with the token of the
chart's ServiceAccount (so RBAC applies: any 403 fails the test), against a real API server whose
controllers and kwok play the cluster, and the loopback OpenStack.

Covers the kopf wiring (create, the finalizer, status, retries, the drift timer, the Node and child
watches), convergence to Ready, quiet when converged, node join and leave, a deleted child restored,
a rotation on request, deletion under both policies (the real garbage collector removes the
children), and a restart after SIGKILL.
"""
from __future__ import annotations

import time
import uuid

import pytest

from argocd_health import assert_health
from octd_helpers import (API, REF, clouds_yaml_for, credentials_secret, random_cidr, serve_image, spec_for,
                          volumes_for)

pytestmark = [pytest.mark.kube, pytest.mark.openstack]

FINALIZER = "octavia-operator.dev/finalizer"
CHILD_REFS = ("configmaps", "secrets", "deployments", "daemonsets", "statefulsets", "jobs", "services",
              "serviceaccounts", "poddisruptionbudgets", "persistentvolumeclaims")


def conditions(obj: dict | None) -> dict[str, dict]:
    return {c["type"]: c for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def resource(ns: str, spec: dict, name: str = "octavia") -> dict:
    return {"apiVersion": API, "kind": "OctaviaDeployment", "metadata": {"name": name, "namespace": ns},
            "spec": spec}


def owned_children(api, ns: str) -> dict[tuple[str, str], dict]:
    out = {}
    for ref in CHILD_REFS:
        for o in api.objects(ref, ns):
            if (o["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") == "octavia-operator":
                out[(o["kind"], o["metadata"]["name"])] = o
    return out


def _diff(a, b, path=""):
    """Where two objects differ (for failure messages)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{path}.{k}")
        return out
    return [] if a == b else [f"{path}: {a!r:.300} -> {b!r:.300}"]


def not_ready(obj: dict) -> dict:
    return {k: (v["status"], v["reason"], v["message"][:200]) for k, v in conditions(obj).items()
            if v["status"] != "True"}


@pytest.fixture
def deployment(kube_cluster, kube_namespace, kube_nodes, operator_sa, os_cloud, os_cloud_config, fake_agent_hosts):
    """What a user does before the operator sees the resource: nodes, volumes, a spec (not yet created).
    Afterwards, whatever the test left in the shared cloud is removed by the operator's own teardown."""
    for n_ in ("node-0", "node-1"):
        kube_nodes.add(n_)
    kube_nodes.add("worker-0", control_plane=False)
    pvs = volumes_for(kube_cluster, kube_namespace)
    sfx = uuid.uuid4().hex[:8]
    d = {"ns": kube_namespace, "sfx": sfx, "clouds_yaml": clouds_yaml_for(os_cloud_config), "os": os_cloud}
    with serve_image() as url:
        d["spec"] = spec_for(sfx, url, random_cidr())
        yield d
    for pv in pvs:
        kube_cluster.admin.delete("v1", "PersistentVolume", pv)
    live = kube_cluster.api.get(REF, "octavia", kube_namespace)
    if live is not None:
        teardown_cloud(live, d)


def teardown_cloud(obj: dict, d: dict, owner_id: str | None = None) -> list[str]:
    """The operator's own teardown of what a deployment owns, from its last status (no Kubernetes needed)."""
    from octavia_operator.steps import runner as r
    from octavia_operator.backends.openstack import session
    from octavia_operator.spec import parse_spec
    from octavia_operator.steps import cloud as cloud_steps

    class NoSecrets:
        def read_secret(self, *a):
            return None

        def get(self, *a):
            return None
    spec = {**obj["spec"], "deletionPolicy": "Delete"}
    ctx = r.Context(name=obj["metadata"]["name"], namespace=obj["metadata"]["namespace"],
                    uid=obj["metadata"]["uid"], generation=1, raw_spec=spec, status=obj.get("status") or {},
                    kube=NoSecrets(), owner_id=owner_id)
    ctx.spec = parse_spec(spec)
    ctx.out.cloud = session.connect(d["clouds_yaml"], "admin-cloud", "RegionOne", "public")
    return cloud_steps.teardown(ctx)


def test_lifecycle_from_missing_credentials_to_deletion(kube_cluster, deployment, kube_nodes, run_operator):
    api, ns, os_ = kube_cluster.api, deployment["ns"], deployment["os"]
    env = {"OCTAVIA_OPERATOR_DRIFT_INTERVAL": "4"}
    with run_operator(ns, env=env) as op:
        api.create(resource(ns, deployment["spec"]))
        # no credentials Secret yet: said plainly, retried; the finalizer is there first
        obj = op.wait_for(lambda: (o := api.get(REF, "octavia", ns)) and "Ready" in conditions(o) and o, timeout=30)
        assert FINALIZER in obj["metadata"]["finalizers"]
        conds = conditions(obj)
        assert conds["CloudReachable"]["status"] == "False"
        assert conds["CloudReachable"]["reason"] == "CredentialsSecretNotFound"
        for c in conds.values():
            assert set(c) == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}
            assert c["observedGeneration"] == obj["metadata"]["generation"]
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
        assert_health(obj, "Degraded", "CredentialsSecret")
        # ... and in the metrics: the failing step, by reason, and Ready 0
        m = op.metrics()
        assert m[("octavia_operator_reconcile_errors_total", (("name", "octavia"), ("namespace", ns),
                  ("reason", "CredentialsSecretNotFound"), ("step", "cloud")))] >= 1
        assert m[("octavia_operator_condition_status", (("name", "octavia"), ("namespace", ns), ("type", "Ready")))] == 0

        # the Secret appears: the retry converges, all the way to Ready, with nobody touching the resource
        api.create(credentials_secret(ns, deployment["clouds_yaml"]))
        obj = op.wait_for(lambda: (o := api.get(REF, "octavia", ns)) and conditions(o)["Ready"]["status"] == "True"
                          and o, timeout=240, message="Ready",)
        assert_health(obj, "Healthy")
        assert "authenticated to http://127.0.0.1" in conditions(obj)["CloudReachable"]["message"]
        ids = obj["status"]["openstack"]
        assert os_.network.get_network(ids["networkId"]).name == f"lb-mgmt-net-{deployment['sfx']}"
        check_converged_metrics(op, ns, obj)
        uid = obj["metadata"]["uid"]
        kids = owned_children(api, ns)
        assert {("Deployment", f"octavia-{c}") for c in ("api", "worker", "health-manager", "housekeeping")} <= set(kids)
        for (kind, name), o in kids.items():
            if kind != "PersistentVolumeClaim":  # the StatefulSet's claims belong to the StatefulSet
                assert o["metadata"]["ownerReferences"][0]["uid"] == uid, (kind, name)
            managers = {m["manager"] for m in o["metadata"].get("managedFields") or [] if m["operation"] == "Apply"}
            if kind != "PersistentVolumeClaim":
                assert managers == {"octavia-operator"}, (kind, name, managers)

        # quiet when converged: once kopf has finished the create handler (its retries included), several
        # drift periods make no write to the resource or any child
        op.wait_for(lambda: (a := api.get(REF, "octavia", ns)["metadata"].get("annotations") or {}).get(
            "octavia-operator.dev/last-handled-configuration") and "octavia-operator.dev/reconcile_handler" not in a,
            timeout=60, message="kopf's create handler done")
        def versions() -> dict:
            out = {("OctaviaDeployment", "octavia"): api.get(REF, "octavia", ns)["metadata"]["resourceVersion"]}
            out.update({k: v["metadata"]["resourceVersion"] for k, v in owned_children(api, ns).items()})
            out.update({("Node", n["metadata"]["name"]): n["metadata"]["labels"].get(
                f"octavia.{ns}.octavia-operator.dev/o-hm0") for n in api.objects("nodes")})
            return out
        time.sleep(2)
        cr_before = api.get(REF, "octavia", ns)
        before = versions()
        log_before = op.logs().count("reconciled")
        time.sleep(14)  # > 3 drift periods of 4 s
        assert op.logs().count("reconciled") >= log_before + 2, "the drift timer did not run"
        after = versions()
        assert after == before, ({k: (before.get(k), v) for k, v in after.items() if before.get(k) != v},
                                 _diff(cr_before, api.get(REF, "octavia", ns)))

        # a node joins: found through the Node watch, a port, an o-hm0 label, a health manager more
        kube_nodes.add("node-2")
        op.wait_for(lambda: (p := (api.get(REF, "octavia", ns)["status"].get("healthManagerPorts") or {}).get(
            "node-2")) and p.get("portId"), timeout=90, message="a port for node-2")
        port_id = api.get(REF, "octavia", ns)["status"]["healthManagerPorts"]["node-2"]["portId"]
        assert os_.network.get_port(port_id).binding_host_id == "node-2"
        op.wait_for(lambda: api.get("deployments", "octavia-health-manager", ns)["spec"]["replicas"] == 3, timeout=90)
        op.wait_for(lambda: op.metrics().get(("octavia_operator_managed_nodes", (("name", "octavia"),
                                                                                   ("namespace", ns)))) == 3,
                    timeout=30, message="three managed nodes in the metrics")
        # ... and leaves: its port goes, and its series with it
        kube_nodes.remove("node-2")
        op.wait_for(lambda: os_.network.find_port(port_id) is None, timeout=90, message="node-2's port deleted")
        op.wait_for(lambda: op.metrics().get(("octavia_operator_managed_nodes", (("name", "octavia"),
                                                                                   ("namespace", ns)))) == 2,
                    timeout=30, message="two managed nodes in the metrics")
        assert not [k for k in op.metrics() if ("node", "node-2") in k[1]]

        # a deleted child comes back through the child watch (the resource itself did not change)
        generation = api.get(REF, "octavia", ns)["metadata"]["generation"]
        api.delete("deployments", "octavia-worker", ns)
        op.wait_for(lambda: api.exists("deployments", "octavia-worker", ns), timeout=60, message="worker restored")
        assert api.get(REF, "octavia", ns)["metadata"]["generation"] == generation

        # a rotation on request: an annotation reaches the operator through kopf's update handler
        secret = lambda: api.get("secrets", "octavia-keystone", ns)["data"]["password"]  # noqa: E731
        old_password = secret()
        api.patch(REF, "octavia", {"metadata": {"annotations": {
            "octavia-operator.dev/rotate-service-password": "lifecycle-1"}}}, ns)
        op.wait_for(lambda: (api.get(REF, "octavia", ns)["status"].get("rotations") or {}).get("servicePassword")
                    == "lifecycle-1", timeout=90, message="the service password rotated")
        assert secret() != old_password
        op.wait_for(lambda: conditions(api.get(REF, "octavia", ns))["Ready"]["status"] == "True", timeout=120,
                    message="Ready again after the rotation")

        # one status writer: every status write went through the operator's own serialised path (its
        # client names its field manager), none through kopf's patch after a handler returned
        writes = [e for e in kube_cluster.audit(op.identity.username, op.started) if e["verb"] == "patch"
                  and (e.get("objectRef") or {}).get("resource") == "octaviadeployments"
                  and (e.get("objectRef") or {}).get("subresource") == "status"]
        assert writes, "no status write at all"
        assert all("fieldManager=octavia-operator" in e["requestURI"] for e in writes), sorted(
            {e["requestURI"] for e in writes if "fieldManager=octavia-operator" not in e["requestURI"]})

        # deletionPolicy Delete: the finalizer deletes what the deployment owns in OpenStack, then the
        # real garbage collector removes every child
        api.delete(REF, "octavia", ns)
        op.wait_for(lambda: api.get(REF, "octavia", ns) is None, timeout=180, message="the resource is gone")
        assert os_.network.find_network(ids["networkId"]) is None
        assert os_.identity.find_user(f"octavia-{deployment['sfx']}", domain_id="default") is None
        # ... the generated Secrets and the database's volume included
        op.wait_for(lambda: not owned_children(api, ns), timeout=90,
                    message=lambda: f"children garbage-collected: {sorted(owned_children(api, ns))}")


def check_converged_metrics(op, ns: str, obj: dict) -> None:
    """What a converged deployment's metrics say (scraped from the operator process's /metrics)."""
    import datetime as dt
    m = op.metrics()
    me = (("name", "octavia"), ("namespace", ns))

    def get(series: str, **labels: str) -> float | None:
        return m.get((series, tuple(sorted({**dict(me), **labels}.items()))))
    assert get("octavia_operator_condition_status", type="Ready") == 1
    assert get("octavia_operator_reconcile_total", step="network", result="ok") >= 1
    ports = obj["status"]["healthManagerPorts"]
    assert get("octavia_operator_managed_nodes") == len(ports) == 2
    for node in ports:
        assert get("octavia_operator_health_manager_port_bound", node=node) == 1
        assert get("octavia_operator_hostagent_ready", node=node) == 1
    client = get("octavia_operator_certificate_expiry_timestamp_seconds", certificate="client")
    expires = dt.datetime.fromisoformat(obj["status"]["certificates"]["clientCertificateExpires"].replace("Z", "+00:00"))
    assert client == expires.timestamp()
    assert get("octavia_operator_certificate_expiry_timestamp_seconds", certificate="server_ca") > client
    # the OpenStack requests it made, by service (the loopback cloud's catalog), method and status
    network_gets = m.get(("octavia_operator_openstack_requests_total", (("method", "GET"), ("service", "network"),
                                                                        ("status", "200"))))
    assert network_gets and network_gets > 0, sorted(k for k in m if "openstack" in k[0])
    assert m.get(("octavia_operator_openstack_requests_total", (("method", "POST"), ("service", "identity"),
                                                                ("status", "201")))), "no token request counted"
    durations = [v for (name, labels), v in m.items() if name == "octavia_operator_reconcile_duration_seconds_count"]
    assert durations and sum(durations) > 0


DURABLE = ("octavia-keystone", "octavia-passphrases", "octavia-certs", "octavia-database", "octavia-messaging",
           "octavia-ssh")


def test_retain_keeps_what_cannot_be_regenerated_and_a_re_created_resource_takes_it_over(
        kube_cluster, deployment, run_operator):
    """deletionPolicy Retain: the cloud resources, the CAs and their keys, the passphrases, the heartbeat key,
    the passwords and the embedded database's volume survive the resource; the other children go. The same
    resource created again (a GitOps prune and re-sync, a restore) converges on all of it: the same CAs,
    the same keys and passwords, the same OpenStack resources (no duplicate, nothing replaced), and even a
    rotation annotation still in its manifest is not carried out a second time."""
    api, ns, os_, sfx = kube_cluster.api, deployment["ns"], deployment["os"], deployment["sfx"]
    spec = {**deployment["spec"], "deletionPolicy": "Retain"}
    manifest = resource(ns, spec)
    manifest["metadata"]["annotations"] = {"octavia-operator.dev/rotate-server-ca": "gitops-1",
                                           "octavia-operator.dev/rotate-service-password": "gitops-1"}
    api.create(credentials_secret(ns, deployment["clouds_yaml"]))
    ready = lambda: (o := api.get(REF, "octavia", ns)) and conditions(o).get(  # noqa: E731
        "ConfigReady", {}).get("status") == "True" and o
    with run_operator(ns) as op:
        api.create(manifest)
        first = op.wait_for(ready, timeout=240, message="ConfigReady")
        ids = first["status"]["openstack"]
        kept = {name: api.get("secrets", name, ns) for name in DURABLE}
        assert all(kept.values()), [k for k, v in kept.items() if not v]
        for name, sec in kept.items():
            assert "ownerReferences" not in sec["metadata"], name
            assert sec["metadata"]["annotations"]["octavia-operator.dev/owner-id"] == first["metadata"]["uid"]
        op.wait_for(lambda: api.objects("persistentvolumeclaims", ns), timeout=60, message="the database claims")
        claims = {c["metadata"]["name"]: c["metadata"]["uid"] for c in api.objects("persistentvolumeclaims", ns)}

        api.delete(REF, "octavia", ns)
        op.wait_for(lambda: api.get(REF, "octavia", ns) is None, timeout=60)
        op.wait_for(lambda: not api.exists("configmaps", "octavia-config", ns)
                    and not api.exists("deployments", "octavia-api", ns), timeout=60,
                    message="the other children garbage-collected")
        for name, sec in kept.items():
            assert api.get("secrets", name, ns)["data"] == sec["data"], f"{name} changed or went"
        assert os_.network.get_network(ids["networkId"])
        assert os_.image.get_image(ids["imageId"])
        assert os_.compute.get_flavor(ids["flavorId"])
        assert os_.identity.find_user(f"octavia-{sfx}", domain_id="default") is not None

        # the same manifest again: a new uid, the same name
        api.create(manifest)
        second = op.wait_for(lambda: (o := ready()) and o["metadata"]["uid"] != first["metadata"]["uid"] and o,
                             timeout=240, message="ConfigReady after the re-create")
    try:
        for name, sec in kept.items():
            now = api.get("secrets", name, ns)
            assert now["data"] == sec["data"], f"{name}: regenerated or rotated by the re-created resource"
            assert now["metadata"]["annotations"]["octavia-operator.dev/owner-id"] == first["metadata"]["uid"]
            assert "ownerReferences" not in now["metadata"], name
        assert {k: v for k, v in second["status"]["openstack"].items() if k in ids} == ids
        assert len(list(os_.network.networks(name=f"lb-mgmt-net-{sfx}"))) == 1
        assert len(list(os_.network.security_groups(name=f"lb-mgmt-sec-grp-{sfx}"))) == 1
        assert len([u for u in os_.identity.users() if u.name == f"octavia-{sfx}"]) == 1
        assert len(list(os_.image.images(tag=f"amphora-{sfx}"))) == 1
        assert {c["metadata"]["name"]: c["metadata"]["uid"]
                for c in api.objects("persistentvolumeclaims", ns)} == claims, "the database's volume was replaced"
        # the new resource carries the same ownership tag: its own teardown (Delete) finds everything
    finally:  # clean the shared cloud with the operator's own teardown, as the first owner
        teardown_cloud(api.get(REF, "octavia", ns) or first, deployment, owner_id=first["metadata"]["uid"])


def test_sigkill_and_restart_converge_without_duplicates(kube_cluster, deployment, run_operator):
    api, ns, os_, sfx = kube_cluster.api, deployment["ns"], deployment["os"], deployment["sfx"]
    api.create(credentials_secret(ns, deployment["clouds_yaml"]))
    with run_operator(ns) as op:
        api.create(resource(ns, deployment["spec"]))
        # killed in the middle: once the network exists, before everything is done
        op.wait_for(lambda: (api.get(REF, "octavia", ns).get("status") or {}).get("openstack", {}).get("networkId"),
                    timeout=120, interval=0.2)
        op.kill()
    with run_operator(ns) as op:
        obj = op.wait_for(lambda: (o := api.get(REF, "octavia", ns)) and conditions(o)["Ready"]["status"] == "True"
                          and o, timeout=240, message="Ready after the restart")
    assert len(list(os_.network.networks(name=f"lb-mgmt-net-{sfx}"))) == 1
    assert len(list(os_.network.security_groups(name=f"lb-mgmt-sec-grp-{sfx}"))) == 1
    for n_ in ("node-0", "node-1"):
        assert len(list(os_.network.ports(name=f"octavia-health-manager-{n_}",
                                          network_id=obj["status"]["openstack"]["networkId"]))) == 1
    assert len([u for u in os_.identity.users() if u.name == f"octavia-{sfx}"]) == 1


def test_node_heartbeats_of_hundreds_of_nodes_cost_nothing_while_unconverged(kube_cluster, deployment, run_operator,
                                                                            os_cloud_config):
    """200 kwok nodes more, and a deployment that stays unconverged (its allocation pool has one address
    for two health-manager ports: AllocationPoolExhausted, which waits for the user). Node heartbeats and
    other changes that do not matter (status, an unrelated annotation) of all of them, three rounds, cost
    no OpenStack request and no LIST of nodes; a change that matters (a node starts matching the
    selector) is still acted upon. OpenStack requests are counted by a proxy in front of every API."""
    import datetime as dt

    from cloud.proxy import ProxiedCloud
    from kube.cluster import KWOK_ANNOTATION
    api, ns, admin = kube_cluster.api, deployment["ns"], kube_cluster.admin
    proxied = ProxiedCloud(deployment["os"], os_cloud_config["clouds_yaml"], os_cloud_config["cloud"])
    extra = [f"storm-{i:03d}" for i in range(200)]
    spec = dict(deployment["spec"])
    mn = dict(spec["managementNetwork"])
    start = mn["allocationPool"]["start"]
    spec["managementNetwork"] = {**mn, "allocationPool": {"start": start, "end": start}}
    requests = lambda: sum(len(p.requests) for p in proxied.proxies.values())  # noqa: E731
    try:
        for name in extra:
            admin.create({"apiVersion": "v1", "kind": "Node", "metadata": {
                "name": name, "labels": {"kubernetes.io/hostname": name, "type": "kwok"},
                "annotations": {KWOK_ANNOTATION: "fake"}}})
        api.create(credentials_secret(ns, proxied.clouds_yaml("admin-cloud")))
        # no retry and no drift timer inside the measurement: only events could cause requests
        slow = {"OCTAVIA_OPERATOR_RETRY_DELAY": "600", "OCTAVIA_OPERATOR_RETRY_MAX": "600"}
        with run_operator(ns, env=slow) as op:
            api.create(resource(ns, spec))
            op.wait_for(lambda: conditions(api.get(REF, "octavia", ns)).get("HealthManagerPortsReady", {}).get(
                "reason") == "AllocationPoolExhausted", timeout=180, message="AllocationPoolExhausted")
            # quiet first: the last request some seconds ago
            last = [requests(), time.monotonic()]

            def quiet() -> bool:
                n = requests()
                if n != last[0]:
                    last[:] = [n, time.monotonic()]
                return time.monotonic() - last[1] > 4
            op.wait_for(quiet, timeout=60, message="the operator goes quiet")
            before, since = requests(), dt.datetime.now(dt.timezone.utc)
            for rnd in range(3):
                now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                for name in extra + ["node-0", "node-1"]:
                    admin.patch("v1", "Node", name, {"metadata": {"annotations": {"example.com/heartbeat": str(rnd)}}})
                    admin.patch("v1", "Node", name, {"status": {"conditions": [
                        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kwok",
                         "lastHeartbeatTime": now, "lastTransitionTime": now}]}}, subresource="status")
            time.sleep(4)   # > the debounce: a scheduled reconcile would have run
            storm = requests() - before
            assert storm == 0, f"{storm} OpenStack requests caused by node events that do not matter"
            lists = [e for e in kube_cluster.audit(op.identity.username, since)
                     if e["verb"] == "list" and (e.get("objectRef") or {}).get("resource") == "nodes"]
            assert lists == [], f"{len(lists)} LISTs of nodes during the storm"

            # a change that matters is still seen: a node becomes a control-plane node, so it is selected
            admin.patch("v1", "Node", extra[0], {"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}}})
            op.wait_for(lambda: requests() > before, timeout=30, message="a reconcile after a relevant change")
    finally:
        proxied.stop()
        for name in extra:
            admin.delete("v1", "Node", name)


def test_the_churn_of_its_own_pods_costs_no_openstack_request(kube_cluster, deployment, kube_nodes, run_operator,
                                                             os_cloud_config):
    """Converged, the children's churn (the host agent's and the services' pods deleted and re-made by their
    controllers, the DaemonSet's and Deployments' status following) causes reconciles that reuse the OpenStack
    results of the last full reconcile: no OpenStack request at all, and still Ready. A node joining is a
    full reconcile: its port is made. OpenStack requests are counted by a proxy in front of every API."""
    from cloud.proxy import ProxiedCloud
    api, ns, admin = kube_cluster.api, deployment["ns"], kube_cluster.admin
    proxied = ProxiedCloud(deployment["os"], os_cloud_config["clouds_yaml"], os_cloud_config["cloud"])
    requests = lambda: sum(len(p.requests) for p in proxied.proxies.values())  # noqa: E731
    try:
        api.create(credentials_secret(ns, proxied.clouds_yaml("admin-cloud")))
        # no drift timer inside the measurement (it reconciles in full, by design)
        with run_operator(ns, env={"OCTAVIA_OPERATOR_DRIFT_INTERVAL": "3600"}) as op:
            api.create(resource(ns, deployment["spec"]))
            op.wait_for(lambda: conditions(api.get(REF, "octavia", ns)).get("Ready", {}).get("status") == "True",
                        timeout=240, message="Ready")
            last = [requests(), time.monotonic(), op.logs().count("reconciled")]

            def quiet() -> bool:   # no request and no reconcile for some seconds
                n, r_ = requests(), op.logs().count("reconciled")
                if (n, r_) != tuple(last[::2]):
                    last[:] = [n, time.monotonic(), r_]
                return time.monotonic() - last[1] > 5
            op.wait_for(quiet, timeout=120, message="the operator goes quiet")
            before, reconciles = requests(), op.logs().count("reusing the last OpenStack results")
            pods = [p for p in admin.list("v1", "Pod", ns) if (p["metadata"].get("labels") or {}).get(
                "app.kubernetes.io/managed-by") == "octavia-operator" or p["metadata"].get("ownerReferences")]
            assert pods, "no pods of the deployment"
            for p in pods:
                admin.delete("v1", "Pod", p["metadata"]["name"], ns)
            op.wait_for(lambda: op.logs().count("reusing the last OpenStack results") > reconciles, timeout=60,
                        message="a reconcile caused by the children")
            op.wait_for(quiet, timeout=180, message="the operator goes quiet after the churn")
            op.wait_for(lambda: conditions(api.get(REF, "octavia", ns)).get("Ready", {}).get("status") == "True",
                        timeout=120, message="Ready again")
            assert requests() == before, f"{requests() - before} OpenStack requests caused by the pods' churn"

            kube_nodes.add("node-2")   # a node event: a full reconcile, which makes its port
            op.wait_for(lambda: "node-2" in (api.get(REF, "octavia", ns)["status"].get("healthManagerPorts") or {}),
                        timeout=120, message="the port of the node that joined")
            assert requests() > before
    finally:
        proxied.stop()
