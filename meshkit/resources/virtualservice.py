"""VirtualService: schema and the webhook's semantic checks (weights, retries, faults, mirrors).

Also the unreachable-rule analysis (IST0130/IST0131) that both the webhook (as warnings) and
``istioctl analyze`` run.

Example::

    >>> from meshkit.resources.schema import Checker
    >>> ck = Checker()
    >>> VIRTUAL_SERVICE.check({"hosts": ["r"], "http": [{"route": [
    ...     {"destination": {"host": "r"}, "weight": -5}]}]}, ("spec",), ck)
    >>> ck.findings[0].message
    'weight -5 < 0'
"""

from __future__ import annotations

from typing import Any

from meshkit.resources.common import (
    DESTINATION,
    LABELS,
    PERCENT,
    PORT_NUMBER,
    STRING_MATCH,
    STRINGS,
    regex_error,
    string_match_errors,
)
from meshkit.resources.headers import (
    cors_name_error,
    header_value_error,
    is_authority,
    is_jwt_claim_route,
    match_name_error,
    operation_name_error,
)
from meshkit.resources.model import Path
from meshkit.resources.names import (
    duration_nanos,
    export_to_errors,
    fqdn_error,
    host_matches,
    host_subset_of,
    ip_subnet_error,
    is_dns1123_label,
    is_ip,
    label_errors,
    port_error,
    wildcard_domain_error,
)
from meshkit.resources.reachability import unreachable_rules
from meshkit.resources.schema import Bool, Checker, Dur, Enum, Int, ListOf, MapOf, Num, Obj, Schema, Str

RETRY_ON_POLICIES = frozenset(
    [
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "envoy-ratelimited",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    ]
)
#: the status codes Go's net/http knows (Istio accepts a retryOn code only when it has a status text)
HTTP_STATUS_CODES = frozenset(
    [
        *range(100, 104),
        *range(200, 209),
        226,
        *range(300, 306),
        307,
        308,
        *range(400, 419),
        *range(421, 427),
        *(428, 429, 431, 451),
        *range(500, 509),
        510,
        511,
    ]
)
GRPC_STATUSES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
CORS_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*")
DEPRECATED = "IST0002"
_KB = 1024
_MB = 1024 * _KB


def _operations_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    """Header operations on a route or a destination: names, values, and one authority rewrite."""
    for side in ("request", "response"):
        ops = value.get(side) or {}
        for verb in ("set", "add"):
            for name, val in (ops.get(verb) or {}).items():
                where = (*path, side, verb, name)
                if msg := operation_name_error(name, request_set=side == "request"):
                    ck.error(where, msg)
                if msg := header_value_error(val):
                    ck.error(where, msg)
        for i, name in enumerate(ops.get("remove") or []):
            if msg := operation_name_error(name):
                ck.error((*path, side, "remove", i), msg)


_OPERATION = Obj({"set": MapOf(Str()), "add": MapOf(Str()), "remove": ListOf(Str())})
HEADERS = Obj({"request": _OPERATION, "response": _OPERATION}, rules=[_operations_rule])


def _lowercase_headers(value: dict[str, Any], path: Path, ck: Checker) -> None:
    for key in ("headers", "withoutHeaders"):
        for name in value.get(key) or {}:
            if name != name.lower() and not is_jwt_claim_route(name):
                ck.warn(
                    (*path, key, name),
                    f'header name "{name}" should be lowercase: Istio matches '
                    f'header keys in lowercase, so use "{name.lower()}"',
                )


def _match_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    for key in ("headers", "withoutHeaders"):
        for name, sm in (value.get(key) or {}).items():
            if msg := match_name_error(name):
                ck.error((*path, key, name), msg)
            # withoutHeaders: regex "*" is not a regex but "header present"
            if key == "withoutHeaders" and isinstance(sm, dict) and sm.get("regex") == "*":
                continue
            for sub, msg in string_match_errors(sm, key):
                ck.error((*path, key, name, sub), msg)
    for name, sm in (value.get("queryParams") or {}).items():
        for sub, msg in string_match_errors(sm, "queryParams"):
            ck.error((*path, "queryParams", name, sub), msg)
    if "uri" in value:
        for sub, msg in string_match_errors(value["uri"], "uri", empty_prefix_ok=True):
            ck.error((*path, "uri", sub), msg)
    for key in ("scheme", "method", "authority"):
        if key in value:
            for sub, msg in string_match_errors(value[key], key):
                ck.error((*path, key, sub), msg)
    for msg in label_errors(value.get("sourceLabels") or {}):
        ck.error((*path, "sourceLabels"), msg)
    _gateway_names(value.get("gateways") or [], (*path, "gateways"), ck)
    ns = value.get("sourceNamespace")
    if ns and not is_dns1123_label(ns):
        ck.error((*path, "sourceNamespace"), f"sourceNamespace match {ns} is invalid")
    _lowercase_headers(value, path, ck)


MATCH = Obj(
    {
        "name": Str(),
        "uri": STRING_MATCH,
        "scheme": STRING_MATCH,
        "method": STRING_MATCH,
        "authority": STRING_MATCH,
        "headers": MapOf(STRING_MATCH),
        "withoutHeaders": MapOf(STRING_MATCH),
        "queryParams": MapOf(STRING_MATCH),
        "port": PORT_NUMBER,
        "sourceLabels": LABELS,
        "gateways": ListOf(Str()),
        "ignoreUriCase": Bool(),
        "sourceNamespace": Str(),
        "statPrefix": Str(),
    },
    rules=[_match_rule],
)


def _gateway_names(names: list[str], path: Path, ck: Checker) -> None:
    """Istio's ``validateGatewayNames``: ``<namespace>/<name>``, a name, or a legacy ``name.namespace``."""
    for i, name in enumerate(names):
        ns, slash, gw = name.partition("/")
        where = (*path, i)
        if not slash:
            if "." in name:
                parts = name.split(".")
                ck.warn(
                    where,
                    f'using legacy gatewayName format "{name}"; prefer the <namespace>/<name> format: '
                    f'"{parts[1]}/{parts[0]}"',
                )
            if msg := fqdn_error(name):
                ck.error(where, msg)
            return
        if not ns or not gw:
            ck.error(where, "config namespace and gateway name cannot be empty")
        if not is_dns1123_label(ns):
            ck.error(where, f'invalid value for namespace: "{ns}"')
        if not is_dns1123_label(gw):
            ck.error(where, f'invalid value for gateway name: "{gw}"')


def _route_destination_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if "headers" in value:
        _authority_once(None, value["headers"], path, ck)


ROUTE_DESTINATION = Obj(
    {"destination": DESTINATION, "weight": Int(lo=0, lo_msg="weight {value} < 0"), "headers": HEADERS},
    required=("destination",),
    rules=[_route_destination_rule],
)


def _retry_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    attempts = value.get("attempts") or 0
    if attempts == 0 and any(value.get(k) is not None for k in ("perTryTimeout", "retryOn", "retryRemoteLocalities")):
        ck.error(path, "http retry policy configured when attempts are set to 0 (disabled)")
    retry_on = value.get("retryOn")
    if retry_on:
        for policy in retry_on.split(","):
            status = int(policy) if policy.isdigit() else 0
            if status not in HTTP_STATUS_CODES and policy not in RETRY_ON_POLICIES:
                ck.error((*path, "retryOn"), f'"{policy}" is not a valid retryOn policy')


RETRIES = Obj(
    {
        "attempts": Int(lo=0, lo_msg="attempts cannot be negative"),
        "perTryTimeout": Dur(),
        "retryOn": Str(),
        "retryRemoteLocalities": Bool(),
        "retryIgnorePreviousHosts": Bool(),
        "backoff": Dur(),
    },
    rules=[_retry_rule],
)


def _delay_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if "exponentialDelay" in value:
        ck.error((*path, "exponentialDelay"), "exponentialDelay not supported yet")
    if "percent" in value:
        ck.warn(
            (*path, "percent"),
            "Deprecated: HTTPRoute.fault.delay.percent is deprecated; use HTTPRoute.fault.delay.percentage",
            code=DEPRECATED,
        )


def _http_status_error(status: int) -> str | None:
    return f"HTTP status {status} is not in range 200-599" if status < 200 or status > 600 else None


def _grpc_status_error(status: str) -> str | None:
    if status not in GRPC_STATUSES:
        return (
            f'gRPC status "{status}" is not supported. See https://github.com/grpc/grpc/blob/master/doc/statuscodes.md '
            "for a list of supported codes, for example 'NOT_FOUND'"
        )
    return None


def _abort_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    given = [k for k in ("httpStatus", "grpcStatus", "http2Error") if k in value]
    if not given:
        ck.warn(path, "abort configured, but error type not set")
    elif len(given) > 1:
        ck.error(path, f"only one of httpStatus, grpcStatus or http2Error can be set (found {', '.join(given)})")
    elif "http2Error" in value:
        ck.error((*path, "http2Error"), "HTTP/2 abort fault injection not supported yet")


def _fault_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if "delay" not in value and "abort" not in value:
        ck.error(path, "HTTP fault injection must have an abort and/or a delay")


FAULT = Obj(
    {
        "delay": Obj(
            {
                "fixedDelay": Dur(),
                "exponentialDelay": Dur(),
                "percentage": PERCENT,
                "percent": Int(
                    lo=0,
                    hi=100,
                    lo_msg="percentage {value} is not in range 0..100",
                    hi_msg="percentage {value} is not in range 0..100",
                ),
            },
            rules=[_delay_rule],
        ),
        "abort": Obj(
            {
                "httpStatus": Int(validate=_http_status_error),
                "grpcStatus": Str(_grpc_status_error),
                "http2Error": Str(),
                "percentage": PERCENT,
            },
            rules=[_abort_rule],
            hints={"percent": "removed from Istio's Abort; use percentage.value"},
        ),
    },
    rules=[_fault_rule],
)


def _mirror_percentage(value: float) -> str | None:
    if value > 100:
        return f"mirror percentage must have a max value of 100 (it has {value:f})"
    if value < 0:
        return f"mirror percentage must have a min value of 0 (it has {value:f})"
    return None


def _route_mirror_percentage(value: float) -> str | None:
    if value > 100:
        return f"mirror_percentage must have a max value of 100 (it has {value:f})"
    if value < 0:
        return f"mirror_percentage must have a min value of 0 (it has {value:f})"
    return None


def _route_weights(value: dict[str, Any], path: Path, ck: Checker) -> None:
    routes = value.get("route") or []
    total = sum(r.get("weight") or 0 for r in routes)
    if len(routes) > 1 and ck.tutorial_era and total != 100:
        ck.error((*path, "route"), f"total destination weight {total} != 100")
    elif len(routes) > 1 and total == 0:
        ck.error((*path, "route"), "total destination weight = 0")


def _conflicts(value: dict[str, Any], path: Path, ck: Checker, *, delegate_vs: bool) -> None:
    """Istio's ``validateHTTPRouteConflict``: what a root, delegate or plain route may combine."""
    name = value.get("name", "")
    if "delegate" in value and not delegate_vs:
        if "redirect" in value:
            ck.error(path, f"root HTTP route {name} must not specify redirect")
        if "route" in value:
            ck.error(path, f"root HTTP route {name} must not specify route")
        return
    if delegate_vs and "delegate" in value:
        ck.error((*path, "delegate"), "delegate HTTP route cannot contain delegate")
    has_route = bool(value.get("route"))
    if "redirect" in value:
        for key, msg in (
            ("route", "HTTP route cannot contain both route and redirect"),
            ("fault", "HTTP route cannot contain both fault and redirect"),
            ("rewrite", "HTTP route rule cannot contain both rewrite and redirect"),
            ("directResponse", "HTTP route rule cannot contain both direct_response and redirect"),
        ):
            if (has_route if key == "route" else key in value):
                ck.error(path, msg)
    elif "directResponse" in value:
        for key, msg in (
            ("route", "HTTP route cannot contain both route and direct_response"),
            ("fault", "HTTP route cannot contain both fault and direct_response"),
            ("rewrite", "HTTP route rule cannot contain both rewrite and direct_response"),
        ):
            if (has_route if key == "route" else key in value):
                ck.error(path, msg)
    elif not has_route:
        ck.error(path, "HTTP route, redirect or direct_response is required")
    if "mirror" in value and value.get("mirrors"):
        ck.error(path, "HTTP route cannot contain both mirror and mirrors")


def _redirect_rule(value: dict[str, Any], path: Path, ck: Checker, matches: list[Any]) -> None:
    uri, prefix = value.get("uri", ""), value.get("prefixRewrite", "")
    if uri and prefix:
        ck.error(path, "redirect may only specify one of uri or prefix_rewrite")
        return
    if prefix and any(isinstance(m, dict) and "uri" in m and "prefix" not in m["uri"] for m in matches):
        ck.error(path, "redirect prefix_rewrite requires all URI matches to use prefix match type")
        return
    if not (uri or prefix or value.get("authority") or "port" in value or value.get("scheme")):
        ck.error(path, "redirect must specify URI, authority, scheme, or port")
        return
    code = value.get("redirectCode", 0)
    if code and not 300 <= code <= 399:
        ck.error((*path, "redirectCode"), f"{code} is not a valid redirect code, must be 3xx")
        return
    if value.get("scheme") and value["scheme"] not in ("http", "https"):
        ck.error((*path, "scheme"), 'invalid redirect scheme, must be "http" or "https"')
        return
    if value.get("port", 0) > 0 and (msg := port_error(value["port"])):
        ck.error((*path, "port"), msg)


def _direct_response_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    body = value.get("body") or {}
    size = len(body.get("string", "") or body.get("bytes", ""))
    if size > _MB:
        ck.error((*path, "body"), "large direct_responses may impact control plane performance, must be less than 1MB")
    elif size > 100 * _KB:
        ck.warn((*path, "body"), "large direct_responses may impact control plane performance")
    if msg := _http_status_error(value.get("status", 0)):
        ck.error((*path, "status"), msg)


def _rewrite_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    regex = value.get("uriRegexRewrite")
    if value.get("uri") and regex is not None:
        ck.error(path, "rewrite may only contain one of URI or UriRegexRewrite")
    elif not value.get("uri") and regex is None and not value.get("authority"):
        ck.error(
            path,
            "rewrite must specify at least one of URI, UriRegexRewrite, or authority. "
            "Only one of URI or UriRegexRewrite may be specified",
        )
    elif regex is not None:
        if not regex.get("match") or not regex.get("rewrite"):
            ck.error(
                (*path, "uriRegexRewrite"),
                "UriRegexRewrite has errors: UriRegexRewrite requires both Rewrite and Match fields to be specified",
            )
        elif msg := regex_error(regex["match"], "HTTPRewrite.UriRegexRewrite.Match"):
            ck.error((*path, "uriRegexRewrite", "match"), "UriRegexRewrite has errors: " + msg)


def _authority_once(rewrite: dict[str, Any] | None, headers: dict[str, Any], path: Path, ck: Checker) -> None:
    current = (rewrite or {}).get("authority", "")
    request = headers.get("request") or {}
    for verb in ("set", "add"):
        for name, val in (request.get(verb) or {}).items():
            if not is_authority(name):
                continue
            if current:
                ck.error(
                    (*path, "headers", "request", verb, name),
                    f'authority header cannot be set multiple times: have "{current}", attempting to set "{val}"',
                )
                return
            current = val


def _cors_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    for i, origin in enumerate(value.get("allowOrigins") or []):
        match = next((origin[k] for k in ("exact", "prefix", "regex") if k in origin), "")
        if match == "":
            ck.error((*path, "allowOrigins", i), f"'{match}' is not a valid match type for CORS allow origins")
        elif "regex" in origin and (msg := regex_error(origin["regex"], "corsPolicy.allowOrigins")):
            ck.error((*path, "allowOrigins", i), msg)
    for i, method in enumerate(value.get("allowMethods") or []):
        if method not in CORS_METHODS:
            ck.error((*path, "allowMethods", i), f'"{method}" is not a supported HTTP method')
    for key in ("allowHeaders", "exposeHeaders"):
        for i, name in enumerate(value.get(key) or []):
            if msg := cors_name_error(name):
                ck.error((*path, key, i), msg)
    max_age = value.get("maxAge")
    if max_age is not None and (nanos := duration_nanos(max_age)) is not None and nanos % 1_000_000_000:
        ck.error((*path, "maxAge"), "max_age duration is accurate only to seconds precision")


CORS_POLICY = Obj(
    {
        "allowOrigin": ListOf(Str()),
        "allowOrigins": ListOf(STRING_MATCH),
        "allowMethods": ListOf(Str()),
        "allowHeaders": ListOf(Str()),
        "exposeHeaders": ListOf(Str()),
        "maxAge": Dur(),
        "allowCredentials": Bool(),
        "unmatchedPreflights": Enum("UNSPECIFIED", "FORWARD", "IGNORE"),
    },
    rules=[_cors_rule],
)


def _http_route_rule(value: dict[str, Any], path: Path, ck: Checker, *, delegate_vs: bool) -> None:
    _conflicts(value, path, ck, delegate_vs=delegate_vs)
    if "redirect" in value:
        _redirect_rule(value["redirect"], (*path, "redirect"), ck, value.get("match") or [])
    if "directResponse" in value:
        _direct_response_rule(value["directResponse"], (*path, "directResponse"), ck)
    if "rewrite" in value:
        _rewrite_rule(value["rewrite"], (*path, "rewrite"), ck)
    _authority_once(value.get("rewrite"), value.get("headers") or {}, path, ck)
    if "mirrorPercent" in value:
        ck.warn(
            (*path, "mirrorPercent"),
            'using deprecated setting "mirrorPercent", use "mirrorPercentage" instead',
            code=DEPRECATED,
        )
    _route_weights(value, path, ck)


def _http_route(*, delegate_vs: bool) -> Obj:
    def rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
        _http_route_rule(value, path, ck, delegate_vs=delegate_vs)

    return Obj(
        {
            "name": Str(),
            "match": ListOf(MATCH),
            "route": ListOf(ROUTE_DESTINATION),
            "redirect": Obj(
                {
                    "uri": Str(),
                    "authority": Str(),
                    "port": Int(),
                    "scheme": Str(),
                    "derivePort": Enum("FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"),
                    "redirectCode": Int(),
                    "prefixRewrite": Str(),
                }
            ),
            "directResponse": Obj(
                {"status": Int(), "body": Obj({"string": Str(), "bytes": Str()})},
                required=("status",),
            ),
            "delegate": Obj({"name": Str(), "namespace": Str()}, required=("name",)),
            "rewrite": Obj(
                {"uri": Str(), "authority": Str(), "uriRegexRewrite": Obj({"match": Str(), "rewrite": Str()})}
            ),
            "timeout": Dur(),
            "retries": RETRIES,
            "fault": FAULT,
            "mirror": DESTINATION,
            "mirrors": ListOf(
                Obj({"destination": DESTINATION, "percentage": Obj({"value": Num(_mirror_percentage)})},
                    required=("destination",))
            ),
            "mirrorPercentage": Obj({"value": Num(_route_mirror_percentage)}),
            "mirrorPercent": Int(lo=0, hi=100, hi_msg="mirror_percent must have a max value of 100 (it has {value})"),
            "corsPolicy": CORS_POLICY,
            "headers": HEADERS,
        },
        rules=[rule],
    )


HTTP_ROUTE = _http_route(delegate_vs=False)
DELEGATE_HTTP_ROUTE = _http_route(delegate_vs=True)


def _l4_match_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    for i, subnet in enumerate(value.get("destinationSubnets") or []):
        if msg := ip_subnet_error(subnet):
            ck.error((*path, "destinationSubnets", i), msg)
    for msg in label_errors(value.get("sourceLabels") or {}):
        ck.error((*path, "sourceLabels"), msg)
    _gateway_names(value.get("gateways") or [], (*path, "gateways"), ck)


_L4_MATCH_FIELDS = {
    "destinationSubnets": ListOf(Str()),
    "gateways": ListOf(Str()),
    "port": PORT_NUMBER,
    "sourceLabels": LABELS,
    "sourceNamespace": Str(),
}
_L4_DESTINATIONS = ListOf(
    Obj({"destination": DESTINATION, "weight": Int(lo=0, lo_msg="weight {value} < 0")}, required=("destination",))
)


def _l4_route_rule(what: str) -> Any:
    def rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
        routes = value.get("route") or []
        if not routes:
            ck.error(path, f"{what} route is required")
        if len(routes) > 1 and sum(r.get("weight") or 0 for r in routes) == 0:
            ck.error((*path, "route"), "total destination weight = 0")

    return rule


TCP_ROUTE = Obj(
    {
        "match": ListOf(Obj({**_L4_MATCH_FIELDS, "sourceSubnet": Str()}, rules=[_l4_match_rule])),
        "route": _L4_DESTINATIONS,
    },
    rules=[_l4_route_rule("TCP")],
)
TLS_ROUTE = Obj(
    {
        "match": ListOf(Obj({**_L4_MATCH_FIELDS, "sniHosts": ListOf(Str())}, rules=[_l4_match_rule])),
        "route": _L4_DESTINATIONS,
    },
    rules=[_l4_route_rule("TLS")],
)
L4_ROUTE = TCP_ROUTE


def _gateway_bound(value: dict[str, Any]) -> bool:
    gateways = value.get("gateways") or []
    return bool(gateways) and "mesh" not in gateways


def _sni_rules(value: dict[str, Any], path: Path, ck: Checker) -> None:
    hosts = value.get("hosts") or []
    bound = _gateway_bound(value)
    for i, route in enumerate(value.get("tls") or []):
        where = (*path, "tls", i)
        if not route.get("match"):
            ck.error(where, "TLS route must have at least one match condition")
        for j, match in enumerate(route.get("match") or []):
            snis = match.get("sniHosts") or []
            if not snis:
                ck.error((*where, "match", j), "TLS match must have at least one SNI host")
            for k, sni in enumerate(snis):
                at = (*where, "match", j, "sniHosts", k)
                msg = _bound_host_error(sni, sni=True) if bound else wildcard_domain_error(sni)
                if msg:
                    if is_ip(sni):
                        ck.warn(at, f'using an IP address ("{sni}") goes against SNI spec and most clients '
                                "do not support this")
                    else:
                        ck.error(at, msg)
                elif not any(host_subset_of(sni, h) for h in hosts):
                    ck.error(at, f'SNI host "{sni}" is not a compatible subset of any of the virtual service hosts: '
                                 f"[{', '.join(hosts)}]")


def _bound_host_error(host: str, *, sni: bool) -> str | None:
    """Hosts of a gateway-bound VirtualService; SNI hosts may be Istio's ``outbound_.<port>_._.<host>``."""
    if sni and host.startswith("outbound_") and not fqdn_error(host.replace("_", "x")):
        return None
    return wildcard_domain_error(host)


def _jwt_claim_routes(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if _gateway_bound(value):
        return
    shown = "[" + " ".join(value.get("gateways") or []) + "]"
    for i, route in enumerate(value.get("http") or []):
        for j, match in enumerate(route.get("match") or []):
            for key in ("headers", "withoutHeaders"):
                for name in match.get(key) or {}:
                    if is_jwt_claim_route(name):
                        ck.error(
                            (*path, "http", i, "match", j, key, name),
                            f"JWT claim based routing (key: {name}) is only supported for gateway, "
                            f"found no gateways: {shown}",
                        )


def _virtual_service_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    hosts = value.get("hosts") or []
    if not hosts:  # a delegate VirtualService
        for key, what in (("gateways", "gateways specified"), ("tls", "tls route specified"),
                          ("tcp", "tcp route specified")):
            if value.get(key):
                ck.error((*path, key), f"delegate virtual service must have no {what}")
    _gateway_names(value.get("gateways") or [], (*path, "gateways"), ck)
    _jwt_claim_routes(value, path, ck)
    bound = _gateway_bound(value)
    sni = any(m.get("sniHosts") for r in value.get("tls") or [] for m in r.get("match") or [])
    valid = True
    for i, host in enumerate(hosts):
        msg = _bound_host_error(host, sni=sni) if bound else wildcard_domain_error(host)
        if msg:
            if not is_ip(host):
                ck.error((*path, "hosts", i), msg)
                valid = False
        elif not bound and host == "*":
            ck.error(
                (*path, "hosts", i), "wildcard host * is not allowed for virtual services bound to the mesh gateway"
            )
            valid = False
    if valid:
        for i, a in enumerate(hosts):
            for b in hosts[i + 1:]:
                if host_matches(a, b):
                    ck.error((*path, "hosts"), f"duplicate hosts in virtual service: {a} & {b}")
    if not any(value.get(k) for k in ("http", "tcp", "tls")):
        ck.error(path, "http, tcp or tls must be provided in virtual service")
    _sni_rules(value, path, ck)
    for msg in export_to_errors(ck.namespace, value.get("exportTo") or []):
        ck.error((*path, "exportTo"), msg)
    for section in ("http", "tcp", "tls"):
        if isinstance(value.get(section), list):
            unreachable_rules(value[section], (*path, section), ck, section)


_VS_FIELDS: dict[str, Schema] = {
    "hosts": ListOf(Str()),
    "gateways": ListOf(Str()),
    "http": ListOf(HTTP_ROUTE),
    "tcp": ListOf(TCP_ROUTE),
    "tls": ListOf(TLS_ROUTE),
    "exportTo": STRINGS,
}
_PLAIN_VS = Obj(_VS_FIELDS, rules=[_virtual_service_rule])
_DELEGATE_VS = Obj({**_VS_FIELDS, "http": ListOf(DELEGATE_HTTP_ROUTE)}, rules=[_virtual_service_rule])


class _VirtualServiceSchema(Schema):
    """A VirtualService without hosts is a delegate: its routes follow the delegate rules."""

    expected = "object"

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        delegate = isinstance(value, dict) and not value.get("hosts")
        (_DELEGATE_VS if delegate else _PLAIN_VS).check(value, path, ck)


VIRTUAL_SERVICE: Schema = _VirtualServiceSchema()


def normalise_virtual_service(spec: dict[str, Any]) -> None:
    """Fold deprecated integer percents into ``percentage`` (only where no percentage is given)."""
    for route in spec.get("http") or []:
        delay = (route.get("fault") or {}).get("delay")
        if isinstance(delay, dict) and "percent" in delay and "percentage" not in delay:
            delay["percentage"] = {"value": float(delay["percent"])}
        if "mirrorPercent" in route and "mirrorPercentage" not in route:
            route["mirrorPercentage"] = {"value": float(route["mirrorPercent"])}
