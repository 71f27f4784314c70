"""The HTTP requests meshkit makes the real kubernetes client send, recorded by a fake API server."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from meshkit.backends.kind.backend import KindBackend, KubeBackend
from meshkit.backends.kind.client import KubeClient, pod_from_object
from meshkit.backends.kind.telemetry import ClusterTelemetry
from meshkit.errors import InvalidConfig, NotFound
from tests.kind.fakeapi import FakeApiServer, status_body

VS_PATH = "/apis/networking.istio.io/v1/namespaces/tutorial/virtualservices"


def vs(name: str = "recommendation", subset: str = "version-v1", ns: str | None = "tutorial") -> dict[str, Any]:
    meta = {"name": name} | ({"namespace": ns} if ns else {})
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": meta,
        "spec": {"hosts": [name], "http": [{"route": [{"destination": {"host": name, "subset": subset}}]}]},
    }


def pod(
    name: str,
    app: str,
    version: str,
    ready: tuple[bool, ...] = (True, True),
    ip: str = "10.244.0.9",
    ns: str = "tutorial",
    sidecar: bool = True,
) -> dict[str, Any]:
    names = [app] + (["istio-proxy"] if sidecar else [])
    rs_hash = "6b8c7f5d9c"
    deployment = app if (app, version) == ("customer", "v1") else f"{app}-{version}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"app": app, "version": version, "pod-template-hash": rs_hash},
            "ownerReferences": [{"kind": "ReplicaSet", "name": f"{deployment}-{rs_hash}"}],
        },
        "spec": {"serviceAccountName": app, "containers": [{"name": n} for n in names]},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "containerStatuses": [
                {"name": n, "ready": r, "restartCount": 1} for n, r in zip(names, ready, strict=False)
            ],
        },
    }


def add_pods(api: FakeApiServer, *pods: dict[str, Any]) -> None:
    for p in pods:
        api.put(f"/api/v1/namespaces/{p['metadata']['namespace']}/pods/{p['metadata']['name']}", p)


def test_apply_is_a_server_side_apply_with_field_manager_meshkit_and_force(api: FakeApiServer, kc: KubeClient) -> None:
    assert kc.apply(vs()) == "created"
    (patch,) = api.of("PATCH")
    assert patch.path == f"{VS_PATH}/recommendation"
    assert patch.query == {"fieldManager": ["meshkit"], "force": ["true"]}
    assert patch.headers["Content-Type"] == "application/apply-patch+yaml"
    # the body is JSON, which is valid YAML for the apply-patch+yaml content type
    assert yaml.safe_load(json.dumps(patch.body)) == vs()
    assert api.of("GET", f"{VS_PATH}/recommendation"), "the object is read first to tell created from configured"
    assert kc.apply(vs()) == "unchanged"
    assert kc.apply(vs(subset="version-v2")) == "configured"


def test_dry_run_apply_sends_dryrun_all_and_stores_nothing(api: FakeApiServer, kc: KubeClient) -> None:
    kc.apply(vs(), dry_run=True)
    (patch,) = api.of("PATCH")
    assert patch.query == {"dryRun": ["All"], "fieldManager": ["meshkit"], "force": ["true"]}
    assert api.objects == {}


def test_apply_fills_the_namespace_when_the_document_has_none(api: FakeApiServer, kc: KubeClient) -> None:
    kc.apply(vs(ns=None))
    assert api.of("PATCH")[0].body["metadata"]["namespace"] == "tutorial"


def test_kinds_resolve_through_discovery_by_any_name(kc: KubeClient) -> None:
    for text in (
        "VirtualService",
        "virtualservice",
        "virtualservices",
        "vs",
        "VS",
        "virtualservices.networking.istio.io",
    ):
        assert kc.resolve_kind(text) == ("networking.istio.io/v1", "VirtualService")
    assert kc.resolve_kind("ap") == ("security.istio.io/v1", "AuthorizationPolicy")
    with pytest.raises(NotFound, match="unknown Istio kind 'RouteRule'"):
        kc.resolve_kind("RouteRule")


def test_backend_apply_get_delete_over_http(api: FakeApiServer, kc: KubeClient) -> None:
    backend = KindBackend(client=kc)
    dr = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "recommendation", "namespace": "tutorial"},
        "spec": {"host": "recommendation", "subsets": [{"name": "version-v1", "labels": {"version": "v1"}}]},
    }
    results = backend.apply([dr, vs()])
    assert [str(r) for r in results] == [
        "destinationrule.networking.istio.io/recommendation created",
        "virtualservice.networking.istio.io/recommendation created",
    ]
    # every document is dry-run first, then applied
    assert [bool(p.query.get("dryRun")) for p in api.of("PATCH")] == [True, True, False, False]
    got = backend.get("vs")
    assert got == [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "recommendation", "namespace": "tutorial"},
            "spec": vs()["spec"],
        }
    ]
    assert {d["kind"] for d in backend.get()} == {"VirtualService", "DestinationRule"}
    result = backend.delete("virtualservices", "recommendation")
    assert str(result) == "virtualservice.networking.istio.io/recommendation deleted"
    (delete,) = api.of("DELETE")
    assert delete.path == f"{VS_PATH}/recommendation"
    with pytest.raises(NotFound, match="virtualservice 'recommendation' not found in namespace tutorial"):
        backend.delete("vs", "recommendation")


def test_backend_apply_is_all_or_nothing_when_the_webhook_rejects_one(api: FakeApiServer, kc: KubeClient) -> None:
    message = 'admission webhook "validation.istio.io" denied the request: configuration is invalid: weight -1 < 0'
    api.fail("PATCH", "virtualservices/bad", 422, status_body(422, "Invalid", message))
    with pytest.raises(InvalidConfig) as err:
        KindBackend(client=kc).apply([vs("good"), vs("bad")])
    assert err.value.problems == [f"apply virtualservice/bad: {message}"]
    assert api.objects == {}
    assert all(p.query.get("dryRun") == ["All"] for p in api.of("PATCH"))


def test_kube_backend_follows_its_namespace_and_refuses_others(api: FakeApiServer, kc: KubeClient) -> None:
    backend = KubeBackend(context="kind-meshkit", namespace="tutorial", client=kc)
    backend.apply([vs()])
    other = vs()
    other["metadata"]["namespace"] = "istio-system"
    with pytest.raises(InvalidConfig, match="namespace istio-system is outside this backend's namespace tutorial"):
        backend.apply([other])
    assert not any("istio-system" in r.path for r in api.requests)


def test_reset_keeps_the_ingress_route_like_clean_sh(api: FakeApiServer, kc: KubeClient) -> None:
    backend = KindBackend(client=kc)
    backend.apply([vs(), vs("customer-gateway")])
    removed = backend.reset()
    assert [r.name for r in removed] == ["recommendation"]
    assert [d["metadata"]["name"] for d in backend.get()] == ["customer-gateway"]


def test_pods_are_listed_with_deployment_readiness_and_sidecar(api: FakeApiServer, kc: KubeClient) -> None:
    add_pods(
        api,
        pod("recommendation-v2-6b8c7f5d9c-x2x7q", "recommendation", "v2", ready=(True, False)),
        pod("customer-6b8c7f5d9c-a1b2c", "customer", "v1"),
        pod("preference-v1-6b8c7f5d9c-zz9q8", "preference", "v1", sidecar=False),
    )
    pods = {p.name: p for p in KindBackend(client=kc).pods()}
    cust = pods["customer-6b8c7f5d9c-a1b2c"]
    assert (cust.deployment, cust.ready, cust.sidecar, cust.restarts, cust.extra["containers"]) == (
        "customer",
        True,
        True,
        2,
        "2/2",
    )
    rec = pods["recommendation-v2-6b8c7f5d9c-x2x7q"]
    assert (rec.deployment, rec.ready, rec.extra["containers"]) == ("recommendation-v2", False, "1/2")
    assert pods["preference-v1-6b8c7f5d9c-zz9q8"].sidecar is False
    (listing,) = api.of("GET", "/api/v1/namespaces/tutorial/pods")
    assert listing.path == "/api/v1/namespaces/tutorial/pods"


def test_native_sidecar_counts_as_a_sidecar() -> None:
    obj = pod("customer-6b8c7f5d9c-a1b2c", "customer", "v1", sidecar=False)
    obj["spec"]["initContainers"] = [{"name": "istio-proxy", "restartPolicy": "Always"}]
    obj["status"]["initContainerStatuses"] = [{"name": "istio-proxy", "ready": True, "restartCount": 0}]
    converted = pod_from_object(obj)
    assert converted.sidecar and converted.ready and converted.extra["containers"] == "2/2"


def test_scale_is_a_merge_patch_of_replicas(api: FakeApiServer, kc: KubeClient) -> None:
    api.put(
        "/apis/apps/v1/namespaces/tutorial/deployments/recommendation-v2",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "recommendation-v2"},
            "spec": {"replicas": 1},
        },
    )
    KindBackend(client=kc).scale("recommendation-v2", 3)
    (patch,) = api.of("PATCH")
    assert patch.path == "/apis/apps/v1/namespaces/tutorial/deployments/recommendation-v2"
    assert patch.headers["Content-Type"] == "application/merge-patch+json"
    assert patch.body == {"spec": {"replicas": 3}} and patch.query["fieldManager"] == ["meshkit"]
    with pytest.raises(NotFound, match="no deployment 'nope'"):
        KindBackend(client=kc).scale("nope", 1)


def test_deploy_applies_account_service_and_deployment(api: FakeApiServer, kc: KubeClient) -> None:
    name = KubeBackend(
        context="c", namespace="tutorial", client=kc, image="registry.example/meshkit-sample:abc"
    ).deploy("recommendation", "v3")
    assert name == "recommendation-v3"
    paths = [p.path for p in api.of("PATCH")]
    assert paths == [
        "/api/v1/namespaces/tutorial/serviceaccounts/recommendation",
        "/api/v1/namespaces/tutorial/services/recommendation",
        "/apis/apps/v1/namespaces/tutorial/deployments/recommendation-v3",
    ]
    dep = api.of("PATCH")[-1].body
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/meshkit-sample:abc"
    with pytest.raises(InvalidConfig, match="unknown service 'ratings'"):
        KindBackend(client=kc).deploy("ratings", "v1")


def test_prometheus_query_goes_through_the_service_proxy(api: FakeApiServer, kc: KubeClient) -> None:
    path = "/api/v1/namespaces/istio-system/services/prometheus:9090/proxy/api/v1/query"
    answer = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"destination_version": "v1"}, "value": [1767225600.5, "3.5"]},
                {"metric": {"destination_version": "v2"}, "value": [1767225600.5, "0.5"]},
            ],
        },
    }
    api.canned[path] = (200, "application/json", json.dumps(answer))
    promql = 'sum by (destination_version) (rate(istio_requests_total{reporter="destination"}[1m]))'
    rows = KindBackend(client=kc).prometheus_query(promql)
    assert rows == [
        {"destination_version": "v1", "value": 3.5, "time": 1767225600.5},
        {"destination_version": "v2", "value": 0.5, "time": 1767225600.5},
    ]
    (req,) = api.of("GET", "prometheus")
    assert req.path == path and req.query == {"query": [promql]}


def test_metrics_text_federates_istio_series_of_the_namespace(api: FakeApiServer, kc: KubeClient) -> None:
    path = "/api/v1/namespaces/istio-system/services/prometheus:9090/proxy/federate"
    text = 'istio_requests_total{reporter="destination",response_code="200"} 7 1767225600000\n'
    api.canned[path] = (200, "text/plain; version=0.0.4", text)
    assert KindBackend(client=kc).metrics_text() == text
    (req,) = api.of("GET", "federate")
    assert req.query == {
        "match[]": [
            '{__name__=~"istio_.*",destination_workload_namespace="tutorial"}',
            '{__name__=~"istio_.*",source_workload_namespace="tutorial"}',
        ]
    }


def test_one_pods_metrics_come_from_its_sidecar(api: FakeApiServer, kc: KubeClient) -> None:
    path = "/api/v1/namespaces/tutorial/pods/customer-x:15020/proxy/stats/prometheus"
    api.canned[path] = (
        200,
        "text/plain",
        "# TYPE istio_requests_total counter\nistio_requests_total 3\nenvoy_cluster_upstream_rq 9\n",
    )
    assert KindBackend(client=kc).metrics_text("customer-x") == (
        "# TYPE istio_requests_total counter\nistio_requests_total 3\n"
    )


def test_traces_query_jaeger_with_istios_service_naming(api: FakeApiServer, kc: KubeClient) -> None:
    path = "/api/v1/namespaces/istio-system/services/tracing:80/proxy/jaeger/api/traces"
    api.canned[path] = (
        200,
        "application/json",
        json.dumps({"data": [{"traceID": "abc", "spans": [], "processes": {}}]}),
    )
    result = KindBackend(client=kc).traces("customer", limit=5)
    assert result["data"][0]["traceID"] == "abc"
    (req,) = api.of("GET", "tracing")
    assert req.query == {"service": ["customer.tutorial"], "limit": ["5"], "lookback": ["1h"]}


def test_missing_addon_says_how_to_install_it(api: FakeApiServer, kc: KubeClient) -> None:
    with pytest.raises(NotFound, match=r"the prometheus addon does not answer .*kubectl --context kind-meshkit apply"):
        ClusterTelemetry(kc).prometheus_query("up")


def test_request_log_reads_each_sidecars_access_log(api: FakeApiServer, kc: KubeClient) -> None:
    add_pods(
        api,
        pod("recommendation-v1-6b8c7f5d9c-k2x9p", "recommendation", "v1", ip="10.244.0.15"),
        pod("preference-v1-6b8c7f5d9c-7hw2m", "preference", "v1", ip="10.244.0.12"),
    )
    line = (
        '[2026-08-30T10:15:02.123Z] "GET / HTTP/1.1" 200 - via_upstream - "-" 0 61 4 3 "-" "curl/8.5.0" '
        '"5d1e-11" "recommendation:8080" "10.244.0.15:8080" '
        "outbound|8080||recommendation.tutorial.svc.cluster.local 10.244.0.12:51234 10.96.44.7:8080 "
        "10.244.0.12:40112 - default\n"
    )
    api.canned["/api/v1/namespaces/tutorial/pods/preference-v1-6b8c7f5d9c-7hw2m/log"] = (
        200,
        "text/plain",
        line,
    )
    api.canned["/api/v1/namespaces/tutorial/pods/recommendation-v1-6b8c7f5d9c-k2x9p/log"] = (
        200,
        "text/plain",
        "",
    )
    records = KubeBackend(context="c", namespace="tutorial", client=kc).request_log()
    (rec,) = records
    assert (rec["proxy"], rec["reporter"], rec["upstream_pod"], rec["destination_version"]) == (
        "preference-v1-6b8c7f5d9c-7hw2m",
        "source",
        "recommendation-v1-6b8c7f5d9c-k2x9p",
        "v1",
    )
    logs = api.of("GET", "/log")
    assert {tuple(r.query["container"]) for r in logs} == {("istio-proxy",)}


def test_kiali_graph_through_the_service_proxy(api: FakeApiServer, kc: KubeClient) -> None:
    path = "/api/v1/namespaces/istio-system/services/kiali:20001/proxy/kiali/api/namespaces/graph"
    graph = {
        "graphType": "versionedApp",
        "elements": {"nodes": [{"data": {"id": "n1", "app": "customer"}}], "edges": []},
    }
    api.canned[path] = (200, "application/json", json.dumps(graph))
    assert KindBackend(client=kc).kiali_graph("120s") == graph
    (req,) = api.of("GET", "kiali")
    assert req.query == {"namespaces": ["tutorial"], "graphType": ["versionedApp"], "duration": ["120s"]}
