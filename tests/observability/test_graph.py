"""The service graph from real traffic: the expected edges, then error ratios once v2 misbehaves.

This module's mesh carries only the two phases below, so one window covers both and the expected
counts and ratios are exact.
"""

from __future__ import annotations

import json
from typing import Any

from meshkit.mesh import Mesh
from meshkit.telemetry.graph import graph
from tests.observability.conftest import DR_V1_V2, cli, eventually, vs_split

GW = "istio-system/istio-ingressgateway/unknown"
EDGES = {
    "healthy": [
        (GW, "tutorial/svc/customer"),
        ("tutorial/svc/customer", "tutorial/customer/v1"),
        ("tutorial/customer/v1", "tutorial/svc/preference"),
        ("tutorial/svc/preference", "tutorial/preference/v1"),
        ("tutorial/preference/v1", "tutorial/svc/recommendation"),
    ],
    "v1": [("tutorial/svc/recommendation", "tutorial/recommendation/v1")],
    "v2": [("tutorial/svc/recommendation", "tutorial/recommendation/v2")],
}


def edges(g: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["data"]["source"], e["data"]["target"]): e["data"] for e in g["elements"]["edges"]}


def settled_graph(mesh: Mesh, requests: int) -> dict[str, Any]:
    """The graph once every proxy's report of ``requests`` requests reached the collector."""
    def probe() -> dict[str, Any] | None:
        g = mesh.graph(window_s=600)
        got = edges(g)
        chain = [int(got[e]["count"]) if e in got else 0 for e in EDGES["healthy"]]
        last = sum(int(d["count"]) for (src, _), d in got.items() if src == "tutorial/svc/recommendation")
        return g if chain == [requests] * len(chain) and last == requests else None

    return eventually(probe, what=f"the graph of {requests} requests")


def test_graph_edges_then_error_ratios_after_v2_misbehaves(clean: Mesh) -> None:
    clean.apply(DR_V1_V2, vs_split(100, 0))
    healthy = clean.load(n=40, concurrency=2, flags=False)
    assert {r["code"] for r in healthy.records} == {200}
    g = settled_graph(clean, 40)
    got = edges(g)
    assert set(got) == set(EDGES["healthy"] + EDGES["v1"])
    assert all(d["count"] == 40 and d["errorRatio"] == 0.0 and d["codes"] == {"200": 40} for d in got.values())
    nodes = {n["data"]["id"]: n["data"] for n in g["elements"]["nodes"]}
    assert nodes[GW]["isRoot"] is True
    assert {nodes[n]["nodeType"] for n in nodes} == {"app", "service"}

    clean.apply(vs_split(0, 100))
    clean.misbehave("recommendation-v2")
    broken = clean.load(n=30, concurrency=2, flags=False)
    assert {r["code"] for r in broken.records} == {503}
    g = settled_graph(clean, 70)
    got = edges(g)
    assert set(got) == set(EDGES["healthy"] + EDGES["v1"] + EDGES["v2"])
    to_v1, to_v2 = got[EDGES["v1"][0]], got[EDGES["v2"][0]]
    # the misbehaving version: every call failed; the app answered, so no proxy flag
    assert (to_v2["count"], to_v2["errorRatio"], to_v2["codes"], to_v2["flags"]) == (30, 1.0, {"503": 30}, {})
    assert (to_v1["count"], to_v1["errorRatio"]) == (40, 0.0)
    # every hop above relayed the 503 (customer and preference answer 503 when a callee fails)
    for edge in EDGES["healthy"]:
        assert (got[edge]["count"], got[edge]["codes"]) == (70, {"200": 40, "503": 30})
        assert got[edge]["errorRatio"] == 30 / 70
    assert got[(GW, "tutorial/svc/customer")]["traffic"]["rates"]["httpPercentErr"] == "42.9"
    # Kiali's split of the service's traffic between its versions
    assert to_v1["traffic"]["rates"]["httpPercentReq"] == f"{100 * 40 / 70:.1f}"

    # the records of the second phase alone: all of v2's edge, none of v1's
    since = broken.records[0]["t"] - 0.001
    only = edges(graph([r for r in clean.request_log(since)], window_s=600))
    assert EDGES["v1"][0] not in only and only[EDGES["v2"][0]]["errorRatio"] == 1.0

    out = cli(clean, "graph", "--window", "600", "-o", "json")
    assert out.returncode == 0, out.stderr
    assert {(e["data"]["source"], e["data"]["target"]) for e in json.loads(out.stdout)["elements"]["edges"]} == set(got)
    table = cli(clean, "graph", "--window", "600").stdout.splitlines()
    assert table[0].split()[:6] == ["SOURCE", "TARGET", "RPS", "ERR%", "P95ms", "MTLS%"]
    assert any(line.startswith("recommendation (svc)") and "recommendation v2" in line and " 100.0 " in line
               for line in table)
