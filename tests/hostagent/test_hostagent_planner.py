"""Unit tests of the host agent's pure code: assignment parsing, planner, checks,
firewall backend choice and save parsing, the status command.  No root needed."""
from __future__ import annotations

import copy
import json
import time

import pytest

from octavia_hostagent import cli
from octavia_hostagent.assignment import AssignmentError, parse_assignments
from octavia_hostagent.firewall import choose_backend, parse_save, restore_text
from octavia_hostagent.model import (FW_CHAIN, LINK_ALIAS, OVS_OWNER_KEY, FwObs, LinkObs, Observed, OvsObs,
                                     OvsPortObs, Owned, RouteObs)
from octavia_hostagent.planner import (desired_chain, desired_iface_columns, evaluate, foreign_routes, jump_rules,
                                       plan, plan_cleanup)

NODE = "node-0"
DOC = {
    "version": 1,
    "deployment": "openstack/octavia",
    "driver": "ovs",
    "interface": "o-hm0",
    "integrationBridge": "br-int",
    "linuxBridge": "brq0123456789a",
    "networkId": "01234567-89ab-cdef-0123-456789abcdef",
    "subnet": {"cidr": "172.31.0.0/24", "ipVersion": 4},
    "mtu": 1450,
    "heartbeatPort": 5555,
    "extraUdpPorts": [10514, 20514, 5555],
    "unknownFutureKey": [1, 2, 3],
    "nodes": {NODE: {"portId": "p-uuid", "mac": "FA:16:3E:AA:BB:CC", "ip": "172.31.0.5", "prefixLength": 24,
                     "bound": True, "alsoUnknown": "x"}},
}


def doc(**kw):
    d = copy.deepcopy(DOC)
    node = kw.pop("node", None)
    d.update(kw)
    if node:
        d["nodes"][NODE].update(node)
    return d


def assignment(**kw):
    return parse_assignments(doc(**kw), NODE)


# ------------------------------------------------------------------ assignment
def test_parse_valid_assignment_tolerates_unknown_keys():
    a = assignment()
    assert a.mac == "fa:16:3e:aa:bb:cc"  # normalised
    assert str(a.ip) == "172.31.0.5" and a.prefix_length == 24 and a.mtu == 1450
    assert a.udp_ports == (5555, 10514, 20514)  # heartbeat first, duplicates dropped
    assert a.bridge == "br-int" and a.bound is True


def test_parse_linuxbridge_derives_host_end():
    a = assignment(driver="linuxbridge")
    assert a.bridge == "brq0123456789a" and a.host_end == "o-bhm0"


@pytest.mark.parametrize("content", [None, {}, {"version": 1, "nodes": {}}, {"version": 1, "nodes": {"other": {}}}])
def test_no_assignment_for_this_node(content):
    assert parse_assignments(content, NODE) is None


@pytest.mark.parametrize("change, msg", [
    ({"driver": "sriov"}, "driver"),
    ({"version": 2}, "version"),
    ({"mtu": 100}, "mtu"),
    ({"mtu": "1450"}, "mtu"),
    ({"heartbeatPort": 70000}, "heartbeatPort"),
    ({"extraUdpPorts": "10514"}, "extraUdpPorts"),
    ({"subnet": {"cidr": "172.31.0.1/24"}}, "cidr"),
    ({"interface": "a-very-long-interface-name"}, "interface"),
    ({"node": {"mac": "not-a-mac"}}, "mac"),
    ({"node": {"mac": "01:00:5e:00:00:01"}}, "multicast"),
    ({"node": {"ip": "10.0.0.5"}}, "not in subnet"),
    ({"node": {"bound": "yes"}}, "bound"),
    ({"linuxBridge": None, "driver": "linuxbridge"}, "linuxBridge"),
])
def test_malformed_assignment_raises(change, msg):
    with pytest.raises(AssignmentError, match=msg):
        assignment(**change)


def test_malformed_top_level():
    with pytest.raises(AssignmentError):
        parse_assignments([1, 2], NODE)
    with pytest.raises(AssignmentError):
        parse_assignments({"nodes": {NODE: "x"}}, NODE)


# --------------------------------------------------------------- observed state
def good_obs(a, **over) -> Observed:
    """An observed state in which the ovs-driver plumbing is complete."""
    link = LinkObs(name="o-hm0", index=7, mac=a.mac, mtu=a.mtu, up=True, kind="openvswitch")
    port = OvsPortObs(uuid="pu", bridge="br-int", external_ids={OVS_OWNER_KEY: "true"}, iface_uuid="iu",
                      iface_type="internal", iface_external_ids=dict(desired_iface_columns(a)["external_ids"],
                                                                     **{"other": "kept"}),
                      mac=a.mac, mtu_request=a.mtu)
    fw = FwObs(backend="nft", chains={4: desired_chain(a, 4), 6: desired_chain(a, 6)},
               jumps={4: jump_rules(a), 6: jump_rules(a)})
    obs = Observed(links={"o-hm0": link}, addrs={"o-hm0": [("172.31.0.5", 24)]},
                   routes={"o-hm0": [RouteObs("172.31.0.0/24", None, 4, proto=2)]},
                   ovs=OvsObs(reachable=True, bridges={"br-int"}, ports={"o-hm0": port}), fw=fw,
                   sysctls={"ipv6/conf/o-hm0/accept_ra": "0"})
    for k, v in over.items():
        setattr(obs, k, v)
    return obs


def kinds(actions):
    return [x.kind for x in actions]


def test_complete_plumbing_plans_nothing_and_is_ready():
    a = assignment()
    obs = good_obs(a)
    assert plan(a, obs, Owned()) == []
    checks, problems = evaluate(a, obs)
    assert problems == [] and all(c["ok"] for c in checks.values())


def test_fresh_node_adds_the_ovs_port_first():
    a = assignment()
    obs = good_obs(a, links={}, addrs={}, routes={})
    obs.ovs.ports = {}
    obs.fw = FwObs(backend="nft", chains={4: None, 6: None}, jumps={4: [], 6: []})
    actions = plan(a, obs, Owned())
    assert kinds(actions) == ["ovs_add_port", "fw_sync", "fw_sync"]
    add = actions[0]
    assert add.arg("bridge") == "br-int"
    cols = add.arg("iface_columns")
    assert cols["type"] == "internal" and cols["mac"] == a.mac and cols["mtu_request"] == 1450
    assert cols["external_ids"] == {"iface-id": "p-uuid", "attached-mac": a.mac, "iface-status": "active",
                                    "skip_cleanup": "true"}
    assert add.arg("port_external_ids")[OVS_OWNER_KEY] == "true"
    checks, problems = evaluate(a, obs)
    assert not checks["ovs_port"]["ok"] and not checks["link"]["ok"] and not checks["firewall"]["ok"]


def test_link_mac_mtu_state_and_address_repairs():
    a = assignment()
    obs = good_obs(a)
    obs.links["o-hm0"] = LinkObs(name="o-hm0", index=7, mac="02:00:00:00:00:01", mtu=1500, up=False, kind="openvswitch")
    obs.addrs["o-hm0"] = [("172.31.0.99", 24)]
    obs.sysctls["ipv6/conf/o-hm0/accept_ra"] = "1"
    actions = plan(a, obs, Owned())
    assert kinds(actions) == ["link_set", "addr_del", "addr_add", "sysctl_set"]
    assert actions[0].arg("mac") == a.mac and actions[0].arg("mtu") == 1450 and actions[0].arg("up") is True
    assert actions[1].arg("address") == "172.31.0.99" and actions[2].arg("address") == "172.31.0.5"
    checks, problems = evaluate(a, obs)
    assert any("MAC mismatch" in p for p in problems)
    assert {k for k, c in checks.items() if not c["ok"]} == {"mac", "mtu", "link", "address", "sysctls"}


def test_sysctl_drift_is_a_failed_check_unless_the_agent_cannot_write_it():
    a = assignment()
    obs = good_obs(a)
    assert evaluate(a, obs)[0]["sysctls"] == {"ok": True, "detail": ""}
    obs.sysctls["ipv6/conf/o-hm0/accept_ra"] = "1"  # someone set it back (accept_ra drift)
    checks, problems = evaluate(a, obs)
    assert checks["sysctls"]["ok"] is False
    assert problems == ["sysctls: net.ipv6.conf.o-hm0.accept_ra=1, want 0"]
    # read-only /proc/sys (unprivileged container): a warning of the status, not a problem
    checks, problems = evaluate(a, obs, {"ipv6/conf/o-hm0/accept_ra": "Read-only file system"})
    assert checks["sysctls"]["ok"] is True and problems == []
    # the file does not exist (o-hm0 missing): the link check reports that, not this one
    obs.sysctls = {}
    assert evaluate(a, obs)[0]["sysctls"]["ok"] is True


def test_default_route_via_interface_is_removed_other_routes_reported():
    a = assignment()
    obs = good_obs(a)
    obs.routes["o-hm0"] += [RouteObs("0.0.0.0/0", "172.31.0.1", 4), RouteObs("10.10.0.0/16", "172.31.0.1", 4)]
    actions = plan(a, obs, Owned())
    assert kinds(actions) == ["route_del"]
    assert actions[0].arg("dst") == "0.0.0.0/0" and actions[0].arg("gateway") == "172.31.0.1"
    assert foreign_routes(a, obs) == ["10.10.0.0/16 via 172.31.0.1"]
    assert not evaluate(a, obs)[0]["routes"]["ok"]


def test_missing_connected_route_is_added():
    a = assignment()
    obs = good_obs(a, routes={"o-hm0": []})
    actions = plan(a, obs, Owned())
    assert kinds(actions) == ["route_add_connected"] and actions[0].arg("dst") == "172.31.0.0/24"


def test_ovs_interface_columns_differ():
    a = assignment()
    obs = good_obs(a)
    p = obs.ovs.ports["o-hm0"]
    p.mtu_request = None
    p.iface_external_ids = {"iface-id": "old", "other": "kept"}
    actions = plan(a, obs, Owned())
    assert kinds(actions) == ["ovs_set_interface"]
    assert set(actions[0].arg("columns")) == {"external_ids", "mtu_request"}
    assert actions[0].arg("current_external_ids")["other"] == "kept"


def test_device_missing_but_port_in_db_recreates_port():
    a = assignment()
    obs = good_obs(a, links={}, addrs={}, routes={})
    assert kinds(plan(a, obs, Owned())) == ["ovs_recreate_port"]


def test_port_on_wrong_bridge_is_moved():
    a = assignment()
    obs = good_obs(a)
    obs.ovs.ports["o-hm0"].bridge = "br-ex"
    assert kinds(plan(a, obs, Owned()))[:2] == ["ovs_del_port", "ovs_add_port"]


def test_bridge_missing_or_ovsdb_down_no_ovs_actions_and_problem():
    a = assignment()
    obs = good_obs(a, links={}, addrs={}, routes={})
    obs.ovs.bridges = set()
    obs.ovs.ports = {}
    assert not any(k.startswith("ovs_") for k in kinds(plan(a, obs, Owned())))
    assert any("integration bridge br-int missing" in p for p in evaluate(a, obs)[1])
    obs.ovs = OvsObs(reachable=False, error="cannot connect")
    assert not any(k.startswith("ovs_") for k in kinds(plan(a, obs, Owned())))
    assert any("OVSDB unreachable" in p for p in evaluate(a, obs)[1])


def test_unbound_port_is_plumbed_but_not_ready():
    a = assignment(node={"bound": False})
    obs = good_obs(a)
    assert plan(a, obs, Owned()) == []
    checks, problems = evaluate(a, obs)
    assert not checks["port_bound"]["ok"] and "not bound" in problems[0]


@pytest.mark.parametrize("jumps4", [[], ["-A INPUT -i o-hm0 -j OCTAVIA-HOSTAGENT"] * 2,
                                    ["-A INPUT -i eth9 -j OCTAVIA-HOSTAGENT"]])
def test_firewall_jumps_wrong_are_resynced(jumps4):
    a = assignment()
    obs = good_obs(a)
    obs.fw.jumps[4] = jumps4
    actions = plan(a, obs, Owned())
    assert kinds(actions) == ["fw_sync"] and actions[0].arg("family") == 4
    assert actions[0].arg("jumps") == ("-A INPUT -i o-hm0 -j OCTAVIA-HOSTAGENT",)
    assert actions[0].arg("current_jumps") == tuple(jumps4)
    assert not evaluate(a, obs)[0]["firewall"]["ok"]


def test_firewall_chain_content():
    a = assignment()
    assert desired_chain(a, 4) == [
        f"-A {FW_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        f"-A {FW_CHAIN} -p icmp -j ACCEPT",
        f"-A {FW_CHAIN} -p udp -m udp --dport 5555 -j ACCEPT",
        f"-A {FW_CHAIN} -p udp -m udp --dport 10514 -j ACCEPT",
        f"-A {FW_CHAIN} -p udp -m udp --dport 20514 -j ACCEPT",
        f"-A {FW_CHAIN} -j DROP",
    ]
    assert f"-A {FW_CHAIN} -p ipv6-icmp -j ACCEPT" in desired_chain(a, 6)
    assert jump_rules(assignment(driver="linuxbridge")) == [
        "-A INPUT -i o-hm0 -j OCTAVIA-HOSTAGENT", "-A INPUT -i brq0123456789a -j OCTAVIA-HOSTAGENT"]
    obs = good_obs(a)
    obs.fw.chains[6] = None
    assert kinds(plan(a, obs, Owned())) == ["fw_sync"]


# ------------------------------------------------------------------ linuxbridge
def lb_obs(a, **links) -> Observed:
    obs = good_obs(a)
    obs.ovs = None
    obs.links = {"brq0123456789a": LinkObs("brq0123456789a", 3, "02:00:00:00:00:03", 1500, True, kind="bridge"),
                 "o-hm0": LinkObs("o-hm0", 10, a.mac, a.mtu, True, kind="veth", peer_index=11, alias=LINK_ALIAS),
                 "o-bhm0": LinkObs("o-bhm0", 11, "02:00:00:00:00:11", a.mtu, True, master="brq0123456789a",
                                   kind="veth", peer_index=10, alias=LINK_ALIAS)}
    obs.sysctls["ipv4/conf/brq0123456789a/arp_ignore"] = "1"
    for k, v in links.items():
        if v is None:
            obs.links.pop(k.replace("_", "-"))
        else:
            obs.links[k.replace("_", "-")] = v
    return obs


def test_linuxbridge_complete_and_fresh():
    a = assignment(driver="linuxbridge")
    assert plan(a, lb_obs(a), Owned()) == []
    assert evaluate(a, lb_obs(a))[1] == []
    obs = lb_obs(a, o_hm0=None, o_bhm0=None)
    obs.addrs, obs.routes = {}, {}
    assert kinds(plan(a, obs, Owned())) == ["link_create_veth"]


def test_linuxbridge_host_end_out_of_bridge_and_arp_ignore():
    a = assignment(driver="linuxbridge")
    obs = lb_obs(a)
    obs.links["o-bhm0"].master = None
    obs.links["o-bhm0"].mtu = 1500
    obs.sysctls["ipv4/conf/brq0123456789a/arp_ignore"] = "0"
    actions = plan(a, obs, Owned())
    assert kinds(actions) == ["link_set", "sysctl_set"]
    assert actions[0].target == "o-bhm0" and actions[0].arg("master") == "brq0123456789a"
    assert actions[1].arg("value") == "1" and actions[1].arg("previous") == "0"
    assert not evaluate(a, obs)[0]["host_end"]["ok"]


def test_linuxbridge_foreign_link_with_our_name_is_not_touched():
    a = assignment(driver="linuxbridge")
    obs = lb_obs(a, o_hm0=LinkObs("o-hm0", 10, a.mac, a.mtu, True, kind="bridge"), o_bhm0=None)
    assert "link_delete" not in kinds(plan(a, obs, Owned()))
    assert "link_create_veth" not in kinds(plan(a, obs, Owned()))
    assert not evaluate(a, obs)[0]["host_end"]["ok"]


# ------------------------------------------------------------ stale and cleanup
def test_driver_switch_removes_owned_objects_only():
    a = assignment()  # ovs now
    obs = good_obs(a)
    obs.links["o-bhm0"] = LinkObs("o-bhm0", 11, "02:00:00:00:00:11", 1450, True, kind="veth", alias=LINK_ALIAS)
    obs.links["eth0"] = LinkObs("eth0", 2, "02:00:00:00:00:02", 1500, True, kind="veth")
    actions = plan(a, obs, Owned(links={"o-bhm0"}))
    assert [(x.kind, x.target) for x in actions] == [("link_delete", "o-bhm0")]


def test_cleanup_plan_removes_exactly_what_was_created():
    a = assignment()
    obs = good_obs(a)
    obs.ovs.ports["foreign"] = OvsPortObs("fu", "br-int", {}, "fi", "internal", {}, None, None)
    obs.links["eth0"] = LinkObs("eth0", 2, "02:00:00:00:00:02", 1500, True, kind="veth")
    obs.links["adopted"] = LinkObs("adopted", 20, "02:00:00:00:00:20", 1500, True, kind="veth")
    obs.addrs["adopted"] = [("172.31.0.5", 24), ("192.0.2.1", 24)]
    owned = Owned(ovs_ports={"o-hm0"}, addresses={("o-hm0", "172.31.0.5/24"), ("adopted", "172.31.0.5/24")},
                  firewall_backends={"legacy"}, sysctls={"ipv4/conf/brq/arp_ignore": "0"})
    actions = plan_cleanup(obs, owned)
    assert [(x.kind, x.target) for x in actions] == [
        ("ovs_del_port", "o-hm0"), ("addr_del", "adopted"), ("fw_remove", "*"), ("sysctl_restore", "ipv4/conf/brq/arp_ignore")]
    assert actions[1].arg("address") == "172.31.0.5"
    assert actions[2].arg("backends") == ("legacy",)
    # with the state file lost: ownership markers still find the port/links; both backends checked
    actions = plan_cleanup(obs, Owned())
    assert [(x.kind, x.target) for x in actions] == [("ovs_del_port", "o-hm0"), ("fw_remove", "*")]
    assert actions[1].arg("backends") == ("legacy", "nft")


def test_cleanup_plan_deletes_a_veth_once():
    a = assignment(driver="linuxbridge")
    obs = lb_obs(a)
    owned = Owned(links={"o-hm0", "o-bhm0"}, addresses={("o-hm0", "172.31.0.5/24")})
    actions = plan_cleanup(obs, owned)
    assert [(x.kind, x.target) for x in actions if x.kind != "fw_remove"] == [("link_delete", "o-bhm0")]


def test_owned_roundtrip():
    o = Owned(links={"a"}, ovs_ports={"o-hm0"}, addresses={("a", "1.2.3.4/24")}, firewall_backends={"nft"},
              sysctls={"x": "0"})
    assert Owned.from_json(json.loads(json.dumps(o.to_json()))) == o
    assert Owned().empty() and not o.empty()


# ------------------------------------------------------------------- firewall
def test_choose_backend_like_kube_proxy():
    assert choose_backend({"nft": "", "legacy": ""}) == "nft"
    assert choose_backend({"nft": None, "legacy": None}) == "nft"
    assert choose_backend({"nft": "-A INPUT -j X\n", "legacy": "-A INPUT -j X\n-A INPUT -j Y\n"}) == "legacy"
    assert choose_backend({"nft": ":KUBE-IPTABLES-HINT - [0:0]\n", "legacy": "-A a\n-A b\n-A c\n"}) == "nft"
    assert choose_backend({"nft": "-A a\n-A b\n", "legacy": ":KUBE-KUBELET-CANARY - [0:0]\n"}) == "legacy"


def test_parse_save_and_restore_text():
    text = f"""*filter
:INPUT ACCEPT [0:0]
:{FW_CHAIN} - [0:0]
-A INPUT -i eth0 -j ACCEPT
-A INPUT -i o-hm0 -j {FW_CHAIN}
-A INPUT -i o-hm0 -j {FW_CHAIN}
-A {FW_CHAIN} -p udp -m udp --dport 5555 -j ACCEPT
COMMIT
"""
    rules, jumps = parse_save(text)
    assert rules == [f"-A {FW_CHAIN} -p udp -m udp --dport 5555 -j ACCEPT"]
    assert jumps == [f"-A INPUT -i o-hm0 -j {FW_CHAIN}"] * 2
    assert parse_save("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n") == (None, [])
    assert restore_text(["-A X -j DROP"]).startswith(f"*filter\n:{FW_CHAIN} - [0:0]\n-A X -j DROP\nCOMMIT")


# --------------------------------------------------------------------- status
@pytest.mark.parametrize("ready, age, code", [(True, 0, 0), (False, 0, 1), (True, 600, 1)])
def test_status_command_exit_code(tmp_path, capsys, ready, age, code):
    f = tmp_path / "status.json"
    f.write_text(json.dumps({"ready": ready, "updatedEpoch": time.time() - age, "problems": ["bridge: missing"]}))
    assert cli.main(["status", "--ready", "--status-file", str(f)]) == code
    out = capsys.readouterr().out
    assert out.startswith("ready" if code == 0 else "not ready")
    assert cli.main(["status", "--status-file", str(f)]) == code


def test_status_command_without_status_file(tmp_path):
    assert cli.main(["status", "--ready", "--status-file", str(tmp_path / "none.json")]) == 1


# ------------------------------------------------------- the netns tests' gate
def test_netns_prerequisites_skip_here_but_fail_in_ci(monkeypatch):
    import hostagent_nsutil as u
    monkeypatch.setattr(u.os, "geteuid", lambda: 1000)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        u.require_netns()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        u.require_netns()
    monkeypatch.setattr(u.os, "geteuid", lambda: 0)
    monkeypatch.setattr(u.shutil, "which", lambda b: None if b == "ovs-vswitchd" else "/usr/bin/" + b)
    with pytest.raises(pytest.fail.Exception, match="ovs-vswitchd"):
        u.require_netns(ovs=True)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="ovs-vswitchd"):
        u.require_netns(ovs=True)
