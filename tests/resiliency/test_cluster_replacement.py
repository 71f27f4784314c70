"""A DestinationRule change replaces the cluster, as Envoy does: new limits hold at once.

preference's sidecar first opens about 20 connections to recommendation v2 (20 concurrent
requests, no limits). Then ``maxConnections: 1`` is pushed. Envoy builds a new cluster with fresh
circuit-breaker counters and new pools for new requests, and drains the old pools: the pooled
connections are not reused, so every request after the push meets the new limit. Before this
replacement the old connections were reused and 16-19 requests reached v2 at the same time.
"""

from __future__ import annotations

import re

from meshkit import Mesh
from tests.resiliency.support import apply, destination_rule, load, summary_line, to, virtual_service

ALL_TO_V2 = virtual_service({"route": [to("version-v2")]})
V2_DELAY = 0.1


def _open_connections(mesh: Mesh, cluster: str) -> int:
    text = mesh.backend.envoy_admin(_pod(mesh, "preference-v1"), "/clusters")  # type: ignore[attr-defined]
    return sum(int(n) for n in re.findall(rf"^{re.escape(cluster)}::[^:]+:\d+::cx_active::(\d+)$", text, re.M))


def _pod(mesh: Mesh, deployment: str) -> str:
    return next(p.name for p in mesh.pods() if p.deployment == deployment)


def _max_overlap(rows: list[dict[str, float]]) -> int:
    """Most requests a server handled at the same time, from its sidecar's records."""
    edges = sorted([(r["start_time"], 1) for r in rows] +
                   [(r["start_time"] + r["duration_ms"] / 1000.0, -1) for r in rows])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def test_lowered_max_connections_holds_every_request_after_the_push(mesh: Mesh) -> None:
    cluster = "outbound|8080|version-v2|recommendation.tutorial.svc.cluster.local"
    apply(mesh, destination_rule(), ALL_TO_V2)
    mesh.delay("recommendation-v2", V2_DELAY)
    warm = load(mesh, n=40, concurrency=20)
    assert warm.summary()["codes"] == {"200": 40}
    opened = _open_connections(mesh, cluster)
    assert opened >= 5, opened  # a pool of connections is open (idle) towards v2 before the push

    apply(mesh, destination_rule(v2_policy={"connectionPool": {"tcp": {"maxConnections": 1}}}), ALL_TO_V2)
    after = load(mesh, n=20, concurrency=20)
    assert after.summary()["codes"] == {"200": 20}  # no pending limit: requests queue, none fails
    ids = {r["request_id"] for r in after.records}
    at_v2 = [r for r in mesh.request_log(since=after.records[0]["t"] - 1)
             if r["request_id"] in ids and r["reporter"] == "destination" and r["destination_version"] == "v2"]
    assert len(at_v2) == 20
    overlap = _max_overlap(at_v2)
    assert overlap == 1, overlap  # one connection, one request at a time: the new limit, for all 20
    assert _open_connections(mesh, cluster) <= 1
    summary_line("maxConnections pushed over open connections", connections_before=opened, requests_after=20,
                 max_concurrent_at_v2=overlap, duration_s=after.summary()["duration_s"])
