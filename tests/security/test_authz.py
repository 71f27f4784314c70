"""AuthorizationPolicy: the tutorial's chain request by request, precedence, every field kind."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from meshkit.backends.local.proxy.authz import (
    DENIED_BODY,
    DENIED_DETAILS_NONE,
    DENIED_STATUS,
    AuthzPolicySet,
    AuthzRequest,
    compile_policies,
)
from meshkit.errors import InvalidConfig

GATEWAY = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
SA = "cluster.local/ns/tutorial/sa/"
LABELS = {
    "customer": {"app": "customer", "version": "v1"},
    "preference": {"app": "preference", "version": "v1"},
    "recommendation": {"app": "recommendation", "version": "v1"},
}

# The tutorial's istiofiles (chapter 7, authorization), as YAML.
DENY_ALL = """
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: tutorial}
spec: {}
"""
ALLOW_CUSTOMER = """
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: allow-customer, namespace: tutorial}
spec:
  selector: {matchLabels: {app: customer}}
  rules:
  - to:
    - operation: {methods: ["GET"]}
"""
ALLOW_PREFERENCE = """
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: allow-preference, namespace: tutorial}
spec:
  selector: {matchLabels: {app: preference}}
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/tutorial/sa/customer"]}
    to:
    - operation: {methods: ["GET"]}
"""
ALLOW_RECOMMENDATION = """
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: allow-recommendation, namespace: tutorial}
spec:
  selector: {matchLabels: {app: recommendation}}
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/tutorial/sa/preference"]}
    to:
    - operation: {methods: ["GET"]}
"""


def load(*docs: str) -> list[dict[str, Any]]:
    return [yaml.safe_load(d) for d in docs]


def policy(name: str, spec: dict[str, Any], namespace: str = "tutorial") -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1beta1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def for_workload(resources: list[dict[str, Any]], app: str = "customer") -> AuthzPolicySet:
    return compile_policies(resources, "tutorial", LABELS[app])


def tutorial_call(resources: list[dict[str, Any]]) -> str:
    """What `curl $GATEWAY_URL/customer` prints: each callee's sidecar decides, each app wraps errors."""
    hops = [("customer", GATEWAY), ("preference", SA + "customer"), ("recommendation", SA + "preference")]
    for depth, (app, caller) in enumerate(hops):
        decision = for_workload(resources, app).evaluate(
            AuthzRequest(method="GET", path="/", host=app, port=8080, source_principal=caller)
        )
        if not decision.allowed:
            error = f"{DENIED_STATUS} - {DENIED_BODY.decode()}"
            return [
                "RBAC: access denied",
                f"customer => Error: {error}",
                f"customer => Error: 503 - preference => Error: {error}",
            ][depth]
    return "customer => preference => recommendation v1 from 'recommendation-v1-6cf5ff55d9-7zbj8': 1"


def test_the_tutorial_authorization_chain_step_by_step() -> None:
    steps = [
        (load(DENY_ALL), "RBAC: access denied"),
        (load(DENY_ALL, ALLOW_CUSTOMER), "customer => Error: 403 - RBAC: access denied"),
        (
            load(DENY_ALL, ALLOW_CUSTOMER, ALLOW_PREFERENCE),
            "customer => Error: 503 - preference => Error: 403 - RBAC: access denied",
        ),
        (
            load(DENY_ALL, ALLOW_CUSTOMER, ALLOW_PREFERENCE, ALLOW_RECOMMENDATION),
            "customer => preference => recommendation v1 from 'recommendation-v1-6cf5ff55d9-7zbj8': 1",
        ),
    ]
    for resources, expected in steps:
        assert tutorial_call(resources) == expected


def test_tutorial_chain_explanations() -> None:
    everything = load(DENY_ALL, ALLOW_CUSTOMER, ALLOW_PREFERENCE, ALLOW_RECOMMENDATION)
    denied = for_workload(load(DENY_ALL)).evaluate(AuthzRequest(source_principal=GATEWAY))
    assert denied.reason == "denied: no ALLOW policy matched (1 ALLOW policies: tutorial.deny-all)"
    assert denied.response_code_details == DENIED_DETAILS_NONE == "rbac_access_denied_matched_policy[none]"
    # curl preference:8080 from the recommendation pod
    from_recommendation = for_workload(everything, "preference").evaluate(
        AuthzRequest(method="GET", source_principal=SA + "recommendation")
    )
    assert not from_recommendation.allowed
    assert from_recommendation.reason == (
        "denied: no ALLOW policy matched (2 ALLOW policies: tutorial.allow-preference, tutorial.deny-all)"
    )
    allowed = for_workload(everything, "preference").evaluate(AuthzRequest(source_principal=SA + "customer"))
    assert (allowed.allowed, allowed.policy, allowed.rule) == (True, "tutorial.allow-preference", 0)
    assert allowed.reason == "allowed by ALLOW policy tutorial.allow-preference rule 0"
    # allow-customer only allows GET
    post = for_workload(everything).evaluate(AuthzRequest(method="POST", source_principal=GATEWAY))
    assert not post.allowed


def test_deny_takes_precedence_over_allow() -> None:
    resources = [
        policy("allow-all", {"rules": [{}]}),
        policy("deny-admin", {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]}),
    ]
    policies = for_workload(resources)
    denied = policies.evaluate(AuthzRequest(path="/admin/users"))
    assert (denied.allowed, denied.policy, denied.action, denied.rule) == (
        False,
        "tutorial.deny-admin",
        "DENY",
        0,
    )
    assert denied.reason == "denied by DENY policy tutorial.deny-admin rule 0"
    assert denied.response_code_details == (
        "rbac_access_denied_matched_policy[ns[tutorial]-policy[deny-admin]-rule[0]]"
    )
    assert policies.evaluate(AuthzRequest(path="/")).policy == "tutorial.allow-all"


def test_only_deny_policies_allow_the_rest_and_no_policy_allows_all() -> None:
    deny_only = for_workload(
        [policy("deny-post", {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["POST"]}}]}]})]
    )
    get = deny_only.evaluate(AuthzRequest(method="GET"))
    assert get.allowed and get.policy == "" and get.reason == "allowed: no ALLOW policy applies to this workload"
    assert not deny_only.evaluate(AuthzRequest(method="POST")).allowed
    assert AuthzPolicySet().evaluate(AuthzRequest()).reason == "allowed: no policy applies"


def test_deny_policy_without_rules_denies_nothing() -> None:
    assert for_workload([policy("deny-nothing", {"action": "DENY"})]).evaluate(AuthzRequest()).allowed


def test_audit_never_changes_the_decision() -> None:
    audit = policy("audit-get", {"action": "AUDIT", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]})
    alone = for_workload([audit]).evaluate(AuthzRequest(method="GET"))
    assert alone.allowed and alone.audited_by == "tutorial.audit-get"
    with_deny_all = for_workload([audit, yaml.safe_load(DENY_ALL)]).evaluate(AuthzRequest(method="GET"))
    assert not with_deny_all.allowed and with_deny_all.audited_by == "tutorial.audit-get"
    assert for_workload([audit]).evaluate(AuthzRequest(method="PUT")).audited_by == ""


def allow_rule(rule: dict[str, Any]) -> AuthzPolicySet:
    return for_workload([policy("p", {"rules": [rule]})])


def test_plaintext_callers_have_no_principal_or_namespace() -> None:
    by_principal = allow_rule({"from": [{"source": {"principals": ["*"]}}]})
    assert by_principal.evaluate(AuthzRequest(source_principal=SA + "customer")).allowed
    assert not by_principal.evaluate(AuthzRequest(source_principal="")).allowed
    by_namespace = allow_rule({"from": [{"source": {"namespaces": ["tutorial"]}}]})
    assert by_namespace.evaluate(AuthzRequest(source_principal=SA + "customer")).allowed
    assert not by_namespace.evaluate(AuthzRequest(source_principal="")).allowed
    # The documented way to require mTLS: DENY when notPrincipals ["*"] — it matches plaintext callers.
    require_mtls = for_workload(
        [
            policy(
                "require-mtls",
                {"action": "DENY", "rules": [{"from": [{"source": {"notPrincipals": ["*"]}}]}]},
            )
        ]
    )
    assert not require_mtls.evaluate(AuthzRequest(source_principal="")).allowed
    assert require_mtls.evaluate(AuthzRequest(source_principal=SA + "customer")).allowed


def test_request_principals_and_the_require_jwt_pattern() -> None:
    needs_jwt = allow_rule({"from": [{"source": {"requestPrincipals": ["testing@secure.istio.io/*"]}}]})
    assert needs_jwt.evaluate(AuthzRequest(request_principal="testing@secure.istio.io/testing@secure.istio.io")).allowed
    assert not needs_jwt.evaluate(AuthzRequest(request_principal="")).allowed
    assert not needs_jwt.evaluate(AuthzRequest(request_principal="other/testing@secure.istio.io")).allowed
    deny_without_jwt = for_workload(
        [policy("jwt", {"action": "DENY", "rules": [{"from": [{"source": {"notRequestPrincipals": ["*"]}}]}]})]
    )
    assert not deny_without_jwt.evaluate(AuthzRequest()).allowed
    assert deny_without_jwt.evaluate(AuthzRequest(request_principal="iss/sub")).allowed


def test_not_fields() -> None:
    rule = {
        "from": [{"source": {"notNamespaces": ["untrusted"], "notPrincipals": [SA + "recommendation"]}}],
        "to": [{"operation": {"notMethods": ["DELETE"], "notPaths": ["/private*"], "notPorts": ["9000"]}}],
    }
    policies = allow_rule(rule)
    ok = AuthzRequest(method="GET", path="/", port=8080, source_principal=SA + "customer")
    assert policies.evaluate(ok).allowed
    for bad in (
        AuthzRequest(method="DELETE", path="/", port=8080, source_principal=SA + "customer"),
        AuthzRequest(method="GET", path="/private/x", port=8080, source_principal=SA + "customer"),
        AuthzRequest(method="GET", path="/", port=9000, source_principal=SA + "customer"),
        AuthzRequest(method="GET", path="/", port=8080, source_principal="cluster.local/ns/untrusted/sa/x"),
        AuthzRequest(method="GET", path="/", port=8080, source_principal=SA + "recommendation"),
    ):
        assert not policies.evaluate(bad).allowed, bad


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        ("/customer", ["/customer", "/customer?x=1"], ["/customer/", "/Customer", "/customers"]),
        ("/api/*", ["/api/", "/api/v1/users"], ["/api", "/apix"]),
        ("*.png", ["/img/logo.png", ".png"], ["/img/logo.png/x", "/png"]),
        ("*", ["/", "/anything"], []),
    ],
)
def test_path_wildcards(pattern: str, matching: list[str], not_matching: list[str]) -> None:
    policies = allow_rule({"to": [{"operation": {"paths": [pattern]}}]})
    for path in matching:
        assert policies.evaluate(AuthzRequest(path=path)).allowed, path
    for path in not_matching:
        assert not policies.evaluate(AuthzRequest(path=path)).allowed, path


def test_hosts_match_case_insensitively_with_or_without_port() -> None:
    policies = allow_rule(
        {"to": [{"operation": {"hosts": ["customer.example.com", "*.tutorial.svc.cluster.local", "preference:8080"]}}]}
    )
    assert policies.evaluate(AuthzRequest(host="Customer.Example.COM", port=80)).allowed
    assert policies.evaluate(AuthzRequest(host="preference.tutorial.svc.cluster.local", port=8080)).allowed
    assert policies.evaluate(AuthzRequest(host="preference", port=8080)).allowed
    assert not policies.evaluate(AuthzRequest(host="preference", port=9090)).allowed
    assert not policies.evaluate(AuthzRequest(host="evil.example.com", port=80)).allowed


def test_when_claims_like_the_tutorial_rbac_with_jwt() -> None:
    rbac = {
        "from": [{"source": {"requestPrincipals": ["testing@secure.istio.io/testing@secure.istio.io"]}}],
        "when": [{"key": "request.auth.claims[role]", "values": ["customer"]}],
    }
    policies = compile_policies(
        [policy("customerjwt", {"selector": {"matchLabels": {"app": "customer"}}, "rules": [rbac]})],
        "tutorial",
        LABELS["customer"],
    )
    principal = "testing@secure.istio.io/testing@secure.istio.io"
    assert policies.evaluate(AuthzRequest(request_principal=principal, claims={"role": "customer"})).allowed
    assert not policies.evaluate(AuthzRequest(request_principal=principal, claims={"role": "xxx"})).allowed
    assert not policies.evaluate(AuthzRequest(request_principal=principal, claims={})).allowed


def test_when_nested_and_list_claims_audiences_presenter() -> None:
    policies = allow_rule(
        {
            "when": [
                {"key": "request.auth.claims[groups]", "values": ["admins", "dev*"]},
                {"key": "request.auth.claims[realm][tier]", "notValues": ["free"]},
                {"key": "request.auth.audiences", "values": ["customer"]},
                {"key": "request.auth.presenter", "values": ["lab-*"]},
            ]
        }
    )
    good: dict[str, Any] = {
        "groups": ["users", "developers"],
        "realm": {"tier": "gold"},
        "aud": ["x", "customer"],
        "azp": "lab-ui",
    }
    assert policies.evaluate(AuthzRequest(claims=good)).allowed
    change: dict[str, Any]
    for change in (
        {"groups": ["users"]},
        {"groups": "admins-not"},
        {"realm": {"tier": "free"}},
        {"aud": "other"},
        {"azp": "web"},
        {"groups": 7},
    ):
        assert not policies.evaluate(AuthzRequest(claims={**good, **change})).allowed, change
    assert policies.evaluate(AuthzRequest(claims={**good, "groups": "admins", "aud": "customer"})).allowed


def test_when_headers_ips_ports_and_principals() -> None:
    policies = allow_rule(
        {
            "when": [
                {"key": "request.headers[X-User]", "values": ["alice", "bob"]},
                {"key": "source.ip", "values": ["10.0.0.0/8", "127.0.0.1"]},
                {"key": "remote.ip", "notValues": ["192.168.1.0/24"]},
                {"key": "destination.port", "values": ["8080"]},
                {"key": "source.namespace", "values": ["tutorial"]},
                {"key": "source.principal", "values": ["*/sa/customer"]},
            ]
        }
    )
    base: dict[str, Any] = dict(
        headers={"x-user": "alice"},
        source_ip="10.1.2.3",
        remote_ip="8.8.8.8",
        port=8080,
        source_principal=SA + "customer",
    )
    assert policies.evaluate(AuthzRequest(**base)).allowed
    change: dict[str, Any]
    for change in (
        {"headers": {"x-user": "eve"}},
        {"headers": {}},
        {"source_ip": "11.0.0.1"},
        {"remote_ip": "192.168.1.20"},
        {"port": 9080},
        {"source_principal": SA + "preference"},
        {"source_principal": "cluster.local/ns/other/sa/customer"},
        {"source_ip": "not-an-ip"},
    ):
        assert not policies.evaluate(AuthzRequest(**{**base, **change})).allowed, change
    # remote.ip defaults to the direct peer when no forwarded client address is known
    assert not policies.evaluate(AuthzRequest(**{**base, "remote_ip": "", "source_ip": "192.168.1.5"})).allowed


def test_ip_blocks() -> None:
    policies = allow_rule(
        {
            "from": [
                {
                    "source": {
                        "ipBlocks": ["10.0.0.0/16", "2001:db8::/32", "127.0.0.1"],
                        "notIpBlocks": ["10.0.5.0/24"],
                    }
                }
            ]
        }
    )
    for ip, allowed in [
        ("10.0.1.1", True),
        ("10.0.5.7", False),
        ("10.1.0.1", False),
        ("2001:db8::1", True),
        ("127.0.0.1", True),
        ("127.0.0.2", False),
        ("", False),
    ]:
        assert policies.evaluate(AuthzRequest(source_ip=ip)).allowed is allowed, ip
    remote = allow_rule({"from": [{"source": {"remoteIpBlocks": ["203.0.113.0/24"]}}]})
    assert remote.evaluate(AuthzRequest(source_ip="127.0.0.1", remote_ip="203.0.113.9")).allowed
    assert not remote.evaluate(AuthzRequest(source_ip="203.0.113.9", remote_ip="127.0.0.1")).allowed


def test_rules_and_sources_combine_with_or_and_fields_with_and() -> None:
    policies = allow_rule(
        {
            "from": [
                {"source": {"namespaces": ["tutorial"], "principals": [SA + "customer"]}},
                {"source": {"ipBlocks": ["10.0.0.0/8"]}},
            ],
            "to": [{"operation": {"methods": ["GET"], "paths": ["/"]}}],
        }
    )
    assert policies.evaluate(AuthzRequest(source_principal=SA + "customer")).allowed
    assert policies.evaluate(AuthzRequest(source_ip="10.9.9.9")).allowed
    assert not policies.evaluate(AuthzRequest(source_principal=SA + "preference")).allowed
    assert not policies.evaluate(AuthzRequest(source_ip="10.9.9.9", path="/other")).allowed


def test_selection_by_namespace_selector_and_root_namespace() -> None:
    resources = [
        policy("ns-wide", {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/ns"]}}]}]}),
        policy(
            "for-preference",
            {
                "action": "DENY",
                "selector": {"matchLabels": {"app": "preference"}},
                "rules": [{"to": [{"operation": {"paths": ["/pref"]}}]}],
            },
        ),
        policy(
            "mesh-wide",
            {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/mesh"]}}]}]},
            namespace="istio-system",
        ),
        policy("elsewhere", {"action": "DENY", "rules": [{}]}, namespace="other"),
    ]
    customer = for_workload(resources, "customer")
    assert [p.key for p in customer.deny] == ["istio-system.mesh-wide", "tutorial.ns-wide"]
    assert not customer.evaluate(AuthzRequest(path="/mesh")).allowed
    assert not customer.evaluate(AuthzRequest(path="/ns")).allowed
    assert customer.evaluate(AuthzRequest(path="/pref")).allowed
    assert not for_workload(resources, "preference").evaluate(AuthzRequest(path="/pref")).allowed


def test_custom_and_target_ref_policies_are_reported_not_applied() -> None:
    resources = [
        policy("ext-authz", {"action": "CUSTOM", "provider": {"name": "opa"}, "rules": [{}]}),
        policy("gw", {"targetRefs": [{"kind": "Gateway", "name": "gw"}], "rules": [{}]}),
    ]
    policies = for_workload(resources)
    assert policies.allow == () and policies.deny == ()
    assert policies.evaluate(AuthzRequest()).allowed
    assert len(policies.warnings) == 2
    assert "AuthorizationPolicy tutorial/ext-authz: action CUSTOM (provider 'opa')" in policies.warnings[0]
    assert "not sidecars" in policies.warnings[1]


def test_tcp_connections_drop_http_only_allow_rules_and_broaden_deny_rules() -> None:
    allow = allow_rule({"to": [{"operation": {"ports": ["3306"], "methods": ["GET"]}}]})
    assert allow.evaluate(AuthzRequest(method="GET", port=3306)).allowed
    assert not allow.evaluate(AuthzRequest(port=3306, protocol="tcp")).allowed
    tcp_allow = allow_rule({"to": [{"operation": {"ports": ["3306"]}}]})
    assert tcp_allow.evaluate(AuthzRequest(port=3306, protocol="tcp")).allowed
    deny = for_workload(
        [
            policy(
                "deny",
                {
                    "action": "DENY",
                    "rules": [{"to": [{"operation": {"ports": ["3306"], "paths": ["/admin"]}}]}],
                },
            )
        ]
    )
    assert deny.evaluate(AuthzRequest(path="/", port=3306)).allowed  # HTTP: the path must match
    assert not deny.evaluate(AuthzRequest(port=3306, protocol="tcp")).allowed  # TCP: path ignored
    assert deny.evaluate(AuthzRequest(port=5432, protocol="tcp")).allowed


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"action": "REJECT"}, "AuthorizationPolicy tutorial/bad: action 'REJECT' is not one of"),
        (
            {"rules": [{"when": [{"key": "request.time", "values": ["x"]}]}]},
            "tutorial/bad: rules[0].when[0]: unknown condition key 'request.time'",
        ),
        (
            {"rules": [{"when": [{"key": "source.ip"}]}]},
            "rules[0].when[0]: condition 'source.ip' needs values",
        ),
        (
            {"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.300/8"]}}]}]},
            "rules[0].from[0].source.ipBlocks: '10.0.0.300/8' is not an IP address or CIDR block",
        ),
        (
            {"rules": [{"to": [{"operation": {"ports": ["http"]}}]}]},
            "rules[0].to[0].operation.ports: 'http' is not a port number",
        ),
        ({"rules": [{"to": [{"operation": {"verbs": ["GET"]}}]}]}, "unknown operation field 'verbs'"),
        ({"rules": [{"from": [{"source": {"users": ["x"]}}]}]}, "unknown source field 'users'"),
        ({"rules": [{"from": [{"principals": ["x"]}]}]}, "rules[0].from[0]: needs a source"),
        ({"rules": [{"to": [{"operation": {"paths": "/x"}}]}]}, "operation.paths: must be a list"),
        ({"rules": {"to": []}}, "spec.rules must be a list"),
    ],
)
def test_bad_policies_are_located_errors(spec: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidConfig) as err:
        for_workload([policy("bad", spec)])
    assert fragment in str(err.value)


def test_request_repr_leaks_no_tokens() -> None:
    req = AuthzRequest(
        headers={"authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.secret.sig"},
        claims={"sub": "alice"},
        request_principal="iss/alice",
    )
    assert "eyJ" not in repr(req) and "secret" not in repr(req)
    assert "request_principal='iss/alice'" in repr(req)


def test_other_kinds_are_ignored() -> None:
    assert (
        for_workload(
            [
                {
                    "kind": "PeerAuthentication",
                    "metadata": {"name": "x", "namespace": "tutorial"},
                    "spec": {"mtls": {"mode": "STRICT"}},
                }
            ]
        )
        == AuthzPolicySet()
    )


def test_service_accounts_and_trust_domains() -> None:
    """serviceAccounts ("sa" in the policy's namespace, or "ns/sa") and trustDomains, as Istio matches them."""
    by_sa = for_workload([policy("by-sa", {"rules": [{"from": [{"source": {"serviceAccounts": ["preference"]}}]}]})])
    assert by_sa.evaluate(AuthzRequest(source_principal=SA + "preference")).allowed
    assert not by_sa.evaluate(AuthzRequest(source_principal=SA + "customer")).allowed
    assert not by_sa.evaluate(AuthzRequest(source_principal="cluster.local/ns/other/sa/preference")).allowed
    qualified = for_workload(
        [policy("by-ns-sa", {"rules": [{"from": [{"source": {"notServiceAccounts": ["other/preference"]}}]}]})]
    )
    assert qualified.evaluate(AuthzRequest(source_principal=SA + "preference")).allowed
    assert not qualified.evaluate(AuthzRequest(source_principal="cluster.local/ns/other/sa/preference")).allowed
    by_td = for_workload([policy("by-td", {"rules": [{"from": [{"source": {"trustDomains": ["*.local"]}}]}]})])
    assert by_td.evaluate(AuthzRequest(source_principal=SA + "customer")).allowed
    assert not by_td.evaluate(AuthzRequest(source_principal="example.org/ns/tutorial/sa/customer")).allowed
    when = for_workload(
        [policy("when-sa", {"rules": [{"when": [{"key": "source.serviceAccount", "values": ["tutorial/customer"]}]}]})]
    )
    assert when.evaluate(AuthzRequest(source_principal=SA + "customer")).allowed
    assert not when.evaluate(AuthzRequest(source_principal=SA + "preference")).allowed
