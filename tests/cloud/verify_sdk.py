"""Smoke-check the loopback cloud with openstacksdk, as admin. Prints timings per step.

usage: python tests/cloud/verify_sdk.py [path/to/clouds.yaml]
(default: $OSCLOUD_BASE/clouds.yaml, OSCLOUD_BASE defaulting to /tmp/oscloud/run).
Exit status 0 = every check passed. It is the quickest way to tell "cloud broken" from
"code under test broken". Only the named clouds.yaml is read (no OS_* variables, no
~/.config/openstack), so it can never touch another cloud."""
import io
import os
import pathlib
import struct
import sys
import time
import uuid

import openstack
import openstack.config

t0 = time.time()


def step(msg):
    print(f"[{time.time()-t0:6.2f}s] {msg}", flush=True)


def tiny_qcow2(virtual_size=1 << 20):
    """A valid, empty qcow2 v2 image (4 x 64 KiB clusters), like `qemu-img create -f qcow2 x 1M`."""
    C = 1 << 16
    hdr = struct.pack(">IIQIIQIIQQIIQ", 0x514649FB, 2, 0, 0, 16, virtual_size, 0, 1, 3 * C, C, 1, 0, 0)
    buf = bytearray(4 * C)
    buf[:len(hdr)] = hdr
    buf[C:C + 8] = struct.pack(">Q", 2 * C)                  # refcount table -> refcount block
    buf[2 * C:2 * C + 8] = struct.pack(">HHHH", 1, 1, 1, 1)  # clusters 0..3 in use
    return bytes(buf)                                        # L1 table (cluster 3) stays empty


base = pathlib.Path(os.environ.get("OSCLOUD_BASE", "/tmp/oscloud/run"))
clouds_yaml = sys.argv[1] if len(sys.argv) > 1 else str(base / "clouds.yaml")
if not os.path.exists(clouds_yaml):
    sys.exit(f"{clouds_yaml} does not exist: is the cloud up? (tests/cloud/oscloud-up.sh)")
fake_hosts_file = pathlib.Path(clouds_yaml).parent / "fake-agent-hosts"
fake_hosts = fake_hosts_file.read_text().split() if fake_hosts_file.exists() else []

cfg = openstack.config.OpenStackConfig(config_files=[clouds_yaml], vendor_files=[], secure_files=[],
                                       load_envvars=False)
conn = openstack.connection.Connection(config=cfg.get_one(cloud="oscloud"))
sfx = uuid.uuid4().hex[:6]
cleanup = []
try:
    # ---- identity
    proj = conn.identity.create_project(name=f"octavia-{sfx}", domain_id="default", description="test")
    cleanup.append(lambda: conn.identity.delete_project(proj))
    user = conn.identity.create_user(name=f"octavia-svc-{sfx}", password=uuid.uuid4().hex,
                                     domain_id="default", default_project_id=proj.id)
    cleanup.append(lambda: conn.identity.delete_user(user))
    role = conn.identity.find_role("admin")
    conn.identity.assign_project_role_to_user(proj, user, role)
    assert conn.identity.validate_user_has_project_role(proj, user, role)
    svc = conn.identity.create_service(name=f"octavia-{sfx}", type=f"load-balancer-{sfx}", description="fake")
    cleanup.append(lambda: conn.identity.delete_service(svc))
    ep = conn.identity.create_endpoint(service_id=svc.id, interface="public", url="http://127.0.0.1:19876",
                                       region_id="RegionOne")
    cleanup.append(lambda: conn.identity.delete_endpoint(ep))
    step(f"identity: project {proj.id} user {user.id} role-assignment ok service {svc.id} endpoint {ep.id}")

    # ---- networking
    net = conn.network.create_network(name=f"lb-mgmt-net-{sfx}")
    cleanup.append(lambda: conn.network.delete_network(net))
    subnet = conn.network.create_subnet(
        network_id=net.id, name=f"lb-mgmt-subnet-{sfx}", ip_version=4, cidr="172.31.0.0/24",
        allocation_pools=[{"start": "172.31.0.10", "end": "172.31.0.200"}], gateway_ip="172.31.0.1")
    cleanup.append(lambda: conn.network.delete_subnet(subnet))
    sg = conn.network.create_security_group(name=f"lb-mgmt-sec-grp-{sfx}", description="amphora mgmt")
    cleanup.append(lambda: conn.network.delete_security_group(sg))
    r1 = conn.network.create_security_group_rule(
        security_group_id=sg.id, direction="ingress", protocol="tcp", port_range_min=9443,
        port_range_max=9443, ethertype="IPv4", remote_ip_prefix="0.0.0.0/0")
    r2 = conn.network.create_security_group_rule(
        security_group_id=sg.id, direction="ingress", protocol="udp", port_range_min=5555,
        port_range_max=5555, ethertype="IPv4")
    host = fake_hosts[0] if fake_hosts else "controller-0"
    port = conn.network.create_port(
        network_id=net.id, name=f"octavia-health-manager-{sfx}", device_owner="Octavia:health-mgr",
        device_id=f"octavia-health-manager-{sfx}", binding_host_id=host, security_group_ids=[sg.id])
    cleanup.append(lambda: conn.network.delete_port(port))
    port = conn.network.get_port(port.id)
    assert port.binding_host_id == host, port.binding_host_id
    if fake_hosts:
        assert port.binding_vif_type == "ovs", f"port not bound on fake agent host {host}: {port.binding_vif_type}"
    step(f"network: net {net.id} (type {net.provider_network_type}) subnet {subnet.cidr} "
         f"sg {sg.id} rules {r1.id},{r2.id} port {port.id} owner={port.device_owner} host={port.binding_host_id} "
         f"vif={port.binding_vif_type} ips={port.fixed_ips}")

    # ---- image
    img = conn.image.create_image(name=f"amphora-{sfx}", disk_format="qcow2", container_format="bare",
                                  data=io.BytesIO(tiny_qcow2()), tags=[f"amphora-{sfx}"], visibility="private")
    cleanup.append(lambda: conn.image.delete_image(img))
    img = conn.image.get_image(img.id)
    found = list(conn.image.images(tag=f"amphora-{sfx}"))
    assert img.status == "active", img.status
    assert [i.id for i in found] == [img.id], found
    step(f"image: {img.id} status={img.status} size={img.size} tags={img.tags} found-by-tag={len(found)}")

    # ---- compute
    flv = conn.compute.create_flavor(name=f"amphora-{sfx}", ram=1024, vcpus=1, disk=2, is_public=False)
    cleanup.append(lambda: conn.compute.delete_flavor(flv))
    kp = conn.compute.create_keypair(name=f"octavia-ssh-{sfx}")
    cleanup.append(lambda: conn.compute.delete_keypair(kp))
    assert conn.compute.find_flavor(flv.id) is not None
    assert conn.compute.get_keypair(kp.name).fingerprint
    step(f"compute: flavor {flv.id} keypair {kp.name} fp={kp.fingerprint}")

    # ---- load-balancer (Octavia API), if in the catalog
    if conn.endpoint_for("load-balancer"):
        lbs = list(conn.load_balancer.load_balancers())
        provs = list(conn.load_balancer.providers())
        assert provs, "octavia lists no providers"
        step(f"load-balancer: {len(lbs)} LBs; providers={[p.name for p in provs]}")
    else:
        step("load-balancer: not in the catalog (WITH_OCTAVIA=0), skipped")
finally:
    for f in reversed(cleanup):
        try:
            f()
        except Exception as e:  # noqa: BLE001 -- report, go on cleaning
            print(f"cleanup error: {type(e).__name__}: {e}", file=sys.stderr)
    conn.close()
step("cleanup done; ALL CHECKS PASSED")
