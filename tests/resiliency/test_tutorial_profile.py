"""The tutorial-era profile (Istio 1.6–1.9): Istio's default retry policy retried a 503 on
another pod, which is what the tutorial's "Retry" chapter relies on. A mesh of its own.

The route under test is a VirtualService without ``retries`` (Istio's default policy applies),
the counterpart of ``test_retries.py::test_current_profile_default_policy_does_not_retry_a_503``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meshkit import Mesh
from tests.resiliency.conftest import start_mesh
from tests.resiliency.support import apply, load, pods_of, requests_seen_by, summary_line, to, virtual_service


@pytest.fixture(scope="module")
def tutorial_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    yield from start_mesh(tmp_path_factory.mktemp("mesh-tutorial"), "tutorial")


def test_tutorial_profile_default_policy_retries_a_503_on_another_pod(tutorial_mesh: Mesh) -> None:
    mesh = tutorial_mesh
    assert mesh.profile == "tutorial"
    (v2,) = pods_of(mesh, "recommendation-v2")
    mesh.misbehave(v2)
    apply(mesh, virtual_service({"route": [to()]}))
    before = requests_seen_by(mesh, v2)
    result = load(mesh, n=100, concurrency=2)
    summary = result.summary()
    assert summary["codes"] == {"200": 100}, summary
    assert summary["versions"] == {"v1": 100} and summary["flags"] == {"-": 100}
    hits = requests_seen_by(mesh, v2) - before
    assert hits >= 20  # ROUND_ROBIN sent about half to v2: each failed and was retried on v1
    retried = [row for row in mesh.request_log() if row.get("reporter") == "source"
               and row.get("proxy", "").startswith("preference") and row.get("attempts") == 2]
    assert len(retried) == hits  # preference's sidecar retried every v2 failure once, on v1
    summary_line("tutorial default retry", requests=100, ok=100, v2_failed_attempts=hits,
                 retried_by_preference_sidecar=len(retried))
