"""EnvoyFilter (local rate limit only) and Telemetry (sampling, access logs) validation."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from meshkit.resources import parse_text, validate_documents
from meshkit.resources.envoyfilter import SUPPORTED, local_rate_limit_filter
from tests.resources.helpers import doc, errors

DATA = Path(__file__).parent / "data"


def documented() -> dict[str, Any]:
    return yaml.safe_load((DATA / "envoy-filter-recommendation-local-ratelimit.yml").read_text())


def check(data: dict[str, Any]) -> list[tuple[str, str]]:
    return errors(yaml.safe_dump(data))


def value(data: dict[str, Any]) -> dict[str, Any]:
    return data["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["value"]


def test_documented_local_rate_limit_is_accepted_and_kept_as_given() -> None:
    report = validate_documents(parse_text(yaml.safe_dump(documented())))
    assert report.errors == []
    assert report.resources[0]["spec"] == documented()["spec"]


def test_builder_produces_a_valid_filter() -> None:
    built = local_rate_limit_filter("rl", "preference", max_tokens=2, fill_interval="1s", context="GATEWAY")
    assert check(built) == []
    assert value(built)["token_bucket"] == {"max_tokens": 2, "tokens_per_fill": 2, "fill_interval": "1s"}


def test_other_envoy_filters_are_refused_with_what_was_seen() -> None:
    data = documented()
    data["spec"]["configPatches"][0]["applyTo"] = "CLUSTER"
    assert check(data) == [("spec.configPatches[0].applyTo", f"{SUPPORTED}; this patch has applyTo: CLUSTER")]
    data = documented()
    data["spec"]["configPatches"][0]["patch"]["value"]["name"] = "envoy.filters.http.lua"
    assert check(data) == [
        (
            "spec.configPatches[0].patch.value.name",
            f"{SUPPORTED}; this patch has patch.value.name: envoy.filters.http.lua",
        )
    ]
    data = documented()
    del data["spec"]["configPatches"][0]["match"]["context"]
    assert check(data)[0][1].endswith("this patch has match.context: nothing")
    assert SUPPORTED.startswith("the local mesh supports only the Envoy local rate-limit EnvoyFilter")


def test_rate_limit_value_is_checked_in_detail() -> None:
    data = documented()
    v = value(data)
    v["token_bucket"]["fill_interval"] = "10ms"
    v["token_bucket"]["max_tokens"] = 0
    v["filter_enabled"]["default_value"]["denominator"] = "MILLION"
    v["burst"] = 3
    base = "spec.configPatches[0].patch.value.typed_config.value"
    assert check(data) == [  # keys come sorted from yaml.safe_dump
        (f"{base}.burst", 'unknown field "burst"'),
        (
            f"{base}.filter_enabled.default_value.denominator",
            'unsupported value "MILLION": supported values: "HUNDRED"',
        ),
        (f"{base}.token_bucket.max_tokens", "max_tokens must be at least 1"),
    ]
    data = documented()
    value(data)["token_bucket"]["fill_interval"] = "10ms"
    assert check(data) == [(f"{base}.token_bucket.fill_interval", "fill_interval must be at least 50ms")]


def test_snake_case_and_required_fields_inside_value() -> None:
    data = documented()
    del value(data)["stat_prefix"]
    data2 = copy.deepcopy(documented())
    data2["spec"]["configPatches"][0]["match"]["listener"]["filterChain"]["filter"]["name"] = "envoy.tcp_proxy"
    assert check(data) == [
        ("spec.configPatches[0].patch.value.typed_config.value.stat_prefix", 'required field "stat_prefix" is missing')
    ]
    assert check(data2)[0][1] == (
        'the local rate-limit filter goes into "envoy.filters.network.http_connection_manager", not "envoy.tcp_proxy"'
    )


def test_envoy_filter_only_served_as_v1alpha3() -> None:
    data = documented()
    data["apiVersion"] = "networking.istio.io/v1"
    assert check(data) == [
        (
            "apiVersion",
            'no matches for kind "EnvoyFilter" in version "networking.istio.io/v1": '
            "served versions are networking.istio.io/v1alpha3",
        )
    ]


def test_telemetry_supported_fields() -> None:
    spec = {
        "selector": {"matchLabels": {"app": "customer"}},
        "tracing": [{"randomSamplingPercentage": 10}],
        "accessLogging": [{"disabled": True}],
    }
    assert errors(doc("Telemetry", spec, name="t")) == []
    assert errors(doc("Telemetry", spec, name="t", api="telemetry.istio.io/v1alpha1")) == []


def test_telemetry_other_fields_are_unknown() -> None:
    hint = ("meshkit supports tracing[].randomSamplingPercentage/providers/disableSpanReporting and "
            "accessLogging[].disabled/providers")
    spec = {"tracing": [{"providers": [{"name": "zipkin", "port": 1}], "randomSamplingPercentage": 150}],
            "metrics": []}
    assert errors(doc("Telemetry", spec, name="t")) == [
        ("spec.tracing[0].providers[0].port", f'unknown field "port" ({hint})'),
        ("spec.tracing[0].randomSamplingPercentage", "randomSamplingPercentage must be in range [0.0, 100.0]"),
        ("spec.metrics", f'unknown field "metrics" ({hint})'),
    ]


def test_telemetry_providers_as_istio_documents_them() -> None:
    spec = {"tracing": [{"providers": [{"name": "jaeger"}], "randomSamplingPercentage": 100.0}],
            "accessLogging": [{"providers": [{"name": "envoy"}]}]}
    assert errors(doc("Telemetry", spec, name="mesh-default")) == []
