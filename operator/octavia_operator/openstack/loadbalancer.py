"""The Octavia API itself (the load-balancer service this operator runs).

Amphorae learn ``[health_manager] controller_ip_port_list`` at boot and keep it until a
failover; when the health-manager nodes change, Octavia's ``PUT /v2/octavia/amphorae/{id}/config``
makes each amphora agent reload its configuration from the controllers. The operator calls it
for every live amphora once the controllers run with the new list.
"""
from __future__ import annotations

from typing import Any

from .common import call
from .session import classify

# amphorae serving a load balancer; spares (READY) have none, and Octavia's config API fails on them
LIVE = ("ALLOCATED",)


def push_amphora_config(conn: Any) -> tuple[list[str], list[str]]:
    """Ask every live amphora to reload its agent configuration; returns (configured IDs, failures)."""
    amphorae = call("listing amphorae", lambda: list(conn.load_balancer.amphorae()))
    done: list[str] = []
    failed: list[str] = []
    for amp in amphorae:
        if amp.status not in LIVE:
            continue
        try:
            conn.load_balancer.configure_amphora(amp.id)
            done.append(amp.id)
        except Exception as exc:  # noqa: BLE001 - one amphora must not stop the others
            failed.append(f"{amp.id}: {classify(exc, 'configuring amphora').message}")
    return done, failed
