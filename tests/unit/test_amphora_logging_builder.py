"""Unit tests of octavia_operator.builders.amphora_logging (pure; the real processes run in
tests/test_amphora_logging.py)."""
from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess

import pytest

from octavia_operator.builders.amphora_logging import (
    ADMIN_LOG_PORT,
    TENANT_LOG_PORT,
    log_targets,
    receiver_command,
    receiver_rsyslog_conf,
)


def _inputs(conf: str) -> set[tuple[str, str, str]]:
    return set(re.findall(r'input\(type="(im\w+)" port="(\d+)" name="(\w+)"', conf))


def test_receiver_listens_on_both_ports_with_each_protocol():
    conf = receiver_rsyslog_conf(10514, 20514, ("UDP", "TCP"), work_dir="/var/lib/rx")
    assert _inputs(conf) == {("imudp", "10514", "admin"), ("imudp", "20514", "tenant"),
                             ("imtcp", "10514", "admin"), ("imtcp", "20514", "tenant")}
    assert 'module(load="imudp")' in conf and 'module(load="imtcp")' in conf
    assert 'workDirectory="/var/lib/rx"' in conf
    assert "address=" not in conf  # all addresses, IPv4 and IPv6
    # one output action for both streams, prefixed by the input's name
    assert conf.count('file="/dev/stdout"') == 1
    assert "%inputname% %fromhost-ip%" in conf


def test_receiver_single_protocol_any_case():
    conf = receiver_rsyslog_conf(1514, 2514, ("udp",))
    assert _inputs(conf) == {("imudp", "1514", "admin"), ("imudp", "2514", "tenant")}
    assert "imtcp" not in conf
    assert receiver_rsyslog_conf(1514, 2514, ("TCP", "tcp")).count('type="imtcp"') == 2


def test_receiver_needs_no_system_logging():
    conf = receiver_rsyslog_conf(ADMIN_LOG_PORT, TENANT_LOG_PORT)
    for module in ("imuxsock", "imklog", "imjournal", "imkmsg", "/dev/log", "/var/"):
        assert module not in conf


def test_receiver_is_deterministic():
    assert receiver_rsyslog_conf(10514, 20514, ("TCP", "UDP")) == receiver_rsyslog_conf(10514, 20514, ("UDP", "TCP"))


@pytest.mark.parametrize("kwargs", [
    {"admin_port": 0}, {"tenant_port": 65536}, {"admin_port": True}, {"admin_port": "10514"},
    {"tenant_port": ADMIN_LOG_PORT}, {"protocols": ()}, {"protocols": ("UDP", "SCTP")},
    {"work_dir": "relative"}, {"work_dir": '/tmp/"x'},
])
def test_receiver_rejects_bad_input(kwargs):
    args = {"admin_port": ADMIN_LOG_PORT, "tenant_port": TENANT_LOG_PORT, "protocols": ("UDP",), **kwargs}
    with pytest.raises(ValueError):
        receiver_rsyslog_conf(**args)


def test_receiver_command():
    assert receiver_command("/etc/rx/rsyslog.conf", "/run/rx/") == [
        "rsyslogd", "-n", "-f", "/etc/rx/rsyslog.conf", "-i", "/run/rx/rsyslogd.pid"]


@pytest.mark.skipif(shutil.which("rsyslogd") is None, reason="rsyslogd not installed (tests/logging_real/install-rsyslog.sh)")
def test_receiver_conf_passes_rsyslogd_validation(tmp_path):
    f = tmp_path / "rx.conf"
    f.write_text(receiver_rsyslog_conf(ADMIN_LOG_PORT, TENANT_LOG_PORT, ("UDP", "TCP"), work_dir=str(tmp_path)))
    p = subprocess.run(["rsyslogd", "-N1", "-f", str(f)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def _octavia_parse(targets: str) -> list[tuple[str, str]]:
    # oslo.config ListOpt, then octavia/common/jinja/logging/logging_jinja_cfg.py
    return [tuple(item.strip().rsplit(":", 1)) for item in targets.split(",")]


def test_log_targets_ipv4_and_ipv6():
    s = log_targets(["192.0.2.1", "fd00:0:0::5", "[fd00::6]"], 10514)
    assert s == "192.0.2.1:10514,fd00::5:10514,fd00::6:10514"
    parsed = _octavia_parse(s)
    assert parsed == [("192.0.2.1", "10514"), ("fd00::5", "10514"), ("fd00::6", "10514")]
    for host, _ in parsed:
        ipaddress.ip_address(host)  # what omfwd gets as target= must be a plain address


def test_log_targets_keeps_order_and_drops_duplicates():
    assert log_targets(["192.0.2.9", "192.0.2.1", "192.0.2.9"], 20514) == "192.0.2.9:20514,192.0.2.1:20514"
    assert log_targets([], 20514) == ""


@pytest.mark.parametrize("ips,port", [(["node-1"], 10514), (["192.0.2.1:10514"], 10514), (["192.0.2.1"], 0),
                                      (["192.0.2.1"], 70000)])
def test_log_targets_rejects_bad_input(ips, port):
    with pytest.raises(ValueError):
        log_targets(ips, port)


# -- the operator's wiring of spec.amphora.logging ---------------------------------------------------
from octavia_operator.builders import config as cfg  # noqa: E402
from octavia_operator.builders import kube as kb  # noqa: E402
from octavia_operator.releases import images  # noqa: E402
from octavia_operator.spec import parse_spec  # noqa: E402

CLOUD = cfg.CloudValues(auth_url="http://keystone:5000/v3", image_owner_id="p", flavor_id="f", network_id="n",
                        amphora_secgroup_id="s", health_manager_ips={"a": "172.31.0.5"})


def test_log_receiver_ports_reach_the_security_group_and_the_host_agent():
    from octavia_operator.builders.cloud import security_groups
    spec = parse_spec({"cloud": {"credentialsSecret": {"name": "c"}},
                       "amphora": {"logging": {"mode": "Receiver", "receiverAdminPort": 11514}}})
    _, hm = security_groups(spec, spec.amphora.logging.receiver_ports)
    udp = {(r.port_min, r.remote_ip_prefix) for r in hm.rules if r.protocol == "udp"}
    assert {(5555, "172.31.0.0/24"), (11514, "172.31.0.0/24"), (20514, "172.31.0.0/24")} == udp
    inp = kb.Inputs("octavia", "ns1", "uid-1", spec, cloud=CLOUD)
    assert kb.assignments_doc(inp)["extraUdpPorts"] == [11514, 20514]
    hm_pod = kb.health_manager_deployment(inp, images("2026.1", spec.images), "/venv/bin")["spec"]["template"]["spec"]
    receiver = next(c for c in hm_pod["containers"] if c["name"] == "log-receiver")
    assert receiver["command"][0] == "rsyslogd" and receiver["securityContext"]["runAsNonRoot"]
    assert {p["hostPort"] for p in receiver["ports"]} == {11514, 20514}
    assert "rsyslog-receiver.conf" in kb.config_map(inp)["data"]
    agent = cfg.parse(kb.octavia_conf(inp))["amphora_agent"]
    assert agent["admin_log_targets"] == "172.31.0.5:11514" and agent["tenant_log_targets"] == "172.31.0.5:20514"
    # off: nothing of it
    off = kb.Inputs("octavia", "ns1", "uid-1", parse_spec({"cloud": {"credentialsSecret": {"name": "c"}}}), cloud=CLOUD)
    assert kb.assignments_doc(off)["extraUdpPorts"] == []
    assert not cfg.parse(kb.octavia_conf(off)).has_section("amphora_agent")
