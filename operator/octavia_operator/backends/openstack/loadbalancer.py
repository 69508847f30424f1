"""The Octavia API itself (the load-balancer service this operator runs).

Amphorae learn ``[health_manager] controller_ip_port_list`` at boot and keep it until a
failover; when the health-manager nodes change, Octavia's ``PUT /v2/octavia/amphorae/{id}/config``
makes each amphora agent reload its configuration from the controllers. The operator calls it
for every live amphora once the controllers run with the new list.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable

from ...builders.rollout import Amphora
from .common import call
from .session import classify

# amphorae serving a load balancer; spares (READY) have none, and Octavia's config API fails on them
LIVE = ("ALLOCATED",)


def push_amphora_config(conn: Any, only: Iterable[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """Ask every live amphora (or those of ``only`` that are still live) to reload its agent
    configuration; returns (configured IDs, {failed ID: why})."""
    amphorae = call("listing amphorae", lambda: list(conn.load_balancer.amphorae()))
    wanted = None if only is None else set(only)
    done: list[str] = []
    failed: dict[str, str] = {}
    for amp in amphorae:
        if amp.status not in LIVE or (wanted is not None and amp.id not in wanted):
            continue
        try:
            conn.load_balancer.configure_amphora(amp.id)
            done.append(amp.id)
        except Exception as exc:  # noqa: BLE001 - one amphora must not stop the others
            failed[amp.id] = classify(exc, "configuring amphora").message
    return done, failed


def amphorae(conn: Any) -> list[Amphora]:
    """Every amphora Octavia knows (one request), as the rollout planner reads them."""
    def when(value: Any) -> dt.datetime | None:
        if not value:
            return None
        t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)   # Octavia's times are UTC
    return [Amphora(a.id, a.loadbalancer_id, a.status, a.role, a.image_id, when(a.created_at))
            for a in call("listing amphorae", lambda: list(conn.load_balancer.amphorae()))]


def provisioning_statuses(conn: Any, lb_ids: Iterable[str]) -> dict[str, str]:
    """provisioning_status of these load balancers (one listing; the missing ones are absent)."""
    wanted = set(lb_ids)
    if not wanted:
        return {}
    lbs = call("listing load balancers", lambda: list(conn.load_balancer.load_balancers()))
    return {lb.id: lb.provisioning_status for lb in lbs if lb.id in wanted}


def failover_amphora(conn: Any, amp_id: str) -> None:
    call(f"failing over amphora {amp_id}", lambda: conn.load_balancer.failover_amphora(amp_id))
