"""The two semantics profiles: today's Istio (current) and the book era (tutorial)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from meshkit.errors import InvalidConfig
from meshkit.mesh import Mesh
from tests.local.conftest import start_mesh, stop_mesh

MIRROR = """
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: recommendation}
spec:
  hosts: [recommendation]
  http:
  - route:
    - destination: {host: recommendation, subset: version-v1}
    mirror: {host: recommendation, subset: version-v2}
"""
DR = """
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: recommendation}
spec:
  host: recommendation
  subsets:
  - {name: version-v1, labels: {version: v1}}
  - {name: version-v2, labels: {version: v2}}
"""
WEIGHTS_80_10 = """
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: recommendation}
spec:
  hosts: [recommendation]
  http:
  - route:
    - {destination: {host: recommendation, subset: version-v1}, weight: 80}
    - {destination: {host: recommendation, subset: version-v2}, weight: 10}
"""


@pytest.fixture(scope="module", params=["current", "tutorial"])
def profiled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    mesh = start_mesh(tmp_path_factory.mktemp(request.param), profile=request.param)
    yield mesh
    stop_mesh(mesh)


def test_default_retry_of_app_503(profiled: Mesh) -> None:
    profiled.misbehave("recommendation-v2")
    codes = profiled.load(n=60, concurrency=1).summary()["codes"]
    if profiled.profile == "tutorial":
        assert codes == {"200": 60}  # Istio <= 1.23 retried 503 on another host: errors hidden
    else:
        assert 10 <= codes.get("503", 0) <= 50  # Istio >= 1.24 does not: v2's 503s reach the user
    profiled.behave("recommendation-v2")


def test_default_load_balancer(profiled: Mesh) -> None:
    order = [r["version"] for r in profiled.load(n=40, concurrency=1, flags=False).records]
    alternating = all(a != b for a, b in itertools.pairwise(order))
    assert alternating == (profiled.profile == "tutorial")  # ROUND_ROBIN then, LEAST_REQUEST now


def test_weights_must_sum_to_100_only_in_tutorial(profiled: Mesh) -> None:
    profiled.apply(DR)
    if profiled.profile == "tutorial":
        with pytest.raises(InvalidConfig, match="total destination weight 90 != 100"):
            profiled.apply(WEIGHTS_80_10)
    else:
        profiled.apply(WEIGHTS_80_10)  # relative weights: 8/9 and 1/9
        versions = profiled.load(n=900, concurrency=8, flags=False).summary()["versions"]
        assert abs(versions.get("v2", 0) / 900 - 1 / 9) < 0.04
    profiled.reset()


def test_mirror_host_suffix(profiled: Mesh) -> None:
    profiled.apply(DR, MIRROR)
    since = time.time()
    profiled.load(n=5, flags=False)
    time.sleep(0.5)  # telemetry ships every 0.2 s
    seen = {r["authority"] for r in profiled.request_log(since) if r["reporter"] == "destination"
            and r["destination_version"] == "v2"}
    want = "recommendation-shadow:8080" if profiled.profile == "tutorial" else "recommendation:8080"
    assert seen == {want}
    profiled.reset()
