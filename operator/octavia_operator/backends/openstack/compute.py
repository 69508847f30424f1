"""Nova: the amphora flavor and the amphora ssh key pair.

Flavor (seed: ``amp_flavor_id``)
    By ID (adopted; missing: ``FlavorNotFound``), or by name (adopted when it exists and is not
    ours; several: ``Ambiguous``), else created PRIVATE (``is_public=False``) with the sizing and
    the description marker ``[managed by octavia-operator owner=<uid>]`` (the description needs
    Nova API microversion >= 2.55; the SDK negotiates up to 2.61, Zed offers 2.93; without it
    the flavor could not be recognised as ours, so an older Nova is an error). Octavia boots
    amphorae as its service user in the service project, so a private flavor must grant access
    to that project: access is checked and repaired on owned AND adopted private flavors.
    Sizing differences of an adopted flavor are reported (``extra["warnings"]``), never changed;
    an owned flavor whose sizing no longer matches is replaced (Nova flavors are immutable;
    running amphorae keep their embedded copy).

Key pair (seed: ``amp_ssh_key_name``)
    Registered for the Octavia SERVICE USER: the caller passes a connection authenticated as
    that user (:func:`connect_as`). Ownership is the public key itself: the key the operator
    generates carries the comment ``octavia-operator:owner=<uid>``; a key pair with another key
    is ours when its comment is the same marker (then it is replaced), else ``KeypairConflict``.
"""
from __future__ import annotations

import threading

from typing import Any

from ...builders.cloud import FlavorDesired
from ...errors import StepError
from .common import Ensured, call, check_not_foreign, owned_by, owner_tag, pick_one, with_marker

FLAVOR_DESCRIPTION = "Octavia amphora flavor"
DESCRIPTION_MICROVERSION = (2, 55)
RSA_BITS = 3072


# ------------------------------------------------------------------------------------------
# flavor

def _flavors(conn: Any) -> list[Any]:
    return call("listing flavors", lambda: list(conn.compute.flavors(details=True, is_public=None)))


def _sizing(f: Any) -> tuple[int, int, int]:
    return (int(f.vcpus or 0), int(f.ram or 0), int(f.disk or 0))


def _sizing_diff(f: Any, d: FlavorDesired) -> list[str]:
    out = []
    for label, have, want in (("vcpus", f.vcpus, d.vcpus), ("ram MiB", f.ram, d.ram_mb),
                              ("disk GiB", f.disk, d.disk_gb)):
        if int(have or 0) != want:
            out.append(f"{label} {have} (spec: {want})")
    return out


def _ensure_access(conn: Any, flavor: Any, project_id: str) -> list[str]:
    if getattr(flavor, "is_public", True):
        return []
    access = call(f"reading the access list of flavor {flavor.id}", conn.compute.get_flavor_access, flavor)
    if any(a.get("tenant_id") == project_id for a in access):
        return []
    from openstack import exceptions as sdk

    def add() -> None:
        try:
            conn.compute.flavor_add_tenant_access(flavor, project_id)
        except sdk.ConflictException:   # granted meanwhile
            pass

    call(f"granting project {project_id} access to flavor {flavor.id}", add)
    return [f"granted the service project {project_id} access to private flavor {flavor.name} ({flavor.id})"]


def _check_description_support(conn: Any) -> None:
    try:
        ver = conn.compute.get_endpoint_data().max_microversion
    except Exception:  # noqa: BLE001 - discovery problems surface in the create call itself
        return
    if ver is not None and tuple(ver) < DESCRIPTION_MICROVERSION:
        raise StepError("NovaTooOld", f"Nova offers API microversions up to "
                        f"{'.'.join(map(str, ver))}; flavor descriptions (the ownership marker) need 2.55")


def _create_flavor(conn: Any, d: FlavorDesired, uid: str) -> Any:
    _check_description_support(conn)
    return call(f"creating flavor {d.name}", conn.compute.create_flavor, name=d.name, vcpus=d.vcpus,
                ram=d.ram_mb, disk=d.disk_gb, is_public=False, description=with_marker(FLAVOR_DESCRIPTION, uid))


def ensure_flavor(conn: Any, d: FlavorDesired, uid: str, project_id: str) -> Ensured:
    """The amphora flavor exists and ``project_id`` (the service project) may use it.

    Returns Ensured(id=flavor ID, created, adopted, changes, extra={"name", "vcpus", "ram", "disk",
    "is_public", "warnings"}). A converged call only reads.
    """
    from openstack import exceptions as sdk
    changes: list[str] = []
    warnings: list[str] = []
    created = False
    if d.flavor_id:
        def get() -> Any:
            try:
                return conn.compute.get_flavor(d.flavor_id)
            except sdk.NotFoundException:
                return None
        flavor = call(f"reading flavor {d.flavor_id}", get)
        if flavor is None:
            raise StepError("FlavorNotFound", f"flavor {d.flavor_id} (amphora.flavor.id) does not exist")
        check_not_foreign(flavor, uid, "flavor")
    else:
        flavor = pick_one((f for f in _flavors(conn) if f.name == d.name), f"flavor named {d.name!r}")
        if flavor is not None:
            check_not_foreign(flavor, uid, "flavor")
        if flavor is not None and owned_by(flavor, uid) and _sizing(flavor) != (d.vcpus, d.ram_mb, d.disk_gb):
            diff = ", ".join(_sizing_diff(flavor, d))
            call(f"deleting flavor {flavor.id}", conn.compute.delete_flavor, flavor, ignore_missing=True)
            changes.append(f"replaced flavor {d.name} ({flavor.id}: {diff})")
            flavor = None
        if flavor is None:
            flavor = _create_flavor(conn, d, uid)
            created = True
    adopted = not owned_by(flavor, uid)
    if adopted and not d.flavor_id:
        diff = _sizing_diff(flavor, d)
        if diff:
            warnings.append(f"adopted flavor {flavor.name} ({flavor.id}) differs from the spec: {', '.join(diff)}; "
                            "flavors are immutable and adopted ones are never changed")
    changes += _ensure_access(conn, flavor, project_id)
    if created:
        changes.insert(0, f"created private flavor {d.name} ({flavor.id}): {d.vcpus} vCPU, {d.ram_mb} MiB RAM, "
                          f"{d.disk_gb} GiB disk")
    return Ensured(id=flavor.id, created=created, adopted=adopted, changes=changes,
                   extra={"name": flavor.name, "vcpus": flavor.vcpus, "ram": flavor.ram, "disk": flavor.disk,
                          "is_public": bool(flavor.is_public), "warnings": warnings})


def delete_owned_flavor(conn: Any, uid: str, flavor_id: str | None) -> bool:
    """Delete the flavor when it carries this uid's marker; True when it was deleted.
    Adopted (unmarked) flavors survive; already gone is fine."""
    from openstack import exceptions as sdk
    if not flavor_id:
        return False

    def get() -> Any:
        try:
            return conn.compute.get_flavor(flavor_id)
        except sdk.NotFoundException:
            return None

    flavor = call(f"reading flavor {flavor_id}", get)
    if flavor is None or not owned_by(flavor, uid):
        return False
    call(f"deleting flavor {flavor_id}", conn.compute.delete_flavor, flavor, ignore_missing=True)
    return True


# ------------------------------------------------------------------------------------------
# key pair

def keypair_comment(uid: str) -> str:
    """The comment of generated public keys: the ownership marker of Nova key pairs."""
    return owner_tag(uid)


def generate_ssh_keypair(comment: str | None = None) -> tuple[bytes, str]:
    """A new RSA-3072 key pair: (private key in OpenSSH format, public key ``ssh-rsa AAAA... comment``).

    RSA because every amphora image accepts it: Ubuntu/CentOS/RHEL images, including FIPS-mode
    ones where Ed25519 is refused, and old OpenSSH/cloud-init; OpenSSH signs with rsa-sha2-256/512.
    Pure: nothing is stored or logged.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    if comment:
        public = f"{public} {comment}"
    return private, public


def _key_body(public_key: str) -> tuple[str, ...]:
    """(type, base64) of an OpenSSH public key line, ignoring the comment and whitespace."""
    return tuple((public_key or "").split()[:2])


def _key_comment(public_key: str) -> str:
    parts = (public_key or "").split(None, 2)
    return parts[2].strip() if len(parts) > 2 else ""


def _get_keypair(service_conn: Any, name: str, user_id: str | None = None) -> Any:
    """The key pair ``name`` of the connection's user (or, as an admin, of ``user_id``), or None."""
    from openstack import exceptions as sdk

    def get() -> Any:
        try:
            return service_conn.compute.get_keypair(name, user_id=user_id)
        except sdk.NotFoundException:
            return None
    return call(f"reading key pair {name}", get)


def ensure_keypair(service_conn: Any, name: str, public_key: str) -> Ensured:
    """Key pair ``name`` of the user of ``service_conn`` holds ``public_key``.

    Same key: nothing written. Another key whose comment is the same ownership marker (non-empty)
    as ``public_key``'s: replaced (delete + create; key pairs are immutable). Another key
    otherwise: StepError ``KeypairConflict``. Returns Ensured(id=name, extra={"user_id",
    "fingerprint"}).
    """
    from openstack import exceptions as sdk
    existing = _get_keypair(service_conn, name)
    changes: list[str] = []
    if existing is not None:
        if _key_body(existing.public_key) == _key_body(public_key):
            return Ensured(id=existing.name, extra={"user_id": existing.user_id, "fingerprint": existing.fingerprint})
        comment = _key_comment(public_key)
        if not comment or _key_comment(existing.public_key) != comment:
            raise StepError("KeypairConflict",
                            f"key pair {name} of the Octavia service user exists with another public key "
                            f"(fingerprint {existing.fingerprint}) that this operator did not register; "
                            "delete it or choose another amphora.ssh.keyName")
        call(f"deleting key pair {name}", service_conn.compute.delete_keypair, name, ignore_missing=True)
        changes.append(f"replaced key pair {name} (old fingerprint {existing.fingerprint})")

    def create() -> Any:
        try:
            return service_conn.compute.create_keypair(name=name, public_key=public_key, type="ssh")
        except sdk.ConflictException:
            return None

    kp = call(f"creating key pair {name}", create)
    if kp is None:   # created meanwhile by someone else: judge it on the next call
        from ...errors import TransientError
        raise TransientError("KeypairConflict", f"key pair {name} appeared while it was being created")
    kp = _get_keypair(service_conn, name) or kp
    if existing is None:
        changes.append(f"registered key pair {name} (fingerprint {kp.fingerprint}) for the Octavia service user")
    return Ensured(id=name, created=existing is None, changes=changes,
                   extra={"user_id": kp.user_id, "fingerprint": kp.fingerprint})


def delete_keypair(service_conn: Any, name: str, public_key: str, user_id: str | None = None) -> bool:
    """Delete key pair ``name`` of the service user when it holds ``public_key``; True when deleted.
    Another key or no key pair: nothing is deleted. With ``user_id``, ``service_conn`` may be an
    admin connection acting on that user's key pair (Nova microversion >= 2.10), which works even
    when the user can no longer authenticate (teardown)."""
    existing = _get_keypair(service_conn, name, user_id)
    if existing is None or _key_body(existing.public_key) != _key_body(public_key):
        return False
    call(f"deleting key pair {name}", service_conn.compute.delete_keypair, name, ignore_missing=True,
         user_id=user_id)
    return True


# ------------------------------------------------------------------------------------------
# connections

_as_cache: dict[str, tuple[str, Any]] = {}
_as_lock = threading.Lock()


def connect_as(conn: Any, user: str, password: str, project: str, user_domain: str, project_domain: str) -> Any:
    """A Connection authenticated as ``user`` (password auth, project-scoped), with the admin
    connection's auth URL, region, interface and TLS settings (CA bundle, verify, client cert).
    Reads no clouds.yaml and no environment variables. Kept for the next reconciles (its token and
    discovered endpoints with it) while the same settings and password are asked for; a new password
    replaces it."""
    import hashlib
    import json

    from openstack import connection

    cfg = conn.config
    auth_url = cfg.get_auth_args().get("auth_url")
    kwargs: dict[str, Any] = {
        "auth_type": "password",
        "auth": {"auth_url": auth_url, "username": user, "password": password, "project_name": project,
                 "user_domain_name": user_domain, "project_domain_name": project_domain},
        "region_name": cfg.get_region_name(),
        "interface": cfg.get_interface(),
    }
    raw = cfg.config
    for key in ("cacert", "cert", "key", "verify", "identity_api_version"):
        if raw.get(key) is not None:
            kwargs[key] = raw[key]
    who = json.dumps({**kwargs, "auth": {**kwargs["auth"], "password": None}}, sort_keys=True, default=str)
    secret = hashlib.sha256(password.encode()).hexdigest()
    with _as_lock:
        cached = _as_cache.get(who)
        if cached is not None and cached[0] == secret:
            return cached[1]
    made = connection.Connection(**kwargs)
    with _as_lock:
        _as_cache[who] = (secret, made)
    return made
