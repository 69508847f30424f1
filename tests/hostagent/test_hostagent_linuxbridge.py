"""The host agent with the linuxbridge driver, for real, inside network namespaces.

Node namespace: its own default route, the network's Linux bridge (brq + network id[:11])
with a veth into a peer namespace.  The node also has a pre-existing iptables-legacy rule,
so the agent must detect and use the legacy backend (as kube-proxy would).
"""
from __future__ import annotations

import shutil

import pytest

from hostagent_nsutil import (CHAIN, HB, IP, MAC, MTU, NODE, PEER_IP, AgentProc, NetNS, firewall_lines,
                              make_assignment, require_netns, short_tmpdir, udp_probe, wait_plumbed, wait_until)

pytestmark = [pytest.mark.netns, pytest.mark.timeout(300)]
BOUND = 15.0
OTHER = 5556
BRIDGE = "brq0123456789a"
BACKEND = "legacy"
FOREIGN_RULE = "-A INPUT -i eth0 -p tcp -m tcp --dport 22 -j ACCEPT"


class Env:
    pass


@pytest.fixture(scope="module")
def env():
    require_netns()
    e = Env()
    e.base = short_tmpdir()
    e.node = NetNS("oha-lnode")
    e.peer = NetNS("oha-lpeer")
    e.agent = None
    try:
        n, p = e.node.create(), e.peer.create()
        n.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0-up")
        n.ip("addr", "add", "10.99.0.2/24", "dev", "eth0")
        n.ip("link", "set", "eth0-up", "up")
        n.ip("link", "set", "eth0", "up")
        n.ip("route", "add", "default", "via", "10.99.0.1", "dev", "eth0", "metric", "100")
        # the node's firewall lives in iptables-legacy: the agent must follow it
        n.x("iptables-legacy", "-w", *FOREIGN_RULE.replace("-m tcp ", "").split())
        n.ip("link", "add", BRIDGE, "type", "bridge")
        n.ip("link", "set", BRIDGE, "up")
        n.ip("link", "add", "tap-peer", "type", "veth", "peer", "name", "eth0", "netns", p.name)
        n.ip("link", "set", "tap-peer", "master", BRIDGE)
        n.ip("link", "set", "tap-peer", "up")
        p.ip("addr", "add", f"{PEER_IP}/24", "dev", "eth0")
        p.ip("link", "set", "eth0", "mtu", str(MTU))
        p.ip("link", "set", "eth0", "up")
        e.default_routes = n.default_routes()
        e.agent = AgentProc(n, e.base, NODE, interval=2)
        e.agent.write_assignments(make_assignment(NODE, driver="linuxbridge", linux_bridge=BRIDGE))
        e.agent.start()
        yield e
    finally:
        if e.agent is not None:
            e.agent.stop()
        e.node.delete()
        e.peer.delete()
        shutil.rmtree(e.base, ignore_errors=True)


def check_veth(e) -> bool:
    o, h = e.node.link("o-hm0"), e.node.link("o-bhm0")
    assert o is not None and h is not None, "veth ends missing"
    assert o["linkinfo"]["info_kind"] == "veth" and h["linkinfo"]["info_kind"] == "veth"
    assert o.get("link") == "o-bhm0" and h.get("link") == "o-hm0", (o.get("link"), h.get("link"))
    assert h.get("master") == BRIDGE, f"host end master {h.get('master')}"
    assert "UP" in h["flags"] and h["mtu"] == MTU, h
    return True


def plumbed(e, timeout=BOUND, **kw):
    def ok():
        return check_veth(e)
    t = wait_plumbed(e.agent, e.node, e.default_routes, BACKEND, timeout=timeout, jump_ifaces=("o-hm0", BRIDGE), **kw)
    wait_until(ok, 5, what="veth pair in the bridge")
    return t


def test_creates_veth_into_bridge_with_mac_mtu_address_route(env):
    plumbed(env, timeout=60)
    assert env.node.link("o-hm0")["address"] == MAC
    assert env.node.addrs("o-hm0") == [f"{IP}/24"]
    st = env.agent.status()
    assert st["ready"] and st["firewallBackend"] == "legacy"
    # nothing was written to the nft backend; the node's legacy rule is still first-class
    for fam in (4, 6):
        assert CHAIN not in env.node.save(fam, "nft")
    assert FOREIGN_RULE in env.node.save(4, "legacy")


def test_peer_reaches_heartbeat_port_other_udp_dropped(env):
    plumbed(env)
    assert udp_probe(env.node, env.peer, IP, [HB, OTHER]) == {HB}


def test_fault_link_deleted(env):
    plumbed(env)
    env.node.ip("link", "del", "o-hm0")  # takes the host end with it
    assert env.node.link("o-bhm0") is None
    plumbed(env)


def test_fault_host_end_leaves_bridge_and_mtu_changes(env):
    plumbed(env)
    env.node.ip("link", "set", "o-bhm0", "nomaster")
    plumbed(env)
    env.node.ip("link", "set", "o-hm0", "mtu", "1300")
    env.node.ip("link", "set", "o-bhm0", "mtu", "1400")
    plumbed(env)


def test_fault_address_removed(env):
    plumbed(env)
    env.node.ip("addr", "flush", "dev", "o-hm0")
    plumbed(env)


def test_fault_firewall_flushed(env):
    plumbed(env)
    env.node.x("iptables-legacy", "-w", "-F", "INPUT")
    env.node.x("ip6tables-legacy", "-w", "-F", CHAIN)
    plumbed(env)
    assert udp_probe(env.node, env.peer, IP, [HB, OTHER]) == {HB}


def test_bridge_missing_reported(env):
    plumbed(env)
    env.agent.write_assignments(make_assignment(NODE, driver="linuxbridge", linux_bridge="brqmissing0000"))
    st = wait_until(lambda: (s := env.agent.status()) and any("brqmissing0000 missing" in p for p in s.get("problems", []))
                    and s, BOUND, what="bridge missing reported")
    assert st["ready"] is False
    env.agent.write_assignments(make_assignment(NODE, driver="linuxbridge", linux_bridge=BRIDGE))
    plumbed(env)


def test_cleanup_leaves_nothing_behind(env):
    plumbed(env)
    rule = FOREIGN_RULE.replace("-m tcp ", "").split()[2:]
    if FOREIGN_RULE not in env.node.save(4, "legacy"):
        env.node.x("iptables-legacy", "-w", "-A", "INPUT", *rule)  # (the flush test removed it)
    env.agent.stop()
    p = env.agent.cli("cleanup")
    assert p.returncode == 0, p.stdout + p.stderr
    assert env.node.link("o-hm0") is None and env.node.link("o-bhm0") is None
    for fam in (4, 6):
        for backend in ("legacy", "nft"):
            assert firewall_lines(env.node, fam, backend) == ([], [])
    assert FOREIGN_RULE in env.node.save(4, "legacy")
    assert env.node.link(BRIDGE) is not None and env.node.link("tap-peer") is not None
    assert not (env.agent.state_dir / "state.json").exists()
    assert env.node.default_routes() == env.default_routes
