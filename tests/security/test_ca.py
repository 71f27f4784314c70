"""The mesh CA: persisted root, SPIFFE workload certificates, rotation timing, no key leaks."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from meshkit.backends.local.ca import (
    ROOT_CERT_FILE,
    ROOT_KEY_FILE,
    CertificateAuthority,
    WorkloadCert,
    namespace_of,
    peer_spiffe_id,
    principal_of,
    spiffe_id_for,
)
from meshkit.errors import InvalidConfig


def test_root_is_persisted_with_a_private_key_file(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    key_mode = stat.S_IMODE((tmp_path / ROOT_KEY_FILE).stat().st_mode)
    assert key_mode == 0o600
    again = CertificateAuthority.load_or_create(tmp_path)
    assert again.root_pem == ca.root_pem == (tmp_path / ROOT_CERT_FILE).read_text()
    root = x509.load_pem_x509_certificate(ca.root_pem.encode())
    assert root.subject.rfc4514_string() == "O=cluster.local"
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


def test_a_second_state_dir_is_a_different_ca(tmp_path: Path) -> None:
    one = CertificateAuthority.load_or_create(tmp_path / "a")
    two = CertificateAuthority.load_or_create(tmp_path / "b")
    assert one.root_pem != two.root_pem


def test_corrupt_ca_files_are_a_located_error(tmp_path: Path) -> None:
    CertificateAuthority.load_or_create(tmp_path)
    (tmp_path / ROOT_KEY_FILE).write_text("not a key")
    with pytest.raises(InvalidConfig) as err:
        CertificateAuthority.load_or_create(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_workload_certificate_carries_only_the_spiffe_identity(ca: CertificateAuthority) -> None:
    before = dt.datetime.now(dt.UTC)
    cert = ca.issue("tutorial", "customer", ttl_s=600)
    parsed = x509.load_pem_x509_certificate(cert.cert_pem.encode())
    root = x509.load_pem_x509_certificate(ca.root_pem.encode())
    parsed.verify_directly_issued_by(root)
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/tutorial/sa/customer"
    ]
    assert parsed.subject == x509.Name([])
    assert parsed.issuer == root.subject
    assert parsed.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = parsed.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    # back-dated by two minutes (istiod's clock-skew grace), valid for the ttl
    assert parsed.not_valid_before_utc <= before - dt.timedelta(seconds=119)
    lifetime = parsed.not_valid_after_utc - before
    assert dt.timedelta(seconds=598) <= lifetime <= dt.timedelta(seconds=601)
    assert cert.not_after == parsed.not_valid_after_utc
    assert cert.serial_number == parsed.serial_number
    key = serialization.load_pem_private_key(cert.key_pem.encode(), password=None)
    assert key.public_key().public_numbers() == parsed.public_key().public_numbers()  # type: ignore[union-attr]
    assert cert.chain_pem == cert.cert_pem + ca.root_pem


def test_serials_are_random(ca: CertificateAuthority) -> None:
    serials = {ca.issue("tutorial", "customer").serial_number for _ in range(5)}
    assert len(serials) == 5


def test_needs_rotation_at_half_life(ca: CertificateAuthority) -> None:
    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    cert = ca.issue("tutorial", "customer", ttl_s=3600, now=start)
    # the lifetime counts from issuance (not the 60 s back-dated not_before): half is 1800 s
    assert not cert.needs_rotation(start + dt.timedelta(seconds=1799))
    assert cert.needs_rotation(start + dt.timedelta(seconds=1800))
    assert cert.needs_rotation((start + dt.timedelta(seconds=3000)).timestamp())
    assert not cert.needs_rotation(start, fraction=0.9)


def test_describe_is_like_istioctl_proxy_config_secret(ca: CertificateAuthority) -> None:
    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    cert = ca.issue("tutorial", "preference", ttl_s=3600, now=start)
    rows = cert.describe(now=start)
    assert set(rows) == {"default", "ROOTCA"}
    default = rows["default"]
    assert default["type"] == "Cert Chain" and default["status"] == "ACTIVE" and default["valid_cert"] is True
    assert default["spiffe_id"] == "spiffe://cluster.local/ns/tutorial/sa/preference"
    assert default["serial_number"] == format(cert.serial_number, "x")
    assert default["not_after"] == "2030-01-01T01:00:00Z"
    assert default["not_before"] == "2029-12-31T23:58:00Z"
    assert default["issuer"] == "O=cluster.local"
    assert rows["ROOTCA"]["type"] == "CA" and rows["ROOTCA"]["subject"] == "O=cluster.local"
    assert cert.describe(now=start + dt.timedelta(hours=2))["default"]["valid_cert"] is False


def test_private_key_never_appears_in_repr_or_describe(ca: CertificateAuthority) -> None:
    cert = ca.issue("tutorial", "customer")
    key_body = cert.key_pem.splitlines()[1]
    for text in (repr(cert), str(cert), str(cert.describe()), repr(ca)):
        assert "PRIVATE KEY" not in text
        assert key_body not in text


@pytest.mark.parametrize(
    ("namespace", "sa", "ttl", "fragment"),
    [
        ("Tutorial", "customer", 60, "namespace 'Tutorial'"),
        ("tutorial", "bad/sa", 60, "service account 'bad/sa'"),
        ("tutorial", "customer", 0, "ttl_s 0"),
    ],
)
def test_bad_issue_requests_are_located_errors(
    ca: CertificateAuthority, namespace: str, sa: str, ttl: int, fragment: str
) -> None:
    with pytest.raises(InvalidConfig) as err:
        ca.issue(namespace, sa, ttl_s=ttl)
    assert fragment in str(err.value)


def test_identity_helpers() -> None:
    spiffe = spiffe_id_for("tutorial", "customer")
    assert spiffe == "spiffe://cluster.local/ns/tutorial/sa/customer"
    assert principal_of(spiffe) == "cluster.local/ns/tutorial/sa/customer"
    assert namespace_of(spiffe) == "tutorial"
    assert namespace_of("cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account") == "istio-system"
    assert namespace_of("no-namespace-here") == ""


class _NoCertPeer:
    def getpeercert(self) -> dict[str, object]:
        return {}


class _UriPeer:
    def getpeercert(self) -> dict[str, object]:
        return {"subjectAltName": (("DNS", "x"), ("URI", "https://not-spiffe"), ("URI", "spiffe://td/ns/a/sa/b"))}


def test_peer_spiffe_id_reads_only_spiffe_uris() -> None:
    assert peer_spiffe_id(None) is None
    assert peer_spiffe_id(_NoCertPeer()) is None  # type: ignore[arg-type]
    assert peer_spiffe_id(_UriPeer()) == "spiffe://td/ns/a/sa/b"  # type: ignore[arg-type]


def test_workload_cert_is_frozen(ca: CertificateAuthority) -> None:
    cert: WorkloadCert = ca.issue("tutorial", "customer")
    with pytest.raises(AttributeError):
        cert.spiffe_id = "spiffe://cluster.local/ns/tutorial/sa/admin"  # type: ignore[misc]
