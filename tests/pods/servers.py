"""Real servers that play the operator's embedded StatefulSets, initialised from their pod environment
as the images' entrypoints would (tests only).

``mariadb(workdir, env)``: a private MariaDB (Debian's mariadbd, the loopback cloud's package) on a free
127.0.0.1 port, with the root password, database, user and password of MARIADB_* in ``env``: what
docker.io/library/mariadb's entrypoint does on an empty volume. Stopped by PID.
``rabbitmq_account(admin, env, vhost)``: the RABBITMQ_DEFAULT_USER/PASS account on the tests' real
broker (tests/rabbitmq), with all permissions on ``vhost``: what the rabbitmq image does on first start.
"""
from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import requests


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class MariaDB:
    port: int
    socket: Path
    root_password: str

    def sql(self, statement: str, database: str | None = None) -> str:
        argv = ["mariadb", f"--socket={self.socket}", "-uroot", "-N", "-B", "-e", statement]
        if database:
            argv.insert(1, database)
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"mariadb: {p.stderr.strip()}")
        return p.stdout


def _quote(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


@contextlib.contextmanager
def mariadb(workdir: Path, env: Mapping[str, str]) -> Iterator[MariaDB]:
    data, run = workdir / "mysql", workdir / "run"
    run.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mariadb-install-db", "--no-defaults", "--user=root", f"--datadir={data}",
                        "--auth-root-authentication-method=socket", "--skip-test-db"],
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"mariadb-install-db: {p.stdout[-500:]} {p.stderr[-500:]}")
    port, sock = free_port(), run / "mysql.sock"
    log = open(workdir / "mysql.err", "ab")
    proc = subprocess.Popen(
        ["mariadbd", "--no-defaults", "--user=root", f"--datadir={data}", f"--socket={sock}",
         f"--pid-file={run / 'mysqld.pid'}", "--bind-address=127.0.0.1", f"--port={port}", "--skip-name-resolve",
         "--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=0", "--skip-log-bin",
         "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    db = MariaDB(port, sock, env["MARIADB_ROOT_PASSWORD"])
    try:
        for _ in range(300):
            if subprocess.run(["mariadb-admin", f"--socket={sock}", "ping"], capture_output=True).returncode == 0:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited: {(workdir / 'mysql.err').read_text()[-1000:]}")
            time.sleep(0.2)
        name, user, pw = env["MARIADB_DATABASE"], env["MARIADB_USER"], env["MARIADB_PASSWORD"]
        db.sql(f"CREATE DATABASE `{name}`; CREATE USER {_quote(user)}@'%' IDENTIFIED BY {_quote(pw)}; "
               f"GRANT ALL ON `{name}`.* TO {_quote(user)}@'%'; "
               # the image's entrypoint: root@'%' with MARIADB_ROOT_PASSWORD (MARIADB_ROOT_HOST defaults to %)
               f"CREATE USER 'root'@'%' IDENTIFIED BY {_quote(env['MARIADB_ROOT_PASSWORD'])}; "
               "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION; "
               f"ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password "
               f"USING PASSWORD({_quote(env['MARIADB_ROOT_PASSWORD'])})")
        yield db
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def rabbitmq_account(admin: Mapping[str, str], env: Mapping[str, str], vhost: str = "/") -> None:
    auth = (admin["user"], admin["password"])
    base = admin["management_url"].rstrip("/")
    user = env["RABBITMQ_DEFAULT_USER"]
    s = requests.Session()
    s.trust_env = False
    vq = urllib.parse.quote(vhost, safe="")
    for method, path, body in (
            ("PUT", f"/api/vhosts/{vq}", {}),
            ("PUT", f"/api/users/{user}", {"password": env["RABBITMQ_DEFAULT_PASS"], "tags": ""}),
            ("PUT", f"/api/permissions/{vq}/{user}", {"configure": ".*", "write": ".*", "read": ".*"})):
        r = s.request(method, base + path, json=body, auth=auth, timeout=30)
        r.raise_for_status()


def rabbitmq_consumers(admin: Mapping[str, str], queue: str, vhost: str = "/") -> int:
    """How many consumers ``queue`` has on the tests' broker (0 when it does not exist yet)."""
    s = requests.Session()
    s.trust_env = False
    r = s.get(f"{admin['management_url'].rstrip('/')}/api/queues/{urllib.parse.quote(vhost, safe='')}/{queue}",
              auth=(admin["user"], admin["password"]), timeout=30)
    if r.status_code == 404:
        return 0
    r.raise_for_status()
    return int(r.json().get("consumers") or 0)
