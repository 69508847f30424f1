"""Unit tests of the octavia.conf renderer's fixes found by running the real Octavia 18 on it
(tests/test_octavia_accepts_config.py does that; these keep the fixes without Octavia installed)."""
from __future__ import annotations

import configparser

import pytest

from octavia_operator.builders import config as cfg
from octavia_operator.spec import RELEASES, SECRET_CONFIG_KEYS, parse_spec

CLOUD = cfg.CloudValues(auth_url="http://keystone:5000/v3", image_owner_id="p", flavor_id="f", network_id="n",
                        amphora_secgroup_id="s", health_manager_ips={"a": "172.31.0.5"})


def _spec(**extra):
    return parse_spec({"cloud": {"credentialsSecret": {"name": "c"}, "caBundleSecret": {"name": "ca"},
                                 "region": "R2", "interface": "internal"},
                       "identity": {"serviceUser": "svc", "serviceProject": "services"}, **extra})


@pytest.mark.parametrize("release", RELEASES)
def test_no_option_that_octavia_does_not_know(release):
    conf = cfg.parse(cfg.render_octavia_conf(_spec(release=release), CLOUD))
    # [api_settings] api_handler was removed from Octavia; nothing in it uses oslo.concurrency locks;
    # [service_auth] region_name is not an Octavia option (the clients read their own sections)
    assert not conf.has_option("api_settings", "api_handler")
    assert not conf.has_section("oslo_concurrency")
    assert not conf.has_option("service_auth", "region_name")
    assert conf["keystone_authtoken"]["region_name"] == "R2"


@pytest.mark.parametrize("release", RELEASES)
def test_neutron_section_carries_its_own_credentials(release):
    conf = cfg.parse(cfg.render_octavia_conf(_spec(release=release), CLOUD))
    n = conf["neutron"]
    assert n["auth_type"] == "password" and n["auth_url"] == "http://keystone:5000/v3"
    assert (n["username"], n["project_name"]) == ("svc", "services")
    assert n["user_domain_name"] == n["project_domain_name"] == "Default"
    assert n["region_name"] == "R2" and n["valid_interfaces"] == "internal"
    assert n["cafile"].endswith("/ca.crt")
    assert not conf.has_option("neutron", "password")
    secrets = cfg.parse(cfg.render_secrets_conf(cfg.SecretValues(service_password="pw-1")))
    assert secrets["neutron"]["password"] == secrets["service_auth"]["password"] == "pw-1"
    assert ("neutron", "password") in SECRET_CONFIG_KEYS


def test_secret_values_are_literal_for_oslo_config():
    text = cfg.render_secrets_conf(cfg.SecretValues(
        transport_url="rabbit://u:pa$s@mq:5672/\n", database_url="  mysql+pymysql://u:$x@db/octavia ",
        service_password="a$$b"))
    conf = cfg.parse(text)
    assert conf["DEFAULT"]["transport_url"] == "rabbit://u:pa$$s@mq:5672/"
    assert conf["database"]["connection"] == "mysql+pymysql://u:$$x@db/octavia"
    assert conf["keystone_authtoken"]["password"] == "a$$$$b"
    # oslo.config turns $$ back into $: the same unescaping here gives the original values
    assert conf["DEFAULT"]["transport_url"].replace("$$", "$") == "rabbit://u:pa$s@mq:5672/"


def test_secrets_file_is_plain_ini_with_only_secret_keys():
    text = cfg.render_secrets_conf(cfg.SecretValues())
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(text)
    got = {(s, k) for s in cfg.parse(text).sections() for k in cfg.parse(text)[s]}
    assert got <= set(SECRET_CONFIG_KEYS)


def test_health_manager_binds_the_management_networks_family():
    # Octavia's health manager opens one UDP socket, of bind_ip's family: on an IPv6 management network
    # 0.0.0.0 would never see a heartbeat (tests/test_ipv6_heartbeat.py measures it with the real one)
    v4 = cfg.parse(cfg.render_octavia_conf(_spec(), CLOUD))
    v6 = cfg.parse(cfg.render_octavia_conf(_spec(managementNetwork={"cidr": "fd00:31::/64"}), CLOUD))
    assert v4["health_manager"]["bind_ip"] == "0.0.0.0"
    assert v6["health_manager"]["bind_ip"] == "::"
