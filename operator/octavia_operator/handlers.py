"""kopf handlers: thin wrappers that build a Context and call the one reconcile.

create / update / resume and a periodic timer (drift repair) all run the same idempotent
``steps.runner.reconcile`` (through ``reconcile_by_name``); only what differs is written to ``.status``. Node events and events of
the children (labelled managed-by=octavia-operator) schedule a debounced reconcile of the
deployment concerned. Deleting the resource honours ``deletionPolicy`` (Retain: nothing in
OpenStack is touched; Delete: what this deployment owns is deleted first); Kubernetes children
go with their owner reference.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Any, Callable

import kopf

from . import errors, metrics
from .steps import runner as r
from .spec import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)

DRIFT_INTERVAL = float(os.environ.get("OCTAVIA_OPERATOR_DRIFT_INTERVAL", "300"))


def retry_delay(retry: int) -> float:
    """Backoff for retried reconciles: base * 2^retry, capped (read at call time: tests shorten it)."""
    base = float(os.environ.get("OCTAVIA_OPERATOR_RETRY_DELAY", "15"))
    cap = float(os.environ.get("OCTAVIA_OPERATOR_RETRY_MAX", "300"))
    return min(base * (2 ** min(retry, 10)), cap)

_kube: Any = None


def kube() -> Any:
    """The operator's Kubernetes client (built once from the in-cluster or kubeconfig settings)."""
    global _kube
    if _kube is None:
        from kubernetes import client, config

        from .backends.kube import Kube
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        _kube = Kube(client.ApiClient())
    return _kube


def set_kube(k: Any) -> None:
    """Tests point the operator at their own API server."""
    global _kube
    _kube = k


def cloud_from_secret(ctx: r.Context) -> Any:
    """Connect to OpenStack with the clouds.yaml from the credentials Secret."""
    from .backends.openstack import session
    spec = ctx.spec
    assert spec is not None
    ref = spec.cloud.credentialsSecret
    data = ctx.kube.read_secret(ctx.namespace, ref.name)
    if data is None:
        raise errors.StepError("CredentialsSecretNotFound", f"Secret {ctx.namespace}/{ref.name} does not exist",
                          retry=True)
    if ref.key not in data:
        raise errors.StepError("CredentialsSecretKeyMissing", f"Secret {ref.name} has no key {ref.key!r}", retry=True)
    cacert = None
    if spec.cloud.caBundleSecret:
        ca = ctx.kube.read_secret(ctx.namespace, spec.cloud.caBundleSecret.name) or {}
        cacert = ca.get(spec.cloud.caBundleSecret.key)
        if cacert is None:
            raise errors.StepError("CABundleNotFound", f"Secret {spec.cloud.caBundleSecret.name} or its key "
                              f"{spec.cloud.caBundleSecret.key!r} does not exist", retry=True)
    return session.connect(data[ref.key], spec.cloud.cloudName, spec.cloud.region, spec.cloud.interface, cacert)


def _context(body: Any, meta: Any, spec: Any, status: Any) -> r.Context:
    return r.Context(
        name=meta["name"], namespace=meta["namespace"], uid=meta["uid"], generation=meta.get("generation"),
        raw_spec=dict(spec or {}), status=dict(status or {}), annotations=dict(meta.get("annotations") or {}),
        kube=kube(), cloud_factory=cloud_from_secret)


# per resource: what the OpenStack steps of its last full reconcile found (steps.runner.CloudMemo)
_memos: dict[tuple[str, str], r.CloudMemo] = {}


def reconcile_by_name(namespace: str, name: str, logger: Any = log, why: str = "",
                      follow_children: bool | Callable[[], bool] = False) -> r.Outcome | None:
    """THE reconcile path: every trigger (create, update, resume, the drift timer, a node or a child
    event) comes here. Under the resource's lock it reads the live object (so the status it starts
    from is the latest), reconciles, writes the status itself (a merge patch of what differs) and posts
    the Events; nothing is left for kopf to write afterwards, so no stale status can land on a newer
    one. None when the resource is gone or being deleted.
    ``follow_children``: caused by a child only (a rollout, pods getting ready): the OpenStack steps'
    results of the last full reconcile are reused while valid, so the churn of the children costs no
    OpenStack request (a callable: asked once the lock is held, whether only children caused the run)."""
    from .backends.kube import Replaced, apply_merge_patch
    k = kube()
    with r.lock_for(namespace, name):
        if callable(follow_children):
            follow_children = follow_children()
            why = why or ("child event" if follow_children else "node event")
        live = k.get(f"{GROUP}/{VERSION}", "OctaviaDeployment", name, namespace)  # the latest status
        if live is None or live["metadata"].get("deletionTimestamp"):
            return None
        ctx = _context(live, live["metadata"], live.get("spec"), live.get("status"))
        memo = _memos.get((namespace, name))
        reused = follow_children and memo is not None and memo.valid_for(ctx, DRIFT_INTERVAL)
        if reused:
            memo.apply(ctx)
        outcome = r.reconcile(ctx)
        fresh = r.cloud_memo(ctx, memo if reused else None)
        if fresh is None:
            _memos.pop((namespace, name), None)
        else:
            _memos[(namespace, name)] = fresh
        if outcome.status_patch:
            try:
                k.patch_status(f"{GROUP}/{VERSION}", "OctaviaDeployment", name, namespace, live["metadata"]["uid"],
                               ctx.status, outcome.status_patch)
            except Replaced:   # deleted (and maybe made again) while this reconcile ran
                _memos.pop((namespace, name), None)
                logger.info("not written: the resource was deleted while it was reconciled")
                return None
        for etype, reason, message in outcome.events:
            try:
                k.post_event(live, etype, reason, message)
            except Exception:  # noqa: BLE001 - an event is not worth failing the reconcile for
                log.warning("could not post event %s on %s/%s", reason, namespace, name)
        # the host agent's readiness per selected node, when this reconcile looked at it
        ports, ready_nodes = ctx.out.ports, ctx.out.ready_nodes
        selected = sorted(ports.ports) if ports is not None and ready_nodes is not None else None
        metrics.resource_state(namespace, name, apply_merge_patch(ctx.status, outcome.status_patch), selected,
                               ready_nodes)
    ready = next(c for c in outcome.conditions if c.type == "Ready")
    logger.info("reconciled%s%s: Ready=%s (%s)", f" ({why})" if why else "",
                " reusing the last OpenStack results" if reused else "", ready.status, ready.reason)
    return outcome


def _run(meta: Any, logger: Any, retry: int = 0, why: str = "") -> None:
    outcome = reconcile_by_name(meta["namespace"], meta["name"], logger, why)
    if outcome is not None and outcome.transient:
        ready = next(c for c in outcome.conditions if c.type == "Ready")
        raise kopf.TemporaryError(f"{ready.reason}: retrying", delay=retry_delay(retry))


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def reconcile_handler(meta: Any, logger: Any, retry: int, **_: Any) -> None:
    _run(meta, logger, retry)


@kopf.timer(GROUP, VERSION, PLURAL, interval=DRIFT_INTERVAL, initial_delay=DRIFT_INTERVAL, idle=None)
def drift_timer(meta: Any, logger: Any, **_: Any) -> None:
    if meta.get("deletionTimestamp"):
        return
    try:
        _run(meta, logger, why="drift timer")
    except kopf.TemporaryError:
        pass  # the timer runs again anyway


# Deleting with deletionPolicy Delete needs the credentials Secret. When it is gone (a namespace
# being deleted removes it too) the operator retries this many times, then lets the resource go
# with a Warning event naming what may be left in OpenStack, rather than blocking forever.
GIVE_UP_WITHOUT_CREDENTIALS = int(os.environ.get("OCTAVIA_OPERATOR_DELETE_RETRIES_WITHOUT_CREDENTIALS", "5"))


@kopf.on.delete(GROUP, VERSION, PLURAL)
def delete_handler(body: Any, meta: Any, spec: Any, status: Any, patch: Any, logger: Any, retry: int,
                   **_: Any) -> None:
    from . import conditions as c
    from .spec import parse_spec
    from .steps import cloud as cloud_steps
    from .steps import workloads as workload_steps

    _memos.pop((meta["namespace"], meta["name"]), None)
    policy = (spec or {}).get("deletionPolicy", "Retain")
    if policy == "Retain":
        metrics.forget(meta["namespace"], meta["name"])
        logger.info("deletionPolicy Retain: OpenStack resources are kept; Kubernetes children go with their owner")
        return
    ctx = _context(body, meta, spec, status)
    with r.lock_for(ctx.namespace, ctx.name):
        try:
            ctx.spec = parse_spec(ctx.raw_spec)
            ctx.out.cloud = cloud_from_secret(ctx)
            done = cloud_steps.teardown(ctx)
            done += workload_steps.teardown_backing_services(ctx)
        except errors.StepError as exc:
            missing_credentials = exc.reason in ("CredentialsSecretNotFound", "CredentialsSecretKeyMissing",
                                                 "CloudAuthFailed", "CloudNotFound")
            if missing_credentials and retry >= GIVE_UP_WITHOUT_CREDENTIALS:
                ids = ", ".join(f"{k}={v}" for k, v in sorted((ctx.status.get("openstack") or {}).items()))
                kopf.warn(body, reason="DeleteIncomplete",
                          message=f"cannot reach OpenStack to delete owned resources ({exc.message}); they may be "
                                  f"left behind: {ids or 'none recorded'}")
                return
            cond = c.Cond("Deleting", c.FALSE, exc.reason, exc.message)
            live = ctx.kube.get(f"{GROUP}/{VERSION}", "OctaviaDeployment", ctx.name, ctx.namespace) or {}
            conditions = c.merge((live.get("status") or {}).get("conditions"), [cond], ctx.generation)
            ctx.kube.merge_patch(f"{GROUP}/{VERSION}", "OctaviaDeployment", ctx.name, ctx.namespace,
                                 {"status": {"conditions": conditions}}, subresource="status")
            kopf.warn(body, reason=exc.reason, message=exc.message)
            raise kopf.TemporaryError(f"{exc.reason}: {exc.message}", delay=retry_delay(retry)) from None
    metrics.forget(ctx.namespace, ctx.name)
    if done:
        kopf.info(body, reason="Deleted", message=f"deleted {len(done)} OpenStack resources: {', '.join(done)}")
    logger.info("deletionPolicy Delete: deleted %d owned OpenStack resources", len(done))


# ---------------------------------------------------------------------------------------
# Nodes: a node that joins or starts matching the selector gets a health-manager port; one
# that leaves or stops matching loses it. kopf keeps an index of the deployments it serves.
# ---------------------------------------------------------------------------------------

@kopf.index(GROUP, VERSION, PLURAL)
def deployments(body: Any, meta: Any, **_: Any) -> dict[tuple[str, str], Any]:
    return {(meta["namespace"], meta["name"]): body}


def _node_view(nodes: list[dict[str, Any]], spec: dict[str, Any]) -> dict[str, str]:
    """node -> Neutron host ID, for the nodes a deployment selects (what its ports must match)."""
    from .builders import cloud as cb
    hm = (spec or {}).get("healthManager") or {}
    selector = hm.get("nodeSelector", {"node-role.kubernetes.io/control-plane": ""})
    annotation = hm.get("hostIdAnnotation", f"{GROUP}/neutron-host")
    return {node: p.host_id for node, p in cb.ports(cb.select_nodes(nodes, selector), annotation).items()}


def _few(names: Any, limit: int = 5) -> str:
    """Some names for a log line (hundreds of nodes would make each line as long as the cluster)."""
    names = sorted(names)
    shown = ", ".join(names[:limit]) or "none"
    return f"{shown} and {len(names) - limit} more" if len(names) > limit else shown


DEBOUNCE = float(os.environ.get("OCTAVIA_OPERATOR_DEBOUNCE", "2"))
_pending: dict[tuple[str, str], threading.Timer] = {}
_pending_full: set[tuple[str, str]] = set()   # of the pending ones, those a node event asked for
_waiting: set[tuple[str, str]] = set()        # a run started and waits for the resource's lock
_running: set[threading.Thread] = set()
_pending_lock = threading.Lock()
_stopping = threading.Event()


def schedule(namespace: str, name: str, follow_children: bool = False) -> None:
    """Reconcile soon; a burst of events (a rollout, many nodes joining) collapses into one run, which
    reuses the last OpenStack results only when every event of the burst came from a child."""
    key = (namespace, name)

    decided = threading.Event()

    def decide() -> bool:
        """Under the resource's lock: from now on, new events schedule another run. Children only?"""
        with _pending_lock:
            decided.set()
            _waiting.discard(key)
            children_only = key not in _pending_full
            _pending_full.discard(key)
            return children_only

    def run() -> None:
        with _pending_lock:
            _pending.pop(key, None)
            if _stopping.is_set():
                return
            _waiting.add(key)   # events until it has the lock are served by this run
            _running.add(threading.current_thread())
        try:
            reconcile_by_name(namespace, name, follow_children=decide)
        except Exception:  # noqa: BLE001 - the drift timer catches up
            log.exception("background reconcile of %s/%s failed", namespace, name)
        finally:
            with _pending_lock:
                _running.discard(threading.current_thread())
                if not decided.is_set():   # failed before taking the lock: the next event starts a run
                    _waiting.discard(key)

    with _pending_lock:
        if not follow_children:
            _pending_full.add(key)
        if key in _pending or key in _waiting or _stopping.is_set():
            return
        t = threading.Timer(DEBOUNCE, run)
        t.daemon = True
        _pending[key] = t
        t.start()


@kopf.on.cleanup()
def stop_background_reconciles(logger: Any, **_: Any) -> None:
    """At shutdown: cancel the debounced reconciles and wait for the ones already running."""
    _stopping.set()
    with _pending_lock:
        timers = list(_pending.values())
        _pending.clear()
        running = list(_running)
    for t in timers:
        t.cancel()
    for t in running:
        t.join(timeout=60)
    logger.info("background reconciles stopped (%d cancelled, %d finished)", len(timers), len(running))


@kopf.on.startup()
def allow_background_reconciles(**_: Any) -> None:
    _stopping.clear()


def _import_openstacksdk() -> None:
    import openstack.config  # noqa: F401
    import openstack.connection  # noqa: F401


@kopf.on.startup()
def preload_openstacksdk(**_: Any) -> None:
    """Import the OpenStack SDK (0.6 s of CPU) beside the startup, not in the first reconcile's critical path;
    a reconcile that needs it meanwhile waits on the import lock."""
    threading.Thread(target=_import_openstacksdk, name="import-openstacksdk", daemon=True).start()


@kopf.index("", "v1", "nodes")
def nodes(name: Any, labels: Any, annotations: Any, **_: Any) -> dict[str, Any]:
    """What the operator needs of each node, kept by kopf from its watch: no LIST per event."""
    return {name: {"metadata": {"name": name, "labels": dict(labels or {}), "annotations": dict(annotations or {})}}}


# the labels and annotations of each node as last acted upon: a node event that changes neither (a
# status heartbeat, a condition) costs nothing at all
_node_seen: dict[str, Any] = {}


@kopf.on.event("", "v1", "nodes")
def node_changed(event: Any, name: Any, labels: Any, annotations: Any, deployments: kopf.Index, nodes: kopf.Index,
                 logger: Any, **_: Any) -> None:
    # what matters of a node: its labels (node selectors) and the host-ID annotations the deployments
    # use; its status (heartbeats, conditions) and any other annotation do not
    bodies = [b for _, store in deployments.items() for b in store]
    keys = {((b.get("spec") or {}).get("healthManager") or {}).get("hostIdAnnotation", f"{GROUP}/neutron-host")
            for b in bodies}
    view = None if event.get("type") == "DELETED" else (
        dict(labels or {}), {k: v for k, v in (annotations or {}).items() if k in keys})
    if event.get("type") is not None and name in _node_seen and _node_seen[name] == view:
        return
    if view is None:
        _node_seen.pop(name, None)
    else:
        _node_seen[name] = view
    current = [body for key, store in nodes.items() for body in store if key != name or view is not None]
    for (namespace, dname), bodies in list(deployments.items()):
        for body in bodies:
            meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status", {}) or {}
            if meta.get("deletionTimestamp"):
                continue
            want = _node_view(current, spec)
            have = {node: p.get("hostId") for node, p in (status.get("healthManagerPorts") or {}).items()}
            # also when a node's o-hm0 label disagrees with what the deployment last saw
            if want != have:
                logger.info("nodes changed for %s/%s: ports wanted on %d nodes, present on %d; to add: %s; to "
                            "remove: %s", namespace, dname, len(want), len(have),
                            _few(n for n in want if have.get(n) != want[n]), _few(n for n in have if n not in want))
                schedule(namespace, dname)


# Children: a deleted or edited child is restored, rollouts and host-agent readiness are
# followed. Children (and the pods of the DaemonSet) carry the instance label = the owner's name.
MANAGED = {"app.kubernetes.io/managed-by": "octavia-operator"}
CHILD_RESOURCES = [("apps", "v1", "deployments"), ("apps", "v1", "daemonsets"), ("apps", "v1", "statefulsets"),
                   ("batch", "v1", "jobs"), ("", "v1", "configmaps"), ("", "v1", "secrets"), ("", "v1", "services"),
                   ("", "v1", "serviceaccounts"), ("policy", "v1", "poddisruptionbudgets")]
# Pods are not watched: their readiness reaches the operator through their DaemonSet's, Job's or
# Deployment's status, so the churn of pods never turns into reconciles (and OpenStack requests).


# children whose events reconcile in full, not with the last OpenStack results: a Service's address
# (spec.api.expose type LoadBalancer) decides the public endpoint in the Keystone catalog
FULL_RECONCILE_CHILDREN = {"services"}


def child_changed(event: Any, meta: Any, deployments: kopf.Index, resource: Any = None, **_: Any) -> None:
    owner = (meta.get("labels") or {}).get("app.kubernetes.io/instance")
    namespace = meta.get("namespace")
    if owner and (namespace, owner) in deployments:
        schedule(namespace, owner,
                 follow_children=getattr(resource, "plural", None) not in FULL_RECONCILE_CHILDREN)


for _group, _version, _plural in CHILD_RESOURCES:
    kopf.on.event(_group, _version, _plural, labels=MANAGED, id=f"child-{_plural}")(child_changed)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key="last-handled-configuration")
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = int(os.environ.get("OCTAVIA_OPERATOR_WATCH_TIMEOUT", "300"))
