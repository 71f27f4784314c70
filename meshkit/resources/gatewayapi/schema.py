"""Kubernetes Gateway API v1.5 kinds: the CRDs' OpenAPI rules and CEL constraints, API-server wording.

The API server answers ``Invalid value``, ``Unsupported value`` and ``Required value`` per field
and reports a failed CEL rule on the object that carries it. Fields of the experimental channel
(HTTPRoute ``retry`` and ``sessionPersistence``) are unknown unless the experimental CRDs are
installed (:func:`meshkit.resources.gatewayapi.experimental_channel`).

Example::

    >>> from meshkit.resources.schema import Checker
    >>> ck = Checker()
    >>> HTTP_ROUTE.check({"rules": [{"backendRefs": [{"name": "r", "port": 8080, "weight": -1}]}]},
    ...                  ("spec",), ck)
    >>> ck.findings[0].message
    'Invalid value: -1: spec.rules[0].backendRefs[0].weight in body should be greater than or equal to 0'
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from meshkit.resources.model import Path, format_path
from meshkit.resources.regex import re2_error
from meshkit.resources.schema import Checker, Loose, Obj, Schema, describe

_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
HOSTNAME = rf"^(\*\.)?{_DNS_SUBDOMAIN}$"
PRECISE_HOSTNAME = rf"^{_DNS_SUBDOMAIN}$"
GROUP = rf"^$|^{_DNS_SUBDOMAIN}$"
KIND = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"
NAMESPACE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SECTION_NAME = rf"^{_DNS_SUBDOMAIN}$"
HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"
DURATION = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"
CONTROLLER = rf"^{_DNS_SUBDOMAIN}\/[A-Za-z0-9\/\-._~%!$&'()*+,;=:]+$"
_PATH_CHARS = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$")
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
EXPERIMENTAL_ENV = "MESHKIT_GATEWAY_API_CHANNEL"


def experimental_channel() -> bool:
    """True when the Gateway API experimental CRDs are installed (``MESHKIT_GATEWAY_API_CHANNEL``)."""
    return os.environ.get(EXPERIMENTAL_ENV, "standard").strip().lower() == "experimental"


def _value(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def invalid(ck: Checker, path: Path, value: Any, message: str) -> None:
    """The API server's ``Invalid value: <value>: <message>`` for ``path``."""
    ck.error(path, f"Invalid value: {_value(value)}: {message}")


def type_error(ck: Checker, path: Path, value: Any, wanted: str) -> None:
    """The API server's message for a value of the wrong JSON type."""
    got = describe(value).split(" ")[0]
    ck.error(path, f'Invalid value: "{got}": {format_path(path)} in body must be of type {wanted}')


def cel(ck: Checker, path: Path, message: str) -> None:
    """A failed CEL rule (``x-kubernetes-validations``), reported on the object that carries it."""
    ck.error(path, f'Invalid value: "object": {message}')


class KStr(Schema):
    """A string with the CRD's ``minLength``/``maxLength``/``pattern``/``enum``."""

    expected = "string"

    def __init__(
        self,
        pattern: str | None = None,
        *,
        min_len: int = 0,
        max_len: int | None = None,
        enum: tuple[str, ...] = (),
        extra: Callable[[str], str | None] | None = None,
    ) -> None:
        self.pattern = pattern
        self.regex = re.compile(pattern) if pattern else None
        self.min_len, self.max_len, self.enum, self.extra = min_len, max_len, enum, extra

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        where = format_path(path)
        if not isinstance(value, str):
            type_error(ck, path, value, "string")
        elif self.enum and value not in self.enum:
            allowed = ", ".join(f'"{v}"' for v in self.enum)
            ck.error(path, f'Unsupported value: "{value}": supported values: {allowed}')
        elif len(value) < self.min_len:
            invalid(ck, path, value, f"{where} in body should be at least {self.min_len} chars long")
        elif self.max_len is not None and len(value) > self.max_len:
            ck.error(path, f"Too long: may not be more than {self.max_len} bytes")
        elif self.regex and not self.regex.search(value):
            invalid(ck, path, value, f"{where} in body should match '{self.pattern}'")
        elif self.extra and (msg := self.extra(value)):
            invalid(ck, path, value, msg)


class KInt(Schema):
    """An integer with the CRD's ``minimum``/``maximum``/``enum``."""

    expected = "integer"

    def __init__(self, lo: int | None = None, hi: int | None = None, enum: tuple[int, ...] = ()) -> None:
        self.lo, self.hi, self.enum = lo, hi, enum

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        where = format_path(path)
        if isinstance(value, bool) or not isinstance(value, int):
            type_error(ck, path, value, "integer")
        elif self.enum and value not in self.enum:
            ck.error(path, f"Unsupported value: {value}: supported values: " + ", ".join(map(str, self.enum)))
        elif self.lo is not None and value < self.lo:
            invalid(ck, path, value, f"{where} in body should be greater than or equal to {self.lo}")
        elif self.hi is not None and value > self.hi:
            invalid(ck, path, value, f"{where} in body should be less than or equal to {self.hi}")


class KBool(Schema):
    expected = "boolean"

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if not isinstance(value, bool):
            type_error(ck, path, value, "boolean")


class KList(Schema):
    """A list with ``minItems``/``maxItems``; ``unique`` refuses duplicate items (``x-kubernetes-list-type: set``)."""

    expected = "list"

    def __init__(self, item: Schema, *, min_items: int = 0, max_items: int | None = None, unique: bool = False) -> None:
        self.item, self.min_items, self.max_items, self.unique = item, min_items, max_items, unique

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        where = format_path(path)
        if not isinstance(value, list):
            type_error(ck, path, value, "array")
            return
        if len(value) < self.min_items:
            invalid(ck, path, len(value), f"{where} in body should have at least {self.min_items} items")
        if self.max_items is not None and len(value) > self.max_items:
            ck.error(path, f"Too many: {len(value)}: must have at most {self.max_items} items")
        seen: list[Any] = []
        for i, item in enumerate(value):
            if item is None:
                ck.error(
                    (*path, i), f'Invalid value: "null": {where}[{i}] in body must be of type {self.item.expected}'
                )
                continue
            if self.unique:
                if item in seen:
                    ck.error((*path, i), f"Duplicate value: {_value(item)}")
                seen.append(item)
            self.item.check(item, (*path, i), ck)


class KObj(Obj):
    """An object: unknown fields are refused (strict field validation), required ones reported ``Required value``.

    ``experimental`` names fields that exist only in the experimental channel's CRD.
    """

    def __init__(self, fields: dict[str, Schema], *, experimental: tuple[str, ...] = (), **kw: Any) -> None:
        super().__init__(fields, **kw)
        self.experimental = experimental

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if not isinstance(value, dict):
            type_error(ck, path, value, "object")
            return
        before = ck.error_count
        for key, item in value.items():
            schema = self.fields.get(key) if isinstance(key, str) else None
            if key in self.experimental and not experimental_channel():
                ck.error(
                    (*path, str(key)),
                    f'unknown field "{format_path((*path, str(key)))}": {key} is an experimental-channel field '
                    f"of Gateway API v1.5; install the experimental CRDs ({EXPERIMENTAL_ENV}=experimental)",
                )
            elif schema is None:
                ck.error((*path, str(key)), f'unknown field "{format_path((*path, str(key)))}"')
            elif item is not None:
                schema.check(item, (*path, key), ck)
        for key in self.required:
            if value.get(key) is None:
                ck.error((*path, key), "Required value")
        if ck.error_count == before:
            present = {k: v for k, v in value.items() if v is not None}
            for rule in self.rules:
                rule(present, path, ck)


def _duration_order(value: dict[str, Any], path: Path, ck: Checker) -> None:
    request, backend = value.get("request"), value.get("backendRequest")
    if request and backend and gateway_seconds(request) != 0 and gateway_seconds(backend) > gateway_seconds(request):
        cel(ck, path, "backendRequest timeout cannot be longer than request timeout")


def gateway_seconds(text: str) -> float:
    """A Gateway API duration (``1h30m``, ``500ms``; GEP-2257) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(int(n) * units[u] for n, u in re.findall(r"([0-9]{1,5})(ms|h|m|s)", text))


NAME = KStr(min_len=1, max_len=253)
LIST_HOSTNAMES = KList(KStr(HOSTNAME, min_len=1, max_len=253), max_items=16)


def _port_for_service(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if value.get("group", "") == "" and value.get("kind", "Service") == "Service" and "port" not in value:
        cel(ck, path, "Must have port for Service reference")


def _backend_object_ref() -> dict[str, Schema]:
    return {
        "group": KStr(GROUP, max_len=253),
        "kind": KStr(KIND, min_len=1, max_len=63),
        "name": NAME,
        "namespace": KStr(NAMESPACE, min_len=1, max_len=63),
        "port": KInt(1, 65535),
    }


PARENT_REF = KObj(
    {
        "group": KStr(GROUP, max_len=253),
        "kind": KStr(KIND, min_len=1, max_len=63),
        "namespace": KStr(NAMESPACE, min_len=1, max_len=63),
        "name": NAME,
        "sectionName": KStr(SECTION_NAME, min_len=1, max_len=253),
        "port": KInt(1, 65535),
    },
    required=("name",),
)


def _same_parent(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        a.get("group", "gateway.networking.k8s.io") == b.get("group", "gateway.networking.k8s.io")
        and a.get("kind", "Gateway") == b.get("kind", "Gateway")
        and a.get("name") == b.get("name")
        and (a.get("namespace") or "") == (b.get("namespace") or "")
    )


def _parent_refs_rule(refs: list[Any], path: Path, ck: Checker) -> None:
    items = [r for r in refs if isinstance(r, dict)]
    for a in items:
        same = [b for b in items if _same_parent(a, b)]
        if len(same) < 2:
            continue
        if any("sectionName" not in b and "port" not in b for b in same):
            cel(
                ck,
                path,
                "sectionName or port must be specified when parentRefs includes 2 or more references "
                "to the same parent",
            )
            return
        keys = [(b.get("sectionName", ""), b.get("port", 0)) for b in same]
        if len(set(keys)) != len(keys):
            cel(
                ck,
                path,
                "sectionName or port must be unique when parentRefs includes 2 or more references to the same parent",
            )
            return


class ParentRefs(KList):
    def __init__(self) -> None:
        super().__init__(PARENT_REF, max_items=32)

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        before = ck.error_count
        super().check(value, path, ck)
        if ck.error_count == before:
            _parent_refs_rule(value, path, ck)


def _header_list() -> KList:
    return KList(
        KObj(
            {"name": KStr(HEADER_NAME, min_len=1, max_len=256), "value": KStr(min_len=1, max_len=4096)},
            required=("name", "value"),
        ),
        max_items=16,
    )


HEADER_MODIFIER = KObj(
    {"set": _header_list(), "add": _header_list(), "remove": KList(KStr(min_len=1), max_items=16, unique=True)}
)


def _path_modifier_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    kind = value.get("type")
    for field, want in (("replaceFullPath", "ReplaceFullPath"), ("replacePrefixMatch", "ReplacePrefixMatch")):
        if kind == want and field not in value:
            cel(ck, path, f"{field} must be specified when type is set to '{want}'")
        if field in value and kind != want:
            cel(ck, path, f"type must be '{want}' when {field} is set")


PATH_MODIFIER = KObj(
    {
        "type": KStr(enum=("ReplaceFullPath", "ReplacePrefixMatch")),
        "replaceFullPath": KStr(max_len=1024),
        "replacePrefixMatch": KStr(max_len=1024),
    },
    required=("type",),
    rules=[_path_modifier_rule],
)


def _mirror_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if "percent" in value and "fraction" in value:
        cel(ck, path, "Only one of percent or fraction may be specified in HTTPRequestMirrorFilter")


def _fraction_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if value.get("numerator", 0) > value.get("denominator", 100):
        cel(ck, path, "numerator must be less than or equal to denominator")


REQUEST_MIRROR = KObj(
    {
        "backendRef": KObj(_backend_object_ref(), required=("name",), rules=[_port_for_service]),
        "percent": KInt(0, 100),
        "fraction": KObj(
            {"numerator": KInt(0), "denominator": KInt(1)}, required=("numerator",), rules=[_fraction_rule]
        ),
    },
    required=("backendRef",),
    rules=[_mirror_rule],
)
_ORIGIN = r"(^\*$)|(^(http(s)?):\/\/(((\*\.)?([a-zA-Z0-9\-]+\.)*[a-zA-Z0-9-]+|\*)(:([0-9]{1,5}))?)$)"


def _star_alone(what: str, noun: str) -> Callable[[list[Any], Path, Checker], None]:
    def rule(items: list[Any], path: Path, ck: Checker) -> None:
        if "*" in items and len(items) > 1:
            cel(ck, path, f"{what} cannot contain '*' alongside other {noun}")

    return rule


class _StarList(KList):
    def __init__(self, item: Schema, max_items: int, what: str, noun: str) -> None:
        super().__init__(item, max_items=max_items)
        self.rule = _star_alone(what, noun)

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        before = ck.error_count
        super().check(value, path, ck)
        if ck.error_count == before:
            self.rule(value, path, ck)


CORS = KObj(
    {
        "allowOrigins": _StarList(KStr(_ORIGIN, min_len=1, max_len=253), 64, "AllowOrigins", "origins"),
        "allowCredentials": KBool(),
        "allowMethods": _StarList(KStr(enum=(*METHODS, "*")), 9, "AllowMethods", "methods"),
        "allowHeaders": _StarList(KStr(HEADER_NAME, min_len=1, max_len=256), 64, "AllowHeaders", "methods"),
        "exposeHeaders": KList(KStr(HEADER_NAME, min_len=1, max_len=256), max_items=64),
        "maxAge": KInt(1),
    }
)
EXTENSION_REF = KObj(
    {"group": KStr(GROUP, max_len=253), "kind": KStr(KIND, min_len=1, max_len=63), "name": NAME},
    required=("group", "kind", "name"),
)
_FILTER_FIELDS = {
    "RequestHeaderModifier": "requestHeaderModifier",
    "ResponseHeaderModifier": "responseHeaderModifier",
    "RequestMirror": "requestMirror",
    "RequestRedirect": "requestRedirect",
    "URLRewrite": "urlRewrite",
    "ExtensionRef": "extensionRef",
    "CORS": "cors",
}
_GRPC_FILTERS = ("ResponseHeaderModifier", "RequestHeaderModifier", "RequestMirror", "ExtensionRef")


def _filter_rule(types: tuple[str, ...]) -> Callable[[dict[str, Any], Path, Checker], None]:
    def rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
        kind = value.get("type")
        for t in types:
            field = _FILTER_FIELDS[t]
            if field in value and kind != t:
                cel(ck, path, f"filter.{field} must be nil if the filter.type is not {t}")
            if field not in value and kind == t:
                cel(ck, path, f"filter.{field} must be specified for {t} filter.type")

    return rule


def _filter(types: tuple[str, ...]) -> KObj:
    fields: dict[str, Schema] = {
        "type": KStr(enum=types),
        "requestHeaderModifier": HEADER_MODIFIER,
        "responseHeaderModifier": HEADER_MODIFIER,
        "requestMirror": REQUEST_MIRROR,
        "extensionRef": EXTENSION_REF,
    }
    if "RequestRedirect" in types:
        fields["requestRedirect"] = KObj(
            {
                "scheme": KStr(enum=("http", "https")),
                "hostname": KStr(PRECISE_HOSTNAME, min_len=1, max_len=253),
                "path": PATH_MODIFIER,
                "port": KInt(1, 65535),
                "statusCode": KInt(enum=(301, 302, 303, 307, 308)),
            }
        )
        fields["urlRewrite"] = KObj({"hostname": KStr(PRECISE_HOSTNAME, min_len=1, max_len=253), "path": PATH_MODIFIER})
        fields["cors"] = CORS
    return KObj(fields, required=("type",), rules=[_filter_rule(types)])


class Filters(KList):
    """A rule's (or backendRef's) filters, with the list-level CEL rules."""

    def __init__(self, types: tuple[str, ...]) -> None:
        super().__init__(_filter(types), max_items=16)
        self.types = types

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        before = ck.error_count
        super().check(value, path, ck)
        if ck.error_count != before:
            return
        kinds = [f.get("type") for f in value]
        if "RequestRedirect" in kinds and "URLRewrite" in kinds:
            cel(
                ck,
                path,
                "May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both",
            )
        for t in ("CORS", "RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite"):
            if t in self.types and kinds.count(t) > 1:
                cel(ck, path, f"{t} filter cannot be repeated")


HTTP_FILTERS = tuple(_FILTER_FIELDS)


def _backend_ref(filters: Filters) -> KObj:
    return KObj(
        {**_backend_object_ref(), "weight": KInt(0, 1_000_000), "filters": filters},
        required=("name",),
        rules=[_port_for_service],
    )


def _path_match_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    kind, text = value.get("type", "PathPrefix"), value.get("value", "/")
    if kind == "RegularExpression":
        if msg := re2_error(text):
            invalid(ck, (*path, "value"), text, msg)
        return
    checks = (
        (
            not text.startswith("/"),
            "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']",
        ),
        ("//" in text, "must not contain '//' when type one of ['Exact', 'PathPrefix']"),
        ("/./" in text, "must not contain '/./' when type one of ['Exact', 'PathPrefix']"),
        ("/../" in text, "must not contain '/../' when type one of ['Exact', 'PathPrefix']"),
        ("%2f" in text, "must not contain '%2f' when type one of ['Exact', 'PathPrefix']"),
        ("%2F" in text, "must not contain '%2F' when type one of ['Exact', 'PathPrefix']"),
        ("#" in text, "must not contain '#' when type one of ['Exact', 'PathPrefix']"),
        (text.endswith("/.."), "must not end with '/..' when type one of ['Exact', 'PathPrefix']"),
        (text.endswith("/."), "must not end with '/.' when type one of ['Exact', 'PathPrefix']"),
        (
            not _PATH_CHARS.match(text),
            "must only contain valid characters (matching ^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$) "
            "for types ['Exact', 'PathPrefix']",
        ),
    )
    for failed, message in checks:
        if failed:
            cel(ck, path, message)


def _string_match(value_max: int) -> KObj:
    def regex_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
        if value.get("type") == "RegularExpression" and (msg := re2_error(value["value"])):
            invalid(ck, (*path, "value"), value["value"], msg)

    return KObj(
        {
            "type": KStr(enum=("Exact", "RegularExpression")),
            "name": KStr(HEADER_NAME, min_len=1, max_len=256),
            "value": KStr(min_len=1, max_len=value_max),
        },
        required=("name", "value"),
        rules=[regex_rule],
    )


HTTP_MATCH = KObj(
    {
        "path": KObj(
            {"type": KStr(enum=("Exact", "PathPrefix", "RegularExpression")), "value": KStr(max_len=1024)},
            rules=[_path_match_rule],
        ),
        "headers": KList(_string_match(4096), max_items=16),
        "queryParams": KList(_string_match(1024), max_items=16),
        "method": KStr(enum=METHODS),
    }
)


def _prefix_modifier_needs_one_prefix(value: dict[str, Any], path: Path, ck: Checker) -> None:
    matches = value.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]
    one_prefix = (
        len(matches) == 1
        and (matches[0].get("path") or {"type": "PathPrefix"}).get("type", "PathPrefix") == "PathPrefix"
    )
    for where, filters in (
        ("", value.get("filters") or []),
        *(("Within backendRefs, ", b.get("filters") or []) for b in value.get("backendRefs") or []),
    ):
        for kind, field in (("RequestRedirect", "requestRedirect"), ("URLRewrite", "urlRewrite")):
            uses = any(
                f.get("type") == kind and (f.get(field) or {}).get("path", {}).get("type") == "ReplacePrefixMatch"
                for f in filters
            )
            if uses and not one_prefix:
                when = "when" if where and kind == "RequestRedirect" else "When"
                cel(
                    ck,
                    path,
                    f"{where}{when} using {kind} filter with path.replacePrefixMatch, "
                    "exactly one PathPrefix match must be specified",
                )


def _http_rule_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if value.get("backendRefs") and any(f.get("type") == "RequestRedirect" for f in value.get("filters") or []):
        cel(ck, path, "RequestRedirect filter must not be used together with backendRefs")
    _prefix_modifier_needs_one_prefix(value, path, ck)


def _retry_codes() -> KList:
    return KList(KInt(400, 599))


SESSION_PERSISTENCE = KObj(
    {
        "sessionName": KStr(max_len=128),
        "absoluteTimeout": KStr(DURATION),
        "idleTimeout": KStr(DURATION),
        "type": KStr(enum=("Cookie", "Header")),
        "cookieConfig": KObj({"lifetimeType": KStr(enum=("Permanent", "Session"))}),
    }
)

HTTP_RULE = KObj(
    {
        "name": KStr(SECTION_NAME, min_len=1, max_len=253),
        "matches": KList(HTTP_MATCH, max_items=64),
        "filters": Filters(HTTP_FILTERS),
        "backendRefs": KList(_backend_ref(Filters(HTTP_FILTERS)), max_items=16),
        "timeouts": KObj({"request": KStr(DURATION), "backendRequest": KStr(DURATION)}, rules=[_duration_order]),
        "retry": KObj({"codes": _retry_codes(), "attempts": KInt(0), "backoff": KStr(DURATION)}),
        "sessionPersistence": SESSION_PERSISTENCE,
    },
    experimental=("retry", "sessionPersistence"),
    rules=[_http_rule_rule],
)


def _match_total(value: dict[str, Any], path: Path, ck: Checker) -> None:
    rules = value.get("rules") or []
    if sum(len(r.get("matches") or []) for r in rules) > 128:
        cel(
            ck,
            (*path, "rules"),
            "While 16 rules and 64 matches per rule are allowed, the total number of "
            "matches across all rules in a route must be less than 128",
        )


HTTP_ROUTE = KObj(
    {
        "parentRefs": ParentRefs(),
        "hostnames": LIST_HOSTNAMES,
        "rules": KList(HTTP_RULE, max_items=16),
        "useDefaultGateways": KStr(enum=("All", "None")),
    },
    experimental=("useDefaultGateways",),
    rules=[_match_total],
)



def _experimental_kind(kind: str, version: str) -> Callable[[dict[str, Any], Path, Checker], None]:
    """Without the experimental CRDs the API server does not serve ``kind`` at all (kubectl's wording)."""

    def rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
        if not experimental_channel():
            ck.error(
                ("kind",),
                f'no matches for kind "{kind}" in version "gateway.networking.k8s.io/{version}": ensure CRDs are '
                f"installed first ({kind} is in the Gateway API experimental channel: {EXPERIMENTAL_ENV}=experimental)",
            )

    return rule


def _l4_route(kind: str, version: str | None, *, hostnames: bool) -> KObj:
    """TCPRoute (experimental channel) and TLSRoute (standard since v1.5): parents and weighted backends."""
    backend = KObj({**_backend_object_ref(), "weight": KInt(0, 1_000_000)}, required=("name",),
                   rules=[_port_for_service])
    rule = KObj({"name": KStr(SECTION_NAME, min_len=1, max_len=253),
                 "backendRefs": KList(backend, min_items=1, max_items=16)}, required=("backendRefs",))
    fields: dict[str, Schema] = {"parentRefs": ParentRefs(), "rules": KList(rule, min_items=1, max_items=16)}
    if hostnames:
        fields["hostnames"] = LIST_HOSTNAMES
    return KObj(fields, required=("rules",), rules=[_experimental_kind(kind, version)] if version else [])


#: stored and shown, not routed by the local mesh (it has no TCP or TLS passthrough listeners)
TCP_ROUTE = _l4_route("TCPRoute", "v1alpha2", hostnames=False)
TLS_ROUTE = _l4_route("TLSRoute", None, hostnames=True)

def _grpc_method_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if "service" not in value and "method" not in value:
        cel(ck, path, "One or both of 'service' or 'method' must be specified")
    if value.get("type", "Exact") == "Exact":
        for key in ("service", "method"):
            text = value.get(key)
            if text is not None and not re.match(
                r"^[^/]+$" if key == "method" else r"^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$", text
            ):
                cel(
                    ck,
                    path,
                    f"{key} must only contain valid characters"
                    + (
                        " (matching ^(?i)\\.?[a-z_][a-z_0-9]*(\\.[a-z_][a-z_0-9]*)*$)"
                        if key == "service"
                        else " (matching ^[A-Za-z_][A-Za-z_0-9]*$)"
                    ),
                )


GRPC_RULE = KObj(
    {
        "name": KStr(SECTION_NAME, min_len=1, max_len=253),
        "matches": KList(
            KObj(
                {
                    "method": KObj(
                        {
                            "type": KStr(enum=("Exact", "RegularExpression")),
                            "service": KStr(max_len=1024),
                            "method": KStr(max_len=1024),
                        },
                        rules=[_grpc_method_rule],
                    ),
                    "headers": KList(_string_match(4096), max_items=16),
                }
            ),
            max_items=64,
        ),
        "filters": Filters(_GRPC_FILTERS),
        "backendRefs": KList(_backend_ref(Filters(_GRPC_FILTERS)), max_items=16),
        "sessionPersistence": SESSION_PERSISTENCE,
    },
    experimental=("sessionPersistence",),
)
GRPC_ROUTE = KObj({"parentRefs": ParentRefs(), "hostnames": LIST_HOSTNAMES, "rules": KList(GRPC_RULE, max_items=16)})


def _listeners_rule(listeners: list[Any], path: Path, ck: Checker) -> None:
    names = [item.get("name") for item in listeners]
    if len(set(names)) != len(names):
        cel(ck, path, "Listener name must be unique within the Gateway")
    combos = [(item.get("port"), item.get("protocol"), item.get("hostname")) for item in listeners]
    if len(set(combos)) != len(combos):
        cel(ck, path, "Combination of port, protocol and hostname must be unique for each listener")
    for item in listeners:
        protocol = item.get("protocol")
        if protocol in ("HTTP", "TCP", "UDP") and "tls" in item:
            cel(ck, path, "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']")
        if protocol == "HTTPS" and (item.get("tls") or {}).get("mode", "Terminate") not in ("", "Terminate"):
            cel(ck, path, "tls mode must be Terminate for protocol HTTPS")
        if protocol == "TLS" and not (item.get("tls") or {}).get("mode"):
            cel(ck, path, "tls mode must be set for protocol TLS")
        if protocol in ("TCP", "UDP") and item.get("hostname"):
            cel(ck, path, "hostname must not be specified for protocols ['TCP', 'UDP']")


class Listeners(KList):
    def check(self, value: Any, path: Path, ck: Checker) -> None:
        before = ck.error_count
        super().check(value, path, ck)
        if ck.error_count == before:
            _listeners_rule(value, path, ck)


LISTENER = KObj(
    {
        "name": KStr(SECTION_NAME, min_len=1, max_len=253),
        "hostname": KStr(HOSTNAME, min_len=1, max_len=253),
        "port": KInt(1, 65535),
        "protocol": KStr(
            r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$|" + rf"{_DNS_SUBDOMAIN}\/[A-Za-z0-9]+$", min_len=1, max_len=255
        ),
        "tls": KObj(
            {
                "mode": KStr(enum=("Terminate", "Passthrough")),
                "certificateRefs": KList(
                    KObj(
                        {"group": KStr(GROUP), "kind": KStr(KIND), "name": NAME, "namespace": KStr(NAMESPACE)},
                        required=("name",),
                    ),
                    max_items=64,
                ),
                "options": Loose(),
            }
        ),
        "allowedRoutes": KObj(
            {
                "namespaces": KObj({"from": KStr(enum=("All", "Selector", "Same")), "selector": Loose()}),
                "kinds": KList(
                    KObj({"group": KStr(GROUP), "kind": KStr(KIND, min_len=1, max_len=63)}, required=("kind",)),
                    max_items=8,
                ),
            }
        ),
    },
    required=("name", "port", "protocol"),
)


def _address_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if value.get("type", "IPAddress") == "Hostname" and value.get("value") and not re.match(HOSTNAME, value["value"]):
        cel(ck, path, f"Hostname value must be empty or contain only valid characters (matching {HOSTNAME})")


GATEWAY = KObj(
    {
        "gatewayClassName": KStr(min_len=1, max_len=253),
        "listeners": Listeners(LISTENER, min_items=1, max_items=64),
        "addresses": KList(
            KObj({"type": KStr(min_len=1, max_len=253), "value": KStr(max_len=253)}, rules=[_address_rule]),
            max_items=16,
        ),
        "infrastructure": KObj(
            {
                "labels": Loose(),
                "annotations": Loose(),
                "parametersRef": KObj(
                    {"group": KStr(GROUP), "kind": KStr(KIND), "name": NAME}, required=("group", "kind", "name")
                ),
            }
        ),
        "allowedListeners": Loose(),
        "tls": Loose(),
        "defaultScope": KStr(enum=("All", "None")),
    },
    required=("gatewayClassName", "listeners"),
    experimental=("defaultScope",),
)
GATEWAY_CLASS = KObj(
    {
        "controllerName": KStr(CONTROLLER, min_len=1, max_len=253),
        "parametersRef": KObj(
            {
                "group": KStr(GROUP),
                "kind": KStr(KIND, min_len=1),
                "name": NAME,
                "namespace": KStr(NAMESPACE, min_len=1),
            },
            required=("group", "kind", "name"),
        ),
        "description": KStr(max_len=64),
    },
    required=("controllerName",),
)
REFERENCE_GRANT = KObj(
    {
        "from": KList(
            KObj(
                {
                    "group": KStr(GROUP, max_len=253),
                    "kind": KStr(KIND, min_len=1, max_len=63),
                    "namespace": KStr(NAMESPACE, min_len=1, max_len=63),
                },
                required=("group", "kind", "namespace"),
            ),
            min_items=1,
            max_items=16,
        ),
        "to": KList(
            KObj(
                {
                    "group": KStr(GROUP, max_len=253),
                    "kind": KStr(KIND, min_len=1, max_len=63),
                    "name": KStr(min_len=1, max_len=253),
                },
                required=("group", "kind"),
            ),
            min_items=1,
            max_items=16,
        ),
    },
    required=("from", "to"),
)
