"""Unit tests of the host agent's change detection, without root: the filter on nf_tables
notifications, and the OVSDB driver's persistent connection with its monitor, against a fake
ovsdb-server (a JSON-RPC server on a unix socket in this process)."""
from __future__ import annotations

import json
import select
import socket
import struct
import threading
import time

import pytest

from octavia_hostagent.firewall import NFNL_SUBSYS_NFTABLES, nft_relevant
from octavia_hostagent.model import FW_CHAIN, OVS_OWNER_KEY
from octavia_hostagent.ovsdb import MONITORED, OvsDriver, OvsdbError

NEWTABLE, DELTABLE, NEWCHAIN, DELCHAIN, NEWRULE, DELRULE, NEWGEN = 0, 2, 3, 5, 6, 8, 15
IP, IP6, INET = 2, 10, 1


# ------------------------------------------------------------------ nf_tables notifications
def attr(typ: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), typ) + value
    return raw + b"\0" * (-len(raw) % 4)


def nfmsg(msg: int, family: int, **attrs) -> bytes:
    """One nfnetlink message as the kernel multicasts it (nlmsghdr, nfgenmsg, attributes)."""
    body = struct.pack("=BBH", family, 0, 0)
    for typ, v in attrs.items():
        body += attr(int(typ[1:]), v.encode() + b"\0" if isinstance(v, str) else v)
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_NFTABLES << 8) | msg, 0, 1, 0) + body


def rule(msg, family, table, chain):
    return nfmsg(msg, family, a1=table, a2=chain, a3=b"\0" * 8)  # NFTA_RULE_TABLE, _CHAIN, _HANDLE


def chain(msg, family, table, name):
    return nfmsg(msg, family, a1=table, a3=name)  # NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME


GEN = nfmsg(NEWGEN, 0, a1=b"\0\0\0\2", a3="iptables-nft")


@pytest.mark.parametrize("data", [
    rule(DELRULE, IP, "filter", FW_CHAIN) + GEN,        # iptables-nft -D OCTAVIA-HOSTAGENT ...
    rule(DELRULE, IP6, "filter", "INPUT") + GEN,        # ip6tables-nft -D INPUT -i o-hm0 ...
    rule(NEWRULE, IP, "filter", "INPUT") + GEN,         # someone inserts before our jump
    chain(DELCHAIN, IP, "filter", FW_CHAIN) + GEN,
    nfmsg(DELTABLE, IP, a1="filter") + GEN,             # nft flush ruleset / delete table ip filter
    nfmsg(NEWTABLE, IP6, a1="filter") + GEN,            # table flags (dormant) changed
    rule(DELRULE, IP, "filter", "OUTPUT") + rule(DELRULE, IP, "filter", FW_CHAIN) + GEN,  # 2nd of a batch
    rule(DELRULE, IP, "filter", "OUTPUT")[:-6],  # truncated: unparseable, so relevant
], ids=["chain-rule", "input-rule-v6", "input-insert", "chain-deleted", "table-deleted", "table-changed",
        "in-batch", "truncated"])
def test_nft_notifications_about_our_rules_wake_the_agent(data):
    assert nft_relevant(data) is True


@pytest.mark.parametrize("data", [
    GEN,                                                 # end of a batch only
    rule(NEWRULE, IP, "filter", "KUBE-SERVICES") + GEN,  # kube-proxy's churn (iptables-nft backend)
    chain(NEWCHAIN, IP, "filter", "KUBE-SEP-ABC") + GEN,
    rule(DELRULE, IP, "nat", "INPUT") + GEN,             # another table
    rule(DELRULE, INET, "filter", "INPUT") + GEN,        # a native nft inet table (not iptables-save's)
    nfmsg(DELTABLE, IP, a1="mangle") + GEN,
    b"".join(rule(NEWRULE, IP, "nat", f"KUBE-SEP-{i:05d}") for i in range(50)) + GEN,  # no "filter": not parsed
], ids=["gen-only", "kube-rule", "kube-chain", "nat-table", "inet-family", "other-table", "nat-burst"])
def test_nft_notifications_about_other_rules_do_not(data):
    assert nft_relevant(data) is False


# ------------------------------------------------------------------------ fake ovsdb-server
class FakeOvsdb:
    """Accepts connections on a unix socket and answers monitor / transact (select, mutate, wait,
    comment, ...) from a tiny in-memory database; the test can push notifications and close
    connections."""

    def __init__(self, path):
        self.path = str(path)
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.path)
        self.srv.listen(8)
        self.conns: list[socket.socket] = []
        self.requests: list[dict] = []  # every request received, in order
        self.replies_to_echo: list[dict] = []
        self.rows = {
            "Bridge": [{"_uuid": ["uuid", "b1"], "name": "br-int", "ports": ["set", [["uuid", "p1"]]]}],
            "Port": [{"_uuid": ["uuid", "p1"], "name": "o-hm0", "interfaces": ["uuid", "i1"],
                      "external_ids": ["map", [[OVS_OWNER_KEY, "true"]]]}],
            "Interface": [{"_uuid": ["uuid", "i1"], "name": "o-hm0", "type": "internal",
                           "external_ids": ["map", [["iface-id", "p-uuid"]]], "mac": "fa:16:3e:aa:bb:cc",
                           "mtu_request": 1450, "error": ["set", []]}],
            "Open_vSwitch": [{"_uuid": ["uuid", "o1"], "next_cfg": 7, "cur_cfg": 7}],
        }
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf, dec = "", json.JSONDecoder()
        while True:
            try:
                data = c.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data.decode()
            while buf.strip():
                try:
                    msg, end = dec.raw_decode(buf.lstrip())
                except ValueError:
                    break
                buf = buf.lstrip()[end:]
                self._handle(c, msg)

    def _handle(self, c, msg):
        with self.lock:
            self.requests.append(msg)
        if "result" in msg:  # the client's reply to our echo
            self.replies_to_echo.append(msg)
            return
        if msg["method"] == "monitor":
            result = {}
        elif msg["method"] == "transact":
            result = [self._op(op) for op in msg["params"][1:]]
        else:
            result = None
        try:
            c.sendall(json.dumps({"id": msg["id"], "result": result, "error": None}).encode())
        except OSError:
            pass

    def _op(self, op):
        if op["op"] == "select":
            return {"rows": [{k: v for k, v in r.items() if k in op["columns"]} for r in self.rows[op["table"]]]}
        if op["op"] == "mutate" and op["table"] == "Open_vSwitch":
            self.rows["Open_vSwitch"][0]["next_cfg"] += 1
            self.rows["Open_vSwitch"][0]["cur_cfg"] += 1  # "ovs-vswitchd" applies it at once
            return {"count": 1}
        if op["op"] == "mutate":
            return {"count": 1}
        return {}

    def push(self, msg: dict, conn: int = -1):
        with self.lock:
            self.conns[conn].sendall(json.dumps(msg).encode())

    def drop_all(self):
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self.conns.clear()

    def stop(self):
        self.stopped = True
        self.drop_all()
        self.srv.close()

    def methods(self):
        with self.lock:
            return [r.get("method") for r in self.requests if "method" in r]


@pytest.fixture
def fake(tmp_path):
    f = FakeOvsdb(tmp_path / "db.sock")
    yield f
    f.stop()


def readable(drv: OvsDriver, timeout: float = 2.0) -> bool:
    return bool(select.select([drv], [], [], timeout)[0])


UPDATE = {"method": "update", "id": None,
          "params": ["octavia-hostagent", {"Interface": {"i1": {"old": {"external_ids": ["map", []]},
                                                                "new": {"name": "o-hm0"}}}}]}


def test_observe_registers_a_monitor_on_the_columns_it_reads_and_keeps_the_connection(fake):
    drv = OvsDriver(f"unix:{fake.path}", timeout=2)
    obs = drv.observe({"o-hm0"}, OVS_OWNER_KEY)
    assert obs.reachable and obs.bridges == {"br-int"}
    port = obs.ports["o-hm0"]
    assert port.bridge == "br-int" and port.iface_external_ids == {"iface-id": "p-uuid"} and port.mtu_request == 1450
    mon = [r for r in fake.requests if r.get("method") == "monitor"]
    assert len(mon) == 1
    db, _mid, req = mon[0]["params"]
    assert db == "Open_vSwitch"
    assert {t: v["columns"] for t, v in req.items()} == MONITORED
    assert all(v["select"]["initial"] is False for v in req.values())  # a wake-up only: no initial rows
    drv.observe({"o-hm0"}, OVS_OWNER_KEY)
    assert len(fake.conns) == 1 and fake.methods().count("monitor") == 1  # one persistent connection
    drv.close()


def test_update_notification_wakes_echo_does_not_and_is_answered(fake):
    drv = OvsDriver(f"unix:{fake.path}", timeout=2)
    drv.observe({"o-hm0"}, OVS_OWNER_KEY)
    assert drv.take_changes() is None and not readable(drv, 0.1)
    fake.push({"method": "echo", "params": ["x"], "id": "echo-1"})
    assert readable(drv)
    assert drv.take_changes() is None
    wait = time.monotonic() + 2
    while not fake.replies_to_echo and time.monotonic() < wait:
        time.sleep(0.01)
    assert fake.replies_to_echo == [{"result": ["x"], "error": None, "id": "echo-1"}]
    fake.push(UPDATE)
    assert readable(drv)
    assert drv.take_changes() == "OVSDB rows changed"
    assert drv.take_changes() is None  # consumed
    drv.close()


def test_update_arriving_during_a_call_is_not_lost(fake):
    drv = OvsDriver(f"unix:{fake.path}", timeout=2)
    drv.observe({"o-hm0"}, OVS_OWNER_KEY)
    fake.push(UPDATE)  # queued before the reply of the next select
    time.sleep(0.1)
    assert drv.observe({"o-hm0"}, OVS_OWNER_KEY).reachable
    assert drv.pending() == "OVSDB rows changed"
    assert drv.pending() is None
    drv.close()


def test_connection_lost_wakes_and_the_next_use_reconnects_and_monitors_again(fake):
    drv = OvsDriver(f"unix:{fake.path}", timeout=2)
    drv.observe({"o-hm0"}, OVS_OWNER_KEY)
    fake.drop_all()  # ovsdb-server restarted
    assert readable(drv)
    assert drv.take_changes().startswith("OVSDB connection lost")
    assert not drv.connected
    obs = drv.observe({"o-hm0"}, OVS_OWNER_KEY)
    assert obs.reachable and drv.connected
    assert fake.methods().count("monitor") == 2
    drv.close()


def test_a_stale_connection_is_retried_once_within_the_same_observation(fake):
    """The server went away and came back between two passes, unnoticed: the observation does not
    report OVSDB unreachable, it reconnects."""
    drv = OvsDriver(f"unix:{fake.path}", timeout=2)
    drv.observe({"o-hm0"}, OVS_OWNER_KEY)
    fake.drop_all()
    time.sleep(0.1)
    assert drv.observe({"o-hm0"}, OVS_OWNER_KEY).reachable
    drv.close()


def test_unreachable_is_reported_not_raised(tmp_path):
    drv = OvsDriver(f"unix:{tmp_path}/missing.sock", timeout=1)
    obs = drv.observe({"o-hm0"}, OVS_OWNER_KEY)
    assert not obs.reachable and "cannot connect" in obs.error
    assert not drv.connected
    with pytest.raises(OvsdbError):
        drv.connect(timeout=0.2)


def test_del_port_waits_for_ovs_vswitchd_to_apply_it(fake):
    drv = OvsDriver(f"unix:{fake.path}", timeout=2)
    drv.del_port("p1", wait_vswitchd=True)
    txns = [r["params"][1:] for r in fake.requests if r.get("method") == "transact"]
    assert [op["op"] for op in txns[0]] == ["mutate", "mutate", "select", "comment"]
    assert txns[0][1]["table"] == "Open_vSwitch" and txns[0][1]["mutations"] == [["next_cfg", "+=", 1]]
    [wait] = txns[1]
    assert wait["op"] == "wait" and wait["table"] == "Open_vSwitch"
    assert wait["where"] == [["cur_cfg", ">=", 8]] and wait["until"] == "!=" and wait["rows"] == []
    drv.close()


# ------------------------------------------------------------------ the assignment file's directory
def test_dir_watch_wakes_on_kubelet_symlink_swap_and_on_replace_not_on_appends(tmp_path):
    from octavia_hostagent.agent import DirWatch
    d = tmp_path / "cm"
    (d / "..2026_01").mkdir(parents=True)
    (d / "..2026_01" / "assignments.json").write_text("{}")
    (d / "..data").symlink_to("..2026_01")
    (d / "assignments.json").symlink_to("..data/assignments.json")
    log = open(d / "agent.log", "a")  # a file written continuously next to it (IN_MODIFY only)
    w = DirWatch(str(d / "assignments.json"))
    try:
        assert w.wd is not None
        log.write("a line\n")
        log.flush()
        assert not select.select([w], [], [], 0.2)[0]
        # kubelet's atomic writer: new timestamped dir, ..data_tmp symlink renamed over ..data
        (d / "..2026_02").mkdir()
        (d / "..2026_02" / "assignments.json").write_text('{"version": 1}')
        (d / "..data_tmp").symlink_to("..2026_02")
        (d / "..data_tmp").rename(d / "..data")
        assert select.select([w], [], [], 2)[0]
        w.drain()
        assert not select.select([w], [], [], 0.2)[0]
        # a plain writer replacing the file (os.replace, as tests and `kubectl cp`-like tools do)
        (d / "new").write_text("{}")
        (d / "new").replace(d / "plain.json")
        assert select.select([w], [], [], 2)[0]
        w.drain()
    finally:
        log.close()
        w.close()


def test_dir_watch_survives_the_directory_disappearing(tmp_path):
    from octavia_hostagent.agent import DirWatch
    d = tmp_path / "cm"
    w = DirWatch(str(d / "assignments.json"))  # directory missing: no watch yet
    try:
        assert w.wd is None and not w.ensure()
        d.mkdir()
        assert w.ensure() and w.wd is not None
        d.rmdir()
        assert select.select([w], [], [], 2)[0]
        w.drain()
        assert w.wd is None  # IN_IGNORED: the loop falls back to looking, and re-adds the watch
        d.mkdir()
        assert w.ensure()
        (d / "assignments.json").write_text("{}")
        assert select.select([w], [], [], 2)[0]
    finally:
        w.close()
