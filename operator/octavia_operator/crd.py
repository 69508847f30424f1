"""Generate the OctaviaDeployment CRD from the pydantic models in ``spec``.

``python -m octavia_operator.crd > deploy/crds/octaviadeployments.octavia-operator.dev.yaml``
regenerates the file; ``tests/test_crd.py`` fails when the committed file is stale.

The conversion turns pydantic's JSON Schema into a Kubernetes *structural* schema:
``$ref``s are inlined, ``Optional[X]`` (anyOf X|null) becomes X, titles are dropped,
objects built from sub-models default to ``{}`` so that the API server applies their
nested defaults, and unknown fields are pruned (rejected by ``kubectl apply --validate=strict``).
"""
from __future__ import annotations

import copy
import sys
from typing import Any

import yaml

from . import spec as s

CRD_NAME = f"{s.PLURAL}.{s.GROUP}"
CRD_FILE = f"{CRD_NAME}.yaml"

_DROP = {"title", "$defs"}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].split("/")[-1]
            merged = copy.deepcopy(defs[name])
            for k, v in node.items():
                if k != "$ref":
                    merged[k] = v
            return _inline(merged, defs)
        return {k: _inline(v, defs) for k, v in node.items() if k not in _DROP}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _structural(node: dict[str, Any]) -> dict[str, Any]:
    """Make one schema node structural (recursively)."""
    node = dict(node)
    if "anyOf" in node:
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        if sorted(b.get("type", "") for b in branches) == ["integer", "string"]:
            # int-or-string (Kubernetes quantities): a pattern only constrains the string form
            # The API server accepts exactly anyOf [{type: integer}, {type: string}] here (nothing else
            # inside the branches: "must be empty to be structural"); a pattern sits beside the anyOf
            # and only constrains the string form.
            pattern = next((b["pattern"] for b in branches if "pattern" in b), None)
            node.update({"x-kubernetes-int-or-string": True,
                         "anyOf": [{"type": "integer"}, {"type": "string"}]})
            if pattern:
                node["pattern"] = pattern
            return _order(node)
        if len(branches) != 1:
            raise ValueError(f"cannot express anyOf {branches} structurally")
        inner = _structural(branches[0])
        # the outer node's description/default/validations win
        for k, v in node.items():
            if k == "default" and v is None:
                continue
            if k == "x-kubernetes-validations" and "x-kubernetes-validations" in inner:
                inner[k] = inner[k] + v
                continue
            inner[k] = v
        node = inner
    if node.get("default", "x") is None:
        node.pop("default")
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    if "properties" in node:
        node["type"] = "object"
        node["properties"] = {k: _structural(v) for k, v in node["properties"].items()}
        node.pop("additionalProperties", None)
    elif isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _structural(node["additionalProperties"])
    if "items" in node:
        node["items"] = _structural(node["items"])
    if "patternProperties" in node:
        # Kubernetes has no patternProperties: keep the value schema, check the keys with CEL.
        (pattern, value), = node.pop("patternProperties").items()
        node["additionalProperties"] = _structural(value)
        node.setdefault("x-kubernetes-validations", []).insert(0, {
            "rule": f"self.all(k, k.matches('{pattern}'))", "message": f"keys must match {pattern}"})
    if "propertyNames" in node:
        # Kubernetes has no propertyNames; map-key patterns are enforced by CEL instead.
        pn = node.pop("propertyNames")
        if "pattern" in pn:
            node.setdefault("x-kubernetes-validations", []).append(
                {"rule": f"self.all(k, k.matches('{pn['pattern']}'))",
                 "message": f"keys must match {pn['pattern']}"})
    return _order(node)


_FIRST = ("description", "type")


def _order(node: dict[str, Any]) -> dict[str, Any]:
    """description and type first, for a readable CRD file."""
    return {**{k: node[k] for k in _FIRST if k in node}, **{k: v for k, v in node.items() if k not in _FIRST}}


def _object_defaults(node: dict[str, Any]) -> dict[str, Any]:
    """Give sub-objects that are always present (declared with a default factory) their full default.

    The default is the sub-model's own default, with every nested default spelled out: the API
    server validates a default against the schema *and its CEL rules* when the CRD is created,
    without applying the nested defaults first, so a bare ``{}`` would fail every rule that reads
    a defaulted field ("no such key: cidr")."""
    props = node.get("properties")
    if not props:
        return node
    for name, child in props.items():
        _object_defaults(child)
        factory = child.pop("_factory", None)
        if child.get("type") == "object" and "properties" in child and not child.get("required") \
                and "default" not in child and factory is not None:
            child["default"] = factory().model_dump(mode="json", exclude_none=True)
    if isinstance(node.get("items"), dict):
        _object_defaults(node["items"])
    return node


def _mark_factories(model: type, node: dict[str, Any]) -> None:
    """Flag fields declared with a default_factory (sub-models that are always present)."""
    props = node.get("properties", {})
    for fname, field in model.model_fields.items():
        child = props.get(field.alias or fname)
        if child is None:
            continue
        ann = field.annotation
        if field.default_factory is not None and isinstance(field.default_factory, type):
            child["_factory"] = field.default_factory
        sub = field.default_factory if isinstance(field.default_factory, type) else ann
        if isinstance(sub, type) and hasattr(sub, "model_fields"):
            _mark_factories(sub, child)
        else:
            for arg in getattr(ann, "__args__", ()) or ():
                if isinstance(arg, type) and hasattr(arg, "model_fields") and "properties" in child:
                    _mark_factories(arg, child)


def _check_descriptions(node: dict[str, Any], path: str = "") -> list[str]:
    missing = []
    for name, child in (node.get("properties") or {}).items():
        p = f"{path}.{name}" if path else name
        if not child.get("description"):
            missing.append(p)
        missing += _check_descriptions(child, p)
        if isinstance(child.get("items"), dict):
            missing += _check_descriptions(child["items"], p + "[]")
    return missing


def model_schema(model: type) -> dict[str, Any]:
    raw = model.model_json_schema(mode="validation", ref_template="#/$defs/{model}")
    defs = raw.get("$defs", {})
    inlined = _inline(raw, defs)
    out = _structural(inlined)
    _mark_factories(model, out)
    _object_defaults(out)
    return out


def openapi_schema() -> dict[str, Any]:
    spec_schema = model_schema(s.OctaviaDeploymentSpec)
    spec_schema["description"] = "Desired state of one Octavia installation."
    status_schema = model_schema(s.OctaviaDeploymentStatus)
    status_schema["description"] = "Observed state, written by the operator."
    status_schema["x-kubernetes-preserve-unknown-fields"] = True
    status_schema["properties"]["conditions"]["x-kubernetes-list-type"] = "map"
    status_schema["properties"]["conditions"]["x-kubernetes-list-map-keys"] = ["type"]
    schema = {
        "type": "object",
        "description": "OctaviaDeployment installs and runs OpenStack Octavia (load balancing as a service) "
                       "against an OpenStack cloud: cloud resources, certificates, configuration, database "
                       "migration, the four Octavia services and the o-hm0 node plumbing.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of this object (octavia-operator.dev/v1alpha1)."},
            "kind": {"type": "string", "description": "Kind of this object (OctaviaDeployment)."},
            # the API server allows nothing but the type here
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    missing = _check_descriptions(spec_schema, "spec") + _check_descriptions(status_schema, "status")
    if missing:
        raise ValueError(f"fields without a description: {missing}")
    return schema


def build_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/name": "octavia-operator", "app.kubernetes.io/part-of": "octavia-operator"},
        },
        "spec": {
            "group": s.GROUP,
            "scope": "Namespaced",
            "names": {"kind": s.KIND, "listKind": f"{s.KIND}List", "plural": s.PLURAL,
                      "singular": s.SINGULAR, "shortNames": list(s.SHORT_NAMES), "categories": ["openstack"]},
            "versions": [{
                "name": s.VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Ready", "type": "string", "description": "Whether Octavia is fully up",
                     "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
                    {"name": "Reason", "type": "string", "description": "Why it is (not) ready",
                     "jsonPath": ".status.conditions[?(@.type==\"Ready\")].reason"},
                    {"name": "API", "type": "string", "description": "Internal URL of the load-balancer API",
                     "jsonPath": ".status.apiEndpoint"},
                    {"name": "Release", "type": "string", "priority": 1, "description": "OpenStack release",
                     "jsonPath": ".spec.release"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {"openAPIV3Schema": openapi_schema()},
            }],
        },
    }


def dump_crd() -> str:
    header = ("# Generated by `python -m octavia_operator.crd` from operator/octavia_operator/spec.py.\n"
              "# Do not edit by hand: change the models and regenerate.\n")
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100, allow_unicode=True)


def main() -> None:  # pragma: no cover - exercised through tests/test_crd.py
    sys.stdout.write(dump_crd())


if __name__ == "__main__":  # pragma: no cover
    main()
