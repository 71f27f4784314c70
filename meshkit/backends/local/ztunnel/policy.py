"""AuthorizationPolicy as ztunnel enforces it: L4 fields only, and Istio 1.30's handling of the rest.

istiod converts each policy for ztunnel: selector and namespace-wide policies (and the root
namespace's, mesh-wide) reach it, ``targetRefs`` ones never do, only ALLOW and DENY apply. A field
ztunnel cannot see (``hosts``, ``methods``, ``paths``, ``requestPrincipals``, ``remoteIpBlocks``,
their ``not`` forms, any other ``when`` key) makes an ALLOW rule vanish (so an ALLOW policy whose
rules all vanish allows nothing) and is cut out of a DENY rule; in 1.30 a DENY rule that was *only*
HTTP fields becomes an empty match that ztunnel skips, so it has no effect. The policy's status
carries the ``ZtunnelAccepted`` condition with istiod's wording either way.

Example::

    policies = compile_policies(resources)
    decision = evaluate(policies, Peer("tutorial", {"app": "preference"}, 8080),
                        "spiffe://cluster.local/ns/tutorial/sa/customer", "127.0.0.1")
    decision.allowed, decision.reason
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ROOT_NAMESPACE = "istio-system"
L4_SOURCE = ("principals", "namespaces", "ipBlocks", "serviceAccounts")
L4_SOURCE_ALL = (*L4_SOURCE, *(f"not{f[0].upper()}{f[1:]}" for f in L4_SOURCE))
L7_SOURCE = ("requestPrincipals", "notRequestPrincipals", "remoteIpBlocks", "notRemoteIpBlocks")
L4_OPERATION = ("ports", "notPorts")
L7_OPERATION = ("hosts", "notHosts", "methods", "notMethods", "paths", "notPaths")
L4_WHEN = ("source.ip", "source.namespace", "source.principal", "destination.ip", "destination.port")

HTTP_FMT = ("ztunnel does not support HTTP attributes (found: {found}). "
            "In ambient mode you must use a waypoint proxy to enforce HTTP rules. {tail}")
DENY_TAIL = "DENY policy with HTTP attributes is enforced without the HTTP rules. " \
    "This will be more restrictive than requested."
ALLOW_TAIL = "Within an ALLOW policy, rules matching HTTP attributes are omitted. " \
    "This will be more restrictive than requested."


@dataclass(frozen=True)
class Peer:
    """The destination workload a connection is for."""

    namespace: str
    labels: Mapping[str, str]
    port: int = 8080
    address: str = "127.0.0.1"


@dataclass
class L4Policy:
    """A policy as ztunnel holds it (``istioctl ztunnel-config policies`` lists these)."""

    name: str
    namespace: str
    action: str  # Allow | Deny
    scope: str  # WorkloadSelector | Namespace | Global
    selector: dict[str, str] | None
    rules: list[dict[str, Any]] = field(default_factory=list)  # L4 rules; {} (stripped to nothing) is skipped

    def applies_to(self, peer: Peer) -> bool:
        if self.scope == "Namespace" and self.namespace != peer.namespace:
            return False
        if self.scope == "WorkloadSelector":
            if self.namespace not in (peer.namespace, ROOT_NAMESPACE):
                return False
            assert self.selector is not None
            return all(peer.labels.get(k) == v for k, v in self.selector.items())
        return True


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""  # ztunnel's wording for a denial


def condition(resource: Mapping[str, Any]) -> dict[str, str] | None:
    """The ``ZtunnelAccepted`` condition istiod writes on an AuthorizationPolicy (None: ztunnel's not involved)."""
    spec = resource.get("spec") or {}
    if spec.get("targetRefs") or spec.get("targetRef"):
        return None
    action = str(spec.get("action") or "ALLOW")
    if action not in ("ALLOW", "DENY"):
        return {"type": "ZtunnelAccepted", "status": "False", "reason": "UnsupportedValue",
                "message": f"ztunnel does not support the {action} action"}
    found: set[str] = set()
    for rule in spec.get("rules") or []:
        found.update(_http_fields(rule or {}))
    if found:
        tail = DENY_TAIL if action == "DENY" else ALLOW_TAIL
        return {"type": "ZtunnelAccepted", "status": "True", "reason": "UnsupportedValue",
                "message": HTTP_FMT.format(found=", ".join(sorted(found)), tail=tail)}
    return {"type": "ZtunnelAccepted", "status": "True", "reason": "Accepted", "message": "attached to ztunnel"}


def _http_fields(rule: Mapping[str, Any]) -> list[str]:
    out = []
    for entry in rule.get("from") or []:
        out += [f for f in L7_SOURCE if (entry or {}).get("source", {}).get(f)]
    for entry in rule.get("to") or []:
        out += [f for f in L7_OPERATION if (entry or {}).get("operation", {}).get(f)]
    out += [str(c.get("key")) for c in rule.get("when") or [] if c.get("key") not in L4_WHEN]
    return out


def _l4_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """The rule with its HTTP parts cut out (what a DENY keeps)."""
    out: dict[str, Any] = {}
    sources = [{f: v for f, v in (e or {}).get("source", {}).items() if f in L4_SOURCE_ALL}
               for e in rule.get("from") or []]
    if any(sources):
        out["from"] = [s for s in sources if s]
    ops = [{f: v for f, v in (e or {}).get("operation", {}).items() if f in L4_OPERATION} for e in rule.get("to") or []]
    if any(ops):
        out["to"] = [o for o in ops if o]
    when = [c for c in rule.get("when") or [] if c.get("key") in L4_WHEN]
    if when:
        out["when"] = when
    return out


def compile_policies(resources: Iterable[Mapping[str, Any]]) -> list[L4Policy]:
    """The AuthorizationPolicies ztunnel gets, converted as istiod converts them."""
    out = []
    for r in resources:
        if r.get("kind") != "AuthorizationPolicy":
            continue
        meta, spec = r.get("metadata") or {}, r.get("spec") or {}
        action = str(spec.get("action") or "ALLOW")
        if spec.get("targetRefs") or spec.get("targetRef") or action not in ("ALLOW", "DENY"):
            continue
        namespace = str(meta.get("namespace") or "default")
        selector = (spec.get("selector") or {}).get("matchLabels")
        scope = "WorkloadSelector" if selector else ("Global" if namespace == ROOT_NAMESPACE else "Namespace")
        rules: list[dict[str, Any]] = []
        for rule in spec.get("rules") or []:
            rule = rule or {}
            if _http_fields(rule):
                if action == "ALLOW":
                    continue  # the whole rule goes: the policy allows less than it says
                stripped = _l4_rule(rule)
                # 1.30: a DENY rule left with no L4 condition is an empty match, which matches nothing
                rules.append(stripped if stripped else {"empty": True})
            else:
                rules.append(_l4_rule(rule))
        out.append(L4Policy(str(meta.get("name")), namespace, action.title(), scope,
                            dict(selector) if selector else None, rules))
    return out


def evaluate(policies: Iterable[L4Policy], peer: Peer, source_identity: str | None, source_ip: str) -> Decision:
    """Deny first, then allow-lists; what ztunnel's inbound decides for one connection."""
    mine = [p for p in policies if p.applies_to(peer)]
    for p in mine:
        if p.action == "Deny" and any(_matches(rule, peer, source_identity, source_ip) for rule in p.rules):
            return Decision(False, f"explicitly denied by: {p.namespace}/{p.name}")
    allows = [p for p in mine if p.action == "Allow"]
    if allows and not any(_matches(rule, peer, source_identity, source_ip) for p in allows for rule in p.rules):
        return Decision(False, "allow policies exist, but none allowed")
    return Decision(True)


def _matches(rule: Mapping[str, Any], peer: Peer, identity: str | None, source_ip: str) -> bool:
    if rule.get("empty"):
        return False
    principal = identity.removeprefix("spiffe://") if identity else None
    namespace = principal.split("/ns/", 1)[1].split("/", 1)[0] if principal and "/ns/" in principal else None
    account = f"{namespace}/{principal.rsplit('/sa/', 1)[1]}" if principal and "/sa/" in principal else None
    if rule.get("from") and not any(_source(s, principal, namespace, account, source_ip) for s in rule["from"]):
        return False
    if rule.get("to") and not any(_operation(o, peer.port) for o in rule["to"]):
        return False
    values = {"source.ip": source_ip, "source.namespace": namespace, "source.principal": principal,
              "destination.ip": peer.address, "destination.port": str(peer.port)}
    for cond in rule.get("when") or []:
        value = values.get(str(cond.get("key")))
        check = _ip_in if cond["key"].endswith(".ip") else _string_in
        if cond.get("values") and not check(value, cond["values"]):
            return False
        if cond.get("notValues") and check(value, cond["notValues"]):
            return False
    return True


def _source(s: Mapping[str, Any], principal: str | None, namespace: str | None, account: str | None,
            ip: str) -> bool:
    pairs: list[tuple[str, str | None, bool]] = [
        ("principals", principal, False), ("namespaces", namespace, False),
        ("serviceAccounts", account, False), ("ipBlocks", ip, True)]
    for name, value, is_ip in pairs:
        check = _ip_in if is_ip else _string_in
        if s.get(name) and not check(value, s[name]):
            return False
        negated = f"not{name[0].upper()}{name[1:]}"
        if s.get(negated) and check(value, s[negated]):
            return False
    return True


def _operation(o: Mapping[str, Any], port: int) -> bool:
    if o.get("ports") and str(port) not in [str(p) for p in o["ports"]]:
        return False
    return not (o.get("notPorts") and str(port) in [str(p) for p in o["notPorts"]])


def _string_in(value: str | None, patterns: Iterable[Any]) -> bool:
    """Istio's string match: exact, ``*`` for any present value, ``prefix*`` or ``*suffix``."""
    if value is None:
        return False
    for p in map(str, patterns):
        if p == "*" or p == value or (p.endswith("*") and value.startswith(p[:-1])) or \
                (p.startswith("*") and value.endswith(p[1:])):
            return True
    return False


def _ip_in(value: str | None, blocks: Iterable[Any]) -> bool:
    if value is None:
        return False
    try:
        ip = ipaddress.ip_address(value)
        return any(ip in ipaddress.ip_network(str(b), strict=False) for b in blocks)
    except ValueError:
        return False
