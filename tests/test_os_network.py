"""openstack/network.py against the real loopback Neutron (tests/cloud).

Each test works in its own Keystone project (the "service project" of the module under test),
with unique names, and removes at teardown every Neutron resource in that project, then the
project. Properties are checked with plain openstacksdk calls, not with the module under test.
Ports bind (vif_type ovs) only on the hosts of ``fake_agent_hosts``.
"""
from __future__ import annotations

import ipaddress
import random
import uuid
from dataclasses import replace

import pytest
import requests
from openstack import exceptions as sdk

from octavia_operator.builders.cloud import HEALTH_MGR_DEVICE_OWNER, desired as cloud_desired, ports as port_builder
from octavia_operator.backends.openstack import network as nw
from octavia_operator.backends.openstack.common import marker, owner_tag, owner_tags
from octavia_operator.errors import StepError, TransientError
from octavia_operator.spec import OctaviaDeploymentSpec
from oscount import WriteCounter

pytestmark = pytest.mark.openstack

OTHER_UID = "99999999-8888-7777-6666-555555555555"
HOST_ID_ANNOTATION = "octavia-operator.dev/host-id"


def _cidr(version: int = 4) -> str:
    if version == 4:
        return f"10.{random.randint(100, 250)}.{random.randint(0, 255)}.0/24"
    return f"fd{random.randint(0, 255):02x}:{random.randint(0, 0xffff):x}:{random.randint(0, 0xffff):x}::/64"


def net_desired(u: str, *, cidr: str | None = None, ssh: bool = True, pool: tuple[str, str] | None = None,
                network_id: str | None = None, version: int = 4, logging: dict | None = None):
    mn = {"name": f"{u}-net", "subnetName": f"{u}-subnet", "cidr": cidr or _cidr(version),
          "securityGroups": {"amphora": f"{u}-amp", "healthManager": f"{u}-hm"}}
    if pool:
        mn["allocationPool"] = {"start": pool[0], "end": pool[1]}
    if network_id:
        mn["networkId"] = network_id
    spec = OctaviaDeploymentSpec.model_validate({
        "cloud": {"credentialsSecret": {"name": "x"}}, "managementNetwork": mn,
        "amphora": {"ssh": {"enabled": ssh}, **({"logging": logging} if logging else {})}})
    return cloud_desired(spec, {"internal": "http://127.0.0.1:9876"}).network


def rule_keys(conn, sg_id: str, direction: str = "ingress") -> set[tuple]:
    out = set()
    for r in conn.network.security_group_rules(security_group_id=sg_id):
        if r.direction == direction:
            out.add((r.ether_type, r.protocol, r.port_range_min, r.port_range_max, r.remote_ip_prefix))
    return out


def want_keys(sg_desired) -> set[tuple]:
    return {(r.ethertype, r.protocol, r.port_min, r.port_max, r.remote_ip_prefix) for r in sg_desired.rules}


def gone(getter, rid: str) -> bool:
    try:
        getter(rid)
    except sdk.NotFoundException:
        return True
    return False


def posts_to(w: WriteCounter, collection: str) -> list[str]:
    return [u for m, u in w.writes if m == "POST" and u.rstrip("/").endswith("/" + collection)]


class Env:
    """One test's project, unique names and deployment UID."""

    def __init__(self, conn, unique: str):
        self.conn, self.u = conn, unique
        self.uid = str(uuid.uuid4())
        self.project = conn.identity.create_project(name=f"svc-{unique}", domain_id="default",
                                                     description="test_os_network")
        self.project_id = self.project.id

    def purge(self) -> None:
        """Delete every Neutron resource of the test's project, then the project."""
        n, pid = self.conn.network, self.project_id
        for p in list(n.ports(project_id=pid)):
            n.delete_port(p, ignore_missing=True)
        for sg in list(n.security_groups(project_id=pid)):
            n.delete_security_group(sg, ignore_missing=True)
        for sn in list(n.subnets(project_id=pid)):
            n.delete_subnet(sn, ignore_missing=True)
        for net in list(n.networks(project_id=pid)):
            n.delete_network(net, ignore_missing=True)
        self.conn.identity.delete_project(self.project, ignore_missing=True)


@pytest.fixture
def env(os_cloud, unique_name):
    e = Env(os_cloud, unique_name)
    try:
        yield e
    finally:
        e.purge()


def ensure(env: Env, d):
    return nw.ensure_management_network(env.conn, d, env.uid, project_id=env.project_id)


def ensure_ports(env: Env, mn, nodes: dict[str, dict[str, str]]):
    return nw.ensure_ports(env.conn, port_builder(nodes, HOST_ID_ANNOTATION), env.uid, project_id=env.project_id,
                           network_id=mn.network.id, subnet_id=mn.subnet.id,
                           security_group_id=mn.health_manager_sg.id)


# ---------------------------------------------------------------------------------------------

def test_create_from_scratch_then_converged(env):
    conn, d = env.conn, net_desired(env.u, pool=None)
    mn = ensure(env, d)
    assert mn.network.created and mn.subnet.created and mn.amphora_sg.created and mn.health_manager_sg.created
    assert not any(p.adopted for p in mn.parts) and mn.changes == [] and mn.warnings == []
    assert [p.extra["label"].split(" (")[0] for p in mn.parts] == [
        f"network {d.name}", f"subnet {d.subnet_name}", f"security group {d.amphora_sg.name}",
        f"security group {d.health_manager_sg.name}"]

    net = conn.network.get_network(mn.network.id)
    assert net.name == d.name and net.project_id == env.project_id
    assert set(owner_tags(env.uid)) <= set(net.tags) and marker(env.uid) in net.description
    assert mn.mtu == net.mtu and isinstance(net.mtu, int) and net.mtu > 0

    sn = conn.network.get_subnet(mn.subnet.id)
    assert sn.network_id == net.id and sn.name == d.subnet_name and sn.project_id == env.project_id
    assert ipaddress.ip_network(sn.cidr) == ipaddress.ip_network(d.cidr) and sn.ip_version == 4
    assert sn.gateway_ip is None          # nothing on the management network becomes a default route
    assert sn.is_dhcp_enabled is True
    assert sn.allocation_pools == [{"start": d.allocation_pool[0], "end": d.allocation_pool[1]}]
    assert set(owner_tags(env.uid)) <= set(sn.tags)

    for ens, sgd in ((mn.amphora_sg, d.amphora_sg), (mn.health_manager_sg, d.health_manager_sg)):
        sg = conn.network.get_security_group(ens.id)
        assert sg.name == sgd.name and sg.project_id == env.project_id
        assert set(owner_tags(env.uid)) <= set(sg.tags)
        assert rule_keys(conn, sg.id) == want_keys(sgd)       # exactly the desired ingress rules
        assert {k[0] for k in rule_keys(conn, sg.id, "egress")} == {"IPv4", "IPv6"}   # Neutron's defaults kept
        for r in conn.network.security_group_rules(security_group_id=sg.id, direction="ingress"):
            assert marker(env.uid) in r.description
    amp = rule_keys(conn, mn.amphora_sg.id)
    assert ("IPv4", "tcp", 9443, 9443, d.cidr) in amp and ("IPv4", "tcp", 22, 22, d.cidr) in amp
    assert ("IPv4", "icmp", None, None, d.cidr) in amp
    assert rule_keys(conn, mn.health_manager_sg.id) == {("IPv4", "udp", 5555, 5555, d.cidr)}

    with WriteCounter(conn) as w:
        again = ensure(env, d)
    assert w.writes == [] and not again.wrote and again.changes == []
    assert [p.id for p in again.parts] == [p.id for p in mn.parts]
    assert not any(p.created or p.adopted for p in again.parts)


def test_ipv6_subnet_has_no_gateway_and_stateful_dhcp(env):
    # with the amphora-log receiver: its UDP ports are open on the health-manager ports too
    conn, d = env.conn, net_desired(env.u, version=6, logging={"mode": "Receiver"})
    mn = ensure(env, d)
    sn = conn.network.get_subnet(mn.subnet.id)
    assert sn.ip_version == 6 and ipaddress.ip_network(sn.cidr) == ipaddress.ip_network(d.cidr)
    assert sn.gateway_ip is None and sn.is_dhcp_enabled
    assert sn.ipv6_address_mode == "dhcpv6-stateful" and sn.ipv6_ra_mode is None
    hm = rule_keys(conn, mn.health_manager_sg.id)
    assert ("IPv6", "udp", 5555, 5555, d.cidr) in hm and ("IPv6", "ipv6-icmp", None, None, None) in hm
    assert {("IPv6", "udp", p, p, d.cidr) for p in (10514, 20514)} <= hm
    with WriteCounter(conn) as w:
        ensure(env, d)
    assert w.writes == []


def test_adopt_seed_made_resources_by_name(env):
    """The seed's way: plain creates by name, no tags, a gateway and an extra rule the spec lacks."""
    conn, d, pid = env.conn, net_desired(env.u), env.project_id
    net = conn.network.create_network(name=d.name, project_id=pid)
    cidr = ipaddress.ip_network(d.cidr)
    sn = conn.network.create_subnet(name=d.subnet_name, network_id=net.id, cidr=d.cidr, ip_version=4,
                                    project_id=pid, allocation_pools=[{"start": str(cidr[100]), "end": str(cidr[200])}])
    # the default gateway (.1) and that pool differ from the spec: drift to report, not to repair
    amp = conn.network.create_security_group(name=d.amphora_sg.name, project_id=pid)
    conn.network.create_security_group_rule(security_group_id=amp.id, direction="ingress", ether_type="IPv4",
                                            protocol="tcp", port_range_min=9443, port_range_max=9443,
                                            remote_ip_prefix=d.cidr)
    seed_extra = conn.network.create_security_group_rule(
        security_group_id=amp.id, direction="ingress", ether_type="IPv4", protocol="tcp",
        port_range_min=8080, port_range_max=8080, remote_ip_prefix="0.0.0.0/0")
    hm = conn.network.create_security_group(name=d.health_manager_sg.name, project_id=pid)
    sn_before = conn.network.get_subnet(sn.id)

    mn = ensure(env, d)
    assert (mn.network.id, mn.subnet.id, mn.amphora_sg.id, mn.health_manager_sg.id) == (net.id, sn.id, amp.id, hm.id)
    assert all(p.adopted and not p.created for p in mn.parts)
    # nothing duplicated
    assert len(list(conn.network.networks(name=d.name))) == 1
    assert len(list(conn.network.subnets(network_id=net.id))) == 1
    assert len(list(conn.network.security_groups(name=d.amphora_sg.name))) == 1
    # adopted resources are not tagged (they would look owned) and the subnet is not changed
    for getter, rid in ((conn.network.get_network, net.id), (conn.network.get_subnet, sn.id),
                        (conn.network.get_security_group, amp.id)):
        assert owner_tag(env.uid) not in (getter(rid).tags or [])
    sn_after = conn.network.get_subnet(sn.id)
    assert sn_after.gateway_ip == sn_before.gateway_ip is not None
    assert sn_after.allocation_pools == sn_before.allocation_pools
    assert any("gateway" in w and sn.id in w for w in mn.subnet.extra["warnings"])
    assert any("allocation pool" in w for w in mn.subnet.extra["warnings"])
    # the missing desired rules were added (with our marker); the seed's extra rule survives, reported
    assert want_keys(d.amphora_sg) <= rule_keys(conn, amp.id)
    assert ("IPv4", "tcp", 8080, 8080, "0.0.0.0/0") in rule_keys(conn, amp.id)
    assert any(seed_extra.id in w for w in mn.amphora_sg.extra["warnings"])
    assert rule_keys(conn, hm.id) == want_keys(d.health_manager_sg)
    assert mn.amphora_sg.changes and mn.health_manager_sg.changes

    with WriteCounter(conn) as w:
        again = ensure(env, d)
    assert w.writes == [] and again.changes == []

    # deletion: every adopted resource survives; only the rules we added to adopted groups go
    deleted = nw.delete_owned_network(conn, env.uid, network_id=net.id, subnet_id=sn.id,
                                      security_group_ids=[amp.id, hm.id])
    assert all("rule" in x for x in deleted) and deleted
    for getter, rid in ((conn.network.get_network, net.id), (conn.network.get_subnet, sn.id),
                        (conn.network.get_security_group, amp.id), (conn.network.get_security_group, hm.id)):
        assert not gone(getter, rid)
    assert rule_keys(conn, amp.id) == {("IPv4", "tcp", 9443, 9443, d.cidr), ("IPv4", "tcp", 8080, 8080, "0.0.0.0/0")}
    assert rule_keys(conn, hm.id) == set()


def test_adopt_network_by_id_uses_its_single_subnet(env):
    conn, pid = env.conn, env.project_id
    d0 = net_desired(env.u)
    net = conn.network.create_network(name=f"{env.u}-other-name", project_id=pid)
    sn = conn.network.create_subnet(name="seed-subnet", network_id=net.id, cidr=d0.cidr, ip_version=4,
                                    project_id=pid, gateway_ip=None,
                                    allocation_pools=[{"start": d0.allocation_pool[0], "end": d0.allocation_pool[1]}])
    d = net_desired(env.u, cidr=d0.cidr, network_id=net.id)
    mn = ensure(env, d)
    assert mn.network.id == net.id and mn.network.adopted
    assert mn.subnet.id == sn.id and mn.subnet.adopted and mn.subnet.extra["warnings"] == []
    # a second subnet of the same version makes the choice ambiguous
    sn2 = conn.network.create_subnet(name="seed-subnet-2", network_id=net.id, cidr=_cidr(), ip_version=4,
                                     project_id=pid)
    with pytest.raises(StepError) as ei:
        ensure(env, d)
    assert ei.value.reason == "Ambiguous" and sn.id in ei.value.message and sn2.id in ei.value.message


def test_network_id_not_found(env):
    d = net_desired(env.u, network_id=str(uuid.uuid4()))
    with pytest.raises(StepError) as ei:
        ensure(env, d)
    assert ei.value.reason == "NetworkNotFound" and d.network_id in ei.value.message
    assert list(env.conn.network.networks(project_id=env.project_id)) == []


def test_two_networks_with_the_name_are_ambiguous(env):
    conn, d = env.conn, net_desired(env.u)
    a = conn.network.create_network(name=d.name, project_id=env.project_id)
    b = conn.network.create_network(name=d.name, project_id=env.project_id)
    with pytest.raises(StepError) as ei:
        ensure(env, d)
    assert ei.value.reason == "Ambiguous" and a.id in ei.value.message and b.id in ei.value.message
    assert len(list(conn.network.networks(name=d.name))) == 2      # no third one, nothing deleted


def test_network_of_another_deployment_is_refused(env):
    conn, d = env.conn, net_desired(env.u)
    net = conn.network.create_network(name=d.name, project_id=env.project_id)
    conn.network.set_tags(net, owner_tags(OTHER_UID))
    with pytest.raises(StepError) as ei:
        ensure(env, d)
    assert ei.value.reason == "OwnedByAnotherDeployment" and OTHER_UID in ei.value.message


def test_subnet_with_another_cidr_is_a_mismatch(env):
    conn, d = env.conn, net_desired(env.u)
    mn = ensure(env, d)
    other = replace(d, cidr=_cidr(), allocation_pool=None)
    with pytest.raises(StepError) as ei:
        ensure(env, other)
    assert ei.value.reason == "SubnetMismatch" and mn.subnet.id in ei.value.message and other.cidr in ei.value.message
    assert ipaddress.ip_network(conn.network.get_subnet(mn.subnet.id).cidr) == ipaddress.ip_network(d.cidr)


def test_drift_is_repaired(env):
    conn, d = env.conn, net_desired(env.u)
    mn = ensure(env, d)
    amp_rules = {r.port_range_min: r for r in conn.network.security_group_rules(
        security_group_id=mn.amphora_sg.id, direction="ingress", protocol="tcp")}
    conn.network.delete_security_group_rule(amp_rules[9443])                       # a deleted rule
    intruder = conn.network.create_security_group_rule(                            # an extra ingress rule
        security_group_id=mn.health_manager_sg.id, direction="ingress", ether_type="IPv4", protocol="tcp",
        port_range_min=2222, port_range_max=2222, remote_ip_prefix="0.0.0.0/0")
    net = ipaddress.ip_network(d.cidr)
    conn.network.update_subnet(mn.subnet.id, allocation_pools=[{"start": str(net[10]), "end": str(net[20])}],
                               gateway_ip=str(net[1]))                            # a changed pool, a gateway

    fixed = ensure(env, d)
    assert not any(p.created for p in fixed.parts)
    assert rule_keys(conn, mn.amphora_sg.id) == want_keys(d.amphora_sg)
    assert rule_keys(conn, mn.health_manager_sg.id) == want_keys(d.health_manager_sg)
    sn = conn.network.get_subnet(mn.subnet.id)
    assert sn.allocation_pools == [{"start": d.allocation_pool[0], "end": d.allocation_pool[1]}]
    assert sn.gateway_ip is None
    text = "\n".join(fixed.changes)
    assert "9443" in text and intruder.id in text and "allocation pool" in text and "gateway" in text
    # Neutron's default egress rules were not touched
    assert {k[0] for k in rule_keys(conn, mn.health_manager_sg.id, "egress")} == {"IPv4", "IPv6"}
    with WriteCounter(conn) as w:
        assert ensure(env, d).changes == []
    assert w.writes == []


def test_spec_change_removes_our_rule_and_keeps_foreign_rules_on_adopted_group(env):
    """ssh turned off: our tcp/22 rule goes from the owned group; an adopted group keeps foreign extras."""
    conn, d = env.conn, net_desired(env.u, ssh=True)
    mn = ensure(env, d)
    assert ("IPv4", "tcp", 22, 22, d.cidr) in rule_keys(conn, mn.amphora_sg.id)
    no_ssh = net_desired(env.u, cidr=d.cidr, ssh=False)
    res = ensure(env, no_ssh)
    assert ("IPv4", "tcp", 22, 22, d.cidr) not in rule_keys(conn, mn.amphora_sg.id)
    assert any("22" in c for c in res.amphora_sg.changes)


def test_ports_join_leave_drift_and_binding(env, fake_agent_hosts):
    assert len(fake_agent_hosts) >= 3, "the loopback cloud needs three fake agent hosts"
    conn, d = env.conn, net_desired(env.u)
    mn = ensure(env, d)
    h0, h1, h2 = fake_agent_hosts[:3]
    n0, n1, n2, n3 = (f"{env.u}-node-{i}" for i in range(4))
    nodes = {n0: {HOST_ID_ANNOTATION: h0}}

    res = ensure_ports(env, mn, nodes)
    assert res.created == [n0] and res.deleted == []
    st = res.ports[n0]
    p = conn.network.get_port(st.port_id)
    assert p.name == f"octavia-health-manager-{n0}" and p.device_owner == HEALTH_MGR_DEVICE_OWNER
    assert p.device_id == p.name and p.binding_host_id == h0 and p.network_id == mn.network.id
    assert p.security_group_ids == [mn.health_manager_sg.id] and p.is_admin_state_up
    assert p.project_id == env.project_id
    assert [f["subnet_id"] for f in p.fixed_ips] == [mn.subnet.id]
    assert set(owner_tags(env.uid)) <= set(p.tags) and marker(env.uid) in p.description
    assert (st.mac, st.ip, st.host_id) == (p.mac_address, p.fixed_ips[0]["ip_address"], h0)
    assert ipaddress.ip_address(st.ip) in ipaddress.ip_network(d.cidr) and st.prefix_length == 24
    assert st.vif_type == p.binding_vif_type == "ovs" and st.bound and res.unbound == []

    with WriteCounter(conn) as w:
        again = ensure_ports(env, mn, nodes)
    assert w.writes == [] and not again.wrote and again.ports[n0].port_id == st.port_id

    # two nodes join at once: one bulk POST
    nodes.update({n1: {HOST_ID_ANNOTATION: h1}, n2: {HOST_ID_ANNOTATION: h2}})
    with WriteCounter(conn) as w:
        res = ensure_ports(env, mn, nodes)
    assert len(posts_to(w, "ports")) == 1, w.writes
    assert sorted(res.created) == [n1, n2] and all(res.ports[n].bound for n in (n0, n1, n2))
    assert len(list(conn.network.ports(network_id=mn.network.id, device_owner=HEALTH_MGR_DEVICE_OWNER))) == 3
    for n, h in ((n1, h1), (n2, h2)):
        q = conn.network.get_port(res.ports[n].port_id)
        assert q.binding_host_id == h and q.binding_vif_type == "ovs" and owner_tag(env.uid) in q.tags

    # drift: a deleted port is recreated; a changed host and security group are repaired
    conn.network.delete_port(res.ports[n1].port_id)
    conn.network.update_port(res.ports[n2].port_id, binding_host_id=h0,
                             security_group_ids=[mn.amphora_sg.id])
    fixed = ensure_ports(env, mn, nodes)
    assert fixed.created == [n1] and fixed.ports[n1].port_id != res.ports[n1].port_id
    q = conn.network.get_port(fixed.ports[n2].port_id)
    assert fixed.ports[n2].port_id == res.ports[n2].port_id
    assert q.binding_host_id == h2 and q.security_group_ids == [mn.health_manager_sg.id]
    assert any(n2 in c and "host" in c for c in fixed.changes)

    # a node whose host has no agent: created, not bound, reported
    nodes[n3] = {HOST_ID_ANNOTATION: f"{env.u}-no-agent"}
    res = ensure_ports(env, mn, nodes)
    assert res.created == [n3]
    assert res.ports[n3].bound is False and res.ports[n3].vif_type == "binding_failed"
    assert conn.network.get_port(res.ports[n3].port_id).binding_vif_type == "binding_failed"
    assert res.unbound == [n3]

    # a foreign health-manager port on the network is never ours to delete
    foreign = conn.network.create_port(name=f"{env.u}-foreign", network_id=mn.network.id,
                                       device_owner=HEALTH_MGR_DEVICE_OWNER, project_id=env.project_id)
    # nodes leave: their ports go, the rest stay
    left = {n0: nodes[n0]}
    ids = {n: s.port_id for n, s in res.ports.items()}
    res = ensure_ports(env, mn, left)
    assert sorted(res.deleted) == sorted(f"octavia-health-manager-{n} ({ids[n]})" for n in (n1, n2, n3))
    for n in (n1, n2, n3):
        assert gone(conn.network.get_port, ids[n])
    assert not gone(conn.network.get_port, ids[n0]) and not gone(conn.network.get_port, foreign.id)
    assert list(res.ports) == [n0]


def test_network_in_use_sees_foreign_ports_only(env, fake_agent_hosts):
    conn, d = env.conn, net_desired(env.u)
    mn = ensure(env, d)
    ensure_ports(env, mn, {f"{env.u}-n": {HOST_ID_ANNOTATION: fake_agent_hosts[0]}})
    assert nw.network_in_use(conn, mn.network.id, env.uid) == []
    amp = conn.network.create_port(name=f"{env.u}-amphora", network_id=mn.network.id, device_owner="compute:nova",
                                   device_id=str(uuid.uuid4()), project_id=env.project_id)
    used = nw.network_in_use(conn, mn.network.id, env.uid)
    assert len(used) == 1 and amp.id in used[0] and "compute:nova" in used[0]
    assert nw.network_in_use(conn, str(uuid.uuid4()), env.uid) == []


def test_delete_removes_exactly_the_owned_resources(env, fake_agent_hosts):
    conn, d = env.conn, net_desired(env.u)
    unrelated = conn.network.create_network(name=f"{env.u}-unrelated", project_id=env.project_id)
    unrelated_sn = conn.network.create_subnet(name=f"{env.u}-unrelated", network_id=unrelated.id, cidr=_cidr(),
                                              ip_version=4, project_id=env.project_id)
    mn = ensure(env, d)
    ports = ensure_ports(env, mn, {f"{env.u}-a": {HOST_ID_ANNOTATION: fake_agent_hosts[0]},
                                   f"{env.u}-b": {HOST_ID_ANNOTATION: fake_agent_hosts[1]}})
    port_ids = [s.port_id for s in ports.ports.values()]

    deleted = nw.delete_owned_network(conn, env.uid, network_id=mn.network.id, subnet_id=mn.subnet.id,
                                      security_group_ids=[mn.amphora_sg.id, mn.health_manager_sg.id],
                                      port_ids=port_ids)
    assert len(deleted) == 2 + 2 + 1 + 1
    for pid in port_ids:
        assert gone(conn.network.get_port, pid)
    assert gone(conn.network.get_security_group, mn.amphora_sg.id)
    assert gone(conn.network.get_security_group, mn.health_manager_sg.id)
    assert gone(conn.network.get_subnet, mn.subnet.id) and gone(conn.network.get_network, mn.network.id)
    assert not gone(conn.network.get_network, unrelated.id) and not gone(conn.network.get_subnet, unrelated_sn.id)
    # idempotent, also when status lost the IDs (found by tag)
    assert nw.delete_owned_network(conn, env.uid, network_id=mn.network.id, subnet_id=mn.subnet.id) == []
    assert nw.delete_owned_network(conn, env.uid) == []


def test_delete_finds_owned_resources_by_tag_without_ids(env):
    conn, d = env.conn, net_desired(env.u)
    mn = ensure(env, d)
    # another deployment's network in the same project survives
    theirs = conn.network.create_network(name=f"{env.u}-theirs", project_id=env.project_id,
                                         description=f"x {marker(OTHER_UID)}")
    conn.network.set_tags(theirs, owner_tags(OTHER_UID))
    deleted = nw.delete_owned_network(conn, env.uid)
    assert len(deleted) == 4
    assert gone(conn.network.get_network, mn.network.id) and gone(conn.network.get_subnet, mn.subnet.id)
    assert not gone(conn.network.get_network, theirs.id)


def test_crash_between_create_and_tagging_converges_as_owned(env):
    """Zed takes no tags in a POST: a crash right after it leaves our description marker only."""
    conn, d = env.conn, net_desired(env.u)
    net = conn.network.create_network(name=d.name, project_id=env.project_id,
                                      description=f"{nw.NETWORK_DESCRIPTION} {marker(env.uid)}")
    sg = conn.network.create_security_group(name=d.health_manager_sg.name, project_id=env.project_id,
                                            description=f"x {marker(env.uid)}")
    mn = ensure(env, d)
    assert mn.network.id == net.id and not mn.network.adopted and not mn.network.created
    assert mn.health_manager_sg.id == sg.id and not mn.health_manager_sg.adopted
    assert set(owner_tags(env.uid)) <= set(conn.network.get_network(net.id).tags)
    assert set(owner_tags(env.uid)) <= set(conn.network.get_security_group(sg.id).tags)
    assert any("tagged network" in c for c in mn.changes)
    assert len(list(conn.network.networks(name=d.name))) == 1
    with WriteCounter(conn) as w:
        ensure(env, d)
    assert w.writes == []


def test_adopted_port_is_reported_not_changed_nor_deleted(env, fake_agent_hosts):
    conn, d = env.conn, net_desired(env.u)
    mn = ensure(env, d)
    node = f"{env.u}-seed-node"
    seed = conn.network.create_port(name=f"octavia-health-manager-{node}", network_id=mn.network.id,
                                    device_owner=HEALTH_MGR_DEVICE_OWNER, binding_host_id=fake_agent_hosts[0],
                                    project_id=env.project_id, security_group_ids=[mn.health_manager_sg.id])
    res = ensure_ports(env, mn, {node: {HOST_ID_ANNOTATION: fake_agent_hosts[1]}})
    assert res.created == [] and res.ports[node].port_id == seed.id and res.ports[node].adopted
    assert any(seed.id in w and "host" in w for w in res.warnings)
    assert conn.network.get_port(seed.id).binding_host_id == fake_agent_hosts[0]
    assert owner_tag(env.uid) not in (conn.network.get_port(seed.id).tags or [])
    res = ensure_ports(env, mn, {})
    assert res.deleted == [] and not gone(conn.network.get_port, seed.id)
    # it is not ours: deletion must wait for it (the caller checks network_in_use first)
    assert [u for u in nw.network_in_use(conn, mn.network.id, env.uid) if seed.id in u]


def test_full_allocation_pool_is_reported_to_the_user(env, fake_agent_hosts):
    d = net_desired(env.u)
    net = ipaddress.ip_network(d.cidr)
    d = replace(d, allocation_pool=(str(net[2]), str(net[3])))       # room for two ports
    mn = ensure(env, d)
    nodes = {f"{env.u}-n{i}": {HOST_ID_ANNOTATION: fake_agent_hosts[0]} for i in range(3)}
    with pytest.raises(StepError) as ei:
        ensure_ports(env, mn, nodes)
    assert ei.value.reason == "AllocationPoolExhausted" and mn.subnet.id in ei.value.message
    # the bulk create is all or nothing: no half-made set of ports
    assert list(env.conn.network.ports(network_id=mn.network.id, device_owner=HEALTH_MGR_DEVICE_OWNER)) == []


class LoseResponses:
    """Let the cloud do the first POST to each named collection, then answer the client 503 instead
    (a lost response, the worst case of a transient error: the write happened, the caller can't know)."""

    def __init__(self, conn, *collections: str):
        self.conn, self.pending = conn, set(collections)

    def __enter__(self):
        session = self.conn.session
        self._orig = orig = session.request

        def request(url, method, *args, **kwargs):
            resp = orig(url, method, *args, **kwargs)
            hit = next((c for c in self.pending if str(url).rstrip("/").endswith("/" + c)), None)
            if method.upper() == "POST" and hit:
                self.pending.discard(hit)
                fake = requests.Response()
                fake.status_code, fake.url, fake.request = 503, resp.url, resp.request
                fake.headers["Content-Type"] = "application/json"
                fake._content = b'{"NeutronError": {"type": "Injected", "message": "injected 503", "detail": ""}}'
                return fake
            return resp

        session.request = request
        return self

    def __exit__(self, *exc):
        self.conn.session.request = self._orig


def test_lost_responses_converge_without_duplicates(env, fake_agent_hosts):
    conn, d = env.conn, net_desired(env.u)
    with LoseResponses(conn, "networks"):
        with pytest.raises(TransientError):
            ensure(env, d)
    mn = ensure(env, d)                       # the retry finds the network it made, by name, as its own
    assert not mn.network.adopted and not mn.network.created
    assert len(list(conn.network.networks(name=d.name))) == 1
    assert set(owner_tags(env.uid)) <= set(conn.network.get_network(mn.network.id).tags)

    nodes = {f"{env.u}-n{i}": {HOST_ID_ANNOTATION: fake_agent_hosts[i]} for i in range(2)}
    with LoseResponses(conn, "ports"):
        with pytest.raises(TransientError):
            ensure_ports(env, mn, nodes)
    res = ensure_ports(env, mn, nodes)
    assert res.created == [] and sorted(res.ports) == sorted(nodes)
    assert len(list(conn.network.ports(network_id=mn.network.id, device_owner=HEALTH_MGR_DEVICE_OWNER))) == 2
    for st in res.ports.values():
        assert owner_tag(env.uid) in conn.network.get_port(st.port_id).tags and st.bound
    with WriteCounter(conn) as w:
        ensure(env, d)
        ensure_ports(env, mn, nodes)
    assert w.writes == []
