"""ECC_SIGNATURE_ALGORITHM=ECDSA on a real mesh: istio-agent then makes ECDSA P-256 keys instead of
RSA 2048, and the CA (an RSA root) signs them; mTLS and SPIFFE identities work as before.

This module's mesh starts with the variable in its environment, which every pod inherits (in Istio
it reaches the proxies through ``proxyMetadata``).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import SignatureAlgorithmOID

from meshkit.backends.local.ca import CertificateAuthority
from meshkit.backends.local.workloadkey import ECC_SIGNATURE_ALGORITHM, describe_key
from meshkit.mesh import Mesh
from tests.local.conftest import start_mesh, stop_mesh
from tests.security_mesh.conftest import GATEWAY_ID, presented_certificate, spiffe


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    before = os.environ.get(ECC_SIGNATURE_ALGORITHM)
    os.environ[ECC_SIGNATURE_ALGORITHM] = "ECDSA"
    try:
        m = start_mesh(tmp_path_factory.mktemp("mesh-ecdsa"))
    finally:
        if before is None:
            del os.environ[ECC_SIGNATURE_ALGORITHM]
        else:
            os.environ[ECC_SIGNATURE_ALGORITHM] = before
    try:
        yield m
    finally:
        stop_mesh(m)


def test_ecdsa_sidecars_present_p256_keys_signed_by_the_rsa_root(mesh: Mesh) -> None:
    mesh_ca = CertificateAuthority.load_or_create(Path(mesh.backend.home) / "ca")  # type: ignore[attr-defined]
    root = x509.load_pem_x509_certificate(mesh_ca.root_pem.encode())
    assert describe_key(root.public_key()) == "RSA 2048"  # the variable is istio-agent's: the CA's key stays RSA
    caller = mesh_ca.issue("tutorial", "customer")
    for app in ("customer", "preference", "recommendation"):
        port = next(p for p in mesh.pods() if p.app == app).extra["ports"]["inbound_tls"]
        leaf = presented_certificate(port, caller, mesh_ca.root_pem)
        assert describe_key(leaf.public_key()) == "ECDSA P-256", app
        assert leaf.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256, app
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [spiffe(app)]


def test_mtls_and_identities_hold_with_ecdsa_keys(mesh: Mesh) -> None:
    status, body = mesh.curl()
    assert status == 200 and body.startswith("customer => preference => recommendation v"), body
    assert mesh.certs("istio-ingressgateway")["default"]["spiffe_id"] == GATEWAY_ID
    # the gateway's own certificate, from its config dump (what `istioctl proxy-config secret -o json` shows)
    dump = mesh.config_dump("istio-ingressgateway")
    (secrets,) = [c for c in dump["configs"] if c["@type"].endswith("SecretsConfigDump")]
    (default,) = [s for s in secrets["dynamic_active_secrets"] if s["name"] == "default"]
    chain = base64.b64decode(default["secret"]["tls_certificate"]["certificate_chain"]["inline_bytes"])
    assert describe_key(x509.load_pem_x509_certificate(chain).public_key()) == "ECDSA P-256"
    metrics = mesh.metrics("preference-v1")
    assert 'connection_security_policy="mutual_tls"' in metrics and f'source_principal="{spiffe("customer")}"' \
        in metrics
