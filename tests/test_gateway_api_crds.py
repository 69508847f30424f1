"""Gateway API (standard channel, vendored in tests/kube/crds/) on the real kube-apiserver of tests/kube:
the CRDs install and are Established, an HTTPRoute of the shape spec.api.expose (type HTTPRoute) would
create is admitted (hostnames, a parentRef to a Gateway in another namespace with a sectionName, a
backendRef to a Service port) and stored with the API server's defaults, and invalid routes are refused
by the CRD's OpenAPI schema and CEL rules. docs/api-exposure-notes.md explains the design.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from kube.cluster import ApiError

pytestmark = pytest.mark.kube

CRDS = Path(__file__).resolve().parent / "kube" / "crds" / "gateway-api-standard-v1.6.1.yaml"
GW = "gateway.networking.k8s.io/v1"
NAMES = ("gatewayclasses", "gateways", "httproutes", "referencegrants")

ROUTE: dict[str, Any] = {
    "apiVersion": GW, "kind": "HTTPRoute",
    "metadata": {"name": "octavia-api", "namespace": "openstack",
                 "labels": {"app.kubernetes.io/name": "octavia", "app.kubernetes.io/component": "api"}},
    "spec": {
        "parentRefs": [{"name": "public", "namespace": "gateway-infra", "sectionName": "https"}],
        "hostnames": ["octavia.cloud.example.com"],
        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                   "backendRefs": [{"name": "octavia-api", "port": 9876}]}],
    },
}


def _rejected(cluster, obj: dict[str, Any]) -> str:
    with pytest.raises(ApiError) as e:
        cluster.admin.create(obj)
    assert e.value.status == 422, e.value
    return str(e.value)


def test_gateway_api_crds_admit_and_validate_an_httproute(new_kube_cluster):
    cluster = new_kube_cluster()
    # server-side, as the Gateway API project installs them: client-side apply would copy the HTTPRoute CRD
    # (242 kB as compact JSON) into its last-applied-configuration annotation, near the 256 kB limit
    out = cluster.kubectl("apply", "--server-side", "-f", str(CRDS)).stdout
    for name in NAMES:
        assert f"customresourcedefinition.apiextensions.k8s.io/{name}.gateway.networking.k8s.io serverside-applied" \
            in out, out
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    *(f"crd/{n}.gateway.networking.k8s.io" for n in NAMES))
    crd = cluster.admin.get("apiextensions.k8s.io/v1", "CustomResourceDefinition",
                            "httproutes.gateway.networking.k8s.io")
    assert crd["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"] == "v1.6.1"
    assert crd["metadata"]["annotations"]["gateway.networking.k8s.io/channel"] == "standard"

    for ns in ("gateway-infra", "openstack"):
        cluster.add_namespace(ns)
    cluster.admin.create({"apiVersion": GW, "kind": "GatewayClass", "metadata": {"name": "example"},
                          "spec": {"controllerName": "example.com/gateway-controller"}})
    # the Gateway belongs to the platform team; cert-manager's gateway-shim reads annotations here
    cluster.admin.create({
        "apiVersion": GW, "kind": "Gateway",
        "metadata": {"name": "public", "namespace": "gateway-infra",
                     "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"}},
        "spec": {"gatewayClassName": "example", "listeners": [{
            "name": "https", "protocol": "HTTPS", "port": 443, "hostname": "*.cloud.example.com",
            "tls": {"mode": "Terminate", "certificateRefs": [{"name": "cloud-example-com-tls"}]},
            "allowedRoutes": {"namespaces": {"from": "All"}}}]}})
    cluster.admin.create({"apiVersion": "v1", "kind": "Service",
                          "metadata": {"name": "octavia-api", "namespace": "openstack"},
                          "spec": {"selector": {"app": "octavia-api"},
                                   "ports": [{"name": "api", "port": 9876, "targetPort": "api"}]}})

    stored = cluster.admin.create(copy.deepcopy(ROUTE))
    # the API server's defaults (from the CRD's schema)
    [parent] = stored["spec"]["parentRefs"]
    assert parent == {"group": GW.split("/")[0], "kind": "Gateway", "name": "public",
                      "namespace": "gateway-infra", "sectionName": "https"}
    [backend] = stored["spec"]["rules"][0]["backendRefs"]
    assert backend == {"group": "", "kind": "Service", "name": "octavia-api", "port": 9876, "weight": 1}
    assert stored["spec"]["hostnames"] == ["octavia.cloud.example.com"]
    # an update by server-side apply (what the operator would do) is admitted too
    applied = cluster.admin.apply({**copy.deepcopy(ROUTE), "spec": {
        **copy.deepcopy(ROUTE["spec"]), "hostnames": ["octavia.cloud.example.com", "lb.cloud.example.com"]}},
        manager="octavia-operator")
    assert applied["spec"]["hostnames"] == ["octavia.cloud.example.com", "lb.cloud.example.com"]

    # a ReferenceGrant in the Octavia namespace lets the Gateway use a certificate Secret kept there
    cluster.admin.create({
        "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
        "metadata": {"name": "gateway-reads-octavia-tls", "namespace": "openstack"},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "gateway-infra"}],
                 "to": [{"group": "", "kind": "Secret", "name": "octavia-api-public-tls"}]}})

    def bad(name: str, **spec: Any) -> dict[str, Any]:
        obj = copy.deepcopy(ROUTE)
        obj["metadata"]["name"] = name
        obj["spec"].update(spec)
        return obj

    rule = ROUTE["spec"]["rules"][0]
    # OpenAPI schema: host names are lower-case DNS names (no upper case, no port, no scheme)
    assert "spec.hostnames[0]" in _rejected(cluster, bad("upper", hostnames=["Octavia.Example.com"]))
    assert "spec.hostnames[0]" in _rejected(cluster, bad("port", hostnames=["octavia.example.com:443"]))
    # CEL: a Service backendRef needs a port
    msg = _rejected(cluster, bad("noport", rules=[{**rule, "backendRefs": [{"name": "octavia-api"}]}]))
    assert "Must have port for Service reference" in msg, msg
    # CEL: a PathPrefix must be absolute
    msg = _rejected(cluster, bad("relpath", rules=[{**rule, "matches": [{"path": {"type": "PathPrefix",
                                                                                  "value": "v2"}}]}]))
    assert "value must be an absolute path and start with '/'" in msg, msg
    # CEL: two references to the same Gateway need distinct sectionNames
    msg = _rejected(cluster, bad("twice", parentRefs=[{"name": "public", "namespace": "gateway-infra"},
                                                      {"name": "public", "namespace": "gateway-infra"}]))
    assert "sectionName must be unique when parentRefs includes 2 or more references to the same parent" \
        in msg, msg
    # schema: at most 16 hostnames
    assert "spec.hostnames" in _rejected(cluster, bad("many", hostnames=[f"h{i}.example.com" for i in range(17)]))
    assert [r["metadata"]["name"] for r in cluster.admin.list(GW, "HTTPRoute", "openstack")] == ["octavia-api"]
