"""Trace context propagation (B3/W3C), sampling, and the spans the proxies report."""

from __future__ import annotations

import itertools
import random
import re
import uuid

import pytest

from meshkit.backends.local.collector import Collector
from meshkit.backends.local.proxy.tracing import SpanContext, finish_span, jaeger_trace_id, start_span
from meshkit.telemetry.record import RequestRecord

from .synthetic import CUSTOMER, GATEWAY, PREFERENCE, RECOMMENDATION, Workload, hop

PROPAGATED = (
    "x-request-id",
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
)


def app_copies(headers: dict[str, str]) -> dict[str, str]:
    """What a well-behaved app does: copy the tracing headers of its inbound request to its outbound call."""
    return {k: v for k, v in headers.items() if k in PROPAGATED}


def traverse(
    first: dict[str, str], hops: list[tuple[Workload, Workload]], rng: random.Random
) -> list[tuple[SpanContext, RequestRecord]]:
    """Send one request through gateway and sidecars; returns (ctx, record) per proxy, in path order."""
    out = []
    headers = first
    for i, (caller, callee) in enumerate(hops):
        t = 1000.0 + 0.002 * i
        client = start_span(headers, "client", 100.0, rng)  # the caller's sidecar (or the gateway)
        out.append((client, hop(caller, callee, "source", t=t, duration_ms=10 - 3 * i, request_id=client.request_id)))
        inbound = dict(headers)  # what arrives at the callee's sidecar
        server = start_span(inbound, "server", 100.0, rng)
        out.append(
            (
                server,
                hop(
                    caller,
                    callee,
                    "destination",
                    t=t + 0.0005,
                    duration_ms=9 - 3 * i,
                    request_id=server.request_id,
                ),
            )
        )
        headers = app_copies(inbound)  # the callee's app calls the next service with the copied headers
    return out


CHAIN = [(GATEWAY, CUSTOMER), (CUSTOMER, PREFERENCE), (PREFERENCE, RECOMMENDATION["v1"])]


def test_three_hops_make_one_trace_with_parent_child_links() -> None:
    path = traverse({}, CHAIN, random.Random(1))
    ctxs = [ctx for ctx, _ in path]
    assert len({c.trace_id for c in ctxs}) == 1
    assert len({c.request_id for c in ctxs}) == 1
    assert [c.kind for c in ctxs] == ["client", "server"] * 3
    assert ctxs[0].parent_span_id == ""
    for parent, child in itertools.pairwise(ctxs):
        assert child.parent_span_id == parent.span_id  # client → server of the next hop → its client …
    collector = Collector()
    collector.ingest([], [finish_span(ctx, rec) for ctx, rec in path])
    (trace,) = collector.jaeger_traces(now=1001.0)["data"]
    spans = trace["spans"]
    assert len(spans) == 6
    by_id = {s["spanID"]: s for s in spans}
    roots = [s for s in spans if not s["references"]]
    assert [r["spanID"] for r in roots] == [ctxs[0].span_id]
    for s in spans:
        for ref in s["references"]:
            assert ref["refType"] == "CHILD_OF" and ref["traceID"] == trace["traceID"]
            assert ref["spanID"] in by_id
    services = [trace["processes"][s["processID"]]["serviceName"] for s in spans]
    assert services == [
        "istio-ingressgateway.istio-system",
        "customer.tutorial",
        "customer.tutorial",
        "preference.tutorial",
        "preference.tutorial",
        "recommendation.tutorial",
    ]
    kinds = [next(t["value"] for t in s["tags"] if t["key"] == "span.kind") for s in spans]
    assert kinds == ["client", "server"] * 3


def test_b3_and_w3c_headers_agree_and_either_continues_the_trace() -> None:
    headers: dict[str, str] = {"tracestate": "vendor=abc", "x-request-id": "rid-1"}
    ctx = start_span(headers, "client", 100.0, random.Random(2))
    assert re.fullmatch(r"[0-9a-f]{32}", ctx.trace_id)
    assert headers["traceparent"] == f"00-{ctx.trace_id}-{ctx.span_id}-01"
    assert (headers["x-b3-traceid"], headers["x-b3-spanid"], headers["x-b3-sampled"]) == (
        ctx.trace_id,
        ctx.span_id,
        "1",
    )
    assert "x-b3-parentspanid" not in headers
    assert headers["tracestate"] == "vendor=abc" and headers["x-request-id"] == "rid-1"
    only_w3c = {"traceparent": headers["traceparent"]}
    child = start_span(only_w3c, "server", 0.0, random.Random(3))
    assert (child.trace_id, child.parent_span_id, child.sampled) == (ctx.trace_id, ctx.span_id, True)
    assert only_w3c["x-b3-parentspanid"] == ctx.span_id
    only_b3_single = {"b3": f"{ctx.trace_id}-{ctx.span_id}-1"}
    child = start_span(only_b3_single, "server", 0.0, random.Random(3))
    assert (child.trace_id, child.parent_span_id) == (ctx.trace_id, ctx.span_id)
    assert only_b3_single["b3"] == f"{ctx.trace_id}-{child.span_id}-1-{ctx.span_id}"


def test_64_bit_b3_trace_ids_are_kept_and_padded_for_w3c() -> None:
    headers = {"x-b3-traceid": "463ac35c9f6413ad", "x-b3-spanid": "a2fb4a1d1a96d312", "x-b3-sampled": "1"}
    ctx = start_span(headers, "server", 100.0, random.Random(4))
    assert headers["x-b3-traceid"] == "463ac35c9f6413ad"
    assert headers["traceparent"] == f"00-0000000000000000463ac35c9f6413ad-{ctx.span_id}-01"
    after_w3c = start_span({"traceparent": headers["traceparent"]}, "client", 100.0, random.Random(5))
    # Jaeger prints both forms of the id the same way, so spans of a mixed path stay in one trace
    assert jaeger_trace_id(after_w3c.trace_id) == jaeger_trace_id(ctx.trace_id) == "463ac35c9f6413ad"


def test_request_id_generated_when_absent() -> None:
    headers: dict[str, str] = {}
    ctx = start_span(headers, "client", 100.0, random.Random(6))
    assert uuid.UUID(headers["x-request-id"]).version == 4
    assert ctx.request_id == headers["x-request-id"]


def test_sampling_at_100_0_and_10_percent() -> None:
    rng = random.Random(20240101)
    assert all(start_span({}, "client", 100.0, rng).sampled for _ in range(1000))
    assert not any(start_span({}, "client", 0.0, rng).sampled for _ in range(1000))
    n = 10_000
    sampled = sum(start_span({}, "client", 10.0, rng).sampled for _ in range(n))
    assert abs(100.0 * sampled / n - 10.0) <= 3.0  # seeded; binomial sd is 0.3 points


def test_children_follow_the_roots_decision() -> None:
    rng = random.Random(7)
    denied: dict[str, str] = {}
    root = start_span(denied, "client", 0.0, rng)
    assert not root.sampled and denied["x-b3-sampled"] == "0" and denied["traceparent"].endswith("-00")
    assert not start_span(app_copies(denied), "server", 100.0, rng).sampled
    allowed: dict[str, str] = {}
    start_span(allowed, "client", 100.0, rng)
    assert start_span(app_copies(allowed), "server", 0.0, rng).sampled
    debug = {"x-b3-traceid": "1" * 32, "x-b3-spanid": "2" * 16, "x-b3-sampled": "0", "x-b3-flags": "1"}
    ctx = start_span(debug, "server", 0.0, rng)
    assert ctx.sampled and ctx.debug and debug["x-b3-flags"] == "1"
    assert not start_span({"b3": "0"}, "client", 100.0, rng).sampled


def test_malformed_context_starts_a_new_trace() -> None:
    headers = {"traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "x-b3-traceid": "zz"}
    ctx = start_span(headers, "server", 100.0, random.Random(8))
    assert ctx.parent_span_id == "" and ctx.trace_id != "0" * 32
    with pytest.raises(ValueError, match="span kind must be one of"):
        start_span({}, "consumer", 100.0, random.Random(8))
    with pytest.raises(ValueError, match=r"sampling_percent must be within 0\.\.100"):
        start_span({}, "client", 101.0, random.Random(8))


def test_finished_span_has_istios_names_and_tags() -> None:
    headers: dict[str, str] = {"x-request-id": "req-42"}
    ctx = start_span(headers, "client", 100.0, random.Random(9))
    rec = hop(
        PREFERENCE,
        RECOMMENDATION["v2"],
        "source",
        t=1700000000.25,
        duration_ms=12.5,
        code=503,
        subset="version-v2",
        request_id="req-42",
    )
    span = finish_span(ctx, rec)
    assert span["operationName"] == "recommendation.tutorial.svc.cluster.local:8080/*"
    assert (span["startTime"], span["duration"]) == (1700000000250000, 12500)
    assert span["traceID"] == ctx.trace_id and span["spanID"] == ctx.span_id and span["parentSpanID"] == ""
    tags = {t["key"]: t["value"] for t in span["tags"]}
    assert tags["http.method"] == "GET" and tags["http.url"] == "http://recommendation:8080/"
    assert tags["http.status_code"] == "503" and tags["error"] is True
    assert tags["upstream_cluster"] == "outbound|8080|version-v2|recommendation.tutorial.svc.cluster.local"
    assert tags["istio.canonical_service"] == "preference" and tags["component"] == "proxy"
    assert tags["span.kind"] == "client" and tags["guid:x-request-id"] == "req-42"
    assert tags["node_id"] == "sidecar~127.0.0.1~preference-v1-6b8c7f5d9c-x2x7q.tutorial~tutorial.svc.cluster.local"
    assert span["process"]["serviceName"] == "preference.tutorial"
    ok = finish_span(
        ctx,
        RequestRecord(
            proxy="p",
            reporter="destination",
            destination_app="customer",
            destination_workload="customer-v1",
            response_code=200,
        ),
    )
    assert "error" not in {t["key"] for t in ok["tags"]}
    assert ok["process"]["serviceName"] == "customer.tutorial"
