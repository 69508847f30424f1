"""The operator's metrics module: what a status turns into, and that gone series go."""
from __future__ import annotations

from prometheus_client import REGISTRY

from octavia_operator import metrics


def value(series: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(series, labels)


STATUS = {
    "conditions": [{"type": "Ready", "status": "True"}, {"type": "HostAgentReady", "status": "Unknown"}],
    "certificates": {"clientCertificateExpires": "2027-01-01T00:00:00Z", "serverCAExpires": "2036-01-01T00:00:00Z"},
    "healthManagerPorts": {"n1": {"vifType": "ovs"}, "n2": {"vifType": "binding_failed"}},
}


def test_status_becomes_gauges_and_gone_series_are_removed():
    me = {"namespace": "unit", "name": "octd"}
    metrics.resource_state("unit", "octd", STATUS, ["n1", "n2"], ["n1"])
    assert value("octavia_operator_condition_status", type="Ready", **me) == 1
    assert value("octavia_operator_condition_status", type="HostAgentReady", **me) == -1
    assert value("octavia_operator_managed_nodes", **me) == 2
    assert value("octavia_operator_health_manager_port_bound", node="n1", **me) == 1
    assert value("octavia_operator_health_manager_port_bound", node="n2", **me) == 0
    assert value("octavia_operator_hostagent_ready", node="n1", **me) == 1
    assert value("octavia_operator_hostagent_ready", node="n2", **me) == 0
    assert value("octavia_operator_certificate_expiry_timestamp_seconds", certificate="client", **me) == 1798761600
    # n2 leaves; the host agent was not looked at this time: its last word on n1 stays
    metrics.resource_state("unit", "octd", {**STATUS, "healthManagerPorts": {"n1": {"vifType": "ovs"}}}, None, None)
    assert value("octavia_operator_health_manager_port_bound", node="n2", **me) is None
    assert value("octavia_operator_hostagent_ready", node="n1", **me) == 1
    assert value("octavia_operator_managed_nodes", **me) == 1
    metrics.forget("unit", "octd")
    assert value("octavia_operator_managed_nodes", **me) is None
    assert value("octavia_operator_condition_status", type="Ready", **me) is None


def test_steps_counted_by_result():
    before = value("octavia_operator_reconcile_errors_total", namespace="unit", name="x", step="cloud",
                   reason="CloudAuthFailed") or 0
    metrics.step_done("unit", "x", "cloud", "False", "CloudAuthFailed", 0.2)
    metrics.step_done("unit", "x", "identity", "Unknown", "Waiting", None)
    assert value("octavia_operator_reconcile_errors_total", namespace="unit", name="x", step="cloud",
                 reason="CloudAuthFailed") == before + 1
    assert value("octavia_operator_reconcile_total", namespace="unit", name="x", step="identity",
                 result="waiting") >= 1
    assert value("octavia_operator_reconcile_duration_seconds_count", step="cloud") >= 1
