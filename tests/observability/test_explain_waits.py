"""``mesh.explain()`` diagnoses from every proxy's report of the requests it explains, never from half.

Labs 03 and 04 once printed a wrong diagnosis (the app blamed for an injected fault), then an empty
one, because explain read the collector before the sidecars had shipped their records. Here the
sidecars ship only every 60 s (``MESHKIT_FLUSH_INTERVAL_S``), so any answer explain gives right
after the load can only come from it waiting for the telemetry of those requests.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from meshkit.mesh import Mesh
from tests.local.conftest import start_mesh, stop_mesh
from tests.observability.conftest import DR_V1_V2, vs_abort


@pytest.fixture(scope="module")
def slow_shipping_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    saved = os.environ.get("MESHKIT_FLUSH_INTERVAL_S")
    os.environ["MESHKIT_FLUSH_INTERVAL_S"] = "60"
    try:
        mesh = start_mesh(tmp_path_factory.mktemp("slow-shipping"))
    finally:
        if saved is None:
            os.environ.pop("MESHKIT_FLUSH_INTERVAL_S", None)
        else:
            os.environ["MESHKIT_FLUSH_INTERVAL_S"] = saved
    yield mesh
    stop_mesh(mesh)


def test_explain_waits_for_the_reports_of_the_requests_it_explains(slow_shipping_mesh: Mesh) -> None:
    mesh = slow_shipping_mesh
    mesh.apply(DR_V1_V2, vs_abort(50))
    since = time.time() - 0.5
    result = mesh.load(n=30, concurrency=3, flags=False)
    failed = [r for r in result.records if r["code"] != 200]
    assert failed, "an abort of 50 % failed none of 30 requests"
    assert mesh.backend.request_log(since) == [], "the sidecars shipped on their own: the test proves nothing"

    lines = mesh.explain(limit=100, since=since)

    assert len(lines) == len(failed)
    assert all("FI" in line and "fault injection" in line for line in lines), lines


def test_flags_and_check_rows_come_from_the_same_barrier(slow_shipping_mesh: Mesh) -> None:
    mesh = slow_shipping_mesh
    mesh.apply(DR_V1_V2, vs_abort(50))
    result = mesh.load(n=20, concurrency=2)  # flags attached: joined with the proxies' records
    failed = [r for r in result.records if r["code"] != 200]
    assert failed and all(r["flags"] == "FI" for r in failed)
    assert all(r["flags"] in ("-", None, "") for r in result.records if r["code"] == 200)
