"""Status conditions (pure): the standard Kubernetes shape, with stable transition times."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Iterable

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"
READY = "Ready"


def now_rfc3339(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.astimezone(dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Cond:
    """A condition as a step reports it (without the bookkeeping fields)."""

    type: str
    status: str
    reason: str
    message: str = ""


def merge(existing: Iterable[dict[str, Any]] | None, new: Iterable[Cond], generation: int | None,
          now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Merge reported conditions into the existing list.

    ``lastTransitionTime`` changes only when the status changes, so re-reporting the same
    state yields an identical list (no status write on a converged resource). Conditions
    that are no longer reported are dropped; order follows ``new``.
    """
    old = {c.get("type"): c for c in (existing or [])}
    out = []
    for c in new:
        prev = old.get(c.type)
        ltt = prev.get("lastTransitionTime") if prev and prev.get("status") == c.status else None
        item = {
            "type": c.type,
            "status": c.status,
            "reason": c.reason,
            "message": c.message,
            "lastTransitionTime": ltt or now_rfc3339(now),
        }
        if generation is not None:
            item["observedGeneration"] = generation
        out.append(item)
    return out


def ready_from(conds: list[Cond]) -> Cond:
    """Ready is True only when every other condition is True; else it names the first that is not."""
    for c in conds:
        if c.status != TRUE:
            msg = f"{c.type} is {c.status}: {c.reason}"
            if c.message:
                msg += f" ({c.message})"
            return Cond(READY, FALSE, c.reason, msg)
    return Cond(READY, TRUE, "AllReady", "Octavia is installed and every component is ready")


def get(conditions: list[dict[str, Any]] | None, ctype: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == ctype), None)
