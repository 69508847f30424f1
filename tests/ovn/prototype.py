#!/usr/bin/env python3
"""Prototype: a load balancer created through the REAL Octavia API with provider=ovn lands as a
Load_Balancer row in a REAL OVN Northbound database, and goes away when it is deleted.

Not a pytest module (no test_ prefix). Run it with the project's venv (pymysql, openstacksdk, requests):

    .venv/bin/python tests/ovn/prototype.py [--keep-network] [--no-listener]

Needs: the loopback cloud (tests/cloud/oscloud-up.sh: Keystone, Neutron, MariaDB and their secrets under
$OSCLOUD_BASE, default /tmp/oscloud-tests), the real Octavia venv with ovn-octavia-provider
(tests/octavia_real/install-octavia.sh -> /opt/octavia-venv) and OVN (tests/ovn/install-ovn.sh). Root:
the API and the driver agent each run in a private mount namespace (unshare -m) in which a private
directory is bind-mounted on /run/octavia (= /var/run/octavia), see "Sockets" below.

What it runs, all on 127.0.0.1 and all stopped by PID at the end:
  * OVN NB and SB ovsdb-servers (tests/ovn/plugin.py start_ovn_dbs; no ovn-northd);
  * a fresh database + user on the loopback MariaDB, `octavia-db-manage upgrade head`;
  * octavia-driver-agent (its status/stats/get listeners and the ovn provider agent);
  * the Octavia API under uWSGI (`uwsgi --module octavia.wsgi.api:application`), keystone auth against
    the loopback Keystone, enabled_provider_drivers = amphora + ovn;
then: network + subnet `proto-ovn-net` in the loopback Neutron (reused when present), the matching
Logical_Switch `neutron-<network id>` in NB (Neutron here is ML2/OVS, so nothing else writes it), a load
balancer with provider=ovn (and a TCP listener, so the row gets a VIP), the NB row checked, the load
balancer deleted, the row checked gone; finally everything stopped, the database dropped, the Neutron
ports and network deleted.

Sockets: ovn-octavia-provider builds octavia_lib's DriverLibrary() with NO arguments, i.e. with the
hard-coded defaults /var/run/octavia/{status,stats,get}.sock, whatever [driver_agent] *_socket_path say.
The driver agent serves those sockets; the ovn driver inside the API process connects to them. So both
processes must see the same /var/run/octavia: here a private directory bind-mounted there in each
process's own mount namespace (the machine's /run/octavia stays empty; it is created as an empty mount
point only if missing, and removed again).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pymysql
import requests

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))                      # tests/: the `ovn` namespace package
from ovn.plugin import free_port, missing as ovn_missing, start_ovn_dbs  # noqa: E402

OSCLOUD = pathlib.Path(os.environ.get("OSCLOUD_BASE") or "/tmp/oscloud-tests")
VENV = pathlib.Path(os.environ.get("OCTAVIA_VENV") or "/opt/octavia-venv")
KEYSTONE = "http://127.0.0.1:5000"
NET_NAME = "proto-ovn-net"
SUBNET_NAME = "proto-ovn-subnet"
SUBNET_CIDR = "192.0.2.0/24"          # TEST-NET-1: only ever a row in Neutron's database, no traffic
SOCKET_DIR = pathlib.Path("/run/octavia")   # = /var/run/octavia, octavia_lib's DEFAULT_*_SOCKET directory
STUCK = 45                 # s in PENDING_CREATE before a create counts as lost (normal: < 2 s)
TIMINGS: list[tuple[str, float]] = []


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


@contextlib.contextmanager
def step(name: str):
    t0 = time.monotonic()
    log(f"-> {name}")
    try:
        yield
    finally:
        dt = time.monotonic() - t0
        TIMINGS.append((name, dt))
        log(f"<- {name} ({dt:.1f} s)")


def stop_pid(proc: subprocess.Popen, name: str, grace: float = 20) -> None:
    """TERM the process we started (it stops its own children: uWSGI workers, the driver agent's
    listeners and provider agents), then KILL whatever is left in its process group."""
    t0 = time.monotonic()
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            log(f"   {name} (pid {proc.pid}) ignored SIGTERM for {grace:.0f} s: SIGKILL")
    try:
        os.killpg(proc.pid, signal.SIGKILL)          # forked children (uWSGI workers, agent processes)
    except ProcessLookupError:
        pass
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    log(f"   stopped {name} (pid {proc.pid}, exit {proc.returncode}, {time.monotonic() - t0:.1f} s)")


def tail(path: pathlib.Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"({path} unreadable)"


class Proto:
    def __init__(self, args):
        self.args = args
        self.base = pathlib.Path(tempfile.mkdtemp(prefix="octavia-ovn-proto-"))
        os.chmod(self.base, 0o700)
        self.sockdir = self.base / "run-octavia"
        self.sockdir.mkdir()
        (self.base / "lock").mkdir()
        (self.base / "ovn").mkdir()
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.ovn = None
        self.db = None
        self.made_mountpoint = False
        self.conn = None
        self.net = None
        self.subnet = None

    # ---------------------------------------------------------------- cloud
    def preflight(self) -> None:
        problems = []
        if os.geteuid() != 0:
            problems.append("must run as root (unshare -m + mount --bind for /var/run/octavia)")
        why = ovn_missing()
        if why:
            problems.append(f"OVN: {why}; run `sudo bash tests/ovn/install-ovn.sh`")
        for b in ("octavia-db-manage", "octavia-driver-agent", "uwsgi", "python"):
            if not (VENV / "bin" / b).exists():
                problems.append(f"{VENV}/bin/{b} missing; run `bash tests/octavia_real/install-octavia.sh`")
        cp = subprocess.run([str(VENV / "bin/python"), "-c", "import ovn_octavia_provider, redis"],
                            capture_output=True, text=True)
        if cp.returncode:
            problems.append(f"{VENV} lacks ovn-octavia-provider/redis; run tests/octavia_real/install-octavia.sh")
        for f in ("clouds.yaml", "secrets/db-admin.json", "secrets/service-users.password"):
            if not (OSCLOUD / f).exists():
                problems.append(f"{OSCLOUD / f} missing: is the loopback cloud up (tests/cloud/oscloud-up.sh)?")
        try:
            requests.get(KEYSTONE, timeout=5)
        except requests.RequestException as e:
            problems.append(f"Keystone {KEYSTONE} does not answer: {e}")
        if problems:
            raise SystemExit("prototype: cannot run:\n  " + "\n  ".join(problems))

    def connect_cloud(self) -> None:
        import openstack
        os.environ["OS_CLIENT_CONFIG_FILE"] = str(OSCLOUD / "clouds.yaml")
        self.conn = openstack.connect(cloud="oscloud")
        self.conn.authorize()

    def ensure_network(self) -> None:
        """proto-ovn-net + proto-ovn-subnet: reused when present, (re)created when not."""
        net = self.conn.network.find_network(NET_NAME)
        if net is None:
            net = self.conn.network.create_network(name=NET_NAME)
            log(f"   created network {NET_NAME} {net.id}")
        else:
            log(f"   reusing network {NET_NAME} {net.id}")
        subnet = next(iter(self.conn.network.subnets(network_id=net.id, name=SUBNET_NAME)), None)
        if subnet is None:
            subnet = self.conn.network.create_subnet(name=SUBNET_NAME, network_id=net.id, ip_version=4,
                                                     cidr=SUBNET_CIDR, enable_dhcp=False)
            log(f"   created subnet {SUBNET_NAME} {subnet.id} {SUBNET_CIDR}")
        self.net, self.subnet = net, subnet

    def delete_network(self) -> None:
        if self.conn is None:
            return
        net = self.conn.network.find_network(NET_NAME)
        if net is None:
            log(f"   network {NET_NAME} already gone")
            return
        for port in list(self.conn.network.ports(network_id=net.id)):
            self.conn.network.delete_port(port, ignore_missing=True)
            log(f"   deleted port {port.id} ({port.name or port.device_owner})")
        self.conn.network.delete_network(net, ignore_missing=True)
        log(f"   deleted network {NET_NAME} {net.id}")

    # ---------------------------------------------------------------- database
    def create_db(self) -> None:
        admin = json.loads((OSCLOUD / "secrets/db-admin.json").read_text())
        name = f"octovn_{secrets.token_hex(4)}"
        pw = secrets.token_hex(16)
        self.db = {"name": name, "password": pw, "admin": admin,      # set first: cleanup drops it
                   "url": f"mysql+pymysql://{name}:{pw}@{admin['host']}:{admin['port']}/{name}"}
        c = pymysql.connect(host=admin["host"], port=int(admin["port"]), user=admin["user"],
                            password=admin["password"], autocommit=True)
        with c.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
            cur.execute(f"CREATE USER '{name}'@'%%' IDENTIFIED BY %s", (pw,))
            cur.execute(f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{name}'@'%'")
        c.close()
        log(f"   database {name} on {admin['host']}:{admin['port']}")

    def drop_db(self) -> None:
        if not self.db:
            return
        a = self.db["admin"]
        c = pymysql.connect(host=a["host"], port=int(a["port"]), user=a["user"], password=a["password"],
                            autocommit=True)
        with c.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{self.db['name']}`")
            cur.execute(f"DROP USER IF EXISTS '{self.db['name']}'@'%'")
        c.close()
        log(f"   dropped database and user {self.db['name']}")
        self.db = None

    # ---------------------------------------------------------------- config + processes
    def write_conf(self) -> pathlib.Path:
        svcpw = (OSCLOUD / "secrets/service-users.password").read_text().strip()
        self.api_port = free_port()
        auth = "\n".join([
            f"auth_url = {KEYSTONE}", "auth_type = password", "project_domain_name = Default",
            "user_domain_name = Default", "project_name = service", "username = octavia", f"password = {svcpw}"])
        tls = ""
        if self.ovn.tls:   # python-ovs keeps ONE key/cert/CA per process: NB and SB get the same files
            t = self.ovn.tls
            tls = "".join(f"ovn_{db}_private_key = {t['key']}\novn_{db}_certificate = {t['cert']}\n"
                          f"ovn_{db}_ca_cert = {t['ca']}\n" for db in ("nb", "sb"))
        text = f"""[DEFAULT]
debug = true
transport_url = fake://
[api_settings]
bind_host = 127.0.0.1
bind_port = {self.api_port}
auth_strategy = keystone
enabled_provider_drivers = amphora:The Octavia Amphora driver.,ovn:Octavia OVN driver.
default_provider_driver = amphora
[database]
connection = {self.db['url']}
[keystone_authtoken]
www_authenticate_uri = {KEYSTONE}
{auth}
[service_auth]
{auth}
[neutron]
region_name = RegionOne
valid_interfaces = public
[driver_agent]
# ovn-octavia-provider ignores these three (DriverLibrary() with octavia_lib's defaults): keep the defaults
status_socket_path = {SOCKET_DIR}/status.sock
stats_socket_path = {SOCKET_DIR}/stats.sock
get_socket_path = {SOCKET_DIR}/get.sock
enabled_provider_agents = ovn
[ovn]
ovn_nb_connection = {self.ovn.nb}
ovn_sb_connection = {self.ovn.sb}
{tls}[oslo_concurrency]
lock_path = {self.base / 'lock'}
[oslo_policy]
enforce_scope = false
enforce_new_defaults = false
"""
        conf = self.base / "octavia.conf"
        conf.write_text(text)
        conf.chmod(0o600)
        return conf

    def in_private_run_octavia(self, argv: list[str]) -> list[str]:
        """argv run in a mount namespace of its own where self.sockdir is bind-mounted on /run/octavia."""
        script = 'mount --bind "$1" "$2" || exit 97; shift 2; exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh",
                str(self.sockdir), str(SOCKET_DIR), *argv]

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        out = open(self.base / f"{name}.out", "wb")
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        env.pop("PYTHONPATH", None)
        env.pop("VIRTUAL_ENV", None)
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                             cwd=self.base, start_new_session=True)
        out.close()
        self.procs.append((name, p))
        log(f"   started {name}: pid {p.pid}")
        return p

    def start_agent(self, conf: pathlib.Path) -> None:
        if not SOCKET_DIR.exists():
            SOCKET_DIR.mkdir(mode=0o755)
            self.made_mountpoint = True
        p = self.spawn("driver-agent", self.in_private_run_octavia(
            [str(VENV / "bin/octavia-driver-agent"), "--config-file", str(conf),
             "--log-file", str(self.base / "driver-agent.log")]))
        want = [self.sockdir / s for s in ("status.sock", "stats.sock", "get.sock")]
        deadline = time.monotonic() + 60
        while not all(w.exists() for w in want):
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"driver agent did not create its sockets (exit {p.poll()}):\n"
                                   f"{tail(self.base / 'driver-agent.log')}\n{tail(self.base / 'driver-agent.out')}")
            time.sleep(0.2)
        log(f"   sockets: {sorted(x.name for x in self.sockdir.iterdir())}")
        deadline = time.monotonic() + 60
        while "OVN provider agent has started" not in tail(self.base / "driver-agent.log", 400):
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the ovn provider agent did not start:\n{tail(self.base / 'driver-agent.log')}")
            time.sleep(0.2)
        log("   driver agent: 'OVN provider agent has started.'")

    def start_api(self, conf: pathlib.Path) -> None:
        p = self.spawn("api", self.in_private_run_octavia([
            str(VENV / "bin/uwsgi"), "--http-socket", f"127.0.0.1:{self.api_port}", "--master",
            "--processes", "1", "--threads", "4", "--die-on-term", "--lazy-apps", "--buffer-size", "65535",
            "--add-header", "Connection:close", "--module", "octavia.wsgi.api:application",
            "--pyargv", f"--config-file {conf} --log-file {self.base / 'api.log'}"]))
        self.api = f"http://127.0.0.1:{self.api_port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                r = requests.get(self.api + "/", timeout=5)
                if r.status_code == 200:
                    break
            except requests.RequestException:
                pass
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Octavia API did not answer (exit {p.poll()}):\n{tail(self.base / 'api.out')}"
                                   f"\n{tail(self.base / 'api.log')}")
            time.sleep(0.3)
        log(f"   API {self.api} answers: {[v['id'] for v in r.json()['versions']][-1]}")

    # ---------------------------------------------------------------- Octavia API calls
    def headers(self) -> dict:
        return {"X-Auth-Token": self.conn.session.get_token(), "Content-Type": "application/json"}

    def api_call(self, method: str, path: str, body: dict | None = None, ok=(200, 201, 202, 204)) -> dict:
        r = requests.request(method, self.api + path, headers=self.headers(), json=body, timeout=120)
        if r.status_code not in ok:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:1000]}")
        return r.json() if r.content else {}

    def wait_lb(self, lb_id: str, leave: str, timeout: float = 180) -> dict:
        t0 = time.monotonic()
        while True:
            r = requests.get(f"{self.api}/v2/lbaas/loadbalancers/{lb_id}", headers=self.headers(), timeout=30)
            if r.status_code == 404:
                return {"provisioning_status": "(404: gone)"}
            lb = r.json()["loadbalancer"]
            if lb["provisioning_status"] != leave:
                return lb
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"load balancer {lb_id} still {leave} after {timeout:.0f} s")
            time.sleep(0.5)

    def nb_lbs(self) -> list[dict]:
        out = json.loads(self.ovn.nbctl("--format=json", "--columns=_uuid,name,protocol,vips,external_ids",
                                        "list", "Load_Balancer"))
        rows = []
        for uid, name, proto, vips, ext in out["data"]:
            rows.append({"uuid": uid[1], "name": name, "protocol": proto if isinstance(proto, str) else "",
                         "vips": dict(vips[1]), "external_ids": dict(ext[1])})
        return rows

    def db_connections(self) -> list[str]:
        """Established TCP connections to the NB/SB ports, by the client process (ss -tnp)."""
        names = {p.pid: n for n, p in self.procs}
        ports = {self.ovn.nb.rsplit(":", 1)[1]: "NB", self.ovn.sb.rsplit(":", 1)[1]: "SB"}
        out = subprocess.run(["ss", "-Htnp", "state", "established"], capture_output=True, text=True).stdout
        seen = {}
        for ln in out.splitlines():
            parts = ln.split()
            if len(parts) < 5 or parts[3].rsplit(":", 1)[1] not in ports:
                continue
            db = ports[parts[3].rsplit(":", 1)[1]]
            for pid in [int(x) for x in re.findall(r"pid=(\d+)", ln)]:
                try:
                    cmd = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:90]
                    pgid = os.getpgid(pid)
                except OSError:
                    continue
                who = names.get(pgid, "?")
                seen.setdefault((db, who, pid, cmd), 0)
                seen[(db, who, pid, cmd)] += 1
        return [f"{db} <- {who} pid {pid} x{n}: {cmd}" for (db, who, pid, cmd), n in sorted(seen.items())]

    # ---------------------------------------------------------------- the run
    def run(self) -> int:
        a = self.args
        with step("preflight"):
            self.preflight()
        with step("OVN NB + SB ovsdb-servers"):
            self.ovn = start_ovn_dbs(self.base / "ovn", tls=a.tls)
            log(f"   NB {self.ovn.nb}  SB {self.ovn.sb}  pids {self.ovn.pids()}")
        with step("Octavia database + octavia-db-manage upgrade head"):
            self.create_db()
            conf = self.write_conf()
            cp = subprocess.run([str(VENV / "bin/octavia-db-manage"), "--config-file", str(conf), "upgrade", "head"],
                                capture_output=True, text=True, timeout=600)
            if cp.returncode:
                raise RuntimeError(f"octavia-db-manage failed:\n{cp.stdout[-3000:]}\n{cp.stderr[-3000:]}")
        with step("keystone session + Neutron network/subnet + NB Logical_Switch"):
            self.connect_cloud()
            self.ensure_network()
            ls = f"neutron-{self.net.id}"
            if not a.without_logical_switch:
                self.ovn.nbctl("--may-exist", "ls-add", ls, "--", "set", "Logical_Switch", ls,
                               f'external_ids:"neutron:network_name"={NET_NAME}')
                log(f"   NB Logical_Switch {ls}")
        with step("octavia-driver-agent (ovn provider agent)"):
            self.start_agent(conf)
        with step("Octavia API under uWSGI"):
            self.start_api(conf)

        with step("provider list"):
            provs = self.api_call("GET", "/v2/lbaas/providers")["providers"]
            log(f"   providers: {[p['name'] for p in provs]}")
            if "ovn" not in {p["name"] for p in provs}:
                raise RuntimeError("ovn is not an enabled provider")

        lb_id = None
        try:
            with step("create load balancer provider=ovn -> leave PENDING_CREATE"):
                for attempt in range(1, 4):
                    # Other tests' leak sweepers delete networks they did not create: when one races with
                    # the VIP port, Neutron can strip the port's fixed IP (delete_network removes the
                    # subnet's allocations, then fails 409), and ovn-octavia-provider's lb_create then
                    # dies on port=None without reporting a status: the LB sits in PENDING_CREATE for
                    # good. So: recreate what vanished, give up on a stuck LB after STUCK s, try again.
                    self.ensure_network()
                    ls = f"neutron-{self.net.id}"
                    if a.without_logical_switch:
                        self.ovn.nbctl("--if-exists", "ls-del", ls)
                    else:
                        self.ovn.nbctl("--may-exist", "ls-add", ls)
                    lb = self.api_call("POST", "/v2/lbaas/loadbalancers", {"loadbalancer": {
                        "name": "proto-ovn-lb", "vip_subnet_id": self.subnet.id,
                        "provider": "ovn"}})["loadbalancer"]
                    lb_id = lb["id"]
                    log(f"   POST -> {lb_id} {lb['provisioning_status']} vip {lb['vip_address']} "
                        f"port {lb['vip_port_id']}")
                    t0 = time.monotonic()
                    try:
                        lb = self.wait_lb(lb_id, "PENDING_CREATE", timeout=STUCK)
                    except TimeoutError as e:
                        log(f"   attempt {attempt}: {e} (see api.log: 'Unexpected exception in request_handler')")
                        lb_id = None          # cannot be deleted through the API; dies with the database
                        continue
                    log(f"   provisioning_status {lb['provisioning_status']} operating_status "
                        f"{lb.get('operating_status')} after {time.monotonic() - t0:.1f} s")
                    if lb["provisioning_status"] == "ACTIVE":
                        break
                    if a.without_logical_switch and lb["provisioning_status"] == "ERROR":
                        return self.report_without_ls(lb)
                    log(f"   attempt {attempt}: load balancer went {lb['provisioning_status']}:\n"
                        f"{tail(self.base / 'api.log', 30)}")
                    self.api_call("DELETE", f"/v2/lbaas/loadbalancers/{lb_id}?cascade=true", ok=(204, 404, 409))
                    lb_id = None
                else:
                    raise RuntimeError("no ACTIVE provider=ovn load balancer after 3 attempts")
            with step("NB has the Load_Balancer row"):
                rows = [r for r in self.nb_lbs() if r["name"] == lb_id]
                if not rows:
                    raise RuntimeError(f"no Load_Balancer row named {lb_id} in NB: {self.nb_lbs()}")
                for r in rows:
                    log(f"   row {r['uuid']} name={r['name']} protocol={r['protocol'] or '[]'} vips={r['vips']}")
                    log(f"       external_ids={r['external_ids']}")
                assert rows[0]["external_ids"].get("neutron:vip") == lb["vip_address"], rows[0]
                assert rows[0]["external_ids"].get("neutron:vip_port_id") == lb["vip_port_id"], rows[0]
                ls_lbs = self.ovn.nbctl("--bare", "--columns=load_balancer", "list", "Logical_Switch", ls).split()
                log(f"   Logical_Switch {ls} load_balancer={ls_lbs}")
                assert rows[0]["uuid"] in ls_lbs
            with step("who holds connections to NB / SB"):
                for line in self.db_connections():
                    log(f"   {line}")
            if not a.no_listener:
                with step("TCP listener :80 + pool + member -> the row gets its VIP"):
                    li = self.api_call("POST", "/v2/lbaas/listeners", {"listener": {
                        "loadbalancer_id": lb_id, "protocol": "TCP", "protocol_port": 80,
                        "name": "proto-ovn-listener"}})["listener"]
                    self.wait_lb(lb_id, "PENDING_UPDATE")
                    pool = self.api_call("POST", "/v2/lbaas/pools", {"pool": {
                        "listener_id": li["id"], "protocol": "TCP", "lb_algorithm": "SOURCE_IP_PORT",
                        "name": "proto-ovn-pool"}})["pool"]
                    self.wait_lb(lb_id, "PENDING_UPDATE")
                    member = self.api_call("POST", f"/v2/lbaas/pools/{pool['id']}/members", {"member": {
                        "address": "192.0.2.10", "protocol_port": 8080, "subnet_id": self.subnet.id}})["member"]
                    lb = self.wait_lb(lb_id, "PENDING_UPDATE")
                    member = self.api_call("GET", f"/v2/lbaas/pools/{pool['id']}/members/{member['id']}")["member"]
                    log(f"   lb {lb['provisioning_status']}, member {member['id']} {member['provisioning_status']}")
                    rows = [r for r in self.nb_lbs() if r["name"] == lb_id]
                    for r in rows:
                        log(f"   row {r['uuid']} protocol={r['protocol'] or '[]'} vips={r['vips']}")
                        log(f"       external_ids keys={sorted(r['external_ids'])}")
                    want = {f"{lb['vip_address']}:80": "192.0.2.10:8080"}
                    assert any(r["protocol"] == "tcp" and r["vips"] == want for r in rows), (want, rows)
            with step("delete load balancer (cascade) -> NB row gone"):
                self.api_call("DELETE", f"/v2/lbaas/loadbalancers/{lb_id}?cascade=true")
                lb = self.wait_lb(lb_id, "PENDING_DELETE")
                log(f"   after delete: {lb['provisioning_status']}")
                t0 = time.monotonic()
                while [r for r in self.nb_lbs() if r["name"] == lb_id] and time.monotonic() - t0 < 30:
                    time.sleep(0.2)
                left = [r for r in self.nb_lbs() if r["name"] == lb_id]
                if left:
                    raise RuntimeError(f"NB still has {left}")
                log(f"   NB Load_Balancer rows now: {len(self.nb_lbs())}")
                vip_ports = [p.id for p in self.conn.network.ports(network_id=self.net.id)
                             if (p.name or "").startswith("ovn-lb-vip-")]
                log(f"   VIP ports left on {NET_NAME}: {vip_ports or 'none'}")
                lb_id = None
        finally:
            if lb_id:
                with contextlib.suppress(Exception):
                    self.api_call("DELETE", f"/v2/lbaas/loadbalancers/{lb_id}?cascade=true")
                    self.wait_lb(lb_id, "PENDING_DELETE", timeout=60)
        log("PROTOTYPE PASSED: provider=ovn load balancer -> NB Load_Balancer row -> deleted")
        return 0

    def report_without_ls(self, lb: dict) -> int:
        """--without-logical-switch: what the ovn driver does when NB has no neutron-<net id> switch."""
        rows = [r for r in self.nb_lbs() if r["name"] == lb["id"]]
        log(f"   WITHOUT Logical_Switch: load balancer {lb['provisioning_status']}/{lb.get('operating_status')}; "
            f"NB rows named after it: {[(r['uuid'], r['external_ids']) for r in rows]}")
        errs = [ln for ln in tail(self.base / "api.log", 400).splitlines() if "ERROR" in ln or "RowNotFound" in ln]
        for ln in errs[:6]:
            log(f"   api.log: {ln[:220]}")
        ports = [(p.id, p.name) for p in self.conn.network.ports(network_id=self.net.id)]
        log(f"   ports left on {NET_NAME}: {ports or 'none'}")
        lb_id = lb["id"]
        self.api_call("DELETE", f"/v2/lbaas/loadbalancers/{lb_id}?cascade=true", ok=(204, 404, 409))
        with contextlib.suppress(Exception):
            lb = self.wait_lb(lb_id, "PENDING_DELETE", timeout=30)
        time.sleep(1)
        log(f"   after DELETE: {lb['provisioning_status']}; NB rows left: "
            f"{[r['uuid'] for r in self.nb_lbs() if r['name'] == lb_id]}")
        log("WITHOUT-LOGICAL-SWITCH RUN DONE (expected ERROR)")
        return 0

    def cleanup(self) -> None:
        with step("cleanup: processes, database, Neutron, files"):
            for name, p in reversed(self.procs):
                stop_pid(p, name)
            if self.ovn:
                self.ovn.stop()
                log(f"   stopped NB/SB ovsdb-servers {self.ovn.pids()}")
            try:
                self.drop_db()
            except Exception as e:   # noqa: BLE001
                log(f"   !! dropping the database failed: {e}")
            if not self.args.keep_network:
                try:
                    self.delete_network()
                except Exception as e:   # noqa: BLE001
                    log(f"   !! deleting {NET_NAME} failed: {e}")
            if self.made_mountpoint:
                with contextlib.suppress(OSError):
                    SOCKET_DIR.rmdir()
            if self.args.keep_logs:
                log(f"   logs kept in {self.base}")
            else:
                shutil.rmtree(self.base, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep-network", action="store_true", help=f"do not delete {NET_NAME} at the end")
    ap.add_argument("--keep-logs", action="store_true", help="keep the temporary directory (config, logs)")
    ap.add_argument("--no-listener", action="store_true", help="skip the listener/pool/member step")
    ap.add_argument("--tls", action="store_true",
                    help="NB/SB over ssl: (pssl remotes, a throwaway CA; [ovn] ovn_*_private_key/certificate/ca_cert)")
    ap.add_argument("--without-logical-switch", action="store_true",
                    help="do NOT pre-create Logical_Switch neutron-<net id>: shows the failure (LB in ERROR)")
    args = ap.parse_args()
    t0 = time.monotonic()
    p = Proto(args)
    rc = 1
    try:
        rc = p.run()
    except Exception as e:   # noqa: BLE001
        log(f"PROTOTYPE FAILED: {e}")
        for f in ("driver-agent.log", "api.log", "api.out"):
            print(f"===== {f}\n{tail(p.base / f, 30)}", flush=True)
        args.keep_logs = True
    finally:
        p.cleanup()
        print("\nTimings:")
        for name, dt in TIMINGS:
            print(f"  {dt:7.1f} s  {name}")
        print(f"  {time.monotonic() - t0:7.1f} s  total")
    return rc


if __name__ == "__main__":
    sys.exit(main())
