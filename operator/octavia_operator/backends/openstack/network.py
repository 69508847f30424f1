"""Neutron: the management network, its subnet, the two security groups and the health-manager ports.

Narrow interface (plain functions on an admin openstacksdk ``Connection``; no Kubernetes code):

- :func:`ensure_management_network` (network, subnet, both security groups) and its parts
  :func:`ensure_network`, :func:`ensure_subnet`, :func:`ensure_security_group`;
- :func:`ensure_ports`: one health-manager port per node;
- :func:`network_in_use`: foreign ports (amphorae, VIPs...) that make deletion unsafe;
- :func:`delete_owned_network`: deletes what carries this deployment's marker, in dependency order;
- :func:`overlaps`: pure CIDR overlap check against the cluster's networks.

Ownership. Every resource created here carries the deployment's marker from the creating
request on: the description ends in ``[managed by octavia-operator owner=<uid>]`` (Neutron
accepts a description in every POST, so there is no window in which a resource we created looks
adopted). The Neutron tags ``octavia-operator`` and ``octavia-operator:owner=<uid>`` are sent in
the POST when the cloud supports tags at creation (extension ``tag-creation``; Zed only accepts
them for ports and then ignores them unless an ML2 extension driver is enabled); otherwise, or
when the created resource comes back without them, they are set right after (``PUT .../tags``)
and a later run adds them to any owned resource still missing them. Resources found by name or ID
without our marker are *adopted*: used, reported, never deleted, and never modified except where
a function says so. A resource carrying another deployment's marker is an error.

Errors: every SDK call goes through :func:`common.call`, so failures surface as ``StepError``
(user must act: ``NetworkNotFound``, ``SubnetMismatch``, ``Ambiguous``, ``QuotaExceeded``,
``Forbidden``...) or ``TransientError`` (retried). No secrets ever appear in messages or changes.
"""
from __future__ import annotations

import ipaddress
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from ...builders.cloud import HEALTH_MGR_DEVICE_OWNER, NetworkDesired, PortDesired, Rule, SecurityGroupDesired
from ...errors import StepError
from .common import (Ensured, call, check_not_foreign, marker, owned_by, owner_tag, owner_tags,
                     pick_one, with_marker)

# IPv6 management subnets: addresses by stateful DHCPv6 (Neutron's DHCP service hands out the
# port's fixed IP, as DHCP does for IPv4), and NO ipv6_ra_mode: there is no router on the
# management network, and router advertisements are what could install a default route on
# the nodes' o-hm0 (the same reason the subnet has no gateway). Amphorae learn the mode from
# the config drive's network data (``ipv6_dhcpv6-stateful``).
IPV6_ADDRESS_MODE = "dhcpv6-stateful"
IPV6_RA_MODE = None

#: vif types that mean "this port is not plugged anywhere"
UNBOUND_VIF_TYPES = ("binding_failed", "unbound", None)

#: device owners of ports Neutron itself adds to a network (they go away with the network)
NEUTRON_INFRA_OWNERS = ("network:dhcp", "network:distributed")

NETWORK_DESCRIPTION = "Octavia load-balancer management network"
SUBNET_DESCRIPTION = "Octavia load-balancer management subnet"
RULE_DESCRIPTION = "octavia-operator"

_PROTO_NAMES = {"1": "icmp", "6": "tcp", "17": "udp", "58": "ipv6-icmp", "icmpv6": "ipv6-icmp"}


# ---------------------------------------------------------------------------------------------
# pure helpers

def overlaps(cidr: str, others: Iterable[str]) -> list[str]:
    """The entries of ``others`` (CIDRs or single addresses) that overlap ``cidr``.

    Entries of the other IP version never overlap; entries that are not addresses/CIDRs are
    ignored (the caller reads them from a cluster it does not control). Order is kept.
    """
    net = ipaddress.ip_network(cidr, strict=False)
    out = []
    for other in others:
        try:
            o = ipaddress.ip_network(str(other).strip(), strict=False)
        except ValueError:
            continue
        if o.version == net.version and net.overlaps(o):
            out.append(other)
    return out


def _norm_proto(p: Any) -> str | None:
    if p is None:
        return None
    s = str(p).lower()
    return _PROTO_NAMES.get(s, s)


def _norm_prefix(p: str | None) -> str | None:
    if not p:
        return None
    n = ipaddress.ip_network(p, strict=False)
    return None if n.prefixlen == 0 else str(n)   # 0.0.0.0/0 and ::/0 mean "anywhere", like no prefix


def _rule_key(direction: str, ethertype: str, protocol: Any, pmin: Any, pmax: Any, prefix: str | None) -> tuple:
    return (direction, ethertype, _norm_proto(protocol),
            None if pmin is None else int(pmin), None if pmax is None else int(pmax), _norm_prefix(prefix))


def _desired_rule_key(r: Rule) -> tuple:
    return _rule_key("ingress", r.ethertype, r.protocol, r.port_min, r.port_max, r.remote_ip_prefix)


def _existing_rule_key(r: Mapping[str, Any]) -> tuple | None:
    """Key of an existing rule, or None when it refers to a remote group (never one of ours)."""
    if r.get("remote_group_id") or r.get("remote_address_group_id"):
        return None
    return _rule_key(r.get("direction"), r.get("ethertype"), r.get("protocol"), r.get("port_range_min"),
                     r.get("port_range_max"), r.get("remote_ip_prefix"))


def _describe_rule(r: Mapping[str, Any]) -> str:
    proto = r.get("protocol") or "any"
    ports = ""
    if r.get("port_range_min") is not None:
        lo, hi = r.get("port_range_min"), r.get("port_range_max")
        ports = f" {lo}" if lo == hi else f" {lo}-{hi}"
    remote = r.get("remote_ip_prefix") or (f"group {r['remote_group_id']}" if r.get("remote_group_id") else "any")
    return f"{r.get('direction')} {r.get('ethertype')} {proto}{ports} from {remote} ({r.get('id')})"


def _pools(pools: Iterable[Mapping[str, str]] | None) -> list[tuple[str, str]]:
    return sorted((str(ipaddress.ip_address(p["start"])), str(ipaddress.ip_address(p["end"]))) for p in pools or [])


def _label(res: Any) -> str:
    return f"{getattr(res, 'name', None) or '?'} ({getattr(res, 'id', '?')})"


# ---------------------------------------------------------------------------------------------
# SDK plumbing

def _list(what: str, fn: Callable[..., Iterable[Any]], **query: Any) -> list[Any]:
    """List resources, classifying errors raised while the generator is consumed too."""
    return call(what, lambda: list(fn(**query)))


_ext_cache: "weakref.WeakKeyDictionary[Any, frozenset[str]]" = weakref.WeakKeyDictionary()


_ext_lock = threading.Lock()


def _extensions(conn: Any) -> frozenset[str]:
    """Neutron's extension aliases, listed once per connection (the network and both security groups are
    made at the same time: one of them lists, the others wait for it)."""
    with _ext_lock:
        try:
            return _ext_cache[conn]
        except (KeyError, TypeError):
            pass
        aliases = frozenset(e.alias for e in _list("listing Neutron extensions", conn.network.extensions))
        try:
            _ext_cache[conn] = aliases
        except TypeError:
            pass
        return aliases


def _tags_at_creation(conn: Any, kind: str) -> bool:
    exts = _extensions(conn)
    if "tag-creation" in exts:
        return True
    # Zed and earlier accept `tags` in a port POST only (applied with the ML2 extension driver
    # tag_ports_during_bulk_creation); elsewhere they are rejected with 400.
    return kind == "port" and "standard-attr-tag" in exts


def _create_attrs(conn: Any, kind: str, uid: str, description: str, attrs: dict[str, Any]) -> dict[str, Any]:
    out = dict(attrs, description=with_marker(description, uid))
    if _tags_at_creation(conn, kind):
        out["tags"] = owner_tags(uid)
    return out


def _ensure_tags(conn: Any, res: Any, uid: str, what: str) -> bool:
    """Add our tags to an OWNED resource that lacks them; True when it wrote."""
    tags = list(getattr(res, "tags", None) or [])
    missing = [t for t in owner_tags(uid) if t not in tags]
    if not missing:
        return False
    new = tags + missing
    call(f"tagging {what} {_label(res)}", conn.network.set_tags, res, new)
    res.tags = new
    return True


# ---------------------------------------------------------------------------------------------
# network

def ensure_network(conn: Any, desired: NetworkDesired, uid: str, *, project_id: str) -> Ensured:
    """Make sure the management network exists; never modifies an adopted network.

    - ``desired.network_id`` set: that network is used (adopted unless it carries our marker);
      missing -> ``StepError("NetworkNotFound")``.
    - otherwise the network named ``desired.name`` in ``project_id`` is used (two -> ``Ambiguous``
      naming both), or created there with our marker.
    ``extra``: ``mtu`` (read back from Neutron), ``name``, ``project_id``, ``label``.
    """
    from openstack import exceptions as sdk

    changes: list[str] = []
    created = False
    if desired.network_id:
        try:
            net = conn.network.get_network(desired.network_id)
        except sdk.NotFoundException:
            raise StepError("NetworkNotFound", f"network {desired.network_id} (managementNetwork.networkId) "
                                               "does not exist") from None
        except Exception as exc:  # noqa: BLE001
            raise _classify(exc, f"reading network {desired.network_id}") from None
    else:
        found = _list(f"looking up network {desired.name!r}", conn.network.networks,
                      name=desired.name, project_id=project_id)
        net = pick_one(found, f"network named {desired.name!r} in project {project_id}")
        if net is None:
            attrs = _create_attrs(conn, "network", uid, NETWORK_DESCRIPTION, dict(
                name=desired.name, project_id=project_id, is_admin_state_up=True, is_shared=False))
            net = call(f"creating network {desired.name!r}", conn.network.create_network, **attrs)
            created = True
    check_not_foreign(net, uid, "network")
    adopted = not owned_by(net, uid)
    if not adopted and _ensure_tags(conn, net, uid, "network") and not created:
        changes.append(f"tagged network {_label(net)} with its owner")
    return Ensured(net.id, created=created, adopted=adopted, changes=changes,
                   extra={"mtu": net.mtu, "name": net.name, "project_id": net.project_id,
                          "label": f"network {_label(net)}"})


def _classify(exc: BaseException, what: str) -> StepError:
    from .session import classify
    return classify(exc, what)


# ---------------------------------------------------------------------------------------------
# subnet

def ensure_subnet(conn: Any, desired: NetworkDesired, uid: str, *, network_id: str, network_adopted: bool,
                  project_id: str, network_created: bool = False) -> Ensured:
    """Make sure the management subnet exists in ``network_id`` with the desired shape.

    Lookup: the subnet named ``desired.subnet_name`` in the network; for an adopted network
    without such a subnet, its single subnet of ``desired.ip_version`` (several -> ``Ambiguous``).
    Created with ``cidr``, ``allocation_pools=[pool]``, no gateway, DHCP on (and for IPv6
    ``ipv6_address_mode=dhcpv6-stateful``, no RA mode; see :data:`IPV6_ADDRESS_MODE`).
    A network created in this run (``network_created``) has no subnet yet: no lookup.
    A found subnet with another CIDR -> ``StepError("SubnetMismatch")``.
    Drift (allocation pool, gateway, DHCP): repaired on an owned subnet (listed in ``changes``);
    on an adopted subnet left alone and reported in ``extra["warnings"]``.
    ``extra``: ``label``, ``cidr``, ``gateway_ip``, ``allocation_pools``, ``prefix_length``, ``warnings``.
    """
    want_cidr = ipaddress.ip_network(desired.cidr, strict=False)
    sn = None
    if not network_created:
        found = _list(f"looking up subnet {desired.subnet_name!r}", conn.network.subnets,
                      network_id=network_id, name=desired.subnet_name)
        sn = pick_one(found, f"subnet named {desired.subnet_name!r} in network {network_id}")
    if sn is None and network_adopted:
        found = _list(f"looking up the IPv{desired.ip_version} subnets of network {network_id}",
                      conn.network.subnets, network_id=network_id, ip_version=desired.ip_version)
        sn = pick_one(found, f"IPv{desired.ip_version} subnet of network {network_id}")
    want_pools = [desired.allocation_pool] if desired.allocation_pool else None
    changes: list[str] = []
    warnings: list[str] = []
    created = False
    if sn is None:
        attrs: dict[str, Any] = dict(
            name=desired.subnet_name, network_id=network_id, project_id=project_id, cidr=str(want_cidr),
            ip_version=desired.ip_version, gateway_ip=None, is_dhcp_enabled=True)
        if want_pools:
            attrs["allocation_pools"] = [{"start": s, "end": e} for s, e in want_pools]
        if desired.ip_version == 6:
            attrs["ipv6_address_mode"] = IPV6_ADDRESS_MODE
            if IPV6_RA_MODE is not None:   # Neutron rejects an explicit null
                attrs["ipv6_ra_mode"] = IPV6_RA_MODE
        attrs = _create_attrs(conn, "subnet", uid, SUBNET_DESCRIPTION, attrs)
        sn = call(f"creating subnet {desired.subnet_name!r}", conn.network.create_subnet, **attrs)
        created = True
    check_not_foreign(sn, uid, "subnet")
    adopted = not owned_by(sn, uid)
    if ipaddress.ip_network(sn.cidr, strict=False) != want_cidr:
        raise StepError("SubnetMismatch",
                        f"subnet {_label(sn)} has CIDR {sn.cidr}, but managementNetwork.cidr is {desired.cidr}; "
                        "change the spec, or remove or rename that subnet")
    if not created:
        update: dict[str, Any] = {}
        diffs: list[str] = []
        if want_pools is not None and _pools(sn.allocation_pools) != _pools(
                [{"start": s, "end": e} for s, e in want_pools]):
            update["allocation_pools"] = [{"start": s, "end": e} for s, e in want_pools]
            diffs.append(f"allocation pool {_fmt_pools(sn.allocation_pools)} -> "
                         f"{_fmt_pools(update['allocation_pools'])}")
        if sn.gateway_ip:
            update["gateway_ip"] = None
            diffs.append(f"gateway {sn.gateway_ip} -> none")
        if not sn.is_dhcp_enabled:
            update["is_dhcp_enabled"] = True
            diffs.append("DHCP off -> on")
        if update and adopted:
            warnings += [f"adopted subnet {_label(sn)} differs from the spec and is left unchanged: {d}" for d in diffs]
        elif update:
            sn = call(f"updating subnet {_label(sn)}", conn.network.update_subnet, sn, **update)
            changes += [f"subnet {_label(sn)}: {d}" for d in diffs]
    if not adopted and _ensure_tags(conn, sn, uid, "subnet") and not created:
        changes.append(f"tagged subnet {_label(sn)} with its owner")
    return Ensured(sn.id, created=created, adopted=adopted, changes=changes, extra={
        "label": f"subnet {_label(sn)}", "cidr": sn.cidr, "gateway_ip": sn.gateway_ip, "allocation_pools": list(sn.allocation_pools or []),
        "prefix_length": ipaddress.ip_network(sn.cidr, strict=False).prefixlen, "warnings": warnings})


def _fmt_pools(pools: Iterable[Mapping[str, str]] | None) -> str:
    return ", ".join(f"{s}-{e}" for s, e in _pools(pools)) or "none"


# ---------------------------------------------------------------------------------------------
# security groups

def ensure_security_group(conn: Any, desired: SecurityGroupDesired, uid: str, *, project_id: str) -> Ensured:
    """Make sure the group named ``desired.name`` in ``project_id`` exists with the desired ingress rules.

    - Not found -> created with our marker (Neutron adds its default egress rules; they stay).
      Two groups with the name -> ``Ambiguous``.
    - Every desired rule (ingress; matched by direction, ethertype, protocol, port range and
      remote prefix) is created when missing, with our marker in its description.
    - Extra INGRESS rules: on an owned group removed; on an adopted group, those we created
      (our marker) are removed, the others are left and reported in ``extra["warnings"]``.
      Egress rules are never touched.
    ``extra``: ``name``, ``rules`` (count of desired rules), ``warnings``, ``label``.
    """
    found = _list(f"looking up security group {desired.name!r}", conn.network.security_groups,
                  name=desired.name, project_id=project_id)
    sg = pick_one(found, f"security group named {desired.name!r} in project {project_id}")
    created = False
    if sg is None:
        attrs = _create_attrs(conn, "security_group", uid, desired.description,
                              dict(name=desired.name, project_id=project_id))
        sg = call(f"creating security group {desired.name!r}", conn.network.create_security_group, **attrs)
        created = True
    check_not_foreign(sg, uid, "security group")
    adopted = not owned_by(sg, uid)
    changes: list[str] = []
    warnings: list[str] = []
    if not adopted and _ensure_tags(conn, sg, uid, "security group") and not created:
        changes.append(f"tagged security group {_label(sg)} with its owner")

    existing = list(sg.security_group_rules or [])
    have = {}
    for r in existing:
        k = _existing_rule_key(r)
        if k is not None:
            have.setdefault(k, r)
    wanted = {_desired_rule_key(r): r for r in desired.rules}
    missing = [r for k, r in wanted.items() if k not in have]
    if missing:
        data = [dict(security_group_id=sg.id, direction="ingress", ether_type=r.ethertype, protocol=r.protocol,
                     port_range_min=r.port_min, port_range_max=r.port_max, remote_ip_prefix=r.remote_ip_prefix,
                     description=with_marker(RULE_DESCRIPTION, uid), project_id=sg.project_id) for r in missing]
        what = f"creating rules in security group {_label(sg)}"
        if len(data) > 1:
            call(what, lambda: list(conn.network.create_security_group_rules(data)))
        else:
            call(what, conn.network.create_security_group_rule, **data[0])
        if not created:
            changes += [f"security group {_label(sg)}: created missing rule {_describe_rule(_rule_dict(r))}"
                        for r in missing]
    for r in existing:
        if r.get("direction") != "ingress":
            continue
        k = _existing_rule_key(r)
        if k is not None and k in wanted:
            continue
        mine = marker(uid) in (r.get("description") or "")
        if adopted and not mine:
            warnings.append(f"adopted security group {_label(sg)} has an ingress rule the spec does not ask for "
                            f"(left unchanged): {_describe_rule(r)}")
            continue
        call(f"removing a rule from security group {_label(sg)}", conn.network.delete_security_group_rule,
             r["id"], ignore_missing=True)
        changes.append(f"security group {_label(sg)}: removed extra rule {_describe_rule(r)}")
    return Ensured(sg.id, created=created, adopted=adopted, changes=changes,
                   extra={"name": sg.name, "rules": len(wanted), "warnings": warnings,
                          "label": f"security group {_label(sg)}"})


def _rule_dict(r: Rule) -> dict[str, Any]:
    return {"direction": "ingress", "ethertype": r.ethertype, "protocol": r.protocol,
            "port_range_min": r.port_min, "port_range_max": r.port_max, "remote_ip_prefix": r.remote_ip_prefix,
            "id": "new"}


# ---------------------------------------------------------------------------------------------
# all of the above

@dataclass
class ManagementNetwork:
    """Result of :func:`ensure_management_network`."""

    network: Ensured
    subnet: Ensured
    amphora_sg: Ensured
    health_manager_sg: Ensured

    @property
    def parts(self) -> tuple[Ensured, ...]:
        return (self.network, self.subnet, self.amphora_sg, self.health_manager_sg)

    @property
    def changes(self) -> list[str]:
        return [c for p in self.parts for c in p.changes]

    @property
    def warnings(self) -> list[str]:
        return [w for p in self.parts for w in p.extra.get("warnings", [])]

    @property
    def wrote(self) -> bool:
        return any(p.wrote for p in self.parts)

    @property
    def mtu(self) -> int | None:
        return self.network.extra.get("mtu")


def ensure_management_network(conn: Any, desired: NetworkDesired, uid: str, *, project_id: str) -> ManagementNetwork:
    """Network then subnet, and both security groups meanwhile (they do not depend on the network; see the
    functions for each). The first failure, in that order, is raised once all four have finished."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="security-group") as pool:
        groups = [pool.submit(ensure_security_group, conn, sg, uid, project_id=project_id)
                  for sg in (desired.amphora_sg, desired.health_manager_sg)]
        try:
            net = ensure_network(conn, desired, uid, project_id=project_id)
            sn = ensure_subnet(conn, desired, uid, network_id=net.id, network_adopted=net.adopted,
                               project_id=project_id, network_created=net.created)
        finally:
            concurrent.futures.wait(groups)
        amp, hm = (f.result() for f in groups)
    return ManagementNetwork(net, sn, amp, hm)


# ---------------------------------------------------------------------------------------------
# health-manager ports

@dataclass
class PortState:
    """One node's health-manager port as Neutron reports it (after any binding)."""

    node: str
    name: str
    port_id: str
    mac: str | None
    ip: str | None
    prefix_length: int | None
    host_id: str | None
    vif_type: str | None
    status: str | None
    bound: bool
    adopted: bool = False


@dataclass
class PortsResult:
    """Result of :func:`ensure_ports`.

    ``ports``: node -> state; ``created``: nodes whose port was created this run; ``deleted``:
    ports removed (``name (id)``) because their node is no longer desired; ``changes``: every
    write, human-readable; ``warnings``: drift left alone on adopted ports.
    """

    ports: dict[str, PortState] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def wrote(self) -> bool:
        return bool(self.created or self.deleted or self.changes)

    @property
    def unbound(self) -> list[str]:
        """Nodes whose port did not bind (for a condition naming them)."""
        return sorted(n for n, p in self.ports.items() if not p.bound)


def _pool_guard(fn: Callable[[], Any], subnet: Any) -> Callable[[], Any]:
    """Run fn; a full allocation pool (409 IpAddressGenerationFailure) is the user's to fix, not transient."""
    def run() -> Any:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001
            text = str(exc).lower()
            if getattr(exc, "status_code", None) == 409 and ("no more ip addresses" in text
                                                             or "ipaddressgenerationfailure" in text):
                raise StepError("AllocationPoolExhausted",
                                f"subnet {_label(subnet)} has no free address left in its allocation pool "
                                f"({_fmt_pools(subnet.allocation_pools)}) for the health-manager ports; "
                                "widen managementNetwork.allocationPool or the CIDR") from None
            raise
    return run


PARALLEL_DELETES = 8


def _each_in_parallel(fn: Callable[[Any], Any], items: list[Any]) -> None:
    """fn(item) for every item, up to PARALLEL_DELETES at a time. The first error is raised once every call
    has finished (what succeeded stays done: a rerun finds it gone)."""
    import concurrent.futures
    if len(items) <= 1:
        for item in items:
            fn(item)
        return
    with concurrent.futures.ThreadPoolExecutor(min(PARALLEL_DELETES, len(items))) as pool:
        futures = [pool.submit(fn, item) for item in items]
        concurrent.futures.wait(futures)
    for f in futures:
        f.result()


def _port_ip(port: Any, subnet_id: str) -> str | None:
    for f in port.fixed_ips or []:
        if f.get("subnet_id") == subnet_id:
            return f.get("ip_address")
    return None


def ensure_ports(conn: Any, desired: Mapping[str, PortDesired], uid: str, *, project_id: str, network_id: str,
                 subnet_id: str, security_group_id: str) -> PortsResult:
    """One health-manager port per desired node on the management network; nothing else touched.

    Each port: name ``PortDesired.name``, ``device_owner=Octavia:health-mgr``, ``device_id`` = its
    name, ``binding:host_id`` = ``host_id``, only the health-manager security group, a fixed IP
    on ``subnet_id``, admin state up, our marker. Existing ports are found by name among the
    health-manager ports of ``network_id``.
    - Missing ports are created, all in ONE bulk POST when more than one is missing.
    - Owned ports whose host, security groups or admin state drifted are updated; adopted ports
      are left alone and the drift reported in ``warnings``.
    - Owned health-manager ports on this network whose node is no longer desired are deleted
      (and, of several owned ports with one name, all but the oldest). Ports without our
      marker, with another device owner or on another network are never deleted.
    - Ports are re-read after any write so ``vif_type``/``bound`` reflect the binding.
    """
    what_list = f"listing health-manager ports of network {network_id}"
    existing = _list(what_list, conn.network.ports, network_id=network_id, device_owner=HEALTH_MGR_DEVICE_OWNER)
    subnet = call(f"reading subnet {subnet_id}", conn.network.get_subnet, subnet_id)
    prefix = ipaddress.ip_network(subnet.cidr, strict=False).prefixlen
    result = PortsResult()
    by_name: dict[str, list[Any]] = {}
    for p in existing:
        by_name.setdefault(p.name, []).append(p)
    wanted_names = {d.name for d in desired.values()}

    chosen: dict[str, Any] = {}
    to_create: list[PortDesired] = []
    for node, d in sorted(desired.items()):
        cands = by_name.get(d.name, [])
        for c in cands:
            check_not_foreign(c, uid, "health-manager port")
        if len(cands) > 1 and all(owned_by(c, uid) for c in cands):
            cands = sorted(cands, key=lambda c: (c.created_at or "", c.id))
            for extra_port in cands[1:]:
                call(f"deleting duplicate port {_label(extra_port)}", conn.network.delete_port, extra_port,
                     ignore_missing=True)
                result.deleted.append(_label(extra_port))
                result.changes.append(f"deleted duplicate health-manager port {_label(extra_port)}")
            cands = cands[:1]
        port = pick_one(cands, f"health-manager port named {d.name!r} on network {network_id}")
        if port is None:
            to_create.append(d)
            continue
        chosen[node] = port
        diffs: list[str] = []
        update: dict[str, Any] = {}
        if port.binding_host_id != d.host_id:
            update["binding_host_id"] = d.host_id
            diffs.append(f"host {port.binding_host_id or 'none'} -> {d.host_id}")
        if sorted(port.security_group_ids or []) != [security_group_id]:
            update["security_group_ids"] = [security_group_id]
            diffs.append(f"security groups {sorted(port.security_group_ids or [])} -> [{security_group_id}]")
        if port.is_admin_state_up is False:
            update["is_admin_state_up"] = True
            diffs.append("admin state down -> up")
        mine = owned_by(port, uid)
        if update and not mine:
            result.warnings += [f"adopted health-manager port {_label(port)} of node {node} differs and is left "
                                f"unchanged: {x}" for x in diffs]
        elif update:
            chosen[node] = call(f"updating port {_label(port)}", conn.network.update_port, port, **update)
            result.changes += [f"health-manager port {_label(port)} of node {node}: {x}" for x in diffs]
        if mine and _ensure_tags(conn, chosen[node], uid, "port"):
            result.changes.append(f"tagged health-manager port {_label(port)} with its owner")

    if to_create:
        data = [_create_attrs(conn, "port", uid, f"Octavia health manager on node {d.node}", dict(
            name=d.name, network_id=network_id, project_id=project_id, device_owner=HEALTH_MGR_DEVICE_OWNER,
            device_id=d.name, binding_host_id=d.host_id, security_group_ids=[security_group_id],
            fixed_ips=[{"subnet_id": subnet_id}], is_admin_state_up=True)) for d in to_create]
        names = ", ".join(d.name for d in to_create)
        if len(data) > 1:
            made = call(f"creating health-manager ports {names}",
                        _pool_guard(lambda: list(conn.network.create_ports(data)), subnet))
        else:
            made = [call(f"creating health-manager port {names}",
                         _pool_guard(lambda: conn.network.create_port(**data[0]), subnet))]
        node_of = {d.name: d.node for d in to_create}
        for p in made:
            _ensure_tags(conn, p, uid, "port")
            node = node_of[p.name]
            chosen[node] = p
            result.created.append(node)
            result.changes.append(f"created health-manager port {_label(p)} for node {node}")

    gone = [p for p in existing if p.name not in wanted_names and owned_by(p, uid)]
    # Neutron has no bulk delete: the ports of nodes that left go a few at a time
    _each_in_parallel(lambda p: call(f"deleting port {_label(p)}", conn.network.delete_port, p,
                                     ignore_missing=True), gone)
    for p in gone:
        result.deleted.append(_label(p))
        result.changes.append(f"deleted health-manager port {_label(p)} (its node is no longer selected)")

    if result.wrote:   # re-read: binding happens on create/update; report what Neutron says now
        fresh = {p.id: p for p in _list(what_list, conn.network.ports, network_id=network_id,
                                        device_owner=HEALTH_MGR_DEVICE_OWNER)}
        chosen = {n: fresh.get(p.id, p) for n, p in chosen.items()}
    for node, p in sorted(chosen.items()):
        vif = p.binding_vif_type
        result.ports[node] = PortState(
            node=node, name=p.name, port_id=p.id, mac=p.mac_address, ip=_port_ip(p, subnet_id),
            prefix_length=prefix, host_id=p.binding_host_id, vif_type=vif, status=p.status,
            bound=vif not in UNBOUND_VIF_TYPES, adopted=not owned_by(p, uid))
    return result


# ---------------------------------------------------------------------------------------------
# deletion

def network_in_use(conn: Any, network_id: str, uid: str) -> list[str]:
    """Ports on ``network_id`` that are not ours: amphorae (``compute:*``), Octavia VIPs, routers...

    Our own ports (with this deployment's marker) and the ports Neutron adds by itself (DHCP,
    distributed metadata) are not listed. An empty list means deleting our resources on this
    network cannot take anything away from a load balancer. A network that no longer exists
    is not in use.
    """
    from openstack import exceptions as sdk
    try:
        ports = list(conn.network.ports(network_id=network_id))
    except sdk.NotFoundException:
        return []
    except Exception as exc:  # noqa: BLE001
        raise _classify(exc, f"listing the ports of network {network_id}") from None
    out = []
    for p in ports:
        if owned_by(p, uid) or (p.device_owner or "") in NEUTRON_INFRA_OWNERS:
            continue
        out.append(f"port {_label(p)} device_owner={p.device_owner or 'none'} device_id={p.device_id or 'none'}")
    return sorted(out)


def delete_owned_network(conn: Any, uid: str, *, network_id: str | None = None, subnet_id: str | None = None,
                         security_group_ids: Iterable[str] = (), port_ids: Iterable[str] = ()) -> list[str]:
    """Delete, in dependency order, every Neutron resource of this module that carries ``uid``'s marker.

    Order: ports -> security groups -> subnets -> networks. Candidates are the given IDs (from
    status) plus everything tagged with this deployment's owner tag, plus the health-manager
    ports on ``network_id``; each is deleted only if it carries our marker. In adopted security
    groups among ``security_group_ids`` the rules we added (our marker) are removed and the
    group kept. Adopted and foreign resources are never deleted. Idempotent: already gone is
    fine. Returns what was deleted, human-readable. Call :func:`network_in_use` first: Neutron
    refuses (409, reported as a transient error) to delete a network or group still in use.
    """
    from openstack import exceptions as sdk

    n = conn.network
    tag = owner_tag(uid)
    deleted: list[str] = []

    def fetch(getter: Callable[[str], Any], rid: str, what: str) -> Any:
        try:
            return getter(rid)
        except sdk.NotFoundException:
            return None
        except Exception as exc:  # noqa: BLE001
            raise _classify(exc, f"reading {what} {rid}") from None

    def candidates(kind: str, lister: Callable[..., Iterable[Any]], getter: Callable[[str], Any],
                   ids: Iterable[str], **extra_query: Any) -> list[Any]:
        found = {r.id: r for r in _list(f"listing tagged {kind}s", lister, tags=tag)}
        if extra_query:
            found.update({r.id: r for r in _list(f"listing {kind}s", lister, **extra_query)})
        for rid in ids:
            if rid and rid not in found:
                r = fetch(getter, rid, kind)
                if r is not None:
                    found[r.id] = r
        return list(found.values())

    def delete(kind: str, deleter: Callable[..., Any], r: Any) -> None:
        call(f"deleting {kind} {_label(r)}", deleter, r, ignore_missing=True)
        deleted.append(f"{kind} {_label(r)}")

    port_query = {"network_id": network_id, "device_owner": HEALTH_MGR_DEVICE_OWNER} if network_id else {}
    _each_in_parallel(lambda p: delete("port", n.delete_port, p),
                      [p for p in candidates("port", n.ports, n.get_port, port_ids, **port_query) if owned_by(p, uid)])
    sg_ids = [s for s in security_group_ids if s]
    for sg in candidates("security group", n.security_groups, n.get_security_group, sg_ids):
        if owned_by(sg, uid):
            delete("security group", n.delete_security_group, sg)
            continue
        for r in sg.security_group_rules or []:   # adopted group: only the rules we added
            if marker(uid) in (r.get("description") or ""):
                call(f"removing our rule from security group {_label(sg)}", n.delete_security_group_rule,
                     r["id"], ignore_missing=True)
                deleted.append(f"rule {_describe_rule(r)} of adopted security group {_label(sg)}")
    for sn in candidates("subnet", n.subnets, n.get_subnet, [subnet_id] if subnet_id else []):
        if owned_by(sn, uid):
            delete("subnet", n.delete_subnet, sn)
    for net in candidates("network", n.networks, n.get_network, [network_id] if network_id else []):
        if owned_by(net, uid):
            delete("network", n.delete_network, net)
    return deleted
