"""Names, labels and paths shared by the builders and the steps (pure constants)."""
from __future__ import annotations

from dataclasses import dataclass

from .spec import GROUP

MANAGED_BY = "octavia-operator"
PART_OF = "octavia"

# Where the containers find their files.
CONF_DIR = "/etc/octavia"
CONF_FILE = f"{CONF_DIR}/octavia.conf"           # ConfigMap: no secrets
POLICY_FILE = f"{CONF_DIR}/policy.yaml"              # ConfigMap: the API's oslo.policy rules
SECRETS_CONF_FILE = f"{CONF_DIR}/secrets.d/secrets.conf"  # Secret: merged after octavia.conf by oslo.config
CERTS_DIR = f"{CONF_DIR}/certs"
CLOUD_CA_FILE = f"{CONF_DIR}/cloud-ca/ca.crt"
JOBBOARD_TLS_DIR = f"{CONF_DIR}/jobboard-tls"  # CA and client certificates for Redis / Sentinel TLS
OVN_TLS_DIR = f"{CONF_DIR}/ovn-tls"             # client certificate for the OVN NB/SB databases
DRIVER_SOCKETS_DIR = "/var/run/octavia"       # octavia-lib's sockets: ovn-octavia-provider ignores the options
HOSTAGENT_ASSIGNMENTS = "/etc/octavia-hostagent/assignments.json"

# Annotation carrying the hash of config + certificates on every pod template.
CONFIG_HASH_ANNOTATION = f"{GROUP}/config-hash"
OWNER_UID_LABEL = f"{GROUP}/owner-uid"

COMPONENTS = ("api", "worker", "health-manager", "housekeeping")


@dataclass(frozen=True)
class Names:
    """Names of the Kubernetes children of one OctaviaDeployment called ``name``."""

    name: str

    def component(self, component: str) -> str:
        return f"{self.name}-{component}"

    @property
    def api_service(self) -> str:
        return f"{self.name}-api"

    @property
    def config_map(self) -> str:
        return f"{self.name}-config"

    @property
    def config_secret(self) -> str:
        return f"{self.name}-config-secrets"

    @property
    def certs_secret(self) -> str:
        return f"{self.name}-certs"

    @property
    def passphrases_secret(self) -> str:
        return f"{self.name}-passphrases"

    @property
    def keystone_secret(self) -> str:
        return f"{self.name}-keystone"

    @property
    def database_secret(self) -> str:
        return f"{self.name}-database"

    @property
    def messaging_secret(self) -> str:
        return f"{self.name}-messaging"

    @property
    def ssh_secret(self) -> str:
        return f"{self.name}-ssh"

    @property
    def mariadb(self) -> str:
        return f"{self.name}-mariadb"

    @property
    def rabbitmq(self) -> str:
        return f"{self.name}-rabbitmq"

    @property
    def valkey(self) -> str:
        return f"{self.name}-valkey"

    @property
    def jobboard_secret(self) -> str:
        return f"{self.name}-jobboard"

    @property
    def hostagent(self) -> str:
        return f"{self.name}-hostagent"

    @property
    def service_account(self) -> str:
        return self.name

    def db_sync_job(self, digest: str) -> str:
        return f"{self.name}-db-sync-{digest[:10]}"

    def o_hm0_label(self, namespace: str) -> str:
        """Node label the operator sets where this deployment's o-hm0 is plumbed and verified."""
        return f"{self.name}.{namespace}.{GROUP}/o-hm0"


def labels(name: str, component: str, release: str | None = None) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": "octavia",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }
    if release:
        out["app.kubernetes.io/version"] = release
    return out


def selector(name: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/instance": name, "app.kubernetes.io/component": component,
            "app.kubernetes.io/name": "octavia"}
