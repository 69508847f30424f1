"""Heartbeats over an IPv6 management network, with real processes and the configuration the operator renders.

Everything runs inside network namespaces made here (never on the machine's own interfaces):

    node-XXXX  plays a controller node: ``o-hm0`` with the health-manager port's fixed IP, and the REAL
               ``octavia-health-manager`` of $OCTAVIA_VENV (/opt/octavia-venv), started with the
               octavia.conf + secrets.conf rendered by octavia_operator.builders.config (plus a
               test-only file, TEST_CONF below)
    amp-XXXX   plays an amphora: ``eth0``, joined to o-hm0 by a veth pair; it runs the amphora agent's
               own heartbeat sender (octavia.amphorae.backends.health_daemon.health_sender.UDPStatusSender,
               fed with the rendered controller_ip_port_list through oslo.config, as the agent is)

Addresses come from a random ULA /64 (fdxx:xxxx:xxxx:1::/64), added with ``nodad`` in namespaces whose
accept_dad is 0, and the test waits until none is tentative. The database is a fresh one on the
loopback MariaDB of tests/cloud (made with octavia_operator.backends.database, migrated with
``octavia-db-manage upgrade head``); the health manager, in its own network namespace, reaches it
through MariaDB's unix socket ($OSCLOUD_BASE/run/mysql.sock; OSCLOUD_BASE unset: the plugin's default, else
tests/run.sh's /tmp/oscloud-tests). Nothing of the loopback cloud other than
that MariaDB is touched (no Keystone, no Neutron): the fixtures of cloud.plugin are not used on
purpose, as they would probe Keystone and list Neutron resources.

Why the amphora side is not tests/pods/amphora_sim.py: it opens an AF_INET socket only, so it cannot
send to an IPv6 controller address (``sendto`` fails with "Address family for hostname not supported").
The agent's own UDPStatusSender opens an AF_INET and an AF_INET6 socket and picks by getaddrinfo.

Requirements: root, iproute2 (ip, ss), the real Octavia (tests/octavia_real/install-octavia.sh), the
loopback MariaDB (tests/cloud/oscloud-up.sh; $OSCLOUD_BASE/secrets/db-admin.json). Missing: skipped
with the reason; under CI=true the test fails instead.
"""
from __future__ import annotations

import ipaddress
import json
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import time
import uuid
from contextlib import contextmanager

import pymysql
import pytest

from cloud.plugin import base_dir
from hostagent.hostagent_nsutil import NetNS, wait_until
from octavia_operator.backends import database as dbb
from octavia_operator.builders import config as cfg
from octavia_operator.spec import parse_spec

pytestmark = [pytest.mark.netns]

HEARTBEAT_PORT = 5555
RUN_SH_BASE = pathlib.Path("/tmp/oscloud-tests")   # tests/run.sh's OSCLOUD_BASE default


# What the health manager needs, for this test only, on top of the rendered files (a separate
# --config-file, merged last by oslo.config):
#   [DEFAULT] debug = true                    the "Received packet from <addr>" lines (source address format)
#   [health_manager] heartbeat_timeout = 3600 the health-check loop waits that long before its first pass and
#                                             never finds a stale amphora: no failover (Nova/Keystone) is tried
#   [health_manager] health_update_threads / stats_update_threads = 2: small process pools
# Nothing is needed for RabbitMQ or Keystone: the health manager's rpc.init() only builds a transport
# (no connection) and the listener/updater never call Keystone; transport_url stays the rendered one,
# pointing at a host that does not exist.
TEST_CONF = """\
# test-only options of tests/test_ipv6_heartbeat.py
[DEFAULT]
debug = true

[health_manager]
heartbeat_timeout = 3600
health_update_threads = 2
stats_update_threads = 2
"""

SENDER = r"""
import sys, time
from oslo_config import cfg
from octavia.common import config  # noqa: F401  registers [health_manager]
from octavia.amphorae.backends.health_daemon import health_sender
cfg.CONF(["--config-file", sys.argv[1]], project="octavia")
sender = health_sender.UDPStatusSender()
print("destinations:", [d[4] for d in sender.dests], flush=True)
seq = 0
while True:
    seq += 1
    sender.dosend({"id": sys.argv[2], "seq": seq, "listeners": {}, "pools": {}, "ver": 3})
    time.sleep(float(sys.argv[3]))
"""


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}:
        pytest.fail(f"CI=true and a prerequisite is missing: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def prerequisites(octavia_venv: pathlib.Path) -> pathlib.Path:
    if os.geteuid() != 0:
        _missing("needs root (network namespaces)")
    for b in ("ip", "ss"):
        if shutil.which(b) is None:
            _missing(f"{b} not found (iproute2)")
    if not (octavia_venv / "bin" / "octavia-health-manager").exists():
        _missing(f"{octavia_venv}/bin/octavia-health-manager is missing (tests/octavia_real/install-octavia.sh)")
    return octavia_venv


@pytest.fixture(scope="module")
def heartbeat_db(prerequisites: pathlib.Path, tmp_path_factory):
    """A fresh Octavia database at head on the loopback MariaDB: TCP URL for the test, socket URL for the
    health manager (which runs in a network namespace with nothing but o-hm0)."""
    base = base_dir()
    if not os.environ.get("OSCLOUD_BASE") and not base.exists():
        base = RUN_SH_BASE
    admin_file, sock = base / "secrets" / "db-admin.json", base / "run" / "mysql.sock"
    if not admin_file.exists() or not sock.exists():
        _missing(f"the loopback MariaDB is not running ({admin_file} / {sock} missing; set OSCLOUD_BASE or "
                 "start tests/cloud/oscloud-up.sh)")
    a = json.loads(admin_file.read_text())
    admin = dbb.AdminCredentials(a["host"], int(a["port"]), a["user"], a["password"])
    name = f"t_{uuid.uuid4().hex[:8]}"
    database, user, password = f"{name}_octavia", f"{name}_o", secrets.token_hex(12)
    dbb.ensure_database(admin, database, user, "%", password)
    try:
        tcp_url = dbb.connection_url(admin.host, admin.port, user, password, database)
        socket_url = f"mysql+pymysql://{user}:{password}@localhost/{database}?charset=utf8mb4&unix_socket={sock}"
        d = tmp_path_factory.mktemp("db")
        (d / "db.conf").write_text(f"[database]\nconnection = {tcp_url}\n")
        out = subprocess.run([str(prerequisites / "bin" / "octavia-db-manage"), "--config-file", str(d / "db.conf"),
                              "upgrade", "head"], capture_output=True, text=True, timeout=600,
                             env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
        assert out.returncode == 0, out.stderr[-3000:]

        def sql(query: str, *args):
            conn = pymysql.connect(host=admin.host, port=admin.port, user=user, password=password,
                                   database=database, autocommit=True)
            try:
                with conn.cursor() as cur:
                    cur.execute(query, args)
                    return cur.fetchall()
            finally:
                conn.close()
        yield {"socket_url": socket_url, "sql": sql}
    finally:
        dbb.drop_database_and_user(admin, database, user, "%")


def health_row(db, amp_id: str) -> float | None:
    rows = db["sql"]("SELECT UNIX_TIMESTAMP(last_update) FROM amphora_health WHERE amphora_id=%s", amp_id)
    return float(rows[0][0]) if rows else None


def add_amphora(db, amp_ip: str) -> str:
    """A load balancer and its amphora, as the worker records them: a heartbeat is then accepted."""
    lb_id, amp_id = str(uuid.uuid4()), str(uuid.uuid4())
    db["sql"]("INSERT INTO load_balancer (id, project_id, name, provisioning_status, operating_status, enabled, "
              "provider, created_at, updated_at) VALUES (%s, %s, 'hb-test', 'ACTIVE', 'OFFLINE', 1, 'amphora', "
              "NOW(), NOW())", lb_id, uuid.uuid4().hex)
    db["sql"]("INSERT INTO amphora (id, load_balancer_id, status, lb_network_ip, role, cert_busy, created_at, "
              "updated_at) VALUES (%s, %s, 'ALLOCATED', %s, 'STANDALONE', 0, NOW(), NOW())", amp_id, lb_id, amp_ip)
    return amp_id


def spec_for(cidr: str):
    net = ipaddress.ip_network(cidr)
    return parse_spec({
        "cloud": {"credentialsSecret": {"name": "openstack-admin"}},
        "managementNetwork": {"cidr": cidr, "allocationPool": {"start": str(net.network_address + 10),
                                                               "end": str(net.network_address + 200)}},
        "healthManager": {"heartbeatPort": HEARTBEAT_PORT},
    })


def random_cidr(version: int) -> str:
    if version == 6:   # a ULA /48 (RFC 4193: fd + 40 random bits), subnet 1
        r = secrets.token_bytes(5)
        return str(ipaddress.ip_network((b"\xfd" + r + b"\x00\x01" + bytes(8), 64)))
    return f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250)}.0/24"


@contextmanager
def namespaces(cidr: str, bindv6only: int = 0):
    """node (o-hm0 = health-manager port IP, .10 / ::a) and amp (eth0 = .250 / ::fa), joined by a veth."""
    net = ipaddress.ip_network(cidr)
    hm_ip, amp_ip = net.network_address + 10, net.network_address + 250
    node, amp = NetNS("node"), NetNS("amp")
    try:
        for ns in (node.create(), amp.create()):
            for key in ("all", "default"):    # no duplicate address detection: addresses usable at once
                ns.x("sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=0")
        node.x("sysctl", "-qw", f"net.ipv6.bindv6only={bindv6only}")
        node.ip("link", "add", "o-hm0", "type", "veth", "peer", "name", "eth0", "netns", amp.name)
        extra = ["nodad"] if net.version == 6 else []
        for ns, dev, ip in ((node, "o-hm0", hm_ip), (amp, "eth0", amp_ip)):
            ns.ip("addr", "add", f"{ip}/{net.prefixlen}", "dev", dev, *extra)
            ns.ip("link", "set", dev, "up")
        for ns in (node, amp):
            wait_until(lambda ns=ns: not ns.ipj("-6", "addr", "show", "tentative") and
                       not ns.ipj("-6", "addr", "show", "dadfailed") and
                       all(link.get("operstate") in ("UP", "UNKNOWN") for link in ns.ipj("link", "show")
                           if link["ifname"] != "lo"),
                       timeout=20, what=f"addresses of {ns.name} usable (no tentative address, link up)")
        if shutil.which("ping"):   # the path works before Octavia is involved
            amp.x("ping", "-c", "1", "-W", "5", str(hm_ip))
        yield node, amp, str(hm_ip), str(amp_ip)
    finally:
        amp.delete()
        node.delete()


class Proc:
    """A process started here, in a namespace, in its own session (stopped by its PID / process group)."""

    def __init__(self, ns: NetNS, argv: list[str], log: pathlib.Path):
        self.log = log
        self._out = open(log, "ab")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PYTHONWARNINGS"] = "ignore"
        # `ip netns exec` execs the program: the PID is the program's own
        self.p = subprocess.Popen(["ip", "netns", "exec", ns.name, *argv], stdout=self._out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                  start_new_session=True)

    def running(self) -> bool:
        return self.p.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                pass
        try:   # the health manager's children (listener, checker, process pools): same process group
            os.killpg(self.p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.p.poll() is None:
            self.p.wait(10)
        self._out.close()


def render(tmp: pathlib.Path, cidr: str, hm_ip: str, db, bind_ip_override: str | None) -> dict:
    """octavia.conf and secrets.conf through the operator's builders, plus the test-only file."""
    spec = spec_for(cidr)
    cloud = cfg.CloudValues(auth_url="http://keystone.invalid:5000/v3", health_manager_ips={"node-0": hm_ip})
    key = "Hb-" + secrets.token_hex(16)
    sec = cfg.SecretValues(transport_url="rabbit://octavia:secret@rabbitmq.invalid:5672/",
                           database_url=db["socket_url"], heartbeat_key=key, service_password="x" * 12,
                           ca_key_passphrase="y" * 12, server_certs_key_passphrase="z" * 32)
    files = {"conf": tmp / "octavia.conf", "secrets": tmp / "secrets.conf", "test": tmp / "test.conf"}
    files["conf"].write_text(cfg.render_octavia_conf(spec, cloud))
    files["secrets"].write_text(cfg.render_secrets_conf(sec))
    test_conf = TEST_CONF
    if bind_ip_override is not None:
        test_conf += f"# test_dual_stack_bind_and_ipv4_heartbeats: what \"::\" does on an IPv4 network\nbind_ip = {bind_ip_override}\n"
    files["test"].write_text(test_conf)
    sections = cfg.config_sections(spec, cloud)
    return {**files, "key": key, "dests": sections["health_manager"]["controller_ip_port_list"],
            "rendered_bind_ip": sections["health_manager"]["bind_ip"]}


def sender_conf(path: pathlib.Path, dests: str, key: str) -> pathlib.Path:
    """What the amphora agent's config holds (Octavia's worker writes it from controller_ip_port_list)."""
    path.write_text(f"[health_manager]\ncontroller_ip_port_list = {dests}\nheartbeat_key = {key}\n"
                    "heartbeat_interval = 1\n")
    return path


def udp_listeners(ns: NetNS) -> str:
    return ns.x("ss", "-Hnulp", check=False)


@contextmanager
def heartbeat_lab(tmp: pathlib.Path, venv: pathlib.Path, db, cidr: str, bind_ip_override: str | None,
                  bindv6only: int = 0):
    procs: list[Proc] = []
    with namespaces(cidr, bindv6only) as (node, amp, hm_ip, amp_ip):
        try:
            r = render(tmp, cidr, hm_ip, db, bind_ip_override)
            hm = Proc(node, [str(venv / "bin" / "octavia-health-manager"), "--config-file", str(r["conf"]),
                             "--config-file", str(r["secrets"]), "--config-file", str(r["test"])],
                      tmp / "health-manager.log")
            procs.append(hm)
            wait_until(lambda: (not hm.running() and pytest.fail(f"octavia-health-manager exited:\n{hm.text()[-4000:]}"))
                       or f":{HEARTBEAT_PORT} " in udp_listeners(node), timeout=60, interval=0.5,
                       what="the health manager's UDP socket")

            def start_sender(name: str, amp_id: str, key: str) -> Proc:
                conf = sender_conf(tmp / f"{name}.conf", r["dests"], key)
                p = Proc(amp, [str(venv / "bin" / "python"), "-c", SENDER, str(conf), amp_id, "0.5"],
                         tmp / f"{name}.log")
                procs.append(p)
                return p
            yield {"node": node, "amp": amp, "hm_ip": hm_ip, "amp_ip": amp_ip, "hm": hm, "r": r,
                   "start_sender": start_sender}
        finally:
            for p in reversed(procs):
                p.stop()


def _why(lab) -> str:
    return (f"rendered bind_ip={lab['r']['rendered_bind_ip']!r}, controller_ip_port_list={lab['r']['dests']!r}\n"
            f"UDP sockets in {lab['node'].name}:\n{udp_listeners(lab['node'])}\n"
            f"--- health manager log (tail) ---\n{lab['hm'].text()[-3000:]}")


def check_heartbeats(lab, db) -> None:
    """The amphora that signs with the heartbeat key gets its amphora_health row, refreshed; one with a
    wrong key is ignored (and logged as such)."""
    good = add_amphora(db, lab["amp_ip"])
    stranger = add_amphora(db, lab["amp_ip"])
    senders = [lab["start_sender"]("amp-good", good, lab["r"]["key"]),
               lab["start_sender"]("amp-bad", stranger, lab["r"]["key"][::-1])]
    try:
        wait_until(lambda: health_row(db, good), timeout=30, interval=0.5,
                   what="the amphora_health row of the amphora that signs with the heartbeat key")
    except AssertionError:
        pytest.fail("no heartbeat reached the health manager's database: " + _why(lab) +
                    "\n--- sender ---\n" + senders[0].text()[-1000:], pytrace=False)
    first = health_row(db, good)
    wait_until(lambda: health_row(db, good) > first, timeout=15, interval=0.5, what="the row updated")
    wait_until(lambda: "Ignoring this packet" in lab["hm"].text(), timeout=15, interval=0.5,
               what="the health manager logging the wrongly signed heartbeat")
    assert health_row(db, stranger) is None, "a heartbeat signed with a wrong key was accepted"
    assert all(s.running() for s in senders), [s.text()[-1000:] for s in senders]
    assert lab["hm"].running(), lab["hm"].text()[-3000:]


def test_ipv6_heartbeats_reach_the_real_health_manager(prerequisites, heartbeat_db, tmp_path):
    cidr = random_cidr(6)
    with heartbeat_lab(tmp_path, prerequisites, heartbeat_db, cidr, None) as lab:
        # what the amphorae get: the health-manager port's IPv6 address, bracketed; the health manager
        # listens on an IPv6 socket (one socket of bind_ip's family: 0.0.0.0 never sees these)
        assert lab["r"]["dests"] == f"[{lab['hm_ip']}]:{HEARTBEAT_PORT}"
        assert lab["r"]["rendered_bind_ip"] == "::"
        check_heartbeats(lab, heartbeat_db)
        log = lab["hm"].text()
        # the source address reaches Octavia as a plain IPv6 address (only ever logged by Octavia)
        assert f"Received packet from ('{lab['amp_ip']}', " in log, log[-3000:]


def test_ipv4_heartbeats_reach_the_real_health_manager(prerequisites, heartbeat_db, tmp_path):
    """The IPv4 path with what the operator renders, unchanged by the IPv6 fix."""
    cidr = random_cidr(4)
    with heartbeat_lab(tmp_path, prerequisites, heartbeat_db, cidr, None) as lab:
        assert lab["r"]["dests"] == f"{lab['hm_ip']}:{HEARTBEAT_PORT}"
        check_heartbeats(lab, heartbeat_db)
        assert f"Received packet from ('{lab['amp_ip']}', " in lab["hm"].text()


@pytest.mark.parametrize("bindv6only", [0, 1])
def test_dual_stack_bind_and_ipv4_heartbeats(prerequisites, heartbeat_db, tmp_path, bindv6only):
    """Measures what bind_ip = "::" does on an IPv4 management network (is "always ::" safe?). Linux gives a
    socket bound to :: IPv4 too while net.ipv6.bindv6only is 0 (its default; a per-namespace sysctl, so
    the node's own value for a hostNetwork health manager): sources then reach Octavia as v4-mapped
    addresses (::ffff:a.b.c.d). With bindv6only = 1 the IPv4 heartbeats are lost."""
    cidr = random_cidr(4)
    with heartbeat_lab(tmp_path, prerequisites, heartbeat_db, cidr, "::", bindv6only=bindv6only) as lab:
        if bindv6only == 0:
            check_heartbeats(lab, heartbeat_db)
            assert f"Received packet from ('::ffff:{lab['amp_ip']}', " in lab["hm"].text()
        else:
            amp_id = add_amphora(heartbeat_db, lab["amp_ip"])
            lab["start_sender"]("amp-good", amp_id, lab["r"]["key"])
            time.sleep(6)
            assert health_row(heartbeat_db, amp_id) is None
            assert "Received packet from" not in lab["hm"].text()
