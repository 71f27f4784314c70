"""Kubernetes failures become meshkit errors with a one-paragraph fix, over real HTTP where possible."""

from __future__ import annotations

import socket

import pytest
from kubernetes import client as k8s

from meshkit.backends.kind.apierrors import Where, translate
from meshkit.backends.kind.backend import KindBackend
from meshkit.backends.kind.client import KubeClient
from meshkit.errors import BackendUnavailable, InvalidConfig, MeshkitError, NotFound
from tests.kind.fakeapi import FakeApiServer, status_body
from tests.kind.test_requests import vs

WHERE = Where("kind-meshkit", "tutorial")


def test_rbac_forbidden_names_the_verb_and_the_rolebinding_fix(api: FakeApiServer, kc: KubeClient) -> None:
    message = (
        'virtualservices.networking.istio.io "recommendation" is forbidden: User "alice" cannot patch '
        'resource "virtualservices" in API group "networking.istio.io" in the namespace "tutorial"'
    )
    api.fail("PATCH", "virtualservices", 403, status_body(403, "Forbidden", message))
    with pytest.raises(MeshkitError) as err:
        kc.apply(vs())
    text = str(err.value)
    assert text.startswith("forbidden: cannot apply virtualservice/recommendation in namespace tutorial (")
    assert 'User "alice" cannot patch' in text
    assert "kubectl create rolebinding meshkit-edit --clusterrole=edit --user=<you> -n tutorial" in text
    assert "auth can-i patch virtualservices.networking.istio.io -n tutorial" in text
    assert "\n" not in text


def test_webhook_rejection_becomes_invalid_config(api: FakeApiServer, kc: KubeClient) -> None:
    message = (
        'admission webhook "validation.istio.io" denied the request: configuration is invalid: destination.host: empty'
    )
    api.fail("PATCH", "virtualservices", 400, status_body(400, "BadRequest", message))
    with pytest.raises(InvalidConfig) as err:
        kc.apply(vs())
    assert err.value.problems == [f"apply virtualservice/recommendation: {message}"]


def test_webhook_not_answering_says_istiod_is_starting(api: FakeApiServer, kc: KubeClient) -> None:
    message = (
        'Internal error occurred: failed calling webhook "validation.istio.io": failed to call webhook: '
        'Post "https://istiod.istio-system.svc:443/validate?timeout=10s": dial tcp 10.96.3.4:443: '
        "connect: connection refused"
    )
    api.fail("PATCH", "virtualservices", 500, status_body(500, "InternalError", message))
    with pytest.raises(BackendUnavailable, match="validation webhook is not answering yet"):
        kc.apply(vs())


def test_conflict_and_not_found(api: FakeApiServer, kc: KubeClient) -> None:
    api.fail("DELETE", "virtualservices", 409, status_body(409, "Conflict", "the object has been modified"))
    with pytest.raises(MeshkitError, match="conflict while trying to delete virtualservice/x"):
        kc.delete_object("networking.istio.io/v1", "VirtualService", "x")
    with pytest.raises(NotFound, match=r"cannot delete virtualservice/x: not found in namespace tutorial"):
        kc.delete_object("networking.istio.io/v1", "VirtualService", "x")


def test_missing_namespace_says_how_to_create_and_label_it(api: FakeApiServer, kc: KubeClient) -> None:
    api.fail("PATCH", "virtualservices", 404, status_body(404, "NotFound", 'namespaces "tutorial" not found'))
    with pytest.raises(NotFound) as err:
        kc.apply(vs(), dry_run=True)
    assert "create namespace tutorial" in str(err.value) and "istio-injection=enabled" in str(err.value)


def test_cluster_without_istio_crds() -> None:
    with FakeApiServer(groups={}) as api:
        kc = KubeClient(k8s.ApiClient(k8s.Configuration(host=api.url)), Where("ctx", "tutorial", api.url))
        with pytest.raises(NotFound, match=r"does not serve that kind\. Is Istio installed\?"):
            kc.apply(vs())
        with pytest.raises(BackendUnavailable, match="context ctx has no Istio"):
            from meshkit.backends.kind.backend import KubeBackend

            KubeBackend(context="ctx", namespace="tutorial", client=kc).verify()
        kc.close()


def test_connection_refused_is_backend_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # nothing listens on ``port`` any more: a real connection refused through the real client
    cfg = k8s.Configuration(host=f"http://127.0.0.1:{port}")
    cfg.retries = 0
    kc = KubeClient(k8s.ApiClient(cfg), Where("kind-meshkit", "tutorial", cfg.host))
    with pytest.raises(BackendUnavailable) as err:
        KindBackend(client=kc).pods()
    text = str(err.value)
    assert text.startswith(f"cannot reach the Kubernetes API server of context kind-meshkit at {cfg.host}")
    assert "meshkit up --backend kind" in text


def test_unknown_context_in_kubeconfig(tmp_path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    with pytest.raises(BackendUnavailable, match="no usable kubeconfig context 'kind-meshkit'"):
        KubeClient.from_kubeconfig("kind-meshkit", "tutorial", str(config))


@pytest.mark.parametrize(
    ("status", "kind", "needle"),
    [
        (401, BackendUnavailable, "rejected your credentials"),
        (503, BackendUnavailable, "may be overloaded or restarting"),
        (422, InvalidConfig, "spec.http: Required value"),
        (418, MeshkitError, "HTTP 418"),
    ],
)
def test_translate_table(status: int, kind: type, needle: str) -> None:
    exc = k8s.ApiException(status=status, reason="X", body='{"kind":"Status","message":"spec.http: Required value"}')
    err = translate(exc, doing="apply virtualservice/x", where=WHERE)
    assert type(err) is kind and needle in str(err)
