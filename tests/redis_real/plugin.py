"""pytest plugin: real Redis servers (Debian's redis-server) on 127.0.0.1, started by the test.

Register it with ``pytest_plugins = [..., "redis_real.plugin"]`` in tests/conftest.py (tests/ is on
the pythonpath; ``redis_real`` is a namespace package without __init__.py, not named ``redis`` so it
never shadows the redis client package). Install the server with
``bash tests/tools/apt-install-no-start.sh redis-server``.

Fixture
  redis_server  function  start(password) -> RedisServer: a redis-server on a free 127.0.0.1 port, with
                          that password (requirepass), its files in a private directory; ``.port``,
                          ``.cli(*args)`` (redis-cli, authenticated). Missing redis-server: skipped with
                          the install command; under CI=true the test fails instead. Every server is
                          stopped by PID at the end of the test.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

INSTALL = "bash tests/tools/apt-install-no-start.sh redis-server"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RedisServer:
    port: int
    password: str
    proc: subprocess.Popen
    workdir: Path

    def cli(self, *args: str) -> str:
        out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "--no-auth-warning", *args],
                             capture_output=True, text=True, timeout=30,
                             env={**os.environ, "REDISCLI_AUTH": self.password})
        if out.returncode != 0:
            raise RuntimeError(f"redis-cli {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[[str], RedisServer]]:
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        msg = f"redis-server is not installed; run `{INSTALL}`"
        if (os.environ.get("CI") or "").strip().lower() in {"1", "true", "yes", "on"}:
            pytest.fail(f"CI=true: {msg}", pytrace=False)
        pytest.skip(msg)
    started: list[RedisServer] = []

    def start(password: str) -> RedisServer:
        port = _free_port()
        workdir = tmp_path / f"redis-{port}"
        workdir.mkdir()
        conf = workdir / "redis.conf"
        conf.write_text(f"bind 127.0.0.1\nport {port}\ndir {workdir}\nappendonly yes\nsave \"\"\n"
                        f"requirepass {password}\nlogfile {workdir}/redis.log\n")
        conf.chmod(0o600)
        proc = subprocess.Popen(["redis-server", str(conf)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        server = RedisServer(port, password, proc, workdir)
        started.append(server)
        deadline = time.monotonic() + 30
        while True:
            try:
                if server.cli("ping").strip() == "PONG":
                    return server
            except RuntimeError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (workdir / "redis.log").read_text() if (workdir / "redis.log").exists() else ""
                raise RuntimeError(f"redis-server did not start (exit {proc.poll()}): {log[-2000:]}")
            time.sleep(0.2)

    try:
        yield start
    finally:
        for s in started:
            s.stop()
