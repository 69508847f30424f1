"""Rollout economy (issue 13, benchmark 5): how many times each workload's pod template changes.

    OSCLOUD_BASE=/tmp/oscloud-tests .venv/bin/python bench/rollout_economy.py

A real control plane (tests/kube) with 3 kwok nodes (its Deployment, DaemonSet and StatefulSet controllers roll
for real; kwok plays the pods), the operator as its own process with the chart's ServiceAccount, the loopback
OpenStack. Pod-template changes are counted the way the controllers count them: a Deployment's
``deployment.kubernetes.io/revision`` (one per new template, also when going back to an older one), and the
highest ControllerRevision of a DaemonSet or StatefulSet. For each action: how many template changes each
workload went through until the deployment was Ready again and its drift timer had run twice.
Target: a configuration change rolls each Deployment exactly once; an unchanged reconcile rolls nothing.
Prints a table; asserts nothing.
"""
from __future__ import annotations

import argparse
import re
import time
import uuid

import harness as h

ROTATE = "octavia-operator.dev/rotate-service-password"


def revisions(stage) -> dict[str, int]:
    admin, ns = stage.cluster.admin, stage.ns
    out: dict[str, int] = {}
    for d in admin.list("apps/v1", "Deployment", ns, labels="app.kubernetes.io/managed-by=octavia-operator"):
        out[f"Deployment {d['metadata']['name']}"] = int(
            (d["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", "0"))
    owners = {}
    for kind in ("DaemonSet", "StatefulSet"):
        for o in admin.list("apps/v1", kind, ns, labels="app.kubernetes.io/managed-by=octavia-operator"):
            owners[o["metadata"]["uid"]] = f"{kind} {o['metadata']['name']}"
            out[owners[o["metadata"]["uid"]]] = 0
    for cr in admin.list("apps/v1", "ControllerRevision", ns):
        for ref in cr["metadata"].get("ownerReferences") or []:
            if ref["uid"] in owners:
                out[owners[ref["uid"]]] = max(out[owners[ref["uid"]]], int(cr["revision"]))
    return out


def settle(stage, timer_runs: int, timeout: float = 300) -> None:
    """Until Ready and ``timer_runs`` drift-timer reconciles have run since (what a converged system does)."""
    h.wait(lambda: stage.conditions().get("Ready") == "True", timeout, "Ready", 0.2)
    start = len(re.findall(r"reconciled \(drift timer\)", stage.op.logs()))
    h.wait(lambda: len(re.findall(r"reconciled \(drift timer\)", stage.op.logs())) >= start + timer_runs,
           timeout, "drift-timer reconciles", 0.2)
    h.wait(lambda: stage.conditions().get("Ready") == "True", timeout, "Ready", 0.2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--drift", type=float, default=8, help="the drift timer's interval during the run, s")
    args = ap.parse_args()
    from octd_helpers import random_cidr, serve_image
    conn = h.admin_connection()
    sfx = uuid.uuid4().hex[:8]
    rows: list[tuple[str, dict[str, int]]] = []
    with h.staged(conn, sfx) as stage:
        for n in ("node-0", "node-1", "node-2"):
            stage.cluster.add_node(n)
        with serve_image() as url:
            stage.start_operator(env={"OCTAVIA_OPERATOR_DRIFT_INTERVAL": str(args.drift)})
            stage.create(h.spec(sfx, url, random_cidr()))
            settle(stage, 2)
            before = revisions(stage)
            rows.append(("first converge (from nothing to Ready, 2 timer runs)", before))

            def step(label: str, action) -> None:
                nonlocal before
                action()
                time.sleep(1)
                settle(stage, 2)
                now = revisions(stage)
                rows.append((label, {k: v - before.get(k, 0) for k, v in now.items()}))
                before = now

            step("nothing changed: 2 drift-timer reconciles", lambda: None)
            step("a configuration change (spec.config: one octavia.conf option)", lambda: stage.api.patch(
                h.REF, "octavia", {"spec": {"config": {"controller_worker": {"amp_active_retries": "77"}}}},
                stage.ns))
            step("the same spec applied again (no change)", lambda: stage.api.patch(
                h.REF, "octavia", {"spec": {"config": {"controller_worker": {"amp_active_retries": "77"}}}},
                stage.ns))
            step("two octavia.conf options changed at once", lambda: stage.api.patch(
                h.REF, "octavia", {"spec": {"config": {"controller_worker": {"amp_active_retries": "78"},
                                                       "DEFAULT": {"debug": "true"}}}}, stage.ns))
            step("service password rotation (annotation)", lambda: stage.api.patch(
                h.REF, "octavia", {"metadata": {"annotations": {ROTATE: "bench-1"}}}, stage.ns))
            with h.fake_agents(["node-3"]):
                step("a node joins (one more health manager in octavia.conf)",
                     lambda: stage.cluster.add_node("node-3"))
            stage.delete_deployment()
    names = sorted({k for _, r in rows for k in r})
    print("| action | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for label, r in rows:
        print(f"| {label} | " + " | ".join(str(r.get(k, "")) for k in names) + " |")
    print("(pod-template changes per workload: Deployment revisions, DaemonSet/StatefulSet ControllerRevisions)")


if __name__ == "__main__":
    main()
