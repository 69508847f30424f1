"""The reconcile: an ordered list of idempotent steps, each reporting one condition.

Handlers (``handlers.py``) call :func:`reconcile` with a :class:`Context`; it runs every
step whose dependencies are satisfied, collects one condition per step plus ``Ready``,
and returns the status to write (only what differs from the current status). Steps do
their I/O through the context's clients, so tests can run them against fakes or the
loopback cloud.
"""
from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

from .. import conditions as c
from ..errors import StepError
from ..spec import OctaviaDeploymentSpec

if TYPE_CHECKING:  # annotations only: the runner does no I/O of its own
    from ..backends.openstack.identity import IdentityResult, ServiceProject
    from ..builders.cloud import CloudDesired

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobboardSecrets:
    """What the jobboard step found: the secret [task_flow] values (None where there is none)."""

    persistence_url: str
    password: str | None = None
    sentinel_password: str | None = None


@dataclass
class Result:
    status: str
    reason: str
    message: str = ""

    @classmethod
    def ok(cls, reason: str = "Ready", message: str = "") -> "Result":
        return cls(c.TRUE, reason, message)


@dataclass
class Handoff:
    """The values one step hands to the next, within one reconcile (never persisted)."""

    cloud: Any = None                         # the openstacksdk Connection (step "cloud")
    cloud_info: dict[str, Any] | None = None  # who we are on the cloud: user, project, region
    desired: "CloudDesired | None" = None     # the OpenStack resources the spec asks for
    project: "ServiceProject | None" = None   # the service project and the identity's checked inputs (step "project")
    identity: "IdentityResult | None" = None  # user, project, service, endpoints (step "identity")
    image: Any = None                         # the amphora image (step "image")
    network: Any = None                       # network, subnet, security groups (step "network")
    ports: Any = None                         # the health-manager ports (step "ports")
    nodes_all: list[dict[str, Any]] | None = None  # every Node, listed once per reconcile
    service_password: str | None = None
    passphrases: dict[str, bytes] | None = None
    certs_digest: str | None = None
    client_ca_since: dt.datetime | None = None  # amphorae booted before it do not trust the client CA
    public_url: str | None = None             # where spec.api.expose makes the API reachable (step "expose")
    database_url: str | None = None
    transport_url: str | None = None
    jobboard: JobboardSecrets | None = None   # spec.jobboard, when enabled (step "jobboard")
    inputs: Any = None                        # builders.kube.Inputs, once computed
    ready_nodes: list[str] | None = None      # nodes whose o-hm0 the host agent has plumbed
    transient: list[str] = field(default_factory=list)  # steps whose failure clears by itself


@dataclass
class Context:
    """Everything one reconcile of one OctaviaDeployment needs."""

    name: str
    namespace: str
    uid: str
    generation: int | None
    raw_spec: dict[str, Any]
    status: dict[str, Any]
    annotations: dict[str, str] = field(default_factory=dict)  # the resource's (rotation requests)
    kube: Any = None                      # octavia_operator.backends.kube.Kube (or a fake)
    cloud_factory: Callable[["Context"], Any] | None = None
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    spec: OctaviaDeploymentSpec | None = None
    # what steps hand to later steps: typed, one field per value
    out: "Handoff" = field(default_factory=lambda: Handoff())
    # status fields steps want written besides conditions (merged into .status)
    status_updates: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    # the identity the OpenStack resources are tagged with (steps.secrets.owner_id): this resource's
    # uid, or its predecessor's when it was re-created under deletionPolicy Retain
    owner_id: str | None = None

    # results of OpenStack steps to take as they are instead of running them (see CloudMemo)
    reuse: dict[str, Result] = field(default_factory=dict)
    results: dict[str, Result] = field(default_factory=dict)   # every step's, once run_steps is done
    # steps run on several threads: merge_status is how two of them add keys to one status map, once() how
    # they share one read
    started: float = field(default_factory=time.monotonic, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _once: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def event(self, etype: str, reason: str, message: str) -> None:
        self.events.append((etype, reason, message))

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        """compute() the first time ``key`` is asked for in this reconcile; every other caller, on any thread,
        waits for that value (a read shared by steps that run at the same time is made once)."""
        with self._lock:
            slot = self._once.get(key)
            if slot is None:
                slot = self._once[key] = [threading.Lock(), False, None]
        with slot[0]:
            if not slot[1]:
                slot[2], slot[1] = compute(), True
            return slot[2]

    def merge_status(self, key: str, values: dict[str, Any]) -> None:
        """Set keys of the status map ``key`` (None removes one), keeping what the status has and what other
        steps of this reconcile set."""
        with self._lock:
            current = self.status_updates.get(key)
            if current is None:
                current = self.status_updates[key] = dict(self.status.get(key) or {})
            for k, v in values.items():
                if v is None:
                    current.pop(k, None)
                else:
                    current[k] = v

    @property
    def owner_reference(self) -> dict[str, Any]:
        from ..spec import GROUP, KIND, VERSION
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": self.name, "uid": self.uid,
                "controller": True, "blockOwnerDeletion": True}


@dataclass(frozen=True)
class Step:
    name: str
    condition: str
    run: Callable[[Context], Result]
    depends: tuple[str, ...] = ()   # must have succeeded (condition True), else this step waits
    after: tuple[str, ...] = ()     # must have run (whatever the outcome): it reads what they hand off
    cloud: bool = False             # works on OpenStack: a reconcile that follows the children may reuse it


# ----------------------------------------------------------------------------------
# the runner
# ----------------------------------------------------------------------------------

@dataclass
class Outcome:
    conditions: list[c.Cond]
    status_patch: dict[str, Any]        # only the fields that differ from the current status
    transient: bool                     # something may succeed by itself: retry soon
    events: list[tuple[str, str, str]]


# Steps whose dependencies are met run at the same time (identity, image, flavor, network and quotas once the
# service project exists, the key pair once the user does; certificates and the embedded servers from the
# start), each on its own thread: most of a step is
# waiting for an API. Steps share the Context; what they write to it is one Handoff field each, and the status
# maps two steps add to go through Context.merge_status.
PARALLEL_STEPS = int(os.environ.get("OCTAVIA_OPERATOR_PARALLEL_STEPS", "6"))


def _run_one(ctx: Context, step: Step) -> Result:
    from .. import metrics
    started = time.monotonic()
    try:
        res = step.run(ctx)
    except StepError as exc:
        res = Result(c.FALSE, exc.reason, exc.message)
        if exc.retry:
            ctx.out.transient.append(step.name)
    except Exception as exc:  # noqa: BLE001 - reported, retried, never crashes the operator
        log.exception("step %s failed", step.name)
        res = Result(c.FALSE, "InternalError", f"{type(exc).__name__}: {exc}")
        ctx.out.transient.append(step.name)
    ended = time.monotonic()
    metrics.step_done(ctx.namespace, ctx.name, step.name, res.status, res.reason, ended - started)
    log.debug("step %s: %s %s, %.3f-%.3f s into the reconcile", step.name, res.status, res.reason,
              started - ctx.started, ended - ctx.started)
    return res


def run_steps(ctx: Context, steps: list[Step] | None = None, parallel: int | None = None) -> list[c.Cond]:
    """Run every step once its ``depends`` and ``after`` steps have finished; a step whose ``depends`` did not
    succeed is reported Unknown/Waiting without running. Conditions come back in the steps' order."""
    from .. import metrics
    if steps is None:
        from . import STEPS as steps
    workers = max(1, PARALLEL_STEPS if parallel is None else parallel)
    known = {s.name for s in steps}
    results: dict[str, Result] = {}
    pending = list(steps)
    running: dict[concurrent.futures.Future, Step] = {}
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix=f"reconcile-{ctx.name}") as pool:
        while pending or running:
            progressed = True
            while progressed:   # settle every step that can be decided or started now
                progressed = False
                for step in list(pending):
                    if any(d in known and d not in results for d in step.depends + step.after):
                        continue
                    pending.remove(step)
                    progressed = True
                    blocked = [d for d in step.depends if d not in results or results[d].status != c.TRUE]
                    if blocked:
                        results[step.name] = Result(c.UNKNOWN, "Waiting", f"waiting for {', '.join(blocked)}")
                        metrics.step_done(ctx.namespace, ctx.name, step.name, c.UNKNOWN, "Waiting", None)
                    elif step.name in ctx.reuse:
                        results[step.name] = ctx.reuse[step.name]
                    elif workers == 1:
                        results[step.name] = _run_one(ctx, step)
                    else:
                        running[pool.submit(_run_one, ctx, step)] = step
            if not running:
                if pending:   # a dependency on a step that never runs: a programming error
                    raise RuntimeError(f"steps {[s.name for s in pending]} can never run")
                break
            finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for fut in finished:
                results[running.pop(fut).name] = fut.result()
    ctx.results = results
    return [c.Cond(s.condition, results[s.name].status, results[s.name].reason, results[s.name].message)
            for s in steps]


# ----------------------------------------------------------------------------------
# reconciles that follow the children without asking OpenStack again
# ----------------------------------------------------------------------------------

# what the OpenStack steps hand to the others
CLOUD_HANDOFF = ("cloud", "cloud_info", "desired", "project", "identity", "image", "network", "ports", "service_password")


@dataclass(frozen=True)
class CloudMemo:
    """What the OpenStack steps of a full reconcile found (those that succeeded). A reconcile caused by a
    child (a Deployment rolling, a DaemonSet's pods getting ready) reuses it instead of reading OpenStack
    again, while the resource's generation and annotations are the same and the memo is younger than the
    drift timer's interval (kopf's own annotations, which change as it handles the resource, do not count);
    node changes, spec changes, the drift timer and retries reconcile in full."""

    uid: str
    generation: int | None
    annotations: tuple[tuple[str, str], ...]
    at: float
    results: dict[str, Result]
    handoff: dict[str, Any]

    def valid_for(self, ctx: Context, max_age: float) -> bool:
        return (self.uid == ctx.uid and self.generation == ctx.generation
                and self.annotations == _relevant(ctx.annotations) and time.monotonic() - self.at < max_age)

    def apply(self, ctx: Context) -> None:
        ctx.reuse = dict(self.results)
        for name, value in self.handoff.items():
            setattr(ctx.out, name, value)


def _relevant(annotations: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The annotations a reconcile acts upon (steps.REQUEST_ANNOTATIONS); not the others, which kopf rewrites
    as it handles the resource (its progress and last-handled configuration)."""
    from . import REQUEST_ANNOTATIONS
    return tuple(sorted((k, v) for k, v in annotations.items() if k in REQUEST_ANNOTATIONS))


def cloud_memo(ctx: Context, previous: CloudMemo | None = None,
               steps: list[Step] | None = None) -> CloudMemo | None:
    """The memo to keep after a reconcile: the successful results of its OpenStack steps. After a full
    reconcile: a new memo, or None when one of them failed (what follows must ask OpenStack again); a step
    that waited for a Kubernetes one (the rollout for the services) is simply left out. After a reconcile
    that reused ``previous``: the previous memo plus the OpenStack steps it had to run and that succeeded."""
    if steps is None:
        from . import STEPS as steps
    cloud = [s.name for s in steps if s.cloud]
    ok = {n: ctx.results[n] for n in cloud if n in ctx.results and ctx.results[n].status == c.TRUE}
    if previous is not None and ctx.reuse:
        return replace(previous, results={**previous.results, **ok})
    if any(n in ctx.results and ctx.results[n].status == c.FALSE for n in cloud) or not ok:
        return None
    return CloudMemo(ctx.uid, ctx.generation, _relevant(ctx.annotations), time.monotonic(), ok,
                     {f: getattr(ctx.out, f) for f in CLOUD_HANDOFF})


def reconcile(ctx: Context, steps: list[Step] | None = None) -> Outcome:
    conds = run_steps(ctx, steps)
    conds.append(c.ready_from(conds))
    new_conditions = c.merge(ctx.status.get("conditions"), conds, ctx.generation, ctx.now)
    desired = {"conditions": new_conditions, "observedGeneration": ctx.generation, **ctx.status_updates}
    patch = merge_diff(ctx.status, desired)
    return Outcome(conds, patch, bool(ctx.out.transient), ctx.events)


def merge_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning ``old`` into ``new`` for the keys of ``new`` (nested keys that
    ``new`` dropped become null); empty when nothing differs, so a converged status is not written."""
    patch: dict[str, Any] = {}
    for k, v in new.items():
        o = old.get(k)
        if o == v:
            continue
        if isinstance(o, dict) and isinstance(v, dict):
            sub = merge_diff(o, v)
            sub.update({gone: None for gone in o if gone not in v})
            patch[k] = sub
        else:
            patch[k] = v
    return patch


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def lock_for(namespace: str, name: str) -> threading.Lock:
    """One reconcile (or deletion) at a time per resource, whatever triggered it; keyed by name, so
    the lock is taken before the resource is read and it is read once."""
    with _locks_guard:
        return _locks.setdefault(f"{namespace}/{name}", threading.Lock())
