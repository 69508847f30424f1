"""Desired Kubernetes objects of one OctaviaDeployment (pure).

``build(inputs)`` returns every child object: ServiceAccounts, the config ConfigMap and
Secrets, the host-agent assignment ConfigMap and DaemonSet, the embedded MariaDB and
RabbitMQ (when used), the db-sync Job and the four Octavia Deployments with the API's
Service and PodDisruptionBudget. ``octavia-operator render`` prints them; the reconcile
applies them. Values that only the cloud or the cluster can give are placeholders.
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from .. import names as n
from ..releases import Images, images
from ..spec import OctaviaDeploymentSpec, Component, Toleration
from .config import (JOBBOARD_TLS_FILES, CloudValues, SecretValues, policy_file, render_octavia_conf,
                     render_secrets_conf)

OCTAVIA_UID = 42437  # the octavia user of the Kolla images


@dataclass(frozen=True)
class Inputs:
    name: str
    namespace: str
    uid: str
    spec: OctaviaDeploymentSpec
    cloud: CloudValues = field(default_factory=CloudValues)
    secrets: SecretValues = field(default_factory=SecretValues)
    # Secret data that the steps own (certificates...), only hashed here to roll pods
    certs_digest: str = "<certificates>"
    # host-agent assignment document (node -> port); rendered into a ConfigMap
    assignments: Mapping[str, Any] | None = None
    # replicas of the health manager when spec leaves it open: one per ready node
    ready_nodes: int = 1
    # the OctaviaDeployment's generation of the db schema (image) that db-sync must reach
    include_embedded: bool = True
    # the API's policy.yaml (builders.config.policy_file): for rules: custom, the user's file
    policy: str | None = None
    # spec.api.tls: a digest of the certificate Secret (haproxy reads it at start: a new one rolls the pods)
    api_tls_digest: str = ""


def digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()


def _meta(inp: Inputs, name: str, component: str, **extra: Any) -> dict[str, Any]:
    md = {
        "name": name,
        "namespace": inp.namespace,
        "labels": n.labels(inp.name, component, inp.spec.release),
        "ownerReferences": [{
            "apiVersion": "octavia-operator.dev/v1alpha1", "kind": "OctaviaDeployment", "name": inp.name,
            "uid": inp.uid, "controller": True, "blockOwnerDeletion": True}],
    }
    md.update(extra)
    return md


def _tolerations(tols: list[Toleration] | None) -> list[dict[str, Any]] | None:
    if not tols:
        return None
    return [t.model_dump(exclude_none=True) for t in tols]


def _resources(comp_resources: Any) -> dict[str, Any]:
    return comp_resources.model_dump(exclude_none=True) if comp_resources else {}


def _container_security(read_only: bool = True, uid: int | None = OCTAVIA_UID) -> dict[str, Any]:
    sc: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only,
        "capabilities": {"drop": ["ALL"]},
    }
    if uid is not None:
        sc.update({"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid})
    return sc


POD_SECURITY = {"seccompProfile": {"type": "RuntimeDefault"}, "fsGroup": OCTAVIA_UID}


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v not in (None, {}, [])}


# ---------------------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------------------

def jobboard_host(inp: Inputs) -> str:
    """The embedded Valkey's Service, as the Octavia pods reach it."""
    return f"{n.Names(inp.name).valkey}.{inp.namespace}.svc"


def octavia_conf(inp: Inputs) -> str:
    return render_octavia_conf(inp.spec, inp.cloud, jobboard_host(inp))


def secrets_conf(inp: Inputs) -> str:
    return render_secrets_conf(inp.secrets)


def policy_yaml(inp: Inputs) -> str:
    return inp.policy if inp.policy is not None else policy_file(inp.spec, "# the user's policy file\n")


def config_hash(inp: Inputs) -> str:
    """Changes when octavia.conf, secrets.conf, the policy or the certificates change: rolls the pods."""
    extra = [x for x in (log_receiver_conf(inp), api_tls_haproxy_cfg(inp)) if x is not None]
    return digest(octavia_conf(inp), secrets_conf(inp), policy_yaml(inp), inp.certs_digest, *extra)[:16]


LOG_RECEIVER_CONF = "rsyslog-receiver.conf"


def log_receiver_conf(inp: Inputs) -> str | None:
    """The health managers' amphora-log receiver (spec.amphora.logging.mode Receiver), else None."""
    from .amphora_logging import receiver_rsyslog_conf
    lg = inp.spec.amphora.logging
    if lg.mode != "Receiver":
        return None
    return receiver_rsyslog_conf(lg.receiverAdminPort, lg.receiverTenantPort, ("UDP",), "/tmp")


API_TLS_CONF = "api-tls-haproxy.cfg"
API_TLS_DIR = f"{n.CONF_DIR}/api-tls"


def api_internal_port(inp: Inputs) -> int:
    """With spec.api.tls the API listens on loopback here; haproxy serves spec.api.port."""
    port = inp.spec.api.port
    return port + 1 if port < 65535 else port - 1


def api_tls_haproxy_cfg(inp: Inputs) -> str | None:
    """haproxy terminating TLS in front of the API (spec.api.tls): nothing written, logs on stdout."""
    if inp.spec.api.tls is None:
        return None
    return "\n".join([
        "# TLS in front of octavia-api (spec.api.tls), written by octavia-operator",
        "global",
        "    log stdout format raw local0 info",
        "    maxconn 500",   # the API behind it serves 8 requests at a time; fits a 1024 open-files limit
        "    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets",
        "    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256",
        "    ssl-default-bind-ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:"
        "ECDHE-RSA-CHACHA20-POLY1305",
        "defaults",
        "    mode http",
        "    log global",
        "    option httplog",
        "    option forwardfor",
        "    timeout connect 5s",
        "    timeout client 120s",
        "    timeout server 120s",
        "    timeout http-request 30s",
        "frontend octavia-api",
        # haproxy loads the key from <crt>.key: the Secret's keys are mapped to tls.pem / tls.pem.key
        f"    bind :::{inp.spec.api.port} v4v6 ssl crt {API_TLS_DIR}/tls.pem alpn http/1.1",
        "    http-request set-header X-Forwarded-Proto https",
        "    default_backend octavia-api",
        "backend octavia-api",
        f"    server api 127.0.0.1:{api_internal_port(inp)}",
        ""])


def config_map(inp: Inputs) -> dict[str, Any]:
    names = n.Names(inp.name)
    data = {"octavia.conf": octavia_conf(inp), "policy.yaml": policy_yaml(inp)}
    haproxy = api_tls_haproxy_cfg(inp)
    if haproxy is not None:
        data[API_TLS_CONF] = haproxy
    receiver = log_receiver_conf(inp)
    if receiver is not None:
        data[LOG_RECEIVER_CONF] = receiver
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(inp, names.config_map, "config"),
            "data": data}


def _secret(inp: Inputs, name: str, component: str, data: Mapping[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _meta(inp, name, component),
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def config_secret(inp: Inputs) -> dict[str, Any]:
    return _secret(inp, n.Names(inp.name).config_secret, "config", {"secrets.conf": secrets_conf(inp)})


# ---------------------------------------------------------------------------------------
# pods
# ---------------------------------------------------------------------------------------

def _octavia_volumes(inp: Inputs) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    names = n.Names(inp.name)
    volumes = [
        {"name": "config", "configMap": {"name": names.config_map}},
        {"name": "config-secrets", "secret": {"secretName": names.config_secret, "defaultMode": 0o440}},
        {"name": "certs", "secret": {"secretName": names.certs_secret, "defaultMode": 0o440}},
        {"name": "state", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts = [
        {"name": "config", "mountPath": n.CONF_FILE, "subPath": "octavia.conf", "readOnly": True},
        {"name": "config", "mountPath": n.POLICY_FILE, "subPath": "policy.yaml", "readOnly": True},
        {"name": "config-secrets", "mountPath": n.SECRETS_CONF_FILE.rsplit("/", 1)[0], "readOnly": True},
        {"name": "certs", "mountPath": n.CERTS_DIR, "readOnly": True},
        {"name": "state", "mountPath": "/var/lib/octavia"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if inp.spec.cloud.caBundleSecret:
        ref = inp.spec.cloud.caBundleSecret
        volumes.append({"name": "cloud-ca", "secret": {"secretName": ref.name,
                                                       "items": [{"key": ref.key, "path": "ca.crt"}]}})
        mounts.append({"name": "cloud-ca", "mountPath": n.CLOUD_CA_FILE.rsplit("/", 1)[0], "readOnly": True})
    ovn = inp.spec.providers.ovn
    if ovn is not None and ovn.tlsSecret:
        volumes.append({"name": "ovn-tls", "secret": {"secretName": ovn.tlsSecret, "defaultMode": 0o440, "items": [
            {"key": k, "path": k} for k in ("tls.crt", "tls.key", "ca.crt")]}})
        mounts.append({"name": "ovn-tls", "mountPath": n.OVN_TLS_DIR, "readOnly": True})
    sources = _jobboard_tls_sources(inp)
    if sources:
        volumes.append({"name": "jobboard-tls", "projected": {"sources": sources, "defaultMode": 0o440}})
        mounts.append({"name": "jobboard-tls", "mountPath": n.JOBBOARD_TLS_DIR, "readOnly": True})
    return volumes, mounts


def _jobboard_tls_sources(inp: Inputs) -> list[dict[str, Any]]:
    """spec.jobboard.external.tls / sentinelTLS: the CA bundles and client certificates, projected into
    one directory under the file names octavia.conf uses (builders.config.JOBBOARD_TLS_FILES)."""
    jb = inp.spec.jobboard
    if not jb.enabled or jb.external is None:
        return []
    sources: list[dict[str, Any]] = []
    for field_name, (ca, crt, key) in JOBBOARD_TLS_FILES.items():
        tls = getattr(jb.external, field_name)
        if tls is None:
            continue
        sources.append({"secret": {"name": tls.caSecret.name, "items": [{"key": tls.caSecret.key, "path": ca}]}})
        if tls.clientCertificateSecret:
            sources.append({"secret": {"name": tls.clientCertificateSecret, "items": [
                {"key": "tls.crt", "path": crt}, {"key": "tls.key", "path": key}]}})
    return sources


def octavia_command(img_bin: str, program: str) -> list[str]:
    return [f"{img_bin}/{program}", "--config-file", n.CONF_FILE, "--config-file", n.SECRETS_CONF_FILE]


def _deployment(inp: Inputs, component: str, image: str, command: list[str], comp: Component, *,
                replicas: int, host_network: bool, ports: list[dict[str, Any]] | None = None,
                probes: dict[str, Any] | None = None, node_selector: dict[str, str] | None = None,
                extra_pod: dict[str, Any] | None = None, pull_policy: str = "IfNotPresent",
                sidecars: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    names = n.Names(inp.name)
    volumes, mounts = _octavia_volumes(inp)
    container = _compact({
        "name": component,
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": command,
        "ports": ports,
        "resources": _resources(comp.resources),
        "volumeMounts": mounts,
        "securityContext": _container_security(),
        **(probes or {}),
    })
    selector = dict(node_selector or {})
    selector.update(comp.nodeSelector or {})
    pod = _compact({
        "serviceAccountName": names.service_account,
        "automountServiceAccountToken": False,
        "hostNetwork": host_network or None,
        "dnsPolicy": "ClusterFirstWithHostNet" if host_network else None,
        "nodeSelector": selector,
        "tolerations": _tolerations(comp.tolerations),
        "priorityClassName": comp.priorityClassName,
        "securityContext": POD_SECURITY,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 60,
        "containers": [container, *(sidecars or [])],
        "volumes": volumes,
        **(extra_pod or {}),
    })
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(inp, names.component(component), component),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": n.selector(inp.name, component)},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0 if host_network else 1}},
            "template": {
                "metadata": {"labels": n.labels(inp.name, component, inp.spec.release),
                             "annotations": {n.CONFIG_HASH_ANNOTATION: config_hash(inp)}},
                "spec": pod,
            },
        },
    }


def _amphora_node_selector(inp: Inputs) -> dict[str, str]:
    """Worker, health manager and housekeeping run only where o-hm0 is plumbed and verified."""
    sel = dict(inp.spec.healthManager.nodeSelector)
    sel[n.Names(inp.name).o_hm0_label(inp.namespace)] = "ready"
    return sel


def _spread(inp: Inputs, component: str) -> dict[str, Any]:
    return {"topologySpreadConstraints": [{
        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": n.selector(inp.name, component)}}]}


def api_command(inp: Inputs, bin_dir: str) -> list[str]:
    """uWSGI serving Octavia's WSGI application (the octavia-api script is a single-threaded test server)."""
    from ..releases import RELEASES
    rel = RELEASES[inp.spec.release]
    app = ["--module", rel.api_wsgi_module] if rel.api_wsgi_module else ["--wsgi-file", f"{bin_dir}/octavia-wsgi"]
    bind = f"127.0.0.1:{api_internal_port(inp)}" if inp.spec.api.tls else f":{inp.spec.api.port}"
    return [f"{bin_dir}/uwsgi", "--http-socket", bind, *app,
            "--pyargv", f"--config-file {n.CONF_FILE} --config-file {n.SECRETS_CONF_FILE}",
            "--master", "--processes", "2", "--threads", "4", "--die-on-term", "--lazy-apps",
            "--add-header", "Connection: close", "--buffer-size", "65535", "--thunder-lock",
            "--enable-threads", "--http-auto-chunked", "--http-raw-body"]


def api_deployment(inp: Inputs, img: Images, bin_dir: str) -> dict[str, Any]:
    port = inp.spec.api.port
    tls = inp.spec.api.tls
    # with TLS the probes go through haproxy to the API: they test both
    probe = {"httpGet": {"path": "/healthcheck", "port": "api", **({"scheme": "HTTPS"} if tls else {})},
             "periodSeconds": 10, "timeoutSeconds": 5}
    ports = [{"name": "api", "containerPort": port, "protocol": "TCP"}]
    dep = _deployment(
        inp, "api", img.api, api_command(inp, bin_dir), inp.spec.api,
        replicas=inp.spec.api.replicas, host_network=False, pull_policy=img.pull_policy,
        ports=None if tls else ports,
        probes={"readinessProbe": {**probe, "failureThreshold": 3},
                "livenessProbe": {**probe, "initialDelaySeconds": 30, "failureThreshold": 6}},
        extra_pod=_spread(inp, "api"),
        sidecars=_driver_agent(inp, img, bin_dir) + _api_tls(inp, img, ports))
    if tls:
        pod = dep["spec"]["template"]["spec"]
        pod["volumes"].append({"name": "api-tls", "secret": {"secretName": tls.secretName, "defaultMode": 0o440,
                                                             "items": [{"key": "tls.crt", "path": "tls.pem"},
                                                                       {"key": "tls.key", "path": "tls.pem.key"}]}})
        dep["spec"]["template"]["metadata"]["annotations"][f"{n.GROUP}/api-tls-hash"] = inp.api_tls_digest
    if inp.spec.providers.ovn is not None:
        pod = dep["spec"]["template"]["spec"]
        pod["volumes"].append({"name": "driver-sockets", "emptyDir": {}})
        pod["containers"][0]["volumeMounts"].append({"name": "driver-sockets", "mountPath": n.DRIVER_SOCKETS_DIR})
    return dep


def _api_tls(inp: Inputs, img: Images, ports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """spec.api.tls: haproxy (from the Octavia image) terminating TLS on the API's port."""
    if inp.spec.api.tls is None:
        return []
    return [{
        "name": "api-tls", "image": img.api, "imagePullPolicy": img.pull_policy,
        "command": ["haproxy", "-db", "-f", f"{n.CONF_DIR}/haproxy/{API_TLS_CONF}"],
        "ports": ports,
        "livenessProbe": {"tcpSocket": {"port": "api"}, "periodSeconds": 10, "failureThreshold": 6},
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}},
        "volumeMounts": [{"name": "api-tls", "mountPath": API_TLS_DIR, "readOnly": True},
                         {"name": "config", "mountPath": f"{n.CONF_DIR}/haproxy/{API_TLS_CONF}",
                          "subPath": API_TLS_CONF, "readOnly": True}],
        "securityContext": _container_security(),
    }]


DRIVER_SOCKETS = ("status.sock", "stats.sock", "get.sock")


def _driver_agent(inp: Inputs, img: Images, bin_dir: str) -> list[dict[str, Any]]:
    """spec.providers.ovn: octavia-driver-agent beside the API, in the same pod. The ovn driver runs inside
    the API process and reports to the agent over unix sockets at octavia-lib's default paths (it ignores
    [driver_agent] *_socket_path), so the two share an emptyDir there; the pod is Ready only once the agent
    serves them (the API would otherwise hang on every provider=ovn request)."""
    ovn = inp.spec.providers.ovn
    if ovn is None:
        return []
    _, mounts = _octavia_volumes(inp)
    ready = " && ".join(f"test -S {n.DRIVER_SOCKETS_DIR}/{sock}" for sock in DRIVER_SOCKETS)
    return [_compact({
        "name": "driver-agent", "image": img.api, "imagePullPolicy": img.pull_policy,
        "command": octavia_command(bin_dir, "octavia-driver-agent"),
        "resources": _resources(ovn.resources),
        "volumeMounts": mounts + [{"name": "driver-sockets", "mountPath": n.DRIVER_SOCKETS_DIR}],
        "readinessProbe": {"exec": {"command": ["sh", "-c", ready]}, "periodSeconds": 10, "timeoutSeconds": 5},
        "securityContext": _container_security(),
    })]


def worker_deployment(inp: Inputs, img: Images, bin_dir: str) -> dict[str, Any]:
    return _deployment(inp, "worker", img.worker, octavia_command(bin_dir, "octavia-worker"), inp.spec.worker,
                       replicas=inp.spec.worker.replicas, host_network=True, pull_policy=img.pull_policy,
                       node_selector=_amphora_node_selector(inp), extra_pod=_spread(inp, "worker"))


def health_manager_deployment(inp: Inputs, img: Images, bin_dir: str) -> dict[str, Any]:
    hm = inp.spec.healthManager
    port = hm.heartbeatPort
    replicas = hm.replicas if hm.replicas is not None else max(inp.ready_nodes, 1)
    return _deployment(
        inp, "health-manager", img.health_manager, octavia_command(bin_dir, "octavia-health-manager"), hm,
        replicas=replicas, host_network=True, pull_policy=img.pull_policy,
        # hostPort: the scheduler never puts two health managers on one node (they bind the same port)
        ports=[{"name": "heartbeat", "containerPort": port, "hostPort": port, "protocol": "UDP"}],
        node_selector=_amphora_node_selector(inp), sidecars=_log_receiver(inp, img))


def _log_receiver(inp: Inputs, img: Images) -> list[dict[str, Any]]:
    """spec.amphora.logging Receiver: rsyslogd beside the health manager (the same node, the same
    o-hm0 address the amphorae know), printing what it receives on its stdout (kubectl logs)."""
    from .amphora_logging import receiver_command
    lg = inp.spec.amphora.logging
    if lg.mode != "Receiver":
        return []
    conf = f"{n.CONF_DIR}/{LOG_RECEIVER_CONF}"
    return [{
        "name": "log-receiver", "image": img.health_manager, "imagePullPolicy": img.pull_policy,
        "command": receiver_command(conf, "/tmp"),
        "ports": [{"name": name, "containerPort": p, "hostPort": p, "protocol": "UDP"}
                  for name, p in (("admin-logs", lg.receiverAdminPort), ("tenant-logs", lg.receiverTenantPort))],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}},
        "volumeMounts": [{"name": "config", "mountPath": conf, "subPath": LOG_RECEIVER_CONF, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": _container_security(),
    }]


def housekeeping_deployment(inp: Inputs, img: Images, bin_dir: str) -> dict[str, Any]:
    return _deployment(inp, "housekeeping", img.housekeeping, octavia_command(bin_dir, "octavia-housekeeping"),
                       inp.spec.housekeeping, replicas=inp.spec.housekeeping.replicas, host_network=True,
                       pull_policy=img.pull_policy, node_selector=_amphora_node_selector(inp))


def api_service(inp: Inputs) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _meta(inp, n.Names(inp.name).api_service, "api"),
            "spec": {"type": "ClusterIP", "selector": n.selector(inp.name, "api"),
                     "ports": [{"name": "api", "port": inp.spec.api.port, "targetPort": "api", "protocol": "TCP"}]}}


def api_pdb(inp: Inputs) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": _meta(inp, n.Names(inp.name).component("api"), "api"),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": n.selector(inp.name, "api")}}}


def internal_api_url(name: str, namespace: str, port: int, tls: bool = False) -> str:
    return f"{'https' if tls else 'http'}://{n.Names(name).api_service}.{namespace}.svc:{port}"


# ---------------------------------------------------------------------------------------
# exposure (spec.api.expose)
# ---------------------------------------------------------------------------------------

def expose_objects(inp: Inputs) -> list[dict[str, Any]]:
    """The Ingress, HTTPRoute or LoadBalancer Service that exposes the API (spec.api.expose)."""
    ex = inp.spec.api.expose
    if ex is None:
        return []
    names = n.Names(inp.name)
    port = inp.spec.api.port
    annotations = dict(ex.annotations or {})
    if ex.type == "Ingress":
        ing = ex.ingress
        if inp.spec.api.tls:   # the pods answer https: tell ingress-nginx (other controllers ignore it)
            annotations.setdefault("nginx.ingress.kubernetes.io/backend-protocol", "HTTPS")
        tls_secret = ing.tlsSecretName if ing else None
        if ing and (ing.clusterIssuer or ing.issuer):
            annotations["cert-manager.io/cluster-issuer" if ing.clusterIssuer else "cert-manager.io/issuer"] = \
                ing.clusterIssuer or ing.issuer
            tls_secret = tls_secret or f"{names.api_service}-ingress-tls"
        spec: dict[str, Any] = {"rules": [{"host": ex.hostname, "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": names.api_service, "port": {"number": port}}}}]}}]}
        if ing and ing.className:
            spec["ingressClassName"] = ing.className
        if tls_secret:
            spec["tls"] = [{"hosts": [ex.hostname], "secretName": tls_secret}]
        return [{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                 "metadata": _meta(inp, names.api_service, "api", **({"annotations": annotations} if annotations
                                                                     else {})), "spec": spec}]
    if ex.type == "HTTPRoute":
        assert ex.httpRoute is not None
        parents = [{k: v for k, v in (("group", "gateway.networking.k8s.io"), ("kind", "Gateway"), ("name", p.name),
                                      ("namespace", p.namespace), ("sectionName", p.sectionName)) if v}
                   for p in ex.httpRoute.parentRefs]
        return [{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                 "metadata": _meta(inp, names.api_service, "api", **({"annotations": annotations} if annotations
                                                                     else {})),
                 "spec": {"parentRefs": parents, "hostnames": [ex.hostname], "rules": [{
                     "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                     "backendRefs": [{"name": names.api_service, "port": port}]}]}}]
    lb = ex.loadBalancer
    spec = {"type": "LoadBalancer", "selector": n.selector(inp.name, "api"),
            "ports": [{"name": "api", "port": port, "targetPort": "api", "protocol": "TCP"}]}
    if lb and lb.loadBalancerClass:
        spec["loadBalancerClass"] = lb.loadBalancerClass
    if lb and lb.sourceRanges:
        spec["loadBalancerSourceRanges"] = list(lb.sourceRanges)
    return [{"apiVersion": "v1", "kind": "Service",
             "metadata": _meta(inp, f"{names.api_service}-external", "api",
                               **({"annotations": annotations} if annotations else {})), "spec": spec}]


def expose_url(inp: Inputs, load_balancer_address: str | None = None) -> str | None:
    """The URL clients outside the cluster use (None: not known yet, for a LoadBalancer without address)."""
    ex = inp.spec.api.expose
    if ex is None:
        return None
    if ex.type == "Ingress":
        ing = ex.ingress
        tls = bool(ing and (ing.tlsSecretName or ing.clusterIssuer or ing.issuer))
        return f"{'https' if tls else 'http'}://{ex.hostname}"
    if ex.type == "HTTPRoute":
        assert ex.httpRoute is not None
        return f"{ex.httpRoute.scheme}://{ex.hostname}"
    if not load_balancer_address:
        return None
    host = f"[{load_balancer_address}]" if ":" in load_balancer_address else load_balancer_address
    return f"{'https' if inp.spec.api.tls else 'http'}://{host}:{inp.spec.api.port}"


# ---------------------------------------------------------------------------------------
# db-sync
# ---------------------------------------------------------------------------------------

DB_SYNC_ATTEMPT_ANNOTATION = f"{n.GROUP}/attempt"


def db_sync_identity(img: Images, database_url: str, persistence_url: str | None = None) -> str:
    """What a db-sync run is for: the image (the schema version it migrates to) and the database (and
    the jobboard's persistence database, when there is one). A new image or another database gets a new
    Job; nothing else re-runs the migration."""
    return digest(img.db_sync, database_url, *([persistence_url] if persistence_url else []))


# Run by the db-sync Job with the embedded MariaDB and the jobboard on: the persistence database
# next to Octavia's, for the same user (the embedded server's entrypoint made only "octavia").
_CREATE_PERSISTENCE_DB = """import os, time, pymysql
for attempt in range(30):
    try:
        c = pymysql.connect(host=os.environ["DB_HOST"], port=3306, user="root",
                            password=os.environ["DB_ROOT_PASSWORD"], connect_timeout=10)
        break
    except pymysql.err.OperationalError as exc:
        print("waiting for MariaDB:", exc.args[0], flush=True)
        time.sleep(5)
else:
    raise SystemExit("MariaDB unreachable")
db = os.environ["PERSISTENCE_DB"]
with c.cursor() as cur:
    cur.execute(f"CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
    cur.execute(f"GRANT ALL PRIVILEGES ON `{db}`.* TO 'octavia'@'%'")
print("database", db, "ready for octavia", flush=True)
"""
EMBEDDED_PERSISTENCE_DB = "octavia_persistence"


def db_sync_job(inp: Inputs, img: Images, bin_dir: str, attempt: int = 1) -> dict[str, Any]:
    """Runs ``octavia-db-manage upgrade head`` once per image and database (see ``db_sync_identity``).

    The Job retries a failing pod twice (10 s, 20 s); after that the operator replaces the failed Job
    with growing delays, so a cause fixed outside the operator (a grant, a reachable database) is
    picked up without anyone deleting Jobs. Failed pods are kept (restartPolicy Never) for their logs.
    """
    names = n.Names(inp.name)
    volumes, mounts = _octavia_volumes(inp)
    jobboard = inp.spec.jobboard.enabled
    job_digest = db_sync_identity(img, inp.secrets.database_url, inp.secrets.persistence_url if jobboard else None)
    init: list[dict[str, Any]] = []
    if jobboard and inp.spec.database.mode == "embedded" and inp.spec.jobboard.persistence is None:
        init.append({
            "name": "persistence-database", "image": img.db_sync, "imagePullPolicy": img.pull_policy,
            "command": [f"{bin_dir}/python", "-c", _CREATE_PERSISTENCE_DB],
            "env": [{"name": "DB_HOST", "value": f"{names.mariadb}.{inp.namespace}.svc"},
                    {"name": "PERSISTENCE_DB", "value": EMBEDDED_PERSISTENCE_DB},
                    {"name": "DB_ROOT_PASSWORD", "valueFrom": {"secretKeyRef": {
                        "name": names.database_secret, "key": "root-password"}}}],
            "securityContext": _container_security(),
        })
    if jobboard:
        init.append({
            "name": "upgrade-persistence", "image": img.db_sync, "imagePullPolicy": img.pull_policy,
            "command": [f"{bin_dir}/octavia-db-manage", "--config-file", n.CONF_FILE,
                        "--config-file", n.SECRETS_CONF_FILE, "upgrade_persistence"],
            "volumeMounts": mounts, "securityContext": _container_security(),
        })
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": _meta(inp, names.db_sync_job(job_digest), "db-sync",
                          annotations={DB_SYNC_ATTEMPT_ANNOTATION: str(attempt)}),
        "spec": {
            "backoffLimit": 2,
            "template": {
                "metadata": {"labels": n.labels(inp.name, "db-sync", inp.spec.release)},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": names.service_account,
                    "automountServiceAccountToken": False,
                    "securityContext": POD_SECURITY,
                    "enableServiceLinks": False,
                    **({"initContainers": init} if init else {}),
                    "containers": [{
                        "name": "db-sync", "image": img.db_sync, "imagePullPolicy": img.pull_policy,
                        "command": [f"{bin_dir}/octavia-db-manage", "--config-file", n.CONF_FILE,
                                    "--config-file", n.SECRETS_CONF_FILE, "upgrade", "head"],
                        "volumeMounts": mounts,
                        "securityContext": _container_security(),
                    }],
                    "volumes": volumes,
                },
            },
        },
    }


# ---------------------------------------------------------------------------------------
# host agent
# ---------------------------------------------------------------------------------------

def assignments_doc(inp: Inputs, network: Mapping[str, Any] | None = None,
                    nodes: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The host agents' input (see docs/hostagent.md): one entry per node with a port."""
    ha = inp.spec.hostAgent
    net = dict(network or {"id": "<network-id>", "cidr": inp.spec.managementNetwork.cidr, "mtu": 1450})
    return {
        "version": 1,
        "deployment": f"{inp.namespace}/{inp.name}",
        "driver": ha.driver,
        "interface": ha.interfaceName,
        "integrationBridge": ha.integrationBridge,
        "linuxBridge": "brq" + str(net["id"])[:11],
        "networkId": net["id"],
        "subnet": {"cidr": net["cidr"], "ipVersion": 6 if ":" in str(net["cidr"]) else 4},
        "mtu": net["mtu"],
        "heartbeatPort": inp.spec.healthManager.heartbeatPort,
        "extraUdpPorts": list(inp.spec.amphora.logging.receiver_ports),
        "nodes": dict(nodes if nodes is not None else {
            "<node>": {"portId": "<port-id>", "mac": "<mac>", "ip": "<ip>", "prefixLength": 24, "bound": True}}),
    }


def hostagent_config_map(inp: Inputs) -> dict[str, Any]:
    doc = inp.assignments if inp.assignments is not None else assignments_doc(inp)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(inp, n.Names(inp.name).hostagent, "hostagent"),
            "data": {"assignments.json": json.dumps(doc, indent=2, sort_keys=True)}}


def hostagent_daemonset(inp: Inputs, img: Images) -> dict[str, Any]:
    names = n.Names(inp.name)
    ha = inp.spec.hostAgent
    ovs_dir = ha.ovsdbSocket.rsplit("/", 1)[0] or "/"
    tolerations = _tolerations(ha.tolerations) or [{"operator": "Exists"}]
    container = _compact({
        "name": "hostagent",
        "image": img.host_agent,
        "imagePullPolicy": img.pull_policy,
        "command": ["octavia-hostagent", "run", "--assignments", n.HOSTAGENT_ASSIGNMENTS,
                    "--ovsdb", f"unix:{ha.ovsdbSocket}", "--state-dir", "/var/lib/octavia-hostagent",
                    "--status-file", "/run/octavia-hostagent/status.json"],
        "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "resources": _resources(ha.resources) or {"requests": {"cpu": "10m", "memory": "64Mi"},
                                                   "limits": {"memory": "256Mi"}},
        "readinessProbe": {"exec": {"command": ["octavia-hostagent", "status", "--ready",
                                                "--status-file", "/run/octavia-hostagent/status.json"]},
                           "periodSeconds": 10, "timeoutSeconds": 5},
        # root in the host network namespace, but no privileged mode: NET_ADMIN for links,
        # addresses and firewall rules; NET_RAW for iptables; the OVSDB socket is root's.
        "securityContext": {"privileged": False, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsUser": 0, "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}},
        "volumeMounts": [
            {"name": "assignments", "mountPath": n.HOSTAGENT_ASSIGNMENTS.rsplit("/", 1)[0], "readOnly": True},
            {"name": "ovs-run", "mountPath": ovs_dir},
            {"name": "state", "mountPath": "/var/lib/octavia-hostagent"},
            {"name": "run", "mountPath": "/run/octavia-hostagent"},
            {"name": "xtables-lock", "mountPath": "/run/xtables.lock"},
        ],
    })
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": _meta(inp, names.hostagent, "hostagent"),
        "spec": {
            "selector": {"matchLabels": n.selector(inp.name, "hostagent")},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": n.labels(inp.name, "hostagent", inp.spec.release)},
                "spec": {
                    "hostNetwork": True,
                    "dnsPolicy": "ClusterFirstWithHostNet",
                    "serviceAccountName": f"{names.hostagent}",
                    "automountServiceAccountToken": False,
                    "priorityClassName": "system-node-critical",
                    "nodeSelector": dict(inp.spec.healthManager.nodeSelector),
                    "tolerations": tolerations,
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": [
                        {"name": "assignments", "configMap": {"name": names.hostagent}},
                        {"name": "ovs-run", "hostPath": {"path": ovs_dir, "type": "DirectoryOrCreate"}},
                        {"name": "state", "hostPath": {"path": "/var/lib/octavia-hostagent",
                                                       "type": "DirectoryOrCreate"}},
                        {"name": "run", "emptyDir": {"medium": "Memory"}},
                        {"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}},
                    ],
                },
            },
        },
    }


# ---------------------------------------------------------------------------------------
# embedded MariaDB and RabbitMQ (trials)
# ---------------------------------------------------------------------------------------

def _statefulset(inp: Inputs, name: str, component: str, image: str, port: int, port_name: str,
                 env: list[dict[str, Any]], data_path: str, store: Any, probe_cmd: list[str],
                 uid: int, pull_policy: str, extra_ports: list[dict[str, Any]] | None = None,
                 command: list[str] | None = None, volumes: list[dict[str, Any]] | None = None,
                 mounts: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(inp, name, component),
           "spec": {"clusterIP": "None", "selector": n.selector(inp.name, component),
                    "ports": [{"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}]}}
    pvc_spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                                "resources": {"requests": {"storage": store.storageSize}}}
    if store.storageClassName:
        pvc_spec["storageClassName"] = store.storageClassName
    probe = {"exec": {"command": probe_cmd}, "periodSeconds": 10, "timeoutSeconds": 5}
    sts = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(inp, name, component),
        "spec": {
            "serviceName": name, "replicas": 1,
            "selector": {"matchLabels": n.selector(inp.name, component)},
            "template": {
                "metadata": {"labels": n.labels(inp.name, component, inp.spec.release)},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}, "fsGroup": uid,
                                        "runAsUser": uid, "runAsGroup": uid, "runAsNonRoot": True},
                    **({"volumes": volumes} if volumes else {}),
                    "containers": [_compact({
                        "name": component, "image": image, "imagePullPolicy": pull_policy,
                        "command": command,
                        "env": env,
                        "ports": [{"name": port_name, "containerPort": port, "protocol": "TCP"}] + (extra_ports or []),
                        "resources": _resources(store.resources),
                        "readinessProbe": probe,
                        "livenessProbe": {**probe, "initialDelaySeconds": 60, "failureThreshold": 6},
                        "volumeMounts": [{"name": "data", "mountPath": data_path}] + (mounts or []),
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                    })],
                },
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": pvc_spec}],
            # the data outlives the resource under deletionPolicy Retain (with its password, which
            # the generated Secret keeps); under Delete it goes with it
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Delete" if inp.spec.deletionPolicy == "Delete" else "Retain",
                "whenScaled": "Retain"},
        },
    }
    return [svc, sts]


def embedded_mariadb(inp: Inputs, img: Images) -> list[dict[str, Any]]:
    names = n.Names(inp.name)
    store = inp.spec.database.embedded or _default_store()
    env = [
        {"name": "MARIADB_ROOT_PASSWORD", "valueFrom": {"secretKeyRef": {"name": names.database_secret,
                                                                         "key": "root-password"}}},
        {"name": "MARIADB_DATABASE", "value": "octavia"},
        {"name": "MARIADB_USER", "value": "octavia"},
        {"name": "MARIADB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": names.database_secret,
                                                                    "key": "password"}}},
    ]
    return _statefulset(inp, names.mariadb, "mariadb", img.mariadb, 3306, "mysql", env, "/var/lib/mysql", store,
                        ["healthcheck.sh", "--connect", "--innodb_initialized"], 999, img.pull_policy)


def embedded_rabbitmq(inp: Inputs, img: Images) -> list[dict[str, Any]]:
    names = n.Names(inp.name)
    store = inp.spec.messaging.embedded or _default_store()
    env = [
        {"name": "RABBITMQ_DEFAULT_USER", "value": "octavia"},
        {"name": "RABBITMQ_DEFAULT_PASS", "valueFrom": {"secretKeyRef": {"name": names.messaging_secret,
                                                                         "key": "password"}}},
        {"name": "RABBITMQ_ERLANG_COOKIE", "valueFrom": {"secretKeyRef": {"name": names.messaging_secret,
                                                                          "key": "erlang-cookie"}}},
    ]
    return _statefulset(inp, names.rabbitmq, "rabbitmq", img.rabbitmq, 5672, "amqp", env, "/var/lib/rabbitmq",
                        store, ["rabbitmq-diagnostics", "-q", "check_port_connectivity"], 999, img.pull_policy)


VALKEY_CONF = "/etc/valkey/valkey.conf"


def valkey_conf(password: str) -> str:
    """The embedded Valkey's configuration (kept in the jobboard Secret: it holds the password)."""
    return ("# the embedded Valkey of the taskflow jobboard, written by octavia-operator\n"
            "bind * -::*\nport 6379\nprotected-mode no\ndir /data\nappendonly yes\n"
            f"requirepass {password}\n")


def embedded_valkey(inp: Inputs, img: Images) -> list[dict[str, Any]]:
    """A single-replica Valkey (a Redis image works too: the command finds either server)."""
    names = n.Names(inp.name)
    store = inp.spec.jobboard.embedded or _default_store()
    env = [{"name": var, "valueFrom": {"secretKeyRef": {"name": names.jobboard_secret, "key": "password"}}}
           for var in ("REDISCLI_AUTH", "VALKEYCLI_AUTH")]
    cli = 'exec "$(command -v valkey-cli || command -v redis-cli)" ping | grep -q PONG'
    server = f'exec "$(command -v valkey-server || command -v redis-server)" {VALKEY_CONF}'
    return _statefulset(
        inp, names.valkey, "valkey", img.valkey, 6379, "redis", env, "/data", store, ["sh", "-c", cli], 999,
        img.pull_policy, command=["sh", "-c", server],
        volumes=[{"name": "config", "secret": {"secretName": names.jobboard_secret, "defaultMode": 0o440,
                                               "items": [{"key": "valkey.conf", "path": "valkey.conf"}]}}],
        mounts=[{"name": "config", "mountPath": VALKEY_CONF.rsplit("/", 1)[0], "readOnly": True}])


def _default_store() -> Any:
    from ..spec import EmbeddedStore
    return EmbeddedStore()


# ---------------------------------------------------------------------------------------
# everything
# ---------------------------------------------------------------------------------------

def service_accounts(inp: Inputs) -> list[dict[str, Any]]:
    names = n.Names(inp.name)
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "automountServiceAccountToken": False,
         "metadata": _meta(inp, names.service_account, "octavia")},
        {"apiVersion": "v1", "kind": "ServiceAccount", "automountServiceAccountToken": False,
         "metadata": _meta(inp, names.hostagent, "hostagent")},
    ]


def build(inp: Inputs) -> list[dict[str, Any]]:
    """Every Kubernetes object the operator creates for this deployment, in apply order.

    The Secrets the steps generate (keystone password, passphrases, certificates, database
    and messaging credentials) are not built here: they hold generated values and are
    created by their steps; ``render`` lists them separately with placeholders.
    """
    spec = inp.spec
    img = images(spec.release, spec.images)
    from ..releases import RELEASES
    bin_dir = RELEASES[spec.release].bin_dir
    objs: list[dict[str, Any]] = []
    objs += service_accounts(inp)
    objs.append(config_map(inp))
    objs.append(config_secret(inp))
    objs.append(hostagent_config_map(inp))
    objs.append(hostagent_daemonset(inp, img))
    if inp.include_embedded and spec.database.mode == "embedded":
        objs += embedded_mariadb(inp, img)
    if inp.include_embedded and spec.messaging.mode == "embedded":
        objs += embedded_rabbitmq(inp, img)
    if inp.include_embedded and spec.jobboard.enabled and spec.jobboard.mode == "embedded":
        objs += embedded_valkey(inp, img)
    objs.append(db_sync_job(inp, img, bin_dir))
    objs.append(api_service(inp))
    objs.append(api_pdb(inp))
    objs.append(api_deployment(inp, img, bin_dir))
    objs.append(worker_deployment(inp, img, bin_dir))
    objs.append(health_manager_deployment(inp, img, bin_dir))
    objs.append(housekeeping_deployment(inp, img, bin_dir))
    return objs


GENERATED_SECRETS = {
    # secret name attribute -> (component, keys) ; values are generated by the steps
    "keystone_secret": ("identity", ("password",)),
    "passphrases_secret": ("certificates", ("ca-key-passphrase", "server-certs-key-passphrase", "heartbeat-key")),
    "certs_secret": ("certificates", ("server_ca.cert.pem", "server_ca.key.pem", "server_ca.bundle.pem",
                                      "client_ca.cert.pem", "client_ca.bundle.pem", "client_ca.key.pem",
                                      "client.cert.pem", "client.cert-and-key.pem")),
    "database_secret": ("database", ("connection", "password", "root-password")),
    "messaging_secret": ("messaging", ("transport_url", "password", "erlang-cookie")),
    "jobboard_secret": ("jobboard", ("password", "valkey.conf")),
}


def generated_secret_placeholders(inp: Inputs) -> list[dict[str, Any]]:
    """The Secrets the steps generate, with placeholder values (for ``render`` only). Under
    deletionPolicy Retain they have no ownerReference: they outlive the resource (steps/secrets.py)."""
    names = n.Names(inp.name)
    out: list[dict[str, Any]] = []
    for attr, (component, keys) in GENERATED_SECRETS.items():
        if attr == "database_secret" and inp.spec.database.mode == "external":
            continue
        if attr == "messaging_secret" and inp.spec.messaging.mode == "external":
            continue
        if attr == "jobboard_secret" and (not inp.spec.jobboard.enabled or inp.spec.jobboard.mode == "external"):
            continue
        out.append(_secret(inp, getattr(names, attr), component, {k: "<generated>" for k in keys}))
    if inp.spec.amphora.ssh.enabled:
        out.append(_secret(inp, names.ssh_secret, "ssh", {"id_rsa": "<generated>", "id_rsa.pub": "<generated>"}))
    if inp.spec.deletionPolicy != "Delete":
        for o in out:
            del o["metadata"]["ownerReferences"]
    return out
