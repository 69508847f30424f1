"""pytest plugin: the real loopback OpenStack of tests/cloud as fixtures.

Load it with ``pytest_plugins = ["cloud.plugin"]`` in tests/conftest.py (tests/ is on the
pythonpath). How to install, start and debug the cloud: docs/testing-cloud.md.

Fixtures
  os_cloud_config  session  {"clouds_yaml", "cloud", "auth_url", "region", "base", "log_dir"}
  os_cloud         session  openstacksdk Connection, admin of project admin
  os_db_admin      session  {"host", "port", "user", "password"}: a MariaDB account WITH GRANT OPTION
                            (create databases/users with it; never the services' own 'os' account)
  fake_agent_hosts session  host names that have a fake, alive 'Open vSwitch agent' row in Neutron
                            (ports with binding:host_id=<one of them> bind with vif_type=ovs)
  unique_name      function "t-<8 hex>", for anything a test creates

When is the cloud there?  $OSCLOUD_BASE/clouds.yaml (OSCLOUD_BASE defaults to /tmp/oscloud/run)
exists and its Keystone answers.  Otherwise, for tests marked ``openstack`` or using one of the
fixtures above:
  OSCLOUD_AUTOSTART=1  the plugin runs tests/cloud/oscloud-up.sh once and oscloud-down.sh at the end
  CI=true              the tests fail (cloud tests must never be skipped silently in CI)
  otherwise            the tests are skipped, with the reason.
Only that clouds.yaml is read (no OS_* variables, no ~/.config/openstack) and its auth_url must be
on the loopback, so these fixtures can never act on another cloud.
"""
from __future__ import annotations

import json
import os
import pathlib
import struct
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

CLOUD_DIR = pathlib.Path(__file__).resolve().parent
CLOUD_NAME = "oscloud"
DEFAULT_BASE = "/tmp/oscloud/run"
DEFAULT_FAKE_AGENT_HOSTS = "node-0 node-1 node-2 controller-0"   # same default as oscloud-up.sh
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
START_TIMEOUT = 900

MARKER = "openstack"
SKIP_HINT = ("start it with `tests/cloud/oscloud-up.sh` (after `tests/cloud/install-deb.sh`) "
             "or set OSCLOUD_AUTOSTART=1; see docs/testing-cloud.md")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def base_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("OSCLOUD_BASE") or DEFAULT_BASE)


def _read_clouds_yaml(path: pathlib.Path) -> dict:
    import yaml

    cloud = yaml.safe_load(path.read_text())["clouds"][CLOUD_NAME]
    auth_url = cloud["auth"]["auth_url"]
    host = urllib.parse.urlsplit(auth_url).hostname
    if host not in LOOPBACK_HOSTS:
        raise pytest.UsageError(f"{path}: auth_url {auth_url} is not on the loopback; "
                                "the test fixtures only talk to the loopback test cloud")
    return {"clouds_yaml": str(path), "cloud": CLOUD_NAME, "auth_url": auth_url,
            "region": cloud.get("region_name", "RegionOne")}


def probe(base: pathlib.Path) -> str | None:
    """None when the cloud of `base` answers, else why not (a human-readable reason)."""
    path = base / "clouds.yaml"
    if not path.exists():
        return f"no {path} (the loopback cloud is not running)"
    auth_url = _read_clouds_yaml(path)["auth_url"]
    try:
        with urllib.request.urlopen(auth_url, timeout=10) as resp:
            resp.read()
    except urllib.error.HTTPError as e:
        return f"Keystone at {auth_url} answers HTTP {e.code}"
    except OSError as e:
        return f"Keystone at {auth_url} does not answer ({e})"
    return None


def decide(reason: str | None, *, ci: bool, autostart: bool) -> str:
    """What to do: 'ready' (cloud answers), 'start', 'fail' (CI) or 'skip'."""
    if reason is None:
        return "ready"
    if autostart:
        return "start"
    return "fail" if ci else "skip"


def _say(config: pytest.Config, msg: str) -> None:
    """Write a line to the terminal now, past output capturing (start/stop take a while)."""
    tr = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.get_plugin("capturemanager")
    if tr is None:
        return
    if capman is not None:
        with capman.global_and_fixture_disabled():
            tr.ensure_newline()
            tr.write_line(f"[oscloud] {msg}")
    else:
        tr.ensure_newline()
        tr.write_line(f"[oscloud] {msg}")


def _script_env(base: pathlib.Path) -> dict:
    return {**os.environ, "OSCLOUD_BASE": str(base)}


def _start(config: pytest.Config, base: pathlib.Path) -> None:
    log = base.parent / f"{base.name}-oscloud-up.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    _say(config, f"OSCLOUD_AUTOSTART=1: starting the loopback cloud in {base} (30-70 s; output: {log})")
    t0 = time.monotonic()
    with open(log, "wb") as out:
        try:
            rc = subprocess.run([str(CLOUD_DIR / "oscloud-up.sh")], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=_script_env(base),
                                timeout=START_TIMEOUT).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    if rc != 0:
        _stop(config, base)
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-80:])
        pytest.fail(f"OSCLOUD_AUTOSTART=1 but tests/cloud/oscloud-up.sh failed (exit {rc}); "
                    f"logs in {base / 'log'}. Last lines of {log}:\n{tail}", pytrace=False)
    _say(config, f"loopback cloud up in {time.monotonic() - t0:.0f} s")


def _stop(config: pytest.Config, base: pathlib.Path) -> None:
    subprocess.run([str(CLOUD_DIR / "oscloud-down.sh")], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_script_env(base),
                   timeout=120, check=False)
    _say(config, f"loopback cloud in {base} stopped")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}: needs the loopback OpenStack from tests/cloud (skipped when it is not "
                   "running, unless OSCLOUD_AUTOSTART=1; fails instead of skipping when CI=true)")


@pytest.fixture(scope="session")
def os_cloud_config(request: pytest.FixtureRequest) -> dict:
    base = base_dir()
    reason = probe(base)
    action = decide(reason, ci=_truthy(os.environ.get("CI")),
                    autostart=_truthy(os.environ.get("OSCLOUD_AUTOSTART")))
    if action == "skip":
        pytest.skip(f"loopback OpenStack not available: {reason}; {SKIP_HINT}")
    if action == "fail":
        pytest.fail(f"CI=true and the loopback OpenStack is not available: {reason}. In CI the cloud tests "
                    f"must run, not be skipped: {SKIP_HINT}", pytrace=False)
    if action == "start":
        request.addfinalizer(lambda: _stop(request.config, base))
        _start(request.config, base)
        reason = probe(base)
        if reason is not None:
            pytest.fail(f"oscloud-up.sh succeeded but the cloud does not answer: {reason}", pytrace=False)
    return {**_read_clouds_yaml(base / "clouds.yaml"), "base": str(base), "log_dir": str(base / "log")}


@pytest.fixture(scope="session")
def os_cloud(os_cloud_config: dict):
    import openstack.config
    import openstack.connection

    cfg = openstack.config.OpenStackConfig(config_files=[os_cloud_config["clouds_yaml"]], vendor_files=[],
                                           secure_files=[], load_envvars=False)
    conn = openstack.connection.Connection(config=cfg.get_one(cloud=os_cloud_config["cloud"]))
    conn.authorize()   # fail here, clearly, if the admin credentials do not work
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def os_db_admin(os_cloud_config: dict) -> dict:
    path = pathlib.Path(os_cloud_config["base"]) / "secrets" / "db-admin.json"
    if not path.exists():
        pytest.fail(f"{path} is missing: the cloud was started by an older oscloud-up.sh; restart it",
                    pytrace=False)
    data = json.loads(path.read_text())
    return {k: data[k] for k in ("host", "port", "user", "password")}


@pytest.fixture(scope="session")
def fake_agent_hosts(os_cloud_config: dict) -> list[str]:
    path = pathlib.Path(os_cloud_config["base"]) / "fake-agent-hosts"
    if path.exists():   # what the running cloud really has
        return path.read_text().split()
    return os.environ.get("FAKE_OVS_AGENT_HOSTS", DEFAULT_FAKE_AGENT_HOSTS).split()


@pytest.fixture
def unique_name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def _oscloud_for_marked_tests(request: pytest.FixtureRequest) -> None:
    """Tests marked `openstack` get the skip/fail/autostart logic even without using a fixture."""
    if request.node.get_closest_marker(MARKER) is not None:
        request.getfixturevalue("os_cloud_config")


# -- leaks -------------------------------------------------------------------------------------
# The loopback cloud lives for the whole session, and Neutron's default quotas are small (10 security
# groups, 100 networks per project; the operator's resources all land in the service project). One test
# that leaves a deployment's security groups behind once made every later deployment fail with
# QuotaExceeded. So every test that touches the cloud is checked: the security groups and networks it
# left behind are deleted (with their ports), listed at the end of the session, and under CI=true the
# test errors at teardown, naming them.

LEAKS: list[tuple[str, list[str]]] = []


def _neutron_snapshot(conn) -> dict[str, dict[str, str]]:
    return {"security group": {sg.id: sg.name for sg in conn.network.security_groups() if sg.name != "default"},
            "network": {net.id: net.name for net in conn.network.networks()}}


def _sweep(conn, leaked: dict[str, dict[str, str]]) -> None:
    for net_id in leaked.get("network", {}):
        for port in conn.network.ports(network_id=net_id):
            conn.network.delete_port(port, ignore_missing=True)
        conn.network.delete_network(net_id, ignore_missing=True)
    for sg_id in leaked.get("security group", {}):
        conn.network.delete_security_group(sg_id, ignore_missing=True)


@pytest.fixture(autouse=True)
def _no_neutron_leaks(request: pytest.FixtureRequest):
    """Set up before, and torn down after, every other fixture of a test that uses the cloud."""
    if "os_cloud_config" not in request.fixturenames:
        yield
        return
    conn = request.getfixturevalue("os_cloud")
    before = _neutron_snapshot(conn)
    yield
    after = _neutron_snapshot(conn)
    leaked = {kind: {i: n for i, n in after[kind].items() if i not in before[kind]} for kind in after}
    leaked = {k: v for k, v in leaked.items() if v}
    if not leaked:
        return
    names = [f"{kind} {name or '?'} ({i})" for kind, items in leaked.items() for i, name in items.items()]
    LEAKS.append((request.node.nodeid, names))
    try:
        _sweep(conn, leaked)
    except Exception as e:  # noqa: BLE001 - reported below either way
        names.append(f"(and the sweep failed: {e})")
    if _truthy(os.environ.get("CI")):
        pytest.fail(f"the test left {len(names)} Neutron resources in the shared loopback cloud (deleted now): "
                    + "; ".join(names), pytrace=False)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if LEAKS:
        terminalreporter.section("Neutron resources left behind (and swept)")
        for nodeid, names in LEAKS:
            terminalreporter.write_line(f"{nodeid}: {'; '.join(names)}")


def tiny_qcow2(virtual_size: int = 1 << 20) -> bytes:
    """A valid, empty qcow2 v2 image (4 x 64 KiB clusters), like `qemu-img create -f qcow2 x 1M`:
    small enough to upload in every test, real enough for any Glance version's format checks."""
    c = 1 << 16
    hdr = struct.pack(">IIQIIQIIQQIIQ", 0x514649FB, 2, 0, 0, 16, virtual_size, 0, 1, 3 * c, c, 1, 0, 0)
    buf = bytearray(4 * c)
    buf[:len(hdr)] = hdr
    buf[c:c + 8] = struct.pack(">Q", 2 * c)                  # refcount table -> refcount block
    buf[2 * c:2 * c + 8] = struct.pack(">HHHH", 1, 1, 1, 1)  # clusters 0..3 in use
    return bytes(buf)                                        # L1 table (cluster 3) stays empty
