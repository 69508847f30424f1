"""Create the 'service' project, the service users and the service catalog in Keystone.

Plain urllib, so it runs with any python3 (Debian's or a venv's). Idempotent.
usage: OSCLOUD_ADMIN_PASSWORD=... OSCLOUD_SERVICE_PASSWORD=... \\
       register_catalog.py http://127.0.0.1 <with_octavia 0|1>
(passwords come from the environment so that they do not show in `ps`)."""
import json
import os
import sys
import urllib.request

H, WITH_OCTAVIA = sys.argv[1], sys.argv[2] == "1"
ADMIN_PW = os.environ["OSCLOUD_ADMIN_PASSWORD"]
SERVICE_PW = os.environ["OSCLOUD_SERVICE_PASSWORD"]


def req(method, path, body=None, token=None):
    r = urllib.request.Request(
        H + ":5000/v3" + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", "Connection": "close",
                 **({"X-Auth-Token": token} if token else {})})
    with urllib.request.urlopen(r, timeout=60) as resp:
        return resp, json.loads(resp.read() or b"{}")


resp, _ = req("POST", "/auth/tokens", {"auth": {
    "identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": ADMIN_PW}}},
    "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
tok = resp.headers["X-Subject-Token"]


def find(kind, name):
    items = req("GET", f"/{kind}?name={name}", token=tok)[1][kind]
    return items[0]["id"] if items else None


proj = find("projects", "service") or req(
    "POST", "/projects", {"project": {"name": "service", "domain_id": "default"}}, tok)[1]["project"]["id"]
admin_role = find("roles", "admin")
svc_role = find("roles", "service") or req("POST", "/roles", {"role": {"name": "service"}}, tok)[1]["role"]["id"]
users = ["neutron", "glance", "nova"] + (["octavia"] if WITH_OCTAVIA else [])
for u in users:
    uid = find("users", u)
    if uid:   # warm start: keep the password in step with the services' config files
        req("PATCH", f"/users/{uid}", {"user": {"password": SERVICE_PW}}, tok)
    else:
        uid = req("POST", "/users", {"user": {"name": u, "domain_id": "default",
                                              "password": SERVICE_PW}}, tok)[1]["user"]["id"]
    for r in (admin_role, svc_role):
        req("PUT", f"/projects/{proj}/users/{uid}/roles/{r}", token=tok)
cat = [("neutron", "network", H + ":9696"), ("glance", "image", H + ":9292"),
       ("nova", "compute", H + ":8774/v2.1")]
if WITH_OCTAVIA:
    cat.append(("octavia", "load-balancer", H + ":9876"))
for name, typ, url in cat:
    if req("GET", f"/services?type={typ}", token=tok)[1]["services"]:
        continue
    sid = req("POST", "/services", {"service": {"name": name, "type": typ}}, tok)[1]["service"]["id"]
    for itf in ("public", "internal", "admin"):
        req("POST", "/endpoints", {"endpoint": {"service_id": sid, "interface": itf, "url": url,
                                                "region_id": "RegionOne"}}, tok)
print("catalog registered:", [c[1] for c in cat])
