"""Cold converge, side by side (issue 13, benchmark 1): the manual procedure as a script of `openstack` CLI
commands, the least work possible (the same API calls back to back from one openstacksdk process), and the
operator (from creating the OctaviaDeployment on a real API server until every OpenStack resource exists and
the configuration is rendered), on the same loopback cloud, in one run.

    OSCLOUD_BASE=/tmp/oscloud-tests .venv/bin/python bench/cold_converge.py [--runs 1]

Needs the loopback OpenStack of tests/cloud, the `openstack` CLI (Debian's python3-openstackclient), the
Kubernetes binaries (KUBE_ASSETS or .tools/kube). The operator runs as its own process with the chart's
ServiceAccount (tests/kube), three kwok nodes. Prints a table; asserts nothing. Everything it creates is
deleted at the end (the operator's by deletionPolicy Delete).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import secrets
import subprocess
import sys
import tempfile
import time
import uuid

import harness as h

NODES = ("node-0", "node-1", "node-2")
ROLES = ("load-balancer_observer", "load-balancer_global_observer", "load-balancer_member",
         "load-balancer_quota_admin", "load-balancer_admin")


def seed_script(s: str, image: pathlib.Path, pub: pathlib.Path, cidr: str) -> list[str]:
    """The walk-through's steps (shared/seed), one CLI command each, for the resources the operator makes."""
    net = cidr.rsplit(".", 1)[0]
    cmds = [f"user create --domain default --password {secrets.token_hex(12)} octavia-{s}",
            f"role add --project service --user octavia-{s} admin"]
    cmds += [f"role create --or-show {r}" for r in ROLES]
    cmds += [f"service create --name octavia-{s} load-balancer-{s}"]
    cmds += [f"endpoint create --region RegionOne load-balancer-{s} {itf} http://127.0.0.1:9876"
             for itf in ("public", "internal", "admin")]
    cmds += [f"image create --disk-format qcow2 --container-format bare --private --tag amphora-{s} "
             f"--project service --file {image} amphora-{s}",
             f"flavor create --private --vcpus 1 --ram 512 --disk 1 amphora-{s}",
             f"flavor set --project service amphora-{s}",
             f"keypair create --public-key {pub} octavia-ssh-{s}",
             f"network create --project service lb-mgmt-net-{s}",
             f"subnet create --project service --network lb-mgmt-net-{s} --subnet-range {cidr} "
             f"--allocation-pool start={net}.10,end={net}.200 --gateway none lb-mgmt-subnet-{s}",
             f"security group create --project service lb-mgmt-sec-grp-{s}",
             f"security group rule create --protocol icmp --remote-ip {cidr} lb-mgmt-sec-grp-{s}",
             f"security group rule create --protocol tcp --dst-port 22 --remote-ip {cidr} lb-mgmt-sec-grp-{s}",
             f"security group rule create --protocol tcp --dst-port 9443 --remote-ip {cidr} lb-mgmt-sec-grp-{s}",
             f"security group create --project service lb-health-mgr-sec-grp-{s}",
             f"security group rule create --protocol udp --dst-port 5555 --remote-ip {cidr} lb-health-mgr-sec-grp-{s}"]
    cmds += [f"port create --project service --security-group lb-health-mgr-sec-grp-{s} --device-owner "
             f"Octavia:health-mgr --host {n} --network lb-mgmt-net-{s} octavia-health-manager-{n}-{s}"
             for n in NODES]
    return cmds


def run_cli(cmds: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    for c in cmds:
        p = subprocess.run(["openstack", *c.split()], env=env, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"openstack {c}: {p.stderr.strip()[-500:]}")
    return time.perf_counter() - t0


def run_sdk(s: str, image: pathlib.Path, pub: str, cidr: str) -> tuple[float, int]:
    """The same API calls back to back, one process, one token (the least work possible). From a new
    connection, as the operator's first reconcile: its token request and each service's version discovery
    are in both (the SDK's imports in neither: the operator makes them at its start)."""
    from oscount import WriteCounter
    net = cidr.rsplit(".", 1)[0]
    t0 = time.perf_counter()
    conn = h.admin_connection()
    with WriteCounter(conn) as w:
        conn.authorize()
        project = conn.identity.find_project("service", domain_id="default")
        user = conn.identity.create_user(name=f"sdk-octavia-{s}", password=secrets.token_hex(12), domain_id="default")
        admin = conn.identity.find_role("admin")
        conn.identity.assign_project_role_to_user(project, user, admin)
        for r in ROLES:
            conn.identity.find_role(r) or conn.identity.create_role(name=r)
        svc = conn.identity.create_service(name=f"sdk-octavia-{s}", type=f"sdk-load-balancer-{s}")
        for itf in ("public", "internal", "admin"):
            conn.identity.create_endpoint(service_id=svc.id, interface=itf, url="http://127.0.0.1:9876",
                                          region_id="RegionOne")
        conn.image.create_image(name=f"sdk-amphora-{s}", disk_format="qcow2", container_format="bare",
                                      visibility="private", tags=[f"sdk-amphora-{s}"], owner=project.id,
                                      data=image.read_bytes())
        flavor = conn.compute.create_flavor(name=f"sdk-amphora-{s}", vcpus=1, ram=512, disk=1, is_public=False)
        conn.compute.flavor_add_tenant_access(flavor, project.id)
        conn.compute.create_keypair(name=f"sdk-octavia-ssh-{s}", public_key=pub)
        network = conn.network.create_network(name=f"sdk-lb-mgmt-net-{s}", project_id=project.id)
        conn.network.create_subnet(network_id=network.id, ip_version=4, cidr=cidr, gateway_ip=None,
                                   allocation_pools=[{"start": f"{net}.10", "end": f"{net}.200"}],
                                   name=f"sdk-lb-mgmt-subnet-{s}", project_id=project.id)
        amp_sg = conn.network.create_security_group(name=f"sdk-lb-mgmt-sec-grp-{s}", project_id=project.id)
        for proto, port in (("icmp", None), ("tcp", 22), ("tcp", 9443)):
            conn.network.create_security_group_rule(security_group_id=amp_sg.id, direction="ingress",
                                                    protocol=proto, port_range_min=port, port_range_max=port,
                                                    remote_ip_prefix=cidr, ethertype="IPv4")
        hm_sg = conn.network.create_security_group(name=f"sdk-lb-health-mgr-sec-grp-{s}", project_id=project.id)
        conn.network.create_security_group_rule(security_group_id=hm_sg.id, direction="ingress", protocol="udp",
                                                port_range_min=5555, port_range_max=5555, remote_ip_prefix=cidr,
                                                ethertype="IPv4")
        conn.network.create_ports([{"network_id": network.id, "name": f"sdk-octavia-health-manager-{n}-{s}",
                                    "device_owner": "Octavia:health-mgr", "binding:host_id": n,
                                    "security_groups": [hm_sg.id], "project_id": project.id} for n in NODES])
    return time.perf_counter() - t0, len(w.requests)


def run_operator(s: str, url: str, cidr: str) -> tuple[float, float, dict]:
    """The operator (production timings) from the creation of the OctaviaDeployment until ConfigReady with a
    bound port on every node; also the OpenStack requests it made meanwhile (its /metrics)."""
    stage = h.Stage().start()
    try:
        for n in NODES:
            stage.cluster.add_node(n)
        op = stage.start_operator()
        m0 = h.counts(op.metrics())
        t0 = time.perf_counter()
        stage.create(h.spec(s, url, cidr))

        def done() -> bool:
            st = stage.status()
            conds = {c["type"]: c["status"] for c in st.get("conditions") or []}
            ports = st.get("healthManagerPorts") or {}
            return conds.get("ConfigReady") == "True" and len(ports) == len(NODES)
        h.wait(done, 300, "ConfigReady with a port on every node", 0.05)
        elapsed = time.perf_counter() - t0
        m1 = h.counts(op.metrics())
        h.wait(lambda: stage.conditions().get("Ready") == "True", 300, "Ready", 0.05)
        ready = time.perf_counter() - t0
        stage.delete_deployment()   # deletionPolicy Delete: the operator removes what it made
        return elapsed, ready, {k: m1[k] - m0[k] for k in m1}
    finally:
        stage.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()

    from cloud.plugin import tiny_qcow2
    from octd_helpers import random_cidr, serve_image

    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(h.cloud_base() / "clouds.yaml"), "OS_CLOUD": "oscloud"}
    conn = h.admin_connection()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-seed-"))
    image = tmp / "amphora.qcow2"
    image.write_bytes(tiny_qcow2())
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / "id")], check=True)
    pub = tmp / "id.pub"
    rows = []
    for i in range(args.runs):
        s = uuid.uuid4().hex[:8]
        cmds = seed_script(s, image, pub, random_cidr())
        try:
            cli = run_cli(cmds, env)
        finally:
            h.cleanup_cloud(conn, s)
        try:
            sdk, sdk_requests = run_sdk(s, image, pub.read_text(), random_cidr())
        finally:
            h.cleanup_cloud(conn, s)
        with serve_image() as url:
            s2 = uuid.uuid4().hex[:8]
            try:
                operator, ready, reqs = run_operator(s2, url, random_cidr())
            finally:
                h.cleanup_cloud(conn, s2)
        rows.append((i + 1, len(cmds), cli, sdk, sdk_requests, operator, reqs, ready))
        print(rows[-1], file=sys.stderr, flush=True)
    print("| run | CLI commands | manual procedure (CLI), s | least work (one SDK process), s | SDK requests "
          "| operator, s | operator's OpenStack requests (writes) | CLI / operator | operator / least work "
          "| operator until Ready, s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run, n, cli, sdk, sdk_reqs, operator, reqs, ready in rows:
        print(f"| {run} | {n} | {cli:.1f} | {sdk:.2f} | {sdk_reqs} | {operator:.2f} | {reqs['requests']} "
              f"({reqs['writes']}) | {cli / operator:.1f}x | {operator / sdk:.2f}x | {ready:.1f} |")
    print("(loopback cloud on 127.0.0.1; the operator, with its production timings, from the OctaviaDeployment's "
          "creation until ConfigReady with a health-manager port on each of 3 kwok nodes; its work also includes "
          "the Kubernetes side: Secrets, certificates, the embedded database and message queue StatefulSets, the "
          "rendered configuration. 'Until Ready': the services rolled out too, kwok playing the pods)")


if __name__ == "__main__":
    main()
