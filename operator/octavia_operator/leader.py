"""Leader election with a coordination.k8s.io Lease, as Kubernetes' own controllers do it.

Several replicas of the operator may run (a hot standby, a rolling upgrade); exactly one acts. Before
kopf starts, ``run`` blocks in :meth:`LeaderElection.acquire` until this process holds the Lease; then
a thread renews it every ``retry_period`` seconds. A leader that cannot renew within ``renew_deadline``
(API server unreachable, Lease taken) exits at once, before its Lease can expire and another replica
take over, so two never act together; its pod restarts as a standby. On a clean shutdown the Lease is
released, so the standby takes over without waiting for it to expire.

Expiry is judged by the local clock from the moment this process last saw the Lease change (as
client-go does), never by comparing another machine's timestamps. Every write carries the
resourceVersion it read: of two candidates, only one can win.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from .backends.kube import Conflict

log = logging.getLogger(__name__)

API_VERSION = "coordination.k8s.io/v1"


def default_identity() -> str:
    """The pod name (the chart sets POD_NAME) or the host name, plus a random suffix: a restarted
    process is a new candidate, never mistaken for the one that held the Lease before."""
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}_{uuid.uuid4().hex[:8]}"


def _micro(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaderElection:
    kube: Any                       # octavia_operator.backends.kube.Kube
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs 0 < retry period < renew deadline < lease duration")
        self._observed: tuple[Any, ...] | None = None   # (holder, renewTime, transitions) last seen
        self._observed_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one attempt ---------------------------------------------------------------------------
    def _body(self, transitions: int, acquire: bool, now: dt.datetime) -> dict[str, Any]:
        spec: dict[str, Any] = {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_duration),
                                "renewTime": _micro(now), "leaseTransitions": transitions}
        if acquire:
            spec["acquireTime"] = _micro(now)
        return spec

    def try_acquire_or_renew(self) -> bool:
        """One round: True when this process holds the Lease afterwards."""
        now = dt.datetime.now(dt.timezone.utc)
        lease = self.kube.get(API_VERSION, "Lease", self.name, self.namespace)
        if lease is None:
            try:
                self.kube.create({"apiVersion": API_VERSION, "kind": "Lease",
                                  "metadata": {"name": self.name, "namespace": self.namespace},
                                  "spec": self._body(0, True, now)})
            except Conflict:
                return False            # another candidate created it first
            self._seen((self.identity, None, 0))
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        transitions = int(spec.get("leaseTransitions") or 0)
        record = (holder, spec.get("renewTime"), transitions)
        if record != self._observed:
            self._seen(record)
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and self.clock() < self._observed_at + duration:
            return False                # held by another, and not expired as far as we can tell
        mine = holder == self.identity
        body = {"metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                "spec": self._body(transitions if mine else transitions + 1, not mine, now)}
        if mine:
            body["spec"].pop("acquireTime", None)
        try:
            self.kube.merge_patch(API_VERSION, "Lease", self.name, self.namespace, body)
        except Conflict:
            return False                # changed since we read it: someone else wrote first
        self._seen((self.identity, body["spec"]["renewTime"], body["spec"]["leaseTransitions"]))
        if not mine:
            log.info("leader election: %s acquired the Lease %s/%s (held before by %r)", self.identity,
                     self.namespace, self.name, holder or None)
        return True

    def _seen(self, record: tuple[Any, ...]) -> None:
        self._observed = record
        self._observed_at = self.clock()

    # -- the loop ------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Block until this process is the leader."""
        log.info("leader election: %s waiting for the Lease %s/%s", self.identity, self.namespace, self.name)
        waited = False
        while True:
            try:
                if self.try_acquire_or_renew():
                    return
            except Exception as exc:  # noqa: BLE001 - the API server may be away for a while: keep trying
                log.warning("leader election: %s", exc)
            if not waited:
                log.info("leader election: the Lease is held by %r; standing by", (self._observed or ("?",))[0])
                waited = True
            time.sleep(self.retry_period)

    def keep(self, on_lost: Callable[[str], None]) -> None:
        """Renew in a thread; ``on_lost(reason)`` when the Lease could not be renewed in time."""
        def loop() -> None:
            last_ok = self.clock()
            while not self._stop.wait(self.retry_period):
                try:
                    ok = self.try_acquire_or_renew()
                except Exception as exc:  # noqa: BLE001
                    log.warning("leader election: renewing failed: %s", exc)
                    ok = False
                if ok:
                    last_ok = self.clock()
                elif self.clock() - last_ok >= self.renew_deadline or (
                        self._observed and self._observed[0] not in ("", self.identity)):
                    if not self._stop.is_set():
                        on_lost(f"the Lease {self.namespace}/{self.name} could not be renewed for "
                                f"{self.clock() - last_ok:.0f} s (holder now: {(self._observed or ('?',))[0]!r})")
                    return
        self._thread = threading.Thread(target=loop, name="leader-election", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop renewing and hand the Lease back (a clean shutdown): the standby takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.retry_period + 5)
        try:
            lease = self.kube.get(API_VERSION, "Lease", self.name, self.namespace)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                self.kube.merge_patch(API_VERSION, "Lease", self.name, self.namespace, {
                    "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                    "spec": {"holderIdentity": None, "leaseDurationSeconds": 1}})
                log.info("leader election: %s released the Lease", self.identity)
        except Exception as exc:  # noqa: BLE001 - it expires by itself anyway
            log.warning("leader election: releasing the Lease failed: %s", exc)
