"""Rule reachability in a VirtualService's ordered ``http`` list (IST0130 and IST0131).

The first matching rule wins, so a rule after a catch-all (a rule without ``match``) is never used,
and a match identical to an earlier rule's match never fires. The webhook warns about both and
``istioctl analyze`` reports them with these codes.

Example::

    >>> from meshkit.resources.schema import Checker
    >>> ck = Checker()
    >>> unreachable_rules([{"route": []}, {"match": [{"uri": {"prefix": "/a"}}]}], ("spec", "http"), ck)
    >>> ck.findings[0].message
    'VirtualService rule #1 not used (route without matches defined before).'
"""

from __future__ import annotations

import json
from typing import Any

from meshkit.resources.model import Path
from meshkit.resources.schema import Checker


def route_name(route: dict[str, Any], index: int) -> str:
    """How Istio names a rule in messages: its quoted ``name`` or ``#<index>``."""
    name = route.get("name") if isinstance(route, dict) else None
    return f'"{name}"' if name else f"#{index}"


def unreachable_rules(routes: list[Any], path: Path, ck: Checker) -> None:
    """IST0130/IST0131: rules after a catch-all, and matches duplicating an earlier rule's match."""
    seen: dict[str, int] = {}
    catch_all = -1
    for i, route in enumerate(routes):
        if not isinstance(route, dict):
            continue
        here = (*path, i)
        matches = route.get("match") or []
        if not matches:
            if catch_all >= 0:
                ck.warn(
                    here,
                    f"VirtualService rule {route_name(route, i)} not used (only the last rule can have no matches).",
                    code="IST0130",
                )
            catch_all = i
            continue
        if catch_all >= 0:
            ck.warn(
                here,
                f"VirtualService rule {route_name(route, i)} not used (route without matches defined before).",
                code="IST0130",
            )
            continue
        duplicates = 0
        for j, match in enumerate(matches):
            key = (
                json.dumps({k: v for k, v in match.items() if k != "name"}, sort_keys=True, default=str)
                if isinstance(match, dict)
                else repr(match)
            )
            if key in seen:
                mname = f'"{match["name"]}"' if isinstance(match, dict) and match.get("name") else f"#{j}"
                ck.info(
                    (*here, "match", j),
                    f"VirtualService rule {route_name(route, i)} match {mname} is not used "
                    f"(duplicate/overlapping match in rule {route_name(routes[seen[key]], seen[key])}).",
                    code="IST0131",
                )
                duplicates += 1
            else:
                seen[key] = i
        if duplicates == len(matches):
            ck.warn(
                here,
                f"VirtualService rule {route_name(route, i)} not used (all matches used by prior rules).",
                code="IST0130",
            )
