"""analyze(): istioctl-analyze codes and message templates over the tutorial mesh."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from meshkit.resources import ValidationReport, analyze, load_paths, parse_text, validate_documents
from tests.resources.helpers import dest, doc, route, vs

DATA = Path(__file__).parent / "data"
SERVICES = {"customer": {"http": 8080}, "preference": {"http": 8080}, "recommendation": {"http": 8080}}
PODS: list[dict[str, Any]] = [
    {
        "name": "customer-6d9f7b-abcde",
        "labels": {"app": "customer", "version": "v1"},
        "namespace": "tutorial",
        "sidecar": True,
    },
    {
        "name": "preference-v1-5c8d9-fghij",
        "labels": {"app": "preference", "version": "v1"},
        "namespace": "tutorial",
        "sidecar": True,
    },
    {
        "name": "recommendation-v1-7f5-klmno",
        "labels": {"app": "recommendation", "version": "v1"},
        "namespace": "tutorial",
        "sidecar": True,
    },
    {
        "name": "recommendation-v2-8a6-pqrst",
        "labels": {"app": "recommendation", "version": "v2"},
        "namespace": "tutorial",
        "sidecar": True,
    },
    {
        "name": "istio-ingressgateway-1",
        "labels": {"istio": "ingressgateway"},
        "namespace": "istio-system",
        "sidecar": True,
    },
]


def files(*names: str) -> ValidationReport:
    report = validate_documents(load_paths([str(DATA / n) for n in names]))
    assert report.errors == []
    return report


def text(*docs: str, source: str = "t.yaml") -> ValidationReport:
    report = validate_documents(parse_text("---\n".join(docs), source))
    assert report.errors == [], [p.format() for p in report.errors]
    return report


def lines(
    report: ValidationReport,
    services: dict[str, dict[str, int]] | None = None,
    pods: list[dict[str, Any]] | None = None,
) -> list[str]:
    problems = analyze(
        report.resources,
        SERVICES if services is None else services,
        PODS if pods is None else pods,
        origins=report.origins,
    )
    return [p.analyze_line() for p in problems]


def test_the_tutorial_canary_is_clean() -> None:
    assert lines(
        files(
            "destination-rule-recommendation-v1-v2.yml",
            "virtual-service-recommendation-v1_and_v2.yml",
            "gateway-customer.yml",
            "authorization-policy-allow-customer.yaml",
            "enduser-authentication-jwt.yml",
            "enable-mtls.yml",
            "destination-rule-tls.yml",
            "envoy-filter-recommendation-local-ratelimit.yml",
        )
    ) == [
        "Warning [IST0133] (EnvoyFilter tutorial/filter-local-ratelimit-recommendation "
        f"{DATA / 'envoy-filter-recommendation-local-ratelimit.yml'}:6) Schema validation warning: EnvoyFilter "
        "exposes internal "
        "implementation details that may change at any time. Prefer other APIs if possible, and exercise extreme "
        "caution, especially around upgrades.",
        f"Warning [IST0133] (RequestAuthentication tutorial/customerjwt {DATA}/enduser-authentication-jwt.yml:12) "
        "Schema validation warning: jwksUri https://gist.githubusercontent.com/lordofthejars/"
        "7dad589384612d7a6e18398ac0f10065/raw/ea0f8e7b729fb1df25d4dc60bf17dee409aad204/jwks.json cannot be fetched "
        "from the local mesh: as istiod does when a fetch fails, requests with a token get 401 and requests without "
        "one pass; to try tokens locally use the local issuer: issuer: testing@secure.istio.io, jwksUri: "
        "http://jwks.meshkit.local/jwks.json (meshkit token mints them)",
        # Istio's analyzer looks a wildcard DestinationRule host up among wildcard ServiceEntries only
        f"Warning [IST0174] (DestinationRule tutorial/default {DATA}/destination-rule-tls.yml:1) The host "
        "*.tutorial.svc.cluster.local defined in the DestinationRule does not match any services in the mesh.",
    ]


def test_missing_subset_is_ist0101_with_file_and_line() -> None:
    report = files("destination-rule-recommendation-v1-v2.yml", "virtual-service-recommendation-v3.yml")
    assert lines(report) == [  # Istio points at the destination's host line
        f"Error [IST0101] (VirtualService tutorial/recommendation {DATA}/virtual-service-recommendation-v3.yml:12) "
        'Referenced host+subset in destinationrule not found: "recommendation+version-v3"'
    ]


def test_v3_with_its_destination_rule_but_no_pod_is_ist0173() -> None:
    report = files("destination-rule-recommendation-v1-v2-v3.yml", "virtual-service-recommendation-v3.yml")
    assert lines(report) == [
        f"Error [IST0173] (DestinationRule tutorial/recommendation {DATA}/destination-rule-recommendation-v1-v2-v3.yml:"
        "1) The Subset version-v3 defined in the DestinationRule does not select any pods. Which may lead to "
        "503 UH (NoHealthyUpstream)."
    ]
    v3 = {"name": "recommendation-v3-1", "labels": {"app": "recommendation", "version": "v3"}, "namespace": "tutorial"}
    assert lines(report, pods=[*PODS, v3]) == []


def test_unknown_host() -> None:
    report = text(vs(route(dest(host="recomendation"))))
    assert lines(report) == [
        'Error [IST0101] (VirtualService tutorial/recommendation t.yaml:11) Referenced host not found: "recomendation"'
    ]


def test_short_names_resolve_in_the_resources_namespace() -> None:
    wrong_ns = text(doc("VirtualService", {"hosts": ["recommendation"], "http": [route(dest())]}, namespace="default"))
    assert 'Referenced host not found: "recommendation"' in lines(wrong_ns)[0]
    fqdn = "recommendation.tutorial.svc.cluster.local"
    report = text(doc("VirtualService", {"hosts": [fqdn], "http": [route(dest(host=fqdn))]}, namespace="default"))
    assert lines(report) == []
    # Istio's analyzer qualifies only dotless names: "name.namespace" is looked up as it is
    for host in ("recommendation.tutorial", "recommendation.tutorial.svc"):
        report = text(doc("VirtualService", {"hosts": [host], "http": [route(dest(host=host))]}, namespace="default"))
        assert lines(report)[0].endswith(f'Referenced host not found: "{host}"'), host


def test_service_entry_hosts_exact_and_wildcard() -> None:
    egress = vs(route(dest(host="worldtimeapi.org")), hosts=["worldtimeapi.org"])
    assert lines(text(egress)) == [
        "Error [IST0101] (VirtualService tutorial/recommendation t.yaml:11) "
        'Referenced host not found: "worldtimeapi.org"'
    ]
    se = (DATA / "service-entry-egress-worldclockapi.yml").read_text()
    assert lines(text(egress, se)) == []
    wildcard = doc(
        "ServiceEntry",
        {"hosts": ["*.example.com"], "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}]},
        name="example",
    )
    assert lines(text(vs(route(dest(host="api.example.com"))), wildcard)) == []


def test_mirror_references() -> None:
    report = text(
        vs(route(dest("version-v1"), mirror={"host": "recommendation", "subset": "version-v9"})),
        (DATA / "destination-rule-recommendation-v1-v2.yml").read_text(),
    )
    assert lines(report) == [
        "Error [IST0101] (VirtualService tutorial/recommendation t.yaml:14) "
        'Referenced mirror+subset in destinationrule not found: "recommendation+version-v9"'
    ]
    report = text(vs(route(dest(), mirror={"host": "shadow"})))
    assert lines(report)[0].endswith('Referenced mirror host not found: "shadow"')


def test_port_not_on_service() -> None:
    d = {"destination": {"host": "recommendation", "port": {"number": 9090}}}
    assert lines(text(vs(route(d))))[0].endswith('Referenced host:port not found: "recommendation:9090"')


def test_gateway_references() -> None:
    report = text(vs(route(dest()), gateways=["mesh", "missing-gateway", "istio-system/other"]))
    assert [line.split(") ", 1)[1] for line in lines(report)] == [
        'Referenced gateway not found: "missing-gateway"',
        'Referenced gateway not found: "istio-system/other"',
        # a gateway that does not exist has no host either: istioctl says so too
        "one or more host [recommendation] defined in VirtualService tutorial/recommendation not found in Gateway "
        "tutorial/missing-gateway.",
        "one or more host [recommendation] defined in VirtualService tutorial/recommendation not found in Gateway "
        "istio-system/other.",
    ]


def test_vs_host_not_in_gateway() -> None:
    gateway = doc(
        "Gateway",
        {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["tutorial/customer.example.com"]}
            ],
        },
        name="customer-gateway",
    )
    virtual = doc(
        "VirtualService",
        {
            "hosts": ["customer.example.com", "other.example.com"],
            "gateways": ["customer-gateway"],
            "http": [route(dest(host="customer"))],
        },
        name="customer-gateway",
    )
    assert lines(text(gateway, virtual)) == []  # one host bound to the gateway is enough (Istio's rule)
    elsewhere = virtual.replace("customer.example.com", "shop.example.com")
    assert lines(text(gateway, elsewhere)) == [
        "Warning [IST0132] (VirtualService tutorial/customer-gateway t.yaml:25) one or more host "
        "[shop.example.com other.example.com] defined in VirtualService tutorial/customer-gateway not found in "
        "Gateway tutorial/customer-gateway."
    ]


def test_gateway_selector_and_multi_port_services() -> None:
    report = files("gateway-customer.yml")
    assert lines(report, pods=PODS[:4]) == [
        f"Error [IST0101] (Gateway tutorial/customer-gateway {DATA}/gateway-customer.yml:7) "
        'Referenced selector not found: "istio=ingressgateway"'
    ]
    services = {**SERVICES, "customer": {"http": 8080, "http-metrics": 9779}}
    data = list(yaml.safe_load_all((DATA / "gateway-customer.yml").read_text()))
    del data[1]["spec"]["http"][0]["route"][0]["destination"]["port"]
    report = text(*(yaml.safe_dump(d) for d in data))
    assert [line.split(") ", 1)[1] for line in lines(report, services=services)] == [
        'This VirtualService routes to a service "customer" that exposes multiple ports [8080 9779]. '
        "Specifying a port in the destination is required to disambiguate."
    ]


def test_conflicting_mesh_virtual_services() -> None:
    a = vs(route(dest()))
    b = doc(
        "VirtualService",
        {"hosts": ["recommendation.tutorial.svc.cluster.local"], "http": [route(dest())]},
        name="recommendation-extra",
    )
    message = (
        "The VirtualServices tutorial/recommendation,tutorial/recommendation-extra associated with mesh gateway "
        "define the same host */recommendation.tutorial.svc.cluster.local which can lead to undefined behavior. "
        "This can be fixed by merging the conflicting VirtualServices into a single resource."
    )
    assert [line.split(") ", 1)[1] for line in lines(text(a, b))] == [message, message]


def test_policies_selecting_no_workload() -> None:
    policy = doc(
        "AuthorizationPolicy", {"selector": {"matchLabels": {"app": "foo", "version": "v1"}}}, name="allow-foo"
    )
    assert lines(text(policy)) == [
        "Warning [IST0127] (AuthorizationPolicy tutorial/allow-foo t.yaml:1) No matching workloads for this resource "
        "with the following labels: app=foo,version=v1"
    ]
    other_ns = doc("AuthorizationPolicy", {"selector": {"matchLabels": {"app": "customer"}}}, name="a",
                   namespace="other")
    assert "IST0127" in lines(text(other_ns))[0]
    no_selector = doc("AuthorizationPolicy", {}, name="deny-all", namespace="empty")
    assert lines(text(no_selector))[0].endswith("No matching workloads for this resource with the following labels: ")
    mesh_wide = doc(
        "AuthorizationPolicy", {"selector": {"matchLabels": {"app": "customer"}}}, name="m", namespace="istio-system"
    )
    assert lines(text(mesh_wide)) == []
    # Istio's analyzer checks AuthorizationPolicy selectors only
    peer = doc("PeerAuthentication", {"selector": {"matchLabels": {"app": "nobody"}}, "mtls": {"mode": "STRICT"}})
    assert lines(text(peer)) == []


def test_destination_rule_for_unknown_host() -> None:
    report = text(doc("DestinationRule", {"host": "recomendation"}))
    assert lines(report) == [
        "Warning [IST0174] (DestinationRule tutorial/recommendation t.yaml:1) The host recomendation defined in the "
        "DestinationRule does not match any services in the mesh."
    ]
    wildcard = text(
        doc(
            "DestinationRule",
            {"host": "*.elsewhere.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}},
        )
    )
    assert "IST0174" in lines(wildcard)[0]


def test_pod_missing_proxy_only_where_injection_is_on_and_not_opted_out() -> None:
    namespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: tutorial\n  labels: {istio-injection: enabled}\n"
    legacy = {"name": "legacy-1", "labels": {"app": "legacy"}, "namespace": "tutorial", "sidecar": False}
    opted_out = {"name": "curl-1", "labels": {"app": "curl"}, "namespace": "tutorial", "sidecar": False,
                 "annotations": {"sidecar.istio.io/inject": "false"}}
    assert lines(text(vs(route(dest())), namespace), pods=[*PODS, legacy, opted_out]) == [
        "Warning [IST0103] (Pod tutorial/legacy-1) The pod tutorial/legacy-1 is missing the Istio proxy. "
        "This can often be resolved by restarting or redeploying the workload."
    ]
    assert lines(text(vs(route(dest()))), pods=[*PODS, legacy]) == []  # no Namespace says injection is on


def test_schema_findings_are_reported_with_istioctl_codes() -> None:
    out = lines(files("virtual-service-recommendation-delay.yml", "destination-rule-recommendation.yml"))
    assert out == [
        f"Warning [IST0002] (VirtualService tutorial/recommendation {DATA}/"
        "virtual-service-recommendation-delay.yml:13) Deprecated: HTTPRoute.fault.delay.percent is "
        "deprecated; use HTTPRoute.fault.delay.percentage"
    ]
    out = lines(files("destination-rule-recommendation_cb_policy_pool_ejection.yml"))
    assert out == [
        f"Warning [IST0133] (DestinationRule tutorial/recommendation {DATA}/"
        f"destination-rule-recommendation_cb_policy_pool_ejection.yml:{line}) Schema validation warning: outlier "
        "detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead"
        for line in (17, 28)
    ]


def test_unreachable_rule_and_sorting() -> None:
    report = text(vs(route(dest("version-v1")), route(dest(), match=[{"headers": {"end-user": {"exact": "jason"}}}])))
    out = lines(report)
    assert out == [
        "Error [IST0101] (VirtualService tutorial/recommendation t.yaml:11) Referenced host+subset in destinationrule "
        'not found: "recommendation+version-v1"',
        "Warning [IST0130] (VirtualService tutorial/recommendation t.yaml:13) VirtualService rule #1 not used "
        "(route without matches defined before).",
    ]


def test_invalid_stored_resource_is_ist0106_and_skipped_by_other_analyzers() -> None:
    broken = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "broken", "namespace": "tutorial"},
        "spec": {
            "hosts": ["recommendation"],
            "http": [{"route": [{"destination": {"host": "nope"}, "weight": -1}, {"destination": {"host": "nope"}}]}],
        },
    }
    problems = analyze([broken], SERVICES, PODS)
    assert [(p.code, p.message, p.field, p.line) for p in problems] == [
        ("IST0106", "Schema validation error: weight -1 < 0", "spec.http[0].route[0].weight", None)
    ]


def test_duplicate_match_is_info_and_sorted_last() -> None:
    match = [{"uri": {"prefix": "/a"}}]
    report = text(
        vs(
            route(dest(host="nope"), match=match),
            route(dest(), match=[*match, {"uri": {"prefix": "/b"}}]),
            route(dest()),
        )
    )
    assert [line.split(" (", 1)[0] for line in lines(report)] == ["Error [IST0101]", "Info [IST0131]"]
    assert lines(report)[1].endswith(
        "VirtualService rule #1 match #0 is not used (duplicate/overlapping match in rule #0)."
    )


def test_profile_applies_to_the_schema_pass() -> None:
    report = text(vs(route(dest(weight=80), dest(weight=10))))
    assert lines(report) == []
    problems = analyze(report.resources, SERVICES, PODS, profile="tutorial")
    assert [(p.code, p.message) for p in problems] == [
        ("IST0106", "Schema validation error: total destination weight 90 != 100")
    ]
