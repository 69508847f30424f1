"""TCP port bridge between a network namespace and the host: the test's stand-in for a cluster network.

    python -m pods.portbridge --netns NS [--into NSPORT=HOST:PORT ...] [--out HOSTPORT=NSPORT ...]

--into  listens on 127.0.0.1:NSPORT inside NS and connects to HOST:PORT in the caller's namespace
        (a pod reaches the loopback cloud, or the server that plays a Service, at the address its
        configuration names);
--out   listens on 127.0.0.1:HOSTPORT in the caller's namespace and connects to 127.0.0.1:NSPORT inside
        NS (the test reaches a pod's port, as a Service would).

One process holds sockets of both namespaces: it enters NS (setns) to open the --into listeners and
the --out connections, and returns to its own namespace for the rest. Prints "ready" once listening.
Stopped by SIGTERM (by PID, from pods.runner).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
from typing import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the body with this thread in network namespace ``name`` (/run/netns/NAME)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


def _listener(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(128)
    s.setblocking(False)
    return s


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _splice(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, upstream: socket.socket) -> None:
    try:
        up_r, up_w = await asyncio.open_connection(sock=upstream)
    except OSError:
        client_w.close()
        return
    await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))


def _connect_in(netns: str | None, host: str, port: int) -> socket.socket:
    """A connected socket, opened inside ``netns`` (None: here). Blocking connect on loopback is instant."""
    ctx = in_netns(netns) if netns else contextlib.nullcontext()
    with ctx:
        s = socket.create_connection((host, port), timeout=5)
    s.setblocking(False)
    return s


async def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--netns", required=True)
    ap.add_argument("--into", action="append", default=[], help="NSPORT=HOST:PORT")
    ap.add_argument("--out", action="append", default=[], help="HOSTPORT=NSPORT")
    args = ap.parse_args(argv)
    servers = []

    for spec in args.into:
        ns_port, target = spec.split("=", 1)
        host, port = target.rsplit(":", 1)
        with in_netns(args.netns):
            sock = _listener(int(ns_port))

        async def on_into(r, w, host=host, port=int(port)):
            try:
                up = _connect_in(None, host, port)
            except OSError:
                w.close()
                return
            await _splice(r, w, up)
        servers.append(await asyncio.start_server(on_into, sock=sock))

    for spec in args.out:
        host_port, ns_port = spec.split("=", 1)
        sock = _listener(int(host_port))

        async def on_out(r, w, port=int(ns_port)):
            try:
                up = _connect_in(args.netns, "127.0.0.1", port)
            except OSError:
                w.close()
                return
            await _splice(r, w, up)
        servers.append(await asyncio.start_server(on_out, sock=sock))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for s in servers:
        s.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
