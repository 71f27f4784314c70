"""Gateway API on the kind backend: the CRDs installed at the pinned version before Istio, the same
resources applied by server-side apply, and the status Istio writes read back (fake API server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshkit.backends.kind import versions
from meshkit.backends.kind.backend import KindBackend
from meshkit.backends.kind.client import KubeClient
from meshkit.backends.kind.plan import GATEWAY_API_CRDS, PlanOptions, install_plan
from meshkit.resources.gatewayapi.schema import EXPERIMENTAL_ENV
from tests.kind.fakeapi import FakeApiServer

HOME = Path("/home/learner/.meshkit/kind-meshkit")
ROUTES = "/apis/gateway.networking.k8s.io/v1/namespaces/tutorial/httproutes"
ROUTE = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "recommendation", "namespace": "tutorial"},
    "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "recommendation", "port": 8080}],
             "rules": [{"backendRefs": [{"name": "recommendation-v1", "port": 8080, "weight": 90},
                                        {"name": "recommendation-v2", "port": 8080, "weight": 10}]}]},
}


def _describe(steps: list) -> list[str]:
    return [s.description for s in steps]


def test_plan_installs_the_pinned_gateway_api_crds_before_istio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EXPERIMENTAL_ENV, raising=False)
    steps = install_plan(PlanOptions(home=HOME, image="meshkit-sample:x"))
    names = _describe(steps)
    crds = next(i for i, n in enumerate(names) if n.startswith("install the Gateway API CRDs v1.5.1 (standard"))
    istio = next(i for i, n in enumerate(names) if "istio" in n.lower() and "install" in n.lower() and i != crds)
    assert crds < istio
    assert steps[crds].argv[-4:] == (
        "apply", "--server-side", "-f",
        "https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.5.1/standard-install.yaml")
    wait = steps[crds + 1]
    assert wait.argv[-len(GATEWAY_API_CRDS):] == tuple(f"crd/{c}" for c in GATEWAY_API_CRDS)
    assert "crd/httproutes.gateway.networking.k8s.io" in wait.argv
    monkeypatch.setenv(EXPERIMENTAL_ENV, "experimental")
    steps = install_plan(PlanOptions(home=HOME, image="meshkit-sample:x"))
    assert any(s.argv and s.argv[-1] == versions.gateway_api_manifest("experimental") for s in steps)
    assert versions.gateway_api_manifest("experimental").endswith("/v1.5.1/experimental-install.yaml")


def test_httproute_is_server_side_applied_and_its_status_read_back(api: FakeApiServer, kc: KubeClient) -> None:
    backend = KindBackend(client=kc)
    assert [str(r) for r in backend.apply([ROUTE])] == [
        "httproute.gateway.networking.k8s.io/recommendation created"]
    patches = [p for p in api.of("PATCH") if p.path == f"{ROUTES}/recommendation"]
    assert patches and patches[-1].headers["Content-Type"] == "application/apply-patch+yaml"
    assert patches[-1].query.get("fieldManager") == ["meshkit"]
    # Istio's controller writes the status; meshkit shows it as it is
    status = {"parents": [{"parentRef": ROUTE["spec"]["parentRefs"][0], "controllerName": "istio.io/gateway-controller",
                           "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                                           "message": "Route was valid"}]}]}
    api.put(f"{ROUTES}/recommendation", {**ROUTE, "status": status})
    (got,) = backend.get("HTTPRoute.gateway.networking.k8s.io")
    assert got["status"] == status and got["spec"] == ROUTE["spec"]
    assert kc.resolve_kind("gateway") == ("networking.istio.io/v1", "Gateway")  # Istio's, as istioctl users mean
    assert kc.resolve_kind("Gateway.gateway.networking.k8s.io") == ("gateway.networking.k8s.io/v1", "Gateway")
    assert kc.resolve_kind("gtw") == ("gateway.networking.k8s.io/v1", "Gateway")
    assert str(backend.delete("HTTPRoute.gateway.networking.k8s.io", "recommendation")) == (
        "httproute.gateway.networking.k8s.io/recommendation deleted")
