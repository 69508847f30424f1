"""What one reconcile costs: time and API requests, first run, converging and converged (the drift timer).

    OSCLOUD_BASE=/tmp/oscloud-tests .venv/bin/python bench/reconcile_cost.py [--rounds 5]

Needs the loopback OpenStack of tests/cloud running and the Kubernetes binaries (KUBE_ASSETS or
.tools/kube): starts a real control plane (tests/kube/cluster.py) with kwok nodes, applies
deploy/operator.yaml and reconciles in-process as the chart's ServiceAccount. Prints a table;
asserts nothing (targets live here, not in tests).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time
import uuid
import warnings

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
warnings.simplefilter("ignore")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    import yaml

    from kube.cluster import KubeCluster, assets_dir
    from kube.plugin import install_operator_manifests, service_account
    from octd_helpers import credentials_secret, random_cidr, serve_image, spec_for, volumes_for
    from oscount import WriteCounter
    from octavia_operator import handlers
    from octavia_operator.steps import runner as r
    from octavia_operator.spec import parse_spec
    from octavia_operator.steps import cloud as cloud_steps

    base = pathlib.Path(os.environ.get("OSCLOUD_BASE", "/tmp/oscloud/run"))
    doc = yaml.safe_load((base / "clouds.yaml").read_text())
    clouds_yaml = yaml.safe_dump({"clouds": {"admin-cloud": doc["clouds"]["oscloud"]}}).encode()

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="bench-kube-"))
    cluster = KubeCluster(assets_dir(), workdir).start()
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
    api.create(credentials_secret(ns, clouds_yaml))
    for name in ("node-0", "node-1", "node-2"):
        cluster.add_node(name)
    volumes_for(cluster, ns)
    sfx = uuid.uuid4().hex[:8]
    rows = []
    with serve_image() as url:
        api.create({"apiVersion": "octavia-operator.dev/v1alpha1", "kind": "OctaviaDeployment",
                    "metadata": {"name": "octavia", "namespace": ns}, "spec": spec_for(sfx, url, random_cidr())})

        def once():
            live = api.get("octaviadeployments.octavia-operator.dev", "octavia", ns)
            ctx = r.Context(name="octavia", namespace=ns, uid=live["metadata"]["uid"], generation=1,
                            raw_spec=live["spec"], status=dict(live.get("status") or {}), kube=kube,
                            cloud_factory=handlers.cloud_from_secret)
            spec = parse_spec(live["spec"])
            ctx.spec = spec
            conn = handlers.cloud_from_secret(ctx)
            ctx.spec = None
            kube_calls.clear()
            kube.writes.entries.clear()
            t0 = time.perf_counter()
            with WriteCounter(conn) as w:
                out = r.reconcile(ctx)
            dt = time.perf_counter() - t0
            if out.status_patch:
                kube.merge_patch("octavia-operator.dev/v1alpha1", "OctaviaDeployment", "octavia", ns,
                                 {"status": out.status_patch}, subresource="status")
            kube_reqs = len(kube_calls)
            return dt, len(w.requests), len(w.writes), kube_reqs, len(kube.writes.entries), ctx

        try:
            ready = False
            i = 0
            while not ready and i < 60:  # converging: the controllers and kwok act in between
                dt, os_reqs, os_writes, kube_reqs, kube_writes, ctx = once()
                rows.append(("first" if i == 0 else f"converging #{i}", dt, os_reqs, os_writes, kube_reqs,
                             kube_writes))
                cond = {c["type"]: c for c in api.get("octaviadeployments.octavia-operator.dev", "octavia", ns)
                        ["status"]["conditions"]}
                ready = cond["Ready"]["status"] == "True"
                i += 1
                if not ready:
                    time.sleep(1)
            for j in range(args.rounds):
                dt, os_reqs, os_writes, kube_reqs, kube_writes, ctx = once()
                rows.append((f"converged #{j + 1}", dt, os_reqs, os_writes, kube_reqs, kube_writes))
        finally:
            live = api.get("octaviadeployments.octavia-operator.dev", "octavia", ns)
            ctx = r.Context(name="octavia", namespace=ns, uid=live["metadata"]["uid"], generation=1,
                            raw_spec=live["spec"], status=dict(live.get("status") or {}), kube=kube)
            ctx.spec = parse_spec(live["spec"])
            ctx.out.cloud = handlers.cloud_from_secret(ctx)
            cloud_steps.teardown(ctx)
            cluster.stop()
    print(f"{'reconcile':<14} {'seconds':>8} {'OpenStack req':>14} {'OS writes':>10} {'Kube req':>9} "
          f"{'Kube writes':>12}")
    for name, dt, a, b, c, d in rows:
        print(f"{name:<14} {dt:>8.2f} {a:>14} {b:>10} {c:>9} {d:>12}")
    print("(3 kwok nodes, ECDSA certificates, embedded MariaDB/RabbitMQ; a real kube-apiserver 1.36 with its "
          "controllers; converging rounds wait 1 s for them)")


if __name__ == "__main__":
    main()
