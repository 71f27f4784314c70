"""One request through the gateway makes one trace of the whole chain, with correct parent links."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from meshkit.mesh import Mesh
from tests.observability.conftest import cli, eventually

CLOCK_SLACK_US = 2_000  # spans come from five processes; each measures with its own perf_counter


def tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span["tags"]}


def newest_trace_since(mesh: Mesh, t0_us: int, spans: int) -> dict[str, Any] | None:
    fresh = [t for t in mesh.traces(limit=5)["data"] if min(s["startTime"] for s in t["spans"]) >= t0_us]
    if len(fresh) != 1 or len(fresh[0]["spans"]) < spans:
        return None
    return fresh[0]


def test_curl_makes_one_trace_of_the_full_chain(clean: Mesh) -> None:
    t0_us = int(time.time() * 1_000_000)
    status, body = clean.curl()
    assert status == 200 and body.startswith("customer => preference => recommendation v")
    trace = eventually(lambda: newest_trace_since(clean, t0_us, 6), what="the trace of the request")
    spans = trace["spans"]
    by_id = {s["spanID"]: s for s in spans}
    service = {s["spanID"]: trace["processes"][s["processID"]]["serviceName"] for s in spans}
    kind = {s["spanID"]: tags(s)["span.kind"] for s in spans}

    assert len(spans) == len(by_id) == 6
    assert {s["traceID"] for s in spans} == {trace["traceID"]}
    # one request: every span carries the request id the gateway gave it
    request_ids = {tags(s)["guid:x-request-id"] for s in spans}
    assert len(request_ids) == 1
    # a single root, at the gateway; every other span is the CHILD_OF a span of this trace
    roots = [s for s in spans if not s["references"]]
    assert len(roots) == 1 and service[roots[0]["spanID"]] == "istio-ingressgateway.istio-system"
    for s in spans:
        for ref in s["references"]:
            assert ref["refType"] == "CHILD_OF" and ref["traceID"] == trace["traceID"]
            assert ref["spanID"] in by_id
    # the chain, hop by hop: gateway -> customer server -> customer client -> preference server ->
    # preference client -> recommendation server
    chain = [roots[0]]
    while len(chain) < len(spans):
        children = [s for s in spans if any(r["spanID"] == chain[-1]["spanID"] for r in s["references"])]
        assert len(children) == 1, f"{service[chain[-1]['spanID']]} has {len(children)} children"
        chain.append(children[0])
    assert [(service[s["spanID"]].split(".")[0], kind[s["spanID"]]) for s in chain[1:]] == [
        ("customer", "server"),
        ("customer", "client"),
        ("preference", "server"),
        ("preference", "client"),
        ("recommendation", "server"),
    ]
    assert [s["operationName"] for s in chain] == [
        "customer.tutorial.svc.cluster.local:8080/*",
        "customer.tutorial.svc.cluster.local:8080/*",
        "preference.tutorial.svc.cluster.local:8080/*",
        "preference.tutorial.svc.cluster.local:8080/*",
        "recommendation.tutorial.svc.cluster.local:8080/*",
        "recommendation.tutorial.svc.cluster.local:8080/*",
    ]
    assert all(tags(s)["http.status_code"] == "200" for s in spans)
    # durations nest: each child starts after its parent and ends before it (within the clock slack)
    for parent, child in itertools.pairwise(chain):
        assert child["startTime"] >= parent["startTime"] - CLOCK_SLACK_US
        assert child["startTime"] + child["duration"] <= parent["startTime"] + parent["duration"] + CLOCK_SLACK_US
        assert 0 < child["duration"] <= parent["duration"] + CLOCK_SLACK_US
    # the proxies' records of that request point at the same spans
    rid = request_ids.pop()
    records = [r for r in clean.request_log(t0_us / 1e6 - 1) if r["request_id"] == rid]
    assert {(r["trace_id"], r["span_id"], r["parent_span_id"]) for r in records} == {
        (trace["traceID"], s["spanID"], s["references"][0]["spanID"] if s["references"] else "") for s in spans
    }


def test_traces_cli_answers_in_jaegers_shape(clean: Mesh) -> None:
    clean.curl()

    def probe() -> dict[str, Any] | None:
        out = cli(clean, "traces", "--service", "recommendation", "--limit", "1", "-o", "json")
        assert out.returncode == 0, out.stderr
        reply: dict[str, Any] = json.loads(out.stdout)
        return reply if reply["data"] else None

    body = eventually(probe, what="a recommendation trace")
    assert set(body) >= {"data", "total", "limit", "offset", "errors"}
    (trace,) = body["data"]
    assert set(trace) >= {"traceID", "spans", "processes"}
    for s in trace["spans"]:
        assert {"traceID", "spanID", "operationName", "references", "startTime", "duration", "processID"} <= set(s)
        assert isinstance(s["startTime"], int) and isinstance(s["duration"], int)
        assert s["processID"] in trace["processes"]
    assert "recommendation.tutorial" in {p["serviceName"] for p in trace["processes"].values()}
    text = cli(clean, "traces", "--limit", "1")
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"trace {clean.traces(limit=1)['data'][0]['traceID']}  6 spans")
    assert len(lines) == 7
