"""ztunnel's AuthorizationPolicy: each L4 field and scope, and Istio 1.30's handling of HTTP fields."""

from __future__ import annotations

from typing import Any

import pytest

from meshkit.backends.local.ztunnel.policy import Peer, compile_policies, condition, evaluate

CUSTOMER = "spiffe://cluster.local/ns/tutorial/sa/customer"
CURL_OTHER_NS = "spiffe://cluster.local/ns/other/sa/curl"
PREFERENCE = Peer("tutorial", {"app": "preference", "version": "v1"}, 8080)


def policy(spec: dict[str, Any], name: str = "p", namespace: str = "tutorial") -> dict[str, Any]:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def allowed(spec: dict[str, Any], identity: str | None = CUSTOMER, ip: str = "127.0.0.1",
            peer: Peer = PREFERENCE, namespace: str = "tutorial") -> bool:
    return evaluate(compile_policies([policy(spec, namespace=namespace)]), peer, identity, ip).allowed


def allow_from(source: dict[str, Any]) -> dict[str, Any]:
    return {"action": "ALLOW", "rules": [{"from": [{"source": source}]}]}


@pytest.mark.parametrize(("source", "customer", "other"), [
    ({"principals": ["cluster.local/ns/tutorial/sa/customer"]}, True, False),
    ({"principals": ["*/sa/curl"]}, False, True),
    ({"notPrincipals": ["cluster.local/ns/tutorial/sa/customer"]}, False, True),
    ({"namespaces": ["tutorial"]}, True, False),
    ({"notNamespaces": ["tutorial"]}, False, True),
    ({"serviceAccounts": ["tutorial/customer"]}, True, False),
    ({"notServiceAccounts": ["tutorial/customer"]}, False, True),
])
def test_each_l4_source_field(source: dict[str, Any], customer: bool, other: bool) -> None:
    assert allowed(allow_from(source), CUSTOMER) is customer
    assert allowed(allow_from(source), CURL_OTHER_NS) is other


def test_ip_blocks_ports_and_when_keys() -> None:
    assert allowed(allow_from({"ipBlocks": ["127.0.0.0/8"]}))
    assert not allowed(allow_from({"ipBlocks": ["10.0.0.0/8"]}))
    assert not allowed(allow_from({"notIpBlocks": ["127.0.0.1"]}))
    to = {"action": "ALLOW", "rules": [{"to": [{"operation": {"ports": ["8080"]}}]}]}
    assert allowed(to)
    assert not allowed({"action": "ALLOW", "rules": [{"to": [{"operation": {"ports": ["9080"]}}]}]})
    assert not allowed({"action": "ALLOW", "rules": [{"to": [{"operation": {"notPorts": ["8080"]}}]}]})
    for key, good, bad in (("source.ip", "127.0.0.1/32", "10.0.0.1"),
                           ("source.namespace", "tutorial", "other"),
                           ("source.principal", "cluster.local/ns/tutorial/sa/customer", "x"),
                           ("destination.ip", "127.0.0.1", "10.1.1.1"),
                           ("destination.port", "8080", "9080")):
        assert allowed({"rules": [{"when": [{"key": key, "values": [good]}]}]}), key
        assert not allowed({"rules": [{"when": [{"key": key, "values": [bad]}]}]}), key
        assert not allowed({"rules": [{"when": [{"key": key, "notValues": [good]}]}]}), key


def test_scopes_selector_namespace_root_and_target_refs() -> None:
    deny_all = {"action": "DENY", "rules": [{}]}
    assert not allowed(deny_all)  # namespace-wide
    assert allowed(deny_all, namespace="other")  # another namespace's policy does not apply
    assert not allowed(deny_all, namespace="istio-system")  # the root namespace's applies mesh-wide
    assert not allowed({**deny_all, "selector": {"matchLabels": {"app": "preference"}}})
    assert allowed({**deny_all, "selector": {"matchLabels": {"app": "customer"}}})
    # targetRefs policies are for waypoints: ztunnel never sees them
    assert allowed({**deny_all, "targetRefs": [{"kind": "Service", "group": "", "name": "preference"}]})
    [p] = compile_policies([policy({**deny_all, "selector": {"matchLabels": {"app": "x"}}}),
                            policy(deny_all, namespace="istio-system")][:1])
    assert (p.action, p.scope) == ("Deny", "WorkloadSelector")
    assert compile_policies([policy(deny_all, namespace="istio-system")])[0].scope == "Global"
    assert compile_policies([policy({"action": "AUDIT", "rules": [{}]})]) == []


def test_allow_nothing_and_deny_reasons() -> None:
    assert evaluate(compile_policies([policy({})]), PREFERENCE, CUSTOMER, "127.0.0.1").reason == \
        "allow policies exist, but none allowed"
    d = evaluate(compile_policies([policy({"action": "DENY", "rules": [{}]}, name="deny-all")]), PREFERENCE,
                 CUSTOMER, "127.0.0.1")
    assert (d.allowed, d.reason) == (False, "explicitly denied by: tutorial/deny-all")


def test_http_fields_in_allow_drop_the_rule_so_everything_is_denied() -> None:
    customer = {"source": {"principals": ["cluster.local/ns/tutorial/sa/customer"]}}
    spec = {"action": "ALLOW", "rules": [{"from": [customer], "to": [{"operation": {"methods": ["GET"]}}]}]}
    assert not allowed(spec)
    assert condition(policy(spec)) == {
        "type": "ZtunnelAccepted", "status": "True", "reason": "UnsupportedValue",
        "message": "ztunnel does not support HTTP attributes (found: methods). In ambient mode you must use a "
                   "waypoint proxy to enforce HTTP rules. Within an ALLOW policy, rules matching HTTP attributes "
                   "are omitted. This will be more restrictive than requested."}
    # the rules without HTTP fields stay
    same_namespace = {"from": [{"source": {"namespaces": ["tutorial"]}}]}
    assert allowed({"action": "ALLOW", "rules": [spec["rules"][0], same_namespace]})


def test_http_only_deny_has_no_effect_in_1_30_and_mixed_deny_keeps_its_l4_part() -> None:
    only_http = {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["POST"], "paths": ["/x"]}}],
                                              "when": [{"key": "request.headers[x-user]", "values": ["a"]}]}]}
    assert allowed(only_http)  # the empty match ztunnel skips
    assert condition(policy(only_http))["message"] == (
        "ztunnel does not support HTTP attributes (found: methods, paths, request.headers[x-user]). In ambient "
        "mode you must use a waypoint proxy to enforce HTTP rules. DENY policy with HTTP attributes is enforced "
        "without the HTTP rules. This will be more restrictive than requested.")
    mixed = {"action": "DENY", "rules": [{"from": [{"source": {"namespaces": ["tutorial"],
                                                               "requestPrincipals": ["*"]}}],
                                          "to": [{"operation": {"methods": ["POST"]}}]}]}
    assert not allowed(mixed)  # denied for every method: more restrictive than requested
    assert allowed(mixed, CURL_OTHER_NS)


def test_conditions_for_clean_unsupported_action_and_target_refs() -> None:
    assert condition(policy({"action": "ALLOW", "rules": [{}]})) == {
        "type": "ZtunnelAccepted", "status": "True", "reason": "Accepted", "message": "attached to ztunnel"}
    assert condition(policy({"action": "AUDIT", "rules": [{}]}))["message"] == \
        "ztunnel does not support the AUDIT action"
    assert condition(policy({"targetRefs": [{"kind": "Service", "group": "", "name": "x"}]})) is None
