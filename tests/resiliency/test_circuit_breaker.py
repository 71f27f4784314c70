"""Circuit breaker: the connection pool of preference's sidecar towards recommendation v2.

Book scenario (Istio 1.0 era): slow v2, 50/50 routing, ``maxConnections: 1``,
``http1MaxPendingRequests: 1``, ``maxRequestsPerConnection: 1`` on v2, ``siege -r 2 -c 20``
(40 requests, 20 clients) → 23 OK, 17 × 503. Scaled down: v2 sleeps 0.3 s instead of 3 s.
Overflow is answered at once by the caller's sidecar with 503 UO and never retried.
"""

from __future__ import annotations

import statistics

from meshkit import Mesh
from tests.resiliency.support import OVERFLOW_LINE, apply, destination_rule, load, summary_line, to, virtual_service

V2_DELAY = 0.3
CB = {"connectionPool": {"tcp": {"maxConnections": 1},
                         "http": {"http1MaxPendingRequests": 1, "maxRequestsPerConnection": 1}}}
FIFTY_FIFTY = virtual_service({"route": [to("version-v1", 50), to("version-v2", 50)]})


def test_circuit_breaker_overflows_with_503_uo(mesh: Mesh) -> None:
    mesh.delay("recommendation-v2", V2_DELAY)
    apply(mesh, destination_rule(v2_policy=CB), FIFTY_FIFTY)
    result = load(mesh, n=40, concurrency=20)
    summary = result.summary()
    failed = [r for r in result.records if r["code"] != 200]
    ok = [r for r in result.records if r["code"] == 200]
    assert failed, summary
    assert {r["body"] for r in failed} == {OVERFLOW_LINE}
    assert {r["flags"] for r in failed} == {"UO"} and summary["flags"]["UO"] == len(failed)
    # preference's sidecar answers an overflow at once, it never waits for v2: its own record of
    # each UO request is short (end-to-end latencies also hold the queueing of 20 clients)
    uo_ms = [row["duration_ms"] for row in mesh.request_log(since=result.records[0]["t"] - 1)
             if row.get("response_flags") == "UO"]
    assert len(uo_ms) == len(failed) and max(uo_ms) < V2_DELAY * 1000 / 2, uo_ms
    # v2 still serves, one request at a time; v1 (no limits) always answers
    assert summary["versions"].get("v2", 0) >= 1 and summary["versions"].get("v1", 0) >= 1
    summary_line("circuit breaker", requests=40, ok=len(ok), uo_503=len(failed),
                 uo_proxy_ms_max=round(max(uo_ms), 1),
                 uo_e2e_ms_median=round(statistics.median(r["latency_ms"] for r in failed), 1),
                 v1=summary["versions"].get("v1", 0), v2=summary["versions"].get("v2", 0),
                 duration_s=summary["duration_s"])


def test_without_the_limits_nothing_overflows(mesh: Mesh) -> None:
    mesh.delay("recommendation-v2", V2_DELAY)
    apply(mesh, destination_rule(), FIFTY_FIFTY)
    result = load(mesh, n=40, concurrency=20)
    summary = result.summary()
    assert summary["codes"] == {"200": 40}, summary
    assert summary["flags"] == {"-": 40}
    summary_line("no circuit breaker", requests=40, ok=40, v2=summary["versions"].get("v2", 0),
                 duration_s=summary["duration_s"])
