"""octavia.conf, rendered by pure functions from the spec, the cloud IDs and the release.

Two files come out: ``octavia.conf`` (no secret: it goes into a ConfigMap) and
``secrets.conf`` (passwords, passphrases, transport_url, database URL, heartbeat_key: it
goes into a Secret). Both are passed to every Octavia process with ``--config-file``;
oslo.config merges them in order, so the secrets file only adds keys.
"""
from __future__ import annotations

import configparser
import io
from dataclasses import dataclass, field
from typing import Mapping

from .. import names as n
from ..releases import RELEASES
from ..spec import OctaviaDeploymentSpec

PLACEHOLDER = "<{}>"


@dataclass(frozen=True)
class CloudValues:
    """What the cloud steps found: IDs that octavia.conf needs (placeholders when rendering offline)."""

    auth_url: str = "<keystone-auth-url>"
    www_authenticate_uri: str | None = None
    image_owner_id: str = "<amp_image_owner_id>"
    flavor_id: str = "<amp_flavor_id>"
    network_id: str = "<amp_boot_network_id>"
    amphora_secgroup_id: str = "<amp_secgroup_id>"
    # node -> fixed IP of its health-manager port
    health_manager_ips: Mapping[str, str] = field(default_factory=lambda: {"<node>": "<health-manager-port-ip>"})

    @property
    def controller_ip_port_list(self) -> list[str]:
        return sorted(self.health_manager_ips.values())


@dataclass(frozen=True)
class SecretValues:
    """Secret inputs of secrets.conf (placeholders when rendering offline)."""

    transport_url: str = "<transport_url>"
    database_url: str = "<database-connection>"
    heartbeat_key: str = "<heartbeat_key>"
    service_password: str = "<service-user-password>"
    ca_key_passphrase: str = "<ca_private_key_passphrase>"
    server_certs_key_passphrase: str = "<server_certs_key_passphrase>"
    # spec.providers.ovn: the NB and SB connections, from the user's Secret (None without ovn)
    ovn_nb_connection: str | None = None
    ovn_sb_connection: str | None = None
    # spec.jobboard (None when it is off, or when the server has no password)
    persistence_url: str | None = None
    jobboard_password: str | None = None
    jobboard_sentinel_password: str | None = None


Sections = dict[str, dict[str, str]]


def _bool(v: bool) -> str:
    return "true" if v else "false"


def _ip_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def controller_ip_port_list(spec: OctaviaDeploymentSpec, cloud: CloudValues) -> str:
    """[health_manager] controller_ip_port_list: where amphorae send heartbeats."""
    return ", ".join(_ip_port(ip, spec.healthManager.heartbeatPort) for ip in cloud.controller_ip_port_list)


PROVIDER_DESCRIPTIONS = {"amphora": "The Octavia Amphora driver.", "ovn": "Octavia OVN driver."}

# TLS material of spec.jobboard, where the pods mount it (builders.kube._octavia_volumes)
JOBBOARD_TLS_FILES = {
    "tls": ("server-ca.crt", "client.crt", "client.key"),
    "sentinelTLS": ("sentinel-ca.crt", "sentinel-client.crt", "sentinel-client.key"),
}


def _redis_ssl_options(tls: object, files: tuple[str, str, str]) -> str:
    """A DictOpt value for jobboard_redis_(backend|sentinel)_ssl_options (redis-py's ssl_* arguments)."""
    opts = {"ssl": "True", "ssl_ca_certs": f"{n.JOBBOARD_TLS_DIR}/{files[0]}", "ssl_cert_reqs": "required"}
    if getattr(tls, "clientCertificateSecret", None):
        opts.update({"ssl_certfile": f"{n.JOBBOARD_TLS_DIR}/{files[1]}",
                     "ssl_keyfile": f"{n.JOBBOARD_TLS_DIR}/{files[2]}"})
    return ",".join(f"{k}:{v}" for k, v in opts.items())


def task_flow_section(spec: OctaviaDeploymentSpec, embedded_host: str = "<jobboard-host>") -> dict[str, str]:
    """[task_flow] for spec.jobboard (empty when it is off). The passwords and the persistence URL are
    secret: they go to secrets.conf (secret_sections)."""
    jb = spec.jobboard
    if not jb.enabled:
        return {}
    tf = {
        "jobboard_enabled": "true",
        "jobboard_backend_driver": "redis_taskflow_driver",
        "jobboard_expiration_time": str(jb.expirationSeconds),
        "jobboard_save_logbook": _bool(jb.saveLogbook),
    }
    ext = jb.external
    if ext is None:
        tf.update({"jobboard_backend_hosts": embedded_host, "jobboard_backend_port": "6379",
                   "jobboard_backend_namespace": "octavia_jobboard", "jobboard_redis_backend_db": "0"})
        return tf
    tf.update({"jobboard_backend_hosts": ", ".join(ext.hosts), "jobboard_backend_port": str(ext.port),
               "jobboard_backend_namespace": ext.keyPrefix, "jobboard_redis_backend_db": str(ext.database)})
    if ext.sentinel:
        tf["jobboard_redis_sentinel"] = ext.sentinel
    if ext.username:
        tf["jobboard_backend_username"] = ext.username
    if ext.sentinelUsername:
        tf["jobboard_redis_sentinel_username"] = ext.sentinelUsername
    if ext.tls:
        tf["jobboard_redis_backend_ssl_options"] = _redis_ssl_options(ext.tls, JOBBOARD_TLS_FILES["tls"])
    if ext.sentinelTLS:
        tf["jobboard_redis_sentinel_ssl_options"] = _redis_ssl_options(ext.sentinelTLS,
                                                                        JOBBOARD_TLS_FILES["sentinelTLS"])
    return tf


def health_manager_bind_ip(spec: OctaviaDeploymentSpec) -> str:
    """[health_manager] bind_ip: the wildcard address of the management network's IP version.

    Octavia's health manager opens ONE UDP socket, of the family of bind_ip (heartbeat_udp.UDPStatusGetter):
    bound to 0.0.0.0 it never receives an IPv6 heartbeat. "::" is used only on an IPv6 management network:
    the health manager runs with hostNetwork, and a socket bound to "::" takes IPv4 too only while the node's
    net.ipv6.bindv6only is 0 (and cannot be opened at all on a node booted with ipv6.disable=1).
    """
    return "::" if spec.managementNetwork.network.version == 6 else "0.0.0.0"


def amphora_agent_section(spec: OctaviaDeploymentSpec, cloud: CloudValues) -> dict[str, str]:
    """[amphora_agent] for spec.amphora.logging (empty when Disabled). The worker writes these targets
    into each amphora's rsyslog configuration when it creates the amphora."""
    from .amphora_logging import log_targets
    lg = spec.amphora.logging
    if lg.mode == "Disabled":
        return {}
    if lg.mode == "Receiver":
        ips = cloud.controller_ip_port_list          # the bound health-manager ports, sorted
        admin, tenant = log_targets(ips, lg.receiverAdminPort), log_targets(ips, lg.receiverTenantPort)
    else:
        admin, tenant = ",".join(lg.adminTargets or []), ",".join(lg.tenantTargets or [])
    out = {"log_protocol": lg.protocol, "forward_all_logs": _bool(lg.forwardAllLogs),
           "disable_local_log_storage": _bool(lg.disableLocalLogStorage)}
    if admin:
        out["admin_log_targets"] = admin
    if tenant:
        out["tenant_log_targets"] = tenant
    return out


def config_sections(spec: OctaviaDeploymentSpec, cloud: CloudValues,
                    jobboard_host: str = "<jobboard-host>") -> Sections:
    """The non-secret octavia.conf, section by section (spec overrides merged last).
    ``jobboard_host``: the embedded Valkey's Service host name (spec.jobboard without external)."""
    rel = RELEASES[spec.release]
    ident = spec.identity
    cafile = n.CLOUD_CA_FILE if spec.cloud.caBundleSecret else None
    region = spec.cloud.region
    interface = spec.cloud.interface
    hm_port = spec.healthManager.heartbeatPort

    def auth_block(extra: dict[str, str] | None = None) -> dict[str, str]:
        # keystoneauth password-plugin options; the password itself is in secrets.conf
        block = {
            "auth_url": cloud.auth_url,
            "auth_type": "password",
            "project_domain_name": ident.projectDomain,
            "user_domain_name": ident.userDomain,
            "project_name": ident.serviceProject,
            "username": ident.serviceUser,
        }
        if cafile:
            block["cafile"] = cafile
        block.update(extra or {})
        return block

    s: Sections = {}
    s["DEFAULT"] = {"debug": "false", "use_stderr": "true"}
    s["api_settings"] = {
        "bind_host": "0.0.0.0",
        "bind_port": str(spec.api.port),
        "auth_strategy": "keystone",
        "healthcheck_enabled": "true",
        "default_provider_driver": spec.providers.default,
        "enabled_provider_drivers": ",".join(f"{p}:{PROVIDER_DESCRIPTIONS[p]}" for p in spec.providers.enabled),
    }
    s["oslo_policy"] = {"policy_file": n.POLICY_FILE}
    if spec.api.tls is not None or spec.api.expose is not None:
        # behind haproxy, an Ingress or a Gateway: X-Forwarded-Proto/Host make Octavia's links right
        s["oslo_middleware"] = {"enable_proxy_headers_parsing": "true"}
    s["database"] = {"max_retries": "-1", "connection_recycle_time": "3600"}
    s["health_manager"] = {
        "bind_ip": health_manager_bind_ip(spec),
        "bind_port": str(hm_port),
        "controller_ip_port_list": controller_ip_port_list(spec, cloud),
    }
    s["keystone_authtoken"] = auth_block({
        "region_name": region,
        "www_authenticate_uri": cloud.www_authenticate_uri or cloud.auth_url,
        "service_token_roles_required": "true",
        "service_type": "load-balancer",
    })
    s["service_auth"] = auth_block()
    s["certificates"] = {
        "cert_generator": "local_cert_generator",
        "ca_certificate": f"{n.CERTS_DIR}/server_ca.cert.pem",
        "ca_private_key": f"{n.CERTS_DIR}/server_ca.key.pem",
    }
    s["haproxy_amphora"] = {
        "server_ca": f"{n.CERTS_DIR}/server_ca.bundle.pem",
        "client_cert": f"{n.CERTS_DIR}/client.cert-and-key.pem",
        "base_path": "/var/lib/octavia",
        "base_cert_dir": "/var/lib/octavia/certs",
    }
    cw = {
        "amp_image_tag": spec.amphora.image.tag,
        "amp_image_owner_id": cloud.image_owner_id,
        "amp_flavor_id": cloud.flavor_id,
        "amp_secgroup_list": cloud.amphora_secgroup_id,
        "amp_boot_network_list": cloud.network_id,
        "client_ca": f"{n.CERTS_DIR}/client_ca.bundle.pem",
        "loadbalancer_topology": spec.amphora.topology,
        "amphora_driver": "amphora_haproxy_rest_driver",
        "compute_driver": "compute_nova_driver",
        "network_driver": "allowed_address_pairs_driver",
        "volume_driver": "volume_noop_driver",
    }
    if spec.amphora.ssh.enabled:
        cw["amp_ssh_key_name"] = spec.amphora.ssh.keyName
    s["controller_worker"] = cw
    s["oslo_messaging"] = {"topic": "octavia_prov"}
    s["house_keeping"] = {}
    for svc in ("nova", "glance"):
        block = {"region_name": region, "endpoint_type": f"{interface}URL"}
        if cafile:
            block["ca_certificates_file"] = cafile
        s[svc] = block
    if rel.neutron_ksa_options:
        # Octavia talks to Neutron through openstacksdk with the auth options of [neutron]
        # itself; without them it falls back to [service_auth] through a code path kept only
        # for upgrades ("should be removed when all the deployment tools set the correct
        # options in [neutron]", octavia/common/keystone.py), so they are written here.
        neutron = auth_block({"region_name": region, "valid_interfaces": interface})
    else:  # pragma: no cover - no supported release uses the old names today
        neutron = {"region_name": region, "endpoint_type": interface}
    s["neutron"] = neutron
    ovn = spec.providers.ovn
    if ovn is not None:
        s["driver_agent"] = {"enabled_provider_agents": "ovn"}
        if ovn.tlsSecret:
            tls = {"private_key": "tls.key", "certificate": "tls.crt", "ca_cert": "ca.crt"}
            s["ovn"] = {f"ovn_{db}_{opt}": f"{n.OVN_TLS_DIR}/{f}" for db in ("nb", "sb") for opt, f in tls.items()}
    agent = amphora_agent_section(spec, cloud)
    if agent:
        s["amphora_agent"] = agent
    task_flow = task_flow_section(spec, jobboard_host)
    if task_flow:
        s["task_flow"] = task_flow
    for section, opts in (spec.config or {}).items():
        s.setdefault(section, {}).update(opts)
    return s


# spec.policy.rules: advanced-rbac. Since 2025.1 Octavia's own defaults follow Keystone's default roles
# (reader, member, admin) and give nothing to the load-balancer_* roles; these overrides of Octavia's
# base rules give those roles back their documented meaning (Octavia's policy guide, "Advanced RBAC"):
# observer reads its project's load balancers, global_observer reads all, member reads and writes its
# project's, quota_admin manages quotas, admin everything. Keystone's plain member/reader roles then
# grant nothing in Octavia.
ADVANCED_RBAC_POLICY = """\
# octavia-operator: spec.policy.rules = advanced-rbac
"context_is_admin": "role:admin or role:load-balancer_admin"
"load-balancer:owner": "project_id:%(project_id)s"
"load-balancer:admin": "is_admin:True or role:admin or role:load-balancer_admin"
"load-balancer:global_observer": "role:load-balancer_global_observer"
"load-balancer:member_and_owner": "role:load-balancer_member and rule:load-balancer:owner"
"load-balancer:observer_and_owner": "role:load-balancer_observer and rule:load-balancer:owner"
"load-balancer:quota-admin": "role:load-balancer_quota_admin"
"""

KEYSTONE_DEFAULT_ROLES_POLICY = """\
# octavia-operator: spec.policy.rules = keystone-default-roles (Octavia's own defaults: nothing overridden)
"""


def policy_file(spec: OctaviaDeploymentSpec, custom: str | None = None) -> str:
    """The policy.yaml the API reads ([oslo_policy] policy_file); ``custom``: the user's file."""
    rules = spec.policy.rules
    if rules == "custom":
        if custom is None:
            raise ValueError("spec.policy.rules is custom: the caller reads the ConfigMap")
        return custom
    return ADVANCED_RBAC_POLICY if rules == "advanced-rbac" else KEYSTONE_DEFAULT_ROLES_POLICY


def _literal(value: str) -> str:
    """A value oslo.config reads back verbatim: ``$`` starts a substitution there (``$$`` is a ``$``)
    and surrounding whitespace is dropped anyway (a Secret value often ends with a newline)."""
    return value.strip().replace("$", "$$")


def secret_sections(secrets: SecretValues) -> Sections:
    """The secret options (secrets.conf). Values are escaped for oslo.config: a ``$`` in a password
    or URL taken from a user's Secret is kept literally instead of breaking the service's start."""
    s = {
        "DEFAULT": {"transport_url": secrets.transport_url},
        "database": {"connection": secrets.database_url},
        "health_manager": {"heartbeat_key": secrets.heartbeat_key},
        "keystone_authtoken": {"password": secrets.service_password},
        "service_auth": {"password": secrets.service_password},
        "neutron": {"password": secrets.service_password},
        "certificates": {
            "ca_private_key_passphrase": secrets.ca_key_passphrase,
            "server_certs_key_passphrase": secrets.server_certs_key_passphrase,
        },
    }
    task_flow = {k: v for k, v in (("persistence_connection", secrets.persistence_url),
                                   ("jobboard_backend_password", secrets.jobboard_password),
                                   ("jobboard_redis_sentinel_password", secrets.jobboard_sentinel_password))
                 if v is not None}
    if task_flow:
        s["task_flow"] = task_flow
    ovn = {k: v for k, v in (("ovn_nb_connection", secrets.ovn_nb_connection),
                             ("ovn_sb_connection", secrets.ovn_sb_connection)) if v is not None}
    if ovn:
        s["ovn"] = ovn
    return {section: {k: _literal(v) for k, v in opts.items()} for section, opts in s.items()}


def to_ini(sections: Sections, header: str) -> str:
    out = io.StringIO()
    out.write("".join(f"# {line}\n" for line in header.splitlines()))
    for section, opts in sections.items():
        out.write(f"\n[{section}]\n")
        for k, v in opts.items():
            out.write(f"{k} = {v}\n")
    return out.getvalue()


def render_octavia_conf(spec: OctaviaDeploymentSpec, cloud: CloudValues, jobboard_host: str = "<jobboard-host>") -> str:
    return to_ini(config_sections(spec, cloud, jobboard_host),
                  "octavia.conf rendered by octavia-operator. Do not edit: change the OctaviaDeployment.\n"
                  f"Secrets are in a separate file ({n.SECRETS_CONF_FILE}), merged by oslo.config.")


def render_secrets_conf(secrets: SecretValues) -> str:
    return to_ini(secret_sections(secrets), "Secret options of octavia.conf, rendered by octavia-operator.")


def parse(text: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None, default_section="__none__")
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(text)
    return cp
