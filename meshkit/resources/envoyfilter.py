"""EnvoyFilter: Istio's rules for every patch, and Envoy's *local rate limit* in detail.

The local mesh has no Envoy to patch. It simulates the local rate limit in the forms Istio documents:
the filter inserted (``applyTo: HTTP_FILTER``, ``INSERT_BEFORE`` ``envoy.filters.http.local_ratelimit``)
into a workload's inbound listener or the ingress gateway with a token bucket, and the per-route
form of Istio's own sample (the filter inserted with only a ``stat_prefix``, and an ``HTTP_ROUTE``
``MERGE`` whose ``typed_per_filter_config`` holds the bucket). The config is given either in a
``TypedStruct`` (``type_url`` + ``value``) or directly with ``@type``. Any other EnvoyFilter is
validated as Istio validates it, accepted, stored, and reported as not simulated locally.

Example::

    >>> from meshkit.resources.schema import Checker
    >>> ck = Checker()
    >>> ENVOY_FILTER.check({"configPatches": [{"applyTo": "CLUSTER"}]}, ("spec",), ck)
    >>> ck.findings[-1].message
    'Envoy filter: missing patch'
"""

from __future__ import annotations

from typing import Any

from meshkit.resources.common import LABELS, PORT_NUMBER, TARGET_REF
from meshkit.resources.duration import parse_nanos
from meshkit.resources.model import Path
from meshkit.resources.names import selector_errors
from meshkit.resources.regex import re2_error
from meshkit.resources.schema import Bool, Checker, Dur, Enum, Int, ListOf, Loose, MapOf, Obj, Schema, Str

TYPED_STRUCT = "type.googleapis.com/udpa.type.v1.TypedStruct"
XDS_TYPED_STRUCT = "type.googleapis.com/xds.type.v3.TypedStruct"
LOCAL_RATE_LIMIT = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
FILTER_NAME = "envoy.filters.http.local_ratelimit"
HCM = "envoy.filters.network.http_connection_manager"
NOT_SIMULATED = "IST0133"
IMPLEMENTATION_WARNING = (
    "EnvoyFilter exposes internal implementation details that may change at any time. Prefer other APIs if "
    "possible, and exercise extreme caution, especially around upgrades."
)
SUPPORTED = (
    "the local mesh simulates only the Envoy local rate-limit EnvoyFilter (applyTo: HTTP_FILTER with "
    f"patch.value.name: {FILTER_NAME} and {LOCAL_RATE_LIMIT}, optionally per route with applyTo: HTTP_ROUTE "
    "and typed_per_filter_config)"
)
APPLY_TO = (
    "INVALID",
    "LISTENER",
    "FILTER_CHAIN",
    "NETWORK_FILTER",
    "HTTP_FILTER",
    "ROUTE_CONFIGURATION",
    "VIRTUAL_HOST",
    "HTTP_ROUTE",
    "CLUSTER",
    "EXTENSION_CONFIG",
    "BOOTSTRAP",
    "LISTENER_FILTER",
)
OPERATIONS = (
    "INVALID",
    "MERGE",
    "ADD",
    "REMOVE",
    "INSERT_BEFORE",
    "INSERT_AFTER",
    "INSERT_FIRST",
    "REPLACE",
    "MERGE_AND_REPLACE_LIST",
)
_LISTENER_CLASS = ("LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER")
_ROUTE_CLASS = ("ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE")


def _fill_interval(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if "fill_interval" in value and parse_nanos(value["fill_interval"]) < 50_000_000:
        ck.error((*path, "fill_interval"), "fill_interval must be at least 50ms")


_FRACTION = Obj(
    {
        "runtime_key": Str(),
        "default_value": Obj(
            {
                "numerator": Int(lo=0, hi=100, hi_msg="numerator {value} must be in 0..100 with denominator HUNDRED"),
                "denominator": Enum("HUNDRED"),
            },
            required=("numerator",),
        ),
    },
    required=("default_value",),
)
TOKEN_BUCKET = Obj(
    {
        "max_tokens": Int(lo=1, lo_msg="max_tokens must be at least 1"),
        "tokens_per_fill": Int(lo=1, lo_msg="tokens_per_fill must be at least 1"),
        "fill_interval": Dur(),
    },
    required=("max_tokens", "fill_interval"),
    rules=[_fill_interval],
)
_HEADER_VALUE = Obj(
    {
        "append": Bool(),
        "append_action": Enum("APPEND_IF_EXISTS_OR_ADD", "ADD_IF_ABSENT", "OVERWRITE_IF_EXISTS_OR_ADD"),
        "header": Obj({"key": Str(), "value": Str()}, required=("key", "value")),
    },
    required=("header",),
)
RATE_LIMIT = Obj(
    {
        "stat_prefix": Str(),
        "token_bucket": TOKEN_BUCKET,
        "filter_enabled": _FRACTION,
        "filter_enforced": _FRACTION,
        "response_headers_to_add": ListOf(_HEADER_VALUE),
        "request_headers_to_add_when_not_enforced": ListOf(_HEADER_VALUE),
        "descriptors": ListOf(
            Obj(
                {
                    "entries": ListOf(Obj({"key": Str(), "value": Str()}, required=("key",))),
                    "token_bucket": TOKEN_BUCKET,
                },
                required=("entries", "token_bucket"),
            )
        ),
        "stage": Int(lo=0, hi=10),
        "enable_x_ratelimit_headers": Enum("OFF", "DRAFT_VERSION_03"),
        "local_rate_limit_per_downstream_connection": Bool(),
        "always_consume_default_token_bucket": Bool(),
        "rate_limited_as_resource_exhausted": Bool(),
        "status": Obj({"code": Int(lo=200, hi=599)}),
        "vh_rate_limits": Enum("OVERRIDE", "INCLUDE", "IGNORE"),
    },
    required=("stat_prefix",),
)


def rate_limit_config(typed: Any) -> tuple[dict[str, Any], Path] | None:
    """The LocalRateLimit config inside a ``typed_config`` (TypedStruct or direct), and where it is."""
    if not isinstance(typed, dict):
        return None
    kind = typed.get("@type")
    if kind in (TYPED_STRUCT, XDS_TYPED_STRUCT) and typed.get("type_url") == LOCAL_RATE_LIMIT:
        value = typed.get("value")
        return (value if isinstance(value, dict) else {}), ("value",)
    if kind == LOCAL_RATE_LIMIT:
        return {k: v for k, v in typed.items() if k != "@type"}, ()
    return None


def is_local_rate_limit_patch(patch: dict[str, Any]) -> bool:
    """A patch in one of the documented local rate-limit forms (listener filter or per-route config)."""
    value = (patch.get("patch") or {}).get("value") or {}
    if patch.get("applyTo") == "HTTP_FILTER" and value.get("name") == FILTER_NAME:
        return True
    per_route = value.get("typed_per_filter_config") if patch.get("applyTo") == "HTTP_ROUTE" else None
    return isinstance(per_route, dict) and FILTER_NAME in per_route


def _check_rate_limit(typed: Any, path: Path, ck: Checker) -> None:
    found = rate_limit_config(typed)
    if found is None:
        ck.error(
            path,
            f"{FILTER_NAME} needs typed_config with @type {LOCAL_RATE_LIMIT}, or a TypedStruct ({TYPED_STRUCT}) "
            "with that type_url and a value",
        )
        return
    config, sub = found
    RATE_LIMIT.check(config, (*path, *sub), ck)


def _rate_limit_patch(patch: dict[str, Any], path: Path, ck: Checker) -> None:
    value = patch["patch"]["value"]
    where = (*path, "patch", "value")
    if patch["applyTo"] == "HTTP_FILTER":
        filt = ((patch.get("match") or {}).get("listener") or {}).get("filterChain", {}).get("filter") or {}
        if filt.get("name") not in (None, HCM, "envoy.http_connection_manager"):
            ck.error(
                (*path, "match", "listener", "filterChain", "filter", "name"),
                f'the local rate-limit filter goes into "{HCM}", not "{filt["name"]}"',
            )
        _check_rate_limit(value.get("typed_config"), (*where, "typed_config"), ck)
    else:
        _check_rate_limit(
            value["typed_per_filter_config"][FILTER_NAME], (*where, "typed_per_filter_config", FILTER_NAME), ck
        )


def _patch_rule(patch: dict[str, Any], path: Path, ck: Checker) -> bool:
    """Istio's checks of one config patch; False when it stops at a missing part, as Istio does."""
    match = patch.get("match") or {}
    if (match.get("context") == "WAYPOINT") != ("waypoint" in match):
        ck.error((*path, "match"), "only support waypointMatch when context is WAYPOINT")
        return False
    if match.get("context") == "WAYPOINT":
        return False
    apply_to = patch.get("applyTo", "INVALID")
    if apply_to == "INVALID":
        ck.error((*path, "applyTo"), "Envoy filter: missing applyTo")
        return False
    body = patch.get("patch")
    if body is None:
        ck.error((*path, "patch"), "Envoy filter: missing patch")
        return False
    operation = body.get("operation", "INVALID")
    if operation == "INVALID":
        ck.error((*path, "patch", "operation"), "Envoy filter: missing patch operation")
        return False
    if operation != "REMOVE" and "value" not in body:
        ck.error((*path, "patch", "value"), "Envoy filter: missing patch value for non-remove operation")
        return False
    version = (match.get("proxy") or {}).get("proxyVersion", "")
    if len(version) > 1024:
        ck.warn(
            (*path, "match", "proxy", "proxyVersion"),
            "Envoy filter: proxyVersion match exceeds 1024 characters and will be ignored",
        )
    elif version and (msg := re2_error(version, "proxyVersion")):
        ck.error((*path, "match", "proxy", "proxyVersion"), f"Envoy filter: invalid regex for proxy version, [{msg}]")
        return False
    object_types = [k for k in ("listener", "routeConfiguration", "cluster", "waypoint") if k in match]
    if apply_to in _LISTENER_CLASS and object_types:
        if "listener" not in match:
            ck.error(
                (*path, "match"), "Envoy filter: applyTo for listener class objects cannot have non listener match"
            )
            return False
        filt = (match["listener"].get("filterChain") or {}).get("filter")
        if filt is not None:
            if apply_to in ("LISTENER", "FILTER_CHAIN"):
                ck.warn((*path, "match"), f"Envoy filter: filter match has no effect when used with {apply_to}")
            if not filt.get("name"):
                ck.error((*path, "match"), "Envoy filter: filter match has no name to match on")
                return False
            if "subFilter" in filt:
                if apply_to != "HTTP_FILTER":
                    ck.error(
                        (*path, "match"), "Envoy filter: subfilter match can be used with applyTo HTTP_FILTER only"
                    )
                    return False
                if filt["name"] not in (HCM, "envoy.http_connection_manager"):
                    ck.error((*path, "match"), f"Envoy filter: subfilter match requires filter match with {HCM}")
                    return False
                if not filt["subFilter"].get("name"):
                    ck.error((*path, "match"), "Envoy filter: subfilter match has no name to match on")
                    return False
    elif apply_to in _ROUTE_CLASS and object_types and "routeConfiguration" not in match:
        ck.error(
            (*path, "match"),
            "Envoy filter: applyTo for http route class objects cannot have non route configuration match",
        )
    elif apply_to == "CLUSTER" and object_types and "cluster" not in match:
        ck.error((*path, "match"), "Envoy filter: applyTo for cluster class objects cannot have non cluster match")
    return True


_NAME = Obj({"name": Str(), "subFilter": Obj({"name": Str()})})
_MATCH = Obj(
    {
        "context": Enum("ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY", "WAYPOINT"),
        "proxy": Obj({"proxyVersion": Str(), "metadata": MapOf(Str())}),
        "listener": Obj(
            {
                "portNumber": PORT_NUMBER,
                "portName": Str(),
                "name": Str(),
                "listenerFilter": Str(),
                "filterChain": Obj(
                    {
                        "name": Str(),
                        "sni": Str(),
                        "transportProtocol": Str(),
                        "applicationProtocols": Str(),
                        "destinationPort": Int(),
                        "filter": _NAME,
                    }
                ),
            }
        ),
        "routeConfiguration": Obj(
            {
                "portNumber": Int(),
                "portName": Str(),
                "gateway": Str(),
                "name": Str(),
                "vhost": Obj(
                    {
                        "name": Str(),
                        "domainName": Str(),
                        "route": Obj({"name": Str(), "action": Enum("ANY", "ROUTE", "REDIRECT", "DIRECT_RESPONSE")}),
                    }
                ),
            }
        ),
        "cluster": Obj({"portNumber": Int(), "service": Str(), "subset": Str(), "name": Str()}),
        "waypoint": Obj({"filter": _NAME, "route": Obj({"name": Str()}), "portNumber": PORT_NUMBER}),
    }
)
_PATCH = Obj(
    {
        "applyTo": Enum(*APPLY_TO),
        "match": _MATCH,
        "patch": Obj(
            {
                "operation": Enum(*OPERATIONS),
                "value": Loose(),
                "filterClass": Enum("UNSPECIFIED", "AUTHN", "AUTHZ", "STATS"),
            }
        ),
    }
)


def _envoy_filter_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    ck.warn(path, IMPLEMENTATION_WARNING)
    if "workloadSelector" in value and "targetRefs" in value:
        ck.error(path, "only one of targetRefs or workloadSelector can be set")
    if "workloadSelector" in value:
        labels = (value["workloadSelector"] or {}).get("labels") or {}
        for msg in selector_errors(labels):
            ck.error((*path, "workloadSelector"), msg)
        if not labels:
            ck.warn(
                (*path, "workloadSelector"),
                "Envoy filter: workload selector specified without labels, will be applied to all services in "
                "namespace",
            )
    for i, patch in enumerate(value.get("configPatches") or []):
        where = (*path, "configPatches", i)
        if not _patch_rule(patch, where, ck):
            continue
        if is_local_rate_limit_patch(patch):
            _rate_limit_patch(patch, where, ck)
        else:
            ck.warn(
                where,
                f"not simulated by the local mesh (applyTo: {patch.get('applyTo')}); stored as given, it takes "
                f"effect on a real cluster only: {SUPPORTED}",
                code=NOT_SIMULATED,
            )


ENVOY_FILTER: Schema = Obj(
    {
        "workloadSelector": Obj({"labels": LABELS}),
        "targetRefs": ListOf(TARGET_REF),
        "configPatches": ListOf(_PATCH),
        "priority": Int(),
    },
    rules=[_envoy_filter_rule],
)


def local_rate_limit_filter(
    name: str,
    app: str,
    *,
    namespace: str = "tutorial",
    max_tokens: int = 10,
    tokens_per_fill: int | None = None,
    fill_interval: str = "60s",
    context: str = "SIDECAR_INBOUND",
) -> dict[str, Any]:
    """Build the documented local rate-limit EnvoyFilter for pods labelled ``app: <app>``.

    Example::

        >>> f = local_rate_limit_filter("recommendation-ratelimit", "recommendation", max_tokens=4)
        >>> f["spec"]["configPatches"][0]["patch"]["value"]["name"]
        'envoy.filters.http.local_ratelimit'
    """
    fraction = {"numerator": 100, "denominator": "HUNDRED"}
    return {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "workloadSelector": {"labels": {"app": app}},
            "configPatches": [
                {
                    "applyTo": "HTTP_FILTER",
                    "match": {"context": context, "listener": {"filterChain": {"filter": {"name": HCM}}}},
                    "patch": {
                        "operation": "INSERT_BEFORE",
                        "value": {
                            "name": FILTER_NAME,
                            "typed_config": {
                                "@type": TYPED_STRUCT,
                                "type_url": LOCAL_RATE_LIMIT,
                                "value": {
                                    "stat_prefix": "http_local_rate_limiter",
                                    "token_bucket": {
                                        "max_tokens": max_tokens,
                                        "tokens_per_fill": tokens_per_fill or max_tokens,
                                        "fill_interval": fill_interval,
                                    },
                                    "filter_enabled": {
                                        "runtime_key": "local_rate_limit_enabled",
                                        "default_value": dict(fraction),
                                    },
                                    "filter_enforced": {
                                        "runtime_key": "local_rate_limit_enforced",
                                        "default_value": dict(fraction),
                                    },
                                },
                            },
                        },
                    },
                }
            ],
        },
    }
