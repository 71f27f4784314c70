"""istioctl's views on a real cluster: pods come from the (fake) API server, Envoy's admin answers come
through ``kubectl exec … -c istio-proxy -- pilot-agent request GET``, proxy-status from the real istioctl.

The Envoy JSON the runner answers with is what a proxy's admin port returns (rendered here by the
local backend's config_dump, which has the same shape), so the tables are built by the same code as
on the local mesh.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from meshkit.backends.kind.backend import KindBackend
from meshkit.backends.kind.client import KubeClient
from meshkit.backends.local.proxy.config import ProxyIdentity, compile_view
from meshkit.backends.local.proxy.configdump import DumpContext, config_dump
from meshkit.errors import MeshkitError
from meshkit.mesh import Mesh
from tests.kind.fakeapi import FakeApiServer
from tests.kind.test_requests import pod

POD = "preference-v1-6b8c7f5d9c-x2x7q"
FQDN = "recommendation.tutorial.svc.cluster.local"


def envoy_dump() -> dict[str, Any]:
    dr = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
          "metadata": {"name": "recommendation", "namespace": "tutorial"},
          "spec": {"host": "recommendation", "subsets": [{"name": "version-v1", "labels": {"version": "v1"}}]}}
    snapshot = {"version": 3, "services": [{"name": "recommendation", "namespace": "tutorial", "port": 8080}],
                "resources": [dr]}
    me = ProxyIdentity(POD, "preference", "v1", {"app": "preference", "version": "v1"})
    return config_dump(compile_view(snapshot, me), DumpContext())


class Runner:
    """A subprocess runner that records argv and answers like kubectl exec / istioctl would."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout: float) -> tuple[int, str]:
        self.calls.append(list(argv))
        if argv[0] == "istioctl":
            return 0, "NAME     CLUSTER     ISTIOD     VERSION     SUBSCRIBED TYPES\n"
        if argv[-1] == "config_dump":
            return 0, json.dumps(envoy_dump())
        if argv[-1].startswith("clusters?format=json"):
            return 0, json.dumps({"cluster_statuses": [{"name": f"outbound|8080||{FQDN}", "host_statuses": [{
                "address": {"socket_address": {"address": "10.244.0.17", "port_value": 8080}},
                "health_status": {"eds_health_status": "HEALTHY", "failed_outlier_check": True}}]}]})
        return 1, "error: unable to upgrade connection: container not found (\"istio-proxy\")"


@pytest.fixture
def mesh(api: FakeApiServer, kc: KubeClient) -> Mesh:
    api.put(f"/api/v1/namespaces/tutorial/pods/{POD}", pod(POD, "preference", "v1"))
    api.put("/api/v1/namespaces/tutorial/pods/curl-1", pod("curl-1", "curl", "v1", sidecar=False))
    return Mesh(KindBackend(client=kc, run=Runner()))


def test_proxy_config_reads_envoy_admin_through_pilot_agent(mesh: Mesh) -> None:
    table = mesh.proxy_config_text(POD, "clusters", fqdn="recommendation")
    assert table.splitlines()[1].split() == [FQDN, "8080", "-", "outbound", "EDS", "recommendation.tutorial"]
    assert table.splitlines()[2].split()[2] == "version-v1"
    run: Runner = mesh.backend.run  # type: ignore[attr-defined]
    assert run.calls[-1] == ["kubectl", "--context", "kind-meshkit", "-n", "tutorial", "exec", POD, "-c",
                             "istio-proxy", "--", "pilot-agent", "request", "GET", "config_dump"]


def test_endpoints_come_from_clusters_json(mesh: Mesh) -> None:
    rows = mesh.proxy_config(POD, "endpoints")
    rows = rows.to_dict("records") if hasattr(rows, "to_dict") else rows
    assert rows == [{"ENDPOINT": "10.244.0.17:8080", "STATUS": "HEALTHY", "OUTLIER CHECK": "FAILED",
                     "CLUSTER": f"outbound|8080||{FQDN}"}]


def test_proxy_status_is_the_real_istioctls(mesh: Mesh) -> None:
    assert mesh.proxy_status(verbose=True).startswith("NAME")
    run: Runner = mesh.backend.run  # type: ignore[attr-defined]
    assert run.calls[-1] == ["istioctl", "--context", "kind-meshkit", "-n", "tutorial", "proxy-status", "-v", "1"]
    mesh.proxy_status(POD)
    assert run.calls[-1][-1] == POD


def test_a_pod_without_sidecar_or_a_failing_exec_is_a_located_error(mesh: Mesh) -> None:
    with pytest.raises(MeshkitError, match="has no istio-proxy container"):
        mesh.envoy_admin("curl-1", "/clusters")
    with pytest.raises(MeshkitError, match=f"could not read /stats from pod {POD}: .*container not found"):
        mesh.envoy_admin(POD, "/stats")
