"""mTLS between real sidecars: auto mTLS by default, PERMISSIVE / STRICT / DISABLE PeerAuthentication,
a DestinationRule that turns TLS off, a pod without a sidecar, and what an eavesdropper sees on the wire.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import ssl
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from meshkit.backends.local.ca import CertificateAuthority, WorkloadCert
from meshkit.backends.local.sniff import render
from meshkit.backends.local.workloadkey import describe_key
from meshkit.mesh import Mesh
from tests.security_mesh.conftest import (
    GATEWAY_ID,
    destination,
    istiofile,
    presented_certificate,
    records_of,
    spiffe,
)

CHAIN_OK = "customer => preference => recommendation v"
RESET_BODY = "customer => Error: 503 - upstream connect error or disconnect/reset before headers. reset reason: "
DR_PREFERENCE_TLS_DISABLE = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: preference}
spec:
  host: preference
  trafficPolicy:
    tls: {mode: DISABLE}
"""
CALLERS = {"customer": GATEWAY_ID, "preference": spiffe("customer"), "recommendation": spiffe("preference")}


def chain_records(mesh: Mesh, n: int = 6) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Send ``n`` requests through the gateway; their replies and every destination proxy's records."""
    since = time.time() - 1
    result = mesh.load(n=n, flags=False)
    ids = [r["request_id"] for r in result.records]
    by_id = records_of(mesh, ids, since, lambda rows: all(destination(rows, app) for app in CALLERS))
    return result.records, by_id


def test_default_is_auto_mtls_with_the_callers_spiffe_identity(clean: Mesh) -> None:
    replies, by_id = chain_records(clean)
    assert all(r["code"] == 200 and r["body"].startswith(CHAIN_OK) for r in replies)
    for rows in by_id.values():
        for app, caller in CALLERS.items():
            (rec,) = destination(rows, app)
            assert rec["connection_security_policy"] == "mutual_tls", app
            assert rec["source_principal"] == caller, app
            assert rec["destination_principal"] == spiffe(app)
    metrics = clean.metrics("preference-v1")
    assert 'connection_security_policy="mutual_tls"' in metrics


@pytest.mark.parametrize("permissive", [False, True], ids=["no-policy", "PERMISSIVE"])
def test_pod_without_sidecar_reaches_a_permissive_service_in_plaintext(clean: Mesh, curl_pod: str,
                                                                       permissive: bool) -> None:
    if permissive:
        clean.apply(istiofile("peer-authentication-all-permissive.yaml"))
    since, rid = time.time() - 1, str(uuid.uuid4())
    status, body = clean.exec(curl_pod, "http://customer:8080/", {"x-request-id": rid})
    assert status == 200 and body.startswith(CHAIN_OK)
    (rec,) = destination(records_of(clean, [rid], since, lambda rows: bool(destination(rows, "customer")))[rid],
                         "customer")
    assert (rec["connection_security_policy"], rec["source_principal"]) == ("none", "unknown")


def test_strict_resets_plaintext_while_the_mesh_keeps_talking_mtls(clean: Mesh, curl_pod: str) -> None:
    clean.apply(istiofile("peer-authentication-all-strict.yaml"))
    status, body = clean.exec(curl_pod, "http://customer:8080/")
    assert status == 0 and body.startswith("curl: (56) Recv failure"), (status, body)
    assert clean.exec(curl_pod, "http://preference:8080/")[0] == 0
    replies, by_id = chain_records(clean, n=4)
    assert all(r["code"] == 200 and r["body"].startswith(CHAIN_OK) for r in replies)
    for rows in by_id.values():
        assert {r["connection_security_policy"] for app in CALLERS for r in destination(rows, app)} == {"mutual_tls"}


def test_destination_rule_tls_disable_toward_strict_is_503(clean: Mesh) -> None:
    clean.apply(istiofile("peer-authentication-all-strict.yaml"), DR_PREFERENCE_TLS_DISABLE)
    result = clean.load(n=3)
    for rec in result.records:
        assert rec["code"] == 503
        # customer's sidecar spoke plaintext; preference's STRICT listener reset the connection
        assert rec["body"] == RESET_BODY + "connection termination"
        assert rec["flags"] == "UC"


def test_disable_sends_plaintext_everywhere(clean: Mesh) -> None:
    clean.apply(istiofile("peer-authentication-all-disable.yaml"))
    replies, by_id = chain_records(clean)
    assert all(r["code"] == 200 and r["body"].startswith(CHAIN_OK) for r in replies)
    for rows in by_id.values():
        for app in CALLERS:
            (rec,) = destination(rows, app)
            assert (rec["connection_security_policy"], rec["source_principal"]) == ("none", "unknown"), app


# --- certificates the sidecar will not take --------------------------------------------------------

def _mtls_get(port: int, cert: WorkloadCert, trust_pem: str, tmp: Path) -> str:
    """GET / over TLS presenting ``cert``; the reply's status line, or how the connection ended."""
    (tmp / "chain.pem").write_text(cert.chain_pem)
    (tmp / "key.pem").write_text(cert.key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # mesh peers are checked by SPIFFE id, not host name
    ctx.load_verify_locations(cadata=trust_pem)
    ctx.load_cert_chain(tmp / "chain.pem", tmp / "key.pem")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                ctx.wrap_socket(raw) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nhost: preference:8080\r\nconnection: close\r\n\r\n")
            reply = tls.recv(4096)
    except (ssl.SSLError, ConnectionError) as exc:
        return f"refused: {type(exc).__name__}"
    return reply.split(b"\r\n", 1)[0].decode() if reply else "refused: closed"


def test_only_live_certificates_from_the_mesh_ca_are_accepted(clean: Mesh, tmp_path: Path) -> None:
    clean.apply(istiofile("peer-authentication-all-strict.yaml"),
                istiofile("authorization-policy-preference-allow.yaml"))  # only sa/customer may GET
    home = Path(clean.backend.home)  # type: ignore[attr-defined]
    mesh_ca = CertificateAuthority.load_or_create(home / "ca")
    other_ca = CertificateAuthority.load_or_create(tmp_path / "other-ca")
    port = next(p for p in clean.pods() if p.app == "preference").extra["ports"]["inbound_tls"]
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    trust = mesh_ca.root_pem
    assert _mtls_get(port, mesh_ca.issue("tutorial", "customer"), trust, tmp_path) == "HTTP/1.1 200 OK"
    assert _mtls_get(port, mesh_ca.issue("tutorial", "recommendation"), trust, tmp_path) == "HTTP/1.1 403 Forbidden"
    # the same SPIFFE id (sa/customer) signed by another CA, or expired, never completes the handshake
    assert _mtls_get(port, other_ca.issue("tutorial", "customer"), trust, tmp_path).startswith("refused")
    expired = mesh_ca.issue("tutorial", "customer", ttl_s=60, now=past)
    assert _mtls_get(port, expired, trust, tmp_path).startswith("refused")
    assert clean.curl()[0] == 200


# --- what an eavesdropper sees -----------------------------------------------------------------------

SNIFFED: dict[str, str] = {}  # rendering per scenario, printed by -s for the lab's closing note


def sniff(mesh: Mesh, scenario: str) -> list[dict[str, Any]]:
    views = mesh.sniff("preference", requests=3, seconds=1.5)
    SNIFFED[scenario] = render(views)
    print(f"\n=== sniff preference ({scenario}) ===\n{SNIFFED[scenario]}")
    assert views, "nothing crossed the wire to preference while sniffing"
    return views


def test_sniff_with_mtls_disabled_shows_the_headers_in_clear(clean: Mesh) -> None:
    clean.apply(istiofile("peer-authentication-all-disable.yaml"))
    views = sniff(clean, "DISABLE")
    assert all(not v["encrypted"] for v in views)
    text = "".join(v["text"] for v in views)
    assert text.startswith("GET / HTTP/1.1\r\n")
    for header in ("x-b3-traceid: ", "x-request-id: ", "host: preference:8080", "user-agent: customer/v1"):
        assert header in text
    assert "x-request-id" in SNIFFED["DISABLE"] and "plaintext" in SNIFFED["DISABLE"]


@pytest.mark.parametrize("strict", [False, True], ids=["auto-mTLS", "STRICT"])
def test_sniff_with_mtls_shows_only_tls_records(clean: Mesh, strict: bool) -> None:
    if strict:
        clean.apply(istiofile("peer-authentication-all-strict.yaml"))
    views = sniff(clean, "STRICT" if strict else "default")
    assert all(v["encrypted"] and v["listener"] == "inbound_tls" for v in views)
    assert all(v["tls_records"][0].startswith("handshake") for v in views)
    assert any(r.startswith("application_data") for v in views for r in v["tls_records"])
    dumped = json.dumps(views)
    for secret in ("x-request-id", "x-b3-traceid", "preference:8080", "customer/v1"):
        assert secret not in dumped


def test_a_sidecar_presents_what_istio_issues_an_rsa_2048_key_under_an_rsa_root(clean: Mesh) -> None:
    mesh_ca = CertificateAuthority.load_or_create(Path(clean.backend.home) / "ca")  # type: ignore[attr-defined]
    port = next(p for p in clean.pods() if p.app == "preference").extra["ports"]["inbound_tls"]
    leaf = presented_certificate(port, mesh_ca.issue("tutorial", "customer"), mesh_ca.root_pem)
    # what `openssl x509 -text` shows of it: istio-agent's default key, signed by istiod's self-signed root
    assert describe_key(leaf.public_key()) == "RSA 2048"
    assert leaf.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256
    assert leaf.subject.rfc4514_string() == "" and leaf.issuer.rfc4514_string() == "O=cluster.local"
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical and san.value.get_values_for_type(x509.UniformResourceIdentifier) == [spiffe("preference")]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(hours=24, minutes=2)
    # the gateway (Envoy with istio-agent too) holds the same kind, as its config dump's chain shows
    (secrets,) = [c for c in clean.config_dump("istio-ingressgateway")["configs"]
                  if c["@type"].endswith("SecretsConfigDump")]
    (default,) = [s for s in secrets["dynamic_active_secrets"] if s["name"] == "default"]
    chain = base64.b64decode(default["secret"]["tls_certificate"]["certificate_chain"]["inline_bytes"])
    assert describe_key(x509.load_pem_x509_certificate(chain).public_key()) == "RSA 2048"
    root = x509.load_pem_x509_certificate(mesh_ca.root_pem.encode())
    assert describe_key(root.public_key()) == "RSA 2048"
    assert root.subject.rfc4514_string() == root.issuer.rfc4514_string() == "O=cluster.local"
    assert root.not_valid_after_utc - root.not_valid_before_utc == dt.timedelta(days=3650)
    usage = root.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and not usage.value.crl_sign
