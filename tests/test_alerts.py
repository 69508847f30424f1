"""The chart's Prometheus integration: the metrics Service, the ServiceMonitor and the PrometheusRule
(deploy/charts/octavia-operator/templates/{metrics-service,servicemonitor,prometheusrule}.yaml).

The alert rules are rendered by Helm, checked by the real ``promtool check rules`` and unit-tested by
the real ``promtool test rules``: synthetic series in Prometheus' expanding notation, written as the
operator exports them (operator/octavia_operator/metrics.py: the series names are a contract) and as a
ServiceMonitor scrapes them (job = the metrics Service's name; target labels pod, instance, ...), prove
that every alert fires when it should, with the labels and annotations an on-call engineer sees, and
does NOT fire when it should not (a certificate 30 days out, a Ready condition that recovers, a port
bound again before the threshold, a standby replica that is down while the leader is up...).

Needs Helm (``tests/tools/get-helm.sh``) and promtool (``tests/tools/get-promtool.sh``: Debian's
``prometheus`` package, installed without starting the server); the tests skip without them, except
under CI=true where they fail.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import k8stools
from test_chart import CHART, by_kind, helm, render

RELEASE = "octavia-operator"
NAMESPACE = "octavia-operator"
# What a ServiceMonitor makes of the metrics Service "<fullname>-metrics": job="<service name>".
JOB = "octavia-operator-metrics"
PROMETHEUS_RULE = ["--set", "metrics.prometheusRule.enabled=true"]
SERVICE_MONITOR = ["--set", "metrics.serviceMonitor.enabled=true"]
ALERTS = {"OctaviaCertificateExpiringSoon", "OctaviaCertificateExpired", "OctaviaReconcileFailing",
          "OctaviaHealthManagerPortUnbound", "OctaviaHostAgentNotReady", "OctaviaOperatorDown"}


# ----------------------------------------------------------------------------- tools


@pytest.fixture(scope="module")
def promtool() -> str:
    """promtool from tests/tools/get-promtool.sh ($PROMTOOL, else PATH, else /usr/bin/promtool)."""
    for c in (os.environ.get("PROMTOOL"), shutil.which("promtool"), "/usr/bin/promtool"):
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            if subprocess.run([c, "--version"], capture_output=True, timeout=30).returncode == 0:
                return c
    msg = "promtool not found: run tests/tools/get-promtool.sh (apt: Debian's prometheus package)"
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def _promtool(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def rule_groups(*args: str) -> list[dict]:
    objs = render(*PROMETHEUS_RULE, *args)
    (rule,) = by_kind(objs, "PrometheusRule")
    return rule["spec"]["groups"]


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory) -> Path:
    """The rendered PrometheusRule's spec.groups, as a Prometheus rule file (rules.yaml)."""
    k8stools.helm_binary()   # skip (or fail under CI) without helm
    d = tmp_path_factory.mktemp("alerts")
    (d / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups()}, sort_keys=False))
    return d


def run_unit_tests(promtool: str, rules_dir: Path, name: str, tests: list[dict]) -> subprocess.CompletedProcess:
    f = rules_dir / f"{name}.test.yaml"
    f.write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests},
                                sort_keys=False))
    return _promtool(promtool, "test", "rules", f.name, cwd=rules_dir)


# ----------------------------------------------------------------------------- series and alerts


def series(metric: str, values: str, *, pod: str = "octavia-operator-5d9c7-a", **labels: str) -> dict:
    """One input series as a ServiceMonitor scrapes it: the metric's own labels (honorLabels keeps its
    `namespace`, the OctaviaDeployment's) plus the target's."""
    target = {"job": JOB, "instance": f"{pod}:8081", "pod": pod, "container": "operator", "endpoint": "metrics"}
    all_labels = {**target, **labels}
    body = ", ".join(f'{k}="{v}"' for k, v in all_labels.items())
    return {"series": f"{metric}{{{body}}}", "values": values}


def cert(namespace: str, name: str, certificate: str, values: str, **kw) -> dict:
    return series("octavia_operator_certificate_expiry_timestamp_seconds", values, namespace=namespace, name=name,
                  certificate=certificate, **kw)


DAY = 86400


def expiring(namespace: str, name: str, certificate: str, left: str, days: int = 14) -> dict:
    if certificate == "client":
        runbook = ("The operator renews the controller's client certificate by itself, "
                   "spec.certificates.renewBeforeDays (default 30) before it expires: that it has not means its "
                   f"reconciles fail; see kubectl -n {namespace} describe octaviadeployment {name} and the "
                   "operator's log.")
    else:
        how = ("server-ca" if certificate == "server_ca"
               else "client-ca (twice, stage then promote, with amphora failovers in between)")
        runbook = (f"A CA is never rotated automatically while it is valid. Roll it over with the annotation "
                   f"octavia-operator.dev/rotate-{how} on OctaviaDeployment {namespace}/{name}, or renew your own "
                   "CA Secret (spec.certificates.serverCASecret / clientCASecret); see docs/certificates.md.")
    return {"exp_labels": {"severity": "warning", "namespace": namespace, "name": name, "certificate": certificate},
            "exp_annotations": {
                "summary": f"Octavia certificate {certificate} of {namespace}/{name} expires soon",
                "description": f"The {certificate} certificate of OctaviaDeployment {namespace}/{name} expires in "
                               f"{left} (alert threshold {days} days).",
                "runbook": runbook}}


def expired(namespace: str, name: str, certificate: str, ago: str) -> dict:
    if certificate == "client":
        runbook = (f"Find out why the operator did not renew it (kubectl -n {namespace} describe octaviadeployment "
                   f"{name}, the operator's log); once the reconcile succeeds the certificate is re-issued and the "
                   "controllers restart.")
    else:
        runbook = ("An expired CA is replaced without staging: annotate OctaviaDeployment "
                   f"{namespace}/{name} with octavia-operator.dev/rotate-"
                   f"{'server-ca' if certificate == 'server_ca' else 'client-ca'} (or renew your own CA Secret), "
                   "then fail over every amphora booted before; see docs/certificates.md.")
    return {"exp_labels": {"severity": "critical", "namespace": namespace, "name": name, "certificate": certificate},
            "exp_annotations": {
                "summary": f"Octavia certificate {certificate} of {namespace}/{name} has expired",
                "description": f"The {certificate} certificate of OctaviaDeployment {namespace}/{name} expired {ago} "
                               "ago: the controllers and the amphorae no longer accept each other's TLS connections "
                               "(load balancer changes fail).",
                "runbook": runbook}}


def reconcile_failing(namespace: str, name: str) -> dict:
    return {"exp_labels": {"severity": "warning", "namespace": namespace, "name": name},
            "exp_annotations": {
                "summary": f"OctaviaDeployment {namespace}/{name} fails to reconcile",
                "description": f"OctaviaDeployment {namespace}/{name} has had its Ready condition False, or "
                               "reconcile errors increasing, for 15 minutes.",
                "runbook": f"The conditions say which step fails and why: kubectl -n {namespace} describe "
                           f"octaviadeployment {name}; octavia_operator_reconcile_errors_total{{namespace="
                           f'"{namespace}", name="{name}"}} counts the errors by step and reason; the operator\'s '
                           f"log: kubectl -n {NAMESPACE} logs deployment/{RELEASE}."}}


def port_unbound(namespace: str, name: str, node: str) -> dict:
    return {"exp_labels": {"severity": "warning", "namespace": namespace, "name": name, "node": node},
            "exp_annotations": {
                "summary": f"Octavia health-manager port of {namespace}/{name} on node {node} is unbound",
                "description": f"The health-manager Neutron port of OctaviaDeployment {namespace}/{name} on node "
                               f"{node} has not been bound (binding:vif_type unbound or binding_failed) for 10 "
                               f"minutes: {node} has no working o-hm0, its health manager receives no amphora "
                               "heartbeats.",
                "runbook": f'status.healthManagerPorts["{node}"] of the OctaviaDeployment names the port, its hostId '
                           "and vifType (openstack port show <portId>). Check that a Neutron L2 agent (Open vSwitch) "
                           f"or OVN controller runs on {node} and that the port's binding:host_id is that agent's "
                           "host (spec.managementNetwork.hostIdAnnotation overrides it per node)."}}


def hostagent_not_ready(namespace: str, name: str, node: str) -> dict:
    return {"exp_labels": {"severity": "warning", "namespace": namespace, "name": name, "node": node},
            "exp_annotations": {
                "summary": f"Octavia host agent of {namespace}/{name} not ready on node {node}",
                "description": f"The host agent of OctaviaDeployment {namespace}/{name} has not reported o-hm0 "
                               f"ready on node {node} for 10 minutes: the worker, health manager and housekeeping "
                               "do not run there.",
                "runbook": f"See the host agent pod on the node: kubectl -n {namespace} get pods -o wide "
                           f"--field-selector spec.nodeName={node} (DaemonSet {name}-hostagent), its log and "
                           "`octavia-hostagent status` in it; docs/hostagent.md lists what it plumbs and why it can "
                           "refuse."}}


def operator_down() -> dict:
    return {"exp_labels": {"severity": "critical", "namespace": NAMESPACE},
            "exp_annotations": {
                "summary": f"The octavia-operator in namespace {NAMESPACE} is down",
                "description": f"No octavia-operator replica has been scraped successfully for 10 minutes (job {JOB} "
                               f"in namespace {NAMESPACE}): nothing reconciles the OctaviaDeployments (certificate "
                               "renewal, health-manager ports, self-healing) and no other Octavia alert can fire.",
                "runbook": f"kubectl -n {NAMESPACE} get deployment,pods -l app.kubernetes.io/instance={RELEASE}; "
                           f"kubectl -n {NAMESPACE} logs deployment/{RELEASE}. If the pods run, check that Prometheus "
                           f"scrapes the Service {JOB} in a job of that name (this chart's ServiceMonitor, "
                           "metrics.serviceMonitor.enabled, does that)."}}


def counter(increments: list[int], minutes: int) -> str:
    """A counter's values, one a minute for 0..minutes, that goes up by one at each of `increments`."""
    return " ".join(str(sum(1 for i in increments if i <= m)) for m in range(minutes + 1))


def at(minutes: int, alertname: str, *alerts: dict) -> dict:
    return {"eval_time": f"{minutes}m", "alertname": alertname, "exp_alerts": list(alerts)}


# One entry per scenario: the promtool unit tests (``tests:`` of a test file) that prove it.
SCENARIOS: dict[str, list[dict]] = {
    # time() is the evaluation time in seconds since 0: an expiry timestamp of N days is N days out at 0m.
    "certificates": [{
        "name": "certificate expiry: 30 days out is fine, 10 days warns after 15m, a past expiry is critical",
        "interval": "1m",
        "input_series": [
            cert("openstack", "octavia", "server_ca", f"{30 * DAY}+0x40"),
            # reported by two replicas during a leader handover: still one alert
            cert("openstack", "octavia", "client_ca", f"{10 * DAY}+0x20 {365 * DAY}+0x20", pod="octavia-operator-5d9c7-a"),
            cert("openstack", "octavia", "client_ca", f"{10 * DAY}+0x20 {365 * DAY}+0x20", pod="octavia-operator-5d9c7-b"),
            # expires at 10m: ExpiringSoon is pending until then and never fires; Expired fires at once
            cert("openstack", "octavia", "client", "600+0x40"),
            cert("prod", "lb", "server_ca", f"{5 * DAY}+0x40"),
            cert("prod", "lb", "client", f"{14 * DAY + 3600}+0x40"),   # 14 days and an hour: not within 14 days
        ],
        "alert_rule_test": [
            at(5, "OctaviaCertificateExpiringSoon"),
            at(5, "OctaviaCertificateExpired"),
            at(14, "OctaviaCertificateExpiringSoon"),   # pending: for 15m
            at(14, "OctaviaCertificateExpired", expired("openstack", "octavia", "client", "4m 0s")),
            at(16, "OctaviaCertificateExpiringSoon",
               expiring("openstack", "octavia", "client_ca", "9d 23h 44m 0s"),
               expiring("prod", "lb", "server_ca", "4d 23h 44m 0s")),
            at(16, "OctaviaCertificateExpired", expired("openstack", "octavia", "client", "6m 0s")),
            # the client CA was renewed at 21m (365 days): resolved; the server CA of prod/lb still warns
            at(30, "OctaviaCertificateExpiringSoon", expiring("prod", "lb", "server_ca", "4d 23h 30m 0s")),
        ],
    }, {
        "name": "the client certificate's runbook (renewed by the operator) differs from a CA's",
        "interval": "1m",
        "input_series": [cert("prod", "lb", "client", f"{DAY}+0x20")],
        "alert_rule_test": [at(16, "OctaviaCertificateExpiringSoon", expiring("prod", "lb", "client", "23h 44m 0s"))],
    }, {
        "name": "an expired server CA",
        "interval": "1m",
        "input_series": [cert("prod", "lb", "server_ca", "0+0x5")],
        "alert_rule_test": [at(2, "OctaviaCertificateExpired", expired("prod", "lb", "server_ca", "2m 0s")),
                            at(2, "OctaviaCertificateExpiringSoon")],
    }],
    "reconcile": [{
        "name": "reconcile failing: Ready False for 15m, or errors increasing for 15m; Unknown is not failing",
        "interval": "1m",
        "input_series": [
            # Ready False 0m..20m, True from 21m
            series("octavia_operator_condition_status", "0+0x20 1+0x30", namespace="openstack", name="octavia",
                   type="Ready"),
            # Ready True throughout, but a reconcile fails every 6 minutes 6m..30m (the operator's retry backoff
            # is capped at 5 minutes, plus the step's own time), with two reasons in turn; then none
            series("octavia_operator_condition_status", "1+0x50", namespace="openstack", name="flaky", type="Ready"),
            series("octavia_operator_reconcile_errors_total", counter([6, 18, 30], 50), namespace="openstack",
                   name="flaky", step="cloud", reason="NeutronUnavailable"),
            series("octavia_operator_reconcile_errors_total", counter([12, 24], 50), namespace="openstack",
                   name="flaky", step="workloads", reason="Timeout"),
            # waiting (Unknown) for 50m and another condition False: neither is a failing reconcile
            series("octavia_operator_condition_status", "-1+0x50", namespace="openstack", name="waiting", type="Ready"),
            series("octavia_operator_condition_status", "0+0x50", namespace="openstack", name="waiting",
                   type="Database"),
            # Ready False for 10m only, then True
            series("octavia_operator_condition_status", "0+0x10 1+0x40", namespace="prod", name="lb", type="Ready"),
            # errors that stopped at 3m: never increasing for 15m
            series("octavia_operator_reconcile_errors_total", "0+1x3 3+0x47", namespace="prod", name="lb",
                   step="database", reason="AccessDenied"),
        ],
        "alert_rule_test": [
            at(14, "OctaviaReconcileFailing"),
            at(15, "OctaviaReconcileFailing", reconcile_failing("openstack", "octavia")),
            at(20, "OctaviaReconcileFailing", reconcile_failing("openstack", "octavia")),   # flaky: pending since 6m
            # octavia is Ready again at 21m; flaky has had errors within every 10 minutes since 6m
            at(21, "OctaviaReconcileFailing", reconcile_failing("openstack", "flaky")),
            at(35, "OctaviaReconcileFailing", reconcile_failing("openstack", "flaky")),
            at(45, "OctaviaReconcileFailing"),   # flaky's errors stopped at 30m
        ],
    }],
    "health-manager-ports": [{
        "name": "an unbound health-manager port: alert after 10m, resolved when it binds again",
        "interval": "1m",
        "input_series": [
            # unbound 6m..20m
            series("octavia_operator_health_manager_port_bound", "1+0x5 0+0x14 1+0x20", namespace="openstack",
                   name="octavia", node="node-1"),
            series("octavia_operator_health_manager_port_bound", "1+0x40", namespace="openstack", name="octavia",
                   node="node-2"),
            # unbound for 8m only
            series("octavia_operator_health_manager_port_bound", "0+0x7 1+0x30", namespace="openstack",
                   name="octavia", node="node-3"),
        ],
        "alert_rule_test": [
            at(9, "OctaviaHealthManagerPortUnbound"),
            at(15, "OctaviaHealthManagerPortUnbound"),
            at(16, "OctaviaHealthManagerPortUnbound", port_unbound("openstack", "octavia", "node-1")),
            at(19, "OctaviaHealthManagerPortUnbound", port_unbound("openstack", "octavia", "node-1")),
            at(21, "OctaviaHealthManagerPortUnbound"),
        ],
    }],
    "host-agent": [{
        "name": "a host agent not ready: alert after 10m, continued across a leader handover, resolved when ready",
        "interval": "1m",
        "input_series": [
            # not ready 0m..24m, reported by replica a until 12m, then by replica b (the new leader) from 8m
            series("octavia_operator_hostagent_ready", "0+0x12", namespace="openstack", name="octavia", node="node-a",
                   pod="octavia-operator-5d9c7-a"),
            series("octavia_operator_hostagent_ready", "_x8 0+0x16 1+0x20", namespace="openstack", name="octavia",
                   node="node-a", pod="octavia-operator-5d9c7-b"),
            # not ready for 5m, then ready
            series("octavia_operator_hostagent_ready", "0+0x4 1+0x40", namespace="openstack", name="octavia",
                   node="node-b"),
        ],
        "alert_rule_test": [
            at(9, "OctaviaHostAgentNotReady"),
            at(10, "OctaviaHostAgentNotReady", hostagent_not_ready("openstack", "octavia", "node-a")),
            at(20, "OctaviaHostAgentNotReady", hostagent_not_ready("openstack", "octavia", "node-a")),
            at(30, "OctaviaHostAgentNotReady"),
        ],
    }],
    "operator-down": [{
        "name": "every replica down: alert after 10m",
        "interval": "1m",
        "input_series": [
            # `up` is the target's own series: its namespace is the Service's, the release namespace
            series("up", "1+0x10 0+0x30", namespace=NAMESPACE),
            # the same job in another namespace, and another job here, do not count
            series("up", "1+0x40", namespace="elsewhere"),
            {"series": f'up{{job="kube-state-metrics", namespace="{NAMESPACE}"}}', "values": "1+0x40"},
        ],
        "alert_rule_test": [at(20, "OctaviaOperatorDown"), at(21, "OctaviaOperatorDown", operator_down())],
    }, {
        "name": "no target at all (the operator is not scraped): alert after 10m",
        "interval": "1m",
        "input_series": [{"series": 'up{job="kube-state-metrics", namespace="kube-system"}', "values": "1+0x30"}],
        "alert_rule_test": [at(9, "OctaviaOperatorDown"), at(10, "OctaviaOperatorDown", operator_down())],
    }, {
        "name": "one replica of two down, and a leader handover: no alert",
        "interval": "1m",
        "input_series": [
            series("up", "1+0x40", namespace=NAMESPACE, pod="octavia-operator-5d9c7-a"),
            series("up", "0+0x40", namespace=NAMESPACE, pod="octavia-operator-5d9c7-b"),
            series("up", "1+0x10", namespace=NAMESPACE, pod="octavia-operator-5d9c7-c"),
            series("up", "_x10 1+0x30", namespace=NAMESPACE, pod="octavia-operator-5d9c7-d"),
        ],
        "alert_rule_test": [at(m, "OctaviaOperatorDown") for m in (10, 20, 30, 40)],
    }],
}


# ----------------------------------------------------------------------------- promtool


def test_rules_are_valid(promtool, rules_dir):
    res = _promtool(promtool, "check", "rules", "rules.yaml", cwd=rules_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 6 rules found" in res.stdout
    groups = yaml.safe_load((rules_dir / "rules.yaml").read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert {r["alert"] for r in rules} == ALERTS
    for r in rules:
        assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
        assert {"summary", "description", "runbook"} <= set(r["annotations"]), r["alert"]


def test_every_alert_is_unit_tested():
    tested = {t["alertname"] for scenario in SCENARIOS.values() for case in scenario for t in case["alert_rule_test"]}
    assert tested == ALERTS
    fired = {t["alertname"] for scenario in SCENARIOS.values() for case in scenario
             for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert fired == ALERTS   # each one is seen firing, and (below) each one is seen not firing
    quiet = {t["alertname"] for scenario in SCENARIOS.values() for case in scenario
             for t in case["alert_rule_test"] if not t["exp_alerts"]}
    assert quiet == ALERTS


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_alert_rules(promtool, rules_dir, scenario):
    res = run_unit_tests(promtool, rules_dir, scenario, SCENARIOS[scenario])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_a_wrong_expectation_fails(promtool, rules_dir):
    """The harness can fail: the port alert expected a minute early, or with another node, is refused."""
    early = [{**SCENARIOS["health-manager-ports"][0],
              "alert_rule_test": [at(15, "OctaviaHealthManagerPortUnbound",
                                     port_unbound("openstack", "octavia", "node-1"))]}]
    res = run_unit_tests(promtool, rules_dir, "wrong-early", early)
    assert res.returncode != 0 and "OctaviaHealthManagerPortUnbound" in res.stdout + res.stderr
    other = [{**SCENARIOS["health-manager-ports"][0],
              "alert_rule_test": [at(16, "OctaviaHealthManagerPortUnbound",
                                     port_unbound("openstack", "octavia", "node-3"))]}]
    assert run_unit_tests(promtool, rules_dir, "wrong-node", other).returncode != 0


def test_thresholds_come_from_the_values(promtool, tmp_path):
    groups = rule_groups("--set", "metrics.prometheusRule.certificateExpiryDays=30",
                         "--set", "metrics.prometheusRule.reconcileFailingMinutes=20",
                         "--set", "metrics.prometheusRule.portUnboundMinutes=3",
                         "--set", "metrics.prometheusRule.hostAgentNotReadyMinutes=7")
    rules = {r["alert"]: r for g in groups for r in g["rules"]}
    assert "< 2592000" in rules["OctaviaCertificateExpiringSoon"]["expr"]
    assert rules["OctaviaReconcileFailing"]["for"] == "20m"
    assert rules["OctaviaHealthManagerPortUnbound"]["for"] == "3m"
    assert rules["OctaviaHostAgentNotReady"]["for"] == "7m"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    # a certificate 20 days out now warns (it did not with the default 14 days); ports warn after 3m
    case = {"name": "thresholds from the values", "interval": "1m",
            "input_series": [cert("prod", "lb", "server_ca", f"{20 * DAY}+0x20"),
                             series("octavia_operator_health_manager_port_bound", "0+0x20", namespace="prod",
                                    name="lb", node="node-1")],
            "alert_rule_test": [
                at(16, "OctaviaCertificateExpiringSoon", expiring("prod", "lb", "server_ca", "19d 23h 44m 0s", days=30)),
                at(2, "OctaviaHealthManagerPortUnbound"),
                at(3, "OctaviaHealthManagerPortUnbound",
                   {"exp_labels": port_unbound("prod", "lb", "node-1")["exp_labels"],
                    "exp_annotations": {**port_unbound("prod", "lb", "node-1")["exp_annotations"],
                                        "description": port_unbound("prod", "lb", "node-1")["exp_annotations"][
                                            "description"].replace("for 10 minutes", "for 3 minutes")}})]}
    res = run_unit_tests(promtool, tmp_path, "thresholds", [case])
    assert res.returncode == 0, res.stdout + res.stderr


# ----------------------------------------------------------------------------- the chart's objects


def _metrics_service(objs):
    services = [s for s in by_kind(objs, "Service") if s["metadata"]["name"].endswith("-metrics")]
    assert len(services) <= 1
    return services[0] if services else None


def test_default_render_has_the_metrics_service_only():
    objs = render()
    svc = _metrics_service(objs)
    assert svc is not None
    assert svc["metadata"]["name"] == JOB and svc["metadata"]["namespace"] == NAMESPACE
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"}]
    (dep,) = by_kind(objs, "Deployment")
    # the Service selects the operator's pods
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert not by_kind(objs, "ServiceMonitor") and not by_kind(objs, "PrometheusRule")


def test_metrics_disabled_renders_no_service():
    objs = render("--set", "metrics.enabled=false")
    assert _metrics_service(objs) is None
    for extra in (SERVICE_MONITOR, PROMETHEUS_RULE):
        res = helm("template", RELEASE, str(CHART), "--set", "metrics.enabled=false", *extra, check=False)
        assert res.returncode != 0 and "needs metrics.enabled=true" in res.stderr


def test_service_monitor():
    objs = render(*SERVICE_MONITOR, "--set", "metrics.serviceMonitor.labels.release=kube-prometheus-stack",
                  "--set", "metrics.serviceMonitor.interval=15s", "--set", "metrics.serviceMonitor.scrapeTimeout=5s")
    (sm,) = by_kind(objs, "ServiceMonitor")
    svc = _metrics_service(objs)
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["namespace"] == NAMESPACE
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    # it selects the metrics Service (and no other Service of the chart)
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert [s for s in by_kind(objs, "Service")
            if sm["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()] == [svc]
    (ep,) = sm["spec"]["endpoints"]
    assert ep == {"port": "metrics", "path": "/metrics", "scheme": "http", "honorLabels": True,
                  "interval": "15s", "scrapeTimeout": "5s"}
    assert "jobLabel" not in sm["spec"]   # so the job label is the Service's name, as the alerts expect
    assert not by_kind(objs, "PrometheusRule")


def test_prometheus_rule_object():
    objs = render(*PROMETHEUS_RULE, "--set", "metrics.prometheusRule.labels.release=kube-prometheus-stack")
    (rule,) = by_kind(objs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert not by_kind(objs, "ServiceMonitor")
    down = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}["OctaviaOperatorDown"]
    assert down["expr"] == f'absent(up{{job="{JOB}", namespace="{NAMESPACE}"}} == 1)'


def test_operator_down_follows_the_service_name():
    """A long release name: the metrics Service's name stays a valid one, and the alert looks for it."""
    release = "a-long-release-name-of-the-load-balancing-team-prod-1"   # Helm's limit: 53 characters
    assert len(release) == 53
    objs = render(*PROMETHEUS_RULE, *SERVICE_MONITOR, release=release, namespace="monitoring-test")
    svc = _metrics_service(objs)
    name = svc["metadata"]["name"]
    assert len(name) <= 63 and name.endswith("-metrics")
    (rule,) = by_kind(objs, "PrometheusRule")
    down = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}["OctaviaOperatorDown"]
    assert down["expr"] == f'absent(up{{job="{name}", namespace="monitoring-test"}} == 1)'
    assert "selects the ServiceMonitor" in down["annotations"]["runbook"]


def test_invalid_metrics_values_are_refused():
    res = helm("template", RELEASE, str(CHART), *PROMETHEUS_RULE, "--set", "metrics.prometheusRule.portUnboundMinutes=0",
               check=False)
    assert res.returncode != 0 and "portUnboundMinutes must be a positive integer" in res.stderr
    res = helm("template", RELEASE, str(CHART), "--set", "metrics.port=8080", check=False)
    assert res.returncode != 0 and "metrics.port must differ from liveness.port" in res.stderr
    res = helm("template", RELEASE, str(CHART), "--set", "metrics.port=8080", "--set", "liveness.enabled=false",
               check=False)
    assert res.returncode == 0, res.stderr


def test_helm_lint_strict_with_everything_enabled():
    res = helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, *PROMETHEUS_RULE, *SERVICE_MONITOR,
               check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_deployment_serves_the_metrics_port():
    """The operator container declares the port the Service targets (`metrics`, metrics.port) and is told
    to serve it (--metrics-port); without metrics it is told not to (--metrics-port=0: its default is on)."""
    for args, port in (([], 8081), (["--set", "metrics.port=9102"], 9102)):
        (dep,) = by_kind(render(*args), "Deployment")
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p for p in c.get("ports", [])}
        assert "metrics" in ports, "deployment.yaml declares no container port named metrics"
        assert ports["metrics"]["containerPort"] == port and ports["metrics"].get("protocol", "TCP") == "TCP"
        assert f"--metrics-port={port}" in c["args"]
        assert len({p["containerPort"] for p in ports.values()}) == len(ports)
    (dep,) = by_kind(render("--set", "metrics.enabled=false"), "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert "metrics" not in {p["name"] for p in c.get("ports", [])}
    assert "--metrics-port=0" in c["args"]
