"""Desired OpenStack resources of one OctaviaDeployment (pure: spec in, dataclasses out).

The openstack/* modules make the cloud match these; tests check these without a cloud.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Mapping

from ..spec import OctaviaDeploymentSpec

LB_ROLES = ("load-balancer_observer", "load-balancer_global_observer", "load-balancer_member",
            "load-balancer_quota_admin", "load-balancer_admin")
SERVICE_TYPE = "load-balancer"
HEALTH_MGR_DEVICE_OWNER = "Octavia:health-mgr"
AMPHORA_AGENT_PORT = 9443


@dataclass(frozen=True)
class IdentityDesired:
    user: str
    user_domain: str
    project: str
    project_domain: str
    roles: tuple[str, ...]
    lb_roles: tuple[str, ...]
    service_name: str
    service_type: str
    region: str
    endpoints: Mapping[str, str]  # interface -> URL (an interface left out is not registered)
    # an existing user this operator did not create: may its password be reset? (never by default)
    reset_password: bool = False
    # an existing service this operator did not create: may its endpoints be rewritten? (never by default)
    adopt_endpoints: bool = False


@dataclass(frozen=True)
class ImageDesired:
    tag: str
    name: str
    url: str | None
    checksum: str | None        # "<algo>:<hex>"
    image_id: str | None
    disk_format: str
    prune_superseded: bool


@dataclass(frozen=True)
class FlavorDesired:
    flavor_id: str | None
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int


@dataclass(frozen=True)
class KeypairDesired:
    name: str


@dataclass(frozen=True)
class Rule:
    """One ingress security-group rule (egress rules are Neutron's defaults)."""

    protocol: str                 # icmp, ipv6-icmp, tcp, udp
    ethertype: str                # IPv4 or IPv6
    port_min: int | None = None
    port_max: int | None = None
    remote_ip_prefix: str | None = None

    def key(self) -> tuple:
        return ("ingress", self.ethertype, self.protocol, self.port_min, self.port_max, self.remote_ip_prefix)


@dataclass(frozen=True)
class SecurityGroupDesired:
    name: str
    description: str
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class NetworkDesired:
    name: str
    network_id: str | None
    subnet_name: str
    cidr: str
    ip_version: int
    allocation_pool: tuple[str, str] | None
    amphora_sg: SecurityGroupDesired
    health_manager_sg: SecurityGroupDesired


@dataclass(frozen=True)
class PortDesired:
    node: str
    name: str
    host_id: str


@dataclass(frozen=True)
class CloudDesired:
    identity: IdentityDesired
    image: ImageDesired
    flavor: FlavorDesired
    keypair: KeypairDesired | None
    network: NetworkDesired
    quotas: Mapping[str, int] = field(default_factory=dict)


def default_pool(cidr: str) -> tuple[str, str]:
    """The whole subnet but the first address (reserved by convention) and the broadcast."""
    net = ipaddress.ip_network(cidr)
    if net.num_addresses <= 4:
        return str(net[1]), str(net[-1])
    last = net[-2] if net.version == 4 else net[-1]
    return str(net[2]), str(last)


def security_groups(spec: OctaviaDeploymentSpec, extra_udp_ports: tuple[int, ...] = ()) -> tuple[
        SecurityGroupDesired, SecurityGroupDesired]:
    mn = spec.managementNetwork
    version = mn.network.version
    ether = "IPv4" if version == 4 else "IPv6"
    icmp = "icmp" if version == 4 else "ipv6-icmp"
    cidr = mn.cidr
    amp_rules = [Rule(icmp, ether, remote_ip_prefix=cidr),
                 Rule("tcp", ether, AMPHORA_AGENT_PORT, AMPHORA_AGENT_PORT, cidr)]
    if spec.amphora.ssh.enabled:
        amp_rules.append(Rule("tcp", ether, 22, 22, cidr))
    hb = spec.healthManager.heartbeatPort
    hm_rules = [Rule("udp", ether, hb, hb, cidr)]
    hm_rules += [Rule("udp", ether, p, p, cidr) for p in extra_udp_ports]
    if version == 6:  # neighbour discovery and router advertisements need ICMPv6
        hm_rules.append(Rule(icmp, ether, remote_ip_prefix=None))
    amp = SecurityGroupDesired(mn.securityGroups.amphora,
                               "Octavia amphorae on the management network (amphora agent API)",
                               tuple(amp_rules))
    hm = SecurityGroupDesired(mn.securityGroups.healthManager,
                              "Octavia health-manager ports (amphora heartbeats)", tuple(hm_rules))
    return amp, hm


def desired(spec: OctaviaDeploymentSpec, endpoints: Mapping[str, str]) -> CloudDesired:
    ident = spec.identity
    mn = spec.managementNetwork
    img = spec.amphora.image
    flv = spec.amphora.flavor
    amp_sg, hm_sg = security_groups(spec, spec.amphora.logging.receiver_ports)
    pool = (mn.allocationPool.start, mn.allocationPool.end) if mn.allocationPool else default_pool(mn.cidr)
    quotas = {k: v for k, v in (spec.quotas.model_dump() if spec.quotas else {}).items() if v is not None}
    return CloudDesired(
        identity=IdentityDesired(
            user=ident.serviceUser, user_domain=ident.userDomain, project=ident.serviceProject,
            project_domain=ident.projectDomain, roles=tuple(ident.roles),
            lb_roles=LB_ROLES if ident.createLoadBalancerRoles else (),
            service_name=ident.serviceName, service_type=SERVICE_TYPE, region=spec.cloud.region,
            endpoints=dict(endpoints), reset_password=ident.resetPassword, adopt_endpoints=ident.adoptEndpoints),
        image=ImageDesired(tag=img.tag, name=img.name, url=img.url, checksum=img.checksum, image_id=img.id,
                           disk_format=img.diskFormat, prune_superseded=img.pruneSuperseded),
        flavor=FlavorDesired(flavor_id=flv.id, name=flv.name, vcpus=flv.vcpus, ram_mb=flv.ramMB, disk_gb=flv.diskGB),
        keypair=KeypairDesired(spec.amphora.ssh.keyName) if spec.amphora.ssh.enabled else None,
        network=NetworkDesired(name=mn.name, network_id=mn.networkId, subnet_name=mn.subnetName, cidr=mn.cidr,
                               ip_version=mn.network.version, allocation_pool=pool,
                               amphora_sg=amp_sg, health_manager_sg=hm_sg),
        quotas=quotas,
    )


def endpoint_urls(spec: OctaviaDeploymentSpec, internal_default: str,
                  public_default: str | None = None) -> dict[str, str]:
    """``public_default``: where spec.api.expose makes the API reachable (when known)."""
    ep = spec.identity.endpoints
    internal = ep.internal or internal_default
    out = {"internal": internal, "admin": ep.admin or internal}
    public = ep.public or public_default
    if public:  # never the in-cluster URL: clients outside the cluster could not reach it
        out["public"] = public
    return out


def port_name(node: str) -> str:
    return f"octavia-health-manager-{node}"


def ports(nodes: Mapping[str, Mapping[str, str]], host_id_annotation: str) -> dict[str, PortDesired]:
    """One health-manager port per node; ``nodes`` maps node name -> its annotations."""
    out = {}
    for node, node_annotations in sorted(nodes.items()):
        host = (node_annotations or {}).get(host_id_annotation) or node
        out[node] = PortDesired(node=node, name=port_name(node), host_id=host)
    return out


def node_matches(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def select_nodes(nodes: list[Mapping], selector: Mapping[str, str]) -> dict[str, Mapping[str, str]]:
    """Nodes (name -> annotations) that match the selector and are not being deleted."""
    out: dict[str, Mapping[str, str]] = {}
    for node in nodes:
        md = node.get("metadata") or {}
        if md.get("deletionTimestamp"):
            continue
        if node_matches(md.get("labels") or {}, selector):
            out[md["name"]] = md.get("annotations") or {}
    return out


def cluster_cidrs(nodes: list[Mapping], extra: list[str] | None = None) -> list[str]:
    """Networks the management network must not overlap: pod CIDRs and node addresses, plus ``extra``."""
    out: list[str] = []
    for node in nodes:
        spec = node.get("spec") or {}
        out += list(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))
        for addr in (node.get("status") or {}).get("addresses") or []:
            if addr.get("type") in ("InternalIP", "ExternalIP"):
                ip = ipaddress.ip_address(addr["address"])
                out.append(f"{ip}/{ip.max_prefixlen}")
    out += list(extra or [])
    return sorted(set(out))
