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

import re
from typing import Any

from meshkit.resources.common import (
    DESTINATION,
    LABELS,
    PERCENT,
    PORT_NUMBER,
    PRESENCE_MATCH,
    STRING_MATCH,
    STRINGS,
    host_error,
)
from meshkit.resources.model import Path
from meshkit.resources.reachability import unreachable_rules
from meshkit.resources.schema import (
    Bool,
    Checker,
    Dur,
    Enum,
    Int,
    ListOf,
    Loose,
    MapOf,
    Num,
    Obj,
    Str,
)

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
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
DEPRECATED = "IST0002"


def _header_key(name: str) -> str | None:
    if not _HEADER_NAME.match(name):
        return f'header name "{name}" is not a valid HTTP header name'
    return None


def _mirror_percentage(value: float) -> str | None:
    if value > 100:
        return f"mirror percentage must have a max value of 100 (it has {value:f})"
    if value < 0:
        return f"mirror percentage must have a min value of 0 (it has {value:f})"
    return None


MIRROR_PERCENT = Obj({"value": Num(_mirror_percentage)})
HEADER_OPERATIONS = Obj(
    {
        "set": MapOf(Str(), key=_header_key),
        "add": MapOf(Str(), key=_header_key),
        "remove": ListOf(Str(_header_key)),
    }
)
HEADERS = Obj({"request": HEADER_OPERATIONS, "response": HEADER_OPERATIONS})


def _lowercase_headers(value: dict[str, Any], path: Path, ck: Checker) -> None:
    for key in ("headers", "withoutHeaders"):
        for name in value.get(key) or {}:
            if name != name.lower():
                ck.warn(
                    (*path, key, name),
                    f'header name "{name}" should be lowercase: Istio matches '
                    f'header keys in lowercase, so use "{name.lower()}"',
                )


MATCH = Obj(
    {
        "name": Str(),
        "uri": STRING_MATCH,
        "scheme": STRING_MATCH,
        "method": STRING_MATCH,
        "authority": STRING_MATCH,
        "headers": MapOf(PRESENCE_MATCH, key=_header_key),
        "withoutHeaders": MapOf(PRESENCE_MATCH, key=_header_key),
        "queryParams": MapOf(PRESENCE_MATCH),
        "port": PORT_NUMBER,
        "sourceLabels": LABELS,
        "gateways": STRINGS,
        "ignoreUriCase": Bool(),
        "sourceNamespace": Str(),
        "statPrefix": Str(),
    },
    rules=[_lowercase_headers],
)

ROUTE_DESTINATION = Obj(
    {"destination": DESTINATION, "weight": Int(lo=0, lo_msg="weight {value} < 0"), "headers": HEADERS},
    required=("destination",),
)


def _retry_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    attempts = value.get("attempts") or 0
    if attempts == 0 and any(value.get(k) is not None for k in ("perTryTimeout", "retryOn", "retryRemoteLocalities")):
        ck.error(path, "http retry policy configured when attempts are set to 0 (disabled)")
    retry_on = value.get("retryOn")
    if retry_on:
        for policy in retry_on.split(","):
            status = int(policy) if policy.isdigit() else 0
            if not 100 <= status <= 599 and policy not in RETRY_ON_POLICIES:
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
    elif "fixedDelay" not in value:
        ck.error((*path, "fixedDelay"), 'required field "fixedDelay" is missing')
    if "percent" in value:
        ck.warn(
            (*path, "percent"),
            "Deprecated: HTTPRoute.fault.delay.percent is deprecated; use HTTPRoute.fault.delay.percentage",
            code=DEPRECATED,
        )


def _abort_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    given = [k for k in ("httpStatus", "grpcStatus", "http2Error") if k in value]
    if not given:
        ck.error(path, "abort must set httpStatus (or grpcStatus)")
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
                "httpStatus": Int(
                    lo=200,
                    hi=599,
                    lo_msg="HTTP status {value} is not in range 200-599",
                    hi_msg="HTTP status {value} is not in range 200-599",
                ),
                "grpcStatus": Str(),
                "http2Error": Str(),
                "percentage": PERCENT,
            },
            rules=[_abort_rule],
            hints={"percent": "removed from Istio's Abort; use percentage.value"},
        ),
    },
    rules=[_fault_rule],
)


def _route_weights(value: dict[str, Any], path: Path, ck: Checker) -> None:
    routes = value.get("route") or []
    total = sum(r.get("weight") or 0 for r in routes)
    if len(routes) > 1 and ck.tutorial_era and total != 100:
        ck.error((*path, "route"), f"total destination weight {total} != 100")
    elif len(routes) > 1 and total == 0:
        ck.error((*path, "route"), "total destination weight = 0")


def _http_route_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    has_route = bool(value.get("route"))
    targets = [k for k in ("redirect", "directResponse", "delegate") if k in value]
    if not has_route and not targets:
        ck.error(path, "HTTP route, redirect, direct response or delegate is required")
    if has_route and "redirect" in value:
        ck.error(path, "HTTP route cannot contain both route and redirect")
    if has_route and "directResponse" in value:
        ck.error(path, "HTTP route cannot contain both route and direct response")
    if "redirect" in value and "directResponse" in value:
        ck.error(path, "HTTP route cannot contain both redirect and direct response")
    if "mirror" in value and "mirrors" in value:
        ck.error(path, "only one of mirror or mirrors can be set")
    if "mirrorPercent" in value:
        ck.warn(
            (*path, "mirrorPercent"),
            "Deprecated: HTTPRoute.mirror_percent is deprecated; use HTTPRoute.mirror_percentage",
            code=DEPRECATED,
        )
    _route_weights(value, path, ck)


HTTP_ROUTE = Obj(
    {
        "name": Str(),
        "match": ListOf(MATCH),
        "route": ListOf(ROUTE_DESTINATION),
        "redirect": Obj(
            {
                "uri": Str(),
                "authority": Str(),
                "port": PORT_NUMBER,
                "scheme": Str(),
                "derivePort": Enum("FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"),
                "redirectCode": Int(
                    lo=300,
                    hi=399,
                    lo_msg="redirect code {value} is not a 3xx code",
                    hi_msg="redirect code {value} is not a 3xx code",
                ),
            }
        ),
        "directResponse": Obj(
            {
                "status": Int(
                    lo=200,
                    hi=599,
                    lo_msg="HTTP status {value} is not in range 200-599",
                    hi_msg="HTTP status {value} is not in range 200-599",
                ),
                "body": Obj({"string": Str(), "bytes": Str()}),
            },
            required=("status",),
        ),
        "delegate": Obj({"name": Str(), "namespace": Str()}, required=("name",)),
        "rewrite": Obj({"uri": Str(), "authority": Str(), "uriRegexRewrite": Obj({"match": Str(), "rewrite": Str()})}),
        "timeout": Dur(),
        "retries": RETRIES,
        "fault": FAULT,
        "mirror": DESTINATION,
        "mirrors": ListOf(Obj({"destination": DESTINATION, "percentage": MIRROR_PERCENT}, required=("destination",))),
        "mirrorPercentage": MIRROR_PERCENT,
        "mirrorPercent": Int(lo=0, hi=100, hi_msg="mirror_percent must have a max value of 100 (it has {value})"),
        "corsPolicy": Loose(),
        "headers": HEADERS,
    },
    rules=[_http_route_rule],
)

L4_ROUTE = Obj(
    {
        "match": ListOf(Loose()),
        "route": ListOf(
            Obj(
                {"destination": DESTINATION, "weight": Int(lo=0, lo_msg="weight {value} < 0")},
                required=("destination",),
            )
        ),
    },
    required=("route",),
)


def _virtual_service_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if not value.get("hosts"):
        ck.error((*path, "hosts"), "virtual service must have at least one host")
    if not any(value.get(k) for k in ("http", "tcp", "tls")):
        ck.error(path, "http, tcp or tls must be provided in virtual service")
    gateways = value.get("gateways") or []
    if "*" in (value.get("hosts") or []) and (not gateways or "mesh" in gateways):
        ck.error((*path, "hosts"), "wildcard host * is not allowed for virtual services bound to the mesh gateway")
    unreachable_rules(value.get("http") or [], (*path, "http"), ck)


VIRTUAL_SERVICE = Obj(
    {
        "hosts": ListOf(Str(host_error)),
        "gateways": ListOf(Str()),
        "http": ListOf(HTTP_ROUTE),
        "tcp": ListOf(L4_ROUTE),
        "tls": ListOf(L4_ROUTE),
        "exportTo": STRINGS,
    },
    rules=[_virtual_service_rule],
)


def normalise_virtual_service(spec: dict[str, Any]) -> None:
    """Fold deprecated integer percents into ``percentage`` (only where no percentage is given)."""
    for route in spec.get("http") or []:
        delay = (route.get("fault") or {}).get("delay")
        if isinstance(delay, dict) and "percent" in delay and "percentage" not in delay:
            delay["percentage"] = {"value": float(delay["percent"])}
        if "mirrorPercent" in route and "mirrorPercentage" not in route:
            route["mirrorPercentage"] = {"value": float(route["mirrorPercent"])}
