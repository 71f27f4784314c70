"""The versionedApp service graph derived from records, as Kiali derives it from metrics."""

from __future__ import annotations

import pytest

from meshkit.telemetry.graph import format_graph, graph
from meshkit.telemetry.record import UNKNOWN

from .synthetic import CUSTOMER, Workload, chain, hop

T0 = 1_700_000_000.0
GW = "istio-system/istio-ingressgateway/unknown"


def mesh_records(mtls: bool = True) -> list[dict]:
    """90 good requests to v1, 10 misbehaving v2, 5 circuit-broken, 1 unrouted, 1 from outside the mesh."""
    recs = []
    for i in range(100):
        version, failure = ("v2", "app503") if i % 10 == 9 else ("v1", None)
        recs += chain(f"r{i}", T0 + 0.5 * i, version=version, failure=failure, mtls=mtls)
    recs += [r for i in range(5) for r in chain(f"uo{i}", T0 + 10 + i, failure="UO", mtls=mtls)]
    recs += chain("nr", T0 + 20, failure="NR")
    outsider = Workload("unknown", "unknown", "curl-pod")
    stray = hop(
        outsider,
        CUSTOMER,
        "destination",
        t=T0 + 30,
        duration_ms=2.0,
        mtls=False,
        source_workload=UNKNOWN,
        source_principal=UNKNOWN,
    )
    recs.append(stray)
    recs += chain("late", T0 + 500)  # outside the window
    return [r.to_dict() for r in recs]


def edges_of(g: dict) -> dict[tuple[str, str], dict]:
    return {(e["data"]["source"], e["data"]["target"]): e["data"] for e in g["elements"]["edges"]}


def test_edges_rates_and_error_ratios() -> None:
    g = graph(mesh_records(), window_s=60, now=T0 + 59)
    assert (g["graphType"], g["duration"], g["timestamp"]) == ("versionedApp", 60, int(T0 + 59))
    edges = edges_of(g)
    assert set(edges) == {
        (GW, "tutorial/svc/customer"),
        (GW, "unknown/svc/unknown"),
        ("unknown", "tutorial/svc/customer"),
        ("tutorial/svc/customer", "tutorial/customer/v1"),
        ("tutorial/customer/v1", "tutorial/svc/preference"),
        ("tutorial/svc/preference", "tutorial/preference/v1"),
        ("tutorial/preference/v1", "tutorial/svc/recommendation"),
        ("tutorial/svc/recommendation", "tutorial/recommendation/v1"),
        ("tutorial/svc/recommendation", "tutorial/recommendation/v2"),
    }
    entry = edges[(GW, "tutorial/svc/customer")]
    assert entry["count"] == 105 and entry["rate"] == pytest.approx(105 / 60)
    assert entry["codes"] == {"200": 90, "503": 15}
    assert entry["errorRatio"] == pytest.approx(15 / 105)
    to_rec = edges[("tutorial/preference/v1", "tutorial/svc/recommendation")]
    assert to_rec["flags"] == {"UO": 5} and to_rec["codes"] == {"200": 90, "503": 15}
    assert to_rec["traffic"]["responses"]["503"]["flags"] == {"-": "66.7", "UO": "33.3"}
    assert edges[("tutorial/svc/recommendation", "tutorial/recommendation/v1")]["errorRatio"] == 0.0
    v2 = edges[("tutorial/svc/recommendation", "tutorial/recommendation/v2")]
    assert (v2["count"], v2["errorRatio"]) == (10, 1.0)
    unrouted = edges[(GW, "unknown/svc/unknown")]
    assert (unrouted["codes"], unrouted["flags"]) == ({"404": 1}, {"NR": 1})
    # the caller without a sidecar is known only from the server's report
    assert edges[("unknown", "tutorial/svc/customer")]["count"] == 1
    assert edges[("tutorial/svc/customer", "tutorial/customer/v1")]["count"] == 106
    kiali = entry["traffic"]["rates"]
    assert kiali["http"] == "1.75" and kiali["httpPercentErr"] == "14.3" and kiali["httpPercentReq"] == "99.1"


def test_mtls_and_latency_come_from_the_server_side() -> None:
    edges = edges_of(graph(mesh_records(mtls=True), 60, now=T0 + 59))
    svc_to_v1 = edges[("tutorial/svc/recommendation", "tutorial/recommendation/v1")]
    assert svc_to_v1["mtlsShare"] == 1.0 and svc_to_v1["isMTLS"] == "100"
    # the server's durations (synthetic chain: 3 ms at recommendation's sidecar, 4 ms at its caller's)
    assert svc_to_v1["p95Ms"] == pytest.approx(3.0) and svc_to_v1["responseTime"] == "3.0"
    to_rec = edges[("tutorial/preference/v1", "tutorial/svc/recommendation")]
    assert to_rec["mtlsShare"] == 1.0  # the circuit-broken requests never reached a server: no server view
    plain = edges_of(graph(mesh_records(mtls=False), 60, now=T0 + 59))
    off = plain[("tutorial/svc/recommendation", "tutorial/recommendation/v1")]
    assert off["mtlsShare"] == 0.0 and "isMTLS" not in off
    unrouted = plain[(GW, "unknown/svc/unknown")]
    assert unrouted["mtlsShare"] is None and unrouted["p95Ms"] == pytest.approx(0.4)  # caller's duration


def test_nodes() -> None:
    g = graph(mesh_records(), 60, now=T0 + 59)
    nodes = {n["data"]["id"]: n["data"] for n in g["elements"]["nodes"]}
    assert nodes[GW] == {
        "id": GW,
        "nodeType": "app",
        "namespace": "istio-system",
        "app": "istio-ingressgateway",
        "version": "unknown",
        "workload": "istio-ingressgateway",
        "isGateway": True,
        "isRoot": True,
    }
    assert nodes["unknown"]["nodeType"] == "unknown" and nodes["unknown"]["isRoot"] is True
    assert nodes["tutorial/recommendation/v2"]["workload"] == "recommendation-v2"
    assert nodes["tutorial/svc/recommendation"]["nodeType"] == "service"
    assert len(nodes) == 10


def test_format_graph_table() -> None:
    text = format_graph(graph(mesh_records(), 60, now=T0 + 59))
    lines = text.splitlines()
    assert lines[0].split() == ["SOURCE", "TARGET", "RPS", "ERR%", "P95ms", "MTLS%", "CODES", "FLAGS"]
    row = next(line for line in lines if line.startswith("preference v1") and "recommendation (svc)" in line)
    assert row.split()[-5:] == ["14.3", "3.0", "100", "200:90,503:15", "UO:5"]
    assert format_graph(graph([], 30, now=T0)) == "no requests in the last 30s"
    with pytest.raises(ValueError, match="window_s must be > 0"):
        graph([], 0)
