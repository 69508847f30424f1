"""The Argo CD integration in deploy/argocd: the health check of OctaviaDeployment (run with Lua 5.1
through lupa, on objects built with the operator's own condition code), the argocd-cm patch that
installs it, and the example Applications.

The Lua tests need ``lupa`` (PyPI); they skip without it, except under CI=true where they fail.
"""
from __future__ import annotations

import ast
import copy
import datetime as dt
import os
import pathlib
import sys

import pytest
import yaml

import argocd_health as ah

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "operator" / "octavia_operator"

try:
    from octavia_operator import conditions as c
except ImportError:  # not installed (a scratch venv): the module is pure, import it from the tree
    sys.path.insert(0, str(ROOT / "operator"))
    from octavia_operator import conditions as c


@pytest.fixture
def lua():
    try:
        import lupa  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and lupa is not installed: the Argo CD health check cannot run")
        pytest.skip("lupa is not installed (pip install lupa): the Argo CD health check cannot run")


# ---------------------------------------------------------------------------------------------
# realistic OctaviaDeployment objects
# ---------------------------------------------------------------------------------------------

# (step, condition, depends) exactly as operator/octavia_operator/steps/__init__.py declares them
# (test_steps_are_the_operators checks it)
STEPS = [
    ("spec", "SpecValid", ()),
    ("cloud", "CloudReachable", ("spec",)),
    ("expose", "APIExposed", ("spec",)),
    ("project", "ServiceProjectReady", ("cloud",)),
    ("identity", "IdentityReady", ("project",)),
    ("image", "AmphoraImageReady", ("project",)),
    ("flavor", "AmphoraFlavorReady", ("project",)),
    ("keypair", "SSHKeypairReady", ("identity",)),
    ("network", "ManagementNetworkReady", ("project",)),
    ("ports", "HealthManagerPortsReady", ("network",)),
    ("quotas", "QuotasReady", ("project",)),
    ("certificates", "CertificatesReady", ("spec",)),
    ("database", "DatabaseReady", ("spec",)),
    ("messaging", "MessagingReady", ("spec",)),
    ("jobboard", "JobboardReady", ("spec",)),
    ("config", "ConfigReady", ("identity", "image", "flavor", "keypair", "network", "certificates")),
    ("dbsync", "DatabaseSynced", ("config", "database", "jobboard")),
    ("hostagent", "HostAgentReady", ("config",)),
    ("services", "ServicesReady", ("dbsync", "hostagent", "messaging")),
    ("rollout", "AmphoraeUpToDate", ("services", "image", "certificates")),
]
CONDITION_TYPES = [ctype for _, ctype, _ in STEPS] + ["Ready"]
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


def octd(failing: dict[str, tuple[str, str, str]] | None = None, *, generation: int = 1,
         observed: int | None = 1) -> dict:
    """An OctaviaDeployment as the API server returns it after a reconcile of generation
    ``observed``: ``failing`` maps condition types to (status, reason, message); steps that
    depend on a condition that is not True are Unknown/Waiting, as run_steps reports them; Ready
    and the bookkeeping fields come from the operator's own conditions module."""
    failing = failing or {}
    done: dict[str, str] = {}
    conds: list[c.Cond] = []
    for step, ctype, depends in STEPS:
        blocked = [d for d in depends if done.get(d) != c.TRUE]
        if blocked:
            cond = c.Cond(ctype, c.UNKNOWN, "Waiting", f"waiting for {', '.join(blocked)}")
        elif ctype in failing:
            cond = c.Cond(ctype, *failing[ctype])
        else:
            cond = c.Cond(ctype, c.TRUE, "Ready", f"{ctype}: ready")
        done[step] = cond.status
        conds.append(cond)
    conds.append(c.ready_from(conds))
    obj = {
        "apiVersion": "octavia-operator.dev/v1alpha1",
        "kind": "OctaviaDeployment",
        "metadata": {
            "name": "octavia", "namespace": "openstack", "uid": "0b4e1c9e-3f1d-4d8a-9d61-2b9f4c1e7a10",
            "generation": generation, "resourceVersion": "48213", "creationTimestamp": "2026-03-01T11:50:00Z",
            "finalizers": ["kopf.zalando.org/KopfFinalizerMarker"],
            "annotations": {"kopf.zalando.org/last-handled-configuration": '{"spec":{"cloud":{}}}'},
        },
        "spec": {"cloud": {"credentialsSecret": {"name": "openstack-admin"}}, "deletionPolicy": "Retain"},
        "status": {
            "conditions": c.merge(None, conds, observed, NOW),
            "openstack": {"serviceProjectId": "5d1f0c2b7e8a4c3f9b6a1d2e3f4a5b6c"},
            "apiEndpoint": "http://octavia-api.openstack.svc:9876",
        },
    }
    if observed is not None:
        obj["status"]["observedGeneration"] = observed
    return obj


def ready(obj: dict) -> dict:
    return c.get(obj["status"]["conditions"], "Ready")


# ---------------------------------------------------------------------------------------------
# the health check
# ---------------------------------------------------------------------------------------------

def test_builder_makes_what_the_operator_writes():
    obj = octd({"DatabaseSynced": (c.FALSE, "Running", "octavia-db-sync-1a2b is running")})
    assert [x["type"] for x in obj["status"]["conditions"]] == CONDITION_TYPES
    assert ready(obj)["status"] == "False" and ready(obj)["reason"] == "Running"
    assert c.get(obj["status"]["conditions"], "ServicesReady")["status"] == "Unknown"
    assert all(set(x) == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}
               for x in obj["status"]["conditions"])


def test_no_status_is_progressing(lua):
    obj = octd()
    del obj["status"]
    assert ah.health(obj) == {"status": "Progressing", "message": "waiting for the operator to report a status"}


def test_status_without_ready_is_progressing(lua):
    obj = octd()
    obj["status"]["conditions"] = [x for x in obj["status"]["conditions"] if x["type"] != "Ready"]
    assert ah.health(obj)["status"] == "Progressing"
    obj["status"] = {}          # kopf may write its own status keys before the first reconcile
    assert ah.health(obj)["status"] == "Progressing"


def test_ready_true_is_healthy(lua):
    obj = octd()
    assert ah.health(obj) == {"status": "Healthy", "message": ready(obj)["message"]}
    assert ready(obj)["reason"] == "AllReady"


def test_ready_true_with_a_partial_host_agent_is_healthy(lua):
    obj = octd({"HostAgentReady": (c.TRUE, "Partial", "o-hm0 ready on node-1; not yet on node-2")})
    assert ah.health(obj)["status"] == "Healthy"


def test_stale_observed_generation_is_progressing(lua):
    obj = octd(generation=2, observed=2)
    assert ah.health(obj)["status"] == "Healthy"
    obj["metadata"]["generation"] = 3          # the spec changed; the operator has not run yet
    got = ah.health(obj)
    assert got["status"] == "Progressing"
    assert "generation 3" in got["message"] and "observed generation 2" in got["message"]


def test_stale_degraded_status_is_progressing(lua):
    # the user fixed the spec: the old InvalidSpec must not keep the application Degraded
    obj = octd({"SpecValid": (c.FALSE, "InvalidSpec", "managementNetwork.cidr: not a network")},
               generation=5, observed=4)
    assert ah.health(obj)["status"] == "Progressing"
    obj["metadata"]["generation"] = 4
    assert ah.health(obj)["status"] == "Degraded"


def test_stale_ready_condition_alone_is_progressing(lua):
    obj = octd(generation=3, observed=None)     # no status.observedGeneration: Ready's counts
    ready(obj)["observedGeneration"] = 2
    assert ah.health(obj)["status"] == "Progressing"
    ready(obj)["observedGeneration"] = 3
    assert ah.health(obj)["status"] == "Healthy"


def test_ready_unknown_is_progressing(lua):
    obj = octd()
    ready(obj).update(status="Unknown", reason="Reconciling", message="")
    got = ah.health(obj)
    assert got["status"] == "Progressing" and "Ready is Unknown" in got["message"]


CONVERGING = [
    ("HostAgentReady", "Waiting", "waiting for the host agent to plumb o-hm0 on node-1, node-2"),
    ("ServicesReady", "RollingOut", "waiting for octavia-api 1/2, octavia-worker 0/1"),
    ("DatabaseReady", "Starting", "waiting for the embedded MariaDB StatefulSet octavia-mariadb to be ready"),
    ("DatabaseSynced", "Running", "octavia-db-sync-5f3a2c is running octavia-db-manage upgrade head"),
    ("CloudReachable", "CloudUnreachable", "probing the cloud: cannot reach the cloud: ConnectFailure"),
]


@pytest.mark.parametrize("ctype,reason,message", CONVERGING, ids=[x[1] for x in CONVERGING])
def test_ready_false_while_converging_is_progressing(lua, ctype, reason, message):
    obj = octd({ctype: (c.FALSE, reason, message)})
    assert ready(obj)["reason"] == reason
    assert ah.health(obj) == {"status": "Progressing", "message": ready(obj)["message"]}
    assert message in ah.health(obj)["message"]


NEEDS_USER = [
    ("SpecValid", "InvalidSpec",
     "managementNetwork.allocationPool: the allocation pool must lie inside managementNetwork.cidr"),
    ("CloudReachable", "CredentialsSecretNotFound", "Secret openstack/openstack-admin does not exist"),
    ("DatabaseSynced", "DatabaseSyncFailed",
     "octavia-db-sync-5f3a2c failed (BackoffLimitExceeded); log tail: sqlalchemy.exc.OperationalError"),
    ("ManagementNetworkReady", "Ambiguous",
     "more than one network named 'lb-mgmt-net' matches: lb-mgmt-net (1), lb-mgmt-net (2); name the one "
     "to use by ID in the spec, or remove the others"),
    ("HealthManagerPortsReady", "PortBindingFailed", "Neutron could not bind the health-manager port of node-1"),
]


@pytest.mark.parametrize("ctype,reason,message", NEEDS_USER, ids=[x[1] for x in NEEDS_USER])
def test_ready_false_needing_the_user_is_degraded(lua, ctype, reason, message):
    obj = octd({ctype: (c.FALSE, reason, message)})
    assert ready(obj)["reason"] == reason
    got = ah.health(obj)
    assert got == {"status": "Degraded", "message": ready(obj)["message"]}
    assert got["message"] == f"{ctype} is False: {reason} ({message})"


def test_unknown_reason_with_status_false_is_degraded(lua):
    assert "SomethingNew" not in ah.classification()
    obj = octd({"ConfigReady": (c.FALSE, "SomethingNew", "a reason this health check does not know")})
    assert ah.health(obj)["status"] == "Degraded"


def test_ready_message_falls_back_to_the_reason(lua):
    obj = octd({"SpecValid": (c.FALSE, "InvalidSpec", "x")})
    ready(obj)["message"] = ""
    assert ah.health(obj) == {"status": "Degraded", "message": "InvalidSpec"}


def test_deleting_blocked_is_degraded_else_pending(lua):
    obj = octd()
    obj["metadata"]["deletionTimestamp"] = "2026-03-01T13:00:00Z"
    assert ah.health(obj) == {"status": "Progressing", "message": "Pending deletion"}
    # what the delete handler writes when load balancers still use the management network
    obj["status"]["conditions"] = c.merge(obj["status"]["conditions"], [c.Cond(
        "Deleting", c.FALSE, "DeletionBlocked", "the management network is still used by load balancers or "
        "amphorae (lb-1): delete them first")], 1, NOW)
    got = ah.health(obj)
    assert got["status"] == "Degraded" and "delete them first" in got["message"]
    obj["status"]["conditions"][0].update(reason="CloudUnreachable", message="cannot reach the cloud")
    assert ah.health(obj)["status"] == "Progressing"


def test_numbers_as_strings_and_missing_metadata_do_not_break_it(lua):
    obj = octd(generation=2, observed=1)
    obj["metadata"]["generation"] = "2"
    obj["status"]["observedGeneration"] = "1"
    assert ah.health(obj)["status"] == "Progressing"
    assert ah.health({"status": {"conditions": "garbage"}})["status"] == "Progressing"


# ---------------------------------------------------------------------------------------------
# the classification covers every reason the operator reports
# ---------------------------------------------------------------------------------------------

def _str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _name(node: ast.AST) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def operator_reasons() -> set[str]:
    """Every reason string a condition can carry with a status other than True: the first argument
    of StepError/TransientError (and of super().__init__ in their subclasses), the reason of
    Result(...) and Cond(...) whose status is not TRUE."""
    reasons: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        error_classes = {node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                         and any(_name(b) in ("StepError", "TransientError") for b in node.bases)}
        for cls in error_classes:
            for node in ast.walk(cls):
                if isinstance(node, ast.Call) and _name(node.func) == "__init__" and node.args \
                        and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Call) \
                        and _name(node.func.value.func) == "super" and _str(node.args[0]):
                    reasons.add(_str(node.args[0]))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            fn = _name(node.func)
            if fn in ("StepError", "TransientError") and node.args and _str(node.args[0]):
                reasons.add(_str(node.args[0]))
            elif fn == "Result" and len(node.args) >= 2 and _name(node.args[0]) != "TRUE" and _str(node.args[1]):
                reasons.add(_str(node.args[1]))
            elif fn == "Cond" and len(node.args) >= 3 and _name(node.args[1]) not in ("TRUE", "READY") \
                    and _str(node.args[2]):
                reasons.add(_str(node.args[2]))
    return reasons


def test_the_reason_scan_finds_the_operators_reasons():
    found = operator_reasons()
    # from every kind of source the scan reads: StepError, TransientError, subclasses, Result
    assert {"InvalidSpec", "Waiting", "DatabaseSyncFailed", "CredentialsSecretNotFound", "CloudUnreachable",
            "Ambiguous", "MessagingUnreachable", "DatabaseAuthFailed", "RollingOut"} <= found
    assert "AllReady" not in found and "Connected" not in found   # True-only reasons are not needed


def test_every_operator_reason_is_classified():
    missing = sorted(operator_reasons() - set(ah.classification()))
    assert not missing, (f"reasons the operator reports but deploy/argocd/health.lua does not classify "
                         f"(they count as Degraded): {missing}; add them to REASONS")


def test_progressing_reasons_are_not_failures():
    table = ah.classification()
    words = ("Failed", "Invalid", "NotFound", "Forbidden", "Conflict", "Exhausted", "Mismatch", "Missing",
             "Blocked", "Ambiguous", "Denied", "Exceeded")
    wrong = sorted(r for r, s in table.items() if s == "Progressing" and any(w in r for w in words))
    assert not wrong
    assert {r for r, s in table.items() if s == "Progressing"} >= {"Waiting", "Starting", "Running", "RollingOut"}
    for r in ("InvalidSpec", "CredentialsSecretNotFound", "DatabaseSyncFailed", "Ambiguous", "InternalError"):
        assert table[r] == "Degraded"


def test_the_lua_behaves_as_its_table_says(lua):
    table = ah.classification()
    assert len(table) > 40
    for reason, expected in table.items():
        obj = octd({"ConfigReady": (c.FALSE, reason, "m")})
        assert ah.health(obj)["status"] == expected, reason


def test_steps_are_the_operators():
    tree = ast.parse((PACKAGE / "steps" / "__init__.py").read_text())
    declared = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _name(node.func) == "Step":
            depends = next((kw.value for kw in node.keywords if kw.arg == "depends"), None)
            declared.append((_str(node.args[0]), _str(node.args[1]),
                             tuple(_str(e) for e in depends.elts) if depends is not None else ()))
    assert declared == STEPS


# ---------------------------------------------------------------------------------------------
# the helper itself: a faithful Argo CD, and assertions that can fail
# ---------------------------------------------------------------------------------------------

def test_helper_runs_lua_51_with_argo_cds_libraries_only(lua):
    assert ah.health({}, script='return {status = "Healthy", message = _VERSION}')["message"] == "Lua 5.1"
    for forbidden in ('string.format("%d", 1)', 'math.floor(1.5)', '("abc"):upper()', 'io.write("x")'):
        with pytest.raises(Exception):
            ah.health({}, script=f'local x = {forbidden}\nreturn {{status = "Healthy", message = ""}}')
    assert ah.health({}, script='return {status = "Healthy", message = table.concat({"a", "b"}, ",")}'
                     )["message"] == "a,b"


def test_helper_converts_like_argo_cd(lua):
    script = ('local c = obj.status.conditions\n'
              'return {status = "Healthy", message = c[1].type .. "," .. tostring(c[0]) .. "," .. #c .. ","'
              ' .. tostring(obj.status.gone) .. "," .. tostring(obj.metadata.generation + 1) .. ","'
              ' .. tostring(obj.spec.flag)}')
    obj = {"metadata": {"generation": 4}, "spec": {"flag": False},
           "status": {"gone": None, "conditions": [{"type": "A"}, {"type": "B"}]}}
    assert ah.health(obj, script=script)["message"] == "A,nil,2,nil,5,false"


def test_helper_rejects_what_argo_cd_rejects(lua):
    with pytest.raises(ValueError):
        ah.health({}, script='return {status = "Fine", message = ""}')
    with pytest.raises(ValueError):
        ah.health({}, script='return "Healthy"')


def test_assert_health_can_fail(lua):
    obj = octd({"SpecValid": (c.FALSE, "InvalidSpec", "bad cidr")})
    assert ah.assert_health(obj, "Degraded", "bad cidr")["status"] == "Degraded"
    with pytest.raises(AssertionError, match="expected Healthy"):
        ah.assert_health(obj, "Healthy")
    with pytest.raises(AssertionError, match="does not contain"):
        ah.assert_health(obj, "Degraded", "something else")
    with pytest.raises(ValueError):
        ah.assert_health(obj, "Ready")


def test_assert_health_takes_a_live_object_copy(lua):
    obj = octd()
    live = copy.deepcopy(obj)
    live["metadata"]["managedFields"] = [{"manager": "kopf", "operation": "Update", "time": NOW}]  # a datetime
    assert ah.assert_health(live, "Healthy") == ah.health(obj)


# ---------------------------------------------------------------------------------------------
# the argocd-cm patch and the Applications
# ---------------------------------------------------------------------------------------------

def test_cm_patch_carries_exactly_health_lua():
    lua_text = ah.HEALTH_LUA.read_text()
    cm = yaml.safe_load(ah.CM_PATCH.read_text())
    assert cm["apiVersion"] == "v1" and cm["kind"] == "ConfigMap"
    assert cm["metadata"]["name"] == "argocd-cm" and cm["metadata"]["namespace"] == "argocd"
    assert list(cm["data"]) == [ah.CM_KEY]
    assert cm["data"][ah.CM_KEY] == lua_text
    assert ah.CM_PATCH.read_text() == ah.render_cm_patch(), \
        "regenerate it: python tests/argocd_health.py --write-cm-patch"


def test_cm_patch_check_notices_a_difference():
    lua_text = ah.HEALTH_LUA.read_text()
    edited = lua_text.replace("local REASONS = {", "local REASONS = {\n  Edited = \"Degraded\",")
    assert edited != lua_text
    assert yaml.safe_load(ah.render_cm_patch(edited))["data"][ah.CM_KEY] == edited != lua_text


def _applications() -> list[dict]:
    return [d for d in yaml.safe_load_all(ah.APPLICATION.read_text()) if d is not None]


def test_application_installs_the_chart():
    docs = _applications()
    assert len(docs) == 2
    assert all(d["apiVersion"] == "argoproj.io/v1alpha1" and d["kind"] == "Application" for d in docs)
    op = docs[0]
    src = op["spec"]["source"]
    assert src["path"] == "deploy/charts/octavia-operator"
    assert (ROOT / src["path"] / "Chart.yaml").is_file()
    assert src["targetRevision"] == "v0.1.0"
    assert yaml.safe_load((ROOT / src["path"] / "Chart.yaml").read_text())["version"] == "0.1.0"
    assert src["repoURL"].startswith("https://") and src["repoURL"].endswith(".git")
    assert src["helm"]["releaseName"] == "octavia-operator"
    opts = op["spec"]["syncPolicy"]["syncOptions"]
    assert "ServerSideApply=true" in opts and "CreateNamespace=true" in opts
    assert op["spec"]["destination"]["namespace"] == "octavia-operator"
    assert "resources-finalizer.argocd.argoproj.io" not in op["metadata"].get("finalizers", [])


def test_application_for_the_resource_comes_after_the_operator():
    op, inst = _applications()
    wave = lambda d: int(d["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])  # noqa: E731
    assert wave(op) < wave(inst)
    opts = inst["spec"]["syncPolicy"]["syncOptions"]
    assert "SkipDryRunOnMissingResource=true" in opts
    assert "helm" not in inst["spec"]["source"] and inst["spec"]["source"]["path"]
    assert inst["spec"]["syncPolicy"]["retry"]["limit"] >= 1
    assert op["metadata"]["name"] != inst["metadata"]["name"]
