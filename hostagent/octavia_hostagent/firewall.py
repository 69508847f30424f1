"""iptables driver: the agent's own chain in the filter table, using the node's backend.

Backend detection follows kube-proxy's iptables-wrapper: if the kubelet/kube-proxy
hint chains (KUBE-IPTABLES-HINT, KUBE-KUBELET-CANARY) exist in one backend, use it;
otherwise use the backend with more rules (ties go to nft).

Change detection, so that the agent's loop repairs the rules without waiting for its periodic pass:
- nft backend: the nf_tables netlink notifications (what ``nft monitor`` prints, read from a
  NETLINK_NETFILTER socket subscribed to NFNLGRP_NFTABLES; no ``nft`` binary needed). Only changes
  to table ``filter`` (ip/ip6) that touch the table itself, ``INPUT`` or the agent's chain count.
- legacy backend: the kernel announces nothing. The loop compares, every few hundred ms, the filter
  tables' shape (``IPT_SO_GET_INFO``: entry count, size, hook offsets, per family; one getsockopt, no
  subprocess) with the shape seen at the last observation. Any rule added, deleted or flushed, any
  chain created or deleted changes it; a rule replaced in place by one of the same size does not
  (that is left to the periodic pass).
"""
from __future__ import annotations

import ctypes
import errno
import logging
import shutil
import socket
import struct
import subprocess

from .model import FW_CHAIN, FwObs

log = logging.getLogger(__name__)
BACKENDS = ("nft", "legacy")
HINTS = ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY")

# nf_tables notifications (linux/netfilter/nfnetlink.h, nf_tables.h)
NETLINK_NETFILTER = 12
NFNLGRP_NFTABLES = 7
NFNL_SUBSYS_NFTABLES = 10
NFPROTO_IPV4, NFPROTO_IPV6 = 2, 10
NFT_TABLE_MSGS = {0, 2, 26}  # NEWTABLE, DELTABLE, DESTROYTABLE
NFT_CHAIN_MSGS = {3, 5, 27}  # NEWCHAIN, DELCHAIN, DESTROYCHAIN
NFT_RULE_MSGS = {6, 8, 28}  # NEWRULE, DELRULE, DESTROYRULE
NFTA_TABLE_NAME = 1
NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME = 1, 3
NFTA_RULE_TABLE, NFTA_RULE_CHAIN = 1, 2
WATCHED_CHAINS = ("INPUT", FW_CHAIN)

# legacy x_tables (linux/netfilter_ipv4/ip_tables.h): IPT_SO_GET_INFO = IP6T_SO_GET_INFO = 64
SO_GET_INFO = 64
SOL_IPV6 = 41
GETINFO_LEN = 84  # struct ipt_getinfo: name[32], valid_hooks, hook_entry[5], underflow[5], num_entries, size


class FirewallError(RuntimeError):
    pass


def _tool(family: int, backend: str, suffix: str = "") -> str:
    base = "iptables" if family == 4 else "ip6tables"
    return f"{base}-{backend}{suffix}"


def _run(args: list[str], input: str | None = None, check: bool = True) -> str:
    try:
        p = subprocess.run(args, input=input, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise FirewallError(f"{args[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise FirewallError(f"{args[0]} timed out") from None
    if check and p.returncode != 0:
        raise FirewallError(f"{' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
    return p.stdout


def choose_backend(saves: dict) -> str:
    """Pure: ``saves`` maps backend -> concatenated save output of both families (or None)."""
    for b in BACKENDS:
        if saves.get(b) and any(h in saves[b] for h in HINTS):
            return b
    counts = {b: sum(1 for ln in (saves.get(b) or "").splitlines() if ln.startswith("-")) for b in BACKENDS}
    return "legacy" if counts["legacy"] > counts["nft"] else "nft"


def detect_backend() -> str:
    saves = {}
    for b in BACKENDS:
        out = []
        for fam in (4, 6):
            exe = _tool(fam, b, "-save")
            if shutil.which(exe) is None:
                continue
            try:
                out.append(_run([exe], check=False))
            except FirewallError:
                pass
        saves[b] = "\n".join(out) if out else None
    return choose_backend(saves)


def parse_save(text: str) -> tuple[list[str] | None, list[str]]:
    """Pure: from ``iptables-save -t filter`` output, our chain's rules (None if the chain
    does not exist) and the INPUT rules that jump to it."""
    chain = None
    jumps, rules = [], []
    for ln in text.splitlines():
        ln = ln.strip()
        if ln == f":{FW_CHAIN} - [0:0]" or ln.startswith(f":{FW_CHAIN} "):
            chain = True
        elif ln.startswith(f"-A {FW_CHAIN} "):
            rules.append(ln)
        elif ln.startswith("-A INPUT ") and ln.endswith(f"-j {FW_CHAIN}"):
            jumps.append(ln)
    return (rules if chain else None), jumps


def restore_text(rules: list[str]) -> str:
    return "*filter\n:%s - [0:0]\n%s\nCOMMIT\n" % (FW_CHAIN, "\n".join(rules))


def _nl_attrs(body: bytes, off: int) -> dict:
    attrs = {}
    while off + 4 <= len(body):
        alen, atype = struct.unpack_from("=HH", body, off)
        if alen < 4:
            break
        attrs[atype & 0x3FFF] = body[off + 4:off + alen]
        off += (alen + 3) & ~3
    return attrs


def _nl_str(v: bytes | None) -> str | None:
    return None if v is None else v.split(b"\0", 1)[0].decode(errors="replace")


def nft_relevant(data: bytes) -> bool:
    """Pure: whether a datagram of nf_tables notifications concerns the agent's rules: table ``filter``
    of family ip or ip6, the table itself or its chains ``INPUT`` and the agent's chain. A message
    that names table ``filter`` but cannot be parsed counts as relevant."""
    if b"filter\0" not in data:
        # every relevant message names the table; kube-proxy's churn is mostly in table nat: skipped
        # here at C speed instead of being parsed message by message
        return False
    off = 0
    while off + 16 <= len(data):
        ln, typ = struct.unpack_from("=IH", data, off)
        if ln < 16 or off + ln > len(data):
            return True
        body = data[off + 16:off + ln]
        off += (ln + 3) & ~3
        if typ >> 8 != NFNL_SUBSYS_NFTABLES:
            continue  # NLMSG_* control messages
        if len(body) < 4:
            return True
        msg, family = typ & 0xFF, body[0]
        if family not in (NFPROTO_IPV4, NFPROTO_IPV6):
            continue
        attrs = _nl_attrs(body, 4)
        if msg in NFT_TABLE_MSGS:
            if _nl_str(attrs.get(NFTA_TABLE_NAME)) in ("filter", None):
                return True
        elif msg in NFT_CHAIN_MSGS:
            if (_nl_str(attrs.get(NFTA_CHAIN_TABLE)) in ("filter", None)
                    and _nl_str(attrs.get(NFTA_CHAIN_NAME)) in (*WATCHED_CHAINS, None)):
                return True
        elif msg in NFT_RULE_MSGS:
            if (_nl_str(attrs.get(NFTA_RULE_TABLE)) in ("filter", None)
                    and _nl_str(attrs.get(NFTA_RULE_CHAIN)) in (*WATCHED_CHAINS, None)):
                return True
    return False


class NftEvents:
    """nf_tables notifications of this network namespace, used as a wake-up."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, NETLINK_NETFILTER)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self.sock.bind((0, 1 << (NFNLGRP_NFTABLES - 1)))
        except OSError:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self) -> bool:
        """Reads every pending notification; True when one concerns the agent's rules (or some
        were lost: the socket overran)."""
        relevant = False
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return relevant
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    relevant = True
                    continue
                raise
            relevant = relevant or nft_relevant(data)

    def close(self) -> None:
        self.sock.close()


class LegacyTables:
    """The shape of the legacy filter tables (both families), read with IPT_SO_GET_INFO."""

    def __init__(self):
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._socks = {}
        for fam, af in ((4, socket.AF_INET), (6, socket.AF_INET6)):
            self._socks[fam] = socket.socket(af, socket.SOCK_RAW, socket.IPPROTO_RAW)  # CAP_NET_RAW

    def signature(self) -> tuple:
        out = []
        for fam, s in self._socks.items():
            buf = ctypes.create_string_buffer(b"filter", GETINFO_LEN)
            ln = ctypes.c_uint(GETINFO_LEN)
            level = socket.SOL_IP if fam == 4 else SOL_IPV6
            if self._libc.getsockopt(s.fileno(), level, SO_GET_INFO, buf, ctypes.byref(ln)) != 0:
                out.append(("error", ctypes.get_errno()))
            else:
                out.append(struct.unpack_from("=12I", buf.raw, 32))
        return tuple(out)

    def close(self) -> None:
        for s in self._socks.values():
            s.close()


class Firewall:
    def __init__(self, backend: str = "auto"):
        self.requested = backend
        self.backend: str | None = None if backend == "auto" else backend
        #: nft backend: the notification socket (the loop selects on it)
        self.events: NftEvents | None = None
        self._legacy: LegacyTables | None = None
        self._legacy_seen: tuple | None = None
        self._watch_error: str | None = None

    def ensure_backend(self) -> str:
        if self.backend is None:
            self.backend = detect_backend()
            log.info("firewall: using iptables-%s (detected as kube-proxy does)", self.backend)
        return self.backend

    # ------------------------------------------------------------ change detection
    def _watch(self, backend: str) -> None:
        """Starts the change detection of the backend (once), before the rules are first read."""
        if self.events is not None or self._legacy is not None or self._watch_error is not None:
            return
        try:
            if backend == "nft":
                self.events = NftEvents()
            else:
                self._legacy = LegacyTables()
            log.info("firewall: watching iptables-%s for changes (%s)", backend,
                     "nf_tables notifications" if backend == "nft" else "filter table shape, polled")
        except OSError as e:
            self._watch_error = str(e)
            log.warning("firewall: cannot watch iptables-%s for changes (%s); the periodic pass repairs the rules",
                        backend, e)

    @property
    def watching(self) -> bool:
        return self.events is not None or self._legacy is not None

    @property
    def polled(self) -> bool:
        """Whether changed() needs calling (legacy backend)."""
        return self._legacy is not None

    def changed(self) -> bool:
        """Legacy backend: whether the filter tables' shape differs from the last observation's."""
        return self._legacy is not None and self._legacy.signature() != self._legacy_seen

    def close(self) -> None:
        for w in (self.events, self._legacy):
            if w is not None:
                w.close()
        self.events = self._legacy = None

    def observe(self) -> FwObs:
        try:
            backend = self.ensure_backend()
            self._watch(backend)
            if self._legacy is not None:
                self._legacy_seen = self._legacy.signature()  # taken before reading: no change is missed
            obs = FwObs(backend=backend)
            for fam in (4, 6):
                rules, jumps = parse_save(_run([_tool(fam, backend, "-save"), "-t", "filter"]))
                obs.chains[fam] = rules
                obs.jumps[fam] = jumps
            return obs
        except FirewallError as e:
            return FwObs(backend=self.backend or "?", available=False, error=str(e))

    def sync(self, family: int, backend: str, rules: list[str], jumps: list[str], current_jumps: list[str]) -> None:
        """Replace the chain's content atomically and keep exactly one of each jump from INPUT."""
        # --noflush keeps every other chain; declaring our chain flushes and refills it.
        _run([_tool(family, backend, "-restore"), "-w", "--noflush"], input=restore_text(rules))
        ipt = _tool(family, backend)
        kept = set()
        for j in current_jumps:
            if j in jumps and j not in kept:
                kept.add(j)
                continue
            _run([ipt, "-w", "-D", "INPUT", *j.split()[2:]], check=False)
        for j in jumps:
            if j not in kept:
                _run([ipt, "-w", "-I", "INPUT", "1", *j.split()[2:]])

    def remove(self, backends) -> list[str]:
        """Remove the chain and every jump to it from the given backends; returns what was removed."""
        removed = []
        for backend in backends:
            for fam in (4, 6):
                save = _tool(fam, backend, "-save")
                if shutil.which(save) is None:
                    continue
                try:
                    rules, jumps = parse_save(_run([save, "-t", "filter"]))
                except FirewallError:
                    continue
                ipt = _tool(fam, backend)
                for j in jumps:
                    _run([ipt, "-w", "-D", "INPUT", *j.split()[2:]], check=False)
                if rules is not None:
                    _run([ipt, "-w", "-F", FW_CHAIN], check=False)
                    _run([ipt, "-w", "-X", FW_CHAIN], check=False)
                    removed.append(f"{ipt} chain {FW_CHAIN}")
        return removed
