"""
A realistic-enough Kubernetes API for tests, built on kmock 0.8.

kmock's ``KubernetesEmulator`` keeps objects in memory and serves them over
HTTP, but it lacks what kopf and the official client rely on (resource
versions, status subresources, selectors, PUT, garbage collection, ...).
:class:`KubeEmulator` subclasses it and serves every API request itself,
keeping kmock's resource catalogue (``.resources``, ``load_bundled()``),
the object history (``.objects``), the request log, and user-defined
reactions (``emulator['get /api/v1/...'] << 500`` still takes precedence).

Everything that changes state runs synchronously inside the server's event
loop (no ``await`` between a change and its watch events), so no lock is
needed: a watch's snapshot and its subscription are atomic by construction.

:class:`EmulatorServer` runs the emulator on 127.0.0.1 in a background thread,
and :class:`KubeAPI` is the synchronous facade that tests use.

What is emulated and what is not: see ``docs/testing-kube.md``.
"""
from __future__ import annotations

import asyncio
import base64
import collections
import copy
import dataclasses
import datetime
import json
import logging
import math
import os
import random
import re
import tempfile
import threading
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
import yaml
from kmock._internal import enums, rendering

logger = logging.getLogger(__name__)

KindKey = tuple[str, str]  # (group, plural)
ObjKey = tuple[str | None, str]  # (namespace, name)

# Namespaces that exist from the start, as in a fresh cluster.
DEFAULT_NAMESPACES = ('default', 'kube-system', 'kube-public', 'kube-node-lease')

# Fields of metadata that only the server sets; they are ignored in writes.
SERVER_METADATA = ('uid', 'resourceVersion', 'generation', 'creationTimestamp',
                   'deletionTimestamp', 'deletionGracePeriodSeconds', 'selfLink', 'managedFields')

CRD_KIND_KEY: KindKey = ('apiextensions.k8s.io', 'customresourcedefinitions')
NAMESPACE_KIND_KEY: KindKey = ('', 'namespaces')
SECRET_KIND_KEY: KindKey = ('', 'secrets')

CRD_VERBS = {'create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'}

# Names: DNS-1123 subdomains for most kinds, labels for namespaces; RBAC names are path segments.
_DNS_LABEL = r'[a-z0-9]([-a-z0-9]*[a-z0-9])?'
DNS1123_SUBDOMAIN = re.compile(rf'{_DNS_LABEL}(\.{_DNS_LABEL})*')
DNS1123_LABEL = re.compile(_DNS_LABEL)
LABEL_NAME = re.compile(r'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')
PATH_SEGMENT_GROUPS = {'rbac.authorization.k8s.io'}

GENERATE_NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789'  # as in apiserver's utilrand


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------

class ApiError(Exception):
    """An error rendered as a Kubernetes ``Status`` object with a proper HTTP code."""

    def __init__(self, code: int, reason: str, message: str, details: Mapping[str, Any] | None = None):
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details or {})

    def as_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            'kind': 'Status', 'apiVersion': 'v1', 'metadata': {},
            'status': 'Failure', 'message': self.message, 'reason': self.reason, 'code': self.code,
        }
        if self.details:
            status['details'] = self.details
        return status


def _qualified(kind: KindInfo | None, plural: str = '', group: str = '') -> str:
    if kind is not None:
        plural, group = kind.plural, kind.group
    return f"{plural}.{group}" if group else plural


def not_found(kind: KindInfo | None, name: str | None = None) -> ApiError:
    if kind is None or name is None:
        return ApiError(404, 'NotFound', 'the server could not find the requested resource')
    return ApiError(404, 'NotFound', f'{_qualified(kind)} "{name}" not found',
                    {'name': name, 'group': kind.group, 'kind': kind.plural})


def conflict(kind: KindInfo, name: str) -> ApiError:
    return ApiError(409, 'Conflict',
                    f'Operation cannot be fulfilled on {_qualified(kind)} "{name}": the object has been '
                    f'modified; please apply your changes to the latest version and try again',
                    {'name': name, 'group': kind.group, 'kind': kind.plural})


def invalid(kind: KindInfo, name: str | None, message: str) -> ApiError:
    return ApiError(422, 'Invalid', f'{kind.kind} "{name or ""}" is invalid: {message}',
                    {'name': name or '', 'group': kind.group, 'kind': kind.kind})


def bad_request(message: str) -> ApiError:
    return ApiError(400, 'BadRequest', message)


# --------------------------------------------------------------------------------------------------
# Small helpers: time, versions, patches, selectors
# --------------------------------------------------------------------------------------------------

def now_rfc3339() -> str:
    return datetime.datetime.now(tz=datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def version_priority(version: str) -> tuple[Any, ...]:
    """Sort key of Kubernetes API versions: v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > others."""
    m = re.fullmatch(r'v(\d+)(?:(alpha|beta)(\d+))?', version)
    if not m:
        return (3, 0, 0, version)
    rank = {None: 0, 'beta': 1, 'alpha': 2}[m.group(2)]
    return (rank, -int(m.group(1)), -int(m.group(3) or 0), version)


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge recursively, ``null`` deletes, the rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


def prune_and_default(value: Any, schema: Mapping[str, Any], *, root: bool = False) -> Any:
    """
    Prune unknown fields and apply defaults, as the API server does for custom resources
    with a structural schema (``x-kubernetes-preserve-unknown-fields`` keeps unknown fields;
    ``x-kubernetes-embedded-resource`` keeps apiVersion/kind/metadata). Returns a new value.
    """
    if isinstance(value, list):
        items = schema.get('items')
        return [prune_and_default(v, items) if isinstance(items, Mapping) else copy.deepcopy(v) for v in value]
    if not isinstance(value, dict):
        return copy.deepcopy(value)
    properties: Mapping[str, Any] = schema.get('properties') or {}
    additional = schema.get('additionalProperties')
    preserve = bool(schema.get('x-kubernetes-preserve-unknown-fields'))
    keep_meta = root or bool(schema.get('x-kubernetes-embedded-resource'))
    untyped = 'type' not in schema and not properties and additional is None
    result: dict[str, Any] = {}
    for key, item in value.items():
        if keep_meta and key in ('apiVersion', 'kind', 'metadata') and key not in properties:
            result[key] = copy.deepcopy(item)
        elif key in properties:
            result[key] = prune_and_default(item, properties[key]) if not (root and key == 'metadata') else copy.deepcopy(item)
        elif isinstance(additional, Mapping):
            result[key] = prune_and_default(item, additional)
        elif preserve or additional is True or untyped or schema.get('x-kubernetes-int-or-string'):
            result[key] = copy.deepcopy(item)
        # else: an unknown field is pruned (dropped silently, as a real API server does)
    for key, subschema in properties.items():
        if key not in result and isinstance(subschema, Mapping) and 'default' in subschema:
            result[key] = prune_and_default(copy.deepcopy(subschema['default']), subschema)
    return result


@dataclasses.dataclass(frozen=True)
class LabelRequirement:
    key: str
    op: str  # '=', '!=', 'in', 'notin', 'exists', '!exists'
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case '=' | 'in':
                return present and value in self.values
            case '!=' | 'notin':
                return not present or value not in self.values
            case 'exists':
                return present
            case '!exists':
                return not present
        raise AssertionError(self.op)


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ''
    for char in text:
        if char == '(':
            depth += 1
        elif char == ')':
            depth -= 1
        if char == ',' and depth == 0:
            parts.append(current)
            current = ''
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def parse_label_selector(text: str | None) -> list[LabelRequirement]:
    """Parse ``a=b,c!=d,e in (x,y),f notin (z),g,!h`` (and ``==``); raises ValueError."""
    requirements: list[LabelRequirement] = []
    for part in _split_top_level(text or ''):
        if m := re.fullmatch(r'([^\s=!(),]+)\s+(in|notin)\s+\(([^()]*)\)', part):
            values = tuple(v.strip() for v in m.group(3).split(',') if v.strip())
            requirements.append(LabelRequirement(m.group(1), m.group(2), values))
        elif m := re.fullmatch(r'([^\s=!(),]+)\s*(==|=|!=)\s*([^\s=!(),]*)', part):
            op = '!=' if m.group(2) == '!=' else '='
            requirements.append(LabelRequirement(m.group(1), op, (m.group(3),)))
        elif m := re.fullmatch(r'!\s*([^\s=!(),]+)', part):
            requirements.append(LabelRequirement(m.group(1), '!exists'))
        elif m := re.fullmatch(r'([^\s=!(),]+)', part):
            requirements.append(LabelRequirement(m.group(1), 'exists'))
        else:
            raise ValueError(f"unable to parse requirement: {part!r}")
    return requirements


@dataclasses.dataclass(frozen=True)
class FieldRequirement:
    path: tuple[str, ...]
    negate: bool
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        current: Any = obj
        for step in self.path:
            current = current.get(step) if isinstance(current, Mapping) else None
        actual = '' if current is None else str(current).lower() if isinstance(current, bool) else str(current)
        return (actual == self.value) != self.negate


def parse_field_selector(text: str | None) -> list[FieldRequirement]:
    """Parse ``metadata.name=x,metadata.namespace!=y`` (any dotted path is accepted)."""
    requirements: list[FieldRequirement] = []
    for part in (p.strip() for p in (text or '').split(',')):
        if not part:
            continue
        m = re.fullmatch(r'([A-Za-z0-9_.\-]+)\s*(==|=|!=)\s*(.*)', part)
        if not m:
            raise ValueError(f"invalid field selector: {part!r}")
        requirements.append(FieldRequirement(tuple(m.group(1).split('.')), m.group(2) == '!=', m.group(3)))
    return requirements


# --------------------------------------------------------------------------------------------------
# Resource catalogue and request paths
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class KindInfo:
    """One resource as served by the API (all its versions together)."""
    group: str
    plural: str
    kind: str
    singular: str
    namespaced: bool
    versions: list[str]  # served versions, the preferred (and storage) one first
    verbs: set[str]
    subresources: set[str]
    shortnames: set[str]
    categories: set[str]
    custom: bool = False  # defined by a CRD created at runtime

    @property
    def key(self) -> KindKey:
        return (self.group, self.plural)

    @property
    def qualified(self) -> str:
        return _qualified(self)

    @property
    def has_status(self) -> bool:
        return 'status' in self.subresources

    @property
    def storage_version(self) -> str:
        return self.versions[0]

    def api_version(self, version: str | None = None) -> str:
        version = version or self.storage_version
        return f"{self.group}/{version}" if self.group else version


@dataclasses.dataclass(frozen=True)
class ApiPath:
    """A parsed request path. ``endpoint`` tells which kind of endpoint it is."""
    endpoint: str  # 'root', 'version', 'health', 'api', 'apis', 'group', 'groupversion', 'resource', 'unknown'
    group: str | None = None
    version: str | None = None
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_api_path(path: str) -> ApiPath:
    segments = [segment for segment in path.split('/') if segment]
    if not segments:
        return ApiPath('root')
    if segments in (['version'], ['version', '']):
        return ApiPath('version')
    if segments[0] in ('healthz', 'livez', 'readyz'):
        return ApiPath('health')
    if segments[0] == 'api':
        if len(segments) == 1:
            return ApiPath('api')
        group, version, rest = '', segments[1], segments[2:]
    elif segments[0] == 'apis':
        if len(segments) == 1:
            return ApiPath('apis')
        if len(segments) == 2:
            return ApiPath('group', group=segments[1])
        group, version, rest = segments[1], segments[2], segments[3:]
    else:
        return ApiPath('unknown')
    if not rest:
        return ApiPath('groupversion', group=group, version=version)

    namespace: str | None = None
    is_namespace_subresource = group == '' and len(rest) == 3 and rest[2] in ('status', 'finalize')
    if rest[0] == 'namespaces' and len(rest) >= 3 and not is_namespace_subresource:
        namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    subresource = '/'.join(rest[2:]) or None
    return ApiPath('resource', group=group, version=version, plural=plural,
                   namespace=namespace, name=name, subresource=subresource)


def _is_true(value: str | None) -> bool:
    return (value or '').lower() in ('true', '1', 'yes')


# --------------------------------------------------------------------------------------------------
# Watches
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class Watcher:
    kind: KindInfo
    version: str
    namespace: str | None
    name: str | None
    labels: list[LabelRequirement]
    fields: list[FieldRequirement]
    queue: asyncio.Queue[dict[str, Any] | None] = dataclasses.field(default_factory=asyncio.Queue)

    def matches(self, obj: Mapping[str, Any] | None) -> bool:
        if obj is None:
            return False
        meta = obj.get('metadata', {})
        if self.namespace is not None and meta.get('namespace') != self.namespace:
            return False
        if self.name is not None and meta.get('name') != self.name:
            return False
        labels = meta.get('labels') or {}
        return all(r.matches(labels) for r in self.labels) and all(f.matches(obj) for f in self.fields)

    def translate(self, etype: str, new: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any] | None:
        """What this watcher sees of a change, with selector enter/exit turned into ADDED/DELETED."""
        if etype == 'ADDED':
            return {'type': 'ADDED', 'object': new} if self.matches(new) else None
        if etype == 'DELETED':
            return {'type': 'DELETED', 'object': new} if self.matches(old or new) else None
        was, now = self.matches(old), self.matches(new)
        if was and now:
            return {'type': 'MODIFIED', 'object': new}
        if was:
            return {'type': 'DELETED', 'object': new}
        if now:
            return {'type': 'ADDED', 'object': new}
        return None


@dataclasses.dataclass(frozen=True)
class ChangeEvent:
    rv: int
    kind_key: KindKey
    etype: str  # ADDED, MODIFIED, DELETED
    new: dict[str, Any]
    old: dict[str, Any] | None


_STOP = None  # the sentinel put into watchers' queues to end their streams


# --------------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------------

@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """
    kmock's KubernetesEmulator with the realism that kopf & the official client need.

    All state lives in this object and is only touched from the server's event loop.
    """

    # Options (keyword arguments).
    auto_create_namespaces: bool = False  # True: creating in an unknown namespace creates it
    gc_delay: float = 0.0  # seconds before the background garbage collector reacts
    gc_missing_owners: bool = True  # delete objects whose owners (by uid) all do not exist
    bookmark_interval: float = 5.0  # for watches with allowWatchBookmarks=true
    history_limit: int = 100_000  # watch events kept for resuming; older resourceVersions get 410
    load_builtin_resources: bool = True  # kmock.resources.load_bundled() (a K3s 1.3x catalogue)
    prune_custom_resources: bool = True  # structural-schema pruning & defaulting of CRs, as the API server does
    # An optional validator of custom resources (after pruning & defaulting); problems -> 422 Invalid.
    # Signature: (crd: dict, obj: dict, old: dict | None, version: str) -> list[str].
    cr_validator: Callable[[dict[str, Any], dict[str, Any], dict[str, Any] | None, str], list[str]] | None = None

    # State.
    _rv: int = attrs.field(default=1000, init=False)
    _store: dict[KindKey, dict[ObjKey, dict[str, Any]]] = attrs.field(
        factory=lambda: collections.defaultdict(dict), init=False)
    _uids: dict[str, tuple[KindKey, ObjKey]] = attrs.field(factory=dict, init=False)
    _kinds: dict[KindKey, KindInfo] = attrs.field(factory=dict, init=False)
    _crds: dict[KindKey, str] = attrs.field(factory=dict, init=False)  # (group, plural) -> CRD name
    _events: collections.deque[ChangeEvent] = attrs.field(factory=collections.deque, init=False)
    _compacted_rv: int = attrs.field(default=0, init=False)
    _watchers: set[Watcher] = attrs.field(factory=set, init=False)
    _orphaning: set[str] = attrs.field(factory=set, init=False)  # uids deleted with propagationPolicy=Orphan
    unexpected_errors: list[BaseException] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()  # kmock's fallbacks: never reached, all requests are served here
        if self.load_builtin_resources:
            with warnings.catch_warnings():  # kmock uses the deprecated importlib.resources.read_binary()
                warnings.simplefilter('ignore', DeprecationWarning)
                self.resources.load_bundled()
        self._rebuild_kinds()
        for namespace in DEFAULT_NAMESPACES:
            self.create_object(NAMESPACE_KIND_KEY, None, {'metadata': {'name': namespace}})

    # ---------------------------------------------------------------------------------------------
    # Catalogue
    # ---------------------------------------------------------------------------------------------

    def _rebuild_kinds(self) -> None:
        grouped: dict[KindKey, list[tuple[str, Any]]] = collections.defaultdict(list)
        for resource in list(self.resources):
            if resource.group is None or resource.version is None or resource.plural is None:
                continue
            grouped[(resource.group, resource.plural)].append((resource.version, self.resources[resource]))
        kinds: dict[KindKey, KindInfo] = {}
        for (group, plural), entries in grouped.items():
            entries.sort(key=lambda entry: version_priority(entry[0]))
            info = entries[0][1]
            kind = info.kind or plural.capitalize()
            kinds[(group, plural)] = KindInfo(
                group=group, plural=plural, kind=kind,
                singular=info.singular or kind.lower(),
                namespaced=bool(info.namespaced),
                versions=[version for version, _ in entries],
                verbs=set(info.verbs) or set(CRD_VERBS),
                subresources=set(info.subresources),
                shortnames=set(info.shortnames),
                categories=set(info.categories),
                custom=(group, plural) in self._crds,
            )
        self._kinds = kinds

    @property
    def kinds(self) -> dict[KindKey, KindInfo]:
        return self._kinds

    def status_subresource_kinds(self) -> list[str]:
        """Kinds whose main-resource writes ignore ``.status`` (declared via discovery or CRDs)."""
        return sorted(_qualified(kind) for kind in self._kinds.values() if kind.has_status)

    def resolve(self, ref: str | KindInfo | tuple[str, str]) -> KindInfo:
        """
        Find a kind by any common spelling: ``configmaps``, ``ConfigMap``, ``v1/configmaps``,
        ``apps/v1/deployments``, ``deployments.apps``, ``widgets.example.com``, ``cm``, a (group, plural).
        """
        if isinstance(ref, KindInfo):
            return ref
        if isinstance(ref, tuple):
            return self._kinds[ref]
        candidates: list[KindInfo] = []
        parts = ref.split('/')
        for kind in self._kinds.values():
            if len(parts) == 3 and (kind.group, kind.plural) == (parts[0], parts[2]) and parts[1] in kind.versions:
                candidates.append(kind)
            elif len(parts) == 2 and kind.group == '' and kind.plural == parts[1] and parts[0] in kind.versions:
                candidates.append(kind)
            elif len(parts) == 1 and (ref in (kind.plural, kind.kind, kind.singular) or ref in kind.shortnames
                                      or ref == f"{kind.plural}.{kind.group}"):
                candidates.append(kind)
        if not candidates:
            raise KeyError(f"Unknown resource: {ref!r}")
        candidates.sort(key=lambda kind: (kind.group != '', kind.custom is False, kind.group))
        return candidates[0]

    def resolve_body(self, body: Mapping[str, Any]) -> KindInfo:
        api_version: str = body.get('apiVersion', '')
        group, _, version = api_version.rpartition('/')
        for kind in self._kinds.values():
            if kind.group == group and kind.kind == body.get('kind') and version in kind.versions:
                return kind
        raise KeyError(f"Unknown apiVersion/kind: {api_version!r}/{body.get('kind')!r}")

    # ---------------------------------------------------------------------------------------------
    # Storage primitives (synchronous, in-loop)
    # ---------------------------------------------------------------------------------------------

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def _present(self, kind: KindInfo, obj: dict[str, Any], version: str | None) -> dict[str, Any]:
        result = copy.deepcopy(obj)
        result['apiVersion'] = kind.api_version(version)
        return result

    def _record(self, kind: KindInfo, etype: str, new: dict[str, Any], old: dict[str, Any] | None) -> None:
        """Write the history (kmock's ``.objects``), the event log, and notify the watchers."""
        meta = new['metadata']
        resource = kmock.resource(kind.group, kind.storage_version, kind.plural)
        key = (resource, meta.get('namespace'), meta['name'])
        if etype == 'DELETED':
            if key in self.objects:
                self.objects[key].delete()
        elif key in self.objects:
            self.objects[key].history.append(copy.deepcopy(new))
        else:
            self.objects[key] = copy.deepcopy(new)

        event = ChangeEvent(int(meta['resourceVersion']), kind.key, etype, copy.deepcopy(new),
                            copy.deepcopy(old) if old is not None else None)
        self._events.append(event)
        while len(self._events) > self.history_limit:
            self._compacted_rv = self._events.popleft().rv
        for watcher in list(self._watchers):
            if watcher.kind.key == kind.key:
                translated = watcher.translate(etype, new, old)
                if translated is not None:
                    translated = dict(translated, object=self._present(kind, translated['object'], watcher.version))
                    watcher.queue.put_nowait(translated)

    def _later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run a 'controller' step in the background (or at once without a running loop)."""
        def guarded() -> None:
            try:
                fn(*args)
            except Exception as e:  # a bug in the shim: make the test fail at teardown
                self.unexpected_errors.append(e)
                logger.exception("Background step of the emulator failed.")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            guarded()
        else:
            loop.call_later(delay, guarded)

    def _get(self, kind: KindInfo, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._store[kind.key].get((namespace if kind.namespaced else None, name))

    def get_object(self, ref: Any, namespace: str | None, name: str) -> dict[str, Any] | None:
        kind = self.resolve(ref)
        obj = self._get(kind, namespace, name)
        return None if obj is None else self._present(kind, obj, None)

    def list_objects(self, ref: Any, namespace: str | None = None,
                     label_selector: str | None = None, field_selector: str | None = None) -> list[dict[str, Any]]:
        kind = self.resolve(ref)
        watcher = Watcher(kind, kind.storage_version, namespace, None,
                          parse_label_selector(label_selector), parse_field_selector(field_selector))
        items = [obj for (_, _), obj in sorted(self._store[kind.key].items(), key=lambda kv: (kv[0][0] or '', kv[0][1]))
                 if watcher.matches(obj)]
        return [self._present(kind, obj, None) for obj in items]

    # ---------------------------------------------------------------------------------------------
    # Validation & type-specific behaviour
    # ---------------------------------------------------------------------------------------------

    def _validate(self, kind: KindInfo, obj: dict[str, Any]) -> None:
        meta = obj['metadata']
        name = meta['name']
        if not isinstance(name, str) or not name:
            raise invalid(kind, None, "metadata.name: Required value: name or generateName is required")
        if kind.group in PATH_SEGMENT_GROUPS:
            ok = name not in ('.', '..') and '/' not in name and '%' not in name
        elif kind.key == NAMESPACE_KIND_KEY:
            ok = len(name) <= 63 and bool(DNS1123_LABEL.fullmatch(name))
        else:
            ok = len(name) <= 253 and bool(DNS1123_SUBDOMAIN.fullmatch(name))
        if not ok:
            raise invalid(kind, name, f"metadata.name: Invalid value: {name!r}: "
                                      f"a lowercase RFC 1123 name must consist of lower case alphanumeric "
                                      f"characters, '-' or '.'")
        labels = meta.get('labels') or {}
        if not isinstance(labels, dict):
            raise invalid(kind, name, "metadata.labels: Invalid value: must be a map")
        for key, value in labels.items():
            prefix, _, lname = key.rpartition('/')
            if (not LABEL_NAME.fullmatch(lname) or len(lname) > 63
                    or (prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.fullmatch(prefix)))):
                raise invalid(kind, name, f"metadata.labels: Invalid value: {key!r}: invalid label key")
            if not isinstance(value, str) or len(value) > 63 or (value and not LABEL_NAME.fullmatch(value)):
                raise invalid(kind, name, f"metadata.labels: Invalid value: {value!r}: invalid label value")
        annotations = meta.get('annotations') or {}
        if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
            raise invalid(kind, name, "metadata.annotations: Invalid value: values must be strings")
        owner_refs = meta.get('ownerReferences') or []
        if not isinstance(owner_refs, list) or not all(isinstance(ref, dict) for ref in owner_refs):
            raise invalid(kind, name, "metadata.ownerReferences: Invalid value: must be a list of objects")
        for ref in owner_refs:
            missing = [field for field in ('apiVersion', 'kind', 'name', 'uid') if not ref.get(field)]
            if missing:
                raise invalid(kind, name, f"metadata.ownerReferences.{missing[0]}: Invalid value: must not be empty")
        finalizers = meta.get('finalizers') or []
        if not isinstance(finalizers, list) or not all(isinstance(f, str) and f for f in finalizers):
            raise invalid(kind, name, "metadata.finalizers: Invalid value: must be a list of strings")

    def _prepare(self, kind: KindInfo, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        """Type-specific server-side behaviour on writes."""
        meta = obj['metadata']
        if kind.key == NAMESPACE_KIND_KEY:
            meta.setdefault('labels', {})['kubernetes.io/metadata.name'] = meta['name']
            obj.setdefault('spec', {}).setdefault('finalizers', ['kubernetes'])
            if old is None:
                obj['status'] = {'phase': 'Active'}
        elif kind.key == SECRET_KIND_KEY:
            string_data = obj.pop('stringData', None) or {}
            data = obj.setdefault('data', {}) if (string_data or 'data' in obj) else {}
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            for key, value in data.items():
                try:
                    base64.b64decode(value, validate=True)
                except Exception:
                    raise invalid(kind, meta['name'], f"data[{key}]: Invalid value: not base64-encoded")
            obj.setdefault('type', 'Opaque')
        elif kind.custom:
            crd = self._store[CRD_KIND_KEY].get((None, self._crds.get(kind.key, '')))
            version = next((v for v in (crd or {}).get('spec', {}).get('versions', []) if v.get('storage')), None)
            schema = ((version or {}).get('schema') or {}).get('openAPIV3Schema')
            if schema and self.prune_custom_resources:
                pruned = prune_and_default(obj, schema, root=True)
                pruned['metadata'] = meta  # the same dict: callers keep filling it in
                obj.clear()
                obj.update(pruned)
            if crd is not None and version is not None and self.cr_validator is not None:
                problems = self.cr_validator(copy.deepcopy(crd), copy.deepcopy(obj),
                                             copy.deepcopy(old) if old is not None else None, version['name'])
                if problems:
                    raise invalid(kind, meta['name'], '; '.join(str(p) for p in problems))
        elif kind.key == CRD_KIND_KEY:
            self._validate_crd(kind, obj)
            if old is None:
                names = obj['spec']['names']
                storage = [v['name'] for v in obj['spec']['versions'] if v.get('storage')]
                obj['status'] = {
                    'acceptedNames': dict(names),
                    'storedVersions': storage,
                    'conditions': [
                        {'type': 'NamesAccepted', 'status': 'True', 'reason': 'NoConflicts',
                         'message': 'no conflicts found', 'lastTransitionTime': now_rfc3339()},
                        {'type': 'Established', 'status': 'True', 'reason': 'InitialNamesAccepted',
                         'message': 'the initial names have been accepted', 'lastTransitionTime': now_rfc3339()},
                    ],
                }

    def _validate_crd(self, kind: KindInfo, crd: dict[str, Any]) -> None:
        name = crd['metadata']['name']
        spec = crd.get('spec') or {}
        names = spec.get('names') or {}
        group, plural, ckind = spec.get('group'), names.get('plural'), names.get('kind')
        if not group or not plural or not ckind:
            raise invalid(kind, name, "spec.group, spec.names.plural and spec.names.kind are required")
        if name != f"{plural}.{group}":
            raise invalid(kind, name, f"metadata.name: Invalid value: {name!r}: must be spec.names.plural+\".\"+spec.group")
        if spec.get('scope') not in ('Namespaced', 'Cluster'):
            raise invalid(kind, name, "spec.scope: Unsupported value: must be Namespaced or Cluster")
        versions = spec.get('versions') or []
        if not versions or sum(bool(v.get('storage')) for v in versions) != 1:
            raise invalid(kind, name, "spec.versions: Invalid value: must have exactly one version marked as storage version")
        names.setdefault('singular', ckind.lower())
        names.setdefault('listKind', f"{ckind}List")

    def _register_crd(self, crd: dict[str, Any]) -> None:
        spec = crd['spec']
        group, names = spec['group'], spec['names']
        plural = names['plural']
        for resource in [r for r in self.resources if (r.group, r.plural) == (group, plural)]:
            del self.resources[resource]
        for version in spec['versions']:
            if not version.get('served', True):
                continue
            subresources = set((version.get('subresources') or {}).keys())
            self.resources[kmock.resource(group, version['name'], plural)] = kmock.ResourceInfo(
                kind=names['kind'], singular=names.get('singular') or names['kind'].lower(),
                namespaced=spec['scope'] == 'Namespaced', verbs=set(CRD_VERBS),
                shortnames=set(names.get('shortNames') or []), categories=set(names.get('categories') or []),
                subresources=subresources,
            )
        self._crds[(group, plural)] = crd['metadata']['name']
        self._rebuild_kinds()

    def _unregister_crd(self, crd: dict[str, Any]) -> None:
        group, plural = crd['spec']['group'], crd['spec']['names']['plural']
        kind = self._kinds.get((group, plural))
        if kind is not None:  # all custom objects vanish with their CRD (finalizers are not waited for)
            for (namespace, name), obj in list(self._store[kind.key].items()):
                self._remove(kind, obj)
            for watcher in [w for w in self._watchers if w.kind.key == kind.key]:
                watcher.queue.put_nowait(_STOP)
        for resource in [r for r in self.resources if (r.group, r.plural) == (group, plural)]:
            del self.resources[resource]
        self._crds.pop((group, plural), None)
        self._rebuild_kinds()

    def _check_namespace(self, kind: KindInfo, namespace: str | None) -> None:
        if not kind.namespaced:
            return
        if namespace is None:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        ns = self._store[NAMESPACE_KIND_KEY].get((None, namespace))
        if ns is None and self.auto_create_namespaces:
            self.create_object(NAMESPACE_KIND_KEY, None, {'metadata': {'name': namespace}})
        elif ns is None:
            raise ApiError(404, 'NotFound', f'namespaces "{namespace}" not found',
                           {'name': namespace, 'kind': 'namespaces'})
        elif ns['metadata'].get('deletionTimestamp'):
            raise ApiError(403, 'Forbidden',
                           f'unable to create new content in namespace {namespace} because it is being terminated',
                           {'name': namespace, 'kind': 'namespaces'})

    # ---------------------------------------------------------------------------------------------
    # Operations (synchronous, in-loop). The HTTP layer and the test facade both use these.
    # ---------------------------------------------------------------------------------------------

    def create_object(self, ref: Any, namespace: str | None, body: Any, *,
                      version: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        kind = self.resolve(ref)
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        obj = copy.deepcopy(body)
        meta = obj.get('metadata')
        if not isinstance(meta, dict):
            meta = obj['metadata'] = {}
        if obj.get('kind') not in (None, kind.kind):
            raise bad_request(f"the kind {obj.get('kind')!r} does not match the resource {_qualified(kind)}")

        if kind.namespaced:
            body_ns = meta.get('namespace')
            if body_ns and namespace and body_ns != namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
            namespace = namespace or body_ns
            self._check_namespace(kind, namespace)
            meta['namespace'] = namespace
        else:
            meta.pop('namespace', None)
            namespace = None

        if not meta.get('name') and meta.get('generateName'):
            for _ in range(100):
                suffix = ''.join(random.choice(GENERATE_NAME_ALPHABET) for _ in range(5))
                meta['name'] = f"{meta['generateName']}{suffix}"
                if (namespace, meta['name']) not in self._store[kind.key]:
                    break
        if not meta.get('name'):
            raise invalid(kind, None, "metadata.name: Required value: name or generateName is required")
        if (namespace, meta['name']) in self._store[kind.key]:
            raise ApiError(409, 'AlreadyExists', f'{_qualified(kind)} "{meta["name"]}" already exists',
                           {'name': meta['name'], 'group': kind.group, 'kind': kind.plural})

        for field in SERVER_METADATA:
            meta.pop(field, None)
        if kind.has_status:
            obj.pop('status', None)
        obj['apiVersion'] = kind.api_version(None)
        obj['kind'] = kind.kind
        self._validate(kind, obj)
        self._prepare(kind, obj, None)
        meta['uid'] = str(uuid.uuid4())
        meta['creationTimestamp'] = now_rfc3339()
        meta['generation'] = 1
        if dry_run:
            meta['resourceVersion'] = ''
            return self._present(kind, obj, version)

        meta['resourceVersion'] = str(self._next_rv())
        self._store[kind.key][(namespace, meta['name'])] = obj
        self._uids[meta['uid']] = (kind.key, (namespace, meta['name']))
        if kind.key == CRD_KIND_KEY:
            self._register_crd(obj)
        self._record(kind, 'ADDED', obj, None)
        if meta.get('ownerReferences') and self.gc_missing_owners:
            self._later(self.gc_delay, self._gc_check_owners, meta['uid'])
        return self._present(kind, obj, version)

    def update_object(self, ref: Any, namespace: str | None, name: str,
                      mutate: Callable[[dict[str, Any]], Any], *,
                      subresource: str | None = None, version: str | None = None,
                      replace: bool = False, dry_run: bool = False) -> dict[str, Any]:
        """
        Apply ``mutate(copy_of_current) -> candidate`` as a PATCH/PUT to the object or its status.

        The candidate's ``metadata.resourceVersion`` (if present and changed) is a precondition.
        """
        kind = self.resolve(ref)
        current = self._get(kind, namespace, name)
        if current is None:
            raise not_found(kind, name)
        if subresource not in (None, 'status') or (subresource == 'status' and not kind.has_status):
            raise not_found(kind, name)

        candidate = mutate(copy.deepcopy(current))
        if not isinstance(candidate, dict):
            raise bad_request("the resulting object must be a JSON object")
        cand_meta = candidate.get('metadata') if isinstance(candidate.get('metadata'), dict) else {}
        cur_meta = current['metadata']

        # Optimistic concurrency: a resourceVersion in the body/patch is a precondition.
        given_rv = cand_meta.get('resourceVersion')
        if replace and not given_rv and kind.custom:
            raise invalid(kind, name, "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update")
        if given_rv and given_rv != cur_meta['resourceVersion']:
            raise conflict(kind, name)
        if cand_meta.get('name', name) != name:
            raise bad_request(f"the name of the object ({cand_meta.get('name')}) does not match the name on the URL ({name})")
        if kind.namespaced and cand_meta.get('namespace', namespace) not in (namespace, None):
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        if candidate.get('kind') not in (None, kind.kind):
            raise bad_request(f"the kind {candidate.get('kind')!r} does not match the resource {_qualified(kind)}")

        if subresource == 'status':
            new = copy.deepcopy(current)
            if 'status' in candidate:
                new['status'] = candidate['status']
            else:
                new.pop('status', None)
        else:
            new = candidate
            new['metadata'] = cand_meta
            if kind.has_status:  # writes to the main resource ignore the status
                if 'status' in current:
                    new['status'] = copy.deepcopy(current['status'])
                else:
                    new.pop('status', None)
            for field in SERVER_METADATA + ('name', 'namespace'):
                if field in cur_meta:
                    cand_meta[field] = cur_meta[field]
                else:
                    cand_meta.pop(field, None)
        new['apiVersion'] = kind.api_version(None)
        new['kind'] = kind.kind

        new_meta = new['metadata']
        self._validate(kind, new)
        self._prepare(kind, new, current)
        if cur_meta.get('deletionTimestamp'):
            added = set(new_meta.get('finalizers') or []) - set(cur_meta.get('finalizers') or [])
            if added:
                raise invalid(kind, name, f"metadata.finalizers: Forbidden: no new finalizers can be added "
                                          f"if the object is being deleted, found new finalizers {sorted(added)!r}")

        if new == current:  # a no-op write changes nothing, not even the resourceVersion
            return self._present(kind, current, version)

        strip = lambda obj: {k: v for k, v in obj.items() if k not in ('metadata', 'status')}
        if strip(new) != strip(current):
            new_meta['generation'] = int(cur_meta.get('generation', 1)) + 1
        if dry_run:
            return self._present(kind, new, version)

        new_meta['resourceVersion'] = str(self._next_rv())
        self._store[kind.key][(new_meta.get('namespace'), name)] = new
        if kind.key == CRD_KIND_KEY:
            self._register_crd(new)
        self._record(kind, 'MODIFIED', new, current)
        if new_meta.get('deletionTimestamp') and not new_meta.get('finalizers'):
            self._remove(kind, new)
        elif new_meta.get('ownerReferences') and self.gc_missing_owners:
            if new_meta.get('ownerReferences') != cur_meta.get('ownerReferences'):
                self._later(self.gc_delay, self._gc_check_owners, new_meta['uid'])
        return self._present(kind, new, version)

    def patch_object(self, ref: Any, namespace: str | None, name: str, patch: Any, *,
                     content_type: str = 'application/merge-patch+json',
                     subresource: str | None = None, version: str | None = None,
                     dry_run: bool = False) -> dict[str, Any]:
        kind = self.resolve(ref)
        content_type = content_type.split(';')[0].strip().lower()
        if content_type == 'application/json-patch+json':
            if not isinstance(patch, list):
                raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")

            def mutate(obj: dict[str, Any]) -> Any:
                try:
                    return jsonpatch.apply_patch(obj, patch)
                except jsonpatch.JsonPatchTestFailed as e:
                    raise invalid(kind, name, f"the server rejected our request due to an error in our request: {e}")
                except (jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException) as e:
                    raise invalid(kind, name, f"the server rejected our request due to an error in our request: {e}")
                except (jsonpatch.InvalidJsonPatch, jsonpatch.JsonPatchException, TypeError, KeyError) as e:
                    raise bad_request(f"invalid JSON patch: {e}")
        elif content_type in ('application/merge-patch+json', 'application/strategic-merge-patch+json'):
            if content_type == 'application/strategic-merge-patch+json' and kind.custom:
                raise ApiError(415, 'UnsupportedMediaType',
                               f"the body of the request was in an unknown format - accepted media types include: "
                               f"application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")
            if not isinstance(patch, dict):
                raise bad_request("the patch must be a JSON object")
            # NB: strategic merge is approximated as a JSON merge patch (lists are replaced, not merged by keys).
            mutate = lambda obj: json_merge_patch(obj, patch)
        else:
            raise ApiError(415, 'UnsupportedMediaType',
                           f"the body of the request was in an unknown format ({content_type!r}) - the emulator accepts: "
                           f"application/json-patch+json, application/merge-patch+json, "
                           f"application/strategic-merge-patch+json (as a merge patch)")
        return self.update_object(kind, namespace, name, mutate,
                                  subresource=subresource, version=version, dry_run=dry_run)

    def replace_object(self, ref: Any, namespace: str | None, name: str, body: Any, *,
                       subresource: str | None = None, version: str | None = None,
                       dry_run: bool = False) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        return self.update_object(ref, namespace, name, lambda _: copy.deepcopy(body), replace=True,
                                  subresource=subresource, version=version, dry_run=dry_run)

    def delete_object(self, ref: Any, namespace: str | None, name: str, options: Mapping[str, Any] | None = None, *,
                      version: str | None = None) -> dict[str, Any]:
        kind = self.resolve(ref)
        options = options or {}
        current = self._get(kind, namespace, name)
        if current is None:
            raise not_found(kind, name)
        meta = current['metadata']
        preconditions = options.get('preconditions') or {}
        if preconditions.get('uid') and preconditions['uid'] != meta['uid']:
            raise conflict(kind, name)
        if preconditions.get('resourceVersion') and preconditions['resourceVersion'] != meta['resourceVersion']:
            raise conflict(kind, name)
        if options.get('dryRun'):
            return self._present(kind, current, version)
        if options.get('propagationPolicy') == 'Orphan' or options.get('orphanDependents') is True:
            self._orphaning.add(meta['uid'])
        if meta.get('deletionTimestamp'):
            return self._present(kind, current, version)  # already terminating: nothing changes

        if meta.get('finalizers') or kind.key == NAMESPACE_KIND_KEY:
            new = copy.deepcopy(current)
            new['metadata']['deletionTimestamp'] = now_rfc3339()
            new['metadata']['deletionGracePeriodSeconds'] = 0
            new['metadata']['generation'] = int(meta.get('generation', 1)) + 1
            if kind.key == NAMESPACE_KIND_KEY:
                new['status'] = {'phase': 'Terminating'}
            new['metadata']['resourceVersion'] = str(self._next_rv())
            self._store[kind.key][(new['metadata'].get('namespace'), name)] = new
            self._record(kind, 'MODIFIED', new, current)
            if kind.key == NAMESPACE_KIND_KEY:
                self._later(self.gc_delay, self._terminate_namespace, name)
            return self._present(kind, new, version)
        return self._present(kind, self._remove(kind, current), version)

    def _remove(self, kind: KindInfo, obj: dict[str, Any]) -> dict[str, Any]:
        """Really remove the object: DELETED event, then the background GC of its dependents."""
        meta = obj['metadata']
        key = (meta.get('namespace'), meta['name'])
        self._store[kind.key].pop(key, None)
        self._uids.pop(meta['uid'], None)
        final = copy.deepcopy(obj)
        final['metadata']['resourceVersion'] = str(self._next_rv())
        self._record(kind, 'DELETED', final, obj)
        if kind.key == CRD_KIND_KEY:
            self._unregister_crd(obj)
        orphan = meta['uid'] in self._orphaning
        self._orphaning.discard(meta['uid'])
        self._later(self.gc_delay, self._gc_dependents, meta['uid'], orphan)
        if kind.namespaced:
            ns = self._store[NAMESPACE_KIND_KEY].get((None, meta.get('namespace')))
            if ns is not None and ns['metadata'].get('deletionTimestamp'):
                self._later(self.gc_delay, self._finish_namespace, meta.get('namespace'))
        return final

    # ---------------------------------------------------------------------------------------------
    # Controllers: garbage collector & namespace lifecycle
    # ---------------------------------------------------------------------------------------------

    def _all_objects(self) -> Iterable[tuple[KindInfo, dict[str, Any]]]:
        for kind_key, objs in list(self._store.items()):
            kind = self._kinds.get(kind_key)
            if kind is not None:
                for obj in list(objs.values()):
                    yield kind, obj

    def _gc_dependents(self, owner_uid: str, orphan: bool) -> None:
        for kind, obj in self._all_objects():
            refs = obj['metadata'].get('ownerReferences') or []
            if not any(ref.get('uid') == owner_uid for ref in refs):
                continue
            meta = obj['metadata']
            if self._get(kind, meta.get('namespace'), meta['name']) is not obj:
                continue  # already gone/replaced in this pass
            if orphan:
                remaining = [ref for ref in refs if ref.get('uid') != owner_uid]
                self.update_object(kind, meta.get('namespace'), meta['name'],
                                   lambda o: json_merge_patch(o, {'metadata': {'ownerReferences': remaining or None}}))
            elif not any(self._owner_alive(ref, meta.get('namespace')) for ref in refs):
                self.delete_object(kind, meta.get('namespace'), meta['name'], {'propagationPolicy': 'Background'})

    def _owner_alive(self, ref: Mapping[str, Any], dependent_namespace: str | None) -> bool:
        """An owner counts only if it exists and is cluster-scoped or in the dependent's namespace."""
        located = self._uids.get(ref.get('uid', ''))
        if located is None:
            return False
        _, (owner_namespace, _) = located
        return owner_namespace is None or owner_namespace == dependent_namespace

    def _gc_check_owners(self, uid: str) -> None:
        if uid not in self._uids:
            return
        kind_key, (namespace, name) = self._uids[uid]
        kind = self._kinds[kind_key]
        obj = self._get(kind, namespace, name)
        refs = (obj or {}).get('metadata', {}).get('ownerReferences') or []
        if obj is not None and refs and not any(self._owner_alive(ref, namespace) for ref in refs):
            self.delete_object(kind, namespace, name, {'propagationPolicy': 'Background'})

    def _terminate_namespace(self, namespace: str) -> None:
        for kind, obj in self._all_objects():
            meta = obj['metadata']
            if kind.namespaced and meta.get('namespace') == namespace and not meta.get('deletionTimestamp'):
                self.delete_object(kind, namespace, meta['name'])
        self._finish_namespace(namespace)

    def _finish_namespace(self, namespace: str) -> None:
        ns = self._store[NAMESPACE_KIND_KEY].get((None, namespace))
        if ns is None or not ns['metadata'].get('deletionTimestamp') or ns['metadata'].get('finalizers'):
            return
        for kind, obj in self._all_objects():
            if kind.namespaced and obj['metadata'].get('namespace') == namespace:
                return
        self._remove(self._kinds[NAMESPACE_KIND_KEY], ns)

    # ---------------------------------------------------------------------------------------------
    # HTTP: request parsing, routing, user reactions, errors
    # ---------------------------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        try:
            body = await raw_request.read()
            request = self._make_request(raw_request, body)
            self._requests.append(request)
            response = await self._try_user_reactions(request)
            if response is None:
                response = await self._route(request)
            logger.debug("%s %s -> %s", raw_request.method, raw_request.path_qs, response.status)
            return response
        except ApiError as e:
            logger.debug("%s %s -> %s %s", raw_request.method, raw_request.path_qs, e.code, e.message)
            return aiohttp.web.json_response(e.as_status(), status=e.code)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as e:
            self.unexpected_errors.append(e)
            logger.exception("The emulator failed to serve %s %s", raw_request.method, raw_request.path_qs)
            status = ApiError(500, 'InternalError', f"{e!r}", {'traceback': traceback.format_exc()})
            return aiohttp.web.json_response(status.as_status(), status=500)

    def _make_request(self, raw_request: aiohttp.web.BaseRequest, body: bytes) -> rendering.Request:
        path = parse_api_path(raw_request.path)
        params = dict(raw_request.query)
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        method = raw_request.method.upper()
        action: enums.action | None = None
        if path.endpoint == 'resource':
            if method == 'GET' and _is_true(params.get('watch')):
                action = enums.action.WATCH
            elif method == 'GET':
                action = enums.action.FETCH if path.name else enums.action.LIST
            elif method == 'POST' and not path.name:
                action = enums.action.CREATE
            elif method == 'PATCH' and path.name:
                action = enums.action.UPDATE
            elif method == 'DELETE' and path.name:
                action = enums.action.DELETE
        resource = None
        if path.group is not None:
            resource = kmock.resource(path.group, path.version, path.plural)
        return rendering.Request(
            id=len(self._requests), raw_request=raw_request, method=method, url=raw_request.url,
            params=params, headers=dict(raw_request.headers), cookies=dict(raw_request.cookies),
            body=body, text=body.decode('utf-8', errors='replace'), data=data,
            action=action, resource=resource, namespace=path.namespace, name=path.name,
            subresource=path.subresource,
        )

    async def _try_user_reactions(self, request: rendering.Request) -> aiohttp.web.StreamResponse | None:
        """Serve explicitly declared kmock reactions first (not kmock's own fallbacks)."""
        payloads = [p for p in self._payloads if not (p.priorities and p.priorities[0] == -math.inf)]
        if not payloads:
            return None
        payloads.sort(key=lambda p: tuple(-x for x in p.priorities) + (0,) * (8 - len(p.priorities)))
        for payload in payloads:
            if request in payload._source and not payload._disabled.is_set():
                try:
                    return await payload(request)
                except rendering.ReactionMismatchError:
                    payload._disabled.set()
                except NotImplementedError:
                    pass
                except rendering.StreamingError as e:
                    raw_response = e.args[0]
                    await raw_response.write_eof()
                    return raw_response
        return None

    async def _route(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        assert request._raw_request is not None
        path = parse_api_path(request._raw_request.path)
        method = request.method.value if hasattr(request.method, 'value') else str(request.method)
        if path.endpoint == 'resource':
            return await self._serve_resource(request, path, method)
        if method != 'GET':
            raise ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')
        if path.endpoint == 'health':
            return aiohttp.web.Response(text='ok')
        payload = self._discovery(path, request)
        return aiohttp.web.json_response(payload)

    # ---------------------------------------------------------------------------------------------
    # Discovery
    # ---------------------------------------------------------------------------------------------

    def _group_versions(self) -> dict[str, list[str]]:
        groups: dict[str, set[str]] = collections.defaultdict(set)
        for kind in self._kinds.values():
            groups[kind.group].update(kind.versions)
        return {group: sorted(versions, key=version_priority) for group, versions in groups.items()}

    def _api_group(self, group: str, versions: list[str]) -> dict[str, Any]:
        entries = [{'groupVersion': f"{group}/{v}", 'version': v} for v in versions]
        return {'name': group, 'versions': entries, 'preferredVersion': entries[0]}

    def _discovery(self, path: ApiPath, request: rendering.Request) -> dict[str, Any]:
        groups = self._group_versions()
        if path.endpoint == 'root':
            paths = {'/api', '/api/v1', '/apis', '/version', '/healthz', '/livez', '/readyz'}
            for group, versions in groups.items():
                if group:
                    paths.add(f"/apis/{group}")
                    paths.update(f"/apis/{group}/{v}" for v in versions)
            return {'paths': sorted(paths)}
        if path.endpoint == 'version':
            return {'major': '1', 'minor': '31', 'gitVersion': 'v1.31.0-kmock', 'gitCommit': 'kmock',
                    'gitTreeState': 'clean', 'buildDate': '2024-08-13T00:00:00Z', 'goVersion': 'go1.22.5',
                    'compiler': 'gc', 'platform': 'linux/amd64'}
        if path.endpoint == 'api':
            host = request.headers.get('Host', '127.0.0.1')
            return {'kind': 'APIVersions', 'versions': ['v1'],
                    'serverAddressByClientCIDRs': [{'clientCIDR': '0.0.0.0/0', 'serverAddress': host}]}
        if path.endpoint == 'apis':
            return {'kind': 'APIGroupList', 'apiVersion': 'v1',
                    'groups': [self._api_group(g, vs) for g, vs in sorted(groups.items()) if g]}
        if path.endpoint == 'group' and path.group in groups and path.group:
            return dict(self._api_group(path.group, groups[path.group]), kind='APIGroup', apiVersion='v1')
        if path.endpoint == 'groupversion' and path.version in groups.get(path.group or '', []):
            resources: list[dict[str, Any]] = []
            for kind in sorted(self._kinds.values(), key=lambda k: k.plural):
                if kind.group != path.group or path.version not in kind.versions:
                    continue
                resources.append({
                    'name': kind.plural, 'singularName': kind.singular, 'namespaced': kind.namespaced,
                    'kind': kind.kind, 'verbs': sorted(kind.verbs),
                    'shortNames': sorted(kind.shortnames), 'categories': sorted(kind.categories),
                })
                for sub in sorted(kind.subresources):
                    resources.append({'name': f"{kind.plural}/{sub}", 'singularName': '', 'namespaced': kind.namespaced,
                                      'kind': kind.kind, 'verbs': ['get', 'patch', 'update']})
            group_version = f"{path.group}/{path.version}" if path.group else path.version
            return {'kind': 'APIResourceList', 'apiVersion': 'v1', 'groupVersion': group_version,
                    'resources': resources}
        raise ApiError(404, 'NotFound', 'the server could not find the requested resource')

    # ---------------------------------------------------------------------------------------------
    # Resource requests
    # ---------------------------------------------------------------------------------------------

    async def _serve_resource(self, request: rendering.Request, path: ApiPath, method: str) -> aiohttp.web.StreamResponse:
        kind = self._kinds.get((path.group or '', path.plural or ''))
        if kind is None or path.version not in kind.versions:
            raise not_found(None)
        if path.namespace is not None and not kind.namespaced:
            raise not_found(None)
        params = request.params
        namespace = path.namespace if kind.namespaced else None
        name, sub, version = path.name, path.subresource, path.version
        dry_run = bool(params.get('dryRun'))
        verb = {'GET': 'list' if not name else 'get', 'POST': 'create', 'PUT': 'update', 'PATCH': 'patch',
                'DELETE': 'delete' if name else 'deletecollection'}.get(method)
        if method == 'GET' and _is_true(params.get('watch')):
            verb = 'watch'
        if verb is None or (sub is None and verb not in kind.verbs):
            raise ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')

        if verb == 'watch':
            return await self._serve_watch(request, kind, version, namespace, name, params)
        if verb == 'list':
            return aiohttp.web.json_response(self._serve_list(kind, version, namespace, params))
        if verb == 'get':
            obj = self._get(kind, namespace, name)
            if obj is None or sub not in (None, 'status') or (sub == 'status' and not kind.has_status):
                raise not_found(kind, name)
            return aiohttp.web.json_response(self._present(kind, obj, version))
        if verb == 'create':
            if sub is not None:
                raise ApiError(405, 'MethodNotAllowed', f'the emulator does not support creating {sub}')
            obj = self.create_object(kind, namespace, request.data, version=version, dry_run=dry_run)
            return aiohttp.web.json_response(obj, status=201)
        if verb == 'update':
            obj = self.replace_object(kind, namespace, name, request.data, subresource=sub, version=version,
                                      dry_run=dry_run)
            return aiohttp.web.json_response(obj)
        if verb == 'patch':
            if request.data is None:
                raise bad_request("the body of the request is not valid JSON")
            content_type = request.headers.get('Content-Type', 'application/merge-patch+json')
            obj = self.patch_object(kind, namespace, name, request.data, content_type=content_type,
                                    subresource=sub, version=version, dry_run=dry_run)
            return aiohttp.web.json_response(obj)
        options = dict(request.data) if isinstance(request.data, dict) else {}
        for param, option in (('propagationPolicy', 'propagationPolicy'), ('dryRun', 'dryRun')):
            if param in params:
                options[option] = params[param]
        if verb == 'delete':
            if sub is not None:
                raise not_found(kind, name)
            return aiohttp.web.json_response(self.delete_object(kind, namespace, name, options, version=version))
        # deletecollection
        try:
            matching = self.list_objects(kind, namespace, params.get('labelSelector'), params.get('fieldSelector'))
        except ValueError as e:
            raise bad_request(str(e))
        for obj in matching:
            self.delete_object(kind, obj['metadata'].get('namespace'), obj['metadata']['name'], options)
        return aiohttp.web.json_response({'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Success'})

    def _serve_list(self, kind: KindInfo, version: str, namespace: str | None, params: Mapping[str, str]) -> dict[str, Any]:
        try:
            items = self.list_objects(kind, namespace, params.get('labelSelector'), params.get('fieldSelector'))
        except ValueError as e:
            raise bad_request(str(e))
        list_rv = str(self._rv)
        start = 0
        if params.get('continue'):
            try:
                token = json.loads(base64.urlsafe_b64decode(params['continue'].encode()))
                start, list_rv = int(token['start']), str(token['rv'])
            except Exception:
                raise bad_request("continue key is not valid")
        limit = int(params['limit']) if params.get('limit', '').isdigit() and int(params['limit']) > 0 else None
        page = items[start:start + limit] if limit else items[start:]
        metadata: dict[str, Any] = {'resourceVersion': list_rv}
        if limit and start + limit < len(items):
            token = {'start': start + limit, 'rv': list_rv}
            metadata['continue'] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            metadata['remainingItemCount'] = len(items) - start - limit
        for item in page:
            item['apiVersion'] = kind.api_version(version)
        return {'kind': f"{kind.kind}List", 'apiVersion': kind.api_version(version), 'metadata': metadata, 'items': page}

    async def _serve_watch(self, request: rendering.Request, kind: KindInfo, version: str,
                           namespace: str | None, name: str | None, params: Mapping[str, str]) -> aiohttp.web.StreamResponse:
        try:
            watcher = Watcher(kind, version, namespace, name, parse_label_selector(params.get('labelSelector')),
                              parse_field_selector(params.get('fieldSelector')))
        except ValueError as e:
            raise bad_request(str(e))
        rv = params.get('resourceVersion') or ''
        send_initial = _is_true(params.get('sendInitialEvents'))
        bookmarks = _is_true(params.get('allowWatchBookmarks'))
        timeout = float(params['timeoutSeconds']) if params.get('timeoutSeconds') else None

        # Snapshot and subscription are atomic: no `await` between them, and all writes are in this loop.
        initial: list[dict[str, Any]] = []
        gone = False
        if send_initial or rv in ('', '0'):
            for obj in self._store[kind.key].values():
                if watcher.matches(obj):
                    initial.append({'type': 'ADDED', 'object': self._present(kind, obj, version)})
        else:
            try:
                since = int(rv)
            except ValueError:
                raise bad_request(f"invalid resource version: {rv!r}")
            if since < self._compacted_rv:
                gone = True
            else:
                for event in self._events:
                    if event.rv > since and event.kind_key == kind.key:
                        translated = watcher.translate(event.etype, event.new, event.old)
                        if translated is not None:
                            initial.append(dict(translated, object=self._present(kind, translated['object'], version)))
        if not gone:
            self._watchers.add(watcher)

        assert request._raw_request is not None
        response = aiohttp.web.StreamResponse(status=200, headers={'Content-Type': 'application/json'})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request._raw_request)
            if gone:
                status = ApiError(410, 'Expired', f"too old resource version: {rv} ({self._compacted_rv})")
                await response.write(json.dumps({'type': 'ERROR', 'object': status.as_status()}).encode() + b'\n')
                await response.write_eof()
                return response
            for event in initial:
                await response.write(json.dumps(event).encode() + b'\n')
            if send_initial:
                await response.write(json.dumps(self._bookmark(kind, version, initial_end=True)).encode() + b'\n')
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout if timeout is not None else None
            while True:
                wait = self.bookmark_interval if bookmarks else None
                if deadline is not None:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    wait = remaining if wait is None else min(wait, remaining)
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), timeout=wait)
                except asyncio.TimeoutError:
                    if bookmarks and (deadline is None or loop.time() < deadline):
                        await response.write(json.dumps(self._bookmark(kind, version)).encode() + b'\n')
                    continue
                if event is _STOP:
                    break
                await response.write(json.dumps(event).encode() + b'\n')
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client has gone away
        finally:
            self._watchers.discard(watcher)
        return response

    def _bookmark(self, kind: KindInfo, version: str, initial_end: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {'resourceVersion': str(self._rv)}
        if initial_end:
            meta['annotations'] = {'k8s.io/initial-events-end': 'true'}
        return {'type': 'BOOKMARK', 'object': {'kind': kind.kind, 'apiVersion': kind.api_version(version), 'metadata': meta}}

    def watches(self) -> list[dict[str, Any]]:
        """The currently open watch streams (for tests that wait until a client watches something)."""
        return [{'resource': _qualified(w.kind), 'namespace': w.namespace, 'name': w.name,
                 'labelSelector': w.labels, 'fieldSelector': w.fields} for w in self._watchers]

    def stop_watches(self) -> None:
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(_STOP)


# --------------------------------------------------------------------------------------------------
# The server in a background thread
# --------------------------------------------------------------------------------------------------

class EmulatorServer:
    """Run a :class:`KubeEmulator` on 127.0.0.1:<free port> in a daemon thread with its own loop."""

    def __init__(self, emulator: KubeEmulator | None = None, *, host: str = '127.0.0.1', port: int = 0,
                 **options: Any) -> None:
        self._emulator_given = emulator
        self._options = options
        self.host = host
        self.port = port
        self.emulator: KubeEmulator
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: aiohttp.web.BaseRunner | None = None
        self._started = threading.Event()
        self._startup_error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        self._thread = threading.Thread(target=self._run, name='kube-emulator', daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError("The Kubernetes emulator did not start in time.")
        if self._startup_error is not None:
            raise RuntimeError("The Kubernetes emulator failed to start.") from self._startup_error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        try:
            loop.run_until_complete(self._startup())
        except BaseException as e:
            self._startup_error = e
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _startup(self) -> None:
        self.emulator = self._emulator_given or KubeEmulator(**self._options)
        await self.emulator.__aenter__()
        server = aiohttp.web.Server(self.emulator, handler_cancellation=True, access_log=None)
        self._runner = aiohttp.web.ServerRunner(server, shutdown_timeout=1.0)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        self.emulator.stop_watches()
        await asyncio.sleep(0)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.emulator.__aexit__(None, None, None)

    def stop(self, timeout: float = 10.0) -> None:
        if self.loop is None or self._thread is None or not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop)
        try:
            future.result(timeout)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("The Kubernetes emulator's thread did not stop.")

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 10.0, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` synchronously inside the emulator's loop; return its result."""
        assert self.loop is not None

        async def wrapper() -> Any:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------
# The synchronous facade for tests
# --------------------------------------------------------------------------------------------------

class KubeAPI:
    """
    What the ``kube_api`` fixture yields: the URL, client configs, and inspection helpers.

    ``ref`` arguments accept any spelling understood by :meth:`KubeEmulator.resolve`:
    ``'configmaps'``, ``'ConfigMap'``, ``'apps/v1/deployments'``, ``'widgets.example.com'``, ...
    Objects are returned as plain dicts (deep copies), or ``None`` if absent.
    """

    def __init__(self, server: EmulatorServer, tmpdir: str | None = None) -> None:
        self.server = server
        self._tmpdir = tmpdir or tempfile.mkdtemp(prefix='kube-api-')
        self.kubeconfig_path = os.path.join(self._tmpdir, 'kubeconfig.yaml')
        self.write_kubeconfig(self.kubeconfig_path)

    # Connection.
    @property
    def url(self) -> str:
        return self.server.url

    @property
    def emulator(self) -> KubeEmulator:
        """The emulator itself (kmock DSL, ``.objects`` history, ``.requests``). Mutate it only via ``call``."""
        return self.server.emulator

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.server.call(fn, *args, **kwargs)

    def configuration(self) -> Any:
        import kubernetes.client
        configuration = kubernetes.client.Configuration(host=self.url)
        configuration.verify_ssl = False
        configuration.api_key = {'BearerToken': 'kube-emulator-token'}
        configuration.api_key_prefix = {'BearerToken': 'Bearer'}
        return configuration

    def api_client(self) -> Any:
        import kubernetes.client
        return kubernetes.client.ApiClient(self.configuration())

    def kubeconfig(self, namespace: str = 'default') -> dict[str, Any]:
        return {
            'apiVersion': 'v1', 'kind': 'Config', 'preferences': {},
            'clusters': [{'name': 'kube-emulator', 'cluster': {'server': self.url}}],
            'users': [{'name': 'kube-emulator', 'user': {'token': 'kube-emulator-token'}}],
            'contexts': [{'name': 'kube-emulator',
                          'context': {'cluster': 'kube-emulator', 'user': 'kube-emulator', 'namespace': namespace}}],
            'current-context': 'kube-emulator',
        }

    def write_kubeconfig(self, path: str, namespace: str = 'default') -> str:
        with open(path, 'w', encoding='utf-8') as f:
            yaml.safe_dump(self.kubeconfig(namespace), f)
        return path

    def connection_info(self, namespace: str | None = None) -> Any:
        """For an ``@kopf.on.login()`` handler: ``return kube_api.connection_info()``."""
        import kopf
        return kopf.ConnectionInfo(server=self.url, insecure=True, token='kube-emulator-token',
                                   default_namespace=namespace)

    def kopf_login_handler(self) -> Callable[..., Any]:
        """A ready login function: ``kopf.on.login(registry=registry)(kube_api.kopf_login_handler())``."""
        def login_to_kube_emulator(**_: Any) -> Any:
            return self.connection_info()
        return login_to_kube_emulator

    # Inspection & direct manipulation (all run inside the emulator's loop, as the HTTP API does).
    def get(self, ref: Any, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.call(self.emulator.get_object, ref, namespace, name)

    def objects(self, ref: Any, namespace: str | None = None, *,
                label_selector: str | None = None, field_selector: str | None = None) -> list[dict[str, Any]]:
        return self.call(self.emulator.list_objects, ref, namespace, label_selector, field_selector)

    def exists(self, ref: Any, name: str, namespace: str | None = None) -> bool:
        return self.get(ref, name, namespace) is not None

    def create(self, body: Mapping[str, Any], namespace: str | None = None) -> dict[str, Any]:
        def create() -> dict[str, Any]:
            kind = self.emulator.resolve_body(body)
            return self.emulator.create_object(kind, namespace or body.get('metadata', {}).get('namespace'), dict(body))
        return self.call(create)

    def patch(self, ref: Any, name: str, patch: Any, namespace: str | None = None, *,
              subresource: str | None = None, content_type: str = 'application/merge-patch+json') -> dict[str, Any]:
        return self.call(self.emulator.patch_object, ref, namespace, name, patch,
                         content_type=content_type, subresource=subresource)

    def delete(self, ref: Any, name: str, namespace: str | None = None, **options: Any) -> dict[str, Any]:
        return self.call(self.emulator.delete_object, ref, namespace, name, options)

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
        return self.create({'apiVersion': 'v1', 'kind': 'Namespace',
                            'metadata': {'name': name, 'labels': dict(labels or {})}})

    def create_crd(self, crd: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
        """
        Create (or replace the spec of) a CRD; its resource is discoverable as soon as this returns.

        ``crd`` is a dict, or a path to a YAML file with one CRD (for several, use :meth:`load_manifests`).
        """
        if not isinstance(crd, Mapping):
            docs = [doc for doc in _read_yaml_docs(crd) if doc.get('kind') == 'CustomResourceDefinition']
            if len(docs) != 1:
                raise ValueError(f"Expected exactly one CRD in {crd}, found {len(docs)}.")
            crd = docs[0]

        def create() -> dict[str, Any]:
            kind = self.emulator.resolve(CRD_KIND_KEY)
            name = crd.get('metadata', {}).get('name')
            if name and self.emulator.get_object(kind, None, name) is not None:
                return self.emulator.update_object(kind, None, name, lambda obj: dict(obj, spec=copy.deepcopy(crd['spec'])))
            return self.emulator.create_object(kind, None, dict(crd))
        return self.call(create)

    def load_manifests(self, source: str | os.PathLike[str], namespace: str | None = None) -> list[dict[str, Any]]:
        """Create every object of a YAML file (or YAML text); CRDs first, so their objects can follow."""
        docs = _read_yaml_docs(source)
        docs.sort(key=lambda doc: doc.get('kind') != 'CustomResourceDefinition')
        return [self.create_crd(doc) if doc.get('kind') == 'CustomResourceDefinition' else self.create(doc, namespace)
                for doc in docs]

    def watches(self) -> list[dict[str, Any]]:
        """Open watch streams: ``[{'resource': 'widgets.example.com', 'namespace': 'default', ...}]``."""
        return self.call(self.emulator.watches)

    def resource_version(self) -> str:
        return self.call(lambda: self.emulator.resource_version)

    def status_subresource_kinds(self) -> list[str]:
        return self.call(self.emulator.status_subresource_kinds)

    @property
    def unexpected_errors(self) -> list[BaseException]:
        return list(self.emulator.unexpected_errors)


def _read_yaml_docs(source: str | os.PathLike[str]) -> list[dict[str, Any]]:
    text = str(source)
    if isinstance(source, os.PathLike) or ('\n' not in text and os.path.exists(text)):
        with open(source, encoding='utf-8') as f:
            text = f.read()
    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]
