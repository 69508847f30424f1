"""OpenStack connections from a clouds.yaml held in a Secret, and error classification.

Every OpenStack service module (identity, image, compute, network, ...) uses the
Connection built here and :func:`classify` to turn SDK/keystoneauth exceptions into
the reconcile's StepError (the user must act) or TransientError (retry with backoff).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from typing import Any

import yaml

from ...errors import StepError, TransientError

_cache: dict[str, Any] = {}
_cache_lock = threading.Lock()
_private_dir: str | None = None


def _private_file(content: bytes, suffix: str) -> str:
    """Write content to a 0600 file in a 0700 directory, named by its hash (written once)."""
    global _private_dir
    if _private_dir is None:
        _private_dir = tempfile.mkdtemp(prefix="octavia-operator-")
        os.chmod(_private_dir, 0o700)
    path = os.path.join(_private_dir, hashlib.sha256(content).hexdigest()[:32] + suffix)
    if not os.path.exists(path):
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(path + ".tmp", path)
    return path


def connect(clouds_yaml: bytes, cloud: str, region: str, interface: str, cacert: bytes | None = None) -> Any:
    """A Connection for ``cloud`` in ``clouds_yaml``; cached while the inputs are unchanged."""
    import openstack.config
    from openstack import connection

    key = hashlib.sha256(b"\0".join([clouds_yaml, cloud.encode(), region.encode(), interface.encode(),
                                     cacert or b""])).hexdigest()
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    try:
        doc = yaml.safe_load(clouds_yaml) or {}
    except yaml.YAMLError as exc:
        raise StepError("InvalidCloudsYaml", f"the clouds.yaml in the credentials Secret is not YAML: {exc}") from None
    clouds = (doc.get("clouds") or {}) if isinstance(doc, dict) else {}
    if cloud not in clouds:
        raise StepError("CloudNotFound", f"clouds.yaml has no cloud named {cloud!r} "
                        f"(it has: {', '.join(sorted(clouds)) or 'none'})")
    path = _private_file(clouds_yaml, ".yaml")
    cfg = openstack.config.OpenStackConfig(config_files=[path], vendor_files=[], secure_files=[],
                                           load_envvars=False)
    kwargs: dict[str, Any] = {"region_name": region, "interface": interface}
    if cacert:
        kwargs["cacert"] = _private_file(cacert, ".pem")
    try:
        region_cfg = cfg.get_one(cloud=cloud, **kwargs)
    except Exception as exc:  # noqa: BLE001 - openstack.config raises several types
        raise StepError("InvalidCloudConfig", f"cloud {cloud!r}: {exc}") from None
    conn = connection.Connection(config=region_cfg)
    _count_requests(conn)
    with _cache_lock:
        _cache[key] = conn
    return conn


def _count_requests(conn: Any) -> None:
    """Count every HTTP request of this connection in the operator's metrics, by service, method and
    status (a hook on the underlying requests.Session). The service comes from the catalog of the token
    the session already holds: the hook never authenticates (it runs inside keystoneauth's own
    requests, authentication included, and would deadlock on its lock)."""
    from urllib.parse import urlsplit

    from ... import metrics
    prefixes: list[tuple[str, str]] = []
    auth_url = ((conn.config.get_auth_args() or {}).get("auth_url") or "").rstrip("/")

    def service_of(url: str) -> str:
        if not prefixes:
            access = getattr(conn.session.auth, "auth_ref", None)
            if access is not None:
                found = []
                for entry in access.service_catalog.catalog or []:
                    for ep in entry.get("endpoints") or []:
                        if ep.get("url"):
                            found.append((ep["url"].rstrip("/"), entry.get("type") or "other"))
                prefixes[:] = sorted(found, key=lambda x: -len(x[0]))
        for prefix, stype in prefixes:
            if url.startswith(prefix):
                return stype
        if auth_url and url.startswith(urlsplit(auth_url)._replace(path="").geturl()):
            return "identity"
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port}" if parts.hostname else "other"

    def hook(response: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            metrics.openstack_response(service_of(response.request.url), response.request.method,
                                       response.status_code)
        except Exception:  # noqa: BLE001 - metrics never break a request
            pass
        return response

    conn.session.session.hooks.setdefault("response", []).append(hook)


def forget(conn: Any) -> None:
    with _cache_lock:
        for k, v in list(_cache.items()):
            if v is conn:
                del _cache[k]


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and what caused it (the SDK wraps keystoneauth errors in SDKException)."""
    out: list[BaseException] = []
    while exc is not None and exc not in out and len(out) < 10:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return out


def classify(exc: BaseException, what: str) -> StepError:
    """Map an SDK / keystoneauth exception to a StepError a user can act on, or a TransientError."""
    from keystoneauth1 import exceptions as ka

    if isinstance(exc, StepError):
        return exc
    # prefer the most specific cause: a keystoneauth error wrapped in an SDKException
    for cause in reversed(_chain(exc)):
        if isinstance(cause, (ka.ConnectFailure, ka.ConnectTimeout, ka.RetriableConnectionFailure,
                              ka.Unauthorized, ka.EndpointNotFound)):
            return _classify_one(cause, what)
    return _classify_one(exc, what)


def _classify_one(exc: BaseException, what: str) -> StepError:
    from keystoneauth1 import exceptions as ka
    from openstack import exceptions as sdk
    if isinstance(exc, (ka.ConnectFailure, ka.ConnectTimeout, ka.RetriableConnectionFailure)):
        return TransientError("CloudUnreachable", f"{what}: cannot reach the cloud: {type(exc).__name__}")
    if isinstance(exc, ka.Unauthorized) or getattr(exc, "status_code", None) == 401:
        return StepError("CloudAuthFailed", f"{what}: the credentials were refused (401)")
    if isinstance(exc, ka.EndpointNotFound):
        return StepError("EndpointNotFound", f"{what}: {exc}")
    status = getattr(exc, "status_code", None) or getattr(exc, "http_status", None)
    if status == 403:
        return StepError("Forbidden", f"{what}: forbidden (403): the admin credentials lack a permission: "
                         f"{getattr(exc, 'details', '') or exc}")
    if status == 413 or (status == 409 and "quota" in str(exc).lower()) or "quota" in str(exc).lower():
        return StepError("QuotaExceeded", f"{what}: quota exceeded: {getattr(exc, 'details', '') or exc}")
    if isinstance(exc, sdk.HttpException) and status is not None and status >= 500:
        return TransientError("CloudError", f"{what}: the cloud answered {status}; retrying")
    if isinstance(exc, ka.http.HttpError) and (exc.http_status or 0) >= 500:
        return TransientError("CloudError", f"{what}: the cloud answered {exc.http_status}; retrying")
    if isinstance(exc, sdk.ResourceNotFound):
        return StepError("NotFound", f"{what}: {exc}")
    if isinstance(exc, sdk.BadRequestException):
        return StepError("Rejected", f"{what}: the cloud rejected the request: {getattr(exc, 'details', '') or exc}")
    if isinstance(exc, (sdk.SDKException, ka.ClientException)):
        return TransientError("CloudError", f"{what}: {type(exc).__name__}: {exc}")
    raise exc


def probe(conn: Any) -> dict[str, Any]:
    """Authenticate and say who we are; raises StepError/TransientError."""
    try:
        conn.authorize()
        access = conn.session.auth.get_access(conn.session)
        return {
            "auth_url": conn.config.get_auth_args().get("auth_url"),
            "user": access.username,
            "project": access.project_name,
            "region": conn.config.get_region_name(),
        }
    except Exception as exc:  # noqa: BLE001
        forget(conn)
        raise classify(exc, "authenticating") from None
