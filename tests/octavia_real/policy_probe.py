"""Run inside the real Octavia venv: Octavia's own policy engine (octavia.common.policy, with every
rule Octavia registers) loads a policy.yaml and answers, for each given set of credentials, which of
a few API actions it allows. Prints JSON {persona: {action: true|false}}.

usage: python policy_probe.py POLICY_FILE PERSONAS_JSON  ({name: {"roles": [...], "project_id": ...}})
"""
import json
import sys

from oslo_config import cfg

from octavia.common import policy

ACTIONS = {
    "list": ("os_load-balancer_api:loadbalancer:get_all", "p1"),
    "create": ("os_load-balancer_api:loadbalancer:post", "p1"),
    "create-other-project": ("os_load-balancer_api:loadbalancer:post", "p2"),
    "list-global": ("os_load-balancer_api:loadbalancer:get_all-global", "p1"),
    "quota-update": ("os_load-balancer_api:quota:put", "p1"),
}


def main() -> None:
    from oslo_context import context as oslo_context

    cfg.CONF([], project="octavia", default_config_files=[])
    enforcer = policy.Policy(policy_file=sys.argv[1])   # [oslo_policy] options at this release's defaults
    personas = json.load(open(sys.argv[2]))
    out = {}
    for name, creds in personas.items():
        ctx = oslo_context.RequestContext(roles=creds["roles"], project_id=creds["project_id"], user_id=name)
        out[name] = {label: bool(enforcer.authorize(action, {"project_id": project}, ctx, do_raise=False))
                     for label, (action, project) in ACTIONS.items()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
