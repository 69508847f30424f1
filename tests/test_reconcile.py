"""The reconcile skeleton: ordered steps, honest conditions, level-based status writes."""
from __future__ import annotations

import datetime as dt

import pytest

from octavia_operator import conditions as c
from octavia_operator import handlers
from octavia_operator import errors
from octavia_operator.steps import runner as r
from octavia_operator.steps import STEPS

SPEC = {"cloud": {"credentialsSecret": {"name": "openstack-admin"}}}


class FakeConn:
    pass


class FakeKube:
    def __init__(self, secrets=None):
        self.secrets = secrets or {}

    def read_secret(self, namespace, name):
        return self.secrets.get((namespace, name))


def make_ctx(spec=None, status=None, cloud=None, generation=1, now=None):
    return r.Context(name="octavia", namespace="openstack", uid="uid-1", generation=generation,
                     raw_spec=spec if spec is not None else SPEC, status=status or {}, kube=FakeKube(),
                     cloud_factory=cloud, now=now or dt.datetime(2026, 11, 25, tzinfo=dt.timezone.utc))


@pytest.fixture
def probe_ok(monkeypatch):
    from octavia_operator.backends.openstack import session
    monkeypatch.setattr(session, "probe", lambda conn: {"auth_url": "http://ks/v3", "user": "admin",
                                                        "project": "admin", "region": "RegionOne"})


# the first two steps (the others have their own tests against the real cloud and the emulated API)
CORE = [s for s in STEPS if s.name in ("spec", "cloud")]


def by_type(outcome):
    return {cond.type: cond for cond in outcome.conditions}


def test_steps_report_one_condition_each_plus_ready(probe_ok):
    out = r.reconcile(make_ctx(cloud=lambda ctx: FakeConn()))
    types = [cond.type for cond in out.conditions]
    assert types == [s.condition for s in STEPS] + ["Ready"]
    out = r.reconcile(make_ctx(cloud=lambda ctx: FakeConn()), CORE)
    conds = by_type(out)
    assert conds["SpecValid"].status == c.TRUE
    assert conds["CloudReachable"].status == c.TRUE
    assert "authenticated to http://ks/v3" in conds["CloudReachable"].message


def test_steps_wait_for_their_dependencies_and_ready_names_the_first_failure():
    def unreachable(ctx):
        raise errors.TransientError("CloudUnreachable", "cannot reach the cloud")
    subset = [s for s in STEPS if s.name in ("spec", "cloud", "project", "identity", "image", "network", "ports")]
    out = r.reconcile(make_ctx(cloud=unreachable), subset)
    conds = by_type(out)
    for t in ("ServiceProjectReady", "IdentityReady", "AmphoraImageReady", "ManagementNetworkReady",
              "HealthManagerPortsReady"):
        assert conds[t].status == c.UNKNOWN and conds[t].reason == "Waiting", conds[t]
    assert "waiting for cloud" in conds["ServiceProjectReady"].message
    assert "waiting for project" in conds["IdentityReady"].message
    assert "waiting for network" in conds["HealthManagerPortsReady"].message
    assert conds["Ready"].status == c.FALSE and conds["Ready"].reason == "CloudUnreachable"
    assert "CloudReachable is False" in conds["Ready"].message


def test_invalid_spec_stops_everything_that_depends_on_it():
    calls = []
    bad = {"cloud": {"credentialsSecret": {"name": "x"}},
           "managementNetwork": {"cidr": "172.31.0.0/24", "allocationPool": {"start": "10.0.0.1", "end": "10.0.0.2"}}}
    out = r.reconcile(make_ctx(spec=bad, cloud=lambda ctx: calls.append(1)))
    conds = by_type(out)
    assert conds["SpecValid"].status == c.FALSE and conds["SpecValid"].reason == "InvalidSpec"
    assert "managementNetwork: allocationPool 10.0.0.1-10.0.0.2 must lie inside cidr" in conds["SpecValid"].message
    assert conds["CloudReachable"].status == c.UNKNOWN and conds["CloudReachable"].reason == "Waiting"
    assert calls == [], "nothing may touch the cloud when the spec is invalid"
    assert conds["Ready"].status == c.FALSE and conds["Ready"].reason == "InvalidSpec"


def test_second_reconcile_of_a_converged_resource_writes_nothing(probe_ok):
    first = r.reconcile(make_ctx(cloud=lambda ctx: FakeConn()), CORE)
    assert set(first.status_patch) == {"conditions", "observedGeneration"}
    later = make_ctx(status=dict(first.status_patch), cloud=lambda ctx: FakeConn(),
                     now=dt.datetime(2026, 11, 26, tzinfo=dt.timezone.utc))
    second = r.reconcile(later, CORE)
    assert second.status_patch == {}


def test_transition_time_moves_only_when_status_changes(probe_ok):
    t0 = dt.datetime(2026, 11, 25, tzinfo=dt.timezone.utc)
    t1 = t0 + dt.timedelta(hours=1)

    def fail(ctx):
        raise errors.TransientError("CloudUnreachable", "cannot reach the cloud")

    first = r.reconcile(make_ctx(cloud=fail, now=t0))
    assert first.transient
    cond = c.get(first.status_patch["conditions"], "CloudReachable")
    assert cond["status"] == c.FALSE and cond["lastTransitionTime"] == "2026-11-25T00:00:00Z"
    spec_valid = c.get(first.status_patch["conditions"], "SpecValid")

    second = r.reconcile(make_ctx(status=first.status_patch, cloud=lambda ctx: FakeConn(), now=t1))
    cond2 = c.get(second.status_patch["conditions"], "CloudReachable")
    assert cond2["status"] == c.TRUE and cond2["lastTransitionTime"] == "2026-11-25T01:00:00Z"
    assert c.get(second.status_patch["conditions"], "SpecValid") == spec_valid
    assert all(x["observedGeneration"] == 1 for x in second.status_patch["conditions"])


def test_user_errors_are_conditions_not_retries():
    def bad_creds(ctx):
        raise errors.StepError("CloudAuthFailed", "authenticating: the credentials were refused (401)")
    out = r.reconcile(make_ctx(cloud=bad_creds), CORE)
    assert not out.transient
    cond = by_type(out)["CloudReachable"]
    assert (cond.status, cond.reason) == (c.FALSE, "CloudAuthFailed")


def test_unexpected_exceptions_become_internal_errors_and_are_retried():
    def boom(ctx):
        raise RuntimeError("kaboom")
    out = r.reconcile(make_ctx(cloud=boom))
    cond = by_type(out)["CloudReachable"]
    assert (cond.status, cond.reason) == (c.FALSE, "InternalError") and "kaboom" in cond.message
    assert out.transient


def test_missing_credentials_secret_is_reported():
    ctx = make_ctx(cloud=handlers.cloud_from_secret)
    out = r.reconcile(ctx)
    cond = by_type(out)["CloudReachable"]
    assert (cond.status, cond.reason) == (c.FALSE, "CredentialsSecretNotFound")
    assert "openstack/openstack-admin" in cond.message


def test_credentials_secret_without_the_key_is_reported():
    ctx = make_ctx(cloud=handlers.cloud_from_secret)
    ctx.kube = FakeKube({("openstack", "openstack-admin"): {"other": b"x"}})
    cond = by_type(r.reconcile(ctx))["CloudReachable"]
    assert (cond.status, cond.reason) == (c.FALSE, "CredentialsSecretKeyMissing")


def test_clouds_yaml_without_the_named_cloud_is_reported():
    ctx = make_ctx(cloud=handlers.cloud_from_secret)
    ctx.kube = FakeKube({("openstack", "openstack-admin"): {"clouds.yaml": b"clouds:\n  other: {}\n"}})
    cond = by_type(r.reconcile(ctx))["CloudReachable"]
    assert (cond.status, cond.reason) == (c.FALSE, "CloudNotFound")
    assert "other" in cond.message


def test_merge_diff_nulls_what_disappeared_and_is_empty_when_equal():
    old = {"healthManagerPorts": {"a": {"ip": "1"}, "b": {"ip": "2"}}, "observedGeneration": 1}
    new = {"healthManagerPorts": {"a": {"ip": "1"}, "c": {"ip": "3"}}, "observedGeneration": 1}
    assert r.merge_diff(old, new) == {"healthManagerPorts": {"c": {"ip": "3"}, "b": None}}
    assert r.merge_diff(new, new) == {}
