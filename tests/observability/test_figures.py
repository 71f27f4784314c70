"""Every figure of meshkit.viz, built from real traffic of a real mesh, shows what it was given."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from meshkit import viz
from meshkit.mesh import Mesh
from meshkit.viz.data import code_label
from meshkit.viz.palette import ERROR_RED, NO_VERSION_LABEL
from tests.observability.conftest import DR_V1_V2, eventually

VS_SPLIT_WITH_FAULT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: recommendation}
spec:
  hosts: [recommendation]
  http:
  - fault: {abort: {httpStatus: 503, percentage: {value: 30}}}
    route:
    - destination: {host: recommendation, subset: version-v1}
      weight: 50
    - destination: {host: recommendation, subset: version-v2}
      weight: 50
"""


def aborted(trace: dict[str, Any]) -> bool:
    return any(t["key"] == "response_flags" and t["value"] == "FI" for s in trace["spans"] for t in s["tags"])


def bar_totals(fig: Any) -> dict[str, int]:
    return {t.name: int(sum(t.y)) for t in fig.data}


def test_every_figure_from_real_traffic(clean: Mesh) -> None:
    pods_before = [p.to_dict() for p in clean.pods()]
    t_before = time.time()
    clean.apply(DR_V1_V2, VS_SPLIT_WITH_FAULT)
    pods_after = [p.to_dict() for p in clean.pods()]
    t_after = time.time()
    records = clean.load(n=200, concurrency=4).records
    versions = Counter(r["version"] or NO_VERSION_LABEL for r in records)
    labels = Counter(code_label(r["code"], r["flags"]) for r in records)
    # the fault aborted some, the rest split between v1 and v2
    assert set(labels) == {"200", "503 FI"} and set(versions) == {"v1", "v2", NO_VERSION_LABEL}

    split = viz.split_over_time(records, bucket_s=1.0)
    assert bar_totals(split) == dict(versions)
    assert f"of {len(records)})" in split.layout.title.text
    pie = viz.split_pie(records)
    assert dict(zip(pie.data[0].labels, pie.data[0].values, strict=True)) == dict(versions)
    codes = viz.codes_over_time(records, bucket_s=1.0)
    assert bar_totals(codes) == dict(labels)
    latency = viz.latency_figure(records)
    hist = {t.name: len(t.x) for t in latency.data if t.type == "histogram"}
    assert hist == dict(versions)
    table = latency.data[-1].cells.values
    assert dict(zip(table[0], table[1], strict=True)) == dict(versions)
    stats = {row["version"]: row for row in viz.latency_stats(records)}
    for version, row in stats.items():
        lat = sorted(r["latency_ms"] for r in records if (r["version"] or NO_VERSION_LABEL) == version)
        assert row["requests"] == len(lat) and row["max"] == lat[-1]
        assert lat[0] <= float(row["p50"]) <= float(row["p90"]) <= float(row["p99"]) <= lat[-1]

    def complete(trace: dict[str, Any]) -> bool:  # 6 spans, or 5 when preference's sidecar aborted the call
        return len(trace["spans"]) == 6 or (len(trace["spans"]) == 5 and aborted(trace))

    def ten_traces() -> dict[str, Any] | None:
        reply = clean.traces(limit=10)
        return reply if len(reply["data"]) == 10 and all(complete(t) for t in reply["data"]) else None

    traces = eventually(ten_traces, what="10 complete traces")
    for i, trace in enumerate(traces["data"]):
        waterfall = viz.trace_waterfall(traces, trace_index=i)
        assert len(waterfall.layout.yaxis.ticktext) == len(trace["spans"])
        assert sum(len(bar.x) for bar in waterfall.data) == len(trace["spans"])
        assert f"· {len(trace['spans'])} spans ·" in waterfall.layout.title.text
        # an aborted request's spans are drawn red (the 503 climbed back up to the gateway)
        assert ("error" in {bar.name for bar in waterfall.data}) == aborted(trace)
        if aborted(trace):
            assert len(waterfall.data[-1].x) == 5

    now = time.time()  # one clock reading for both ends of the window
    g = clean.graph(window_s=now - records[0]["t"] + 1, now=now)
    fig = viz.service_graph(g)
    edge_lines = [t for t in fig.data if t.meta]
    nodes_trace = next(t for t in fig.data if t.name == "nodes")
    assert len(edge_lines) == len(g["elements"]["edges"])
    assert len(nodes_trace.x) == len(g["elements"]["nodes"])
    red = {t.meta for t in edge_lines if t.line.color == ERROR_RED}
    assert red == {e["data"]["id"] for e in g["elements"]["edges"] if e["data"]["errorRatio"] > 0}
    assert red  # the aborted calls made some edges red

    table = viz.pods_table(pods_after)
    assert sorted(table.data[0].cells.values[0]) == sorted(p["name"] for p in pods_after)
    assert set(table.data[0].cells.values[-1]) == {"SYNCED"}
    pushes = viz.config_push_timeline([{"t": t_before, "pods": pods_before}, {"t": t_after, "pods": pods_after}])
    assert len(pushes.data) == sum(p["sidecar"] for p in pods_after)
    want = {p["name"]: p["config_version"] for p in pods_after}
    for line in pushes.data:
        first, last = line.customdata[0], line.customdata[-1]
        assert last == want[line.name]
        assert first < last  # the apply pushed new config


def test_live_figures_refresh_from_the_mesh(clean: Mesh) -> None:
    runner = clean.traffic(rate=50, concurrency=2)
    runner.start()
    try:
        eventually(lambda: len(runner.records()) >= 20, what="20 requests of background traffic")
    finally:
        runner.stop()
    sent = runner.records()
    versions = Counter(r["version"] for r in sent)
    for make in (viz.live_split, viz.live_codes):
        live = make(runner, window_s=120, start=False)
        assert live.refresh() and live.last_error is None
        assert sum(int(sum(t.y)) for t in live.figure.data) == len(sent)
    latency = viz.live_latency(runner, window_s=120, start=False)
    assert latency.refresh()
    assert {t.name: len(t.x) for t in latency.figure.data if t.type == "histogram"} == dict(versions)

    def some_graph() -> dict[str, Any] | None:
        reply = clean.graph(window_s=120)
        return reply if reply["elements"]["edges"] else None

    g = eventually(some_graph, what="a graph with edges")
    live_graph = viz.live_graph(lambda: g, start=False)
    assert live_graph.refresh()
    assert len([t for t in live_graph.figure.data if t.meta]) == len(g["elements"]["edges"])
    traces = clean.traces(limit=1)
    live_trace = viz.live_trace(lambda: traces, start=False)
    assert live_trace.refresh()
    assert len(live_trace.figure.layout.yaxis.ticktext) == len(traces["data"][0]["spans"])
    live_push = viz.live_config_push(clean.pods, start=False)
    assert live_push.refresh() and live_push.refresh()
    assert len(live_push.figure.data) == sum(p.sidecar for p in clean.pods())
    assert all(len(t.x) == 2 for t in live_push.figure.data)
