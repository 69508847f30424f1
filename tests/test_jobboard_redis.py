"""spec.jobboard.external for real: Sentinel, an ACL user, passwords and mutual TLS on both hops.

A real redis-server (Debian's, TLS only, ACL user ``octavia``, the default user off) and a real Sentinel
in front of it (TLS only, its own password) run on 127.0.0.1. The operator renders octavia.conf and
secrets.conf for ``jobboard.external`` (``sentinel``, ``username``, both passwords, ``tls`` and
``sentinelTLS`` with client certificates); Octavia's own jobboard driver, in the project's Octavia image,
with the files mounted where the operator's pods mount them (/etc/octavia/..., /etc/octavia/jobboard-tls),
asks the Sentinel for the primary, posts a job there and lists it back. The job's keys are then on the
primary, under the configured key prefix. Without the client certificate the same driver is refused.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from kube.cluster import free_port
from pods.runner import PODMAN, RUN_LIMITS
from tlsutil import make_pki
from octavia_operator.builders import config as cfg
from octavia_operator.releases import octavia_image
from octavia_operator.spec import DEFAULT_RELEASE, parse_spec
from octavia_operator import names as n

pytestmark = [pytest.mark.timeout(300)]

IMAGE = octavia_image(DEFAULT_RELEASE)

PROBE = r"""
import json, sys
from oslo_config import cfg
from octavia.common import config
config.init(["--config-file", "/etc/octavia/octavia.conf", "--config-file", "/etc/octavia/secrets.d/secrets.conf"])
from octavia.controller.worker.v2 import taskflow_jobboard_driver as d
persistence_driver = d.MysqlPersistenceDriver()
persistence_driver.initialize()
driver = d.RedisTaskFlowDriver(persistence_driver)
with persistence_driver.get_persistence() as persistence:
    with driver.job_board(persistence) as board:
        board.post("octavia-operator-probe", details={"store": {}})
        print(json.dumps(sorted(j.name for j in board.iterjobs())))
"""


def _tls(pki: dict[str, Path]) -> str:
    return (f"tls-cert-file {pki['server.crt']}\ntls-key-file {pki['server.key']}\ntls-ca-cert-file {pki['ca']}\n"
            f"tls-client-cert-file {pki['client.crt']}\ntls-client-key-file {pki['client.key']}\n"
            "tls-auth-clients yes\n")


def _start(argv: list[str], log: Path, ready) -> subprocess.Popen:
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{argv[0]} did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    return proc


@pytest.fixture
def redis_behind_sentinel(tmp_path):
    import shutil
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        msg = "redis-server is not installed; run `bash tests/tools/apt-install-no-start.sh redis-server`"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true: {msg}", pytrace=False)
        pytest.skip(msg)
    if subprocess.run(["podman", "image", "exists", IMAGE], capture_output=True).returncode != 0:
        msg = f"image {IMAGE} not built (bash images/build.sh)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true: {msg}", pytrace=False)
        pytest.skip(msg)
    pki_dir = tmp_path / "pki"
    pki_dir.mkdir()
    pki = make_pki(pki_dir)
    pw, sentinel_pw = secrets.token_hex(16), secrets.token_hex(16)
    port, sentinel_port = free_port(), free_port()
    data = tmp_path / "redis"
    data.mkdir()
    (data / "redis.conf").write_text(
        f"port 0\ntls-port {port}\nbind 127.0.0.1\ndir {data}\nsave \"\"\n{_tls(pki)}"
        f"user default off\nuser octavia on >{pw} ~* &* +@all\n")
    sdir = tmp_path / "sentinel"
    sdir.mkdir()
    (sdir / "sentinel.conf").write_text(
        f"port 0\ntls-port {sentinel_port}\nbind 127.0.0.1\ndir {sdir}\n{_tls(pki)}tls-replication yes\n"
        f"requirepass {sentinel_pw}\nsentinel monitor mymaster 127.0.0.1 {port} 1\n"
        f"sentinel auth-user mymaster octavia\nsentinel auth-pass mymaster {pw}\n")

    def cli(p: int, *args: str, user: str | None = None, password: str = "") -> subprocess.CompletedProcess:
        auth = ["--user", user] if user else []
        return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(p), "--tls", "--cacert", str(pki["ca"]),
                               "--cert", str(pki["client.crt"]), "--key", str(pki["client.key"]), *auth,
                               "--no-auth-warning", *args], capture_output=True, text=True, timeout=30,
                              env={**os.environ, "REDISCLI_AUTH": password})
    procs = []
    try:
        procs.append(_start(["redis-server", str(data / "redis.conf")], data / "log",
                            lambda: cli(port, "ping", user="octavia", password=pw).stdout.strip() == "PONG"))
        procs.append(_start(["redis-server", str(sdir / "sentinel.conf"), "--sentinel"], sdir / "log",
                            lambda: cli(sentinel_port, "sentinel", "get-master-addr-by-name", "mymaster",
                                        password=sentinel_pw).stdout.split() == ["127.0.0.1", str(port)]))
        yield {"pki": pki, "port": port, "sentinel_port": sentinel_port, "password": pw,
               "sentinel_password": sentinel_pw, "cli": cli}
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def _run_probe(tmp_path: Path, r: dict, name: str, client_certificate: bool) -> subprocess.CompletedProcess:
    tls = {"caSecret": {"name": "redis-ca"}, **({"clientCertificateSecret": "redis-client"} if client_certificate
                                                 else {})}
    spec = parse_spec({
        "cloud": {"credentialsSecret": {"name": "cloud"}},
        "database": {"external": {"connectionSecret": {"name": "db"}}},
        "jobboard": {"enabled": True, "persistence": {"connectionSecret": {"name": "persistence"}},
                     "external": {"hosts": ["127.0.0.1"], "port": r["sentinel_port"], "sentinel": "mymaster",
                                  "username": "octavia", "keyPrefix": "octd_test",
                                  "passwordSecret": {"name": "redis", "key": "password"},
                                  "sentinelPasswordSecret": {"name": "redis", "key": "sentinel-password"},
                                  "tls": tls, "sentinelTLS": tls}},
    })
    work = tmp_path / name
    (work / "secrets.d").mkdir(parents=True)
    (work / "tls").mkdir()
    (work / "state").mkdir()
    (work / "state").chmod(0o777)
    (work / "octavia.conf").write_text(cfg.render_octavia_conf(spec, cfg.CloudValues()))
    (work / "secrets.d" / "secrets.conf").write_text(cfg.render_secrets_conf(cfg.SecretValues(
        server_certs_key_passphrase=secrets.token_hex(16), persistence_url="sqlite:////var/lib/octavia/persistence.sqlite", jobboard_password=r["password"],
        jobboard_sentinel_password=r["sentinel_password"])))
    # the files, under the names the operator's pods see (builders.kube._jobboard_tls_sources)
    pki = r["pki"]
    files = {"server-ca.crt": pki["ca"], "sentinel-ca.crt": pki["ca"]}
    if client_certificate:
        files.update({"client.crt": pki["client.crt"], "client.key": pki["client.key"],
                      "sentinel-client.crt": pki["client.crt"], "sentinel-client.key": pki["client.key"]})
    for fname, src in files.items():
        (work / "tls" / fname).write_bytes(src.read_bytes())
        (work / "tls" / fname).chmod(0o644)
    return subprocess.run(
        [*PODMAN, "run", "--rm", "--pull", "never", *RUN_LIMITS, "--network", "host", "--user", "42437:42437", "--read-only",
         "-v", f"{work / 'octavia.conf'}:{n.CONF_FILE}:ro", "-v", f"{work / 'secrets.d'}:{n.CONF_DIR}/secrets.d:ro",
         "-v", f"{work / 'tls'}:{n.JOBBOARD_TLS_DIR}:ro", "-v", f"{work / 'state'}:/var/lib/octavia",
         "--entrypoint", "/var/lib/kolla/venv/bin/python", IMAGE, "-c", PROBE],
        capture_output=True, text=True, timeout=180)


def test_octavias_jobboard_driver_reaches_redis_through_sentinel_over_mutual_tls(tmp_path, redis_behind_sentinel):
    r = redis_behind_sentinel
    out = _run_probe(tmp_path, r, "with-client-certificate", client_certificate=True)
    assert out.returncode == 0, out.stderr[-4000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["octavia-operator-probe"]
    # the job is on the primary the Sentinel named, under the configured key prefix
    keys = r["cli"](r["port"], "--scan", "--pattern", "octd_test*", user="octavia", password=r["password"])
    assert keys.returncode == 0 and keys.stdout.split(), (keys.stdout, keys.stderr)


def test_without_the_client_certificate_the_server_refuses(tmp_path, redis_behind_sentinel):
    out = _run_probe(tmp_path, redis_behind_sentinel, "without-client-certificate", client_certificate=False)
    assert out.returncode != 0
    # refused at the TLS handshake with the Sentinel (tls-auth-clients yes): no job was posted
    assert "ConnectionError" in out.stderr and "ssl_certfile=None" in out.stderr, out.stderr[-3000:]
