"""The ambient install on a real kind cluster: ``meshkit up --backend kind --dataplane ambient``.

Opt-in like the other live suites (``make test-kind DATAPLANE=ambient``; MESHKIT_KIND_TESTS=1, Docker
and kind present), else skipped with the reason. A cluster of its own (``meshkit-ambient``, host ports
9080/9443), so it never meets the sidecar suite's cluster.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator

import pytest

from meshkit.backends.kind.backend import KindBackend
from meshkit.mesh import Mesh
from tests.kind.availability import kind_unavailable

pytestmark: list[pytest.MarkDecorator] = [pytest.mark.kind]
REASON = kind_unavailable()
if REASON:
    pytestmark = [pytest.mark.kind, pytest.mark.skip(reason=REASON)]


@pytest.fixture(scope="module")
def backend() -> Iterator[KindBackend]:
    kind = KindBackend(cluster_name="meshkit-ambient", host_port=9080, https_host_port=9443,
                       progress=lambda i, n, what: print(f"[{i}/{n}] {what}", flush=True))
    kind.up(dataplane="ambient")
    yield kind
    kind.reset()
    kind.close()
    if os.environ.get("MESHKIT_KIND_KEEP") != "1":
        kind.down()


def test_sample_pods_are_enrolled_without_sidecars(backend: KindBackend) -> None:
    pods = [p for p in backend.pods() if p.app in ("customer", "preference", "recommendation")]
    assert len(pods) == 4
    assert all(p.ready and not p.sidecar and p.extra["dataplane"] == "ambient" for p in pods), pods
    system = backend.kc.pods(namespace="istio-system")
    assert any(p.name.startswith("ztunnel-") and p.ready for p in system)
    assert any(p.name.startswith("istio-cni-node-") and p.ready for p in system)


def test_gateway_reaches_the_chain_through_ztunnel(backend: KindBackend) -> None:
    with urllib.request.urlopen(backend.gateway_url() + "/customer", timeout=10) as resp:
        assert resp.read().decode().startswith("customer => preference => recommendation v")


def test_l7_allow_without_a_waypoint_gets_istiods_status(backend: KindBackend) -> None:
    mesh = Mesh(backend)
    mesh.apply({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                "metadata": {"name": "recommendation-get-only", "namespace": "tutorial"},
                "spec": {"selector": {"matchLabels": {"app": "recommendation"}}, "action": "ALLOW",
                         "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}})
    try:
        from meshkit.backends.kind.poll import poll_until

        def condition() -> tuple[bool, str]:
            [ap] = mesh.get("AuthorizationPolicy", "recommendation-get-only")
            conds = (ap.get("status") or {}).get("conditions") or []
            ok = any(c.get("type") == "ZtunnelAccepted" and c.get("reason") == "UnsupportedValue" for c in conds)
            return ok, str(conds)

        poll_until(condition, 60, 2.0, lambda _: None, what="istiod's ZtunnelAccepted condition")
    finally:
        mesh.delete("AuthorizationPolicy", "recommendation-get-only")


def test_a_waypoint_applies_lists_and_enforces_l7_policy(backend: KindBackend) -> None:
    mesh = Mesh(backend)
    lines = mesh.waypoint_apply()
    assert lines == ["✅ waypoint tutorial/waypoint applied", "✅ waypoint tutorial/waypoint is ready!"]
    assert mesh.waypoint_list().splitlines()[1].split() == ["waypoint", "default", "service", "True"]
    mesh.label("Service", "recommendation", {"istio.io/use-waypoint": "waypoint"})
    try:
        with urllib.request.urlopen(backend.gateway_url() + "/customer", timeout=10) as resp:
            assert resp.read().decode().startswith("customer => preference => recommendation v")
    finally:
        mesh.label("Service", "recommendation", {"istio.io/use-waypoint": None})
        assert mesh.waypoint_delete() == ["waypoint tutorial/waypoint deleted"]
