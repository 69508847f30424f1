"""The reconcile steps; each reports one condition. A step runs once what it ``depends`` on has succeeded
and what it runs ``after`` has finished; independent steps run at the same time (runner.run_steps). The
list's order is the order of the conditions."""
from __future__ import annotations

from .runner import Step
from . import cloud, expose, rollout, workloads
from .core import step_cloud, step_spec

# the annotations a reconcile acts upon: one-shot requests (rotations, an amphora rollout)
REQUEST_ANNOTATIONS = frozenset({cloud.ROTATE_PASSWORD_ANNOTATION, rollout.ROLLOUT_ANNOTATION,
                                 *workloads.CERT_ROTATIONS.values()})

STEPS: list[Step] = [
    Step("spec", "SpecValid", step_spec),
    Step("cloud", "CloudReachable", step_cloud, depends=("spec",), cloud=True),
    Step("expose", "APIExposed", expose.step_expose, depends=("spec",)),
    # after expose: the public catalog endpoint follows the exposure
    # the project first (every input of the identity checked before it is made): what needs only the project
    # runs while the user, roles, service and endpoints are made. After expose: the identity's desired state
    # (computed once, by the first step that asks) has the public endpoint the exposure gives
    Step("project", "ServiceProjectReady", cloud.step_project, depends=("cloud",), after=("expose",), cloud=True),
    Step("identity", "IdentityReady", cloud.step_identity, depends=("project",), cloud=True),
    Step("image", "AmphoraImageReady", cloud.step_image, depends=("project",), cloud=True),
    Step("flavor", "AmphoraFlavorReady", cloud.step_flavor, depends=("project",), cloud=True),
    Step("keypair", "SSHKeypairReady", cloud.step_keypair, depends=("identity",), cloud=True),
    Step("network", "ManagementNetworkReady", cloud.step_network, depends=("project",), cloud=True),
    Step("ports", "HealthManagerPortsReady", cloud.step_ports, depends=("network",), cloud=True),
    Step("quotas", "QuotasReady", cloud.step_quotas, depends=("project",), cloud=True),
    Step("certificates", "CertificatesReady", workloads.step_certificates, depends=("spec",)),
    Step("database", "DatabaseReady", workloads.step_database, depends=("spec",)),
    Step("messaging", "MessagingReady", workloads.step_messaging, depends=("spec",)),
    # the persistence URL of the embedded database derives from Octavia's
    Step("jobboard", "JobboardReady", workloads.step_jobboard, depends=("spec",), after=("database",)),
    # rendered once every value it holds is known, so the embedded servers may still be starting; not after
    # "ports" succeeded: one node whose port does not bind must not hold back the others
    Step("config", "ConfigReady", workloads.step_config,
         depends=("identity", "image", "flavor", "keypair", "network", "certificates"),
         after=("ports", "database", "messaging", "jobboard")),
    Step("dbsync", "DatabaseSynced", workloads.step_dbsync, depends=("config", "database", "jobboard")),
    Step("hostagent", "HostAgentReady", workloads.step_hostagent, depends=("config",)),
    Step("services", "ServicesReady", workloads.step_services, depends=("dbsync", "hostagent", "messaging")),
    Step("rollout", "AmphoraeUpToDate", rollout.step_rollout, depends=("services", "image", "certificates"),
         cloud=True),
]
