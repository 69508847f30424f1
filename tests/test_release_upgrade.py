"""Release upgrades (spec.release 2025.2 -> 2026.1).

1. With two real Octavias (two venvs, tests/octavia_real/install-octavia.sh with OCTAVIA_RELEASE=2025.2):
   the schema 2025.2's octavia-db-manage builds is migrated by 2026.1's, and the configuration the operator
   renders for each release is accepted by that release's own oslo-config-validator.
2. The operator's upgrade on the real API server with the loopback cloud: db-sync of the new release
   first, then the services one after the other (worker, health manager, housekeeping, API), each phase
   in status.upgrade; a downgrade and a skipped release are refused, and nothing changes.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import time

import pytest

from octavia_operator.builders import config as cfg
from octavia_operator.releases import images
from octavia_operator.spec import parse_spec
from octavia_operator.steps.core import release_change_problem
from octd_helpers import REF, env, image_url  # noqa: F401 - fixtures
from octavia_real.plugin import OCTAVIA_NAMESPACES

PREVIOUS = "2025.2"
CURRENT = "2026.1"
PREVIOUS_VENV = pathlib.Path(os.environ.get("OCTAVIA_VENV_PREVIOUS") or "/opt/octavia-venv-2025.2")


@pytest.fixture(scope="module")
def previous_venv() -> pathlib.Path:
    if not (PREVIOUS_VENV / "bin" / "octavia-db-manage").exists():
        msg = (f"Octavia {PREVIOUS} is not installed in {PREVIOUS_VENV}; run `OCTAVIA_RELEASE={PREVIOUS} "
               f"OCTAVIA_VENV={PREVIOUS_VENV} bash tests/octavia_real/install-octavia.sh`")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true: {msg}", pytrace=False)
        pytest.skip(msg)
    return PREVIOUS_VENV


def run(venv: pathlib.Path, *argv: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(venv / "bin" / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=600,
                          env={**environ, "PYTHONWARNINGS": "ignore"}, stdin=subprocess.DEVNULL)


def head(venv: pathlib.Path) -> str:
    code = ("import os, octavia.db.migration as m; from alembic.config import Config; "
            "from alembic.script import ScriptDirectory; c = Config(); "
            "c.set_main_option('script_location', os.path.join(os.path.dirname(m.__file__), 'alembic_migrations'));"
            " print(ScriptDirectory.from_config(c).get_current_head())")
    return run(venv, "python", "-c", code).stdout.strip()


def version(venv: pathlib.Path) -> str:
    return run(venv, "python", "-c", "import importlib.metadata as m; print(m.version('octavia'))").stdout.strip()


def render(tmp: pathlib.Path, release: str, db_url: str) -> tuple[pathlib.Path, pathlib.Path]:
    spec = parse_spec({"release": release, "cloud": {"credentialsSecret": {"name": "c"}},
                       "amphora": {"logging": {"mode": "Receiver"}}})
    cloud = cfg.CloudValues(auth_url="http://keystone.example:5000/v3", image_owner_id="p", flavor_id="f",
                            network_id="n", amphora_secgroup_id="s", health_manager_ips={"a": "172.31.0.5"})
    conf, sec = tmp / f"octavia-{release}.conf", tmp / f"secrets-{release}.conf"
    conf.write_text(cfg.render_octavia_conf(spec, cloud))
    sec.write_text(cfg.render_secrets_conf(cfg.SecretValues(database_url=db_url,
                                                           server_certs_key_passphrase="x" * 32)))
    return conf, sec


def validate(venv: pathlib.Path, path: pathlib.Path) -> subprocess.CompletedProcess:
    args = ["oslo-config-validator", "--fatal-warnings", "--input-file", str(path)]
    for ns in OCTAVIA_NAMESPACES:
        args += ["--namespace", ns]
    return run(venv, *args)


def test_the_previous_schema_is_migrated_by_the_next_release(tmp_path, previous_venv, octavia_venv, octavia_db):
    assert version(previous_venv).startswith("17.") and version(octavia_venv).startswith("18."), \
        (version(previous_venv), version(octavia_venv))
    old_conf, old_sec = render(tmp_path, PREVIOUS, octavia_db["url"])
    new_conf, new_sec = render(tmp_path, CURRENT, octavia_db["url"])
    # each release accepts the configuration rendered for it
    for venv, files in ((previous_venv, (old_conf, old_sec)), (octavia_venv, (new_conf, new_sec))):
        for f in files:
            out = validate(venv, f)
            assert out.returncode == 0, (venv, f.name, out.stderr[-3000:])
    # 2025.2 builds its schema; 2026.1's db-sync (what the operator's new db-sync Job runs) migrates it
    out = run(previous_venv, "octavia-db-manage", "--config-file", str(old_conf), "--config-file", str(old_sec),
              "upgrade", "head")
    assert out.returncode == 0, out.stderr[-3000:]
    current = lambda venv, c, s: run(venv, "octavia-db-manage", "--config-file", str(c), "--config-file",  # noqa: E731
                                     str(s), "current").stdout
    assert head(previous_venv) in current(previous_venv, old_conf, old_sec)
    out = run(octavia_venv, "octavia-db-manage", "--config-file", str(new_conf), "--config-file", str(new_sec),
              "upgrade", "head")
    assert out.returncode == 0, out.stderr[-3000:]
    assert head(octavia_venv) in current(octavia_venv, new_conf, new_sec)


def test_only_the_next_release_is_accepted():
    assert release_change_problem(None, CURRENT) is None            # first install: anything
    assert release_change_problem("2025.2", "2026.1") is None
    assert release_change_problem("2025.1", "2026.1")[0] == "ReleaseSkipped"
    assert release_change_problem("2026.1", "2025.2")[0] == "DowngradeRefused"


@pytest.mark.kube
@pytest.mark.openstack
def test_an_upgrade_syncs_the_database_first_then_rolls_consumers_before_producers(env):  # noqa: F811
    api, ns = env.kube_api, env.ns

    def image_of(component: str) -> str:
        return api.get("deployments", f"octavia-{component}", ns)["spec"]["template"]["spec"]["containers"][0]["image"]

    def status() -> dict:
        return env.cr().get("status") or {}

    api.patch(REF, "octavia", {"spec": {"release": PREVIOUS}}, ns)
    env.converge(timeout=180)
    assert status()["release"] == PREVIOUS
    old, new = images(PREVIOUS, parse_spec(env.cr()["spec"]).images), images(CURRENT, parse_spec(
        {**env.cr()["spec"], "release": CURRENT}).images)
    assert old.worker != new.worker
    jobs_before = {j["metadata"]["name"] for j in api.objects("jobs", ns)}

    api.patch(REF, "octavia", {"spec": {"release": CURRENT}}, ns)
    phases, order = [], []
    for _ in range(120):
        env.reconcile()
        st = status()
        phase = (st.get("upgrade") or {}).get("phase")
        if phase and (not phases or phases[-1] != phase):
            phases.append(phase)
        for component in ("worker", "health-manager", "housekeeping", "api"):
            if component not in order and image_of(component) == new.worker:
                order.append(component)
        if st.get("release") == CURRENT:
            break
        if phase == "DatabaseSync":   # no service has moved before the new schema is there
            assert all(image_of(c) == old.worker for c in ("worker", "health-manager", "housekeeping", "api"))
        time.sleep(1)
    assert status().get("release") == CURRENT, status()
    assert "upgrade" not in status() or not status()["upgrade"]
    assert phases[0] == "DatabaseSync", phases
    assert order == ["worker", "health-manager", "housekeeping", "api"], (order, phases)
    assert {j["metadata"]["name"] for j in api.objects("jobs", ns)} - jobs_before, "no db-sync Job for the new release"
    assert env.conditions()["Ready"]["status"] == "True"

    # back to the previous release: refused, nothing rendered or applied
    api.patch(REF, "octavia", {"spec": {"release": PREVIOUS}}, ns)
    env.reconcile()
    cond = env.conditions()["SpecValid"]
    assert (cond["status"], cond["reason"]) == ("False", "DowngradeRefused"), cond
    assert image_of("api") == new.worker and status()["release"] == CURRENT
