"""The control plane's collector: bounds, record queries, Jaeger's query-API shape."""

from __future__ import annotations

import random
from typing import Any

import pytest

from meshkit.backends.local.collector import Collector
from meshkit.backends.local.proxy.tracing import finish_span, start_span
from meshkit.errors import NotFound

from .synthetic import CUSTOMER, GATEWAY, PREFERENCE, RECOMMENDATION, chain, hop

T0 = 1_700_000_000.0


def traced_request(request_id: str, t: float, rng: random.Random, version: str = "v1") -> list[dict[str, Any]]:
    """Spans of one request through the three hops, parent/child linked through the headers."""
    headers: dict[str, str] = {"x-request-id": request_id}
    spans = []
    hops = [(GATEWAY, CUSTOMER), (CUSTOMER, PREFERENCE), (PREFERENCE, RECOMMENDATION[version])]
    for i, (caller, callee) in enumerate(hops):
        client = start_span(headers, "client", 100.0, rng)
        spans.append(finish_span(client, hop(caller, callee, "source", t=t + 0.002 * i, duration_ms=10 - 3 * i)))
        inbound = dict(headers)
        server = start_span(inbound, "server", 100.0, rng)
        spans.append(
            finish_span(server, hop(caller, callee, "destination", t=t + 0.002 * i + 0.0005, duration_ms=9 - 3 * i))
        )
        headers = inbound
    return spans


def test_records_stay_within_capacity_under_long_load() -> None:
    c = Collector(max_records=50_000)
    template = [r.to_dict() for r in chain("x", T0)]
    batch: list[dict[str, Any]] = []
    for i in range(200_000):
        rec = dict(template[i % len(template)])
        rec["request_id"] = f"req-{i // len(template)}"
        rec["start_time"] = T0 + i * 0.001
        batch.append(rec)
        if len(batch) == 1000:
            c.ingest(batch)
            batch = []
            assert len(c) <= 50_000
    assert len(c) == 50_000
    assert c.by_request_id(["req-0"]) == {}  # evicted with its records
    last = f"req-{(200_000 - 1) // len(template)}"
    assert len(c.by_request_id([last])[last]) == (200_000 - 1) % len(template) + 1
    assert len(c._by_request) <= 50_000  # the request-id index shrinks with the ring


def test_spans_stay_within_capacity() -> None:
    c = Collector(max_spans=600, max_traces=80)
    rng = random.Random(11)
    for i in range(500):
        c.ingest(spans=traced_request(f"r{i}", T0 + i, rng))
        assert c.span_count <= 600 and c.stats()["traces"] <= 80
    assert c.stats()["traces"] == 80  # traces of 6 spans: the trace bound binds first
    newest = c.jaeger_traces(limit=1, now=T0 + 500)["data"][0]
    assert len(newest["spans"]) == 6


def test_jaeger_shape_exactly() -> None:
    c = Collector()
    c.ingest(spans=traced_request("r1", T0, random.Random(12)))
    body = c.jaeger_traces(service="customer", limit=20, now=T0 + 1)
    assert set(body) == {"data", "total", "limit", "offset", "errors"}
    assert (body["total"], body["limit"], body["offset"], body["errors"]) == (0, 0, 0, None)
    (trace,) = body["data"]
    assert set(trace) == {"traceID", "spans", "processes", "warnings"}
    for span in trace["spans"]:
        assert set(span) == {
            "traceID",
            "spanID",
            "operationName",
            "references",
            "startTime",
            "duration",
            "tags",
            "logs",
            "processID",
            "warnings",
            "flags",
        }
        assert span["traceID"] == trace["traceID"] and span["flags"] == 1 and span["logs"] == []
        assert isinstance(span["startTime"], int) and isinstance(span["duration"], int)
        assert span["processID"] in trace["processes"]
        for tag in span["tags"]:
            assert set(tag) == {"key", "type", "value"}
    starts = [s["startTime"] for s in trace["spans"]]
    assert starts == sorted(starts)
    assert sorted(trace["processes"]) == ["p1", "p2", "p3", "p4"]
    for proc in trace["processes"].values():
        assert set(proc) == {"serviceName", "tags"}
    assert c.jaeger_trace(trace["traceID"])["data"][0] == trace


def test_service_filter_accepts_short_and_full_names() -> None:
    c = Collector()
    rng = random.Random(13)
    c.ingest(spans=traced_request("r1", T0, rng, "v1"))
    c.ingest(spans=[s for s in traced_request("r2", T0 + 1, rng, "v2") if "recommendation" not in str(s)])
    assert len(c.jaeger_traces(service="customer", now=T0 + 2)["data"]) == 2
    assert len(c.jaeger_traces(service="recommendation.tutorial", now=T0 + 2)["data"]) == 1
    assert len(c.jaeger_traces(service="recommendation", now=T0 + 2)["data"]) == 1
    newest_first = c.jaeger_traces(now=T0 + 2)["data"]
    assert newest_first[0]["spans"][0]["startTime"] > newest_first[1]["spans"][0]["startTime"]
    assert c.jaeger_services()["data"] == [
        "customer.tutorial",
        "istio-ingressgateway.istio-system",
        "preference.tutorial",
        "recommendation.tutorial",
    ]
    with pytest.raises(NotFound, match=r"'recomendation'; services with traces: customer.tutorial, istio-"):
        c.jaeger_traces(service="recomendation")
    with pytest.raises(NotFound, match="no spans have been collected yet"):
        Collector().jaeger_traces(service="customer")
    with pytest.raises(NotFound, match="trace 'abc' not found"):
        c.jaeger_trace("abc")


def test_lookback_min_duration_and_tag_filters() -> None:
    c = Collector()
    rng = random.Random(14)
    c.ingest(spans=traced_request("old", T0, rng))
    c.ingest(spans=traced_request("new", T0 + 7200, rng))
    assert len(c.jaeger_traces(lookback_s=3600, now=T0 + 7201)["data"]) == 1
    assert len(c.jaeger_traces(lookback_s=9000, now=T0 + 7201)["data"]) == 2
    assert len(c.jaeger_traces(min_duration_us=10_000, now=T0 + 7201, lookback_s=9000)["data"]) == 2
    assert c.jaeger_traces(min_duration_us=10_001, now=T0 + 7201, lookback_s=9000)["data"] == []
    tagged = c.jaeger_traces(tags={"guid:x-request-id": "new"}, now=T0 + 7201, lookback_s=9000)["data"]
    assert len(tagged) == 1 and tagged[0]["spans"][0]["startTime"] == int((T0 + 7200) * 1e6)


def test_unsampled_and_malformed_input_is_dropped_and_counted() -> None:
    c = Collector()
    denied: dict[str, str] = {}
    ctx = start_span(denied, "client", 0.0, random.Random(15))
    c.ingest(
        records=[{"reporter": "source"}, "not a dict", {"proxy": "p", "reporter": "source", "bogus": 1}],  # type: ignore[list-item]
        spans=[finish_span(ctx, hop(GATEWAY, CUSTOMER, "source", t=T0, duration_ms=1)), {"traceID": "x"}],
    )
    assert len(c) == 1  # unknown fields are ignored, as RequestRecord.from_dict does
    assert c.span_count == 0
    assert c.rejected == 4


def test_records_since_limit_and_filters() -> None:
    c = Collector()
    for i in range(10):
        c.ingest(
            [
                r.to_dict()
                for r in chain(f"r{i}", T0 + i, version="v2" if i % 2 else "v1", failure="app503" if i == 9 else None)
            ]
        )
    assert len(c.records()) == 60
    assert len(c.records(since=T0 + 7.5)) == 12
    assert [r["request_id"] for r in c.records(limit=2)] == ["r9", "r9"]
    dest = c.records(reporter="destination", destination_service_name="recommendation")
    assert [r["destination_version"] for r in dest] == ["v1", "v2"] * 5
    assert len(c.records(response_code=503)) == 6 and len(c.records(response_code="503")) == 6
    assert len(c.records(destination_version=["v2", "v9"], reporter="destination")) == 5
    with pytest.raises(ValueError, match=r"unknown record field\(s\) colour; fields are: proxy, reporter"):
        c.records(colour="blue")
    chains = c.by_request_id(["r3", "nope"])
    assert list(chains) == ["r3"] and len(chains["r3"]) == 6
    assert [r["start_time"] for r in chains["r3"]] == sorted(r["start_time"] for r in chains["r3"])


def test_capacities_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_records must be >= 1"):
        Collector(max_records=0)
    with pytest.raises(ValueError, match="limit must be >= 1"):
        Collector().jaeger_traces(limit=0)


def _row(**fields: Any) -> list[Any]:
    from meshkit.telemetry.record import FIELDS, RequestRecord

    rec = RequestRecord(**fields)
    return [getattr(rec, f) for f in FIELDS]


def test_a_reporter_ships_its_own_side_and_only_a_waypoint_ships_waypoint_rows() -> None:
    from meshkit.backends.local.collector import Reporter

    principal = "spiffe://cluster.local/ns/tutorial/sa/waypoint"
    waypoint = Reporter.of("waypoint-5d8f-abcde", "waypoint", "waypoint", "", principal, "tutorial", waypoint=True)
    sidecar = Reporter.of("customer-v1-abc", "customer", "customer", "v1",
                          "spiffe://cluster.local/ns/tutorial/sa/customer", "tutorial")
    # what a waypoint saw: the client and the service it fronts, never the waypoint itself
    seen = _row(proxy="waypoint-5d8f-abcde", reporter="waypoint", source_workload="customer",
                destination_service="recommendation.tutorial.svc.cluster.local")
    c = Collector()
    assert c.ingest_rows([seen], waypoint) == 0 and len(c) == 1
    assert c.ingest_rows([seen], sidecar) == 1  # another pod's proxy name, and no waypoint
    own = _row(proxy="customer-v1-abc", reporter="waypoint")
    assert c.ingest_rows([own], sidecar) == 1 and "which is no waypoint" in c.last_refusal
    assert len(c) == 1 and c.stats()["refused"] == 2 and c.refused_by_pod == {"customer-v1-abc": 2}
