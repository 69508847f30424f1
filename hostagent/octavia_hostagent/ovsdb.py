"""Minimal synchronous OVSDB (RFC 7047) JSON-RPC client and the ovs driver.

The driver keeps one connection to ovsdb-server with a ``monitor`` on the columns the agent reads
(Bridge name/ports, Port name/interfaces/external_ids, Interface name/type/external_ids/mac/
mtu_request/error). The monitor is only a wake-up: the agent's loop selects on the socket and an
``update`` notification (or the connection closing) starts a pass. Observations are still fresh
``select`` transactions on that connection, never a cached replica, so nothing can go stale when
ovsdb-server restarts: a closed connection is reopened (and the monitor re-registered) by the next
observation or by the loop, and a restarted server's database is simply read again.
"""
from __future__ import annotations

import codecs
import json
import logging
import socket
import time

from .model import OvsObs, OvsPortObs

log = logging.getLogger(__name__)
DB = "Open_vSwitch"
MONITOR_ID = "octavia-hostagent"
#: the columns the agent reads: a change to any of them wakes the agent (initial rows are not sent)
MONITORED = {
    "Bridge": ["name", "ports"],
    "Port": ["name", "interfaces", "external_ids"],
    "Interface": ["name", "type", "external_ids", "mac", "mtu_request", "error"],
}
#: how long to wait for ovs-vswitchd to apply a deletion before re-adding a port (it normally takes ms)
VSWITCHD_WAIT = 5.0


class OvsdbError(RuntimeError):
    pass


class OvsdbOpError(OvsdbError):
    """The server answered with an error (the connection itself is fine)."""


class OvsdbClient:
    def __init__(self, url: str, timeout: float = 5.0):
        self.url = url
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._buf = ""
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._id = 0
        self._dec = json.JSONDecoder()
        #: "update" notifications received from the monitor (the driver resets it)
        self.updates = 0

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.close()

    def connect(self) -> None:
        kind, _, rest = self.url.partition(":")
        try:
            if kind == "unix":
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(self.timeout)
                s.connect(rest)
            elif kind == "tcp":
                host, _, port = rest.rpartition(":")
                s = socket.create_connection((host.strip("[]"), int(port)), timeout=self.timeout)
            else:
                raise OvsdbError(f"unsupported OVSDB URL {self.url!r} (use unix:PATH or tcp:HOST:PORT)")
        except OSError as e:
            raise OvsdbError(f"cannot connect to {self.url}: {e}") from None
        self.sock = s

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def _send(self, msg: dict) -> None:
        self.sock.settimeout(self.timeout)
        try:
            self.sock.sendall(json.dumps(msg).encode())
        except OSError as e:
            raise OvsdbError(f"OVSDB connection error: {e}") from None

    def _next_buffered(self) -> dict | None:
        buf = self._buf.lstrip()
        self._buf = buf
        if not buf:
            return None
        try:
            obj, end = self._dec.raw_decode(buf)
        except json.JSONDecodeError:
            return None  # incomplete
        self._buf = buf[end:]
        return obj

    def _fill(self, timeout: float) -> None:
        """One recv, waiting at most ``timeout`` (0: not at all: BlockingIOError when nothing is there)."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError, socket.timeout):
            raise
        except OSError as e:
            raise OvsdbError(f"OVSDB connection error: {e}") from None
        if not data:
            raise OvsdbError("OVSDB closed the connection")
        self._buf += self._utf8.decode(data)

    def _recv_msg(self, timeout: float | None = None) -> dict:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            obj = self._next_buffered()
            if obj is not None:
                return obj
            left = deadline - time.monotonic()
            if left <= 0:
                raise OvsdbError("timeout waiting for OVSDB reply")
            try:
                self._fill(left)
            except (BlockingIOError, InterruptedError, socket.timeout):
                continue

    def _handle_unsolicited(self, msg: dict) -> None:
        """Echo requests (ovsdb-server's inactivity probe, on TCP) are answered; monitor updates counted."""
        if msg.get("method") == "echo" and msg.get("id") is not None:
            self._send({"result": msg.get("params", []), "error": None, "id": msg["id"]})
        elif msg.get("method") == "update":
            self.updates += 1

    def call(self, method: str, params: list, timeout: float | None = None):
        self._id += 1
        rid = self._id
        self._send({"method": method, "params": params, "id": rid})
        while True:
            msg = self._recv_msg(timeout)
            if "method" in msg:
                self._handle_unsolicited(msg)
                continue
            if msg.get("id") != rid:
                continue
            if msg.get("error"):
                raise OvsdbOpError(f"OVSDB {method} error: {msg['error']}")
            return msg.get("result")

    def read_available(self) -> None:
        """Reads and handles whatever the server sent without waiting (call when the socket is
        readable); raises OvsdbError when the connection is closed."""
        while True:
            try:
                self._fill(0.0)
            except (BlockingIOError, InterruptedError, socket.timeout):
                break
        while (msg := self._next_buffered()) is not None:
            if "method" in msg:
                self._handle_unsolicited(msg)

    def monitor(self, tables: dict) -> None:
        """Registers a monitor on ``tables`` (table -> columns) without the initial rows: from now on
        every change to those columns arrives as an "update" notification (counted in ``updates``)."""
        req = {t: {"columns": cols, "select": {"initial": False, "insert": True, "delete": True, "modify": True}}
               for t, cols in tables.items()}
        self.call("monitor", [DB, MONITOR_ID, req])

    def transact(self, *ops: dict, timeout: float | None = None) -> list:
        result = self.call("transact", [DB, *ops], timeout=timeout)
        for op, r in zip(ops, result):
            if isinstance(r, dict) and r.get("error"):
                raise OvsdbOpError(f"OVSDB {op.get('op')} on {op.get('table')}: {r['error']}: {r.get('details', '')}")
        if len(result) > len(ops) and isinstance(result[-1], dict) and result[-1].get("error"):
            raise OvsdbOpError(f"OVSDB transaction: {result[-1]['error']}: {result[-1].get('details', '')}")
        return result

    def select(self, table: str, where: list, columns: list) -> list[dict]:
        return self.transact({"op": "select", "table": table, "where": where, "columns": columns})[0]["rows"]


# ----------------------------------------------------------- OVSDB value helpers
def to_map(v) -> dict:
    if isinstance(v, list) and len(v) == 2 and v[0] == "map":
        return {k: val for k, val in v[1]}
    return {}


def from_map(d: dict) -> list:
    return ["map", [[k, str(v)] for k, v in sorted(d.items())]]


def to_set(v) -> list:
    if isinstance(v, list) and len(v) == 2 and v[0] == "set":
        return v[1]
    return [v]


def optional(v):
    s = to_set(v)
    return s[0] if s else None


def uuid_of(v) -> str | None:
    if isinstance(v, list) and len(v) == 2 and v[0] == "uuid":
        return v[1]
    return None


def _iface_row(cols: dict) -> dict:
    row = {}
    for k, v in cols.items():
        if k == "external_ids":
            row[k] = from_map(v)
        elif k in ("mac",):
            row[k] = v if v is not None else ["set", []]
        else:
            row[k] = v
    return row


# --------------------------------------------------------------------- the driver
class OvsDriver:
    """The agent's OVSDB side, on one persistent connection that carries a monitor (see the module
    docstring). Every method that fails on the connection closes it; the next use reconnects."""

    def __init__(self, url: str, timeout: float = 5.0):
        self.url = url
        self.timeout = timeout
        self._c: OvsdbClient | None = None
        #: the loop keeps the connection (and so the monitor) open while the agent has OVS ports to watch
        self.keep = False

    # ----------------------------------------------------------- the connection
    @property
    def connected(self) -> bool:
        return self._c is not None

    def fileno(self) -> int:
        return self._c.sock.fileno()

    def connect(self, timeout: float | None = None) -> None:
        """Opens the connection and registers the monitor (no-op when connected)."""
        if self._c is not None:
            return
        c = OvsdbClient(self.url, self.timeout if timeout is None else timeout)
        c.connect()
        try:
            c.monitor(MONITORED)
        except OvsdbError:
            c.close()
            raise
        c.timeout = self.timeout
        self._c = c

    def close(self) -> None:
        if self._c is not None:
            self._c.close()
            self._c = None

    def _run(self, fn):
        """fn(client) on the persistent connection. A connection that was already open may have been
        closed by the server since (ovsdb-server restarted): then one retry on a new connection."""
        fresh = self._c is None
        for attempt in (1, 2):
            try:
                self.connect()
                return fn(self._c)
            except OvsdbOpError:
                raise
            except OvsdbError:
                self.close()
                if fresh or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def take_changes(self) -> str | None:
        """Called when the socket is readable, and after a pass: why the agent should look again
        (None: nothing relevant, e.g. only an echo). Never blocks."""
        if self._c is None:
            return None
        try:
            self._c.read_available()
        except OvsdbError as e:
            self.close()
            return f"OVSDB connection lost ({e})"
        if self._c.updates:
            self._c.updates = 0
            return "OVSDB rows changed"
        return None

    def pending(self) -> str | None:
        """Like take_changes() for notifications already read (during a pass), without reading."""
        if self._c is not None and self._c.updates:
            self._c.updates = 0
            return "OVSDB rows changed"
        return None

    # ------------------------------------------------------------------ observe
    def observe(self, names: set, owner_key: str) -> OvsObs:
        def read(c: OvsdbClient):
            bridges, ports = (r["rows"] for r in c.transact(
                {"op": "select", "table": "Bridge", "where": [], "columns": ["name", "ports"]},
                {"op": "select", "table": "Port", "where": [], "columns": ["_uuid", "name", "interfaces", "external_ids"]}))
            wanted = [p for p in ports if p["name"] in names or owner_key in to_map(p["external_ids"])]
            ifaces = {}
            if wanted:
                rows = c.select("Interface", [], ["_uuid", "name", "type", "external_ids", "mac", "mtu_request", "error"])
                ifaces = {r["_uuid"][1]: r for r in rows}
            return bridges, wanted, ifaces

        try:
            bridges, wanted, ifaces = self._run(read)
        except OvsdbError as e:
            return OvsObs(reachable=False, error=str(e))
        port_bridge = {}
        for b in bridges:
            for pu in to_set(b["ports"]):
                port_bridge[uuid_of(pu)] = b["name"]
        obs = OvsObs(reachable=True, bridges={b["name"] for b in bridges})
        for p in wanted:
            puuid = p["_uuid"][1]
            iface = None
            for iu in to_set(p["interfaces"]):
                r = ifaces.get(uuid_of(iu))
                if r is not None and r["name"] == p["name"]:
                    iface = r
            obs.ports[p["name"]] = OvsPortObs(
                uuid=puuid,
                bridge=port_bridge.get(puuid),
                external_ids=to_map(p["external_ids"]),
                iface_uuid=iface["_uuid"][1] if iface else None,
                iface_type=iface["type"] if iface else "",
                iface_external_ids=to_map(iface["external_ids"]) if iface else {},
                mac=optional(iface["mac"]) if iface else None,
                mtu_request=optional(iface["mtu_request"]) if iface else None,
                error=optional(iface["error"]) if iface else None,
            )
        return obs

    # -------------------------------------------------------------------- apply
    def add_port(self, bridge: str, name: str, iface_columns: dict, port_external_ids: dict) -> None:
        iface = dict(_iface_row(iface_columns), name=name)
        self._run(lambda c: c.transact(
            # Idempotent even when two agents race: fails if the port appeared meanwhile.
            {"op": "wait", "table": "Port", "where": [["name", "==", name]], "columns": ["name"],
             "until": "==", "rows": [], "timeout": 0},
            {"op": "insert", "table": "Interface", "row": iface, "uuid-name": "iface"},
            {"op": "insert", "table": "Port", "uuid-name": "port",
             "row": {"name": name, "interfaces": ["named-uuid", "iface"],
                     "external_ids": from_map(port_external_ids)}},
            {"op": "mutate", "table": "Bridge", "where": [["name", "==", bridge]],
             "mutations": [["ports", "insert", ["set", [["named-uuid", "port"]]]]]},
            {"op": "comment", "comment": f"octavia-hostagent: add port {name} to {bridge}"},
        ))

    def set_interface(self, name: str, columns: dict, current_external_ids: dict) -> None:
        cols = dict(columns)
        if "external_ids" in cols:  # keep keys other tools wrote (e.g. the Neutron agent)
            merged = dict(current_external_ids)
            merged.update(cols["external_ids"])
            cols["external_ids"] = merged
        self._run(lambda c: c.transact({"op": "update", "table": "Interface", "where": [["name", "==", name]],
                                        "row": _iface_row(cols)}))

    def del_port(self, port_uuid: str, wait_vswitchd: bool = False) -> None:
        """Removes the port from whichever bridge holds it; Port/Interface rows are not root rows, so
        OVSDB garbage-collects them. With ``wait_vswitchd``, returns only once ovs-vswitchd has
        applied the deletion (as ``ovs-vsctl`` without ``--no-wait`` does: ``next_cfg`` is bumped in
        the same transaction and the server-side ``wait`` op blocks until ``cur_cfg`` reaches it), so
        that a port re-added right after is a new port to ovs-vswitchd, which creates its device."""
        ops = [{"op": "mutate", "table": "Bridge", "where": [],
                "mutations": [["ports", "delete", ["set", [["uuid", port_uuid]]]]]}]
        if wait_vswitchd:
            ops += [{"op": "mutate", "table": "Open_vSwitch", "where": [], "mutations": [["next_cfg", "+=", 1]]},
                    {"op": "select", "table": "Open_vSwitch", "where": [], "columns": ["next_cfg"]}]
        ops.append({"op": "comment", "comment": "octavia-hostagent: delete port"})

        def delete(c: OvsdbClient):
            res = c.transact(*ops)
            if not wait_vswitchd:
                return
            rows = res[2]["rows"]
            if not rows:
                return  # no Open_vSwitch row: no ovs-vswitchd to wait for
            try:
                c.transact({"op": "wait", "table": "Open_vSwitch", "where": [["cur_cfg", ">=", rows[0]["next_cfg"]]],
                            "columns": ["cur_cfg"], "until": "!=", "rows": [], "timeout": int(VSWITCHD_WAIT * 1000)},
                           timeout=VSWITCHD_WAIT + self.timeout)
            except OvsdbOpError as e:  # "timed out": ovs-vswitchd is not running or stuck
                log.warning("ovs-vswitchd did not apply the port deletion within %ss (%s)", VSWITCHD_WAIT, e)

        self._run(delete)
