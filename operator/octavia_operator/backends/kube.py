"""The one Kubernetes I/O layer of the operator.

A thin, generic client over ``kubernetes.client.ApiClient`` for plain dict objects: get / list /
create / merge-patch / delete by apiVersion and kind, plus ``apply``: server-side apply under the
operator's field manager, sent only when the live object differs from the desired one (level-based:
no write on a converged system).

How "differs" is decided without a write: every applied object carries, in the annotation
``octavia-operator.dev/applied``, a digest of what was applied. The object is applied again when
that digest changes (the desired object changed: server-side apply then also removes the fields
the operator no longer sets, such as a nodeSelector entry or a resource limit) or when a field the
operator sets has another value in the live object (someone edited or removed it). Fields that
other controllers or people own and the operator does not set are left alone, and values the API
server canonicalises (a quantity ``0.5`` is stored as ``500m``) compare equal.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
from decimal import Decimal, InvalidOperation
from dataclasses import dataclass, field
from typing import Any, Iterable

from kubernetes import client as kclient
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)

# (apiVersion, kind) -> (plural, namespaced)
RESOURCES: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Secret"): ("secrets", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Service"): ("services", True),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("v1", "PersistentVolume"): ("persistentvolumes", False),
    ("v1", "Pod"): ("pods", True),
    ("v1", "Event"): ("events", True),
    ("v1", "Node"): ("nodes", False),
    ("v1", "Namespace"): ("namespaces", False),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("apps/v1", "StatefulSet"): ("statefulsets", True),
    ("apps/v1", "DaemonSet"): ("daemonsets", True),
    ("batch/v1", "Job"): ("jobs", True),
    ("policy/v1", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    ("networking.k8s.io/v1", "Ingress"): ("ingresses", True),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): ("httproutes", True),
    ("coordination.k8s.io/v1", "Lease"): ("leases", True),
    ("octavia-operator.dev/v1alpha1", "OctaviaDeployment"): ("octaviadeployments", True),
}

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = "octavia-operator"
APPLIED_ANNOTATION = "octavia-operator.dev/applied"
# map keys whose values are Kubernetes quantities (compared by value: "0.5" == "500m", "1Gi" == "1024Mi")
QUANTITY_PARENTS = frozenset({"requests", "limits", "capacity"})


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


class Replaced(Exception):
    """The object was deleted, and maybe made again under the same name (another UID), since it was read."""


def status_ops(uid: str, old_status: dict[str, Any] | None, patch: dict[str, Any]) -> list[dict[str, Any]]:
    """A JSON patch doing what the merge patch ``patch`` of the status (computed against ``old_status``) does,
    to the object with ``uid`` only: a first ``test`` of the UID makes the API server refuse it for an object
    deleted and made again under the same name meanwhile (a merge patch of the status subresource ignores
    metadata, so it cannot carry that condition). Each changed top-level status field is written whole."""
    old = old_status or {}
    ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/uid", "value": uid}]
    if not old:
        ops.append({"op": "add", "path": "/status", "value": apply_merge_patch({}, patch)})
        return ops
    for key, value in patch.items():
        path = "/status/" + key.replace("~", "~0").replace("/", "~1")
        if value is None:
            if key in old:
                ops.append({"op": "remove", "path": path})
        else:
            ops.append({"op": "add", "path": path, "value": apply_merge_patch(old.get(key), value)})
    return ops


def apply_merge_patch(doc: Any, patch: Any) -> Any:
    """``doc`` with the JSON merge patch ``patch`` applied (RFC 7386), as the API server applies it."""
    if not isinstance(patch, dict):
        return patch
    out = dict(doc) if isinstance(doc, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = apply_merge_patch(out.get(k), v)
    return out


def _path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    try:
        plural, namespaced = RESOURCES[(api_version, kind)]
    except KeyError:
        raise ValueError(f"unknown resource {api_version} {kind}") from None
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespaced:
        if not namespace:
            raise ValueError(f"{kind} is namespaced: a namespace is needed")
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    return base + (f"/{name}" if name else "")


def _quantity(value: str) -> Decimal | None:
    try:
        from kubernetes.utils.quantity import parse_quantity
        return parse_quantity(value)
    except (ValueError, InvalidOperation, TypeError):
        return None


def is_subset(desired: Any, live: Any, _path: tuple[str, ...] = ()) -> bool:
    """True when every field of ``desired`` has the same value in ``live``.

    Fields the server adds (defaults, status, bookkeeping) are ignored; lists must have
    the same length and match element-wise, so a removed container or port is noticed.
    Quantities (the values of ``requests``/``limits`` maps) compare by value, as the server
    canonicalises them.
    """
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(is_subset(v, live.get(k), (*_path, k)) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return False
        return all(is_subset(d, lv, _path) for d, lv in zip(desired, live))
    if desired is None:
        return live is None
    if isinstance(desired, (int, float)) and isinstance(live, (int, float)) and not isinstance(desired, bool):
        return desired == live
    if desired == live:
        return True
    if len(_path) >= 2 and _path[-2] in QUANTITY_PARENTS and live is not None and not isinstance(desired, bool):
        a, b = _quantity(str(desired)), _quantity(str(live))
        return a is not None and a == b
    return isinstance(live, str) and str(desired) == live and not isinstance(desired, bool)


def applied_digest(desired: dict[str, Any]) -> str:
    """What ``apply`` records in the applied annotation: a digest of the object as applied."""
    body = json.loads(json.dumps(desired))
    (body.get("metadata", {}).get("annotations") or {}).pop(APPLIED_ANNOTATION, None)
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:20]


def _normalise_secret(obj: dict[str, Any]) -> dict[str, Any]:
    """Compare Secrets by their base64 ``data`` (the server turns stringData into data)."""
    if obj.get("kind") != "Secret" or "stringData" not in obj:
        return obj
    out = dict(obj)
    data = dict(out.get("data") or {})
    for k, v in out.pop("stringData").items():
        data[k] = base64.b64encode(v.encode()).decode()
    out["data"] = data
    return out


@dataclass
class WriteLog:
    """Counts writes, so tests can assert that a converged reconcile writes nothing."""

    entries: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, verb: str, kind: str, name: str) -> None:
        self.entries.append((verb, kind, name))


class Kube:
    def __init__(self, api_client: kclient.ApiClient | None = None):
        self.api = api_client or kclient.ApiClient()
        self.writes = WriteLog()

    # -- raw verbs -------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None, query: Iterable[tuple[str, str]] = (),
              content_type: str = "application/json") -> Any:
        if method in ("POST", "PATCH", "PUT"):
            query = [*query, ("fieldManager", FIELD_MANAGER)]
        _method, url, headers, payload, _post = self.api.param_serialize(
            method=method, resource_path=path, query_params=list(query), body=body,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            auth_settings=["BearerToken"])
        resp = self.api.call_api(_method, url, header_params=headers, body=payload)
        resp.read()
        if resp.status == 404:
            raise NotFound(path)
        if resp.status == 409:
            raise Conflict(path)
        if resp.status == 403 and b"cannot find RESTMapping" in (resp.data or b""):
            # the API server's admission has not discovered the OctaviaDeployment kind yet (a CRD installed
            # moments ago): a child with blockOwnerDeletion is refused for a few seconds; not a permission
            from ..errors import TransientError
            raise TransientError("KindNotDiscoveredYet", f"{method} {path}: the API server does not map the "
                                 "OctaviaDeployment kind yet (CRD just installed); retrying")
        if not 200 <= resp.status < 300:
            raise ApiException(status=resp.status, reason=f"{method} {path}: {resp.reason}: "
                                                          f"{(resp.data or b'')[:500]!r}")
        return json.loads(resp.data) if resp.data else None

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return self._call("GET", _path(api_version, kind, namespace, name))
        except NotFound:
            return None

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None, field_selector: str | None = None,
             page_size: int = 500) -> list[dict[str, Any]]:
        """Every object (paginated: ``limit`` and ``continue``, so a large cluster is read in pages)."""
        base = [(k, v) for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v]
        items: list[dict[str, Any]] = []
        token = None
        while True:
            q = base + [("limit", str(page_size))] + ([("continue", token)] if token else [])
            page = self._call("GET", _path(api_version, kind, namespace), query=q) or {}
            items += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        md = obj["metadata"]
        if obj["kind"] != "Event":
            self.writes.add("create", obj["kind"], md.get("name") or md.get("generateName", ""))
        return self._call("POST", _path(obj["apiVersion"], obj["kind"], md.get("namespace")), body=obj)

    def merge_patch(self, api_version: str, kind: str, name: str, namespace: str | None,
                    patch: dict[str, Any], subresource: str | None = None) -> dict[str, Any]:
        self.writes.add("patch" + (f"/{subresource}" if subresource else ""), kind, name)
        path = _path(api_version, kind, namespace, name) + (f"/{subresource}" if subresource else "")
        return self._call("PATCH", path, body=patch, content_type=MERGE_PATCH)

    def patch_status(self, api_version: str, kind: str, name: str, namespace: str | None, uid: str,
                     old_status: dict[str, Any] | None, patch: dict[str, Any]) -> None:
        """Write the merge patch ``patch`` of the status, computed against ``old_status``, to the object
        with ``uid`` (see :func:`status_ops`); :class:`Replaced` when that object is gone."""
        self.writes.add("patch/status", kind, name)
        path = _path(api_version, kind, namespace, name) + "/status"
        try:
            self._call("PATCH", path, body=status_ops(uid, old_status, patch), content_type=JSON_PATCH)
        except NotFound:
            raise Replaced(path) from None
        except ApiException as exc:
            if exc.status == 422:   # the test of the UID failed, or another refusal: which, the object says
                live = self.get(api_version, kind, name, namespace)
                if live is None or live["metadata"].get("uid") != uid:
                    raise Replaced(path) from None
            raise

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        self.writes.add("delete", kind, name)
        try:
            self._call("DELETE", _path(api_version, kind, namespace, name),
                       body={"propagationPolicy": "Background"})
            return True
        except NotFound:
            return False

    def pod_log(self, namespace: str, name: str, tail_lines: int = 20) -> str:
        path = _path("v1", "Pod", namespace, name) + "/log"
        _method, url, headers, _payload, _post = self.api.param_serialize(
            method="GET", resource_path=path, query_params=[("tailLines", str(tail_lines))],
            header_params={"Accept": "text/plain"}, auth_settings=["BearerToken"])
        resp = self.api.call_api(_method, url, header_params=headers)
        resp.read()
        if not 200 <= resp.status < 300:
            raise ApiException(status=resp.status, reason=f"GET {path}")
        return (resp.data or b"").decode(errors="replace")

    def post_event(self, obj: dict[str, Any], etype: str, reason: str, message: str) -> None:
        """A core/v1 Event about ``obj`` (used outside kopf's handlers, which post their own)."""
        import datetime as dt
        md = obj["metadata"]
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.create({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{md['name']}.", "namespace": md["namespace"]},
            "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": md["name"],
                               "namespace": md["namespace"], "uid": md.get("uid")},
            "type": etype, "reason": reason, "message": message[:1024],
            "source": {"component": "octavia-operator"},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        })

    def read_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        obj = self.get("v1", "Secret", name, namespace)
        if obj is None:
            return None
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}

    # -- level-based apply -------------------------------------------------------------
    def server_side_apply(self, desired: dict[str, Any]) -> dict[str, Any]:
        """One server-side apply of ``desired`` under the operator's field manager (forced: the
        operator's fields are the operator's; fields it does not set are left to their owners)."""
        md = desired["metadata"]
        self.writes.add("apply", desired["kind"], md["name"])
        path = _path(desired["apiVersion"], desired["kind"], md.get("namespace"), md["name"])
        return self._call("PATCH", path, body=desired, query=[("force", "true")], content_type=APPLY_PATCH)

    def apply(self, desired: dict[str, Any], *, immutable: bool = False,
              live: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Server-side apply the object when it is missing or differs; return (action, live object):
        ``created``, ``patched`` or ``unchanged``.

        ``immutable`` objects (Jobs) are applied only when missing: one that differs is reported as
        ``"differs"`` and the caller decides (e.g. a Job is replaced under a new name). ``live``
        saves the read when the caller has just read the object.
        """
        md = desired["metadata"]
        if live is None:
            live = self.get(desired["apiVersion"], desired["kind"], md["name"], md.get("namespace"))
        digest = applied_digest(desired)
        body = json.loads(json.dumps(desired))
        body.pop("status", None)
        body["metadata"].setdefault("annotations", {})[APPLIED_ANNOTATION] = digest
        if live is not None:
            want = _normalise_secret(body)
            if is_subset({k: v for k, v in want.items() if k != "metadata"}, live) and \
                    is_subset(want["metadata"], live.get("metadata")):
                return "unchanged", live
            if immutable:
                return "differs", live
        out = self.server_side_apply(body)
        if live is None:
            return "created", out
        changed = (out.get("metadata") or {}).get("resourceVersion") != live["metadata"].get("resourceVersion")
        return ("patched" if changed else "unchanged"), out
