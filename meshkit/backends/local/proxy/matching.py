"""VirtualService match conditions, compiled once per config push into plain predicates.

Istio semantics: the ``match`` list of a rule is OR, the fields inside one match block are AND,
string matches are ``exact``, ``prefix`` or ``regex`` (a full match with RE2, linear in the value's
length, as Envoy's ``safe_regex``), header names are lower-case, an empty string match tests
presence, and so does ``withoutHeaders``' ``regex: "*"``.

Example::

    m = compile_match({"headers": {"baggage-user-agent": {"regex": ".*Safari.*"}}})
    m.matches(RequestView("GET", "/", {"baggage-user-agent": "Safari/1"}, {}, "mesh", {}))  # True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from meshkit.resources.regex import compile_fullmatch

StrPred = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class RequestView:
    """The request attributes a route match may look at."""

    method: str
    path: str  # without the query string
    headers: Mapping[str, str]
    query: Mapping[str, str]
    gateway: str  # "mesh" for sidecars, "<ns>/<gateway name>" for a gateway listener
    source_labels: Mapping[str, str]
    authority: str = ""
    port: int = 0
    source_namespace: str = "tutorial"


def string_matcher(spec: Mapping[str, Any], ignore_case: bool = False) -> StrPred:
    """A predicate for one Istio StringMatch; ``{}`` (or an empty exact) only checks presence."""
    if "exact" in spec:
        want = str(spec["exact"])
        if ignore_case:
            low = want.lower()
            return lambda v: v.lower() == low
        return lambda v: v == want
    if "prefix" in spec:
        pre = str(spec["prefix"])
        if ignore_case:
            low = pre.lower()
            return lambda v: v.lower().startswith(low)
        return lambda v: v.startswith(pre)
    if "regex" in spec:
        return compile_fullmatch(str(spec["regex"]))
    return lambda v: True


@dataclass(frozen=True, slots=True)
class Match:
    """One match block (all conditions must hold)."""

    name: str = ""
    uri: StrPred | None = None
    uri_prefix: str | None = None  # kept for prefix rewrites
    method: StrPred | None = None
    authority: StrPred | None = None
    headers: tuple[tuple[str, StrPred], ...] = ()
    without_headers: tuple[tuple[str, StrPred], ...] = ()
    query: tuple[tuple[str, StrPred], ...] = ()
    source_labels: tuple[tuple[str, str], ...] = ()
    gateways: tuple[str, ...] = ()
    port: int = 0
    source_namespace: str = ""
    spec: Mapping[str, Any] = field(default_factory=dict, compare=False)  # the VirtualService block, for config_dump

    def matches(self, r: RequestView) -> bool:
        if self.uri is not None and not self.uri(r.path):
            return False
        if self.method is not None and not self.method(r.method):
            return False
        if self.authority is not None and not self.authority(r.authority):
            return False
        for name, pred in self.headers:
            value = r.headers.get(name)
            if value is None or not pred(value):
                return False
        for name, pred in self.without_headers:
            value = r.headers.get(name)
            if value is not None and pred(value):
                return False
        for name, pred in self.query:
            value = r.query.get(name)
            if value is None or not pred(value):
                return False
        for key, want in self.source_labels:
            if r.source_labels.get(key) != want:
                return False
        if self.gateways and r.gateway not in self.gateways:
            return False
        if self.port and r.port != self.port:
            return False
        return not (self.source_namespace and r.source_namespace != self.source_namespace)


def compile_match(spec: Mapping[str, Any], namespace: str = "tutorial", separated_prefix: bool = False) -> Match:
    """One match block; ``separated_prefix`` (Gateway API routes) makes a ``prefix`` match whole path
    segments, as Envoy's ``path_separated_prefix`` does: ``/foo`` matches ``/foo`` and ``/foo/x``, not
    ``/foobar``."""
    ignore = bool(spec.get("ignoreUriCase", False))
    uri = spec.get("uri")
    uri_pred = string_matcher(uri, ignore) if uri else None
    if uri and separated_prefix and "prefix" in uri and uri["prefix"] != "/":
        base = str(uri["prefix"]).rstrip("/")
        uri_pred = lambda v: v == base or v.startswith(base + "/")  # noqa: E731
    return Match(
        name=str(spec.get("name", "")),
        uri=uri_pred,
        uri_prefix=str(uri["prefix"]) if uri and "prefix" in uri else None,
        method=string_matcher(spec["method"]) if spec.get("method") else None,
        authority=string_matcher(spec["authority"]) if spec.get("authority") else None,
        headers=tuple((k.lower(), string_matcher(v or {})) for k, v in (spec.get("headers") or {}).items()),
        without_headers=tuple(
            (k.lower(), string_matcher(_presence_star(v or {}))) for k, v in (spec.get("withoutHeaders") or {}).items()
        ),
        query=tuple((k, string_matcher(v or {})) for k, v in (spec.get("queryParams") or {}).items()),
        source_labels=tuple(sorted((spec.get("sourceLabels") or {}).items())),
        gateways=tuple(qualify_gateway(g, namespace) for g in spec.get("gateways") or ()),
        port=int(spec.get("port", 0) or 0),
        source_namespace=str(spec.get("sourceNamespace", "")),
        spec=dict(spec),
    )


def _presence_star(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    # Istio turns withoutHeaders' regex "*" into a present_match, not a regex
    return {} if spec.get("regex") == "*" else spec


def qualify_gateway(name: str, namespace: str) -> str:
    """``customer-gateway`` -> ``tutorial/customer-gateway``; ``mesh`` stays ``mesh``."""
    if name == "mesh" or "/" in name:
        return name
    return f"{namespace}/{name.split('.')[0]}"


def split_query(target: str) -> tuple[str, dict[str, str]]:
    path, _, qs = target.partition("?")
    return path, (dict(parse_qsl(qs, keep_blank_values=True)) if qs else {})


@dataclass(frozen=True, slots=True)
class MatchSet:
    """The OR of a rule's match blocks; no blocks means the rule matches everything."""

    blocks: tuple[Match, ...] = field(default_factory=tuple)

    def first(self, r: RequestView) -> Match | None:
        """The first block that matches (or an empty one when the rule has no match)."""
        if not self.blocks:
            return _ANY
        for block in self.blocks:
            if block.matches(r):
                return block
        return None


_ANY = Match()
