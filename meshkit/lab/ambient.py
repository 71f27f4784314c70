"""Lab 06's helpers: move the sample between data planes, and measure what each one costs.

The sample leaves its sidecars the way Istio's sidecar-to-ambient migration does it: the ambient
profile is installed over the running mesh (ztunnel joins), the namespace is labelled
``istio.io/dataplane-mode=ambient`` (pods that still have a sidecar never enroll), injection is
turned off and the deployments are restarted: their new pods have no sidecar and enroll at once.
Moving an enrolled pod in or out later restarts nothing.

:func:`measure` reads the learner's own mesh: how many proxies and processes carry the sample's
traffic, each pod's proportional memory (PSS, from ``/proc``) and the latency through the whole
chain divided by its hops. In the local mesh a sidecar shares its pod's process, so a sidecar pod's
PSS is app plus proxy; an ambient pod's is the app alone, and ztunnel (and a waypoint) carry the rest.

Example::

    from meshkit.lab import ambient
    before = ambient.measure(mesh, "sidecars")
    print(*ambient.remove_sidecars(mesh), sep="\\n")      # deployment.apps/customer restarted ...
    after = ambient.measure(mesh, "ambient")
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshkit.errors import Unsupported
from meshkit.mesh import Mesh
from meshkit.traffic import percentile

#: the sample's deployments, in the order a rollout restarts them
SAMPLE_DEPLOYMENTS = ("customer", "preference-v1", "recommendation-v1", "recommendation-v2")
SAMPLE_APPS = ("customer", "preference", "recommendation")
DATAPLANE_LABEL = "istio.io/dataplane-mode"
INJECTION_LABEL = "istio-injection"
WAYPOINT_LABEL = "istio.io/use-waypoint"
#: proxy pods of the ambient data plane (the node's ztunnel, waypoints)
_AMBIENT_PROXIES = ("ztunnel",)
_CLK = os.sysconf("SC_CLK_TCK")


def _sample(mesh: Mesh) -> list[Any]:
    return [p for p in mesh.pods() if p.app in SAMPLE_APPS and p.deployment in SAMPLE_DEPLOYMENTS]


def is_waypoint(pod: Any) -> bool:
    """A waypoint proxy's pod (a Gateway of class istio-waypoint; istioctl names it ``waypoint``)."""
    return bool(pod.extra.get("waypoint")) or pod.app == "waypoint" or pod.deployment == "waypoint"


_waypoint = is_waypoint


def pids(mesh: Mesh) -> dict[str, int]:
    """Pod name → process id, for the pods of the sample (the local mesh: a pod is a process)."""
    return {p.name: int(p.extra.get("pid") or 0) for p in _sample(mesh)}


def _started(pid: int) -> float | None:
    """When a process started (seconds since the epoch), from ``/proc``; None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    return boot + int(fields[19]) / _CLK


def _age(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s}s" if s < 120 else f"{s // 60}m{s % 60}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60}m"


def pod_rows(mesh: Mesh, now: float | None = None) -> list[dict[str, Any]]:
    """The sample's pods as ``kubectl get pods`` with the data plane of each: NAME, READY, DATAPLANE,
    PID, AGE. READY counts containers: 2/2 with a sidecar, 1/1 without.

    Example::

        [r["DATAPLANE"] for r in pod_rows(mesh)]      # ['sidecar', 'sidecar', ...]
    """
    clock = time.time() if now is None else now
    rows = []
    for p in sorted(_sample(mesh), key=lambda p: p.name):
        n = 2 if p.sidecar else 1
        pid = int(p.extra.get("pid") or 0)
        start = _started(pid) if pid else None
        rows.append({"NAME": p.name, "READY": f"{n if p.ready else 0}/{n}",
                     "DATAPLANE": str(p.extra.get("dataplane", "sidecar" if p.sidecar else "none")),
                     "PID": pid or "-", "AGE": _age(clock - start) if start else "-"})
    return rows


def pods_frame(mesh: Mesh) -> Any:
    """:func:`pod_rows` as a pandas DataFrame (a notebook shows it as a table)."""
    import pandas as pd

    return pd.DataFrame(pod_rows(mesh)).set_index("NAME")


def install_ambient(mesh: Mesh) -> str:
    """The ambient profile over the running mesh (``meshkit up --dataplane ambient``): ztunnel joins
    the node; no pod changes. Returns the ztunnel pod's name."""
    up = getattr(mesh.backend, "up", None)
    if mesh.backend.name != "local" or not callable(up):
        raise Unsupported(f"on {mesh.backend.name}: meshkit up --backend {mesh.backend.name} --dataplane ambient "
                          "(or istioctl install --set profile=ambient)")
    up(dataplane="ambient")
    return next(p.name for p in mesh.pods() if p.app == "ztunnel")


def remove_sidecars(mesh: Mesh, deployments: Sequence[str] = SAMPLE_DEPLOYMENTS) -> list[str]:
    """Turn injection off in ``tutorial`` and restart the deployments, as the migration guide says:
    ``kubectl label namespace tutorial istio-injection-`` then ``kubectl rollout restart``."""
    mesh.label("Namespace", "tutorial", {INJECTION_LABEL: None})
    mesh.rollout_restart(*deployments)
    return ["namespace/tutorial unlabeled", *(f"deployment.apps/{name} restarted" for name in deployments)]


def restore_sidecars(mesh: Mesh) -> list[str]:
    """Back to the sample every other lab uses: injection on, no ambient label, sidecars in every pod
    of the sample (the deployments that lost theirs are restarted). Nothing happens on a mesh that
    already is so, or on a backend without labels."""
    if mesh.backend.name != "local":
        return []
    namespaces = mesh.get("Namespace", "tutorial")
    labels = dict(((namespaces or [{}])[0].get("metadata") or {}).get("labels") or {})
    lines = []
    if labels.get(INJECTION_LABEL) != "enabled" or DATAPLANE_LABEL in labels or WAYPOINT_LABEL in labels:
        mesh.label("Namespace", "tutorial", {INJECTION_LABEL: "enabled", DATAPLANE_LABEL: None, WAYPOINT_LABEL: None})
        lines.append("namespace/tutorial labeled")
    for pod in mesh.pods():
        if pod.app in SAMPLE_APPS and pod.extra.get("dataplane") == "ambient" and pod.namespace == "tutorial":
            own = (mesh.get("pods", pod.name, namespace="tutorial") or [{}])[0]
            if DATAPLANE_LABEL in ((own.get("metadata") or {}).get("labels") or {}):
                mesh.label("Pod", pod.name, {DATAPLANE_LABEL: None})
    for svc in mesh.get("Service"):  # a Service bound to a waypoint that reset() removed
        meta = svc.get("metadata") or {}
        if WAYPOINT_LABEL in (meta.get("labels") or {}) and meta.get("namespace", "tutorial") == "tutorial":
            mesh.label("Service", str(meta["name"]), {WAYPOINT_LABEL: None})
            lines.append(f"service/{meta['name']} unlabeled")
    stale = sorted({p.deployment for p in _sample(mesh) if not p.sidecar})
    if stale:
        mesh.rollout_restart(*stale)
    return lines + [f"deployment.apps/{name} restarted" for name in stale]


# -- what each data plane costs -------------------------------------------------------------------
def pss_mb(pid: int) -> float:
    """Proportional set size of one process in MB, from ``/proc/PID/smaps_rollup`` (0 when gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


@dataclass(frozen=True)
class DataPlaneUse:
    """What one data plane cost on this mesh, measured at one moment.

    ``memory_mb`` maps each pod that carries the sample's traffic (the sample's pods, and ztunnel
    and waypoints in ambient) to its PSS; ``proxies`` counts proxy instances (a sidecar per pod, or
    one ztunnel per node plus the waypoints); ``hop_ms`` is the chain's median latency divided by its
    ``hops`` (gateway → customer → preference → recommendation).
    """

    label: str
    proxies: int
    processes: int
    memory_mb: Mapping[str, float]
    p50_ms: float
    hops: int = 3
    requests: int = 0
    roles: Mapping[str, str] = field(default_factory=dict)

    @property
    def total_mb(self) -> float:
        return round(sum(self.memory_mb.values()), 1)

    @property
    def hop_ms(self) -> float:
        return round(self.p50_ms / self.hops, 3)

    def summary(self) -> str:
        """One line: proxies, processes, memory and latency per hop."""
        proxies = "1 proxy" if self.proxies == 1 else f"{self.proxies} proxies"
        return (f"{self.label}: {proxies} in {self.processes} processes, "
                f"{self.total_mb:.1f} MB PSS, p50 {self.p50_ms:.2f} ms = {self.hop_ms:.2f} ms per hop "
                f"({self.requests} requests)")

    def __str__(self) -> str:
        return self.summary()


def _role(pod: Any) -> str:
    if pod.app == "ztunnel":
        return "ztunnel"
    if _waypoint(pod):
        return "waypoint"
    return f"{pod.app} {pod.version}".strip() + (" + sidecar" if pod.sidecar else "")


def measure(mesh: Mesh, label: str, n: int = 200) -> DataPlaneUse:
    """Measure the data plane the sample runs on now: its pods' PSS, proxies and processes, and the
    median latency of ``n`` requests (one at a time) through the gateway.

    Local backend only: the numbers come from the pods' processes.

    Example::

        use = measure(mesh, "sidecars")
        use.summary()    # 'sidecars: 4 proxies in 4 processes, 171.2 MB PSS, p50 6.10 ms = 2.03 ms per hop ...'
    """
    if mesh.backend.name != "local":
        raise Unsupported("measure() reads the local mesh's processes; on a cluster: kubectl top pods --containers")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    mesh.load(n=min(n, 20), flags=False)  # warm: connections open, pools filled
    result = mesh.load(n=n, concurrency=1, flags=False)
    ok = [r["latency_ms"] for r in result.records if r["code"] == 200]
    if not ok:
        codes = sorted({r["code"] for r in result.records})
        raise Unsupported(f"no request succeeded (codes {codes}): the chain must answer to be measured")
    every = mesh.pods()
    sample = [p for p in every if p.app in SAMPLE_APPS and p.deployment in SAMPLE_DEPLOYMENTS]
    # ztunnel and waypoints count when they carry the sample's traffic: some pod of it is enrolled
    enrolled = any(p.extra.get("dataplane") == "ambient" for p in sample)
    pods = sample + [p for p in every if enrolled and (p.app in _AMBIENT_PROXIES or _waypoint(p))]
    memory = {p.name: round(pss_mb(int(p.extra.get("pid") or 0)), 1) for p in pods}
    proxies = sum(1 for p in pods if p.sidecar or p.app in _AMBIENT_PROXIES or _waypoint(p))
    return DataPlaneUse(label, proxies, len(pods), memory, round(percentile(ok, 50), 3), 3, len(ok),
                        {p.name: _role(p) for p in pods})


__all__ = [
    "DATAPLANE_LABEL",
    "INJECTION_LABEL",
    "SAMPLE_DEPLOYMENTS",
    "DataPlaneUse",
    "install_ambient",
    "measure",
    "pids",
    "pod_rows",
    "pods_frame",
    "pss_mb",
    "remove_sidecars",
    "restore_sidecars",
]
