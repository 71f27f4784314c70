"""PeerAuthentication, AuthorizationPolicy and RequestAuthentication validation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.resources.helpers import doc, errors


def pa(spec: dict[str, object]) -> str:
    return doc("PeerAuthentication", spec, name="default")


def ap(spec: dict[str, object]) -> str:
    return doc("AuthorizationPolicy", spec, name="policy")


def ra(spec: dict[str, Any]) -> str:
    return doc("RequestAuthentication", spec, name="jwt")


@pytest.mark.parametrize("mode", ["UNSET", "DISABLE", "PERMISSIVE", "STRICT"])
def test_peer_authentication_modes(mode: str) -> None:
    assert errors(pa({"mtls": {"mode": mode}})) == []


def test_peer_authentication_bad_mode() -> None:
    assert errors(pa({"mtls": {"mode": "ON"}})) == [
        ("spec.mtls.mode", 'unsupported value "ON": supported values: "UNSET", "DISABLE", "PERMISSIVE", "STRICT"')
    ]


def test_port_level_mtls_requires_selector() -> None:
    assert errors(pa({"mtls": {"mode": "STRICT"}, "portLevelMtls": {8080: {"mode": "DISABLE"}}})) == [
        (
            "spec.portLevelMtls",
            "portLevelMtls requires selector: mesh/namespace peer authentication cannot have port level mTLS",
        )
    ]
    spec = {"selector": {"matchLabels": {"app": "recommendation"}}, "portLevelMtls": {8080: {"mode": "DISABLE"}}}
    assert errors(pa(spec)) == []
    spec["portLevelMtls"] = {"http": {"mode": "DISABLE"}}
    assert errors(pa(spec)) == [("spec.portLevelMtls.http", 'port "http" in portLevelMtls is not a port number')]


def test_authorization_policy_full_shape() -> None:
    rule = {
        "from": [
            {
                "source": {
                    "principals": ["cluster.local/ns/tutorial/sa/customer"],
                    "namespaces": ["tutorial"],
                    "ipBlocks": ["10.0.0.0/8"],
                    "notRequestPrincipals": ["*"],
                }
            }
        ],
        "to": [{"operation": {"methods": ["GET"], "paths": ["/"], "ports": ["8080"], "hosts": ["preference"]}}],
        "when": [
            {"key": "request.headers[x-lab]", "values": ["1"]},
            {"key": "source.ip", "notValues": ["1.2.3.4"]},
            {"key": "request.auth.claims[groups][admin]", "values": ["true"]},
        ],
    }
    assert errors(ap({"selector": {"matchLabels": {"app": "preference"}}, "action": "DENY", "rules": [rule]})) == []


def test_action_and_custom_provider() -> None:
    assert errors(ap({"action": "REJECT"}))[0][0] == "spec.action"
    assert errors(ap({"action": "CUSTOM", "rules": [{}]})) == [("spec.provider", "`provider.name` must not be empty")]
    assert errors(ap({"action": "CUSTOM", "provider": {"name": "ext-authz"}, "rules": [{}]})) == []


def test_condition_keys_are_istio_attributes() -> None:
    got = errors(ap({"rules": [{"when": [{"key": "source.labels[app]", "values": ["customer"]}]}]}))
    # Istio checks the key with values and with notValues, so an unknown key is reported twice
    assert got == [
        (
            "spec.rules[0].when[0].values",
            "invalid `value` for `key` source.labels[app]: unknown attribute: source.labels[app]",
        ),
        (
            "spec.rules[0].when[0].notValues",
            "invalid `notValue` for `key` source.labels[app]: unknown attribute: source.labels[app]",
        ),
    ]
    assert errors(ap({"rules": [{"when": [{"key": "request.auth.claims[role]"}]}]})) == [
        (
            "spec.rules[0].when[0]",
            "at least one of `values` or `notValues` must be set for key request.auth.claims[role]",
        )
    ]
    assert errors(ap({"rules": [{"when": [{"key": "destination.port", "values": ["http"]}]}]})) == [
        (
            "spec.rules[0].when[0].values",
            'invalid `value` for `key` destination.port: bad port (http): strconv.ParseUint: parsing "http": invalid '
            "syntax",
        )
    ]


def test_empty_strings_and_empty_sections_are_rejected() -> None:
    assert errors(ap({"rules": [{"from": [{"source": {"principals": [""]}}]}]})) == [
        ("spec.rules[0].from[0].source.principals", "empty value not allowed, found in Principals")
    ]
    assert errors(ap({"rules": [{"to": [{"operation": {}}]}]})) == [
        ("spec.rules[0].to[0].operation", "`to.operation` must not be empty, found at rule 0")
    ]
    assert errors(ap({"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/33"]}}]}]})) == [
        (
            "spec.rules[0].from[0].source.ipBlocks",
            'bad CIDR range (10.0.0.0/33): netip.ParsePrefix("10.0.0.0/33"): bad prefix',
        )
    ]


def test_selector_and_target_ref_are_exclusive() -> None:
    ref = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "g"}
    spec = {"selector": {"matchLabels": {"app": "x"}}, "targetRef": ref}
    assert errors(ap(spec)) == [("spec", "only one of targetRefs or selector can be set")]


def test_authorization_policy_is_security_group_only() -> None:
    text = ap({}).replace("security.istio.io/v1", "networking.istio.io/v1")
    assert errors(text) == [
        (
            "apiVersion",
            'no matches for kind "AuthorizationPolicy" in version '
            '"networking.istio.io/v1": served versions are security.istio.io/v1, security.istio.io/v1beta1',
        )
    ]


def test_request_authentication_rules() -> None:
    jwks = json.dumps({"keys": [{"kty": "RSA", "e": "AQAB", "n": "abc"}]})
    good = {
        "selector": {"matchLabels": {"app": "customer"}},
        "jwtRules": [
            {
                "issuer": "testing@secure.istio.io",
                "jwks": jwks,
                "audiences": ["customer"],
                "forwardOriginalToken": True,
                "fromHeaders": [{"name": "x-jwt", "prefix": "Bearer "}],
                "fromParams": ["token"],
                "outputPayloadToHeader": "x-payload",
            }
        ],
    }
    assert errors(ra(good)) == []
    assert errors(ra({"jwtRules": [{"jwksUri": "https://example.com/jwks.json"}]})) == []
    assert errors(ra({"jwtRules": [{"audiences": ["customer"]}]})) == [
        ("spec.jwtRules[0]", "issuer or jwksUri must be non-empty string")
    ]


def test_request_authentication_jwks_and_uri() -> None:
    assert errors(ra({"jwtRules": [{"issuer": "i", "jwks": "{not json"}]})) == [
        (
            "spec.jwtRules[0].jwks",
            "jwks parse error: failed to unmarshal JWK set: Expecting property name enclosed in double quotes "
            "(line 1, column 2)",
        )
    ]
    assert errors(ra({"jwtRules": [{"issuer": "i", "jwks": '{"k": []}'}]})) == [
        ("spec.jwtRules[0].jwks", "jwks parse error: failed to parse a JWK: missing kty")
    ]
    assert errors(ra({"jwtRules": [{"issuer": "i", "jwksUri": "gist/jwks.json"}]})) == [
        ("spec.jwtRules[0].jwksUri", "url must have scheme http:// or https://")
    ]
    assert errors(ra({"jwtRules": [{"issuer": "i", "fromHeaders": [{"prefix": "Bearer "}]}]})) == [
        ("spec.jwtRules[0].fromHeaders[0].name", 'required field "name" is missing')
    ]
    assert errors(ra({"jwtRules": [{"issuer": "i", "jwks": '{"keys": []}', "jwksUri": "https://a/b"}]})) == [
        ("spec.jwtRules[0]", "only one of jwks or jwksUri can be set")
    ]
