"""openstack/compute.py (flavor, key pair) and openstack/quotas.py against the real loopback Nova
and Neutron (tests/cloud), checked with plain openstacksdk calls."""
from __future__ import annotations

import secrets
import uuid

import pytest
from oscount import WriteCounter

from octavia_operator.builders.cloud import FlavorDesired
from octavia_operator.backends.openstack import compute as cp
from octavia_operator.backends.openstack import quotas as qt
from octavia_operator.backends.openstack.common import marker
from octavia_operator.errors import StepError

cloud = pytest.mark.openstack


@pytest.fixture
def uid() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def project(os_cloud, unique_name):
    p = os_cloud.identity.create_project(name=unique_name + "-proj", domain_id="default",
                                         description="test project of tests/test_os_compute.py")
    yield p
    for cleanup in (os_cloud.compute.revert_quota_set, os_cloud.network.delete_quota):
        try:
            cleanup(p.id)
        except Exception:  # noqa: BLE001 - no quota row: nothing to clean
            pass
    os_cloud.identity.delete_project(p, ignore_missing=True)


@pytest.fixture
def flavors(os_cloud, uid, unique_name):
    """Delete, at the end, every flavor named after the test or carrying its uid's marker."""
    yield
    for f in os_cloud.compute.flavors(details=True, is_public=None):
        if (f.name or "").startswith(unique_name) or marker(uid) in (f.description or ""):
            os_cloud.compute.delete_flavor(f, ignore_missing=True)


@pytest.fixture
def service_user(os_cloud, project, unique_name):
    """A user with a password and the member role on `project`, like the Octavia service user."""
    password = secrets.token_urlsafe(24)
    user = os_cloud.identity.create_user(name=unique_name + "-svc", password=password, domain_id="default",
                                         default_project_id=project.id)
    role = os_cloud.identity.find_role("member", ignore_missing=False)
    os_cloud.identity.assign_project_role_to_user(project, user, role)
    yield user, password
    os_cloud.identity.delete_user(user, ignore_missing=True)


def flavor_desired(name: str, flavor_id: str | None = None, vcpus: int = 1, ram: int = 1024,
                   disk: int = 5) -> FlavorDesired:
    return FlavorDesired(flavor_id=flavor_id, name=name, vcpus=vcpus, ram_mb=ram, disk_gb=disk)


def access(conn, flavor_id: str) -> set[str]:
    return {a["tenant_id"] for a in conn.compute.get_flavor_access(flavor_id)}


def named(conn, name: str) -> list:
    return [f for f in conn.compute.flavors(details=True, is_public=None) if f.name == name]


# ------------------------------------------------------------------------------------------
# flavor

@cloud
def test_flavor_created_private_marked_with_access_then_converged(os_cloud, flavors, uid, unique_name, project):
    d = flavor_desired(unique_name, vcpus=2, ram=1536, disk=7)
    res = cp.ensure_flavor(os_cloud, d, uid, project.id)
    assert res.created and not res.adopted
    f = os_cloud.compute.get_flavor(res.id)
    assert (f.name, f.vcpus, f.ram, f.disk, f.is_public) == (unique_name, 2, 1536, 7, False)
    assert marker(uid) in f.description
    assert access(os_cloud, res.id) == {project.id}
    assert any("access" in c for c in res.changes)
    with WriteCounter(os_cloud) as w:
        again = cp.ensure_flavor(os_cloud, d, uid, project.id)
    assert w.writes == []
    assert (again.id, again.created, again.changes) == (res.id, False, [])
    assert len(named(os_cloud, unique_name)) == 1


@cloud
def test_flavor_access_is_repaired(os_cloud, flavors, uid, unique_name, project):
    d = flavor_desired(unique_name)
    res = cp.ensure_flavor(os_cloud, d, uid, project.id)
    os_cloud.compute.flavor_remove_tenant_access(res.id, project.id)
    assert access(os_cloud, res.id) == set()
    again = cp.ensure_flavor(os_cloud, d, uid, project.id)
    assert again.id == res.id and not again.created and len(again.changes) == 1
    assert access(os_cloud, res.id) == {project.id}


@cloud
def test_hand_made_flavor_is_adopted_by_name_no_duplicate(os_cloud, flavors, uid, unique_name, project):
    hand = os_cloud.compute.create_flavor(name=unique_name, vcpus=1, ram=512, disk=2, is_public=False)
    d = flavor_desired(unique_name, vcpus=1, ram=1024, disk=2)
    res = cp.ensure_flavor(os_cloud, d, uid, project.id)
    assert res.adopted and not res.created and res.id == hand.id
    assert len(named(os_cloud, unique_name)) == 1
    f = os_cloud.compute.get_flavor(hand.id)
    assert (f.vcpus, f.ram, f.disk) == (1, 512, 2)         # sizing reported, never changed
    assert any("ram" in w and "512" in w for w in res.extra["warnings"])
    assert access(os_cloud, hand.id) == {project.id}        # access repaired on adopted private flavors
    with WriteCounter(os_cloud) as w:
        assert cp.ensure_flavor(os_cloud, d, uid, project.id).changes == []
    assert w.writes == []
    assert cp.delete_owned_flavor(os_cloud, uid, hand.id) is False
    assert os_cloud.compute.find_flavor(hand.id, ignore_missing=True) is not None


@cloud
def test_flavor_by_id(os_cloud, flavors, uid, unique_name, project):
    hand = os_cloud.compute.create_flavor(name=unique_name + "-byid", vcpus=1, ram=256, disk=1, is_public=True)
    with WriteCounter(os_cloud) as w:
        res = cp.ensure_flavor(os_cloud, flavor_desired(unique_name, flavor_id=hand.id), uid, project.id)
    assert w.writes == []        # public: no access list to manage
    assert res.adopted and res.id == hand.id and not res.created
    assert named(os_cloud, unique_name) == []
    with pytest.raises(StepError) as e:
        cp.ensure_flavor(os_cloud, flavor_desired(unique_name, flavor_id=str(uuid.uuid4())), uid, project.id)
    assert e.value.reason == "FlavorNotFound"


@cloud
def test_flavor_of_another_deployment_is_refused(os_cloud, flavors, uid, unique_name, project):
    os_cloud.compute.create_flavor(name=unique_name, vcpus=1, ram=256, disk=1, is_public=False,
                                   description=f"x {marker(str(uuid.uuid4()))}")
    with pytest.raises(StepError) as e:
        cp.ensure_flavor(os_cloud, flavor_desired(unique_name), uid, project.id)
    assert e.value.reason == "OwnedByAnotherDeployment"


@cloud
def test_owned_flavor_with_new_sizing_is_replaced_and_deleted(os_cloud, flavors, uid, unique_name, project):
    first = cp.ensure_flavor(os_cloud, flavor_desired(unique_name, ram=1024), uid, project.id)
    second = cp.ensure_flavor(os_cloud, flavor_desired(unique_name, ram=2048), uid, project.id)
    assert second.created and second.id != first.id and any("replaced" in c for c in second.changes)
    assert [f.ram for f in named(os_cloud, unique_name)] == [2048]
    assert access(os_cloud, second.id) == {project.id}
    assert cp.delete_owned_flavor(os_cloud, uid, second.id) is True
    assert named(os_cloud, unique_name) == []
    assert cp.delete_owned_flavor(os_cloud, uid, second.id) is False   # already gone: fine


# ------------------------------------------------------------------------------------------
# key pair

def test_generated_key_pair_is_rsa_openssh_with_the_comment():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    private, public = cp.generate_ssh_keypair(cp.keypair_comment("abc"))
    assert private.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    key = serialization.load_ssh_private_key(private, password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 3072
    derived = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert public == derived.decode() + " octavia-operator:owner=abc"
    assert cp.generate_ssh_keypair()[1] != public


@cloud
def test_keypair_registered_for_the_service_user(os_cloud, service_user, project, unique_name, uid):
    user, password = service_user
    svc = cp.connect_as(os_cloud, user.name, password, project.name, "Default", "Default")
    name = unique_name + "-key"
    _, public = cp.generate_ssh_keypair(cp.keypair_comment(uid))
    try:
        res = cp.ensure_keypair(svc, name, public)
        assert res.created and res.id == name and res.extra["user_id"] == user.id
        # as the admin sees it: the service user's key pair, not the admin's
        kp = os_cloud.compute.get_keypair(name, user_id=user.id)
        assert kp.user_id == user.id and kp.public_key.split()[:2] == public.split()[:2]
        assert os_cloud.compute.find_keypair(name, ignore_missing=True) is None
        with WriteCounter(svc) as w:
            again = cp.ensure_keypair(svc, name, public)
        assert w.writes == [] and not again.wrote
        # the Secret was regenerated: our old key is replaced
        _, public2 = cp.generate_ssh_keypair(cp.keypair_comment(uid))
        rep = cp.ensure_keypair(svc, name, public2)
        assert not rep.created and any("replaced" in c for c in rep.changes)
        assert os_cloud.compute.get_keypair(name, user_id=user.id).public_key.split()[:2] == public2.split()[:2]
        # someone else's key under that name: a conflict, left alone
        _, foreign = cp.generate_ssh_keypair(cp.keypair_comment(str(uuid.uuid4())))
        with pytest.raises(StepError) as e:
            cp.ensure_keypair(svc, name, foreign)
        assert e.value.reason == "KeypairConflict"
        assert os_cloud.compute.get_keypair(name, user_id=user.id).public_key.split()[:2] == public2.split()[:2]
        # deletion only with our key
        assert cp.delete_keypair(svc, name, public) is False
        assert cp.delete_keypair(svc, name, public2) is True
        assert svc.compute.find_keypair(name, ignore_missing=True) is None
        assert cp.delete_keypair(svc, name, public2) is False
    finally:
        os_cloud.compute.delete_keypair(name, ignore_missing=True, user_id=user.id)
        svc.close()


@cloud
def test_keypair_not_ours_is_a_conflict(os_cloud, service_user, project, unique_name, uid):
    user, password = service_user
    svc = cp.connect_as(os_cloud, user.name, password, project.name, "Default", "Default")
    name = unique_name + "-key"
    _, hand = cp.generate_ssh_keypair()              # registered by hand, no marker
    svc.compute.create_keypair(name=name, public_key=hand)
    try:
        _, ours = cp.generate_ssh_keypair(cp.keypair_comment(uid))
        with pytest.raises(StepError) as e:
            cp.ensure_keypair(svc, name, ours)
        assert e.value.reason == "KeypairConflict"
        # the same key as the hand-made one is simply used
        assert cp.ensure_keypair(svc, name, hand).wrote is False
    finally:
        os_cloud.compute.delete_keypair(name, ignore_missing=True, user_id=user.id)
        svc.close()


# ------------------------------------------------------------------------------------------
# quotas

@cloud
def test_quotas_set_only_given_keys_and_idempotent(os_cloud, project):
    before_nova = os_cloud.compute.get_quota_set(project.id)
    before_net = os_cloud.network.get_quota(project.id)
    want = {"instances": before_nova.instances + 7, "cores": before_nova.cores + 3, "ramMB": 123456,
            "serverGroups": 17, "serverGroupMembers": 19, "ports": 321, "securityGroups": 23,
            "securityGroupRules": 234}
    res = qt.ensure_quotas(os_cloud, project.id, want)
    assert len(res.changes) == 8
    nova = os_cloud.compute.get_quota_set(project.id)
    net = os_cloud.network.get_quota(project.id)
    assert (nova.instances, nova.cores, nova.ram, nova.server_groups, nova.server_group_members) == (
        want["instances"], want["cores"], 123456, 17, 19)
    assert (net.ports, net.security_groups, net.security_group_rules) == (321, 23, 234)
    assert nova.key_pairs == before_nova.key_pairs and net.networks == before_net.networks   # untouched
    with WriteCounter(os_cloud) as w:
        assert qt.ensure_quotas(os_cloud, project.id, want).changes == []
    assert w.writes == []
    # only the given keys are written
    with WriteCounter(os_cloud) as w:
        res = qt.ensure_quotas(os_cloud, project.id, {"ports": 400, "instances": None})
    assert res.changes == ["neutron ports: 321 -> 400"] and len(w.writes) == 1
    assert os_cloud.network.get_quota(project.id).ports == 400
    assert os_cloud.compute.get_quota_set(project.id).instances == want["instances"]
    assert qt.ensure_quotas(os_cloud, project.id, {}).changes == []
    with pytest.raises(StepError) as e:
        qt.ensure_quotas(os_cloud, project.id, {"floatingIPs": 3})
    assert e.value.reason == "InvalidQuota"
