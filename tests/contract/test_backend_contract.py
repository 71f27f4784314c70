"""The Backend contract, written once and run against every backend.

The local backend always runs. The kind backend runs when Docker answers and kind is on PATH and
``MESHKIT_KIND_TESTS=1`` (``make test-kind``): a cold kind + Istio install takes minutes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshkit.backends.base import Backend, get_backend
from meshkit.mesh import Mesh
from meshkit.traffic import run_load
from tests.kind.availability import kind_unavailable

DR = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": {"name": "recommendation", "namespace": "tutorial"},
    "spec": {"host": "recommendation", "subsets": [{"name": "version-v1", "labels": {"version": "v1"}}]},
}
VS_V1 = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "recommendation", "namespace": "tutorial"},
    "spec": {"hosts": ["recommendation"], "http": [{"route": [{"destination": {
        "host": "recommendation", "subset": "version-v1"}}]}]},
}


@pytest.fixture(scope="module", params=["local", pytest.param("kind", marks=pytest.mark.kind)])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    if request.param == "kind":
        reason = kind_unavailable()
        if reason:
            pytest.skip(f"kind backend (needs Docker and kind): {reason}")
        impl = get_backend("kind")()
    else:
        impl = get_backend("local")(home=str(tmp_path_factory.mktemp("contract")))
    impl.up(profile="current")
    yield impl
    if request.param == "local" or os.environ.get("MESHKIT_KIND_KEEP") != "1":
        impl.down()


def until(check, deadline_s: float = 60.0):  # type: ignore[no-untyped-def]
    """Real clusters propagate config eventually: poll the data plane with a deadline."""
    end = time.monotonic() + deadline_s
    while True:
        result = check()
        if result or time.monotonic() > end:
            return result
        time.sleep(0.5)


def test_lifecycle_and_pods(backend: Backend) -> None:
    assert backend.is_running()
    backend.up(profile="current")  # idempotent
    pods = backend.pods()
    apps = {(p.app, p.version) for p in pods if p.namespace == "tutorial"}
    assert {("customer", "v1"), ("preference", "v1"), ("recommendation", "v1"), ("recommendation", "v2")} <= apps
    assert all(p.ready for p in pods)


def test_apply_get_delete(backend: Backend) -> None:
    results = backend.apply([DR, VS_V1])
    assert [(r.kind, r.name) for r in results] == [("DestinationRule", "recommendation"),
                                                   ("VirtualService", "recommendation")]
    assert [r["metadata"]["name"] for r in backend.get("DestinationRule", "recommendation")] == ["recommendation"]
    versions = until(lambda: {r["version"] for r in run_load(backend.gateway_url(), n=20).records} == {"v1"})
    assert versions
    assert str(backend.delete("VirtualService", "recommendation")).endswith("deleted")
    assert backend.get("VirtualService", "recommendation") == []
    backend.reset()
    names = {(r["kind"], r["metadata"]["name"]) for r in backend.get()}
    assert ("DestinationRule", "recommendation") not in names


def test_workload_controls(backend: Backend) -> None:
    mesh = Mesh(backend)
    backend.apply([DR, VS_V1])
    try:
        pods = backend.misbehave("recommendation-v1")
        assert pods and all(p.startswith("recommendation-v1-") for p in pods)
        assert until(lambda: mesh.curl()[1].endswith(f"recommendation misbehavior from '{pods[0]}'"))
        backend.misbehave("recommendation-v1", on=False)
        assert until(lambda: mesh.curl()[0] == 200)
        backend.delay("recommendation-v1", 0.3)
        started = time.monotonic()
        assert mesh.curl()[0] == 200 and time.monotonic() - started >= 0.3
        backend.delay("recommendation-v1", 0)
    finally:
        backend.reset()


def test_exec_from_inside_a_pod(backend: Backend) -> None:
    pod = next(p.name for p in backend.pods() if p.app == "customer")
    status, body = backend.exec_request(pod, "http://preference:8080/")
    assert status == 200 and body.startswith("preference => recommendation v")


def test_telemetry_shapes(backend: Backend) -> None:
    run_load(backend.gateway_url(), n=10)
    rows = until(lambda: [r for r in backend.request_log(time.time() - 120) if r["reporter"] == "destination"])
    assert rows and {"response_code", "response_flags", "destination_version", "source_workload"} <= set(rows[0])
    assert "istio_requests_total" in backend.metrics_text()
    traces = until(lambda: backend.traces("customer", limit=5)["data"])
    assert traces and {"traceID", "spans", "processes"} <= set(traces[0])


def test_down_and_restart_keep_resources(backend: Backend, tmp_path: Path) -> None:
    if backend.name != "local":
        pytest.skip("restarting a kind cluster is out of this test's time budget (kind backend)")
    backend.apply([DR])
    backend.down()
    assert not backend.is_running()
    backend.up(profile="current")
    assert [r["metadata"]["name"] for r in backend.get("DestinationRule")] == ["recommendation"]
    backend.reset()
