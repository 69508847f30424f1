"""Run the Argo CD health check of OctaviaDeployment (``deploy/argocd/health.lua``) from Python.

``health(obj)`` returns ``{"status": ..., "message": ...}`` as Argo CD would compute it for the
object ``obj`` (a dict: the object as the API server returns it). ``assert_health(obj, expected)``
is for tests that read live objects from a real API server.

Faithful to Argo CD where it matters:

- Lua 5.1 (``lupa.lua51``): Argo CD runs health checks with gopher-lua, a Lua 5.1;
- only the libraries Argo CD opens (without ``useOpenLibs``): base, table, package and a safe
  ``os``; no ``string``, ``math``, ``io``, ``debug``, ``coroutine``, and strings have no methods,
  so a script that would fail in Argo CD fails here too;
- the object is converted like Argo CD's ``decodeValue``: JSON objects become tables with string
  keys, arrays become 1-based tables, numbers are Lua numbers, ``null`` and missing keys are nil;
- the returned status must be one of Argo CD's health codes.

Needs the ``lupa`` package (PyPI, 2.x).
"""
from __future__ import annotations

import json
import pathlib
import re
from typing import Any, Mapping

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEALTH_LUA = ROOT / "deploy" / "argocd" / "health.lua"
CM_PATCH = ROOT / "deploy" / "argocd" / "argocd-cm-patch.yaml"
APPLICATION = ROOT / "deploy" / "argocd" / "application.yaml"
CM_KEY = "resource.customizations.health.octavia-operator.dev_OctaviaDeployment"

# Argo CD's health codes (gitops-engine pkg/health): anything else is an error there.
HEALTH_CODES = ("Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown")

# Argo CD opens: package, base, table and its "safe" os (time, date, clock, difftime...).
_SANDBOX = """
local safe_os = {time = os.time, date = os.date, clock = os.clock, difftime = os.difftime}
string, math, io, debug, coroutine = nil, nil, nil, nil, nil
os = safe_os
local mt = getmetatable("")
if mt ~= nil then mt.__index = nil end
"""


def _runtime() -> Any:
    try:
        from lupa import lua51
        return lua51.LuaRuntime(register_eval=False, register_builtins=False)
    except ImportError:  # a lupa build without the bundled Lua 5.1: the default Lua will do
        import lupa
        return lupa.LuaRuntime(register_eval=False, register_builtins=False)


def _to_lua(lua: Any, value: Any) -> Any:
    if isinstance(value, Mapping):
        table = lua.table()
        for key, item in value.items():
            if item is not None:          # null and missing are both nil
                table[str(key)] = _to_lua(lua, item)
        return table
    if isinstance(value, (list, tuple)):
        table = lua.table()
        i = 0
        for item in value:
            if item is None:              # gopher-lua's LTable.Append ignores nil
                continue
            i += 1
            table[i] = _to_lua(lua, item)
        return table
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)               # lua.LNumber is a float64
    raise TypeError(f"cannot convert {type(value).__name__} to Lua (not a JSON value)")


def health(obj: Mapping[str, Any], script: str | None = None) -> dict[str, str]:
    """The Argo CD health of ``obj``: ``{"status": ..., "message": ...}``."""
    # what Argo CD sees is the object's JSON (timestamps as strings, no Python types)
    plain = json.loads(json.dumps(obj, default=str))
    lua = _runtime()
    lua.execute(_SANDBOX)
    lua.globals().obj = _to_lua(lua, plain)
    hs = lua.execute(script if script is not None else HEALTH_LUA.read_text())
    if hs is None or not hasattr(hs, "keys"):
        raise ValueError(f"the health script returned {hs!r}, not a table")
    status, message = hs["status"], hs["message"]
    if status not in HEALTH_CODES:
        raise ValueError(f"the health script returned status {status!r}, not one of {HEALTH_CODES}")
    return {"status": status, "message": "" if message is None else str(message)}


def _summary(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    lines = [f"{meta.get('namespace', '')}/{meta.get('name', '')}: generation {meta.get('generation')}, "
             f"status.observedGeneration {status.get('observedGeneration')}, "
             f"deletionTimestamp {meta.get('deletionTimestamp')}"]
    for c in status.get("conditions") or []:
        lines.append(f"  {c.get('type')}={c.get('status')} {c.get('reason')}: {c.get('message')}")
    return "\n".join(lines)


def assert_health(obj: Mapping[str, Any], expected_status: str, message_contains: str | None = None
                  ) -> dict[str, str]:
    """Assert that Argo CD would report ``obj`` as ``expected_status`` (and, if given, that the
    message contains ``message_contains``); returns the health. For live objects, e.g. the dict
    from ``CustomObjectsApi.get_namespaced_custom_object`` or ``kubectl get -o json``."""
    if expected_status not in HEALTH_CODES:
        raise ValueError(f"{expected_status!r} is not an Argo CD health status {HEALTH_CODES}")
    got = health(obj)
    assert got["status"] == expected_status, (
        f"Argo CD health is {got['status']} ({got['message']}), expected {expected_status}\n{_summary(obj)}")
    if message_contains is not None:
        assert message_contains in got["message"], (
            f"Argo CD health message {got['message']!r} does not contain {message_contains!r}\n{_summary(obj)}")
    return got


def classification(script: str | None = None) -> dict[str, str]:
    """The REASONS table of the script: reason -> "Progressing" | "Degraded"."""
    text = script if script is not None else HEALTH_LUA.read_text()
    m = re.search(r"^local REASONS = \{\n(.*?)^\}", text, re.S | re.M)
    if not m:
        raise ValueError("no `local REASONS = {...}` table in the health script")
    table = {}
    for line in m.group(1).splitlines():
        line = line.split("--", 1)[0].strip()
        if not line:
            continue
        entry = re.fullmatch(r'([A-Za-z][A-Za-z0-9]*) = "(Progressing|Degraded)",', line)
        if not entry:
            raise ValueError(f"unexpected line in REASONS: {line!r}")
        if entry.group(1) in table:
            raise ValueError(f"{entry.group(1)} is listed twice in REASONS")
        table[entry.group(1)] = entry.group(2)
    return table


_CM_PATCH_HEAD = """\
# Patch of Argo CD's argocd-cm ConfigMap: installs the health check of OctaviaDeployment.
# The script is deploy/argocd/health.lua, verbatim (tests/test_argocd_health.py checks it).
#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file deploy/argocd/argocd-cm-patch.yaml
# or list this file under `patches:` of the kustomization that installs Argo CD.
# After editing health.lua, regenerate this file (deploy/argocd/README.md).
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
  resource.customizations.health.octavia-operator.dev_OctaviaDeployment: |
"""


def render_cm_patch(script: str | None = None) -> str:
    """The text of deploy/argocd/argocd-cm-patch.yaml for ``script`` (default: health.lua):
    ``python tests/argocd_health.py --write-cm-patch`` regenerates the file after an edit."""
    text = script if script is not None else HEALTH_LUA.read_text()
    if not text.endswith("\n") or text.endswith("\n\n") or "\t" in text or \
            any(line != line.rstrip() for line in text.splitlines()):
        raise ValueError("health.lua must end with one newline and hold no tab nor trailing blank, "
                         "or a YAML literal block cannot carry it verbatim")
    return _CM_PATCH_HEAD + "".join(("    " + line if line else "") + "\n" for line in text.splitlines())


__all__ = ["health", "assert_health", "classification", "render_cm_patch", "HEALTH_LUA", "CM_PATCH",
           "APPLICATION", "CM_KEY", "HEALTH_CODES"]


if __name__ == "__main__":
    import sys
    if sys.argv[1:] != ["--write-cm-patch"]:
        sys.exit("usage: python tests/argocd_health.py --write-cm-patch")
    CM_PATCH.write_text(render_cm_patch())
    print(f"wrote {CM_PATCH.relative_to(ROOT)}")
