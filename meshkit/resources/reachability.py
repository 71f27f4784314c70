"""Rule reachability in a VirtualService's ordered ``http``, ``tcp`` and ``tls`` lists (IST0130, IST0131).

The first matching rule wins, so a rule after a catch-all (a rule without ``match``) is never used,
a match identical to an earlier rule's match never fires, and (HTTP only) a URI-prefix match that an
earlier prefix match covers, with the same port, method, authority, headers, query parameters and
``withoutHeaders`` (or prefixes of them), is shadowed. The webhook warns about all three and
``istioctl analyze`` reports them with these codes. TCP and TLS rules have no names: they are
``#<index>``.

Example::

    >>> from meshkit.resources.schema import Checker
    >>> ck = Checker()
    >>> unreachable_rules([{"route": []}, {"match": [{"uri": {"prefix": "/a"}}]}], ("spec", "http"), ck)
    >>> ck.findings[0].message
    'VirtualService rule #1 not used (route without matches defined before).'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from meshkit.resources.model import Path
from meshkit.resources.schema import Checker


def route_name(route: dict[str, Any], index: int, http: bool = True) -> str:
    """How Istio names a rule in messages: its quoted ``name`` (HTTP only) or ``#<index>``."""
    name = route.get("name") if http and isinstance(route, dict) else None
    return f'"{name}"' if name else f"#{index}"


def _match_name(match: Any, index: int, http: bool) -> str:
    name = match.get("name") if http and isinstance(match, dict) else None
    return f'"{name}"' if name else f"#{index}"


def _key(match: Any) -> str:
    if isinstance(match, dict):
        return json.dumps({k: v for k, v in match.items() if k != "name"}, sort_keys=True, default=str)
    return repr(match)


@dataclass(frozen=True)
class _PrefixMatch:
    """What Istio compares to find a prefix match shadowed by an earlier one."""

    rule: str
    match: str
    prefix: str
    port: Any
    method: str
    authority: str
    headers: dict[str, str]
    query: dict[str, str]
    without: dict[str, str]


def _exact_or_prefix(value: Any) -> str:
    value = value if isinstance(value, dict) else {}
    if value.get("exact"):
        return f"exact:{value['exact']}"
    if value.get("prefix"):
        return f"prefix:{value['prefix']}"
    return ""


def _prefix_match(rule: str, name: str, match: dict[str, Any]) -> _PrefixMatch | None:
    uri = match.get("uri")
    prefix = uri.get("prefix") if isinstance(uri, dict) else None
    if not prefix:
        return None

    def strings(field: str) -> dict[str, str]:
        found = match.get(field)
        return {str(k): _exact_or_prefix(v) for k, v in found.items()} if isinstance(found, dict) else {}

    return _PrefixMatch(
        rule,
        name,
        str(prefix),
        match.get("port") or 0,
        _exact_or_prefix(match.get("method")) or "exact:GET",  # no method: GET, as Istio assumes
        _exact_or_prefix(match.get("authority")),
        strings("headers"),
        strings("queryParams"),
        strings("withoutHeaders"),
    )


def _covers_map(a: dict[str, str], b: dict[str, str]) -> bool:
    if len(a) != len(b):
        return False
    return all(k in b and (v == b[k] or v.startswith(b[k])) for k, v in a.items())


def _covers(a: _PrefixMatch, b: _PrefixMatch) -> bool:
    """Istio's ``coveredValidation``: the earlier prefix match ``a`` also takes every request of ``b``."""
    if not b.prefix.startswith(a.prefix) or a.port != b.port:
        return False
    if a.method != b.method and not a.method.startswith(b.method):
        return False
    if a.authority != b.authority and not a.authority.startswith(b.authority):
        return False
    return _covers_map(a.headers, b.headers) and _covers_map(a.query, b.query) and _covers_map(a.without, b.without)


def unreachable_rules(routes: list[Any], path: Path, ck: Checker, kind: str = "http") -> None:
    """IST0130/IST0131 for one list of rules (``kind`` is ``http``, ``tcp`` or ``tls``)."""
    http = kind == "http"
    seen: dict[str, int] = {}
    catch_all = -1
    prefixes: list[tuple[_PrefixMatch, Path]] = []
    for i, route in enumerate(routes):
        if not isinstance(route, dict):
            continue
        here = (*path, i)
        rule = route_name(route, i, http)
        matches = route.get("match") or []
        if not matches:
            if catch_all >= 0:
                ck.warn(here, f"VirtualService rule {rule} not used (only the last rule can have no matches).",
                        code="IST0130")
            catch_all = i
            continue
        duplicates = 0
        for j, match in enumerate(matches):
            if catch_all >= 0:  # Istio reports this once per match of the rule
                ck.warn(here, f"VirtualService rule {rule} not used (route without matches defined before).",
                        code="IST0130")
                continue
            key = _key(match)
            if key in seen:
                ck.info(
                    (*here, "match", j),
                    f"VirtualService rule {rule} match {_match_name(match, j, http)} is not used "
                    f"(duplicate/overlapping match in rule {route_name(routes[seen[key]], seen[key], http)}).",
                    code="IST0131",
                )
                duplicates += 1
                continue
            seen[key] = i
            if http and isinstance(match, dict) and (found := _prefix_match(rule, _match_name(match, j, http), match)):
                prefixes.append((found, (*here, "match", j)))
        if duplicates == len(matches):
            ck.warn(here, f"VirtualService rule {rule} not used (all matches used by prior rules).", code="IST0130")
    for n, (earlier, _) in enumerate(prefixes):
        for later, where in prefixes[n + 1 :]:
            if later.prefix != earlier.prefix and _covers(earlier, later):
                ck.info(
                    where,
                    f"VirtualService rule {later.rule} match {later.match} of prefix {later.prefix} is not used "
                    f"(duplicate/overlapping match in rule {earlier.match} of prefix {earlier.prefix} on "
                    f"{earlier.rule}).",
                    code="IST0131",
                )
