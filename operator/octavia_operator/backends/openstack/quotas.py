"""Quotas of the Octavia service project (only the ones the spec gives).

Keys are those of :class:`octavia_operator.spec.QuotasSpec`: ``instances``, ``cores``, ``ramMB``,
``serverGroups``, ``serverGroupMembers`` go to Nova; ``ports``, ``securityGroups``,
``securityGroupRules`` to Neutron. Quotas are not owned resources: nothing is deleted or
reverted when the deployment goes away.
"""
from __future__ import annotations

from typing import Any, Mapping

from ...errors import StepError
from .common import Ensured, call

NOVA_KEYS = {"instances": "instances", "cores": "cores", "ramMB": "ram",
             "serverGroups": "server_groups", "serverGroupMembers": "server_group_members"}
NEUTRON_KEYS = {"ports": "ports", "securityGroups": "security_groups",
                "securityGroupRules": "security_group_rules"}


def ensure_quotas(conn: Any, project_id: str, quotas: Mapping[str, int | None]) -> Ensured:
    """Set the given quotas (keys of QuotasSpec; None values ignored) on ``project_id``.

    Reads each service's current quotas first and writes only the values that differ, in one
    update per service: a converged call makes zero writes. Returns Ensured(id=project_id,
    changes=["nova instances: 10 -> 50", ...], extra={"quotas": the values now in force}).
    """
    wanted = {k: int(v) for k, v in quotas.items() if v is not None}
    unknown = sorted(set(wanted) - set(NOVA_KEYS) - set(NEUTRON_KEYS))
    if unknown:
        raise StepError("InvalidQuota", f"unknown quota keys: {', '.join(unknown)}")
    changes: list[str] = []
    now: dict[str, int] = {}
    services = (("Nova", NOVA_KEYS, conn.compute.get_quota_set, conn.compute.update_quota_set),
                ("Neutron", NEUTRON_KEYS, conn.network.get_quota, conn.network.update_quota))
    for label, keys, get, update in services:  # at most one read and one update per service
        attrs = {keys[k]: v for k, v in wanted.items() if k in keys}
        if not attrs:
            continue
        current = call(f"reading the {label} quotas of project {project_id}", get, project_id)
        diff = {a: v for a, v in attrs.items() if getattr(current, a, None) != v}
        if diff:
            call(f"updating the {label} quotas of project {project_id}", update, project_id, **diff)
            changes += [f"{label.lower()} {a}: {getattr(current, a, None)} -> {v}" for a, v in sorted(diff.items())]
        now.update({k: wanted[k] for k in wanted if k in keys})
    return Ensured(id=project_id, changes=changes, extra={"quotas": now})
