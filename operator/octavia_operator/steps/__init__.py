"""The ordered list of reconcile steps; each reports one condition."""
from __future__ import annotations

from .runner import Step
from . import cloud, expose, rollout, workloads
from .core import step_cloud, step_spec

STEPS: list[Step] = [
    Step("spec", "SpecValid", step_spec),
    Step("cloud", "CloudReachable", step_cloud, depends=("spec",)),
    # before identity: the public catalog endpoint follows the exposure
    Step("expose", "APIExposed", expose.step_expose, depends=("spec",)),
    Step("identity", "IdentityReady", cloud.step_identity, depends=("cloud",)),
    Step("image", "AmphoraImageReady", cloud.step_image, depends=("identity",)),
    Step("flavor", "AmphoraFlavorReady", cloud.step_flavor, depends=("identity",)),
    Step("keypair", "SSHKeypairReady", cloud.step_keypair, depends=("identity",)),
    Step("network", "ManagementNetworkReady", cloud.step_network, depends=("identity",)),
    Step("ports", "HealthManagerPortsReady", cloud.step_ports, depends=("network",)),
    Step("quotas", "QuotasReady", cloud.step_quotas, depends=("identity",)),
    Step("certificates", "CertificatesReady", workloads.step_certificates, depends=("spec",)),
    Step("database", "DatabaseReady", workloads.step_database, depends=("spec",)),
    Step("messaging", "MessagingReady", workloads.step_messaging, depends=("spec",)),
    Step("jobboard", "JobboardReady", workloads.step_jobboard, depends=("database",)),
    Step("config", "ConfigReady", workloads.step_config,
         # not "ports": one node whose port does not bind must not hold back the others
         depends=("identity", "image", "flavor", "keypair", "network", "certificates", "database", "messaging",
                  "jobboard")),
    Step("dbsync", "DatabaseSynced", workloads.step_dbsync, depends=("config",)),
    Step("hostagent", "HostAgentReady", workloads.step_hostagent, depends=("config",)),
    Step("services", "ServicesReady", workloads.step_services, depends=("dbsync", "hostagent")),
    Step("rollout", "AmphoraeUpToDate", rollout.step_rollout, depends=("services", "image", "certificates")),
]
