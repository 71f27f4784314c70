"""EnvoyFilter (local rate limit only) and Telemetry (sampling, access logs) validation."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from meshkit.resources import parse_text, validate_documents
from meshkit.resources.envoyfilter import IMPLEMENTATION_WARNING, SUPPORTED, local_rate_limit_filter
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


def test_other_envoy_filters_are_accepted_with_istio_rules_and_a_not_simulated_warning() -> None:
    data = documented()
    data["spec"]["configPatches"][0]["applyTo"] = "CLUSTER"
    assert check(data) == [
        ("spec.configPatches[0].match", "Envoy filter: applyTo for cluster class objects cannot have non cluster match")
    ]
    lua = documented()
    lua["spec"]["configPatches"][0]["patch"]["value"] = {"name": "envoy.filters.http.lua", "typed_config": {}}
    assert check(lua) == []
    assert [
        (w.field, w.message.split(" (")[0]) for w in validate_documents(parse_text(yaml.safe_dump(lua))).warnings
    ] == [
        ("spec", IMPLEMENTATION_WARNING.split(" (")[0]),
        ("spec.configPatches[0]", "not simulated by the local mesh"),
    ]
    data = documented()
    del data["spec"]["configPatches"][0]["patch"]["operation"]
    assert check(data) == [("spec.configPatches[0].patch.operation", "Envoy filter: missing patch operation")]
    assert SUPPORTED.startswith("the local mesh simulates only the Envoy local rate-limit EnvoyFilter")


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


def test_telemetry_fields_follow_istio_and_unsimulated_ones_warn() -> None:
    spec = {
        "tracing": [{"providers": [{"name": "zipkin", "port": 1}], "randomSamplingPercentage": 150}],
        "metrics": [],
    }
    assert errors(doc("Telemetry", spec, name="t")) == [
        ("spec.tracing[0].providers[0].port", 'unknown field "port"'),
        ("spec.tracing[0].randomSamplingPercentage", "randomSamplingPercentage must be in range [0.0, 100.0]"),
    ]
    ok = {"tracing": [{"customTags": {"team": {"literal": {"value": "lab"}}}, "disableContextPropagation": True}]}
    report = validate_documents(parse_text(doc("Telemetry", ok, name="t")))
    assert report.errors == []
    assert [(w.field, w.message.split(" is ")[0]) for w in report.warnings] == [
        ("spec.tracing[0].customTags", "tracing[].customTags"),
        ("spec.tracing[0].disableContextPropagation", "tracing[].disableContextPropagation"),
    ]


def test_telemetry_providers_as_istio_documents_them() -> None:
    spec = {
        "tracing": [{"providers": [{"name": "jaeger"}], "randomSamplingPercentage": 100.0}],
        "accessLogging": [{"providers": [{"name": "envoy"}]}],
    }
    assert errors(doc("Telemetry", spec, name="mesh-default")) == []
