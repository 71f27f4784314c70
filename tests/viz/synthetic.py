"""Realistic inputs for the figure tests, generated with a seeded rng (the real-traffic tests come later).

Shapes follow what the load generator, the trace collector and the graph builder produce.
"""

from __future__ import annotations

import random
from typing import Any

T0 = 1_760_000_000.0  # an epoch second on a whole-second boundary (so bucket edges are predictable)

POD = {
    "v1": "recommendation-v1-6cf5ff55d9-7zbj8",
    "v2": "recommendation-v2-5d8f9c7b6-x7k2p",
    "v3": "recommendation-v3-7b9d8c6f5-q2w3e",
}


def canary_records(
    n: int = 1000, v2_share: float = 0.1, rate: float = 20.0, seed: int = 7
) -> list[dict[str, Any]]:
    """``n`` requests at ``rate`` rps, each answered by v2 with probability ``v2_share``, all 200."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        version = "v2" if rng.random() < v2_share else "v1"
        out.append(_ok(T0 + i / rate, version, rng.lognormvariate(2.2, 0.3), i))
    return out


def _ok(t: float, version: str, latency: float, i: int) -> dict[str, Any]:
    pod = POD[version]
    return {
        "t": t,
        "latency_ms": latency,
        "code": 200,
        "version": version,
        "pod": pod,
        "flags": "-",
        "body": f"customer => preference => recommendation {version} from '{pod}': {i}\n",
    }


def error(t: float, code: int, flags: str, body: str, latency: float = 3.0) -> dict[str, Any]:
    return {
        "t": t,
        "latency_ms": latency,
        "code": code,
        "version": "",
        "pod": "",
        "flags": flags,
        "body": body,
    }


def mixed_codes(seed: int = 11) -> list[dict[str, Any]]:
    """Ten seconds at 10 rps: 200s from v1, a circuit breaker's 503 UO, injected 503 FI, a 504 UT."""
    rng = random.Random(seed)
    recs = []
    for i in range(100):
        t = T0 + i / 10
        roll = rng.random()
        if roll < 0.15:
            recs.append(
                error(
                    t,
                    503,
                    "UO",
                    "customer => Error: 503 - preference => Error: 503 - upstream connect "
                    "error or disconnect/reset before headers. reset reason: overflow",
                )
            )
        elif roll < 0.25:
            recs.append(
                error(t, 503, "FI", "customer => Error: 503 - preference => Error: 503 - fault filter abort")
            )
        elif roll < 0.28:
            recs.append(error(t, 504, "UT", "upstream request timeout", latency=1003.0))
        else:
            recs.append(_ok(t, "v1", rng.lognormvariate(2.0, 0.2), i))
    return recs


def chain_trace(trace_id: str = "4bf92f3577b34da6a3ce929d0e0e4736", fail: bool = False) -> dict[str, Any]:
    """One request through the gateway: gateway → customer → preference → recommendation.

    Each sidecar reports a server span (inbound) and a client span (outbound), as Istio's do; the
    spans are listed out of order on purpose. With ``fail`` the recommendation hop answers 503.
    """
    procs = {
        "p1": {"serviceName": "istio-ingressgateway.istio-system", "tags": []},
        "p2": {"serviceName": "customer.tutorial", "tags": []},
        "p3": {"serviceName": "preference.tutorial", "tags": []},
        "p4": {"serviceName": "recommendation.tutorial", "tags": []},
    }
    start = int(T0 * 1_000_000)

    def span(
        sid: str, parent: str | None, proc: str, op: str, at_us: int, dur_us: int, code: int
    ) -> dict[str, Any]:
        refs = [{"refType": "CHILD_OF", "traceID": trace_id, "spanID": parent}] if parent else []
        tags: list[dict[str, Any]] = [
            {"key": "http.status_code", "type": "string", "value": str(code)},
            {"key": "response_flags", "type": "string", "value": "-"},
        ]
        if code >= 500:
            tags.append({"key": "error", "type": "bool", "value": True})
        return {
            "traceID": trace_id,
            "spanID": sid,
            "operationName": op,
            "references": refs,
            "startTime": start + at_us,
            "duration": dur_us,
            "tags": tags,
            "processID": proc,
        }

    code = 503 if fail else 200
    host = "{}.tutorial.svc.cluster.local:8080/*"
    spans = [
        span("a5", "a4", "p3", host.format("recommendation"), 6_100, 4_900, code),
        span("a1", None, "p1", host.format("customer"), 0, 14_000, code),
        span("a3", "a2", "p2", host.format("preference"), 2_000, 10_500, code),
        span("a2", "a1", "p2", host.format("customer"), 900, 12_600, code),
        span("a6", "a5", "p4", host.format("recommendation"), 6_600, 4_000, code),
        span("a4", "a3", "p3", host.format("preference"), 2_700, 9_200, code),
    ]
    return {"traceID": trace_id, "spans": spans, "processes": procs, "warnings": None}


def graph(error_v2: float = 0.0, mtls: float = 1.0) -> dict[str, Any]:
    """The tutorial's versioned-app graph with a 90/10 split between recommendation v1 and v2."""

    def node(nid: str, app: str, version: str, root: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": nid,
            "app": app,
            "version": version,
            "workload": f"{app}-{version}" if version else app,
            "namespace": "istio-system" if root else "tutorial",
            "nodeType": "app",
        }
        if root:
            d["isRoot"] = True
        return {"data": d}

    def edge(eid: str, src: str, dst: str, rate: float, err: float) -> dict[str, Any]:
        ok = round(rate * 60 * (1 - err))
        codes = {"200": ok} | ({"503": round(rate * 60 * err)} if err else {})
        return {
            "data": {
                "id": eid,
                "source": src,
                "target": dst,
                "rate": rate,
                "errorRatio": err,
                "p95": 12.5,
                "mtls": mtls,
                "codes": codes,
                "flags": {"UO": codes["503"]} if err else {},
            }
        }

    return {
        "elements": {
            "nodes": [
                node("n-rec-v2", "recommendation", "v2"),
                node("n-gw", "istio-ingressgateway", "", root=True),
                node("n-pref", "preference", "v1"),
                node("n-cust", "customer", "v1"),
                node("n-rec-v1", "recommendation", "v1"),
            ],
            "edges": [
                edge("e1", "n-gw", "n-cust", 10.0, 0.0),
                edge("e2", "n-cust", "n-pref", 10.0, 0.0),
                edge("e3", "n-pref", "n-rec-v1", 9.0, 0.0),
                edge("e4", "n-pref", "n-rec-v2", 1.0, error_v2),
            ],
        },
        "graphType": "versionedApp",
        "timestamp": int(T0),
        "duration": 60,
    }


def pods(config_version: int = 3, stale: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    names = [
        ("customer-6f8d9c7b5-abcde", "customer", "v1", True),
        ("istio-ingressgateway-5c9b8d7f6-zz9yx", "istio-ingressgateway", "", True),
        ("preference-v1-7d9c8b6f5-fghij", "preference", "v1", True),
        (POD["v2"], "recommendation", "v2", True),
        (POD["v1"], "recommendation", "v1", True),
        ("sleep-7c9d8f6b5-nomsh", "sleep", "v1", False),
    ]
    return [
        {
            "name": n,
            "app": a,
            "version": v,
            "ready": True,
            "sidecar": sc,
            "config_version": config_version - (1 if n in stale else 0),
            "synced": n not in stale,
        }
        for n, a, v, sc in names
    ]
