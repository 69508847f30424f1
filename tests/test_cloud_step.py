"""The CloudReachable step against the real loopback OpenStack (tests/cloud)."""
from __future__ import annotations

import socket

import pytest
import yaml

from octavia_operator import errors
from octavia_operator.steps import runner as r
from octavia_operator.backends.openstack import session

pytestmark = pytest.mark.openstack


def _clouds_yaml(cfg: dict, **auth_changes) -> tuple[bytes, dict]:
    doc = yaml.safe_load(open(cfg["clouds_yaml"]).read())
    entry = doc["clouds"][cfg["cloud"]]
    entry["auth"].update(auth_changes)
    return yaml.safe_dump({"clouds": {"admin-cloud": entry}}).encode(), entry


def test_connects_and_authenticates_with_a_clouds_yaml_from_a_secret(os_cloud_config):
    data, entry = _clouds_yaml(os_cloud_config)
    conn = session.connect(data, "admin-cloud", os_cloud_config["region"], "public")
    info = session.probe(conn)
    assert info["user"] == entry["auth"]["username"]
    assert info["region"] == os_cloud_config["region"]
    # and the connection really works: the catalog lists the network service
    assert any(s.type == "network" for s in conn.identity.services())
    # the same inputs give the cached connection (no re-authentication per reconcile)
    assert session.connect(data, "admin-cloud", os_cloud_config["region"], "public") is conn


def test_wrong_password_is_a_user_error(os_cloud_config, unique_name):
    data, _ = _clouds_yaml(os_cloud_config, password="wrong-" + unique_name)
    conn = session.connect(data, "admin-cloud", os_cloud_config["region"], "public")
    with pytest.raises(errors.StepError) as err:
        session.probe(conn)
    assert not isinstance(err.value, errors.TransientError)
    assert err.value.reason == "CloudAuthFailed"
    assert "wrong-" not in err.value.message  # never echo a credential


def test_unreachable_keystone_is_transient(os_cloud_config):
    with socket.socket() as s:  # a port on 127.0.0.1 where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data, _ = _clouds_yaml(os_cloud_config, auth_url=f"http://127.0.0.1:{port}/v3")
    conn = session.connect(data, "admin-cloud", os_cloud_config["region"], "public")
    with pytest.raises(errors.TransientError) as err:
        session.probe(conn)
    assert err.value.reason == "CloudUnreachable"


def test_reconcile_reports_cloud_reachable_against_the_real_cloud(os_cloud_config):
    data, _ = _clouds_yaml(os_cloud_config)

    class Kube:
        def read_secret(self, namespace, name):
            return {"clouds.yaml": data} if (namespace, name) == ("openstack", "admin") else None

    from octavia_operator.handlers import cloud_from_secret
    ctx = r.Context(name="octavia", namespace="openstack", uid="u", generation=1, status={}, kube=Kube(),
                    raw_spec={"cloud": {"credentialsSecret": {"name": "admin"}, "cloudName": "admin-cloud",
                                        "region": os_cloud_config["region"]}},
                    cloud_factory=cloud_from_secret)
    out = r.reconcile(ctx)
    cond = next(x for x in out.conditions if x.type == "CloudReachable")
    assert cond.status == "True", cond
