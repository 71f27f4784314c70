"""config_dump from a compiled view: Istio's names and fields, and istioctl's tables read from it.

No processes: a control-plane snapshot is compiled exactly as a sidecar compiles it, then rendered.
The live mesh side (real traffic, outlier flags, circuit-breaker counters) is in
tests/resiliency/test_proxy_config.py.
"""

from __future__ import annotations

from typing import Any

from meshkit import proxyconfig as pc
from meshkit.backends.local.proxy.config import ProxyIdentity, compile_view
from meshkit.backends.local.proxy.configdump import DumpContext, config_dump, select_resource

NS = "tutorial"
FQDN = "recommendation.tutorial.svc.cluster.local"
V1 = f"outbound|8080|version-v1|{FQDN}"
V2 = f"outbound|8080|version-v2|{FQDN}"
ME = ProxyIdentity("preference-v1-abc", "preference", "v1", {"app": "preference", "version": "v1"}, NS, "preference")


def res(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": kind, "metadata": {"name": name, "namespace": NS},
            "spec": spec}


def ep(pod: str, version: str, port: int) -> dict[str, Any]:
    return {"pod": pod, "address": "127.0.0.1", "port": port, "tls_port": port + 1, "app": "recommendation",
            "version": version, "workload": f"recommendation-{version}",
            "labels": {"app": "recommendation", "version": version},
            "principal": "spiffe://cluster.local/ns/tutorial/sa/recommendation"}


def dump_of(*resources: dict[str, Any], profile: str = "current", eds: bool = False) -> dict[str, Any]:
    snapshot = {
        "version": 7, "profile": profile, "outbound_policy": "REGISTRY_ONLY",
        "services": [{"name": s, "namespace": NS, "port": 8080} for s in ("customer", "preference", "recommendation")],
        "endpoints": [ep("recommendation-v1-x", "v1", 41000), ep("recommendation-v2-y", "v2", 42000)],
        "resources": list(resources),
    }
    return config_dump(compile_view(snapshot, ME), DumpContext(), include_eds=eds)


DR = res("DestinationRule", "recommendation", {"host": "recommendation", "subsets": [
    {"name": "version-v1", "labels": {"version": "v1"}},
    {"name": "version-v2", "labels": {"version": "v2"}, "trafficPolicy": {
        "connectionPool": {"tcp": {"maxConnections": 1},
                           "http": {"http1MaxPendingRequests": 1, "maxRequestsPerConnection": 1}},
        "outlierDetection": {"consecutive5xxErrors": 1, "interval": "5s", "baseEjectionTime": "15s",
                             "maxEjectionPercent": 100}}}]})


def vs(*http: dict[str, Any]) -> dict[str, Any]:
    return res("VirtualService", "recommendation", {"hosts": ["recommendation"], "http": list(http)})


def dest(subset: str, weight: int | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"destination": {"host": "recommendation", "subset": subset}}
    if weight is not None:
        d["weight"] = weight
    return d


def cluster(dump: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pc.clusters(dump) if c["name"] == name)


def recommendation_routes(dump: dict[str, Any]) -> list[dict[str, Any]]:
    rc = next(r for r in pc.route_configs(dump) if r["name"] == "8080")
    vh = next(v for v in rc["virtual_hosts"] if v["name"] == f"{FQDN}:8080")
    return list(vh["routes"])


def test_configs_come_in_envoys_order_with_endpoints_only_on_request() -> None:
    kinds = [c["@type"].rsplit(".", 1)[1] for c in dump_of(eds=True)["configs"]]
    assert kinds == ["BootstrapConfigDump", "ClustersConfigDump", "EndpointsConfigDump", "ListenersConfigDump",
                     "ScopedRoutesConfigDump", "RoutesConfigDump", "SecretsConfigDump"]
    assert "EndpointsConfigDump" not in str(dump_of()["configs"])
    boot = dump_of()["configs"][0]["bootstrap"]
    assert boot["node"]["id"] == "sidecar~127.0.0.1~preference-v1-abc.tutorial~tutorial.svc.cluster.local"


def test_istio_cluster_names_and_static_clusters() -> None:
    names = {c["name"] for c in pc.clusters(dump_of(DR))}
    assert {V1, V2, f"outbound|8080||{FQDN}", "inbound|8080||", "BlackHoleCluster", "PassthroughCluster",
            "InboundPassthroughCluster", "agent", "prometheus_stats", "sds-grpc", "xds-grpc"} <= names
    rows = pc.cluster_rows(dump_of(DR), fqdn="recommendation")
    assert [(r["SUBSET"], r["DIRECTION"], r["TYPE"], r["DESTINATION RULE"]) for r in rows] == [
        (subset, "outbound", "EDS", "recommendation.tutorial") for subset in ("-", "version-v1", "version-v2")]


def test_circuit_breaker_thresholds_and_outlier_detection_as_istio_writes_them() -> None:
    dump = dump_of(DR)
    v2, v1 = cluster(dump, V2), cluster(dump, V1)
    assert v2["circuit_breakers"]["thresholds"] == [{"max_connections": 1, "max_pending_requests": 1,
                                                     "max_requests": 4294967295, "max_retries": 4294967295,
                                                     "track_remaining": True}]
    opts = v2["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert opts["common_http_protocol_options"]["max_requests_per_connection"] == 1
    assert v2["outlier_detection"] == {"consecutive_5xx": 1, "interval": "5s", "base_ejection_time": "15s",
                                       "max_ejection_percent": 100, "enforcing_consecutive_5xx": 100,
                                       "enforcing_success_rate": 0}
    assert "outlier_detection" not in v1
    assert v1["circuit_breakers"]["thresholds"][0]["max_connections"] == 4294967295
    assert v2["lb_policy"] == "LEAST_REQUEST" and v2["eds_cluster_config"]["service_name"] == V2
    assert v2["metadata"]["filter_metadata"]["istio"]["config"] == \
        "/apis/networking.istio.io/v1/namespaces/tutorial/destination-rule/recommendation"
    assert v2["metadata"]["filter_metadata"]["istio"]["subset"] == "version-v2"
    # auto mTLS: the istio tlsMode match carries the SDS secrets and the SPIFFE SAN
    tls = v2["transport_socket_matches"][0]
    assert tls["match"] == {"tlsMode": "istio"}
    ctx = tls["transport_socket"]["typed_config"]["common_tls_context"]
    assert ctx["tls_certificate_sds_secret_configs"][0]["name"] == "default"
    assert ctx["combined_validation_context"]["default_validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "URI", "matcher": {"exact": "spiffe://cluster.local/ns/tutorial/sa/recommendation"}}]


def test_tutorial_profile_balances_round_robin_which_proto_json_leaves_out() -> None:
    assert "lb_policy" not in cluster(dump_of(DR, profile="tutorial"), V1)


def test_weighted_clusters_90_10_with_the_default_retry_policy() -> None:
    route = recommendation_routes(dump_of(DR, vs({"route": [dest("version-v1", 90), dest("version-v2", 10)]})))[0]
    assert route["match"] == {"prefix": "/", "case_sensitive": True}
    assert route["route"]["weighted_clusters"] == {"clusters": [{"name": V1, "weight": 90}, {"name": V2, "weight": 10}]}
    assert route["route"]["timeout"] == "0s"
    assert route["route"]["retry_policy"]["retry_on"] == \
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    assert route["route"]["retry_policy"]["num_retries"] == 2
    assert route["route"]["retry_policy"]["host_selection_retry_max_attempts"] == "5"
    assert "retriable_status_codes" not in route["route"]["retry_policy"]
    assert route["metadata"]["filter_metadata"]["istio"]["config"] == \
        "/apis/networking.istio.io/v1/namespaces/tutorial/virtual-service/recommendation"
    assert route["decorator"] == {"operation": f"{FQDN}:8080/*"}
    # the book era retried the app's 503 by default
    old = recommendation_routes(dump_of(DR, vs({"route": [dest("version-v1")]}), profile="tutorial"))[0]
    assert old["route"]["retry_policy"]["retriable_status_codes"] == [503]
    assert old["route"]["cluster"] == V1


def test_zero_weight_destinations_are_left_out() -> None:
    route = recommendation_routes(dump_of(DR, vs({"route": [dest("version-v1", 100), dest("version-v2", 0)]})))[0]
    assert route["route"] == {**route["route"], "cluster": V1} and "weighted_clusters" not in route["route"]


def test_header_match_routes_and_the_table() -> None:
    safari = {"match": [{"headers": {"user-agent": {"regex": ".*Safari.*"}}}], "route": [dest("version-v2")]}
    dump = dump_of(DR, vs(safari, {"route": [dest("version-v1")]}))
    first, second = recommendation_routes(dump)
    regex = {"safe_regex": {"regex": ".*Safari.*"}}
    assert first["match"]["headers"] == [{"name": "user-agent", "string_match": regex}]
    assert first["route"]["cluster"] == V2 and second["route"]["cluster"] == V1
    rows = [r for r in pc.route_rows(dump, "8080") if r["VHOST NAME"] == f"{FQDN}:8080"]
    assert [(r["DOMAINS"], r["MATCH"], r["VIRTUAL SERVICE"]) for r in rows] == [
        ("recommendation, recommendation.tutorial", "/*", "recommendation.tutorial")] * 2


def test_timeout_retries_fault_and_mirror_fields() -> None:
    rule = {"route": [dest("version-v1")], "timeout": "1s",
            "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx,409"},
            "fault": {"delay": {"fixedDelay": "7s", "percentage": {"value": 50}},
                      "abort": {"httpStatus": 503, "percentage": {"value": 50}}},
            "mirror": {"host": "recommendation", "subset": "version-v2"}, "mirrorPercentage": {"value": 25}}
    route = recommendation_routes(dump_of(DR, vs(rule)))[0]
    action = route["route"]
    assert action["timeout"] == "1s" and action["max_grpc_timeout"] == "1s"
    assert action["retry_policy"]["retry_on"] == "5xx,retriable-status-codes"
    assert action["retry_policy"]["num_retries"] == 3 and action["retry_policy"]["per_try_timeout"] == "2s"
    assert action["retry_policy"]["retriable_status_codes"] == [409]
    assert action["request_mirror_policies"] == [{"cluster": V2, "runtime_fraction": {
        "default_value": {"numerator": 250000, "denominator": "MILLION"}}, "trace_sampled": False}]
    fault = route["typed_per_filter_config"]["envoy.filters.http.fault"]
    assert fault["delay"] == {"fixed_delay": "7s", "percentage": {"numerator": 500000, "denominator": "MILLION"}}
    assert fault["abort"] == {"http_status": 503, "percentage": {"numerator": 500000, "denominator": "MILLION"}}
    # attempts 0 turns retries off: no retry_policy at all
    off = recommendation_routes(dump_of(DR, vs({"route": [dest("version-v1")], "retries": {"attempts": 0}})))[0]
    assert "retry_policy" not in off["route"]


def test_listeners_capture_outbound_and_inbound_and_the_table() -> None:
    dump = dump_of()
    names = [lst["name"] for lst in pc.listeners(dump)]
    assert {"virtualOutbound", "virtualInbound", "0.0.0.0_8080", "0.0.0.0_15021", "0.0.0.0_15090"} <= set(names)
    rows = pc.listener_rows(dump)
    assert {"ADDRESSES": "0.0.0.0", "PORT": "8080", "MATCH": "Trans: raw_buffer; App: http/1.1,h2c",
            "DESTINATION": "Route: 8080"} in rows
    assert {"ADDRESSES": "0.0.0.0", "PORT": "15006", "MATCH": "Trans: raw_buffer; Addr: *:8080",
            "DESTINATION": "Cluster: inbound|8080||"} in rows  # PERMISSIVE: plaintext is accepted too
    # STRICT mTLS leaves only the TLS filter chain on 15006
    strict = config_dump(compile_view({"version": 1, "resources": []}, ME), DumpContext(inbound_mode="STRICT"))
    chains = [r["MATCH"] for r in pc.listener_rows(strict, port=15006)]
    assert not any("raw_buffer" in m for m in chains) and any(m.startswith("Trans: tls") for m in chains)


def test_eds_endpoints_and_resource_selection() -> None:
    dump = dump_of(DR, eds=True)
    eds = next(c for c in dump["configs"] if c["@type"].endswith("EndpointsConfigDump"))
    v2 = next(e["endpoint_config"] for e in eds["dynamic_endpoint_configs"]
              if e["endpoint_config"]["cluster_name"] == V2)
    lb = v2["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"]["port_value"] for e in lb] == [42000]
    assert lb[0]["metadata"]["filter_metadata"]["envoy.transport_socket_match"] == {"tlsMode": "istio"}
    only = select_resource(dump, "dynamic_active_clusters")
    assert only is not None and all(c["@type"].endswith("ClustersConfigDump.DynamicCluster") for c in only["configs"])
    assert select_resource(dump, "nonsense") is None


def test_istioctl_json_is_camel_case_with_map_keys_and_structs_kept() -> None:
    route = recommendation_routes(dump_of(DR, vs({"route": [dest("version-v1")], "fault": {
        "abort": {"httpStatus": 503, "percentage": {"value": 10}}}})))[0]
    out = pc.camel(route)
    assert "typedPerFilterConfig" in out and "envoy.filters.http.fault" in out["typedPerFilterConfig"]
    assert out["typedPerFilterConfig"]["envoy.filters.http.fault"]["abort"]["httpStatus"] == 503
    assert out["metadata"]["filterMetadata"]["istio"]["config"].endswith("/virtual-service/recommendation")
    assert out["route"]["maxGrpcTimeout"] == "0s"


def test_domains_cell_as_istioctl_shortens_it() -> None:
    assert pc.describe_domains([FQDN, "recommendation", "recommendation.tutorial.svc", "recommendation.tutorial",
                                "10.96.0.7"]) == "recommendation, recommendation.tutorial + 1 more..."
    assert pc.describe_domains(["*"]) == "*"


def test_proxy_status_diff_names_the_side_that_differs() -> None:
    old, new = dump_of(DR), dump_of(DR, vs({"route": [dest("version-v2")]}))
    assert pc.diff_configs(old, old).splitlines()[:2] == ["Clusters Match", "Listeners Match"]
    diff = pc.diff_configs(new, old)
    assert "--- Istiod Routes" in diff and "+++ Envoy Routes" in diff and V2 in diff


def test_describe_pod_matching_subsets_policies_weights_and_warnings() -> None:
    pod = {"name": "recommendation-v2-y", "namespace": NS, "labels": {"app": "recommendation", "version": "v2"}}
    text = pc.describe_pod(pod, [DR, vs({"route": [dest("version-v1", 90), dest("version-v2", 10)]})], None)
    assert 'DestinationRule: recommendation for "recommendation"' in text
    assert "   Matching subsets: version-v2\n      (Non-matching subsets version-v1)" in text
    assert "   No Traffic Policy" in text  # istioctl shows the top-level policy only, not the subset's
    assert 'VirtualService: recommendation\n   Route to host "recommendation" subset "version-v2" with weight 10%' \
        in text
    with_policy = res("DestinationRule", "recommendation", {**DR["spec"], "trafficPolicy": {
        "connectionPool": {"tcp": {"maxConnections": 1}}, "outlierDetection": {}, "tls": {"mode": "ISTIO_MUTUAL"}}})
    text = pc.describe_pod(pod, [with_policy], None)
    assert "   Traffic Policy TLS Mode: ISTIO_MUTUAL\n   Policies: connection pool/outlier detection" in text
    only_v1 = pc.describe_pod(pod, [DR, vs({"route": [dest("version-v1")]})], None)
    assert ("   WARNING: No destinations match pod subsets (checked 1 HTTP routes)\n"
            "      Route to non-matching subset version-v1 for (everything)") in only_v1
    safari = {"match": [{"headers": {"user-agent": {"regex": ".*Safari.*"}}}], "route": [dest("version-v2")]}
    header = pc.describe_pod(pod, [DR, vs(safari, {"route": [dest("version-v1")]})], None)  # istioctl: 2 spaces
    assert '   Match:  when headers are user-agent=regex:".*Safari.*"' in header
    assert "   1 additional destination(s) that will not reach this pod" in header
    plain = pc.describe_pod(pod, [DR, vs({"route": [{"destination": {"host": "recommendation"}}]})], None)
    assert "VirtualService: recommendation\n   1 HTTP route(s)" in plain
    no_dr = pc.describe_pod(pod, [vs({"route": [dest("version-v2")]})], None)
    assert "      Warning: Route to subset version-v2 but NO DESTINATION RULE defining subsets!" in no_dr
    bare = pc.describe_pod({**pod, "sidecar": False}, [], None)
    assert "is not part of mesh; no Istio sidecar" in bare


def test_metadata_points_at_the_source_resource() -> None:
    from meshkit.backends.local.proxy.configdump import config_path

    assert config_path("DestinationRule tutorial/recommendation") == \
        "/apis/networking.istio.io/v1/namespaces/tutorial/destination-rule/recommendation"
    # a Gateway API route: the VirtualService Istio generated from it, as istiod's metadata says
    assert config_path("HTTPRoute tutorial/reviews (generated reviews-0-istio-autogenerated-k8s-gateway)") == \
        "/apis/networking.istio.io/v1/namespaces/tutorial/virtual-service/reviews-0-istio-autogenerated-k8s-gateway"
