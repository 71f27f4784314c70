"""Contract smoke test against a real kind cluster with Istio. Opt-in: ``make test-kind``.

Runs only when MESHKIT_KIND_TESTS=1, Docker answers ``docker info`` and ``kind`` is on PATH; otherwise
every test here is skipped with the precise reason. Set MESHKIT_KIND_KEEP=1 to keep the cluster.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator

import pytest

from meshkit.backends.kind.backend import KindBackend
from tests.kind.availability import kind_unavailable

pytestmark: list[pytest.MarkDecorator] = [pytest.mark.kind]


REASON = kind_unavailable()
if REASON:
    pytestmark = [pytest.mark.kind, pytest.mark.skip(reason=REASON)]

DR = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": {"name": "recommendation", "namespace": "tutorial"},
    "spec": {
        "host": "recommendation",
        "subsets": [
            {"name": "version-v1", "labels": {"version": "v1"}},
            {"name": "version-v2", "labels": {"version": "v2"}},
        ],
    },
}
VS = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "recommendation", "namespace": "tutorial"},
    "spec": {
        "hosts": ["recommendation"],
        "http": [{"route": [{"destination": {"host": "recommendation", "subset": "version-v2"}}]}],
    },
}


@pytest.fixture(scope="module")
def backend() -> Iterator[KindBackend]:
    kind = KindBackend(progress=lambda i, n, what: print(f"[{i}/{n}] {what}", flush=True))
    kind.up()
    yield kind
    kind.reset()
    kind.close()
    if os.environ.get("MESHKIT_KIND_KEEP") != "1":
        kind.down()


def curl(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def test_pods_run_with_sidecars(backend: KindBackend) -> None:
    pods = backend.pods()
    assert {p.deployment for p in pods} >= {
        "customer",
        "preference-v1",
        "recommendation-v1",
        "recommendation-v2",
    }
    assert all(p.ready and p.sidecar for p in pods)


def test_gateway_answers_with_the_chain(backend: KindBackend) -> None:
    body = curl(backend.gateway_url() + "/customer")
    assert body.startswith("customer => preference => recommendation v")


def test_apply_get_route_delete(backend: KindBackend) -> None:
    results = backend.apply([DR, VS])
    assert [r.action for r in results] in (
        ["created", "created"],
        ["configured", "configured"],
        ["unchanged", "unchanged"],
    )
    assert [d["metadata"]["name"] for d in backend.get("vs", "recommendation")] == ["recommendation"]

    def only_v2() -> tuple[bool, str]:
        lines = [curl(backend.gateway_url() + "/customer").strip() for _ in range(6)]
        return all("recommendation v2" in line for line in lines), "; ".join(lines)

    backend.wait_until(only_v2, 60, "every request to reach recommendation v2")
    assert str(backend.delete("vs", "recommendation")).endswith("deleted")
    assert backend.get("vs", "recommendation") == []
