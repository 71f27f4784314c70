"""DestinationRule validation: subsets and traffic policy."""

from __future__ import annotations

from tests.resources.helpers import dr, errors, warnings


def test_host_required() -> None:
    from tests.resources.helpers import doc

    assert errors(doc("DestinationRule", {"subsets": []})) == [("spec.host", 'required field "host" is missing')]


def test_subset_name_rules() -> None:
    assert errors(dr(subsets=[{"labels": {"version": "v1"}}])) == [
        ("spec.subsets[0].name", "subset name cannot be empty")
    ]
    assert errors(dr(subsets=[{"name": ""}])) == [("spec.subsets[0].name", "subset name cannot be empty")]
    assert errors(dr(subsets=[{"name": "v1"}, {"name": "version-v1"}, {"name": "version-v1"}])) == [
        ("spec.subsets[2].name", "duplicate subset names: version-v1")
    ]
    assert errors(dr(subsets=[{"name": "Version_1"}])) == [
        ("spec.subsets[0].name", "subset name is invalid: Version_1")
    ]


def test_subset_labels_are_strings() -> None:
    assert errors(dr(subsets=[{"name": "v1", "labels": {"version": 1}}])) == [
        ("spec.subsets[0].labels.version", "expected string, got integer 1")
    ]


def test_traffic_policy_must_have_a_field() -> None:
    assert errors(dr(trafficPolicy={})) == [("spec.trafficPolicy", "traffic policy must have at least one field")]
    assert errors(dr(subsets=[{"name": "v1", "trafficPolicy": {}}])) == [
        ("spec.subsets[0].trafficPolicy", "traffic policy must have at least one field")
    ]


def test_load_balancer() -> None:
    for simple in ("RANDOM", "ROUND_ROBIN", "LEAST_REQUEST", "LEAST_CONN", "PASSTHROUGH", "UNSPECIFIED"):
        assert errors(dr(trafficPolicy={"loadBalancer": {"simple": simple}})) == []
    assert errors(dr(trafficPolicy={"loadBalancer": {"simple": "FASTEST"}})) == [
        (
            "spec.trafficPolicy.loadBalancer.simple",
            'unsupported value "FASTEST": supported values: "UNSPECIFIED", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", '
            '"LEAST_REQUEST", "LEAST_CONN"',
        )
    ]


def test_consistent_hash() -> None:
    ok = {"consistentHash": {"httpCookie": {"name": "user", "ttl": "10s"}, "ringHash": {"minimumRingSize": 1024}}}
    assert errors(dr(trafficPolicy={"loadBalancer": ok})) == []
    assert errors(
        dr(trafficPolicy={"loadBalancer": {"consistentHash": {"useSourceIp": True, "httpHeaderName": "x"}}})
    ) == [
        (
            "spec.trafficPolicy.loadBalancer.consistentHash",
            "only one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName can be set "
            "(found httpHeaderName, useSourceIp)",
        )
    ]
    # Istio sets no rule on the cookie's ttl (0s means a session cookie)
    assert errors(dr(trafficPolicy={"loadBalancer": {"consistentHash": {"httpCookie": {"name": "u"}}}})) == []
    assert errors(
        dr(trafficPolicy={"loadBalancer": {"simple": "RANDOM", "consistentHash": {"useSourceIp": True}}})
    ) == [("spec.trafficPolicy.loadBalancer", "only one of simple or consistentHash can be set")]


def test_connection_pool() -> None:
    assert errors(dr(trafficPolicy={"connectionPool": {}})) == [
        ("spec.trafficPolicy.connectionPool", "connection pool must have at least one field")
    ]
    pool = {"http": {"maxRetries": -1, "http1MaxPendingRequests": -2}, "tcp": {"maxConnections": -3}}
    assert errors(dr(trafficPolicy={"connectionPool": pool})) == [
        ("spec.trafficPolicy.connectionPool.http.maxRetries", "max retries must be non-negative"),
        (
            "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests",
            "http1 max pending requests must be non-negative",
        ),
        ("spec.trafficPolicy.connectionPool.tcp.maxConnections", "max connections must be non-negative"),
    ]


def test_snake_case_fields_are_unknown() -> None:
    assert errors(dr(trafficPolicy={"connectionPool": {"http": {"http1_max_pending_requests": 1}}})) == [
        (
            "spec.trafficPolicy.connectionPool.http.http1_max_pending_requests",
            'unknown field "http1_max_pending_requests"',
        )
    ]


def test_outlier_detection() -> None:
    ok = {
        "consecutive5xxErrors": 1,
        "interval": "1s",
        "baseEjectionTime": "3m",
        "maxEjectionPercent": 100,
        "minHealthPercent": 0,
        "consecutiveGatewayErrors": 2,
        "splitExternalLocalOriginErrors": True,
    }
    assert errors(dr(trafficPolicy={"outlierDetection": ok})) == []
    bad = {"maxEjectionPercent": 150, "interval": "0s"}
    assert errors(dr(trafficPolicy={"outlierDetection": bad})) == [
        ("spec.trafficPolicy.outlierDetection.maxEjectionPercent", "percentage 150 is not in range 0..100"),
        ("spec.trafficPolicy.outlierDetection.interval", "duration must be greater than 1ms"),
    ]


def test_consecutive_errors_is_a_deprecation_warning() -> None:
    assert warnings(dr(trafficPolicy={"outlierDetection": {"consecutiveErrors": 1}})) == [
        (
            "IST0133",
            "spec.trafficPolicy.outlierDetection.consecutiveErrors",
            "outlier detection consecutive errors is deprecated, "
            "use consecutiveGatewayErrors or consecutive5xxErrors instead",
        )
    ]


def test_client_tls() -> None:
    assert errors(dr(trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL"}})) == []
    assert errors(dr(trafficPolicy={"tls": {"mode": "MUTUAL"}})) == [
        ("spec.trafficPolicy.tls.clientCertificate", "client certificate required for mutual tls"),
        ("spec.trafficPolicy.tls.privateKey", "private key required for mutual tls"),
    ]
    assert errors(dr(trafficPolicy={"tls": {"mode": "MUTUAL", "credentialName": "c"}})) == []
    assert errors(dr(trafficPolicy={"tls": {"mode": "STRICT"}}))[0][1].startswith('unsupported value "STRICT"')


def test_port_level_settings_and_selectors() -> None:
    spec = {
        "trafficPolicy": {"portLevelSettings": [{"port": {"number": 8080}, "loadBalancer": {"simple": "RANDOM"}}]},
        "exportTo": ["."],
        "workloadSelector": {"matchLabels": {"app": "preference"}},
    }
    assert errors(dr(**spec)) == []
