"""The host agent repairs what has no rtnetlink event without waiting for its periodic pass.

The agents here run with ``--interval 60``: a repair within EVENT_BOUND seconds can only come
from the change detection (OVSDB monitor, nf_tables notifications, the POLL looks at sysctls and at
the legacy filter tables), never from the periodic pass. Same namespace setup as
test_hostagent_ovs.py (ovs driver, iptables-nft) and test_hostagent_linuxbridge.py (linuxbridge
driver, a node whose firewall is iptables-legacy), without the peer namespace.
"""
from __future__ import annotations

import shutil
import time

import pytest

from hostagent_nsutil import (CHAIN, HB, MTU, NODE, AgentProc, NetNS, Ovs, check_plumbing, make_assignment,
                              require_netns, short_tmpdir, wait_until)
from test_hostagent_ovs import setup_node

pytestmark = [pytest.mark.netns, pytest.mark.timeout(300)]
INTERVAL = 60  # the periodic pass never comes during a test
EVENT_BOUND = 5.0  # seconds; the event-driven repairs take ~0.3-1.5 s
SYSCTL = "/proc/sys/net/ipv6/conf/o-hm0/accept_ra"


class Env:
    pass


def repaired(e, inject, backend: str, bound: float = EVENT_BOUND, **kw) -> tuple[float, dict]:
    """Injects a fault into a healthy node and returns (seconds until the plumbing is right again and
    the agent has written a ready status after the fault, that status)."""
    wait_until(lambda: ready_and_plumbed(e, backend, 0, **kw), 30, what="healthy before the fault")
    t0 = time.time()
    inject()
    try:
        st = wait_until(lambda: ready_and_plumbed(e, backend, t0, **kw), bound, interval=0.05,
                        what=f"repair within {bound}s (periodic pass: {INTERVAL}s)")
    except AssertionError as err:
        raise AssertionError(f"{err}\nstatus: {e.agent.status()}\nlog tail:\n{e.agent.log()[-3000:]}") from None
    return time.time() - t0, st


def ready_and_plumbed(e, backend: str, since: float, **kw):
    if e.agent.proc.poll() is not None:
        raise AssertionError(f"agent exited: {e.agent.proc.returncode}\n{e.agent.log()[-3000:]}")
    st = e.agent.status()
    if not st.get("ready") or st.get("updatedEpoch", 0) < since:
        return None
    check_plumbing(e.node, e.default_routes, backend, **kw)
    if e.node.x("cat", SYSCTL).strip() != "0":
        return None
    return st


def actions_since(e, offset: int) -> str:
    return e.agent.log()[offset:]


# ------------------------------------------------------------------------------ ovs + nft
@pytest.fixture(scope="module")
def ovs_env():
    require_netns(ovs=True)
    e = Env()
    e.base = short_tmpdir()
    e.node = NetNS("oha-enode")
    e.ovs = e.agent = None
    try:
        e.node.create()
        setup_node(e.node)
        e.ovs = Ovs(e.node, e.base / "ovs")
        e.ovs.start()
        e.ovs.add_int_bridge()
        e.default_routes = e.node.default_routes()
        e.agent = AgentProc(e.node, e.base, NODE, ovsdb=e.ovs.url, interval=INTERVAL)
        e.agent.write_assignments(make_assignment(NODE))
        e.agent.start()
        e.agent.wait_ready(60)
        yield e
    finally:
        if e.agent is not None:
            e.agent.stop()
        if e.ovs is not None:
            e.ovs.stop()
        e.node.delete()
        shutil.rmtree(e.base, ignore_errors=True)


def test_idle_agent_makes_no_passes(ovs_env):
    """Its own reads cause no event: once settled, an idle agent writes no status at all."""
    e = ovs_env
    wait_until(lambda: ready_and_plumbed(e, "nft", 0, ovs=e.ovs), 30, what="ready")
    time.sleep(2.5)  # the follow-up pass of the last repair, if any
    before = e.agent.status()["updatedEpoch"]
    time.sleep(5)
    assert e.agent.status()["updatedEpoch"] == before


@pytest.mark.parametrize("fault", ["iface-id removed", "external_ids cleared", "port deleted"])
def test_ovsdb_change_repaired_through_the_monitor(ovs_env, fault):
    e = ovs_env
    inject = {
        "iface-id removed": lambda: e.ovs.vsctl("remove", "Interface", "o-hm0", "external_ids", "iface-id"),
        "external_ids cleared": lambda: e.ovs.vsctl("clear", "Interface", "o-hm0", "external_ids"),
        "port deleted": lambda: e.ovs.vsctl("--no-wait", "del-port", "br-int", "o-hm0"),
    }[fault]
    took, st = repaired(e, inject, "nft", ovs=e.ovs)
    assert st["lastActions"], st  # this agent repaired it (not a periodic pass: that is a minute away)
    row = e.ovs.iface("o-hm0")
    assert row["external_ids"]["iface-id"] == "3f1c2a4e-1111-4222-8333-944455556666" and row["mtu_request"] == MTU


def test_device_deleted_port_recreated_without_fixed_sleep(ovs_env):
    """The port stays in OVSDB but its device is gone: the agent deletes the port, waits for
    ovs-vswitchd to apply that (cur_cfg), re-adds it and waits for RTM_NEWLINK."""
    e = ovs_env
    offset = len(e.agent.log())
    took, st = repaired(e, lambda: e.node.ip("link", "del", "o-hm0"), "nft", ovs=e.ovs)
    log = actions_since(e, offset)
    assert "action: ovs_recreate_port o-hm0" in log, log
    assert "did not create device" not in log and "did not apply" not in log, log


@pytest.mark.parametrize("how", ["rule removed from the chain", "jump removed from INPUT", "nft flush ruleset",
                                 "chain flushed (IPv6)"])
def test_nft_firewall_change_repaired_through_notifications(ovs_env, how):
    e = ovs_env
    inject = {
        "rule removed from the chain": lambda: e.node.x("iptables-nft", "-w", "-D", CHAIN, "-p", "udp", "-m", "udp",
                                                        "--dport", str(HB), "-j", "ACCEPT"),
        "jump removed from INPUT": lambda: e.node.x("iptables-nft", "-w", "-D", "INPUT", "-i", "o-hm0", "-j", CHAIN),
        "nft flush ruleset": lambda: e.node.x("nft", "flush", "ruleset"),
        "chain flushed (IPv6)": lambda: e.node.x("ip6tables-nft", "-w", "-F", CHAIN),
    }[how]
    took, st = repaired(e, inject, "nft", ovs=e.ovs)
    assert any(a.startswith("fw_sync") for a in st["lastActions"]), st


def test_foreign_nft_rules_elsewhere_do_not_wake_the_agent(ovs_env):
    """kube-proxy-like churn in other chains (iptables-nft) causes no pass."""
    e = ovs_env
    wait_until(lambda: ready_and_plumbed(e, "nft", 0, ovs=e.ovs), 30, what="ready")
    time.sleep(2.5)
    before = e.agent.status()["updatedEpoch"]
    e.node.x("iptables-nft", "-w", "-N", "KUBE-TEST")
    for port in range(30000, 30010):
        e.node.x("iptables-nft", "-w", "-A", "KUBE-TEST", "-p", "tcp", "--dport", str(port), "-j", "ACCEPT")
    e.node.x("iptables-nft", "-w", "-F", "KUBE-TEST")
    e.node.x("iptables-nft", "-w", "-X", "KUBE-TEST")
    time.sleep(2)
    assert e.agent.status()["updatedEpoch"] == before


def test_assignment_change_acted_on_at_once(ovs_env):
    """The assignment file's directory is watched (inotify; kubelet swaps a symlink, the test renames a
    file): a new UDP port is open within a couple of seconds, and closed again."""
    e = ovs_env
    for before, after in (((HB,), (HB, 5556)), ((HB, 5556), (HB,))):
        wait_until(lambda: ready_and_plumbed(e, "nft", 0, ovs=e.ovs, udp_ports=before), 30, what="healthy before")
        t0 = time.time()
        e.agent.write_assignments(make_assignment(NODE, extra_udp=list(after[1:])))
        wait_until(lambda: ready_and_plumbed(e, "nft", t0, ovs=e.ovs, udp_ports=after), 3, interval=0.05,
                   what=f"UDP ports {after} within 3 s")


def test_accept_ra_drift_repaired_by_the_poll(ovs_env):
    e = ovs_env
    took, st = repaired(e, lambda: e.node.x("sh", "-c", f"echo 1 > {SYSCTL}"), "nft", ovs=e.ovs)
    assert any(a.startswith("sysctl_set ipv6/conf/o-hm0/accept_ra") for a in st["lastActions"]), st
    assert st["checks"]["sysctls"]["ok"] is True


def test_ovsdb_restart_reconnects_the_monitor(ovs_env):
    """ovsdb-server and ovs-vswitchd restart (same database): the agent notices the connection
    closing, reconnects and repairs what changed meanwhile through the new monitor."""
    e = ovs_env
    wait_until(lambda: ready_and_plumbed(e, "nft", 0, ovs=e.ovs), 30, what="ready")
    e.ovs.stop()
    wait_until(lambda: not e.agent.status().get("ready"), EVENT_BOUND, interval=0.05, what="not ready: OVSDB down")
    e.ovs.start()
    t0 = time.time()
    wait_until(lambda: ready_and_plumbed(e, "nft", t0, ovs=e.ovs), EVENT_BOUND, interval=0.05,
               what="ready again after the restart")
    # the new connection carries a monitor again: a change is repaired as fast as before the restart
    repaired(e, lambda: e.ovs.vsctl("remove", "Interface", "o-hm0", "external_ids", "iface-id"), "nft", ovs=e.ovs)


# ------------------------------------------------------------------ linuxbridge + legacy
BRIDGE = "brq0123456789a"


@pytest.fixture(scope="module")
def legacy_env():
    require_netns()
    e = Env()
    e.base = short_tmpdir()
    e.node = NetNS("oha-elnode")
    e.agent = None
    try:
        n = e.node.create()
        setup_node(n)
        n.x("iptables-legacy", "-w", "-A", "INPUT", "-i", "eth0", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
        n.ip("link", "add", BRIDGE, "type", "bridge")
        n.ip("link", "set", BRIDGE, "up")
        e.default_routes = n.default_routes()
        e.agent = AgentProc(n, e.base, NODE, interval=INTERVAL)
        e.agent.write_assignments(make_assignment(NODE, driver="linuxbridge", linux_bridge=BRIDGE))
        e.agent.start()
        st = e.agent.wait_ready(60)
        assert st["firewallBackend"] == "legacy"
        yield e
    finally:
        if e.agent is not None:
            e.agent.stop()
        e.node.delete()
        shutil.rmtree(e.base, ignore_errors=True)


@pytest.mark.parametrize("how", ["rule removed from the chain", "INPUT flushed", "chain flushed (IPv6)",
                                 "rule inserted into the chain"])
def test_legacy_firewall_change_repaired_by_the_poll(legacy_env, how):
    e = legacy_env
    inject = {
        "rule removed from the chain": lambda: e.node.x("iptables-legacy", "-w", "-D", CHAIN, "-p", "udp", "-m", "udp",
                                                        "--dport", str(HB), "-j", "ACCEPT"),
        "INPUT flushed": lambda: e.node.x("iptables-legacy", "-w", "-F", "INPUT"),
        "chain flushed (IPv6)": lambda: e.node.x("ip6tables-legacy", "-w", "-F", CHAIN),
        "rule inserted into the chain": lambda: e.node.x("iptables-legacy", "-w", "-I", CHAIN, "1", "-p", "udp",
                                                         "--dport", "5556", "-j", "ACCEPT"),
    }[how]
    took, st = repaired(e, inject, "legacy", jump_ifaces=("o-hm0", BRIDGE))
    assert any(a.startswith("fw_sync") for a in st["lastActions"]), st
    assert st["firewallBackend"] == "legacy"
