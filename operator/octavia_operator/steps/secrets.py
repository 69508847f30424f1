"""Generated Secrets (passwords, keys): created once, owned by the OctaviaDeployment, never logged.

``ensure_generated(ctx, name, component, generators)`` returns the Secret's data, creating the
Secret or adding only the keys that are missing (server-side apply); an existing value is never
regenerated (that is what ``rotate`` is for). A complete Secret costs one read and no write.
"""
from __future__ import annotations

import base64
import secrets as pysecrets
from typing import Callable, Mapping

from .. import names as n
from ..reconcile import Context

Generator = Callable[[], bytes]


def random_password(nbytes: int = 32) -> bytes:
    return pysecrets.token_urlsafe(nbytes).encode()


def _b64(v: bytes) -> str:
    return base64.b64encode(v).decode()


def _body(ctx: Context, name: str, component: str, data: Mapping[str, bytes]) -> dict:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": ctx.namespace, "labels": n.labels(ctx.name, component),
                     "ownerReferences": [ctx.owner_reference]},
        "data": {k: _b64(v) for k, v in sorted(data.items())},
    }


def ensure_generated(ctx: Context, name: str, component: str, generators: Mapping[str, Generator],
                     rotate: frozenset[str] = frozenset()) -> dict[str, bytes]:
    """The data of Secret ``name``: existing keys kept, missing (or ``rotate``d) keys generated."""
    live = ctx.kube.get("v1", "Secret", name, ctx.namespace)
    data = {k: base64.b64decode(v) for k, v in ((live or {}).get("data") or {}).items()}
    new = {k: gen() for k, gen in generators.items() if k not in data or k in rotate}
    data.update(new)
    if live is None or new:
        # every key is applied, so that server-side apply never drops one the operator set before
        ctx.kube.apply(_body(ctx, name, component, data), live=live)
    return data


def ensure_values(ctx: Context, name: str, component: str, values: Mapping[str, bytes]) -> None:
    """Derived values (URLs built from generated passwords): written when they differ."""
    live = ctx.kube.get("v1", "Secret", name, ctx.namespace)
    data = {k: base64.b64decode(v) for k, v in ((live or {}).get("data") or {}).items()}
    if live is not None and all(data.get(k) == v for k, v in values.items()):
        return
    ctx.kube.apply(_body(ctx, name, component, {**data, **values}), live=live)
