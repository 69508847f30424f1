"""pytest plugin: real OVN Northbound and Southbound databases (Debian's ovsdb-server) on 127.0.0.1.

Register it with ``pytest_plugins = [..., "ovn.plugin"]`` in tests/conftest.py (tests/ is on the
pythonpath; ``ovn`` is a namespace package without __init__.py; no installed package of that name
exists to be shadowed: the project's venv has ``ovs`` and ``ovsdbapp``, not ``ovn``). Install the
binaries and schemas with ``sudo bash tests/ovn/install-ovn.sh``.

Fixture
  ovn_dbs  session  an ``OvnDbs``: ``nb`` and ``sb`` connection strings (``tcp:127.0.0.1:PORT``, as
                    Octavia's [ovn] ovn_nb_connection / ovn_sb_connection and ovsdbapp take them),
                    ``nbctl(*args)`` / ``sbctl(*args)`` that run ovn-nbctl / ovn-sbctl against them
                    (``--db=``) and return stdout, and ``base`` (the private directory: databases,
                    pidfiles, logs, control sockets). Two ovsdb-servers made with ``ovsdb-tool create``
                    from /usr/share/ovn/ovn-{nb,sb}.ovsschema, each listening on a free port of
                    127.0.0.1 only; no ovn-northd (nothing translates NB into SB: tests read NB rows).
                    Missing binaries or schemas: skipped with the install command; under CI=true the
                    test fails instead. Stopped by PID at the end of the session; nothing is left
                    running.

``start_ovn_dbs(base, tls=False)`` / ``OvnDbs.stop()`` do the same without pytest (tests/ovn/prototype.py
uses them). With ``tls=True`` the remotes are ``ssl:127.0.0.1:PORT`` (pssl, a throwaway CA made with the
openssl CLI, client certificates required) and ``OvnDbs.tls`` holds the client's key/cert/CA paths.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Iterator

import pytest

INSTALL_SCRIPT = "tests/ovn/install-ovn.sh"
SCHEMA_DIR = pathlib.Path(os.environ.get("OVN_SCHEMA_DIR") or "/usr/share/ovn")
OVSDB_SERVER = shutil.which("ovsdb-server") or "/usr/sbin/ovsdb-server"
OVSDB_TOOL = shutil.which("ovsdb-tool") or "/usr/bin/ovsdb-tool"
OVSDB_CLIENT = shutil.which("ovsdb-client") or "/usr/bin/ovsdb-client"
OVN_NBCTL = shutil.which("ovn-nbctl") or "/usr/bin/ovn-nbctl"
OVN_SBCTL = shutil.which("ovn-sbctl") or "/usr/bin/ovn-sbctl"
START_TIMEOUT = 20   # seconds: an empty database answers in well under 1 s


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def missing() -> str | None:
    for path, pkg in ((OVSDB_SERVER, "openvswitch-common"), (OVSDB_TOOL, "openvswitch-common"),
                      (OVSDB_CLIENT, "openvswitch-common"), (OVN_NBCTL, "ovn-common"), (OVN_SBCTL, "ovn-common"),
                      (SCHEMA_DIR / "ovn-nb.ovsschema", "ovn-common"),
                      (SCHEMA_DIR / "ovn-sb.ovsschema", "ovn-common")):
        if not os.path.exists(path):
            return f"{path} is missing (Debian package {pkg})"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(base: pathlib.Path) -> dict:
    # Keep every default path of OVS/OVN tools (run dir, control sockets, logs) inside `base`.
    env = {**os.environ, "OVS_RUNDIR": str(base), "OVS_DBDIR": str(base), "OVS_LOGDIR": str(base),
           "OVN_RUNDIR": str(base), "OVN_DBDIR": str(base), "OVN_LOGDIR": str(base)}
    for k in ("OVN_NB_DB", "OVN_SB_DB"):
        env.pop(k, None)
    return env


@dataclasses.dataclass
class OvnDbs:
    nb: str                      # tcp:127.0.0.1:PORT of the Northbound database (OVN_Northbound)
    sb: str                      # tcp:127.0.0.1:PORT of the Southbound database (OVN_Southbound)
    base: pathlib.Path
    procs: dict = dataclasses.field(default_factory=dict)   # "nb"/"sb" -> subprocess.Popen
    tls: dict | None = None      # with tls=True: the CLIENT's {"key", "cert", "ca"} PEM paths (ssl: remotes)

    def _ctl(self, tool: str, db: str, args: tuple, check: bool, timeout: float) -> str:
        cp = subprocess.run([tool, f"--db={db}", "--timeout=20", *_tls_args(self.tls), *args],
                            capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL, env=_env(self.base))
        if check and cp.returncode != 0:
            raise RuntimeError(f"{os.path.basename(tool)} {' '.join(args)} failed ({cp.returncode}): "
                               f"{cp.stderr.strip()}")
        return cp.stdout

    def nbctl(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        """ovn-nbctl --db=<nb> ARGS; stdout (raises RuntimeError on a non-zero exit when check)."""
        return self._ctl(OVN_NBCTL, self.nb, args, check, timeout)

    def sbctl(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        return self._ctl(OVN_SBCTL, self.sb, args, check, timeout)

    def pids(self) -> dict:
        return {k: p.pid for k, p in self.procs.items()}

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for f in sorted(self.base.glob("*.log")):
            try:
                parts.append(f"== {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-lines:]))
            except OSError:
                pass
        return "\n".join(parts)

    def stop(self) -> None:
        """TERM each server by PID, KILL what is left after 10 s."""
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(10)


def _tls_args(tls: dict | None) -> list[str]:
    """-p/-c/-C: the private key, certificate and CA certificate options of ovsdb-client and ovn-*ctl."""
    return [f"--private-key={tls['key']}", f"--certificate={tls['cert']}", f"--ca-cert={tls['ca']}"] if tls else []


def make_pki(base: pathlib.Path) -> dict:
    """A throwaway CA and two certificates it signs (openssl CLI): the servers' (CN and SAN 127.0.0.1)
    and the clients'. OVS's TLS servers demand a client certificate signed by their --ca-cert."""
    pki = base / "pki"
    pki.mkdir(mode=0o700)

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60, cwd=pki)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=octavia-test-ovn-ca",
         "-keyout", "ca.key", "-out", "ca.crt")
    for who, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
                     ("client", "extendedKeyUsage=clientAuth\n")):
        (pki / f"{who}.ext").write_text(ext)
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={'127.0.0.1' if who == 'server' else 'octavia'}",
             "-keyout", f"{who}.key", "-out", f"{who}.csr")
        ossl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", f"{who}.ext", "-out", f"{who}.crt")
    return {"ca": str(pki / "ca.crt"),
            "server": {"key": str(pki / "server.key"), "cert": str(pki / "server.crt"), "ca": str(pki / "ca.crt")},
            "client": {"key": str(pki / "client.key"), "cert": str(pki / "client.crt"), "ca": str(pki / "ca.crt")}}


def _start_one(base: pathlib.Path, name: str, schema: pathlib.Path, dbname: str,
               pki: dict | None = None) -> tuple[subprocess.Popen, int]:
    db = base / f"{name}.db"
    env = _env(base)
    subprocess.run([OVSDB_TOOL, "create", str(db), str(schema)], check=True, capture_output=True, env=env,
                   timeout=30)
    last = ""
    for _attempt in range(5):          # the free port can be taken between probe and bind: retry
        port = free_port()
        scheme = "ssl" if pki else "tcp"
        server_tls = _tls_args(pki["server"]) if pki else []
        with open(base / f"{name}.err", "ab") as err:
            proc = subprocess.Popen(
                [OVSDB_SERVER, str(db), f"--remote=p{scheme}:{port}:127.0.0.1", *server_tls,
                 f"--unixctl={base / (name + '.ctl')}",
                 f"--pidfile={base / (name + '.pid')}", f"--log-file={base / (name + '.log')}",
                 "-vconsole:off", "-vfile:info"],
                env=env, cwd=base, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            cp = subprocess.run([OVSDB_CLIENT, "--timeout=5", *(_tls_args(pki["client"]) if pki else []),
                                 "list-dbs", f"{scheme}:127.0.0.1:{port}"],
                                capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=15)
            if cp.returncode == 0 and dbname in cp.stdout.split():
                return proc, port
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        last = ""
        for f in (base / f"{name}.err", base / f"{name}.log"):
            try:
                last += f"\n== {f.name}\n" + f.read_text(errors="replace")[-3000:]
            except OSError:
                pass
    raise RuntimeError(f"ovsdb-server for {dbname} did not start: {last}")


def start_ovn_dbs(base: pathlib.Path, tls: bool = False) -> OvnDbs:
    """Create and start the NB and SB databases in `base` (an existing, private directory).

    tls=True: ``ssl:127.0.0.1:PORT`` remotes (pssl) with a throwaway CA made here; ``OvnDbs.tls`` then
    holds the client key/certificate/CA that ovn-nbctl, ovsdbapp and Octavia's [ovn] options need."""
    pki = make_pki(base) if tls else None
    scheme = "ssl" if tls else "tcp"
    dbs = OvnDbs(nb="", sb="", base=base, tls=pki["client"] if pki else None)
    try:
        nb, nb_port = _start_one(base, "nb", SCHEMA_DIR / "ovn-nb.ovsschema", "OVN_Northbound", pki)
        dbs.procs["nb"] = nb
        dbs.nb = f"{scheme}:127.0.0.1:{nb_port}"
        sb, sb_port = _start_one(base, "sb", SCHEMA_DIR / "ovn-sb.ovsschema", "OVN_Southbound", pki)
        dbs.procs["sb"] = sb
        dbs.sb = f"{scheme}:127.0.0.1:{sb_port}"
        # ovn-nbctl waits for nb_cfg handling only with --wait; plain commands need NB_Global to exist
        dbs.nbctl("init")
        dbs.sbctl("init")
    except BaseException:
        dbs.stop()
        raise
    return dbs


@pytest.fixture(scope="session")
def ovn_dbs() -> Iterator[OvnDbs]:
    why = missing()
    if why:
        msg = f"OVN is not installed ({why}); run `sudo bash {INSTALL_SCRIPT}`"
        if _truthy(os.environ.get("CI")):
            pytest.fail(f"CI=true: {msg}", pytrace=False)
        pytest.skip(msg)
    base = pathlib.Path(tempfile.mkdtemp(prefix="octavia-ovn-"))
    os.chmod(base, 0o700)
    try:
        try:
            dbs = start_ovn_dbs(base)
        except (RuntimeError, subprocess.SubprocessError) as e:
            pytest.fail(f"OVN databases did not start: {e}", pytrace=False)
        try:
            yield dbs
        finally:
            dbs.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
