"""Generated Secrets (passwords, keys): created once, never logged, and never lost by accident.

``ensure_generated(ctx, name, component, generators)`` returns the Secret's data, creating the
Secret or adding only the keys that are missing (server-side apply); an existing value is never
regenerated (that is what ``rotate`` is for). A complete Secret costs one read and no write.

What these Secrets hold cannot be regenerated without breaking what runs: the CA keys and their
passphrases (amphorae trust the CAs), the heartbeat key (amphorae sign with it), the service, database
and messaging passwords. So under ``deletionPolicy: Retain`` they carry no ownerReference and outlive
the resource; a resource re-created under the same name in the same namespace finds them and goes
on with them. Under ``Delete`` the resource owns them and the garbage collector removes them with it.

They also carry, as annotations, what must survive with them:
- ``octavia-operator.dev/owner-id``: the identity the OpenStack resources are tagged with (the uid of
  the resource that first created them), so that a re-created resource owns them again;
- ``octavia-operator.dev/handled-<request>``: the rotation requests already carried out, so that a
  re-created resource whose manifest still carries the annotation does not rotate again.
"""
from __future__ import annotations

import base64
import secrets as pysecrets
from typing import Any, Callable, Mapping

from .. import names as n
from .runner import Context
from ..errors import StepError

Generator = Callable[[], bytes]

OWNER_ID_ANNOTATION = "octavia-operator.dev/owner-id"
HANDLED_PREFIX = "octavia-operator.dev/handled-"


def random_password(nbytes: int = 32) -> bytes:
    return pysecrets.token_urlsafe(nbytes).encode()


def _b64(v: bytes) -> str:
    return base64.b64encode(v).decode()


def _annotations(live: Mapping[str, Any] | None) -> dict[str, str]:
    return dict(((live or {}).get("metadata") or {}).get("annotations") or {})


def retained(ctx: Context) -> bool:
    """True unless the spec says Delete (an unparsed spec keeps everything)."""
    return ctx.spec is None or ctx.spec.deletionPolicy != "Delete"


def owner_id(ctx: Context) -> str:
    """The ownership identity of this deployment's OpenStack resources: recorded on the service-user
    Secret when it is first created (this resource's uid), read back from it afterwards; a resource
    re-created under Retain thus owns what its predecessor created. Cached for one reconcile."""
    if ctx.owner_id is None:
        read(ctx, n.Names(ctx.name).keystone_secret)
    assert ctx.owner_id is not None
    return ctx.owner_id


def handled(live: Mapping[str, Any] | None) -> dict[str, str]:
    """The rotation requests recorded on a Secret: request -> the annotation value carried out."""
    return {k[len(HANDLED_PREFIX):]: v for k, v in _annotations(live).items() if k.startswith(HANDLED_PREFIX)}


def body(ctx: Context, name: str, component: str, data: Mapping[str, bytes],
         handled_requests: Mapping[str, str] | None = None) -> dict:
    md: dict[str, Any] = {
        "name": name, "namespace": ctx.namespace, "labels": n.labels(ctx.name, component),
        "annotations": {OWNER_ID_ANNOTATION: owner_id(ctx),
                        **{HANDLED_PREFIX + k: v for k, v in sorted((handled_requests or {}).items())}}}
    if not retained(ctx):
        md["ownerReferences"] = [ctx.owner_reference]
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": md,
            "data": {k: _b64(v) for k, v in sorted(data.items())}}


def _current(ctx: Context, live: Mapping[str, Any], want: dict) -> bool:
    """Whether the live Secret already has the wanted annotations and ownership (data aside)."""
    md = live.get("metadata") or {}
    ann = md.get("annotations") or {}
    if any(ann.get(k) != v for k, v in want["metadata"]["annotations"].items()):
        return False
    ours = [r for r in md.get("ownerReferences") or [] if r.get("uid") == ctx.uid]
    return bool(ours) == ("ownerReferences" in want["metadata"])


def apply(ctx: Context, name: str, component: str, data: Mapping[str, bytes], live: Mapping[str, Any] | None,
          handled_requests: Mapping[str, str] | None = None, *, data_changed: bool) -> bool:
    """Write the Secret when its data changed, or its annotations or ownership are not as wanted
    (every key is applied, so that server-side apply never drops one the operator set before)."""
    want = body(ctx, name, component, data, {**handled(live), **(handled_requests or {})})
    if live is not None and not data_changed and _current(ctx, live, want):
        return False
    ctx.kube.apply(want, live=live)
    return True


def read(ctx: Context, name: str) -> dict | None:
    """The live Secret. The service-user Secret is read once per reconcile (steps running at the same time
    share that read), and it settles :func:`owner_id`."""
    if name != n.Names(ctx.name).keystone_secret:
        return ctx.kube.get("v1", "Secret", name, ctx.namespace)

    def first() -> dict | None:
        live = ctx.kube.get("v1", "Secret", name, ctx.namespace)
        if ctx.owner_id is None:
            ctx.owner_id = _annotations(live).get(OWNER_ID_ANNOTATION) or ctx.uid
        return live
    return ctx.once(f"secret/{name}", first)


_UNREAD: Any = object()


def ensure_generated(ctx: Context, name: str, component: str, generators: Mapping[str, Generator],
                     rotate: frozenset[str] = frozenset(), handled_requests: Mapping[str, str] | None = None,
                     live: Mapping[str, Any] | None = _UNREAD) -> dict[str, bytes]:
    """The data of Secret ``name``: existing keys kept, missing (or ``rotate``d) keys generated.
    ``live``: the Secret as just read with :func:`read`, to save a second read."""
    if live is _UNREAD:
        live = read(ctx, name)
    data = {k: base64.b64decode(v) for k, v in ((live or {}).get("data") or {}).items()}
    new = {k: gen() for k, gen in generators.items() if k not in data or k in rotate}
    data.update(new)
    apply(ctx, name, component, data, live, handled_requests, data_changed=bool(new))
    return data


def ensure_values(ctx: Context, name: str, component: str, values: Mapping[str, bytes]) -> None:
    """Derived values (URLs built from generated passwords): written when they differ."""
    live = read(ctx, name)
    data = {k: base64.b64decode(v) for k, v in ((live or {}).get("data") or {}).items()}
    changed = live is None or any(data.get(k) != v for k, v in values.items())
    apply(ctx, name, component, {**data, **values}, live, data_changed=changed)


def user_secret(ctx: Context, name: str, key: str, what: str) -> bytes:
    """A value from a Secret the user made (never written by the operator)."""
    data = ctx.kube.read_secret(ctx.namespace, name)
    if data is None:
        raise StepError("SecretNotFound", f"{what}: Secret {ctx.namespace}/{name} does not exist", retry=True)
    if key not in data:
        raise StepError("SecretKeyMissing", f"{what}: Secret {name} has no key {key!r}", retry=True)
    return data[key]
