"""Amphora rollout: replace live amphorae that run an older image, or that predate the client CA they
must trust, through Octavia's failover API (builders.rollout decides; this step does the calls)."""
from __future__ import annotations

from dataclasses import replace

from .. import conditions as c
from ..builders import rollout
from ..errors import StepError
from .cloud import recorded
from .runner import Context, Result

ROLLOUT_ANNOTATION = "octavia-operator.dev/rollout-amphorae"


def step_rollout(ctx: Context) -> Result:
    from .. import metrics
    from ..backends.openstack import loadbalancer as lb
    spec = ctx.spec
    assert spec is not None
    conn = ctx.out.cloud
    target = rollout.Target(recorded(ctx, "imageId"), ctx.out.client_ca_since)
    state = rollout.State.from_status(ctx.status.get("amphoraRollout"))
    request = ctx.annotations.get(ROLLOUT_ANNOTATION)
    handled = (ctx.status.get("rotations") or {}).get("rolloutAmphorae")
    if request and request != handled:
        # a new one-shot request: served until nothing is outdated; it also clears a failed rollout
        state = replace(state, request=request, failed={}, batch_done_at=None)
        ctx.merge_status("rotations", {"rolloutAmphorae": request})
        ctx.event("Normal", "AmphoraRollout", f"rollout requested ({ROLLOUT_ANNOTATION}={request})")
    try:
        amps = lb.amphorae(conn)
    except StepError as exc:
        if exc.reason != "EndpointNotFound":
            raise
        # the operator reaches Octavia through the catalog, with spec.cloud.interface: without such an
        # endpoint (no public one unless the API is exposed) it cannot see the amphorae; not an error
        return Result.ok("Unchecked", f"amphorae not checked: {exc.message} (set identity.endpoints or "
                         "api.expose, or cloud.interface: internal)")
    involved = set(state.in_flight) | {a.lb_id for a in amps if target.outdated(a) and a.lb_id}
    statuses = lb.provisioning_statuses(conn, involved)
    allowed = spec.amphora.rollout == "Automatic" or state.request is not None
    strategy = spec.amphora.rolloutStrategy
    plan = rollout.plan(state, target, amps, statuses, allowed, ctx.now, strategy.maxConcurrent,
                        strategy.pauseSeconds, strategy.timeoutSeconds)
    new = plan.state
    for lb_id in plan.finished:
        ctx.event("Normal", "AmphoraFailedOver", f"load balancer {lb_id}: amphora {state.in_flight.get(lb_id)} "
                                                 "replaced")
    for amp in plan.start:
        try:
            lb.failover_amphora(conn, amp.id)
            ctx.event("Normal", "AmphoraFailover", f"load balancer {amp.lb_id}: failing over amphora {amp.id} "
                                                   f"({_why(target, amp)})")
        except StepError as exc:
            new = replace(new, phase="Failed", failed={**new.failed, amp.lb_id: f"failover of amphora {amp.id} "
                                                       f"refused: {exc.message}"},
                          in_flight={k: v for k, v in new.in_flight.items() if k != amp.lb_id},
                          started={k: v for k, v in new.started.items() if k != amp.lb_id})
            break
    for why in (v for k, v in new.failed.items() if k not in state.failed or k in plan.newly_failed):
        ctx.event("Warning", "AmphoraRolloutFailed", why)
    metrics.amphora_failovers(ctx.namespace, ctx.name, started=len(plan.start), finished=len(plan.finished),
                              failed=len(set(new.failed) - set(state.failed)))
    if new.phase in ("Done", "Idle") or (new.phase == "Failed" and not new.in_flight):
        new = replace(new, request=None)
    ctx.status_updates["amphoraRollout"] = new.to_status(len(plan.outdated))
    outdated = len(plan.outdated)
    if new.phase == "Failed":
        raise StepError("RolloutFailed", "the amphora rollout stopped: " + "; ".join(
            f"{k}: {v}" for k, v in sorted(new.failed.items())) + f" ({outdated} amphorae still outdated; fix the "
            f"cause, then set {ROLLOUT_ANNOTATION} to a new value)")
    if new.phase in ("RollingOut", "Paused"):
        raise StepError("RollingOut", f"replacing outdated amphorae: {len(new.in_flight)} in flight, "
                        f"{new.completed} done, {outdated - len(new.in_flight)} to go"
                        f"{' (pausing between batches)' if new.phase == 'Paused' else ''}", retry=True)
    if outdated:
        return Result(c.TRUE, "Outdated", f"{outdated} amphorae run an older image or predate the client CA; set "
                      f"{ROLLOUT_ANNOTATION} to replace them through failovers (or spec.amphora.rollout: Automatic)")
    return Result.ok("UpToDate", f"every live amphora runs image {target.image_id}"
                     + (f" ({new.completed} replaced)" if new.completed else ""))


def _why(target: rollout.Target, amp: rollout.Amphora) -> str:
    if target.image_id and amp.image_id and amp.image_id != target.image_id:
        return f"image {amp.image_id}, current {target.image_id}"
    return "booted before the current client CA"
