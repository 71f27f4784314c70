"""Telemetry stays bounded under load: the collector's rings hold at their capacity, not more.

The control plane keeps the last 30,000 records and at most 5,000 traces (30,000 spans); every proxy
keeps its last 2,000 access-log lines. One request makes 6 records (gateway, customer in and out,
preference in and out, recommendation in), so 5,100 requests overfill the records ring.
"""

from __future__ import annotations

import json
from pathlib import Path

from meshkit.mesh import Mesh
from tests.observability.conftest import eventually, samples

RECORDS, TRACES, SPANS, ACCESS_LOG = 30_000, 5_000, 30_000, 2_000
RECORDS_PER_REQUEST = 6
FIRST, SECOND = 5_100, 1_000


def pss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise AssertionError(f"no Pss line in /proc/{pid}/smaps_rollup")


def fill(mesh: Mesh, requests: int) -> None:
    result = mesh.load(n=requests, concurrency=8, flags=False)
    assert sum(r["code"] == 200 for r in result.records) == requests
    last = result.records[-1]

    def shipped() -> bool:  # every proxy shipped its record of the last request
        rows = mesh.backend.request_log(last["t"] - 1)
        return sum(r["request_id"] == last["request_id"] for r in rows) == RECORDS_PER_REQUEST

    eventually(shipped, timeout=15, what="the last request's records")


def sizes(mesh: Mesh, gateway: str) -> tuple[int, int, int, int, int]:
    """(records, traces, spans, gateway access-log lines, istio_requests_total series) right now."""
    records = mesh.backend.request_log(0, limit=1_000_000)
    traces = mesh.traces(limit=1_000_000)["data"]
    return (
        len(records),
        len(traces),
        sum(len(t["spans"]) for t in traces),
        len(mesh.backend.access_log(gateway)),  # type: ignore[attr-defined]
        len(samples(mesh.metrics(), "istio_requests_total")),
    )


def test_collector_and_proxies_stay_within_capacity(mesh: Mesh) -> None:
    state = mesh.backend._state()  # type: ignore[attr-defined]
    assert state is not None
    control_plane = int(state["pid"])
    gateway = next(p.name for p in mesh.pods() if p.app == "istio-ingressgateway")
    empty = pss_kb(control_plane)

    fill(mesh, FIRST)  # 30,600 records made
    records, traces, spans, lines, series = sizes(mesh, gateway)
    assert (records, traces, lines) == (RECORDS, TRACES, ACCESS_LOG)
    assert series < 20  # one series per label combination, not per request
    assert spans <= SPANS
    full = pss_kb(control_plane)
    per_record_kb = (full - empty) / RECORDS

    # 6,000 more records (and 1,000 traces), twice, replace old ones: the sizes hold, the memory holds
    kept_kb = per_record_kb * SECOND * RECORDS_PER_REQUEST  # what one round costs if kept (about 21 MB)
    growth = []
    for _ in range(2):
        before = pss_kb(control_plane)
        fill(mesh, SECOND)
        records, traces, spans, lines, series_after = sizes(mesh, gateway)
        assert (records, traces, lines, series_after) == (RECORDS, TRACES, ACCESS_LOG, series)
        assert spans <= SPANS
        growth.append(pss_kb(control_plane) - before)
    # The bound, from the measured spread. On a 2-core machine with both cores busy (load average 9-28),
    # 46 runs (artifacts/bounded-memory.jsonl) grew per round by 7-61 % of kept_kb, mean 21 %, sd 8 %:
    # the allocator keeps arenas of the replaced records and of the reads above, and one round in 92
    # reached 61 % (a 5-sd outlier) while the other round of that run stayed at 18 %. The smaller round
    # of a run never passed 30 %. Records kept instead of replaced grow *every* round by all of kept_kb
    # or more, so the smaller of the two rounds must stay under 80 % of it: 2.7 times the largest
    # measured, and still short of a leak that keeps even four records in five.
    artifacts = Path(__file__).resolve().parents[2] / "artifacts"
    artifacts.mkdir(exist_ok=True)
    with (artifacts / "bounded-memory.jsonl").open("a") as fh:  # the spread, run after run
        line = {"empty_kb": empty, "full_kb": full, "growth_kb": growth, "kept_kb": round(kept_kb)}
        fh.write(json.dumps(line) + "\n")
    assert min(growth) < 0.8 * kept_kb, (empty, full, growth, kept_kb)
