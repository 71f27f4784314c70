"""Book-era kinds are refused with today's replacement, built from the legacy fields."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
import yaml

from meshkit.resources import parse_text, validate_documents
from tests.resources.helpers import validate


def only_error(text: str) -> str:
    report = validate(text, source="old.yml")
    assert len(report.errors) == 1 and report.resources == []
    problem = report.errors[0]
    assert (problem.level, problem.code) == ("Error", "IST0002")
    return problem.message


def snippet(message: str) -> list[dict[str, Any]]:
    """The YAML after 'Equivalent today:'; it must itself be valid today."""
    body = textwrap.dedent(message.split("Equivalent today:\n", 1)[1])
    report = validate_documents(parse_text(body))
    assert report.errors == [], [p.format() for p in report.errors]
    return list(yaml.safe_load_all(body))


ROUTE_RULE = """\
apiVersion: config.istio.io/v1alpha2
kind: RouteRule
metadata:
  name: recommendation-v1-v2
spec:
  destination:
    namespace: tutorial
    name: recommendation
  precedence: 1
  match:
    request:
      headers:
        baggage-user-agent:
          regex: ".*Safari.*"
  route:
  - labels:
      version: v1
    weight: 90
  - labels:
      version: v2
    weight: 10
  httpReqTimeout:
    simpleTimeout:
      timeout: 1s
"""


def test_route_rule_becomes_virtual_service_and_destination_rule() -> None:
    message = only_error(ROUTE_RULE)
    assert message.startswith(
        "RouteRule (config.istio.io/v1alpha2) was removed from Istio (1.0): use VirtualService "
        "(+ DestinationRule subsets) instead. Equivalent today:\n"
    )
    vs, dr = snippet(message)
    assert vs["kind"] == "VirtualService" and dr["kind"] == "DestinationRule"
    http = vs["spec"]["http"][0]
    assert http["match"] == [{"headers": {"baggage-user-agent": {"regex": ".*Safari.*"}}}]
    assert [r["weight"] for r in http["route"]] == [90, 10]
    assert http["timeout"] == "1s"
    assert dr["spec"]["subsets"] == [
        {"name": "version-v1", "labels": {"version": "v1"}},
        {"name": "version-v2", "labels": {"version": "v2"}},
    ]


def test_route_rule_faults_retries_and_mirror() -> None:
    text = """\
apiVersion: config.istio.io/v1alpha2
kind: RouteRule
metadata: {name: recommendation-503}
spec:
  destination: {name: recommendation}
  httpFault:
    abort: {percent: 50, httpStatus: 503}
    delay: {percent: 50, fixedDelay: 7s}
  httpReqRetries:
    simpleRetry: {attempts: 3, perTryTimeout: 2s}
  mirror: {name: recommendation, labels: {version: v2}}
"""
    (vs, _dr) = snippet(only_error(text))
    http = vs["spec"]["http"][0]
    assert http["fault"] == {
        "delay": {"fixedDelay": "7s", "percentage": {"value": 50}},
        "abort": {"httpStatus": 503, "percentage": {"value": 50}},
    }
    assert http["retries"] == {"attempts": 3, "perTryTimeout": "2s"}
    assert http["mirror"] == {"host": "recommendation", "subset": "version-v2"}


def test_destination_policy_becomes_traffic_policy() -> None:
    text = """\
apiVersion: config.istio.io/v1alpha2
kind: DestinationPolicy
metadata: {name: recommendation-circuitbreaker}
spec:
  destination: {namespace: tutorial, name: recommendation, labels: {version: v2}}
  circuitBreaker:
    simpleCb: {maxConnections: 1, httpMaxPendingRequests: 1, sleepWindow: 2m, httpDetectionInterval: 1s,
               httpMaxEjectionPercent: 100, httpConsecutiveErrors: 1, httpMaxRequestsPerConnection: 1}
"""
    message = only_error(text)
    assert "use DestinationRule trafficPolicy (connectionPool/outlierDetection) instead" in message
    (dr,) = snippet(message)
    policy = dr["spec"]["subsets"][0]["trafficPolicy"]
    assert policy == {
        "connectionPool": {
            "tcp": {"maxConnections": 1},
            "http": {"http1MaxPendingRequests": 1, "maxRequestsPerConnection": 1},
        },
        "outlierDetection": {
            "consecutive5xxErrors": 1,
            "interval": "1s",
            "baseEjectionTime": "2m",
            "maxEjectionPercent": 100,
        },
    }


def test_egress_rule_becomes_service_entry() -> None:
    text = """\
apiVersion: config.istio.io/v1alpha2
kind: EgressRule
metadata: {name: httpbin-egress-rule}
spec:
  destination: {service: httpbin.org}
  ports: [{port: 80, protocol: http}]
"""
    (se,) = snippet(only_error(text))
    assert se["spec"] == {
        "hosts": ["httpbin.org"],
        "ports": [{"number": 80, "name": "http-80", "protocol": "HTTP"}],
        "location": "MESH_EXTERNAL",
        "resolution": "DNS",
    }


def test_mixer_denier_rule_becomes_deny_policy() -> None:
    text = """\
apiVersion: "config.istio.io/v1alpha2"
kind: rule
metadata: {name: denycustomer}
spec:
  match: destination.labels["app"] == "preference" && source.labels["app"]=="customer"
  actions:
  - handler: denycustomerhandler.denier
    instances: [ denycustomerrequests.checknothing ]
"""
    message = only_error(text)
    assert message.startswith(
        "rule (config.istio.io/v1alpha2) was removed from Istio (1.8, Mixer): "
        "use AuthorizationPolicy (deny/allow lists) instead."
    )
    (ap,) = snippet(message)
    assert ap["spec"] == {
        "selector": {"matchLabels": {"app": "preference"}},
        "action": "DENY",
        "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/tutorial/sa/customer"]}}]}],
    }


@pytest.mark.parametrize("kind", ["denier", "listchecker", "listentry", "checknothing"])
def test_mixer_access_kinds_point_to_authorization_policy(kind: str) -> None:
    message = only_error(f"apiVersion: config.istio.io/v1alpha2\nkind: {kind}\nmetadata: {{name: x}}\nspec:\n")
    assert "use AuthorizationPolicy (deny/allow lists) instead" in message


@pytest.mark.parametrize("kind", ["memquota", "quota", "QuotaSpec", "QuotaSpecBinding", "redisquota"])
def test_mixer_quota_kinds_point_to_local_rate_limit(kind: str) -> None:
    message = only_error(f"apiVersion: config.istio.io/v1alpha2\nkind: {kind}\nmetadata: {{name: q}}\nspec: {{}}\n")
    assert "use Envoy's local rate limit (an EnvoyFilter) for quotas and rate limits instead" in message
    assert "envoy.filters.http.local_ratelimit" in message


def test_memquota_limits_become_the_token_bucket() -> None:
    text = """\
apiVersion: config.istio.io/v1alpha2
kind: memquota
metadata: {name: handler, namespace: istio-system}
spec:
  quotas:
  - {name: requestcount.quota.istio-system, maxAmount: 1, validDuration: 1s}
"""
    message = only_error(text)
    bucket = yaml.safe_load(textwrap.dedent(message.split("Equivalent today:\n", 1)[1]))
    value = bucket["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["value"]
    assert value["token_bucket"] == {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "1s"}


def test_other_mixer_kinds_point_to_telemetry() -> None:
    message = only_error("apiVersion: config.istio.io/v1alpha2\nkind: metric\nmetadata: {name: m}\nspec: {}\n")
    assert "use the Telemetry API (metrics, access logs and traces are built into the sidecar)" in message


def test_authentication_policy_becomes_peer_and_request_authentication() -> None:
    text = """\
apiVersion: "authentication.istio.io/v1alpha1"
kind: "Policy"
metadata: {name: customerjwt, namespace: tutorial}
spec:
  targets:
  - name: customer
  peers:
  - mtls: {}
  origins:
  - jwt:
      issuer: "http://keycloak/auth/realms/istio"
      jwksUri: "http://keycloak/auth/realms/istio/protocol/openid-connect/certs"
      audiences: [customer-tutorial]
  principalBinding: USE_ORIGIN
"""
    message = only_error(text)
    assert message.startswith(
        "Policy (authentication.istio.io/v1alpha1) was removed from Istio (1.6): use "
        "PeerAuthentication (mTLS) + RequestAuthentication (JWT) instead."
    )
    pa, ra, ap = snippet(message)
    assert pa["spec"] == {"selector": {"matchLabels": {"app": "customer"}}, "mtls": {"mode": "STRICT"}}
    assert ra["spec"]["jwtRules"][0]["issuer"] == "http://keycloak/auth/realms/istio"
    assert ap["spec"]["rules"] == [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]


def test_mesh_policy_and_permissive_mode() -> None:
    text = """\
apiVersion: authentication.istio.io/v1alpha1
kind: MeshPolicy
metadata: {name: default}
spec:
  peers:
  - mtls: {mode: PERMISSIVE}
"""
    (pa,) = snippet(only_error(text))
    assert pa["metadata"] == {"name": "default", "namespace": "istio-system"}
    assert pa["spec"] == {"mtls": {"mode": "PERMISSIVE"}}


def test_rbac_kinds_become_authorization_policies() -> None:
    role = """\
apiVersion: "rbac.istio.io/v1alpha1"
kind: ServiceRole
metadata: {name: service-viewer, namespace: tutorial}
spec:
  rules:
  - services: ["*"]
    methods: ["GET"]
"""
    (ap,) = snippet(only_error(role))
    assert ap["spec"] == {"action": "ALLOW", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}
    binding = """\
apiVersion: "rbac.istio.io/v1alpha1"
kind: ServiceRoleBinding
metadata: {name: bind-service-viewer, namespace: tutorial}
spec:
  subjects:
  - user: "cluster.local/ns/tutorial/sa/customer"
    properties:
      request.auth.claims[role]: customer
  roleRef: {kind: ServiceRole, name: service-viewer}
"""
    (ap,) = snippet(only_error(binding))
    assert ap["spec"]["rules"] == [
        {
            "from": [{"source": {"principals": ["cluster.local/ns/tutorial/sa/customer"]}}],
            "when": [{"key": "request.auth.claims[role]", "values": ["customer"]}],
        }
    ]
    config = (
        "apiVersion: rbac.istio.io/v1alpha1\nkind: ClusterRbacConfig\nmetadata: {name: default}\nspec:\n"
        "  mode: ON_WITH_INCLUSION\n  inclusion: {namespaces: [tutorial]}\n"
    )
    message = only_error(config)
    assert message.startswith(
        "ClusterRbacConfig (rbac.istio.io/v1alpha1) was removed from Istio (1.6): use AuthorizationPolicy instead."
    )
    (ap,) = snippet(message)
    assert ap["metadata"]["name"] == "allow-nothing" and ap["spec"] == {}


def test_legacy_problem_is_located_at_the_kind_line() -> None:
    report = validate("# the book\n" + ROUTE_RULE, source="route-rule.yml")
    problem = report.errors[0]
    assert (problem.source, problem.line, problem.kind, problem.name, problem.field) == (
        "route-rule.yml",
        3,
        "RouteRule",
        "recommendation-v1-v2",
        "",
    )
    assert problem.format().startswith(
        "error: route-rule.yml, document 1 (line 3): RouteRule tutorial/recommendation-v1-v2: RouteRule "
        "(config.istio.io/v1alpha2) was removed from Istio (1.0)"
    )
