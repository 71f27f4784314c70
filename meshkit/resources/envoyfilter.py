"""EnvoyFilter, accepted only in the shape Istio documents for Envoy's HTTP *local rate limit*.

The local mesh has no Envoy to patch, so it understands exactly one EnvoyFilter: the one that inserts
``envoy.filters.http.local_ratelimit`` (a token bucket) before the router of a workload's inbound
listener or of the ingress gateway. Anything else is refused with what was expected and what was seen.

Example::

    >>> from meshkit.resources.schema import Checker
    >>> ck = Checker()
    >>> ENVOY_FILTER.check({"configPatches": [{"applyTo": "CLUSTER"}]}, ("spec",), ck)
    >>> ck.findings[0].message.endswith("this patch has applyTo: CLUSTER")
    True
"""

from __future__ import annotations

from typing import Any

from meshkit.resources.common import LABELS, PORT_NUMBER
from meshkit.resources.duration import parse_nanos
from meshkit.resources.model import Path
from meshkit.resources.schema import Bool, Checker, Dur, Enum, Int, ListOf, MapOf, Obj, Schema, Str

TYPED_STRUCT = "type.googleapis.com/udpa.type.v1.TypedStruct"
LOCAL_RATE_LIMIT = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
FILTER_NAME = "envoy.filters.http.local_ratelimit"
HCM = "envoy.filters.network.http_connection_manager"
SUPPORTED = (
    "the local mesh supports only the Envoy local rate-limit EnvoyFilter (applyTo: HTTP_FILTER, "
    "match.context: SIDECAR_INBOUND or GATEWAY, patch.operation: INSERT_BEFORE, "
    f"patch.value.name: {FILTER_NAME}, typed_config: {TYPED_STRUCT} with type_url: {LOCAL_RATE_LIMIT})"
)

# (path inside the patch, accepted values) in the order they are checked
_DISCRIMINATORS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("applyTo",), ("HTTP_FILTER",)),
    (("match", "context"), ("SIDECAR_INBOUND", "GATEWAY")),
    (("patch", "operation"), ("INSERT_BEFORE",)),
    (("patch", "value", "name"), (FILTER_NAME,)),
    (("patch", "value", "typed_config", "@type"), (TYPED_STRUCT,)),
    (("patch", "value", "typed_config", "type_url"), (LOCAL_RATE_LIMIT,)),
)


def _lookup(patch: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if not isinstance(patch, dict):
            return None
        patch = patch.get(key)
    return patch


def _fill_interval(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if parse_nanos(value["fill_interval"]) < 50_000_000:
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
_RATE_LIMIT = Obj(
    {
        "stat_prefix": Str(),
        "token_bucket": Obj(
            {
                "max_tokens": Int(lo=1, lo_msg="max_tokens must be at least 1"),
                "tokens_per_fill": Int(lo=1, lo_msg="tokens_per_fill must be at least 1"),
                "fill_interval": Dur(),
            },
            required=("max_tokens", "fill_interval"),
            rules=[_fill_interval],
        ),
        "filter_enabled": _FRACTION,
        "filter_enforced": _FRACTION,
        "response_headers_to_add": ListOf(
            Obj(
                {
                    "append": Bool(),
                    "append_action": Enum("APPEND_IF_EXISTS_OR_ADD", "ADD_IF_ABSENT", "OVERWRITE_IF_EXISTS_OR_ADD"),
                    "header": Obj({"key": Str(), "value": Str()}, required=("key", "value")),
                },
                required=("header",),
            )
        ),
    },
    required=("stat_prefix", "token_bucket"),
)


def _hcm_name(value: str) -> str | None:
    return None if value == HCM else f'the local rate-limit filter goes into "{HCM}", not "{value}"'


_PATCH = Obj(
    {
        "applyTo": Str(),
        "match": Obj(
            {
                "context": Str(),
                "listener": Obj(
                    {
                        "portNumber": PORT_NUMBER,
                        "filterChain": Obj(
                            {"filter": Obj({"name": Str(_hcm_name), "subFilter": Obj({"name": Str()})})}
                        ),
                    }
                ),
                "proxy": Obj({"proxyVersion": Str(), "metadata": MapOf(Str())}),
            },
            required=("context",),
        ),
        "patch": Obj(
            {
                "operation": Str(),
                "value": Obj(
                    {
                        "name": Str(),
                        "typed_config": Obj(
                            {"@type": Str(), "type_url": Str(), "value": _RATE_LIMIT},
                            required=("@type", "type_url", "value"),
                        ),
                    },
                    required=("name", "typed_config"),
                ),
            },
            required=("operation", "value"),
        ),
    },
    required=("applyTo", "match", "patch"),
)
_SPEC = Obj(
    {"workloadSelector": Obj({"labels": LABELS}), "configPatches": ListOf(_PATCH), "priority": Int()},
    required=("configPatches",),
)


class _EnvoyFilterSchema(Schema):
    """Refuse other EnvoyFilters with one clear message, then check the rate-limit shape in detail."""

    expected = "object"

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if not isinstance(value, dict):
            self.mismatch(value, path, ck)
            return
        patches = value.get("configPatches")
        refused = False
        for i, patch in enumerate(patches if isinstance(patches, list) else []):
            for keys, accepted in _DISCRIMINATORS:
                seen = _lookup(patch, keys)
                if seen not in accepted:
                    shown = "nothing" if seen is None else str(seen)
                    ck.error(
                        (*path, "configPatches", i, *keys),
                        f"{SUPPORTED}; this patch has {'.'.join(keys)}: {shown}",
                    )
                    refused = True
                    break
        if not refused:
            _SPEC.check(value, path, ck)
            if isinstance(patches, list) and not patches:
                ck.error((*path, "configPatches"), "configPatches must not be empty")


ENVOY_FILTER: Schema = _EnvoyFilterSchema()


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
