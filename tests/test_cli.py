"""The command line as a new user meets it: clear errors, an honest --help."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CLI = [str(Path(sys.executable).parent / "octavia-operator")]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=60)


def test_help_names_every_subcommand_in_plain_text():
    res = run("--help")
    assert res.returncode == 0
    for sub in ("run", "render", "crd"):
        assert sub in res.stdout
    assert "``" not in res.stdout
    assert "CustomResourceDefinition" in res.stdout


def test_render_of_a_missing_file_is_an_error_message_not_a_traceback(tmp_path):
    res = run("render", "-f", str(tmp_path / "missing.yaml"))
    assert res.returncode == 2
    assert res.stderr.startswith("error: cannot read") and "No such file or directory" in res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""


def test_render_of_broken_yaml_is_an_error_message(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: [\n")
    res = run("render", "-f", str(bad))
    assert res.returncode == 2 and "is not valid YAML" in res.stderr and "Traceback" not in res.stderr


def test_render_of_a_file_without_the_resource_says_so(tmp_path):
    other = tmp_path / "cm.yaml"
    other.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n- just a list\n")
    res = run("render", "-f", str(other))
    assert res.returncode == 2 and "contains no OctaviaDeployment" in res.stderr
