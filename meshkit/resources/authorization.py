"""AuthorizationPolicy: action, rules (from/to/when) and Istio's supported condition keys.

Example::

    >>> condition_key_error("request.auth.claims[role]") is None
    True
    >>> condition_key_error("source.labels[app]")
    'unknown attribute: source.labels[app]'
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from meshkit.resources.common import SELECTOR, TARGET_REF
from meshkit.resources.model import Path
from meshkit.resources.names import is_ip
from meshkit.resources.schema import Checker, Enum, ListOf, Obj, Str

ACTIONS = ("ALLOW", "DENY", "AUDIT", "CUSTOM")
_IP_KEYS = ("source.ip", "remote.ip", "destination.ip")
_MAP_KEYS = ("request.headers", "request.auth.claims", "experimental.envoy.filters.")
_PLAIN_KEYS = (
    "source.namespace",
    "source.principal",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "connection.sni",
)
_PATH_LITERAL = re.compile(r"^[a-zA-Z0-9\-._~%!$&'()+,;:@=]+$")
_SOURCE_KEYS = (
    "principals",
    "requestPrincipals",
    "namespaces",
    "ipBlocks",
    "remoteIpBlocks",
    "serviceAccounts",
    "trustDomains",
)
_OPERATION_KEYS = ("hosts", "ports", "methods", "paths")
_HTTP_SOURCE_KEYS = ("requestPrincipals", "notRequestPrincipals")


def _map_key_error(key: str) -> str | None:
    bracket = key.find("[")
    if key.endswith("]") and 0 < bracket < len(key) - 2:
        return None
    return f"bad key ({key}): should have format a[b]"


def ip_errors(values: list[str]) -> list[str]:
    """Istio's ``ValidateIPs``: addresses, or CIDR ranges when the value has a ``/``."""
    out = []
    for v in values:
        if "/" in v:
            try:
                ipaddress.ip_network(v, strict=False)
                if v.count("/") != 1:
                    raise ValueError(v)
            except ValueError:
                out.append(f'bad CIDR range ({v}): netip.ParsePrefix("{v}"): bad prefix')
        elif not is_ip(v):
            out.append(f"bad IP address ({v})")
    return out


def port_value_errors(values: list[str]) -> list[str]:
    out = []
    for port in values:
        if not port.isdigit() or int(port) > 65535:
            out.append(f'bad port ({port}): strconv.ParseUint: parsing "{port}": invalid syntax')
    return out


def _empty_error(key: str, values: list[str]) -> str | None:
    return f"empty value not allowed, found in {key}" if any(v == "" for v in values) else None


def _wildcard_error(key: str, values: list[str]) -> str | None:
    if msg := _empty_error(key, values):
        return msg
    for v in values:
        stars = v.count("*")
        if stars > 1:
            return f'at most one wildcard is allowed, found in {key}: "{v}"'
        if stars == 1 and v != "*" and not v.startswith("*") and not v.endswith("*"):
            return f'wildcard is only allowed at the start or end, found in {key}: "{v}"'
    return None


def _trust_domain_error(key: str, values: list[str]) -> str | None:
    if msg := _wildcard_error(key, values):
        return msg
    for v in values:
        if "/" in v:
            return f"trust domain must not contain '/', found in {key}: \"{v}\""
    return None


def service_account_error(key: str, values: list[str]) -> str | None:
    """Istio's ``CheckServiceAccount``: ``sa`` or ``namespace/sa``, no wildcard, at most 16 values."""
    if len(values) > 16:
        return "may not have more than 16 values"
    fmt = "expected format 'serviceAccount' or 'namespace/serviceAccount'"
    for v in values:
        if v == "":
            return f"empty value not allowed, found in {key}"
        if "*" in v:
            return f"wildcard not allowed, found in {key}"
        if v.count("/") > 1:
            return f'{fmt}, found "{v}" in {key}'
        if len(v) > 320:
            return f'value cannot exceed 320 characters, found "{v}" in {key}'
        ns, slash, sa = v.partition("/")
        if slash and not ns:
            return f'{fmt}, found empty namespace "{v}" in {key}'
        if slash and not sa:
            return f'{fmt}, found empty serviceAccount "{v}" in {key}'
    return None


def path_template_error(key: str, paths: list[str]) -> str | None:
    """Istio's ``CheckValidPathTemplate``: ``{*}`` and a last ``{**}``, literal segments otherwise."""
    for raw in paths:
        templated = "{*}" in raw or "{**}" in raw
        path = raw.strip("/")
        seen_any = False
        for glob in path.split("/"):
            if glob == "{*}" and not seen_any:
                continue
            if glob == "{**}" and not seen_any:
                seen_any = True
                continue
            if glob in ("{*}", "{**}"):
                return f"invalid or unsupported path {path}, found in {key}. {{**}} is not the last operator"
            if "{" in glob or "}" in glob:
                return (
                    f"invalid or unsupported path {path}, found in {key}. "
                    "Contains '{' or '}' beyond a supported path template"
                )
            if templated and not _PATH_LITERAL.match(glob):
                return (
                    f"invalid or unsupported path {path}, found in {key}. "
                    f"Contains segment {glob} with invalid string literal"
                )
    return None


def attribute_error(key: str, values: list[str]) -> str | None:
    """Istio's ``ValidateAttribute``: the condition keys it knows, and their values."""
    if msg := _empty_error(key, values):
        return msg
    if key.startswith("request.headers") or key.startswith("request.auth.claims"):
        return _map_key_error(key)
    if key.startswith("experimental.envoy.filters."):
        return _map_key_error(key)
    if key in _IP_KEYS:
        return "; ".join(ip_errors(values)) or None
    if key == "destination.port":
        return "; ".join(port_value_errors(values)) or None
    if key == "source.serviceAccount":
        return service_account_error(key, values)
    if key == "source.trustDomain":
        return _wildcard_error(key, values)
    if key in _PLAIN_KEYS:
        return None
    if key == "destination.namespace":
        return f"attribute {key} is replaced by the metadata.namespace"
    if key.startswith("destination.labels"):
        return f"attribute {key} is replaced by the workload selector"
    if key in ("destination.name", "destination.user"):
        return f"deprecated attribute {key}: only supported in v1alpha1"
    return f"unknown attribute: {key}"


def condition_key_error(key: str) -> str | None:
    """The key half of :func:`attribute_error` (values aside)."""
    return attribute_error(key, ["x"]) if key not in _IP_KEYS and key != "destination.port" else None


def _source_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if any(value.get(k) for k in ("serviceAccounts", "notServiceAccounts")) and any(
        value.get(k) for k in ("principals", "notPrincipals", "namespaces", "notNamespaces")
    ):
        ck.error(path, "Cannot set serviceAccounts with namespaces or principals")


SOURCE = Obj(
    {k: ListOf(Str()) for base in _SOURCE_KEYS for k in (base, "not" + base[0].upper() + base[1:])},
    rules=[_source_rule],
)
OPERATION = Obj({k: ListOf(Str()) for base in _OPERATION_KEYS for k in (base, "not" + base[0].upper() + base[1:])})
CONDITION = Obj({"key": Str(), "values": ListOf(Str()), "notValues": ListOf(Str())}, required=("key",))
RULE = Obj(
    {
        "from": ListOf(Obj({"source": SOURCE})),
        "to": ListOf(Obj({"operation": OPERATION})),
        "when": ListOf(CONDITION),
    }
)


def _not(key: str) -> str:
    return "not" + key[0].upper() + key[1:]


def _check_source(src: dict[str, Any], where: Path, i: int, ck: Checker) -> None:
    if not any(src.get(k) for base in _SOURCE_KEYS for k in (base, _not(base))):
        ck.error(where, f"`from.source` must not be empty, found at rule {i}")
    for key in ("ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks"):
        for problem in ip_errors(src.get(key) or []):
            ck.error((*where, key), problem)
    checks = {
        "serviceAccounts": service_account_error,
        "trustDomains": _trust_domain_error,
    }
    for base in _SOURCE_KEYS:
        for key in (base, _not(base)):
            check = checks.get(base, _empty_error)
            name = key[0].upper() + key[1:]
            if msg := check(name, src.get(key) or []):
                ck.error((*where, key), msg)


def _check_operation(op: dict[str, Any], where: Path, i: int, ck: Checker) -> None:
    if not any(op.get(k) for base in _OPERATION_KEYS for k in (base, _not(base))):
        ck.error(where, f"`to.operation` must not be empty, found at rule {i}")
    for key in ("ports", "notPorts"):
        for problem in port_value_errors(op.get(key) or []):
            ck.error((*where, key), problem)
    for base in _OPERATION_KEYS:
        for key in (base, _not(base)):
            name = key[0].upper() + key[1:]
            if msg := _empty_error(name, op.get(key) or []):
                ck.error((*where, key), msg)
    for key in ("paths", "notPaths"):
        if msg := path_template_error(key[0].upper() + key[1:], op.get(key) or []):
            ck.error((*where, key), msg)


_HTTP_ONLY_SOURCE = ("requestPrincipals", "notRequestPrincipals")
_TCP_SOURCE = tuple(
    k for base in _SOURCE_KEYS if base not in ("requestPrincipals", "trustDomains") for k in (base, _not(base))
)


def _check_rule(rule: dict[str, Any], where: Path, i: int, action: str, ck: Checker) -> None:
    if "from" in rule and not rule["from"]:
        ck.error((*where, "from"), f"`from` must not be empty, found at rule {i}")
    if "to" in rule and not rule["to"]:
        ck.error((*where, "to"), f"`to` must not be empty, found at rule {i}")
    tcp_from = tcp_to = has_from = has_to = False
    for j, item in enumerate(rule.get("from") or []):
        if "source" not in item:
            ck.error((*where, "from", j), f"`from.source` must not be nil, found at rule {i}")
            continue
        has_from = True
        src = item["source"]
        _check_source(src, (*where, "from", j, "source"), i, ck)
        tcp_from = tcp_from or any(k in src for k in _TCP_SOURCE)
    for j, item in enumerate(rule.get("to") or []):
        if "operation" not in item:
            ck.error((*where, "to", j), f"`to.operation` must not be nil, found at rule {i}")
            continue
        has_to = True
        op = item["operation"]
        _check_operation(op, (*where, "to", j, "operation"), i, ck)
        tcp_to = tcp_to or "ports" in op or "notPorts" in op
    for j, cond in enumerate(rule.get("when") or []):
        key = cond.get("key", "")
        at = (*where, "when", j)
        if not key:
            ck.error((*at, "key"), "`key` must not be empty")
        elif not cond.get("values") and not cond.get("notValues"):
            ck.error(at, f"at least one of `values` or `notValues` must be set for key {key}")
        else:
            if msg := attribute_error(key, cond.get("values") or []):
                ck.error((*at, "values"), f"invalid `value` for `key` {key}: {msg}")
            if msg := attribute_error(key, cond.get("notValues") or []):
                ck.error((*at, "notValues"), f"invalid `notValue` for `key` {key}: {msg}")
    if action == "DENY" and ((has_from and not has_to and not tcp_from) or (has_to and not tcp_to)):
        ck.warn(
            where,
            "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the use of "
            "only HTTP attributes in a DENY rule; it is recommended to explicitly specify the port",
        )


def _custom_rules(rules: list[dict[str, Any]], path: Path, ck: Checker) -> None:
    for i, rule in enumerate(rules):
        for j, item in enumerate(rule.get("from") or []):
            src = item.get("source") or {}
            for base in ("namespaces", "serviceAccounts", "trustDomains", "principals", "requestPrincipals"):
                for key in (base, _not(base)):
                    if src.get(key):
                        ck.error(
                            (*path, i, "from", j, "source", key),
                            f"From.{key[0].upper() + key[1:]} is currently not supported with CUSTOM action",
                        )
        for j, cond in enumerate(rule.get("when") or []):
            key = cond.get("key", "")
            if key in ("source.namespace", "source.serviceAccount", "source.trustDomain", "source.principal") or (
                key.startswith("request.auth.")
            ):
                ck.error((*path, i, "when", j, "key"), f"{key} is currently not supported with CUSTOM action")


def _policy_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    one_of_selector(value, path, ck)
    action = value.get("action", "ALLOW")
    dry_run = ck.annotations.get("istio.io/dry-run")
    if dry_run is not None:
        if action not in ("ALLOW", "DENY"):
            ck.error(
                ("metadata", "annotations", "istio.io/dry-run"),
                f"the annotation istio.io/dry-run currently only supports action ALLOW/DENY, found action {action} "
                f"in {ck.namespace}/{ck.name}",
            )
        elif str(dry_run).lower() not in ("1", "t", "true", "0", "f", "false"):
            ck.error(
                ("metadata", "annotations", "istio.io/dry-run"),
                f"{ck.namespace}/{ck.name} has annotation istio.io/dry-run with invalid value ({dry_run}): "
                f'strconv.ParseBool: parsing "{dry_run}": invalid syntax',
            )
    if action == "CUSTOM":
        if "rules" not in value:
            ck.error(
                path,
                "CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` "
                "if you want it be triggered for every request",
            )
        elif not (value.get("provider") or {}).get("name"):
            ck.error((*path, "provider"), "`provider.name` must not be empty")
        _custom_rules(value.get("rules") or [], (*path, "rules"), ck)
    elif "provider" in value:
        ck.error((*path, "provider"), f"`provider` must not be with non CUSTOM action, found {action}")
    if action == "DENY" and "rules" not in value:
        ck.error(
            path,
            "DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if "
            "you want it be triggered for every request",
        )
    for i, rule in enumerate(value.get("rules") or []):
        _check_rule(rule, (*path, "rules", i), i, action, ck)


def one_of_selector(value: dict[str, Any], path: Path, ck: Checker) -> None:
    """Policies bind by ``selector``, ``targetRef`` or ``targetRefs``: at most one of them."""
    if sum(1 for k in ("selector", "targetRef", "targetRefs") if value.get(k)) > 1:
        ck.error(path, "only one of targetRefs or selector can be set")


AUTHORIZATION_POLICY = Obj(
    {
        "selector": SELECTOR,
        "targetRef": TARGET_REF,
        "targetRefs": ListOf(TARGET_REF),
        "action": Enum(*ACTIONS),
        "provider": Obj({"name": Str()}),
        "rules": ListOf(RULE),
    },
    rules=[_policy_rule],
)
