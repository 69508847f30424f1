"""Issue 3 end to end: the operator's reconcile provisions every OpenStack resource of the manual
install in the real loopback cloud, through the real Kubernetes layer against a real API server
(tests/kube: kwok nodes), as the chart's ServiceAccount.

Everything is checked with plain openstacksdk calls, not with the operator's own code.
"""
from __future__ import annotations

import base64

import pytest

from octd_helpers import REF, env, image_url  # noqa: F401 - fixtures
from oscount import WriteCounter
from octavia_operator import handlers
from octavia_operator import errors
from octavia_operator.steps import runner as r
from octavia_operator.steps import cloud as cloud_steps

pytestmark = [pytest.mark.openstack, pytest.mark.kube]



def test_creates_every_resource_then_a_second_reconcile_writes_nothing(env):
    conds = env.converge()
    ctx = env.context()
    for t in ("SpecValid", "CloudReachable", "ServiceProjectReady", "IdentityReady", "AmphoraImageReady",
              "AmphoraFlavorReady", "SSHKeypairReady", "ManagementNetworkReady", "HealthManagerPortsReady",
              "QuotasReady", "Ready"):
        assert conds[t]["status"] == "True", (t, conds[t])
    ids = env.ids()
    os_ = env.os
    sfx = env.sfx

    # identity: the service user with admin on the service project
    user = os_.identity.find_user(f"octavia-{sfx}", domain_id="default")
    project = os_.identity.find_project("service", domain_id="default")
    assert user.id == ids["serviceUserId"] and project.id == ids["serviceProjectId"]
    assert os_.identity.validate_user_has_project_role(project, user, os_.identity.find_role("admin"))
    for role in ("load-balancer_observer", "load-balancer_global_observer", "load-balancer_member",
                 "load-balancer_quota_admin", "load-balancer_admin"):
        assert os_.identity.find_role(role) is not None
    # the service user's password is in a Secret owned by the deployment, and it works
    secret = env.kube_api.get("secrets", "octavia-keystone", env.ns)
    assert secret["metadata"]["ownerReferences"][0]["uid"] == ctx.uid
    from octavia_operator.backends.openstack import compute
    svc_conn = compute.connect_as(os_, f"octavia-{sfx}", base64.b64decode(secret["data"]["password"]).decode(),
                                  "service", "Default", "Default")
    svc_conn.authorize()

    # image: private, tagged, owned by the service project
    img = os_.image.get_image(ids["imageId"])
    assert img.status == "active" and img.visibility == "private"
    assert f"amphora-{sfx}" in img.tags and img.owner == project.id == ids["imageOwnerId"]

    # flavor: private, usable by the service project
    flv = os_.compute.get_flavor(ids["flavorId"])
    assert flv.is_public is False and (flv.vcpus, flv.ram, flv.disk) == (1, 512, 1)
    assert project.id in [a["tenant_id"] for a in os_.compute.get_flavor_access(flv)]

    # key pair: registered for the service user, not the admin
    assert svc_conn.compute.get_keypair(f"octavia-ssh-{sfx}").name == f"octavia-ssh-{sfx}"
    assert os_.compute.find_keypair(f"octavia-ssh-{sfx}") is None

    # network: no gateway, the pool, DHCP for amphorae
    net = os_.network.get_network(ids["networkId"])
    sub = os_.network.get_subnet(ids["subnetId"])
    assert net.name == f"lb-mgmt-net-{sfx}" and sub.gateway_ip is None and sub.is_dhcp_enabled
    assert sub.allocation_pools == [{"start": sub.cidr.replace("0/24", "10"), "end": sub.cidr.replace("0/24", "200")}]
    assert ids["networkMTU"] == net.mtu

    # security groups: exactly the rules asked for (ICMP, 9443, 22 with ssh; UDP 5555)
    def ingress(sg_id):
        return sorted((x.protocol, x.port_range_min) for x in os_.network.security_group_rules(security_group_id=sg_id)
                      if x.direction == "ingress")
    assert ingress(ids["amphoraSecurityGroupId"]) == [("icmp", None), ("tcp", 22), ("tcp", 9443)]
    assert ingress(ids["healthManagerSecurityGroupId"]) == [("udp", 5555)]

    # one bound health-manager port per selected node (worker-0 is not selected)
    hm = env.cr()["status"]["healthManagerPorts"]
    assert sorted(hm) == ["node-0", "node-1"]
    for node_name, info in hm.items():
        port = os_.network.get_port(info["portId"])
        assert port.name == f"octavia-health-manager-{node_name}"
        assert port.device_owner == "Octavia:health-mgr" and port.binding_host_id == node_name
        assert port.binding_vif_type == "ovs" and port.security_group_ids == [ids["healthManagerSecurityGroupId"]]
        assert info["ip"] == port.fixed_ips[0]["ip_address"] and info["mac"] == port.mac_address

    # converged: the next reconcile writes nothing, in OpenStack or in Kubernetes
    conn = env.conn()
    env.kube.writes.entries.clear()
    with WriteCounter(conn) as w:
        out2, _ = env.reconcile()
    assert w.writes == []
    assert env.kube.writes.entries == []
    assert out2.status_patch == {}


def test_drift_is_repaired_with_an_event(env):
    env.reconcile_until(lambda: env.conditions()["HealthManagerPortsReady"]["status"] == "True")
    ids = env.ids()
    os_ = env.os
    rule = next(x for x in os_.network.security_group_rules(security_group_id=ids["amphoraSecurityGroupId"])
                if x.direction == "ingress" and x.port_range_min == 9443)
    os_.network.delete_security_group_rule(rule)
    os_.network.delete_port(env.cr()["status"]["healthManagerPorts"]["node-1"]["portId"])
    cidr = os_.network.get_subnet(ids["subnetId"]).cidr
    os_.network.update_subnet(ids["subnetId"], allocation_pools=[{"start": cidr.replace("0/24", "50"),
                                                                  "end": cidr.replace("0/24", "60")}])
    events = env.reconcile_until(lambda: env.conditions()["HealthManagerPortsReady"]["status"] == "True" and any(
        x.port_range_min == 9443 for x in os_.network.security_group_rules(
            security_group_id=ids["amphoraSecurityGroupId"])))
    assert any(e[1] == "Reconciled" for e in events), events
    assert any(x.port_range_min == 9443 for x in os_.network.security_group_rules(
        security_group_id=ids["amphoraSecurityGroupId"]))
    hm = env.cr()["status"]["healthManagerPorts"]
    assert os_.network.get_port(hm["node-1"]["portId"]).binding_host_id == "node-1"
    sub = os_.network.get_subnet(ids["subnetId"])
    assert sub.allocation_pools[0]["start"].endswith(".10") and sub.allocation_pools[0]["end"].endswith(".200")
    assert env.conditions()["ManagementNetworkReady"]["status"] == "True"


def test_nodes_joining_and_leaving_get_and_lose_ports(env):
    env.reconcile_until(lambda: env.conditions()["HealthManagerPortsReady"]["status"] == "True")
    os_ = env.os
    before = env.cr()["status"]["healthManagerPorts"]
    env.nodes.add("node-2")
    env.kube_api.patch("nodes", "node-0", {"metadata": {"labels": {"node-role.kubernetes.io/control-plane": None}}})
    env.reconcile_until(lambda: sorted(env.cr()["status"]["healthManagerPorts"]) == ["node-1", "node-2"])
    after = env.cr()["status"]["healthManagerPorts"]
    assert sorted(after) == ["node-1", "node-2"]
    assert os_.network.find_port(before["node-0"]["portId"]) is None
    assert os_.network.get_port(after["node-2"]["portId"]).binding_vif_type == "ovs"
    assert after["node-1"]["portId"] == before["node-1"]["portId"]


def test_a_node_without_an_l2_agent_is_reported_by_name(env):
    env.nodes.add("no-agent-here")
    env.reconcile_until(lambda: env.conditions()["HealthManagerPortsReady"]["reason"] == "PortBindingFailed")
    cond = env.conditions()["HealthManagerPortsReady"]
    assert cond["status"] == "False" and cond["reason"] == "PortBindingFailed"
    assert "no-agent-here" in cond["message"] and "node-0" not in cond["message"]
    assert env.cr()["status"]["healthManagerPorts"]["no-agent-here"]["vifType"] == "binding_failed"


def test_the_host_id_annotation_overrides_the_node_name(env):
    env.nodes.add("k8s-name-differs", annotations={"octavia-operator.dev/neutron-host": "node-2"})
    env.reconcile_until(lambda: "k8s-name-differs" in (env.cr()["status"].get("healthManagerPorts") or {}))
    hm = env.cr()["status"]["healthManagerPorts"]["k8s-name-differs"]
    assert hm["hostId"] == "node-2" and hm["vifType"] == "ovs"


def test_adopts_a_hand_made_installation_without_duplicates(env):
    """Resources created the manual install's way, by name, before the operator runs."""
    os_ = env.os
    sfx = env.sfx
    spec = env.cr()["spec"]
    project = os_.identity.find_project("service", domain_id="default")
    net = os_.network.create_network(name=f"lb-mgmt-net-{sfx}", project_id=project.id)
    env.extra_cleanup.append(lambda: os_.network.delete_network(net))
    cidr = spec["managementNetwork"]["cidr"]
    sub = os_.network.create_subnet(network_id=net.id, name=f"lb-mgmt-subnet-{sfx}", ip_version=4, cidr=cidr,
                                    gateway_ip=None, project_id=project.id,
                                    allocation_pools=[spec["managementNetwork"]["allocationPool"]])
    env.extra_cleanup.append(lambda: os_.network.delete_subnet(sub))
    sg = os_.network.create_security_group(name=f"lb-mgmt-sec-grp-{sfx}", project_id=project.id)
    env.extra_cleanup.append(lambda: os_.network.delete_security_group(sg))
    flv = os_.compute.create_flavor(name=f"amphora-{sfx}", ram=512, vcpus=1, disk=1, is_public=True)
    env.extra_cleanup.append(lambda: os_.compute.delete_flavor(flv))

    env.reconcile_until(lambda: env.conditions()["ManagementNetworkReady"]["status"] == "True"
                        and env.conditions()["AmphoraFlavorReady"]["status"] == "True")
    ids = env.ids()
    assert ids["networkId"] == net.id and ids["subnetId"] == sub.id
    assert ids["amphoraSecurityGroupId"] == sg.id and ids["flavorId"] == flv.id
    assert len(list(os_.network.networks(name=f"lb-mgmt-net-{sfx}"))) == 1
    assert len(list(os_.network.security_groups(name=f"lb-mgmt-sec-grp-{sfx}"))) == 1
    assert len([f for f in os_.compute.flavors(is_public=None) if f.name == f"amphora-{sfx}"]) == 1
    # and the adopted resources survive deletion of the deployment (teardown in the fixture)
    ctx = env.context()
    from octavia_operator.spec import parse_spec
    ctx.spec = parse_spec(ctx.raw_spec)
    ctx.out.cloud = handlers.cloud_from_secret(ctx)
    cloud_steps.teardown(ctx)
    assert os_.network.get_network(net.id) and os_.network.get_security_group(sg.id)
    assert os_.compute.get_flavor(flv.id)


def test_takes_over_a_running_octavia_without_breaking_it(env, os_cloud_config):
    """The seed, re-enacted: the loopback cloud runs an Octavia API installed by hand, under the Keystone
    user `octavia` with a password of its own, behind the `load-balancer` service and its endpoints. The
    operator, told to use that user, refuses to touch its password until it is given (nothing written,
    the running API keeps answering), then adopts it with that password and leaves the catalog as it is."""
    import pathlib
    os_ = env.os
    seed_pw = (pathlib.Path(os_cloud_config["base"]) / "secrets" / "service-users.password").read_bytes().strip()
    user = os_.identity.find_user("octavia", domain_id="default")
    [svc] = [x for x in os_.identity.services() if x.type == "load-balancer"]
    catalog = sorted((e.interface, e.url) for e in os_.identity.endpoints(service_id=svc.id))

    def running_api_answers() -> bool:
        list(os_.load_balancer.load_balancers())   # raises on 401/503 from its keystonemiddleware
        return True

    assert running_api_answers()
    spec = {"identity": {"serviceUser": "octavia", "endpoints": {"public": None, "internal": None, "admin": None}}}
    env.kube_api.patch(REF, "octavia", {"spec": spec}, env.ns)
    with WriteCounter(os_) as w:
        env.reconcile()
    # checked with the other inputs of the identity, before the project is made or anything else runs
    cond = env.conditions()["ServiceProjectReady"]
    assert (cond["status"], cond["reason"]) == ("False", "ServiceUserPasswordUnknown"), cond
    assert env.conditions()["IdentityReady"]["reason"] == "Waiting"
    assert w.writes == []
    assert running_api_answers()

    env.kube_api.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "seed-octavia", "namespace": env.ns},
                         "data": {"password": base64.b64encode(seed_pw).decode()}})
    env.kube_api.patch(REF, "octavia", {"spec": {"identity": {"passwordSecret": {"name": "seed-octavia",
                                                                                 "key": "password"}}}}, env.ns)
    env.reconcile_until(lambda: env.conditions()["IdentityReady"]["status"] == "True")
    cond = env.conditions()["IdentityReady"]
    assert env.ids()["serviceUserId"] == user.id and env.ids()["serviceId"] == svc.id
    assert "adopted" in cond["message"] and "user octavia" in cond["message"]
    # the catalog is untouched: the in-cluster URLs the spec now implies are not written over it
    assert sorted((e.interface, e.url) for e in os_.identity.endpoints(service_id=svc.id)) == catalog
    assert "left as it is" in cond["message"]
    assert base64.b64decode(env.kube_api.get("secrets", "octavia-keystone", env.ns)["data"]["password"]) == seed_pw
    assert running_api_answers()
    # and nothing of the seed's goes with the deployment (the fixture's teardown runs under Delete)


def test_delete_removes_exactly_what_the_deployment_owns(env):
    os_ = env.os
    unrelated = os_.network.create_network(name=f"unrelated-{env.sfx}")
    env.extra_cleanup.append(lambda: os_.network.delete_network(unrelated))
    env.reconcile_until(lambda: env.conditions()["HealthManagerPortsReady"]["status"] == "True")
    ids = env.ids()
    hm = env.cr()["status"]["healthManagerPorts"]
    ctx = env.context()
    from octavia_operator.spec import parse_spec
    ctx.spec = parse_spec(ctx.raw_spec)
    ctx.out.cloud = handlers.cloud_from_secret(ctx)
    done = cloud_steps.teardown(ctx)
    assert done
    assert os_.network.find_network(ids["networkId"]) is None
    for p in hm.values():
        assert os_.network.find_port(p["portId"]) is None
    assert os_.network.find_security_group(ids["amphoraSecurityGroupId"]) is None
    assert os_.compute.find_flavor(ids["flavorId"]) is None
    assert os_.image.find_image(ids["imageId"]) is None
    assert os_.identity.find_user(f"octavia-{env.sfx}", domain_id="default") is None
    # not ours: survives
    assert os_.network.get_network(unrelated.id)
    assert os_.identity.find_project("service", domain_id="default") is not None
    lb = [s for s in os_.identity.services() if s.type == "load-balancer"]
    assert len(lb) == 1, "the adopted load-balancer service of the cloud must survive"
    # a second teardown finds nothing more to do
    assert cloud_steps.teardown(ctx) == []


def test_delete_is_refused_while_amphorae_use_the_network(env):
    os_ = env.os
    env.reconcile_until(lambda: env.conditions()["HealthManagerPortsReady"]["status"] == "True")
    ids = env.ids()
    amp = os_.network.create_port(network_id=ids["networkId"], name=f"amphora-{env.sfx}",
                                  device_owner="compute:nova")
    env.extra_cleanup.append(lambda: os_.network.delete_port(amp))
    ctx = env.context()
    from octavia_operator.spec import parse_spec
    ctx.spec = parse_spec(ctx.raw_spec)
    ctx.out.cloud = handlers.cloud_from_secret(ctx)
    with pytest.raises(errors.StepError) as err:
        cloud_steps.teardown(ctx)
    assert err.value.reason == "DeletionBlocked"
    assert amp.id in err.value.message or f"amphora-{env.sfx}" in err.value.message
    assert os_.network.get_network(ids["networkId"])
    os_.network.delete_port(amp)


def test_transient_503s_lead_to_convergence_without_duplicates(env, os_cloud_config):
    from cloud.proxy import ProxiedCloud
    proxied = ProxiedCloud(env.os, os_cloud_config["clouds_yaml"], os_cloud_config["cloud"])
    try:
        data = proxied.clouds_yaml("admin-cloud")
        env.kube_api.patch("secrets", "openstack-admin",
                           {"data": {"clouds.yaml": base64.b64encode(data).decode()}}, env.ns)
        # Neutron answers 503 to every write for a while: the network step fails transiently ...
        proxied.fail("network", status=503, methods={"POST", "PUT", "DELETE"}, count=3)
        out, _ = env.reconcile()
        assert out.transient
        cond = env.conditions()["ManagementNetworkReady"]
        assert cond["status"] == "False" and cond["reason"] == "CloudError"
        # ... and retries converge, with exactly one of everything
        for _ in range(5):
            out, _ = env.reconcile()
            if not out.transient:
                break
        assert env.conditions()["HealthManagerPortsReady"]["status"] == "True"
        sfx = env.sfx
        assert len(list(env.os.network.networks(name=f"lb-mgmt-net-{sfx}"))) == 1
        assert len(list(env.os.network.subnets(name=f"lb-mgmt-subnet-{sfx}"))) == 1
        assert len(list(env.os.network.security_groups(name=f"lb-mgmt-sec-grp-{sfx}"))) == 1
        for n_ in ("node-0", "node-1"):
            assert len(list(env.os.network.ports(name=f"octavia-health-manager-{n_}",
                                                 network_id=env.ids()["networkId"]))) == 1
        assert proxied.proxies["network"].injected() >= 1
    finally:
        proxied.heal()
        env.kube_api.patch("secrets", "openstack-admin",
                           {"data": {"clouds.yaml": base64.b64encode(env.clouds_yaml).decode()}}, env.ns)
        proxied_stop = proxied.stop
        env.extra_cleanup.append(proxied_stop)


def test_an_overlap_with_cluster_networks_is_reported(env):
    cidr = env.cr()["spec"]["managementNetwork"]["cidr"]
    env.kube_api.patch("octaviadeployments.octavia-operator.dev", "octavia",
                       {"spec": {"managementNetwork": {"avoidCIDRs": ["10.96.0.0/12", cidr.replace("0/24", "0/16")]}}},
                       env.ns)
    events = env.reconcile_until(
        lambda: env.conditions()["ManagementNetworkReady"]["reason"] == "CIDROverlap")
    cond = env.conditions()["ManagementNetworkReady"]
    assert cond["status"] == "True" and cond["reason"] == "CIDROverlap"
    assert cidr.replace("0/24", "0/16") in cond["message"] and "10.96.0.0/12" not in cond["message"]
    assert any(e[1] == "CIDROverlap" for e in events)
