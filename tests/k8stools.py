"""Kubernetes helpers for the tests.

* :func:`server_dry_run` sends objects to a REAL API server (``tests/kube``) with ``dryRun=All`` and
  ``fieldValidation=Strict`` (what ``kubectl apply`` does by default): schema, unknown fields, CEL
  rules, defaulting and admission all run, nothing is stored. This is THE validation of anything the
  project ships, built-in kinds and custom resources alike.
* :func:`validate_manifests` is an OFFLINE lint of built-in kinds with ``kubernetes-validate``
  (strict: unknown fields are errors) against the schemas of a Kubernetes release we cannot run here,
  e.g. the chart's ``kubeVersion`` floor. It does not emulate the API server for custom resources: an
  object whose kind a given CustomResourceDefinition declares is skipped (only a real server validates
  it, see :func:`server_dry_run`); a kind neither built in nor declared by a CRD is an error, so a
  misspelled ``apiVersion``/``kind`` of a built-in object is not silently skipped.
* :func:`helm_binary` finds the Helm binary installed by ``tests/tools/get-helm.sh``.
"""
from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

import kubernetes_validate
import pytest

__all__ = [
    "DEFAULT_K8S_VERSION", "SUPPORTED_K8S_VERSIONS", "validate_manifests", "server_dry_run",
    "helm_binary", "load_yaml_documents", "kube_version_floor", "REPO_ROOT",
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


def kube_version_floor() -> str:
    """The oldest Kubernetes minor release the chart supports (``1.31`` from Chart.yaml's
    ``kubeVersion: ">=1.31.0-0"``): what :func:`validate_manifests` lints for, as the tests' real API
    server is newer."""
    import re

    import yaml

    chart = yaml.safe_load((REPO_ROOT / "deploy" / "charts" / "octavia-operator" / "Chart.yaml").read_text())
    m = re.fullmatch(r">=\s*v?(\d+)\.(\d+)(?:\.\d+)?(?:-0)?", str(chart.get("kubeVersion", "")).strip())
    if not m:
        raise ValueError(f"Chart.yaml kubeVersion {chart.get('kubeVersion')!r} is not of the form >=X.Y.Z-0")
    return f"{m.group(1)}.{m.group(2)}"


def load_yaml_documents(text: str) -> list[dict]:
    import yaml

    return [d for d in yaml.safe_load_all(text) if d]


# --------------------------------------------------------------------------- offline: built-in kinds

def _declared_kinds(crds: Iterable[dict]) -> set[tuple[str, str]]:
    """(apiVersion, kind) of every version the CustomResourceDefinitions serve."""
    out = set()
    for crd in crds:
        spec = crd.get("spec") or {}
        kind = (spec.get("names") or {}).get("kind")
        for v in spec.get("versions") or []:
            out.add((f"{spec.get('group')}/{v.get('name')}", kind))
    return out


def validate_manifests(objs: Iterable[dict], k8s_version: str = DEFAULT_K8S_VERSION,
                       crds: Iterable[dict] = ()) -> list[str]:
    """Validate built-in objects strictly against the schemas of ``k8s_version`` (offline, with
    kubernetes-validate). Returns one message per problem (empty list: all valid).

    A CustomResourceDefinition is checked as the built-in object it is (its fields), not for what only
    the API server checks (structural schema, CEL): use :func:`server_dry_run` for that. Custom
    resources whose kind a CRD in ``crds`` or in ``objs`` declares are skipped (not validated
    offline); a kind that is neither built into ``k8s_version`` nor declared is an error."""
    objs = [o for o in objs if o is not None]
    declared = _declared_kinds(c for c in [*crds, *objs]
                               if isinstance(c, dict) and c.get("kind") == "CustomResourceDefinition")
    problems: list[str] = []
    for obj in objs:
        if not isinstance(obj, dict):
            problems.append(f"not an object: {obj!r}")
            continue
        name = f"{obj.get('kind', '?')}/{(obj.get('metadata') or {}).get('name', '?')}"
        if not obj.get("apiVersion") or not obj.get("kind"):
            problems.append(f"{name}: apiVersion and kind are required")
            continue
        try:
            kubernetes_validate.validate(obj, k8s_version, strict=True)
        except kubernetes_validate.utils.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            problems.append(f"{name}: {path}: {e.message}")
        except kubernetes_validate.utils.SchemaNotFoundError:
            if (obj["apiVersion"], obj["kind"]) not in declared:
                problems.append(f"{name}: no schema for {obj['apiVersion']} {obj['kind']} "
                                f"(not built into Kubernetes {k8s_version} and no CRD given)")
    return problems


# --------------------------------------------------------------------------- the real API server

def _describe_refusal(exc: Any) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    text = f"{exc.status} {body.get('reason', '')}: {body.get('message', exc.body)}"
    causes = [f"{c.get('field', '')}: {c.get('message', '')}".strip(": ")
              for c in (body.get("details") or {}).get("causes") or []]
    extra = [c for c in causes if c and c not in text]
    if extra:
        text += " [causes: " + "; ".join(extra) + "]"
    return text


def server_dry_run(cluster: Any, objs: Iterable[dict], namespace: str | None = None, *,
                   apply: bool = False, manager: str = "dry-run-test") -> list[str]:
    """Send every object to the real API server of ``cluster`` (a ``kube.cluster.KubeCluster``) with
    ``dryRun=All`` and ``fieldValidation=Strict``: a create (POST), or with ``apply`` a server-side
    apply (PATCH ``application/apply-patch+yaml``, forced; for objects that may already exist, such as
    CRDs). Nothing is stored. Returns one message per refusal, ``"Kind/name: STATUS Reason: message
    [causes: ...]"`` (empty list: every object was admitted).

    ``namespace`` is the namespace of every namespaced object (it replaces the object's own); without
    it an object's own ``metadata.namespace`` is used. The namespace must exist: a dry-run create of a
    Namespace creates nothing, so what is in it would be refused (404)."""
    from kube.cluster import ApiError

    rest = cluster.admin
    problems: list[str] = []
    for obj in objs:
        if not obj:
            continue
        md = obj.get("metadata") or {}
        name = f"{obj.get('kind', '?')}/{md.get('name', md.get('generateName', '?'))}"
        try:
            plural, namespaced = rest._resolve(obj["apiVersion"], obj["kind"])
        except (KeyError, ApiError) as e:  # discovery: no such apiVersion/kind on this server
            problems.append(f"{name}: not served by this API server: {e}")
            continue
        body = copy.deepcopy(obj)
        ns = None
        if namespaced:
            ns = namespace or md.get("namespace") or "default"
            body.setdefault("metadata", {})["namespace"] = ns
        params = {"dryRun": "All", "fieldValidation": "Strict"}
        try:
            if apply:
                rest.request("PATCH", rest.path(obj["apiVersion"], obj["kind"], ns, md.get("name")), body,
                             params={**params, "fieldManager": manager, "force": "true"},
                             content_type="application/apply-patch+yaml")
            else:
                rest.request("POST", rest.path(obj["apiVersion"], obj["kind"], ns), body, params=params)
        except ApiError as e:
            problems.append(f"{name}: {_describe_refusal(e)}")
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
