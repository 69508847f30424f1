"""A simulated amphora's health sender: Octavia's own heartbeat envelope, over UDP, for the tests.

    <octavia venv>/bin/python amphora_sim.py --id AMP_ID --key-file F --dests-file F [--interval 1]

Every interval it reads the destinations (one "ip:port" per line, as controller_ip_port_list lists
them; re-read each round, as the amphora agent re-reads its config after a push) and the key, and
sends each destination a heartbeat built by octavia.amphorae.backends.health_daemon.status_message
(the amphora agent's own code): {"id", "seq", "listeners": {}, "pools": {}, "ver": 3}, HMAC-signed with
the key. Runs inside the network namespace that plays the amphora; stopped by SIGTERM.
"""
from __future__ import annotations

import argparse
import socket
import time

from octavia.amphorae.backends.health_daemon import status_message


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--id", required=True)
    ap.add_argument("--key-file", required=True)
    ap.add_argument("--dests-file", required=True)
    ap.add_argument("--interval", type=float, default=1.0)
    args = ap.parse_args()
    socks = {socket.AF_INET: socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
             socket.AF_INET6: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)}
    seq = 0
    while True:
        seq += 1
        key = open(args.key_file).read().strip()
        dests = [d.strip() for d in open(args.dests_file).read().replace(",", "\n").splitlines() if d.strip()]
        msg = {"id": args.id, "seq": seq, "listeners": {}, "pools": {}, "ver": 3}
        envelope = status_message.wrap_envelope(msg, key)
        for d in dests:
            host, port = d.rsplit(":", 1)
            try:
                family, _, _, _, addr = socket.getaddrinfo(host.strip("[]"), int(port), 0, socket.SOCK_DGRAM)[0]
                socks[family].sendto(envelope, addr)
            except OSError as e:
                print(f"send to {d}: {e}", flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
