"""Amphora rollout (pure): which amphorae to fail over next, so that every live amphora runs the current
image and trusts the current client CA.

An amphora is *outdated* when it was booted from another image than the current one (a new upload, a
newer tagged image) or before the client CA it must trust was made (``since``: a staged or promoted
client CA, docs/certificates.md). The operator replaces outdated amphorae through Octavia's failover
API, one amphora at a time per load balancer (an ACTIVE_STANDBY pair never loses both), at most
``max_concurrent`` load balancers at once, with ``pause`` seconds between batches; the first failure
stops the rollout until a new request (or a new target). Each reconcile calls :func:`plan` with what
Octavia reports and the state kept in ``status.amphoraRollout``; it returns the failovers to start and
the new state.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

LIVE = ("ALLOCATED",)   # serving a load balancer (Octavia fails over amphorae through their load balancer)
TIME = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class Amphora:
    """One amphora as the planner reads it (backends.openstack.loadbalancer.amphorae makes them)."""
    id: str
    lb_id: str | None
    status: str
    role: str | None
    image_id: str | None
    created_at: dt.datetime | None


@dataclass(frozen=True)
class Target:
    image_id: str | None            # the current amphora image (None: unknown, image not checked)
    since: dt.datetime | None       # amphorae created before this must go (client CA); None: no such rule

    def outdated(self, amp: Amphora) -> bool:
        if amp.status not in LIVE:
            return False
        if self.image_id and amp.image_id and amp.image_id != self.image_id:
            return True
        return bool(self.since and amp.created_at and amp.created_at < self.since)

    def key(self) -> str:
        return f"{self.image_id or '-'}@{self.since.strftime(TIME) if self.since else '-'}"


@dataclass(frozen=True)
class State:
    """status.amphoraRollout, as the planner reads and writes it."""
    target: str = ""                                   # Target.key() this state is about
    phase: str = "Idle"                  # Idle | Outdated | RollingOut | Paused | Failed | Done
    in_flight: Mapping[str, str] = field(default_factory=dict)   # load balancer -> amphora failed over
    started: Mapping[str, str] = field(default_factory=dict)     # load balancer -> when (RFC 3339)
    completed: int = 0
    failed: Mapping[str, str] = field(default_factory=dict)      # load balancer -> why
    batch_done_at: str | None = None
    request: str | None = None                          # the one-shot annotation value being served

    @classmethod
    def from_status(cls, doc: Mapping[str, Any] | None) -> "State":
        d = dict(doc or {})
        return cls(target=d.get("target", ""), phase=d.get("phase", "Idle"), in_flight=dict(d.get("inFlight") or {}),
                   started=dict(d.get("startedAt") or {}), completed=int(d.get("completed") or 0),
                   failed=dict(d.get("failed") or {}), batch_done_at=d.get("batchDoneAt"),
                   request=d.get("request"))

    def to_status(self, outdated: int) -> dict[str, Any]:
        out: dict[str, Any] = {"target": self.target, "phase": self.phase, "completed": self.completed,
                               "outdated": outdated}
        if self.in_flight:
            out["inFlight"] = dict(self.in_flight)
            out["startedAt"] = dict(self.started)
        if self.failed:
            out["failed"] = dict(self.failed)
        if self.batch_done_at:
            out["batchDoneAt"] = self.batch_done_at
        if self.request:
            out["request"] = self.request
        return out


@dataclass(frozen=True)
class Plan:
    state: State
    start: list[Amphora]               # fail these over now
    finished: list[str]                # load balancers whose failover completed since the last look
    newly_failed: dict[str, str]       # load balancer -> why, found this time
    outdated: list[Amphora]            # what is still to do (including in flight)


def _parse(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def plan(state: State, target: Target, amphorae: Iterable[Amphora], lb_status: Mapping[str, str],
         allowed: bool, now: dt.datetime, max_concurrent: int = 1, pause: float = 30,
         timeout: float = 1800) -> Plan:
    """The next move. ``lb_status``: provisioning_status of the load balancers involved (in flight, or
    with outdated amphorae). ``allowed``: whether new failovers may start (Automatic, or a pending
    manual request); failovers in flight are followed either way."""
    amps = list(amphorae)
    if state.target != target.key():
        # a new target (image or client CA): what was in flight is still followed, the rest starts over
        state = replace(state, target=target.key(), phase="Idle", failed={}, completed=0)
    outdated = [a for a in amps if target.outdated(a)]
    in_flight = dict(state.in_flight)
    started = dict(state.started)
    finished: list[str] = []
    newly_failed: dict[str, str] = {}
    for lb, amp_id in list(in_flight.items()):
        status = lb_status.get(lb)
        began = _parse(started.get(lb)) or now
        if status == "ACTIVE":
            finished.append(lb)
        elif status == "ERROR" or status is None:
            newly_failed[lb] = (f"failover of amphora {amp_id} left load balancer {lb} in ERROR" if status == "ERROR"
                                else f"load balancer {lb} disappeared during the failover of amphora {amp_id}")
        elif (now - began).total_seconds() > timeout:
            newly_failed[lb] = f"failover of amphora {amp_id} still {status} after {int(timeout)} s"
        else:
            continue
        in_flight.pop(lb)
        started.pop(lb, None)
    completed = state.completed + len(finished)
    failed = {**state.failed, **newly_failed}
    batch_done_at = state.batch_done_at
    if state.in_flight and not in_flight:
        batch_done_at = now.strftime(TIME)
    start: list[Amphora] = []
    waited = _parse(batch_done_at)
    if failed:
        phase = "Failed"            # stopped: a new request or a new target starts again
    elif not outdated and not in_flight:
        phase = "Done" if completed else "Idle"
    elif not allowed:
        phase = "RollingOut" if in_flight else "Outdated"
    elif in_flight:
        phase = "RollingOut"        # a batch at a time: the next starts when this one is done
    elif waited is not None and (now - waited).total_seconds() < pause:
        phase = "Paused"
    else:
        # a new batch: up to max_concurrent load balancers, one amphora each (a pair's other half waits
        # for a later batch: both are never down together), only load balancers Octavia lets us touch
        phase = "RollingOut"
        for amp in sorted(outdated, key=lambda a: (a.lb_id or "", a.role != "BACKUP", a.id)):
            if len(in_flight) >= max_concurrent:
                break
            if not amp.lb_id or amp.lb_id in in_flight or lb_status.get(amp.lb_id) != "ACTIVE":
                continue
            start.append(amp)
            in_flight[amp.lb_id] = amp.id
            started[amp.lb_id] = now.strftime(TIME)
    new = replace(state, phase=phase, in_flight=in_flight, started=started, completed=completed, failed=failed,
                  batch_done_at=batch_done_at)
    return Plan(new, start, finished, newly_failed, outdated)
