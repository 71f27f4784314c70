"""A real local mesh per test module, plus the helpers the observability tests share.

Metrics are cumulative since the mesh started, so the tests compare two scrapes (``delta``) rather
than absolute counts; records and spans reach the collector every 0.2 s, so reads of the collector
go through :func:`eventually`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from meshkit.mesh import Mesh
from tests.local.conftest import start_mesh, stop_mesh

T = TypeVar("T")
Labels = frozenset[tuple[str, str]]

SVC = "recommendation.tutorial.svc.cluster.local"

DR_V1_V2 = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: recommendation}
spec:
  host: recommendation
  subsets:
  - {name: version-v1, labels: {version: v1}}
  - {name: version-v2, labels: {version: v2}}
"""


def vs_split(v1: int, v2: int) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: recommendation}}
spec:
  hosts: [recommendation]
  http:
  - route:
    - destination: {{host: recommendation, subset: version-v1}}
      weight: {v1}
    - destination: {{host: recommendation, subset: version-v2}}
      weight: {v2}
"""


def vs_abort(percent: float) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: recommendation}}
spec:
  hosts: [recommendation]
  http:
  - fault: {{abort: {{httpStatus: 503, percentage: {{value: {percent}}}}}}}
    route:
    - destination: {{host: recommendation}}
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = start_mesh(tmp_path_factory.mktemp("mesh"))
    yield m
    stop_mesh(m)


@pytest.fixture
def clean(mesh: Mesh) -> Iterator[Mesh]:
    """The module's mesh with no resources, every pod behaving, one replica of recommendation-v2."""
    mesh.reset()
    yield mesh
    mesh.reset()
    if sum(p.deployment == "recommendation-v2" for p in mesh.pods()) != 1:
        mesh.scale("recommendation-v2", 1)
    for dep in ("recommendation-v1", "recommendation-v2"):
        mesh.behave(dep)


def eventually(probe: Callable[[], T | None], timeout: float = 5.0, what: str = "the telemetry") -> T:
    """Poll ``probe`` until it returns something truthy (telemetry ships every 0.2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not arrive within {timeout:g}s")
        time.sleep(0.05)


def samples(text: str, name: str) -> dict[Labels, float]:
    """The samples called ``name`` in a Prometheus exposition, keyed by their label set."""
    out: dict[Labels, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[frozenset(s.labels.items())] = s.value
    return out


def delta(before: dict[Labels, float], after: dict[Labels, float]) -> dict[Labels, float]:
    """What each series gained between two scrapes (new series count from zero)."""
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}


def total(series: dict[Labels, float], **match: str) -> float:
    """The sum over the series whose labels have the given values."""
    return sum(v for k, v in series.items() if all((key, val) in k for key, val in match.items()))


def by_label(series: dict[Labels, float], label: str, **match: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for k, v in series.items():
        labels = dict(k)
        if all(labels.get(key) == val for key, val in match.items()):
            out[labels[label]] += int(v)
    return out


def pod_of(mesh: Mesh, deployment: str) -> str:
    return next(p.name for p in mesh.pods() if p.deployment == deployment)


def cli(mesh: Mesh, *args: str) -> subprocess.CompletedProcess[str]:
    """``meshkit ARGS`` as a learner runs it, against this mesh's state directory."""
    env = dict(os.environ, MESHKIT_HOME=str(mesh.backend.home))  # type: ignore[attr-defined]
    return subprocess.run([sys.executable, "-m", "meshkit.cli", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def records_of(mesh: Mesh, request_id: str, n: int) -> list[dict[str, Any]]:
    """The ``n`` records the proxies made for one request, once they all reached the collector."""
    def probe() -> list[dict[str, Any]] | None:
        rows = [r for r in mesh.request_log(time.time() - 120) if r["request_id"] == request_id]
        return rows if len(rows) >= n else None

    return eventually(probe, what=f"{n} records of request {request_id}")
