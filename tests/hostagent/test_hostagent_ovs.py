"""The host agent with the ovs driver, for real, inside network namespaces.

Node namespace: its own default route (via a dummy eth0), ovsdb-server + ovs-vswitchd
(userspace datapath) with br-int, and a veth into a peer namespace (an "amphora")
plugged into br-int.  The agent runs as a subprocess in the node namespace.
The tests of this module share one environment and run in file order: each fault
test starts from (and asserts) a healthy state.
"""
from __future__ import annotations

import shutil
import signal

import pytest

from hostagent_nsutil import (CHAIN, HB, IP, MAC, MTU, NODE, PEER_IP, AgentProc, NetNS, Ovs,
                              disable_tx_offload, firewall_lines, make_assignment, require_netns, short_tmpdir,
                              udp_probe, wait_plumbed, wait_until)

pytestmark = [pytest.mark.netns, pytest.mark.timeout(300)]
BOUND = 15.0  # seconds within which the running agent must repair a fault
OTHER = 5556  # a UDP port that must stay closed on o-hm0
BACKEND = "nft"  # fresh namespace, no rules anywhere: detection picks nft


class Env:
    pass


def setup_node(node: NetNS) -> None:
    # the node's uplink (no dummy driver on these kernels: a veth whose other end stays in the namespace)
    node.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0-up")
    node.ip("addr", "add", "10.99.0.2/24", "dev", "eth0")
    node.ip("link", "set", "eth0-up", "up")
    node.ip("link", "set", "eth0", "up")
    node.ip("route", "add", "default", "via", "10.99.0.1", "dev", "eth0", "metric", "100")


def isolate_from_stack(node: NetNS, dev: str) -> None:
    """The userspace datapath reads the veth with AF_PACKET, but the node's kernel stack still
    receives on it too and (weak host model) would accept datagrams for o-hm0's address there,
    bypassing o-hm0 and its firewall.  A kernel-datapath port would not be processed by the
    stack; emulate that: strict reverse-path filtering, no ARP replies, no IPv6."""
    for key, val in (("ipv4/conf/{}/rp_filter", "1"), ("ipv4/conf/{}/arp_ignore", "8"),
                     ("ipv6/conf/{}/disable_ipv6", "1")):
        node.x("sh", "-c", f"echo {val} > /proc/sys/net/" + key.format(dev))


def plug_peer(node: NetNS, peer: NetNS, ovs: Ovs) -> None:
    node.ip("link", "add", "tap-peer", "type", "veth", "peer", "name", "eth0", "netns", peer.name)
    isolate_from_stack(node, "tap-peer")
    peer.ip("addr", "add", f"{PEER_IP}/24", "dev", "eth0")
    peer.ip("link", "set", "eth0", "mtu", str(MTU))
    peer.ip("link", "set", "eth0", "up")
    node.ip("link", "set", "tap-peer", "up")
    disable_tx_offload(peer, "eth0")
    disable_tx_offload(node, "tap-peer")
    ovs.vsctl("--may-exist", "add-port", "br-int", "tap-peer")


@pytest.fixture(scope="module")
def env():
    require_netns(ovs=True)
    e = Env()
    e.base = short_tmpdir()
    e.node = NetNS("oha-onode")
    e.peer = NetNS("oha-opeer")
    e.ovs = None
    e.agent = None
    try:
        e.node.create()
        e.peer.create()
        setup_node(e.node)
        e.ovs = Ovs(e.node, e.base / "ovs")
        e.ovs.start()
        e.ovs.add_int_bridge()
        plug_peer(e.node, e.peer, e.ovs)
        e.default_routes = e.node.default_routes()
        assert len(e.default_routes) == 1
        e.agent = AgentProc(e.node, e.base, NODE, ovsdb=e.ovs.url, interval=2)
        e.agent.write_assignments(make_assignment(NODE))
        e.agent.start()
        yield e
    finally:
        if e.agent is not None:
            e.agent.stop()
        if e.ovs is not None:
            e.ovs.stop()
        e.node.delete()
        e.peer.delete()
        shutil.rmtree(e.base, ignore_errors=True)


def plumbed(e, timeout=BOUND, **kw):
    return wait_plumbed(e.agent, e.node, e.default_routes, BACKEND, timeout=timeout, ovs=e.ovs, **kw)


def test_creates_o_hm0_with_external_ids_mac_mtu_address_route(env):
    plumbed(env, timeout=60)  # first start: generous
    row = env.ovs.iface("o-hm0")
    assert row["external_ids"]["iface-id"] == "3f1c2a4e-1111-4222-8333-944455556666"
    assert row["external_ids"]["skip_cleanup"] == "true"
    assert "o-hm0" in env.ovs.ports("br-int")
    link = env.node.link("o-hm0")
    assert link["address"] == MAC and link["mtu"] == MTU
    assert env.node.addrs("o-hm0") == [f"{IP}/24"]
    # never a default route via o-hm0, and the node's own default route untouched
    assert env.node.default_routes() == env.default_routes
    st = env.agent.status()
    assert st["ready"] is True and st["problems"] == []
    assert all(c["ok"] for c in st["checks"].values())
    # the readiness probe command agrees
    p = env.agent.cli("status", "--ready")
    assert p.returncode == 0 and p.stdout.strip() == "ready", p.stdout + p.stderr


def test_peer_reaches_heartbeat_port_other_udp_dropped(env):
    plumbed(env)
    got = udp_probe(env.node, env.peer, IP, [HB, OTHER])
    assert got == {HB}
    # opening a log-offload port through the assignment (watched file) opens exactly it
    env.agent.write_assignments(make_assignment(NODE, extra_udp=[OTHER]))
    plumbed(env, udp_ports=(HB, OTHER))
    assert udp_probe(env.node, env.peer, IP, [HB, OTHER]) == {HB, OTHER}
    env.agent.write_assignments(make_assignment(NODE))
    plumbed(env)
    assert udp_probe(env.node, env.peer, IP, [HB, OTHER]) == {HB}


def test_fault_link_deleted(env):
    plumbed(env)
    env.node.ip("link", "del", "o-hm0")
    assert env.node.link("o-hm0") is None
    plumbed(env)


def test_fault_address_removed_or_replaced(env):
    plumbed(env)
    env.node.ip("addr", "flush", "dev", "o-hm0")
    assert env.node.addrs("o-hm0") == []
    plumbed(env)
    env.node.ip("addr", "add", "172.31.0.99/24", "dev", "o-hm0")
    plumbed(env)


def test_fault_mtu_and_mac_changed(env):
    plumbed(env)
    env.node.ip("link", "set", "o-hm0", "mtu", "1300")
    plumbed(env)
    env.node.ip("link", "set", "o-hm0", "address", "02:00:00:00:00:99")
    plumbed(env)


def test_fault_default_route_via_o_hm0_removed(env):
    """What dhclient used to do: a default route via o-hm0.  The agent removes it;
    the node's own default route stays exactly as it was."""
    plumbed(env)
    env.node.ip("route", "add", "default", "via", "172.31.0.1", "dev", "o-hm0", "metric", "50")
    plumbed(env)


@pytest.mark.parametrize("how", ["iptables-flush", "nft-flush-ruleset", "chain-rule-deleted"])
def test_fault_firewall_flushed(env, how):
    plumbed(env)
    if how == "iptables-flush":
        env.node.x("iptables-nft", "-w", "-F")
        assert firewall_lines(env.node, 4, BACKEND) == ([], [])
    elif how == "nft-flush-ruleset":
        env.node.x("nft", "flush", "ruleset")
    else:
        env.node.x("iptables-nft", "-w", "-D", CHAIN, "-p", "udp", "-m", "udp", "--dport", str(HB), "-j", "ACCEPT")
    plumbed(env)
    assert udp_probe(env.node, env.peer, IP, [HB, OTHER]) == {HB}


def test_fault_ovs_restarted(env):
    plumbed(env)
    env.ovs.stop()
    env.ovs.start()
    plumbed(env)


def test_fault_ovs_restarted_and_port_lost_from_db(env):
    plumbed(env)
    env.ovs.stop()
    env.ovs.start(fresh_db=True)  # a fresh database: br-int recreated (as the Neutron agent would), no o-hm0
    env.ovs.add_int_bridge()
    env.ovs.vsctl("--may-exist", "add-port", "br-int", "tap-peer")
    assert "o-hm0" not in env.ovs.ports()
    plumbed(env)
    assert udp_probe(env.node, env.peer, IP, [HB, OTHER]) == {HB}


def test_agent_killed_and_restarted_no_duplicate_rules(env):
    plumbed(env)
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL):
        env.agent.stop(sig)
        env.agent.start()
        plumbed(env)  # asserts exactly one jump and exactly the chain's rules, per family
    for fam in (4, 6):
        rules, jumps = firewall_lines(env.node, fam, BACKEND)
        assert len(jumps) == 1 and len(rules) == len(set(rules))
    assert env.ovs.ports().count("o-hm0") == 1


def test_status_reports_problems(env):
    plumbed(env)
    # not bound in Neutron: plumbed but not ready, with the reason
    env.agent.write_assignments(make_assignment(NODE, bound=False))
    st = wait_until(lambda: (s := env.agent.status()) and not s.get("ready") and s, BOUND, what="not ready")
    assert any("not bound" in p for p in st["problems"]), st["problems"]
    assert env.agent.cli("status", "--ready").returncode == 1
    # malformed content: reported, the agent keeps running and keeps the previous plumbing
    env.agent.write_assignments("{not json")
    st = wait_until(lambda: any("malformed" in p for p in env.agent.status().get("problems", [])) and env.agent.status(),
                    BOUND, what="malformed reported")
    assert env.agent.proc.poll() is None
    assert env.node.addrs("o-hm0") == [f"{IP}/24"]
    # integration bridge missing: reported
    env.agent.write_assignments(make_assignment(NODE, integrationBridge="br-missing"))
    st = wait_until(lambda: any("br-missing missing" in p for p in env.agent.status().get("problems", []))
                    and env.agent.status(), BOUND, what="bridge missing reported")
    assert not st["ready"]
    env.agent.write_assignments(make_assignment(NODE))
    plumbed(env)


def test_namespace_recreated_reboot(env):
    plumbed(env)
    env.agent.stop()
    env.ovs.stop()
    env.node.delete()  # the node "reboots": every link, address and rule is gone
    env.node.create()
    setup_node(env.node)
    assert env.node.default_routes() == env.default_routes
    # the veth to the peer died with the namespace: recreate it before ovs-vswitchd starts
    env.peer.ip("link", "del", "eth0", check=False)
    env.node.ip("link", "add", "tap-peer", "type", "veth", "peer", "name", "eth0", "netns", env.peer.name)
    isolate_from_stack(env.node, "tap-peer")
    env.peer.ip("addr", "add", f"{PEER_IP}/24", "dev", "eth0")
    env.peer.ip("link", "set", "eth0", "mtu", str(MTU))
    env.peer.ip("link", "set", "eth0", "up")
    env.node.ip("link", "set", "tap-peer", "up")
    disable_tx_offload(env.peer, "eth0")
    disable_tx_offload(env.node, "tap-peer")
    env.ovs.start()  # the database survives a reboot (it is on disk)
    env.agent.start()
    plumbed(env, timeout=60)
    assert udp_probe(env.node, env.peer, IP, [HB, OTHER]) == {HB}


def test_assignment_lost_removes_what_the_agent_created(env):
    plumbed(env)
    doc = make_assignment(NODE)
    del doc["nodes"][NODE]
    env.agent.write_assignments(doc)

    def gone():
        return (env.node.link("o-hm0") is None and "o-hm0" not in env.ovs.ports()
                and firewall_lines(env.node, 4, BACKEND) == ([], []) and firewall_lines(env.node, 6, BACKEND) == ([], [])
                and not (env.agent.state_dir / "state.json").exists())
    wait_until(gone, BOUND, what="cleanup after the assignment disappeared")
    st = wait_until(lambda: (s := env.agent.status()) and any("no assignment" in p for p in s.get("problems", [])) and s,
                    BOUND, what="no-assignment status")
    assert st["ready"] is False
    # what the agent did not create is untouched
    assert "tap-peer" in env.ovs.ports() and env.node.link("tap-peer") is not None
    assert env.node.default_routes() == env.default_routes
    env.agent.write_assignments(make_assignment(NODE))
    plumbed(env)


def test_cleanup_leaves_nothing_behind(env):
    plumbed(env)
    # something that is not the agent's must survive: a foreign rule and port
    env.node.x("iptables-nft", "-w", "-A", "INPUT", "-i", "eth0", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
    env.agent.stop()
    p = env.agent.cli("cleanup", "--ovsdb", env.ovs.url)
    assert p.returncode == 0, p.stdout + p.stderr
    assert env.node.link("o-hm0") is None
    assert "o-hm0" not in env.ovs.ports()
    assert not env.ovs.iface("o-hm0")
    for fam in (4, 6):
        assert firewall_lines(env.node, fam, BACKEND) == ([], [])
        assert CHAIN not in env.node.save(fam, "nft")
    assert not (env.agent.state_dir / "state.json").exists()
    assert not env.agent.status_file.exists()
    assert "-A INPUT -i eth0 -p tcp -m tcp --dport 22 -j ACCEPT" in env.node.save(4, "nft")
    assert "tap-peer" in env.ovs.ports()
    assert env.node.default_routes() == env.default_routes
    assert env.agent.cli("status", "--ready").returncode == 1
