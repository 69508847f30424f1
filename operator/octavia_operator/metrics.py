"""Prometheus metrics of the operator (served by ``octavia-operator run --metrics-port``, 8081 by default).

Bottom layer: no import from the rest of the operator. The reconcile, the OpenStack session and the
handlers call the small functions below; the chart's PrometheusRule alerts on these series (their names
are a contract: deploy/charts/octavia-operator/templates/prometheusrule.yaml, tests/test_alerts.py).

- octavia_operator_reconcile_total{namespace,name,step,result}    result: ok | error | waiting
- octavia_operator_reconcile_duration_seconds{step}               histogram
- octavia_operator_reconcile_errors_total{namespace,name,step,reason}
- octavia_operator_openstack_requests_total{service,method,status}   status: HTTP code, or "error"
- octavia_operator_managed_nodes{namespace,name}                  nodes with a health-manager port
- octavia_operator_certificate_expiry_timestamp_seconds{namespace,name,certificate}
                                                                  server_ca | client_ca | client
- octavia_operator_amphora_config_pushes_total{namespace,name,result}   ok | failed
- octavia_operator_amphora_failovers_total{namespace,name,result}  started | completed | failed
- octavia_operator_condition_status{namespace,name,type}          1 True, 0 False, -1 Unknown
- octavia_operator_health_manager_port_bound{namespace,name,node} 1 | 0
- octavia_operator_hostagent_ready{namespace,name,node}           1 | 0 (o-hm0 verified on that node)
"""
from __future__ import annotations

import datetime as dt
import threading
from typing import Any, Iterable, Mapping

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

P = "octavia_operator_"

RECONCILE = Counter(f"{P}reconcile_total", "Reconcile steps run, by outcome.",
                    ["namespace", "name", "step", "result"])
DURATION = Histogram(f"{P}reconcile_duration_seconds", "Time one reconcile step took.", ["step"],
                     buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
ERRORS = Counter(f"{P}reconcile_errors_total", "Reconcile steps that failed, by reason.",
                 ["namespace", "name", "step", "reason"])
OPENSTACK = Counter(f"{P}openstack_requests_total", "HTTP requests the operator made to OpenStack APIs.",
                    ["service", "method", "status"])
NODES = Gauge(f"{P}managed_nodes", "Nodes with a health-manager port.", ["namespace", "name"])
CERT_EXPIRY = Gauge(f"{P}certificate_expiry_timestamp_seconds", "When a certificate expires (unix time).",
                    ["namespace", "name", "certificate"])
PUSHES = Counter(f"{P}amphora_config_pushes_total", "Amphora configuration pushes (health-manager list).",
                 ["namespace", "name", "result"])
FAILOVERS = Counter(f"{P}amphora_failovers_total", "Amphora failovers of rollouts, by outcome.",
                    ["namespace", "name", "result"])
CONDITION = Gauge(f"{P}condition_status", "Status conditions: 1 True, 0 False, -1 Unknown.",
                  ["namespace", "name", "type"])
PORT_BOUND = Gauge(f"{P}health_manager_port_bound", "Whether a node's health-manager port is bound (1) or not.",
                   ["namespace", "name", "node"])
HOSTAGENT_READY = Gauge(f"{P}hostagent_ready", "Whether the host agent verified o-hm0 on a selected node.",
                        ["namespace", "name", "node"])

_CERTS = {"serverCAExpires": "server_ca", "clientCAExpires": "client_ca", "clientCertificateExpires": "client"}
_STATUS = {"True": 1, "False": 0, "Unknown": -1}
_per_resource: dict[tuple[str, str], set[tuple[Gauge, tuple[str, ...]]]] = {}
_lock = threading.Lock()


def step_done(namespace: str, name: str, step: str, status: str, reason: str, seconds: float | None) -> None:
    """One step of a reconcile ended with a condition of this status and reason."""
    result = "ok" if status == "True" else "waiting" if status == "Unknown" else "error"
    RECONCILE.labels(namespace, name, step, result).inc()
    if seconds is not None:
        DURATION.labels(step).observe(seconds)
    if result == "error":
        ERRORS.labels(namespace, name, step, reason).inc()


def openstack_response(service: str, method: str, status: int | str) -> None:
    OPENSTACK.labels(service, method.upper(), str(status)).inc()


def amphora_pushes(namespace: str, name: str, ok: int, failed: int) -> None:
    if ok:
        PUSHES.labels(namespace, name, "ok").inc(ok)
    if failed:
        PUSHES.labels(namespace, name, "failed").inc(failed)


def amphora_failovers(namespace: str, name: str, started: int, finished: int, failed: int) -> None:
    for result, n in (("started", started), ("completed", finished), ("failed", failed)):
        if n:
            FAILOVERS.labels(namespace, name, result).inc(n)


def _parse_time(value: str) -> float | None:
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (TypeError, ValueError):
        return None


def resource_state(namespace: str, name: str, status: Mapping[str, Any], selected_nodes: Iterable[str] | None,
                   ready_nodes: Iterable[str] | None) -> None:
    """The gauges of one OctaviaDeployment, from its status after a reconcile (series of nodes or
    certificates that are gone are removed)."""
    series: set[tuple[Gauge, tuple[str, ...]]] = set()

    def put(gauge: Gauge, labels: tuple[str, ...], value: float) -> None:
        gauge.labels(*labels).set(value)
        series.add((gauge, labels))

    for cond in status.get("conditions") or []:
        put(CONDITION, (namespace, name, cond.get("type", "")), _STATUS.get(cond.get("status", ""), -1))
    for key, label in _CERTS.items():
        when = _parse_time((status.get("certificates") or {}).get(key) or "")
        if when is not None:
            put(CERT_EXPIRY, (namespace, name, label), when)
    ports = status.get("healthManagerPorts") or {}
    put(NODES, (namespace, name), len(ports))
    for node, port in ports.items():
        vif = (port or {}).get("vifType")
        put(PORT_BOUND, (namespace, name, node), 1 if vif and vif not in ("unbound", "binding_failed") else 0)
    if selected_nodes is not None:
        ready = set(ready_nodes or ())
        for node in selected_nodes:
            put(HOSTAGENT_READY, (namespace, name, node), 1 if node in ready else 0)
    with _lock:
        stale = _per_resource.get((namespace, name), set()) - series
        if selected_nodes is None:   # not computed this time: keep what the last reconcile said
            stale = {s for s in stale if s[0] is not HOSTAGENT_READY}
            series |= {s for s in _per_resource.get((namespace, name), set()) if s[0] is HOSTAGENT_READY}
        _per_resource[(namespace, name)] = series
    for gauge, labels in stale:
        _remove(gauge, labels)


def forget(namespace: str, name: str) -> None:
    """The resource is gone: its gauges go too."""
    with _lock:
        series = _per_resource.pop((namespace, name), set())
    for gauge, labels in series:
        _remove(gauge, labels)


def _remove(gauge: Gauge, labels: tuple[str, ...]) -> None:
    try:
        gauge.remove(*labels)
    except KeyError:
        pass


def serve(port: int, addr: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY) -> Any:
    """Serve /metrics on ``port`` (in a daemon thread)."""
    return start_http_server(port, addr=addr, registry=registry)
