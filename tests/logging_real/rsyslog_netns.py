"""Real rsyslogd processes in throw-away network namespaces, for tests/test_amphora_logging.py.

Topology (made here, deleted afterwards; the machine's own interfaces, routes and /run are never
touched)::

    netns "node-XXXXXX"  (a health-manager node)      netns "amp-XXXXXX"  (an amphora)
      veth  192.0.2.1/24  fd00:1095::1/64   <------>    veth  192.0.2.10/24  fd00:1095::10/64
      rsyslogd as uid 42437 with                        rsyslogd as root, in a private mount
      receiver_rsyslog_conf(), stdout -> pipe           namespace with a tmpfs on /run, with the
                                                        image's /run/rsyslog/octavia/log socket and
                                                        Octavia's rendered 10-rsyslog.conf

Processes are stopped by their PID (SIGTERM, then SIGKILL), namespaces by name. NetNS and wait_until
are the host agent tests' (tests/hostagent/hostagent_nsutil.py).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from hostagent.hostagent_nsutil import NetNS, wait_until  # noqa: F401  (re-exported for the test)

INSTALL_SCRIPT = "tests/logging_real/install-rsyslog.sh"
NEEDED_BINS = ("ip", "rsyslogd", "logger", "setpriv", "nsenter", "unshare", "ss", "mount")

NODE_IP = {4: "192.0.2.1", 6: "fd00:1095::1"}
AMP_IP = {4: "192.0.2.10", 6: "fd00:1095::10"}
PREFIX = {4: 24, 6: 64}

# /etc/rsyslog.d/55-octavia-socket.conf of Octavia's amphora-agent image element (its input(); the
# module itself is loaded once, without the system socket, in amphora_main_conf)
AMPHORA_SOCKET = "/run/rsyslog/octavia/log"


def require_rsyslog() -> None:
    """Skip (or fail under CI=true) unless root and every binary the test runs are there."""
    why = None
    if os.geteuid() != 0:
        why = "needs root (network namespaces, mount namespaces, setpriv)"
    else:
        absent = [b for b in NEEDED_BINS if shutil.which(b) is None]
        if absent:
            why = f"{', '.join(absent)} not found: run `sudo bash {INSTALL_SCRIPT}`"
    if why:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"CI=true and a prerequisite is missing: {why}", pytrace=False)
        pytest.skip(why)


def run(cmd: list[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def stop_pid(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM the process we started (by its PID), SIGKILL it if it does not go."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def wire(node: NetNS, amp: NetNS) -> None:
    """A veth pair node <-> amp (the management network) with IPv4 and IPv6 addresses (no DAD)."""
    a, b = f"vn{uuid.uuid4().hex[:8]}", f"va{uuid.uuid4().hex[:8]}"
    # create it inside the node namespace and move one end: nothing ever exists in the root netns
    node.ip("link", "add", a, "type", "veth", "peer", "name", b, "netns", amp.name)
    for ns, dev, ips in ((node, a, NODE_IP), (amp, b, AMP_IP)):
        ns.ip("addr", "add", f"{ips[4]}/{PREFIX[4]}", "dev", dev)
        ns.ip("-6", "addr", "add", f"{ips[6]}/{PREFIX[6]}", "dev", dev, "nodad")
        ns.ip("link", "set", dev, "up")


class _LineReader(threading.Thread):
    def __init__(self, fd: int):
        super().__init__(daemon=True)
        self.fd = fd
        self.lines: list[str] = []
        self._buf = b""
        self._lock = threading.Lock()

    def run(self) -> None:
        with os.fdopen(self.fd, "rb", buffering=0) as f:
            while True:
                chunk = f.read(65536)
                if not chunk:
                    return
                self._buf += chunk
                *done, self._buf = self._buf.split(b"\n")
                with self._lock:
                    self.lines.extend(x.decode("utf-8", "replace") for x in done)

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.lines)


class Receiver:
    """The operator's receiver: real rsyslogd, non-root, foreground, in the node namespace.

    Its stdout and stderr are pipes whose owner is set to the receiver's uid before the start,
    as runc/crun do for a container's stdio (``fixStdioPermissions``): rsyslog's omfile REOPENS
    /dev/stdout (= /proc/self/fd/1), which a non-root process may only do on a pipe it owns.
    """

    def __init__(self, ns: NetNS, conf: str, workdir: Path, uid: int, argv_of):
        self.ns, self.uid = ns, uid
        workdir.mkdir(parents=True, exist_ok=True)
        os.chown(workdir, uid, uid)
        self.conf_file = workdir.parent / f"{workdir.name}.conf"  # root-owned, read-only for the receiver
        self.conf_file.write_text(conf)
        self.conf_file.chmod(0o644)
        self.argv = argv_of(str(self.conf_file), str(workdir))
        self.proc: subprocess.Popen | None = None
        self.out: _LineReader | None = None
        self.err: _LineReader | None = None

    def start(self) -> "Receiver":
        r_out, w_out = os.pipe()
        r_err, w_err = os.pipe()
        for w in (w_out, w_err):
            os.fchown(w, self.uid, self.uid)
        try:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns.name, "setpriv", f"--reuid={self.uid}", f"--regid={self.uid}",
                 "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", *self.argv],
                stdin=subprocess.DEVNULL, stdout=w_out, stderr=w_err)
        finally:
            os.close(w_out)
            os.close(w_err)
        self.out, self.err = _LineReader(r_out), _LineReader(r_err)
        self.out.start()
        self.err.start()
        return self

    def listening(self, ports: list[int], protocols: tuple[str, ...]) -> bool:
        """True when every port/protocol has a socket for each address family."""
        for proto in protocols:
            flag = "-Hlnu" if proto.upper() == "UDP" else "-Hlnt"
            for fam in ("-4", "-6"):
                local = [ln.split()[3] for ln in self.ns.x("ss", flag, fam).splitlines() if ln.strip()]
                if not all(any(addr.endswith(f":{p}") for addr in local) for p in ports):
                    return False
        return True

    def lines(self) -> list[str]:
        return self.out.snapshot() if self.out else []

    def diagnostics(self) -> str:
        rc = None if self.proc is None else self.proc.poll()
        return (f"receiver rc={rc}\nstdout:\n" + "\n".join(self.lines())
                + "\nstderr:\n" + "\n".join(self.err.snapshot() if self.err else []))

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc)
        for t in (self.out, self.err):
            if t is not None:
                t.join(5)


def amphora_main_conf(workdir: Path, octavia_rendered_file: Path, local_log: Path) -> str:
    """The amphora's /etc/rsyslog.conf, reduced to what matters and kept off the machine's /dev/log.

    Same order as on the amphora image: the octavia socket, then /etc/rsyslog.d/10-rsyslog.conf
    (Octavia's, via the config drive), then the distribution's local files (50-default.conf), which
    Octavia's ``*.* stop`` (disable_local_log_storage) would cut off.
    """
    return "\n".join([
        f'global(workDirectory="{workdir}" processInternalMessages="on")',
        'module(load="imuxsock" SysSock.Use="off")',
        f'input(type="imuxsock" Socket="{AMPHORA_SOCKET}" CreatePath="on")',
        f'include(file="{octavia_rendered_file}")',
        "",
        f'*.* action(type="omfile" file="{local_log}")',
        "",
    ])


class Amphora:
    """An amphora's rsyslogd (root) in the amp namespace and a private mount namespace.

    ``/run`` is a fresh tmpfs inside it, so the image's socket path /run/rsyslog/octavia/log is used
    verbatim without creating anything in the machine's /run; logger joins that mount namespace.
    """

    def __init__(self, ns: NetNS, main_conf_file: Path, pidfile: Path):
        self.ns = ns
        self.main_conf_file = main_conf_file
        self.pidfile = pidfile
        self.proc: subprocess.Popen | None = None
        self.log_file = main_conf_file.parent / "amphora-rsyslogd.out"

    def start(self) -> "Amphora":
        # ip netns exec, unshare (no --fork) and sh all exec: the Popen PID becomes rsyslogd's
        script = ('mount -t tmpfs -o mode=0755 octavia-amp-run /run && '
                  f'exec rsyslogd -n -f "{self.main_conf_file}" -i "{self.pidfile}"')
        with open(self.log_file, "wb") as out:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns.name, "unshare", "--mount", "--propagation", "private",
                 "sh", "-c", script], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        wait_until(lambda: self.proc.poll() is not None or self._socket_ready(), 15,
                   what=f"the amphora rsyslogd's {AMPHORA_SOCKET}")
        if self.proc.poll() is not None:
            raise AssertionError(f"amphora rsyslogd exited {self.proc.returncode}: {self.output()}")
        return self

    def _socket_ready(self) -> bool:
        return run(["nsenter", "-t", str(self.proc.pid), "-m", "test", "-S", AMPHORA_SOCKET], check=False).returncode == 0

    def logger(self, priority: str, tag: str, message: str) -> None:
        """Log like haproxy/keepalived/amphora-agent do on an amphora: a datagram to the octavia socket."""
        run(["nsenter", "-t", str(self.proc.pid), "-m", "-n", "logger", "--socket-errors=on", "-d",
             "-u", AMPHORA_SOCKET, "-p", priority, "-t", tag, message])

    def output(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc)
