"""Issue 4's steps: certificates, database, messaging, octavia.conf, db-sync, host agent, services.

Every Kubernetes child is built by ``builders.kube`` and applied with ``Kube.apply``, which
writes only what differs (and so also restores a child someone deleted or edited). Secrets
hold every generated value; nothing secret reaches a ConfigMap, the status or an event.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from typing import Any, Callable
from urllib.parse import quote

from .. import conditions as c
from .. import names as n
from ..builders import certificates as certs
from ..builders import pki
from ..builders import kube as kb
from ..builders.config import CloudValues, SecretValues
from .runner import Context, JobboardSecrets, Result
from ..errors import StepError, TransientError
from . import secrets
from .cloud import recorded

GROUP_VERSION = "octavia-operator.dev/v1alpha1"


def _names(ctx: Context) -> n.Names:
    return n.Names(ctx.name)


def _apply_all(ctx: Context, objs: list[dict[str, Any]]) -> list[str]:
    """Apply objects; return 'created X' / 'restored X' lines for events."""
    out = []
    for obj in objs:
        action, _ = ctx.kube.apply(obj)
        if action == "created":
            out.append(f"created {obj['kind']} {obj['metadata']['name']}")
        elif action == "patched":
            out.append(f"updated {obj['kind']} {obj['metadata']['name']}")
    if out:
        ctx.event("Normal", "Applied", "; ".join(out))
    return out


# ----------------------------------------------------------------------------------------
# certificates
# ----------------------------------------------------------------------------------------

# annotation on the OctaviaDeployment -> plan_certificates flag (see docs/certificates.md)
CERT_ROTATIONS = {
    "rotate_server_ca": "octavia-operator.dev/rotate-server-ca",
    "retire_old_server_cas": "octavia-operator.dev/retire-old-server-cas",
    "rotate_client_ca": "octavia-operator.dev/rotate-client-ca",
    "retire_old_client_cas": "octavia-operator.dev/retire-old-client-cas",
}


def passphrases(ctx: Context) -> dict[str, bytes]:
    pp = pki.generate_passphrases()
    return secrets.ensure_generated(ctx, _names(ctx).passphrases_secret, "certificates", {
        "ca-key-passphrase": lambda: pp.ca_key.encode(),
        "server-certs-key-passphrase": lambda: pp.server_certs_key.encode(),
        "heartbeat-key": lambda: pki.generate_heartbeat_key().encode(),
    })


def client_ca_since(data: dict[str, bytes]) -> dt.datetime | None:
    """When the newest client CA amphorae must trust was made (the staged one, else the current one):
    an amphora booted before it has an older client CA bundle and needs a failover (docs/certificates.md)."""
    from cryptography import x509
    times = []
    for key in (certs.CLIENT_CA_CERT, certs.CLIENT_CA_NEXT_CERT):
        if data.get(key):
            cert = x509.load_pem_x509_certificate(data[key])
            times.append(cert.not_valid_before_utc + pki.BACKDATE)   # generated CAs are backdated
    return max(times) if times else None


def step_certificates(ctx: Context) -> Result:
    spec = ctx.spec
    assert spec is not None
    cs = spec.certificates
    pp = passphrases(ctx)
    ctx.out.passphrases = pp
    settings = pki.CertificateSettings(
        ca_validity_days=cs.caValidityDays, client_validity_days=cs.clientValidityDays,
        renew_before_days=cs.renewBeforeDays, key_type=cs.keyType, ca_key_size=cs.caKeySize,
        client_key_size=cs.clientKeySize)
    user_server = user_client = None
    if cs.serverCASecret:
        user_server = ctx.kube.read_secret(ctx.namespace, cs.serverCASecret)
        user_client = ctx.kube.read_secret(ctx.namespace, cs.clientCASecret)
        missing = [s for s, d in ((cs.serverCASecret, user_server), (cs.clientCASecret, user_client)) if d is None]
        if missing:
            raise StepError("CASecretNotFound", f"CA Secret(s) {', '.join(missing)} do not exist", retry=True)
    name = _names(ctx).certs_secret
    live = secrets.read(ctx, name)
    existing = None if live is None else {k: base64.b64decode(v) for k, v in (live.get("data") or {}).items()}
    # one-shot rotation requests: an annotation whose value differs from the last one handled, as
    # recorded in the status and on the Secret (which outlives a re-create under Retain)
    handled = dict(ctx.status.get("rotations") or {})
    on_secret = secrets.handled(live)
    requests = {}
    for flag, annotation in CERT_ROTATIONS.items():
        value = ctx.annotations.get(annotation)
        if value and value not in (handled.get(flag), on_secret.get(flag)):
            requests[flag] = value
    try:
        plan = certs.plan_certificates(
            existing, pki.Passphrases(pp["ca-key-passphrase"].decode(), pp["server-certs-key-passphrase"].decode()),
            settings, ctx.now, user_server_ca=user_server, user_client_ca=user_client,
            **{flag: True for flag in requests})
    except pki.CertificateInputError as exc:
        raise StepError("InvalidCertificateInput", str(exc)) from None
    if requests:
        ctx.merge_status("rotations", requests)
    changed = plan.changed or existing is None
    secrets.apply(ctx, name, "certificates", plan.data, live, requests, data_changed=changed)
    if changed:
        ctx.event("Normal", "Certificates", "; ".join(plan.actions) or "certificates written")
    ctx.out.client_ca_since = client_ca_since(plan.data)
    ctx.out.certs_digest = hashlib.sha256(json.dumps(
        {k: v.decode() for k, v in sorted(plan.data.items())}).encode()).hexdigest()
    expiry = {k: v.astimezone().strftime("%Y-%m-%dT%H:%M:%SZ") for k, v in plan.expiry.items()}
    ctx.status_updates["certificates"] = {
        "serverCAExpires": expiry.get("serverCA"), "clientCAExpires": expiry.get("clientCA"),
        "clientCertificateExpires": expiry.get("clientCertificate")}
    for w in plan.warnings:
        ctx.event("Warning", "CertificateWarning", w)
    if plan.warnings:
        return Result(c.TRUE, "ExpiringSoon", "; ".join(plan.warnings))
    return Result.ok("Ready", f"server CA until {expiry.get('serverCA')}, client CA until {expiry.get('clientCA')}, "
                              f"client certificate until {expiry.get('clientCertificate')} (renewed "
                              f"{cs.renewBeforeDays} days before)")


# ----------------------------------------------------------------------------------------
# database and messaging
# ----------------------------------------------------------------------------------------

def _statefulset_ready(ctx: Context, name: str) -> bool:
    sts = ctx.kube.get("apps/v1", "StatefulSet", name, ctx.namespace) or {}
    return int((sts.get("status") or {}).get("readyReplicas") or 0) >= 1


def _claim(obj: dict[str, Any]) -> tuple[str, str | None]:
    """(storage size, storage class) of a StatefulSet's first volume claim template."""
    spec = ((obj.get("spec") or {}).get("volumeClaimTemplates") or [{}])[0].get("spec") or {}
    return str(((spec.get("resources") or {}).get("requests") or {}).get("storage")), spec.get("storageClassName")


def _storage_change(ctx: Context, objs: list[dict[str, Any]], server: str, what: str) -> str:
    """A StatefulSet's volumeClaimTemplates are immutable (an apply would be refused with 422 forever).
    When the spec asks for another size or class than the live StatefulSet has:
    - while its claim is not bound (no data was ever written), the StatefulSet and the pending claim
      are deleted and created anew with the new settings (for example a storage class that provisions);
    - once it is bound, the live claim template is kept and the returned message says so."""
    from ..backends.kube import is_subset
    sts = next(o for o in objs if o["kind"] == "StatefulSet")
    live = ctx.kube.get("apps/v1", "StatefulSet", sts["metadata"]["name"], ctx.namespace)
    if live is None:
        return ""
    want, have = _claim(sts), _claim(live)
    if is_subset({"requests": {"storage": want[0]}}, {"requests": {"storage": have[0]}}) and want[1] == have[1]:
        return ""
    claim = f"data-{server}-0"
    pvc = ctx.kube.get("v1", "PersistentVolumeClaim", claim, ctx.namespace)
    if pvc is None or (pvc.get("status") or {}).get("phase") == "Pending":
        ctx.kube.delete("apps/v1", "StatefulSet", sts["metadata"]["name"], ctx.namespace)
        if pvc is not None:
            ctx.kube.delete("v1", "PersistentVolumeClaim", claim, ctx.namespace)
        ctx.event("Normal", "StorageChanged", f"re-created the embedded {what} with {want[0]}, storage class "
                                              f"{want[1] or 'default'} (its claim was never bound)")
        return ""
    tmpl = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    tmpl["resources"]["requests"]["storage"] = have[0]
    if have[1] is None:
        tmpl.pop("storageClassName", None)
    else:
        tmpl["storageClassName"] = have[1]
    msg = (f"the embedded {what} keeps its bound volume ({have[0]}, storage class {have[1] or 'default'}): a "
           f"StatefulSet's volume claim cannot change to {want[0]}, class {want[1] or 'default'}; revert the storage "
           "settings, or move the data to a new deployment")
    ctx.event("Warning", "StorageChangeIgnored", msg)
    return msg


def _unbound_claim(ctx: Context, server: str, what: str) -> str | None:
    """Why the embedded server's PersistentVolumeClaim is not bound (None when it is, or is not there)."""
    claim = f"data-{server}-0"
    pvc = ctx.kube.get("v1", "PersistentVolumeClaim", claim, ctx.namespace)
    if pvc is None or (pvc.get("status") or {}).get("phase") != "Pending":
        return None
    events = ctx.kube.list("v1", "Event", ctx.namespace,
                           field_selector=f"involvedObject.kind=PersistentVolumeClaim,involvedObject.name={claim}")
    events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    reason = events[-1].get("message", "") if events else "no volume has been provisioned or bound yet"
    cls = (pvc.get("spec") or {}).get("storageClassName")
    section = {"MariaDB": "database", "RabbitMQ": "messaging", "Valkey": "jobboard"}[what]
    field = f"spec.{section}.embedded.storageClassName"
    return (f"PersistentVolumeClaim {claim} is Pending (storage class {cls or 'none: the cluster default'}): "
            f"{reason}. Set {field} to a StorageClass that provisions volumes, or create a PersistentVolume "
            "that the claim can bind")


def _embedded(ctx: Context, what: str, server: str, secret: str, component: str, url_key: str,
              generators: dict[str, Any], url: Any, build: Any, hand: Callable[[str], None]) -> str:
    """A single-replica server of ours: generated credentials, the client URL in the Secret,
    the StatefulSet and its Service. The URL is handed on (``hand``) at once: the configuration can be
    rendered while the server starts. Raises (retried) until the StatefulSet is ready; returns a note
    ('' or why the storage settings were not applied)."""
    from ..releases import images
    spec = ctx.spec
    assert spec is not None
    data = secrets.ensure_generated(ctx, secret, component, generators)
    value = url(quote(data["password"].decode(), safe=""), f"{server}.{ctx.namespace}.svc")
    secrets.ensure_values(ctx, secret, component, {url_key: value.encode()})
    hand(value)
    objs = build(kb.Inputs(ctx.name, ctx.namespace, ctx.uid, spec), images(spec.release, spec.images))
    note = _storage_change(ctx, objs, server, what)
    _apply_all(ctx, objs)
    if not _statefulset_ready(ctx, server):
        unbound = _unbound_claim(ctx, server, what)
        if unbound:
            raise StepError("VolumeNotBound", unbound, retry=True)
        raise StepError("Starting", f"waiting for the embedded {what} StatefulSet {server} to be ready", retry=True)
    return note


def step_database(ctx: Context) -> Result:
    spec = ctx.spec
    assert spec is not None
    db = spec.database
    names = _names(ctx)
    if db.external:
        ref = db.external.connectionSecret
        ctx.out.database_url = secrets.user_secret(ctx, ref.name, ref.key, "database.external").decode()
        return Result.ok("External", f"using the database in Secret {ref.name}")
    if db.managed:
        from ..backends import database
        m = db.managed
        admin_pw = secrets.user_secret(ctx, m.adminSecret.name, m.adminSecret.key, "database.managed").decode()
        data = secrets.ensure_generated(ctx, names.database_secret, "database",
                                        {"password": secrets.random_password})
        pw = data["password"].decode()
        res = database.ensure_database(database.AdminCredentials(m.host, m.port, m.adminUser, admin_pw),
                                       m.databaseName, m.userName, m.userHost, pw)
        url = database.connection_url(m.host, m.port, m.userName, pw, m.databaseName)
        secrets.ensure_values(ctx, names.database_secret, "database", {"connection": url.encode()})
        ctx.out.database_url = url
        if res.changes:
            ctx.event("Normal", "Database", "; ".join(res.changes))
        return Result.ok("Managed", f"database {m.databaseName} and user {m.userName} on {m.host}:{m.port}")
    note = _embedded(
        ctx, "MariaDB", names.mariadb, names.database_secret, "database", "connection",
        {"password": secrets.random_password, "root-password": secrets.random_password},
        lambda pw, host: f"mysql+pymysql://octavia:{pw}@{host}:3306/octavia?charset=utf8mb4", kb.embedded_mariadb,
        lambda url: setattr(ctx.out, "database_url", url))
    if note:
        return Result(c.TRUE, "StorageChangeIgnored", note)
    return Result.ok("Embedded", f"embedded MariaDB {names.mariadb} is ready")


def step_messaging(ctx: Context) -> Result:
    spec = ctx.spec
    assert spec is not None
    mq = spec.messaging
    names = _names(ctx)
    if mq.external:
        ref = mq.external.transportURLSecret
        url = secrets.user_secret(ctx, ref.name, ref.key, "messaging.external").decode().strip()
        if "://" not in url:
            raise StepError("InvalidTransportURL", f"the transport_url in Secret {ref.name} is not a URL "
                                                   "(expected rabbit://user:password@host:5672/)")
        ctx.out.transport_url = url
        return Result.ok("External", f"using the message queue in Secret {ref.name}")
    if mq.managed:
        from ..backends import messaging
        m = mq.managed
        admin_pw = secrets.user_secret(ctx, m.adminSecret.name, m.adminSecret.key, "messaging.managed").decode()
        data = secrets.ensure_generated(ctx, names.messaging_secret, "messaging",
                                        {"password": secrets.random_password})
        pw = data["password"].decode()
        res = messaging.ensure_rabbitmq(messaging.MgmtCredentials(str(m.managementURL), m.adminUser, admin_pw),
                                        m.vhost, m.userName, pw)
        url = messaging.transport_url(m.host, m.port, m.userName, pw, m.vhost)
        secrets.ensure_values(ctx, names.messaging_secret, "messaging", {"transport_url": url.encode()})
        ctx.out.transport_url = url
        if res.changes:
            ctx.event("Normal", "Messaging", "; ".join(res.changes))
        return Result.ok("Managed", f"vhost {m.vhost} and user {m.userName} on {m.host}:{m.port}")
    note = _embedded(
        ctx, "RabbitMQ", names.rabbitmq, names.messaging_secret, "messaging", "transport_url",
        {"password": secrets.random_password, "erlang-cookie": lambda: secrets.random_password(48)},
        lambda pw, host: f"rabbit://octavia:{pw}@{host}:5672/", kb.embedded_rabbitmq,
        lambda url: setattr(ctx.out, "transport_url", url))
    if note:
        return Result(c.TRUE, "StorageChangeIgnored", note)
    return Result.ok("Embedded", f"embedded RabbitMQ {names.rabbitmq} is ready")


# ----------------------------------------------------------------------------------------
# jobboard
# ----------------------------------------------------------------------------------------

def persistence_database_name(database_name: str) -> str:
    """The managed persistence database: next to Octavia's, named after it (64 characters at most)."""
    return f"{database_name[:52]}_persistence"


def _persistence_url(ctx: Context) -> str:
    """[task_flow] persistence_connection: the user's Secret, or a database of its own next to Octavia's
    (managed: created here; embedded: created by the db-sync Job, which runs inside the cluster)."""
    from ..backends import database
    spec = ctx.spec
    assert spec is not None
    jb, db = spec.jobboard, spec.database
    names = _names(ctx)
    if jb.persistence is not None:
        ref = jb.persistence.connectionSecret
        return secrets.user_secret(ctx, ref.name, ref.key, "jobboard.persistence").decode().strip()
    if db.managed:
        m = db.managed
        admin_pw = secrets.user_secret(ctx, m.adminSecret.name, m.adminSecret.key, "database.managed").decode()
        pw = secrets.ensure_generated(ctx, names.database_secret, "database",
                                      {"password": secrets.random_password})["password"].decode()
        pdb = persistence_database_name(m.databaseName)
        res = database.ensure_database(database.AdminCredentials(m.host, m.port, m.adminUser, admin_pw),
                                       pdb, m.userName, m.userHost, pw)
        if res.changes:
            ctx.event("Normal", "Database", "; ".join(res.changes))
        return database.connection_url(m.host, m.port, m.userName, pw, pdb)
    if db.external:   # refused by the CEL rule and the spec's validator; kept as a clear error
        raise StepError("PersistenceDatabaseMissing", "jobboard.enabled with database.external needs "
                        "jobboard.persistence.connectionSecret")
    # the embedded MariaDB: step "database" built Octavia's URL; the persistence database is next to it
    url = ctx.out.database_url or ""
    octavia = f"@{names.mariadb}.{ctx.namespace}.svc:3306/octavia?"
    if octavia not in url:
        raise StepError("Waiting", "waiting for the embedded database's URL (DatabaseReady)", retry=True)
    return url.replace(octavia, octavia.replace("/octavia?", f"/{kb.EMBEDDED_PERSISTENCE_DB}?"))


def _remove_embedded_valkey(ctx: Context) -> None:
    """The jobboard was turned off or moved to an external server: the embedded Valkey goes (looked
    for only when the last reconcile reported one, so a converged deployment makes no extra reads)."""
    last = c.get(ctx.status.get("conditions"), "JobboardReady") or {}
    if last.get("reason") in (None, "Disabled", "External"):
        return
    names = _names(ctx)
    gone = []
    for api_version, kind in (("apps/v1", "StatefulSet"), ("v1", "Service")):
        live = ctx.kube.get(api_version, kind, names.valkey, ctx.namespace)
        if live is not None and any(r.get("uid") == ctx.uid for r in live["metadata"].get("ownerReferences") or []):
            ctx.kube.delete(api_version, kind, names.valkey, ctx.namespace)
            gone.append(f"{kind} {names.valkey}")
    if gone:
        ctx.event("Normal", "Jobboard", "removed the embedded Valkey (" + ", ".join(gone) + "); its volume claim "
                  "follows deletionPolicy")


def step_jobboard(ctx: Context) -> Result:
    """spec.jobboard: the Redis/Valkey the workers share jobs through, and the persistence database
    their flows' progress is saved in."""
    from ..releases import images
    spec = ctx.spec
    assert spec is not None
    jb = spec.jobboard
    names = _names(ctx)
    if not jb.enabled or jb.external is not None:
        _remove_embedded_valkey(ctx)
    if not jb.enabled:
        ctx.out.jobboard = None
        return Result.ok("Disabled", "the jobboard is off: flows run inside the worker that received them, and a "
                         "worker that dies mid-flow leaves its load balancers in PENDING_* (spec.jobboard.enabled)")
    persistence = _persistence_url(ctx)
    ext = jb.external
    if ext is not None:
        pw = sentinel_pw = None
        if ext.passwordSecret:
            pw = secrets.user_secret(ctx, ext.passwordSecret.name, ext.passwordSecret.key,
                                     "jobboard.external.passwordSecret").decode().strip()
        if ext.sentinelPasswordSecret:
            sentinel_pw = secrets.user_secret(ctx, ext.sentinelPasswordSecret.name, ext.sentinelPasswordSecret.key,
                                              "jobboard.external.sentinelPasswordSecret").decode().strip()
        for tls in (ext.tls, ext.sentinelTLS):
            if tls is None:
                continue
            secrets.user_secret(ctx, tls.caSecret.name, tls.caSecret.key, "jobboard.external TLS CA")
            if tls.clientCertificateSecret:
                for key in ("tls.crt", "tls.key"):
                    secrets.user_secret(ctx, tls.clientCertificateSecret, key, "jobboard.external client certificate")
        ctx.out.jobboard = JobboardSecrets(persistence, pw, sentinel_pw)
        where = f"Sentinel master {ext.sentinel} via {', '.join(ext.hosts)}" if ext.sentinel else ext.hosts[0]
        return Result.ok("External", f"jobboard on {where}:{ext.port}{' over TLS' if ext.tls else ''}")
    data = secrets.ensure_generated(ctx, names.jobboard_secret, "jobboard", {"password": secrets.random_password})
    pw = data["password"].decode()
    secrets.ensure_values(ctx, names.jobboard_secret, "jobboard", {"valkey.conf": kb.valkey_conf(pw).encode()})
    ctx.out.jobboard = JobboardSecrets(persistence, pw)
    objs = kb.embedded_valkey(kb.Inputs(ctx.name, ctx.namespace, ctx.uid, spec), images(spec.release, spec.images))
    note = _storage_change(ctx, objs, names.valkey, "Valkey")
    _apply_all(ctx, objs)
    if not _statefulset_ready(ctx, names.valkey):
        unbound = _unbound_claim(ctx, names.valkey, "Valkey")
        if unbound:
            raise StepError("VolumeNotBound", unbound, retry=True)
        raise StepError("Starting", f"waiting for the embedded Valkey StatefulSet {names.valkey} to be ready",
                        retry=True)
    if note:
        return Result(c.TRUE, "StorageChangeIgnored", note)
    return Result.ok("Embedded", f"embedded Valkey {names.valkey} is ready")


# ----------------------------------------------------------------------------------------
# octavia.conf
# ----------------------------------------------------------------------------------------

def inputs(ctx: Context) -> kb.Inputs:
    """Everything the Kubernetes builders need, from the spec, status IDs and the Secrets."""
    if ctx.out.inputs is not None:
        return ctx.out.inputs
    spec = ctx.spec
    assert spec is not None
    ids = lambda k: recorded(ctx, k)  # noqa: E731
    ports = ctx.out.ports
    if ports is None:
        raise StepError("Waiting", "waiting for the health-manager ports (HealthManagerPortsReady)", retry=True)
    # amphorae send heartbeats to every listed address: only ports that bound can receive them
    hm_ips = {node: p.ip for node, p in ports.ports.items() if p.ip and p.bound}
    if not hm_ips:
        raise StepError("NoBoundPorts", "no health-manager port is bound: amphorae would have nowhere to send "
                        "heartbeats (see HealthManagerPortsReady)", retry=True)
    info = ctx.out.cloud_info or {}
    cloud = CloudValues(auth_url=info.get("auth_url") or "", image_owner_id=ids("imageOwnerId") or "",
                        flavor_id=ids("flavorId") or "", network_id=ids("networkId") or "",
                        amphora_secgroup_id=ids("amphoraSecurityGroupId") or "", health_manager_ips=hm_ips)
    pp = ctx.out.passphrases
    svc_pw = (ctx.out.service_password or "").encode() or \
        (ctx.kube.read_secret(ctx.namespace, _names(ctx).keystone_secret) or {}).get("password", b"")
    jb = ctx.out.jobboard
    ovn_nb = ovn_sb = None
    ovn = spec.providers.ovn
    if ovn is not None:
        what = "providers.ovn.connectionSecret"
        ovn_nb = secrets.user_secret(ctx, ovn.connectionSecret, "nb", what).decode().strip()
        ovn_sb = secrets.user_secret(ctx, ovn.connectionSecret, "sb", what).decode().strip()
        for conn in (ovn_nb, ovn_sb):
            if not all(part.split(":", 1)[0] in ("tcp", "ssl", "unix") for part in conn.split(",")):
                raise StepError("InvalidOVNConnection", f"{what}: {conn!r} is not an OVSDB connection "
                                "(tcp:HOST:PORT, ssl:HOST:PORT, or a comma-separated list of them)")
        if "ssl:" in ovn_nb + ovn_sb and not ovn.tlsSecret:
            raise StepError("InvalidOVNConnection", f"{what}: ssl: connections need providers.ovn.tlsSecret")
        if ovn.tlsSecret:
            for key in ("tls.crt", "tls.key", "ca.crt"):
                secrets.user_secret(ctx, ovn.tlsSecret, key, "providers.ovn.tlsSecret")
    sv = SecretValues(transport_url=ctx.out.transport_url, database_url=ctx.out.database_url,
                      heartbeat_key=pp["heartbeat-key"].decode(), service_password=svc_pw.decode(),
                      ca_key_passphrase=pp["ca-key-passphrase"].decode(),
                      server_certs_key_passphrase=pp["server-certs-key-passphrase"].decode(),
                      persistence_url=jb.persistence_url if jb else None,
                      jobboard_password=jb.password if jb else None,
                      jobboard_sentinel_password=jb.sentinel_password if jb else None,
                      ovn_nb_connection=ovn_nb, ovn_sb_connection=ovn_sb)
    net = ctx.out.network
    nodes = {node: {"portId": p.port_id, "mac": p.mac, "ip": p.ip, "prefixLength": p.prefix_length,
                    "bound": p.bound} for node, p in sorted(ports.ports.items())}
    base = kb.Inputs(ctx.name, ctx.namespace, ctx.uid, spec)
    assignments = kb.assignments_doc(base, {"id": net.network.id, "cidr": spec.managementNetwork.cidr,
                                            "mtu": net.mtu or 1500}, nodes)
    api_tls_digest = ""
    if spec.api.tls is not None:
        parts = [secrets.user_secret(ctx, spec.api.tls.secretName, key, "api.tls.secretName")
                 for key in ("tls.crt", "tls.key")]
        api_tls_digest = kb.digest(*parts)[:16]
    inp = kb.Inputs(ctx.name, ctx.namespace, ctx.uid, spec, cloud=cloud, secrets=sv, api_tls_digest=api_tls_digest,
                    certs_digest=(ctx.out.certs_digest or ""), assignments=assignments,
                    ready_nodes=len(ctx.out.ready_nodes or []) or 1, policy=_policy(ctx))
    ctx.out.inputs = inp
    return inp


def step_config(ctx: Context) -> Result:
    # the values it renders, not the servers' readiness: an embedded server still starting already has its URL
    spec = ctx.spec
    assert spec is not None
    missing = [what for what, value in (("the database URL (DatabaseReady)", ctx.out.database_url),
                                         ("the transport URL (MessagingReady)", ctx.out.transport_url),
                                         ("the jobboard (JobboardReady)",
                                          ctx.out.jobboard or not spec.jobboard.enabled)) if not value]
    if missing:
        raise StepError("Waiting", f"waiting for {', '.join(missing)}", retry=True)
    inp = inputs(ctx)
    _apply_all(ctx, kb.service_accounts(inp) + [kb.config_map(inp), kb.config_secret(inp)])
    return Result.ok("Ready", f"octavia.conf in ConfigMap {_names(ctx).config_map}, secrets in Secret "
                              f"{_names(ctx).config_secret} (config hash {kb.config_hash(inp)})")


# ----------------------------------------------------------------------------------------
# db-sync
# ----------------------------------------------------------------------------------------

def _job_log_tail(ctx: Context, job_name: str, lines: int = 20) -> str:
    pods = ctx.kube.list("v1", "Pod", ctx.namespace, label_selector=f"job-name={job_name}")
    if not pods:
        return "(no pod)"
    pod = sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""))[-1]
    name = pod["metadata"]["name"]
    try:
        text = ctx.kube.pod_log(ctx.namespace, name, lines).strip()
    except Exception as exc:  # noqa: BLE001 - the log is a nicety; the condition is the point
        text = f"(log of {name} unavailable: {type(exc).__name__})"
    # what the kubelet recorded of the container's end (exit code, reason), also without a log
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or {}
        if term:
            text += f" [exit code {term.get('exitCode')}: {term.get('reason', '')} {term.get('message', '')}".rstrip() \
                + "]"
    return text[-2000:]


def job_retry_delay(attempt: int) -> float:
    """Delay before a failed db-sync Job is replaced: base * 2^(attempt-1), capped at 30 minutes."""
    import os
    base = float(os.environ.get("OCTAVIA_OPERATOR_JOB_RETRY_DELAY", "60"))
    return min(base * 2 ** max(attempt - 1, 0), 1800.0)


def _parse_time(value: str | None) -> Any:
    import datetime as dt
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def step_dbsync(ctx: Context) -> Result:
    import datetime as dt
    spec = ctx.spec
    assert spec is not None
    from ..releases import RELEASES, images
    inp = inputs(ctx)
    img = images(spec.release, spec.images)
    bin_dir = RELEASES[spec.release].bin_dir
    job = kb.db_sync_job(inp, img, bin_dir)
    name = job["metadata"]["name"]
    running = ctx.status.get("release")
    if running and running != spec.release:
        upgrade = dict(ctx.status.get("upgrade") or {})
        if upgrade.get("toRelease") != spec.release:
            upgrade = {"fromRelease": running, "toRelease": spec.release,
                       "startedAt": ctx.now.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if upgrade.get("phase") in (None, "DatabaseSync"):
            upgrade["phase"] = "DatabaseSync"
            ctx.status_updates["upgrade"] = upgrade
    live = ctx.kube.get("batch/v1", "Job", name, ctx.namespace)
    if live is None:
        ctx.kube.apply(job, live=None)
        ctx.event("Normal", "DatabaseSync", f"started {name} (octavia-db-manage upgrade head)")
        raise StepError("Running", f"{name} is running octavia-db-manage upgrade head", retry=True)
    attempt = int((live["metadata"].get("annotations") or {}).get(kb.DB_SYNC_ATTEMPT_ANNOTATION) or 1)
    st = live.get("status") or {}
    if int(st.get("succeeded") or 0) >= 1:
        _delete_other_db_sync_jobs(ctx, keep=name)
        return Result.ok("Synced", f"{name} completed: the schema is at head for {spec.release}")
    failed = next((x for x in st.get("conditions") or [] if x.get("type") == "Failed" and x.get("status") == "True"),
                  None)
    if failed is None:
        if attempt > 1:
            raise StepError("Running", f"{name} is running octavia-db-manage upgrade head (attempt {attempt})",
                            retry=True)
        raise StepError("Running", f"{name} is running octavia-db-manage upgrade head", retry=True)
    tail = _job_log_tail(ctx, name)
    failed_at = _parse_time(failed.get("lastTransitionTime")) or ctx.now
    retry_at = failed_at + dt.timedelta(seconds=job_retry_delay(attempt))
    if ctx.now >= retry_at:
        # replaced under the same name: the Job is immutable, and a new name would leave the old one
        ctx.kube.delete("batch/v1", "Job", name, ctx.namespace)
        ctx.kube.apply(kb.db_sync_job(inp, img, bin_dir, attempt + 1), live=None)
        ctx.event("Warning", "DatabaseSyncRetried", f"{name} failed ({failed.get('reason', '')}); started "
                                                    f"attempt {attempt + 1}")
        raise StepError("Running", f"{name} is running octavia-db-manage upgrade head (attempt {attempt + 1}; "
                        f"attempt {attempt} failed: {tail})", retry=True)
    raise StepError("DatabaseSyncFailed", f"{name} failed ({failed.get('reason', '')}, attempt {attempt}); retried at "
                    f"{retry_at.strftime('%Y-%m-%dT%H:%M:%SZ')}; log tail: {tail}", retry=True)


def _delete_other_db_sync_jobs(ctx: Context, keep: str) -> None:
    """Once a migration succeeded, earlier db-sync Jobs (other images, other databases, failures) go."""
    sel = ",".join(f"{k}={v}" for k, v in n.selector(ctx.name, "db-sync").items())
    for job in ctx.kube.list("batch/v1", "Job", ctx.namespace, label_selector=sel):
        jname = job["metadata"]["name"]
        if jname != keep:
            ctx.kube.delete("batch/v1", "Job", jname, ctx.namespace)
            ctx.event("Normal", "DatabaseSync", f"removed the earlier db-sync Job {jname}")


# ----------------------------------------------------------------------------------------
# host agent and node labels
# ----------------------------------------------------------------------------------------

def _pod_ready(pod: dict[str, Any]) -> bool:
    return any(x.get("type") == "Ready" and x.get("status") == "True"
               for x in (pod.get("status") or {}).get("conditions") or [])


def step_hostagent(ctx: Context) -> Result:
    spec = ctx.spec
    assert spec is not None
    from ..releases import images
    inp = inputs(ctx)
    _apply_all(ctx, kb.service_accounts(inp)[1:] + [kb.hostagent_config_map(inp),
                                                    kb.hostagent_daemonset(inp, images(spec.release, spec.images))])
    ports = ctx.out.ports
    wanted = sorted(ports.ports)
    pods = ctx.kube.list("v1", "Pod", ctx.namespace,
                         label_selector=",".join(f"{k}={v}" for k, v in n.selector(ctx.name, "hostagent").items()))
    ready = sorted({p["spec"].get("nodeName") for p in pods if _pod_ready(p) and p.get("spec", {}).get("nodeName")}
                   & set(wanted))
    label = _names(ctx).o_hm0_label(ctx.namespace)
    for node in ctx.out.nodes_all or ctx.kube.list("v1", "Node"):
        nname = node["metadata"]["name"]
        has = (node["metadata"].get("labels") or {}).get(label) == "ready"
        if nname in ready and not has:
            ctx.kube.merge_patch("v1", "Node", nname, None, {"metadata": {"labels": {label: "ready"}}})
            ctx.event("Normal", "NodeReady", f"o-hm0 is plumbed on {nname}: Octavia controllers may run there")
        elif nname not in ready and has:
            ctx.kube.merge_patch("v1", "Node", nname, None, {"metadata": {"labels": {label: None}}})
            ctx.event("Warning", "NodeNotReady", f"o-hm0 is not ready on {nname}: controllers leave it")
    ctx.out.ready_nodes = ready
    ctx.out.inputs = None  # health-manager replicas follow the ready nodes
    missing = [x for x in wanted if x not in ready]
    if not ready:
        raise StepError("Waiting", f"waiting for the host agent to plumb o-hm0 on {', '.join(wanted)}", retry=True)
    if missing:
        return Result(c.TRUE, "Partial", f"o-hm0 ready on {', '.join(ready)}; not yet on {', '.join(missing)}")
    return Result.ok("Ready", f"o-hm0 ready on {', '.join(ready)}")


# ----------------------------------------------------------------------------------------
# services
# ----------------------------------------------------------------------------------------

# A release upgrade rolls the consumers of Octavia's messages before their producers: the workers (they
# run the flows), then the health managers and housekeeping (they post failovers and rotations), the API
# (it sends the requests) last; each one fully rolled out before the next starts.
UPGRADE_ORDER = ("worker", "health-manager", "housekeeping", "api")
PHASES = {"worker": "RollingWorker", "health-manager": "RollingHealthManager", "housekeeping": "RollingHousekeeping",
          "api": "RollingApi"}


def running_release(ctx: Context) -> str | None:
    """The release the services run: recorded in the status once rolled out; for a deployment made before
    that was recorded, the version label of its live worker Deployment."""
    if ctx.status.get("release"):
        return ctx.status["release"]
    live = ctx.kube.get("apps/v1", "Deployment", _names(ctx).component("worker"), ctx.namespace)
    return ((live or {}).get("metadata", {}).get("labels") or {}).get("app.kubernetes.io/version")


def _rolled(live: dict[str, Any] | None, want: int) -> tuple[bool, str]:
    live = live or {}
    st = live.get("status") or {}
    available, updated = int(st.get("availableReplicas") or 0), int(st.get("updatedReplicas") or 0)
    current = int(st.get("observedGeneration") or 0) >= int(live.get("metadata", {}).get("generation") or 0)
    return current and available >= want and updated >= want, f"{available}/{want}"


def step_services(ctx: Context) -> Result:
    spec = ctx.spec
    assert spec is not None
    from ..releases import RELEASES, images
    inp = inputs(ctx)
    img = images(spec.release, spec.images)
    bin_dir = RELEASES[spec.release].bin_dir
    deployments = {"api": kb.api_deployment(inp, img, bin_dir), "worker": kb.worker_deployment(inp, img, bin_dir),
                   "health-manager": kb.health_manager_deployment(inp, img, bin_dir),
                   "housekeeping": kb.housekeeping_deployment(inp, img, bin_dir)}
    _apply_all(ctx, [kb.api_service(inp), kb.api_pdb(inp)])
    ctx.status_updates["apiEndpoint"] = kb.internal_api_url(ctx.name, ctx.namespace, spec.api.port,
                                                            spec.api.tls is not None)
    running = running_release(ctx)
    if running and running != spec.release:
        return _upgrade(ctx, inp, running, deployments)
    _apply_all(ctx, list(deployments.values()))
    waiting = []
    for d in deployments.values():
        live = ctx.kube.get("apps/v1", "Deployment", d["metadata"]["name"], ctx.namespace)
        done, counts = _rolled(live, d["spec"]["replicas"])
        if not done:
            waiting.append(f"{d['metadata']['name']} {counts}")
    if waiting:
        raise StepError("RollingOut", "waiting for " + ", ".join(waiting), retry=True)
    if ctx.status.get("release") != spec.release:
        ctx.status_updates["release"] = spec.release
    pushed = _push_controller_list(ctx, inp)
    return Result.ok("Ready", "octavia-api, worker, health-manager and housekeeping are available" + pushed)


def _upgrade(ctx: Context, inp: kb.Inputs, running: str, deployments: dict[str, dict[str, Any]]) -> Result:
    """spec.release moved to the next release (step_spec refuses the rest) and db-sync migrated the
    schema: roll the services one after the other in UPGRADE_ORDER."""
    spec = inp.spec
    upgrade = dict(ctx.status.get("upgrade") or {})
    if upgrade.get("toRelease") != spec.release:
        upgrade = {"fromRelease": running, "toRelease": spec.release, "startedAt": ctx.now.strftime("%Y-%m-%dT%H:%M:%SZ")}
    for component in UPGRADE_ORDER:
        d = deployments[component]
        _apply_all(ctx, [d])
        live = ctx.kube.get("apps/v1", "Deployment", d["metadata"]["name"], ctx.namespace)
        done, counts = _rolled(live, d["spec"]["replicas"])
        if not done:
            if upgrade.get("phase") != PHASES[component]:
                ctx.event("Normal", "Upgrading", f"{running} -> {spec.release}: rolling {d['metadata']['name']}")
            upgrade["phase"] = PHASES[component]
            ctx.status_updates["upgrade"] = upgrade
            raise StepError("Upgrading", f"upgrading {running} -> {spec.release}: {d['metadata']['name']} {counts} "
                            f"(order: {', '.join(UPGRADE_ORDER)})", retry=True)
    ctx.status_updates["upgrade"] = None
    ctx.status_updates["release"] = spec.release
    ctx.event("Normal", "Upgraded", f"the services run {spec.release} (were {running})")
    pushed = _push_controller_list(ctx, inp)
    return Result.ok("Ready", f"upgraded to {spec.release}; octavia-api, worker, health-manager and housekeeping "
                              "are available" + pushed)


def _push_controller_list(ctx: Context, inp: kb.Inputs) -> str:
    """Once the controllers run with a new health-manager list, tell the live amphorae (they keep
    the list they booted with otherwise). Recorded in status so that it happens once per change; the
    amphorae that failed are retried, alone, with backoff, and ServicesReady stays False meanwhile."""
    from ..backends.openstack import loadbalancer
    from ..builders.config import controller_ip_port_list
    current = controller_ip_port_list(inp.spec, inp.cloud)
    st = ctx.status.get("amphoraConfig") or {}
    same_list = st.get("controllerIPPortList") == current
    pending = list(st.get("failed") or []) if same_list else []
    if same_list and not pending:
        return ""
    attempts = int(st.get("attempts") or 0) if same_list else 0
    due = _parse_time(st.get("retryAt")) if pending else None
    if due is not None and ctx.now < due:
        raise TransientError("AmphoraConfigFailed", f"{len(pending)} amphorae have not taken the health-manager "
                             f"list {current} yet ({', '.join(pending[:5])}); retried at {st['retryAt']}")
    from .. import metrics
    done, failed = loadbalancer.push_amphora_config(ctx.out.cloud, only=pending or None)
    metrics.amphora_pushes(ctx.namespace, ctx.name, len(done), len(failed))
    configured = (int(st.get("amphoraeConfigured") or 0) if same_list else 0) + len(done)
    record: dict[str, Any] = {"controllerIPPortList": current, "amphoraeConfigured": configured}
    if done:
        ctx.event("Normal", "AmphoraConfig", f"asked {len(done)} amphorae to reload their configuration "
                                             f"(health managers: {current})")
    if failed:
        attempts += 1
        retry_at = ctx.now + dt.timedelta(seconds=_amphora_retry_delay(attempts))
        record.update({"failed": sorted(failed), "attempts": attempts,
                       "retryAt": retry_at.strftime("%Y-%m-%dT%H:%M:%SZ")})
        ctx.status_updates["amphoraConfig"] = record
        for amp_id, why in sorted(failed.items()):
            ctx.event("Warning", "AmphoraConfigFailed", f"amphora {amp_id}: {why}")
        raise TransientError("AmphoraConfigFailed", f"{len(failed)} amphorae did not take the health-manager list "
                             f"{current} (attempt {attempts}; retried at {record['retryAt']}): "
                             + "; ".join(f"{k}: {v}" for k, v in sorted(failed.items())[:5]))
    ctx.status_updates["amphoraConfig"] = record
    return f"; {len(done)} amphorae told about the health managers {current}" if done else ""


def _policy(ctx: Context) -> str:
    """The API's policy.yaml: the operator's for advanced-rbac / keystone-default-roles, else the user's
    ConfigMap, checked to be a mapping of rule names to check strings (as oslo.policy reads it)."""
    import yaml

    from ..builders.config import policy_file
    spec = ctx.spec
    assert spec is not None
    ref = spec.policy.configMap
    if spec.policy.rules != "custom" or ref is None:
        return policy_file(spec)
    cm = ctx.kube.get("v1", "ConfigMap", ref.name, ctx.namespace)
    if cm is None:
        raise StepError("PolicyConfigMapNotFound", f"policy.configMap: ConfigMap {ctx.namespace}/{ref.name} does "
                        "not exist", retry=True)
    text = (cm.get("data") or {}).get(ref.key)
    if text is None:
        raise StepError("PolicyConfigMapKeyMissing", f"policy.configMap: ConfigMap {ref.name} has no key "
                        f"{ref.key!r}", retry=True)
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise StepError("InvalidPolicy", f"policy.configMap: {ref.name}[{ref.key}] is not YAML: "
                        f"{str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in doc.items()):
        raise StepError("InvalidPolicy", f"policy.configMap: {ref.name}[{ref.key}] must map rule names to check "
                        "strings (oslo.policy's policy.yaml)")
    return text


def _amphora_retry_delay(attempt: int) -> float:
    """Delay before failed amphorae are asked again: base * 2^(attempt-1), capped at 30 minutes."""
    import os
    base = float(os.environ.get("OCTAVIA_OPERATOR_AMPHORA_RETRY_DELAY", "30"))
    return min(base * 2 ** max(attempt - 1, 0), 1800.0)


__all__ = ["step_certificates", "step_database", "step_messaging", "step_jobboard", "step_config", "step_dbsync",
           "step_hostagent", "step_services", "TransientError"]


def teardown_backing_services(ctx: Context) -> list[str]:
    """deletionPolicy Delete, managed modes only: drop the database and user, delete the vhost and
    user that the operator created on the user's servers (external ones are never touched, embedded
    ones go with their StatefulSets)."""
    spec = ctx.spec
    assert spec is not None
    done: list[str] = []
    if spec.database.managed:
        from ..backends import database
        m = spec.database.managed
        admin_pw = secrets.user_secret(ctx, m.adminSecret.name, m.adminSecret.key, "database.managed").decode()
        also = (persistence_database_name(m.databaseName),) if spec.jobboard.persistence is None else ()
        res = database.drop_database_and_user(database.AdminCredentials(m.host, m.port, m.adminUser, admin_pw),
                                              m.databaseName, m.userName, m.userHost, also=also)
        done += res.changes
    if spec.messaging.managed:
        from ..backends import messaging
        q = spec.messaging.managed
        admin_pw = secrets.user_secret(ctx, q.adminSecret.name, q.adminSecret.key, "messaging.managed").decode()
        res = messaging.delete_vhost_and_user(messaging.MgmtCredentials(str(q.managementURL), q.adminUser, admin_pw),
                                              q.vhost, q.userName)
        done += res.changes
    return done
