"""The OctaviaDeployment API: one pydantic model tree that is the single source of truth.

The CRD's ``openAPIV3Schema`` is generated from these models (``octavia_operator.crd``),
so every description, default, enum, range and pattern here is what ``kubectl explain``
shows and what the API server enforces. Cross-field rules are written twice on purpose:
as CEL (``x-kubernetes-validations``, enforced by the API server before anything is
stored) and as pydantic validators (enforced by the operator, which reports them in the
``SpecValid`` condition). ``tests/test_crd.py`` keeps the two in sync by running the same
invalid resources through both.
"""
from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

GROUP = "octavia-operator.dev"
VERSION = "v1alpha1"
KIND = "OctaviaDeployment"
PLURAL = "octaviadeployments"
SINGULAR = "octaviadeployment"
SHORT_NAMES = ["octd"]

# OpenStack releases whose images and configuration dialect the operator knows.
RELEASES = ("2025.1", "2025.2", "2026.1")
DEFAULT_RELEASE = "2026.1"

# octavia.conf keys that hold secrets: they may never be set through ``spec.config``
# (which ends up in a ConfigMap). Kept in one place; the CEL rule is generated from it.
SECRET_CONFIG_KEYS = (
    ("DEFAULT", "transport_url"),
    ("database", "connection"),
    ("health_manager", "heartbeat_key"),
    ("keystone_authtoken", "password"),
    ("service_auth", "password"),
    ("neutron", "password"),
    ("nova", "password"),
    ("glance", "password"),
    ("certificates", "ca_private_key_passphrase"),
    ("certificates", "server_certs_key_passphrase"),
    ("task_flow", "persistence_connection"),
    ("task_flow", "jobboard_backend_password"),
    ("task_flow", "jobboard_redis_sentinel_password"),
    ("ovn", "ovn_nb_connection"),
    ("ovn", "ovn_sb_connection"),
)

K8S_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
UUID_RE = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
SECRET_KEY_RE = r"^[-._a-zA-Z0-9]+$"
QUANTITY_RE = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
IMAGE_RE = r"^[^\s]+$"
IFNAME_RE = r"^[a-zA-Z0-9][-_.a-zA-Z0-9]{0,14}$"

# x-kubernetes-validations are attached per model via ``cel(...)`` in model_config.


def cel(*rules: tuple[str, str] | tuple[str, str, str]) -> dict[str, Any]:
    """json_schema_extra carrying CEL rules: (rule, message[, fieldPath])."""
    out = []
    for r in rules:
        item = {"rule": r[0], "message": r[1]}
        if len(r) > 2:
            item["fieldPath"] = r[2]
        out.append(item)
    return {"x-kubernetes-validations": out}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def F(default: Any = ..., description: str = "", **kw: Any) -> Any:  # noqa: N802 - a field factory
    if not description:
        raise ValueError("every field needs a description")
    return Field(default, description=description, **kw)


def FF(factory: Any, description: str, **kw: Any) -> Any:  # noqa: N802
    return Field(default_factory=factory, description=description, **kw)


# ---------------------------------------------------------------------------------------
# Shared small types
# ---------------------------------------------------------------------------------------

class SecretKeyRef(_Model):
    name: str = F(..., "Name of a Secret in the OctaviaDeployment's namespace.",
                  min_length=1, max_length=253, pattern=K8S_NAME)
    key: str = F(..., "Key inside the Secret.", min_length=1, max_length=253, pattern=SECRET_KEY_RE)


def secret_ref(default_key: str, what: str) -> type[_Model]:
    """A SecretKeyRef whose key has a default (each use site names what the value is)."""
    return type(
        f"SecretRef_{default_key.replace('.', '_').replace('-', '_')}",
        (_Model,),
        {
            "__annotations__": {"name": str, "key": str},
            "__doc__": f"A reference to {what} in a Secret.",
            "name": F(..., "Name of a Secret in the OctaviaDeployment's namespace.",
                      min_length=1, max_length=253, pattern=K8S_NAME),
            "key": F(default_key, f"Key inside the Secret holding {what}.",
                     min_length=1, max_length=253, pattern=SECRET_KEY_RE),
            "__module__": __name__,
        },
    )


CloudsYamlRef = secret_ref("clouds.yaml", "a clouds.yaml file")
CABundleRef = secret_ref("ca.crt", "a PEM CA bundle")
DatabaseURLRef = secret_ref("connection", "a SQLAlchemy database URL (mysql+pymysql://user:password@host/octavia)")
TransportURLRef = secret_ref("transport_url", "an oslo.messaging transport URL (rabbit://user:password@host:5672/)")


class Toleration(_Model):
    key: str | None = F(None, "Taint key the toleration applies to; empty matches all keys (with operator Exists).")
    operator: Literal["Exists", "Equal"] | None = F(None, "Relationship of key to value: Exists or Equal (default Equal).")
    value: str | None = F(None, "Taint value the toleration matches (with operator Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = F(
        None, "Taint effect to match; empty matches all effects.")
    tolerationSeconds: int | None = F(None, "For NoExecute: how long the pod stays bound after the taint appears.")


Quantity = int | Annotated[str, Field(pattern=QUANTITY_RE)]


class ResourceRequirements(_Model):
    requests: dict[str, Quantity] | None = F(
        None, "Minimum compute resources (for example cpu: 100m, memory: 256Mi).")
    limits: dict[str, Quantity] | None = F(
        None, "Maximum compute resources (for example memory: 1Gi).")


class Component(_Model):
    """Scheduling settings of one Octavia service."""

    replicas: int = F(1, "Number of pods.", ge=0, le=64)
    resources: ResourceRequirements | None = F(None, "Compute resources of the service container.")
    nodeSelector: dict[str, str] | None = F(
        None, "Extra node labels the pods require (added to the placement the operator computes).", max_length=64)
    tolerations: list[Toleration] | None = F(None, "Tolerations of the pods.", max_length=32)
    priorityClassName: str | None = F(None, "PriorityClass of the pods.", max_length=253)


# ---------------------------------------------------------------------------------------
# cloud
# ---------------------------------------------------------------------------------------

class CloudSpec(_Model):
    credentialsSecret: CloudsYamlRef = F(..., "Secret holding a clouds.yaml with admin credentials of the target OpenStack.")  # type: ignore[valid-type]
    cloudName: str = F("openstack", "Name of the cloud entry inside clouds.yaml.", min_length=1, max_length=255)
    region: str = F("RegionOne", "OpenStack region the Octavia endpoints and resources belong to.",
                    min_length=1, max_length=255)
    interface: Literal["public", "internal", "admin"] = F(
        "public", "Catalog interface the operator and the Octavia services use to reach the other OpenStack APIs.")
    caBundleSecret: CABundleRef | None = F(  # type: ignore[valid-type]
        None, "Secret with a PEM CA bundle to verify the OpenStack APIs' TLS certificates.")


# ---------------------------------------------------------------------------------------
# identity
# ---------------------------------------------------------------------------------------

URL_RULE = ("isURL(self) && url(self).getScheme() in ['http', 'https']", "must be an http(s) URL")


def _http_url(v: str) -> str:
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(v)
    except ValueError:
        raise ValueError("must be an http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http(s) URL")
    return v


HttpURL = Annotated[str, AfterValidator(_http_url), Field(max_length=4096, json_schema_extra=cel(URL_RULE))]


class Endpoints(_Model):
    public: HttpURL | None = F(
        None, "Public URL of the load-balancer API, as clients outside the cluster reach it. Unset: no public "
        "endpoint is registered (the in-cluster URL is unreachable from outside) and IdentityReady says so.",
        max_length=2048)
    internal: HttpURL | None = F(
        None, "Internal URL (default: the in-cluster Service, http://octavia-api.<namespace>.svc:9876).",
        max_length=2048)
    admin: HttpURL | None = F(
        None, "Admin URL (default: the internal URL).", max_length=2048)


class IdentitySpec(_Model):
    serviceUser: str = F("octavia", "Keystone user the Octavia services authenticate as (created if missing; "
                         "its password is generated and kept in a Secret).", min_length=1, max_length=255)
    userDomain: str = F("Default", "Keystone domain (name) of the service user.", min_length=1, max_length=255)
    serviceProject: str = F("service", "Keystone project (name) the service user works in; it owns the amphora "
                            "image, the management network and the amphorae.", min_length=1, max_length=255)
    projectDomain: str = F("Default", "Keystone domain (name) of the service project.", min_length=1, max_length=255)
    roles: list[Annotated[str, Field(min_length=1, max_length=255)]] = F(
        ["admin"], "Roles granted to the service user on the service project (the manual install grants admin).",
        min_length=1, max_length=16)
    createLoadBalancerRoles: bool = F(
        True, "Create the load-balancer_observer, _global_observer, _member, _quota_admin and _admin roles "
        "that Octavia's default RBAC policy uses.")
    serviceName: str = F("octavia", "Name of the Keystone service of type load-balancer.", min_length=1, max_length=255)
    endpoints: Endpoints = FF(Endpoints, "Endpoint URLs registered in the Keystone catalog.")
    passwordSecret: SecretKeyRef | None = F(
        None, "Secret key holding the password of an existing service user, to adopt a user made by hand "
        "together with its password: the operator uses it (copied into its own Secret) and never changes it. "
        "Without it an existing user it did not create is adopted only if the password the operator has "
        "works, or with resetPassword.")
    resetPassword: bool = F(
        False, "Allow resetting the password of an existing service user this operator did not create, when "
        "the password it has does not work. Services that still use the old password (an Octavia running "
        "today) fail from then on.")
    adoptEndpoints: bool = F(
        False, "When a load-balancer service exists that this operator did not create: rewrite its endpoints "
        "to these URLs (and add the missing ones). By default they are left exactly as they are.")


# ---------------------------------------------------------------------------------------
# database and messaging
# ---------------------------------------------------------------------------------------

class ExternalDatabase(_Model):
    connectionSecret: DatabaseURLRef = F(..., "Secret holding the SQLAlchemy URL of an existing, ready Octavia database.")  # type: ignore[valid-type]


class ManagedDatabase(_Model):
    adminSecret: SecretKeyRef = F(..., "Secret key holding the password of a MySQL/MariaDB account allowed to "
                                  "CREATE DATABASE and GRANT (the operator creates the database and user).")
    adminUser: str = F("root", "Name of that admin account.", min_length=1, max_length=80)
    host: str = F(..., "Host name or IP of the MySQL/MariaDB server.", min_length=1, max_length=253)
    port: int = F(3306, "Port of the MySQL/MariaDB server.", ge=1, le=65535)
    databaseName: str = F("octavia", "Database to create.", pattern=r"^[A-Za-z0-9_]{1,64}$")
    userName: str = F("octavia", "Database user to create (its password is generated).",
                      pattern=r"^[A-Za-z0-9_]{1,32}$")
    userHost: str = F("%", "Host part of the created user ('%' = from anywhere).", min_length=1, max_length=255)


class EmbeddedStore(_Model):
    storageSize: str = F("2Gi", "Size of the PersistentVolumeClaim (applied like storageClassName).",
                         pattern=QUANTITY_RE)
    storageClassName: str | None = F(
        None, "StorageClass of the PersistentVolumeClaim (default: the cluster default). A change is applied while "
        "the claim is not bound yet (the server is re-created, nothing is lost); once it is bound, the volume stays "
        "and the condition says so.", max_length=253)
    resources: ResourceRequirements | None = F(None, "Compute resources of the server container.")


class DatabaseSpec(_Model):
    model_config = ConfigDict(json_schema_extra=cel(
        ("[has(self.external), has(self.managed), has(self.embedded)].filter(x, x).size() <= 1",
         "set at most one of external, managed and embedded (none means embedded)"),
    ))
    external: ExternalDatabase | None = F(None, "Use an existing database, given by a SQLAlchemy URL in a Secret.")
    managed: ManagedDatabase | None = F(None, "Create the database and user on an existing server with admin "
                                        "credentials (the manual install's CREATE DATABASE / GRANT).")
    embedded: EmbeddedStore | None = F(None, "Run a single-replica MariaDB StatefulSet (the default when nothing "
                                       "is set; meant for trials).")

    @model_validator(mode="after")
    def _one(self) -> "DatabaseSpec":
        if sum(x is not None for x in (self.external, self.managed, self.embedded)) > 1:
            raise ValueError("set at most one of external, managed and embedded (none means embedded)")
        return self

    @property
    def mode(self) -> str:
        return "external" if self.external else "managed" if self.managed else "embedded"


class ExternalMessaging(_Model):
    transportURLSecret: TransportURLRef = F(..., "Secret holding the oslo.messaging transport_url.")  # type: ignore[valid-type]


class ManagedMessaging(_Model):
    host: str = F(..., "Host name or IP clients use to reach RabbitMQ over AMQP.", min_length=1, max_length=253)
    port: int = F(5672, "AMQP port.", ge=1, le=65535)
    managementURL: HttpURL = F(..., "URL of the RabbitMQ management API (for example "
                               "http://rabbitmq.openstack.svc:15672), used to create the vhost and user.")
    adminUser: str = F("admin", "RabbitMQ account allowed to create vhosts, users and permissions "
                       "(administrator tag).", min_length=1, max_length=255)
    adminSecret: SecretKeyRef = F(..., "Secret key holding that account's password.")
    vhost: str = F("octavia", "Virtual host to create for Octavia ('/' or letters, digits, '_', '.', '-': "
                   "what oslo.messaging can carry in a transport URL).", pattern=r"^(/|[A-Za-z0-9_.-]{1,255})$")
    userName: str = F("octavia", "RabbitMQ user to create (its password is generated).", min_length=1,
                      max_length=255, pattern=r"^[A-Za-z0-9_.-]+$")


class MessagingSpec(_Model):
    model_config = ConfigDict(json_schema_extra=cel(
        ("[has(self.external), has(self.managed), has(self.embedded)].filter(x, x).size() <= 1",
         "set at most one of external, managed and embedded (none means embedded)"),
    ))
    external: ExternalMessaging | None = F(None, "Use an existing RabbitMQ, given by a transport_url in a Secret.")
    managed: ManagedMessaging | None = F(None, "Create Octavia's vhost and user on an existing RabbitMQ with "
                                         "admin credentials (through its management API).")
    embedded: EmbeddedStore | None = F(None, "Run a single-replica RabbitMQ StatefulSet (the default when nothing "
                                       "is set).")

    @model_validator(mode="after")
    def _one(self) -> "MessagingSpec":
        if sum(x is not None for x in (self.external, self.managed, self.embedded)) > 1:
            raise ValueError("set at most one of external, managed and embedded (none means embedded)")
        return self

    @property
    def mode(self) -> str:
        return "external" if self.external else "managed" if self.managed else "embedded"


# ---------------------------------------------------------------------------------------
# jobboard
# ---------------------------------------------------------------------------------------

class RedisTLS(_Model):
    caSecret: CABundleRef = F(  # type: ignore[valid-type]
        ..., "Secret with the PEM CA bundle that signed the server's certificate (verified, with its host name).")
    clientCertificateSecret: str | None = F(
        None, "kubernetes.io/tls Secret (tls.crt, tls.key) presented to the server, when it asks for client "
        "certificates (mutual TLS).", pattern=K8S_NAME, max_length=253)


class ExternalJobboard(_Model):
    model_config = ConfigDict(json_schema_extra=cel(
        ("!has(self.sentinelTLS) || has(self.sentinel)", "sentinelTLS needs sentinel", ".sentinelTLS"),
        ("!has(self.sentinelPasswordSecret) || has(self.sentinel)", "sentinelPasswordSecret needs sentinel",
         ".sentinelPasswordSecret"),
        ("has(self.sentinel) || size(self.hosts) <= 1",
         "more than one host needs sentinel (without it the workers use one server)", ".hosts"),
    ))
    hosts: list[Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[^\s,\[\]]+$")]] = F(
        ..., "Redis or Valkey servers, by host name or IP. With sentinel: the Sentinels (the first is asked "
        "first, the others are fallbacks); without: one server.", min_length=1, max_length=8)
    port: int = F(6379, "Port of the servers (with sentinel: the Sentinels' port, usually 26379).", ge=1, le=65535)
    sentinel: str | None = F(None, "Name of the Sentinel master set (for example mymaster): the workers ask the "
                             "Sentinels for the current primary.", min_length=1, max_length=255)
    database: int = F(0, "Redis database number.", ge=0, le=255)
    keyPrefix: str = F("octavia_jobboard", "Prefix of the jobboard's keys ([task_flow] jobboard_backend_namespace): "
                       "deployments that share one Redis need different prefixes (or databases).",
                       pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
    username: str | None = F(None, "ACL user name (Redis 6+); unset: the default user.", min_length=1,
                             max_length=255)
    passwordSecret: SecretKeyRef | None = F(None, "Secret key holding the server's password.")
    sentinelUsername: str | None = F(None, "ACL user name on the Sentinels.", min_length=1, max_length=255)
    sentinelPasswordSecret: SecretKeyRef | None = F(None, "Secret key holding the Sentinels' password.")
    tls: RedisTLS | None = F(None, "TLS to the servers.")
    sentinelTLS: RedisTLS | None = F(None, "TLS to the Sentinels.")

    @model_validator(mode="after")
    def _sentinel(self) -> "ExternalJobboard":
        if self.sentinelTLS is not None and self.sentinel is None:
            raise ValueError("sentinelTLS needs sentinel")
        if self.sentinelPasswordSecret is not None and self.sentinel is None:
            raise ValueError("sentinelPasswordSecret needs sentinel")
        if self.sentinel is None and len(self.hosts) > 1:
            raise ValueError("more than one host needs sentinel (without it the workers use one server)")
        return self


class JobboardPersistence(_Model):
    connectionSecret: DatabaseURLRef = F(  # type: ignore[valid-type]
        ..., "Secret holding the SQLAlchemy URL of the persistence database, a database of its own (taskflow's "
        "tables and migrations cannot share Octavia's database). octavia-db-manage upgrade_persistence creates "
        "its tables.")


JOBBOARD_RULES = (
    ("!has(self.embedded) || !has(self.external)", "set at most one of embedded and external (none means embedded)"),
)


class JobboardSpec(_Model):
    model_config = ConfigDict(json_schema_extra=cel(*JOBBOARD_RULES))
    enabled: bool = F(
        False, "Run Octavia's flows through the taskflow jobboard ([task_flow] jobboard_enabled): a flow is a "
        "job in Redis, its progress is saved in the persistence database, and when a worker dies mid-flow "
        "another one resumes it, so load balancers do not stay in PENDING_* for good. Recommended wherever "
        "worker pods get rescheduled.")
    embedded: EmbeddedStore | None = F(None, "Run a single-replica Valkey StatefulSet with a generated password "
                                       "(the default when nothing is set).")
    external: ExternalJobboard | None = F(None, "Use an existing Redis or Valkey, optionally behind Sentinel "
                                          "and over TLS.")
    persistence: JobboardPersistence | None = F(
        None, "The persistence database. Default: a database of its own next to Octavia's (named "
        "<databaseName>_persistence), created by the operator with the managed or embedded database; required "
        "with an external database.")
    expirationSeconds: int = F(
        30, "How long a claim on a job lasts without being renewed ([task_flow] jobboard_expiration_time): a "
        "job whose worker died is resumed by another after at most this long.", ge=5, le=3600)
    saveLogbook: bool = F(False, "Keep the logbook of finished jobs in the persistence database "
                          "([task_flow] jobboard_save_logbook), for analysis.")

    @model_validator(mode="after")
    def _one(self) -> "JobboardSpec":
        if self.embedded is not None and self.external is not None:
            raise ValueError(JOBBOARD_RULES[0][1])
        return self

    @property
    def mode(self) -> str:
        return "external" if self.external else "embedded"


# ---------------------------------------------------------------------------------------
# amphora
# ---------------------------------------------------------------------------------------

class ImageSpec(_Model):
    model_config = ConfigDict(json_schema_extra=cel(
        ("!(has(self.url) && has(self.id))", "set at most one of url and id"),
        ("!has(self.checksum) || has(self.url)", "checksum needs url", ".checksum"),
    ))
    url: HttpURL | None = F(
        None, "HTTP(S) URL of an amphora qcow2 image to upload (streamed, tagged, private, owned by the service "
        "project). When unset, an existing image carrying the tag is used.", max_length=4096)
    checksum: str | None = F(None, "Expected digest of the downloaded image, as <algorithm>:<hex> "
                             "(sha256, sha512 or md5).", pattern=r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}|md5:[0-9a-f]{32})$")
    id: str | None = F(None, "ID of an existing Glance image to use (adopted: tagged but never deleted).",
                       pattern=UUID_RE)
    tag: str = F("amphora", "Glance tag Octavia boots amphorae from ([controller_worker] amp_image_tag).",
                 min_length=1, max_length=255)
    name: str = F("amphora-x64-haproxy", "Name given to an uploaded image.", min_length=1, max_length=255)
    diskFormat: Literal["qcow2", "raw"] = F("qcow2", "Disk format of the uploaded image.")
    pruneSuperseded: bool = F(False, "Delete older images that carry the tag and that the operator uploaded, "
                              "once a newer one is active (they are otherwise only reported).")

    @model_validator(mode="after")
    def _source(self) -> "ImageSpec":
        if self.url is not None and self.id is not None:
            raise ValueError("set at most one of url and id")
        if self.checksum is not None and self.url is None:
            raise ValueError("checksum needs url")
        return self


class FlavorSpec(_Model):
    id: str | None = F(None, "ID of an existing Nova flavor to use; when set, the sizing fields are ignored.",
                       min_length=1, max_length=255)
    name: str = F("amphora", "Name of the flavor: adopted if it exists, else created private with the sizing below.",
                  min_length=1, max_length=255)
    vcpus: int = F(1, "vCPUs of a created flavor.", ge=1, le=64)
    ramMB: int = F(1024, "RAM (MiB) of a created flavor.", ge=256, le=262144)
    diskGB: int = F(5, "Root disk (GiB) of a created flavor.", ge=1, le=2048)


class SSHSpec(_Model):
    enabled: bool = F(False, "Register an SSH key pair for amphorae (for debugging). Off by default: amphorae "
                      "then accept no SSH. When on, the operator generates the key and opens TCP 22 in the "
                      "amphora security group.")
    keyName: str = F("octavia_ssh_key", "Nova key pair name ([controller_worker] amp_ssh_key_name).",
                     min_length=1, max_length=255, pattern=r"^[-_. a-zA-Z0-9@]+$")


LOG_TARGET_RE = r"^[^\s,\[\]]+:[0-9]{1,5}$"
LOGGING_RULES = (
    ("self.mode != 'External' || (has(self.adminTargets) && size(self.adminTargets) > 0) || "
     "(has(self.tenantTargets) && size(self.tenantTargets) > 0)",
     "mode External needs adminTargets or tenantTargets"),
    ("self.mode == 'External' || (!has(self.adminTargets) && !has(self.tenantTargets))",
     "adminTargets and tenantTargets are for mode External"),
    ("self.mode != 'Receiver' || !has(self.protocol) || self.protocol == 'UDP'",
     "the receiver on the health-manager nodes takes UDP (use mode External for TCP)"),
    ("!has(self.disableLocalLogStorage) || !self.disableLocalLogStorage || "
     "(has(self.forwardAllLogs) && self.forwardAllLogs)",
     "disableLocalLogStorage needs forwardAllLogs (Octavia renders a broken rsyslog rule otherwise)"),
    ("self.receiverAdminPort != self.receiverTenantPort", "receiverAdminPort and receiverTenantPort must differ"),
)


class AmphoraLoggingSpec(_Model):
    model_config = ConfigDict(json_schema_extra=cel(*LOGGING_RULES))
    mode: Literal["Disabled", "Receiver", "External"] = F(
        "Disabled", "Where amphorae send their logs ([amphora_agent] admin_log_targets, tenant_log_targets). "
        "Disabled: they keep them. Receiver: to an rsyslog receiver the operator runs beside each health manager "
        "(reached over o-hm0 at the health-manager port's address; kubectl logs of the health-manager pods' "
        "log-receiver container shows them, each line marked admin or tenant). External: to the targets below.")
    protocol: Literal["UDP", "TCP"] = F(
        "UDP", "Transport ([amphora_agent] log_protocol). Over UDP every amphora sends to the first target only; "
        "over TCP it moves to the next one when a target fails.")
    adminTargets: list[Annotated[str, Field(pattern=LOG_TARGET_RE, max_length=300)]] | None = F(
        None, "mode External: host:port targets of the administrative logs (haproxy, keepalived, the amphora "
        "agent), first the primary; IPv6 addresses without brackets (fd00::5:10514), as Octavia parses them.",
        max_length=16)
    tenantTargets: list[Annotated[str, Field(pattern=LOG_TARGET_RE, max_length=300)]] | None = F(
        None, "mode External: host:port targets of the tenant flow logs (haproxy traffic logs).", max_length=16)
    receiverAdminPort: int = F(10514, "mode Receiver: UDP port of the administrative logs.", ge=1024, le=65535)
    receiverTenantPort: int = F(20514, "mode Receiver: UDP port of the tenant flow logs.", ge=1024, le=65535)
    forwardAllLogs: bool = F(False, "Forward every log of the amphora to the administrative targets, not only "
                             "Octavia's ([amphora_agent] forward_all_logs).")
    disableLocalLogStorage: bool = F(False, "Keep no logs on the amphora itself ([amphora_agent] "
                                     "disable_local_log_storage); needs forwardAllLogs.")

    @model_validator(mode="after")
    def _combinations(self) -> "AmphoraLoggingSpec":
        if self.mode == "External" and not (self.adminTargets or self.tenantTargets):
            raise ValueError(LOGGING_RULES[0][1])
        if self.mode != "External" and (self.adminTargets is not None or self.tenantTargets is not None):
            raise ValueError(LOGGING_RULES[1][1])
        if self.mode == "Receiver" and self.protocol != "UDP":
            raise ValueError(LOGGING_RULES[2][1])
        if self.disableLocalLogStorage and not self.forwardAllLogs:
            raise ValueError(LOGGING_RULES[3][1])
        if self.receiverAdminPort == self.receiverTenantPort:
            raise ValueError(LOGGING_RULES[4][1])
        return self

    @property
    def receiver_ports(self) -> tuple[int, ...]:
        return (self.receiverAdminPort, self.receiverTenantPort) if self.mode == "Receiver" else ()


class RolloutStrategy(_Model):
    maxConcurrent: int = F(1, "Load balancers failed over at once (one amphora each: an ACTIVE_STANDBY pair "
                           "never loses both).", ge=1, le=50)
    pauseSeconds: int = F(60, "Pause between batches, in seconds.", ge=0, le=86400)
    timeoutSeconds: int = F(1800, "A failover still unfinished after this long counts as failed (the rollout "
                            "stops).", ge=60, le=86400)


class AmphoraSpec(_Model):
    image: ImageSpec = FF(ImageSpec, "The amphora image.")
    flavor: FlavorSpec = FF(FlavorSpec, "The Nova flavor amphorae boot with.")
    ssh: SSHSpec = FF(SSHSpec, "SSH access to amphorae.")
    topology: Literal["SINGLE", "ACTIVE_STANDBY"] = F(
        "SINGLE", "Default load-balancer topology ([controller_worker] loadbalancer_topology).")
    rollout: Literal["Manual", "Automatic"] = F(
        "Manual", "Replacing live amphorae that run an older image, or that were booted before the current client CA "
        "(docs/certificates.md), through Octavia's failover API. Manual: only when the annotation "
        "octavia-operator.dev/rollout-amphorae gets a new value; Automatic: as soon as there are such amphorae. "
        "Either way it stops at the first failed failover and says so in AmphoraeUpToDate.")
    rolloutStrategy: RolloutStrategy = FF(RolloutStrategy, "Pace of amphora rollouts.")
    logging: AmphoraLoggingSpec = FF(AmphoraLoggingSpec, "Log offloading: where amphorae send their administrative "
                                     "and tenant logs. Applies to amphorae created after the change (a failover "
                                     "gives existing ones the new targets).")


# ---------------------------------------------------------------------------------------
# management network
# ---------------------------------------------------------------------------------------

def _ipv4_value(expr: str) -> str:
    parts = [f"int({expr}.split('.')[{i}])" for i in range(4)]
    return f"{parts[0]} * 16777216 + {parts[1]} * 65536 + {parts[2]} * 256 + {parts[3]}"


class AllocationPool(_Model):
    model_config = ConfigDict(json_schema_extra=cel(
        # each rule only judges what it is about: a malformed address is reported by the field's own rule
        ("!isIP(self.start) || !isIP(self.end) || ip(self.start).family() == ip(self.end).family()",
         "start and end must be of the same IP family"),
        ("!isIP(self.start) || !isIP(self.end) || ip(self.start).family() != 4 || ip(self.end).family() != 4 || "
         f"{_ipv4_value('self.start')} <= {_ipv4_value('self.end')}",
         "start must not be after end"),
    ))
    start: Annotated[str, Field(json_schema_extra=cel(("isIP(self)", "must be an IP address")))] = F(
        ..., "First address of the pool.", max_length=45)
    end: Annotated[str, Field(json_schema_extra=cel(("isIP(self)", "must be an IP address")))] = F(
        ..., "Last address of the pool.", max_length=45)


class SecurityGroupNames(_Model):
    amphora: str = F("lb-mgmt-sec-grp", "Security group of amphorae on the management network: ICMP, TCP 9443 "
                     "(amphora agent), TCP 22 only when SSH is enabled.", min_length=1, max_length=255)
    healthManager: str = F("lb-health-mgr-sec-grp", "Security group of the health-manager ports: UDP on the "
                           "heartbeat port (plus log-offload ports when enabled).", min_length=1, max_length=255)


class ManagementNetworkSpec(_Model):
    model_config = ConfigDict(json_schema_extra=cel(
        ("isCIDR(self.cidr)", "cidr must be a CIDR such as 172.31.0.0/24", ".cidr"),
        ("!isCIDR(self.cidr) || cidr(self.cidr) == cidr(self.cidr).masked()",
         "cidr must be a network address (no host bits set)", ".cidr"),
        ("!has(self.allocationPool) || !isCIDR(self.cidr) || !isIP(self.allocationPool.start) || "
         "!isIP(self.allocationPool.end) || "
         "ip(self.allocationPool.start).family() != ip(self.allocationPool.end).family() || "
         "(cidr(self.cidr).containsIP(self.allocationPool.start) && "
         "cidr(self.cidr).containsIP(self.allocationPool.end))",
         "allocationPool must lie inside cidr", ".allocationPool"),
    ))
    name: str = F("lb-mgmt-net", "Name of the management network (adopted by name if it exists).",
                  min_length=1, max_length=255)
    networkId: str | None = F(None, "ID of an existing network to adopt instead of looking it up by name "
                              "(an adopted network is never deleted).", pattern=UUID_RE)
    subnetName: str = F("lb-mgmt-subnet", "Name of the management subnet.", min_length=1, max_length=255)
    cidr: str = F("172.31.0.0/24", "CIDR of the management subnet (must not overlap the cluster's pod, "
                  "service or node networks).", max_length=49)
    allocationPool: AllocationPool | None = F(
        None, "Range Neutron allocates amphora and health-manager addresses from (default: the whole subnet).")
    securityGroups: SecurityGroupNames = FF(SecurityGroupNames, "Names of the two security groups.")
    avoidCIDRs: list[Annotated[str, Field(max_length=49, json_schema_extra=cel(
        ("isCIDR(self)", "must be a CIDR such as 10.96.0.0/12")))]] | None = F(
        None, "Networks the management network must not overlap, such as the cluster's service CIDR (the "
        "operator also reads the nodes' addresses and pod CIDRs from the Nodes): an overlap is reported in "
        "the ManagementNetworkReady condition.", max_length=32)

    @model_validator(mode="after")
    def _net(self) -> "ManagementNetworkSpec":
        try:
            net = ipaddress.ip_network(self.cidr, strict=False)
        except ValueError:
            raise ValueError(f"cidr {self.cidr!r} is not a CIDR such as 172.31.0.0/24") from None
        if "/" not in self.cidr:
            raise ValueError(f"cidr {self.cidr!r} is not a CIDR such as 172.31.0.0/24 (no prefix length)")
        if net.network_address != ipaddress.ip_interface(self.cidr).ip:
            raise ValueError(f"cidr {self.cidr!r} has host bits set (network address is {net})")
        if self.allocationPool:
            try:
                s = ipaddress.ip_address(self.allocationPool.start)
                e = ipaddress.ip_address(self.allocationPool.end)
            except ValueError as exc:
                raise ValueError(f"allocationPool: {exc}") from None
            if s.version != e.version:
                raise ValueError("allocationPool: start and end must be of the same IP family")
            if s not in net or e not in net:
                raise ValueError(f"allocationPool {s}-{e} must lie inside cidr {net}")
            if s > e:
                raise ValueError(f"allocationPool: start {s} is after end {e}")
        for other in self.avoidCIDRs or []:
            try:
                ipaddress.ip_network(other, strict=False)
            except ValueError:
                raise ValueError(f"avoidCIDRs: {other!r} must be a CIDR such as 10.96.0.0/12") from None
        return self

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.cidr)


# ---------------------------------------------------------------------------------------
# health manager, host agent
# ---------------------------------------------------------------------------------------

class HealthManagerSpec(Component):
    replicas: int | None = F(None, "Number of health-manager pods (default: one on every node whose o-hm0 is "
                             "ready, so every address amphorae send heartbeats to is served).", ge=0, le=64)
    nodeSelector: dict[str, str] = F(
        {"node-role.kubernetes.io/control-plane": ""},
        "Nodes that run the worker, health-manager and housekeeping services and get a health-manager "
        "Neutron port and an o-hm0 interface.", max_length=64)
    heartbeatPort: int = F(5555, "UDP port the health manager listens on for amphora heartbeats.", ge=1, le=65535)
    hostIdAnnotation: str = F(
        "octavia-operator.dev/neutron-host",
        "Node annotation whose value overrides the Neutron binding:host_id of the node's port (default: the "
        "node name, which must equal the host name the node's OVS agent or OVN chassis registers).",
        min_length=1, max_length=317)


class HostAgentSpec(_Model):
    driver: Literal["ovs", "linuxbridge"] = F(
        "ovs", "How o-hm0 is plugged: ovs (ML2/OVS and OVN: an internal port on the integration bridge) or "
        "linuxbridge (a veth pair into the network's brq bridge), only for a Neutron of 2024.2 or older: "
        "Neutron's Linux bridge driver was experimental from 2022.2 and removed in 2025.1, the oldest "
        "release this resource runs, so it serves only a cloud whose Neutron is older than its Octavia.")
    integrationBridge: str = F("br-int", "OVS integration bridge (ovs driver).", pattern=IFNAME_RE)
    interfaceName: str = F("o-hm0", "Name of the node interface on the management network.", pattern=IFNAME_RE)
    ovsdbSocket: str = F("/run/openvswitch/db.sock", "Path of the node's OVSDB server socket (ovs driver).",
                         min_length=1, max_length=4096)
    resources: ResourceRequirements | None = F(None, "Compute resources of the host-agent container.")
    tolerations: list[Toleration] | None = F(
        None, "Tolerations of the host-agent pods (default: tolerate everything, like most node agents).",
        max_length=32)


# ---------------------------------------------------------------------------------------
# images, certificates, config, quotas
# ---------------------------------------------------------------------------------------

class ImagesSpec(_Model):
    api: str | None = F(None, "Image of octavia-api (default: matched to spec.release).", pattern=IMAGE_RE)
    worker: str | None = F(None, "Image of octavia-worker (default: matched to spec.release).", pattern=IMAGE_RE)
    healthManager: str | None = F(None, "Image of octavia-health-manager (default: matched to spec.release).",
                                  pattern=IMAGE_RE)
    housekeeping: str | None = F(None, "Image of octavia-housekeeping (default: matched to spec.release).",
                                 pattern=IMAGE_RE)
    dbSync: str | None = F(None, "Image of the octavia-db-manage Job (default: the api image).", pattern=IMAGE_RE)
    hostAgent: str | None = F(None, "Image of the host agent (default: this operator's host-agent image).",
                              pattern=IMAGE_RE)
    mariadb: str | None = F(None, "Image of the embedded MariaDB.", pattern=IMAGE_RE)
    rabbitmq: str | None = F(None, "Image of the embedded RabbitMQ.", pattern=IMAGE_RE)
    valkey: str | None = F(None, "Image of the embedded Valkey (jobboard); a Redis image works too.",
                           pattern=IMAGE_RE)
    pullPolicy: Literal["Always", "IfNotPresent", "Never"] = F("IfNotPresent", "Image pull policy of every container.")


class CertificatesSpec(_Model):
    model_config = ConfigDict(json_schema_extra=cel(
        ("self.renewBeforeDays < self.clientValidityDays", "renewBeforeDays must be less than clientValidityDays"),
        ("self.clientValidityDays <= self.caValidityDays", "clientValidityDays must not exceed caValidityDays"),
        ("has(self.serverCASecret) == has(self.clientCASecret)",
         "give both serverCASecret and clientCASecret, or neither"),
        ("!has(self.serverCASecret) || !has(self.clientCASecret) || "
         "self.serverCASecret != self.clientCASecret",
         "the server CA and the client CA must be different Secrets (one CA for both roles is refused)"),
    ))
    caValidityDays: int = F(3650, "Validity of generated CAs, in days.", ge=30, le=36500)
    clientValidityDays: int = F(365, "Validity of the controller's client certificate, in days (renewed "
                                "automatically).", ge=2, le=36500)
    renewBeforeDays: int = F(30, "Renewal window: a certificate is renewed this many days before it expires, and "
                             "a CA inside it raises a warning condition.", ge=1, le=3650)
    keyType: Literal["RSA", "ECDSA"] = F("RSA", "Key algorithm of generated keys.")
    caKeySize: int = F(4096, "RSA key size of generated CAs.", ge=2048, le=8192)
    clientKeySize: int = F(2048, "RSA key size of the client certificate.", ge=2048, le=8192)
    serverCASecret: str | None = F(
        None, "Secret (keys tls.crt, tls.key, optional passphrase) with your own server CA, which signs amphora "
        "certificates; used as is, never overwritten.", pattern=K8S_NAME, max_length=253)
    clientCASecret: str | None = F(
        None, "Secret (keys tls.crt, tls.key, optional passphrase) with your own client CA, which signs the "
        "controller's client certificate; used as is, never overwritten.", pattern=K8S_NAME, max_length=253)

    @model_validator(mode="after")
    def _windows(self) -> "CertificatesSpec":
        if self.renewBeforeDays >= self.clientValidityDays:
            raise ValueError("renewBeforeDays must be less than clientValidityDays")
        if self.clientValidityDays > self.caValidityDays:
            raise ValueError("clientValidityDays must not exceed caValidityDays")
        if (self.serverCASecret is None) != (self.clientCASecret is None):
            raise ValueError("give both serverCASecret and clientCASecret, or neither")
        if self.serverCASecret is not None and self.serverCASecret == self.clientCASecret:
            raise ValueError("the server CA and the client CA must be different Secrets "
                             "(one CA for both roles is refused)")
        return self


def _secret_keys_rule() -> str:
    pairs = ", ".join(f"'{s}/{k}'" for s, k in SECRET_CONFIG_KEYS)
    return f"self.all(s, self[s].all(k, !((s + '/' + k) in [{pairs}])))"


ConfigOverrides = Annotated[
    dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+$", max_length=128)],
         Annotated[dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+$", max_length=128)],
                        Annotated[str, Field(max_length=4096)]], Field(max_length=256)]],
    Field(max_length=64, json_schema_extra=cel((_secret_keys_rule(),
                                 "secret options (passwords, passphrases, transport_url, database connection, "
                                 "heartbeat_key) cannot be set in config: the operator manages them in Secrets"))),
]


class QuotasSpec(_Model):
    instances: int | None = F(None, "Nova instances quota of the service project (-1: unlimited).", ge=-1)
    cores: int | None = F(None, "Nova cores quota of the service project (-1: unlimited).", ge=-1)
    ramMB: int | None = F(None, "Nova RAM quota (MiB) of the service project (-1: unlimited).", ge=-1)
    serverGroups: int | None = F(None, "Nova server groups quota of the service project (-1: unlimited).", ge=-1)
    serverGroupMembers: int | None = F(None, "Nova server group members quota (-1: unlimited).", ge=-1)
    ports: int | None = F(None, "Neutron ports quota of the service project (-1: unlimited).", ge=-1)
    securityGroups: int | None = F(None, "Neutron security groups quota (-1: unlimited).", ge=-1)
    securityGroupRules: int | None = F(None, "Neutron security group rules quota (-1: unlimited).", ge=-1)


HOSTNAME_RE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class APITLS(_Model):
    secretName: str = F(..., "kubernetes.io/tls Secret (tls.crt with its chain, tls.key) the API pods answer https "
                        "with: an haproxy container in each API pod terminates TLS and forwards to the API on "
                        "loopback. A Secret cert-manager keeps (a Certificate's secretName) works: the pods roll "
                        "when it changes.", pattern=K8S_NAME, max_length=253)


class IngressExpose(_Model):
    model_config = ConfigDict(json_schema_extra=cel(
        ("!(has(self.clusterIssuer) && has(self.issuer))", "set at most one of clusterIssuer and issuer"),
    ))
    className: str | None = F(None, "IngressClass of the Ingress (default: the cluster's default class).",
                              max_length=253)
    tlsSecretName: str | None = F(None, "Secret with the certificate the Ingress controller serves for the hostname "
                                  "(with clusterIssuer or issuer: cert-manager writes it; default <name>-api-ingress-tls"
                                  ").", pattern=K8S_NAME, max_length=253)
    clusterIssuer: str | None = F(None, "cert-manager ClusterIssuer that issues the Ingress certificate (annotation "
                                  "cert-manager.io/cluster-issuer).", max_length=253)
    issuer: str | None = F(None, "cert-manager Issuer in this namespace that issues the Ingress certificate "
                           "(annotation cert-manager.io/issuer).", max_length=253)


class ParentRef(_Model):
    name: str = F(..., "Name of the Gateway.", min_length=1, max_length=253)
    namespace: str | None = F(None, "Namespace of the Gateway (default: this namespace).", max_length=63)
    sectionName: str | None = F(None, "Listener of the Gateway to attach to.", max_length=253)


class HTTPRouteExpose(_Model):
    parentRefs: list[ParentRef] = F(..., "Gateways (and listeners) the HTTPRoute attaches to. Their owner manages "
                                    "the certificate: cert-manager cannot issue one from an HTTPRoute.",
                                    min_length=1, max_length=8)
    scheme: Literal["https", "http"] = F("https", "Scheme of the Gateway listener, for the public catalog URL.")


class LoadBalancerExpose(_Model):
    loadBalancerClass: str | None = F(None, "spec.loadBalancerClass of the Service.", max_length=253)
    sourceRanges: list[Annotated[str, Field(max_length=49)]] | None = F(
        None, "Client CIDRs allowed (spec.loadBalancerSourceRanges).", max_length=64)


EXPOSE_RULES = (
    ("self.type == 'LoadBalancer' || has(self.hostname)", "hostname is required with Ingress and HTTPRoute"),
    ("self.type == 'Ingress' || !has(self.ingress)", "ingress settings need type Ingress"),
    ("self.type == 'HTTPRoute' || !has(self.httpRoute)", "httpRoute settings need type HTTPRoute"),
    ("self.type != 'HTTPRoute' || has(self.httpRoute)", "type HTTPRoute needs httpRoute.parentRefs"),
    ("self.type == 'LoadBalancer' || !has(self.loadBalancer)", "loadBalancer settings need type LoadBalancer"),
)


class APIExpose(_Model):
    model_config = ConfigDict(json_schema_extra=cel(*EXPOSE_RULES))
    type: Literal["Ingress", "HTTPRoute", "LoadBalancer"] = F(
        ..., "How clients outside the cluster reach the API: an Ingress, a Gateway API HTTPRoute, or a Service of type "
        "LoadBalancer. The public catalog endpoint follows it unless identity.endpoints.public is set.")
    hostname: str | None = F(None, "Host name clients use (Ingress, HTTPRoute).", pattern=HOSTNAME_RE, max_length=253)
    annotations: dict[str, Annotated[str, Field(max_length=4096)]] | None = F(
        None, "Extra annotations of the Ingress, HTTPRoute or Service.", max_length=64)
    ingress: IngressExpose | None = F(None, "type Ingress: class, certificate, cert-manager issuer.")
    httpRoute: HTTPRouteExpose | None = F(None, "type HTTPRoute: the Gateways to attach to.")
    loadBalancer: LoadBalancerExpose | None = F(None, "type LoadBalancer: class and allowed sources.")

    @model_validator(mode="after")
    def _combinations(self) -> "APIExpose":
        checks = (self.type == "LoadBalancer" or self.hostname is not None,
                  self.type == "Ingress" or self.ingress is None,
                  self.type == "HTTPRoute" or self.httpRoute is None,
                  self.type != "HTTPRoute" or self.httpRoute is not None,
                  self.type == "LoadBalancer" or self.loadBalancer is None)
        for ok, rule in zip(checks, EXPOSE_RULES):
            if not ok:
                raise ValueError(rule[1])
        if self.ingress is not None and self.ingress.clusterIssuer and self.ingress.issuer:
            raise ValueError("set at most one of clusterIssuer and issuer")
        return self


class APISpec(Component):
    replicas: int = F(2, "Number of octavia-api pods.", ge=0, le=64)
    port: int = F(9876, "Port of the API container and of its Service.", ge=2, le=65535)
    tls: APITLS | None = F(None, "Serve https in the API pods themselves (for clouds whose internal endpoints use "
                           "https); the internal catalog URL becomes https://<service>.<namespace>.svc:<port>.")
    expose: APIExpose | None = F(None, "Expose the API outside the cluster.")


class ConfigMapKeyRef(_Model):
    name: str = F(..., "Name of a ConfigMap in the OctaviaDeployment's namespace.",
                  min_length=1, max_length=253, pattern=K8S_NAME)
    key: str = F("policy.yaml", "Key inside the ConfigMap.", min_length=1, max_length=253, pattern=SECRET_KEY_RE)


POLICY_RULE = ("(has(self.rules) && self.rules == 'custom') == has(self.configMap)",
               "configMap is set exactly when rules is custom")


class PolicySpec(_Model):
    model_config = ConfigDict(json_schema_extra=cel(POLICY_RULE))
    rules: Literal["advanced-rbac", "keystone-default-roles", "custom"] = F(
        "advanced-rbac", "Which API policy Octavia enforces. advanced-rbac: the five load-balancer_* roles keep "
        "their documented meaning (observer, global_observer, member, quota_admin, admin; since 2025.1 Octavia's "
        "own defaults ignore them). keystone-default-roles: Octavia's defaults (reader, member, admin). custom: "
        "the policy file in configMap.")
    configMap: ConfigMapKeyRef | None = F(None, "A ConfigMap key holding a policy file (YAML), with rules: custom.")

    @model_validator(mode="after")
    def _custom(self) -> "PolicySpec":
        if (self.rules == "custom") != (self.configMap is not None):
            raise ValueError(POLICY_RULE[1])
        return self


class OVNProviderSpec(_Model):
    connectionSecret: str = F(
        ..., "Secret with the OVN database connections, keys nb and sb (for example ssl:10.0.0.5:6641 and "
        "ssl:10.0.0.5:6642; a comma-separated list for a clustered database). The API reads nb; the driver "
        "agent reads both.", pattern=K8S_NAME, max_length=253)
    tlsSecret: str | None = F(
        None, "Secret with the client certificate for ssl: connections: tls.crt, tls.key and ca.crt (the CA that "
        "signed both the NB and the SB servers' certificates: OVS's Python library takes one key, certificate "
        "and CA per process).", pattern=K8S_NAME, max_length=253)
    resources: ResourceRequirements | None = F(None, "Compute resources of the octavia-driver-agent container.")


PROVIDER_RULES = (
    ("self.default in self.enabled", "default must be one of enabled"),
    ("('ovn' in self.enabled) == has(self.ovn)", "ovn is set exactly when enabled lists ovn"),
)


class ProvidersSpec(_Model):
    model_config = ConfigDict(json_schema_extra=cel(*PROVIDER_RULES))
    enabled: list[Literal["amphora", "ovn"]] = F(
        ["amphora"], "Provider drivers the API offers ([api_settings] enabled_provider_drivers).",
        min_length=1, max_length=2, json_schema_extra={"x-kubernetes-list-type": "set"})
    default: Literal["amphora", "ovn"] = F("amphora", "Provider of load balancers created without one "
                                           "([api_settings] default_provider_driver).")
    ovn: OVNProviderSpec | None = F(
        None, "The OVN provider (provider=ovn: load balancing by OVN itself, no amphora): the API pods get an "
        "octavia-driver-agent container running the ovn provider agent (it shares the API's driver sockets, so it "
        "runs in the same pod).")

    @model_validator(mode="after")
    def _consistent(self) -> "ProvidersSpec":
        if len(set(self.enabled)) != len(self.enabled):
            raise ValueError("enabled lists a provider twice")
        if self.default not in self.enabled:
            raise ValueError(PROVIDER_RULES[0][1])
        if ("ovn" in self.enabled) != (self.ovn is not None):
            raise ValueError(PROVIDER_RULES[1][1])
        return self


JOBBOARD_PERSISTENCE_RULE = (
    "!has(self.jobboard) || !has(self.jobboard.enabled) || !self.jobboard.enabled || !has(self.database) || "
    "!has(self.database.external) || has(self.jobboard.persistence)",
    "jobboard.enabled with database.external needs jobboard.persistence.connectionSecret (a database of its own "
    "for taskflow's tables)")


class OctaviaDeploymentSpec(_Model):
    """Desired state of one Octavia installation."""

    model_config = ConfigDict(json_schema_extra=cel(JOBBOARD_PERSISTENCE_RULE))

    release: Literal[RELEASES] = F(  # type: ignore[valid-type]
        DEFAULT_RELEASE, "OpenStack release whose default images and configuration dialect are used.")
    deletionPolicy: Literal["Retain", "Delete"] = F(
        "Retain", "What deleting this resource does in OpenStack: Retain keeps every cloud resource; Delete "
        "removes, in dependency order, only what this deployment created (never adopted resources).")
    cloud: CloudSpec = F(..., "The target OpenStack and the admin credentials the operator uses.")
    identity: IdentitySpec = FF(IdentitySpec, "Keystone: service user, roles, service and endpoints.")
    database: DatabaseSpec = FF(DatabaseSpec, "Octavia's database.")
    messaging: MessagingSpec = FF(MessagingSpec, "Octavia's message queue (RabbitMQ).")
    amphora: AmphoraSpec = FF(AmphoraSpec, "Amphora image, flavor, SSH key and topology.")
    managementNetwork: ManagementNetworkSpec = FF(ManagementNetworkSpec,
                                                  "The load-balancer management network (lb-mgmt-net).")
    healthManager: HealthManagerSpec = FF(HealthManagerSpec, "Health manager and the nodes that reach the "
                                          "management network.")
    hostAgent: HostAgentSpec = FF(HostAgentSpec, "The node agent that plumbs the o-hm0 interface.")
    api: APISpec = FF(APISpec, "The octavia-api service.")
    worker: Component = FF(Component, "The octavia-worker service (runs on the health-manager nodes).")
    housekeeping: Component = FF(Component, "The octavia-housekeeping service (runs on the health-manager nodes).")
    images: ImagesSpec = FF(ImagesSpec, "Container images (defaults follow spec.release).")
    certificates: CertificatesSpec = FF(CertificatesSpec, "Certificates between the controllers and amphorae.")
    config: ConfigOverrides | None = F(  # type: ignore[valid-type]
        None, "Extra non-secret octavia.conf options, by section and key, merged last "
        "(for example {controller_worker: {amp_active_retries: '100'}}).")
    quotas: QuotasSpec | None = F(None, "Quotas to set on the service project (only when given).")
    policy: PolicySpec = FF(PolicySpec, "The API's access policy (oslo.policy).")
    jobboard: JobboardSpec = FF(JobboardSpec, "The taskflow jobboard (Redis/Valkey) and its persistence database, "
                                "so that flows survive a worker that dies.")
    providers: ProvidersSpec = FF(ProvidersSpec, "Load-balancer provider drivers: amphora (the default) and ovn.")

    @model_validator(mode="after")
    def _config(self) -> "OctaviaDeploymentSpec":
        jb = self.jobboard
        if jb.enabled and self.database.external is not None and jb.persistence is None:
            raise ValueError(JOBBOARD_PERSISTENCE_RULE[1])
        for section, opts in (self.config or {}).items():
            for key in opts:
                if (section, key) in SECRET_CONFIG_KEYS:
                    raise ValueError(f"config.{section}.{key} is a secret option: the operator manages it in a "
                                     "Secret and it cannot be set in config")
        return self


class Condition(_Model):
    type: str = F(..., "Condition type, for example Ready or ManagementNetworkReady.", max_length=316)
    status: Literal["True", "False", "Unknown"] = F(..., "True, False or Unknown.")
    reason: str = F(..., "One-word, CamelCase reason.", max_length=1024)
    message: str = F("", "Human-readable details.", max_length=32768)
    lastTransitionTime: str = F(..., "When the status last changed (RFC 3339).")
    observedGeneration: int | None = F(None, "The .metadata.generation the condition was computed for.", ge=0)


class HealthManagerPortStatus(_Model):
    portId: str | None = F(None, "Neutron port ID.")
    mac: str | None = F(None, "MAC address of the port.")
    ip: str | None = F(None, "Fixed IP of the port.")
    hostId: str | None = F(None, "binding:host_id of the port.")
    vifType: str | None = F(None, "binding:vif_type (binding_failed means no L2 agent accepted the port).")


class CertificateStatus(_Model):
    serverCAExpires: str | None = F(None, "Expiry of the server CA (RFC 3339).")
    clientCAExpires: str | None = F(None, "Expiry of the client CA (RFC 3339).")
    clientCertificateExpires: str | None = F(None, "Expiry of the controller client certificate (RFC 3339).")


class OpenStackStatus(_Model):
    serviceUserId: str | None = F(None, "Keystone ID of the service user.")
    serviceProjectId: str | None = F(None, "Keystone ID of the service project (amp_image_owner_id).")
    serviceId: str | None = F(None, "Keystone ID of the load-balancer service.")
    endpointIds: dict[str, str] | None = F(None, "Keystone endpoint IDs by interface.")
    imageId: str | None = F(None, "Glance ID of the current amphora image.")
    imageOwnerId: str | None = F(None, "Owner (project ID) of the amphora image.")
    flavorId: str | None = F(None, "Nova flavor ID (amp_flavor_id).")
    keypairName: str | None = F(None, "Nova key pair name, when SSH is enabled.")
    networkId: str | None = F(None, "Management network ID (amp_boot_network_list).")
    subnetId: str | None = F(None, "Management subnet ID.")
    networkMTU: int | None = F(None, "MTU of the management network, as Neutron reports it.")
    amphoraSecurityGroupId: str | None = F(None, "Amphora security group ID (amp_secgroup_list).")
    healthManagerSecurityGroupId: str | None = F(None, "Health-manager security group ID.")


class AmphoraConfigStatus(_Model):
    controllerIPPortList: str | None = F(None, "The [health_manager] controller_ip_port_list pushed.")
    amphoraeConfigured: int | None = F(None, "How many amphorae were asked to reload their configuration.")
    failed: list[str] | None = F(None, "Amphorae whose configuration push failed: retried, alone, with backoff.")
    attempts: int | None = F(None, "Failed attempts in a row for those amphorae.")
    retryAt: str | None = F(None, "When they are asked again (RFC 3339).")


class AmphoraRolloutStatus(_Model):
    target: str | None = F(None, "What amphorae must match: <image ID>@<client CA time>.")
    phase: str | None = F(None, "Idle, Outdated (waiting for a request), RollingOut, Paused (between batches), "
                          "Failed or Done.")
    outdated: int | None = F(None, "Live amphorae still to replace (in flight included).")
    completed: int | None = F(None, "Failovers completed for this target.")
    inFlight: dict[str, str] | None = F(None, "Load balancer -> the amphora being failed over.")
    startedAt: dict[str, str] | None = F(None, "Load balancer -> when its failover started.")
    failed: dict[str, str] | None = F(None, "Load balancer -> why its failover failed (the rollout stopped).")
    batchDoneAt: str | None = F(None, "When the last batch finished (the pause counts from here).")
    request: str | None = F(None, "The value of octavia-operator.dev/rollout-amphorae being served.")


class UpgradeStatus(_Model):
    fromRelease: str | None = F(None, "The release the services ran before.")
    toRelease: str | None = F(None, "spec.release.")
    phase: str | None = F(None, "DatabaseSync, then RollingWorker, RollingHealthManager, RollingHousekeeping, "
                          "RollingApi (consumers of messages before their producers).")
    startedAt: str | None = F(None, "When the upgrade started (RFC 3339).")


class OctaviaDeploymentStatus(_Model):
    model_config = ConfigDict(extra="allow", frozen=True)
    observedGeneration: int | None = F(None, "The .metadata.generation the status was last computed for.")
    conditions: list[Condition] | None = F(None, "Conditions, one per capability, plus Ready.")
    openstack: OpenStackStatus | None = F(None, "IDs of the OpenStack resources in use.")
    healthManagerPorts: dict[str, HealthManagerPortStatus] | None = F(
        None, "Health-manager Neutron ports, by node name.")
    certificates: CertificateStatus | None = F(None, "Certificate expiry dates.")
    rotations: dict[str, str] | None = F(
        None, "The last rotation request handled, by kind (servicePassword, rotate_server_ca, "
        "retire_old_server_cas, rotate_client_ca, retire_old_client_cas): the value of the matching "
        "octavia-operator.dev/rotate-* or retire-* annotation.")
    apiEndpoint: str | None = F(None, "Internal URL of the load-balancer API.")
    publicEndpoint: str | None = F(None, "The URL clients outside the cluster use (spec.api.expose).")
    exposedAs: str | None = F(None, "How the API is exposed: Ingress, HTTPRoute or LoadBalancer.")
    amphoraRollout: AmphoraRolloutStatus | None = F(None, "Replacing outdated amphorae (spec.amphora.rollout).")
    release: str | None = F(None, "The OpenStack release the Octavia services run (spec.release once rolled out).")
    upgrade: UpgradeStatus | None = F(None, "A release upgrade in progress.")
    amphoraConfig: AmphoraConfigStatus | None = F(
        None, "The health-manager list last pushed to the live amphorae (they keep the one they booted with "
        "otherwise).")


def parse_spec(spec: dict[str, Any]) -> OctaviaDeploymentSpec:
    """Validate and default a raw spec (raises pydantic.ValidationError)."""
    return OctaviaDeploymentSpec.model_validate(spec or {})
