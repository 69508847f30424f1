"""Link, address and route I/O through netlink (pyroute2), plus the event socket."""
from __future__ import annotations

import errno
import ipaddress
import logging
import os
import select
import socket
import time

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from .model import LINK_ALIAS, LinkObs, RouteObs

log = logging.getLogger(__name__)

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
MAIN_TABLE = 254
IFF_UP = 0x1
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08


def _family(f: int) -> int:
    return 4 if f == socket.AF_INET else 6


class NetlinkDriver:
    def __init__(self):
        self.ipr = IPRoute()

    def close(self) -> None:
        self.ipr.close()

    # ------------------------------------------------------------------ observe
    def observe(self, names: set, bridge: str | None = None):
        """Links (all, so that owned/aliased ones are seen), global addresses and main-table
        routes of the named links."""
        links = {}
        by_index = {}
        for msg in self.ipr.link("dump"):
            name = msg.get("ifname")
            info = msg.get("linkinfo")
            kind = info.get("kind") if info is not None else None
            l = LinkObs(
                name=name,
                index=msg["index"],
                mac=(msg.get("address") or "").lower(),
                mtu=msg.get("mtu") or 0,
                up=bool(msg["flags"] & IFF_UP),
                kind=kind,
                alias=msg.get("ifalias"),
                peer_index=msg.get("link") if kind == "veth" else None,
            )
            l._master_index = msg.get("master")  # type: ignore[attr-defined]
            by_index[l.index] = l
            if name in names or l.alias == LINK_ALIAS or name == bridge:
                links[name] = l
        for l in links.values():
            mi = getattr(l, "_master_index", None)
            l.master = by_index[mi].name if mi in by_index else None
        addrs = {n: [] for n in links}
        idx_name = {l.index: n for n, l in links.items()}
        for msg in self.ipr.addr("dump"):
            n = idx_name.get(msg["index"])
            if n is None or msg["scope"] != 0:  # only global-scope addresses (no link-local)
                continue
            if (msg.get_attr("IFA_FLAGS") or msg["flags"]) & IFA_F_DADFAILED:
                # IPv6 duplicate address detection failed: the kernel keeps the address but never uses
                # it; observed as missing, so the planner adds it again (add_addr replaces it)
                continue
            addrs[n].append((str(ipaddress.ip_address(msg.get("address"))), msg["prefixlen"]))
        routes = {n: [] for n in links}
        for fam in (socket.AF_INET, socket.AF_INET6):
            for msg in self.ipr.route("dump", family=fam):
                if msg.get("table") != MAIN_TABLE or msg["type"] not in (1,):  # unicast only
                    continue
                n = idx_name.get(msg.get("oif"))
                if n is None:
                    continue
                dst = msg.get("dst")
                zero = "0.0.0.0" if fam == socket.AF_INET else "::"
                routes[n].append(RouteObs(dst=f"{dst or zero}/{msg['dst_len']}", gateway=msg.get("gateway"),
                                          family=_family(fam), proto=msg["proto"], table=MAIN_TABLE))
        return links, addrs, routes

    def get_sysctl(self, path: str) -> str | None:
        """``path`` is relative to /proc/sys/net (per network namespace). Raw os calls: the agent's loop
        reads this every POLL seconds, and a text-mode open() costs several times more."""
        try:
            fd = os.open(f"/proc/sys/net/{path}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            return os.read(fd, 256).decode().strip()
        except OSError:
            return None
        finally:
            os.close(fd)

    def set_sysctl(self, path: str, value: str) -> None:
        with open(f"/proc/sys/net/{path}", "w") as f:
            f.write(value)

    # -------------------------------------------------------------------- apply
    def index(self, name: str) -> int:
        idx = self.ipr.link_lookup(ifname=name)
        if not idx:
            raise LookupError(f"link {name} not found")
        return idx[0]

    def wait_link(self, name: str, timeout: float) -> bool:
        """Waits for the link to exist: looks, then looks again on each RTM_NEWLINK (subscribed
        before the first look, so a creation in between is not missed)."""
        deadline = time.monotonic() + timeout
        events = EventSocket(RTMGRP_LINK)
        try:
            while True:
                if self.ipr.link_lookup(ifname=name):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                if select.select([events], [], [], left)[0]:
                    events.drain()
        finally:
            events.close()

    def create_veth(self, name: str, peer: str) -> None:
        self.ipr.link("add", ifname=name, kind="veth", peer={"ifname": peer})
        for n in (name, peer):
            self.ipr.link("set", index=self.index(n), ifalias=LINK_ALIAS)

    def delete_link(self, name: str) -> None:
        try:
            self.ipr.link("del", index=self.index(name))
        except LookupError:
            pass
        except NetlinkError as e:
            if e.code != errno.ENODEV:
                raise

    def set_link(self, name: str, mac: str | None = None, mtu: int | None = None,
                 up: bool | None = None, master: str | None = None) -> None:
        idx = self.index(name)
        if master is not None:
            self.ipr.link("set", index=idx, master=self.index(master))
        if mac is not None:
            self.ipr.link("set", index=idx, address=mac)
        if mtu is not None:
            self.ipr.link("set", index=idx, mtu=mtu)
        if up:
            self.ipr.link("set", index=idx, state="up")

    def add_addr(self, name: str, address: str, prefixlen: int) -> None:
        idx = self.index(name)
        v6 = ipaddress.ip_address(address).version == 6
        # IPv6: no duplicate address detection. Neutron's IPAM owns the address (nothing else on the
        # network can hold it), and DAD would leave it tentative (unusable) for a second or two, or
        # "dadfailed" for good when a looped-back neighbour solicitation is taken for a duplicate.
        kw = {"flags": IFA_F_NODAD} if v6 else {}
        try:
            self.ipr.addr("add", index=idx, address=address, prefixlen=prefixlen, **kw)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
            if v6:  # only reached when observe() found it missing: a dadfailed copy, replaced
                self.ipr.addr("del", index=idx, address=address, prefixlen=prefixlen)
                self.ipr.addr("add", index=idx, address=address, prefixlen=prefixlen, **kw)

    def del_addr(self, name: str, address: str, prefixlen: int) -> None:
        try:
            self.ipr.addr("del", index=self.index(name), address=address, prefixlen=prefixlen)
        except LookupError:
            pass  # the link is gone, and its addresses with it
        except NetlinkError as e:
            if e.code not in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH):
                raise

    def del_route(self, name: str, dst: str, gateway: str | None, family: int) -> None:
        net = ipaddress.ip_network(dst)
        kw = dict(dst=str(net.network_address), dst_len=net.prefixlen, oif=self.index(name), table=MAIN_TABLE,
                  family=socket.AF_INET if family == 4 else socket.AF_INET6)
        if gateway:
            kw["gateway"] = gateway
        try:
            self.ipr.route("del", **kw)
        except NetlinkError as e:
            if e.code not in (errno.ESRCH, errno.ENOENT):
                raise

    def add_connected_route(self, name: str, dst: str, src: str, family: int) -> None:
        net = ipaddress.ip_network(dst)
        kw = dict(dst=str(net.network_address), dst_len=net.prefixlen, oif=self.index(name), table=MAIN_TABLE,
                  scope=253, proto=2, family=socket.AF_INET if family == 4 else socket.AF_INET6)
        if family == 4:
            kw["prefsrc"] = src
        try:
            self.ipr.route("add", **kw)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise


class EventSocket:
    """Raw rtnetlink socket subscribed to link/address/route changes, used only as a wake-up."""

    def __init__(self, groups: int = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR
                 | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, groups))

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self) -> int:
        n = 0
        while True:
            try:
                self.sock.recv(1 << 16)
                n += 1
            except BlockingIOError:
                return n
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # overrun: we only care that something happened
                    n += 1
                    continue
                raise

    def close(self) -> None:
        self.sock.close()
