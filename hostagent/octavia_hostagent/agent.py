"""The reconcile loop: read assignment, observe, plan, apply, verify, report."""
from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import select
import signal
import struct
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .assignment import AssignmentError, NodeAssignment, parse_assignments
from .model import LINK_ALIAS, OVS_OWNER_KEY, Action, Observed, Owned
from . import planner

log = logging.getLogger("octavia_hostagent")

STATE_FILE = "state.json"
MAX_ROUNDS = 5
MIN_EVENT_GAP = 1.0  # seconds between event-driven passes
#: seconds between the cheap looks at what announces nothing: the sysctls (a /proc read each), the legacy
#: filter tables' shape (a getsockopt), the assignment file when its directory cannot be watched (a stat)
POLL = 0.5
#: seconds between passes while not ready, or when the firewall cannot be watched (instead of --interval)
RETRY_INTERVAL = 5.0
#: seconds between attempts to reconnect to OVSDB (and re-register the monitor) after losing it
OVSDB_RETRY = 0.5


@dataclass
class Config:
    assignments: str = "/etc/octavia-hostagent/assignments.json"
    node: str = ""
    ovsdb: str = "unix:/run/openvswitch/db.sock"
    state_dir: str = "/var/lib/octavia-hostagent"
    status_file: str = "/run/octavia-hostagent/status.json"
    #: seconds between full passes when ready; changes are acted on through events and POLL in between
    interval: float = 30.0
    firewall_backend: str = "auto"


def atomic_write_json(path: str | Path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class StateStore:
    """Records what the agent created, so that cleanup removes exactly that."""

    def __init__(self, state_dir: str):
        self.path = Path(state_dir) / STATE_FILE

    def load(self) -> Owned:
        try:
            with open(self.path) as f:
                return Owned.from_json(json.load(f).get("created"))
        except FileNotFoundError:
            return Owned()
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("state file %s unreadable (%s); relying on ownership markers", self.path, e)
            return Owned()

    def save(self, owned: Owned) -> None:
        atomic_write_json(self.path, {"version": 1, "created": owned.to_json()})

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class DirWatch:
    """inotify on the directory of the assignment file, as a wake-up: kubelet updates a ConfigMap
    volume by renaming its ``..data`` symlink, other writers replace or rewrite the file; each is an
    event in that directory (IN_MODIFY is left out: a log file next to it would wake the agent on every
    line). The loop then compares the file's identity (inode, mtime, size)."""

    MASK = 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800  # ATTRIB CLOSE_WRITE MOVED_* CREATE DELETE*, MOVE_SELF
    IN_IGNORED = 0x8000  # the watch is gone (directory deleted or unmounted)

    def __init__(self, path: str):
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.dir = os.fsencode(os.path.dirname(os.path.abspath(path)))
        self.wd: int | None = None
        self.ensure()

    def ensure(self) -> bool:
        """(Re)adds the watch; False while the directory does not exist."""
        if self.wd is None:
            wd = self._libc.inotify_add_watch(self.fd, self.dir, self.MASK)
            self.wd = wd if wd >= 0 else None
        return self.wd is not None

    def fileno(self) -> int:
        return self.fd

    def drain(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            off = 0
            while off + 16 <= len(data):
                _wd, mask, _cookie, ln = struct.unpack_from("=iIII", data, off)
                if mask & self.IN_IGNORED:
                    self.wd = None
                off += 16 + ln

    def close(self) -> None:
        os.close(self.fd)


def read_assignment_file(path: str) -> tuple[object | None, str]:
    """Decoded JSON (None when absent or empty) and a digest of the raw content."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None, "absent"
    digest = hashlib.sha256(raw).hexdigest()[:16]
    if not raw.strip():
        return None, digest
    try:
        return json.loads(raw), digest
    except ValueError as e:
        raise AssignmentError(f"not valid JSON: {e}") from None


class Agent:
    def __init__(self, cfg: Config):
        from .firewall import Firewall
        from .netlink import NetlinkDriver
        from .ovsdb import OvsDriver

        if not cfg.node:
            raise SystemExit("node name unknown: set NODE_NAME or pass --node")
        self.cfg = cfg
        self.nl = NetlinkDriver()
        self.ovs = OvsDriver(cfg.ovsdb)
        self.fw = Firewall(cfg.firewall_backend)
        self.store = StateStore(cfg.state_dir)
        self.owned = self.store.load()
        self.assignment: NodeAssignment | None = None
        self.assignment_error: str | None = None
        self._digest: str | None = None
        self._last_status_key = None
        #: sysctl paths the agent cannot write (read-only /proc/sys in an unprivileged container)
        self.sysctl_unwritable: dict[str, str] = {}
        #: sysctl values of the last observation: the loop looks for a change every POLL seconds
        self._sysctls_seen: dict[str, str] = {}
        self._ovsdb_retry = 0.0
        self._awatch: DirWatch | None = None

    # ------------------------------------------------------------------ inputs
    def load_assignment(self) -> None:
        try:
            doc, digest = read_assignment_file(self.cfg.assignments)
            if digest == self._digest and self.assignment_error is None:
                return
            a = parse_assignments(doc, self.cfg.node)
        except (AssignmentError, OSError) as e:
            msg = str(e)
            if msg != self.assignment_error:
                log.error("assignment file %s is malformed: %s (keeping the previous assignment)",
                          self.cfg.assignments, msg)
            self.assignment_error = msg
            return
        if digest != self._digest:
            if a is None:
                log.info("assignment: none for node %s (file %s)", self.cfg.node, digest)
            else:
                log.info("assignment for node %s: driver=%s interface=%s port=%s mac=%s ip=%s/%s mtu=%s udp=%s bound=%s",
                         a.node, a.driver, a.interface, a.port_id, a.mac, a.ip, a.prefix_length, a.mtu,
                         list(a.udp_ports), a.bound)
        self._digest = digest
        self.assignment_error = None
        self.assignment = a

    # ----------------------------------------------------------------- observe
    def observe(self, a: NodeAssignment | None, with_fw: bool = True) -> Observed:
        names = set(self.owned.links)
        bridge = None
        if a is not None:
            names |= planner.desired_links(a)
            bridge = a.linux_bridge
        links, addrs, routes = self.nl.observe(names, bridge)
        obs = Observed(links=links, addrs=addrs, routes=routes)
        ovs_names = set(self.owned.ovs_ports)
        if a is not None and a.driver == "ovs":
            ovs_names.add(a.interface)
        if ovs_names or a is None or a.driver == "ovs":
            obs.ovs = self.ovs.observe(ovs_names, OVS_OWNER_KEY)
        # the connection (and its monitor) stays open while there is an OVS port to watch
        self.ovs.keep = bool(ovs_names)
        if not self.ovs.keep:
            self.ovs.close()
        if a is not None:
            for path in planner.desired_sysctls(a):
                v = self.nl.get_sysctl(path)
                if v is not None:
                    obs.sysctls[path] = v
            if with_fw:
                obs.fw = self.fw.observe()
        self._sysctls_seen = dict(obs.sysctls)
        return obs

    # ------------------------------------------------------------------- apply
    def _save(self) -> None:
        self.store.save(self.owned)

    def apply(self, x: Action) -> None:
        log.info("action: %s", x)
        k = x.kind
        if k == "ovs_add_port":
            if x.arg("port_external_ids", {}).get(OVS_OWNER_KEY):
                self.owned.ovs_ports.add(x.target)
                self._save()
            self.ovs.add_port(x.arg("bridge"), x.target, x.arg("iface_columns"), x.arg("port_external_ids"))
            if not self.nl.wait_link(x.target, 10):
                log.warning("ovs-vswitchd did not create device %s within 10 s", x.target)
        elif k == "ovs_recreate_port":
            # ovs-vswitchd must apply the deletion before the port comes back, or it keeps the old
            # port (same name) whose device is gone: wait for it (cur_cfg), then re-add
            self.ovs.del_port(x.arg("port_uuid"), wait_vswitchd=True)
            self.ovs.add_port(x.arg("bridge"), x.target, x.arg("iface_columns"), x.arg("port_external_ids"))
            if not self.nl.wait_link(x.target, 10):
                log.warning("ovs-vswitchd did not create device %s within 10 s", x.target)
        elif k == "ovs_set_interface":
            self.ovs.set_interface(x.target, x.arg("columns"), x.arg("current_external_ids"))
        elif k == "ovs_del_port":
            self.ovs.del_port(x.arg("port_uuid"))
            self.owned.ovs_ports.discard(x.target)
            self._drop_addresses(x.target)
            self._save()
        elif k == "link_delete":
            self.nl.delete_link(x.target)
            self.owned.links.discard(x.target)
            self._drop_addresses(x.target)
            self._save()
        elif k == "link_create_veth":
            self.owned.links |= {x.target, x.arg("peer")}
            self._save()
            self.nl.create_veth(x.target, x.arg("peer"))
        elif k == "link_set":
            self.nl.set_link(x.target, mac=x.arg("mac"), mtu=x.arg("mtu"), up=x.arg("up"), master=x.arg("master"))
        elif k == "sysctl_set":
            dev = x.target.split("/")[2]
            if dev not in self.owned.links and x.target not in self.owned.sysctls:
                self.owned.sysctls[x.target] = x.arg("previous")  # restored on cleanup
                self._save()
            try:
                self.nl.set_sysctl(x.target, x.arg("value"))
            except OSError as e:
                # best effort: /proc/sys is read-only in unprivileged containers
                self.owned.sysctls.pop(x.target, None)
                self._save()
                self.sysctl_unwritable[x.target] = f"{e.strerror or e}"
                log.warning("cannot set net.%s=%s (%s); reported as a warning", x.target.replace("/", "."),
                            x.arg("value"), e.strerror or e)
        elif k == "sysctl_restore":
            if self.nl.get_sysctl(x.target) is not None:
                self.nl.set_sysctl(x.target, x.arg("value"))
            self.owned.sysctls.pop(x.target, None)
            self._save()
        elif k == "addr_add":
            self.owned.addresses.add((x.target, f"{x.arg('address')}/{x.arg('prefixlen')}"))
            self._save()
            self.nl.add_addr(x.target, x.arg("address"), x.arg("prefixlen"))
        elif k == "addr_del":
            self.nl.del_addr(x.target, x.arg("address"), x.arg("prefixlen"))
            self.owned.addresses.discard((x.target, f"{x.arg('address')}/{x.arg('prefixlen')}"))
            self._save()
        elif k == "route_del":
            self.nl.del_route(x.target, x.arg("dst"), x.arg("gateway"), x.arg("family"))
        elif k == "route_add_connected":
            self.nl.add_connected_route(x.target, x.arg("dst"), x.arg("src"), x.arg("family"))
        elif k == "fw_sync":
            if x.arg("backend") not in self.owned.firewall_backends:
                self.owned.firewall_backends.add(x.arg("backend"))
                self._save()
            self.fw.sync(x.arg("family"), x.arg("backend"), list(x.arg("rules")), list(x.arg("jumps")),
                         list(x.arg("current_jumps")))
        elif k == "fw_remove":
            removed = self.fw.remove(x.arg("backends"))
            for r in removed:
                log.info("removed %s", r)
            self.owned.firewall_backends.clear()
            self._save()
        else:
            raise ValueError(f"unknown action {k}")

    def _drop_addresses(self, link: str) -> None:
        self.owned.addresses = {(l, a) for l, a in self.owned.addresses if l != link}

    # --------------------------------------------------------------- reconcile
    def reconcile(self) -> dict:
        self.load_assignment()
        a = self.assignment
        done: list[str] = []
        errors: list[str] = []
        if a is None:
            if self.assignment_error is None:
                self._cleanup_pass(done, errors)
            return self._status(None, None, done, errors)
        obs = None
        for _ in range(MAX_ROUNDS):
            obs = self.observe(a)
            actions = [x for x in planner.plan(a, obs, self.owned)
                       if not (x.kind == "sysctl_set" and x.target in self.sysctl_unwritable)]
            if not actions:
                break
            for x in actions:
                try:
                    self.apply(x)
                    done.append(str(x))
                except Exception as e:  # noqa: BLE001 -- report and carry on with the next action
                    log.error("action failed: %s: %s", x, e)
                    errors.append(f"{x.kind} {x.target}: {e}")
            if errors:
                obs = self.observe(a)
                break
        else:
            obs = self.observe(a)
        return self._status(a, obs, done, errors)

    def _has_leftovers(self, obs: Observed) -> bool:
        if not self.owned.empty():
            return True
        if any(l.alias == LINK_ALIAS for l in obs.links.values()):
            return True
        return bool(obs.ovs and obs.ovs.reachable and any(p.owned_marker for p in obs.ovs.ports.values()))

    def _cleanup_pass(self, done: list, errors: list) -> None:
        obs = self.observe(None, with_fw=False)
        if not self._has_leftovers(obs):
            return
        log.info("no assignment for node %s: removing what the agent created", self.cfg.node)
        self.run_cleanup(obs, done, errors)

    def run_cleanup(self, obs: Observed | None, done: list, errors: list) -> None:
        if obs is None:
            obs = self.observe(None, with_fw=False)
        if self.owned.ovs_ports and (obs.ovs is None or not obs.ovs.reachable):
            errors.append(f"OVSDB unreachable ({obs.ovs.error if obs.ovs else 'not checked'}): "
                          f"port(s) {sorted(self.owned.ovs_ports)} not removed yet")
        for x in planner.plan_cleanup(obs, self.owned):
            try:
                self.apply(x)
                done.append(str(x))
            except Exception as e:  # noqa: BLE001
                log.error("cleanup action failed: %s: %s", x, e)
                errors.append(f"{x.kind} {x.target}: {e}")
        if not errors:
            self.owned = Owned()
            self.store.remove()

    # ------------------------------------------------------------------ status
    def _status(self, a: NodeAssignment | None, obs: Observed | None, done: list, errors: list) -> dict:
        now = time.time()
        st: dict = {
            "node": self.cfg.node,
            "pid": os.getpid(),
            "updated": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
            "updatedEpoch": now,
            "lastActions": done,
            "errors": errors,
            "warnings": [],
        }
        if a is None:
            st.update(ready=False, assignment=None, checks={},
                      problems=[f"assignment: {self.assignment_error}" if self.assignment_error
                                else f"no assignment for node {self.cfg.node}"])
        else:
            checks, problems = planner.evaluate(a, obs, self.sysctl_unwritable)
            if self.assignment_error:
                checks["assignment"] = {"ok": False, "detail": f"malformed, using the previous one: {self.assignment_error}"}
                problems.insert(0, f"assignment: malformed, using the previous one: {self.assignment_error}")
            st["warnings"] = [f"route via {a.interface} left alone: {r}" for r in planner.foreign_routes(a, obs)]
            st["warnings"] += [f"cannot set net.{p.replace('/', '.')} ({why})" for p, why in sorted(self.sysctl_unwritable.items())
                               if p in {k for k in planner.desired_sysctls(a)}]
            st.update(ready=all(c["ok"] for c in checks.values()) and not errors,
                      checks=checks, problems=problems + errors,
                      assignment={"driver": a.driver, "interface": a.interface, "portId": a.port_id,
                                  "mac": a.mac, "ip": f"{a.ip}/{a.prefix_length}", "mtu": a.mtu,
                                  "bridge": a.bridge, "udpPorts": list(a.udp_ports), "bound": a.bound},
                      firewallBackend=obs.fw.backend if obs and obs.fw else None)
        key = (st["ready"], tuple(st["problems"]))
        if key != self._last_status_key:
            if st["ready"]:
                log.info("ready: plumbing complete and verified")
            else:
                log.warning("not ready: %s", "; ".join(st["problems"]))
            self._last_status_key = key
        atomic_write_json(self.cfg.status_file, st)
        return st

    # -------------------------------------------------------------------- loop
    def close(self) -> None:
        self.fw.close()
        self.ovs.close()
        self.nl.close()

    def run(self, once: bool = False) -> int:
        from .netlink import EventSocket

        if once:
            try:
                return 0 if self.reconcile()["ready"] else 1
            finally:
                self.close()
        stop = {"flag": False}
        rfd, wfd = os.pipe()
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)

        def on_signal(signum, _frame):
            log.info("signal %d: stopping (plumbing is left in place)", signum)
            stop["flag"] = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        signal.set_wakeup_fd(wfd)
        events = EventSocket()
        try:
            self._awatch = DirWatch(self.cfg.assignments)
        except OSError as e:
            log.warning("cannot watch the assignment file's directory (%s); looking at the file every %ss", e, POLL)
            self._awatch = None
        log.info("octavia-hostagent running: node=%s assignments=%s ovsdb=%s interval=%ss",
                 self.cfg.node, self.cfg.assignments, self.cfg.ovsdb, self.cfg.interval)
        try:
            while not stop["flag"]:
                seen = self._assignment_signature()
                ready = False
                try:
                    ready = bool(self.reconcile()["ready"])
                except Exception:  # noqa: BLE001 -- never die on one bad pass
                    log.exception("reconcile pass failed")
                    try:
                        atomic_write_json(self.cfg.status_file, {
                            "node": self.cfg.node, "ready": False, "pid": os.getpid(),
                            "updatedEpoch": time.time(), "problems": ["internal error; see the logs"],
                            "checks": {}})
                    except OSError:
                        pass
                # Ready: every change has an event source or a POLL look, the periodic pass is a safety
                # net. Not ready (or the firewall cannot be watched): retry sooner.
                interval = self.cfg.interval if ready and self.fw.watching else min(self.cfg.interval, RETRY_INTERVAL)
                why = self._wait(events, rfd, stop, seen, time.monotonic(), interval)
                if why:
                    log.debug("pass: %s", why)
        finally:
            events.close()
            if self._awatch is not None:
                self._awatch.close()
            self.close()
        return 0

    def _wait(self, events, rfd: int, stop: dict, seen, last_pass: float, interval: float) -> str | None:
        """Waits for a reason to start the next pass: an event (rtnetlink, OVSDB monitor, nf_tables), a
        change found by the POLL looks, or the end of ``interval`` (returns None)."""
        deadline = last_pass + interval
        why = self.ovs.pending()  # monitor updates read during the pass (e.g. caused by someone meanwhile)
        next_poll = time.monotonic()
        aw = self._awatch
        while why is None and not stop["flag"]:
            now = time.monotonic()
            if now >= next_poll:
                if not (aw is not None and aw.wd is not None):
                    if aw is not None:
                        aw.ensure()  # (re)watch; the look below covers the gap
                    if self._assignment_signature() != seen:
                        log.info("the assignment file changed: reconciling now")
                        return "assignment file changed"  # at once: nothing to let settle
                why = self._poll(now)
                next_poll = now + POLL if self._needs_poll() else deadline
                if why:
                    break
            left = deadline - now
            if left <= 0:
                return None
            fds = [events, rfd]
            if aw is not None and aw.wd is not None:
                fds.append(aw)
            if self.ovs.connected:
                fds.append(self.ovs)
            if self.fw.events is not None:
                fds.append(self.fw.events)
            r, _, _ = select.select(fds, [], [], max(0.0, min(left, next_poll - now)))
            if rfd in r:
                try:
                    os.read(rfd, 512)
                except BlockingIOError:
                    pass
            if aw is not None and aw in r:
                aw.drain()
                if self._assignment_signature() != seen:
                    log.info("the assignment file changed: reconciling now")
                    return "assignment file changed"
            if events in r:
                events.drain()
                why = "netlink event"
            if self.ovs in r:
                why = self.ovs.take_changes() or why
            if self.fw.events is not None and self.fw.events in r and self.fw.events.drain():
                why = why or "firewall rules changed"
        if why and not stop["flag"]:
            # let a burst of changes settle; at most ~1 event-driven pass per second
            time.sleep(max(0.2, MIN_EVENT_GAP - (time.monotonic() - last_pass)))
            events.drain()
            self.ovs.take_changes()
            if self.fw.events is not None:
                self.fw.events.drain()
        return why

    def _needs_poll(self) -> bool:
        """Whether anything needs the POLL looks (else the loop sleeps until an event or the deadline)."""
        return bool(self._sysctls_seen or self.fw.polled or (self.ovs.keep and not self.ovs.connected)
                    or self._awatch is None or self._awatch.wd is None)

    def _poll(self, now: float) -> str | None:
        """The cheap looks at what announces nothing."""
        for path, value in self._sysctls_seen.items():
            if self.nl.get_sysctl(path) != value:
                return f"net.{path.replace('/', '.')} changed"
        if self.fw.changed():
            return "legacy filter table changed"
        if self.ovs.keep and not self.ovs.connected and now >= self._ovsdb_retry:
            from .ovsdb import OvsdbError
            self._ovsdb_retry = now + OVSDB_RETRY
            try:
                self.ovs.connect(timeout=OVSDB_RETRY)
            except OvsdbError:
                return None
            return "OVSDB reachable again"
        return None

    def _assignment_signature(self) -> tuple[int, int, int] | None:
        """Identity of the assignment file's content (a ConfigMap update swaps the file behind a symlink:
        another inode); None when it is missing."""
        try:
            st = os.stat(self.cfg.assignments)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size
