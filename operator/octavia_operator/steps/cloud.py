"""Issue 3's steps: the OpenStack resources of the manual install, reconciled.

Each step calls one OpenStack module with desired state computed by ``builders.cloud``,
records the IDs in ``status.openstack`` (they flow into octavia.conf), posts an event
for every repair, and reports one condition. ``teardown`` deletes, in dependency order,
what this deployment owns (deletionPolicy Delete).
"""
from __future__ import annotations

import base64
from typing import Any

from .. import conditions as c
from .. import names as n
from ..builders import cloud as cb
from ..builders.kube import internal_api_url
from .runner import Context, Result
from ..errors import StepError
from . import secrets

STATUS_KEY = "openstack"


# ----------------------------------------------------------------------------------------
# shared helpers
# ----------------------------------------------------------------------------------------

def conn(ctx: Context) -> Any:
    return ctx.out.cloud


def desired(ctx: Context) -> cb.CloudDesired:
    if ctx.out.desired is None:
        spec = ctx.spec
        assert spec is not None
        endpoints = cb.endpoint_urls(spec, internal_api_url(ctx.name, ctx.namespace, spec.api.port,
                                                            spec.api.tls is not None), ctx.out.public_url)
        ctx.out.desired = cb.desired(spec, endpoints)
    return ctx.out.desired


def record(ctx: Context, **ids: Any) -> None:
    """Set IDs in status.openstack (keeping what other steps recorded)."""
    ctx.merge_status(STATUS_KEY, ids)


def recorded(ctx: Context, key: str) -> Any:
    return (ctx.status_updates.get(STATUS_KEY) or ctx.status.get(STATUS_KEY) or {}).get(key)


def announce(ctx: Context, what: str, created: list[str] | bool, changes: list[str],
             warnings: list[str] = ()) -> None:
    """Events: Normal for creations and repairs, Warning for what needs the user."""
    if created:
        label = what if created is True else ", ".join(created)
        ctx.event("Normal", "Created", f"created {label}")
    if changes:
        ctx.event("Normal", "Reconciled", f"{what}: " + "; ".join(changes))
    for w in warnings:
        ctx.event("Warning", "Attention", f"{what}: {w}")


ROTATE_PASSWORD_ANNOTATION = "octavia-operator.dev/rotate-service-password"


def service_password(ctx: Context) -> str:
    """The service user's password; rotated when the rotation annotation takes a new value."""
    if ctx.out.service_password is not None:
        return ctx.out.service_password
    request = ctx.annotations.get(ROTATE_PASSWORD_ANNOTATION)
    name = n.Names(ctx.name).keystone_secret
    live = secrets.read(ctx, name)
    # handled before: recorded in the status, and on the Secret (which outlives a Retain re-create)
    done = {(ctx.status.get("rotations") or {}).get("servicePassword"), secrets.handled(live).get("servicePassword")}
    assert ctx.spec is not None
    ref = ctx.spec.identity.passwordSecret
    if ref is not None:  # the user's password for a user made by hand: used as it is, never rotated here
        given = secrets.user_secret(ctx, ref.name, ref.key, "identity.passwordSecret")
        data = {k: base64.b64decode(v) for k, v in ((live or {}).get("data") or {}).items()}
        ignored = request if request and request not in done else None
        if ignored:
            ctx.event("Warning", "RotationIgnored", f"rotation request {ignored!r} ignored: the service password "
                      f"comes from Secret {ref.name} (identity.passwordSecret); change it there and in Keystone")
        secrets.apply(ctx, name, "identity", {**data, "password": given}, live,
                      {"servicePassword": ignored} if ignored else None, data_changed=data.get("password") != given)
        ctx.out.service_password = given.decode()
        return ctx.out.service_password
    rotate = frozenset({"password"}) if request and request not in done else frozenset()
    data = secrets.ensure_generated(ctx, name, "identity", {"password": secrets.random_password}, rotate=rotate,
                                    handled_requests={"servicePassword": request} if rotate else None, live=live)
    if rotate:
        ctx.merge_status("rotations", {"servicePassword": request})
        ctx.event("Normal", "PasswordRotated", "the Octavia service user's password was rotated (request "
                                               f"{request!r}); the services roll with the new configuration")
    ctx.out.service_password = data["password"].decode()
    return ctx.out.service_password


# ----------------------------------------------------------------------------------------
# steps
# ----------------------------------------------------------------------------------------

def step_project(ctx: Context) -> Result:
    """The service project, once every input of the identity is checked: what needs only the project (network,
    image, flavor, quotas) starts while the user, roles, service and endpoints are being made."""
    from ..backends.openstack import identity
    d = desired(ctx).identity
    password = service_password(ctx)   # first: the service-user Secret records the owner ID
    res = identity.ensure_service_project(conn(ctx), d, secrets.owner_id(ctx), password)
    ctx.out.project = res
    record(ctx, serviceProjectId=res.project_id)
    announce(ctx, f"project {d.project}", res.created, [])
    user = f"user {d.user} found" if res.user is not None else f"user {d.user} to be created"
    roles = f"; roles {', '.join(d.roles)} exist" if d.roles else ""
    return Result.ok("Ready", f"project {d.project} ({res.project_id}) in domain {d.project_domain}"
                              + (", adopted" if res.adopted else "") + f"; {user}{roles}")


def step_identity(ctx: Context) -> Result:
    from ..backends.openstack import identity
    d = desired(ctx).identity
    password = service_password(ctx)
    res = identity.ensure_identity(conn(ctx), d, secrets.owner_id(ctx), password, ctx.out.project)
    ctx.out.identity = res
    record(ctx, serviceUserId=res.user_id, serviceId=res.service_id,
           endpointIds=dict(sorted(res.endpoint_ids.items())))
    announce(ctx, "identity", res.created, res.changes)
    adopted = f"; adopted: {', '.join(res.adopted)}" if res.adopted else ""
    kept = f"; {'; '.join(res.kept)}" if res.kept else ""
    message = (f"user {d.user} ({res.user_id}) has {', '.join(d.roles)} on project {d.project} ({res.project_id}); "
               f"service {res.service_id} with {len(res.endpoint_ids)} endpoints in {d.region}{adopted}{kept}")
    if "public" not in res.endpoint_ids:
        return Result.ok("NoPublicEndpoint", "no public endpoint in the catalog: clients outside the cluster cannot "
                                             "find Octavia; set identity.endpoints.public to the URL they reach. "
                                             + message)
    return Result.ok("Ready", message)


def step_image(ctx: Context) -> Result:
    from ..backends.openstack import image
    d = desired(ctx).image
    project_id = ctx.out.project.project_id
    res = image.ensure_image(conn(ctx), d, secrets.owner_id(ctx), project_id)
    ctx.out.image = res
    record(ctx, imageId=res.image_id, imageOwnerId=res.owner_id)
    announce(ctx, f"image {res.image_id}", res.created, res.changes, res.warnings)
    msg = f"image {res.image_id} (tag {d.tag}, owner {res.owner_id})"
    if res.adopted:
        msg += ", adopted"
    if res.superseded:
        msg += f"; superseded images still carrying the tag: {', '.join(res.superseded)}"
    if res.pruned:
        msg += f"; pruned: {', '.join(res.pruned)}"
    return Result.ok("Ready", msg)


def step_flavor(ctx: Context) -> Result:
    from ..backends.openstack import compute
    d = desired(ctx).flavor
    project_id = ctx.out.project.project_id
    res = compute.ensure_flavor(conn(ctx), d, secrets.owner_id(ctx), project_id)
    record(ctx, flavorId=res.id)
    announce(ctx, f"flavor {res.id}", res.created, res.changes, res.extra.get("warnings", []))
    return Result.ok("Ready", f"flavor {res.extra.get('name', d.name)} ({res.id})" + (", adopted" if res.adopted else ""))


def step_keypair(ctx: Context) -> Result:
    from ..backends.openstack import compute
    spec = ctx.spec
    assert spec is not None
    ident = spec.identity
    names = n.Names(ctx.name)
    if not spec.amphora.ssh.enabled:
        old = recorded(ctx, "keypairName")
        if old:  # SSH was switched off: remove the key pair we registered
            data = ctx.kube.read_secret(ctx.namespace, names.ssh_secret) or {}
            if "id_rsa.pub" in data:
                svc = compute.connect_as(conn(ctx), ident.serviceUser, service_password(ctx), ident.serviceProject,
                                         ident.userDomain, ident.projectDomain)
                if compute.delete_keypair(svc, old, data["id_rsa.pub"].decode()):
                    ctx.event("Normal", "Deleted", f"deleted key pair {old} (SSH disabled)")
            record(ctx, keypairName=None)
        return Result.ok("Disabled", "SSH access to amphorae is disabled (spec.amphora.ssh.enabled is false)")
    key_cache: dict[str, tuple[bytes, str]] = {}

    def pair() -> tuple[bytes, str]:
        if "k" not in key_cache:
            key_cache["k"] = compute.generate_ssh_keypair(compute.keypair_comment(secrets.owner_id(ctx)))
        return key_cache["k"]

    data = secrets.ensure_generated(ctx, names.ssh_secret, "ssh", {
        "id_rsa": lambda: pair()[0], "id_rsa.pub": lambda: pair()[1].encode()})
    svc = compute.connect_as(conn(ctx), ident.serviceUser, service_password(ctx), ident.serviceProject,
                             ident.userDomain, ident.projectDomain)
    name = desired(ctx).keypair.name  # type: ignore[union-attr]
    res = compute.ensure_keypair(svc, name, data["id_rsa.pub"].decode())
    record(ctx, keypairName=name)
    announce(ctx, f"key pair {name}", res.created, res.changes)
    return Result.ok("Ready", f"key pair {name} registered for user {ident.serviceUser}; private key in Secret "
                              f"{names.ssh_secret}")


def step_network(ctx: Context) -> Result:
    from ..backends.openstack import network
    spec = ctx.spec
    assert spec is not None
    d = desired(ctx).network
    project_id = ctx.out.project.project_id
    res = network.ensure_management_network(conn(ctx), d, secrets.owner_id(ctx), project_id=project_id)
    ctx.out.network = res
    record(ctx, networkId=res.network.id, subnetId=res.subnet.id, networkMTU=res.mtu,
           amphoraSecurityGroupId=res.amphora_sg.id, healthManagerSecurityGroupId=res.health_manager_sg.id)
    created = [p.extra.get("label", "") or what for p, what in
               zip(res.parts, ("network", "subnet", "amphora security group", "health-manager security group"))
               if p.created]
    announce(ctx, "management network", created, res.changes, res.warnings)
    nodes = ctx.out.nodes_all
    if nodes is None:
        nodes = ctx.out.nodes_all = ctx.kube.list("v1", "Node")
    overlap = network.overlaps(d.cidr, cb.cluster_cidrs(nodes, spec.managementNetwork.avoidCIDRs))
    msg = f"network {res.network.id}, subnet {res.subnet.id} ({d.cidr}, MTU {res.mtu}), security groups " \
          f"{res.amphora_sg.id} (amphora) and {res.health_manager_sg.id} (health manager)"
    if overlap:
        ctx.event("Warning", "CIDROverlap", f"{d.cidr} overlaps {', '.join(overlap)}")
        return Result(c.TRUE, "CIDROverlap", f"{msg}; WARNING: {d.cidr} overlaps cluster networks "
                                            f"{', '.join(overlap)}: nodes may route amphora traffic wrongly")
    if res.warnings:
        return Result(c.TRUE, "ReadyWithWarnings", msg + "; " + "; ".join(res.warnings))
    return Result.ok("Ready", msg)


def step_ports(ctx: Context) -> Result:
    from ..backends.openstack import network
    spec = ctx.spec
    assert spec is not None
    nodes = ctx.out.nodes_all
    if nodes is None:
        nodes = ctx.out.nodes_all = ctx.kube.list("v1", "Node")
    selected = cb.select_nodes(nodes, spec.healthManager.nodeSelector)
    want = cb.ports(selected, spec.healthManager.hostIdAnnotation)
    net = ctx.out.network
    res = network.ensure_ports(conn(ctx), want, secrets.owner_id(ctx), project_id=ctx.out.project.project_id,
                               network_id=net.network.id, subnet_id=net.subnet.id,
                               security_group_id=net.health_manager_sg.id)
    ctx.out.ports = res
    ctx.status_updates["healthManagerPorts"] = {
        node: {k: v for k, v in {"portId": p.port_id, "mac": p.mac, "ip": p.ip, "hostId": p.host_id,
                                 "vifType": p.vif_type}.items() if v is not None}
        for node, p in sorted(res.ports.items())}
    announce(ctx, "health-manager ports", [f"port for node {x}" for x in res.created],
             res.changes + [f"deleted {x}" for x in res.deleted], res.warnings)
    if not want:
        raise StepError("NoNodes", f"no node matches healthManager.nodeSelector {spec.healthManager.nodeSelector}",
                        retry=True)
    if res.unbound:
        detail = ", ".join(f"{x} (host {res.ports[x].host_id}, vif_type {res.ports[x].vif_type})" for x in res.unbound)
        raise StepError("PortBindingFailed", f"Neutron could not bind the health-manager port of {detail}: no L2 "
                        "agent or OVN chassis registered under that host name; set the node annotation "
                        f"{spec.healthManager.hostIdAnnotation} to the agent's host name", retry=True)
    return Result.ok("Ready", f"{len(res.ports)} ports bound: " + ", ".join(
        f"{node} {p.ip}" for node, p in sorted(res.ports.items())))


def step_quotas(ctx: Context) -> Result:
    from ..backends.openstack import quotas
    q = desired(ctx).quotas
    if not q:
        return Result.ok("NotRequested", "spec.quotas is not set: quotas are left as they are")
    res = quotas.ensure_quotas(conn(ctx), ctx.out.project.project_id, q)
    announce(ctx, "quotas", False, res.changes)
    return Result.ok("Ready", "quotas of the service project: " + ", ".join(f"{k}={v}" for k, v in sorted(q.items())))


# ----------------------------------------------------------------------------------------
# deletion (deletionPolicy: Delete)
# ----------------------------------------------------------------------------------------

def teardown(ctx: Context) -> list[str]:
    """Delete what this deployment owns, in dependency order; refuse while amphorae remain."""
    from ..backends.openstack import compute, identity, image, network
    spec = ctx.spec
    assert spec is not None
    c_ = conn(ctx)
    owner = secrets.owner_id(ctx)
    st = ctx.status.get(STATUS_KEY) or {}
    done: list[str] = []
    net_id = st.get("networkId")
    from ..backends.openstack.common import owner_tag
    candidates = {net_id} if net_id else set()
    candidates |= {x.id for x in c_.network.networks(tags=owner_tag(owner))}  # status may have lost the ID
    for nid in sorted(candidates):
        users = network.network_in_use(c_, nid, owner)
        if users:
            raise StepError("DeletionBlocked", "the management network is still used by load balancers or "
                            f"amphorae ({'; '.join(users[:5])}): delete them first", retry=True)
    ports = [p.get("portId") for p in (ctx.status.get("healthManagerPorts") or {}).values() if p.get("portId")]
    done += network.delete_owned_network(
        c_, owner, network_id=net_id, subnet_id=st.get("subnetId"),
        security_group_ids=[x for x in (st.get("amphoraSecurityGroupId"), st.get("healthManagerSecurityGroupId")) if x],
        port_ids=ports)
    if st.get("keypairName") and st.get("serviceUserId"):
        data = ctx.kube.read_secret(ctx.namespace, n.Names(ctx.name).ssh_secret) or {}
        if "id_rsa.pub" in data:  # as the admin, on the service user's behalf (the user goes next)
            if compute.delete_keypair(c_, st["keypairName"], data["id_rsa.pub"].decode(), user_id=st["serviceUserId"]):
                done.append(f"key pair {st['keypairName']}")
    if compute.delete_owned_flavor(c_, owner, st.get("flavorId")):
        done.append(f"flavor {st.get('flavorId')}")
    done += [f"image {i}" for i in image.delete_owned_images(c_, owner)]
    done += identity.delete_owned_identity(c_, owner, desired(ctx).identity)
    return done
