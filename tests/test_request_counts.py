"""CI's request-count regression check (issue 13): the deterministic request counts of
bench/reconcile_cost.py against the baseline committed in bench/request_counts.json.

One OctaviaDeployment reconciled in-process (the operator's reconcile, as its ServiceAccount, on a real API
server with kwok nodes) against the loopback cloud: the writes of its first reconcile (its reads vary with
timing), then every count of converged reconciles at 3 and at 6 nodes. It fails when a count (OpenStack or
Kubernetes, requests or writes) is above the baseline, when a converged reconcile writes anything, or when
the converged cost differs between 3 and 6 nodes. A deliberate
improvement lowers the baseline: ``bench/reconcile_cost.py --update bench/request_counts.json``.
"""
from __future__ import annotations

import json
import pathlib
import sys

import pytest

from kube.plugin import _need_assets

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

pytestmark = [pytest.mark.openstack, pytest.mark.kube]


def test_request_counts_do_not_regress(os_cloud_config):
    import reconcile_cost
    _need_assets()
    rows = reconcile_cost.measure([3, 6], rounds=2, log=lambda row: None)
    measured = reconcile_cost.baseline_counts(rows)
    for key, counts in measured.items():
        if key.startswith("converged"):
            assert counts["openstack_writes"] == 0 and counts["kube_writes"] == 0, (key, counts)
    baseline = json.loads((ROOT / "bench" / "request_counts.json").read_text())
    assert reconcile_cost.check(measured, baseline) == [], json.dumps(measured, indent=2)


def test_the_check_catches_a_regression():
    import reconcile_cost
    base = {"first reconcile": {"openstack_requests": 50, "openstack_writes": 20, "kube_requests": 40,
                                "kube_writes": 13},
            "converged reconcile, 3 nodes": {"openstack_requests": 25, "openstack_writes": 0, "kube_requests": 38,
                                             "kube_writes": 0}}
    same = json.loads(json.dumps(base))
    assert reconcile_cost.check(same, base) == []
    worse = json.loads(json.dumps(base))
    worse["converged reconcile, 3 nodes"]["openstack_requests"] = 26
    assert reconcile_cost.check(worse, base) == ["converged reconcile, 3 nodes: openstack_requests 26 > baseline 25"]
    grows = {**json.loads(json.dumps(base)), "converged reconcile, 6 nodes": {
        "openstack_requests": 27, "openstack_writes": 0, "kube_requests": 38, "kube_writes": 0}}
    assert any("grows with the nodes" in p for p in reconcile_cost.check(grows, base))
    missing = {"first reconcile": base["first reconcile"]}
    assert reconcile_cost.check(missing, base) == ["converged reconcile, 3 nodes: not measured"]
