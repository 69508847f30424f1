"""The three install paths, for real: each on a fresh real API server (tests/kube), with kwok nodes and
the loopback OpenStack, ends with an OctaviaDeployment that is Ready.

1. ``kubectl apply -f deploy/operator.yaml``, then ``kubectl apply -f octavia.yaml``;
2. ``helm install``, ``helm upgrade`` and ``helm uninstall`` of the chart;
3. what Argo CD does for the Applications in deploy/argocd/application.yaml (the chart rendered by
   ``helm template`` and applied server-side into a namespace it creates, then the OctaviaDeployment),
   with the Lua health check run on the live object at each phase. Argo CD itself is not installable
   here (no registry we reach ships it): its sync is played by kubectl with the same options.

In each, the operator runs as the chart's Deployment would run it: the Deployment's own arguments,
the ServiceAccount's token, RBAC enforced (a 403 fails the test). kwok plays the operator's pod.
octavia.yaml is applied as shipped; only what ties it to the shared loopback cloud (a service user of
its own, the endpoints of the cloud's Octavia API, names, a CIDR, a local image) is patched in
afterwards, before the operator starts. ``kubectl get``, ``explain`` and ``wait`` are checked on the way.
"""
from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from argocd_health import APPLICATION, assert_health
from kube.cluster import REPO, KubeCluster
from kube.plugin import chart_args, operator_running, service_account, wait_for
from octd_helpers import REF, clouds_yaml_for, credentials_secret, random_cidr, serve_image, spec_for, volumes_for

pytestmark = [pytest.mark.kube, pytest.mark.openstack]

NS = "openstack"
OPERATOR_NS = "octavia-operator"


def loopback_patch(sfx: str, image_url: str) -> dict:
    """What ties octavia.yaml to the shared loopback cloud (a merge patch on its spec)."""
    s = spec_for(sfx, image_url, random_cidr())
    return {"spec": {"cloud": {"cloudName": "admin-cloud"}, "deletionPolicy": "Delete",
                     "identity": s["identity"], "amphora": {"image": s["amphora"]["image"],
                                                            "flavor": s["amphora"]["flavor"]},
                     "managementNetwork": s["managementNetwork"], "certificates": {"keyType": "ECDSA"}}}


def prepare_cluster(cluster: KubeCluster, os_cloud_config: dict) -> None:
    """What an administrator has before installing: nodes, volumes for the embedded servers, the
    namespace and the cloud's admin credentials."""
    for name in ("node-0", "node-1"):
        cluster.add_node(name)
    cluster.add_node("worker-0", control_plane=False)
    cluster.add_namespace(NS)
    volumes_for(cluster, NS)
    cluster.admin.create(credentials_secret(NS, clouds_yaml_for(os_cloud_config)))


def the_deployment(docs: list[dict]) -> dict:
    [dep] = [d for d in docs if d and d.get("kind") == "Deployment" and d["metadata"]["name"] == "octavia-operator"]
    return dep


def kubectl_json(cluster: KubeCluster, *args: str) -> dict:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def ready_via_kubectl(cluster: KubeCluster, op, timeout: int = 300) -> dict:
    """`kubectl wait --for=condition=Ready`, then the printer columns of `kubectl get octd`."""
    res = cluster.kubectl("wait", "--for=condition=Ready", "-n", NS, "octd/octavia", f"--timeout={timeout}s",
                          check=False, timeout=timeout + 30)
    if res.returncode != 0:
        op.check()
        obj = cluster.api.get(REF, "octavia", NS)
        pytest.fail(f"kubectl wait: {res.stderr}\nconditions: "
                    f"{[(c['type'], c['status'], c['reason'], c['message'][:200]) for c in obj['status']['conditions'] if c['status'] != 'True']}"
                    f"\n--- operator log ---\n{op.tail(40)}", pytrace=False)
    assert "condition met" in res.stdout
    table = cluster.kubectl("get", "octd", "-n", NS).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "REASON", "API", "AGE"], table
    assert table[1].split()[:4] == ["octavia", "True", "AllReady", f"http://octavia-api.{NS}.svc:9876"], table
    wide = cluster.kubectl("get", "octd", "-n", NS, "-o", "wide").stdout.splitlines()
    assert "RELEASE" in wide[0] and "2026.1" in wide[1]
    return cluster.api.get(REF, "octavia", NS)


def delete_and_wait(cluster: KubeCluster, op) -> None:
    """deletionPolicy Delete (patched in): the finalizer removes what the deployment made in OpenStack."""
    cluster.kubectl("delete", "-n", NS, "octd/octavia", "--wait=false")
    op.wait_for(lambda: cluster.api.get(REF, "octavia", NS) is None, timeout=180, message="octavia deleted")


@pytest.fixture
def image_url():
    with serve_image() as url:
        yield url


def test_kubectl_apply_operator_yaml_then_octavia_yaml(new_kube_cluster, os_cloud_config, fake_agent_hosts,
                                                       image_url, tmp_path):
    cluster = new_kube_cluster()
    prepare_cluster(cluster, os_cloud_config)
    out = cluster.kubectl("apply", "-f", str(REPO / "deploy" / "operator.yaml")).stdout
    assert "customresourcedefinition.apiextensions.k8s.io/octaviadeployments.octavia-operator.dev created" in out
    cluster.kubectl("wait", "--for=condition=Established", "crd/octaviadeployments.octavia-operator.dev")
    # kwok plays the operator's pod: the Deployment the manifest made rolls out
    wait_for(lambda: (cluster.api.get("deployments", "octavia-operator", OPERATOR_NS).get("status") or {})
             .get("availableReplicas") == 1, timeout=60, message="the operator Deployment available")
    # the documentation users read comes from the CRD, through the real API server (which publishes a
    # new CRD's OpenAPI a few seconds after it is established)
    explain = wait_for(lambda: (r := cluster.kubectl("explain", "octaviadeployment.spec.managementNetwork",
                                                     check=False)).returncode == 0 and r.stdout, timeout=60,
                       message="kubectl explain")
    assert "allocationPool" in explain and "must not overlap" in explain
    assert "heartbeatPort" in cluster.kubectl("explain", "octd.spec.healthManager").stdout
    # the production features explain themselves too
    jobboard = cluster.kubectl("explain", "octd.spec.jobboard").stdout
    assert "PENDING_*" in jobboard and "persistence" in jobboard and "expirationSeconds" in jobboard
    assert "Sentinel" in cluster.kubectl("explain", "octd.spec.jobboard.external.sentinel").stdout
    assert "octavia-driver-agent" in cluster.kubectl("explain", "octd.spec.providers.ovn").stdout
    assert "brackets" in cluster.kubectl("explain", "octd.spec.amphora.logging.adminTargets").stdout
    assert "load-balancer_" in cluster.kubectl("explain", "octd.spec.policy.rules").stdout

    out = cluster.kubectl("apply", "-f", str(REPO / "octavia.yaml")).stdout
    assert "octaviadeployment.octavia-operator.dev/octavia created" in out
    sfx = uuid.uuid4().hex[:8]
    cluster.kubectl("patch", "-n", NS, "octd/octavia", "--type=merge", "-p", json.dumps(loopback_patch(sfx, image_url)))
    manifest = list(yaml.safe_load_all((REPO / "deploy" / "operator.yaml").read_text()))
    identity = service_account(cluster, tmp_path, OPERATOR_NS, "octavia-operator")
    with operator_running(identity, tmp_path / "operator.log", argv=chart_args(the_deployment(manifest))) as op:
        obj = ready_via_kubectl(cluster, op)
        assert_health(obj, "Healthy")
        # what the manifest's own defaults produced, against the real API server
        assert obj["spec"]["database"]["embedded"]["storageSize"] == "2Gi"
        assert cluster.api.get("statefulsets", "octavia-mariadb", NS)["status"]["readyReplicas"] == 1
        delete_and_wait(cluster, op)


def helm(*args: str, kubeconfig: Path) -> subprocess.CompletedProcess:
    from k8stools import helm_binary
    res = subprocess.run([helm_binary(), *args, "--kubeconfig", str(kubeconfig)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, f"helm {' '.join(args)}:\n{res.stdout}\n{res.stderr}"
    return res


def test_helm_install_upgrade_uninstall(new_kube_cluster, os_cloud_config, fake_agent_hosts, image_url, tmp_path):
    cluster = new_kube_cluster()
    prepare_cluster(cluster, os_cloud_config)
    chart = str(REPO / "deploy" / "charts" / "octavia-operator")
    helm("install", "octavia-operator", chart, "--namespace", OPERATOR_NS, "--create-namespace", "--wait",
         "--timeout", "120s", kubeconfig=cluster.kubeconfig)
    assert cluster.api.get("customresourcedefinitions", "octaviadeployments.octavia-operator.dev")
    manifest = yaml.safe_load_all(helm("get", "manifest", "octavia-operator", "-n", OPERATOR_NS,
                                       kubeconfig=cluster.kubeconfig).stdout)
    deployment = the_deployment(list(manifest))
    cluster.kubectl("apply", "-f", str(REPO / "octavia.yaml"))
    cluster.kubectl("patch", "-n", NS, "octd/octavia", "--type=merge", "-p",
                    json.dumps(loopback_patch(uuid.uuid4().hex[:8], image_url)))
    identity = service_account(cluster, tmp_path, OPERATOR_NS, "octavia-operator")
    with operator_running(identity, tmp_path / "operator-1.log", argv=chart_args(deployment)) as op:
        obj = ready_via_kubectl(cluster, op)
        assert_health(obj, "Healthy")

    # an upgrade with other values rolls the operator's Deployment (kwok plays the new pod)
    helm("upgrade", "octavia-operator", chart, "--namespace", OPERATOR_NS, "--set", "logLevel=debug",
         "--set", "resources.limits.memory=640Mi", "--wait", "--timeout", "120s", kubeconfig=cluster.kubeconfig)
    live = cluster.api.get("deployments", "octavia-operator", OPERATOR_NS)
    [container] = live["spec"]["template"]["spec"]["containers"]
    assert "--debug" in container["args"] and container["resources"]["limits"]["memory"] == "640Mi"
    assert live["metadata"]["generation"] >= 2
    # the upgraded operator takes over the running deployment: still Ready, and it can delete it
    identity = service_account(cluster, tmp_path, OPERATOR_NS, "octavia-operator")
    with operator_running(identity, tmp_path / "operator-2.log", argv=chart_args(live)) as op:
        op.wait_for(lambda: "reconciled" in op.logs(), timeout=60)
        assert_health(cluster.api.get(REF, "octavia", NS), "Healthy")
        delete_and_wait(cluster, op)

    helm("uninstall", "octavia-operator", "--namespace", OPERATOR_NS, "--wait", kubeconfig=cluster.kubeconfig)
    assert cluster.api.get("deployments", "octavia-operator", OPERATOR_NS) is None
    assert cluster.api.get("clusterroles", "octavia-operator") is None
    # Helm keeps CRDs (crds/ is installed once and never deleted): the users' resources survive
    assert cluster.api.get("customresourcedefinitions", "octaviadeployments.octavia-operator.dev")


def test_argocd_sync_of_the_example_applications(new_kube_cluster, os_cloud_config, fake_agent_hosts, image_url,
                                                 tmp_path):
    cluster = new_kube_cluster()
    prepare_cluster(cluster, os_cloud_config)
    apps = [d for d in yaml.safe_load_all(APPLICATION.read_text()) if d]
    operator_app = next(a for a in apps if a["spec"]["source"].get("path") == "deploy/charts/octavia-operator")
    src, dest, sync = operator_app["spec"]["source"], operator_app["spec"]["destination"], \
        operator_app["spec"].get("syncPolicy") or {}
    assert "ServerSideApply=true" in sync.get("syncOptions", [])
    # Argo CD renders the chart with `helm template` (CRDs included) and applies it server-side into the
    # destination namespace, which it creates (CreateNamespace=true)
    values = (src.get("helm") or {}).get("valuesObject") or {}
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    from k8stools import helm_binary
    rendered = subprocess.run([helm_binary(), "template", (src.get("helm") or {}).get("releaseName", "octavia-operator"),
                               str(REPO / src["path"]), "--namespace", dest["namespace"], "--include-crds",
                               "-f", str(values_file)], capture_output=True, text=True, check=True).stdout
    if "CreateNamespace=true" in sync.get("syncOptions", []):
        cluster.add_namespace(dest["namespace"])
    cluster.kubectl("apply", "--server-side", "--field-manager=argocd-controller", "-n", dest["namespace"], "-f", "-",
                    input=rendered)
    cluster.kubectl("wait", "--for=condition=Established", "crd/octaviadeployments.octavia-operator.dev")
    deployment = the_deployment(list(yaml.safe_load_all(rendered)))

    # the second Application syncs a directory holding an OctaviaDeployment (here: octavia.yaml)
    cluster.kubectl("apply", "--server-side", "--field-manager=argocd-controller", "-f", str(REPO / "octavia.yaml"))
    cluster.kubectl("patch", "-n", NS, "octd/octavia", "--type=merge", "-p",
                    json.dumps(loopback_patch(uuid.uuid4().hex[:8], image_url)))
    assert_health(cluster.api.get(REF, "octavia", NS), "Progressing")  # no status yet
    identity = service_account(cluster, tmp_path, dest["namespace"],
                               deployment["spec"]["template"]["spec"]["serviceAccountName"])
    with operator_running(identity, tmp_path / "operator.log", argv=chart_args(deployment)) as op:
        seen = set()

        def healthy() -> bool:
            obj = cluster.api.get(REF, "octavia", NS)
            from argocd_health import health
            seen.add(health(obj)["status"])
            return health(obj)["status"] == "Healthy"
        op.wait_for(healthy, timeout=300, interval=1, message="Argo CD health: Healthy")
        assert "Progressing" in seen
        ready_via_kubectl(cluster, op)
        cluster.kubectl("patch", "-n", NS, "octd/octavia", "--type=merge", "-p",
                        json.dumps({"spec": {"deletionPolicy": "Delete"}}))
        delete_and_wait(cluster, op)
