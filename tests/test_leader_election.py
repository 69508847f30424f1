"""Leader election between operator replicas, for real: three ``octavia-operator run --lease ...``
processes with the chart's ServiceAccount (RBAC applies: the Lease Role of deploy/operator.yaml) against
a real API server. Exactly one acts; when it is SIGKILLed another takes over within the lease duration;
when the new leader stops cleanly it hands the Lease over at once. Needs no OpenStack: the resource
has no credentials, and what the leader writes (finalizer, conditions) shows who acts.
"""
from __future__ import annotations

import time
import uuid

import pytest

from kube.plugin import OPERATOR_NAMESPACE

pytestmark = pytest.mark.kube

REF = "octaviadeployments.octavia-operator.dev"
API = "octavia-operator.dev/v1alpha1"
LEASE = "leases.coordination.k8s.io"
DURATION, DEADLINE, PERIOD = 6, 4, 1


def _argv(ns: str, lease: str) -> list[str]:
    return ["run", "--verbose", "--namespace", ns, "--standalone", "--lease", lease,
            "--lease-namespace", OPERATOR_NAMESPACE, "--lease-duration", str(DURATION),
            "--renew-deadline", str(DEADLINE), "--retry-period", str(PERIOD)]


def _acted(op, ns: str) -> bool:
    """Whether the process handled the resource (kopf logs every object as [namespace/name])."""
    return f"[{ns}/octavia]" in op.logs()


def test_one_of_three_replicas_acts_and_another_takes_over(kube_cluster, kube_namespace, run_operator):
    api, ns = kube_cluster.api, kube_namespace
    lease = f"octavia-operator-{uuid.uuid4().hex[:6]}"
    holder = lambda: ((api.get(LEASE, lease, OPERATOR_NAMESPACE) or {}).get("spec") or {}).get(  # noqa: E731
        "holderIdentity") or ""
    with run_operator(argv=_argv(ns, lease), env={"POD_NAME": "op-a"}) as a, \
            run_operator(argv=_argv(ns, lease), env={"POD_NAME": "op-b"}) as b, \
            run_operator(argv=_argv(ns, lease), env={"POD_NAME": "op-c"}) as c:
        ops = {"op-a": a, "op-b": b, "op-c": c}
        a.wait_for(holder, timeout=30, message="a leader")
        first = holder().split("_")[0]
        leader = ops[first]
        standbys = {k: v for k, v in ops.items() if k != first}

        api.create({"apiVersion": API, "kind": "OctaviaDeployment", "metadata": {"name": "octavia", "namespace": ns},
                    "spec": {"cloud": {"credentialsSecret": {"name": "not-there"}}}})
        leader.wait_for(lambda: any(c_["type"] == "CloudReachable" for c_ in (
            (api.get(REF, "octavia", ns) or {}).get("status") or {}).get("conditions") or []),
            timeout=60, message="the leader reports on the resource")
        time.sleep(3)
        assert _acted(leader, ns)
        for name, op in standbys.items():
            assert op.alive and not _acted(op, ns), f"{name} acted while standing by:\n{op.tail(20)}"
            assert "standing by" in op.logs()

        # the leader dies without a word: one standby takes over once the Lease has expired
        t0 = time.monotonic()
        leader.kill()
        next(iter(standbys.values())).wait_for(lambda: holder() and not holder().startswith(first), timeout=30,
                                               message="another replica takes the Lease")
        took = time.monotonic() - t0
        assert took <= DURATION + 2 * PERIOD + 3, f"takeover after {took:.1f} s"
        second = holder().split("_")[0]
        new_leader = ops[second]
        [(third, last)] = [(k, v) for k, v in standbys.items() if k != second]
        # the new leader acts: a spec change is handled (observedGeneration follows), by it alone
        api.patch(REF, "octavia", {"spec": {"cloud": {"credentialsSecret": {"name": "still-not-there"}}}}, ns)
        generation = api.get(REF, "octavia", ns)["metadata"]["generation"]
        new_leader.wait_for(lambda: (api.get(REF, "octavia", ns).get("status") or {}).get("observedGeneration")
                            == generation, timeout=60, message="the new leader handles the change")
        assert _acted(new_leader, ns) and not _acted(last, ns)

        # a clean stop hands the Lease over at once, without waiting for it to expire: measured from the
        # moment the process has exited (kopf's own graceful shutdown takes a few seconds before that)
        assert new_leader.stop() == 0
        t0 = time.monotonic()
        last.wait_for(lambda: holder().startswith(third), timeout=DURATION, message="the handover")
        assert time.monotonic() - t0 < DURATION / 2
        api.patch(REF, "octavia", {"spec": {"cloud": {"credentialsSecret": {"name": "third-try"}}}}, ns)
        generation = api.get(REF, "octavia", ns)["metadata"]["generation"]
        last.wait_for(lambda: (api.get(REF, "octavia", ns).get("status") or {}).get("observedGeneration")
                      == generation, timeout=60, message="the last replica handles the change")
        transitions = api.get(LEASE, lease, OPERATOR_NAMESPACE)["spec"]["leaseTransitions"]
        assert transitions == 2, transitions
