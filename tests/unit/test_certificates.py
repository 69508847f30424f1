"""Unit tests of the pure certificate builder (octavia_operator.builders.certificates).

Most tests use ECDSA P-256 keys (milliseconds); RSA tests draw from a small
pool of pre-generated 2048-bit keys; one test runs the real defaults
(RSA 4096 CAs).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import re
import ssl
import string
import uuid

import pytest
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    DNSName,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from octavia_operator.builders import pki
from octavia_operator.builders.certificates import (
    CLIENT_CA_BUNDLE,
    CLIENT_CA_CERT,
    CLIENT_CA_KEY,
    CLIENT_CA_NEXT_CERT,
    CLIENT_CA_NEXT_KEY,
    CLIENT_CERT,
    CLIENT_CERT_AND_KEY,
    SERVER_CA_BUNDLE,
    SERVER_CA_CERT,
    SERVER_CA_KEY,
    describe,
    plan_certificates,
)
from octavia_operator.builders.pki import (
    CertificateInputError,
    CertificateSettings,
    Passphrases,
    generate_heartbeat_key,
    generate_passphrases,
)

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)
BASE_KEYS = {
    SERVER_CA_CERT,
    SERVER_CA_KEY,
    SERVER_CA_BUNDLE,
    CLIENT_CA_CERT,
    CLIENT_CA_KEY,
    CLIENT_CA_BUNDLE,
    CLIENT_CERT,
    CLIENT_CERT_AND_KEY,
}
EC = CertificateSettings(key_type="ECDSA", ec_curve="P-256")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

_RSA_POOL: list[rsa.RSAPrivateKey] = []


def _rsa_key(i: int) -> rsa.RSAPrivateKey:
    while len(_RSA_POOL) <= i:
        _RSA_POOL.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return _RSA_POOL[i]


class RSAFactory:
    """Key factory handing out distinct pre-generated RSA-2048 keys."""

    def __init__(self):
        self.n = 0
        self.roles: list[str] = []

    def __call__(self, role, settings):
        self.roles.append(role)
        key = _rsa_key(self.n)
        self.n += 1
        return key


RSA_SMALL = CertificateSettings(key_type="RSA", ca_key_size=2048, client_key_size=2048)


@pytest.fixture
def pp() -> Passphrases:
    return generate_passphrases()


def cert(blob: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(blob)


def certs(blob: bytes) -> list[x509.Certificate]:
    return [
        x509.load_pem_x509_certificate(m)
        for m in re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", blob, re.S)
    ]


def fps(blob: bytes) -> list[bytes]:
    return [c.fingerprint(hashes.SHA256()) for c in certs(blob)]


def fp(c: x509.Certificate) -> bytes:
    return c.fingerprint(hashes.SHA256())


def ext(c: x509.Certificate, cls):
    return c.extensions.get_extension_for_class(cls)


def spki(obj) -> bytes:
    return obj.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def ca_key(data: dict, key: str, passphrase: str):
    return serialization.load_pem_private_key(data[key], password=passphrase.encode())


def client_key(data: dict):
    blob = data[CLIENT_CERT_AND_KEY]
    m = re.search(rb"-----BEGIN PRIVATE KEY-----.+?-----END PRIVATE KEY-----", blob, re.S)
    assert m, "client.cert-and-key.pem must hold an unencrypted PKCS#8 key"
    return serialization.load_pem_private_key(m.group(0), password=None)


def sign_amphora_leaf(data: dict, passphrase: str, amp_id: str, now=NOW) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """What Octavia's local_cert_generator does: load ca_certificate and the
    encrypted ca_private_key with ca_private_key_passphrase, sign a CSR for
    CN=<amphora id> with SAN, KU and EKU (serverAuth, clientAuth)."""
    ca_cert = x509.load_pem_x509_certificate(data[SERVER_CA_CERT])
    ca_priv = serialization.load_pem_private_key(data[SERVER_CA_KEY], password=passphrase.encode())
    leaf_key = _rsa_key(0)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, amp_id)]))
        .sign(leaf_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .serial_number(int(uuid.uuid4()))
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .issuer_name(ca_cert.subject)
        .subject_name(csr.subject)
        .public_key(csr.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(amp_id)]), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_encipherment=True, data_encipherment=True,
                key_agreement=True, content_commitment=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=True,
        )
        .sign(ca_priv, hashes.SHA256())
    )
    return leaf, leaf_key


def verify_client(client_cert: x509.Certificate, trust_bundle: bytes, now=NOW) -> None:
    """RFC 5280 path validation of the controller certificate (raises)."""
    verifier = PolicyBuilder().store(Store(certs(trust_bundle))).time(now).build_client_verifier()
    verifier.verify(client_cert, [])


def verify_amphora(leaf: x509.Certificate, trust_bundle: bytes, amp_id: str, now=NOW) -> list:
    """RFC 5280 path validation of an amphora certificate against
    [haproxy_amphora] server_ca (raises). The CA side uses the strict WebPKI
    profile; the leaf profile tolerates what Octavia's leaves do differently
    (critical EKU, no authorityKeyIdentifier)."""
    ee = (
        ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)
        .may_be_present(x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)
    )
    verifier = (
        PolicyBuilder()
        .store(Store(certs(trust_bundle)))
        .time(now)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee)
        .build_server_verifier(DNSName(amp_id))
    )
    return verifier.verify(leaf, [])


def assert_valid(data: dict, passphrase: str, now=NOW) -> None:
    """Every invariant a converged Secret must satisfy."""
    assert BASE_KEYS - {CLIENT_CA_KEY} <= set(data)
    s_ca, c_ca = cert(data[SERVER_CA_CERT]), cert(data[CLIENT_CA_CERT])
    assert spki(s_ca) != spki(c_ca), "one CA for both roles"
    assert spki(ca_key(data, SERVER_CA_KEY, passphrase)) == spki(s_ca)
    if CLIENT_CA_KEY in data:
        assert spki(ca_key(data, CLIENT_CA_KEY, passphrase)) == spki(c_ca)
    assert fps(data[SERVER_CA_BUNDLE])[0] == fp(s_ca)
    assert fps(data[CLIENT_CA_BUNDLE])[0] == fp(c_ca)
    leaf = cert(data[CLIENT_CERT])
    assert certs(data[CLIENT_CERT_AND_KEY]) == [leaf]
    assert spki(client_key(data)) == spki(leaf)
    leaf.verify_directly_issued_by(c_ca)
    verify_client(leaf, data[CLIENT_CA_BUNDLE], now)
    amp_id = str(uuid.uuid4())
    amp, _ = sign_amphora_leaf(data, passphrase, amp_id, now)
    amp.verify_directly_issued_by(s_ca)
    verify_amphora(amp, data[SERVER_CA_BUNDLE], amp_id, now)


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, hostname: str) -> None:
    """A full TLS handshake plus one round trip over memory BIOs (no sockets).
    Raises ssl.SSLError when either side rejects the other."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_side=False, server_hostname=hostname)

    def pump():
        for src, dst in ((c_out, s_in), (s_out, c_in)):
            chunk = src.read()
            if chunk:
                dst.write(chunk)

    done = {id(server): False, id(client): False}
    for _ in range(20):
        for side in (client, server):
            if not done[id(side)]:
                try:
                    side.do_handshake()
                    done[id(side)] = True
                except ssl.SSLWantReadError:
                    pass
        pump()
        if all(done.values()):
            break
    assert all(done.values()), "handshake did not complete"
    client.write(b"ping")
    pump()
    assert server.read(4) == b"ping"
    server.write(b"pong")
    pump()
    assert client.read(4) == b"pong"


def amphora_ctx(tmp_path, leaf, leaf_key, client_ca_bundle: bytes) -> ssl.SSLContext:
    """The amphora agent side: its server cert, requires a client cert that
    chains to the client CA bundle it received at boot."""
    pem = tmp_path / f"amp-{uuid.uuid4()}.pem"
    pem.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pem))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.load_verify_locations(cadata=client_ca_bundle.decode())
    return ctx


def controller_ctx(tmp_path, data: dict) -> ssl.SSLContext:
    """The controller side: [haproxy_amphora] client_cert and server_ca."""
    cert_file = tmp_path / f"client-{uuid.uuid4()}.pem"
    cert_file.write_bytes(data[CLIENT_CERT_AND_KEY])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(str(cert_file))
    ctx.load_verify_locations(cadata=data[SERVER_CA_BUNDLE].decode())
    return ctx


def make_user_ca(cn: str, *, key=None, ca=True, key_usage=True, ski=True, days=3650, now=NOW):
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY)
        .not_valid_after(now + days * DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ski:
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if key_usage:
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    return b.sign(key, hashes.SHA256()), key


def user_secret(c, key, passphrase: bytes | None = None, extra: bytes | None = None) -> dict:
    enc = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    out = {
        "tls.crt": c.public_bytes(serialization.Encoding.PEM),
        "tls.key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc),
    }
    if passphrase:
        out["passphrase"] = passphrase
    if extra:
        out["ca.crt"] = extra
    return out


# --------------------------------------------------------------------------
# fresh generation: structure, extensions, chains
# --------------------------------------------------------------------------


def test_fresh_plan_generates_the_full_secret(pp):
    plan = plan_certificates(None, pp, EC, NOW)
    assert plan.changed
    assert set(plan.data) == BASE_KEYS
    assert all(isinstance(v, bytes) for v in plan.data.values())
    assert "generated server CA (missing)" in plan.actions
    assert "generated client CA (missing)" in plan.actions
    assert "generated client certificate (missing)" in plan.actions
    assert plan.warnings == []
    assert plan.expiry == {
        "serverCA": NOW + 3650 * DAY,
        "clientCA": NOW + 3650 * DAY,
        "clientCertificate": NOW + 365 * DAY,
    }
    assert_valid(plan.data, pp.ca_key)


@pytest.mark.parametrize("name,cn", [(SERVER_CA_CERT, "Octavia Server CA"), (CLIENT_CA_CERT, "Octavia Client CA")])
def test_ca_extensions(pp, name, cn):
    data = plan_certificates(None, pp, EC, NOW).data
    ca = cert(data[name])
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
    assert ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "OpenStack Octavia"
    assert ca.issuer == ca.subject
    ca.verify_directly_issued_by(ca)  # self-signed
    assert isinstance(ca.signature_hash_algorithm, hashes.SHA256)
    bc = ext(ca, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is True and bc.value.path_length == 0
    ku = ext(ca, x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign and ku.value.crl_sign and ku.value.digital_signature
    assert not ku.value.key_encipherment
    ski = ext(ca, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(ca.public_key())
    assert ext(ca, x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest
    assert ca.not_valid_after_utc == NOW + 3650 * DAY
    assert ca.not_valid_before_utc <= NOW


def test_client_certificate_is_signed_by_the_client_ca_only(pp):
    data = plan_certificates(None, pp, EC, NOW).data
    leaf, c_ca, s_ca = cert(data[CLIENT_CERT]), cert(data[CLIENT_CA_CERT]), cert(data[SERVER_CA_CERT])
    leaf.verify_directly_issued_by(c_ca)
    with pytest.raises((ValueError, Exception)):
        leaf.verify_directly_issued_by(s_ca)
    verify_client(leaf, data[CLIENT_CA_BUNDLE])
    with pytest.raises(VerificationError):
        verify_client(leaf, data[SERVER_CA_BUNDLE])
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "octavia-controller"
    bc = ext(leaf, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ku = ext(leaf, x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_cert_sign and not ku.crl_sign
    assert not ku.key_encipherment  # ECDSA key: no key encipherment
    assert list(ext(leaf, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)
    # the controller file holds the certificate and its UNENCRYPTED key
    assert b"ENCRYPTED" not in data[CLIENT_CERT_AND_KEY]
    assert spki(client_key(data)) == spki(leaf)
    assert data[CLIENT_CERT] in data[CLIENT_CERT_AND_KEY]


def test_rsa_client_certificate_has_key_encipherment(pp):
    factory = RSAFactory()
    data = plan_certificates(None, pp, RSA_SMALL, NOW, key_factory=factory).data
    assert factory.roles == ["server_ca", "client_ca", "client"]
    leaf = cert(data[CLIENT_CERT])
    assert isinstance(leaf.public_key(), rsa.RSAPublicKey)
    ku = ext(leaf, x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment
    assert_valid(data, pp.ca_key)


def test_server_ca_signs_an_amphora_leaf_like_local_cert_generator(pp):
    data = plan_certificates(None, pp, EC, NOW).data
    amp_id = str(uuid.uuid4())
    leaf, _ = sign_amphora_leaf(data, pp.ca_key, amp_id)
    leaf.verify_directly_issued_by(cert(data[SERVER_CA_CERT]))
    # full path validation against [haproxy_amphora] server_ca
    chain = verify_amphora(leaf, data[SERVER_CA_BUNDLE], amp_id)
    assert fp(chain[-1]) == fp(cert(data[SERVER_CA_CERT]))
    # ... and not against the client CA
    with pytest.raises(VerificationError):
        verify_amphora(leaf, data[CLIENT_CA_BUNDLE], amp_id)


def test_mutual_tls_between_controller_and_amphora(pp, tmp_path):
    """The files work with OpenSSL the way Octavia uses them: the controller
    (client_cert + server_ca) talks to an amphora (leaf from the server CA,
    trusting client_ca)."""
    amp_id = str(uuid.uuid4())
    # OpenSSL checks validity against the real clock: build everything "now".
    real_now = dt.datetime.now(dt.timezone.utc)
    data = plan_certificates(None, pp, EC, real_now).data
    leaf, leaf_key = sign_amphora_leaf(data, pp.ca_key, amp_id, now=real_now)
    handshake(amphora_ctx(tmp_path, leaf, leaf_key, data[CLIENT_CA_BUNDLE]), controller_ctx(tmp_path, data), amp_id)

    # an amphora that trusts another client CA refuses this controller
    other = plan_certificates(None, pp, EC, real_now).data
    with pytest.raises(ssl.SSLError):
        handshake(
            amphora_ctx(tmp_path, leaf, leaf_key, other[CLIENT_CA_BUNDLE]), controller_ctx(tmp_path, data), amp_id
        )
    # a controller whose server_ca is another CA refuses the amphora
    with pytest.raises(ssl.SSLError):
        handshake(
            amphora_ctx(tmp_path, leaf, leaf_key, data[CLIENT_CA_BUNDLE]),
            controller_ctx(tmp_path, {**data, SERVER_CA_BUNDLE: other[SERVER_CA_BUNDLE]}),
            amp_id,
        )


@pytest.mark.parametrize("key_name", [SERVER_CA_KEY, CLIENT_CA_KEY])
def test_ca_keys_decrypt_only_with_the_passphrase(pp, key_name):
    data = plan_certificates(None, pp, EC, NOW).data
    blob = data[key_name]
    assert blob.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")  # PKCS#8, encrypted
    key = serialization.load_pem_private_key(blob, password=pp.ca_key.encode())
    assert spki(key) == spki(cert(data[key_name.replace(".key.pem", ".cert.pem")]))
    with pytest.raises(ValueError):
        serialization.load_pem_private_key(blob, password=b"wrong-passphrase-0123456789")
    with pytest.raises(ValueError):
        serialization.load_pem_private_key(blob, password=pp.server_certs_key.encode())
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(blob, password=None)


def test_default_settings_rsa_4096(pp):
    """One run with the real defaults: RSA 4096 CAs, RSA 2048 client key."""
    plan = plan_certificates(None, pp, CertificateSettings(), NOW)
    data = plan.data
    assert cert(data[SERVER_CA_CERT]).public_key().key_size == 4096
    assert cert(data[CLIENT_CA_CERT]).public_key().key_size == 4096
    assert cert(data[CLIENT_CERT]).public_key().key_size == 2048
    assert ca_key(data, SERVER_CA_KEY, pp.ca_key).key_size == 4096
    assert_valid(data, pp.ca_key)
    again = plan_certificates(data, pp, CertificateSettings(), NOW + 100 * DAY)
    assert not again.changed and again.data == data


def test_ecdsa_curve_setting(pp):
    data = plan_certificates(None, pp, CertificateSettings(key_type="ECDSA"), NOW).data
    for name in (SERVER_CA_CERT, CLIENT_CA_CERT, CLIENT_CERT):
        assert isinstance(cert(data[name]).public_key().curve, ec.SECP384R1)  # default curve


# --------------------------------------------------------------------------
# idempotency and renewal
# --------------------------------------------------------------------------


@pytest.mark.parametrize("settings,factory", [(EC, None), (RSA_SMALL, RSAFactory)])
def test_converged_secret_is_left_byte_identical(pp, settings, factory):
    first = plan_certificates(None, pp, settings, NOW, key_factory=factory() if factory else None)
    existing = copy.deepcopy(first.data)
    for later in (NOW, NOW + DAY, NOW + 300 * DAY):
        plan = plan_certificates(existing, pp, settings, later, key_factory=_refuse)
        assert plan.changed is False
        assert plan.data == first.data
        assert all(plan.data[k] is existing[k] for k in existing), "bytes must be reused, not re-serialized"
        assert not any(a.startswith(("generated", "renewed", "rotated")) for a in plan.actions)
        assert plan.warnings == []


def _refuse(role, settings):
    raise AssertionError(f"no key may be generated on a converged Secret (asked for {role})")


def test_client_certificate_renews_inside_the_window_only(pp):
    first = plan_certificates(None, pp, EC, NOW).data
    expires = NOW + 365 * DAY
    # one day before the window opens: nothing happens
    outside = plan_certificates(first, pp, EC, expires - 31 * DAY, key_factory=_refuse)
    assert not outside.changed
    # inside the window: only the client certificate changes
    inside = plan_certificates(first, pp, EC, expires - 29 * DAY)
    assert inside.changed
    assert "renewed client certificate (expires 2027-03-01, inside 30-day window)" in inside.actions
    for k in (SERVER_CA_CERT, SERVER_CA_KEY, SERVER_CA_BUNDLE, CLIENT_CA_CERT, CLIENT_CA_KEY, CLIENT_CA_BUNDLE):
        assert inside.data[k] == first[k], k
    new = cert(inside.data[CLIENT_CERT])
    assert new.serial_number != cert(first[CLIENT_CERT]).serial_number
    assert new.not_valid_after_utc == expires - 29 * DAY + 365 * DAY
    assert inside.expiry["clientCertificate"] == new.not_valid_after_utc
    assert spki(client_key(inside.data)) != spki(client_key(first)), "renewal uses a new key"
    assert_valid(inside.data, pp.ca_key, now=expires - 29 * DAY)
    # and the renewed Secret is converged again
    again = plan_certificates(inside.data, pp, EC, expires - 28 * DAY, key_factory=_refuse)
    assert not again.changed


def test_expired_client_certificate_is_replaced(pp):
    first = plan_certificates(None, pp, EC, NOW).data
    later = NOW + 400 * DAY
    plan = plan_certificates(first, pp, EC, later)
    assert plan.changed
    assert any(a.startswith("generated client certificate (expired on 2027-03-01") for a in plan.actions)
    assert_valid(plan.data, pp.ca_key, now=later)


def test_renew_window_setting_is_used(pp):
    s = CertificateSettings(key_type="ECDSA", ec_curve="P-256", client_validity_days=100, renew_before_days=50)
    first = plan_certificates(None, pp, s, NOW).data
    assert not plan_certificates(first, pp, s, NOW + 49 * DAY, key_factory=_refuse).changed
    plan = plan_certificates(first, pp, s, NOW + 51 * DAY)
    assert plan.changed and any("inside 50-day window" in a for a in plan.actions)


def test_ca_near_expiry_warns_but_is_not_rotated(pp):
    first = plan_certificates(None, pp, EC, NOW).data
    ca_expiry = NOW + 3650 * DAY
    # outside the window: no warning
    quiet = plan_certificates(first, pp, EC, ca_expiry - 400 * DAY)
    assert not any("CA expires" in w for w in quiet.warnings)
    # within the window: warnings for both CAs, CAs untouched
    t = ca_expiry - 10 * DAY
    plan = plan_certificates(first, pp, EC, t)
    assert any(w.startswith("server CA expires on") for w in plan.warnings)
    assert any(w.startswith("client CA expires on") for w in plan.warnings)
    for k in (SERVER_CA_CERT, SERVER_CA_KEY, CLIENT_CA_CERT, CLIENT_CA_KEY):
        assert plan.data[k] == first[k]
    # the client certificate cannot outlive its CA: capped, and then stable
    leaf = cert(plan.data[CLIENT_CERT])
    assert leaf.not_valid_after_utc == cert(first[CLIENT_CA_CERT]).not_valid_after_utc
    again = plan_certificates(plan.data, pp, EC, t + DAY, key_factory=_refuse)
    assert not again.changed, "a capped client certificate must not be re-issued on every reconcile"
    assert any("cannot be renewed beyond it" in w for w in again.warnings)


def test_ca_warning_window_can_be_set_separately(pp):
    s = CertificateSettings(
        key_type="ECDSA", ec_curve="P-256", ca_validity_days=200, client_validity_days=100,
        ca_warn_before_days=180,
    )
    first = plan_certificates(None, pp, s, NOW).data
    assert plan_certificates(first, pp, s, NOW + 19 * DAY, key_factory=_refuse).warnings == []
    plan = plan_certificates(first, pp, s, NOW + 25 * DAY, key_factory=_refuse)
    assert not plan.changed
    assert plan.warnings == [
        "server CA expires on 2026-09-17 (175 days left); rotate it (see docs/certificates.md, "
        "'Server CA rollover')",
        "client CA expires on 2026-09-17 (175 days left); plan a client CA rollover (see "
        "docs/certificates.md, 'Client CA rollover')",
    ]


def test_expired_generated_ca_is_replaced(pp):
    s = CertificateSettings(key_type="ECDSA", ec_curve="P-256", ca_validity_days=400, client_validity_days=100)
    first = plan_certificates(None, pp, s, NOW).data
    later = NOW + 401 * DAY
    plan = plan_certificates(first, pp, s, later)
    assert "generated server CA (it expired on 2027-04-05)" in plan.actions
    assert "generated client CA (it expired on 2027-04-05)" in plan.actions
    # an expired CA is useless in a bundle: not kept
    assert fps(plan.data[SERVER_CA_BUNDLE]) == [fp(cert(plan.data[SERVER_CA_CERT]))]
    assert_valid(plan.data, pp.ca_key, now=later)


# --------------------------------------------------------------------------
# repair of missing, partial and garbage data
# --------------------------------------------------------------------------


def _other_ca_key_encrypted(pp_other: Passphrases) -> bytes:
    return plan_certificates(None, pp_other, EC, NOW).data[SERVER_CA_KEY]


def _cases():
    def drop(k):
        return lambda d, pp: {x: v for x, v in d.items() if x != k}

    def put(k, v):
        return lambda d, pp: {**d, k: v(d, pp) if callable(v) else v}

    def wrong_issuer(d, pp):
        # a client certificate with the right shape, but signed by the server CA
        key = ec.generate_private_key(ec.SECP256R1())
        s_ca = cert(d[SERVER_CA_CERT])
        c = pki.make_client_cert(key, s_ca, ca_key(d, SERVER_CA_KEY, pp.ca_key), EC, NOW)
        pem = c.public_bytes(serialization.Encoding.PEM)
        return {**d, CLIENT_CERT: pem, CLIENT_CERT_AND_KEY: pem + pki.plain_key(key)}

    def wrong_eku(d, pp):
        key = ec.generate_private_key(ec.SECP256R1())
        c_ca = cert(d[CLIENT_CA_CERT])
        c = (
            x509.CertificateBuilder().subject_name(c_ca.subject).issuer_name(c_ca.subject)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(NOW - DAY).not_valid_after(NOW + 300 * DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key(d, CLIENT_CA_KEY, pp.ca_key), hashes.SHA256())
        )
        pem = c.public_bytes(serialization.Encoding.PEM)
        return {**d, CLIENT_CERT: pem, CLIENT_CERT_AND_KEY: pem + pki.plain_key(key)}

    def encrypted_client_key(d, pp):
        key = client_key(d)
        enc = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.BestAvailableEncryption(b"some-other-passphrase"))
        return {**d, CLIENT_CERT_AND_KEY: d[CLIENT_CERT] + enc}

    # (name, mutation, regenerated parts: subset of {"server_ca", "client_ca", "client"})
    return [
        ("everything missing", lambda d, pp: {}, {"server_ca", "client_ca", "client"}),
        ("server CA cert missing", drop(SERVER_CA_CERT), {"server_ca"}),
        ("server CA key missing", drop(SERVER_CA_KEY), {"server_ca"}),
        ("server CA cert garbage", put(SERVER_CA_CERT, b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), {"server_ca"}),
        ("server CA key garbage", put(SERVER_CA_KEY, b"\x00\xffnot a key"), {"server_ca"}),
        ("server CA key under another passphrase", put(SERVER_CA_KEY, lambda d, pp: _other_ca_key_encrypted(generate_passphrases())), {"server_ca"}),
        ("server CA key is the client CA key", put(SERVER_CA_KEY, lambda d, pp: d[CLIENT_CA_KEY]), {"server_ca"}),
        ("server CA key unencrypted", put(SERVER_CA_KEY, lambda d, pp: pki.plain_key(ca_key(d, SERVER_CA_KEY, pp.ca_key))), {"server_ca"}),
        ("server bundle missing", drop(SERVER_CA_BUNDLE), set()),
        ("server bundle garbage", put(SERVER_CA_BUNDLE, b"junk"), set()),
        ("client CA cert missing", drop(CLIENT_CA_CERT), {"client_ca", "client"}),
        ("client CA key missing", drop(CLIENT_CA_KEY), {"client_ca", "client"}),
        ("client CA is not a CA", put(CLIENT_CA_CERT, lambda d, pp: d[CLIENT_CERT]), {"client_ca", "client"}),
        ("client bundle garbage", put(CLIENT_CA_BUNDLE, b"\x00"), set()),
        ("client cert missing", drop(CLIENT_CERT), {"client"}),
        ("client cert-and-key missing", drop(CLIENT_CERT_AND_KEY), {"client"}),
        ("client cert-and-key garbage", put(CLIENT_CERT_AND_KEY, b"garbage"), {"client"}),
        ("client cert files disagree", put(CLIENT_CERT, lambda d, pp: d[CLIENT_CA_CERT]), {"client"}),
        ("client key encrypted", encrypted_client_key, {"client"}),
        ("client cert signed by the server CA", wrong_issuer, {"client"}),
        ("client cert without clientAuth", wrong_eku, {"client"}),
        ("unknown key", put("extra.pem", b"whatever"), set()),
    ]


@pytest.mark.parametrize("name,mutate,regenerated", _cases(), ids=[c[0] for c in _cases()])
def test_partial_or_garbage_data_is_repaired(pp, name, mutate, regenerated):
    good = plan_certificates(None, pp, EC, NOW).data
    broken = mutate(dict(good), pp)
    plan = plan_certificates(broken, pp, EC, NOW)
    assert plan.changed
    assert set(plan.data) == BASE_KEYS
    assert_valid(plan.data, pp.ca_key)
    parts = {
        "server_ca": (SERVER_CA_CERT, SERVER_CA_KEY),
        "client_ca": (CLIENT_CA_CERT, CLIENT_CA_KEY),
        "client": (CLIENT_CERT, CLIENT_CERT_AND_KEY),
    }
    for part, keys in parts.items():
        if part in regenerated:
            assert cert(plan.data[keys[0]]).serial_number != cert(good[keys[0]]).serial_number, part
        else:
            assert plan.data[keys[0]] == good[keys[0]] and plan.data[keys[1]] == good[keys[1]], part
    if regenerated:
        assert any(a.startswith("generated") for a in plan.actions)
    # a repaired Secret is converged
    assert not plan_certificates(plan.data, pp, EC, NOW, key_factory=_refuse).changed


def test_str_values_are_accepted(pp):
    good = plan_certificates(None, pp, EC, NOW).data
    plan = plan_certificates({k: v.decode() for k, v in good.items()}, pp, EC, NOW, key_factory=_refuse)
    assert plan.data == good and not plan.changed


def test_replaced_server_ca_stays_trusted(pp):
    """A server CA replaced because its key no longer decrypts keeps its
    certificate in the bundle: amphorae it signed still verify."""
    good = plan_certificates(None, pp, EC, NOW).data
    old_leaf, _ = sign_amphora_leaf(good, pp.ca_key, "amp-1")
    new_pp = Passphrases(ca_key=generate_passphrases().ca_key, server_certs_key=pp.server_certs_key)
    plan = plan_certificates(good, new_pp, EC, NOW)
    assert "generated server CA (private key unreadable or does not decrypt with the CA passphrase)" in plan.actions
    assert fps(plan.data[SERVER_CA_BUNDLE]) == [fp(cert(plan.data[SERVER_CA_CERT])), fp(cert(good[SERVER_CA_CERT]))]
    verify_amphora(old_leaf, plan.data[SERVER_CA_BUNDLE], "amp-1")
    # the client CA was replaced as well: the warning says amphorae need a failover
    assert any("failed over" in w for w in plan.warnings)
    assert_valid(plan.data, new_pp.ca_key)


def test_client_certificate_reissued_when_key_type_setting_changes(pp):
    first = plan_certificates(None, pp, EC, NOW).data
    p384 = CertificateSettings(key_type="ECDSA", ec_curve="P-384")
    plan = plan_certificates(first, pp, p384, NOW)
    assert "generated client certificate (key type or size differs from the settings)" in plan.actions
    assert isinstance(cert(plan.data[CLIENT_CERT]).public_key().curve, ec.SECP384R1)
    # CAs are never re-keyed by a settings change
    assert plan.data[SERVER_CA_CERT] == first[SERVER_CA_CERT]
    assert plan.data[CLIENT_CA_CERT] == first[CLIENT_CA_CERT]


# --------------------------------------------------------------------------
# CA rollover
# --------------------------------------------------------------------------


def test_server_ca_rotation_keeps_the_old_ca_trusted_until_retired(pp):
    first = plan_certificates(None, pp, EC, NOW).data
    t = NOW + 100 * DAY
    old_leaf, _ = sign_amphora_leaf(first, pp.ca_key, "amp-old", now=t - DAY)
    rotated = plan_certificates(first, pp, EC, t, rotate_server_ca=True)
    assert rotated.changed
    assert any(a.startswith("rotated server CA on request") for a in rotated.actions)
    new_ca, old_ca = cert(rotated.data[SERVER_CA_CERT]), cert(first[SERVER_CA_CERT])
    assert fp(new_ca) != fp(old_ca)
    assert fps(rotated.data[SERVER_CA_BUNDLE]) == [fp(new_ca), fp(old_ca)]
    # the client side is untouched
    for k in (CLIENT_CA_CERT, CLIENT_CA_KEY, CLIENT_CA_BUNDLE, CLIENT_CERT, CLIENT_CERT_AND_KEY):
        assert rotated.data[k] == first[k]
    # old amphorae and new amphorae both verify against the bundle
    new_leaf, _ = sign_amphora_leaf(rotated.data, pp.ca_key, "amp-new", now=t)
    new_leaf.verify_directly_issued_by(new_ca)
    for leaf, name in ((old_leaf, "amp-old"), (new_leaf, "amp-new")):
        verify_amphora(leaf, rotated.data[SERVER_CA_BUNDLE], name, t)
    # converged afterwards (the flag is one-shot)
    steady = plan_certificates(rotated.data, pp, EC, t + DAY, key_factory=_refuse)
    assert not steady.changed
    assert "kept 1 previous server CA(s) trusted in the server CA bundle" in steady.actions
    # retiring drops the old CA: old amphorae no longer verify
    retired = plan_certificates(rotated.data, pp, EC, t + 40 * DAY, retire_old_server_cas=True, key_factory=_refuse)
    assert retired.changed
    assert fps(retired.data[SERVER_CA_BUNDLE]) == [fp(new_ca)]
    assert "retired 1 previous server CA(s) from the server CA bundle" in retired.actions
    with pytest.raises(VerificationError):
        verify_amphora(old_leaf, retired.data[SERVER_CA_BUNDLE], "amp-old", t)


def test_previous_ca_dropped_once_expired(pp):
    s = CertificateSettings(key_type="ECDSA", ec_curve="P-256", ca_validity_days=400, client_validity_days=100)
    first = plan_certificates(None, pp, s, NOW).data
    rotated = plan_certificates(first, pp, s, NOW + 300 * DAY, rotate_server_ca=True).data
    assert len(certs(rotated[SERVER_CA_BUNDLE])) == 2
    later = NOW + 402 * DAY  # the old server CA has expired
    plan = plan_certificates(rotated, pp, s, later)
    assert fps(plan.data[SERVER_CA_BUNDLE]) == [fp(cert(rotated[SERVER_CA_CERT]))]


def test_client_ca_rollover_in_two_steps(pp, tmp_path):
    first = plan_certificates(None, pp, EC, NOW).data
    old_ca = cert(first[CLIENT_CA_CERT])
    old_client = cert(first[CLIENT_CERT])
    boot_bundle_old = first[CLIENT_CA_BUNDLE]  # what amphorae booted before the rollover got

    # step 1: stage a new client CA; the controller certificate does not change
    t1 = NOW + 10 * DAY
    step1 = plan_certificates(first, pp, EC, t1, rotate_client_ca=True)
    assert "staged a new client CA in the client CA bundle (step 1 of 2)" in step1.actions
    assert any("fail over every amphora" in w for w in step1.warnings)
    d1 = step1.data
    assert set(d1) == BASE_KEYS | {CLIENT_CA_NEXT_CERT, CLIENT_CA_NEXT_KEY}
    staged = cert(d1[CLIENT_CA_NEXT_CERT])
    assert spki(ca_key(d1, CLIENT_CA_NEXT_KEY, pp.ca_key)) == spki(staged)
    assert d1[CLIENT_CA_CERT] == first[CLIENT_CA_CERT]
    assert d1[CLIENT_CERT] == first[CLIENT_CERT] and d1[CLIENT_CERT_AND_KEY] == first[CLIENT_CERT_AND_KEY]
    assert fps(d1[CLIENT_CA_BUNDLE]) == [fp(old_ca), fp(staged)]
    assert "stagedClientCA" in step1.expiry
    assert not plan_certificates(d1, pp, EC, t1 + DAY, key_factory=_refuse).changed
    boot_bundle_new = d1[CLIENT_CA_BUNDLE]  # amphorae failed over after step 1

    # step 2: promote; the controller certificate is re-issued by the new CA
    t2 = t1 + 5 * DAY
    step2 = plan_certificates(d1, pp, EC, t2, rotate_client_ca=True)
    d2 = step2.data
    assert any(a.startswith("promoted the staged client CA") for a in step2.actions)
    assert set(d2) == BASE_KEYS
    assert fp(cert(d2[CLIENT_CA_CERT])) == fp(staged)
    assert spki(ca_key(d2, CLIENT_CA_KEY, pp.ca_key)) == spki(staged)
    new_client = cert(d2[CLIENT_CERT])
    new_client.verify_directly_issued_by(staged)
    assert fps(d2[CLIENT_CA_BUNDLE]) == [fp(staged), fp(old_ca)]
    assert d2[SERVER_CA_CERT] == first[SERVER_CA_CERT]
    assert not plan_certificates(d2, pp, EC, t2 + DAY, key_factory=_refuse).changed

    # who accepts whom: an amphora booted after step 1 accepts old and new
    # controller certificates; one booted before accepts only the old one.
    verify_client(old_client, boot_bundle_new, t1)
    verify_client(new_client, boot_bundle_new, t2)
    verify_client(old_client, boot_bundle_old, t1)
    with pytest.raises(VerificationError):
        verify_client(new_client, boot_bundle_old, t2)

    # retire the old client CA
    retired = plan_certificates(d2, pp, EC, t2 + DAY, retire_old_client_cas=True, key_factory=_refuse)
    assert fps(retired.data[CLIENT_CA_BUNDLE]) == [fp(staged)]
    assert "retired 1 previous client CA(s) from the client CA bundle" in retired.actions


def test_broken_staged_client_ca_is_dropped(pp):
    first = plan_certificates(None, pp, EC, NOW).data
    d1 = plan_certificates(first, pp, EC, NOW, rotate_client_ca=True).data
    broken = {**d1, CLIENT_CA_NEXT_KEY: b"garbage"}
    plan = plan_certificates(broken, pp, EC, NOW)
    assert "dropped the staged client CA (private key unreadable or does not decrypt with the CA passphrase)" in plan.actions
    assert set(plan.data) == BASE_KEYS
    assert plan.data[CLIENT_CERT] == first[CLIENT_CERT]
    assert_valid(plan.data, pp.ca_key)


# --------------------------------------------------------------------------
# user-provided CAs
# --------------------------------------------------------------------------


def test_user_cas_are_used_and_never_modified(pp, tmp_path):
    real_now = dt.datetime.now(dt.timezone.utc)
    s_cert, s_key = make_user_ca("Corp Octavia Server CA", now=real_now)
    c_cert, c_key = make_user_ca("Corp Octavia Client CA", now=real_now)
    root, _ = make_user_ca("Corp Root", now=real_now)
    user_s = user_secret(s_cert, s_key, passphrase=b"user-server-ca-passphrase")
    user_c = user_secret(c_cert, c_key, extra=root.public_bytes(serialization.Encoding.PEM))
    snap_s, snap_c = copy.deepcopy(user_s), copy.deepcopy(user_c)

    plan = plan_certificates(None, pp, EC, real_now, user_server_ca=user_s, user_client_ca=user_c)
    d = plan.data
    assert user_s == snap_s and user_c == snap_c
    assert "using the user-provided server CA" in plan.actions
    assert "using the user-provided client CA" in plan.actions
    assert fp(cert(d[SERVER_CA_CERT])) == fp(s_cert)
    assert fp(cert(d[CLIENT_CA_CERT])) == fp(c_cert)
    # the server CA key is stored re-encrypted with the operator's passphrase
    assert spki(ca_key(d, SERVER_CA_KEY, pp.ca_key)) == spki(s_cert)
    with pytest.raises(ValueError):
        serialization.load_pem_private_key(d[SERVER_CA_KEY], password=b"user-server-ca-passphrase")
    # the user client CA's key is not copied (not needed by Octavia)
    assert CLIENT_CA_KEY not in d
    assert fps(d[SERVER_CA_BUNDLE]) == [fp(s_cert)]
    assert fps(d[CLIENT_CA_BUNDLE]) == [fp(c_cert), fp(root)]
    cert(d[CLIENT_CERT]).verify_directly_issued_by(c_cert)
    assert_valid(d, pp.ca_key, now=real_now)
    amp_id = str(uuid.uuid4())
    leaf, leaf_key = sign_amphora_leaf(d, pp.ca_key, amp_id, now=real_now)
    leaf.verify_directly_issued_by(s_cert)
    handshake(amphora_ctx(tmp_path, leaf, leaf_key, d[CLIENT_CA_BUNDLE]), controller_ctx(tmp_path, d), amp_id)

    again = plan_certificates(d, pp, EC, real_now + DAY, user_server_ca=user_s, user_client_ca=user_c,
                              key_factory=_refuse)
    assert not again.changed and again.data == d
    assert "kept the user-provided server CA" in again.actions
    assert user_s == snap_s and user_c == snap_c


def test_switching_to_user_cas_keeps_the_generated_cas_trusted(pp):
    first = plan_certificates(None, pp, EC, NOW).data
    s_cert, s_key = make_user_ca("Corp Server CA")
    c_cert, c_key = make_user_ca("Corp Client CA")
    plan = plan_certificates(first, pp, EC, NOW, user_server_ca=user_secret(s_cert, s_key),
                             user_client_ca=user_secret(c_cert, c_key))
    assert fps(plan.data[SERVER_CA_BUNDLE]) == [fp(s_cert), fp(cert(first[SERVER_CA_CERT]))]
    assert fps(plan.data[CLIENT_CA_BUNDLE]) == [fp(c_cert), fp(cert(first[CLIENT_CA_CERT]))]
    assert "removed the stored client CA key (the client CA is user-provided)" in plan.actions
    assert CLIENT_CA_KEY not in plan.data
    assert_valid(plan.data, pp.ca_key)


def test_user_server_ca_with_generated_client_ca(pp):
    s_cert, s_key = make_user_ca("Corp Server CA", key=_rsa_key(1))
    plan = plan_certificates(None, pp, EC, NOW, user_server_ca=user_secret(s_cert, s_key))
    assert fp(cert(plan.data[SERVER_CA_CERT])) == fp(s_cert)
    assert cert(plan.data[CLIENT_CA_CERT]).subject.rfc4514_string() == "CN=Octavia Client CA,O=OpenStack Octavia"
    assert_valid(plan.data, pp.ca_key)


def _bad_user_cases():
    good_cert, good_key = make_user_ca("Good CA")
    leaf_cert, leaf_key = make_user_ca("Not a CA", ca=False)
    no_ku, no_ku_key = make_user_ca("Legacy CA", key_usage=False)
    no_ski, no_ski_key = make_user_ca("Legacy CA", ski=False)
    other_key = ec.generate_private_key(ec.SECP256R1())
    expired, expired_key = make_user_ca("Old CA", now=NOW - 5000 * DAY, days=100)
    enc = user_secret(good_cert, good_key, passphrase=b"the-right-passphrase")
    return [
        ("not a CA", user_secret(leaf_cert, leaf_key), "is not a CA certificate"),
        ("key mismatch", user_secret(good_cert, other_key), "'tls.key' does not match"),
        # OpenSSL's strict mode (Python 3.13+ default contexts) refuses a CA
        # without keyUsage: "CA cert does not include key usage extension"
        ("no keyUsage", user_secret(no_ku, no_ku_key), "has no keyUsage extension"),
        ("no subjectKeyIdentifier", user_secret(no_ski, no_ski_key), "has no subjectKeyIdentifier"),
        ("encrypted without passphrase", {k: v for k, v in enc.items() if k != "passphrase"},
         "'tls.key' is encrypted but the Secret has no 'passphrase' key"),
        ("wrong passphrase", {**enc, "passphrase": b"the-wrong-passphrase"}, "does not decrypt with the given 'passphrase'"),
        ("missing key", {"tls.crt": enc["tls.crt"]}, "'tls.key' is missing"),
        ("missing cert", {"tls.key": enc["tls.key"]}, "'tls.crt' is missing"),
        ("garbage cert", {**enc, "tls.crt": b"garbage"}, "contains no PEM certificate"),
        ("expired", user_secret(expired, expired_key), "expired on"),
    ]


@pytest.mark.parametrize("role", ["server", "client"])
@pytest.mark.parametrize("name,secret,message", _bad_user_cases(), ids=[c[0] for c in _bad_user_cases()])
def test_bad_user_ca_is_reported(pp, role, name, secret, message):
    kwargs = {f"user_{role}_ca": secret}
    with pytest.raises(CertificateInputError) as err:
        plan_certificates(None, pp, EC, NOW, **kwargs)
    assert message in str(err.value)
    assert f"user-provided {role} CA Secret" in str(err.value)
    assert b"the-right-passphrase".decode() not in str(err.value)


def test_one_ca_for_both_roles_is_refused(pp):
    c, k = make_user_ca("Shared CA")
    with pytest.raises(CertificateInputError, match="same key"):
        plan_certificates(None, pp, EC, NOW, user_server_ca=user_secret(c, k), user_client_ca=user_secret(c, k))


# --------------------------------------------------------------------------
# passphrases, heartbeat key, settings
# --------------------------------------------------------------------------


def test_generated_passphrases():
    seen = set()
    for _ in range(20):
        p = generate_passphrases()
        assert len(p.ca_key) >= 32
        assert len(p.server_certs_key) == 32
        assert set(p.server_certs_key) <= set(string.ascii_letters + string.digits + "-_")
        assert set(p.ca_key) <= set(string.ascii_letters + string.digits + "-_")
        # Octavia derives its Fernet key as urlsafe_b64encode(passphrase)
        f = Fernet(base64.urlsafe_b64encode(p.server_certs_key.encode()))
        assert f.decrypt(f.encrypt(b"amphora pem")) == b"amphora pem"
        assert p.ca_key not in pki.WELL_KNOWN_INSECURE and p.server_certs_key not in pki.WELL_KNOWN_INSECURE
        seen.update((p.ca_key, p.server_certs_key))
    assert len(seen) == 40
    assert p.ca_key not in repr(p) and p.server_certs_key not in repr(p)


def test_heartbeat_key():
    keys = {generate_heartbeat_key() for _ in range(10)}
    assert len(keys) == 10
    for k in keys:
        assert len(k) >= 32 and k not in pki.WELL_KNOWN_INSECURE
        assert set(k) <= set(string.ascii_letters + string.digits + "-_")


@pytest.mark.parametrize(
    "ca_key,server_key,message",
    [
        ("not-secure-passphrase", "A" * 32, "well-known"),
        ("foobar", "A" * 32, "at least 16"),
        ("x" * 40, "insecure-key-do-not-use-this-key", "well-known"),
        ("x" * 40, "A" * 31, "exactly 32"),
        ("x" * 40, "A" * 33, "exactly 32"),
        ("x" * 40, "A" * 31 + "/", "exactly 32"),
    ],
)
def test_passphrases_are_validated(ca_key, server_key, message):
    with pytest.raises(CertificateInputError, match=message):
        Passphrases(ca_key=ca_key, server_certs_key=server_key)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"renew_before_days": 365}, "must be smaller than client_validity_days"),
        ({"key_type": "DSA"}, "key_type"),
        ({"ec_curve": "P-192"}, "ec_curve"),
        ({"ca_key_size": 1024}, "ca_key_size"),
        ({"client_validity_days": 4000}, "must not exceed ca_validity_days"),
        ({"ca_validity_days": 0}, "positive"),
    ],
)
def test_settings_are_validated(kwargs, message):
    with pytest.raises(CertificateInputError, match=message):
        CertificateSettings(**kwargs)


# --------------------------------------------------------------------------
# status output carries no secrets
# --------------------------------------------------------------------------


def test_describe_reports_public_facts(pp):
    data = plan_certificates(None, pp, EC, NOW).data
    info = describe(data)
    assert info["serverCA"]["subject"] == "CN=Octavia Server CA,O=OpenStack Octavia"
    assert info["clientCertificate"]["issuer"] == "CN=Octavia Client CA,O=OpenStack Octavia"
    assert dt.datetime.fromisoformat(info["clientCertificate"]["notAfter"]) == NOW + 365 * DAY
    assert dt.datetime.fromisoformat(info["serverCA"]["notAfter"]) == NOW + 3650 * DAY
    assert len(info["serverCABundle"]) == 1 and len(info["clientCABundle"]) == 1
    json.dumps(info)  # status-ready
    broken = describe({SERVER_CA_CERT: b"junk"})
    assert broken["serverCA"] == {"error": "unparseable"}
    assert broken["clientCA"] == {"error": "missing"}
    assert describe(None)["clientCertificate"] == {"error": "missing"}


def test_no_secret_material_in_actions_warnings_or_describe(pp):
    s_cert, s_key = make_user_ca("Corp Server CA")
    user_s = user_secret(s_cert, s_key, passphrase=b"user-secret-passphrase-xyz")
    texts = []
    first = plan_certificates(None, pp, EC, NOW, user_server_ca=user_s)
    d1 = plan_certificates(first.data, pp, EC, NOW, user_server_ca=user_s, rotate_client_ca=True)
    d2 = plan_certificates(d1.data, pp, EC, NOW + 3640 * DAY, user_server_ca=user_s, rotate_client_ca=True)
    for plan in (first, d1, d2):
        texts += plan.actions + plan.warnings + [repr(plan.expiry), json.dumps(describe(plan.data))]
        texts.append(repr(CertificateSettings()))
    blob = "\n".join(texts)
    secrets_ = [pp.ca_key, pp.server_certs_key, "user-secret-passphrase-xyz", "PRIVATE KEY"]
    # body lines of every private key PEM that appeared anywhere
    for plan in (first, d1, d2):
        for k, v in plan.data.items():
            if b"PRIVATE KEY" in v:
                body = re.search(rb"PRIVATE KEY-----\n(.+?)\n-----END", v, re.S).group(1)
                secrets_ += [line.decode() for line in body.splitlines() if len(line) >= 32]
    secrets_ += [line.decode() for line in re.search(rb"KEY-----\n(.+?)\n-----END", user_s["tls.key"], re.S)
                 .group(1).splitlines() if len(line) >= 32]
    for s in secrets_:
        assert s not in blob
    assert "Passphrases()" == repr(pp)
