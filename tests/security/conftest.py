"""Shared fixtures for the security engines: two independent CAs and a few workload certificates."""

from __future__ import annotations

import pytest

from meshkit.backends.local.ca import CertificateAuthority, WorkloadCert


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path_factory.mktemp("mesh-ca"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path_factory.mktemp("other-ca"))


@pytest.fixture(scope="module")
def customer(ca: CertificateAuthority) -> WorkloadCert:
    return ca.issue("tutorial", "customer")


@pytest.fixture(scope="module")
def preference(ca: CertificateAuthority) -> WorkloadCert:
    return ca.issue("tutorial", "preference")
