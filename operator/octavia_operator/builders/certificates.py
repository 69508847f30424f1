"""Pure builder for Octavia's dual-CA certificate material.

Octavia's amphora driver uses two independent trust relations (see
docs/certificates.md):

* the *server CA* signs every amphora's server certificate (Octavia's
  ``local_cert_generator`` loads ``[certificates] ca_certificate`` and the
  encrypted ``ca_private_key`` with ``ca_private_key_passphrase``); the
  controller verifies amphorae against ``[haproxy_amphora] server_ca``;
* the *client CA* signs the controller's client certificate
  (``[haproxy_amphora] client_cert``); amphorae receive
  ``[controller_worker] client_ca`` at boot and only accept controllers whose
  certificate chains to it.

:func:`plan_certificates` takes the current data of the certificates Secret
and returns the desired data. It never performs I/O, never logs and is
idempotent: on a converged Secret it returns byte-identical data and
``changed=False``.
"""

from __future__ import annotations

import datetime as _dt
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "SERVER_CA_CERT",
    "SERVER_CA_KEY",
    "SERVER_CA_BUNDLE",
    "CLIENT_CA_CERT",
    "CLIENT_CA_KEY",
    "CLIENT_CA_BUNDLE",
    "CLIENT_CA_NEXT_CERT",
    "CLIENT_CA_NEXT_KEY",
    "CLIENT_CERT",
    "CLIENT_CERT_AND_KEY",
    "SECRET_KEYS",
    "OCTAVIA_CONFIG_FILES",
    "WELL_KNOWN_INSECURE",
    "CertificateInputError",
    "CertificateSettings",
    "Passphrases",
    "CertificatePlan",
    "KeyFactory",
    "default_key_factory",
    "generate_passphrases",
    "generate_heartbeat_key",
    "plan_certificates",
    "describe",
]

# --------------------------------------------------------------------------
# Secret layout
# --------------------------------------------------------------------------

SERVER_CA_CERT = "server_ca.cert.pem"
SERVER_CA_KEY = "server_ca.key.pem"
SERVER_CA_BUNDLE = "server_ca.bundle.pem"
CLIENT_CA_CERT = "client_ca.cert.pem"
CLIENT_CA_KEY = "client_ca.key.pem"
CLIENT_CA_BUNDLE = "client_ca.bundle.pem"
# Present only between the two steps of a client-CA rollover.
CLIENT_CA_NEXT_CERT = "client_ca.next.cert.pem"
CLIENT_CA_NEXT_KEY = "client_ca.next.key.pem"
CLIENT_CERT = "client.cert.pem"
CLIENT_CERT_AND_KEY = "client.cert-and-key.pem"

SECRET_KEYS = (
    SERVER_CA_CERT,
    SERVER_CA_KEY,
    SERVER_CA_BUNDLE,
    CLIENT_CA_CERT,
    CLIENT_CA_KEY,
    CLIENT_CA_BUNDLE,
    CLIENT_CA_NEXT_CERT,
    CLIENT_CA_NEXT_KEY,
    CLIENT_CERT,
    CLIENT_CERT_AND_KEY,
)

#: Which Secret key backs which octavia.conf option (files mounted by the
#: config renderer). ``ca_private_key_passphrase`` is ``Passphrases.ca_key``.
OCTAVIA_CONFIG_FILES: dict[tuple[str, str], str] = {
    ("certificates", "ca_certificate"): SERVER_CA_CERT,
    ("certificates", "ca_private_key"): SERVER_CA_KEY,
    ("haproxy_amphora", "server_ca"): SERVER_CA_BUNDLE,
    ("haproxy_amphora", "client_cert"): CLIENT_CERT_AND_KEY,
    ("controller_worker", "client_ca"): CLIENT_CA_BUNDLE,
}

#: Values that appear in Octavia's docs, devstack and deployers; never accepted.
WELL_KNOWN_INSECURE = frozenset(
    {
        "insecure",
        "foobar",
        "not-secure-passphrase",
        "insecure-key-do-not-use-this-key",
    }
)

_SERVER_CERTS_KEY_RE = re.compile(r"^[A-Za-z0-9_\-=]{32}$")
_URLSAFE_ALPHABET = string.ascii_letters + string.digits + "-_"

_SERVER_CA_CN = "Octavia Server CA"
_CLIENT_CA_CN = "Octavia Client CA"
_CLIENT_CN = "octavia-controller"
# Certificates are back-dated a little so that amphorae (and controllers)
# whose clock lags behind still accept them.
_BACKDATE = _dt.timedelta(hours=1)

_CURVES: dict[str, Callable[[], ec.EllipticCurve]] = {
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
        if self.ec_curve not in _CURVES:
            raise CertificateInputError(
                f"ec_curve must be one of {sorted(_CURVES)}, not {self.ec_curve!r}"
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
        if not isinstance(self.server_certs_key, str) or not _SERVER_CERTS_KEY_RE.match(
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
        server = "".join(secrets.choice(_URLSAFE_ALPHABET) for _ in range(32))
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
        return ec.generate_private_key(_CURVES[settings.ec_curve]())
    size = settings.client_key_size if role == "client" else settings.ca_key_size
    return rsa.generate_private_key(public_exponent=65537, key_size=size)


def _spki(key_or_cert) -> bytes:
    pub = key_or_cert.public_key()
    return pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _encrypt_key(key: PrivateKey, passphrase: str) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode("utf-8")),
    )


def _plain_key(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _key_matches_settings(key, settings: CertificateSettings, role: str) -> bool:
    if settings.key_type == "ECDSA":
        return isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(
            key.curve, _CURVES[settings.ec_curve]
        )
    size = settings.client_key_size if role == "client" else settings.ca_key_size
    return isinstance(key, rsa.RSAPrivateKey) and key.key_size == size


# --------------------------------------------------------------------------
# Parsing helpers
# --------------------------------------------------------------------------

_PEM_CERT_RE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)
_PEM_KEY_RE = re.compile(
    rb"-----BEGIN (?:ENCRYPTED |RSA |EC )?PRIVATE KEY-----\r?\n.+?\r?\n"
    rb"-----END (?:ENCRYPTED |RSA |EC )?PRIVATE KEY-----",
    re.DOTALL,
)


def _as_bytes(value) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return None


def _load_certs(blob: bytes | None) -> list[x509.Certificate]:
    """Every parseable PEM certificate in ``blob`` (garbage blocks skipped)."""
    out: list[x509.Certificate] = []
    if not blob:
        return out
    for block in _PEM_CERT_RE.findall(blob):
        try:
            out.append(x509.load_pem_x509_certificate(block))
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
    return out


def _load_single_cert(blob: bytes | None) -> x509.Certificate | None:
    certs = _load_certs(blob)
    return certs[0] if len(certs) == 1 else None


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _aware(now: _dt.datetime) -> _dt.datetime:
    if now.tzinfo is None:
        return now.replace(tzinfo=_dt.timezone.utc)
    return now.astimezone(_dt.timezone.utc)


def _day(d: _dt.datetime) -> str:
    return d.strftime("%Y-%m-%d")


def _ext(cert: x509.Certificate, cls):
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


def _ca_cert_problem(cert: x509.Certificate, now: _dt.datetime) -> str | None:
    """Why ``cert`` cannot serve as a CA right now (None when it can)."""
    bc = _ext(cert, x509.BasicConstraints)
    if bc is None or not bc.ca:
        return "it is not a CA certificate (basicConstraints CA:TRUE missing)"
    ku = _ext(cert, x509.KeyUsage)
    if ku is not None and not ku.key_cert_sign:
        return "its keyUsage does not allow certificate signing (keyCertSign)"
    if not isinstance(cert.public_key(), (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        return "its key type is not supported by Octavia (use RSA or ECDSA)"
    if cert.not_valid_after_utc <= now:
        return f"it expired on {_day(cert.not_valid_after_utc)}"
    if cert.not_valid_before_utc > now + _BACKDATE:
        return f"it is not valid before {_day(cert.not_valid_before_utc)}"
    return None


def _load_encrypted_key(blob: bytes | None, passphrase: str):
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


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
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


def _name(cn: str, settings: CertificateSettings) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, settings.subject_organization),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _make_ca(
    cn: str, key: PrivateKey, settings: CertificateSettings, now: _dt.datetime
) -> x509.Certificate:
    name = _name(cn, settings)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
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


def _make_client_cert(
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
    ca_ski = _ext(ca_cert, x509.SubjectKeyIdentifier)
    if ca_ski is not None:
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    else:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(_CLIENT_CN, settings))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(max(now - _BACKDATE, ca_cert.not_valid_before_utc))
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
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(_CLIENT_CN)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
    )
    return builder.sign(ca_key, hashes.SHA256())


# --------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------


@dataclass
class CertificatePlan:
    """Desired Secret data plus what was done and why (no secrets inside)."""

    data: dict[str, bytes]
    changed: bool
    actions: list[str] = field(default_factory=list)
    expiry: dict[str, _dt.datetime] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _CA:
    cert: x509.Certificate
    key: PrivateKey
    extra: list[x509.Certificate]  # chain / additionally trusted (user CAs)
    user: bool


def _load_user_ca(secret: Mapping[str, bytes], role: str, now: _dt.datetime) -> _CA:
    label = f"user-provided {role} CA Secret"
    if not isinstance(secret, Mapping):
        raise CertificateInputError(f"{label}: expected a mapping of Secret data")
    crt = _as_bytes(secret.get("tls.crt"))
    key_blob = _as_bytes(secret.get("tls.key"))
    passphrase = _as_bytes(secret.get("passphrase"))
    if not crt:
        raise CertificateInputError(f"{label}: key 'tls.crt' is missing or empty")
    if not key_blob:
        raise CertificateInputError(f"{label}: key 'tls.key' is missing or empty")
    certs = _load_certs(crt)
    if not certs:
        raise CertificateInputError(f"{label}: 'tls.crt' contains no PEM certificate")
    cert = certs[0]
    problem = _ca_cert_problem(cert, now)
    if problem is None and _ext(cert, x509.KeyUsage) is None:
        problem = "it has no keyUsage extension (strict X.509 verification rejects such a CA)"
    if problem is None and _ext(cert, x509.SubjectKeyIdentifier) is None:
        problem = (
            "it has no subjectKeyIdentifier extension (strict X.509 verification "
            "rejects such a CA)"
        )
    if problem:
        raise CertificateInputError(f"{label}: 'tls.crt' cannot be used because {problem}")
    try:
        key = serialization.load_pem_private_key(key_blob, password=passphrase or None)
    except TypeError as exc:
        if passphrase:
            raise CertificateInputError(
                f"{label}: 'passphrase' is set but 'tls.key' is not encrypted"
            ) from None
        raise CertificateInputError(
            f"{label}: 'tls.key' is encrypted but the Secret has no 'passphrase' key"
        ) from exc
    except (ValueError, UnsupportedAlgorithm):
        if passphrase:
            raise CertificateInputError(
                f"{label}: 'tls.key' is not a PEM private key or does not decrypt "
                "with the given 'passphrase'"
            ) from None
        raise CertificateInputError(f"{label}: 'tls.key' is not a readable PEM private key") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise CertificateInputError(f"{label}: only RSA and ECDSA keys are supported")
    if _spki(key) != _spki(cert):
        raise CertificateInputError(f"{label}: 'tls.key' does not match the certificate in 'tls.crt'")
    extra = certs[1:] + _load_certs(_as_bytes(secret.get("ca.crt")))
    return _CA(cert=cert, key=key, extra=extra, user=True)


def _bundle(
    first: Iterable[x509.Certificate],
    previous: Iterable[x509.Certificate],
    now: _dt.datetime,
) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """(certs in bundle order, previous CAs kept); duplicates and unusable
    previous certificates dropped."""
    seen: set[bytes] = set()
    out: list[x509.Certificate] = []
    for cert in first:
        d = _der(cert)
        if d not in seen:
            seen.add(d)
            out.append(cert)
    kept: list[x509.Certificate] = []
    for cert in previous:
        d = _der(cert)
        if d in seen or _ca_cert_problem(cert, now) is not None:
            continue
        seen.add(d)
        out.append(cert)
        kept.append(cert)
    return out, kept


def _bundle_bytes(certs: list[x509.Certificate], existing: bytes | None) -> bytes:
    """Canonical PEM bundle; the existing bytes when they hold exactly the
    same certificates in the same order (keeps the plan byte-identical)."""
    if existing is not None:
        current = _load_certs(existing)
        if [_der(c) for c in current] == [_der(c) for c in certs] and len(
            _PEM_CERT_RE.findall(existing)
        ) == len(certs):
            return existing
    return b"".join(_pem(c) for c in certs)


def _cert_bytes(cert: x509.Certificate, existing: bytes | None) -> bytes:
    if existing is not None:
        old = _load_single_cert(existing)
        if old is not None and _der(old) == _der(cert):
            return existing
    return _pem(cert)


class _Planner:
    def __init__(self, existing, passphrases, settings, now, key_factory):
        self.old: dict[str, bytes] = {}
        for k, v in (existing or {}).items():
            b = _as_bytes(v)
            if b is not None:
                self.old[k] = b
        self.pp: Passphrases = passphrases
        self.s: CertificateSettings = settings
        self.now = now
        self.kf: KeyFactory = key_factory
        self.data: dict[str, bytes] = {}
        self.actions: list[str] = []
        self.warnings: list[str] = []
        self.expiry: dict[str, _dt.datetime] = {}

    # -- generated CA validation ------------------------------------------
    def _stored_ca(self, cert_key: str, key_key: str) -> tuple[_CA | None, str, x509.Certificate | None]:
        """(valid CA or None, reason when invalid, parseable old cert)."""
        blob = self.old.get(cert_key)
        if not blob:
            return None, "missing", None
        cert = _load_single_cert(blob)
        if cert is None:
            return None, "unparseable certificate", None
        problem = _ca_cert_problem(cert, self.now)
        if problem:
            return None, problem, cert
        key, why = _load_encrypted_key(self.old.get(key_key), self.pp.ca_key)
        if key is None:
            return None, f"private key {why}", cert
        if _spki(key) != _spki(cert):
            return None, "private key does not match the certificate", cert
        return _CA(cert=cert, key=key, extra=[], user=False), "", cert

    def _new_ca(self, role: str, cn: str) -> _CA:
        key = self.kf(role, self.s)
        return _CA(cert=_make_ca(cn, key, self.s, self.now), key=key, extra=[], user=False)

    def _store_ca_key(self, ca: _CA, key_key: str, label: str) -> None:
        """Keep the stored encrypted key if it is this CA's key and decrypts."""
        key, _ = _load_encrypted_key(self.old.get(key_key), self.pp.ca_key)
        if key is not None and _spki(key) == _spki(ca.cert):
            self.data[key_key] = self.old[key_key]
        else:
            self.data[key_key] = _encrypt_key(ca.key, self.pp.ca_key)
            if ca.user:
                self.actions.append(
                    f"stored the {label} key encrypted with the operator's CA passphrase"
                )

    def _warn_ca_expiry(self, ca: _CA, label: str, hint: str) -> None:
        left = ca.cert.not_valid_after_utc - self.now
        days = self.s.ca_warn_before_days
        if days is None:
            days = self.s.renew_before_days
        if left <= _dt.timedelta(days=days):
            self.warnings.append(
                f"{label} expires on {_day(ca.cert.not_valid_after_utc)} "
                f"({max(left.days, 0)} days left); {hint}"
            )

    # -- server CA ---------------------------------------------------------
    def server_ca(self, user: Mapping | None, rotate: bool, retire: bool) -> _CA:
        old_cert = _load_single_cert(self.old.get(SERVER_CA_CERT))
        if user is not None:
            ca = _load_user_ca(user, "server", self.now)
            if old_cert is None or _der(old_cert) != _der(ca.cert):
                self.actions.append("using the user-provided server CA")
            else:
                self.actions.append("kept the user-provided server CA")
            if rotate:
                self.warnings.append(
                    "server CA rotation requested but the server CA is user-provided: "
                    "rotate it in the user's Secret instead"
                )
        else:
            stored, reason, _ = self._stored_ca(SERVER_CA_CERT, SERVER_CA_KEY)
            if stored is not None and not rotate:
                ca = stored
                self.actions.append(
                    f"kept server CA (expires {_day(ca.cert.not_valid_after_utc)})"
                )
            else:
                ca = self._new_ca("server_ca", _SERVER_CA_CN)
                if stored is not None:
                    self.actions.append(
                        "rotated server CA on request; the previous server CA stays "
                        "trusted in the server CA bundle"
                    )
                else:
                    self.actions.append(f"generated server CA ({reason})")
                    if old_cert is not None and _ca_cert_problem(old_cert, self.now) is None:
                        self.warnings.append(
                            f"the server CA was replaced ({reason}); the previous server CA "
                            "stays trusted in the server CA bundle"
                        )
        self.data[SERVER_CA_CERT] = _cert_bytes(ca.cert, self.old.get(SERVER_CA_CERT))
        self._store_ca_key(ca, SERVER_CA_KEY, "user-provided server CA")

        previous = [] if retire else (
            ([old_cert] if old_cert is not None else [])
            + _load_certs(self.old.get(SERVER_CA_BUNDLE))
        )
        certs, kept = _bundle([ca.cert, *ca.extra], previous, self.now)
        if retire:
            dropped = [
                c
                for c in _load_certs(self.old.get(SERVER_CA_BUNDLE))
                if _der(c) not in {_der(x) for x in certs}
            ]
            if dropped:
                self.actions.append(
                    f"retired {len(dropped)} previous server CA(s) from the server CA bundle"
                )
        elif kept:
            self.actions.append(
                f"kept {len(kept)} previous server CA(s) trusted in the server CA bundle"
            )
        self.data[SERVER_CA_BUNDLE] = _bundle_bytes(certs, self.old.get(SERVER_CA_BUNDLE))
        self.expiry["serverCA"] = ca.cert.not_valid_after_utc
        self._warn_ca_expiry(
            ca,
            "server CA",
            "rotate it (see docs/certificates.md, 'Server CA rollover')"
            if not ca.user
            else "replace the user-provided server CA",
        )
        return ca

    # -- client CA ---------------------------------------------------------
    def client_ca(self, user: Mapping | None, rotate: bool, retire: bool) -> _CA:
        old_cert = _load_single_cert(self.old.get(CLIENT_CA_CERT))
        staged: _CA | None = None
        replaced: list[x509.Certificate] = []
        if user is not None:
            ca = _load_user_ca(user, "client", self.now)
            if old_cert is None or _der(old_cert) != _der(ca.cert):
                self.actions.append("using the user-provided client CA")
                if old_cert is not None:
                    replaced.append(old_cert)
            else:
                self.actions.append("kept the user-provided client CA")
            if rotate:
                self.warnings.append(
                    "client CA rotation requested but the client CA is user-provided: "
                    "add the new CA to 'ca.crt' of the user's Secret, fail over the "
                    "amphorae, then switch 'tls.crt'/'tls.key'"
                )
            if CLIENT_CA_NEXT_CERT in self.old or CLIENT_CA_NEXT_KEY in self.old:
                self.actions.append("dropped the staged client CA (the client CA is user-provided)")
        else:
            stored, reason, _ = self._stored_ca(CLIENT_CA_CERT, CLIENT_CA_KEY)
            if CLIENT_CA_NEXT_CERT in self.old or CLIENT_CA_NEXT_KEY in self.old:
                staged, sreason, _ = self._stored_ca(CLIENT_CA_NEXT_CERT, CLIENT_CA_NEXT_KEY)
                if staged is None:
                    self.actions.append(f"dropped the staged client CA ({sreason})")
            if stored is None:
                if staged is not None:
                    ca, staged = staged, None
                    self.actions.append(
                        f"promoted the staged client CA (current client CA {reason})"
                    )
                else:
                    ca = self._new_ca("client_ca", _CLIENT_CA_CN)
                    self.actions.append(f"generated client CA ({reason})")
                if old_cert is not None:
                    replaced.append(old_cert)
                    self.warnings.append(
                        f"the client CA was replaced ({reason}): amphorae booted before "
                        "this change trust only the previous client CA and will refuse "
                        "the controller until they are failed over"
                    )
            elif rotate and staged is not None:
                ca, staged = staged, None
                replaced.append(stored.cert)
                self.actions.append(
                    "promoted the staged client CA; the controller certificate is now "
                    "issued by it and the previous client CA stays in the client CA bundle"
                )
            elif rotate:
                ca = stored
                staged = self._new_ca("client_ca", _CLIENT_CA_CN)
                self.actions.append(
                    "staged a new client CA in the client CA bundle (step 1 of 2)"
                )
                self.warnings.append(
                    "client CA rollover step 1 done: fail over every amphora booted "
                    "before now so that it receives the new client CA bundle, then "
                    "request the client CA rotation again to switch the controller "
                    "certificate (step 2)"
                )
            else:
                ca = stored
                self.actions.append(
                    f"kept client CA (expires {_day(ca.cert.not_valid_after_utc)})"
                )
            if staged is not None:
                self.data[CLIENT_CA_NEXT_CERT] = _cert_bytes(
                    staged.cert, self.old.get(CLIENT_CA_NEXT_CERT)
                )
                self._store_ca_key(staged, CLIENT_CA_NEXT_KEY, "staged client CA")
                self.expiry["stagedClientCA"] = staged.cert.not_valid_after_utc
        self.data[CLIENT_CA_CERT] = _cert_bytes(ca.cert, self.old.get(CLIENT_CA_CERT))
        if not ca.user:
            self._store_ca_key(ca, CLIENT_CA_KEY, "client CA")

        first = [ca.cert] + ([staged.cert] if staged is not None else []) + ca.extra
        previous = [] if retire else replaced + _load_certs(self.old.get(CLIENT_CA_BUNDLE))
        certs, kept = _bundle(first, previous, self.now)
        if retire:
            dropped = [
                c
                for c in _load_certs(self.old.get(CLIENT_CA_BUNDLE))
                if _der(c) not in {_der(x) for x in certs}
            ]
            if dropped:
                self.actions.append(
                    f"retired {len(dropped)} previous client CA(s) from the client CA bundle"
                )
        elif kept:
            self.actions.append(
                f"kept {len(kept)} previous client CA(s) trusted in the client CA bundle"
            )
        self.data[CLIENT_CA_BUNDLE] = _bundle_bytes(certs, self.old.get(CLIENT_CA_BUNDLE))
        self.expiry["clientCA"] = ca.cert.not_valid_after_utc
        self._warn_ca_expiry(
            ca,
            "client CA",
            "plan a client CA rollover (see docs/certificates.md, 'Client CA rollover')"
            if not ca.user
            else "replace the user-provided client CA (see docs/certificates.md)",
        )
        return ca

    # -- controller client certificate -------------------------------------
    def _stored_client(self, ca: _CA) -> tuple[x509.Certificate | None, PrivateKey | None, str]:
        blob = self.old.get(CLIENT_CERT_AND_KEY)
        if not blob:
            return None, None, "missing"
        certs = _load_certs(blob)
        keys = _PEM_KEY_RE.findall(blob)
        if len(certs) != 1 or len(keys) != 1:
            return None, None, "unparseable certificate and key"
        cert = certs[0]
        try:
            key = serialization.load_pem_private_key(keys[0], password=None)
        except TypeError:
            return None, None, "private key is encrypted (Octavia needs it unencrypted)"
        except (ValueError, UnsupportedAlgorithm):
            return None, None, "unparseable private key"
        if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
            return None, None, "unsupported key type"
        if _spki(key) != _spki(cert):
            return None, None, "private key does not match the certificate"
        separate = _load_single_cert(self.old.get(CLIENT_CERT))
        if separate is None or _der(separate) != _der(cert):
            return None, None, f"{CLIENT_CERT} does not hold the same certificate"
        if not _issued_by(cert, ca.cert):
            return None, None, "not signed by the current client CA"
        bc = _ext(cert, x509.BasicConstraints)
        if bc is None or bc.ca:
            return None, None, "wrong basicConstraints (must be CA:FALSE)"
        ku = _ext(cert, x509.KeyUsage)
        if ku is None or not ku.digital_signature:
            return None, None, "wrong key usage (digitalSignature missing)"
        eku = _ext(cert, x509.ExtendedKeyUsage)
        if eku is None or ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
            return None, None, "wrong extended key usage (clientAuth missing)"
        if cert.not_valid_after_utc <= self.now:
            return None, None, f"expired on {_day(cert.not_valid_after_utc)}"
        if not _key_matches_settings(key, self.s, "client"):
            return None, None, "key type or size differs from the settings"
        return cert, key, ""

    def client_cert(self, ca: _CA) -> None:
        cert, key, reason = self._stored_client(ca)
        window = _dt.timedelta(days=self.s.renew_before_days)
        if cert is not None:
            expires = cert.not_valid_after_utc
            in_window = expires - self.now <= window
            can_extend = expires < ca.cert.not_valid_after_utc
            if in_window and can_extend:
                verb = f"renewed client certificate (expires {_day(expires)}, inside {self.s.renew_before_days}-day window)"
                cert = None
            else:
                self.actions.append(f"kept client certificate (expires {_day(expires)})")
                if in_window:
                    self.warnings.append(
                        f"the client certificate expires on {_day(expires)} together with "
                        "its client CA and cannot be renewed beyond it: roll the client CA over"
                    )
        else:
            verb = f"generated client certificate ({reason})"
        if cert is None:
            key = self.kf("client", self.s)
            cert = _make_client_cert(key, ca.cert, ca.key, self.s, self.now)
            self.actions.append(verb)
            if cert.not_valid_after_utc == ca.cert.not_valid_after_utc:
                self.warnings.append(
                    f"the client certificate validity was shortened to the client CA's "
                    f"expiry ({_day(cert.not_valid_after_utc)})"
                )
            self.data[CLIENT_CERT] = _pem(cert)
            self.data[CLIENT_CERT_AND_KEY] = _pem(cert) + _plain_key(key)
        else:
            self.data[CLIENT_CERT] = self.old[CLIENT_CERT]
            self.data[CLIENT_CERT_AND_KEY] = self.old[CLIENT_CERT_AND_KEY]
        self.expiry["clientCertificate"] = cert.not_valid_after_utc


def plan_certificates(
    existing: Mapping[str, bytes] | None,
    passphrases: Passphrases,
    settings: CertificateSettings,
    now: _dt.datetime,
    *,
    user_server_ca: Mapping[str, bytes] | None = None,
    user_client_ca: Mapping[str, bytes] | None = None,
    rotate_server_ca: bool = False,
    retire_old_server_cas: bool = False,
    rotate_client_ca: bool = False,
    retire_old_client_cas: bool = False,
    key_factory: KeyFactory | None = None,
) -> CertificatePlan:
    """Compute the desired data of the certificates Secret.

    ``existing`` is the Secret's current data (values bytes; may be None,
    partial or garbage). ``rotate_*`` and ``retire_*`` are one-shot requests:
    the caller must stop passing them once the resulting data is written
    (otherwise every reconcile rotates again). ``user_server_ca`` /
    ``user_client_ca`` are the data of user Secrets with ``tls.crt``,
    ``tls.key``, optional ``passphrase`` and optional ``ca.crt`` (extra
    certificates to trust: the CA's chain or the next CA); they are read,
    never modified. Raises :class:`CertificateInputError` for unusable user
    CAs. ``key_factory(role, settings)`` replaces key generation (tests).
    """
    if not isinstance(passphrases, Passphrases):
        raise TypeError("passphrases must be a Passphrases instance")
    if not isinstance(settings, CertificateSettings):
        raise TypeError("settings must be a CertificateSettings instance")
    now = _aware(now)
    if user_server_ca is not None and user_client_ca is not None:
        s_certs = _load_certs(_as_bytes(user_server_ca.get("tls.crt")))
        c_certs = _load_certs(_as_bytes(user_client_ca.get("tls.crt")))
        if s_certs and c_certs and _spki(s_certs[0]) == _spki(c_certs[0]):
            raise CertificateInputError(
                "the user-provided server CA and client CA use the same key: "
                "Octavia needs two separate CAs"
            )
    p = _Planner(existing, passphrases, settings, now, key_factory or default_key_factory)
    p.server_ca(user_server_ca, rotate_server_ca, retire_old_server_cas)
    client_ca = p.client_ca(user_client_ca, rotate_client_ca, retire_old_client_cas)
    p.client_cert(client_ca)
    for k in sorted(set(p.old) - set(p.data)):
        if k == CLIENT_CA_KEY:
            p.actions.append("removed the stored client CA key (the client CA is user-provided)")
        elif k not in (CLIENT_CA_NEXT_CERT, CLIENT_CA_NEXT_KEY):
            p.actions.append(f"removed unexpected key {k!r}")
    changed = existing is None or p.old != p.data or set(existing) != set(p.data)
    return CertificatePlan(
        data=p.data, changed=changed, actions=p.actions, expiry=p.expiry, warnings=p.warnings
    )


# --------------------------------------------------------------------------
# Status helper
# --------------------------------------------------------------------------


def _cert_info(cert: x509.Certificate) -> dict:
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "notBefore": cert.not_valid_before_utc.isoformat(),
        "notAfter": cert.not_valid_after_utc.isoformat(),
        "sha256Fingerprint": _fingerprint(cert),
    }


def describe(data: Mapping[str, bytes] | None) -> dict:
    """Public facts about the Secret's certificates for the status: subjects,
    serials, fingerprints and ISO validity dates. Never keys or passphrases."""
    data = data or {}
    out: dict = {}

    def one(key: str) -> dict:
        blob = _as_bytes(data.get(key))
        if not blob:
            return {"error": "missing"}
        cert = _load_single_cert(blob)
        if cert is None:
            return {"error": "unparseable"}
        return _cert_info(cert)

    out["serverCA"] = one(SERVER_CA_CERT)
    out["clientCA"] = one(CLIENT_CA_CERT)
    out["clientCertificate"] = one(CLIENT_CERT)
    if data.get(CLIENT_CA_NEXT_CERT):
        out["stagedClientCA"] = one(CLIENT_CA_NEXT_CERT)
    out["serverCABundle"] = [_cert_info(c) for c in _load_certs(_as_bytes(data.get(SERVER_CA_BUNDLE)))]
    out["clientCABundle"] = [_cert_info(c) for c in _load_certs(_as_bytes(data.get(CLIENT_CA_BUNDLE)))]
    return out
