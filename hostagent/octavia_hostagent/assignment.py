"""Parsing and validation of the node assignment published by the operator.

Pure code (no I/O besides what the caller passes in).  The file format is
documented in docs/hostagent.md; unknown keys are ignored on purpose so that
the operator can add fields without breaking older agents.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

DRIVERS = ("ovs", "linuxbridge")
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,15}$")


class AssignmentError(ValueError):
    """The assignment file exists but its content is malformed."""


@dataclass(frozen=True)
class NodeAssignment:
    node: str
    deployment: str
    driver: str
    interface: str
    network_id: str
    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network
    mtu: int
    heartbeat_port: int
    port_id: str
    mac: str
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    prefix_length: int
    bound: bool
    integration_bridge: str | None = None
    linux_bridge: str | None = None
    host_end: str | None = None
    extra_udp_ports: tuple[int, ...] = field(default=())

    @property
    def ip_version(self) -> int:
        return self.cidr.version

    @property
    def udp_ports(self) -> tuple[int, ...]:
        ports = [self.heartbeat_port]
        for p in self.extra_udp_ports:
            if p not in ports:
                ports.append(p)
        return tuple(ports)

    @property
    def interface_network(self):
        return ipaddress.ip_interface(f"{self.ip}/{self.prefix_length}").network

    @property
    def bridge(self) -> str:
        return self.integration_bridge if self.driver == "ovs" else self.linux_bridge


def _req(d: dict, key: str, typ, where: str):
    if key not in d:
        raise AssignmentError(f"{where}: missing key {key!r}")
    val = d[key]
    if typ is int and isinstance(val, bool):
        raise AssignmentError(f"{where}: {key!r} must be an integer")
    if not isinstance(val, typ):
        raise AssignmentError(f"{where}: {key!r} must be {getattr(typ, '__name__', typ)}, got {type(val).__name__}")
    return val


def _ifname(val: str, what: str) -> str:
    if not _IFNAME_RE.match(val):
        raise AssignmentError(f"{what} {val!r} is not a valid interface name (1-15 chars [A-Za-z0-9_.-])")
    return val


def _port(val, what: str) -> int:
    if isinstance(val, bool) or not isinstance(val, int) or not 1 <= val <= 65535:
        raise AssignmentError(f"{what} must be an integer port 1..65535, got {val!r}")
    return val


def default_host_end(interface: str) -> str:
    """Name of the bridge-side veth end for the linuxbridge driver (o-hm0 -> o-bhm0)."""
    if interface.startswith("o-"):
        return ("o-b" + interface[2:])[:15]
    return ("b-" + interface)[:15]


def parse_assignments(doc, node: str) -> NodeAssignment | None:
    """Return this node's assignment, or None when the node has none.

    ``doc`` is the decoded JSON document (or None for an absent/empty file).
    Raises AssignmentError when the document (or this node's entry) is malformed.
    """
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise AssignmentError("top level must be a JSON object")
    version = doc.get("version", 1)
    if version != 1:
        raise AssignmentError(f"unsupported assignment version {version!r} (this agent understands 1)")
    nodes = doc.get("nodes", {})
    if nodes is None:
        nodes = {}
    if not isinstance(nodes, dict):
        raise AssignmentError("'nodes' must be an object keyed by node name")
    entry = nodes.get(node)
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise AssignmentError(f"nodes[{node!r}] must be an object")

    driver = _req(doc, "driver", str, "assignment")
    if driver not in DRIVERS:
        raise AssignmentError(f"driver must be one of {DRIVERS}, got {driver!r}")
    interface = _ifname(doc.get("interface", "o-hm0"), "interface")
    integration_bridge = linux_bridge = host_end = None
    if driver == "ovs":
        integration_bridge = _ifname(doc.get("integrationBridge", "br-int"), "integrationBridge")
    else:
        linux_bridge = _ifname(_req(doc, "linuxBridge", str, "assignment"), "linuxBridge")
        host_end = _ifname(doc.get("linuxBridgeHostEnd") or default_host_end(interface), "linuxBridgeHostEnd")
        if host_end == interface:
            raise AssignmentError("linuxBridgeHostEnd must differ from interface")

    subnet = _req(doc, "subnet", dict, "assignment")
    try:
        cidr = ipaddress.ip_network(_req(subnet, "cidr", str, "subnet"), strict=True)
    except ValueError as e:
        raise AssignmentError(f"subnet.cidr: {e}") from None
    ipv = subnet.get("ipVersion", cidr.version)
    if ipv != cidr.version:
        raise AssignmentError(f"subnet.ipVersion {ipv!r} does not match cidr {cidr}")

    mtu = _req(doc, "mtu", int, "assignment")
    min_mtu = 1280 if cidr.version == 6 else 576
    if not min_mtu <= mtu <= 65535:
        raise AssignmentError(f"mtu {mtu} out of range ({min_mtu}..65535)")
    hb = _port(doc.get("heartbeatPort", 5555), "heartbeatPort")
    extra = doc.get("extraUdpPorts", []) or []
    if not isinstance(extra, list):
        raise AssignmentError("extraUdpPorts must be a list")
    extra_t = tuple(_port(p, "extraUdpPorts[]") for p in extra)

    where = f"nodes[{node!r}]"
    port_id = _req(entry, "portId", str, where)
    mac = _req(entry, "mac", str, where).lower()
    if not _MAC_RE.match(mac):
        raise AssignmentError(f"{where}.mac {mac!r} is not a MAC address")
    if int(mac[:2], 16) & 1:
        raise AssignmentError(f"{where}.mac {mac!r} is a multicast address")
    try:
        ip = ipaddress.ip_address(_req(entry, "ip", str, where))
    except ValueError as e:
        raise AssignmentError(f"{where}.ip: {e}") from None
    if ip.version != cidr.version or ip not in cidr:
        raise AssignmentError(f"{where}.ip {ip} is not in subnet {cidr}")
    prefix = entry.get("prefixLength", cidr.prefixlen)
    if isinstance(prefix, bool) or not isinstance(prefix, int) or not 0 < prefix <= cidr.max_prefixlen:
        raise AssignmentError(f"{where}.prefixLength {prefix!r} is invalid")
    bound = entry.get("bound", True)
    if not isinstance(bound, bool):
        raise AssignmentError(f"{where}.bound must be a boolean")
    return NodeAssignment(
        node=node,
        deployment=str(doc.get("deployment", "")),
        driver=driver,
        interface=interface,
        network_id=str(doc.get("networkId", "")),
        cidr=cidr,
        mtu=mtu,
        heartbeat_port=hb,
        extra_udp_ports=extra_t,
        port_id=port_id,
        mac=mac,
        ip=ip,
        prefix_length=prefix,
        bound=bound,
        integration_bridge=integration_bridge,
        linux_bridge=linux_bridge,
        host_end=host_end,
    )
