"""Amphora log offloading, end to end with real processes (root, network namespaces).

An "amphora" rsyslogd runs the configuration the REAL Octavia (``/opt/octavia-venv``) renders from
the ``[amphora_agent]`` options our operator will write (``log_targets()`` of the health-manager
IP, the receiver ports, log_protocol UDP or TCP). It forwards, over a veth pair standing for the
management network, to the operator's receiver: a second real rsyslogd, running as uid 42437 with
``receiver_rsyslog_conf()``, whose stdout must show each line marked ``admin`` or ``tenant``.

Needs the Debian package rsyslog: ``sudo bash tests/logging_real/install-rsyslog.sh``. Skips
without it (fails under CI=true). Run:
``.venv/bin/python -m pytest tests/test_amphora_logging.py -p no:cacheprovider -q``
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from logging_real import rsyslog_netns as rn
from octavia_operator.builders.amphora_logging import (
    ADMIN_LOG_PORT,
    RECEIVER_UID,
    TENANT_LOG_PORT,
    log_targets,
    receiver_command,
    receiver_rsyslog_conf,
)

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]

RENDER = Path(__file__).resolve().parent / "logging_real" / "render_amphora_rsyslog.py"


def octavia_conf(admin_targets: str, tenant_targets: str, protocol: str, **extra: str) -> str:
    """The [amphora_agent] logging options as our operator will set them (others: Octavia defaults)."""
    opts = {"admin_log_targets": admin_targets, "tenant_log_targets": tenant_targets, "log_protocol": protocol,
            **extra}
    return "[amphora_agent]\n" + "".join(f"{k} = {v}\n" for k, v in opts.items())


def operator_agent_conf(logging: dict, hm_ips: list[str]) -> str:
    """The [amphora_agent] section exactly as the operator renders it for spec.amphora.logging, with
    these health-manager port addresses."""
    from octavia_operator.builders import config as cfg
    from octavia_operator.spec import parse_spec
    spec = parse_spec({"cloud": {"credentialsSecret": {"name": "c"}}, "amphora": {"logging": logging}})
    cloud = cfg.CloudValues(health_manager_ips={f"node-{i}": ip for i, ip in enumerate(hm_ips)})
    section = cfg.config_sections(spec, cloud)["amphora_agent"]
    return "[amphora_agent]\n" + "".join(f"{k} = {v}\n" for k, v in section.items())


def render_with_octavia(octavia_run, path: Path, conf: str) -> str:
    path.write_text(conf)
    p = octavia_run(["python", str(RENDER), str(path)], timeout=120)
    assert p.returncode == 0, f"Octavia could not render the amphora's rsyslog config:\n{p.stderr[-3000:]}"
    return p.stdout


@pytest.fixture
def workdir():
    # not pytest's tmp_path: /tmp/pytest-of-root is 0700 and the receiver runs as uid 42437
    d = Path(tempfile.mkdtemp(prefix="amp-logging-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def topology():
    rn.require_rsyslog()
    node, amp = rn.NetNS("node"), rn.NetNS("amp")
    try:
        node.create()
        amp.create()
        rn.wire(node, amp)
        yield node, amp
    finally:
        amp.delete()
        node.delete()


@pytest.fixture
def processes():
    started: list = []
    yield started
    for p in reversed(started):
        p.stop()


def start_receiver(node, workdir: Path, protocols: tuple[str, ...], processes: list) -> rn.Receiver:
    conf = receiver_rsyslog_conf(ADMIN_LOG_PORT, TENANT_LOG_PORT, protocols, work_dir=str(workdir / "receiver"))
    rx = rn.Receiver(node, conf, workdir / "receiver", RECEIVER_UID, receiver_command)
    processes.append(rx.start())
    try:
        rn.wait_until(lambda: rx.proc.poll() is not None or rx.listening([ADMIN_LOG_PORT, TENANT_LOG_PORT], protocols),
                      15, what="the receiver's listening sockets")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{rx.diagnostics()}") from None
    assert rx.proc.poll() is None, rx.diagnostics()
    return rx


def start_amphora(amp, workdir: Path, rendered: str, processes: list) -> rn.Amphora:
    adir = workdir / "amphora"
    adir.mkdir()
    (adir / "10-rsyslog.conf").write_text(rendered)
    main = adir / "rsyslog.conf"
    main.write_text(rn.amphora_main_conf(adir, adir / "10-rsyslog.conf", adir / "local.log"))
    check = subprocess.run(["rsyslogd", "-N1", "-f", str(main)], capture_output=True, text=True)
    assert check.returncode == 0, f"rsyslogd rejects the amphora config:\n{check.stderr}\n{rendered}"
    amphora = rn.Amphora(amp, main, adir / "rsyslogd.pid")
    processes.append(amphora)
    return amphora.start()


def wait_for_lines(rx: rn.Receiver, tokens: list[str], timeout: float = 20) -> dict[str, str]:
    def found():
        lines = rx.lines()
        hits = {t: next((ln for ln in lines if t in ln), None) for t in tokens}
        return hits if all(hits.values()) else None
    try:
        return rn.wait_until(found, timeout, what=f"{tokens} at the receiver")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{rx.diagnostics()}") from None


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("protocol", ["UDP", "TCP"])
def test_amphora_logs_reach_receiver(topology, workdir, processes, octavia_run, family, protocol):
    node, amp = topology
    rx = start_receiver(node, workdir, ("UDP", "TCP"), processes)

    hm_ips = [rn.NODE_IP[family]]
    # what the operator writes: UDP to its own receiver on the health-manager addresses; TCP only to
    # external targets (the receiver mode is UDP), here the same receiver given as external targets
    logging = {"mode": "Receiver"} if protocol == "UDP" else {
        "mode": "External", "protocol": "TCP", "adminTargets": [f"{hm_ips[0]}:{ADMIN_LOG_PORT}"],
        "tenantTargets": [f"{hm_ips[0]}:{TENANT_LOG_PORT}"]}
    rendered = render_with_octavia(octavia_run, workdir / "octavia.conf", operator_agent_conf(logging, hm_ips))
    assert f'target="{rn.NODE_IP[family]}"' in rendered and f'protocol="{protocol}"' in rendered, rendered
    amphora = start_amphora(amp, workdir, rendered, processes)

    run_id = uuid.uuid4().hex[:8]
    admin_haproxy = f"admin-haproxy-{run_id}"
    admin_agent = f"admin-agent-{run_id}"
    tenant_flow = f"tenant-flow-{run_id}"
    # Octavia's defaults: administrative_log_facility=1 (haproxy "log ... local1 notice", keepalived
    # --log-facility=1, amphora-agent gunicorn syslog local1), user_log_facility=0 (haproxy traffic
    # logs, info; the template forwards local0.=info only)
    amphora.logger("local1.notice", "haproxy[812]", f"Proxy up {admin_haproxy}")
    amphora.logger("local1.info", "amphora-agent", f"GET /1.0/info {admin_agent}")
    amphora.logger("local0.info", "haproxy[812]",
                   f'203.0.113.7:41234 [02/Jan/2026:03:04:05.006] lb~ pool/m1 0/0/1/2/3 200 {tenant_flow}')

    hits = wait_for_lines(rx, [admin_haproxy, admin_agent, tenant_flow])
    amp_ip = rn.AMP_IP[family]
    assert hits[admin_haproxy].startswith(f"admin {amp_ip} ") and " local1.notice haproxy[812]:" in hits[admin_haproxy]
    assert hits[admin_agent].startswith(f"admin {amp_ip} ") and " local1.info amphora-agent:" in hits[admin_agent]
    assert hits[tenant_flow].startswith(f"tenant {amp_ip} ") and " local0.info haproxy[812]:" in hits[tenant_flow]
    # nothing crossed streams, every received line carries a marker
    lines = rx.lines()
    assert all(ln.split(" ", 1)[0] in ("admin", "tenant") for ln in lines), lines
    assert not [ln for ln in lines if tenant_flow in ln and not ln.startswith("tenant ")], lines
    assert not [ln for ln in lines if admin_haproxy in ln and not ln.startswith("admin ")], lines
    # disable_local_log_storage=false (default): the amphora keeps its own copy as well
    assert tenant_flow in (workdir / "amphora" / "local.log").read_text()


@pytest.mark.parametrize("protocol", ["TCP", "UDP"])
def test_backup_target_with_dead_primary(topology, workdir, processes, octavia_run, protocol):
    """Several health-manager IPs: Octavia makes the 2nd target a backup of the 1st
    (execOnlyWhenPreviousIsSuspended). With TCP a dead primary fails over (after omfwd's retries);
    with UDP omfwd never notices the primary is gone, so nothing reaches the backup."""
    node, amp = topology
    rx = start_receiver(node, workdir, (protocol,), processes)
    dead = "192.0.2.99"  # on the management subnet, nobody answers ARP: connect() fails (EHOSTUNREACH)
    targets = [dead, rn.NODE_IP[4]]
    rendered = render_with_octavia(octavia_run, workdir / "octavia.conf", octavia_conf(
        log_targets(targets, ADMIN_LOG_PORT), log_targets(targets, TENANT_LOG_PORT), protocol,
        log_retry_count="1", log_retry_interval="1"))  # defaults (5, 2): ~50 s until the backup is used
    assert 'execOnlyWhenPreviousIsSuspended="on"' in rendered, rendered
    amphora = start_amphora(amp, workdir, rendered, processes)
    token = f"failover-{uuid.uuid4().hex[:8]}"
    for i in range(3):
        amphora.logger("local1.notice", "haproxy[1]", f"{token}-{i}")
    if protocol == "TCP":
        hits = wait_for_lines(rx, [f"{token}-{i}" for i in range(3)], timeout=120)
        assert all(h.startswith(f"admin {rn.AMP_IP[4]} ") for h in hits.values()), hits
        assert "cannot connect to 192.0.2.99:10514" in amphora.output()
    else:
        with pytest.raises(AssertionError, match="timed out"):
            wait_for_lines(rx, [f"{token}-0"], timeout=10)


def test_bracketed_ipv6_target_is_not_usable(topology, workdir, processes, octavia_run):
    """Why log_targets() writes IPv6 bare: Octavia rsplit(':', 1)s each target and hands the host
    part to omfwd verbatim, so ``[fd00::1]:10514`` becomes ``target="[fd00::1]"``, which rsyslog
    cannot resolve: nothing is ever forwarded."""
    node, amp = topology
    rx = start_receiver(node, workdir, ("UDP", "TCP"), processes)
    node_ip = rn.NODE_IP[6]
    assert log_targets([f"[{node_ip}]"], ADMIN_LOG_PORT) == f"{node_ip}:{ADMIN_LOG_PORT}"
    rendered = render_with_octavia(octavia_run, workdir / "octavia.conf", octavia_conf(
        f"[{node_ip}]:{ADMIN_LOG_PORT}", f"[{node_ip}]:{TENANT_LOG_PORT}", "TCP"))
    assert f'target="[{node_ip}]"' in rendered, rendered
    amphora = start_amphora(amp, workdir, rendered, processes)
    amphora.logger("local1.notice", "haproxy[1]", "bracketed-target")
    rn.wait_until(lambda: f"cannot resolve hostname '[{node_ip}]'" in amphora.output(), 30,
                  what="rsyslog's resolution error on the amphora")
    assert not rx.lines()


def test_octavia_disable_local_log_storage_without_forward_all_logs_breaks_rsyslog(octavia_run, workdir):
    """Octavia 16.x-18.0.1 bug (template whitespace control): with admin targets,
    forward_all_logs=false and disable_local_log_storage=true the last two rules are glued into
    ``local1.* call admin_forwarding*.* stop``, which rsyslogd rejects. Our operator must not emit
    that combination. If this test fails, Octavia fixed it: update docs/amphora-logging-notes.md."""
    rn.require_rsyslog()
    rendered = render_with_octavia(octavia_run, workdir / "octavia.conf", octavia_conf(
        "192.0.2.1:10514", "192.0.2.1:20514", "UDP", forward_all_logs="false", disable_local_log_storage="true"))
    assert "admin_forwarding*.* stop" in rendered
    f = workdir / "10-rsyslog.conf"
    f.write_text(rendered)
    assert subprocess.run(["rsyslogd", "-N1", "-f", str(f)], capture_output=True).returncode != 0
    ok = render_with_octavia(octavia_run, workdir / "octavia.conf", octavia_conf(
        "192.0.2.1:10514", "192.0.2.1:20514", "UDP", forward_all_logs="true", disable_local_log_storage="true"))
    f.write_text(ok)
    p = subprocess.run(["rsyslogd", "-N1", "-f", str(f)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
