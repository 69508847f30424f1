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

import contextlib
import ipaddress
import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from kube.cluster import free_port
from octavia_operator import names as n
from octavia_operator.releases import OPERATOR_IMAGE, octavia_image
from octavia_operator.spec import DEFAULT_RELEASE
from octd_helpers import REF, clouds_yaml_for, credentials_secret, random_cidr, serve_image, spec_for, volumes_for
from hostagent.hostagent_nsutil import NetNS, Ovs, disable_tx_offload
from pods import amphora_tls, servers
from cloud.proxy import Proxy, _origin
from pods.runner import PodRunner, wait_http
from test_operator_process import conditions, resource, teardown_cloud

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


def conf_value(text: str, section: str, key: str) -> str:
    import configparser
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    cp.read_string(text)
    return cp.get(section, key)


def rendered(api, ns: str) -> tuple[str, str]:
    """octavia.conf (ConfigMap) and secrets.conf (Secret), as the operator wrote them."""
    import base64
    conf = api.get("configmaps", "octavia-config", ns)["data"]["octavia.conf"]
    sec = base64.b64decode(api.get("secrets", "octavia-config-secrets", ns)["data"]["secrets.conf"]).decode()
    return conf, sec


def existing_netns(name: str) -> NetNS:
    ns = NetNS("x")
    ns.name, ns.created = name, False   # made by the pod runner, deleted by it
    return ns


@dataclass
class Fabric:
    """The network under the nodes: a Linux bridge in a namespace of its own ("the physical network"),
    joined by a veth plugged into each node's br-int (Open vSwitch, userspace datapath, in the node's
    namespace) and by the simulated amphora's eth0. What Neutron's tunnels do in a cloud."""
    fab: NetNS
    amp: NetNS
    ovs: dict[str, Ovs] = field(default_factory=dict)

    @classmethod
    def build(cls, runner: PodRunner, nodes: list[str], amp_cidr: str, workdir) -> "Fabric":
        fab = NetNS("fab").create()
        out = cls(fab=fab, amp=NetNS("amp").create())
        try:
            fab.ip("link", "add", "br-fab", "type", "bridge")
            fab.ip("link", "set", "br-fab", "up")
            for i, node in enumerate(nodes):
                ns = existing_netns(runner.node_netns(node))
                ovs = Ovs(ns, workdir / f"ovs-{node}")
                ovs.start(fresh_db=True)
                ovs.add_int_bridge("br-int")
                out.ovs[node] = ovs
                fab.ip("link", "add", f"f{i}", "type", "veth", "peer", "name", f"up{i}")
                fab.ip("link", "set", f"up{i}", "netns", ns.name)
                fab.ip("link", "set", f"f{i}", "master", "br-fab")
                fab.ip("link", "set", f"f{i}", "up")
                ns.ip("link", "set", f"up{i}", "up")
                ovs.vsctl("--may-exist", "add-port", "br-int", f"up{i}")
                disable_tx_offload(ns, f"up{i}")
                disable_tx_offload(fab, f"f{i}")
            fab.ip("link", "add", "fa", "type", "veth", "peer", "name", "eth0")
            fab.ip("link", "set", "eth0", "netns", out.amp.name)
            fab.ip("link", "set", "fa", "master", "br-fab")
            fab.ip("link", "set", "fa", "up")
            out.amp.ip("addr", "add", amp_cidr, "dev", "eth0")
            out.amp.ip("link", "set", "eth0", "up")
            disable_tx_offload(out.amp, "eth0")
            disable_tx_offload(fab, "fa")
        except Exception:
            out.cleanup()
            raise
        return out

    def cleanup(self) -> None:
        for ovs in self.ovs.values():
            ovs.stop()
        self.amp.delete()
        self.fab.delete()


def o_hm0_address(ns: NetNS) -> str | None:
    addrs = ns.addrs("o-hm0") if ns.link("o-hm0") else []
    return addrs[0].split("/")[0] if addrs else None


def health_row(db, amp_id: str):
    out = db.sql(f"SELECT UNIX_TIMESTAMP(last_update) FROM amphora_health WHERE amphora_id='{amp_id}'", "octavia")
    return float(out.strip()) if out.strip() else None


def start_sender(fabric: Fabric, venv, workdir: Path, amp_id: str, key: str, dests: str) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "key").write_text(key)
    (workdir / "dests").write_text(dests)
    log = open(workdir / "sender.log", "ab")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.Popen(["ip", "netns", "exec", fabric.amp.name, str(venv / "bin" / "python"),
                             str(Path(__file__).parent / "pods" / "amphora_sim.py"), "--id", amp_id,
                             "--key-file", str(workdir / "key"), "--dests-file", str(workdir / "dests"),
                             "--interval", "1"], stdout=log, stderr=subprocess.STDOUT, env=env)


def spec_port(spec: dict) -> int:
    return (spec.get("healthManager") or {}).get("heartbeatPort", 5555)


def exec_ok(container, snippet: str, *args: str) -> str:
    p = container.exec("/var/lib/kolla/venv/bin/python", "-c", snippet, *args, timeout=120)
    assert p.returncode == 0, f"{container.name}: rc={p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p.stdout.strip().splitlines()[-1]


def secret_file(api, ns: str, name: str, key: str) -> str:
    import base64
    return base64.b64decode(api.get("secrets", name, ns)["data"][key]).decode()


@contextlib.contextmanager
def role_tokens(os_cloud, auth_url: str, sfx: str):
    """A project and three users of the loopback Keystone: load-balancer_observer, load-balancer_member and
    Keystone's plain member, each with a project-scoped token (removed afterwards)."""
    from keystoneauth1 import session as ks_session
    from keystoneauth1.identity import v3
    idt = os_cloud.identity
    project = idt.create_project(name=f"e2e-rbac-{sfx}", domain_id="default")
    users, tokens = [], {}
    try:
        for label, role in (("observer", "load-balancer_observer"), ("lb_member", "load-balancer_member"),
                            ("member", "member")):
            pw = uuid.uuid4().hex
            user = idt.create_user(name=f"e2e-{label}-{sfx}", password=pw, domain_id="default")
            users.append(user)
            idt.assign_project_role_to_user(project, user, idt.find_role(role))
            auth = v3.Password(auth_url=auth_url, username=user.name, password=pw, user_domain_id="default",
                               project_id=project.id)
            tokens[label] = ks_session.Session(auth=auth).get_token()
        yield tokens
    finally:
        for user in users:
            idt.delete_user(user, ignore_missing=True)
        idt.delete_project(project, ignore_missing=True)


@contextlib.contextmanager
def syslog_socket(directory: Path):
    """A datagram socket where the amphora agent's gunicorn sends its syslog (drained, never read)."""
    import socket
    directory.mkdir(parents=True, exist_ok=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(directory / "log"))
    os.chmod(directory / "log", 0o666)
    try:
        yield directory
    finally:
        s.close()


def start_amphora_agent(fabric: Fabric, agent_dir: Path, rsyslog: Path, name: str) -> str:
    """Octavia's amphora agent (the image's venv: the same Octavia), as root in the amphora's namespace."""
    from pods.runner import PODMAN, RUN_LIMITS
    subprocess.run(["podman", "rm", "-f", name], capture_output=True)
    p = subprocess.run([*PODMAN, "run", "-d", "--name", name, "--pull", "never", *RUN_LIMITS,
                        "--network", f"ns:/run/netns/{fabric.amp.name}", "--user", "0", "--cap-add", "NET_ADMIN",
                        "--volume", f"{agent_dir / 'certs'}:/etc/octavia/certs:ro",
                        "--volume", f"{agent_dir / 'amphora-agent.conf'}:/etc/octavia/amphora-agent.conf:ro",
                        "--volume", f"{rsyslog}:/run/rsyslog/octavia",
                        "--entrypoint", "/var/lib/kolla/venv/bin/amphora-agent", OCTAVIA_IMAGE,
                        "--config-file", "/etc/octavia/amphora-agent.conf"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return name


def agent_running(name: str) -> bool:
    p = subprocess.run(["podman", "inspect", "--format", "{{.State.Running}}", name], capture_output=True, text=True)
    return p.stdout.strip() == "true"


def agent_logs(name: str) -> str:
    p = subprocess.run(["podman", "logs", name], capture_output=True, text=True)
    q = subprocess.run(["podman", "exec", name, "tail", "-50", "/var/log/amphora-agent.log"], capture_output=True,
                       text=True)
    return (p.stdout + p.stderr)[-3000:] + q.stdout[-3000:]


def service_hosts(ns: str, service: str) -> list[str]:
    return [service, f"{service}.{ns}", f"{service}.{ns}.svc", f"{service}.{ns}.svc.cluster.local"]


def test_end_to_end_with_the_real_octavia(kube_cluster, kube_namespace, kube_nodes, run_operator, os_cloud,
                                          os_cloud_config, fake_agent_hosts, rabbitmq_admin, redis_server,
                                          ovn_dbs, built_images, octavia_venv, tmp_path, wait_for):
    api, ns = kube_cluster.api, kube_namespace
    nodes = ["node-0", "node-1"]
    for node in nodes:
        kube_nodes.add(node)
    pvs = volumes_for(kube_cluster, ns, servers=("mariadb", "rabbitmq", "valkey"))
    # the workers reach Nova through a proxy that can hold their "create server" call: a worker is then
    # known to be in the middle of a flow when the test kills it
    nova_origin, nova_path = _origin(os_cloud.endpoint_for("compute"))
    nova_gate = Proxy(nova_origin).start()
    sfx = uuid.uuid4().hex[:8]
    clouds_yaml = clouds_yaml_for(os_cloud_config)
    cloud_ports = {int(u.rsplit(":", 1)[1].split("/")[0]) for u in (os_cloud_config["auth_url"],)} | {9696, 9292, 8774}
    vip_net = None
    lb_id = None
    runner = None
    fabric = None
    senders: list[subprocess.Popen] = []
    with serve_image() as url, run_operator(ns, env={"OCTAVIA_OPERATOR_DRIFT_INTERVAL": "30"}) as op:
        spec = spec_for(sfx, url, random_cidr())
        # the taskflow jobboard on the embedded Valkey, two workers, claims that expire fast; debug logs
        # show which worker runs which task
        spec["jobboard"] = {"enabled": True, "expirationSeconds": 10}
        spec["worker"] = {"replicas": 2}
        # amphora log offloading to the receiver beside each health manager
        spec["amphora"]["logging"] = {"mode": "Receiver"}
        # the OVN provider next to the amphora one, on real NB/SB ovsdb-servers (ovn-central)
        spec["providers"] = {"enabled": ["amphora", "ovn"], "ovn": {"connectionSecret": "ovn-dbs"}}
        ovn_ports = {int(c.rsplit(":", 1)[1]) for c in (ovn_dbs.nb, ovn_dbs.sb)}
        spec["config"] = {"DEFAULT": {"debug": "true"}, "nova": {"endpoint": nova_gate.url + nova_path}}
        gate_port = int(nova_gate.url.rsplit(":", 1)[1])
        try:
            # -- 1. the operator converges (kwok plays the pods) -----------------------------------------
            api.create(credentials_secret(ns, clouds_yaml))
            api.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ovn-dbs", "namespace": ns},
                        "stringData": {"nb": ovn_dbs.nb, "sb": ovn_dbs.sb}})
            api.create(resource(ns, spec))
            obj = op.wait_for(lambda: (o := api.get(REF, "octavia", ns)) and conditions(o).get("Ready", {}).get(
                "status") == "True" and o, timeout=300, message="Ready")
            assert obj["status"]["openstack"]["networkId"]

            # -- 2. the servers that play the embedded StatefulSets, from their environment -------------
            runner = PodRunner(api, tmp_path / "pods", prefix=f"e2e{sfx[:4]}")
            db_env = statefulset_env(runner, api, ns, "octavia-mariadb")
            mq_env = statefulset_env(runner, api, ns, "octavia-rabbitmq")
            servers.rabbitmq_account(rabbitmq_admin, mq_env, "/")
            # the embedded Valkey, played by a real redis-server with the password of its generated Secret
            redis = redis_server(secret_file(api, ns, "octavia-jobboard", "password"))
            assert "requirepass" in secret_file(api, ns, "octavia-jobboard", "valkey.conf")
            with servers.mariadb(tmp_path / "mariadb", db_env) as db:
                runner.into = {p: f"127.0.0.1:{p}" for p in cloud_ports | {gate_port} | ovn_ports}
                runner.into.update({3306: f"127.0.0.1:{db.port}", 5672: f"127.0.0.1:{rabbitmq_admin['amqp_port']}",
                                    6379: f"127.0.0.1:{redis.port}"})
                runner.hosts = {h: "127.0.0.1" for svc in ("octavia-mariadb", "octavia-rabbitmq", "octavia-valkey")
                                for h in service_hosts(ns, svc)}

                # -- 3. db-sync: the Job's pod, as the kubelet would run it: its init containers make the
                #       jobboard's persistence database next to Octavia's and migrate it, then Octavia's ---
                job_pod = one_pod(api, ns, "db-sync", wait_for)
                for init in [c["name"] for c in job_pod["spec"].get("initContainers") or []] + [None]:
                    sync = runner.start(job_pod, init)
                    rc = sync.wait(timeout=300)
                    assert rc == 0, f"db-sync ({init or 'main'}) exited {rc}:\n{sync.logs()[-4000:]}"
                version = db.sql("SELECT version_num FROM alembic_version", "octavia").split()
                assert version == [alembic_head(octavia_venv)], version
                assert "amphora" in db.sql("SHOW TABLES", "octavia").split()
                assert {"logbooks", "flowdetails", "atomdetails"} <= set(db.sql("SHOW TABLES",
                                                                                "octavia_persistence").split())

                # -- 4. the API: /healthcheck, then a listing with a Keystone token ---------------------
                api_pod = one_pod(api, ns, "api", wait_for)
                api_c = runner.start(api_pod)
                # the driver agent: the API pod's second container, sharing its sockets' emptyDir
                agent_c = runner.start(api_pod, "driver-agent")
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
                # spec.policy (advanced-rbac, the default), with real Keystone tokens: a create is
                # authorised before its VIP is looked up, so a subnet that does not exist tells an
                # allowed create (400) from a refused one (403) without creating anything
                with role_tokens(os_cloud, os_cloud_config["auth_url"], sfx) as tokens:
                    def as_(label, method, **kw):
                        return requests.request(method, f"{base}/v2/lbaas/loadbalancers", timeout=30,
                                                headers={"X-Auth-Token": tokens[label]}, **kw).status_code
                    create = {"json": {"loadbalancer": {"vip_subnet_id": str(uuid.uuid4())}}}
                    seen = {label: (as_(label, "GET"), as_(label, "POST", **create))
                            for label in ("observer", "lb_member", "member")}
                    assert seen["observer"] == (200, 403), seen
                    assert seen["lb_member"][0] == 200 and seen["lb_member"][1] in (400, 404), seen
                    assert seen["member"] == (403, 403), seen

                # -- 5. a load balancer reaches a worker over RabbitMQ; the worker running its flow is killed
                #       mid-flow (held in Nova's "create server"); the other worker resumes the job from the
                #       jobboard and the load balancer leaves PENDING_CREATE (ERROR: there is no compute)
                worker_pods = wait_for(lambda: len(ps := pods_of(api, ns, "worker")) == 2 and ps, timeout=60,
                                       message="two worker pods")
                workers = [runner.start(p) for p in worker_pods]
                # a cast sent before a worker has declared its queue is dropped by the broker: wait for
                # the workers' consumers on Octavia's topic, as an operator would wait for pod readiness
                wait_for(lambda: servers.rabbitmq_consumers(rabbitmq_admin, "octavia_provisioning_v2") >= 2 or (
                    any(not w.running() for w in workers) and pytest.fail(
                        "a worker exited:\n" + "\n".join(w.logs()[-3000:] for w in workers))),
                    timeout=120, interval=1, message="both workers consume octavia_provisioning_v2")
                gate = nova_gate.hold("POST", "/servers")
                vip_net = os_cloud.network.create_network(name=f"e2e-vip-{sfx}")
                vip_sub = os_cloud.network.create_subnet(network_id=vip_net.id, ip_version=4,
                                                         cidr=random_cidr(), name=f"e2e-vip-{sfx}")
                r = http.post(f"{base}/v2/lbaas/loadbalancers", timeout=60,
                              json={"loadbalancer": {"name": f"e2e-{sfx}", "vip_subnet_id": vip_sub.id}})
                assert r.status_code == 201, (r.status_code, r.text[:1000], api_c.logs()[-3000:])
                lb_id = r.json()["loadbalancer"]["id"]
                wait_for(lambda: gate.held >= 1, timeout=180, interval=1,
                         message="a worker's flow reaches Nova's create server (held there)")
                create_task = "octavia-cert-compute-create' ("

                def runs_create(w) -> bool:
                    return any(create_task in ln and "into state 'RUNNING'" in ln for ln in w.logs().splitlines())
                running = wait_for(lambda: [w for w in workers if runs_create(w)] or None, timeout=60,
                                   message="the worker whose conductor runs the flow")
                assert len(running) == 1, [w.name for w in running]
                dead = running[0]
                worker_c = next(w for w in workers if w is not dead)
                assert not runs_create(worker_c)
                dead.kill()
                wait_for(lambda: not dead.running(), timeout=30, message="the worker is dead")
                assert http.get(f"{base}/v2/lbaas/loadbalancers/{lb_id}", timeout=30).json()["loadbalancer"][
                    "provisioning_status"] == "PENDING_CREATE"
                nova_gate.release(fail_held=503)   # the dead worker's call is answered to nobody

                def lb_status():
                    if not worker_c.running():
                        pytest.fail(f"the surviving worker exited:\n{worker_c.logs()[-4000:]}")
                    return http.get(f"{base}/v2/lbaas/loadbalancers/{lb_id}", timeout=30).json()[
                        "loadbalancer"]["provisioning_status"]
                final = wait_for(lambda: (s := lb_status()) in ("ERROR", "ACTIVE") and s, timeout=420, interval=3,
                                 message="the load balancer leaves PENDING_CREATE")
                wlog = worker_c.logs()
                assert final == "ERROR", wlog[-4000:]
                # the survivor claimed the dead worker's job once its claim expired and resumed the flow
                # where it stopped: the create-server task ran (and failed, at Nova) there
                assert any(create_task in ln and "into state 'FAILURE'" in ln for ln in wlog.splitlines()), \
                    wlog[-4000:]
                assert "compute_tasks.py" in wlog and "in execute" in wlog
                # it got as far as Nova: the image (by tag and owner), flavor, network, security group, key
                # pair and the amphora's certificate (signed with the operator's CA) were all accepted first
                assert "ComputeBuildException" in wlog, wlog[-4000:]
                print("surviving worker log (tail):\n" + wlog[-3000:])

                # -- 5b. provider=ovn: the ovn driver inside the API writes the load balancer into the real
                #        NB database and reports its status through the driver agent's sockets (same pod)
                def nb_lbs() -> dict[str, dict]:
                    out = json.loads(ovn_dbs.nbctl("--format=json", "--columns=name,external_ids", "list",
                                                   "Load_Balancer"))
                    return {name: dict(ext[1]) for name, ext in out["data"]}
                # Neutron here is ML2/OVS: nothing else writes the network's logical switch into NB
                ovn_dbs.nbctl("--may-exist", "ls-add", f"neutron-{vip_net.id}")
                r = http.post(f"{base}/v2/lbaas/loadbalancers", timeout=60, json={"loadbalancer": {
                    "name": f"e2e-ovn-{sfx}", "vip_subnet_id": vip_sub.id, "provider": "ovn"}})
                assert r.status_code == 201, (r.status_code, r.text[:1000], api_c.logs()[-3000:])
                ovn_lb = r.json()["loadbalancer"]["id"]
                ovn_status = wait_for(lambda: (s := http.get(f"{base}/v2/lbaas/loadbalancers/{ovn_lb}", timeout=30)
                                               .json()["loadbalancer"]["provisioning_status"]) != "PENDING_CREATE" and s,
                                      timeout=120, interval=1, message="the provider=ovn load balancer leaves PENDING")
                assert ovn_status == "ACTIVE", (ovn_status, api_c.logs()[-3000:], agent_c.logs()[-3000:])
                row = nb_lbs().get(ovn_lb)
                assert row is not None, nb_lbs()
                assert row.get("neutron:vip") == r.json()["loadbalancer"]["vip_address"], row
                assert http.delete(f"{base}/v2/lbaas/loadbalancers/{ovn_lb}", timeout=60).status_code == 204
                wait_for(lambda: ovn_lb not in nb_lbs(), timeout=60, interval=1, message="the NB row is deleted")
                assert agent_c.running(), agent_c.logs()[-3000:]

                # -- 6. housekeeping purges an expired amphora record: its DB cleanup job ran -----------
                old = str(uuid.uuid4())
                db.sql("INSERT INTO amphora (id, status, cert_busy, updated_at, created_at) VALUES "
                       f"('{old}', 'DELETED', 0, NOW() - INTERVAL 30 DAY, NOW() - INTERVAL 31 DAY)", "octavia")
                hk = runner.start(one_pod(api, ns, "housekeeping", wait_for))
                wait_for(lambda: not db.sql(f"SELECT id FROM amphora WHERE id='{old}'", "octavia").strip(),
                         timeout=120, interval=2, message="housekeeping purges the expired amphora")
                assert f"Purged db record for Amphora ID: {old}" in hk.logs()
                assert hk.running(), hk.logs()[-3000:]
                for c in (api_c, worker_c, hk):
                    bad = [ln for ln in c.logs().splitlines() if ln.split()[3:4] == ["CRITICAL"] or "Traceback" in ln]
                    if c is not worker_c:
                        assert not bad, f"{c.name}:\n" + "\n".join(bad[:20])

                # -- 7. the heartbeat path: the host agent's pod plumbs o-hm0 on each node's br-int, the
                #       health managers run in the nodes' namespaces, a simulated amphora on the same
                #       network sends Octavia's heartbeat to controller_ip_port_list
                conf, sec = rendered(api, ns)
                key = conf_value(sec, "health_manager", "heartbeat_key")
                dests = conf_value(conf, "health_manager", "controller_ip_port_list")
                cidr = ipaddress.ip_network(spec["managementNetwork"]["cidr"])
                amp_ip = str(cidr.network_address + 250)       # outside the allocation pool (.10 to .200)
                fabric = Fabric.build(runner, nodes, f"{amp_ip}/{cidr.prefixlen}", tmp_path / "fabric")
                agents = {}
                for pod in pods_of(api, ns, "hostagent"):
                    node = pod["spec"]["nodeName"]
                    agents[node] = runner.start(pod, host_paths={
                        "/run/openvswitch": str(fabric.ovs[node].base / "run"),
                        "/var/lib/octavia-hostagent": str(tmp_path / f"hostagent-{node}"),
                        "/run/xtables.lock": str(tmp_path / f"xtables-{node}.lock")})
                assert sorted(agents) == nodes
                ips = {}
                for node in nodes:
                    node_ns = existing_netns(runner.node_netns(node))
                    ips[node] = wait_for(lambda: o_hm0_address(node_ns) or (not agents[node].running() and pytest.fail(
                        f"the host agent on {node} exited:\n{agents[node].logs()[-3000:]}")), timeout=90, interval=1,
                        message=f"o-hm0 on {node}")
                assert sorted(f"{ip}:{spec_port(spec)}" for ip in ips.values()) == sorted(
                    d.strip() for d in dests.split(",")), (ips, dests)
                hms = {p["spec"]["nodeName"]: runner.start(p) for p in pods_of(api, ns, "health-manager")}
                assert sorted(hms) == nodes
                amp_id, stranger = str(uuid.uuid4()), str(uuid.uuid4())

                # -- 8. controller to amphora, mutual TLS: Octavia's amphora agent in the amphora's
                #       namespace, with a server certificate Octavia's generator signed with the
                #       operator's server CA; the worker's REST client, with the operator's client
                #       certificate, reaches it over o-hm0
                made = json.loads(exec_ok(worker_c, amphora_tls.server_cert_snippet, amp_id))
                agent_dir = tmp_path / "amphora-agent"
                (agent_dir / "certs").mkdir(parents=True)
                (agent_dir / "certs" / "server.pem").write_text(made["cert"] + made["key"])
                (agent_dir / "certs" / "client_ca.pem").write_text(secret_file(api, ns, "octavia-certs",
                                                                               "client_ca.bundle.pem"))
                (agent_dir / "amphora-agent.conf").write_text(amphora_tls.agent_conf(amp_id, amp_ip))
                with syslog_socket(agent_dir / "rsyslog") as rsyslog:
                    agent = start_amphora_agent(fabric, agent_dir, rsyslog, f"e2e{sfx[:4]}-amphora-agent")
                    try:
                        calls: list = []

                        def call_agent():
                            r = worker_c.exec("/var/lib/kolla/venv/bin/python", "-c", amphora_tls.client_snippet,
                                              amp_id, amp_ip, timeout=120)
                            calls.append(r)
                            if r.returncode == 0:
                                return r.stdout
                            if not agent_running(agent):
                                pytest.fail(f"amphora-agent exited:\n{agent_logs(agent)}")
                            return None
                        try:
                            out = wait_for(call_agent, timeout=90, interval=3,
                                           message="a mutual-TLS call from the worker to the amphora agent")
                        except pytest.fail.Exception:
                            last = calls[-1] if calls else None
                            pytest.fail("the worker's amphora REST client could not reach the amphora agent: "
                                        f"{last and last.stdout[-800:]}\n{last and last.stderr[-2500:]}\n"
                                        f"--- agent ---\n{agent_logs(agent)}", pytrace=False)
                        answer = json.loads(out.strip().splitlines()[-1])
                        assert answer["status"] == 200 and answer["body"]["api_version"], answer
                        other = worker_c.exec("/var/lib/kolla/venv/bin/python", "-c", amphora_tls.client_snippet,
                                              amp_id, amp_ip, timeout=120,
                                              env={"OTHER_CLIENT_PEM": amphora_tls.other_ca_client_pem()})
                        assert other.returncode != 0, ("a client certificate from another CA was accepted",
                                                       other.stdout[-1000:])
                        # refused by the amphora agent's TLS server: the client's CA is not the operator's
                        assert "TLSV1_ALERT_UNKNOWN_CA" in other.stderr, (other.stdout[-1000:], other.stderr[-3000:])
                    finally:
                        subprocess.run(["podman", "rm", "-f", agent], capture_output=True, timeout=60)

                for a in (amp_id, stranger):      # the load balancer's amphorae, as the worker records them
                    db.sql("INSERT INTO amphora (id, load_balancer_id, status, lb_network_ip, role, cert_busy, "
                           f"created_at, updated_at) VALUES ('{a}', '{lb_id}', 'ALLOCATED', '{amp_ip}', 'STANDALONE', 0, "
                           "NOW(), NOW())", "octavia")
                senders.append(start_sender(fabric, octavia_venv, tmp_path / "amp-good", amp_id, key, dests))
                senders.append(start_sender(fabric, octavia_venv, tmp_path / "amp-bad", stranger, key[::-1], dests))
                wait_for(lambda: health_row(db, amp_id), timeout=90, interval=1,
                         message="the amphora_health row of the amphora that signs with the heartbeat key")
                time.sleep(3)
                assert health_row(db, stranger) is None, "a heartbeat signed with a wrong key was accepted"
                assert all("Ignoring this packet" in c.logs() for c in hms.values()), \
                    {k: c.logs()[-2000:] for k, c in hms.items()}

                # -- 9. log offloading: the health-manager pods' log-receiver containers (rsyslogd from the
                #       image, uid 42437, read-only root) take what an amphora sends to admin_log_targets
                #       over o-hm0 (UDP: an amphora sends to the first target only), through the host
                #       agent's firewall on o-hm0, and print it marked admin / tenant
                receivers = {p["spec"]["nodeName"]: runner.start(p, "log-receiver")
                             for p in pods_of(api, ns, "health-manager")}
                admin_first = conf_value(conf, "amphora_agent", "admin_log_targets").split(",")[0]
                tenant_first = conf_value(conf, "amphora_agent", "tenant_log_targets").split(",")[0]
                assert conf_value(conf, "amphora_agent", "log_protocol") == "UDP"
                token = f"amp-log-{sfx}"
                for target, prio in ((admin_first, "local1.notice"), (tenant_first, "local0.info")):
                    host, port = target.rsplit(":", 1)
                    kind = "admin" if prio.startswith("local1") else "tenant"

                    def sent_and_seen(host=host, port=port, prio=prio, kind=kind):
                        subprocess.run(["ip", "netns", "exec", fabric.amp.name, "logger", "--udp", "--server", host,
                                        "--port", port, "--rfc3164", "-p", prio, "-t", "haproxy[812]",
                                        f"{kind} {token}"], check=True, timeout=30)
                        return any(ln.startswith(f"{kind} {amp_ip} ") and f"{kind} {token}" in ln
                                   for c in receivers.values() for ln in c.logs().splitlines())
                    wait_for(sent_and_seen, timeout=60, interval=2, message=f"the {kind} log line at a receiver")
                for c in receivers.values():
                    assert c.running(), c.logs()[-2000:]

                # a node leaves: its kubelet, health manager and host agent are gone with it
                gone, stays = nodes[1], nodes[0]
                kube_nodes.remove(gone)
                hms[gone].stop()
                agents[gone].stop()
                new_dests = wait_for(lambda: (d := conf_value(rendered(api, ns)[0], "health_manager",
                                                               "controller_ip_port_list")) and ips[gone] not in d and d,
                                     timeout=180, interval=2, message="controller_ip_port_list without the node")
                assert new_dests.strip() == f"{ips[stays]}:{spec_port(spec)}"
                (tmp_path / "amp-good" / "dests").write_text(new_dests)    # what the config push does
                before = health_row(db, amp_id)
                wait_for(lambda: health_row(db, amp_id) > before, timeout=30, interval=1,
                         message=f"heartbeats reach the health manager on {stays} after {gone} left")
                assert hms[stays].running(), hms[stays].logs()[-3000:]
        finally:
            for s in senders:
                s.terminate()
                s.wait(10)
            nova_gate.release(fail_held=503)
            nova_gate.stop()
            if runner is not None:
                runner.cleanup()
            if fabric is not None:
                fabric.cleanup()
            if vip_net is not None:
                # the worker made a VIP port and a VIP security group (lb-<id>, in the service project);
                # the load balancer stays in ERROR, so nothing reverts them: the test removes them
                for p in os_cloud.network.ports(network_id=vip_net.id):
                    os_cloud.network.delete_port(p)
                if lb_id:
                    for sg in os_cloud.network.security_groups(name=f"lb-{lb_id}"):
                        os_cloud.network.delete_security_group(sg)
                os_cloud.network.delete_network(vip_net)
            live = api.get(REF, "octavia", ns)
            if live is not None:
                teardown_cloud(live, {"clouds_yaml": clouds_yaml})
            for pv in pvs:
                kube_cluster.admin.delete("v1", "PersistentVolume", pv)
