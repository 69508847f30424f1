"""Pure X.509 construction for Octavia's certificates: settings, passphrases, keys, the CAs and the
controller's client certificate, and the parsing helpers. No I/O, no state, no rotation logic: the
rotation plan that decides what to (re)build is :mod:`octavia_operator.builders.certificates`.
"""

from __future__ import annotations

import datetime as _dt
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Callable

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Values that appear in Octavia's docs, devstack and deployers; never accepted.
WELL_KNOWN_INSECURE = frozenset(
    {
        "insecure",
        "foobar",
        "not-secure-passphrase",
        "insecure-key-do-not-use-this-key",
    }
)

SERVER_CERTS_KEY_RE = re.compile(r"^[A-Za-z0-9_\-=]{32}$")
URLSAFE_ALPHABET = string.ascii_letters + string.digits + "-_"

SERVER_CA_CN = "Octavia Server CA"
CLIENT_CA_CN = "Octavia Client CA"
CLIENT_CN = "octavia-controller"
# Certificates are back-dated a little so that amphorae (and controllers)
# whose clock lags behind still accept them.
BACKDATE = _dt.timedelta(hours=1)

CURVES: dict[str, Callable[[], ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1,
    "P-384": ec.SECP384R1,
    "P-521": ec.SECP521R1,
}


class CertificateInputError(ValueError):
    """A user-provided CA, a passphrase or the settings cannot be used."""


# --------------------------------------------------------------------------
# Settings and passphrases
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class CertificateSettings:
    """Key and validity parameters (the spec model maps onto this)."""

    ca_validity_days: int = 3650
    client_validity_days: int = 365
    renew_before_days: int = 30
    key_type: str = "RSA"
    ca_key_size: int = 4096
    client_key_size: int = 2048
    ec_curve: str = "P-384"
    subject_organization: str = "OpenStack Octavia"
    #: A CA expiring within this many days produces a warning (a CA is never
    #: rotated automatically while it is still valid). None: renew_before_days.
    ca_warn_before_days: int | None = None

    def __post_init__(self) -> None:
        if self.key_type not in ("RSA", "ECDSA"):
            raise CertificateInputError(
                f"key_type must be 'RSA' or 'ECDSA', not {self.key_type!r}"
            )
        if self.key_type == "RSA":
            for name in ("ca_key_size", "client_key_size"):
                size = getattr(self, name)
                if not isinstance(size, int) or size < 2048 or size > 16384:
                    raise CertificateInputError(
                        f"{name} must be an RSA key size between 2048 and 16384 bits, not {size!r}"
                    )
        if self.ec_curve not in CURVES:
            raise CertificateInputError(
                f"ec_curve must be one of {sorted(CURVES)}, not {self.ec_curve!r}"
            )
        for name in ("ca_validity_days", "client_validity_days"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise CertificateInputError(f"{name} must be a positive number of days")
        if not isinstance(self.renew_before_days, int) or self.renew_before_days < 0:
            raise CertificateInputError("renew_before_days must be >= 0")
        if self.renew_before_days >= self.client_validity_days:
            # Otherwise a freshly issued client certificate would already be
            # inside its renewal window and be re-issued on every reconcile.
            raise CertificateInputError(
                f"renew_before_days ({self.renew_before_days}) must be smaller than "
                f"client_validity_days ({self.client_validity_days})"
            )
        if self.client_validity_days > self.ca_validity_days:
            raise CertificateInputError(
                "client_validity_days must not exceed ca_validity_days"
            )
        if self.ca_warn_before_days is not None and (
            not isinstance(self.ca_warn_before_days, int) or self.ca_warn_before_days < 0
        ):
            raise CertificateInputError("ca_warn_before_days must be >= 0")
        if not self.subject_organization or not isinstance(self.subject_organization, str):
            raise CertificateInputError("subject_organization must be a non-empty string")


@dataclass(frozen=True)
class Passphrases:
    """The two passphrases kept in the separate passphrase Secret.

    ``ca_key`` encrypts the CA private keys (``[certificates]
    ca_private_key_passphrase``); ``server_certs_key`` is Octavia's
    ``[certificates] server_certs_key_passphrase`` (exactly 32 URL-safe
    base64 characters; Octavia turns it into a Fernet key). Values are
    hidden from ``repr``.
    """

    ca_key: str = field(repr=False)
    server_certs_key: str = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.ca_key, str) or len(self.ca_key) < 16:
            raise CertificateInputError("the CA key passphrase must have at least 16 characters")
        if self.ca_key in WELL_KNOWN_INSECURE:
            raise CertificateInputError("the CA key passphrase is a well-known insecure default")
        if not isinstance(self.server_certs_key, str) or not SERVER_CERTS_KEY_RE.match(
            self.server_certs_key
        ):
            raise CertificateInputError(
                "server_certs_key_passphrase must be exactly 32 characters of the "
                "URL-safe base64 alphabet (A-Z a-z 0-9 - _ =)"
            )
        if self.server_certs_key in WELL_KNOWN_INSECURE:
            raise CertificateInputError(
                "server_certs_key_passphrase is a well-known insecure default"
            )


def generate_passphrases() -> Passphrases:
    """Fresh random passphrases (``secrets``): a 43-character CA passphrase
    (256 bits) and a 32-character ``server_certs_key_passphrase`` drawn from
    the URL-safe base64 alphabet (192 bits)."""
    while True:
        ca_key = secrets.token_urlsafe(32)
        server = "".join(secrets.choice(URLSAFE_ALPHABET) for _ in range(32))
        if ca_key not in WELL_KNOWN_INSECURE and server not in WELL_KNOWN_INSECURE:
            return Passphrases(ca_key=ca_key, server_certs_key=server)


def generate_heartbeat_key() -> str:
    """A random ``[health_manager] heartbeat_key`` (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


# --------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
#: ``key_factory(role, settings)`` with role one of ``"server_ca"``,
#: ``"client_ca"``, ``"client"``; returns a new private key.
KeyFactory = Callable[[str, CertificateSettings], PrivateKey]


def default_key_factory(role: str, settings: CertificateSettings) -> PrivateKey:
    """Generate a key of the configured type for ``role``."""
    if settings.key_type == "ECDSA":
        return ec.generate_private_key(CURVES[settings.ec_curve]())
    size = settings.client_key_size if role == "client" else settings.ca_key_size
    return rsa.generate_private_key(public_exponent=65537, key_size=size)


def spki(key_or_cert) -> bytes:
    pub = key_or_cert.public_key()
    return pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def encrypt_key(key: PrivateKey, passphrase: str) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode("utf-8")),
    )


def plain_key(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def key_matches_settings(key, settings: CertificateSettings, role: str) -> bool:
    if settings.key_type == "ECDSA":
        return isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(
            key.curve, CURVES[settings.ec_curve]
        )
    size = settings.client_key_size if role == "client" else settings.ca_key_size
    return isinstance(key, rsa.RSAPrivateKey) and key.key_size == size


# --------------------------------------------------------------------------
# Parsing helpers
# --------------------------------------------------------------------------

PEM_CERT_RE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)
PEM_KEY_RE = re.compile(
    rb"-----BEGIN (?:ENCRYPTED |RSA |EC )?PRIVATE KEY-----\r?\n.+?\r?\n"
    rb"-----END (?:ENCRYPTED |RSA |EC )?PRIVATE KEY-----",
    re.DOTALL,
)


def as_bytes(value) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return None


def load_certs(blob: bytes | None) -> list[x509.Certificate]:
    """Every parseable PEM certificate in ``blob`` (garbage blocks skipped)."""
    out: list[x509.Certificate] = []
    if not blob:
        return out
    for block in PEM_CERT_RE.findall(blob):
        try:
            out.append(x509.load_pem_x509_certificate(block))
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
    return out


def load_single_cert(blob: bytes | None) -> x509.Certificate | None:
    certs = load_certs(blob)
    return certs[0] if len(certs) == 1 else None


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def aware(now: _dt.datetime) -> _dt.datetime:
    if now.tzinfo is None:
        return now.replace(tzinfo=_dt.timezone.utc)
    return now.astimezone(_dt.timezone.utc)


def day(d: _dt.datetime) -> str:
    return d.strftime("%Y-%m-%d")


def ext(cert: x509.Certificate, cls):
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


def ca_cert_problem(cert: x509.Certificate, now: _dt.datetime) -> str | None:
    """Why ``cert`` cannot serve as a CA right now (None when it can)."""
    bc = ext(cert, x509.BasicConstraints)
    if bc is None or not bc.ca:
        return "it is not a CA certificate (basicConstraints CA:TRUE missing)"
    ku = ext(cert, x509.KeyUsage)
    if ku is not None and not ku.key_cert_sign:
        return "its keyUsage does not allow certificate signing (keyCertSign)"
    if not isinstance(cert.public_key(), (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        return "its key type is not supported by Octavia (use RSA or ECDSA)"
    if cert.not_valid_after_utc <= now:
        return f"it expired on {day(cert.not_valid_after_utc)}"
    if cert.not_valid_before_utc > now + BACKDATE:
        return f"it is not valid before {day(cert.not_valid_before_utc)}"
    return None


def load_encrypted_key(blob: bytes | None, passphrase: str):
    """The private key in ``blob`` decrypted with ``passphrase``, or an error."""
    if not blob:
        return None, "missing"
    try:
        key = serialization.load_pem_private_key(blob, password=passphrase.encode("utf-8"))
    except TypeError:
        return None, "not encrypted"
    except (ValueError, UnsupportedAlgorithm):
        return None, "unreadable or does not decrypt with the CA passphrase"
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        return None, "unsupported key type"
    return key, None


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


# --------------------------------------------------------------------------
# Certificate construction
# --------------------------------------------------------------------------


def subject(cn: str, settings: CertificateSettings) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, settings.subject_organization),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def make_ca(
    cn: str, key: PrivateKey, settings: CertificateSettings, now: _dt.datetime
) -> x509.Certificate:
    name = subject(cn, settings)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + _dt.timedelta(days=settings.ca_validity_days))
        # path_length=0: the CA signs end-entity certificates only (Octavia's
        # local_cert_generator issues CA:FALSE amphora certificates).
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
            critical=False,
        )
    )
    return builder.sign(key, hashes.SHA256())


def make_client_cert(
    key: PrivateKey,
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    settings: CertificateSettings,
    now: _dt.datetime,
) -> x509.Certificate:
    not_after = min(
        now + _dt.timedelta(days=settings.client_validity_days), ca_cert.not_valid_after_utc
    )
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    ca_ski = ext(ca_cert, x509.SubjectKeyIdentifier)
    if ca_ski is not None:
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    else:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject(CLIENT_CN, settings))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(max(now - BACKDATE, ca_cert.not_valid_before_utc))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=is_rsa,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        # Some verifiers (RFC 5280 profiles, e.g. cryptography's) require a SAN.
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(CLIENT_CN)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
    )
    return builder.sign(ca_key, hashes.SHA256())
