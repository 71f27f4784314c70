"""The kube backend: an existing cluster's namespace, checked before anything changes, nothing outside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshkit.backends.kind.backend import KubeBackend
from meshkit.backends.kind.client import KubeClient
from meshkit.errors import Unsupported
from tests.kind.fakeapi import FakeApiServer
from tests.kind.test_requests import add_pods, pod

IMAGE = "registry.example/meshkit-sample:0123456789ab"


def istiod(api: FakeApiServer, version: str) -> None:
    api.put(
        "/apis/apps/v1/namespaces/istio-system/deployments/istiod",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "istiod", "namespace": "istio-system", "labels": {"app": "istiod"}},
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "discovery", "image": f"docker.io/istio/pilot:{version}"}]}
                }
            },
        },
    )


@pytest.fixture
def kubectl_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text("#!/bin/sh\necho 'Client Version: v1.33.2'\n")
    (bin_dir / "kubectl").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))


def test_up_deploys_into_its_namespace_only(
    api: FakeApiServer, kc: KubeClient, kubectl_on_path: None, tmp_path: Path
) -> None:
    istiod(api, "1.30.1")
    add_pods(
        api,
        *(
            pod(f"{name}-6b8c7f5d9c-abcde", app, ver)
            for name, app, ver in [
                ("customer", "customer", "v1"),
                ("preference-v1", "preference", "v1"),
                ("recommendation-v1", "recommendation", "v1"),
                ("recommendation-v2", "recommendation", "v2"),
            ]
        ),
    )
    progress: list[tuple[int, int, str]] = []
    backend = KubeBackend(
        str(tmp_path),
        context="workshop",
        namespace="tutorial",
        image=IMAGE,
        client=kc,
        progress=lambda i, n, what: progress.append((i, n, what)),
    )
    backend.up()
    writes = [r for r in api.requests if r.method in ("PATCH", "POST", "PUT", "DELETE")]
    assert writes and all("/namespaces/tutorial/" in r.path for r in writes)
    vs = next(r.body for r in writes if r.path.endswith("/virtualservices/customer-gateway"))
    assert vs["spec"]["http"][0]["match"] == [{"uri": {"prefix": "/tutorial/customer"}}]
    images = {
        c["image"]
        for r in writes
        if r.path.endswith(
            tuple(f"/deployments/{d}" for d in ("customer", "preference-v1", "recommendation-v1", "recommendation-v2"))
        )
        for c in r.body["spec"]["template"]["spec"]["containers"]
    }
    assert images == {IMAGE}
    assert [p[:2] for p in progress] == [(1, 3), (2, 3), (3, 3)]
    assert backend.is_running()


def test_another_istio_minor_is_a_warning_not_a_refusal(api: FakeApiServer, kc: KubeClient) -> None:
    istiod(api, "1.28.2")
    with pytest.warns(UserWarning, match="runs Istio 1.28.2; the labs are checked against 1.30.3"):
        KubeBackend(context="workshop", namespace="tutorial", client=kc).verify()


def test_gateway_url_from_the_load_balancer_or_a_clear_message(api: FakeApiServer, kc: KubeClient) -> None:
    backend = KubeBackend(context="workshop", namespace="alice", client=kc)
    with pytest.raises(Unsupported, match="port-forward svc/istio-ingressgateway 8080:80"):
        backend.gateway_url()
    api.put(
        "/api/v1/namespaces/istio-system/services/istio-ingressgateway",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "istio-ingressgateway"},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}},
        },
    )
    assert backend.gateway_url() == "http://203.0.113.7/alice"
    given = KubeBackend(context="workshop", namespace="alice", client=kc, gateway_url="http://127.0.0.1:8080/")
    assert given.gateway_url() == "http://127.0.0.1:8080/alice"


def test_tutorial_profile_needs_a_cluster_you_own(kc: KubeClient) -> None:
    with pytest.raises(Unsupported, match="profile 'tutorial'"):
        KubeBackend(context="workshop", namespace="tutorial", client=kc).up(profile="tutorial")
