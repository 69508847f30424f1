"""Pure planning: (assignment, observed state, ownership) -> actions and checks.

Nothing here touches the system, so all of it is unit-testable without root.
"""
from __future__ import annotations

from .assignment import NodeAssignment
from .model import (FW_CHAIN, LINK_ALIAS, OVS_OWNER_KEY, Action, Observed,
                    Owned, act)

FAMILIES = (4, 6)


# ----------------------------------------------------------------- desired state
def desired_iface_columns(a: NodeAssignment) -> dict:
    """OVSDB Interface columns the ovs driver wants on the agent's port."""
    return {
        "type": "internal",
        "external_ids": {
            "iface-id": a.port_id,
            "attached-mac": a.mac,
            "iface-status": "active",
            "skip_cleanup": "true",
        },
        "mac": a.mac,
        "mtu_request": a.mtu,
    }


def desired_port_external_ids(a: NodeAssignment) -> dict:
    return {OVS_OWNER_KEY: "true", "octavia-hostagent-deployment": a.deployment or "unknown"}


def jump_rule(interface: str) -> str:
    return f"-A INPUT -i {interface} -j {FW_CHAIN}"


def jump_rules(a: NodeAssignment) -> list[str]:
    """INPUT rules that send traffic into the agent's chain.

    With the linuxbridge driver the node also answers ARP for o-hm0's address on the
    bridge device itself (arp_ignore=0 is the default and the bridge is up), so datagrams
    can arrive with the bridge as input interface; they must meet the same chain."""
    rules = [jump_rule(a.interface)]
    if a.driver == "linuxbridge":
        rules.append(jump_rule(a.linux_bridge))
    return rules


def desired_chain(a: NodeAssignment, family: int) -> list[str]:
    """Rules of the agent's chain, in the exact form iptables-save prints them.

    The chain is only entered for packets arriving on the agent's interface
    (see jump_rule).  Accepted: replies to connections the node initiated (the
    worker's TCP 9443 to amphorae, ...), ICMP (ping, PMTU, IPv6 neighbour
    discovery), UDP heartbeats and the extra UDP ports (log offloading).
    Everything else arriving on the interface is dropped.
    """
    c = FW_CHAIN
    rules = [f"-A {c} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"]
    rules.append(f"-A {c} -p icmp -j ACCEPT" if family == 4 else f"-A {c} -p ipv6-icmp -j ACCEPT")
    for p in a.udp_ports:
        rules.append(f"-A {c} -p udp -m udp --dport {p} -j ACCEPT")
    rules.append(f"-A {c} -j DROP")
    return rules


def desired_sysctls(a: NodeAssignment) -> dict:
    """path under /proc/sys/net -> (value, reason)."""
    d = {f"ipv6/conf/{a.interface}/accept_ra": ("0", "router advertisements must not add routes or addresses")}
    if a.ip_version == 6:
        # nodes hardened with net.ipv6.conf.default.disable_ipv6=1 create o-hm0 without IPv6: adding
        # its address then fails ("IPv6 is disabled on this device")
        d[f"ipv6/conf/{a.interface}/disable_ipv6"] = ("0", "the management network is IPv6")
    if a.driver == "linuxbridge":
        # The bridge has no address; without this it answers ARP for o-hm0's address with
        # its own MAC (which changes when ports come and go), so peers would send to the
        # bridge device instead of o-hm0.
        d[f"ipv4/conf/{a.linux_bridge}/arp_ignore"] = ("1", "the bridge must not answer ARP for o-hm0's address")
    return d


def desired_links(a: NodeAssignment) -> set:
    return {a.interface} if a.driver == "ovs" else {a.interface, a.host_end}


def _addr(a: NodeAssignment) -> tuple[str, int]:
    return (str(a.ip), a.prefix_length)


def _is_default(dst: str) -> bool:
    return dst in ("0.0.0.0/0", "::/0", "default")


def _link_owned(name: str, obs: Observed, owned: Owned) -> bool:
    link = obs.links.get(name)
    return name in owned.links or (link is not None and link.alias == LINK_ALIAS)


# ---------------------------------------------------------------------- planning
def plan(a: NodeAssignment, obs: Observed, owned: Owned) -> list[Action]:
    """Actions that move the observed state towards the assignment, in order."""
    actions: list[Action] = []
    iface = a.interface
    link = obs.links.get(iface)

    # Objects the agent owns that the assignment no longer wants (driver or name change).
    actions += _plan_stale(a, obs, owned)

    if a.driver == "ovs":
        ovs = obs.ovs
        if ovs is None or not ovs.reachable or a.integration_bridge not in ovs.bridges:
            # Nothing can be done on the OVS side; the checks report why.
            pass
        else:
            port = ovs.ports.get(iface)
            want = desired_iface_columns(a)
            if link is not None and (port is None or port.iface_type != "internal") and link.kind not in (None, "openvswitch", "tun"):
                # A link of the same name that is not an OVS internal port (e.g. an old veth)
                if _link_owned(iface, obs, owned):
                    actions.append(act("link_delete", iface, "link is not an OVS internal port"))
                    link = None
            if port is None:
                actions.append(act("ovs_add_port", iface, "port missing from the integration bridge",
                                   bridge=a.integration_bridge, iface_columns=want,
                                   port_external_ids=desired_port_external_ids(a)))
            elif port.bridge != a.integration_bridge:
                actions.append(act("ovs_del_port", iface, f"port is on bridge {port.bridge}, not {a.integration_bridge}",
                                   port_uuid=port.uuid, bridge=port.bridge or ""))
                actions.append(act("ovs_add_port", iface, "re-adding on the integration bridge",
                                   bridge=a.integration_bridge, iface_columns=want,
                                   port_external_ids=desired_port_external_ids(a)))
            else:
                diff = ovs_iface_diff(want, port)
                if diff:
                    actions.append(act("ovs_set_interface", iface, "interface columns differ: " + ",".join(sorted(diff)),
                                       columns={k: want[k] for k in diff}, current_external_ids=port.iface_external_ids))
                if link is None:
                    # Port is in the db but its device is gone (deleted by hand, datapath lost it):
                    # recreate the port so that ovs-vswitchd creates the device again.
                    actions.append(act("ovs_recreate_port", iface, "port is in OVSDB but the device is missing",
                                       bridge=a.integration_bridge, port_uuid=port.uuid, iface_columns=want,
                                       port_external_ids=port.external_ids))
    else:  # linuxbridge
        peer = obs.links.get(a.host_end)
        pair_ok = (link is not None and peer is not None and link.kind == "veth"
                   and link.peer_index == peer.index and peer.peer_index == link.index)
        if not pair_ok:
            present = [(n, l) for n, l in ((iface, link), (a.host_end, peer)) if l is not None]
            if all(_link_owned(n, obs, owned) for n, _ in present):
                for n, l in present:
                    if not (n == a.host_end and link is not None and link.peer_index == l.index
                            and any(x.target == iface for x in actions)):
                        actions.append(act("link_delete", n, "not a veth pair " + f"{iface}<->{a.host_end}"))
                actions.append(act("link_create_veth", iface, "veth pair missing", peer=a.host_end))
            link = None  # link-level settings follow on the next round
        else:
            bridge = obs.links.get(a.linux_bridge)
            changes = {}
            if peer.mtu != a.mtu:
                changes["mtu"] = a.mtu
            if bridge is not None and peer.master != a.linux_bridge:
                changes["master"] = a.linux_bridge
            if not peer.up:
                changes["up"] = True
            if changes:
                actions.append(act("link_set", a.host_end, "host end differs: " + ",".join(sorted(changes)), **changes))

    # Link-level settings on the interface itself (once it exists).
    if link is not None and not any(x.kind in ("ovs_add_port", "ovs_recreate_port", "link_create_veth") for x in actions):
        changes = {}
        if link.mac.lower() != a.mac:
            changes["mac"] = a.mac
        if link.mtu != a.mtu:
            changes["mtu"] = a.mtu
        if not link.up:
            changes["up"] = True
        if changes:
            actions.append(act("link_set", iface, "interface differs: " + ",".join(sorted(changes)), **changes))
        have = set(obs.addrs.get(iface, []))
        want_addr = _addr(a)
        for ip, plen in sorted(have - {want_addr}):
            actions.append(act("addr_del", iface, "address not in the assignment", address=ip, prefixlen=plen))
        if want_addr not in have:
            actions.append(act("addr_add", iface, "assigned address missing", address=want_addr[0], prefixlen=want_addr[1]))
        routes = obs.routes.get(iface, [])
        for r in routes:
            if _is_default(r.dst):
                actions.append(act("route_del", iface, "never a default route via the management interface",
                                   dst=r.dst, gateway=r.gateway, family=r.family))
        connected = str(a.interface_network)
        if want_addr in have and link.up and not any(r.dst == connected and not r.gateway for r in routes):
            actions.append(act("route_add_connected", iface, "connected route of the management subnet missing",
                               dst=connected, src=want_addr[0], family=a.ip_version))

    # Sysctls (only those whose file exists, i.e. whose device exists).
    for path, (value, why) in desired_sysctls(a).items():
        cur = obs.sysctls.get(path)
        if cur is not None and cur != value:
            actions.append(act("sysctl_set", path, why, value=value, previous=cur))

    # Firewall.
    fw = obs.fw
    if fw is not None and fw.available:
        want_jumps = jump_rules(a)
        for fam in FAMILIES:
            if fw.chains.get(fam) != desired_chain(a, fam) or sorted(fw.jumps.get(fam, [])) != sorted(want_jumps):
                actions.append(act("fw_sync", iface, f"IPv{fam} rules differ", family=fam,
                                   backend=fw.backend, rules=tuple(desired_chain(a, fam)),
                                   jumps=tuple(want_jumps), current_jumps=tuple(fw.jumps.get(fam, []))))
    return actions


def ovs_iface_diff(want: dict, port) -> set:
    diff = set()
    if port.iface_type != want["type"]:
        diff.add("type")
    for k, v in want["external_ids"].items():
        if port.iface_external_ids.get(k) != v:
            diff.add("external_ids")
    if (port.mac or "").lower() != want["mac"]:
        diff.add("mac")
    if port.mtu_request != want["mtu_request"]:
        diff.add("mtu_request")
    return diff


def _plan_stale(a: NodeAssignment | None, obs: Observed, owned: Owned) -> list[Action]:
    """Owned objects that the assignment (None: no assignment) does not want."""
    actions = []
    want_links = desired_links(a) if a else set()
    want_ovs = {a.interface} if a and a.driver == "ovs" else set()
    ovs = obs.ovs
    if ovs is not None and ovs.reachable:
        for name, p in sorted(ovs.ports.items()):
            if (name in owned.ovs_ports or p.owned_marker) and name not in want_ovs:
                actions.append(act("ovs_del_port", name, "port created by the agent is no longer wanted",
                                   port_uuid=p.uuid, bridge=p.bridge or ""))
    for name in sorted(set(obs.links) - want_links):
        link = obs.links[name]
        if name in owned.links or link.alias == LINK_ALIAS:
            actions.append(act("link_delete", name, "link created by the agent is no longer wanted"))
    return actions


def plan_cleanup(obs: Observed, owned: Owned) -> list[Action]:
    """Remove exactly what the agent created: owned links, owned OVS ports, its firewall chain,
    and the addresses it added to links it did not create."""
    actions = []
    ovs = obs.ovs
    if ovs is not None and ovs.reachable:
        for name, p in sorted(ovs.ports.items()):
            if name in owned.ovs_ports or p.owned_marker:
                actions.append(act("ovs_del_port", name, "cleanup", port_uuid=p.uuid, bridge=p.bridge or ""))
    deleted = set()
    for name in sorted(obs.links):
        link = obs.links[name]
        if name in owned.links or link.alias == LINK_ALIAS:
            if link.peer_index is not None and any(l.index == link.peer_index for l in obs.links.values()
                                                   if l.name in deleted):
                deleted.add(name)
                continue  # the peer's deletion removes this veth end too
            actions.append(act("link_delete", name, "cleanup"))
            deleted.add(name)
    for link_name, addr in sorted(owned.addresses):
        if link_name in obs.links and link_name not in deleted and link_name not in owned.ovs_ports:
            ip, plen = addr.split("/")
            if (ip, int(plen)) in set(obs.addrs.get(link_name, [])):
                actions.append(act("addr_del", link_name, "cleanup", address=ip, prefixlen=int(plen)))
    # The chain name is the agent's own, so removing it is safe; when the state file was lost,
    # look in both backends.
    backends = owned.firewall_backends or {"nft", "legacy"}
    actions.append(act("fw_remove", "*", "cleanup", backends=tuple(sorted(backends))))
    for path, value in sorted(owned.sysctls.items()):
        actions.append(act("sysctl_restore", path, "cleanup", value=value))
    return actions


# ------------------------------------------------------------------------ checks
def evaluate(a: NodeAssignment, obs: Observed, sysctl_unwritable=()) -> tuple[dict, list[str]]:
    """Per-check results and human-readable problems.  Ready iff all checks are ok.

    ``sysctl_unwritable``: sysctl paths the agent cannot write (read-only /proc/sys); their drift is
    a warning of the status, not a failed check."""
    checks: dict[str, dict] = {}
    problems: list[str] = []

    def check(name: str, ok: bool, detail: str = "") -> None:
        checks[name] = {"ok": bool(ok), "detail": detail}
        if not ok:
            problems.append(f"{name}: {detail}" if detail else name)

    iface = a.interface
    check("port_bound", a.bound, "" if a.bound else f"Neutron port {a.port_id} is not bound to this node (bound: false)")
    if a.driver == "ovs":
        ovs = obs.ovs
        if ovs is None or not ovs.reachable:
            check("ovsdb", False, f"OVSDB unreachable: {ovs.error if ovs else 'not checked'}")
        else:
            check("ovsdb", True)
            has_br = a.integration_bridge in ovs.bridges
            check("bridge", has_br, "" if has_br else f"integration bridge {a.integration_bridge} missing")
            port = ovs.ports.get(iface)
            if port is None:
                check("ovs_port", False, f"no port {iface} in OVSDB")
            elif port.bridge != a.integration_bridge:
                check("ovs_port", False, f"port {iface} is on bridge {port.bridge}")
            else:
                diff = ovs_iface_diff(desired_iface_columns(a), port)
                check("ovs_port", not diff and not port.error,
                      (f"interface columns differ: {','.join(sorted(diff))}" if diff else "") +
                      (f" ovs-vswitchd error: {port.error}" if port.error else ""))
    else:
        br = obs.links.get(a.linux_bridge)
        check("bridge", br is not None and br.kind == "bridge",
              "" if br is not None and br.kind == "bridge" else f"Linux bridge {a.linux_bridge} missing")
        peer = obs.links.get(a.host_end)
        link = obs.links.get(iface)
        ok = (peer is not None and link is not None and peer.peer_index == link.index and link.kind == "veth"
              and peer.master == a.linux_bridge and peer.up and peer.mtu == a.mtu)
        detail = ""
        if peer is None:
            detail = f"host end {a.host_end} missing"
        elif not ok:
            detail = (f"host end {a.host_end}: master={peer.master} up={peer.up} mtu={peer.mtu} "
                      f"(want master={a.linux_bridge} up mtu={a.mtu}, veth peer of {iface})")
        check("host_end", ok, detail)

    link = obs.links.get(iface)
    check("link", link is not None and link.up,
          "" if link is not None and link.up else (f"{iface} missing" if link is None else f"{iface} is down"))
    if link is not None:
        check("mac", link.mac.lower() == a.mac, "" if link.mac.lower() == a.mac else f"MAC mismatch: {link.mac} != {a.mac}")
        check("mtu", link.mtu == a.mtu, "" if link.mtu == a.mtu else f"MTU {link.mtu} != {a.mtu}")
    else:
        check("mac", False, f"{iface} missing")
        check("mtu", False, f"{iface} missing")
    have = set(obs.addrs.get(iface, []))
    want = _addr(a)
    extra = sorted(have - {want})
    check("address", want in have and not extra,
          "" if want in have and not extra else
          f"have {[f'{i}/{p}' for i, p in sorted(have)]}, want {want[0]}/{want[1]}")
    routes = obs.routes.get(iface, [])
    connected = str(a.interface_network)
    defaults = [r for r in routes if _is_default(r.dst)]
    has_conn = any(r.dst == connected and not r.gateway for r in routes)
    check("routes", has_conn and not defaults,
          ("" if has_conn else f"connected route {connected} missing; ") +
          (f"default route(s) via {iface}: {[r.gateway for r in defaults]}" if defaults else ""))
    bad = [f"net.{path.replace('/', '.')}={obs.sysctls[path]}, want {value}"
           for path, (value, _why) in sorted(desired_sysctls(a).items())
           if obs.sysctls.get(path) not in (None, value) and path not in sysctl_unwritable]
    check("sysctls", not bad, "; ".join(bad))
    fw = obs.fw
    if fw is None or not fw.available:
        check("firewall", False, f"firewall unavailable: {fw.error if fw else 'not checked'}")
    else:
        bad = []
        for fam in FAMILIES:
            if fw.chains.get(fam) != desired_chain(a, fam):
                bad.append(f"IPv{fam} chain {FW_CHAIN} differs")
            jumps = fw.jumps.get(fam, [])
            if sorted(jumps) != sorted(jump_rules(a)):
                bad.append(f"IPv{fam} INPUT jumps {jumps}, want {jump_rules(a)}")
        check("firewall", not bad, "; ".join(bad) + (f" (backend {fw.backend})" if bad else ""))
    return checks, problems


def foreign_routes(a: NodeAssignment, obs: Observed) -> list[str]:
    """Routes via the interface that are neither connected nor default (left alone, reported)."""
    connected = str(a.interface_network)
    out = []
    for r in obs.routes.get(a.interface, []):
        if r.dst != connected and not _is_default(r.dst) and not r.dst.startswith("fe80:"):
            out.append(f"{r.dst}" + (f" via {r.gateway}" if r.gateway else ""))
    return out
