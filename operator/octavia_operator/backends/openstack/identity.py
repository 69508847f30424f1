"""Keystone: the Octavia service user, its project and roles, the load-balancer roles, the
catalog service and its endpoints.

Narrow interface (an admin openstacksdk ``Connection``, the pure :class:`IdentityDesired`, the
OctaviaDeployment UID):

- :func:`ensure_identity` makes Keystone match the desired state and says what it did;
  :func:`ensure_service_project` is its first part on its own (every input checked, then the project), so
  that what needs only the project can start before the rest is done;
- :func:`password_works` tells whether the service user's password is the operator's one;
- :func:`delete_owned_identity` deletes what this deployment created, and nothing else.

Ownership (see :mod:`.common`): users, projects, roles and services created here carry the
description marker ``[managed by octavia-operator owner=<uid>]`` from their creation on.
Endpoints have no description: they belong to their service (an owned service's endpoints are
owned, an adopted service's endpoints are adopted). A resource found by name (by type for the
service) without a marker is *adopted*: used, kept in shape where that is needed for Octavia to
work (user enabled, password, role grants, endpoint URLs), never deleted, never renamed. A marker
of another deployment is an error (``OwnedByAnotherDeployment``).

Secrets: the password is passed in by the caller (the operator generates it and keeps it in a
Secret). It is only ever sent in request bodies that are not logged (``log=False``, as
keystoneauth does for its own token requests) and never appears in results, exceptions or logs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Iterable

from ...builders.cloud import IdentityDesired
from ...errors import StepError
from .common import Ambiguous, call, check_not_foreign, owned_by, pick_one, with_marker

log = logging.getLogger(__name__)

INTERFACES = ("public", "internal", "admin")
USER_DESCRIPTION = "Octavia service user"
PROJECT_DESCRIPTION = "Octavia service project"
ROLE_DESCRIPTION = "Octavia RBAC role"
SERVICE_DESCRIPTION = "Octavia load-balancer service"


@dataclass
class IdentityResult:
    """What :func:`ensure_identity` found or made; IDs for status and ``octavia.conf``.

    ``created``/``adopted`` name resources ("user octavia", "role load-balancer_admin", ...);
    ``changes`` lists every other write (grants, password reset, URL updates...), human-readable,
    without secrets, for an event on the OctaviaDeployment.
    """

    project_id: str
    user_id: str
    service_id: str
    endpoint_ids: dict[str, str] = field(default_factory=dict)     # interface -> endpoint ID
    role_ids: dict[str, str] = field(default_factory=dict)         # granted role name -> ID
    lb_role_ids: dict[str, str] = field(default_factory=dict)      # load-balancer_* name -> ID
    created: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    # what was found and deliberately left as it is (an adopted service's endpoints), for the condition
    kept: list[str] = field(default_factory=list)

    @property
    def wrote(self) -> bool:
        return bool(self.created or self.changes)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def _raw(conn: Any, what: str, method: str, url: str, body: dict | None = None) -> dict:
    """One identity API request whose body is never logged (it may carry the password)."""
    from openstack import exceptions as sdk

    def run() -> dict:
        kwargs: dict[str, Any] = {"log": False}
        if body is not None:
            kwargs["json"] = body
        resp = conn.identity.request(url, method, **kwargs)
        sdk.raise_from_response(resp, error_message=what)
        try:
            return resp.json() if resp.content else {}
        except ValueError:
            return {}

    return call(what, run)


def _domain_id(conn: Any, name: str, kind: str) -> str:
    """The ID of a domain given by name (or, failing that, by ID: ``default``)."""
    from openstack import exceptions as sdk
    found = call(f"looking up the {kind} domain {name!r}", lambda: list(conn.identity.domains(name=name)))
    dom = pick_one(found, f"domain named {name!r}")
    if dom is not None:
        return dom.id
    try:
        return conn.identity.get_domain(name).id
    except sdk.NotFoundException:
        raise StepError("DomainNotFound", f"the Keystone domain {name!r} ({kind} domain) does not exist") from None
    except Exception as exc:  # noqa: BLE001
        from .session import classify
        raise classify(exc, f"looking up the {kind} domain {name!r}") from None


def _domain_ids(conn: Any, d: IdentityDesired) -> tuple[str, str]:
    """The IDs of the project's and the user's domains (one lookup when they are the same, as usual)."""
    project_dom = _domain_id(conn, d.project_domain, "project")
    user_dom = project_dom if d.user_domain == d.project_domain else _domain_id(conn, d.user_domain, "user")
    return project_dom, user_dom


def _find_project(conn: Any, d: IdentityDesired, dom: str | None = None) -> tuple[Any | None, str]:
    dom = dom or _domain_id(conn, d.project_domain, "project")
    found = call(f"listing projects named {d.project!r}", lambda: list(conn.identity.projects(name=d.project,
                                                                                             domain_id=dom)))
    return pick_one(found, f"project named {d.project!r} in domain {d.project_domain!r}"), dom


def _find_user(conn: Any, d: IdentityDesired, dom: str | None = None) -> tuple[Any | None, str]:
    dom = dom or _domain_id(conn, d.user_domain, "user")
    found = call(f"listing users named {d.user!r}", lambda: list(conn.identity.users(name=d.user, domain_id=dom)))
    return pick_one(found, f"user named {d.user!r} in domain {d.user_domain!r}"), dom


def _global_roles(conn: Any, names: Iterable[str]) -> dict[str, Any]:
    """The global roles (not domain-specific) named ``names``, from one listing of the roles (a handful in
    any cloud) instead of one lookup each; absent names are missing from the result."""
    wanted = set(names)
    if not wanted:
        return {}
    listed = call("listing roles", lambda: [r for r in conn.identity.roles() if r.name in wanted and not r.domain_id])
    out: dict[str, Any] = {}
    for name in sorted(wanted):
        role = pick_one([r for r in listed if r.name == name], f"role named {name!r}")
        if role is not None:
            out[name] = role
    return out


def _services(conn: Any, service_type: str) -> list[Any]:
    return call(f"listing services of type {service_type!r}",
                lambda: [s for s in conn.identity.services(type=service_type) if s.type == service_type])


def _endpoints(conn: Any, service_id: str) -> list[Any]:
    """Every endpoint of a service (all interfaces and regions: one request)."""
    return call("listing endpoints", lambda: [e for e in conn.identity.endpoints(service_id=service_id)
                                              if e.service_id == service_id])


def _ignore_missing(what: str, fn: Any, *args: Any) -> bool:
    """Delete something; True if it was deleted now, False if it was already gone."""
    from openstack import exceptions as sdk
    try:
        fn(*args, ignore_missing=False)
        return True
    except sdk.NotFoundException:
        return False
    except Exception as exc:  # noqa: BLE001
        from .session import classify
        raise classify(exc, what) from None


# ---------------------------------------------------------------------------------------------
# password
# ---------------------------------------------------------------------------------------------

def password_works(conn: Any, d: IdentityDesired, password: str) -> bool:
    """Whether ``d.user`` (in ``d.user_domain``) can authenticate with ``password``.

    Asks Keystone for an unscoped token at the admin connection's auth URL, with the admin
    connection's TLS settings: a read, no write. True on success, False when Keystone refuses
    the credentials (401: wrong password, disabled or unknown user); other failures raise
    StepError/TransientError. The password is never logged (token requests are not).
    """
    from keystoneauth1 import exceptions as ka
    from keystoneauth1 import session as ks_session
    from keystoneauth1.identity import generic

    auth_url = (conn.config.get_auth_args() or {}).get("auth_url")
    if not auth_url:
        raise StepError("InvalidCloudConfig", "the cloud configuration has no auth_url to check the "
                                              "service user's password against")
    plugin = generic.Password(auth_url=auth_url, username=d.user, user_domain_name=d.user_domain,
                              password=password)
    sess = ks_session.Session(auth=plugin, verify=conn.session.verify, cert=conn.session.cert,
                              timeout=getattr(conn.session, "timeout", None))
    try:
        plugin.get_access(sess)
        return True
    except ka.Unauthorized:
        return False
    except Exception as exc:  # noqa: BLE001
        from .session import classify
        raise classify(exc, f"authenticating as the service user {d.user!r}") from None
    finally:
        sess.session.close()


# ---------------------------------------------------------------------------------------------
# ensure
# ---------------------------------------------------------------------------------------------

@dataclass
class ServiceProject:
    """What :func:`ensure_service_project` checked and found: the inputs of the rest of the identity (a
    bad domain, role or foreign marker has raised before any write) and the service project."""

    project_id: str
    user_domain_id: str
    user: Any | None                 # the service user as found; None: to be created
    password_ok: bool                # the user (if found) authenticates with the operator's password
    roles: dict[str, Any]            # the global roles of d.roles + d.lb_roles that exist, by name
    role_ids: dict[str, str]         # d.roles -> ID (every one exists)
    created: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)


def ensure_service_project(conn: Any, d: IdentityDesired, uid: str, password: str) -> ServiceProject:
    """The first part of :func:`ensure_identity`, on its own so that what needs only the project (network,
    image, flavor, quotas) starts before the user, roles, service and endpoints are done: every input is
    read and checked (domains, project, user, the user's password, roles) before the one write it may
    make, the creation of project ``d.project`` with the marker."""
    created: list[str] = []
    adopted: list[str] = []
    project_dom, user_dom = _domain_ids(conn, d)
    project, _ = _find_project(conn, d, project_dom)
    user, _ = _find_user(conn, d, user_dom)
    for obj, kind in ((project, "project"), (user, "user")):
        if obj is not None:
            check_not_foreign(obj, uid, kind)
    # an existing user this operator did not create runs something already (the seed's Octavia): its
    # password is reset only when the spec allows it, never by surprise
    password_ok = True
    if user is not None:
        password_ok = password_works(conn, d, password)
        if not password_ok and not owned_by(user, uid) and not d.reset_password:
            raise StepError(
                "ServiceUserPasswordUnknown",
                f"the service user {d.user!r} exists ({user.id}), this operator did not create it, and the "
                "password it has does not work. Put the user's password in a Secret and name it in "
                "identity.passwordSecret (a disabled user fails this check too), or set identity.resetPassword: true (whatever uses the old "
                "password, such as an Octavia running today, then fails)")
    roles = _global_roles(conn, [*d.roles, *d.lb_roles])
    role_ids: dict[str, str] = {}
    for name in d.roles:
        role = roles.get(name)
        if role is None:
            raise StepError("RoleNotFound", f"the role {name!r} (identity.roles) does not exist in Keystone; "
                                            "create it or remove it from the spec")
        role_ids[name] = role.id

    if project is None:
        project = call(f"creating project {d.project!r}", conn.identity.create_project, name=d.project,
                       domain_id=project_dom, description=with_marker(PROJECT_DESCRIPTION, uid),
                       is_enabled=True)
        created.append(f"project {d.project}")
        log.info("created project %s (%s)", d.project, project.id)
    elif not owned_by(project, uid):
        adopted.append(f"project {d.project}")
    return ServiceProject(project_id=project.id, user_domain_id=user_dom, user=user, password_ok=password_ok,
                          roles=roles, role_ids=role_ids, created=created, adopted=adopted)


def ensure_identity(conn: Any, d: IdentityDesired, uid: str, password: str,
                    found: ServiceProject | None = None) -> IdentityResult:
    """Make Keystone hold the service project, user, grants, load-balancer roles, service and endpoints.

    ``found``: what :func:`ensure_service_project` returned in this reconcile (the project part is then
    done, and its created/adopted are not repeated here); None: it is called first.
    Guarantees, on return:
    - project ``d.project`` exists in ``d.project_domain`` (adopted if it existed, else created with
      the marker);
    - user ``d.user`` exists in ``d.user_domain``, is enabled and authenticates with ``password``
      (created with the marker, default project, enabled and the password if missing; an existing
      user whose password does not work gets it reset: one write, listed in ``changes``);
    - the user holds every role of ``d.roles`` on the project (missing grants are added; grants
      outside ``d.roles`` are never revoked); a role that does not exist -> StepError ``RoleNotFound``
      and a domain that does not exist -> ``DomainNotFound``, both before any write;
    - every role of ``d.lb_roles`` exists (created with the marker, or adopted: also when another
      deployment created it, since these global roles are shared by every Octavia of the cloud);
    - exactly one service of type ``d.service_type`` exists (created with the marker if none; named
      ``d.service_name`` if it is ours; an unmarked one is adopted as it is; two or more ->
      ``Ambiguous`` naming them);
    - for each interface of ``d.endpoints``, exactly one endpoint of that service in ``d.region``
      with that URL (created, or updated in place when the URL differs; two or more -> ``Ambiguous``).
    A converged Keystone costs reads and one token request, no write. Resources marked by another
    deployment raise ``OwnedByAnotherDeployment``. Order is dependency order, and everything is
    found before it is created, so a rerun after a crash creates no duplicates.
    """
    res_created: list[str] = []
    res_adopted: list[str] = []
    changes: list[str] = []

    def note(obj: Any, label: str) -> None:
        check_not_foreign(obj, uid, label.split(" ", 1)[0])
        if not owned_by(obj, uid):
            res_adopted.append(label)

    if found is None:
        found = ensure_service_project(conn, d, uid, password)
        res_created += found.created
        res_adopted += found.adopted
    project_id = found.project_id
    user, user_dom, password_ok, roles, role_ids = (found.user, found.user_domain_id, found.password_ok,
                                                    found.roles, found.role_ids)

    # -- user ---------------------------------------------------------------------------------
    if user is None:
        body = {"user": {"name": d.user, "domain_id": user_dom, "default_project_id": project_id,
                         "enabled": True, "description": with_marker(USER_DESCRIPTION, uid),
                         "password": password}}
        user_id = _raw(conn, f"creating user {d.user!r}", "POST", "/users", body)["user"]["id"]
        res_created.append(f"user {d.user}")
        log.info("created user %s (%s)", d.user, user_id)
    else:
        user_id = user.id
        note(user, f"user {d.user}")
        if user.is_enabled is False:
            _raw(conn, f"enabling user {d.user!r}", "PATCH", f"/users/{user_id}", {"user": {"enabled": True}})
            changes.append(f"user {d.user} was disabled: enabled it")
        if owned_by(user, uid) and user.default_project_id != project_id:
            _raw(conn, f"setting the default project of user {d.user!r}", "PATCH", f"/users/{user_id}",
                 {"user": {"default_project_id": project_id}})
            changes.append(f"default project of user {d.user} set to {d.project}")
        if not password_ok:
            _raw(conn, f"resetting the password of user {d.user!r}", "PATCH", f"/users/{user_id}",
                 {"user": {"password": password}})
            if owned_by(user, uid):
                changes.append(f"password of user {d.user} reset to the operator's")
            else:
                changes.append(f"password of user {d.user} reset to the operator's (identity.resetPassword): "
                               "services still using the old password now fail")
            log.info("reset the password of user %s (%s)", d.user, user_id)

    # -- grants -------------------------------------------------------------------------------
    if role_ids:
        have = {(a.role or {}).get("id") for a in call(
            f"listing the roles of user {d.user!r} on project {d.project!r}",
            lambda: list(conn.identity.role_assignments(user_id=user_id, scope_project_id=project_id)))}
        for name, rid in role_ids.items():
            if rid not in have:
                _raw(conn, f"granting role {name!r} to user {d.user!r}", "PUT",
                     f"/projects/{project_id}/users/{user_id}/roles/{rid}")
                changes.append(f"role {name} granted to user {d.user} on project {d.project}")

    # -- load-balancer roles ------------------------------------------------------------------
    lb_role_ids: dict[str, str] = {}
    for name in d.lb_roles:
        role = roles.get(name)
        if role is None:
            role = call(f"creating role {name!r}", conn.identity.create_role, name=name,
                        description=with_marker(ROLE_DESCRIPTION, uid))
            res_created.append(f"role {name}")
        elif not owned_by(role, uid):
            # global roles are shared by every Octavia of the cloud: one made by another
            # deployment (or by hand) is simply used, like an adopted one, and never deleted here
            res_adopted.append(f"role {name}")
        lb_role_ids[name] = role.id

    # -- service ------------------------------------------------------------------------------
    service = pick_one(_services(conn, d.service_type), f"service of type {d.service_type!r}")
    if service is None:
        service = call(f"creating service {d.service_name!r}", conn.identity.create_service, name=d.service_name,
                       type=d.service_type, description=with_marker(SERVICE_DESCRIPTION, uid), is_enabled=True)
        res_created.append(f"service {d.service_name} ({d.service_type})")
    else:
        note(service, f"service {service.name} ({d.service_type})")
        if owned_by(service, uid) and service.name != d.service_name:
            old_name = service.name
            call(f"renaming service {old_name!r}", conn.identity.update_service, service.id, name=d.service_name)
            changes.append(f"service {old_name} ({d.service_type}) renamed to {d.service_name}")

    # -- endpoints ----------------------------------------------------------------------------
    # an adopted service's endpoints serve clients today: left exactly as they are unless asked
    manage_endpoints = owned_by(service, uid) or d.adopt_endpoints
    kept: list[str] = []
    endpoint_ids: dict[str, str] = {}
    region_checked = False
    endpoints: list[Any] | None = None
    for itf in INTERFACES:
        url = d.endpoints.get(itf)
        if not url and manage_endpoints:
            continue
        if endpoints is None:
            endpoints = _endpoints(conn, service.id)
        found = [e for e in endpoints if e.interface == itf and e.region_id == d.region]
        if not manage_endpoints:
            if len(found) == 1:
                endpoint_ids[itf] = found[0].id
            if url and (len(found) != 1 or found[0].url != url):
                have = ", ".join(e.url for e in found) or "none"
                kept.append(f"{itf} endpoint of the adopted service left as it is ({have}; the spec says {url}; "
                            "identity.adoptEndpoints: true rewrites it)")
            continue
        if len(found) > 1:
            raise Ambiguous(f"{itf} endpoint of service {d.service_type!r} in region {d.region!r}",
                            [SimpleNamespace(name=e.url, id=e.id) for e in found])
        if not found:
            if not region_checked:
                _check_region(conn, d.region)
                region_checked = True
            ep = call(f"creating the {itf} endpoint", conn.identity.create_endpoint, service_id=service.id,
                      interface=itf, url=url, region_id=d.region, is_enabled=True)
            res_created.append(f"endpoint {itf} ({d.region}) {url}")
        else:
            ep = found[0]
            old_url = ep.url
            if old_url != url:
                call(f"updating the {itf} endpoint", conn.identity.update_endpoint, ep.id, url=url)
                changes.append(f"{itf} endpoint ({d.region}) URL changed from {old_url} to {url}")
            if ep.is_enabled is False:
                call(f"enabling the {itf} endpoint", conn.identity.update_endpoint, ep.id, is_enabled=True)
                changes.append(f"{itf} endpoint ({d.region}) was disabled: enabled it")
        endpoint_ids[itf] = ep.id

    return IdentityResult(project_id=project_id, user_id=user_id, service_id=service.id, endpoint_ids=endpoint_ids,
                          role_ids=role_ids, lb_role_ids=lb_role_ids, created=res_created, adopted=res_adopted,
                          changes=changes, kept=kept)


def _check_region(conn: Any, region: str) -> None:
    from openstack import exceptions as sdk
    try:
        conn.identity.get_region(region)
    except sdk.NotFoundException:
        raise StepError("RegionNotFound", f"the Keystone region {region!r} (cloud.region) does not exist") from None
    except Exception as exc:  # noqa: BLE001
        from .session import classify
        raise classify(exc, f"looking up region {region!r}") from None


# ---------------------------------------------------------------------------------------------
# delete
# ---------------------------------------------------------------------------------------------

def _found_unless_domain_gone(find: Any, conn: Any, d: IdentityDesired) -> Any | None:
    """``find(conn, d)``'s resource, or None when its domain no longer exists (nothing to delete)."""
    try:
        return find(conn, d)[0]
    except StepError as exc:
        if exc.reason != "DomainNotFound":
            raise
        return None


def delete_owned_identity(conn: Any, uid: str, d: IdentityDesired) -> list[str]:
    """Delete, in dependency order, the Keystone resources that carry this deployment's marker.

    - every service marked with ``uid`` (whatever its type now), with all its endpoints (an
      adopted service and its endpoints are kept, even endpoints this operator added to it);
    - the load-balancer roles marked with ``uid``, each only while NO assignment of it exists (a
      role in use by anyone is kept: deleting it would silently revoke their grants);
    - user ``d.user`` if it is marked with ``uid`` (its grants go with it). Delete the user's Nova
      key pair (compute module) before calling this;
    - project ``d.project`` only if it is marked with ``uid`` AND holds nothing any more: no role
      assignment, no Neutron network, port, router, floating IP or security group other than
      ``default``, no Nova server, no Glance image (services absent from the catalog hold nothing).
      Its ``default`` security group (made by Neutron on its own) is deleted with it.
    Idempotent: what is already gone is fine. Returns what was deleted, human-readable.
    Adopted resources are never deleted; resources of other deployments are never touched.
    """
    deleted: list[str] = []

    # services (with their endpoints)
    for svc in call("listing services", lambda: list(conn.identity.services())):
        if not owned_by(svc, uid):
            continue
        for ep in _endpoints(conn, svc.id):
            if _ignore_missing(f"deleting endpoint {ep.id}", conn.identity.delete_endpoint, ep):
                deleted.append(f"endpoint {ep.interface} ({ep.region_id}) of service {svc.name}")
        if _ignore_missing(f"deleting service {svc.name!r}", conn.identity.delete_service, svc):
            deleted.append(f"service {svc.name} ({svc.type})")

    # roles, only when unused
    for role in call("listing roles", lambda: list(conn.identity.roles())):
        if not owned_by(role, uid):
            continue
        used = call(f"listing assignments of role {role.name!r}",
                    lambda: next(iter(conn.identity.role_assignments(role_id=role.id)), None))
        if used is not None:
            log.info("keeping role %s (%s): it is still assigned", role.name, role.id)
            continue
        if _ignore_missing(f"deleting role {role.name!r}", conn.identity.delete_role, role):
            deleted.append(f"role {role.name}")

    # user
    user = _found_unless_domain_gone(_find_user, conn, d)
    if user is not None and owned_by(user, uid):
        if _ignore_missing(f"deleting user {d.user!r}", conn.identity.delete_user, user):
            deleted.append(f"user {d.user}")

    # project, only when empty
    project = _found_unless_domain_gone(_find_project, conn, d)
    if project is not None and owned_by(project, uid):
        left = _project_contents(conn, project.id)
        if left:
            log.info("keeping project %s (%s): it still holds %s", d.project, project.id, ", ".join(left))
        else:
            for sg in _default_security_groups(conn, project.id):
                _ignore_missing(f"deleting the default security group of project {d.project!r}",
                                conn.network.delete_security_group, sg)
            if _ignore_missing(f"deleting project {d.project!r}", conn.identity.delete_project, project):
                deleted.append(f"project {d.project}")
    return deleted


def _first(what: str, it: Iterable[Any]) -> Any | None:
    return call(what, lambda: next(iter(it), None))


def _has_service(conn: Any, service_type: str) -> bool:
    try:
        return bool(conn.has_service(service_type))
    except Exception:  # noqa: BLE001 - an unusable catalog entry means we cannot look: assume present
        return True


def _default_security_groups(conn: Any, project_id: str) -> list[Any]:
    if not _has_service(conn, "network"):
        return []
    return call("listing security groups", lambda: [
        sg for sg in conn.network.security_groups(project_id=project_id) if sg.name == "default"])


def _project_contents(conn: Any, project_id: str) -> list[str]:
    """What still lives in the project (kinds of resources; empty list = nothing)."""
    left: list[str] = []
    if _first("listing role assignments on the project",
              conn.identity.role_assignments(scope_project_id=project_id)) is not None:
        left.append("role assignments")
    if _has_service(conn, "network"):
        for kind, it in (("networks", conn.network.networks(project_id=project_id)),
                         ("ports", conn.network.ports(project_id=project_id)),
                         ("routers", conn.network.routers(project_id=project_id)),
                         ("floating IPs", conn.network.ips(project_id=project_id))):
            if _first(f"listing the project's {kind}", it) is not None:
                left.append(kind)
        sgs = call("listing the project's security groups",
                   lambda: [sg for sg in conn.network.security_groups(project_id=project_id) if sg.name != "default"])
        if sgs:
            left.append("security groups")
    if _has_service(conn, "compute"):
        if _first("listing the project's servers",
                  conn.compute.servers(all_projects=True, project_id=project_id)) is not None:
            left.append("servers")
    if _has_service(conn, "image"):
        if _first("listing the project's images", conn.image.images(owner=project_id)) is not None:
            left.append("images")
    return left
