"""AuthorizationPolicy, evaluated by the callee's sidecar (Envoy's RBAC filter as Istio configures it).

Compile once per config push with :func:`compile_policies`; call :meth:`AuthzPolicySet.evaluate`
per request. Evaluation order (istio.io "Authorization Policy" and the API reference):

1. CUSTOM — not available locally: such policies are left out and listed in ``warnings``;
2. any DENY policy matches ⇒ deny;
3. no ALLOW policy selects the workload ⇒ allow;
4. any ALLOW policy matches ⇒ allow;
5. otherwise deny.

AUDIT policies never change the decision; the first one that matches is reported in
``audited_by``. A policy without rules (``spec: {}``) matches nothing, so as ALLOW it allows
nothing; a rule ``{}`` matches every request.

Missing attributes. Every field is a predicate over one request attribute, and a positive
field (``principals``, ``namespaces``, ``requestPrincipals``, ``when`` values, ...) never matches
an attribute the request does not have: a plaintext request has no principal and no source
namespace, a request without a JWT has no request principal. The ``notX`` fields are the
negation, so they *do* match a missing attribute. Hence, as in Istio, ``principals`` in an ALLOW
rule refuses plaintext callers, and ``DENY`` with ``notPrincipals: ["*"]`` (or
``notRequestPrincipals: ["*"]``) denies every caller without an mTLS (or JWT) identity. For a raw
TCP connection (``protocol="tcp"``) the HTTP-only fields (hosts, methods, paths,
requestPrincipals and ``request.*`` conditions) cannot be evaluated: an ALLOW rule that uses any of
them is dropped (it allows nothing), while in DENY and AUDIT rules those fields are ignored, so
the rule matches more — "for DENY, missing attributes count as a match".

Example:
    >>> policies = compile_policies(resources, "tutorial", {"app": "customer"})   # doctest: +SKIP
    >>> decision = policies.evaluate(AuthzRequest(method="GET", path="/"))         # doctest: +SKIP
    >>> decision.allowed, decision.reason                                          # doctest: +SKIP
    (False, 'denied: no ALLOW policy matched (1 ALLOW policies: tutorial.deny-all)')
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshkit.backends.local.ca import namespace_of
from meshkit.backends.local.peerauth import ROOT_NAMESPACE, creation_order, selector_matches
from meshkit.errors import InvalidConfig

DENIED_STATUS = 403
DENIED_BODY = b"RBAC: access denied"
DENIED_DETAILS_NONE = "rbac_access_denied_matched_policy[none]"
ACTIONS = ("ALLOW", "DENY", "AUDIT", "CUSTOM")

StrPred = Callable[[str], bool]
ReqPred = Callable[["AuthzRequest"], bool]


@dataclass(frozen=True)
class AuthzRequest:
    """The attributes of one request (or TCP connection) that policies can match.

    ``headers`` and ``claims`` stay out of ``repr()``: headers may carry bearer tokens.

    >>> req = AuthzRequest(path="/?x=1", source_principal="cluster.local/ns/tutorial/sa/customer")
    >>> req.path, req.source_namespace
    ('/', 'tutorial')
    """

    method: str = "GET"
    path: str = "/"
    host: str = ""
    port: int = 0
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    source_principal: str = ""
    source_ip: str = ""
    remote_ip: str = ""
    request_principal: str = ""
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)
    destination_ip: str = ""
    sni: str = ""
    protocol: str = "http"

    def __post_init__(self) -> None:
        # Policies match the path without its query or fragment.
        cut = min((i for i in (self.path.find("?"), self.path.find("#")) if i >= 0), default=-1)
        if cut >= 0:
            object.__setattr__(self, "path", self.path[:cut])
        if not self.remote_ip:
            object.__setattr__(self, "remote_ip", self.source_ip)

    @property
    def source_namespace(self) -> str:
        return namespace_of(self.source_principal) if self.source_principal else ""

    @property
    def service_account(self) -> str:
        """``<namespace>/<service account>`` of the peer's SPIFFE principal (``td/ns/<ns>/sa/<sa>``)."""
        parts = self.source_principal.split("/")
        return f"{parts[2]}/{parts[4]}" if len(parts) == 5 and parts[1] == "ns" and parts[3] == "sa" else ""

    @property
    def trust_domain(self) -> str:
        return self.source_principal.split("/", 1)[0] if "/" in self.source_principal else ""

    @property
    def audiences(self) -> tuple[str, ...]:
        aud = self.claims.get("aud")
        if isinstance(aud, str):
            return (aud,)
        return tuple(a for a in aud if isinstance(a, str)) if isinstance(aud, list) else ()

    @property
    def presenter(self) -> str:
        azp = self.claims.get("azp")
        return azp if isinstance(azp, str) else ""


@dataclass(frozen=True)
class AuthzDecision:
    """The outcome and its explanation. ``response_code_details`` is Envoy's, for access logs."""

    allowed: bool
    policy: str = ""
    action: str = ""
    reason: str = ""
    rule: int | None = None
    audited_by: str = ""
    response_code_details: str = ""


# ---------------------------------------------------------------------------------------- matchers


def _string_matcher(patterns: Sequence[Any], ignore_case: bool = False) -> StrPred:
    """Istio string match: exact, ``prefix*``, ``*suffix``, or ``*`` (any non-empty value)."""
    exact: set[str] = set()
    others: list[StrPred] = []
    for raw in patterns:
        pattern = str(raw).lower() if ignore_case else str(raw)
        if pattern == "*":
            others.append(bool)
        elif pattern.startswith("*"):
            others.append(functools.partial(_endswith, pattern[1:]))
        elif pattern.endswith("*"):
            others.append(functools.partial(_startswith, pattern[:-1]))
        else:
            exact.add(pattern)
    frozen_exact = frozenset(exact)

    def match(value: str) -> bool:
        if not value:
            return False
        if ignore_case:
            value = value.lower()
        return value in frozen_exact or any(p(value) for p in others)

    return match


def _endswith(suffix: str, value: str) -> bool:
    return value.endswith(suffix)


def _startswith(prefix: str, value: str) -> bool:
    return value.startswith(prefix)


@functools.lru_cache(maxsize=4096)
def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return None


def _cidr_matcher(values: Sequence[Any], where: str, problems: list[str]) -> StrPred:
    networks = []
    for raw in values:
        try:
            networks.append(ipaddress.ip_network(str(raw), strict=False))
        except ValueError:
            problems.append(f"{where}: {raw!r} is not an IP address or CIDR block")

    def match(value: str) -> bool:
        ip = _parse_ip(value) if value else None
        return ip is not None and any(ip in net for net in networks)

    return match


def _port_matcher(values: Sequence[Any], where: str, problems: list[str]) -> Callable[[int], bool]:
    ports = set()
    for raw in values:
        try:
            port = int(str(raw))
        except ValueError:
            problems.append(f"{where}: {raw!r} is not a port number")
            continue
        if not 0 <= port <= 65535:
            problems.append(f"{where}: port {port} is out of range 0-65535")
        ports.add(port)
    frozen = frozenset(ports)
    return lambda port: port in frozen


def _claim(claims: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = claims
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _port_of(req: AuthzRequest) -> int:
    return req.port


def _audiences_of(req: AuthzRequest) -> tuple[str, ...]:
    return req.audiences


def _header_of(name: str, req: AuthzRequest) -> str:
    return req.headers.get(name, "")


def _claim_of(path: tuple[str, ...], req: AuthzRequest) -> Any:
    return _claim(req.claims, path)


def _any_of(match: StrPred, values: Iterable[str]) -> bool:
    return any(match(v) for v in values)


def _claim_matches(match: StrPred, value: Any) -> bool:
    if isinstance(value, str):
        return match(value)
    if isinstance(value, list):
        return any(isinstance(v, str) and match(v) for v in value)
    return False


# ------------------------------------------------------------------------------------- compilation


@dataclass(frozen=True)
class _Field:
    pred: ReqPred
    http_only: bool


def _service_accounts(values: Sequence[Any], namespace: str) -> StrPred:
    """``serviceAccounts``: ``sa`` (in the policy's namespace) or ``ns/sa``, matched exactly."""
    wanted = {str(v) if "/" in str(v) else f"{namespace}/{v}" for v in values}
    return lambda value: value in wanted


def _source_fields(src: Mapping[str, Any], where: str, problems: list[str], namespace: str = "") -> list[_Field]:
    fields: list[_Field] = []
    plain: dict[str, tuple[Callable[[AuthzRequest], str], bool]] = {
        "principals": (lambda r: r.source_principal, False),
        "requestPrincipals": (lambda r: r.request_principal, True),
        "namespaces": (lambda r: r.source_namespace, False),
        "trustDomains": (lambda r: r.trust_domain, False),
        "serviceAccounts": (lambda r: r.service_account, False),
    }
    cidr: dict[str, Callable[[AuthzRequest], str]] = {
        "ipBlocks": lambda r: r.source_ip,
        "remoteIpBlocks": lambda r: r.remote_ip,
    }
    known = (*plain, *cidr)
    for key in src:
        base = key[3].lower() + key[4:] if key.startswith("not") and len(key) > 3 else key
        if base not in known:
            problems.append(f"{where}: unknown source field {key!r}")
    for name in known:
        for negate, key in ((False, name), (True, "not" + name[0].upper() + name[1:])):
            values = src.get(key)
            if not values:
                continue
            if not isinstance(values, list):
                problems.append(f"{where}.{key}: must be a list")
                continue
            if name in plain:
                getter, http_only = plain[name]
                matcher = _service_accounts(values, namespace) if name == "serviceAccounts" else _string_matcher(values)
                fields.append(_Field(_attr_pred(getter, matcher, negate), http_only))
            else:
                fields.append(_Field(_attr_pred(cidr[name], _cidr_matcher(values, f"{where}.{key}", problems),
                                                negate), False))
    return fields


def _attr_pred(getter: Callable[[AuthzRequest], Any], match: Callable[[Any], bool], negate: bool) -> ReqPred:
    if negate:
        return lambda req: not match(getter(req))
    return lambda req: match(getter(req))


def _host_matches(match: StrPred, req: AuthzRequest) -> bool:
    if match(req.host):
        return True
    return bool(req.port) and match(f"{req.host}:{req.port}")


def _operation_fields(op: Mapping[str, Any], where: str, problems: list[str]) -> list[_Field]:
    fields: list[_Field] = []
    known = ("hosts", "ports", "methods", "paths")
    for key in op:
        base = key[3].lower() + key[4:] if key.startswith("not") and len(key) > 3 else key
        if base not in known:
            problems.append(f"{where}: unknown operation field {key!r}")
    for name in known:
        for negate, key in ((False, name), (True, "not" + name[0].upper() + name[1:])):
            values = op.get(key)
            if not values:
                continue
            if not isinstance(values, list):
                problems.append(f"{where}.{key}: must be a list")
                continue
            if name == "hosts":
                host_match = _string_matcher(values, ignore_case=True)
                host_pred = functools.partial(_host_matches, host_match)
                fields.append(_Field(_attr_pred(lambda r: r, host_pred, negate), True))
            elif name == "ports":
                port_match = _port_matcher(values, f"{where}.{key}", problems)
                fields.append(_Field(_attr_pred(lambda r: r.port, port_match, negate), False))
            elif name == "methods":
                fields.append(_Field(_attr_pred(lambda r: r.method, _string_matcher(values), negate), True))
            else:
                fields.append(_Field(_attr_pred(lambda r: r.path, _string_matcher(values), negate), True))
    return fields


_HEADER_KEY = re.compile(r"^request\.headers\[([^\]]+)\]$")
_CLAIM_KEY = re.compile(r"^request\.auth\.claims((?:\[[^\]]+\])+)$")


def _condition(cond: Mapping[str, Any], where: str, problems: list[str], namespace: str = "") -> _Field | None:
    key = str(cond.get("key", ""))
    values, not_values = cond.get("values") or [], cond.get("notValues") or []
    if not isinstance(values, list) or not isinstance(not_values, list):
        problems.append(f"{where}: values and notValues must be lists")
        return None
    if not values and not not_values:
        problems.append(f"{where}: condition {key!r} needs values or notValues")
        return None
    http_only = key.startswith("request.")
    simple: dict[str, Callable[[AuthzRequest], str]] = {
        "source.namespace": lambda r: r.source_namespace,
        "source.principal": lambda r: r.source_principal,
        "source.trustDomain": lambda r: r.trust_domain,
        "request.auth.principal": lambda r: r.request_principal,
        "request.auth.presenter": lambda r: r.presenter,
        "connection.sni": lambda r: r.sni,
    }
    ips: dict[str, Callable[[AuthzRequest], str]] = {
        "source.ip": lambda r: r.source_ip,
        "remote.ip": lambda r: r.remote_ip,
        "destination.ip": lambda r: r.destination_ip,
    }
    getter: Callable[[AuthzRequest], Any]
    m_pos: Callable[[Any], bool]
    m_neg: Callable[[Any], bool]
    if key in simple:
        getter, m_pos, m_neg = simple[key], _string_matcher(values), _string_matcher(not_values)
    elif key == "source.serviceAccount":
        getter = lambda r: r.service_account  # noqa: E731
        m_pos, m_neg = _service_accounts(values, namespace), _service_accounts(not_values, namespace)
    elif key in ips:
        getter = ips[key]
        m_pos = _cidr_matcher(values, f"{where}.values", problems)
        m_neg = _cidr_matcher(not_values, f"{where}.notValues", problems)
    elif key == "destination.port":
        getter = _port_of
        m_pos = _port_matcher(values, f"{where}.values", problems)
        m_neg = _port_matcher(not_values, f"{where}.notValues", problems)
    elif key == "request.auth.audiences":
        getter = _audiences_of
        m_pos = functools.partial(_any_of, _string_matcher(values))
        m_neg = functools.partial(_any_of, _string_matcher(not_values))
    elif header := _HEADER_KEY.match(key):
        getter = functools.partial(_header_of, header.group(1).lower())
        m_pos, m_neg = _string_matcher(values), _string_matcher(not_values)
    elif claim := _CLAIM_KEY.match(key):
        getter = functools.partial(_claim_of, tuple(re.findall(r"\[([^\]]+)\]", claim.group(1))))
        m_pos = functools.partial(_claim_matches, _string_matcher(values))
        m_neg = functools.partial(_claim_matches, _string_matcher(not_values))
    else:
        problems.append(f"{where}: unknown condition key {key!r} (supported: request.headers[...], "
                        "source.ip, remote.ip, source.namespace, source.principal, source.serviceAccount, "
                        "source.trustDomain, request.auth.principal, "
                        "request.auth.audiences, request.auth.presenter, request.auth.claims[...], "
                        "destination.ip, destination.port, connection.sni)")
        return None
    has_values, has_not = bool(values), bool(not_values)

    def pred(req: AuthzRequest) -> bool:
        value: Any = getter(req)
        return (not has_values or m_pos(value)) and not (has_not and m_neg(value))

    return _Field(pred, http_only)


@dataclass(frozen=True)
class _Rule:
    sources: tuple[tuple[_Field, ...], ...]
    operations: tuple[tuple[_Field, ...], ...]
    conditions: tuple[_Field, ...]

    def predicate(self, protocol: str, action: str) -> ReqPred | None:
        """The rule as one predicate; None when it can never match (ALLOW rule with HTTP fields on TCP)."""
        tcp = protocol == "tcp"
        if tcp and action == "ALLOW":
            groups = (*self.sources, *self.operations, self.conditions)
            if any(f.http_only for group in groups for f in group):
                return None

        def keep(fields: Iterable[_Field]) -> tuple[ReqPred, ...]:
            return tuple(f.pred for f in fields if not (tcp and f.http_only))

        sources = [keep(s) for s in self.sources]
        operations = [keep(o) for o in self.operations]
        conditions = keep(self.conditions)

        def any_group(groups: list[tuple[ReqPred, ...]], req: AuthzRequest) -> bool:
            # Plain loops: this runs per request, and generator expressions cost several times more.
            for group in groups:
                for pred in group:
                    if not pred(req):
                        break
                else:
                    return True
            return False

        def match(req: AuthzRequest) -> bool:
            if sources and not any_group(sources, req):
                return False
            if operations and not any_group(operations, req):
                return False
            return all(pred(req) for pred in conditions)

        return match


def _compile_rule(rule: Any, where: str, problems: list[str], namespace: str = "") -> _Rule | None:
    if not isinstance(rule, Mapping):
        problems.append(f"{where}: a rule must be a mapping")
        return None
    sources, operations, conditions = [], [], []
    for i, item in enumerate(rule.get("from") or []):
        src = (item or {}).get("source") if isinstance(item, Mapping) else None
        if not isinstance(src, Mapping):
            problems.append(f"{where}.from[{i}]: needs a source")
            continue
        sources.append(tuple(_source_fields(src, f"{where}.from[{i}].source", problems, namespace)))
    for i, item in enumerate(rule.get("to") or []):
        op = (item or {}).get("operation") if isinstance(item, Mapping) else None
        if not isinstance(op, Mapping):
            problems.append(f"{where}.to[{i}]: needs an operation")
            continue
        operations.append(tuple(_operation_fields(op, f"{where}.to[{i}].operation", problems)))
    for i, cond in enumerate(rule.get("when") or []):
        if not isinstance(cond, Mapping):
            problems.append(f"{where}.when[{i}]: a condition must be a mapping")
            continue
        compiled = _condition(cond, f"{where}.when[{i}]", problems, namespace)
        if compiled:
            conditions.append(compiled)
    return _Rule(tuple(sources), tuple(operations), tuple(conditions))


@dataclass(frozen=True)
class CompiledPolicy:
    """One AuthorizationPolicy ready to match; ``key`` is "namespace.name"."""

    namespace: str
    name: str
    action: str
    rules: tuple[_Rule, ...] = field(repr=False)
    _http: tuple[ReqPred | None, ...] = field(repr=False, compare=False, default=())
    _tcp: tuple[ReqPred | None, ...] = field(repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "_http", tuple(r.predicate("http", self.action) for r in self.rules))
        object.__setattr__(self, "_tcp", tuple(r.predicate("tcp", self.action) for r in self.rules))

    @property
    def key(self) -> str:
        return f"{self.namespace}.{self.name}"

    def envoy_policy_id(self, rule: int) -> str:
        """The policy name Istio gives this rule inside Envoy's RBAC filter."""
        return f"ns[{self.namespace}]-policy[{self.name}]-rule[{rule}]"

    def first_match(self, req: AuthzRequest) -> int | None:
        """Index of the first rule matching ``req``, or None."""
        preds = self._tcp if req.protocol == "tcp" else self._http
        for i, pred in enumerate(preds):
            if pred is not None and pred(req):
                return i
        return None


@dataclass(frozen=True)
class AuthzPolicySet:
    """The policies that select one workload, grouped by action, plus compile warnings.

    >>> AuthzPolicySet().evaluate(AuthzRequest()).allowed
    True
    """

    deny: tuple[CompiledPolicy, ...] = ()
    allow: tuple[CompiledPolicy, ...] = ()
    audit: tuple[CompiledPolicy, ...] = ()
    warnings: tuple[str, ...] = ()

    def evaluate(self, req: AuthzRequest) -> AuthzDecision:
        audited_by = next((p.key for p in self.audit if p.first_match(req) is not None), "")
        for policy in self.deny:
            rule = policy.first_match(req)
            if rule is not None:
                return AuthzDecision(
                    allowed=False, policy=policy.key, action="DENY", rule=rule, audited_by=audited_by,
                    reason=f"denied by DENY policy {policy.key} rule {rule}",
                    response_code_details=f"rbac_access_denied_matched_policy[{policy.envoy_policy_id(rule)}]",
                )
        if not self.allow:
            why = "no ALLOW policy applies to this workload" if self.deny else "no policy applies"
            return AuthzDecision(allowed=True, reason=f"allowed: {why}", audited_by=audited_by)
        for policy in self.allow:
            rule = policy.first_match(req)
            if rule is not None:
                return AuthzDecision(
                    allowed=True, policy=policy.key, action="ALLOW", rule=rule, audited_by=audited_by,
                    reason=f"allowed by ALLOW policy {policy.key} rule {rule}",
                )
        names = ", ".join(p.key for p in self.allow)
        return AuthzDecision(
            allowed=False, action="ALLOW", audited_by=audited_by,
            reason=f"denied: no ALLOW policy matched ({len(self.allow)} ALLOW policies: {names})",
            response_code_details=DENIED_DETAILS_NONE,
        )


def _applies(res: Mapping[str, Any], namespace: str, labels: Mapping[str, str], root_namespace: str) -> bool:
    meta = res.get("metadata") or {}
    spec = res.get("spec") or {}
    res_ns = meta.get("namespace", "default")
    if res_ns not in (namespace, root_namespace):
        return False
    return selector_matches(spec.get("selector"), labels)


def compile_policies(
    resources: Iterable[Mapping[str, Any]],
    namespace: str,
    labels: Mapping[str, str],
    root_namespace: str = ROOT_NAMESPACE,
    targeted: Callable[[Mapping[str, Any]], bool] | None = None,
) -> AuthzPolicySet:
    """Compile the AuthorizationPolicies that select a workload (other kinds are skipped).

    A policy applies when it is in the workload's namespace or the root namespace (mesh-wide) and
    its ``selector.matchLabels`` are among the workload labels (no selector: every workload).
    A waypoint passes ``targeted`` instead: the policies it enforces are those whose ``targetRefs``
    name it or a Service it serves (``targeted`` says which), not those picked by selector.
    Raises :class:`InvalidConfig` listing every located problem.
    """
    problems: list[str] = []
    warnings: list[str] = []
    grouped: dict[str, list[CompiledPolicy]] = {"ALLOW": [], "DENY": [], "AUDIT": []}
    selected = [r for r in resources if r.get("kind") == "AuthorizationPolicy"
                and (_applies(r, namespace, labels, root_namespace) if targeted is None else targeted(r))]
    for res in sorted(selected, key=creation_order):
        meta, spec = res.get("metadata") or {}, res.get("spec") or {}
        ns, name = str(meta.get("namespace", "default")), str(meta.get("name", "?"))
        where = f"AuthorizationPolicy {ns}/{name}"
        if targeted is None and (spec.get("targetRef") or spec.get("targetRefs")):
            warnings.append(f"{where}: targetRef binds a policy to gateways/waypoints, not sidecars; ignored")
            continue
        action = str(spec.get("action") or "ALLOW").upper()
        if action not in ACTIONS:
            problems.append(f"{where}: action {spec.get('action')!r} is not one of {', '.join(ACTIONS)}")
            continue
        if action == "CUSTOM":
            provider = (spec.get("provider") or {}).get("name", "")
            warnings.append(f"{where}: action CUSTOM (provider {provider!r}) needs an external authorizer, "
                            "which the local mesh does not run; the policy is ignored (use the kind backend)")
            continue
        rules_spec = spec.get("rules") or []
        if not isinstance(rules_spec, list):
            problems.append(f"{where}: spec.rules must be a list")
            continue
        rules = [_compile_rule(rule, f"{where}: rules[{i}]", problems, ns) for i, rule in enumerate(rules_spec)]
        grouped[action].append(CompiledPolicy(ns, name, action, tuple(r for r in rules if r is not None)))
    if problems:
        raise InvalidConfig(problems)
    return AuthzPolicySet(
        deny=tuple(grouped["DENY"]), allow=tuple(grouped["ALLOW"]), audit=tuple(grouped["AUDIT"]),
        warnings=tuple(warnings),
    )
