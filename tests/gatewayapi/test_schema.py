"""Gateway API validation: the v1.5 CRDs' OpenAPI rules and CEL constraints, located like Istio's kinds."""

from __future__ import annotations

import pytest

from meshkit.resources import parse_text, validate_documents
from meshkit.resources.gatewayapi.schema import EXPERIMENTAL_ENV

HEAD = """apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: r
spec:
  parentRefs:
  - {group: "", kind: Service, name: recommendation, port: 8080}
  rules:
"""


def errors(text: str) -> list[str]:
    return [p.format() for p in validate_documents(parse_text(text, "r.yaml")).errors]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("  - backendRefs: [{name: a, port: 8080, weight: 1000001}]\n",
         "error: r.yaml, document 1 (line 9): HTTPRoute tutorial/r: spec.rules[0].backendRefs[0].weight: Invalid "
         "value: 1000001: spec.rules[0].backendRefs[0].weight in body should be less than or equal to 1000000"),
        ("  - backendRefs: [{name: a}]\n",
         'spec.rules[0].backendRefs[0]: Invalid value: "object": Must have port for Service reference'),
        ("  - filters:\n    - {type: URLRewrite, urlRewrite: {hostname: x}}\n"
         "    - {type: RequestRedirect, requestRedirect: {statusCode: 301}}\n",
         'spec.rules[0].filters: Invalid value: "object": May specify either httpRouteFilterRequestRedirect or '
         "httpRouteFilterRequestRewrite, but not both"),
        ("  - filters: [{type: RequestRedirect, requestRedirect: {statusCode: 301}}]\n"
         "    backendRefs: [{name: a, port: 8080}]\n",
         'spec.rules[0]: Invalid value: "object": RequestRedirect filter must not be used together with backendRefs'),
        ("  - matches: [{path: {type: PathPrefix, value: foo}}]\n",
         "spec.rules[0].matches[0].path: Invalid value: \"object\": value must be an absolute path and start with '/' "
         "when type one of ['Exact', 'PathPrefix']"),
        ("  - matches: [{path: {type: Prefix, value: /}}]\n",
         'spec.rules[0].matches[0].path.type: Unsupported value: "Prefix": supported values: "Exact", "PathPrefix", '
         '"RegularExpression"'),
        ("  - timeouts: {request: 1s, backendRequest: 2s}\n",
         'spec.rules[0].timeouts: Invalid value: "object": backendRequest timeout cannot be longer than request '
         "timeout"),
        ("  - timeouts: {request: 1.5s}\n",
         "spec.rules[0].timeouts.request: Invalid value: \"1.5s\": spec.rules[0].timeouts.request in body should "
         "match '^([0-9]{1,5}(h|m|s|ms)){1,4}$'"),
        ("  - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: a, port: 1}, percent: 5, "
         "fraction: {numerator: 1}}}]\n",
         'spec.rules[0].filters[0].requestMirror: Invalid value: "object": Only one of percent or fraction may be '
         "specified in HTTPRequestMirrorFilter"),
        ("  - filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]\n"
         "    matches: [{path: {type: Exact, value: /a}}]\n",
         'spec.rules[0]: Invalid value: "object": When using URLRewrite filter with path.replacePrefixMatch, '
         "exactly one PathPrefix match must be specified"),
        ("  - filters: [{type: CORS, cors: {allowOrigins: ['*', 'https://a.b']}}]\n",
         "spec.rules[0].filters[0].cors.allowOrigins: Invalid value: \"object\": AllowOrigins cannot contain '*' "
         "alongside other origins"),
        ("  - filters: [{type: RequestHeaderModifier}]\n",
         'spec.rules[0].filters[0]: Invalid value: "object": filter.requestHeaderModifier must be specified for '
         "RequestHeaderModifier filter.type"),
    ],
)
def test_crd_rules_with_the_api_servers_wording(rule: str, expected: str) -> None:
    found = errors(HEAD + rule)
    assert any(line.endswith(expected) for line in found), found


def test_experimental_fields_need_the_experimental_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    text = HEAD + "  - retry: {attempts: 3, codes: [503]}\n    backendRefs: [{name: a, port: 8080}]\n"
    monkeypatch.delenv(EXPERIMENTAL_ENV, raising=False)
    (line,) = errors(text)
    assert "spec.rules[0].retry: unknown field \"spec.rules[0].retry\": retry is an experimental-channel field" in line
    monkeypatch.setenv(EXPERIMENTAL_ENV, "experimental")
    assert errors(text) == []
    assert any("retry.codes[0]" in e and "greater than or equal to 400" in e
               for e in errors(text.replace("503", "302")))


def test_gateway_listener_rules_and_kind_lookup() -> None:
    gw = """apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: g}
spec:
  gatewayClassName: istio
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: http, port: 81, protocol: HTTP, tls: {mode: Terminate}}
"""
    found = errors(gw)
    assert any(e.endswith('spec.listeners: Invalid value: "object": Listener name must be unique within the Gateway')
               for e in found)
    assert any("tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']" in e for e in found)
    istio_gw = gw.replace("gateway.networking.k8s.io/v1", "networking.istio.io/v1")
    assert any('unknown field "gatewayClassName"' in e for e in errors(istio_gw))  # the group picks the kind
    udp = gw.replace("kind: Gateway", "kind: UDPRoute")
    assert any('kind "UDPRoute" (gateway.networking.k8s.io/v1) is a Gateway API kind the local mesh does not model'
               in e for e in errors(udp))


TCP_ROUTE = """apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata:
  name: tcp-echo
spec:
  parentRefs:
  - {name: tcp-echo-gateway, sectionName: tcp-31400}
  rules:
  - backendRefs: [{name: tcp-echo, port: 9000}]
"""


def test_tcp_routes_need_the_experimental_channel_and_tls_routes_are_standard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EXPERIMENTAL_ENV, raising=False)
    (line,) = errors(TCP_ROUTE)
    assert 'no matches for kind "TCPRoute" in version "gateway.networking.k8s.io/v1alpha2"' in line
    monkeypatch.setenv(EXPERIMENTAL_ENV, "experimental")
    assert errors(TCP_ROUTE) == []
    warnings = [p.format() for p in validate_documents(parse_text(TCP_ROUTE, "r.yaml")).warnings]
    assert any("TCPRoute is accepted and stored; the local mesh does not simulate" in w for w in warnings), warnings
    empty = errors(TCP_ROUTE.replace("[{name: tcp-echo, port: 9000}]", "[]"))
    assert len(empty) == 1 and "spec.rules[0].backendRefs" in empty[0], empty
    monkeypatch.delenv(EXPERIMENTAL_ENV, raising=False)
    tls = TCP_ROUTE.replace("v1alpha2", "v1").replace("TCPRoute", "TLSRoute")
    tls = tls.replace("  parentRefs:", "  hostnames: [echo.example.com]\n  parentRefs:")
    assert errors(tls) == []
    assert errors(tls.replace("echo.example.com", "Not_A_Host"))
