"""The ordered list of reconcile steps; each reports one condition."""
from __future__ import annotations

from ..reconcile import Step, not_implemented
from .core import step_cloud, step_spec

STEPS: list[Step] = [
    Step("spec", "SpecValid", step_spec),
    Step("cloud", "CloudReachable", step_cloud, depends=("spec",)),
    Step("identity", "IdentityReady",
         not_implemented("Keystone user, roles, service and endpoints", 3), depends=("cloud",), issue=3),
    Step("image", "AmphoraImageReady", not_implemented("The amphora image", 3), depends=("identity",), issue=3),
    Step("flavor", "AmphoraFlavorReady", not_implemented("The amphora flavor", 3), depends=("cloud",), issue=3),
    Step("keypair", "SSHKeypairReady", not_implemented("The amphora SSH key pair", 3),
         depends=("identity",), issue=3),
    Step("network", "ManagementNetworkReady",
         not_implemented("The management network, subnet and security groups", 3), depends=("identity",), issue=3),
    Step("ports", "HealthManagerPortsReady", not_implemented("Health-manager ports per node", 3),
         depends=("network",), issue=3),
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
