"""What one reconcile costs: time and API requests, first run, converging and converged (the drift timer), and
whether the converged cost grows with the nodes. Also the CI regression check on request counts.

    OSCLOUD_BASE=/tmp/oscloud-tests .venv/bin/python bench/reconcile_cost.py [--rounds 3] [--nodes 3,6]
    ... bench/reconcile_cost.py --check bench/request_counts.json    # exit 1 when a count regressed
    ... bench/reconcile_cost.py --update bench/request_counts.json   # write the measured counts as the baseline

Needs the loopback OpenStack of tests/cloud running and the Kubernetes binaries (KUBE_ASSETS or
.tools/kube): starts a real control plane (tests/kube/cluster.py) with kwok nodes, applies
deploy/operator.yaml and reconciles in-process as the chart's ServiceAccount (the reconcile the operator
runs, its steps in parallel as in the operator). Nodes beyond the loopback cloud's own node-0..2 get fake
Neutron agents (bench/harness.py) so that their ports bind.

Request counts are deterministic (times are not): the writes of the first reconcile of a new deployment (its
reads vary a little with timing) and every count of a converged reconcile at each node count. ``--check`` fails when one of them is higher than the baseline, or when the
converged cost is not the same at every node count.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass

import harness as h

LB_ROLES = ("load-balancer_observer", "load-balancer_global_observer", "load-balancer_member",
            "load-balancer_quota_admin", "load-balancer_admin")


@dataclass(frozen=True)
class Cost:
    seconds: float
    openstack_requests: int
    openstack_writes: int
    kube_requests: int
    kube_writes: int

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if k != "seconds"}


def measure(node_counts: list[int], rounds: int = 3, log=print) -> list[tuple[str, Cost]]:
    """Reconcile one OctaviaDeployment from nothing to converged at the first node count, then at each larger
    one: [(label, Cost)], labels 'first', 'converging #i', 'converged@N #j'."""
    from kube.cluster import KubeCluster, assets_dir
    from kube.plugin import install_operator_manifests, service_account
    from octd_helpers import credentials_secret, random_cidr, serve_image, volumes_for
    from oscount import WriteCounter
    from octavia_operator import handlers
    from octavia_operator.spec import parse_spec
    from octavia_operator.steps import cloud as cloud_steps
    from octavia_operator.steps import runner as r

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="bench-kube-"))
    cluster = KubeCluster(assets_dir(), workdir).start()
    conn = h.admin_connection()
    rows: list[tuple[str, Cost]] = []
    base = ["node-0", "node-1", "node-2"]   # the loopback cloud has agents for these
    extra = h.node_names("cost", max(node_counts) - len(base)) if max(node_counts) > len(base) else []
    # the first reconcile creates the load-balancer roles a cloud lacks: have them exist, so that its count does
    # not depend on what ran before (the ones made here are removed at the end)
    made_roles = [conn.identity.create_role(name=r) for r in LB_ROLES if conn.identity.find_role(r) is None]
    try:
        install_operator_manifests(cluster)
        api = cluster.api
        kube = service_account(cluster, workdir).kube
        kube_calls: list[str] = []
        orig_call = kube._call

        def counting_call(method, path, *a, **kw):
            kube_calls.append(method)
            return orig_call(method, path, *a, **kw)
        kube._call = counting_call
        ns = "bench"
        cluster.add_namespace(ns)
        api.create(credentials_secret(ns, h.operator_clouds_yaml()))
        volumes_for(cluster, ns)
        all_nodes = base + extra
        for name in all_nodes[:node_counts[0]]:
            cluster.add_node(name)
        sfx = uuid.uuid4().hex[:8]
        with serve_image() as url, h.fake_agents(extra):
            api.create({"apiVersion": "octavia-operator.dev/v1alpha1", "kind": "OctaviaDeployment",
                        "metadata": {"name": "octavia", "namespace": ns},
                        "spec": h.spec(sfx, url, random_cidr())})

            def once() -> Cost:
                live = api.get(h.REF, "octavia", ns)
                ctx = r.Context(name="octavia", namespace=ns, uid=live["metadata"]["uid"],
                                generation=live["metadata"].get("generation"), raw_spec=live["spec"],
                                status=dict(live.get("status") or {}), kube=kube,
                                cloud_factory=handlers.cloud_from_secret)
                ctx.spec = parse_spec(live["spec"])
                c = handlers.cloud_from_secret(ctx)   # the operator's cached connection
                ctx.spec = None
                kube_calls.clear()
                kube.writes.entries.clear()
                t0 = time.perf_counter()
                with WriteCounter(c) as w:
                    out = r.reconcile(ctx)
                    if out.status_patch:   # as reconcile_by_name does
                        kube.merge_patch("octavia-operator.dev/v1alpha1", "OctaviaDeployment", "octavia", ns,
                                         {"status": out.status_patch}, subresource="status")
                dt = time.perf_counter() - t0
                return Cost(dt, len(w.requests), len(w.writes), len(kube_calls), len(kube.writes.entries))

            def converge(label: str) -> None:
                for i in range(60):   # converging: the controllers and kwok act in between
                    cost = once()
                    rows.append((label if i == 0 else f"converging #{i}", cost))
                    log(rows[-1])
                    ready = h.conditions_of(api.get(h.REF, "octavia", ns)).get("Ready") == "True"
                    if ready and cost.openstack_writes == 0 and cost.kube_writes == 0:
                        return
                    time.sleep(1)
                raise RuntimeError("did not converge in 60 reconciles")

            try:
                converge("first")
                done = node_counts[0]
                for count in node_counts:
                    if count > done:
                        for name in all_nodes[done:count]:
                            cluster.add_node(name)
                        done = count
                        converge(f"{count} nodes joined")
                    for j in range(rounds):
                        rows.append((f"converged@{count} #{j + 1}", once()))
                        log(rows[-1])
            finally:
                live = api.get(h.REF, "octavia", ns)
                ctx = r.Context(name="octavia", namespace=ns, uid=live["metadata"]["uid"], generation=1,
                                raw_spec=live["spec"], status=dict(live.get("status") or {}), kube=kube)
                ctx.spec = parse_spec(live["spec"])
                ctx.out.cloud = handlers.cloud_from_secret(ctx)
                cloud_steps.teardown(ctx)
                h.cleanup_cloud(conn, sfx)
    finally:
        cluster.stop()
        for role in made_roles:
            conn.identity.delete_role(role, ignore_missing=True)
    return rows


def baseline_counts(rows: list[tuple[str, Cost]]) -> dict[str, dict[str, int]]:
    """What the regression check compares: the writes of the first reconcile (its reads varied by a few between
    runs, probably with timing; not traced) and every count of the converged ones (all rounds of one node count
    must agree: they are deterministic)."""
    first = next(c for label, c in rows if label == "first").counts()
    out = {"first reconcile": {k: v for k, v in first.items() if k.endswith("_writes")}}
    for label, cost in rows:
        if label.startswith("converged@"):
            key = f"converged reconcile, {label.split('@')[1].split()[0]} nodes"
            if key in out and out[key] != cost.counts():
                raise AssertionError(f"{key}: two rounds differ: {out[key]} and {cost.counts()}")
            out[key] = cost.counts()
    return out


def check(measured: dict[str, dict[str, int]], baseline: dict[str, dict[str, int]]) -> list[str]:
    """Regressions: a count above its baseline, or a converged cost that differs between node counts."""
    problems = []
    for key, counts in baseline.items():
        if key not in measured:
            problems.append(f"{key}: not measured")
            continue
        for what, limit in counts.items():
            if measured[key][what] > limit:
                problems.append(f"{key}: {what} {measured[key][what]} > baseline {limit}")
    converged = {k: v for k, v in measured.items() if k.startswith("converged")}
    if len({json.dumps(v, sort_keys=True) for v in converged.values()}) > 1:
        problems.append(f"the converged cost grows with the nodes: {converged}")
    return problems


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--nodes", default="3,6", help="node counts, ascending (at least 3)")
    ap.add_argument("--check", type=pathlib.Path)
    ap.add_argument("--update", type=pathlib.Path)
    args = ap.parse_args()
    counts = [int(x) for x in args.nodes.split(",")]
    rows = measure(counts, args.rounds, log=lambda row: print(row, file=sys.stderr, flush=True))
    print("| reconcile | seconds | OpenStack requests | OpenStack writes | Kubernetes requests | Kubernetes writes |")
    print("|---|---|---|---|---|---|")
    for label, c in rows:
        print(f"| {label} | {c.seconds:.2f} | {c.openstack_requests} | {c.openstack_writes} | {c.kube_requests} "
              f"| {c.kube_writes} |")
    measured = baseline_counts(rows)
    if args.update:
        args.update.write_text(json.dumps(measured, indent=2) + "\n")
        print(f"baseline written to {args.update}")
    if args.check:
        problems = check(measured, json.loads(args.check.read_text()))
        for p in problems:
            print(f"REGRESSION: {p}")
        if problems:
            sys.exit(1)
        print(f"request counts within {args.check}")


if __name__ == "__main__":
    main()
