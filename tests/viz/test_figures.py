"""Static figures built from realistic synthetic inputs; assertions on the traces' data."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import datetime

import pytest

from meshkit.backends.base import Pod
from meshkit.errors import NotFound
from meshkit.viz.data import code_label, percentile
from meshkit.viz.figures import (
    InvalidData,
    codes_over_time,
    config_push_timeline,
    latency_figure,
    latency_stats,
    pods_table,
    service_graph,
    split_over_time,
    split_pie,
    trace_waterfall,
)
from meshkit.viz.palette import ERROR_RED, VERSION_COLORS
from tests.viz import synthetic as syn

# --- split ------------------------------------------------------------------------------------


def test_split_over_time_counts_every_request_of_a_90_10_canary() -> None:
    recs = syn.canary_records(n=1000, v2_share=0.1, rate=20.0, seed=7)
    fig = split_over_time(recs, bucket_s=1.0)
    by_name = {t.name: t for t in fig.data}
    assert list(by_name) == ["v1", "v2"]
    expected = Counter(r["version"] for r in recs)
    assert sum(by_name["v1"].y) == expected["v1"]
    assert sum(by_name["v2"].y) == expected["v2"]
    # 1000 draws at p=0.1: sd of the share is 0.95 pp; allow 3.5 sd
    assert 0.067 < expected["v2"] / 1000 < 0.133
    # 20 rps for 50 s: 50 one-second buckets of 20 requests each
    assert len(by_name["v1"].x) == 50
    assert [a + b for a, b in zip(by_name["v1"].y, by_name["v2"].y, strict=True)] == [20] * 50
    assert by_name["v1"].marker.color == VERSION_COLORS["v1"] == "#0072B2"  # Okabe–Ito blue
    assert by_name["v2"].marker.color == VERSION_COLORS["v2"] == "#E69F00"  # Okabe–Ito orange
    assert (by_name["v1"].marker.pattern.shape, by_name["v2"].marker.pattern.shape) == ("", "/")
    assert "v1 " in fig.layout.title.text and "% of 1000" in fig.layout.title.text


def test_split_hover_share_is_the_version_share_of_its_bucket() -> None:
    fig = split_over_time(syn.canary_records(n=400, v2_share=0.25, rate=10.0, seed=3), bucket_s=2.0)
    v1, v2 = fig.data
    for a, b, share in zip(v1.y, v2.y, v2.customdata, strict=True):
        assert share == pytest.approx(100.0 * b / (a + b))
    assert "%{customdata:.1f} %" in v2.hovertemplate


def test_split_buckets_sit_on_an_absolute_grid_and_wider_buckets_sum_up() -> None:
    recs = syn.canary_records(n=1000, rate=20.0)
    fig = split_over_time(recs, bucket_s=5.0)
    xs = fig.data[0].x
    assert len(xs) == 10
    assert xs[0] == datetime.fromtimestamp(syn.T0)
    assert [a + b for a, b in zip(fig.data[0].y, fig.data[1].y, strict=True)] == [100] * 10


def test_split_window_fills_empty_buckets_and_drops_records_outside() -> None:
    recs = syn.canary_records(n=100, rate=10.0)  # T0 .. T0+9.9
    fig = split_over_time(recs, bucket_s=1.0, t_range=(syn.T0 + 5, syn.T0 + 20))
    total = sum(sum(t.y) for t in fig.data)
    assert total == sum(1 for r in recs if r["t"] >= syn.T0 + 5)
    assert len(fig.data[0].x) == 16  # buckets 5..20 inclusive, the last 11 empty
    assert fig.data[0].y[-1] == 0
    assert list(fig.layout.xaxis.range) == [
        datetime.fromtimestamp(syn.T0 + 5),
        datetime.fromtimestamp(syn.T0 + 20),
    ]


def test_split_shows_failed_requests_as_a_grey_series_so_bars_add_up() -> None:
    recs = [*syn.canary_records(n=50, rate=10.0), syn.error(syn.T0 + 1.5, 503, "UO", "overflow")]
    fig = split_over_time(recs)
    assert fig.data[-1].name == "no version (error)"
    assert sum(fig.data[-1].y) == 1
    assert sum(sum(t.y) for t in fig.data) == 51


def test_split_without_records_says_it_waits() -> None:
    fig = split_over_time([])
    assert len(fig.data) == 0
    assert fig.layout.annotations[0].text == "waiting for traffic…"


def test_bad_records_are_reported_with_their_index() -> None:
    recs = syn.canary_records(n=3)
    del recs[2]["latency_ms"]
    recs[1]["code"] = "200"
    with pytest.raises(InvalidData) as err:
        split_over_time(recs)
    assert str(err.value).splitlines() == [
        "record 1: 'code' must be int, got '200'",
        "record 2: missing 'latency_ms'",
    ]


def test_split_pie_totals_and_colours() -> None:
    recs = syn.canary_records(n=500, v2_share=0.25, seed=5)
    pie = split_pie(recs).data[0]
    counts = Counter(r["version"] for r in recs)
    assert list(pie.labels) == ["v1", "v2"]
    assert list(pie.values) == [counts["v1"], counts["v2"]]
    assert list(pie.marker.colors) == [VERSION_COLORS["v1"], VERSION_COLORS["v2"]]


# --- codes ------------------------------------------------------------------------------------


def test_codes_over_time_separates_flags_of_the_same_status() -> None:
    recs = syn.mixed_codes(seed=11)
    fig = codes_over_time(recs, bucket_s=1.0)
    names = [t.name for t in fig.data]
    assert names[0] == "200"
    assert set(names) == {"200", "503 UO", "503 FI", "504 UT"}
    expected = Counter(code_label(r["code"], r["flags"]) for r in recs)
    for t in fig.data:
        assert sum(t.y) == expected[t.name]
    colors = {t.name: t.marker.color for t in fig.data}
    assert colors["503 UO"] == ERROR_RED
    assert len(set(colors.values())) == 4
    assert f"{100 * expected['200'] / 100:.1f} % 2xx of 100" in fig.layout.title.text


def test_code_labels() -> None:
    assert code_label(200, "-") == "200"
    assert code_label(503, "UO") == "503 UO"
    assert code_label(0, "-") == "no response"
    assert code_label(200, "DI") == "200 DI"


# --- latency ----------------------------------------------------------------------------------


def test_latency_figure_histograms_and_percentile_table() -> None:
    recs = syn.canary_records(n=600, v2_share=0.3, seed=9) + syn.mixed_codes(seed=2)
    fig = latency_figure(recs)
    hists = [t for t in fig.data if t.type == "histogram"]
    table = next(t for t in fig.data if t.type == "table")
    groups: dict[str, list[float]] = {}
    for r in recs:
        groups.setdefault(r["version"], []).append(r["latency_ms"])
    assert [h.name for h in hists] == ["v1", "v2", "no version (error)"]
    assert [len(h.x) for h in hists] == [len(groups["v1"]), len(groups["v2"]), len(groups[""])]
    assert {h.bingroup for h in hists} == {"latency"}
    cols = table.cells.values
    assert list(cols[0]) == ["v1", "v2", "no version (error)"]
    for row, version in enumerate(["v1", "v2", ""]):
        q = statistics.quantiles(groups[version], n=100, method="inclusive")
        assert cols[2][row] == round(q[49], 1)
        assert cols[3][row] == round(q[89], 1)
        assert cols[4][row] == round(q[98], 1)
        assert cols[5][row] == round(max(groups[version]), 1)
    assert cols[6][2] == 100.0  # every request without a version failed
    # p50 (dotted) and p99 (dashed) lines for each of the three groups, in the group's colour
    assert len(fig.layout.shapes) == 6
    assert {s.line.color for s in fig.layout.shapes[:2]} == {VERSION_COLORS["v1"]}


def test_latency_stats_and_percentile() -> None:
    assert percentile([10.0, 20.0, 30.0, 40.0], 90) == pytest.approx(37.0)
    assert percentile([5.0], 99) == 5.0
    stats = latency_stats([syn.error(syn.T0, 504, "UT", "upstream request timeout", 1003.0)])
    assert stats == [
        {
            "version": "no version (error)",
            "requests": 1,
            "p50": 1003.0,
            "p90": 1003.0,
            "p99": 1003.0,
            "max": 1003.0,
            "errors_pct": 100.0,
        }
    ]


# --- traces -----------------------------------------------------------------------------------


def _bars(fig):  # (row, span id, depth, trace name, start, duration) for every bar
    out = []
    for t in fig.data:
        for y, (sid, depth), base, x in zip(t.y, t.customdata, t.base, t.x, strict=True):
            out.append((y, sid, depth, t.name, base, x))
    return sorted(out)


def test_waterfall_has_one_bar_per_span_ordered_by_start_with_depth() -> None:
    response = {"data": [syn.chain_trace()]}
    fig = trace_waterfall(response)
    bars = _bars(fig)
    assert len(bars) == 6
    assert [b[1] for b in bars] == ["a1", "a2", "a3", "a4", "a5", "a6"]
    assert [b[2] for b in bars] == [0, 1, 2, 3, 4, 5]
    starts = [b[4] for b in bars]
    assert starts == sorted(starts) and starts[0] == 0.0
    assert bars[4][4:] == (6.1, 4.9)  # recommendation client span: +6.1 ms for 4.9 ms
    labels = fig.layout.yaxis.ticktext
    assert labels[0] == "istio-ingressgateway: customer.tutorial.svc.cluster.local:8080/* (14.0 ms)"
    assert labels[5].endswith("recommendation: recommendation.tutorial.svc.cluster.local:8080/* (4.0 ms)")
    assert labels[5].startswith("\u00a0" * 15 + "↳ ")
    assert fig.layout.yaxis.autorange == "reversed"
    assert {b[3] for b in bars} == {"istio-ingressgateway", "customer", "preference", "recommendation"}
    assert all(t.marker.color != ERROR_RED for t in fig.data)


def test_waterfall_draws_failed_spans_red() -> None:
    trace = syn.chain_trace(fail=True)
    ok = syn.chain_trace()
    # only the recommendation hop failed: keep the others' 200s
    spans = [
        s if s["spanID"] in ("a5", "a6") else o for s, o in zip(trace["spans"], ok["spans"], strict=True)
    ]
    fig = trace_waterfall({**trace, "spans": spans})
    error = next(t for t in fig.data if t.name == "error")
    assert error.marker.color == ERROR_RED
    assert sorted(sid for sid, _ in error.customdata) == ["a5", "a6"]
    assert sum(len(t.y) for t in fig.data) == 6


def test_waterfall_picks_a_trace_and_reports_a_missing_one() -> None:
    response = {"data": [syn.chain_trace("aaaa"), syn.chain_trace("bbbb")]}
    assert "bbbb" in trace_waterfall(response, trace_index=1).layout.title.text
    with pytest.raises(
        NotFound, match=r"trace 5 not found: the response holds 2 trace\(s\) \(indexes 0..1\)"
    ):
        trace_waterfall(response, trace_index=5)
    with pytest.raises(NotFound, match="holds 0 trace"):
        trace_waterfall({"data": []})


def test_waterfall_treats_an_unknown_parent_as_a_root_and_reports_bad_spans() -> None:
    trace = syn.chain_trace()
    trace["spans"] = [s for s in trace["spans"] if s["spanID"] != "a1"]  # the gateway span is missing
    bars = _bars(trace_waterfall(trace))
    assert [(b[1], b[2]) for b in bars][:2] == [("a2", 0), ("a3", 1)]
    bad = syn.chain_trace()
    del bad["spans"][0]["startTime"]
    with pytest.raises(InvalidData, match="span 0: missing 'startTime'"):
        trace_waterfall(bad)
    with pytest.raises(InvalidData, match="expected a Jaeger response"):
        trace_waterfall({"traces": []})


# --- service graph ----------------------------------------------------------------------------


def _edges(fig):
    return {t.meta: t for t in fig.data if t.meta}


def test_service_graph_lays_out_by_hops_and_labels_edges() -> None:
    fig = service_graph(syn.graph(error_v2=0.0))
    nodes = next(t for t in fig.data if t.name == "nodes")
    x_of = dict(zip(nodes.text, nodes.x, strict=True))
    assert x_of == {
        "recommendation v2": 3.0,
        "istio-ingressgateway": 0.0,
        "preference v1": 2.0,
        "customer v1": 1.0,
        "recommendation v1": 3.0,
    }
    y_of = dict(zip(nodes.text, nodes.y, strict=True))
    assert y_of["recommendation v1"] > y_of["recommendation v2"]  # v1 above v2
    colors = dict(zip(nodes.text, nodes.marker.color, strict=True))
    assert colors["recommendation v2"] == VERSION_COLORS["v2"]
    labels = next(t for t in fig.data if t.name == "edges").text
    assert list(labels) == [  # two short lines each (edge_label() gives the one-line form)
        "🔒 10.0 rps<br>0.0 % err",
        "🔒 10.0 rps<br>0.0 % err",
        "🔒 9.0 rps<br>0.0 % err",
        "🔒 1.0 rps<br>0.0 % err",
    ]
    assert {e.line.color for e in _edges(fig).values()} == {"#6b6b6b"}
    assert {e.line.dash for e in _edges(fig).values()} == {"solid"}
    assert len(fig.layout.annotations) == 4  # one arrowhead per edge
    assert fig.layout.title.text == "Service graph · 5 nodes · 4 edges · 10.0 rps in"


def test_service_graph_edges_turn_red_with_errors_and_dotted_without_mtls() -> None:
    fig = service_graph(syn.graph(error_v2=0.2, mtls=0.0))
    edges = _edges(fig)
    assert edges["e4"].line.color == ERROR_RED
    assert {edges[e].line.color for e in ("e1", "e2", "e3")} == {"#6b6b6b"}
    assert {e.line.dash for e in edges.values()} == {"dot"}
    labels = next(t for t in fig.data if t.name == "edges")
    assert labels.text[3] == "1.0 rps<br>20.0 % err"
    assert "codes: 200×48, 503×12" in labels.hovertext[3] and "flags: UO×12" in labels.hovertext[3]
    assert edges["e4"].line.width < edges["e3"].line.width  # width follows the rate


def test_service_graph_rejects_dangling_edges_and_waits_when_empty() -> None:
    g = syn.graph()
    g["elements"]["edges"][0]["data"]["target"] = "nowhere"
    with pytest.raises(InvalidData, match=r"edge 0 \(e1\): target 'nowhere' is not a node"):
        service_graph(g)
    empty = service_graph({"elements": {"nodes": [], "edges": []}})
    assert len(empty.data) == 0 and empty.layout.annotations[0].text == "no traffic in the graph yet"


def test_service_graph_without_a_root_flag_starts_from_nodes_nobody_calls() -> None:
    g = syn.graph()
    for n in g["elements"]["nodes"]:
        n["data"].pop("isRoot", None)
    nodes = next(t for t in service_graph(g).data if t.name == "nodes")
    assert dict(zip(nodes.text, nodes.x, strict=True))["istio-ingressgateway"] == 0.0
    assert dict(zip(nodes.text, nodes.x, strict=True))["recommendation v1"] == 3.0


# --- pods (lab 00) ----------------------------------------------------------------------------


def test_pods_table_shows_readiness_proxy_and_sync() -> None:
    pods = syn.pods(config_version=4, stale=("customer-6f8d9c7b5-abcde",))
    fig = pods_table(pods)
    cols = fig.data[0].cells.values
    names = list(cols[0])
    assert names[0] == "customer-6f8d9c7b5-abcde" and names[-1] == "sleep-7c9d8f6b5-nomsh"
    row = names.index("customer-6f8d9c7b5-abcde")
    assert (cols[3][row], cols[4][row], cols[5][row], cols[6][row]) == ("2/2", "istio-proxy", 3, "STALE")
    sleep = names.index("sleep-7c9d8f6b5-nomsh")
    assert (cols[3][sleep], cols[4][sleep], cols[6][sleep]) == ("1/1", "—", "—")
    assert fig.data[0].cells.fill.color[6][row] == "#ffe0b2"
    assert fig.layout.title.text == "6 pods · 1 proxy stale"


def test_pods_table_takes_pod_objects_and_reports_missing_fields() -> None:
    pods = [
        Pod(
            name="recommendation-v2-abc",
            app="recommendation",
            version="v2",
            deployment="recommendation-v2",
            ready=False,
            config_version=7,
            synced=True,
        )
    ]
    cols = pods_table(pods).data[0].cells.values
    assert (cols[3][0], cols[5][0], cols[6][0]) == ("0/2", 7, "SYNCED")
    with pytest.raises(InvalidData, match=r"pod 0 \(x\): missing app, version"):
        pods_table([{"name": "x", "ready": True, "sidecar": True, "config_version": 1, "synced": True}])


def test_config_push_timeline_steps_each_proxy_and_marks_unsynced() -> None:
    t0 = syn.T0
    snaps = [
        {"t": t0, "pods": syn.pods(2)},
        (t0 + 1, syn.pods(3, stale=("preference-v1-7d9c8b6f5-fghij",))),
        {"t": t0 + 2, "pods": syn.pods(3)},
    ]
    fig = config_push_timeline(snaps)
    by_name = {t.name: t for t in fig.data}
    assert "sleep-7c9d8f6b5-nomsh" not in by_name  # no sidecar, no config
    assert len(by_name) == 5
    pref = by_name["preference-v1-7d9c8b6f5-fghij"]
    assert list(pref.customdata) == [2, 2, 3]
    assert list(pref.marker.symbol) == ["circle", "circle-open", "circle"]
    assert pref.line.shape == "hv"
    assert fig.layout.title.text == "Config pushes to each proxy · 5/5 synced now"
    with pytest.raises(InvalidData, match="snapshot 0: 't' must be epoch seconds"):
        config_push_timeline([{"t": "now", "pods": []}])
