"""Fault injection in preference's sidecar (the caller of recommendation), before routing.

Tutorial values: abort 503 at 50 %, delay 7 s at 50 %. Scaled down: the delay is 0.3 s.
Statistics: each proxy draws faults from its own stream (Envoy's per-million draw), seeded by the
suite's MESHKIT_SEED so a run is reproducible; the tolerances are still four binomial standard
deviations for the sample sizes, as they must hold for any seed (abort: 1,000 requests, sd 1.6
points, ±6.5 points; delay: 400 requests, sd 2.5 points, ±10 points): a false failure for about one
seed in ~16,000. A delayed request is one the caller's proxy flagged DI (the cause), never one that
merely took long: on a busy machine undelayed requests take longer than the delay too.
"""

from __future__ import annotations

from meshkit import Mesh
from tests.resiliency.support import ABORT_LINE, apply, load, summary_line, to, virtual_service

DELAY = 0.3


def test_abort_half_of_the_requests(mesh: Mesh) -> None:
    fault = {"abort": {"httpStatus": 503, "percentage": {"value": 50.0}}}
    apply(mesh, virtual_service({"fault": fault, "route": [to()]}))
    result = load(mesh, n=1000, concurrency=8)
    summary = result.summary()
    aborted = [r for r in result.records if r["code"] != 200]
    share = 100.0 * len(aborted) / len(result.records)
    assert abs(share - 50.0) <= 6.5, summary
    assert {r["body"] for r in aborted} == {ABORT_LINE}
    assert summary["flags"].get("FI") == len(aborted) and summary["flags"].get("-") == 1000 - len(aborted)
    assert all(r["version"] in ("v1", "v2") for r in result.records if r["code"] == 200)
    summary_line("abort 50%", requests=1000, aborted=len(aborted), share_pct=round(share, 1),
                 flags=summary["flags"])


def test_delay_half_of_the_requests(mesh: Mesh) -> None:
    fault = {"delay": {"fixedDelay": f"{int(DELAY * 1000)}ms", "percentage": {"value": 50.0}}}
    apply(mesh, virtual_service({"fault": fault, "route": [to()]}))
    result = load(mesh, n=400, concurrency=40)
    summary = result.summary()
    assert summary["codes"] == {"200": 400}, summary
    flagged = [r for r in result.records if r["flags"] == "DI"]
    assert summary["flags"] == {"DI": len(flagged), "-": 400 - len(flagged)}, summary  # every request classified
    share = 100.0 * len(flagged) / 400
    assert abs(share - 50.0) <= 10.0, summary
    assert all(r["latency_ms"] >= DELAY * 1000 for r in flagged)  # the delay really held them
    fast = sorted(r["latency_ms"] for r in result.records if r["flags"] != "DI")
    summary_line("delay 50%", requests=400, di=len(flagged), share_pct=round(share, 1),
                 undelayed_ms_median=round(fast[len(fast) // 2], 1),
                 undelayed_over_delay=sum(1 for ms in fast if ms >= DELAY * 1000))

def test_the_deprecated_integer_percent_still_delays(mesh: Mesh) -> None:
    fault = {"delay": {"fixedDelay": "50ms", "percent": 100}}
    apply(mesh, virtual_service({"fault": fault, "route": [to()]}))
    result = load(mesh, n=10, concurrency=2)
    assert result.summary()["flags"] == {"DI": 10}
    assert min(r["latency_ms"] for r in result.records) >= 50


def test_a_fault_without_percentage_injects_nothing(mesh: Mesh) -> None:
    fault = {"abort": {"httpStatus": 503}, "delay": {"fixedDelay": "5s"}}
    apply(mesh, virtual_service({"fault": fault, "route": [to()]}))
    result = load(mesh, n=50, concurrency=4)
    assert result.summary()["codes"] == {"200": 50} and result.summary()["flags"] == {"-": 50}
    # a delayed reply would take at least 5 s (a lower bound); undelayed ones took 0.32 s at the slowest
    # with both cores saturated
    assert max(r["latency_ms"] for r in result.records) < 5000
