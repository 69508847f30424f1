"""Octavia's database on an existing MySQL/MariaDB server: the manual install's SQL, level-based.

The manual install runs, as the server's admin::

    CREATE DATABASE octavia;
    GRANT ALL PRIVILEGES ON octavia.* TO 'octavia'@'%' IDENTIFIED BY '<password>';

:func:`ensure_database` reaches the same state idempotently (``spec.database.managed``): it
writes only what differs and says what it wrote in ``Ensured.changes`` (human-readable, no
secret), so a converged server sees no write at all. :func:`drop_database_and_user` undoes it
(``deletionPolicy: Delete``, managed mode only). :func:`connection_url` builds the SQLAlchemy URL
that goes into ``[database] connection`` (in the secrets file), :func:`check_connection` proves a
URL works.

Errors are :class:`~octavia_operator.errors.StepError` (the user must act: wrong admin
password, missing privilege, unknown database) or :class:`~octavia_operator.errors.TransientError`
(the server does not answer; retried). No message ever contains a password: the server's own
error text is scrubbed of every secret this module handled, and dropped altogether for errors
that may quote a statement.
"""
from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import quote, unquote, urlsplit

import pymysql

from .openstack.common import Ensured
from ..errors import StepError, TransientError

log = logging.getLogger(__name__)

CHARSET = "utf8mb4"
COLLATION = "utf8mb4_general_ci"
CONNECT_TIMEOUT = 10   # seconds
IO_TIMEOUT = 60        # seconds, per read/write on the socket

DB_NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
USER_NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,32}$")
USER_HOST_RE = re.compile(r"^[A-Za-z0-9_.:%/\-]{1,255}$")

# MySQL/MariaDB error numbers (server ER_* and client CR_*)
_UNREACHABLE = {2002, 2003, 2005, 2006, 2013, 2055, 1040, 1053, 1205, 1213, 1927}
_AUTH = {1045, 1698, 1862, 1820}
_FORBIDDEN = {1044, 1142, 1143, 1227, 1410}
_UNKNOWN_DB = 1049
_QUOTES_STATEMENT = {1064, 1065, 1149}  # syntax errors echo part of the statement


@dataclass(frozen=True)
class AdminCredentials:
    """A MySQL/MariaDB account allowed to CREATE DATABASE, CREATE USER and GRANT (WITH GRANT OPTION)."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)


class DatabaseUnreachable(TransientError):
    def __init__(self, message: str):
        super().__init__("DatabaseUnreachable", message)


class DatabaseAuthFailed(StepError):
    """The server refused the credentials: the user fixes a Secret (retried after a while)."""

    retry = True

    def __init__(self, message: str):
        super().__init__("DatabaseAuthFailed", message)


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
            q = quote(s, safe="")
            if q != s:
                text = text.replace(q, "***")
    return text


def _classify(exc: BaseException, what: str, secrets: Iterable[str] = ()) -> StepError:
    """Map a PyMySQL exception to StepError/TransientError, with no secret in the message."""
    if isinstance(exc, StepError):
        return exc
    code = exc.args[0] if getattr(exc, "args", None) and isinstance(exc.args[0], int) else None
    detail = str(exc.args[1]) if len(getattr(exc, "args", ())) > 1 else type(exc).__name__
    if code in _QUOTES_STATEMENT:
        detail = "the server rejected the statement (syntax)"
    detail = _scrub(detail, secrets)
    if isinstance(exc, (OSError, TimeoutError)) or code in _UNREACHABLE:
        return DatabaseUnreachable(f"{what}: the database server does not answer or dropped the connection "
                                   f"({code or type(exc).__name__}): {detail}")
    if code in _AUTH:
        return DatabaseAuthFailed(f"{what}: the server refused the credentials ({code}): {detail}")
    if code in _FORBIDDEN:
        return StepError("DatabaseForbidden", f"{what}: the account lacks a privilege ({code}): {detail}; "
                                              "it needs CREATE, DROP and GRANT OPTION", retry=True)
    if code == _UNKNOWN_DB:
        return StepError("DatabaseNotFound", f"{what}: {detail}", retry=True)
    if isinstance(exc, pymysql.err.OperationalError):
        return DatabaseUnreachable(f"{what}: {code}: {detail}")
    return StepError("DatabaseError", f"{what}: {code or type(exc).__name__}: {detail}", retry=True)


def _connect(host: str, port: int, user: str, password: str, what: str, database: str | None = None,
             secrets: Iterable[str] = ()) -> pymysql.connections.Connection:
    try:
        return pymysql.connect(host=host, port=int(port), user=user, password=password, database=database,
                               charset=CHARSET, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                               read_timeout=IO_TIMEOUT, write_timeout=IO_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - classified
        raise _classify(exc, what, [password, *secrets]) from None


def _check_names(database: str, user: str | None = None, user_host: str | None = None) -> None:
    if not DB_NAME_RE.match(database or ""):
        raise StepError("InvalidDatabaseName", f"database name {database!r} must match {DB_NAME_RE.pattern}")
    if user is not None and not USER_NAME_RE.match(user):
        raise StepError("InvalidDatabaseName", f"database user name {user!r} must match {USER_NAME_RE.pattern}")
    if user_host is not None and not USER_HOST_RE.match(user_host):
        raise StepError("InvalidDatabaseName", f"user host {user_host!r} must match {USER_HOST_RE.pattern}")


def _grant_target(database: str) -> str:
    """The database as a GRANT target: `_` and `%` escaped, so the grant covers this database only."""
    return "`" + database.replace("_", r"\_").replace("%", r"\%") + "`"


def _has_full_grant(grants: list[str], database: str) -> bool:
    targets = {f"`{database}`", _grant_target(database)}
    for line in grants:
        m = re.match(r"^GRANT ALL PRIVILEGES ON (`(?:[^`]|``)+`)\.\* TO ", line)
        if m and m.group(1) in targets:
            return True
    return False


@contextlib.contextmanager
def _admin_sql(admin: "AdminCredentials", what: str, secrets: list[str]) -> Iterator[Callable[..., list[tuple]]]:
    """An admin connection as a ``run(sql, args)`` function whose errors are classified (secrets scrubbed)."""
    conn = _connect(admin.host, admin.port, admin.user, admin.password, what, secrets=secrets)
    try:
        with conn.cursor() as cur:
            def run(sql: str, args: Any = None) -> list[tuple]:
                try:
                    cur.execute(sql, args)
                    return list(cur.fetchall())
                except Exception as exc:  # noqa: BLE001 - classified
                    raise _classify(exc, what, secrets) from None
            yield run
    finally:
        conn.close()


def ensure_database(admin: AdminCredentials, database: str, user: str, user_host: str,
                    password: str) -> Ensured:
    """Make sure `database` exists (utf8mb4) and `user`@`user_host` can use it with `password`.

    Guarantees, after a successful return:
    - the database exists, with default character set utf8mb4 (an existing one is kept; only its
      default character set is corrected, which affects tables created later);
    - the account exists and authenticates with `password` (checked by connecting as it; the
      password is set only when that check fails, so a converged server sees no write);
    - the account holds ALL PRIVILEGES on that one database (the name's `_`/`%` escaped, so it
      matches no other database); no global privilege is granted, other grants are left alone.
    Returns ``Ensured(id=database, created=<database created>, changes=[...], extra={"user": ...,
    "user_created": bool})``; ``changes`` is empty when nothing was written.
    Raises DatabaseUnreachable (transient), DatabaseAuthFailed (admin credentials refused),
    StepError("DatabaseForbidden") (admin lacks a privilege) or another StepError.
    Note: the password check connects from where this code runs; if `user_host` does not match
    that address, the check always fails and the password is re-set on every call (harmless).
    """
    _check_names(database, user, user_host)
    secrets = [admin.password, password]
    what = f"database {database} on {admin.host}:{admin.port}"
    changes: list[str] = []
    created = user_created = False
    with _admin_sql(admin, what, secrets) as run:
        row = run("SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
                  (database,))
        if not row:
            run(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET {CHARSET} COLLATE {COLLATION}")
            created = True
            changes.append(f"created database {database} ({CHARSET})")
        elif row[0][0] != CHARSET:
            run(f"ALTER DATABASE `{database}` CHARACTER SET {CHARSET} COLLATE {COLLATION}")
            changes.append(f"set the default character set of database {database} to {CHARSET} "
                           f"(was {row[0][0]}; existing tables unchanged)")

        acct = (user, user_host)   # always passed as parameters: escaped by PyMySQL, '%' safe
        exists = run("SELECT 1 FROM mysql.user WHERE User = %s AND Host = %s", (user, user_host))
        if not exists:
            run("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (*acct, password))
            user_created = True
            changes.append(f"created database user '{user}'@'{user_host}'")
        elif not _authenticates(admin.host, admin.port, user, password, what, secrets):
            run("ALTER USER %s@%s IDENTIFIED BY %s", (*acct, password))
            changes.append(f"reset the password of database user '{user}'@'{user_host}' "
                           "(it no longer matched the generated one)")

        grants = [r[0] for r in run("SHOW GRANTS FOR %s@%s", acct)]
        if not _has_full_grant(grants, database):
            run(f"GRANT ALL PRIVILEGES ON {_grant_target(database)}.* TO %s@%s", acct)
            changes.append(f"granted ALL PRIVILEGES on {database}.* to '{user}'@'{user_host}'")
    for c in changes:
        log.info("%s: %s", what, c)
    return Ensured(id=database, created=created, changes=changes,
                   extra={"user": f"{user}@{user_host}", "user_created": user_created,
                          "host": admin.host, "port": admin.port})


def _authenticates(host: str, port: int, user: str, password: str, what: str, secrets: list[str]) -> bool:
    """True when `user` can log in with `password` (False on access denied; other errors raise)."""
    try:
        conn = _connect(host, port, user, password, what, secrets=secrets)
    except DatabaseAuthFailed:
        return False
    conn.close()
    return True


def drop_database_and_user(admin: AdminCredentials, database: str, user: str, user_host: str,
                           also: tuple[str, ...] = ()) -> Ensured:
    """Drop the database (and the databases in ``also``) and the account (``deletionPolicy: Delete``,
    managed mode only).

    Idempotent: what is already gone is fine (``changes`` lists only what was dropped). Drops
    exactly `database` and `user`@`user_host`, nothing else; the caller decides that they are the
    operator's to drop (databases and accounts carry no ownership marker).
    """
    _check_names(database, user, user_host)
    for extra in also:
        _check_names(extra)
    secrets = [admin.password]
    what = f"database {database} on {admin.host}:{admin.port}"
    changes: list[str] = []
    with _admin_sql(admin, what, secrets) as run:
        for db in (*also, database):
            if run("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (db,)):
                run(f"DROP DATABASE IF EXISTS `{db}`")
                changes.append(f"dropped database {db}")
        if run("SELECT 1 FROM mysql.user WHERE User = %s AND Host = %s", (user, user_host)):
            run("DROP USER IF EXISTS %s@%s", (user, user_host))
            changes.append(f"dropped database user '{user}'@'{user_host}'")
    for c in changes:
        log.info("%s: %s", what, c)
    return Ensured(id=database, changes=changes)


def connection_url(host: str, port: int, user: str, password: str, database: str) -> str:
    """The SQLAlchemy URL for ``[database] connection``: mysql+pymysql, utf8mb4.

    User and password are percent-encoded (every character outside A-Za-z0-9 and ``-._~``), so
    ``@ : / % $`` and the like survive SQLAlchemy's URL parsing, and no ``$`` reaches oslo.config
    (which would interpolate it). An IPv6 host is bracketed.
    """
    _check_names(database)
    h = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return (f"mysql+pymysql://{quote(user, safe='')}:{quote(password, safe='')}@{h}:{int(port)}/{database}"
            f"?charset={CHARSET}")


@dataclass(frozen=True)
class _URL:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str | None


def _parse_url(url: str) -> _URL:
    try:
        parts = urlsplit(url)
        port = parts.port or 3306
    except ValueError:
        raise StepError("InvalidDatabaseURL", "the database URL is not a URL") from None
    if parts.scheme not in ("mysql", "mysql+pymysql"):
        raise StepError("InvalidDatabaseURL", f"the database URL must be mysql+pymysql://..., not {parts.scheme}://")
    if not parts.hostname:
        raise StepError("InvalidDatabaseURL", "the database URL has no host")
    return _URL(parts.hostname, port, unquote(parts.username or ""), unquote(parts.password or ""),
                parts.path.lstrip("/") or None)


def check_connection(url: str) -> None:
    """Connect with a ``mysql+pymysql://`` URL and run ``SELECT 1``; return None when that works.

    Raises DatabaseUnreachable (transient), DatabaseAuthFailed, StepError("DatabaseNotFound"),
    StepError("InvalidDatabaseURL"); messages never contain the password (nor the URL).
    """
    u = _parse_url(url)
    what = f"database {u.database or ''} on {u.host}:{u.port} as {u.user}"
    conn = _connect(u.host, u.port, u.user, u.password, what, database=u.database, secrets=[url])
    try:
        with conn.cursor() as cur:
            try:
                cur.execute("SELECT 1")
                cur.fetchall()
            except Exception as exc:  # noqa: BLE001 - classified
                raise _classify(exc, what, [u.password, url]) from None
    finally:
        conn.close()
