"""End to end with the real Octavia: the operator's pods, run for real in the images CI builds.

The operator runs as users run it (its own process, the chart's ServiceAccount, the real API server,
the loopback cloud). kwok only pretends to run the pods it creates; this test then runs them for real
with tests/pods (podman, runc), from the Pod objects the API server holds:

    db-sync Job pod   own network namespace         -> the MariaDB that plays the embedded StatefulSet
    api pod           own network namespace         -> MariaDB, RabbitMQ, Keystone; the test reaches it
                                                       through a port bridge, as through its Service
    worker pod        node-0's namespace (hostNetwork) -> MariaDB, RabbitMQ, Keystone, Nova, Neutron, Glance
    housekeeping pod  node-0's namespace (hostNetwork) -> MariaDB

Everything the pods read comes from the operator: octavia.conf (ConfigMap), secrets.conf and the
certificates (Secrets), mounted at the pod spec's paths, with its command lines, users and read-only
root filesystems, in ghcr.io/octavia-operator/octavia:<release>-<version> built by images/build.sh.
The Service names of the embedded MariaDB and RabbitMQ resolve, inside the pods, to the bridge that
reaches the real servers playing them, which were initialised from the StatefulSets' environment.

The chain: the operator converges; db-sync migrates to head; the API answers /healthcheck and a
listing with a Keystone token; a load balancer created through the API reaches the worker over
RabbitMQ and ends in ERROR (the loopback cloud has no compute); housekeeping runs its DB cleanup.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest
import requests

from kube.cluster import free_port
from octavia_operator import names as n
from octavia_operator.releases import OPERATOR_IMAGE, octavia_image
from octavia_operator.spec import DEFAULT_RELEASE
from octd_helpers import REF, clouds_yaml_for, credentials_secret, random_cidr, serve_image, spec_for, volumes_for
from pods import servers
from pods.runner import PodRunner, wait_http
from test_operator_process import conditions, not_ready, resource, teardown_cloud

pytestmark = [pytest.mark.kube, pytest.mark.openstack]

OCTAVIA_IMAGE = octavia_image(DEFAULT_RELEASE)
BUILD_HINT = "build them with `bash images/build.sh` (root, podman, debootstrap)"


@pytest.fixture(scope="module")
def built_images():
    missing = [img for img in (OCTAVIA_IMAGE, OPERATOR_IMAGE)
               if subprocess.run(["podman", "image", "exists", img], capture_output=True).returncode != 0]
    if missing:
        msg = f"images not built: {', '.join(missing)}; {BUILD_HINT}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true: {msg}", pytrace=False)
        pytest.skip(msg)


def pods_of(api, ns: str, component: str) -> list[dict]:
    sel = ",".join(f"{k}={v}" for k, v in n.selector("octavia", component).items())
    return [p for p in api.objects("pods", ns, labels=sel) if p["spec"].get("nodeName")]


def one_pod(api, ns: str, component: str, wait) -> dict:
    return wait(lambda: (ps := pods_of(api, ns, component)) and ps[0], timeout=60, message=f"{component} pod")


def statefulset_env(runner: PodRunner, api, ns: str, name: str) -> dict[str, str]:
    sts = api.get("statefulsets", name, ns)
    pod = {"metadata": {"name": f"{name}-0", "namespace": ns}, "spec": sts["spec"]["template"]["spec"]}
    return runner._env(pod, pod["spec"]["containers"][0])


def alembic_head(venv) -> str:
    """The head revision of Octavia's migrations, from the test venv (the same pins as the image)."""
    code = ("import os, octavia.db.migration as m; from alembic.config import Config; "
            "from alembic.script import ScriptDirectory; c = Config(); "
            "c.set_main_option('script_location', os.path.join(os.path.dirname(m.__file__), 'alembic_migrations'));"
            " print(ScriptDirectory.from_config(c).get_current_head())")
    return subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()


def service_hosts(ns: str, service: str) -> list[str]:
    return [service, f"{service}.{ns}", f"{service}.{ns}.svc", f"{service}.{ns}.svc.cluster.local"]


def test_end_to_end_with_the_real_octavia(kube_cluster, kube_namespace, kube_nodes, run_operator, os_cloud,
                                          os_cloud_config, fake_agent_hosts, rabbitmq_admin, built_images,
                                          octavia_venv, tmp_path, wait_for):
    api, ns = kube_cluster.api, kube_namespace
    kube_nodes.add("node-0")
    pvs = volumes_for(kube_cluster, ns)
    sfx = uuid.uuid4().hex[:8]
    clouds_yaml = clouds_yaml_for(os_cloud_config)
    cloud_ports = {int(u.rsplit(":", 1)[1].split("/")[0]) for u in (os_cloud_config["auth_url"],)} | {9696, 9292, 8774}
    vip_net = None
    runner = None
    with serve_image() as url, run_operator(ns, env={"OCTAVIA_OPERATOR_DRIFT_INTERVAL": "30"}) as op:
        spec = spec_for(sfx, url, random_cidr())
        try:
            # -- 1. the operator converges (kwok plays the pods) -----------------------------------------
            api.create(credentials_secret(ns, clouds_yaml))
            api.create(resource(ns, spec))
            obj = op.wait_for(lambda: (o := api.get(REF, "octavia", ns)) and conditions(o).get("Ready", {}).get(
                "status") == "True" and o, timeout=300, message="Ready")
            assert obj["status"]["openstack"]["networkId"]

            # -- 2. the servers that play the embedded StatefulSets, from their environment -------------
            runner = PodRunner(api, tmp_path / "pods", prefix=f"e2e{sfx[:4]}")
            db_env = statefulset_env(runner, api, ns, "octavia-mariadb")
            mq_env = statefulset_env(runner, api, ns, "octavia-rabbitmq")
            servers.rabbitmq_account(rabbitmq_admin, mq_env, "/")
            with servers.mariadb(tmp_path / "mariadb", db_env) as db:
                runner.into = {p: f"127.0.0.1:{p}" for p in cloud_ports}
                runner.into.update({3306: f"127.0.0.1:{db.port}", 5672: f"127.0.0.1:{rabbitmq_admin['amqp_port']}"})
                runner.hosts = {h: "127.0.0.1" for svc in ("octavia-mariadb", "octavia-rabbitmq")
                                for h in service_hosts(ns, svc)}

                # -- 3. db-sync: the Job's pod, as the kubelet would run it -----------------------------
                job_pod = one_pod(api, ns, "db-sync", wait_for)
                sync = runner.start(job_pod)
                rc = sync.wait(timeout=300)
                assert rc == 0, f"db-sync exited {rc}:\n{sync.logs()[-4000:]}"
                version = db.sql("SELECT version_num FROM alembic_version", "octavia").split()
                assert version == [alembic_head(octavia_venv)], version
                assert "amphora" in db.sql("SHOW TABLES", "octavia").split()

                # -- 4. the API: /healthcheck, then a listing with a Keystone token ---------------------
                api_pod = one_pod(api, ns, "api", wait_for)
                api_c = runner.start(api_pod)
                api_port = free_port()
                runner.expose(api_c.netns, api_port, spec.get("api", {}).get("port", 9876))
                base = f"http://127.0.0.1:{api_port}"
                # oslo.middleware's healthcheck: 200, or 204 (no body) for a client that accepts no text
                status, _ = wait_http(f"{base}/healthcheck", timeout=120, ok=(200, 204), container=api_c)
                token = os_cloud.auth_token
                http = requests.Session()
                http.trust_env = False
                http.headers["X-Auth-Token"] = token
                r = http.get(f"{base}/v2/lbaas/loadbalancers", timeout=30)
                assert r.status_code == 200, (r.status_code, r.text[:500], api_c.logs()[-2000:])
                assert r.json() == {"loadbalancers": [], "loadbalancers_links": []}
                assert http.get(f"{base}/v2/lbaas/loadbalancers",
                                headers={"X-Auth-Token": "not-a-token"}, timeout=30).status_code == 401

                # -- 5. a load balancer reaches the worker over RabbitMQ and ends in ERROR (no compute) ---
                worker_c = runner.start(one_pod(api, ns, "worker", wait_for))
                vip_net = os_cloud.network.create_network(name=f"e2e-vip-{sfx}")
                vip_sub = os_cloud.network.create_subnet(network_id=vip_net.id, ip_version=4,
                                                         cidr=random_cidr(), name=f"e2e-vip-{sfx}")
                r = http.post(f"{base}/v2/lbaas/loadbalancers", timeout=60,
                              json={"loadbalancer": {"name": f"e2e-{sfx}", "vip_subnet_id": vip_sub.id}})
                assert r.status_code == 201, (r.status_code, r.text[:1000], api_c.logs()[-3000:])
                lb_id = r.json()["loadbalancer"]["id"]

                def lb_status():
                    if not worker_c.running():
                        pytest.fail(f"the worker exited:\n{worker_c.logs()[-4000:]}")
                    return http.get(f"{base}/v2/lbaas/loadbalancers/{lb_id}", timeout=30).json()[
                        "loadbalancer"]["provisioning_status"]
                final = wait_for(lambda: (s := lb_status()) in ("ERROR", "ACTIVE") and s, timeout=420, interval=3,
                                 message="the load balancer leaves PENDING_CREATE")
                wlog = worker_c.logs()
                assert final == "ERROR", wlog[-4000:]
                assert lb_id in wlog, "the worker never saw the load balancer"
                print("worker log (tail):\n" + wlog[-3000:])

                # -- 6. housekeeping purges an expired amphora record: its DB cleanup job ran -----------
                old = str(uuid.uuid4())
                db.sql("INSERT INTO amphora (id, status, updated_at, created_at) VALUES "
                       f"('{old}', 'DELETED', NOW() - INTERVAL 30 DAY, NOW() - INTERVAL 31 DAY)", "octavia")
                hk = runner.start(one_pod(api, ns, "housekeeping", wait_for))
                wait_for(lambda: not db.sql(f"SELECT id FROM amphora WHERE id='{old}'", "octavia").strip(),
                         timeout=120, interval=2, message="housekeeping purges the expired amphora")
                assert f"Purged db record for Amphora ID: {old}" in hk.logs()
                assert hk.running(), hk.logs()[-3000:]
                for c in (api_c, worker_c, hk):
                    bad = [ln for ln in c.logs().splitlines() if " CRITICAL " in ln or "Traceback" in ln]
                    if c is not worker_c:
                        assert not bad, f"{c.name}:\n" + "\n".join(bad[:20])
        finally:
            if runner is not None:
                runner.cleanup()
            if vip_net is not None:
                for p in os_cloud.network.ports(network_id=vip_net.id):
                    os_cloud.network.delete_port(p)
                os_cloud.network.delete_network(vip_net)
            live = api.get(REF, "octavia", ns)
            if live is not None:
                teardown_cloud(live, {"clouds_yaml": clouds_yaml})
            for pv in pvs:
                kube_cluster.admin.delete("v1", "PersistentVolume", pv)
