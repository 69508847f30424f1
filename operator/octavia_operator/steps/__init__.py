"""The ordered list of reconcile steps; each reports one condition."""
from __future__ import annotations

from ..reconcile import Step, not_implemented
from . import cloud
from .core import step_cloud, step_spec

STEPS: list[Step] = [
    Step("spec", "SpecValid", step_spec),
    Step("cloud", "CloudReachable", step_cloud, depends=("spec",)),
    Step("identity", "IdentityReady", cloud.step_identity, depends=("cloud",)),
    Step("image", "AmphoraImageReady", cloud.step_image, depends=("identity",)),
    Step("flavor", "AmphoraFlavorReady", cloud.step_flavor, depends=("identity",)),
    Step("keypair", "SSHKeypairReady", cloud.step_keypair, depends=("identity",)),
    Step("network", "ManagementNetworkReady", cloud.step_network, depends=("identity",)),
    Step("ports", "HealthManagerPortsReady", cloud.step_ports, depends=("network",)),
    Step("quotas", "QuotasReady", cloud.step_quotas, depends=("identity",)),
    Step("certificates", "CertificatesReady", not_implemented("Certificates and passphrases", 4),
         depends=("spec",), issue=4),
    Step("database", "DatabaseReady", not_implemented("The database", 4), depends=("spec",), issue=4),
    Step("messaging", "MessagingReady", not_implemented("The message queue", 4), depends=("spec",), issue=4),
    Step("config", "ConfigReady", not_implemented("octavia.conf", 4),
         depends=("identity", "image", "flavor", "keypair", "network", "ports", "certificates", "database",
                  "messaging"), issue=4),
    Step("dbsync", "DatabaseSynced", not_implemented("The db-sync Job", 4), depends=("config",), issue=4),
    Step("hostagent", "HostAgentReady", not_implemented("The host-agent DaemonSet", 4),
         depends=("ports",), issue=4),
    Step("services", "ServicesReady",
         not_implemented("The api, worker, health-manager and housekeeping Deployments", 4),
         depends=("dbsync", "hostagent"), issue=4),
]
