"""Offline Kubernetes validation helpers for the tests.

* :func:`validate_manifests` validates built-in objects with ``kubernetes-validate`` in STRICT mode
  (unknown fields are errors, like ``kubectl apply --validate=strict``) and custom resources
  against their CRD's structural schema (:func:`validate_custom_resource`).
* :func:`crd_to_jsonschema` converts a CRD's structural ``openAPIV3Schema`` to a JSON Schema
  (draft 2020-12) that rejects unknown fields, unless ``x-kubernetes-preserve-unknown-fields``.
* :func:`helm_binary` finds the Helm binary installed by ``tests/tools/get-helm.sh``.
"""
from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import kubernetes_validate
import pytest

import celk8s

__all__ = [
    "DEFAULT_K8S_VERSION", "SUPPORTED_K8S_VERSIONS", "validate_manifests", "validate_custom_resource",
    "crd_to_jsonschema", "helm_binary", "load_yaml_documents", "REPO_ROOT",
]

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Kubernetes versions kubernetes-validate knows (1.25 ... 1.37 for kubernetes-validate 1.37).
SUPPORTED_K8S_VERSIONS: list[str] = sorted(
    {kubernetes_validate.utils.major_minor(v) for v in kubernetes_validate.utils.all_versions()},
    key=lambda v: tuple(int(x) for x in v.split(".")))
#: The default target: 1.35, the oldest Kubernetes minor release still maintained upstream at the
#: end of 2026 (1.35, 1.36, 1.37; kubernetes-validate 1.37 knows 1.25 to 1.37), and the client
#: version of the pinned Helm 4.1. Strict validation against an older release catches fields
#: only newer releases know; tests that matter also validate against the newest supported one.
DEFAULT_K8S_VERSION = "1.35"


def load_yaml_documents(text: str) -> list[dict]:
    import yaml

    return [d for d in yaml.safe_load_all(text) if d]


# --------------------------------------------------------------------------- built-in objects

def _is_builtin(obj: dict, k8s_version: str) -> bool:
    try:
        kubernetes_validate.validate({"apiVersion": obj.get("apiVersion", ""), "kind": obj.get("kind", "")},
                                     k8s_version, strict=True)
    except kubernetes_validate.utils.SchemaNotFoundError:
        return False
    except kubernetes_validate.utils.ValidationError:
        return True
    return True


def _crd_key(crd: dict) -> set[tuple[str, str]]:
    spec = crd.get("spec", {})
    return {(f"{spec.get('group')}/{v.get('name')}", spec.get("names", {}).get("kind"))
            for v in spec.get("versions", [])}


def validate_manifests(objs: Iterable[dict], k8s_version: str = DEFAULT_K8S_VERSION,
                       crds: Iterable[dict] = ()) -> list[str]:
    """Validate every object strictly. Returns one message per problem (empty list: all valid).

    Built-in kinds go through kubernetes-validate (strict schemas of ``k8s_version``); a
    CustomResourceDefinition is also checked with :func:`check_crd`; custom resources are
    validated against a CRD from ``crds`` or from ``objs`` itself (schema + CEL rules); a kind
    nobody knows is an error."""
    objs = [o for o in objs if o]
    known_crds = [c for c in list(crds) + objs if c.get("kind") == "CustomResourceDefinition"]
    problems: list[str] = []
    for obj in objs:
        if not isinstance(obj, dict):
            problems.append(f"not an object: {obj!r}")
            continue
        name = f"{obj.get('kind', '?')}/{(obj.get('metadata') or {}).get('name', '?')}"
        if not obj.get("apiVersion") or not obj.get("kind"):
            problems.append(f"{name}: apiVersion and kind are required")
            continue
        if obj["kind"] == "CustomResourceDefinition":
            try:
                problems.extend(f"{name}: {p}" for p in check_crd(obj))
            except (KeyError, TypeError, AttributeError) as e:
                problems.append(f"{name}: malformed CRD: {e!r}")
        try:
            kubernetes_validate.validate(obj, k8s_version, strict=True)
        except kubernetes_validate.utils.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            problems.append(f"{name}: {path}: {e.message}")
            continue
        except kubernetes_validate.utils.SchemaNotFoundError:
            crd = next((c for c in known_crds if (obj["apiVersion"], obj["kind"]) in _crd_key(c)), None)
            if crd is None:
                problems.append(f"{name}: no schema for {obj['apiVersion']} {obj['kind']} "
                                f"(not built into Kubernetes {k8s_version} and no CRD given)")
            else:
                problems.extend(f"{name}: {p}" for p in validate_custom_resource(crd, obj))
    return problems


def check_crd(crd: dict) -> list[str]:
    """Checks the API server makes on a CRD that its JSON schema cannot express: the name,
    exactly one storage version, every CEL rule compiling, and a structural schema whose
    ``exclusiveMinimum``-style keywords are OpenAPI v3.0 ones."""
    problems = []
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    expected = f"{names.get('plural')}.{spec.get('group')}"
    if crd.get("metadata", {}).get("name") != expected:
        problems.append(f"metadata.name must be {expected}")
    storage = [v["name"] for v in spec.get("versions", []) if v.get("storage")]
    if len(storage) != 1:
        problems.append(f"exactly one version must be the storage version (got {storage})")
    problems.extend(f"CEL: {p}" for p in celk8s.compile_all(crd))
    for v in spec.get("versions", []):
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if schema is None:
            problems.append(f"{v['name']}: no openAPIV3Schema")
            continue
        problems.extend(f"{v['name']}: {p}" for p in _structural_problems(schema, ""))
    return problems


def _structural_problems(schema: dict, path: str) -> Iterable[str]:
    if not isinstance(schema, dict):
        return
    where = path or "<root>"
    if "type" not in schema and not (schema.get("x-kubernetes-int-or-string")
                                     or schema.get("x-kubernetes-preserve-unknown-fields")):
        yield f"{where}: structural schemas need a type"
    for k in ("exclusiveMinimum", "exclusiveMaximum"):
        if k in schema and not isinstance(schema[k], bool):
            yield f"{where}: {k} must be a boolean in OpenAPI v3.0"
    if schema.get("properties") and isinstance(schema.get("additionalProperties"), (dict, bool)) \
            and schema.get("additionalProperties") is not False:
        yield f"{where}: properties and additionalProperties are mutually exclusive"
    for k, sub in (schema.get("properties") or {}).items():
        yield from _structural_problems(sub, f"{path}.{k}" if path else k)
    if isinstance(schema.get("items"), dict):
        yield from _structural_problems(schema["items"], f"{path}[*]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _structural_problems(schema["additionalProperties"], f"{path}[*]")


# --------------------------------------------------------------------------- custom resources

_OBJECT_META = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 253,
                 "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
        "uid": {"type": "string"}, "resourceVersion": {"type": "string"},
        "generation": {"type": "integer"}, "creationTimestamp": {"type": ["string", "null"]},
        "deletionTimestamp": {"type": ["string", "null"]},
        "deletionGracePeriodSeconds": {"type": "integer"},
        "managedFields": {"type": "array"}, "selfLink": {"type": "string"},
    },
}

_PASS_THROUGH = ("enum", "pattern", "minLength", "maxLength", "minItems", "maxItems", "uniqueItems",
                 "minProperties", "maxProperties", "multipleOf", "required", "format",
                 "description", "title", "default", "example")


def _convert(schema: Any, strict: bool, in_junctor: bool = False) -> Any:
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {k: schema[k] for k in _PASS_THROUGH if k in schema}
    if "minimum" in schema:
        out["exclusiveMinimum" if schema.get("exclusiveMinimum") is True else "minimum"] = schema["minimum"]
    if "maximum" in schema:
        out["exclusiveMaximum" if schema.get("exclusiveMaximum") is True else "maximum"] = schema["maximum"]
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    if schema.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    elif "type" in schema:
        out["type"] = [schema["type"], "null"] if schema.get("nullable") else schema["type"]
    if "properties" in schema:
        out["properties"] = {k: _convert(v, strict) for k, v in schema["properties"].items()}
        if strict and not preserve and not in_junctor and "additionalProperties" not in schema:
            out["additionalProperties"] = False
    if "additionalProperties" in schema:
        ap = schema["additionalProperties"]
        out["additionalProperties"] = _convert(ap, strict) if isinstance(ap, dict) else ap
    elif (strict and not preserve and not in_junctor and schema.get("type") == "object"
          and "properties" not in schema and not schema.get("x-kubernetes-embedded-resource")):
        # an object with neither properties nor additionalProperties nor preserve-unknown-fields
        # is pruned to {} by the API server: any field in it is unknown
        out["maxProperties"] = 0
    if isinstance(schema.get("items"), dict):
        out["items"] = _convert(schema["items"], strict)
    for k in ("allOf", "anyOf", "oneOf"):
        if k in schema:
            conv = [_convert(s, strict, in_junctor=True) for s in schema[k]]
            if k == "anyOf" and "anyOf" in out:  # int-or-string plus an anyOf
                out.setdefault("allOf", []).append({"anyOf": conv})
            else:
                out[k] = conv
    if "not" in schema:
        out["not"] = _convert(schema["not"], strict, in_junctor=True)
    if schema.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", _OBJECT_META)
        if "additionalProperties" in out and out["additionalProperties"] is False and preserve:
            del out["additionalProperties"]
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set":
        out["uniqueItems"] = True
    elif list_type == "map":
        out["x-k8s-list-map-keys"] = schema.get("x-kubernetes-list-map-keys") or []
    return out


def crd_to_jsonschema(crd_or_schema: dict, version: str | None = None, strict: bool = True) -> dict:
    """JSON Schema (draft 2020-12) for a custom resource of this CRD version: unknown fields
    rejected (``strict``) except under ``x-kubernetes-preserve-unknown-fields``; ``nullable``
    allows null; ``x-kubernetes-int-or-string`` allows integer or string; ``exclusiveMinimum``
    booleans converted; ``x-kubernetes-list-type`` set/map enforce unique items/keys;
    ``apiVersion``, ``kind`` and ``metadata`` (ObjectMeta) added at the root."""
    schema = celk8s.crd_schema(crd_or_schema, version)
    out = _convert(schema, strict)
    props = out.setdefault("properties", {})
    props["metadata"] = _OBJECT_META
    if "spec" in crd_or_schema and "versions" in (crd_or_schema.get("spec") or {}):
        spec = crd_or_schema["spec"]
        vname = version or next(
            (v["name"] for v in spec["versions"] if v["name"] == "v1alpha1"),
            next((v["name"] for v in spec["versions"] if v.get("storage")), spec["versions"][0]["name"]))
        props["apiVersion"] = {"const": f"{spec['group']}/{vname}"}
        props["kind"] = {"const": spec["names"]["kind"]}
    else:
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
    out["required"] = sorted(set(out.get("required", [])) | {"apiVersion", "kind", "metadata"})
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return out


def _list_map_keys(validator, keys, instance, schema):
    if not validator.is_type(instance, "array"):
        return
    seen = {}
    for i, item in enumerate(instance):
        if not isinstance(item, dict):
            continue
        missing = [k for k in keys if k not in item]
        if missing:
            yield jsonschema.ValidationError(f"list map item {i} lacks key field(s) {missing}")
            continue
        kv = tuple(repr(item[k]) for k in keys)
        if kv in seen:
            yield jsonschema.ValidationError(
                f"duplicate entries for key {dict(zip(keys, (item[k] for k in keys)))} at {seen[kv]} and {i}")
        seen[kv] = i


_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator,
                                          {"x-k8s-list-map-keys": _list_map_keys})

_FORMATS = jsonschema.FormatChecker(formats=())


def _fmt(name):
    def register(fn):
        def check(value):
            if not isinstance(value, str) and name not in ("int32", "int64"):
                return True
            try:
                return bool(fn(value))
            except (ValueError, TypeError):
                return False

        _FORMATS.checks(name)(check)
        return fn

    return register


_fmt("int32")(lambda v: not isinstance(v, int) or -2**31 <= v < 2**31)
_fmt("int64")(lambda v: not isinstance(v, int) or -2**63 <= v < 2**63)
_fmt("date-time")(lambda v: datetime.datetime.fromisoformat(v.replace("Z", "+00:00")) and "T" in v.upper())
_fmt("date")(lambda v: datetime.date.fromisoformat(v))
_fmt("byte")(lambda v: base64.b64decode(v, validate=True) is not None)
_fmt("uuid")(lambda v: uuid.UUID(v) and len(v) == 36)
_fmt("ipv4")(lambda v: ipaddress.IPv4Address(v))
_fmt("ipv6")(lambda v: ipaddress.IPv6Address(v))
_fmt("cidr")(lambda v: ipaddress.ip_network(v, strict=False))
_fmt("hostname")(lambda v: re.fullmatch(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", v) and len(v) <= 253)
_fmt("duration")(lambda v: celk8s._parse_duration(v) is not None)


def validate_custom_resource(crd: dict, obj: dict, *, version: str | None = None, strict: bool = True,
                             cel: bool = True, old: dict | None = None) -> list[str]:
    """Validate a custom resource against its CRD like the API server with
    ``--validate=strict``: defaults applied, then the structural schema (unknown fields
    rejected), then, if that passed and ``cel``, the ``x-kubernetes-validations`` rules via
    :mod:`celk8s` (with ``old``: transition rules and ratcheting, as on an update).
    ``version`` defaults to the version named in ``obj['apiVersion']``. Returns problems."""
    if version is None and "/" in str(obj.get("apiVersion", "")):
        version = obj["apiVersion"].rsplit("/", 1)[1]
        names = {v["name"] for v in crd.get("spec", {}).get("versions", [])}
        if names and version not in names:
            return [f"apiVersion {obj['apiVersion']}: the CRD serves no version {version!r}"]
    schema = celk8s.crd_schema(crd, version)
    defaulted = celk8s.apply_defaults(schema, obj)
    validator = _Validator(crd_to_jsonschema(crd, version, strict), format_checker=_FORMATS)
    problems = []
    for e in sorted(validator.iter_errors(defaulted), key=lambda e: list(map(str, e.absolute_path))):
        path = ".".join(str(p) for p in e.absolute_path)
        problems.append(f"{path or '<root>'}: {e.message}")
    if cel and not problems:  # CEL only on schema-valid objects: one root cause, one report
        problems.extend(str(r) for r in celk8s.validate(crd, defaulted, old, version=version, defaults=False))
    return problems


# --------------------------------------------------------------------------- helm

def helm_binary() -> str:
    """Path of the Helm binary from ``tests/tools/get-helm.sh`` (``.tools/bin/helm``), else
    ``$HELM`` or ``helm`` on PATH. Skips the test when there is none, but FAILS under CI=true."""
    candidates = [REPO_ROOT / ".tools" / "bin" / "helm"]
    if os.environ.get("HELM"):
        candidates.insert(0, Path(os.environ["HELM"]))
    on_path = shutil.which("helm")
    if on_path:
        candidates.append(Path(on_path))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    msg = "helm not found: run tests/tools/get-helm.sh (installs .tools/bin/helm)"
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)
