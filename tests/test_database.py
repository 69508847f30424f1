"""octavia_operator.database against the real MariaDB of the loopback cloud (fixture os_db_admin).

Every test uses its own database and user names and drops them in teardown.
"""
from __future__ import annotations

import socket
from urllib.parse import unquote, urlsplit

import pymysql
import pytest

from octavia_operator.backends import database as db
from octavia_operator.errors import StepError, TransientError

pytestmark = pytest.mark.openstack

SPECIAL = "p@ss:w/rd%41$x#?&'\" ;[]="   # ASCII: PyMySQL sends str passwords as latin-1


def _admin_conn(a: dict) -> pymysql.connections.Connection:
    return pymysql.connect(host=a["host"], port=int(a["port"]), user=a["user"], password=a["password"],
                           autocommit=True)


def _sql(a: dict, sql: str, args=None) -> list[tuple]:
    conn = _admin_conn(a)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


@pytest.fixture
def admin(os_db_admin: dict) -> db.AdminCredentials:
    a = os_db_admin
    return db.AdminCredentials(a["host"], int(a["port"]), a["user"], a["password"])


@pytest.fixture
def names(os_db_admin: dict, unique_name: str):
    """(database, user, other_database): unique; dropped afterwards whatever happened."""
    base = unique_name.replace("-", "_")          # t_1a2b3c4d
    names = (f"{base}_db", f"{base}_u", f"{base}xdb")  # the other one matches `t_..._db` with _ as wildcard
    yield names
    for d in (names[0], names[2]):
        _sql(os_db_admin, f"DROP DATABASE IF EXISTS `{d}`")
    _sql(os_db_admin, "DROP USER IF EXISTS %s@%s", (names[1], "%"))


def _user_conn(admin: db.AdminCredentials, user: str, password: str, database: str | None = None):
    return pymysql.connect(host=admin.host, port=admin.port, user=user, password=password, database=database,
                           autocommit=True)


class SQLRecorder:
    """Records every statement PyMySQL sends (all cursors), to prove a call wrote nothing."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.statements: list[str] = []
        orig = pymysql.cursors.Cursor.execute
        rec = self.statements

        def execute(cur, query, args=None):
            rec.append(query.strip().split()[0].upper())
            return orig(cur, query, args)

        monkeypatch.setattr(pymysql.cursors.Cursor, "execute", execute)

    @property
    def writes(self) -> list[str]:
        return [s for s in self.statements if s not in ("SELECT", "SHOW")]


def test_creates_database_and_user_that_works_in_its_database_only(admin, names, os_db_admin):
    database, user, other = names
    _sql(os_db_admin, f"CREATE DATABASE `{other}`")
    pw = "Gen3rated-" + user
    res = db.ensure_database(admin, database, user, "%", pw)
    assert res.created and res.id == database and res.extra["user_created"] is True
    assert len(res.changes) == 3, res.changes        # database, user, grant
    charset = _sql(os_db_admin, "SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA "
                                "WHERE SCHEMA_NAME = %s", (database,))
    assert charset == [("utf8mb4",)]

    conn = _user_conn(admin, user, pw, database)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE amphora_t (id INT PRIMARY KEY, name VARCHAR(20))")
            cur.execute("INSERT INTO amphora_t VALUES (1, 'a')")
            cur.execute("SELECT name FROM amphora_t")
            assert cur.fetchall() == (("a",),)
            cur.execute("SHOW DATABASES")
            visible = {r[0] for r in cur.fetchall()}
            assert visible == {"information_schema", database}, visible
            with pytest.raises(pymysql.err.OperationalError) as e:
                cur.execute(f"USE `{other}`")
            assert e.value.args[0] == 1044      # access denied to that database
    finally:
        conn.close()
    grants = " ".join(r[0] for r in _sql(os_db_admin, "SHOW GRANTS FOR %s@%s", (user, "%")))
    assert "ON *.*" in grants and "GRANT USAGE ON *.*" in grants   # nothing global beyond USAGE
    assert "ALL PRIVILEGES ON *.*" not in grants and "WITH GRANT OPTION" not in grants


def test_second_call_writes_nothing(admin, names, os_db_admin, monkeypatch):
    database, user, _ = names
    db.ensure_database(admin, database, user, "%", "pw-" + user)
    grants = _sql(os_db_admin, "SHOW GRANTS FOR %s@%s", (user, "%"))
    rec = SQLRecorder(monkeypatch)
    again = db.ensure_database(admin, database, user, "%", "pw-" + user)
    assert again.changes == [] and not again.created and not again.wrote
    assert rec.statements and rec.writes == [], rec.statements
    assert _sql(os_db_admin, "SHOW GRANTS FOR %s@%s", (user, "%")) == grants


def test_changed_password_is_repaired(admin, names, os_db_admin, monkeypatch):
    database, user, _ = names
    pw = "right-" + user
    db.ensure_database(admin, database, user, "%", pw)
    _sql(os_db_admin, "ALTER USER %s@%s IDENTIFIED BY %s", (user, "%", "changed-by-hand"))
    with pytest.raises(pymysql.err.OperationalError):
        _user_conn(admin, user, pw).close()
    rec = SQLRecorder(monkeypatch)
    res = db.ensure_database(admin, database, user, "%", pw)
    assert len(res.changes) == 1 and "password" in res.changes[0], res.changes
    assert rec.writes == ["ALTER"]
    assert pw not in " ".join(res.changes)
    _user_conn(admin, user, pw, database).close()


def test_revoked_grant_is_repaired(admin, names, os_db_admin):
    database, user, _ = names
    pw = "pw-" + user
    db.ensure_database(admin, database, user, "%", pw)
    _sql(os_db_admin, "REVOKE ALL PRIVILEGES, GRANT OPTION FROM %s@%s", (user, "%"))
    with pytest.raises(pymysql.err.OperationalError):
        _user_conn(admin, user, pw, database).close()
    res = db.ensure_database(admin, database, user, "%", pw)
    assert len(res.changes) == 1 and "granted ALL PRIVILEGES" in res.changes[0]
    _user_conn(admin, user, pw, database).close()


def test_dropped_database_is_recreated(admin, names, os_db_admin):
    database, user, _ = names
    pw = "pw-" + user
    db.ensure_database(admin, database, user, "%", pw)
    _sql(os_db_admin, f"DROP DATABASE `{database}`")
    res = db.ensure_database(admin, database, user, "%", pw)
    assert res.created and len(res.changes) == 1
    _user_conn(admin, user, pw, database).close()   # the grant on the name survived the drop


def test_wrong_admin_password_is_auth_failed_without_the_password(admin, names):
    bad = db.AdminCredentials(admin.host, admin.port, admin.user, "Wr0ng-Pass-" + names[1])
    with pytest.raises(db.DatabaseAuthFailed) as e:
        db.ensure_database(bad, names[0], names[1], "%", "Secret-" + names[1])
    assert e.value.reason == "DatabaseAuthFailed" and not isinstance(e.value, TransientError)
    assert bad.password not in str(e.value) and ("Secret-" + names[1]) not in str(e.value)
    assert "Wr0ng" not in repr(bad)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_transient(names):
    nowhere = db.AdminCredentials("127.0.0.1", _free_port(), "root", "Secret-" + names[1])
    with pytest.raises(db.DatabaseUnreachable) as e:
        db.ensure_database(nowhere, names[0], names[1], "%", "pw")
    assert isinstance(e.value, TransientError) and e.value.reason == "DatabaseUnreachable"
    assert nowhere.password not in str(e.value)
    with pytest.raises(TransientError):
        db.check_connection(db.connection_url("127.0.0.1", nowhere.port, "u", "pw", "octavia"))


def test_special_password_round_trips_through_the_url(admin, names):
    database, user, _ = names
    res = db.ensure_database(admin, database, user, "%", SPECIAL)
    assert res.created
    url = db.connection_url(admin.host, admin.port, user, SPECIAL, database)
    assert url.startswith(f"mysql+pymysql://{user}:") and url.endswith(f"@{admin.host}:{admin.port}/{database}"
                                                                       "?charset=utf8mb4")
    assert "$" not in url and "@" not in url.split("://", 1)[1].rsplit("@", 1)[0]
    parts = urlsplit(url)
    assert unquote(parts.password) == SPECIAL and parts.hostname == admin.host and parts.port == admin.port
    db.check_connection(url)                                  # connects as the user, to the database
    assert db.ensure_database(admin, database, user, "%", SPECIAL).changes == []  # the check logs in too
    with pytest.raises(db.DatabaseAuthFailed) as e:
        db.check_connection(db.connection_url(admin.host, admin.port, user, SPECIAL + "x", database))
    assert SPECIAL not in str(e.value) and "p@ss" not in str(e.value)


def test_check_connection_unknown_database(admin, names):
    database, user, _ = names
    db.ensure_database(admin, database, user, "%", "pw-" + user)
    with pytest.raises(StepError) as e:
        db.check_connection(db.connection_url(admin.host, admin.port, user, "pw-" + user, database + "_nope"))
    # the user has no privilege on that name: the server says access denied (1044), not "unknown"
    assert e.value.reason in ("DatabaseNotFound", "DatabaseForbidden")


def test_drop_database_and_user_is_idempotent(admin, names, os_db_admin):
    database, user, other = names
    _sql(os_db_admin, f"CREATE DATABASE `{other}`")
    db.ensure_database(admin, database, user, "%", "pw-" + user)
    res = db.drop_database_and_user(admin, database, user, "%")
    assert len(res.changes) == 2
    assert not _sql(os_db_admin, "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (database,))
    assert not _sql(os_db_admin, "SELECT 1 FROM mysql.user WHERE User = %s", (user,))
    assert _sql(os_db_admin, "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (other,))
    assert db.drop_database_and_user(admin, database, user, "%").changes == []


def test_bad_names_are_refused_before_any_sql(admin):
    for database, user, host in (("oct`; DROP", "u", "%"), ("octavia", "u'x", "%"), ("octavia", "u", "a'b")):
        with pytest.raises(StepError) as e:
            db.ensure_database(admin, database, user, host, "pw")
        assert e.value.reason == "InvalidDatabaseName"


# --- pure helpers (no server needed, but cheap enough to live here) ---------------------------

def test_connection_url_brackets_ipv6_and_quotes_the_user():
    assert db.connection_url("fd00::1", 3306, "oc tavia", "p", "octavia") == \
        "mysql+pymysql://oc%20tavia:p@[fd00::1]:3306/octavia?charset=utf8mb4"


def test_grant_target_escapes_wildcards():
    assert db._grant_target("oct_avia") == r"`oct\_avia`"
    assert db._has_full_grant([r"GRANT ALL PRIVILEGES ON `oct\_avia`.* TO `u`@`%`"], "oct_avia")
    assert db._has_full_grant(["GRANT ALL PRIVILEGES ON `octavia`.* TO `u`@`%`"], "octavia")
    assert not db._has_full_grant(["GRANT SELECT ON `octavia`.* TO `u`@`%`"], "octavia")
    assert not db._has_full_grant(["GRANT ALL PRIVILEGES ON `octavia2`.* TO `u`@`%`"], "octavia")
