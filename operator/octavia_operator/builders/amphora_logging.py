"""Amphora log offloading: the node-side rsyslog receiver and Octavia's log target lists (pure).

Amphorae forward two log streams with rsyslog ``omfwd`` to the targets listed in octavia.conf
``[amphora_agent]`` (see docs/amphora-logging-notes.md):

* ``admin_log_targets``: administrative logs (haproxy/keepalived/amphora-agent on
  ``local<administrative_log_facility>``, every facility but the tenant one when
  ``forward_all_logs``);
* ``tenant_log_targets``: tenant flow logs (haproxy traffic logs, ``local<user_log_facility>.=info``).

The receiver runs next to the health manager (hostNetwork, on the nodes whose ``o-hm0`` holds a
health-manager port IP), as a non-root container process::

    rsyslogd -n -f <conf> -i <work_dir>/rsyslogd.pid

and prints every message it receives on its stdout (``kubectl logs``), one line each, starting
with ``admin`` or ``tenant`` according to the port it came in on (not the facility: with
``forward_all_logs`` the admin stream carries any facility).

Nothing here performs I/O.
"""
from __future__ import annotations

import ipaddress
from typing import Iterable

__all__ = [
    "ADMIN_LOG_PORT",
    "TENANT_LOG_PORT",
    "RECEIVER_UID",
    "DEFAULT_WORK_DIR",
    "receiver_rsyslog_conf",
    "receiver_command",
    "log_targets",
]

ADMIN_LOG_PORT = 10514
TENANT_LOG_PORT = 20514
RECEIVER_UID = 42437  # the octavia user of the Kolla/Red Hat images; any non-root uid works
DEFAULT_WORK_DIR = "/tmp"  # mount an emptyDir there when the root filesystem is read-only

_PROTOCOLS = ("udp", "tcp")


def _port(port: int, what: str) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"{what} must be a port number 1..65535, got {port!r}")
    return port


def _protocols(protocols: Iterable[str]) -> tuple[str, ...]:
    # Octavia spells them "UDP"/"TCP" ([amphora_agent] log_protocol); rsyslog does not care
    wanted = {p.lower() for p in protocols}
    unknown = wanted - set(_PROTOCOLS)
    if unknown or not wanted:
        raise ValueError(f"protocols must be a non-empty subset of UDP, TCP, got {tuple(protocols)!r}")
    return tuple(p for p in _PROTOCOLS if p in wanted)


def receiver_rsyslog_conf(admin_port: int, tenant_port: int, protocols: tuple[str, ...] = ("UDP", "TCP"),
                          work_dir: str = DEFAULT_WORK_DIR) -> str:
    """A complete rsyslogd configuration (RainerScript) for the amphora log receiver.

    It listens on ``admin_port`` and ``tenant_port`` with each of ``protocols`` (``UDP``/``TCP``,
    any case) on every IPv4 and IPv6 address, and writes one line per message to ``/dev/stdout``::

        admin 192.0.2.17 2026-01-02T03:04:05+00:00 amphora-6b1f... local1.notice haproxy[812]: ...
        tenant 192.0.2.17 2026-01-02T03:04:05+00:00 amphora-6b1f... local0.info haproxy[812]: ...

    (stream, sender IP, the amphora's own timestamp, hostname, facility.severity, tag, message).
    rsyslogd's own messages go to stderr, prefixed ``rsyslogd``. Loads no imuxsock (no /dev/log),
    no imklog/imjournal, needs no privilege (ports above 1023) and writes only below ``work_dir``.
    Both ports and both protocols share one ruleset and one output action, so lines never interleave.
    """
    _port(admin_port, "admin_port")
    _port(tenant_port, "tenant_port")
    if admin_port == tenant_port:
        raise ValueError("admin_port and tenant_port must differ: the port tells the streams apart")
    protos = _protocols(protocols)
    if not work_dir.startswith("/") or '"' in work_dir or "\n" in work_dir:
        raise ValueError(f"work_dir must be an absolute path, got {work_dir!r}")

    lines = [
        "# Octavia amphora log receiver (rendered by octavia-operator; do not edit)",
        f'global(workDirectory="{work_dir}"',
        '       net.enableDNS="off"',  # keep %fromhost% an IP, no reverse lookups per message
        '       maxMessageSize="64k"',  # haproxy lines with long URLs / headers captured
        '       processInternalMessages="on")',  # own errors through the ruleset below, not syslog()
        "",
        'template(name="octavia_amphora_line" type="string"',
        '         string="%inputname% %fromhost-ip% %timereported:::date-rfc3339% %hostname% '
        '%syslogfacility-text%.%syslogseverity-text% %syslogtag%%msg:::sp-if-no-1st-sp%%msg:::drop-last-lf%\\n")',
        'template(name="octavia_receiver_internal" type="string"',
        '         string="rsyslogd %syslogseverity-text% %msg:::drop-last-lf%\\n")',
        "",
    ]
    for proto in protos:
        lines.append(f'module(load="im{proto}")')
    for proto in protos:
        for stream, port in (("admin", admin_port), ("tenant", tenant_port)):
            # no address= : rsyslog binds one socket per address family (IPv4 and IPv6-only)
            lines.append(f'input(type="im{proto}" port="{port}" name="{stream}" ruleset="octavia_amphora")')
    lines += [
        "",
        'ruleset(name="octavia_amphora") {',
        '  action(type="omfile" file="/dev/stdout" template="octavia_amphora_line"',
        '         flushOnTXEnd="on" asyncWriting="off")',
        "}",
        "",
        "# rsyslogd's own messages (startup, errors) go to the default ruleset",
        'action(type="omfile" file="/dev/stderr" template="octavia_receiver_internal"',
        '       flushOnTXEnd="on" asyncWriting="off")',
        "",
    ]
    return "\n".join(lines)


def receiver_command(conf_file: str, work_dir: str = DEFAULT_WORK_DIR) -> list[str]:
    """argv of the receiver container: rsyslogd in the foreground, pid file in ``work_dir``."""
    return ["rsyslogd", "-n", "-f", conf_file, "-i", f"{work_dir.rstrip('/')}/rsyslogd.pid"]


def log_targets(ips: Iterable[str], port: int) -> str:
    """``[amphora_agent] admin_log_targets`` / ``tenant_log_targets``: ``ip:port,ip:port``.

    Octavia (18.0.1, the same in 16.x and 17.x) splits each item with ``rsplit(':', 1)`` and puts
    the host part verbatim into rsyslog's ``omfwd target=``. IPv6 addresses are therefore written
    WITHOUT brackets (``fd00::5:10514``): the last colon is the port separator, and omfwd hands
    ``[fd00::5]`` to getaddrinfo, which rejects it. The first target is the primary, the others
    are only used while the previous one is suspended (``execOnlyWhenPreviousIsSuspended``).
    Order is kept, duplicates dropped; addresses are normalised (``ipaddress``).
    """
    _port(port, "port")
    out: list[str] = []
    for ip in ips:
        addr = ipaddress.ip_address(ip.strip().strip("[]"))  # ValueError on anything else
        item = f"{addr.compressed}:{port}"
        if item not in out:
            out.append(item)
    return ",".join(out)
