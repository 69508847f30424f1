"""What one reconcile costs: time and API requests, first run and converged (the drift timer).

    OSCLOUD_BASE=/tmp/oscloud-tests .venv/bin/python bench/reconcile_cost.py [--rounds 5]

Needs the loopback OpenStack of tests/cloud running; runs the Kubernetes API emulator of
tests/kube in-process. Prints a table; asserts nothing (targets live here, not in tests).
"""
from __future__ import annotations

import argparse
import base64
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

    from kube.shim import EmulatorServer, KubeAPI
    from octd_helpers import node, random_cidr, serve_image, spec_for
    from oscount import WriteCounter
    from octavia_operator import handlers
    from octavia_operator import reconcile as r
    from octavia_operator.k8s import Kube
    from octavia_operator.spec import parse_spec
    from octavia_operator.steps import cloud as cloud_steps

    base = pathlib.Path(os.environ.get("OSCLOUD_BASE", "/tmp/oscloud/run"))
    doc = yaml.safe_load((base / "clouds.yaml").read_text())
    clouds_yaml = yaml.safe_dump({"clouds": {"admin-cloud": doc["clouds"]["oscloud"]}}).encode()

    server = EmulatorServer().start()
    api = KubeAPI(server, tempfile.mkdtemp())
    kube = Kube(api.api_client())
    kube_calls: list[str] = []
    orig_call = kube._call

    def counting_call(method, path, *a, **kw):
        kube_calls.append(method)
        return orig_call(method, path, *a, **kw)
    kube._call = counting_call
    api.create_crd(str(ROOT / "deploy" / "crds" / "octaviadeployments.octavia-operator.dev.yaml"))
    ns = "bench"
    api.create_namespace(ns)
    api.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "openstack-admin", "namespace": ns},
                "data": {"clouds.yaml": base64.b64encode(clouds_yaml).decode()}})
    for name in ("node-0", "node-1", "node-2"):
        api.create(node(name))
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
            for i in range(args.rounds):
                dt, os_reqs, os_writes, kube_reqs, kube_writes, ctx = once()
                rows.append(("first" if i == 0 else f"converged #{i}", dt, os_reqs, os_writes, kube_reqs, kube_writes))
        finally:
            live = api.get("octaviadeployments.octavia-operator.dev", "octavia", ns)
            ctx = r.Context(name="octavia", namespace=ns, uid=live["metadata"]["uid"], generation=1,
                            raw_spec=live["spec"], status=dict(live.get("status") or {}), kube=kube)
            ctx.spec = parse_spec(live["spec"])
            ctx.out["cloud"] = handlers.cloud_from_secret(ctx)
            cloud_steps.teardown(ctx)
            server.stop()
    print(f"{'reconcile':<14} {'seconds':>8} {'OpenStack req':>14} {'OS writes':>10} {'Kube req':>9} "
          f"{'Kube writes':>12}")
    for name, dt, a, b, c, d in rows:
        print(f"{name:<14} {dt:>8.2f} {a:>14} {b:>10} {c:>9} {d:>12}")
    print("(3 nodes, ECDSA certificates, embedded MariaDB/RabbitMQ not ready: the services step is not reached)")


if __name__ == "__main__":
    main()
