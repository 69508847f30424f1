"""spec.api.expose and spec.api.tls, on the real API server with the loopback cloud (the reconcile runs in the
test process with the operator's ServiceAccount), and the API pod's https run for real from the image.

- Ingress: admitted, owned, with cert-manager's annotation and TLS section; the public catalog endpoint in
  Keystone follows it (https://<hostname>); APIExposed says the URL.
- HTTPRoute without the Gateway API installed: GatewayAPIMissing; once the CRDs are installed (vendored
  v1.6.1, tests/kube/crds) the route is admitted and the Ingress of the previous type is removed.
- LoadBalancer: WaitingForAddress until the Service has an address (set here as a cloud controller
  would), then the public endpoint is http(s)://<address>:<port>.
- In-pod TLS: the API Deployment's two containers (uWSGI on loopback, haproxy on the port) run in podman
  from the project's Octavia image with the operator's ConfigMap and the user's certificate Secret; the API
  answers https with that certificate (verified against its CA), Octavia's links are https, and the
  readiness probe is an https one.
"""
from __future__ import annotations

import base64
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from octd_helpers import REF, env, image_url  # noqa: F401 - fixtures
from octavia_operator.releases import octavia_image
from octavia_operator.spec import DEFAULT_RELEASE
from pods.runner import PodRunner
from kube.cluster import free_port
from tlsutil import make_pki

pytestmark = [pytest.mark.kube, pytest.mark.openstack]

CRDS = Path(__file__).resolve().parent / "kube" / "crds" / "gateway-api-standard-v1.6.1.yaml"
HOST = "octavia.example.test"


def get_route(api, ns: str) -> dict | None:
    """The HTTPRoute (the test client discovers the Gateway API's resources once they are installed)."""
    try:
        return api.get("httproutes", "octavia-api", ns)
    except KeyError:
        return api.get("httproutes", "octavia-api", ns)


def tls_secret(ns: str, pki: dict[str, Path]) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "octavia-api-tls", "namespace": ns},
            "data": {"tls.crt": base64.b64encode(pki["server.crt"].read_bytes()).decode(),
                     "tls.key": base64.b64encode(pki["server.key"].read_bytes()).decode()}}


def test_exposure_follows_the_spec_and_the_catalog_follows_the_exposure(env, tmp_path):  # noqa: F811
    api, ns = env.kube_api, env.ns
    pki_dir = tmp_path / "pki"
    pki_dir.mkdir()
    pki = make_pki(pki_dir, ("127.0.0.1", f"octavia-api.{ns}.svc", "localhost"))
    api.create(tls_secret(ns, pki))
    # no explicit public URL: the exposure decides it. (The loopback catalog's load-balancer service is
    # adopted and its endpoints are left as they are, which IdentityReady reports with the wanted URLs.)
    api.patch(REF, "octavia", {"spec": {
        "identity": {"endpoints": {"public": None, "internal": None, "admin": None}},
        "api": {"tls": {"secretName": "octavia-api-tls"},
                "expose": {"type": "Ingress", "hostname": HOST, "ingress": {"clusterIssuer": "letsencrypt"}}}}}, ns)
    env.converge(timeout=180)
    conds = env.conditions()
    assert conds["APIExposed"]["reason"] == "Exposed" and f"https://{HOST}" in conds["APIExposed"]["message"]
    ing = api.get("ingresses", "octavia-api", ns)
    assert ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS"
    assert ing["spec"]["tls"] == [{"hosts": [HOST], "secretName": "octavia-api-ingress-tls"}]
    assert ing["metadata"]["ownerReferences"][0]["uid"] == env.cr()["metadata"]["uid"]
    identity = conds["IdentityReady"]["message"]
    assert "public endpoint of the adopted service left as it is" in identity
    assert f"the spec says https://{HOST};" in identity, identity
    st = env.cr()["status"]
    assert st["publicEndpoint"] == f"https://{HOST}"
    assert st["apiEndpoint"] == f"https://octavia-api.{ns}.svc:9876"
    assert f"the spec says {st['apiEndpoint']};" in identity, identity

    # -- in-pod TLS, for real: the API pod's containers from the image -----------------------------------
    dep = api.get("deployments", "octavia-api", ns)
    pod_spec = dep["spec"]["template"]["spec"]
    assert [c["name"] for c in pod_spec["containers"]] == ["api", "api-tls"]
    probe = pod_spec["containers"][0]["readinessProbe"]["httpGet"]
    assert probe["scheme"] == "HTTPS" and probe["port"] == "api"
    image = octavia_image(DEFAULT_RELEASE)
    if subprocess.run(["podman", "image", "exists", image], capture_output=True).returncode != 0:
        msg = f"image {image} not built (bash images/build.sh)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true: {msg}", pytrace=False)
        pytest.skip(msg)
    pod = {"metadata": {"name": f"api-{env.sfx}", "namespace": ns}, "spec": pod_spec}
    runner = PodRunner(api, tmp_path / "pods", prefix=f"tls{env.sfx[:4]}")
    try:
        backend = runner.start(pod, "api")
        proxy = runner.start(pod, "api-tls")
        port = free_port()
        runner.expose(backend.netns, port, 9876)
        base = f"https://127.0.0.1:{port}"
        session = requests.Session()
        session.trust_env = False
        deadline = time.monotonic() + 120
        while True:
            try:
                r = session.get(f"{base}/healthcheck", verify=str(pki["ca"]), timeout=10)
                if r.status_code in (200, 204):
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or not backend.running() or not proxy.running():
                pytest.fail(f"no https healthcheck:\n--- api ---\n{backend.logs()[-3000:]}\n--- api-tls ---\n"
                            f"{proxy.logs()[-3000:]}", pytrace=False)
            time.sleep(1)
        versions = session.get(f"{base}/", verify=str(pki["ca"]), timeout=10).json()
        assert all(link["href"].startswith("https://") for v in versions["versions"] for link in v["links"]), versions
        # the certificate is the one of the Secret: another CA does not verify it
        other = tmp_path / "other"
        other.mkdir()
        with pytest.raises(requests.exceptions.SSLError):
            session.get(f"{base}/healthcheck", verify=str(make_pki(other)["ca"]), timeout=10)
        # nothing answers plain http on the API's port
        with pytest.raises(requests.RequestException):
            session.get(f"http://127.0.0.1:{port}/healthcheck", timeout=10)
    finally:
        runner.cleanup()

    # -- HTTPRoute: refused while the Gateway API is missing, then admitted; the Ingress goes ------------
    api.patch(REF, "octavia", {"spec": {"api": {"expose": {
        "type": "HTTPRoute", "ingress": None,
        "httpRoute": {"parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}]}}}}}, ns)
    installed = env.cluster.kubectl("get", "crd", "httproutes.gateway.networking.k8s.io", check=False).returncode == 0
    if not installed:
        env.reconcile_until(lambda: env.conditions()["APIExposed"]["reason"] == "GatewayAPIMissing", rounds=3)
        assert env.conditions()["APIExposed"]["status"] == "False"
        env.cluster.kubectl("apply", "--server-side", "-f", str(CRDS))
        env.cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                            "crd/httproutes.gateway.networking.k8s.io")
    env.converge(timeout=120, until=lambda: env.conditions()["APIExposed"]["reason"] == "Exposed")
    route = get_route(api, ns)
    assert route is not None and route["spec"]["hostnames"] == [HOST]
    assert route["spec"]["parentRefs"][0]["sectionName"] == "https"
    assert route["spec"]["rules"][0]["backendRefs"][0]["name"] == "octavia-api"
    assert api.get("ingresses", "octavia-api", ns) is None, "the Ingress of the previous type is still there"

    # -- LoadBalancer: no address, no public endpoint; an address: the endpoint follows ------------------
    api.patch(REF, "octavia", {"spec": {"api": {"expose": {"type": "LoadBalancer", "hostname": None,
                                                           "httpRoute": None}}}}, ns)
    env.reconcile_until(lambda: env.conditions()["APIExposed"]["reason"] == "WaitingForAddress", rounds=3)
    assert get_route(api, ns) is None
    address = f"198.51.100.{uuid.uuid4().int % 200 + 1}"
    env.cluster.admin.patch("v1", "Service", "octavia-api-external", {"status": {"loadBalancer": {
        "ingress": [{"ip": address}]}}}, ns, subresource="status")
    env.converge(timeout=120, until=lambda: env.conditions()["APIExposed"]["reason"] == "Exposed")
    assert env.cr()["status"]["publicEndpoint"] == f"https://{address}:9876"
    assert f"the spec says https://{address}:9876;" in env.conditions()["IdentityReady"]["message"]

    # -- no exposure any more: the LoadBalancer Service goes ---------------------------------------------
    api.patch(REF, "octavia", {"spec": {"api": {"expose": None}}}, ns)
    env.converge(timeout=60, until=lambda: env.conditions()["APIExposed"]["reason"] == "NotExposed")
    assert api.get("services", "octavia-api-external", ns) is None
    assert "publicEndpoint" not in env.cr()["status"]
