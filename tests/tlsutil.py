"""Test PKI: a CA and certificates it signs (ECDSA P-256), written as PEM files."""
from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path


def make_pki(d: Path, server_names: tuple[str, ...] = ("127.0.0.1", "localhost")) -> dict[str, Path]:
    """``ca``, ``server.crt``/``server.key`` (SANs: ``server_names``, IPs or DNS names) and
    ``client.crt``/``client.key``, all signed by the CA, world-readable files in ``d``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    out = {"ca": d / "ca.crt"}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def san(name: str) -> x509.GeneralName:
        try:
            return x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            return x509.DNSName(name)
    for who, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"test {who}")]))
                   .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if who == "server":
            builder = builder.add_extension(x509.SubjectAlternativeName([san(x) for x in server_names]), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        out[f"{who}.crt"], out[f"{who}.key"] = d / f"{who}.crt", d / f"{who}.key"
        out[f"{who}.crt"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[f"{who}.key"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                        serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    for p in d.iterdir():
        p.chmod(0o644)
    return out
