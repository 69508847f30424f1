"""Data types shared by the planner (pure) and the drivers (I/O)."""
from __future__ import annotations

from dataclasses import dataclass, field

#: ifalias written on links the agent creates (survives a lost state file)
LINK_ALIAS = "octavia-hostagent"
#: Port.external_ids key written on OVS ports the agent creates
OVS_OWNER_KEY = "octavia-hostagent-managed"
#: the agent's own iptables chain (filter table, both families)
FW_CHAIN = "OCTAVIA-HOSTAGENT"


@dataclass
class LinkObs:
    name: str
    index: int
    mac: str
    mtu: int
    up: bool
    master: str | None = None
    kind: str | None = None
    alias: str | None = None
    peer_index: int | None = None


@dataclass
class RouteObs:
    dst: str  # "0.0.0.0/0", "172.31.0.0/24"
    gateway: str | None
    family: int  # 4 or 6
    proto: int = 0
    table: int = 254


@dataclass
class OvsPortObs:
    uuid: str
    bridge: str | None
    external_ids: dict
    iface_uuid: str | None
    iface_type: str
    iface_external_ids: dict
    mac: str | None
    mtu_request: int | None
    error: str | None = None

    @property
    def owned_marker(self) -> bool:
        return OVS_OWNER_KEY in self.external_ids


@dataclass
class OvsObs:
    reachable: bool
    error: str | None = None
    bridges: set = field(default_factory=set)
    ports: dict = field(default_factory=dict)  # name -> OvsPortObs (assigned name, owned names, marked ports)


@dataclass
class FwObs:
    backend: str
    available: bool = True
    error: str | None = None
    #: family -> the rules of our chain in save format ("-A CHAIN ..."), None when the chain is missing
    chains: dict = field(default_factory=dict)
    #: family -> rules of INPUT that jump to our chain, save format
    jumps: dict = field(default_factory=dict)


@dataclass
class Observed:
    links: dict = field(default_factory=dict)  # name -> LinkObs
    addrs: dict = field(default_factory=dict)  # name -> list[(ip str, prefixlen)] (global scope only)
    routes: dict = field(default_factory=dict)  # name -> list[RouteObs] (main table)
    ovs: OvsObs | None = None
    fw: FwObs | None = None
    sysctls: dict = field(default_factory=dict)  # path under /proc/sys/net ("ipv6/conf/o-hm0/accept_ra") -> value


@dataclass
class Owned:
    """What the agent created (from the state file)."""

    links: set = field(default_factory=set)  # link names
    ovs_ports: set = field(default_factory=set)  # port names
    addresses: set = field(default_factory=set)  # (link, "ip/prefix")
    firewall_backends: set = field(default_factory=set)  # {"nft", "legacy"}
    sysctls: dict = field(default_factory=dict)  # path -> value before the agent changed it

    def to_json(self) -> dict:
        return {
            "links": sorted(self.links),
            "ovsPorts": sorted(self.ovs_ports),
            "addresses": [{"link": l, "address": a} for l, a in sorted(self.addresses)],
            "firewallBackends": sorted(self.firewall_backends),
            "sysctls": dict(sorted(self.sysctls.items())),
        }

    @classmethod
    def from_json(cls, d: dict | None) -> "Owned":
        d = d or {}
        return cls(
            links=set(d.get("links", [])),
            ovs_ports=set(d.get("ovsPorts", [])),
            addresses={(x["link"], x["address"]) for x in d.get("addresses", [])},
            firewall_backends=set(d.get("firewallBackends", [])),
            sysctls=dict(d.get("sysctls", {})),
        )

    def empty(self) -> bool:
        return not (self.links or self.ovs_ports or self.addresses or self.firewall_backends or self.sysctls)


@dataclass(frozen=True)
class Action:
    kind: str
    target: str
    args: tuple = ()  # tuple of (key, value) pairs, kept hashable
    reason: str = ""

    def arg(self, key, default=None):
        for k, v in self.args:
            if k == key:
                return v
        return default

    def __str__(self) -> str:
        a = " ".join(f"{k}={v}" for k, v in self.args)
        return f"{self.kind} {self.target}{(' ' + a) if a else ''} ({self.reason})"


def act(kind: str, target: str, reason: str, **args) -> Action:
    return Action(kind, target, tuple(sorted(args.items())), reason)
