"""The controller-to-amphora TLS path, with Octavia's own code on both ends (tests only).

``server_cert_snippet``: run inside a controller container (podman exec, its mounted config): Octavia's
LocalCertGenerator signs an amphora server certificate with the operator's server CA and its passphrase,
exactly as the worker does when it builds an amphora; prints {"cert", "key"} as JSON.

``client_snippet``: run inside a controller container: Octavia's amphora REST client (the haproxy REST
driver's AmphoraAPIClient1_0, with [haproxy_amphora] client_cert and server_ca from the pod's config)
calls the amphora agent's version discovery (get_api_version: GET https://<ip>:9443/) and prints
the answer; with
OTHER_CLIENT_PEM in the environment, that client certificate is used instead of the operator's.
"""
from __future__ import annotations

CONFIG_ARGS = "['--config-file', '/etc/octavia/octavia.conf', '--config-file', '/etc/octavia/secrets.d/secrets.conf']"

server_cert_snippet = f"""
import json, sys
from octavia.common import config
config.init({CONFIG_ARGS})
from octavia.certificates.generator import local
pair = local.LocalCertGenerator.generate_cert_key_pair(cn=sys.argv[1], validity=3600)
def s(x):
    return x.decode() if isinstance(x, bytes) else x
print(json.dumps({{"cert": s(pair.certificate), "key": s(pair.private_key)}}))
"""

client_snippet = f"""
import json, os, sys
from octavia.common import config
config.init({CONFIG_ARGS})
from oslo_config import cfg
if os.environ.get("OTHER_CLIENT_PEM"):
    with open("/tmp/other-client.pem", "w") as f:
        f.write(os.environ["OTHER_CLIENT_PEM"])
    cfg.CONF.set_override("client_cert", "/tmp/other-client.pem", group="haproxy_amphora")
from octavia.amphorae.drivers.haproxy import rest_api_driver
from octavia.db import models
amp = models.Amphora(id=sys.argv[1], lb_network_ip=sys.argv[2])
client = rest_api_driver.AmphoraAPIClient1_0()
timeouts = {{"req_conn_timeout": 5, "req_read_timeout": 10, "conn_max_retries": 2, "conn_retry_interval": 1}}
try:
    body = client.get_api_version(amp, timeout_dict=timeouts)
except Exception as e:
    print(json.dumps({{"error": type(e).__name__, "detail": str(e)[:500]}}))
    sys.exit(3)
print(json.dumps({{"status": 200, "body": body}}))
"""


def agent_conf(amp_id: str, bind_host: str) -> str:
    """amphora-agent.conf as an amphora's cloud-init writes it (only what the agent reads to serve)."""
    return f"""[DEFAULT]
debug = True
[haproxy_amphora]
bind_host = {bind_host}
bind_port = 9443
base_path = /var/lib/octavia
base_cert_dir = /var/lib/octavia/certs
[health_manager]
controller_ip_port_list =
heartbeat_interval = 10
[amphora_agent]
agent_server_ca = /etc/octavia/certs/client_ca.pem
agent_server_cert = /etc/octavia/certs/server.pem
amphora_id = {amp_id}
"""


def other_ca_client_pem(cn: str = "octavia-controller") -> str:
    """A client certificate and key from a CA that is not the operator's (for the negative case)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "another CA")])
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode()
            + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode())
