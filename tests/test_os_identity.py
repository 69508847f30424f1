"""openstack/identity.py against the real loopback Keystone (tests/cloud).

Every test works on its own names: a unique user, project, service TYPE (never the cloud's own
``load-balancer`` service), and unique variants of the five ``load-balancer_*`` role names, and
removes all it made at teardown. Properties are checked with plain openstacksdk/keystoneauth
calls, not with the module under test.
"""
from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import replace

import pytest
from keystoneauth1 import exceptions as ka
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3 as ks_v3

from octavia_operator.builders.cloud import LB_ROLES, IdentityDesired
from octavia_operator.backends.openstack import identity
from octavia_operator.backends.openstack.common import marker
from octavia_operator.errors import StepError, TransientError
from oscount import WriteCounter

pytestmark = pytest.mark.openstack

# this module's own deployment UIDs (deletion acts on everything marked with UID: never share it)
UID = str(uuid.uuid4())
OTHER_UID = str(uuid.uuid4())


def _pw() -> str:
    return "pw-" + secrets.token_urlsafe(24)


def _auth_ok(cfg: dict, user: str, password: str, project: str | None = None) -> bool:
    """Plain keystoneauth: can `user` get a token (project-scoped when `project` is given)?"""
    kw = {"project_name": project, "project_domain_name": "Default"} if project else {}
    plugin = ks_v3.Password(auth_url=cfg["auth_url"], username=user, user_domain_name="Default",
                            password=password, **kw)
    try:
        access = plugin.get_access(ks_session.Session(auth=plugin))
    except ka.Unauthorized:
        return False
    return not project or access.project_name == project


class Names:
    """The unique names of one test, and what it made by hand; removes everything at teardown."""

    def __init__(self, conn, cfg, unique: str):
        self.conn, self.cfg, self.u = conn, cfg, unique
        self.user = f"octavia-{unique}"
        self.project = f"service-{unique}"
        self.service_type = f"load-balancer-{unique}"
        self.service_name = f"octavia-{unique}"
        self.lb_roles = tuple(f"{r}-{unique}" for r in LB_ROLES)
        self.extra_users: list[str] = []
        self.extra_roles: list[str] = []
        self.extra_projects: list[str] = []

    def desired(self, **changes) -> IdentityDesired:
        base = f"http://127.0.0.1:9876/{self.u}"
        d = IdentityDesired(user=self.user, user_domain="Default", project=self.project, project_domain="Default",
                            roles=("admin",), lb_roles=self.lb_roles, service_name=self.service_name,
                            service_type=self.service_type, region=self.cfg["region"],
                            endpoints={"public": base + "/public", "internal": base + "/internal",
                                       "admin": base + "/admin"})
        return replace(d, **changes)

    def services(self):
        return [s for s in self.conn.identity.services(type=self.service_type) if s.type == self.service_type]

    def endpoints(self, service_id):
        return [e for e in self.conn.identity.endpoints(service_id=service_id) if e.service_id == service_id]

    def find_user(self, name=None):
        found = list(self.conn.identity.users(name=name or self.user, domain_id="default"))
        assert len(found) <= 1
        return found[0] if found else None

    def find_project(self, name=None):
        found = list(self.conn.identity.projects(name=name or self.project, domain_id="default"))
        assert len(found) <= 1
        return found[0] if found else None

    def find_role(self, name):
        found = [r for r in self.conn.identity.roles(name=name) if r.name == name]
        assert len(found) <= 1
        return found[0] if found else None

    def cleanup(self):
        c = self.conn.identity
        for s in self.services():
            for e in self.endpoints(s.id):
                c.delete_endpoint(e, ignore_missing=True)
            c.delete_service(s, ignore_missing=True)
        for name in [self.user, *self.extra_users]:
            u = self.find_user(name)
            if u:
                c.delete_user(u, ignore_missing=True)
        for name in [*self.lb_roles, *self.extra_roles]:
            r = self.find_role(name)
            if r:
                c.delete_role(r, ignore_missing=True)
        for name in [self.project, *self.extra_projects]:
            p = self.find_project(name)
            if p:
                for sg in self.conn.network.security_groups(project_id=p.id):
                    self.conn.network.delete_security_group(sg, ignore_missing=True)
                c.delete_project(p, ignore_missing=True)


@pytest.fixture
def names(os_cloud, os_cloud_config, unique_name):
    n = Names(os_cloud, os_cloud_config, unique_name)
    try:
        yield n
    finally:
        n.cleanup()


def _seed_install(n: Names, password: str, d: IdentityDesired, lb_roles_by_hand: tuple[str, ...] = ()):
    """What the manual install does (openstack project/user create; role add admin; service create;
    3 endpoint create), without any marker."""
    c = n.conn.identity
    project = c.create_project(name=n.project, domain_id="default")
    user = c.create_user(name=n.user, domain_id="default", password=password, default_project_id=project.id)
    admin = n.find_role("admin")
    c.assign_project_role_to_user(project, user, admin)
    svc = c.create_service(name=n.service_name, type=n.service_type)
    eps = {itf: c.create_endpoint(service_id=svc.id, interface=itf, url=url, region_id=d.region)
           for itf, url in d.endpoints.items()}
    roles = {r: c.create_role(name=r) for r in lb_roles_by_hand}
    return project, user, svc, eps, roles


# ---------------------------------------------------------------------------------------------

def test_creates_everything_from_scratch_then_converged_run_writes_nothing(os_cloud, os_cloud_config, names):
    d = names.desired()
    pw = _pw()
    res = identity.ensure_identity(os_cloud, d, UID, pw)

    c = os_cloud.identity
    project = names.find_project()
    assert project is not None and project.id == res.project_id
    assert project.domain_id == "default" and marker(UID) in project.description

    user = names.find_user()
    assert user.id == res.user_id
    assert user.is_enabled and user.default_project_id == project.id and marker(UID) in user.description
    assert _auth_ok(os_cloud_config, names.user, pw, project=names.project)   # password + admin grant work
    assert not _auth_ok(os_cloud_config, names.user, pw + "x")

    admin = names.find_role("admin")
    assert c.validate_user_has_project_role(project, user, admin)
    assert res.role_ids == {"admin": admin.id}

    assert set(res.lb_role_ids) == set(names.lb_roles)
    for r in names.lb_roles:
        role = names.find_role(r)
        assert role is not None and role.id == res.lb_role_ids[r] and marker(UID) in role.description

    [svc] = names.services()
    assert svc.id == res.service_id and svc.name == names.service_name and marker(UID) in svc.description
    eps = names.endpoints(svc.id)
    assert sorted((e.interface, e.url, e.region_id) for e in eps) == sorted(
        (itf, url, d.region) for itf, url in d.endpoints.items())
    assert res.endpoint_ids == {e.interface: e.id for e in eps}

    assert res.adopted == []
    assert res.changes == [f"role admin granted to user {names.user} on project {names.project}"]
    assert {"project " + names.project, "user " + names.user, f"service {names.service_name} ({names.service_type})",
            *(f"role {r}" for r in names.lb_roles)} <= set(res.created)
    assert len(res.created) == 2 + 5 + 1 + 3

    with WriteCounter(os_cloud) as w:
        again = identity.ensure_identity(os_cloud, d, UID, pw)
    assert w.writes == []
    assert any(m == "GET" for m, _ in w.requests)   # it did look
    assert not again.wrote and again.created == [] and again.adopted == [] and again.changes == []
    assert (again.project_id, again.user_id, again.service_id, again.endpoint_ids, again.lb_role_ids) == (
        res.project_id, res.user_id, res.service_id, res.endpoint_ids, res.lb_role_ids)


def test_adopting_a_seed_installation_never_resets_its_password_unasked(os_cloud, os_cloud_config, names):
    """The seed's hand-made user has a password that a running Octavia uses: without that password (or an
    explicit resetPassword) the operator refuses, writing nothing; with it, it adopts everything as it is."""
    d = names.desired()
    seed_pw, other_pw = _pw(), _pw()
    project, user, svc, eps, _ = _seed_install(names, seed_pw, d)
    with WriteCounter(os_cloud) as w, pytest.raises(StepError) as err:
        identity.ensure_identity(os_cloud, d, UID, other_pw)
    assert err.value.reason == "ServiceUserPasswordUnknown" and not isinstance(err.value, TransientError)
    assert "identity.passwordSecret" in err.value.message and "identity.resetPassword" in err.value.message
    assert w.writes == []
    assert _auth_ok(os_cloud_config, names.user, seed_pw)           # the running install keeps working

    # the user's own password (identity.passwordSecret): adopted with no write to the user
    res = identity.ensure_identity(os_cloud, d, UID, seed_pw)
    assert res.user_id == user.id and "user " + names.user in " ".join(res.adopted)
    assert not any("password" in ch for ch in res.changes)
    assert _auth_ok(os_cloud_config, names.user, seed_pw, project=names.project)


def test_adopts_a_seed_installation_resets_the_password_once_when_asked_and_deletes_none_of_it(
        os_cloud, os_cloud_config, names):
    d = replace(names.desired(), reset_password=True)
    old_pw, pw = _pw(), _pw()
    project, user, svc, eps, hand_roles = _seed_install(names, old_pw, d, lb_roles_by_hand=names.lb_roles[:2])

    res = identity.ensure_identity(os_cloud, d, UID, pw)
    assert (res.project_id, res.user_id, res.service_id) == (project.id, user.id, svc.id)
    assert res.endpoint_ids == {itf: e.id for itf, e in eps.items()}
    assert set(res.adopted) == {f"project {names.project}", f"user {names.user}",
                                f"service {names.service_name} ({names.service_type})",
                                *(f"role {r}" for r in names.lb_roles[:2])}
    assert set(res.created) == {f"role {r}" for r in names.lb_roles[2:]}
    assert res.changes == [f"password of user {names.user} reset to the operator's (identity.resetPassword): "
                           "services still using the old password now fail"]

    # no duplicates, adopted things unmarked, the password is the operator's now
    assert [s.id for s in names.services()] == [svc.id]
    assert sorted(e.id for e in names.endpoints(svc.id)) == sorted(e.id for e in eps.values())
    assert [u.id for u in os_cloud.identity.users(name=names.user, domain_id="default")] == [user.id]
    assert marker(UID) not in (names.find_user().description or "")
    assert _auth_ok(os_cloud_config, names.user, pw, project=names.project)
    assert not _auth_ok(os_cloud_config, names.user, old_pw)

    # the reset happened once: the next run writes nothing
    with WriteCounter(os_cloud) as w:
        again = identity.ensure_identity(os_cloud, d, UID, pw)
    assert w.writes == [] and again.changes == [] and again.created == []

    # deletion removes only the three roles it created; the seed's resources all survive
    deleted = identity.delete_owned_identity(os_cloud, UID, d)
    assert sorted(deleted) == sorted(f"role {r}" for r in names.lb_roles[2:])
    assert names.find_user() is not None and names.find_project() is not None
    assert [s.id for s in names.services()] == [svc.id] and len(names.endpoints(svc.id)) == 3
    for r in names.lb_roles:
        assert (names.find_role(r) is not None) == (r in hand_roles)


def test_a_crash_between_calls_then_a_rerun_converges_without_duplicates(os_cloud, names, monkeypatch):
    d = names.desired()
    pw = _pw()
    real = os_cloud.identity.create_endpoint
    calls = []

    def flaky(**attrs):
        calls.append(attrs["interface"])
        if len(calls) == 2:
            raise ka.http.ServiceUnavailable()
        return real(**attrs)

    monkeypatch.setattr(os_cloud.identity, "create_endpoint", flaky)
    with pytest.raises(TransientError):
        identity.ensure_identity(os_cloud, d, UID, pw)
    monkeypatch.undo()
    assert len(names.services()) == 1 and len(names.endpoints(names.services()[0].id)) == 1

    res = identity.ensure_identity(os_cloud, d, UID, pw)
    [svc] = names.services()
    assert len(names.endpoints(svc.id)) == 3 and res.service_id == svc.id
    assert res.adopted == [] and res.changes == []       # what it made before the crash is its own
    assert len([c for c in res.created if c.startswith("endpoint ")]) == 2


def test_changed_endpoint_url_and_service_name_are_updated_in_place(os_cloud, names):
    d = names.desired()
    pw = _pw()
    res = identity.ensure_identity(os_cloud, d, UID, pw)
    new_url = f"http://127.0.0.1:19876/{names.u}/moved"
    d2 = names.desired(endpoints={**d.endpoints, "public": new_url}, service_name=names.service_name + "-renamed")

    res2 = identity.ensure_identity(os_cloud, d2, UID, pw)
    assert res2.endpoint_ids == res.endpoint_ids and res2.service_id == res.service_id
    by_itf = {e.interface: e for e in names.endpoints(res.service_id)}
    assert by_itf["public"].id == res.endpoint_ids["public"] and by_itf["public"].url == new_url
    assert by_itf["internal"].url == d.endpoints["internal"] and by_itf["admin"].url == d.endpoints["admin"]
    assert len(by_itf) == 3
    assert os_cloud.identity.get_service(res.service_id).name == names.service_name + "-renamed"
    assert len(res2.changes) == 2
    assert any(new_url in ch and "public" in ch for ch in res2.changes)
    with WriteCounter(os_cloud) as w:
        identity.ensure_identity(os_cloud, d2, UID, pw)
    assert w.writes == []


def test_an_adopted_service_keeps_its_endpoints_unless_adoption_is_asked_for(os_cloud, names):
    d = names.desired()
    pw = _pw()
    seed = names.desired(endpoints={**d.endpoints, "admin": "http://127.0.0.1:1/x"})
    _, _, svc, eps, _ = _seed_install(names, pw, seed)
    # by default: clients use these endpoints today, so they stay as they are, and the result says so
    with WriteCounter(os_cloud) as w:
        res = identity.ensure_identity(os_cloud, names.desired(service_name="other-name"), UID, pw)
    assert [m for m, u in w.writes if "endpoint" in u] == []
    assert os_cloud.identity.get_endpoint(eps["admin"].id).url == "http://127.0.0.1:1/x"
    assert res.endpoint_ids == {itf: e.id for itf, e in eps.items()}
    assert len(res.kept) == 1 and "admin endpoint" in res.kept[0] and "adoptEndpoints" in res.kept[0]
    # asked for: the URL is fixed in place; the service is still not renamed
    res = identity.ensure_identity(os_cloud, names.desired(service_name="other-name", adopt_endpoints=True), UID, pw)
    assert os_cloud.identity.get_service(svc.id).name == names.service_name
    assert os_cloud.identity.get_endpoint(eps["admin"].id).url == d.endpoints["admin"]
    assert res.changes == [f"admin endpoint ({d.region}) URL changed from http://127.0.0.1:1/x "
                           f"to {d.endpoints['admin']}"]


def test_two_services_of_the_type_are_ambiguous_naming_both(os_cloud, names):
    d, pw = names.desired(), _pw()
    res = identity.ensure_identity(os_cloud, d, UID, pw)
    other = os_cloud.identity.create_service(name=names.service_name + "-2", type=names.service_type)
    with WriteCounter(os_cloud) as w, pytest.raises(StepError) as err:
        identity.ensure_identity(os_cloud, d, UID, pw)
    assert err.value.reason == "Ambiguous" and not isinstance(err.value, TransientError)
    assert res.service_id in err.value.message and other.id in err.value.message
    assert w.writes == []


def test_two_endpoints_of_one_interface_are_ambiguous(os_cloud, names):
    d, pw = names.desired(), _pw()
    res = identity.ensure_identity(os_cloud, d, UID, pw)
    dup = os_cloud.identity.create_endpoint(service_id=res.service_id, interface="internal",
                                            url="http://127.0.0.1:2/dup", region_id=d.region)
    with pytest.raises(StepError) as err:
        identity.ensure_identity(os_cloud, d, UID, pw)
    assert err.value.reason == "Ambiguous"
    assert dup.id in err.value.message and res.endpoint_ids["internal"] in err.value.message


def test_a_missing_role_is_role_not_found(os_cloud, names):
    missing = f"no-such-role-{names.u}"
    with pytest.raises(StepError) as err:
        identity.ensure_identity(os_cloud, names.desired(roles=("admin", missing)), UID, _pw())
    assert err.value.reason == "RoleNotFound" and missing in err.value.message
    assert names.find_role(missing) is None
    assert names.find_project() is None and names.find_user() is None     # checked before any write


def test_a_resource_of_another_deployment_is_refused(os_cloud, names):
    c = os_cloud.identity
    c.create_project(name=names.project, domain_id="default", description=f"x {marker(OTHER_UID)}")
    with pytest.raises(StepError) as err:
        identity.ensure_identity(os_cloud, names.desired(), UID, _pw())
    assert err.value.reason == "OwnedByAnotherDeployment" and OTHER_UID in err.value.message
    assert names.find_user() is None          # it stopped before creating anything

    # the same for the service (the project is made ours, so the check reaches the service)
    c.update_project(names.find_project(), description=marker(UID))
    c.create_service(name=names.service_name, type=names.service_type, description=marker(OTHER_UID))
    with pytest.raises(StepError) as err:
        identity.ensure_identity(os_cloud, names.desired(), UID, _pw())
    assert err.value.reason == "OwnedByAnotherDeployment" and names.service_name in err.value.message
    # and deleting as this deployment leaves the other deployment's service alone
    identity.delete_owned_identity(os_cloud, UID, names.desired())
    assert len(names.services()) == 1


def test_delete_removes_exactly_the_owned_resources_and_is_idempotent(os_cloud, os_cloud_config, names):
    d = names.desired()
    res = identity.ensure_identity(os_cloud, d, UID, _pw())
    c = os_cloud.identity
    # someone uses one of the created roles, and a network is left in the project
    bystander = c.create_user(name=f"bystander-{names.u}", domain_id="default")
    names.extra_users.append(bystander.name)
    other_project = c.create_project(name=f"other-{names.u}", domain_id="default")
    names.extra_projects.append(other_project.name)
    used_role = names.lb_roles[2]
    c.assign_project_role_to_user(other_project, bystander, res.lb_role_ids[used_role])
    net = os_cloud.network.create_network(name=f"net-{names.u}", project_id=res.project_id)
    try:
        deleted = identity.delete_owned_identity(os_cloud, UID, d)
        assert sorted(deleted) == sorted(
            [f"endpoint {itf} ({d.region}) of service {names.service_name}" for itf in d.endpoints]
            + [f"service {names.service_name} ({names.service_type})", f"user {names.user}"]
            + [f"role {r}" for r in names.lb_roles if r != used_role])
        assert names.services() == [] and names.find_user() is None
        assert [e for e in c.endpoints() if e.id in res.endpoint_ids.values()] == []
        assert names.find_role(used_role) is not None              # in use: kept
        assert names.find_project() is not None                    # not empty: kept
        assert c.get_user(bystander.id) and c.get_project(other_project.id)
        assert names.find_role("admin") is not None
    finally:
        os_cloud.network.delete_network(net, ignore_missing=True)

    # once the project is empty, the next deletion takes it (and nothing else)
    c.unassign_project_role_from_user(other_project, bystander, res.lb_role_ids[used_role])
    deleted = identity.delete_owned_identity(os_cloud, UID, d)
    assert sorted(deleted) == sorted([f"role {used_role}", f"project {names.project}"])
    assert names.find_project() is None
    assert identity.delete_owned_identity(os_cloud, UID, d) == []


def test_the_password_never_appears_in_changes_exceptions_or_logs(os_cloud, os_cloud_config, names, caplog):
    caplog.set_level(logging.DEBUG)
    pw1, pw2, pw3 = _pw(), _pw(), _pw()
    d = names.desired()
    r1 = identity.ensure_identity(os_cloud, d, UID, pw1)                  # user created with the password
    r2 = identity.ensure_identity(os_cloud, d, UID, pw2)                  # password reset
    assert r2.changes == [f"password of user {names.user} reset to the operator's"]
    assert identity.password_works(os_cloud, d, pw2) and not identity.password_works(os_cloud, d, pw1)
    os_cloud.identity.create_service(name="second", type=names.service_type)
    with pytest.raises(StepError) as err:                                 # reset, then an error
        identity.ensure_identity(os_cloud, d, UID, pw3)
    assert err.value.reason == "Ambiguous"
    assert _auth_ok(os_cloud_config, names.user, pw3)
    # debug logging of the HTTP requests was really on, so a leak would have been captured
    assert "REQ: curl" in caplog.text
    for pw in (pw1, pw2, pw3):
        assert pw not in caplog.text
        assert pw not in repr(r1) + repr(r2)
        assert pw not in str(err.value) + repr(err.value) + err.value.message


def test_domains_by_name_or_id_and_a_missing_domain(os_cloud, names):
    missing = f"no-such-domain-{names.u}"
    with pytest.raises(StepError) as err:
        identity.ensure_identity(os_cloud, names.desired(user_domain=missing), UID, _pw())
    assert err.value.reason == "DomainNotFound" and missing in err.value.message
    assert names.find_user() is None and names.find_project() is None
    # "default" is the Default domain's ID, not its name: accepted as well
    res = identity.ensure_identity(os_cloud, names.desired(user_domain="default", project_domain="default",
                                                           lb_roles=()), UID, _pw())
    assert names.find_user().id == res.user_id and names.find_project().id == res.project_id
