"""Citadel's job for the local mesh: a root CA that issues SPIFFE workload certificates.

The root key and self-signed root certificate live as PEM files in a state directory (the key
with 0600 permissions), so a restarted control plane keeps issuing certificates that existing
sidecars trust. As istiod's self-signed CA does, the root is an RSA key of 2048 bits
(``CITADEL_SELF_SIGNED_CA_RSA_KEY_SIZE``), its subject is ``O=<trust domain>``, it is valid from the
moment it is made for ten years, and it may sign certificates only. Workload certificates are
valid from two minutes back (clock skew) and never outlive the root. The CA signs CSRs for RSA
keys (2048 to 4096 bits) and ECDSA P-256/P-384 keys, the keys istio-agent and ztunnel make.

Example:
    >>> ca = CertificateAuthority.load_or_create(state_dir)                 # doctest: +SKIP
    >>> ca.issue("tutorial", "customer", ttl_s=3600).spiffe_id             # doctest: +SKIP
    'spiffe://cluster.local/ns/tutorial/sa/customer'
    >>> principal_of("spiffe://cluster.local/ns/tutorial/sa/customer")
    'cluster.local/ns/tutorial/sa/customer'
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshkit.backends.local.durable import write_atomic
from meshkit.backends.local.workloadkey import (
    MAX_RSA_BITS,
    MIN_RSA_BITS,
    KeySpec,
    WorkloadKey,
    describe_key,
    key_pem,
    root_key_bits,
)
from meshkit.errors import InvalidConfig

DEFAULT_TRUST_DOMAIN = "cluster.local"
ROOT_CERT_FILE = "root-cert.pem"
ROOT_KEY_FILE = "root-key.pem"
ROOT_TTL = dt.timedelta(days=3650)
SIGNABLE_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}
FAST_KEY = KeySpec("ECDSA")  # what tests mint with: a P-256 key takes microseconds, an RSA one tens of ms
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
# Back-dating a workload certificate absorbs clock differences between the CA and the processes that
# verify; istiod's CA uses two minutes (the root is not back-dated)
BACKDATE = dt.timedelta(minutes=2)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def spiffe_id_for(namespace: str, service_account: str, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> str:
    """The SPIFFE URI Istio gives a workload.

    >>> spiffe_id_for("tutorial", "customer")
    'spiffe://cluster.local/ns/tutorial/sa/customer'
    """
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def principal_of(spiffe_id: str) -> str:
    """The AuthorizationPolicy form of an identity: the SPIFFE URI without its scheme.

    >>> principal_of("spiffe://cluster.local/ns/tutorial/sa/customer")
    'cluster.local/ns/tutorial/sa/customer'
    """
    return spiffe_id.removeprefix("spiffe://")


def namespace_of(principal: str) -> str:
    """The namespace inside a principal or SPIFFE id, or "" when it has none.

    >>> namespace_of("cluster.local/ns/tutorial/sa/customer")
    'tutorial'
    """
    parts = principal_of(principal).split("/")
    for i, part in enumerate(parts[:-1]):
        if part == "ns":
            return parts[i + 1]
    return ""


def peer_spiffe_id(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """The SPIFFE URI SAN of the *verified* peer certificate of a TLS connection, or None.

    ``getpeercert()`` only returns fields for a certificate the handshake verified, so an
    unverified or absent peer certificate yields None.

    >>> peer_spiffe_id(writer.get_extra_info("ssl_object"))        # doctest: +SKIP
    'spiffe://cluster.local/ns/tutorial/sa/customer'
    """
    if ssl_object is None:
        return None
    cert: Any = ssl_object.getpeercert()
    if not cert:
        return None
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "URI" and isinstance(value, str) and value.startswith("spiffe://"):
            return value
    return None


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _as_datetime(now: dt.datetime | float | None) -> dt.datetime:
    if now is None:
        return _utcnow()
    if isinstance(now, dt.datetime):
        return now if now.tzinfo else now.replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(now, dt.UTC)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WorkloadCert:
    """One workload's key pair and certificate, as the CA handed it out.

    ``key_pem`` is excluded from ``repr()`` and from :meth:`describe`, so printing or logging a
    certificate never leaks its private key.

    >>> cert.needs_rotation(time.time())                            # doctest: +SKIP
    False
    >>> cert.describe()["default"]["status"]                        # doctest: +SKIP
    'ACTIVE'
    """

    spiffe_id: str
    not_before: dt.datetime
    not_after: dt.datetime
    serial_number: int
    issuer: str
    cert_pem: str
    root_pem: str
    key_pem: str = field(repr=False)

    @property
    def principal(self) -> str:
        return principal_of(self.spiffe_id)

    @property
    def chain_pem(self) -> str:
        """Leaf certificate followed by the root, the order TLS peers expect."""
        return self.cert_pem + self.root_pem

    def needs_rotation(self, now: dt.datetime | float, fraction: float = 0.5) -> bool:
        """True once ``fraction`` of the lifetime has elapsed (Istio rotates at half-life)."""
        moment = _as_datetime(now)
        # measured from issuance, as istio-agent does: not_before is back-dated for clock skew
        issued = self.not_before + BACKDATE
        lifetime = (self.not_after - issued).total_seconds()
        elapsed = (moment - issued).total_seconds()
        return elapsed >= fraction * lifetime

    def is_valid(self, now: dt.datetime | float | None = None) -> bool:
        moment = _as_datetime(now)
        return self.not_before <= moment < self.not_after

    def describe(self, now: dt.datetime | float | None = None) -> dict[str, dict[str, Any]]:
        """The rows of ``istioctl proxy-config secret``: the workload chain and the root CA."""
        root = x509.load_pem_x509_certificate(self.root_pem.encode())
        moment = _as_datetime(now)
        return {
            "default": {
                "resource_name": "default",
                "type": "Cert Chain",
                "status": "ACTIVE",
                "valid_cert": self.is_valid(moment),
                "serial_number": format(self.serial_number, "x"),
                "not_after": _iso(self.not_after),
                "not_before": _iso(self.not_before),
                "spiffe_id": self.spiffe_id,
                "subject": "",
                "issuer": self.issuer,
            },
            "ROOTCA": {
                "resource_name": "ROOTCA",
                "type": "CA",
                "status": "ACTIVE",
                "valid_cert": root.not_valid_before_utc <= moment < root.not_valid_after_utc,
                "serial_number": format(root.serial_number, "x"),
                "not_after": _iso(root.not_valid_after_utc),
                "not_before": _iso(root.not_valid_before_utc),
                "spiffe_id": "",
                "subject": root.subject.rfc4514_string(),
                "issuer": root.issuer.rfc4514_string(),
            },
        }


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret file created 0600 from the start (never world-readable, even briefly)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class CertificateAuthority:
    """The mesh root CA. Use :meth:`load_or_create`; :meth:`issue` mints workload certificates.

    >>> ca = CertificateAuthority.load_or_create(Path("~/.meshkit/ca").expanduser())  # doctest: +SKIP
    >>> ca.issue("tutorial", "preference").spiffe_id                                  # doctest: +SKIP
    'spiffe://cluster.local/ns/tutorial/sa/preference'
    """

    def __init__(self, root_key: WorkloadKey, root_cert: x509.Certificate, trust_domain: str):
        self._key = root_key
        self._cert = root_cert
        self.trust_domain = trust_domain
        self.root_pem = root_cert.public_bytes(serialization.Encoding.PEM).decode()

    def __repr__(self) -> str:
        return f"CertificateAuthority(trust_domain={self.trust_domain!r}, root={self.issuer!r})"

    @property
    def issuer(self) -> str:
        return self._cert.subject.rfc4514_string()

    @classmethod
    def load_or_create(
        cls, state_dir: Path, trust_domain: str = DEFAULT_TRUST_DOMAIN,
        make_root_key: Callable[[int], rsa.RSAPrivateKey] | None = None,
    ) -> CertificateAuthority:
        """Load ``root-cert.pem``/``root-key.pem`` from ``state_dir``, creating them the first time.

        ``make_root_key(bits)`` makes a new root's key (the control plane's started as it did).
        """
        if not _DNS_SUBDOMAIN.match(trust_domain):
            raise InvalidConfig([f"trust domain {trust_domain!r}: must be a DNS name like cluster.local"])
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        cert_path, key_path = state_dir / ROOT_CERT_FILE, state_dir / ROOT_KEY_FILE
        if cert_path.exists() and key_path.exists():
            try:
                key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
                cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            except ValueError as exc:
                raise InvalidConfig([f"{state_dir}: the CA files are not valid PEM ({exc})"]) from None
            # a mesh made by an earlier meshkit keeps its EC root (istiod takes a plugged-in EC CA too)
            if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
                raise InvalidConfig([f"{key_path}: expected an RSA or EC private key, not {describe_key(key)}"])
            if cert.public_key().public_bytes(*_SPKI) != key.public_key().public_bytes(*_SPKI):
                # every workload certificate would chain to a root no proxy can verify: 503s everywhere
                raise InvalidConfig([f"{cert_path}: the CA certificate does not belong to the key {key_path.name}"])
            return cls(key, cert, trust_domain)
        bits = root_key_bits()
        key = make_root_key(bits) if make_root_key else rsa.generate_private_key(public_exponent=65537, key_size=bits)
        now = _utcnow().replace(microsecond=0)
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + ROOT_TTL)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(key_path, key_pem(key).encode())  # PKCS#1, as istiod writes ca-key.pem
        write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return cls(key, cert, trust_domain)

    def issue(
        self,
        namespace: str,
        service_account: str,
        ttl_s: float = 3600,
        now: dt.datetime | float | None = None,
        key_spec: KeySpec = FAST_KEY,
    ) -> WorkloadCert:
        """Mint a workload certificate whose only identity is its SPIFFE URI SAN, with a key made here.

        A shortcut for tests and tools: a pod makes its own key and sends a CSR (:meth:`sign_csr`).
        ``now`` lets tests mint certificates that are already expired or not yet valid; ``key_spec``
        defaults to ECDSA P-256, the fastest to make (a pod's default is RSA 2048, :class:`KeySpec`).
        """
        problems = []
        if not _DNS_LABEL.match(namespace):
            problems.append(f"namespace {namespace!r}: must be a DNS label (lower-case letters, digits, '-')")
        if not _DNS_SUBDOMAIN.match(service_account):
            problems.append(f"service account {service_account!r}: must be a DNS name")
        if ttl_s <= 0:
            problems.append(f"ttl_s {ttl_s}: must be positive")
        if problems:
            raise InvalidConfig(problems)
        spiffe_id = spiffe_id_for(namespace, service_account, self.trust_domain)
        key = key_spec.generate()
        cert = self._sign(spiffe_id, key.public_key(), ttl_s, now)
        return WorkloadCert(
            spiffe_id=spiffe_id,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            serial_number=cert.serial_number,
            issuer=self.issuer,
            cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            root_pem=self.root_pem,
            key_pem=key_pem(key),
        )

    def sign_csr(self, csr_pem: str, namespace: str, service_account: str, ttl_s: float = 3600) -> x509.Certificate:
        """Sign a workload's CSR for the identity its caller proved, as istiod's CA does.

        The private key never leaves the workload. The CSR must be well signed and ask for exactly
        the caller's SPIFFE id (Istio refuses a CSR whose identities the caller cannot claim).

        >>> ca.sign_csr(csr_for(key, "spiffe://cluster.local/ns/tutorial/sa/customer"),
        ...             "tutorial", "customer")                            # doctest: +SKIP
        """
        spiffe_id = spiffe_id_for(namespace, service_account, self.trust_domain)
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode())
        except (ValueError, UnicodeEncodeError):
            raise CsrRefused("the CSR is not a PEM certificate signing request") from None
        if not csr.is_signature_valid:
            raise CsrRefused("the CSR's signature does not verify")
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            asked, entries = san.get_values_for_type(x509.UniformResourceIdentifier), len(san)
        except x509.ExtensionNotFound:
            asked, entries = [], 0
        except ValueError:
            raise CsrRefused("the CSR's extensions cannot be read") from None
        if asked != [spiffe_id] or entries != 1:
            raise CsrRefused(f"the CSR asks for {', '.join(asked) or 'no identity'}; the caller is {spiffe_id}")
        return self._sign(spiffe_id, signable_key(csr), ttl_s, None)

    def _sign(self, spiffe_id: str, public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, ttl_s: float,
              now: dt.datetime | float | None) -> x509.Certificate:
        if ttl_s <= 0:
            raise InvalidConfig([f"ttl_s {ttl_s}: must be positive"])
        moment = _as_datetime(now)
        not_before = (moment - BACKDATE).replace(microsecond=0)
        # as istiod: a leaf never outlives the certificate that signs it
        not_after = min((moment + dt.timedelta(seconds=ttl_s)).replace(microsecond=0), self._cert.not_valid_after_utc)
        return (
            x509.CertificateBuilder()
            # Istio workload certificates carry an empty subject; identity is the SAN alone.
            .subject_name(x509.Name([]))
            .issuer_name(self._cert.subject)
            .public_key(public_key)
            .serial_number(_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=True,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            # RFC 5280: with an empty subject the SAN extension must be critical.
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=True
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )


class CsrRefused(ValueError):
    """The CA will not sign this CSR: malformed, badly signed, for someone else's identity, or a key it refuses."""


def signable_key(csr: x509.CertificateSigningRequest) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """The CSR's public key when it is one the CA signs for: RSA of 2048 to 4096 bits, or ECDSA P-256/P-384.

    Those are the keys istio-agent (RSA by default, ECDSA under ``ECC_SIGNATURE_ALGORITHM=ECDSA``)
    and ztunnel (ECDSA P-256) make; anything else is refused with what it was.

    >>> signable_key(x509.load_pem_x509_csr(csr_for(KeySpec("ECDSA").generate(), "spiffe://a/ns/b/sa/c").encode())).curve.name
    'secp256r1'
    """
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey) and MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in SIGNABLE_CURVES:
        return key
    raise CsrRefused(f"the CSR's key is {describe_key(key)}; the CA signs RSA keys of {MIN_RSA_BITS} to "
                     f"{MAX_RSA_BITS} bits and ECDSA P-256 or P-384 keys")


def _serial_number() -> int:
    # istiod draws a random serial below 2**128 (positive, as RFC 5280 requires)
    return secrets.randbelow(2**128 - 1) + 1


def csr_for(key: WorkloadKey, spiffe_id: str) -> str:
    """A CSR for ``spiffe_id`` signed with ``key`` (what istio-agent sends to istiod's CA)."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=True)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()
