"""Lab 06's helpers on a real local mesh: a sniffer on the wire to an ambient pod sees TLS on its
HBONE port, the data planes' cost is measured from the pods' processes and drawn, and the sample goes
back to sidecars. (The way in, sidecars to ambient, is lab 06's first step: nbval runs it with strict
checks.)

One ambient mesh for the module.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import meshkit
from meshkit.cli import main
from meshkit.lab import ambient, check, replay
from meshkit.lab.ambient import DataPlaneUse
from meshkit.mesh import Mesh
from meshkit.viz.dataplanes import dataplane_figure, memory_by_holder
from tests.local.conftest import stop_mesh


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = meshkit.up(home=str(tmp_path_factory.mktemp("migration")), dataplane="ambient")
    yield m
    stop_mesh(m)


def _modes(mesh: Mesh) -> dict[str, str]:
    return {p.name: str(p.extra.get("dataplane")) for p in mesh.pods() if p.app in ambient.SAMPLE_APPS}


def test_ambient_measured_sniffed_and_back_to_sidecars(mesh: Mesh) -> None:
    # the way in (ambient profile over a sidecar mesh, label, rollout) is lab 06's first step, which the
    # suite runs under nbval with strict checks; this mesh starts in ambient and goes the way back
    rows = ambient.pod_rows(mesh)
    assert {r["READY"] for r in rows} == {"1/1"} and {r["DATAPLANE"] for r in rows} == {"ambient"}
    assert all(isinstance(r["PID"], int) and r["AGE"].endswith("s") for r in rows)
    assert ambient.install_ambient(mesh).startswith("ztunnel-")  # already there: nothing changes
    assert check.ztunnel_identity(mesh, "customer", "preference", strict=True)

    # what crosses the wire to an ambient pod: TLS records on its HBONE listener, no HTTP
    views = mesh.sniff("preference")
    assert views and all(v["encrypted"] and v["listener"] == "HBONE (15008)" for v in views), views
    assert all(v["tls_records"][0].startswith("handshake") for v in views)
    assert not any("x-request-id" in v.get("text", "") for v in views)

    in_ambient = ambient.measure(mesh, "ambient", n=20)
    assert in_ambient.proxies == 1 and in_ambient.processes == 5  # one ztunnel for the node
    assert {in_ambient.roles[n] for n in in_ambient.memory_mb if n.startswith("ztunnel-")} == {"ztunnel"}
    assert all(mb > 1 for mb in in_ambient.memory_mb.values())
    assert in_ambient.p50_ms > 0 and in_ambient.requests == 20
    held = memory_by_holder(in_ambient)
    assert held["pods+sidecar"] == 0 and held["pods"] > 0 and held["ztunnel"] > 0

    # `meshkit lab reset 06`: back to the sample the other labs use: injection on, the ambient label gone,
    # new pods with sidecars
    pids = ambient.pids(mesh)
    assert main(["--home", str(mesh.backend.home), "lab", "reset", "06"]) == 0  # type: ignore[attr-defined]
    assert set(_modes(mesh).values()) == {"sidecar"} and not set(ambient.pids(mesh)) & set(pids)
    [ns] = mesh.get("Namespace", "tutorial")
    assert ns["metadata"]["labels"].get("istio-injection") == "enabled"
    assert "istio.io/dataplane-mode" not in ns["metadata"]["labels"]
    assert ambient.restore_sidecars(mesh) == []  # nothing left to do
    assert mesh.curl()[0] == 200

    sidecars = ambient.measure(mesh, "sidecars", n=20)
    # a sidecar in each pod; ztunnel still runs but carries none of the sample's traffic
    assert sidecars.proxies == 4 and sidecars.processes == 4
    assert set(sidecars.roles.values()) == {
        "customer v1 + sidecar", "preference v1 + sidecar", "recommendation v1 + sidecar",
        "recommendation v2 + sidecar"}
    fig = dataplane_figure([sidecars, in_ambient])
    assert [t.name for t in fig.data if t.type == "bar"][:3] == [
        "sample pods (app + sidecar)", "sample pods (app only)", "ztunnel (one per node)"]

    # `meshkit lab goto 06 1`: the lab's first step replayed (its strict checks raise if a stage is off)
    done = replay.goto(mesh, "06", 1, fast=True)
    assert done["sidecars"].proxies == 4 and set(_modes(mesh).values()) == {"ambient"}
    assert done["before"] == ambient.pids(mesh)  # the last cells moved a pod out and in: same processes


def _use(label: str, roles: dict[str, str], p50: float = 6.0) -> DataPlaneUse:
    return DataPlaneUse(label, proxies=sum(1 for r in roles.values() if "sidecar" in r or r in ("ztunnel", "waypoint")),
                        processes=len(roles), memory_mb={n: 30.0 for n in roles}, p50_ms=p50, roles=roles)


def test_figure_stacks_memory_by_holder_and_divides_latency_by_hops() -> None:
    side = _use("sidecars", {"a": "customer v1 + sidecar", "b": "preference v1 + sidecar"}, p50=6.0)
    amb = _use("ambient", {"a": "customer v1", "b": "preference v1", "z": "ztunnel", "w": "waypoint"}, p50=3.0)
    assert memory_by_holder(amb) == {"pods+sidecar": 0.0, "pods": 60.0, "ztunnel": 30.0, "waypoint": 30.0}
    assert side.hop_ms == 2.0 and amb.hop_ms == 1.0 and amb.total_mb == 120.0
    fig = dataplane_figure([side, amb])
    bars = {t.name: t for t in fig.data if t.type == "bar"}
    # stacked by hand: each holder starts where the one below ended
    assert list(bars["sample pods (app only)"].base) == [60.0, 0.0]
    assert list(bars["ztunnel (one per node)"].base) == [60.0, 60.0]
    assert list(bars["waypoint"].base) == [60.0, 90.0]
    assert list(bars["p50 / hops"].y) == [2.0, 1.0]
    assert "ambient: 2 proxies in 4 processes, 120.0 MB PSS" in str(amb)


def test_bad_input_is_one_message() -> None:
    from meshkit.viz.data import InvalidData

    with pytest.raises(InvalidData, match="at least one measurement"):
        dataplane_figure([])
    with pytest.raises(InvalidData, match="measurement 0: missing label"):
        dataplane_figure([object()])
