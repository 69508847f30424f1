"""Pure helpers of openstack/network.py: CIDR overlap and security-group rule matching."""
from __future__ import annotations

import pytest

from octavia_operator.builders.cloud import Rule
from octavia_operator.backends.openstack import network as nw


@pytest.mark.parametrize("others, expected", [
    ([], []),
    (["10.244.0.0/16"], []),                                  # pod network elsewhere
    (["172.31.0.0/16"], ["172.31.0.0/16"]),                    # contains the subnet
    (["172.31.0.128/25"], ["172.31.0.128/25"]),                # inside the subnet
    (["172.31.1.0/24", "172.31.0.0/24"], ["172.31.0.0/24"]),   # adjacent does not overlap; equal does
    (["172.31.0.7"], ["172.31.0.7"]),                          # a single node address
    (["172.31.0.7/24"], ["172.31.0.7/24"]),                    # host bits set: still a network
    (["fd00::/8", "not-a-cidr", ""], []),                      # other version and garbage ignored
    (["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"], ["172.16.0.0/12"]),
])
def test_overlaps_ipv4(others, expected):
    assert nw.overlaps("172.31.0.0/24", others) == expected


def test_overlaps_ipv6():
    assert nw.overlaps("fd00:1::/64", ["fd00::/16", "fd01::/16", "10.0.0.0/8", "fd00:1::5"]) == ["fd00::/16",
                                                                                                  "fd00:1::5"]


def test_overlaps_rejects_a_bad_cidr_of_its_own():
    with pytest.raises(ValueError):
        nw.overlaps("nonsense", ["10.0.0.0/8"])


def existing(**kw):
    base = {"direction": "ingress", "ethertype": "IPv4", "protocol": None, "port_range_min": None,
            "port_range_max": None, "remote_ip_prefix": None, "remote_group_id": None, "id": "r1"}
    base.update(kw)
    return base


@pytest.mark.parametrize("rule, found", [
    (Rule("tcp", "IPv4", 9443, 9443, "172.31.0.0/24"),
     existing(protocol="tcp", port_range_min=9443, port_range_max=9443, remote_ip_prefix="172.31.0.0/24")),
    (Rule("tcp", "IPv4", 9443, 9443, "172.31.0.0/24"),           # protocol by number
     existing(protocol="6", port_range_min=9443, port_range_max=9443, remote_ip_prefix="172.31.0.0/24")),
    (Rule("ipv6-icmp", "IPv6"), existing(ethertype="IPv6", protocol="icmpv6")),   # alias of ipv6-icmp
    (Rule("ipv6-icmp", "IPv6"), existing(ethertype="IPv6", protocol="58", remote_ip_prefix="::/0")),
    (Rule("icmp", "IPv4"), existing(protocol="icmp", remote_ip_prefix="0.0.0.0/0")),   # /0 == anywhere
])
def test_rule_keys_match(rule, found):
    assert nw._existing_rule_key(found) == nw._desired_rule_key(rule)


@pytest.mark.parametrize("rule, found", [
    (Rule("tcp", "IPv4", 9443, 9443, "172.31.0.0/24"),           # other port
     existing(protocol="tcp", port_range_min=9444, port_range_max=9444, remote_ip_prefix="172.31.0.0/24")),
    (Rule("tcp", "IPv4", 9443, 9443, "172.31.0.0/24"),           # other prefix
     existing(protocol="tcp", port_range_min=9443, port_range_max=9443, remote_ip_prefix="172.31.0.0/16")),
    (Rule("udp", "IPv4", 5555, 5555, "172.31.0.0/24"),           # egress never matches an ingress rule
     existing(direction="egress", protocol="udp", port_range_min=5555, port_range_max=5555,
              remote_ip_prefix="172.31.0.0/24")),
    (Rule("icmp", "IPv4"), existing(ethertype="IPv6", protocol="icmp")),
])
def test_rule_keys_differ(rule, found):
    assert nw._existing_rule_key(found) != nw._desired_rule_key(rule)


def test_rules_with_a_remote_group_never_match():
    assert nw._existing_rule_key(existing(protocol="tcp", remote_group_id="g")) is None
