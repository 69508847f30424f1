"""Minimal synchronous OVSDB (RFC 7047) JSON-RPC client and the ovs driver.

The agent opens one short connection per reconcile pass: no background thread,
no cached replica that could go stale when ovsdb-server restarts and loses the
database; a restart simply shows up as "unreachable" for a pass and the next
pass sees the fresh database.
"""
from __future__ import annotations

import json
import logging
import socket
import time

from .model import OvsObs, OvsPortObs

log = logging.getLogger(__name__)
DB = "Open_vSwitch"


class OvsdbError(RuntimeError):
    pass


class OvsdbClient:
    def __init__(self, url: str, timeout: float = 5.0):
        self.url = url
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._buf = ""
        self._id = 0
        self._dec = json.JSONDecoder()

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
        self.sock.sendall(json.dumps(msg).encode())

    def _recv_msg(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            buf = self._buf.lstrip()
            if buf:
                try:
                    obj, end = self._dec.raw_decode(buf)
                    self._buf = buf[end:]
                    return obj
                except json.JSONDecodeError:
                    pass
            if time.monotonic() > deadline:
                raise OvsdbError("timeout waiting for OVSDB reply")
            try:
                data = self.sock.recv(65536)
            except OSError as e:
                raise OvsdbError(f"OVSDB connection error: {e}") from None
            if not data:
                raise OvsdbError("OVSDB closed the connection")
            self._buf += data.decode()

    def call(self, method: str, params: list):
        self._id += 1
        rid = self._id
        self._send({"method": method, "params": params, "id": rid})
        while True:
            msg = self._recv_msg()
            if msg.get("method") == "echo" and "id" in msg:
                self._send({"result": msg.get("params", []), "error": None, "id": msg["id"]})
                continue
            if msg.get("id") != rid:
                continue  # a notification
            if msg.get("error"):
                raise OvsdbError(f"OVSDB {method} error: {msg['error']}")
            return msg.get("result")

    def transact(self, *ops: dict) -> list:
        result = self.call("transact", [DB, *ops])
        for op, r in zip(ops, result):
            if isinstance(r, dict) and r.get("error"):
                raise OvsdbError(f"OVSDB {op.get('op')} on {op.get('table')}: {r['error']}: {r.get('details', '')}")
        if len(result) > len(ops) and isinstance(result[-1], dict) and result[-1].get("error"):
            raise OvsdbError(f"OVSDB transaction: {result[-1]['error']}: {result[-1].get('details', '')}")
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
    def __init__(self, url: str, timeout: float = 5.0):
        self.url = url
        self.timeout = timeout

    def client(self) -> OvsdbClient:
        return OvsdbClient(self.url, self.timeout)

    def observe(self, names: set, owner_key: str) -> OvsObs:
        try:
            with self.client() as c:
                bridges = c.select("Bridge", [], ["name", "ports"])
                ports = c.select("Port", [], ["_uuid", "name", "interfaces", "external_ids"])
                wanted = [p for p in ports if p["name"] in names or owner_key in to_map(p["external_ids"])]
                ifaces = {}
                if wanted:
                    rows = c.select("Interface", [], ["_uuid", "name", "type", "external_ids", "mac", "mtu_request", "error"])
                    ifaces = {r["_uuid"][1]: r for r in rows}
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

    def add_port(self, bridge: str, name: str, iface_columns: dict, port_external_ids: dict) -> None:
        iface = dict(_iface_row(iface_columns), name=name)
        with self.client() as c:
            c.transact(
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
            )

    def set_interface(self, name: str, columns: dict, current_external_ids: dict) -> None:
        cols = dict(columns)
        if "external_ids" in cols:  # keep keys other tools wrote (e.g. the Neutron agent)
            merged = dict(current_external_ids)
            merged.update(cols["external_ids"])
            cols["external_ids"] = merged
        with self.client() as c:
            c.transact({"op": "update", "table": "Interface", "where": [["name", "==", name]],
                        "row": _iface_row(cols)})

    def del_port(self, port_uuid: str) -> None:
        with self.client() as c:
            # Remove the reference from whichever bridge holds it; Port/Interface rows are
            # not root rows, so OVSDB garbage-collects them.
            c.transact({"op": "mutate", "table": "Bridge", "where": [],
                        "mutations": [["ports", "delete", ["set", [["uuid", port_uuid]]]]]},
                       {"op": "comment", "comment": "octavia-hostagent: delete port"})
