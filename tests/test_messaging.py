"""octavia_operator.messaging against a real RabbitMQ (fixture rabbitmq_admin of tests/rabbitmq/plugin.py).

Every test uses its own vhost and user names and deletes them in teardown. Logins are checked
with the management API as the admin and with a real AMQP 0-9-1 handshake as the user
(tests/rabbitmq/amqp_login.py).
"""
from __future__ import annotations

import base64
import pathlib
import secrets
import socket
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest
import requests

from octavia_operator.backends import messaging as mq
from octavia_operator import names as n
from octavia_operator.steps.runner import Context
from octavia_operator.errors import StepError, TransientError
from octavia_operator.spec import OctaviaDeploymentSpec
from octavia_operator.steps import workloads
from rabbitmq.amqp_login import amqp_login

SPECIAL = "p@ss:wrd%41$x#?&'\" ;[]=+é\\"   # everything but "/" (see test_transport_url_refuses)


class CountingSession(requests.Session):
    """A requests session that records (method, path) of every request, to prove what was written."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        self.calls.append((method.upper(), urlsplit(url).path))
        return super().request(method, url, *args, **kwargs)

    @property
    def writes(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] != "GET"]


def _api(a: dict, method: str, path: str, **kw: Any) -> requests.Response:
    return requests.request(method, a["management_url"] + "/api" + path, auth=(a["user"], a["password"]),
                            timeout=30, **kw)


def _q(s: str) -> str:
    return quote(s, safe="")


@pytest.fixture
def admin(rabbitmq_admin: dict) -> mq.MgmtCredentials:
    a = rabbitmq_admin
    return mq.MgmtCredentials(a["management_url"], a["user"], a["password"])


@pytest.fixture
def names(rabbitmq_admin: dict):
    """(vhost, user, other_vhost, other_user): unique; deleted afterwards whatever happened."""
    t = secrets.token_hex(4)
    out = (f"octavia-{t}", f"octavia-{t}", f"other-{t}", f"other-{t}")
    yield out
    for v in (out[0], out[2]):
        _api(rabbitmq_admin, "DELETE", f"/vhosts/{_q(v)}")
    for u in (out[1], out[3]):
        _api(rabbitmq_admin, "DELETE", f"/users/{_q(u)}")


def _password() -> str:
    return "Gen-" + secrets.token_urlsafe(24)


def test_creates_vhost_and_user_that_work_on_that_vhost_only(admin, names, rabbitmq_admin):
    a = rabbitmq_admin
    vhost, user, other, _ = names
    assert _api(a, "PUT", f"/vhosts/{other}").status_code in (201, 204)
    pw = _password()
    res = mq.ensure_rabbitmq(admin, vhost, user, pw)
    assert res.created and res.id == vhost and res.extra["user_created"] is True
    assert len(res.changes) == 3, res.changes          # vhost, user, permissions
    assert not any(pw in c for c in res.changes)

    assert _api(a, "GET", f"/vhosts/{vhost}").status_code == 200
    u = _api(a, "GET", f"/users/{user}").json()
    assert u["tags"] in ([], "")                         # no tags: no management API, no admin
    perms = _api(a, "GET", f"/users/{user}/permissions").json()
    assert [(p["vhost"], p["configure"], p["write"], p["read"]) for p in perms] == [(vhost, ".*", ".*", ".*")]

    # a real AMQP login as the user: the vhost opens, another vhost does not, a wrong password is refused
    assert amqp_login(a["amqp_host"], a["amqp_port"], user, pw, vhost) == (True, "open")
    ok, detail = amqp_login(a["amqp_host"], a["amqp_port"], user, pw, other)
    assert not ok and detail.startswith("vhost:"), detail
    ok, detail = amqp_login(a["amqp_host"], a["amqp_port"], user, pw + "x", vhost)
    assert not ok and detail.startswith("auth:"), detail
    # and the management API knows the user but refuses it (no management tag)
    r = requests.get(a["management_url"] + "/api/whoami", auth=(user, pw), timeout=30)
    assert r.status_code == 401 and r.json()["reason"] == "Not management user"


def test_second_call_writes_nothing(admin, names, rabbitmq_admin):
    vhost, user, _, _ = names
    pw = _password()
    first = CountingSession()
    mq.ensure_rabbitmq(admin, vhost, user, pw, session=first)
    assert len(first.writes) == 3, first.calls                # the counter sees writes
    perms = _api(rabbitmq_admin, "GET", f"/users/{user}/permissions").json()
    again = CountingSession()
    res = mq.ensure_rabbitmq(admin, vhost, user, pw, session=again)
    assert res.changes == [] and not res.created and not res.wrote
    assert again.calls and again.writes == [], again.calls
    assert ("GET", "/api/whoami") in again.calls              # the password was checked, not re-set
    assert _api(rabbitmq_admin, "GET", f"/users/{user}/permissions").json() == perms


def test_changed_password_is_repaired_and_tags_kept(admin, names, rabbitmq_admin):
    a = rabbitmq_admin
    vhost, user, _, _ = names
    pw = _password()
    mq.ensure_rabbitmq(admin, vhost, user, pw)
    r = _api(a, "PUT", f"/users/{user}", json={"password": "someone-else-" + secrets.token_hex(8),
                                               "tags": "monitoring"})
    assert r.status_code == 204
    assert not amqp_login(a["amqp_host"], a["amqp_port"], user, pw, vhost)[0]
    s = CountingSession()
    res = mq.ensure_rabbitmq(admin, vhost, user, pw, session=s)
    assert s.writes == [("PUT", f"/api/users/{user}")], s.calls
    assert len(res.changes) == 1 and "password" in res.changes[0] and pw not in res.changes[0]
    assert amqp_login(a["amqp_host"], a["amqp_port"], user, pw, vhost) == (True, "open")
    assert _api(a, "GET", f"/users/{user}").json()["tags"] in (["monitoring"], "monitoring")


def test_changed_permissions_are_repaired(admin, names, rabbitmq_admin):
    a = rabbitmq_admin
    vhost, user, _, _ = names
    pw = _password()
    mq.ensure_rabbitmq(admin, vhost, user, pw)
    assert _api(a, "PUT", f"/permissions/{vhost}/{user}",
                json={"configure": "^$", "write": ".*", "read": ".*"}).status_code == 204
    s = CountingSession()
    res = mq.ensure_rabbitmq(admin, vhost, user, pw, session=s)
    assert s.writes == [("PUT", f"/api/permissions/{vhost}/{user}")], s.calls
    assert len(res.changes) == 1
    p = _api(a, "GET", f"/permissions/{vhost}/{user}").json()
    assert (p["configure"], p["write"], p["read"]) == (".*", ".*", ".*")


def test_wrong_admin_password_is_auth_failed(admin, names, rabbitmq_admin):
    vhost, user, _, _ = names
    bad = mq.MgmtCredentials(admin.url, admin.user, "wrong-" + secrets.token_hex(6))
    pw = _password()
    with pytest.raises(StepError) as e:
        mq.ensure_rabbitmq(bad, vhost, user, pw)
    assert e.value.reason == "MessagingAuthFailed" and e.value.retry is True
    assert not isinstance(e.value, TransientError)
    assert bad.password not in str(e.value) and pw not in str(e.value)
    assert _api(rabbitmq_admin, "GET", f"/vhosts/{vhost}").status_code == 404


def test_admin_without_administrator_tag_is_forbidden_and_writes_nothing(admin, names, rabbitmq_admin):
    a = rabbitmq_admin
    vhost, user, _, weak = names
    weak_pw = _password()
    assert _api(a, "PUT", f"/users/{weak}", json={"password": weak_pw, "tags": "management"}).status_code == 201
    with pytest.raises(StepError) as e:
        mq.ensure_rabbitmq(mq.MgmtCredentials(admin.url, weak, weak_pw), vhost, user, _password())
    assert e.value.reason == "MessagingForbidden" and "administrator" in e.value.message
    assert weak_pw not in e.value.message
    assert _api(a, "GET", f"/vhosts/{vhost}").status_code == 404
    assert _api(a, "GET", f"/users/{user}").status_code == 404
    # a user without any management tag is forbidden as well, not "auth failed"
    assert _api(a, "PUT", f"/users/{weak}", json={"password": weak_pw, "tags": ""}).status_code == 204
    with pytest.raises(StepError) as e:
        mq.ensure_rabbitmq(mq.MgmtCredentials(admin.url, weak, weak_pw), vhost, user, _password())
    assert e.value.reason == "MessagingForbidden"


def test_unreachable_is_transient():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                  # nothing listens there any more
    pw = "admin-" + secrets.token_hex(6)
    with pytest.raises(TransientError) as e:
        mq.ensure_rabbitmq(mq.MgmtCredentials(f"http://127.0.0.1:{port}", "admin", pw), "octavia", "octavia",
                           "pw-" + secrets.token_hex(6))
    assert e.value.reason == "MessagingUnreachable" and e.value.retry is True
    assert pw not in str(e.value)


def test_refuses_the_admin_account_as_octavia_user(admin):
    with pytest.raises(StepError) as e:
        mq.ensure_rabbitmq(admin, "octavia", admin.user, "x" + secrets.token_hex(4))
    assert e.value.reason == "InvalidMessagingUser"


@pytest.mark.parametrize("vhost", ["/", "octavia", "Oct_via-2.x"])
def test_transport_url_round_trips(vhost):
    user, pw = "octavia.u-1_X", SPECIAL
    url = mq.transport_url("rabbit.example", 5671, user, pw, vhost)
    parts = urlsplit(url)
    assert parts.scheme == "rabbit" and parts.hostname == "rabbit.example" and parts.port == 5671
    assert unquote(parts.username) == user and unquote(parts.password) == pw
    assert unquote(parts.path[1:]) == vhost            # what oslo.messaging does with the path
    assert "$" not in url and " " not in url and url.count("@") == 1
    assert not parts.query and not parts.fragment
    if vhost == "/":
        assert url.endswith("/%2F")
    v6 = urlsplit(mq.transport_url("fd00::1", 5672, "u", "p", "v"))
    assert v6.hostname == "fd00::1" and v6.port == 5672


@pytest.mark.parametrize("vhost,user,password", [("a/b", "u", "p"), ("a b", "u", "p"), ("x?#", "u", "p"),
                                                  ("v%2F", "u", "p"), ("", "u", "p"), ("v", "u@x", "p"),
                                                  ("v", "u", "pass/word")])
def test_transport_url_refuses_what_oslo_messaging_cannot_carry(vhost, user, password):
    # oslo.messaging's rabbit driver rebuilds the URL for kombu with the vhost unquoted and "/" left
    # as is in user and password (test_octavia_oslo_messaging_rpc... shows the rest works)
    with pytest.raises(StepError) as e:
        mq.transport_url("h", 5672, user, password, vhost)
    assert e.value.reason == "InvalidMessagingName" and password not in e.value.message


def test_transport_url_works_for_a_real_login_with_special_characters(admin, rabbitmq_admin):
    a = rabbitmq_admin
    t = secrets.token_hex(4)
    vhost, user, pw = f"Oct.{t}_x-y", f"octavia.{t}", SPECIAL + t
    try:
        mq.ensure_rabbitmq(admin, vhost, user, pw)
        again = CountingSession()
        assert mq.ensure_rabbitmq(admin, vhost, user, pw, session=again).changes == []
        assert again.writes == []                    # the special password authenticates as stored
        parts = urlsplit(mq.transport_url(a["amqp_host"], a["amqp_port"], user, pw, vhost))
        assert amqp_login(parts.hostname, parts.port, unquote(parts.username), unquote(parts.password),
                          unquote(parts.path[1:])) == (True, "open")
    finally:
        _api(a, "DELETE", f"/vhosts/{_q(vhost)}")
        _api(a, "DELETE", f"/users/{_q(user)}")


def test_delete_removes_exactly_the_vhost_and_user(admin, names, rabbitmq_admin):
    a = rabbitmq_admin
    vhost, user, other_vhost, other_user = names
    mq.ensure_rabbitmq(admin, vhost, user, _password())
    mq.ensure_rabbitmq(admin, other_vhost, other_user, _password())
    before_vhosts = {v["name"] for v in _api(a, "GET", "/vhosts").json()}
    before_users = {u["name"] for u in _api(a, "GET", "/users").json()}
    res = mq.delete_vhost_and_user(admin, vhost, user)
    assert len(res.changes) == 2, res.changes
    assert {v["name"] for v in _api(a, "GET", "/vhosts").json()} == before_vhosts - {vhost}
    assert {u["name"] for u in _api(a, "GET", "/users").json()} == before_users - {user}
    assert amqp_login(a["amqp_host"], a["amqp_port"], other_user, "wrong", other_vhost)[0] is False
    s = CountingSession()
    assert mq.delete_vhost_and_user(admin, vhost, user, session=s).changes == []   # idempotent
    assert s.writes == []
    # the default vhost and the admin account are never deleted
    res = mq.delete_vhost_and_user(admin, "/", admin.user)
    assert res.changes == [] and len(res.extra["kept"]) == 2
    assert _api(a, "GET", "/vhosts/%2F").status_code == 200


# ----------------------------------------------------------------------------------------
# the step: spec.messaging.managed
# ----------------------------------------------------------------------------------------

@pytest.fixture
def owner(kube_cluster, kube_namespace, operator_sa):
    """A real OctaviaDeployment to own the Secrets (the garbage collector removes children of a missing
    owner), and the operator's own client with the chart's ServiceAccount (RBAC applies)."""
    obj = kube_cluster.admin.create({
        "apiVersion": "octavia-operator.dev/v1alpha1", "kind": "OctaviaDeployment",
        "metadata": {"name": "octavia", "namespace": kube_namespace},
        "spec": {"cloud": {"credentialsSecret": {"name": "openstack-admin"}}}})
    return {"ns": kube_namespace, "uid": obj["metadata"]["uid"], "kube": operator_sa.kube, "cluster": kube_cluster}


def add_secret(o: dict, name: str, data: dict[str, bytes]) -> None:
    o["cluster"].admin.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": o["ns"]},
                               "data": {k: base64.b64encode(v).decode() for k, v in data.items()}})


def _ctx(o: dict, managed: dict) -> Context:
    raw = {"cloud": {"credentialsSecret": {"name": "openstack-admin"}}, "messaging": {"managed": managed}}
    return Context(name="octavia", namespace=o["ns"], uid=o["uid"], generation=1, raw_spec=raw, status={},
                   kube=o["kube"], spec=OctaviaDeploymentSpec.model_validate(raw))


def test_step_messaging_managed(rabbitmq_admin, names, owner):
    a = rabbitmq_admin
    vhost, user, _, _ = names
    kube = owner["kube"]
    add_secret(owner, "rmq-admin", {"password": a["password"].encode()})
    managed = {"host": a["amqp_host"], "port": a["amqp_port"], "managementURL": a["management_url"],
               "adminUser": a["user"], "adminSecret": {"name": "rmq-admin", "key": "password"},
               "vhost": vhost, "userName": user}
    ctx = _ctx(owner, managed)
    res = workloads.step_messaging(ctx)
    assert (res.status, res.reason) == ("True", "Managed")
    secret_name = n.Names("octavia").messaging_secret
    data = kube.read_secret(owner["ns"], secret_name)
    assert set(data) == {"password", "transport_url"}
    pw = data["password"].decode()
    assert len(pw) >= 32
    url = data["transport_url"].decode()
    assert ctx.out.transport_url == url == mq.transport_url(a["amqp_host"], a["amqp_port"], user, pw, vhost)
    meta = kube.get("v1", "Secret", secret_name, owner["ns"])["metadata"]
    assert "ownerReferences" not in meta   # deletionPolicy Retain (the default): the password outlives the resource
    assert meta["annotations"]["octavia-operator.dev/owner-id"] == owner["uid"]
    parts = urlsplit(url)
    assert amqp_login(parts.hostname, parts.port, unquote(parts.username), unquote(parts.password),
                      unquote(parts.path[1:])) == (True, "open")
    assert [e[1] for e in ctx.events] == ["Messaging"]
    assert all(pw not in e[2] and a["password"] not in e[2] for e in ctx.events)
    assert pw not in res.message

    # converged: no Kubernetes write, no broker write, no event
    kube.writes.entries.clear()
    ctx2 = _ctx(owner, managed)
    s = CountingSession()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mq.requests, "Session", lambda: s)
        assert workloads.step_messaging(ctx2).reason == "Managed"
    assert kube.writes.entries == [] and ctx2.events == [] and s.calls and s.writes == []
    assert ctx2.out.transport_url == url

    # the broker lost the user: recreated with the password already in the Secret
    assert _api(a, "DELETE", f"/users/{user}").status_code == 204
    ctx3 = _ctx(owner, managed)
    workloads.step_messaging(ctx3)
    assert kube.writes.entries == [] and any("created RabbitMQ user" in e[2] for e in ctx3.events)
    assert amqp_login(a["amqp_host"], a["amqp_port"], user, pw, vhost) == (True, "open")


def test_step_messaging_managed_missing_admin_secret(rabbitmq_admin, owner):
    kube = owner["kube"]
    ctx = _ctx(owner, {"host": "127.0.0.1", "managementURL": rabbitmq_admin["management_url"],
                      "adminSecret": {"name": "nope", "key": "password"}})
    with pytest.raises(StepError) as e:
        workloads.step_messaging(ctx)
    assert e.value.reason == "SecretNotFound" and e.value.retry is True
    assert kube.writes.entries == []


@pytest.mark.parametrize("own_vhost", [True, False], ids=["own-vhost", "default-vhost"])
def test_octavia_oslo_messaging_rpc_works_with_the_transport_url(admin, names, rabbitmq_admin, octavia_run,
                                                                 own_vhost):
    """The real Octavia's messaging library (oslo.messaging + kombu, from its own venv) makes an RPC
    round trip on the vhost with the URL the operator writes, special characters included."""
    a = rabbitmq_admin
    vhost, user, _, _ = names
    vhost = vhost if own_vhost else "/"
    pw = _password() + SPECIAL
    mq.ensure_rabbitmq(admin, vhost, user, pw)
    url = mq.transport_url(a["amqp_host"], a["amqp_port"], user, pw, vhost)
    probe = str(pathlib.Path(__file__).parent / "rabbitmq" / "oslo_rpc_probe.py")
    tag = secrets.token_hex(4)
    p = octavia_run(["python", probe, tag], env={"TRANSPORT_URL": url}, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip().splitlines()[-1] == f"pong:{tag}"
    # and it fails with a wrong password (so the check above means something)
    bad = mq.transport_url(a["amqp_host"], a["amqp_port"], user, pw + "x", vhost)
    p = octavia_run(["python", probe, tag], env={"TRANSPORT_URL": bad}, timeout=120)
    assert p.returncode != 0 and f"pong:{tag}" not in p.stdout
