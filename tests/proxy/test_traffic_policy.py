"""DestinationRule traffic policy → cluster thresholds and outlier spec (Istio's translation)."""

from __future__ import annotations

from typing import Any

from meshkit.backends.local.proxy.cluster import UNLIMITED, OutlierSpec, PoolLimits
from meshkit.backends.local.proxy.config import ProxyIdentity, compile_view
from meshkit.backends.local.proxy.traffic_policy import outlier_spec, pool_limits


def test_connection_pool_defaults_are_unlimited_and_zero_means_unset() -> None:
    assert pool_limits({}) == PoolLimits()
    zero = {"connectionPool": {"tcp": {"maxConnections": 0}, "http": {"http2MaxRequests": 0}}}
    assert pool_limits(zero) == PoolLimits()
    assert PoolLimits().max_connections == UNLIMITED == 2**32 - 1


def test_connection_pool_fields_map_to_envoy_thresholds() -> None:
    policy = {"connectionPool": {
        "tcp": {"maxConnections": 1, "connectTimeout": "250ms"},
        "http": {"http1MaxPendingRequests": 2, "http2MaxRequests": 3, "maxRequestsPerConnection": 1,
                 "maxRetries": 4},
    }}
    assert pool_limits(policy) == PoolLimits(max_connections=1, max_pending_requests=2, max_requests=3,
                                       max_requests_per_connection=1, max_retries=4, connect_timeout=0.25)


def test_outlier_detection_defaults() -> None:
    assert outlier_spec({}, "current") is None
    od = outlier_spec({"outlierDetection": {}}, "current")
    assert od == OutlierSpec(consecutive_5xx=5, consecutive_gateway=0, interval=10.0, base_ejection=30.0,
                             max_ejection_percent=10.0, min_health_percent=0.0, at_least_one=False)
    zero = outlier_spec({"outlierDetection": {"maxEjectionPercent": 0}}, "current")
    assert zero is not None and zero.max_ejection_percent == 10.0  # Istio cannot tell 0 from unset


def test_outlier_detection_fields() -> None:
    od = outlier_spec({"outlierDetection": {"consecutive5xxErrors": 0, "consecutiveGatewayErrors": 2,
                                        "interval": "1s", "baseEjectionTime": "3m", "maxEjectionPercent": 100,
                                        "minHealthPercent": 50}}, "current")
    assert od == OutlierSpec(consecutive_5xx=0, consecutive_gateway=2, interval=1.0, base_ejection=180.0,
                             max_ejection_percent=100.0, min_health_percent=50.0)


def test_deprecated_consecutive_errors_per_profile() -> None:
    legacy = {"outlierDetection": {"consecutiveErrors": 1, "baseEjectionTime": "15s"}}
    today = outlier_spec(legacy, "current")
    assert today is not None and (today.consecutive_5xx, today.consecutive_gateway) == (5, 0)  # ignored
    then = outlier_spec(legacy, "tutorial")
    assert then is not None and (then.consecutive_5xx, then.consecutive_gateway) == (0, 1)  # gateway errors
    assert then.at_least_one and not today.at_least_one
    both = outlier_spec({"outlierDetection": {"consecutiveErrors": 1, "consecutive5xxErrors": 3}}, "tutorial")
    assert both is not None and (both.consecutive_5xx, both.consecutive_gateway) == (3, 1)


def snapshot(dr_spec: dict[str, Any], profile: str = "current") -> dict[str, Any]:
    eps = [{"pod": f"recommendation-{v}-x", "address": "127.0.0.1", "port": 10 + i, "app": "recommendation",
            "version": v, "labels": {"app": "recommendation", "version": v}} for i, v in enumerate(("v1", "v2"))]
    dr = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
          "metadata": {"name": "recommendation", "namespace": "tutorial"}, "spec": dr_spec}
    return {"version": 3, "profile": profile, "services": [{"name": "recommendation", "port": 8080}],
            "endpoints": eps, "resources": [dr]}


def test_subset_policy_overrides_the_top_level_policy_in_its_cluster_only() -> None:
    top = {"connectionPool": {"tcp": {"maxConnections": 5}}, "outlierDetection": {"consecutive5xxErrors": 2}}
    spec = {"host": "recommendation", "trafficPolicy": top, "subsets": [
        {"name": "version-v1", "labels": {"version": "v1"}},
        {"name": "version-v2", "labels": {"version": "v2"},
         "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 1}}}},
    ]}
    me = ProxyIdentity("preference-v1-x", "preference", "v1", {"app": "preference"})
    view = compile_view(snapshot(spec), me)
    fq = "recommendation.tutorial.svc.cluster.local"
    v1, v2 = view.clusters[f"outbound|8080|version-v1|{fq}"], view.clusters[f"outbound|8080|version-v2|{fq}"]
    assert view.clusters[f"outbound|8080||{fq}"].limits.max_connections == 5
    assert v1.limits.max_connections == 5 and v2.limits.max_connections == 1
    assert v1.outlier == v2.outlier == OutlierSpec(consecutive_5xx=2)
    assert [e.pod for e in v2.endpoints] == ["recommendation-v2-x"]
    tutorial = compile_view(snapshot(spec, "tutorial"), me)
    assert tutorial.clusters[f"outbound|8080|version-v2|{fq}"].outlier == OutlierSpec(consecutive_5xx=2,
                                                                                       at_least_one=True)
