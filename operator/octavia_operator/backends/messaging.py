"""Octavia's vhost and user on an existing RabbitMQ, through its management HTTP API.

The manual install runs, as the broker's admin::

    rabbitmqctl add_vhost octavia
    rabbitmqctl add_user octavia <password>
    rabbitmqctl set_permissions -p octavia octavia ".*" ".*" ".*"

:func:`ensure_rabbitmq` reaches the same state idempotently (``spec.messaging.managed``) through
the management plugin's HTTP API (``rabbitmq_management``, an account with the ``administrator``
tag): it writes only what differs and lists what it wrote in ``Ensured.changes`` (human-readable,
never a password), so a converged broker sees GET requests only. :func:`delete_vhost_and_user`
undoes it (``deletionPolicy: Delete``). :func:`transport_url` builds ``[DEFAULT] transport_url``.

Errors are :class:`~octavia_operator.errors.TransientError` ``MessagingUnreachable`` (no answer,
timeout, 5xx) or :class:`~octavia_operator.errors.StepError`: ``MessagingAuthFailed`` (the admin
credentials are refused; retried), ``MessagingForbidden`` (the account lacks the administrator
tag), ``MessagingError`` (anything else). No message or log line ever contains a password.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import quote

import requests

from .openstack.common import Ensured
from ..errors import StepError, TransientError

log = logging.getLogger(__name__)

TIMEOUT = (10, 60)           # seconds: connect, read
FULL = ".*"                  # configure, write and read patterns granted on the vhost


@dataclass(frozen=True)
class MgmtCredentials:
    """The management API's base URL (``http://host:15672``, a path prefix allowed) and an
    account with the ``administrator`` tag."""

    url: str
    user: str
    password: str = field(repr=False)


class MessagingUnreachable(TransientError):
    def __init__(self, message: str):
        super().__init__("MessagingUnreachable", message)


class MessagingAuthFailed(StepError):
    """The broker refused the admin credentials: the user fixes a Secret (retried after a while)."""

    retry = True

    def __init__(self, message: str):
        super().__init__("MessagingAuthFailed", message)


class MessagingForbidden(StepError):
    def __init__(self, message: str):
        super().__init__("MessagingForbidden", message)


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
            q = quote(s, safe="")
            if q != s:
                text = text.replace(q, "***")
    return text


def _seg(value: str) -> str:
    """One path segment of the API: everything but unreserved characters encoded (``/`` is ``%2F``)."""
    return quote(value, safe="")


class _Api:
    """A thin client: one method per request, every failure mapped to a StepError."""

    def __init__(self, admin: MgmtCredentials, session: requests.Session | None, secrets: list[str]):
        self.base = admin.url.rstrip("/") + "/api"
        self.admin = admin
        self.session = session or requests.Session()
        self.own_session = session is None
        self.secrets = secrets
        self.where = f"RabbitMQ management API {admin.url.rstrip('/')}"

    def close(self) -> None:
        if self.own_session:
            self.session.close()

    def _reason(self, resp: requests.Response) -> str:
        try:
            body = resp.json()
            text = str(body.get("reason") or body.get("error") or "") if isinstance(body, dict) else ""
        except ValueError:
            text = ""
        return _scrub(text[:300], self.secrets)

    def request(self, method: str, path: str, *, auth: tuple[str, str] | None = None, json: Any = None,
                ok404: bool = False) -> requests.Response | None:
        """Send one request as the admin (or `auth`); None for a 404 when `ok404`."""
        what = f"{method} {path.split('?')[0]} on {self.where}"
        user, password = auth or (self.admin.user, self.admin.password)
        try:
            # as UTF-8 bytes: requests would encode str credentials as latin-1, RabbitMQ reads UTF-8
            resp = self.session.request(method, self.base + path, auth=(user.encode(), password.encode()),
                                        json=json, timeout=TIMEOUT,
                                        headers={"Accept": "application/json"})
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise MessagingUnreachable(f"{self.where} does not answer ({type(exc).__name__})") from None
        except requests.RequestException as exc:
            raise StepError("MessagingError", f"{what}: {type(exc).__name__}", retry=True) from None
        if resp.status_code == 404 and ok404:
            return None
        if resp.status_code < 300:
            return resp
        reason = self._reason(resp)
        if auth is not None:       # a check made as another user: the caller interprets it
            return resp
        if resp.status_code >= 500:
            raise MessagingUnreachable(f"{what}: the broker answered {resp.status_code} {reason}".strip())
        if resp.status_code == 401 and reason.lower().startswith("not "):
            # "Not administrator user", "Not management user": authenticated, but the tags are missing
            raise MessagingForbidden(f"{what}: account {self.admin.user!r} is not allowed ({reason}); it needs "
                                     "the administrator tag")
        if resp.status_code == 401:
            raise MessagingAuthFailed(f"{self.where} refused the credentials of {self.admin.user!r} ({reason})")
        if resp.status_code == 403:
            raise MessagingForbidden(f"{what}: forbidden for {self.admin.user!r} ({reason}); it needs the "
                                     "administrator tag")
        raise StepError("MessagingError", f"{what}: {resp.status_code} {reason}".strip(), retry=True)

    def get_json(self, path: str, *, ok404: bool = False) -> Any:
        resp = self.request("GET", path, ok404=ok404)
        if resp is None:
            return None
        try:
            return resp.json()
        except ValueError:
            raise StepError("MessagingError", f"{self.where} answered GET {path} with something that is not JSON: "
                                              "is managementURL the RabbitMQ management API?",
                            retry=True) from None

    def check_admin(self) -> None:
        me = self.get_json("/whoami")
        tags = me.get("tags") if isinstance(me, dict) else None
        if isinstance(tags, str):                      # RabbitMQ < 3.9: "administrator,monitoring"
            tags = [t for t in tags.split(",") if t]
        if not isinstance(tags, list):
            raise StepError("MessagingError", f"{self.where}: unexpected answer to GET /whoami: is managementURL "
                                              "the RabbitMQ management API?", retry=True)
        if "administrator" not in tags:
            raise MessagingForbidden(f"account {self.admin.user!r} on {self.where} lacks the administrator tag "
                                     f"(it has {', '.join(tags) or 'none'}): it cannot create vhosts, users and "
                                     "permissions")

    def authenticates(self, user: str, password: str) -> bool:
        """True when `user` logs in with `password` (a GET as that user: no write).

        A user without management tags gets 401 "Not management user" once the password is right,
        and 401 "Login failed" when it is wrong.
        """
        resp = self.request("GET", "/whoami", auth=(user, password))
        assert resp is not None
        if resp.status_code < 300:
            return True
        if resp.status_code >= 500:
            raise MessagingUnreachable(f"GET /whoami on {self.where}: the broker answered {resp.status_code}")
        return resp.status_code == 401 and self._reason(resp).lower().startswith("not ")


# What survives oslo.messaging's rabbit driver: it unquotes the transport_url, then rebuilds a URL
# for kombu with the vhost inserted as is and user/password re-quoted with "/" left unencoded, and
# kombu unquotes that again. So the vhost is "/" or plain characters, and no "/" in user or password.
VHOST_RE = re.compile(r"^(/|[A-Za-z0-9_.-]{1,255})$")
USER_RE = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")


def _check_names(vhost: str, user: str) -> None:
    if not VHOST_RE.match(vhost or ""):
        raise StepError("InvalidMessagingName", f"RabbitMQ vhost {vhost!r} must be '/' or match "
                                                "[A-Za-z0-9_.-]{1,255} (oslo.messaging cannot carry other characters)")
    if not USER_RE.match(user or ""):
        raise StepError("InvalidMessagingName", f"RabbitMQ user name {user!r} must match {USER_RE.pattern}")


def ensure_rabbitmq(admin: MgmtCredentials, vhost: str, user: str, password: str, *,
                    session: requests.Session | None = None) -> Ensured:
    """Make sure `vhost` exists and `user` can use it (and only it, as far as this call goes) with `password`.

    Guarantees, after a successful return:
    - the vhost exists (an existing one is used as it is);
    - the user exists (created without tags: it cannot use the management API) and authenticates
      with `password` (checked by a GET /api/whoami as that user; the password is set only when that
      check fails, and the user's existing tags are kept);
    - the user has configure, write and read ``.*`` on that vhost; permissions elsewhere are not
      touched (none are granted).
    Returns ``Ensured(id=vhost, created=<vhost created>, changes=[...], extra={"user": user,
    "user_created": bool})``; ``changes`` is empty when nothing was written (GET requests only).
    Raises MessagingUnreachable (transient), MessagingAuthFailed (admin refused), MessagingForbidden
    (no administrator tag) or StepError. `session` is for tests (to observe the requests).
    """
    _check_names(vhost, user)
    if user == admin.user:
        raise StepError("InvalidMessagingUser", f"the RabbitMQ user for Octavia must not be the admin account "
                                                f"{admin.user!r}: its password would be replaced")
    api = _Api(admin, session, [admin.password, password])
    changes: list[str] = []
    created = user_created = False
    try:
        api.check_admin()
        v, u = _seg(vhost), _seg(user)
        if api.get_json(f"/vhosts/{v}", ok404=True) is None:
            api.request("PUT", f"/vhosts/{v}", json={"description": "Octavia (created by octavia-operator)"})
            created = True
            changes.append(f"created RabbitMQ vhost {vhost!r}")
        existing = api.get_json(f"/users/{u}", ok404=True)
        if existing is None:
            api.request("PUT", f"/users/{u}", json={"password": password, "tags": ""})
            user_created = True
            changes.append(f"created RabbitMQ user {user!r}")
        elif not api.authenticates(user, password):
            tags = existing.get("tags") or []
            if isinstance(tags, str):
                tags = [t for t in tags.split(",") if t]
            api.request("PUT", f"/users/{u}", json={"password": password, "tags": ",".join(tags)})
            changes.append(f"reset the password of RabbitMQ user {user!r} (it no longer matched the generated one)")
        perms = api.get_json(f"/permissions/{v}/{u}", ok404=True)
        if not perms or any(perms.get(k) != FULL for k in ("configure", "write", "read")):
            api.request("PUT", f"/permissions/{v}/{u}", json={"configure": FULL, "write": FULL, "read": FULL})
            changes.append(f"granted configure/write/read {FULL} on vhost {vhost!r} to {user!r}")
    finally:
        api.close()
    for c in changes:
        log.info("%s: %s", api.where, c)
    return Ensured(id=vhost, created=created, changes=changes,
                   extra={"user": user, "user_created": user_created, "management_url": admin.url})


def delete_vhost_and_user(admin: MgmtCredentials, vhost: str, user: str, *,
                          session: requests.Session | None = None) -> Ensured:
    """Delete the vhost (with its queues and exchanges) and the user (``deletionPolicy: Delete``).

    Idempotent: what is already gone is fine (``changes`` lists only what was deleted). Deletes
    exactly `vhost` and `user`; the default vhost ``/`` and the admin account itself are never
    deleted (``extra["kept"]`` says so). The caller decides that they are the operator's to delete.
    """
    _check_names(vhost, user)
    api = _Api(admin, session, [admin.password])
    changes: list[str] = []
    kept: list[str] = []
    try:
        api.check_admin()
        v, u = _seg(vhost), _seg(user)
        if vhost == "/":
            kept.append("vhost '/' (the broker's default vhost is never deleted)")
        elif api.get_json(f"/vhosts/{v}", ok404=True) is not None:
            api.request("DELETE", f"/vhosts/{v}", ok404=True)
            changes.append(f"deleted RabbitMQ vhost {vhost!r}")
        if user == admin.user:
            kept.append(f"user {user!r} (the admin account is never deleted)")
        elif api.get_json(f"/users/{u}", ok404=True) is not None:
            api.request("DELETE", f"/users/{u}", ok404=True)
            changes.append(f"deleted RabbitMQ user {user!r}")
    finally:
        api.close()
    for c in changes:
        log.info("%s: %s", api.where, c)
    return Ensured(id=vhost, changes=changes, extra={"kept": kept})


def transport_url(host: str, port: int, user: str, password: str, vhost: str) -> str:
    """``rabbit://user:password@host:port/vhost`` for ``[DEFAULT] transport_url``.

    User, password and vhost are percent-encoded (every character outside A-Za-z0-9 and ``-._~``),
    so ``@ : % $ # ?`` survive oslo.messaging's parsing (it unquotes each part) and no ``$`` reaches
    oslo.config; the default vhost ``/`` is ``%2F``. An IPv6 host is bracketed. Refused (StepError
    ``InvalidMessagingName``): a vhost other than ``/`` or ``[A-Za-z0-9_.-]+``, and a ``/`` in the
    user or password -- oslo.messaging's rabbit driver re-quotes them for kombu with ``/`` left as it
    is (and the vhost not quoted at all), which breaks the URL kombu parses.
    """
    _check_names(vhost, user)
    if "/" in password:
        raise StepError("InvalidMessagingName", "the RabbitMQ password must not contain '/' (oslo.messaging's "
                                                "rabbit driver passes it to kombu unencoded)")
    h = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"rabbit://{_seg(user)}:{_seg(password)}@{h}:{int(port)}/{_seg(vhost)}"
