"""Steady state and scale (issue 13, benchmarks 2 and 3), in one run of one operator process.

    OSCLOUD_BASE=/tmp/oscloud-tests .venv/bin/python bench/scale.py [--join 500 --leave 250 --mid 50]

A real control plane (tests/kube) with kwok nodes, the operator as its own process with the chart's
ServiceAccount (RBAC applies), the loopback OpenStack of tests/cloud. Fake 'Open vSwitch agent' rows are put
in Neutron's database for the joining nodes (as oscloud-up.sh does for its hosts) so that their ports bind;
they are removed afterwards, like everything the run made.

1. One OctaviaDeployment converges on 3 nodes.
2. Steady state at 3 nodes: the cost of each periodic (drift-timer) reconcile, from the operator's own
   /metrics (OpenStack requests) and the API server's audit log (the operator's Kubernetes requests), over
   a window holding several timer runs; then a minute of Node heartbeats (kwok's) and Pod churn (pods made
   and deleted on the nodes), counting the reconciles and OpenStack requests it causes.
3. Scale: ``--join`` nodes join at once. Time until every node has its bound port in status and the rendered
   octavia.conf lists every health manager; the OpenStack write calls; the operator's peak RSS.
4. Steady state at the larger size.
5. ``--leave`` nodes leave at once: time until their Neutron ports are gone.
6. Nodes leave down to ``--mid``: steady state at that size.
Prints the tables; asserts nothing.
"""
from __future__ import annotations

import argparse
import datetime as dt
import re
import time
import uuid
from dataclasses import dataclass

import harness as h

UNBOUND = ("unbound", "binding_failed", None)


@dataclass
class Steady:
    nodes: int
    timer_runs: int
    os_requests: float
    os_writes: float
    kube_requests: float
    kube_writes: float
    other_reconciles: int


def _log_counts(op) -> tuple[int, int]:
    text = op.logs()
    return len(re.findall(r"reconciled \(drift timer\)", text)), len(re.findall(r"reconciled \((?:node or child|child|node) event", text))


def _kube_requests(stage, since: dt.datetime, until: dt.datetime) -> tuple[int, int]:
    evs = [e for e in stage.cluster.audit(user=stage.identity.username, since=since)
           if e.get("verb") != "watch" and h_time(e["requestReceivedTimestamp"]) <= until]
    writes = [e for e in evs if e.get("verb") in ("create", "update", "patch", "delete", "deletecollection")]
    return len(evs), len(writes)


def h_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def settle(stage, timeout: float) -> None:
    """Until two drift-timer reconciles in a row with no other reconcile in between or since: converged,
    nothing left for the controllers or kwok to do. Returns right after a timer run."""
    op = stage.op
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        c0, e0 = _log_counts(op)
        h.wait(lambda: _log_counts(op)[0] >= c0 + 2, timeout, "two drift-timer reconciles", 0.05)
        if _log_counts(op)[1] == e0:
            return
    raise RuntimeError(f"not settled in {timeout:.0f} s")


def steady(stage, nodes: int, timer_runs: int, timeout: float) -> Steady:
    """The cost of ``timer_runs`` consecutive drift-timer reconciles, per reconcile, once settled."""
    op = stage.op
    settle(stage, 600)
    c0, e0 = _log_counts(op)
    m0 = h.counts(op.metrics())
    since = dt.datetime.now(dt.timezone.utc)
    h.wait(lambda: _log_counts(op)[0] >= c0 + timer_runs, timeout * timer_runs, "the drift-timer reconciles", 0.05)
    until = dt.datetime.now(dt.timezone.utc)
    m1 = h.counts(op.metrics())
    c1, e1 = _log_counts(op)
    time.sleep(1)   # the audit log is written when each response completes
    kr, kw = _kube_requests(stage, since, until)
    runs = c1 - c0
    return Steady(nodes, runs, (m1["requests"] - m0["requests"]) / runs, (m1["writes"] - m0["writes"]) / runs,
                  kr / runs, kw / runs, e1 - e0)


def churn(stage, seconds: float, pods_per_round: int = 5) -> dict:
    """A window of Node heartbeats (kwok's leases and status) and Pod churn in another namespace: what it costs
    in reconciles and OpenStack requests (the drift timer's own runs are subtracted)."""
    api, op = stage.api, stage.op
    ns = "churn"
    if not stage.cluster.admin.get("v1", "Namespace", ns):
        stage.cluster.add_namespace(ns)
    settle(stage, 600)
    c0, e0 = _log_counts(op)
    m0 = h.counts(op.metrics())
    t0 = time.monotonic()
    made = deleted = own_deleted = 0
    i = 0
    while time.monotonic() - t0 < seconds:
        for j in range(pods_per_round):
            api.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"churn-{i}-{j}", "namespace": ns},
                        "spec": {"containers": [{"name": "c", "image": "busybox"}],
                                 "tolerations": [{"operator": "Exists"}]}})
            made += 1
        time.sleep(1)
        for j in range(pods_per_round):
            stage.cluster.admin.delete("v1", "Pod", f"churn-{i}-{j}", ns)
            deleted += 1
        # and one of the deployment's own pods (a host agent's), which its DaemonSet makes again
        own = [x for x in stage.cluster.admin.list("v1", "Pod", stage.ns, labels="app.kubernetes.io/component=hostagent")
               if not x["metadata"].get("deletionTimestamp")]
        if own:
            stage.cluster.admin.delete("v1", "Pod", own[i % len(own)]["metadata"]["name"], stage.ns)
            own_deleted += 1
        i += 1
        time.sleep(1)
    m1 = h.counts(op.metrics())
    c1, e1 = _log_counts(op)
    return {"seconds": time.monotonic() - t0, "pods": made + deleted, "own": own_deleted, "timer_runs": c1 - c0,
            "event_reconciles": e1 - e0, "os_requests": m1["requests"] - m0["requests"],
            "os_writes": m1["writes"] - m0["writes"]}


def hm_ips_in_config(stage) -> set[str]:
    cm = stage.cluster.admin.get("v1", "ConfigMap", "octavia-config", stage.ns) or {}
    text = (cm.get("data") or {}).get("octavia.conf", "")
    m = re.search(r"^controller_ip_port_list\s*=\s*(.*)$", text, re.M)
    if not m:
        return set()
    return {x.strip().rsplit(":", 1)[0].strip("[]") for x in m.group(1).split(",") if x.strip()}


def converged_on(stage, nodes: set[str]) -> bool:
    ports = stage.status().get("healthManagerPorts") or {}
    if set(ports) != nodes or any(p.get("vifType") in UNBOUND for p in ports.values()):
        return False
    return hm_ips_in_config(stage) == {p["ip"] for p in ports.values()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--join", type=int, default=500)
    ap.add_argument("--leave", type=int, default=250)
    ap.add_argument("--mid", type=int, default=50)
    ap.add_argument("--drift", type=float, default=20, help="the drift timer's interval during the run, s")
    ap.add_argument("--timer-runs", type=int, default=3)
    ap.add_argument("--churn", type=float, default=60)
    args = ap.parse_args()

    from octd_helpers import serve_image
    conn = h.admin_connection()
    base = ["node-0", "node-1", "node-2"]   # the loopback cloud's own fake agents
    join = h.node_names("scale", args.join)
    sfx = uuid.uuid4().hex[:8]
    steady_rows: list[Steady] = []
    churn_rows: list[tuple[int, dict]] = []
    scale_rows: list[tuple[str, str]] = []
    with h.staged(conn, sfx) as stage:
        for n in base:
            stage.cluster.add_node(n)
        with serve_image() as url, h.fake_agents(join), h.port_quota(conn):
            cidr, net = h.wide_cidr()
            op = stage.start_operator(env={"OCTAVIA_OPERATOR_DRIFT_INTERVAL": str(args.drift)})
            t0 = time.monotonic()
            stage.create(h.spec(sfx, url, cidr, managementNetwork=net))
            h.wait(lambda: stage.conditions().get("Ready") == "True", 300, "Ready on 3 nodes", 0.2)
            print(f"converged on 3 nodes in {time.monotonic() - t0:.1f} s", flush=True)
            steady_rows.append(steady(stage, 3, args.timer_runs, args.drift * 2))
            churn_rows.append((3, churn(stage, args.churn)))
            print(steady_rows[-1], churn_rows[-1], flush=True)

            # -- scale: nodes join at once
            m0 = h.counts(op.metrics())
            t0 = time.monotonic()
            h.add_nodes(stage.cluster, join)
            created = time.monotonic() - t0
            everyone = set(base) | set(join)
            h.wait(lambda: converged_on(stage, everyone), 900, f"ports and config for {len(everyone)} nodes", 0.5)
            joined = time.monotonic() - t0
            m1 = h.counts(op.metrics())
            rss, hwm = h.peak_rss_mb(op.popen.pid)
            h.wait(lambda: stage.conditions().get("Ready") == "True", 900, "Ready", 0.5)
            ready = time.monotonic() - t0
            scale_rows += [
                (f"{args.join} nodes created on the API server (16 clients)", f"{created:.1f} s"),
                (f"until every one of the {len(everyone)} nodes has its bound port in status and octavia.conf "
                 "lists every health manager", f"{joined:.1f} s"),
                ("until Ready (every host agent ready, health managers rolled)", f"{ready:.1f} s"),
                ("OpenStack requests / writes for the join", f"{m1['requests'] - m0['requests']} / "
                                                             f"{m1['writes'] - m0['writes']}"),
                ("operator RSS after the join / peak (VmHWM)", f"{rss:.0f} / {hwm:.0f} MB")]
            print(scale_rows, flush=True)
            steady_rows.append(steady(stage, len(everyone), args.timer_runs, args.drift * 2))
            churn_rows.append((len(everyone), churn(stage, args.churn)))
            print(steady_rows[-1], churn_rows[-1], flush=True)

            # -- nodes leave
            leave = join[:args.leave]
            m0 = h.counts(op.metrics())
            t0 = time.monotonic()
            h.delete_nodes(stage.cluster, leave)
            names = {f"octavia-health-manager-{n}" for n in leave}

            def ports_gone() -> bool:
                left = {p.name for p in conn.network.ports(device_owner="Octavia:health-mgr")}
                return not any(x.startswith(tuple(names)) for x in left)
            h.wait(ports_gone, 900, f"the ports of {len(leave)} nodes deleted", 0.5)
            gone = time.monotonic() - t0
            rest = everyone - set(leave)
            h.wait(lambda: converged_on(stage, rest), 900, "status and config without them", 0.5)
            settled = time.monotonic() - t0
            m1 = h.counts(op.metrics())
            rss, hwm = h.peak_rss_mb(op.popen.pid)
            scale_rows += [
                (f"{len(leave)} nodes leave: until their Neutron ports are gone", f"{gone:.1f} s"),
                ("... until status and octavia.conf list only the remaining nodes", f"{settled:.1f} s"),
                ("OpenStack requests / writes for the leave", f"{m1['requests'] - m0['requests']} / "
                                                              f"{m1['writes'] - m0['writes']}"),
                ("operator RSS after the leave / peak (VmHWM)", f"{rss:.0f} / {hwm:.0f} MB")]
            print(scale_rows[-4:], flush=True)

            # -- down to the middle size
            down = sorted(rest - set(base))[:len(rest) - args.mid]
            h.delete_nodes(stage.cluster, down)
            rest = rest - set(down)
            h.wait(lambda: converged_on(stage, rest), 900, f"status and config for {len(rest)} nodes", 0.5)
            h.wait(lambda: stage.conditions().get("Ready") == "True", 900, "Ready", 0.5)
            steady_rows.append(steady(stage, len(rest), args.timer_runs, args.drift * 2))
            churn_rows.append((len(rest), churn(stage, args.churn)))
            stage.delete_deployment()

    print()
    print("| nodes | drift-timer reconciles measured | OpenStack requests / reconcile | OpenStack writes | "
          "Kubernetes requests / reconcile | Kubernetes writes | other reconciles in the window |")
    print("|---|---|---|---|---|---|---|")
    for s in sorted(steady_rows, key=lambda s: s.nodes):
        print(f"| {s.nodes} | {s.timer_runs} | {s.os_requests:g} | {s.os_writes:g} | {s.kube_requests:g} | "
              f"{s.kube_writes:g} | {s.other_reconciles} |")
    print()
    print("| nodes | window | other pods created + deleted | own host-agent pods deleted (re-made) | reconciles "
          "caused (not the timer's) | OpenStack requests (timer runs subtracted) |")
    print("|---|---|---|---|---|---|")
    per = {s.nodes: s.os_requests for s in steady_rows}
    for nodes, c in sorted(churn_rows):
        extra = c["os_requests"] - per[nodes] * c["timer_runs"]
        print(f"| {nodes} | {c['seconds']:.0f} s ({c['timer_runs']} timer runs) | {c['pods']} | {c['own']} | "
              f"{c['event_reconciles']} | {extra:g} |")
    print()
    print("| measure | value |")
    print("|---|---|")
    for k, v in scale_rows:
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
