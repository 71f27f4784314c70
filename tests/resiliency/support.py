"""Helpers for the resiliency scenarios: resources as normalised dicts, sync waits, clean-up."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import meshkit
from meshkit import LoadResult, Mesh

NS = "tutorial"
TIMEOUT_LINE = "customer => Error: 503 - preference => Error: 504 - upstream request timeout"
ABORT_LINE = "customer => Error: 503 - preference => Error: 503 - fault filter abort"
OVERFLOW_LINE = (
    "customer => Error: 503 - preference => Error: 503 - "
    "upstream connect error or disconnect/reset before headers. reset reason: overflow"
)
NO_HEALTHY_LINE = "customer => Error: 503 - preference => Error: 503 - no healthy upstream"


def misbehavior_line(pod: str) -> str:
    return f"customer => Error: 503 - preference => Error: 503 - recommendation misbehavior from '{pod}'"


def resource(kind: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """A resource as the validation package hands it to the backend (normalised to v1)."""
    return {"apiVersion": "networking.istio.io/v1", "kind": kind,
            "metadata": {"name": name, "namespace": NS}, "spec": dict(spec)}


def destination_rule(v2_policy: Mapping[str, Any] | None = None, policy: Mapping[str, Any] | None = None
                     ) -> dict[str, Any]:
    """DestinationRule ``recommendation`` with subsets version-v1/-v2 (policies optional)."""
    v2: dict[str, Any] = {"name": "version-v2", "labels": {"version": "v2"}}
    if v2_policy:
        v2["trafficPolicy"] = dict(v2_policy)
    spec: dict[str, Any] = {"host": "recommendation",
                            "subsets": [{"name": "version-v1", "labels": {"version": "v1"}}, v2]}
    if policy:
        spec["trafficPolicy"] = dict(policy)
    return resource("DestinationRule", "recommendation", spec)


def virtual_service(*http: Mapping[str, Any]) -> dict[str, Any]:
    return resource("VirtualService", "recommendation", {"hosts": ["recommendation"], "http": list(http)})


def to(subset: str | None = None, weight: int | None = None) -> dict[str, Any]:
    dest: dict[str, Any] = {"destination": {"host": "recommendation"}}
    if subset:
        dest["destination"]["subset"] = subset
    if weight is not None:
        dest["weight"] = weight
    return dest


def apply(mesh: Mesh, *resources: dict[str, Any]) -> None:
    """Apply already-validated resources and wait until every proxy runs the new config."""
    mesh.backend.apply(list(resources))
    wait_synced(mesh)


def wait_synced(mesh: Mesh, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = mesh.backend.status()  # type: ignore[attr-defined]
        if status["ready"] and all(p["synced"] for p in status["pods"]):
            return
        time.sleep(0.02)
    raise AssertionError(f"proxies not in sync after {timeout:g}s")


def load(mesh: Mesh, **options: Any) -> LoadResult:
    """``mesh.load`` whose response flags are joined only once the proxies' telemetry has landed.

    On a machine shared with other test runs the pods' batches can take long; this waits (up to
    15 s) until the collector's record count has been stable for half a second.
    """
    result = mesh.load(flags=False, **options)
    since = min(r["t"] for r in result.records) - 1
    wait_telemetry(mesh, since)
    mesh.attach_flags(result.records)
    return result


def wait_telemetry(mesh: Mesh, since: float, quiet: float = 0.5, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    count, stable_at = -1, time.monotonic()
    while time.monotonic() < deadline:
        now_count = len(mesh.backend.request_log(since=since, limit=200_000))
        if now_count != count:
            count, stable_at = now_count, time.monotonic()
        elif count > 0 and time.monotonic() - stable_at >= quiet:
            return
        time.sleep(0.05)
    raise AssertionError(f"telemetry still arriving after {timeout:g}s")


def pods_of(mesh: Mesh, deployment: str) -> list[str]:
    return sorted(p.name for p in mesh.pods() if p.deployment == deployment)


def restore(mesh: Mesh) -> None:
    """Back to the baseline: no rules, one v1 and one v2 pod, every pod well-behaved and quick."""
    mesh.reset()
    if len(pods_of(mesh, "recommendation-v2")) != 1:
        mesh.scale("recommendation-v2", 1)
    for deployment in ("recommendation-v1", "recommendation-v2"):
        mesh.behave(deployment)
        mesh.delay(deployment, 0)
    wait_synced(mesh)


def requests_seen_by(mesh: Mesh, pod: str) -> int:
    """How many ``/`` requests the pod's application has received so far (its counter N)."""
    log = mesh.backend.app_log(pod)  # type: ignore[attr-defined]
    counts = re.findall(rf"recommendation request from {re.escape(pod)}: (\d+)", log)
    return int(counts[-1]) if counts else 0


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (an unreaped zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def mesh_pids(home: Path, mesh: Mesh) -> list[int]:
    """The control plane's pid and every pod's pid."""
    state = json.loads((home / "state.json").read_text())
    return [int(state["pid"]), *(int(p.extra["pid"]) for p in mesh.pods() if p.extra.get("pid"))]


def summary_line(name: str, **figures: Any) -> None:
    """Print the observed numbers of a scenario (shown with ``pytest -s`` or ``-rA``)."""
    print(f"[{name}] " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def start_mesh(home: Path, profile: str) -> Iterator[Mesh]:
    """Start a mesh in ``home``; on exit take it down and check no process of it is left."""
    mesh = meshkit.up(home=str(home), profile=profile)
    try:
        pids = mesh_pids(home, mesh)
        yield mesh
    finally:
        mesh.backend.down()
    left = [pid for pid in pids if not process_gone(pid)]
    assert not left, f"processes left behind by the {profile} mesh: {left}"
