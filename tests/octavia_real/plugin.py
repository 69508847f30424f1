"""pytest plugin: the real Octavia (from PyPI, in its own venv) for tests of the rendered config.

Register it with ``pytest_plugins = [..., "octavia_real.plugin"]`` in tests/conftest.py
(tests/ is on the pythonpath; ``octavia_real`` is a namespace package, it has no __init__.py,
and is not named ``octavia`` so it can never shadow the real package).

Fixtures
  octavia_venv  session   pathlib.Path of the venv made by tests/octavia_real/install-octavia.sh
                          ($OCTAVIA_VENV, default /opt/octavia-venv). Missing: the test is skipped
                          with the command to run; under CI=true it fails instead.
  octavia_run   session   run(argv, **kw) -> CompletedProcess: runs a program of that venv
                          (argv[0] is a name in its bin/), text mode, output captured, 300 s limit.
  octavia_db    function  a fresh, empty database and user on the loopback MariaDB (made with
                          octavia_operator.database.ensure_database through os_db_admin), as
                          {"url", "database", "user", "password", "host", "port"}; dropped afterwards.
"""
from __future__ import annotations

import os
import pathlib
import secrets
import string
import subprocess
from typing import Any, Callable

import pytest

HERE = pathlib.Path(__file__).resolve().parent
INSTALL_SCRIPT = HERE / "install-octavia.sh"
DEFAULT_VENV = "/opt/octavia-venv"
REQUIRED = ("octavia-db-manage", "oslo-config-validator", "python")

# The option namespaces of Octavia's own etc/config/octavia-config-generator.conf (same list in
# 2025.1 to 2026.2): oslo-config-validator checks the rendered files against them.
OCTAVIA_NAMESPACES = (
    "octavia", "oslo.db", "oslo.log", "oslo.messaging", "oslo.middleware.cors",
    "oslo.middleware.http_proxy_to_wsgi", "oslo.middleware.healthcheck", "oslo.policy",
    "keystonemiddleware.audit", "keystonemiddleware.auth_token", "cotyledon", "castellan.config",
)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def venv_path() -> pathlib.Path:
    return pathlib.Path(os.environ.get("OCTAVIA_VENV") or DEFAULT_VENV)


def missing(venv: pathlib.Path) -> str | None:
    """None when the venv has what the tests need, else why not."""
    for name in REQUIRED:
        if not (venv / "bin" / name).exists():
            return f"{venv}/bin/{name} is missing"
    return None


@pytest.fixture(scope="session")
def octavia_venv() -> pathlib.Path:
    venv = venv_path()
    why = missing(venv)
    if why:
        msg = (f"the real Octavia is not installed ({why}); run `bash {INSTALL_SCRIPT.relative_to(HERE.parent.parent)}`"
               f" (OCTAVIA_VENV={venv})")
        if _truthy(os.environ.get("CI")):
            pytest.fail(f"CI=true: {msg}", pytrace=False)
        pytest.skip(msg)
    return venv


@pytest.fixture(scope="session")
def octavia_run(octavia_venv: pathlib.Path) -> Callable[..., subprocess.CompletedProcess]:
    def run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONWARNINGS": "ignore", **kw.pop("env", {})}
        env.pop("PYTHONPATH", None)          # nothing of the project's venv leaks into Octavia's
        return subprocess.run([str(octavia_venv / "bin" / argv[0]), *argv[1:]], capture_output=True, text=True,
                              timeout=kw.pop("timeout", 300), stdin=subprocess.DEVNULL, env=env, **kw)
    return run


def _password(n: int = 24) -> str:
    # URL-hostile characters on purpose: they must survive connection_url -> SQLAlchemy
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n)) + "@:/%$"


@pytest.fixture
def octavia_db(os_db_admin: dict, unique_name: str) -> Any:
    from octavia_operator.backends import database as db

    admin = db.AdminCredentials(os_db_admin["host"], int(os_db_admin["port"]), os_db_admin["user"],
                                os_db_admin["password"])
    name = unique_name.replace("-", "_")
    database, user, password = f"{name}_octavia", f"{name}_o", _password()
    try:
        db.ensure_database(admin, database, user, "%", password)
        yield {"url": db.connection_url(admin.host, admin.port, user, password, database), "database": database,
               "user": user, "password": password, "host": admin.host, "port": admin.port}
    finally:
        db.drop_database_and_user(admin, database, user, "%")
