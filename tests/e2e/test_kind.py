"""End to end on a real cluster: kind + Docker build the operator image, Helm installs the chart,
and the operator reconciles an OctaviaDeployment on a real API server (schema, CEL and all).

Runs only where ``docker`` (with a reachable engine), ``kind``, ``kubectl`` and ``helm`` exist;
elsewhere it skips with the reason (these machines have no Docker engine). It does not need an
OpenStack: it checks the install path and the operator's behaviour up to the cloud connection.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import time
import uuid

import pytest

pytestmark = pytest.mark.kind

ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGE = "octavia-operator:e2e"


def _missing() -> str | None:
    for tool in ("docker", "kind", "kubectl"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    if not (shutil.which("helm") or (ROOT / ".tools" / "bin" / "helm").exists()):
        return "helm is not installed (tests/tools/get-helm.sh)"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "no Docker engine answers (docker info failed)"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = _missing()
    if reason:
        pytest.skip(f"kind end-to-end test needs Docker and kind: {reason}")
    name = f"octd-{uuid.uuid4().hex[:6]}"
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    subprocess.run(["docker", "build", "-t", IMAGE, str(ROOT)], check=True)
    subprocess.run(["kind", "create", "cluster", "--name", name, "--kubeconfig", str(kubeconfig), "--wait", "120s"],
                   check=True)
    try:
        subprocess.run(["kind", "load", "docker-image", IMAGE, "--name", name], check=True)
        yield env
    finally:
        subprocess.run(["kind", "delete", "cluster", "--name", name], check=False)


def kubectl(env, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", *args], env=env, capture_output=True, text=True, **kw)


def test_helm_install_and_reconcile_on_a_real_api_server(cluster):
    env = cluster
    helm = shutil.which("helm") or str(ROOT / ".tools" / "bin" / "helm")
    subprocess.run([helm, "install", "octavia-operator", str(ROOT / "deploy" / "charts" / "octavia-operator"),
                    "--namespace", "octavia-operator", "--create-namespace", "--wait",
                    "--set", f"image.repository={IMAGE.split(':')[0]}", "--set", f"image.tag={IMAGE.split(':')[1]}",
                    "--set", "image.pullPolicy=Never"], env=env, check=True)
    kubectl(env, "create", "namespace", "openstack", check=True)
    # the real API server refuses an invalid resource before anything is stored (schema and CEL)
    bad = kubectl(env, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "octavia-operator.dev/v1alpha1", "kind": "OctaviaDeployment",
        "metadata": {"name": "bad", "namespace": "openstack"},
        "spec": {"cloud": {"credentialsSecret": {"name": "x"}},
                 "managementNetwork": {"cidr": "172.31.0.0/24",
                                       "allocationPool": {"start": "10.0.0.1", "end": "10.0.0.2"}}}}))
    assert bad.returncode != 0 and "allocationPool must lie inside cidr" in bad.stderr
    kubectl(env, "apply", "-f", str(ROOT / "octavia.yaml"), check=True)
    deadline = time.time() + 180
    conds = {}
    while time.time() < deadline:
        out = kubectl(env, "-n", "openstack", "get", "octd", "octavia", "-o", "json")
        if out.returncode == 0:
            obj = json.loads(out.stdout)
            conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
            if conds.get("CloudReachable", {}).get("reason") == "CredentialsSecretNotFound":
                break
        time.sleep(3)
    assert conds["SpecValid"]["status"] == "True"
    assert conds["CloudReachable"]["reason"] == "CredentialsSecretNotFound"
    assert "octavia-operator.dev/finalizer" in obj["metadata"]["finalizers"]
    printed = kubectl(env, "-n", "openstack", "get", "octd", check=True).stdout
    assert "READY" in printed and "REASON" in printed
    kubectl(env, "-n", "openstack", "delete", "octd", "octavia", "--wait=true", "--timeout=120s", check=True)
