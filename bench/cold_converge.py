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
import warnings

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
warnings.simplefilter("ignore")
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


def run_sdk(conn, s: str, image: pathlib.Path, pub: str, cidr: str) -> tuple[float, int]:
    """The same API calls back to back, one process, one token (the least work possible)."""
    from oscount import WriteCounter
    net = cidr.rsplit(".", 1)[0]
    t0 = time.perf_counter()
    with WriteCounter(conn) as w:
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


def cleanup(conn, marker: str) -> None:
    for net in conn.network.networks():
        if marker in net.name:
            for p in conn.network.ports(network_id=net.id):
                conn.network.delete_port(p)
            conn.network.delete_network(net)
    for sg in conn.network.security_groups():
        if marker in sg.name:
            conn.network.delete_security_group(sg)
    for u in conn.identity.users():
        if marker in u.name:
            conn.identity.delete_user(u)
    for svc in conn.identity.services():
        if marker in svc.name:
            for ep in conn.identity.endpoints(service_id=svc.id):
                conn.identity.delete_endpoint(ep)
            conn.identity.delete_service(svc)
    for i in conn.image.images():
        if marker in i.name:
            conn.image.delete_image(i)
    for f in conn.compute.flavors(is_public=None):
        if marker in f.name:
            conn.compute.delete_flavor(f)
    for k in conn.compute.keypairs():
        if marker in k.name:
            conn.compute.delete_keypair(k)


def run_operator(clouds_yaml: bytes, s: str, url: str, cidr: str) -> tuple[float, dict]:
    from kube.cluster import KubeCluster, assets_dir
    from kube.plugin import install_operator_manifests, service_account, start_operator
    from octd_helpers import credentials_secret, spec_for, volumes_for

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="bench-cold-"))
    cluster = KubeCluster(assets_dir(), workdir).start()
    op = None
    try:
        install_operator_manifests(cluster)
        api = cluster.api
        ns = "bench"
        cluster.add_namespace(ns)
        api.create(credentials_secret(ns, clouds_yaml))
        for n in NODES:
            cluster.add_node(n)
        volumes_for(cluster, ns)
        identity = service_account(cluster, workdir)
        op = start_operator(identity, workdir / "operator.log", namespace=ns)
        time.sleep(3)   # the operator process is up and watching (not part of the converge)
        ref = "octaviadeployments.octavia-operator.dev"
        t0 = time.perf_counter()
        api.create({"apiVersion": "octavia-operator.dev/v1alpha1", "kind": "OctaviaDeployment",
                    "metadata": {"name": "octavia", "namespace": ns}, "spec": spec_for(s, url, cidr)})

        def done() -> dict | None:
            st = (api.get(ref, "octavia", ns) or {}).get("status") or {}
            conds = {c["type"]: c["status"] for c in st.get("conditions") or []}
            ports = st.get("healthManagerPorts") or {}
            ok = conds.get("ConfigReady") == "True" and len(ports) == len(NODES)
            return st if ok else None
        while (st := done()) is None:
            if time.perf_counter() - t0 > 300:
                raise RuntimeError("the operator did not converge in 300 s:\n" + op.tail(40))
            time.sleep(0.1)
        elapsed = time.perf_counter() - t0
        api.delete(ref, "octavia", ns)   # deletionPolicy Delete: the operator removes what it made
        deadline = time.monotonic() + 180
        while api.get(ref, "octavia", ns) is not None and time.monotonic() < deadline:
            time.sleep(0.5)
        return elapsed, st
    finally:
        if op is not None:
            op.stop()
        cluster.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()

    import openstack.config
    import openstack.connection
    import yaml

    from cloud.plugin import tiny_qcow2
    from octd_helpers import random_cidr, serve_image

    base = pathlib.Path(os.environ.get("OSCLOUD_BASE", "/tmp/oscloud/run"))
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(base / "clouds.yaml"), "OS_CLOUD": "oscloud"}
    conn = openstack.connection.Connection(config=openstack.config.OpenStackConfig(
        config_files=[str(base / "clouds.yaml")]).get_one(cloud="oscloud"))
    doc = yaml.safe_load((base / "clouds.yaml").read_text())
    clouds_yaml = yaml.safe_dump({"clouds": {"admin-cloud": doc["clouds"]["oscloud"]}}).encode()
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
            cleanup(conn, s)
        try:
            sdk, sdk_requests = run_sdk(conn, s, image, pub.read_text(), random_cidr())
        finally:
            cleanup(conn, s)
        with serve_image() as url:
            s2 = uuid.uuid4().hex[:8]
            try:
                operator, _ = run_operator(clouds_yaml, s2, url, random_cidr())
            finally:
                cleanup(conn, s2)
        rows.append((i + 1, len(cmds), cli, sdk, sdk_requests, operator))
    print("| run | CLI commands | manual procedure (CLI), s | least work (one SDK process), s | SDK requests "
          "| operator, s | CLI / operator | operator / least work |")
    print("|---|---|---|---|---|---|---|---|")
    for run, n, cli, sdk, reqs, operator in rows:
        print(f"| {run} | {n} | {cli:.1f} | {sdk:.1f} | {reqs} | {operator:.1f} | {cli / operator:.1f}x "
              f"| {operator / sdk:.2f}x |")
    print("(loopback cloud on 127.0.0.1; the operator from the OctaviaDeployment's creation until ConfigReady with "
          "a health-manager port on each of 3 kwok nodes; its resources also include the Kubernetes side: Secrets, "
          "certificates, the embedded database and message queue StatefulSets, the rendered configuration)")


if __name__ == "__main__":
    main()
