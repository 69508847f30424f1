"""builders.rollout: which amphorae are failed over, when, and when the rollout stops."""
from __future__ import annotations

import datetime as dt

from octavia_operator.builders.rollout import Amphora, State, Target, plan

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.timezone.utc)
OLD, NEW = "img-old", "img-new"


def amp(i: str, lb: str, image: str = OLD, role: str = "STANDALONE", status: str = "ALLOCATED",
        created: dt.datetime | None = None) -> Amphora:
    return Amphora(i, lb, status, role, image, created or NOW - dt.timedelta(days=3))


def test_outdated_by_image_or_by_client_ca():
    t = Target(NEW, NOW - dt.timedelta(days=1))
    assert t.outdated(amp("a", "l", OLD))
    assert t.outdated(amp("b", "l", NEW))                        # booted before the client CA
    assert not t.outdated(amp("c", "l", NEW, created=NOW))
    assert not t.outdated(amp("d", "l", OLD, status="DELETED"))


def test_one_amphora_per_load_balancer_and_a_pair_never_together():
    amps = [amp("m1", "lb1", role="MASTER"), amp("b1", "lb1", role="BACKUP"), amp("s2", "lb2"), amp("s3", "lb3")]
    p = plan(State(), Target(NEW, None), amps, {"lb1": "ACTIVE", "lb2": "ACTIVE", "lb3": "ACTIVE"}, True, NOW,
             max_concurrent=2)
    assert [a.id for a in p.start] == ["b1", "s2"]               # the BACKUP first, one per load balancer
    assert p.state.phase == "RollingOut" and dict(p.state.in_flight) == {"lb1": "b1", "lb2": "s2"}
    # in flight: nothing new starts, the pair's MASTER waits for a later batch
    p2 = plan(p.state, Target(NEW, None), amps, {"lb1": "PENDING_UPDATE", "lb2": "ACTIVE", "lb3": "ACTIVE"},
              True, NOW + dt.timedelta(seconds=10), max_concurrent=2)
    assert p2.start == [] and p2.finished == ["lb2"] and dict(p2.state.in_flight) == {"lb1": "b1"}
    # the batch is done: a pause, then the next batch
    left = [amp("m1", "lb1", role="MASTER"), amp("s3", "lb3"), amp("b1n", "lb1", NEW, "BACKUP", created=NOW)]
    p3 = plan(p2.state, Target(NEW, None), left, {"lb1": "ACTIVE", "lb3": "ACTIVE"}, True,
              NOW + dt.timedelta(seconds=20), max_concurrent=2, pause=60)
    assert p3.start == [] and p3.state.phase == "Paused" and p3.state.completed == 2
    p4 = plan(p3.state, Target(NEW, None), left, {"lb1": "ACTIVE", "lb3": "ACTIVE"}, True,
              NOW + dt.timedelta(seconds=90), max_concurrent=2, pause=60)
    assert sorted(a.id for a in p4.start) == ["m1", "s3"]


def test_the_first_failure_stops_it():
    amps = [amp("a", "lb1"), amp("b", "lb2")]
    p = plan(State(), Target(NEW, None), amps, {"lb1": "ACTIVE", "lb2": "ACTIVE"}, True, NOW)
    assert [a.id for a in p.start] == ["a"]
    p2 = plan(p.state, Target(NEW, None), amps, {"lb1": "ERROR", "lb2": "ACTIVE"}, True,
              NOW + dt.timedelta(minutes=1), pause=0)
    assert p2.state.phase == "Failed" and "lb1" in p2.state.failed and p2.start == []
    assert p2.newly_failed.keys() == {"lb1"}
    # still stopped on the next look (Automatic does not retry by itself)
    p3 = plan(p2.state, Target(NEW, None), amps, {"lb1": "ERROR", "lb2": "ACTIVE"}, True,
              NOW + dt.timedelta(minutes=2), pause=0)
    assert p3.start == [] and p3.state.phase == "Failed"


def test_a_hung_failover_times_out_and_manual_waits():
    amps = [amp("a", "lb1")]
    p = plan(State(), Target(NEW, None), amps, {"lb1": "ACTIVE"}, False, NOW)
    assert p.start == [] and p.state.phase == "Outdated"          # Manual, nobody asked
    p = plan(State(), Target(NEW, None), amps, {"lb1": "ACTIVE"}, True, NOW)
    later = plan(p.state, Target(NEW, None), amps, {"lb1": "PENDING_UPDATE"}, True, NOW + dt.timedelta(hours=1),
                 timeout=1800)
    assert later.state.phase == "Failed" and "still PENDING_UPDATE" in later.state.failed["lb1"]


def test_nothing_outdated_is_done_and_writes_nothing_new():
    p = plan(State(), Target(NEW, None), [amp("a", "lb1", NEW, created=NOW)], {}, True, NOW)
    assert p.start == [] and p.state.phase == "Idle" and p.outdated == []
    assert p.state.to_status(0) == {"target": f"{NEW}@-", "phase": "Idle", "completed": 0, "outdated": 0}
