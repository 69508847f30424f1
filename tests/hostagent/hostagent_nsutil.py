"""Helpers for the host agent's network-namespace tests.

Everything happens inside namespaces created here (unique names, always deleted),
with OVS daemons started by hand on private paths inside the node namespace.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
OVS_SCHEMA_CANDIDATES = ("/usr/share/openvswitch/vswitch.ovsschema",)
OVS_BINS = ("ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovsdb-tool")
FW_BINS = ("iptables-nft", "iptables-nft-save", "iptables-nft-restore", "ip6tables-nft",
           "ip6tables-nft-save", "ip6tables-nft-restore", "iptables-legacy", "iptables-legacy-save")


def _missing_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and a prerequisite is missing: {reason} (run tests/hostagent/install-deps.sh)")
    pytest.skip(reason)


def require_netns(ovs: bool = False) -> None:
    if os.geteuid() != 0:
        _missing_or_fail("needs root (network namespaces)")
    for b in ("ip",) + FW_BINS:
        if shutil.which(b) is None:
            _missing_or_fail(f"{b} not found (install iproute2/iptables: tests/hostagent/install-deps.sh)")
    if ovs:
        for b in OVS_BINS:
            if shutil.which(b) is None:
                _missing_or_fail(f"{b} not found (install openvswitch-switch: tests/hostagent/install-deps.sh)")
        if not any(os.path.exists(p) for p in OVS_SCHEMA_CANDIDATES):
            _missing_or_fail("vswitch.ovsschema not found (openvswitch-switch)")


def run(cmd: list[str], check: bool = True, input: str | None = None, timeout: float = 60, env=None) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p.stdout


def wait_until(pred, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = pred()
            if last:
                return last
        except Exception as e:  # noqa: BLE001
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


class NetNS:
    def __init__(self, prefix: str):
        self.name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.created = False

    def create(self) -> "NetNS":
        run(["ip", "netns", "add", self.name])
        self.created = True
        self.ip("link", "set", "lo", "up")
        return self

    def delete(self) -> None:
        if self.created:
            run(["ip", "netns", "del", self.name], check=False)
            self.created = False

    def x(self, *cmd, check: bool = True, input: str | None = None, timeout: float = 60, env=None) -> str:
        return run(["ip", "netns", "exec", self.name, *cmd], check=check, input=input, timeout=timeout, env=env)

    def ip(self, *args, check: bool = True) -> str:
        return run(["ip", "-n", self.name, *args], check=check)

    def ipj(self, *args):
        out = run(["ip", "-j", "-n", self.name, *args])
        return json.loads(out) if out.strip() else []

    # ---- observations used by the assertions
    def link(self, name: str) -> dict | None:
        for l in self.ipj("-d", "link", "show"):
            if l["ifname"] == name:
                return l
        return None

    def addrs(self, name: str) -> list[str]:
        out = []
        for l in self.ipj("addr", "show"):
            if l["ifname"] == name:
                out += [f"{a['local']}/{a['prefixlen']}" for a in l.get("addr_info", []) if a.get("scope") == "global"]
        return out

    def routes(self, *extra) -> list[dict]:
        return self.ipj("route", "show", "table", "main", *extra)

    def default_routes(self) -> list[tuple]:
        out = []
        for fam in ("-4", "-6"):
            for r in self.ipj(fam, "route", "show", "default", "table", "main"):
                out.append((r.get("dst"), r.get("gateway"), r.get("dev"), r.get("metric"), r.get("protocol")))
        return sorted(out, key=repr)

    def save(self, family: int = 4, backend: str = "nft") -> str:
        tool = ("iptables" if family == 4 else "ip6tables") + f"-{backend}-save"
        return self.x(tool, "-t", "filter")


def disable_tx_offload(ns: NetNS, dev: str) -> None:
    """UDP through the userspace datapath needs TX checksum offload off on the veth."""
    if shutil.which("ethtool"):
        ns.x("ethtool", "-K", dev, "tx", "off")
        return
    code = ("import sys; from pyroute2 import Ethtool; e=Ethtool(); "
            "e.set_features(sys.argv[1], {'tx-checksum-ip-generic': False}); e.close()")
    ns.x(sys.executable, "-c", code, dev)


class Ovs:
    """ovsdb-server + ovs-vswitchd started by hand inside a namespace, on private paths."""

    def __init__(self, ns: NetNS, base: Path):
        self.ns = ns
        self.base = Path(base)
        for d in ("run", "db", "log", "etc"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        self.db = self.base / "db" / "conf.db"
        self.sock = self.base / "run" / "db.sock"
        self.url = f"unix:{self.sock}"
        self.env = dict(os.environ, OVS_RUNDIR=str(self.base / "run"), OVS_DBDIR=str(self.base / "db"),
                        OVS_LOGDIR=str(self.base / "log"), OVS_SYSCONFDIR=str(self.base / "etc"))

    def _pid(self, name: str) -> int | None:
        try:
            return int((self.base / "run" / f"{name}.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self, fresh_db: bool = False) -> None:
        if fresh_db and self.db.exists():
            self.db.unlink()
        if not self.db.exists():
            schema = next(p for p in OVS_SCHEMA_CANDIDATES if os.path.exists(p))
            run(["ovsdb-tool", "create", str(self.db), schema])
        run_dir = self.base / "run"
        self.ns.x("ovsdb-server", str(self.db), f"--remote=punix:{self.sock}",
                  f"--pidfile={run_dir}/ovsdb-server.pid", f"--unixctl={run_dir}/ovsdb-server.ctl",
                  f"--log-file={self.base}/log/ovsdb-server.log", "-vconsole:off", "--detach", env=self.env)
        self.vsctl("--no-wait", "init")
        self.ns.x("ovs-vswitchd", self.url, f"--pidfile={run_dir}/ovs-vswitchd.pid",
                  f"--unixctl={run_dir}/ovs-vswitchd.ctl", f"--log-file={self.base}/log/ovs-vswitchd.log",
                  "-vconsole:off", "--detach", env=self.env)

    def stop(self) -> None:
        for name in ("ovs-vswitchd", "ovsdb-server"):
            pid = self._pid(name)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                (self.base / "run" / f"{name}.pid").unlink()
            except FileNotFoundError:
                pass

    def vsctl(self, *args, check: bool = True) -> str:
        return run(["ovs-vsctl", f"--db={self.url}", "--timeout=20", *args], check=check, env=self.env)

    def add_int_bridge(self, name: str = "br-int") -> None:
        self.vsctl("--may-exist", "add-br", name, "--", "set", "bridge", name, "datapath_type=netdev",
                   "fail-mode=standalone")

    def iface(self, name: str) -> dict:
        out = self.vsctl("--format=json", "--columns=name,type,external_ids,mac,mtu_request,error",
                         "find", "Interface", f"name={name}")
        data = json.loads(out)
        if not data["data"]:
            return {}
        row = dict(zip(data["headings"], data["data"][0]))

        def val(v):
            if isinstance(v, list) and v and v[0] == "map":
                return {k: x for k, x in v[1]}
            if isinstance(v, list) and v and v[0] == "set":
                return v[1][0] if v[1] else None
            return v

        return {k: val(v) for k, v in row.items()}

    def ports(self, bridge: str = "br-int") -> list[str]:
        return self.vsctl("list-ports", bridge).split()


class AgentProc:
    """The agent as a subprocess inside the node namespace, with private paths."""

    def __init__(self, ns: NetNS, base: Path, node: str, ovsdb: str | None = None, interval: float = 1.0,
                 extra: list[str] | None = None):
        self.ns = ns
        self.base = Path(base)
        self.node = node
        self.assignments = self.base / "assignments.json"
        self.state_dir = self.base / "state"
        self.status_file = self.base / "status" / "status.json"
        self.log_path = self.base / "agent.log"
        self.ovsdb = ovsdb or f"unix:{self.base}/no-ovsdb.sock"
        self.interval = interval
        self.extra = extra or []
        self.proc: subprocess.Popen | None = None

    def cmd(self, sub: str, *args) -> list[str]:
        return ["ip", "netns", "exec", self.ns.name, sys.executable, "-m", "octavia_hostagent", sub, *args]

    def write_assignments(self, doc) -> None:
        tmp = self.assignments.with_suffix(".tmp")
        tmp.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        os.replace(tmp, self.assignments)

    def start(self) -> None:
        self.status_file.parent.mkdir(parents=True, exist_ok=True)
        if self.status_file.exists():
            self.status_file.unlink()
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            self.cmd("run", "--assignments", str(self.assignments), "--node", self.node, "--ovsdb", self.ovsdb,
                     "--state-dir", str(self.state_dir), "--status-file", str(self.status_file),
                     "--interval", str(self.interval), *self.extra),
            stdout=self._log, stderr=subprocess.STDOUT)

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self.proc = None
        self._log.close()

    def status(self) -> dict:
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {}

    def wait_ready(self, timeout: float = 30, since: float | None = None) -> dict:
        def ok():
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode}; log:\n{self.log()}")
            st = self.status()
            if since is not None and st.get("updatedEpoch", 0) < since:
                return None
            return st if st.get("ready") else None
        try:
            return wait_until(ok, timeout, what="agent ready")
        except AssertionError as e:
            raise AssertionError(f"{e}\nstatus: {json.dumps(self.status(), indent=1)}\nlog tail:\n{self.log()[-4000:]}") from None

    def log(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    def cli(self, sub: str, *args, check: bool = False) -> subprocess.CompletedProcess:
        p = subprocess.run(self.cmd(sub, "--state-dir", str(self.state_dir), "--status-file", str(self.status_file),
                                    *args), capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            raise AssertionError(f"{sub} -> {p.returncode}: {p.stdout} {p.stderr}")
        return p


def make_assignment(node: str, driver: str = "ovs", mac: str = "fa:16:3e:aa:bb:cc", ip: str = "172.31.0.5",
                    mtu: int = 1450, heartbeat: int = 5555, extra_udp=(), bound: bool = True,
                    linux_bridge: str = "brq0123456789a", **extra) -> dict:
    doc = {
        "version": 1,
        "deployment": "openstack/octavia",
        "driver": driver,
        "interface": "o-hm0",
        "integrationBridge": "br-int",
        "linuxBridge": linux_bridge,
        "networkId": "01234567-89ab-cdef-0123-456789abcdef",
        "subnet": {"cidr": "172.31.0.0/24", "ipVersion": 4},
        "mtu": mtu,
        "heartbeatPort": heartbeat,
        "extraUdpPorts": list(extra_udp),
        "someFutureKey": {"ignored": True},
        "nodes": {
            node: {"portId": "3f1c2a4e-1111-4222-8333-944455556666", "mac": mac, "ip": ip, "prefixLength": 24,
                   "bound": bound},
            "other-node": {"portId": "aaaaaaaa-1111-4222-8333-944455556666", "mac": "fa:16:3e:00:00:01",
                           "ip": "172.31.0.6", "prefixLength": 24, "bound": True},
        },
    }
    doc.update(extra)
    return doc


UDP_SERVER = r"""
import select, socket, sys, time
ports = [int(p) for p in sys.argv[1].split(",")]
socks = []
for p in ports:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", p))
    socks.append(s)
print("listening", flush=True)
end = time.time() + float(sys.argv[2])
while time.time() < end:
    r, _, _ = select.select(socks, [], [], 0.2)
    for s in r:
        data, addr = s.recvfrom(2048)
        print(f"{s.getsockname()[1]} {data.decode()}", flush=True)
"""

UDP_SEND = r"""
import socket, sys, time
dst, ports, n = sys.argv[1], [int(p) for p in sys.argv[2].split(",")], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(n):
    for p in ports:
        s.sendto(f"probe-{p}-{i}".encode(), (dst, p))
    time.sleep(0.1)
"""


def udp_probe(server_ns: NetNS, client_ns: NetNS, dst: str, ports: list[int], count: int = 6) -> set[int]:
    """Send `count` datagrams to each port from client_ns; return the ports on which the
    server in server_ns received at least one."""
    srv = subprocess.Popen(["ip", "netns", "exec", server_ns.name, sys.executable, "-c", UDP_SERVER,
                            ",".join(map(str, ports)), "60"], stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().strip() == "listening"
        client_ns.x(sys.executable, "-c", UDP_SEND, dst, ",".join(map(str, ports)), str(count))
        time.sleep(0.5)  # the last datagrams are in flight
    finally:
        srv.terminate()
        out, _ = srv.communicate(timeout=15)
    got = set()
    for line in out.splitlines():
        port, _, payload = line.partition(" ")
        if payload.startswith("probe-"):
            got.add(int(port))
    return got


def short_tmpdir(prefix: str = "oha-") -> Path:
    # unix socket paths must stay under 108 bytes: keep the base short
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


# --------------------------------------------------------------- shared assertions
NODE = "node-0"
MAC = "fa:16:3e:aa:bb:cc"
IP = "172.31.0.5"
PEER_IP = "172.31.0.10"
MTU = 1450
HB = 5555
CHAIN = "OCTAVIA-HOSTAGENT"


def expected_chain(udp_ports=(HB,), family: int = 4) -> list[str]:
    rules = [f"-A {CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
             f"-A {CHAIN} -p icmp -j ACCEPT" if family == 4 else f"-A {CHAIN} -p ipv6-icmp -j ACCEPT"]
    rules += [f"-A {CHAIN} -p udp -m udp --dport {p} -j ACCEPT" for p in udp_ports]
    rules.append(f"-A {CHAIN} -j DROP")
    return rules


def firewall_lines(ns: NetNS, family: int, backend: str) -> tuple[list[str], list[str]]:
    """(our chain's rules, INPUT jumps to it) as printed by iptables-save."""
    rules, jumps = [], []
    for ln in ns.save(family, backend).splitlines():
        if ln.startswith(f"-A {CHAIN} "):
            rules.append(ln)
        elif ln.startswith("-A INPUT") and ln.endswith(f"-j {CHAIN}"):
            jumps.append(ln)
    return rules, jumps


def check_plumbing(ns: NetNS, default_routes_before, backend: str, mac: str = MAC, mtu: int = MTU,
                   udp_ports=(HB,), ovs: "Ovs | None" = None, jump_ifaces=("o-hm0",)) -> bool:
    """Assert the node namespace is fully plumbed; raise AssertionError with what is wrong."""
    link = ns.link("o-hm0")
    assert link is not None, "o-hm0 missing"
    assert link["address"] == mac, f"MAC {link['address']}"
    assert link["mtu"] == mtu, f"MTU {link['mtu']}"
    assert "UP" in link["flags"], f"o-hm0 flags {link['flags']}"
    assert ns.addrs("o-hm0") == [f"{IP}/24"], f"addresses {ns.addrs('o-hm0')}"
    via = [(r["dst"], r.get("gateway")) for r in ns.routes("dev", "o-hm0")]
    assert via == [("172.31.0.0/24", None)], f"routes via o-hm0: {via}"
    assert ns.default_routes() == default_routes_before, f"default routes changed: {ns.default_routes()}"
    for fam in (4, 6):
        rules, jumps = firewall_lines(ns, fam, backend)
        assert rules == expected_chain(udp_ports, fam), f"IPv{fam} chain: {rules}"
        assert sorted(jumps) == sorted(f"-A INPUT -i {i} -j {CHAIN}" for i in jump_ifaces), f"IPv{fam} jumps: {jumps}"
    if ovs is not None:
        row = ovs.iface("o-hm0")
        assert row.get("type") == "internal", row
        assert row["external_ids"] == {"iface-id": PORT_ID, "attached-mac": mac, "iface-status": "active",
                                       "skip_cleanup": "true"}, row
        assert row["mac"] == mac and row["mtu_request"] == mtu, row
    return True


PORT_ID = "3f1c2a4e-1111-4222-8333-944455556666"


def wait_plumbed(agent: "AgentProc", ns: NetNS, default_routes_before, backend: str, timeout: float = 15, **kw):
    """Wait (bounded) until the plumbing is complete and the agent reports ready again."""
    t0 = time.time()

    def ok():
        if agent.proc is not None and agent.proc.poll() is not None:
            raise AssertionError(f"agent exited: {agent.proc.returncode}\n{agent.log()[-3000:]}")
        check_plumbing(ns, default_routes_before, backend, **kw)
        st = agent.status()
        return st.get("ready") and st.get("updatedEpoch", 0) >= t0
    try:
        wait_until(ok, timeout, what="plumbing repaired and agent ready")
    except AssertionError as e:
        raise AssertionError(f"{e}\nstatus problems: {agent.status().get('problems')}\n"
                             f"log tail:\n{agent.log()[-3000:]}") from None
    return time.time() - t0
