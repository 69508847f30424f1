"""The debounced background reconciles of handlers.schedule: a burst of events is one run; a run reuses the last
OpenStack results only when children alone caused it; events that arrive while a run waits for the resource's
lock are served by that run (no queue of runs behind a long reconcile)."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from octavia_operator import handlers


@pytest.fixture
def runs(monkeypatch):
    """Replaces the reconcile: each run records whether it followed only children; a run may be held before it
    takes the 'lock' (the resource's lock is what decides, in the real reconcile_by_name)."""
    monkeypatch.setattr(handlers, "DEBOUNCE", 0.05)
    lock = threading.Lock()
    out: list[bool] = []
    started = threading.Event()

    def fake(namespace, name, logger=None, why="", follow_children=False):
        started.set()
        with lock:
            follow = follow_children() if callable(follow_children) else follow_children
            out.append(follow)
    monkeypatch.setattr(handlers, "reconcile_by_name", fake)
    handlers.allow_background_reconciles()
    yield out, lock, started
    deadline = time.monotonic() + 5
    while (handlers._pending or handlers._running) and time.monotonic() < deadline:
        time.sleep(0.01)


def settle(out: list, n: int, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)   # and nothing more comes


def test_children_only_burst_is_one_run_that_follows_the_children(runs):
    out, _, _ = runs
    for _ in range(5):
        handlers.schedule("ns", "a", follow_children=True)
    settle(out, 1)
    assert out == [True]


def test_a_node_event_in_the_burst_makes_it_a_full_run(runs):
    out, _, _ = runs
    handlers.schedule("ns", "b", follow_children=True)
    handlers.schedule("ns", "b")
    handlers.schedule("ns", "b", follow_children=True)
    settle(out, 1)
    assert out == [False]
    handlers.schedule("ns", "b", follow_children=True)   # the flag does not stick to later runs
    settle(out, 2)
    assert out == [False, True]


def test_a_service_event_is_a_full_run_other_children_follow(runs):
    """A Service's address (a LoadBalancer's) decides the catalog's public endpoint: the identity step must run
    again, not be taken from the last OpenStack results."""
    out, _, _ = runs
    meta = {"namespace": "ns", "labels": {"app.kubernetes.io/instance": "d"}}
    index = {("ns", "d"): [{}]}
    handlers.child_changed({"type": "MODIFIED"}, meta, index, resource=SimpleNamespace(plural="daemonsets"))
    settle(out, 1)
    handlers.child_changed({"type": "MODIFIED"}, meta, index, resource=SimpleNamespace(plural="services"))
    settle(out, 2)
    assert out == [True, False]


def test_events_while_a_run_waits_for_the_lock_are_served_by_it(runs):
    out, lock, started = runs
    lock.acquire()   # a long reconcile holds the resource
    try:
        handlers.schedule("ns", "c", follow_children=True)
        assert started.wait(2)
        for _ in range(20):   # hundreds of events during a long reconcile
            handlers.schedule("ns", "c", follow_children=True)
            time.sleep(0.01)
        handlers.schedule("ns", "c")   # a node event among them: the waiting run becomes a full one
        time.sleep(0.3)   # several debounce periods: no second run is started meanwhile
        assert out == [] and len(handlers._running) == 1
    finally:
        lock.release()
    settle(out, 1)
    assert out == [False]
    handlers.schedule("ns", "c", follow_children=True)   # after it decided, an event starts a new run
    settle(out, 2)
    assert out == [False, True]


def test_the_memo_ignores_kopfs_annotations_but_not_a_rotation_request():
    """kopf rewrites its progress and last-handled-configuration annotations (under the operator's prefix) as it
    handles the resource: the OpenStack results stay valid. A one-shot request annotation invalidates them."""
    from octavia_operator.steps import runner as r
    ctx = r.Context(name="o", namespace="ns", uid="u", generation=3, raw_spec={}, status={},
                    annotations={"octavia-operator.dev/last-handled-configuration": "{}"})
    memo = r.CloudMemo("u", 3, r._relevant(ctx.annotations), time.monotonic(), {}, {})
    ctx.annotations = {"octavia-operator.dev/reconcile_handler": '{"started": "now"}'}
    assert memo.valid_for(ctx, 300)
    ctx.annotations = {"octavia-operator.dev/rotate-service-password": "2026-12-02"}
    assert not memo.valid_for(ctx, 300)
    ctx.annotations = {}
    ctx.generation = 4
    assert not memo.valid_for(ctx, 300)
    ctx.generation = 3
    assert not memo.valid_for(ctx, 0)
