"""spec.policy: what the five load-balancer_* roles mean to the real Octavia (2025.1+).

The policy file the operator renders is loaded by Octavia's own policy engine (octavia.common.policy in
the real Octavia venv, every rule Octavia registers, oslo.policy's defaults of that release) and asked
about the personas of Octavia's policy guide; the end-to-end test does the same through the real API
with real Keystone tokens. Offline: the file reaches the API's pods and rolls them when it changes.
"""
from __future__ import annotations

import json

import pytest
import yaml

from octavia_operator.builders import config as cfg
from octavia_operator.builders import kube as kb
from octavia_operator.names import POLICY_FILE
from octavia_operator.spec import parse_spec
from octavia_real.plugin import HERE

PROBE = HERE / "policy_probe.py"
BASE = {"cloud": {"credentialsSecret": {"name": "x"}}}
PERSONAS = {
    "observer": {"roles": ["load-balancer_observer"], "project_id": "p1"},
    "global_observer": {"roles": ["load-balancer_global_observer"], "project_id": "p1"},
    "lb_member": {"roles": ["load-balancer_member"], "project_id": "p1"},
    "quota_admin": {"roles": ["load-balancer_quota_admin"], "project_id": "p1"},
    "lb_admin": {"roles": ["load-balancer_admin"], "project_id": "p1"},
    "member": {"roles": ["member", "reader"], "project_id": "p1"},
    "reader": {"roles": ["reader"], "project_id": "p1"},
}
ACTIONS = ("list", "create", "create-other-project", "list-global", "quota-update")


def _allowed(octavia_run, tmp_path, text: str) -> dict[str, set[str]]:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    personas = tmp_path / "personas.json"
    personas.write_text(json.dumps(PERSONAS))
    res = octavia_run(["python", str(PROBE), str(path), str(personas)])
    assert res.returncode == 0, res.stderr[-3000:]
    return {p: {a for a, ok in acts.items() if ok} for p, acts in json.loads(res.stdout).items()}


def test_advanced_rbac_gives_the_load_balancer_roles_their_documented_meaning(octavia_run, tmp_path):
    allowed = _allowed(octavia_run, tmp_path, cfg.policy_file(parse_spec(BASE)))
    assert allowed == {
        "observer": {"list"},                                   # reads its project, writes nothing
        "global_observer": {"list", "list-global"},             # reads everything
        "lb_member": {"list", "create"},                        # reads and writes its project only
        "quota_admin": {"quota-update"},                        # quotas only
        "lb_admin": set(ACTIONS),                               # everything
        "member": set(),                                        # Keystone's roles grant nothing here
        "reader": set(),
    }


def test_keystone_default_roles_are_octavias_own_defaults(octavia_run, tmp_path):
    allowed = _allowed(octavia_run, tmp_path, cfg.policy_file(parse_spec({**BASE, "policy": {
        "rules": "keystone-default-roles"}})))
    assert allowed["member"] == {"list", "create"} and allowed["reader"] == {"list"}
    # what issue 11 measured with the real API: the load-balancer_* roles alone grant nothing
    assert allowed["lb_member"] == set() and allowed["observer"] == set()


def test_the_policy_reaches_the_pods_and_rolls_them():
    spec = parse_spec(BASE)
    inp = kb.Inputs("octavia", "ns", "uid", spec, policy=cfg.policy_file(spec))
    assert f"policy_file = {POLICY_FILE}" in kb.octavia_conf(inp)
    cm = kb.config_map(inp)
    assert yaml.safe_load(cm["data"]["policy.yaml"])["load-balancer:member_and_owner"].startswith(
        "role:load-balancer_member")
    for dep in (kb.api_deployment(inp, _images(spec), "/bin"),):
        [c] = dep["spec"]["template"]["spec"]["containers"]
        assert {"name": "config", "mountPath": POLICY_FILE, "subPath": "policy.yaml", "readOnly": True} \
            in c["volumeMounts"]
    custom = kb.Inputs("octavia", "ns", "uid", spec, policy='"load-balancer:admin": "role:admin"\n')
    assert kb.config_hash(custom) != kb.config_hash(inp)


def _images(spec):
    from octavia_operator.releases import images
    return images(spec.release, spec.images)


@pytest.mark.parametrize("text,reason", [
    (None, "PolicyConfigMapNotFound"),
    ({"other": "x"}, "PolicyConfigMapKeyMissing"),
    ({"policy.yaml": "- a list\n"}, "InvalidPolicy"),
    ({"policy.yaml": "a: [unclosed\n"}, "InvalidPolicy"),
])
def test_a_bad_custom_policy_is_reported(text, reason):
    from octavia_operator.errors import StepError
    from octavia_operator.steps import workloads
    from octavia_operator.steps.runner import Context

    class Kube:
        def get(self, api_version, kind, name, namespace=None):
            return None if text is None else {"data": text}
    spec = {**BASE, "policy": {"rules": "custom", "configMap": {"name": "my-policy"}}}
    ctx = Context(name="octavia", namespace="ns", uid="u", generation=1, raw_spec=spec, status={}, kube=Kube())
    ctx.spec = parse_spec(spec)
    with pytest.raises(StepError) as err:
        workloads._policy(ctx)
    assert err.value.reason == reason and "my-policy" in err.value.message


def test_a_custom_policy_is_used_as_given():
    from octavia_operator.steps import workloads
    from octavia_operator.steps.runner import Context
    text = '"load-balancer:read": "role:reader"\n'

    class Kube:
        def get(self, api_version, kind, name, namespace=None):
            return {"data": {"rules.yaml": text}} if name == "my-policy" else None
    spec = {**BASE, "policy": {"rules": "custom", "configMap": {"name": "my-policy", "key": "rules.yaml"}}}
    ctx = Context(name="octavia", namespace="ns", uid="u", generation=1, raw_spec=spec, status={}, kube=Kube())
    ctx.spec = parse_spec(spec)
    assert workloads._policy(ctx) == text
