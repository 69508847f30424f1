"""Command line: octavia-hostagent run | status | cleanup."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from .agent import Agent, Config

DEFAULTS = Config()


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", default=os.environ.get("OCTAVIA_HOSTAGENT_STATE_DIR", DEFAULTS.state_dir),
                   help="where the agent records what it created (default %(default)s)")
    p.add_argument("--status-file", default=os.environ.get("OCTAVIA_HOSTAGENT_STATUS_FILE", DEFAULTS.status_file),
                   help="status JSON written after every pass (default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="octavia-hostagent", description="Plumbs o-hm0 (Octavia's management "
                                 "interface) on this node and keeps it plumbed.")
    ap.add_argument("--log-level", default=os.environ.get("OCTAVIA_HOSTAGENT_LOG_LEVEL", "INFO"))
    sub = ap.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", help="reconcile continuously (or once with --once)")
    _common(run)
    run.add_argument("--assignments", default=os.environ.get("OCTAVIA_HOSTAGENT_ASSIGNMENTS", DEFAULTS.assignments))
    run.add_argument("--node", default=os.environ.get("NODE_NAME", ""), help="node name (default: $NODE_NAME)")
    run.add_argument("--ovsdb", default=os.environ.get("OCTAVIA_HOSTAGENT_OVSDB", DEFAULTS.ovsdb),
                     help="OVSDB server, unix:PATH or tcp:HOST:PORT (default %(default)s)")
    run.add_argument("--interval", type=float, default=float(os.environ.get("OCTAVIA_HOSTAGENT_INTERVAL", DEFAULTS.interval)),
                     help="seconds between full verification passes while ready (default %(default)s; changes are "
                          "acted on at once through events and cheap looks; while not ready passes run every 5 s)")
    run.add_argument("--firewall-backend", choices=("auto", "nft", "legacy"),
                     default=os.environ.get("OCTAVIA_HOSTAGENT_FIREWALL_BACKEND", "auto"),
                     help="iptables backend; auto detects it as kube-proxy does")
    run.add_argument("--once", action="store_true", help="one pass; exit 0 when ready, 1 otherwise")

    st = sub.add_parser("status", help="print the status; exit 0 only when ready")
    _common(st)
    st.add_argument("--ready", action="store_true", help="print one line only (for an exec readiness probe)")
    st.add_argument("--max-age", type=float, default=60.0,
                    help="a status older than this many seconds counts as not ready (agent stuck or dead)")

    cl = sub.add_parser("cleanup", help="remove everything the agent created on this node")
    _common(cl)
    cl.add_argument("--ovsdb", default=os.environ.get("OCTAVIA_HOSTAGENT_OVSDB", DEFAULTS.ovsdb))
    return ap


def cmd_status(args) -> int:
    try:
        with open(args.status_file) as f:
            st = json.load(f)
    except (OSError, ValueError) as e:
        print(f"not ready: no status ({e})")
        return 1
    age = time.time() - float(st.get("updatedEpoch", 0))
    ready = bool(st.get("ready")) and age <= args.max_age
    if args.ready:
        if ready:
            print("ready")
        else:
            why = list(st.get("problems") or [])
            if age > args.max_age:
                why.insert(0, f"status is {age:.0f}s old")
            print("not ready: " + "; ".join(why))
    else:
        st["ageSeconds"] = round(age, 1)
        print(json.dumps(st, indent=2, sort_keys=True))
    return 0 if ready else 1


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.cmd == "status":
        return cmd_status(args)
    if args.cmd == "cleanup":
        cfg = Config(ovsdb=args.ovsdb, state_dir=args.state_dir, status_file=args.status_file, node="cleanup")
        agent = Agent(cfg)
        done, errors = [], []
        agent.run_cleanup(None, done, errors)
        for d in done:
            print(d)
        try:
            os.unlink(args.status_file)
        except FileNotFoundError:
            pass
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        return 1 if errors else 0
    cfg = Config(assignments=args.assignments, node=args.node, ovsdb=args.ovsdb, state_dir=args.state_dir,
                 status_file=args.status_file, interval=args.interval, firewall_backend=args.firewall_backend)
    return Agent(cfg).run(once=args.once)


if __name__ == "__main__":
    sys.exit(main())
