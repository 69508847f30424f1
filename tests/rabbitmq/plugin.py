"""pytest plugin: a real RabbitMQ (Debian's rabbitmq-server) on 127.0.0.1, started by the fixture.

Register it with ``pytest_plugins = [..., "rabbitmq.plugin"]`` in tests/conftest.py (tests/ is on
the pythonpath; ``rabbitmq`` is a namespace package without __init__.py; no installed package of
that name exists to be shadowed). Install the broker with ``bash tests/rabbitmq/install-rabbitmq.sh``.

Fixture
  rabbitmq_admin  session  {"amqp_host", "amqp_port", "management_url", "user", "password", "nodename",
                            "base"}: a broker with the management plugin, listening on 127.0.0.1
                           only (AMQP, management, Erlang distribution and its own epmd, all on free
                           ports picked here), state in a private temporary directory, and an account
                           with the administrator tag (random name and password, from the config's
                           default_user). Missing rabbitmq-server: skipped with the install command;
                           under CI=true the test fails instead. Stopped by PID at the end of the
                           session (broker, then epmd); nothing is left running.
"""
from __future__ import annotations

import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Iterator

import pytest
import requests

HERE = pathlib.Path(__file__).resolve().parent
INSTALL_SCRIPT = "tests/rabbitmq/install-rabbitmq.sh"
SERVER = pathlib.Path(os.environ.get("RABBITMQ_SERVER_BIN") or "/usr/lib/rabbitmq/bin/rabbitmq-server")
EPMD = shutil.which("epmd") or "/usr/bin/epmd"
START_TIMEOUT = 90   # seconds: a cold boot takes ~7 s on 2 cores


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def missing() -> str | None:
    if not SERVER.exists():
        return f"{SERVER} is missing (Debian package rabbitmq-server)"
    if not os.path.exists(EPMD):
        return f"{EPMD} is missing (Debian package erlang-base)"
    return None


def free_ports(n: int) -> list[int]:
    """`n` distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _stop(proc: subprocess.Popen, grace: float) -> None:
    """TERM the process (and its process group: it was started in its own session), then KILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)   # leftovers of the group (the VM if the script went first)
    except ProcessLookupError:
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


def _pids_mentioning(marker: str) -> list[int]:
    """PIDs whose command line contains `marker` (our unique node name or directory)."""
    out = []
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            out.append(int(d.name))
    return out


def _log_tail(base: pathlib.Path, lines: int = 40) -> str:
    parts = []
    for f in sorted((base / "log").glob("*.log")) + [base / "server.out"]:
        try:
            parts.append(f"== {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-lines:]))
        except OSError:
            pass
    return "\n".join(parts)


@pytest.fixture(scope="session")
def rabbitmq_admin() -> Iterator[dict]:
    why = missing()
    if why:
        msg = f"RabbitMQ is not installed ({why}); run `sudo bash {INSTALL_SCRIPT}`"
        if _truthy(os.environ.get("CI")):
            pytest.fail(f"CI=true: {msg}", pytrace=False)
        pytest.skip(msg)

    base = pathlib.Path(tempfile.mkdtemp(prefix="octavia-rmq-"))
    os.chmod(base, 0o700)
    for d in ("home", "mnesia", "log"):
        (base / d).mkdir()
    amqp_port, mgmt_port, dist_port, epmd_port = free_ports(4)
    node = f"octtest{secrets.token_hex(4)}@localhost"
    user = f"admin-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(18)
    cookie = base / "home" / ".erlang.cookie"
    cookie.write_text(secrets.token_hex(20).upper())
    cookie.chmod(0o400)
    (base / "enabled_plugins").write_text("[rabbitmq_management].\n")
    (base / "rabbitmq-env.conf").write_text("")       # so /etc/rabbitmq/rabbitmq-env.conf is not read
    conf = base / "rabbitmq.conf"
    conf.write_text("\n".join([
        f"listeners.tcp.1 = 127.0.0.1:{amqp_port}",
        "management.tcp.ip = 127.0.0.1",
        f"management.tcp.port = {mgmt_port}",
        f"default_user = {user}",
        f"default_pass = {password}",
        "default_user_tags.administrator = true",
        "default_permissions.configure = .*",
        "default_permissions.read = .*",
        "default_permissions.write = .*",
        "loopback_users = none",
        "log.console = false",
        "log.file.level = info",
        "",
    ]))
    conf.chmod(0o600)
    env = {
        **os.environ,
        "HOME": str(base / "home"),
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_USE_LONGNAME": "false",
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_CONFIG_FILE": str(conf),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
        "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "ERL_EPMD_PORT": str(epmd_port),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
    }
    for k in ("RABBITMQ_NODE_PORT", "RABBITMQ_NODE_IP_ADDRESS", "RABBITMQ_BASE", "NOTIFY_SOCKET"):
        env.pop(k, None)

    procs: list[subprocess.Popen] = []
    server = None
    try:
        # our own epmd, in the foreground (so we hold its PID), on a private port, loopback only;
        # the broker finds it through ERL_EPMD_PORT and does not start another one
        epmd = subprocess.Popen([EPMD, "-port", str(epmd_port), "-address", "127.0.0.1"], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        procs.append(epmd)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", epmd_port), timeout=1).close()
                break
            except OSError:
                if epmd.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"epmd did not start on 127.0.0.1:{epmd_port}", pytrace=False)
                time.sleep(0.1)
        with open(base / "server.out", "wb") as out:
            server = subprocess.Popen([str(SERVER)], env=env, cwd=base, stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        procs.insert(0, server)
        url = f"http://127.0.0.1:{mgmt_port}"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                r = requests.get(f"{url}/api/overview", auth=(user, password), timeout=5)
                if r.status_code == 200:
                    break
            except requests.RequestException:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"RabbitMQ did not start (exit {server.poll()}); logs:\n{_log_tail(base)}",
                            pytrace=False)
            time.sleep(0.3)
        try:
            socket.create_connection(("127.0.0.1", amqp_port), timeout=5).close()
        except OSError:
            pytest.fail(f"RabbitMQ answers on {url} but not on AMQP 127.0.0.1:{amqp_port}", pytrace=False)
        yield {"amqp_host": "127.0.0.1", "amqp_port": amqp_port, "management_url": url, "user": user,
               "password": password, "nodename": node, "base": str(base)}
    finally:
        for p in procs:                       # broker first (graceful: it deregisters from epmd), then epmd
            _stop(p, grace=20 if p is server else 5)
        for pid in _pids_mentioning(node) + _pids_mentioning(str(base)):   # anything of ours that escaped
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(base, ignore_errors=True)
