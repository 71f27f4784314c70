"""Telemetry: tracing, metrics and access logging, validated field by field as Istio does.

The local mesh honours ``tracing[].randomSamplingPercentage``, ``accessLogging[].disabled`` and the
``metrics[].overrides`` (``disabled`` and ``tagOverrides``) of its own Prometheus metrics; the rest
(providers, custom tags, filters, context propagation) is accepted and stored, and apply says so.

Example::

    >>> from meshkit.resources.schema import Checker
    >>> ck = Checker()
    >>> TELEMETRY.check({"tracing": [{"randomSamplingPercentage": 150}]}, ("spec",), ck)
    >>> ck.findings[0].message
    'randomSamplingPercentage must be in range [0.0, 100.0]'
"""

from __future__ import annotations

from typing import Any

from meshkit.resources.authorization import one_of_selector
from meshkit.resources.common import SELECTOR, TARGET_REF
from meshkit.resources.model import Path
from meshkit.resources.schema import Bool, Checker, Dur, Enum, ListOf, MapOf, Num, Obj, Str

METRICS = (
    "ALL_METRICS",
    "REQUEST_COUNT",
    "REQUEST_DURATION",
    "REQUEST_SIZE",
    "RESPONSE_SIZE",
    "TCP_OPENED_CONNECTIONS",
    "TCP_CLOSED_CONNECTIONS",
    "TCP_SENT_BYTES",
    "TCP_RECEIVED_BYTES",
    "GRPC_REQUEST_MESSAGES",
    "GRPC_RESPONSE_MESSAGES",
)
MODES = ("CLIENT_AND_SERVER", "CLIENT", "SERVER")


def _providers_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    for i, provider in enumerate(value.get("providers") or []):
        if not provider.get("name"):
            ck.error((*path, "providers", i, "name"), "providers.name may not be empty")


_PROVIDER = Obj({"name": Str()}, required=("name",))
_MATCH = Obj({"mode": Enum(*MODES)})


def _sampling(value: float) -> str | None:
    return None if 0 <= value <= 100 else "randomSamplingPercentage must be in range [0.0, 100.0]"


def _tracing_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    _providers_rule(value, path, ck)
    if len(value.get("providers") or []) > 1:
        ck.warn((*path, "providers"), "multiple providers is not currently supported")
    for name, tag in (value.get("customTags") or {}).items():
        where = (*path, "customTags", name)
        if name == "":
            ck.error(where, "tag name may not be empty")
        if "literal" in tag and not (tag["literal"] or {}).get("value"):
            ck.error((*where, "literal"), "literal tag value may not be empty")
        if "header" in tag and not (tag["header"] or {}).get("name"):
            ck.error((*where, "header"), "header tag name may not be empty")
        if "environment" in tag and not (tag["environment"] or {}).get("name"):
            ck.error((*where, "environment"), "environment tag name may not be empty")


_CUSTOM_TAG = Obj(
    {
        "literal": Obj({"value": Str()}),
        "environment": Obj({"name": Str(), "defaultValue": Str()}),
        "header": Obj({"name": Str(), "defaultValue": Str()}),
        "formatter": Obj({"value": Str()}),
    }
)
TRACING = Obj(
    {
        "match": _MATCH,
        "providers": ListOf(_PROVIDER),
        "randomSamplingPercentage": Num(_sampling),
        "disableSpanReporting": Bool(),
        "customTags": MapOf(_CUSTOM_TAG),
        "useRequestIdForTraceSampling": Bool(),
        "enableIstioTags": Bool(),
        "disableContextPropagation": Bool(),
    },
    rules=[_tracing_rule],
)


def _override_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    for name, tag in (value.get("tagOverrides") or {}).items():
        where = (*path, "tagOverrides", name)
        if name == "":
            ck.warn(where, "tagOverrides.name may not be empty")
        operation = tag.get("operation", "UPSERT")
        if operation == "UPSERT" and not tag.get("value"):
            ck.error(where, "tagOverrides.value must be set when operation is UPSERT")
        elif operation == "REMOVE" and tag.get("value"):
            ck.error(where, "tagOverrides.value may only be set when operation is UPSERT")
    match = value.get("match") or {}
    if "customMetric" in match and not match["customMetric"]:
        ck.error((*path, "match", "customMetric"), "customMetric may not be empty")


OVERRIDE = Obj(
    {
        "match": Obj({"metric": Enum(*METRICS), "customMetric": Str(), "mode": Enum(*MODES)}),
        "disabled": Bool(),
        "tagOverrides": MapOf(Obj({"operation": Enum("UPSERT", "REMOVE"), "value": Str()})),
    },
    rules=[_override_rule],
)
METRICS_SPEC = Obj(
    {"providers": ListOf(_PROVIDER), "overrides": ListOf(OVERRIDE), "reportingInterval": Dur()},
    rules=[_providers_rule],
)


def _access_logging_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    _providers_rule(value, path, ck)
    expression = (value.get("filter") or {}).get("expression")
    if expression is not None and (msg := cel_syntax_error(expression)):
        ck.error((*path, "filter", "expression"), f"must be a valid CEL expression, {msg}")


ACCESS_LOGGING = Obj(
    {
        "match": _MATCH,
        "providers": ListOf(_PROVIDER),
        "disabled": Bool(),
        "filter": Obj({"expression": Str()}),
    },
    rules=[_access_logging_rule],
)


def cel_syntax_error(expression: str) -> str | None:
    """A light CEL syntax check: balanced brackets and quotes, no empty expression."""
    if not expression.strip():
        return "ERROR: <input>:1:1: Syntax error: mismatched input '<EOF>'"
    stack: list[str] = []
    quote = ""
    pairs = {")": "(", "]": "[", "}": "{"}
    for i, ch in enumerate(expression, 1):
        if quote:
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return f"ERROR: <input>:1:{i}: Syntax error: extraneous input '{ch}'"
    if quote or stack:
        return f"ERROR: <input>:1:{len(expression) + 1}: Syntax error: missing closing token"
    return None


def _telemetry_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    one_of_selector(value, path, ck)
    if len(value.get("tracing") or []) > 1:
        ck.warn((*path, "tracing"), "multiple tracing is not currently supported")


TELEMETRY = Obj(
    {
        "selector": SELECTOR,
        "targetRef": TARGET_REF,
        "targetRefs": ListOf(TARGET_REF),
        "tracing": ListOf(TRACING),
        "metrics": ListOf(METRICS_SPEC),
        "accessLogging": ListOf(ACCESS_LOGGING),
    },
    rules=[_telemetry_rule],
)
