"""Shared pieces of the end-to-end tests: an image server, Nodes, a spec that is safe on the shared cloud."""
from __future__ import annotations

import contextlib
import http.server
import threading
import uuid
from typing import Iterator

from cloud.plugin import tiny_qcow2


@contextlib.contextmanager
def serve_image() -> Iterator[str]:
    """A tiny valid qcow2 over HTTP on 127.0.0.1 (a port the OS picks); yields its URL."""
    data = tiny_qcow2()

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/amphora.qcow2"
    finally:
        srv.shutdown()
        srv.server_close()


def node(name: str, control_plane: bool = True) -> dict:
    labels = {"kubernetes.io/hostname": name}
    if control_plane:
        labels["node-role.kubernetes.io/control-plane"] = ""
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
            "spec": {"podCIDRs": ["10.244.0.0/24"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.10"}]}}


def random_cidr() -> str:
    return f"10.{uuid.uuid4().int % 200 + 20}.{uuid.uuid4().int % 250}.0/24"


def spec_for(sfx: str, image_url: str, cidr: str) -> dict:
    return {
        "cloud": {"credentialsSecret": {"name": "openstack-admin"}, "cloudName": "admin-cloud"},
        "deletionPolicy": "Delete",
        "identity": {"serviceUser": f"octavia-{sfx}",
                     # the loopback catalog already has the load-balancer service at this URL: adopted as is
                     "endpoints": {"public": "http://127.0.0.1:9876", "internal": "http://127.0.0.1:9876",
                                   "admin": "http://127.0.0.1:9876"}},
        "amphora": {"image": {"url": image_url, "tag": f"amphora-{sfx}", "name": f"amphora-{sfx}"},
                    "flavor": {"name": f"amphora-{sfx}", "vcpus": 1, "ramMB": 512, "diskGB": 1},
                    "ssh": {"enabled": True, "keyName": f"octavia-ssh-{sfx}"}},
        "managementNetwork": {"name": f"lb-mgmt-net-{sfx}", "subnetName": f"lb-mgmt-subnet-{sfx}", "cidr": cidr,
                              "allocationPool": {"start": cidr.replace("0/24", "10"),
                                                 "end": cidr.replace("0/24", "200")},
                              "securityGroups": {"amphora": f"lb-mgmt-sec-grp-{sfx}",
                                                 "healthManager": f"lb-health-mgr-sec-grp-{sfx}"}},
        "healthManager": {"nodeSelector": {"node-role.kubernetes.io/control-plane": ""}},
        # fast keys for tests (RSA-4096 CAs are the default)
        "certificates": {"keyType": "ECDSA"},
    }
