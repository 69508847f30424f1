"""Shared conventions of the OpenStack modules: ownership markers, adoption, results.

Ownership: every resource the operator creates carries a marker naming the
OctaviaDeployment's UID:
- Neutron and Glance resources: the tags ``octavia-operator`` and ``octavia-operator:owner=<uid>``;
- Keystone users, projects, roles, services and Nova flavors: a description ending in
  ``[managed by octavia-operator owner=<uid>]`` (Keystone endpoints belong to their service);
- Nova key pairs: the public key of the key pair in the deployment's ssh Secret.
A resource found by name or ID without the marker is *adopted*: used and kept in shape where
that is safe, never deleted. Two candidates for one resource is an error, never a guess.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, TypeVar

from ...errors import StepError

MANAGED_TAG = "octavia-operator"
OWNER_TAG_PREFIX = "octavia-operator:owner="
MARKER_PREFIX = "[managed by octavia-operator owner="

T = TypeVar("T")


def owner_tag(uid: str) -> str:
    return f"{OWNER_TAG_PREFIX}{uid}"


def owner_tags(uid: str) -> list[str]:
    return [MANAGED_TAG, owner_tag(uid)]


def marker(uid: str) -> str:
    return f"{MARKER_PREFIX}{uid}]"


def with_marker(description: str, uid: str) -> str:
    return f"{description} {marker(uid)}".strip()


def owned_by(resource: Any, uid: str) -> bool:
    """True when the resource carries this deployment's marker (tag or description)."""
    tags = getattr(resource, "tags", None) or []
    if owner_tag(uid) in tags:
        return True
    desc = getattr(resource, "description", None) or ""
    return marker(uid) in desc


def owner_of(resource: Any) -> str | None:
    """The UID of the OctaviaDeployment that owns the resource, if any."""
    for t in getattr(resource, "tags", None) or []:
        if t.startswith(OWNER_TAG_PREFIX):
            return t[len(OWNER_TAG_PREFIX):]
    desc = getattr(resource, "description", None) or ""
    i = desc.find(MARKER_PREFIX)
    if i >= 0:
        return desc[i + len(MARKER_PREFIX):].split("]", 1)[0]
    return None


class Ambiguous(StepError):
    def __init__(self, what: str, candidates: Iterable[Any]):
        names = ", ".join(f"{getattr(c, 'name', None) or '?'} ({getattr(c, 'id', '?')})" for c in candidates)
        super().__init__("Ambiguous", f"more than one {what} matches: {names}; "
                                      "name the one to use by ID in the spec, or remove the others")


class OwnedByAnother(StepError):
    def __init__(self, what: str, resource: Any, other: str):
        super().__init__("OwnedByAnotherDeployment",
                         f"{what} {getattr(resource, 'name', '?')} ({getattr(resource, 'id', '?')}) belongs to "
                         f"another OctaviaDeployment (uid {other})")


def pick_one(candidates: Iterable[T], what: str) -> T | None:
    items = list(candidates)
    if len(items) > 1:
        raise Ambiguous(what, items)
    return items[0] if items else None


def check_not_foreign(resource: Any, uid: str, what: str) -> None:
    other = owner_of(resource)
    if other is not None and other != uid:
        raise OwnedByAnother(what, resource, other)


@dataclass
class Ensured:
    """What an ensure_* call did: the resource's ID, and whether it wrote anything."""

    id: str | None
    created: bool = False
    adopted: bool = False            # found without our marker: used, never deleted
    changes: list[str] = field(default_factory=list)   # human-readable repairs/updates made
    extra: dict[str, Any] = field(default_factory=dict)  # module-specific details for status

    @property
    def wrote(self) -> bool:
        return self.created or bool(self.changes)


def call(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one SDK call, turning its exceptions into StepError/TransientError."""
    from .session import classify
    try:
        return fn(*args, **kwargs)
    except StepError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise classify(exc, what) from None
