"""The resource builders: exact dicts, and YAML that reads back to the same dicts in a human order."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from meshkit.errors import InvalidConfig
from meshkit.widgets.builders import (
    authz_rule,
    connection_pool_rule,
    deny_all,
    duration,
    fault_rule,
    header_rule,
    load_balancer_rule,
    mirror_rule,
    mtls_rule,
    rate_limit_rule,
    subsets_rule,
    timeout_retry_rule,
    to_yaml,
    weights_rule,
)

META = {"name": "recommendation", "namespace": "tutorial"}
V1 = {"host": "recommendation", "subset": "version-v1"}
V2 = {"host": "recommendation", "subset": "version-v2"}


def vs(http: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": META,
        "spec": {"hosts": ["recommendation"], "http": http},
    }


def dr(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": META, "spec": spec}


SUBSETS = [
    {"name": "version-v1", "labels": {"version": "v1"}},
    {"name": "version-v2", "labels": {"version": "v2"}},
]


def test_subsets_rule() -> None:
    assert subsets_rule("recommendation", ("v1", "v2")) == dr({"host": "recommendation", "subsets": SUBSETS})


def test_weights_rule_keeps_nonzero_weights_in_order() -> None:
    assert weights_rule("recommendation", {"v1": 90, "v2": 10}) == vs(
        [{"route": [{"destination": V1, "weight": 90}, {"destination": V2, "weight": 10}]}]
    )
    assert weights_rule("recommendation", {"v1": 0, "v2": 100}) == vs(
        [{"route": [{"destination": V2, "weight": 100}]}]
    )


def test_weights_rule_passes_negative_weights_to_the_mesh_but_refuses_nonsense() -> None:
    assert (
        weights_rule("recommendation", {"v1": 105, "v2": -5})["spec"]["http"][0]["route"][1]["weight"] == -5
    )
    with pytest.raises(InvalidConfig) as err:
        weights_rule("recommendation", {"v1": 0, "v2": 0})
    assert err.value.problems == [
        "weights_rule: every weight is 0; give at least one version a weight above 0"
    ]
    with pytest.raises(InvalidConfig, match="weight for 'v2' must be an integer, got '10'"):
        weights_rule("recommendation", {"v1": 90, "v2": "10"})  # type: ignore[dict-item]


def test_header_rule_is_the_tutorials_safari_rule() -> None:
    assert header_rule() == vs(
        [
            {
                "match": [{"headers": {"baggage-user-agent": {"regex": ".*Safari.*"}}}],
                "route": [{"destination": V2}],
            },
            {"route": [{"destination": V1}]},
        ]
    )
    no_default = header_rule(match_type="exact", value="Firefox", version="v1", default_version=None)
    assert no_default["spec"]["http"] == [
        {"match": [{"headers": {"baggage-user-agent": {"exact": "Firefox"}}}], "route": [{"destination": V1}]}
    ]
    with pytest.raises(InvalidConfig, match="match_type 'glob' must be one of exact, prefix, regex"):
        header_rule(match_type="glob")


def test_mirror_rule() -> None:
    assert mirror_rule(percent=25.0) == vs(
        [{"route": [{"destination": V1, "weight": 100}], "mirror": V2, "mirrorPercentage": {"value": 25.0}}]
    )
    assert "mirrorPercentage" not in mirror_rule(percent=None)["spec"]["http"][0]


def test_timeout_retry_rule() -> None:
    assert timeout_retry_rule(
        timeout_s=1, attempts=3, per_try_timeout_s=0.5, retry_on=["5xx", "reset"]
    ) == vs(
        [
            {
                "route": [{"destination": {"host": "recommendation"}}],
                "timeout": "1s",
                "retries": {"attempts": 3, "perTryTimeout": "0.5s", "retryOn": "5xx,reset"},
            }
        ]
    )
    assert timeout_retry_rule(attempts=0, version="v2")["spec"]["http"] == [
        {"route": [{"destination": V2}], "retries": {"attempts": 0}}
    ]
    assert timeout_retry_rule()["spec"]["http"] == [{"route": [{"destination": {"host": "recommendation"}}]}]


def test_connection_pool_rule_at_host_level_keeps_subsets() -> None:
    policy = {
        "connectionPool": {
            "tcp": {"maxConnections": 1},
            "http": {"http1MaxPendingRequests": 1, "maxRequestsPerConnection": 1},
        },
        "outlierDetection": {
            "consecutive5xxErrors": 1,
            "interval": "1s",
            "baseEjectionTime": "180s",
            "maxEjectionPercent": 100,
        },
    }
    built = connection_pool_rule(
        max_connections=1,
        pending=1,
        per_connection=1,
        consecutive_5xx=1,
        interval_s=1,
        base_ejection_s=180,
        max_ejection_percent=100,
    )
    assert built == dr({"host": "recommendation", "trafficPolicy": policy, "subsets": SUBSETS})


def test_connection_pool_rule_on_one_subset() -> None:
    built = connection_pool_rule(subset="v2", max_connections=1, consecutive_5xx=1)
    assert built["spec"] == {
        "host": "recommendation",
        "subsets": [
            SUBSETS[0],
            {
                **SUBSETS[1],
                "trafficPolicy": {
                    "connectionPool": {"tcp": {"maxConnections": 1}},
                    "outlierDetection": {"consecutive5xxErrors": 1},
                },
            },
        ],
    }
    with pytest.raises(InvalidConfig, match="subset 'v3' is not one of the versions v1, v2"):
        connection_pool_rule(subset="v3", max_connections=1)
    assert connection_pool_rule()["spec"] == {"host": "recommendation", "subsets": SUBSETS}


def test_fault_rule() -> None:
    assert fault_rule(
        abort_status=503, abort_percent=50, delay_s=7, delay_percent=50, route_version="v1"
    ) == vs(
        [
            {
                "fault": {
                    "delay": {"fixedDelay": "7s", "percentage": {"value": 50.0}},
                    "abort": {"httpStatus": 503, "percentage": {"value": 50.0}},
                },
                "route": [{"destination": V1}],
            }
        ]
    )
    # a fault without a percentage would hit no request in Istio: the builder makes it 100 %
    assert fault_rule(abort_status=503)["spec"]["http"][0]["fault"] == {
        "abort": {"httpStatus": 503, "percentage": {"value": 100.0}}
    }
    assert fault_rule()["spec"]["http"] == [{"route": [{"destination": {"host": "recommendation"}}]}]


def test_load_balancer_rule() -> None:
    assert load_balancer_rule() == dr(
        {"host": "recommendation", "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}}}
    )
    assert load_balancer_rule(simple="ROUND_ROBIN", versions=("v1", "v2"))["spec"]["subsets"] == SUBSETS
    with pytest.raises(InvalidConfig, match="simple 'FASTEST' must be one of LEAST_REQUEST, ROUND_ROBIN"):
        load_balancer_rule(simple="FASTEST")


def test_mtls_rule() -> None:
    assert mtls_rule("STRICT") == {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "tutorial"},
        "spec": {"mtls": {"mode": "STRICT"}},
    }
    assert mtls_rule("DISABLE", workload="preference")["spec"] == {
        "selector": {"matchLabels": {"app": "preference"}},
        "mtls": {"mode": "DISABLE"},
    }
    assert mtls_rule("PERMISSIVE", workload="preference")["metadata"]["name"] == "preference"
    with pytest.raises(InvalidConfig, match="mode 'ON' must be one of UNSET, DISABLE, PERMISSIVE, STRICT"):
        mtls_rule("ON")


def test_authz_rule_and_deny_all() -> None:
    assert authz_rule(
        "allow-preference",
        "preference",
        principals=["cluster.local/ns/tutorial/sa/customer"],
        methods=["GET"],
    ) == {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "allow-preference", "namespace": "tutorial"},
        "spec": {
            "selector": {"matchLabels": {"app": "preference"}},
            "action": "ALLOW",
            "rules": [
                {
                    "from": [{"source": {"principals": ["cluster.local/ns/tutorial/sa/customer"]}}],
                    "to": [{"operation": {"methods": ["GET"]}}],
                }
            ],
        },
    }
    jwt = authz_rule("require-role", "customer", claims={"role": "customer", "groups": ["a", "b"]})
    assert jwt["spec"]["rules"] == [
        {
            "when": [
                {"key": "request.auth.claims[role]", "values": ["customer"]},
                {"key": "request.auth.claims[groups]", "values": ["a", "b"]},
            ]
        }
    ]
    assert authz_rule("allow-all", None)["spec"] == {"action": "ALLOW", "rules": [{}]}
    assert deny_all() == {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "deny-all", "namespace": "tutorial"},
        "spec": {},
    }
    with pytest.raises(InvalidConfig, match="action 'CUSTOM' must be one of ALLOW, DENY, AUDIT"):
        authz_rule("x", "customer", action="CUSTOM")


def test_rate_limit_rule_has_the_documented_envoyfilter_shape() -> None:
    ef = rate_limit_rule("recommendation", max_tokens=5, tokens_per_fill=2, fill_interval_s=60)
    assert ef["apiVersion"] == "networking.istio.io/v1alpha3"
    assert ef["kind"] == "EnvoyFilter"
    assert ef["metadata"] == {"name": "local-ratelimit-recommendation", "namespace": "tutorial"}
    assert ef["spec"]["workloadSelector"] == {"labels": {"app": "recommendation"}}
    (patch,) = ef["spec"]["configPatches"]
    assert patch["applyTo"] == "HTTP_FILTER"
    assert patch["match"] == {
        "context": "SIDECAR_INBOUND",
        "listener": {
            "filterChain": {
                "filter": {
                    "name": "envoy.filters.network.http_connection_manager",
                    "subFilter": {"name": "envoy.filters.http.router"},
                }
            }
        },
    }
    assert patch["patch"]["operation"] == "INSERT_BEFORE"
    value = patch["patch"]["value"]
    assert value["name"] == "envoy.filters.http.local_ratelimit"
    typed = value["typed_config"]
    assert typed["@type"] == "type.googleapis.com/udpa.type.v1.TypedStruct"
    assert (
        typed["type_url"]
        == "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
    )
    always = {"numerator": 100, "denominator": "HUNDRED"}
    assert typed["value"] == {
        "stat_prefix": "http_local_rate_limiter",
        "token_bucket": {"max_tokens": 5, "tokens_per_fill": 2, "fill_interval": "60s"},
        "filter_enabled": {"runtime_key": "local_rate_limit_enabled", "default_value": always},
        "filter_enforced": {"runtime_key": "local_rate_limit_enforced", "default_value": always},
        "response_headers_to_add": [
            {"append": False, "header": {"key": "x-local-rate-limit", "value": "true"}}
        ],
    }


def test_durations() -> None:
    assert [duration(s) for s in (1, 1.0, 0.5, 0.25, 180, 0.001, 2.0004, 1_000_000)] == [
        "1s",
        "1s",
        "0.5s",
        "0.25s",
        "180s",
        "0.001s",
        "2s",
        "1000000s",
    ]


ALL = [
    subsets_rule(),
    weights_rule("recommendation", {"v1": 75, "v2": 25}),
    header_rule(),
    mirror_rule(),
    timeout_retry_rule(timeout_s=1.5, attempts=2),
    connection_pool_rule(max_connections=1, interval_s=0.5),
    fault_rule(delay_s=7, delay_percent=50),
    load_balancer_rule(),
    mtls_rule(),
    deny_all(),
    authz_rule("allow-customer", "customer", methods=["GET"]),
    rate_limit_rule("preference", 10, 10, 1),
]


def test_yaml_round_trips_every_builder() -> None:
    text = to_yaml(ALL)
    assert list(yaml.safe_load_all(text)) == ALL
    assert text.count("\n---\n") == len(ALL) - 1


@pytest.mark.parametrize("resource", ALL, ids=lambda r: f"{r['kind']}-{r['metadata']['name']}")
def test_yaml_keys_come_in_the_order_a_person_writes_them(resource: dict[str, Any]) -> None:
    text = to_yaml(resource)
    top = [line.split(":")[0] for line in text.splitlines() if line and not line.startswith((" ", "-"))]
    assert top == ["apiVersion", "kind", "metadata", "spec"]
    assert text.splitlines()[3:5] == [f"  name: {resource['metadata']['name']}", "  namespace: tutorial"]


def test_yaml_of_a_canary_reads_like_the_tutorials_file() -> None:
    assert to_yaml(weights_rule("recommendation", {"v1": 90, "v2": 10})) == (
        "apiVersion: networking.istio.io/v1\n"
        "kind: VirtualService\n"
        "metadata:\n"
        "  name: recommendation\n"
        "  namespace: tutorial\n"
        "spec:\n"
        "  hosts:\n"
        "  - recommendation\n"
        "  http:\n"
        "  - route:\n"
        "    - destination:\n"
        "        host: recommendation\n"
        "        subset: version-v1\n"
        "      weight: 90\n"
        "    - destination:\n"
        "        host: recommendation\n"
        "        subset: version-v2\n"
        "      weight: 10\n"
    )
