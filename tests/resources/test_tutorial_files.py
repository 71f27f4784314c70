"""Every istiofile the labs use validates, and all API versions normalise to the same resource."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshkit.resources import load_paths, parse_text, validate_documents

DATA = Path(__file__).parent / "data"
FILES = sorted(p.name for p in DATA.iterdir() if p.suffix in (".yml", ".yaml"))


def test_the_fixture_set_is_complete() -> None:
    expected = {
        "destination-rule-recommendation-v1-v2.yml",
        "virtual-service-recommendation-v1.yml",
        "virtual-service-recommendation-v2.yml",
        "virtual-service-recommendation-v1_and_v2.yml",
        "virtual-service-recommendation-v1_and_v2_75_25.yml",
        "virtual-service-safari-recommendation-v2.yml",
        "virtual-service-recommendation-v1-mirror-v2.yml",
        "destination-rule-recommendation_lb_policy_app.yml",
        "virtual-service-recommendation-v2_retry.yml",
        "virtual-service-recommendation-timeout.yml",
        "destination-rule-recommendation_cb_policy_version_v2.yml",
        "destination-rule-recommendation_cb_policy_pool_ejection.yml",
        "virtual-service-recommendation-503.yml",
        "virtual-service-recommendation-delay.yml",
        "destination-rule-recommendation.yml",
        "destination-rule-recommendation-v1-v2-v3.yml",
        "virtual-service-recommendation-v3.yml",
        "service-entry-egress-worldclockapi.yml",
        "authorization-policy-deny-all.yaml",
        "authorization-policy-allow-customer.yaml",
        "authorization-policy-allow-preference.yaml",
        "authorization-policy-allow-recommendation.yaml",
        "enable-mtls.yml",
        "disable-mtls.yml",
        "destination-rule-tls.yml",
        "enduser-authentication-jwt.yml",
        "authorization-policy-jwt.yaml",
        "gateway-customer.yml",
        "envoy-filter-recommendation-local-ratelimit.yml",
        "telemetry-mesh-default.yml",
    }
    assert expected <= set(FILES)


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("profile", ["current", "tutorial"])
def test_tutorial_file_validates(name: str, profile: str) -> None:
    report = validate_documents(load_paths([str(DATA / name)]), profile=profile)
    assert report.errors == []
    assert report.resources, name
    for resource in report.resources:
        assert resource["metadata"]["namespace"] in ("tutorial", "istio-system")
        assert resource["apiVersion"].endswith(("/v1", "/v1alpha3"))


def test_expected_warnings_of_the_tutorial_files() -> None:
    got = {}
    for name in FILES:
        report = validate_documents(load_paths([str(DATA / name)]))
        got[name] = sorted({(w.code, w.message.split(":")[0]) for w in report.warnings})
    assert got["virtual-service-recommendation-delay.yml"] == [("IST0002", "Deprecated")]
    assert got["destination-rule-recommendation_cb_policy_pool_ejection.yml"] == [
        (
            "IST0133",
            "outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or "
            "consecutive5xxErrors instead",
        )
    ]
    assert got["virtual-service-recommendation-503.yml"] == [
        ("IST0130", "VirtualService rule #1 not used (only the last rule can have no matches).")
    ]
    assert got["envoy-filter-recommendation-local-ratelimit.yml"] == [
        (
            "IST0133",
            "EnvoyFilter exposes internal implementation details that may change at any time. Prefer other "
            "APIs if possible, and exercise extreme caution, especially around upgrades.",
        )
    ]
    assert got["envoy-filter-local-ratelimit-per-route.yaml"] == got["envoy-filter-recommendation-local-ratelimit.yml"]
    # the tutorial's JWT chapter fetches its keys from a gist the local mesh cannot reach
    assert [code for code, _ in got["enduser-authentication-jwt.yml"]] == ["IST0133"]
    assert got["enduser-authentication-jwt.yml"][0][1] == "jwksUri https"  # (the message goes on past the colon)
    quiet = [n for n, w in got.items() if not w]
    assert len(quiet) == len(FILES) - 6


def _spec_and_meta(text: str) -> dict[str, object]:
    report = validate_documents(parse_text(text))
    assert report.errors == []
    return report.resources[0]


@pytest.mark.parametrize("version", ["v1alpha3", "v1beta1"])
def test_older_versions_normalise_to_the_v1_resource(version: str) -> None:
    old = (DATA / "virtual-service-recommendation-v1_and_v2.yml").read_text()
    new = old.replace("networking.istio.io/v1alpha3", "networking.istio.io/v1")
    old = old.replace("v1alpha3", version)
    a, b = _spec_and_meta(old), _spec_and_meta(new)
    assert a["metadata"]["annotations"] == {"meshkit.io/source-api-version": f"networking.istio.io/{version}"}  # type: ignore[index]
    a["metadata"]["annotations"] = b["metadata"]["annotations"] = {}  # type: ignore[index]
    assert a == b


def test_normalised_shape() -> None:
    report = validate_documents(load_paths([str(DATA / "service-entry-egress-worldclockapi.yml")]))
    assert report.resources == [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {
                "name": "worldclockapi-egress-rule",
                "namespace": "tutorial",
                "labels": {},
                "annotations": {"meshkit.io/source-api-version": "networking.istio.io/v1alpha3"},
            },
            "spec": {"hosts": ["worldtimeapi.org"], "ports": [{"name": "http-80", "number": 80, "protocol": "http"}]},
        }
    ]


def test_security_v1beta1_becomes_v1_and_envoyfilter_stays_v1alpha3() -> None:
    report = validate_documents(
        load_paths(
            [
                str(DATA / "authorization-policy-jwt.yaml"),
                str(DATA / "envoy-filter-recommendation-local-ratelimit.yml"),
                str(DATA / "telemetry-mesh-default.yml"),
            ]
        )
    )
    assert [r["apiVersion"] for r in report.resources] == [
        "security.istio.io/v1",
        "networking.istio.io/v1alpha3",
        "telemetry.istio.io/v1",
    ]


def test_delay_percent_is_folded_into_percentage_and_durations_stay_strings() -> None:
    report = validate_documents(load_paths([str(DATA / "virtual-service-recommendation-delay.yml")]))
    delay = report.resources[0]["spec"]["http"][0]["fault"]["delay"]
    assert delay == {"fixedDelay": "7.000s", "percent": 50, "percentage": {"value": 50.0}}


def test_delay_percentage_wins_over_percent() -> None:
    text = (
        (DATA / "virtual-service-recommendation-delay.yml")
        .read_text()
        .replace("percent: 50", "percent: 50\n        percentage:\n          value: 20")
    )
    report = validate_documents(parse_text(text))
    assert report.resources[0]["spec"]["http"][0]["fault"]["delay"]["percentage"] == {"value": 20}


def test_namespace_default_labels_and_annotations_are_kept() -> None:
    text = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: recommendation
  labels: {team: lab}
  annotations: {note: "kept"}
  resourceVersion: "12"
spec:
  host: recommendation
"""
    report = validate_documents(parse_text(text), default_namespace="workshop-7")
    assert report.resources[0]["metadata"] == {
        "name": "recommendation",
        "namespace": "workshop-7",
        "labels": {"team": "lab"},
        "annotations": {"note": "kept", "meshkit.io/source-api-version": "networking.istio.io/v1"},
    }
    assert report.origins[("DestinationRule", "workshop-7", "recommendation")].line == 1
