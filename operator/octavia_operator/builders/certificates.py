"""The rotation plan of Octavia's dual-CA certificate material (pure: Secret data in, Secret data out).

What to keep, renew, stage, promote or retire lives here; how a key or a certificate is built and
parsed lives in :mod:`octavia_operator.builders.pki`.

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
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from . import pki

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
    "CertificatePlan",
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
#: config renderer). ``ca_private_key_passphrase`` is ``pki.Passphrases.ca_key``.
OCTAVIA_CONFIG_FILES: dict[tuple[str, str], str] = {
    ("certificates", "ca_certificate"): SERVER_CA_CERT,
    ("certificates", "ca_private_key"): SERVER_CA_KEY,
    ("haproxy_amphora", "server_ca"): SERVER_CA_BUNDLE,
    ("haproxy_amphora", "client_cert"): CLIENT_CERT_AND_KEY,
    ("controller_worker", "client_ca"): CLIENT_CA_BUNDLE,
}

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
    key: pki.PrivateKey
    extra: list[x509.Certificate]  # chain / additionally trusted (user CAs)
    user: bool


def _load_user_ca(secret: Mapping[str, bytes], role: str, now: _dt.datetime) -> _CA:
    label = f"user-provided {role} CA Secret"
    if not isinstance(secret, Mapping):
        raise pki.CertificateInputError(f"{label}: expected a mapping of Secret data")
    crt = pki.as_bytes(secret.get("tls.crt"))
    key_blob = pki.as_bytes(secret.get("tls.key"))
    passphrase = pki.as_bytes(secret.get("passphrase"))
    if not crt:
        raise pki.CertificateInputError(f"{label}: key 'tls.crt' is missing or empty")
    if not key_blob:
        raise pki.CertificateInputError(f"{label}: key 'tls.key' is missing or empty")
    certs = pki.load_certs(crt)
    if not certs:
        raise pki.CertificateInputError(f"{label}: 'tls.crt' contains no PEM certificate")
    cert = certs[0]
    problem = pki.ca_cert_problem(cert, now)
    if problem is None and pki.ext(cert, x509.KeyUsage) is None:
        problem = "it has no keyUsage extension (strict X.509 verification rejects such a CA)"
    if problem is None and pki.ext(cert, x509.SubjectKeyIdentifier) is None:
        problem = (
            "it has no subjectKeyIdentifier extension (strict X.509 verification "
            "rejects such a CA)"
        )
    if problem:
        raise pki.CertificateInputError(f"{label}: 'tls.crt' cannot be used because {problem}")
    try:
        key = serialization.load_pem_private_key(key_blob, password=passphrase or None)
    except TypeError as exc:
        if passphrase:
            raise pki.CertificateInputError(
                f"{label}: 'passphrase' is set but 'tls.key' is not encrypted"
            ) from None
        raise pki.CertificateInputError(
            f"{label}: 'tls.key' is encrypted but the Secret has no 'passphrase' key"
        ) from exc
    except (ValueError, UnsupportedAlgorithm):
        if passphrase:
            raise pki.CertificateInputError(
                f"{label}: 'tls.key' is not a PEM private key or does not decrypt "
                "with the given 'passphrase'"
            ) from None
        raise pki.CertificateInputError(f"{label}: 'tls.key' is not a readable PEM private key") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise pki.CertificateInputError(f"{label}: only RSA and ECDSA keys are supported")
    if pki.spki(key) != pki.spki(cert):
        raise pki.CertificateInputError(f"{label}: 'tls.key' does not match the certificate in 'tls.crt'")
    extra = certs[1:] + pki.load_certs(pki.as_bytes(secret.get("ca.crt")))
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
        d = pki.der(cert)
        if d not in seen:
            seen.add(d)
            out.append(cert)
    kept: list[x509.Certificate] = []
    for cert in previous:
        d = pki.der(cert)
        if d in seen or pki.ca_cert_problem(cert, now) is not None:
            continue
        seen.add(d)
        out.append(cert)
        kept.append(cert)
    return out, kept


def _bundle_bytes(certs: list[x509.Certificate], existing: bytes | None) -> bytes:
    """Canonical PEM bundle; the existing bytes when they hold exactly the
    same certificates in the same order (keeps the plan byte-identical)."""
    if existing is not None:
        current = pki.load_certs(existing)
        if [pki.der(c) for c in current] == [pki.der(c) for c in certs] and len(
            pki.PEM_CERT_RE.findall(existing)
        ) == len(certs):
            return existing
    return b"".join(pki.pem(c) for c in certs)


def _cert_bytes(cert: x509.Certificate, existing: bytes | None) -> bytes:
    if existing is not None:
        old = pki.load_single_cert(existing)
        if old is not None and pki.der(old) == pki.der(cert):
            return existing
    return pki.pem(cert)


class _Planner:
    def __init__(self, existing, passphrases, settings, now, key_factory):
        self.old: dict[str, bytes] = {}
        for k, v in (existing or {}).items():
            b = pki.as_bytes(v)
            if b is not None:
                self.old[k] = b
        self.pp: pki.Passphrases = passphrases
        self.s: pki.CertificateSettings = settings
        self.now = now
        self.kf: pki.KeyFactory = key_factory
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
        cert = pki.load_single_cert(blob)
        if cert is None:
            return None, "unparseable certificate", None
        problem = pki.ca_cert_problem(cert, self.now)
        if problem:
            return None, problem, cert
        key, why = pki.load_encrypted_key(self.old.get(key_key), self.pp.ca_key)
        if key is None:
            return None, f"private key {why}", cert
        if pki.spki(key) != pki.spki(cert):
            return None, "private key does not match the certificate", cert
        return _CA(cert=cert, key=key, extra=[], user=False), "", cert

    def _new_ca(self, role: str, cn: str) -> _CA:
        key = self.kf(role, self.s)
        return _CA(cert=pki.make_ca(cn, key, self.s, self.now), key=key, extra=[], user=False)

    def _store_ca_key(self, ca: _CA, key_key: str, label: str) -> None:
        """Keep the stored encrypted key if it is this CA's key and decrypts."""
        key, _ = pki.load_encrypted_key(self.old.get(key_key), self.pp.ca_key)
        if key is not None and pki.spki(key) == pki.spki(ca.cert):
            self.data[key_key] = self.old[key_key]
        else:
            self.data[key_key] = pki.encrypt_key(ca.key, self.pp.ca_key)
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
                f"{label} expires on {pki.day(ca.cert.not_valid_after_utc)} "
                f"({max(left.days, 0)} days left); {hint}"
            )

    # -- server CA ---------------------------------------------------------
    def server_ca(self, user: Mapping | None, rotate: bool, retire: bool) -> _CA:
        old_cert = pki.load_single_cert(self.old.get(SERVER_CA_CERT))
        if user is not None:
            ca = _load_user_ca(user, "server", self.now)
            if old_cert is None or pki.der(old_cert) != pki.der(ca.cert):
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
                    f"kept server CA (expires {pki.day(ca.cert.not_valid_after_utc)})"
                )
            else:
                ca = self._new_ca("server_ca", pki.SERVER_CA_CN)
                if stored is not None:
                    self.actions.append(
                        "rotated server CA on request; the previous server CA stays "
                        "trusted in the server CA bundle"
                    )
                else:
                    self.actions.append(f"generated server CA ({reason})")
                    if old_cert is not None and pki.ca_cert_problem(old_cert, self.now) is None:
                        self.warnings.append(
                            f"the server CA was replaced ({reason}); the previous server CA "
                            "stays trusted in the server CA bundle"
                        )
        self.data[SERVER_CA_CERT] = _cert_bytes(ca.cert, self.old.get(SERVER_CA_CERT))
        self._store_ca_key(ca, SERVER_CA_KEY, "user-provided server CA")

        previous = [] if retire else (
            ([old_cert] if old_cert is not None else [])
            + pki.load_certs(self.old.get(SERVER_CA_BUNDLE))
        )
        certs, kept = _bundle([ca.cert, *ca.extra], previous, self.now)
        if retire:
            dropped = [
                c
                for c in pki.load_certs(self.old.get(SERVER_CA_BUNDLE))
                if pki.der(c) not in {pki.der(x) for x in certs}
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
        old_cert = pki.load_single_cert(self.old.get(CLIENT_CA_CERT))
        staged: _CA | None = None
        replaced: list[x509.Certificate] = []
        if user is not None:
            ca = _load_user_ca(user, "client", self.now)
            if old_cert is None or pki.der(old_cert) != pki.der(ca.cert):
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
                    ca = self._new_ca("client_ca", pki.CLIENT_CA_CN)
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
                staged = self._new_ca("client_ca", pki.CLIENT_CA_CN)
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
                    f"kept client CA (expires {pki.day(ca.cert.not_valid_after_utc)})"
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
        previous = [] if retire else replaced + pki.load_certs(self.old.get(CLIENT_CA_BUNDLE))
        certs, kept = _bundle(first, previous, self.now)
        if retire:
            dropped = [
                c
                for c in pki.load_certs(self.old.get(CLIENT_CA_BUNDLE))
                if pki.der(c) not in {pki.der(x) for x in certs}
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
    def _stored_client(self, ca: _CA) -> tuple[x509.Certificate | None, pki.PrivateKey | None, str]:
        blob = self.old.get(CLIENT_CERT_AND_KEY)
        if not blob:
            return None, None, "missing"
        certs = pki.load_certs(blob)
        keys = pki.PEM_KEY_RE.findall(blob)
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
        if pki.spki(key) != pki.spki(cert):
            return None, None, "private key does not match the certificate"
        separate = pki.load_single_cert(self.old.get(CLIENT_CERT))
        if separate is None or pki.der(separate) != pki.der(cert):
            return None, None, f"{CLIENT_CERT} does not hold the same certificate"
        if not pki.issued_by(cert, ca.cert):
            return None, None, "not signed by the current client CA"
        bc = pki.ext(cert, x509.BasicConstraints)
        if bc is None or bc.ca:
            return None, None, "wrong basicConstraints (must be CA:FALSE)"
        ku = pki.ext(cert, x509.KeyUsage)
        if ku is None or not ku.digital_signature:
            return None, None, "wrong key usage (digitalSignature missing)"
        eku = pki.ext(cert, x509.ExtendedKeyUsage)
        if eku is None or ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
            return None, None, "wrong extended key usage (clientAuth missing)"
        if cert.not_valid_after_utc <= self.now:
            return None, None, f"expired on {pki.day(cert.not_valid_after_utc)}"
        if not pki.key_matches_settings(key, self.s, "client"):
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
                verb = f"renewed client certificate (expires {pki.day(expires)}, inside {self.s.renew_before_days}-day window)"
                cert = None
            else:
                self.actions.append(f"kept client certificate (expires {pki.day(expires)})")
                if in_window:
                    self.warnings.append(
                        f"the client certificate expires on {pki.day(expires)} together with "
                        "its client CA and cannot be renewed beyond it: roll the client CA over"
                    )
        else:
            verb = f"generated client certificate ({reason})"
        if cert is None:
            key = self.kf("client", self.s)
            cert = pki.make_client_cert(key, ca.cert, ca.key, self.s, self.now)
            self.actions.append(verb)
            if cert.not_valid_after_utc == ca.cert.not_valid_after_utc:
                self.warnings.append(
                    f"the client certificate validity was shortened to the client CA's "
                    f"expiry ({pki.day(cert.not_valid_after_utc)})"
                )
            self.data[CLIENT_CERT] = pki.pem(cert)
            self.data[CLIENT_CERT_AND_KEY] = pki.pem(cert) + pki.plain_key(key)
        else:
            self.data[CLIENT_CERT] = self.old[CLIENT_CERT]
            self.data[CLIENT_CERT_AND_KEY] = self.old[CLIENT_CERT_AND_KEY]
        self.expiry["clientCertificate"] = cert.not_valid_after_utc


def plan_certificates(
    existing: Mapping[str, bytes] | None,
    passphrases: pki.Passphrases,
    settings: pki.CertificateSettings,
    now: _dt.datetime,
    *,
    user_server_ca: Mapping[str, bytes] | None = None,
    user_client_ca: Mapping[str, bytes] | None = None,
    rotate_server_ca: bool = False,
    retire_old_server_cas: bool = False,
    rotate_client_ca: bool = False,
    retire_old_client_cas: bool = False,
    key_factory: pki.KeyFactory | None = None,
) -> CertificatePlan:
    """Compute the desired data of the certificates Secret.

    ``existing`` is the Secret's current data (values bytes; may be None,
    partial or garbage). ``rotate_*`` and ``retire_*`` are one-shot requests:
    the caller must stop passing them once the resulting data is written
    (otherwise every reconcile rotates again). ``user_server_ca`` /
    ``user_client_ca`` are the data of user Secrets with ``tls.crt``,
    ``tls.key``, optional ``passphrase`` and optional ``ca.crt`` (extra
    certificates to trust: the CA's chain or the next CA); they are read,
    never modified. Raises :class:`pki.CertificateInputError` for unusable user
    CAs. ``key_factory(role, settings)`` replaces key generation (tests).
    """
    if not isinstance(passphrases, pki.Passphrases):
        raise TypeError("passphrases must be a pki.Passphrases instance")
    if not isinstance(settings, pki.CertificateSettings):
        raise TypeError("settings must be a pki.CertificateSettings instance")
    now = pki.aware(now)
    if user_server_ca is not None and user_client_ca is not None:
        s_certs = pki.load_certs(pki.as_bytes(user_server_ca.get("tls.crt")))
        c_certs = pki.load_certs(pki.as_bytes(user_client_ca.get("tls.crt")))
        if s_certs and c_certs and pki.spki(s_certs[0]) == pki.spki(c_certs[0]):
            raise pki.CertificateInputError(
                "the user-provided server CA and client CA use the same key: "
                "Octavia needs two separate CAs"
            )
    p = _Planner(existing, passphrases, settings, now, key_factory or pki.default_key_factory)
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
        "sha256Fingerprint": pki.fingerprint(cert),
    }


def describe(data: Mapping[str, bytes] | None) -> dict:
    """Public facts about the Secret's certificates for the status: subjects,
    serials, fingerprints and ISO validity dates. Never keys or passphrases."""
    data = data or {}
    out: dict = {}

    def one(key: str) -> dict:
        blob = pki.as_bytes(data.get(key))
        if not blob:
            return {"error": "missing"}
        cert = pki.load_single_cert(blob)
        if cert is None:
            return {"error": "unparseable"}
        return _cert_info(cert)

    out["serverCA"] = one(SERVER_CA_CERT)
    out["clientCA"] = one(CLIENT_CA_CERT)
    out["clientCertificate"] = one(CLIENT_CERT)
    if data.get(CLIENT_CA_NEXT_CERT):
        out["stagedClientCA"] = one(CLIENT_CA_NEXT_CERT)
    out["serverCABundle"] = [_cert_info(c) for c in pki.load_certs(pki.as_bytes(data.get(SERVER_CA_BUNDLE)))]
    out["clientCABundle"] = [_cert_info(c) for c in pki.load_certs(pki.as_bytes(data.get(CLIENT_CA_BUNDLE)))]
    return out
