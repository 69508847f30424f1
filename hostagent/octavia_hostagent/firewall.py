"""iptables driver: the agent's own chain in the filter table, using the node's backend.

Backend detection follows kube-proxy's iptables-wrapper: if the kubelet/kube-proxy
hint chains (KUBE-IPTABLES-HINT, KUBE-KUBELET-CANARY) exist in one backend, use it;
otherwise use the backend with more rules (ties go to nft).
"""
from __future__ import annotations

import logging
import shutil
import subprocess

from .model import FW_CHAIN, FwObs

log = logging.getLogger(__name__)
BACKENDS = ("nft", "legacy")
HINTS = ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY")


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


class Firewall:
    def __init__(self, backend: str = "auto"):
        self.requested = backend
        self.backend: str | None = None if backend == "auto" else backend

    def ensure_backend(self) -> str:
        if self.backend is None:
            self.backend = detect_backend()
            log.info("firewall: using iptables-%s (detected as kube-proxy does)", self.backend)
        return self.backend

    def observe(self) -> FwObs:
        try:
            backend = self.ensure_backend()
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
