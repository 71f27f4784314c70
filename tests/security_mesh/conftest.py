"""Security on a real local mesh: one mesh per test module (processes on 127.0.0.1), always torn down.

Records reach the collector every 0.2 s, so reads of the request log go through :func:`records_of`,
which waits (bounded) for the records it was asked for instead of sleeping a fixed time.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from cryptography import x509

from meshkit.backends.local.ca import WorkloadCert
from meshkit.mesh import Mesh
from tests.local.conftest import start_mesh, stop_mesh

ISTIOFILES = "cluster/istiofiles/"
TRUST = "spiffe://cluster.local"
GATEWAY_ID = f"{TRUST}/ns/istio-system/sa/istio-ingressgateway-service-account"
SERVICES = ("customer", "preference", "recommendation")
RBAC_DENIED = "RBAC: access denied"


def spiffe(sa: str, ns: str = "tutorial") -> str:
    return f"{TRUST}/ns/{ns}/sa/{sa}"


def istiofile(name: str) -> str:
    """A tutorial file the labs apply, from the repository root (pytest runs from there)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(root, ISTIOFILES, name)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = start_mesh(tmp_path_factory.mktemp("mesh"))
    try:
        yield m
    finally:
        stop_mesh(m)


@pytest.fixture
def clean(mesh: Mesh) -> Iterator[Mesh]:
    """The module's mesh with no resource left over from the previous test."""
    mesh.reset()
    yield mesh
    mesh.reset()


@pytest.fixture(scope="module")
def curl_pod(mesh: Mesh) -> Iterator[str]:
    """Istio's curl sample without a sidecar: it talks plaintext straight to the service's pod."""
    yield mesh.deploy("curl", "v1", sidecar=False)
    mesh.undeploy("curl")


def records_of(
    mesh: Mesh,
    request_ids: Iterable[str],
    since: float,
    ready: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 5.0,
) -> dict[str, list[dict[str, Any]]]:
    """Every proxy's records of each request, once ``ready`` holds for all of them (or the timeout)."""
    ids = set(request_ids)
    deadline = time.monotonic() + timeout
    while True:
        by_id: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        for row in mesh.request_log(since):
            if row.get("request_id") in by_id:
                by_id[row["request_id"]].append(row)
        if all(ready(rows) for rows in by_id.values()) or time.monotonic() > deadline:
            return by_id
        time.sleep(0.1)


def destination(rows: list[dict[str, Any]], app: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["reporter"] == "destination" and r["destination_app"] == app]


def cli(mesh: Mesh, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``meshkit`` command as a learner types it, against this module's mesh."""
    env = dict(os.environ, MESHKIT_HOME=str(mesh.backend.home))  # type: ignore[attr-defined]
    return subprocess.run([sys.executable, "-m", "meshkit.cli", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def presented_certificate(port: int, client: WorkloadCert, trust_pem: str) -> x509.Certificate:
    """The certificate a listener on ``port`` presents in a real mTLS handshake with ``client`` as the
    caller's certificate, read as ``openssl s_client | openssl x509 -text`` would read it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # mesh peers are checked by SPIFFE id, not host name
    ctx.load_verify_locations(cadata=trust_pem)
    with tempfile.TemporaryDirectory() as tmp:
        chain, key = os.path.join(tmp, "chain.pem"), os.path.join(tmp, "key.pem")
        with open(chain, "w") as f:
            f.write(client.chain_pem)
        with open(key, "w") as f:
            f.write(client.key_pem)
        ctx.load_cert_chain(chain, key)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der, "the listener presented no certificate"
    return x509.load_der_x509_certificate(der)
