"""Schema pieces shared by several Istio kinds: names, hosts, selectors, percentages, string matches.

Example::

    >>> dns1123_label_error("version-v1") is None
    True
    >>> percentage_error(150.0)
    'percentage 150 is neither 0.0, nor in range [0.0001, 100.0]'
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from meshkit.resources.model import Path, go_float
from meshkit.resources.regex import re2_error
from meshkit.resources.schema import Checker, Int, ListOf, MapOf, Num, Obj, Str

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_HOST_LABEL = r"[A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?"
_HOST = re.compile(rf"^(\*|(\*\.)?{_HOST_LABEL}(\.{_HOST_LABEL})*\.?|\*{_HOST_LABEL}(\.{_HOST_LABEL})*)$")


def dns1123_label_error(value: str) -> str | None:
    if len(value) > 63 or not _LABEL.match(value):
        return (
            f'invalid name "{value}": a lowercase RFC 1123 label must consist of lower case alphanumeric '
            "characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name')"
        )
    return None


def dns1123_subdomain_error(value: str) -> str | None:
    if len(value) > 253 or not all(_LABEL.match(part) for part in value.split(".")):
        return (
            f'invalid name "{value}": a lowercase RFC 1123 subdomain must consist of lower case '
            "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character "
            "(e.g. 'example.com')"
        )
    return None


def host_error(value: str) -> str | None:
    """Hosts are DNS names, optionally with a leading ``*`` wildcard: no scheme, port or path."""
    if not value:
        return "host cannot be empty"
    if not _HOST.match(value):
        return (
            f'invalid host "{value}": use a DNS name such as "recommendation", '
            '"recommendation.tutorial.svc.cluster.local" or "*.example.com" (no scheme, port or path)'
        )
    return None


def ip_or_cidr_error(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return f'invalid IP address or CIDR range: "{value}"'
    return None


def percentage_error(value: float) -> str | None:
    """Istio's ``validatePercentage`` (the double ``percentage.value`` fields)."""
    if value < 0 or value > 100 or 0 < value < 0.0001:
        return f"percentage {go_float(value)} is neither 0.0, nor in range [0.0001, 100.0]"
    return None


PERCENT = Obj({"value": Num(percentage_error)})
PORT_NUMBER = Int(
    lo=1,
    hi=65535,
    lo_msg="port number {value} must be in the range 1..65535",
    hi_msg="port number {value} must be in the range 1..65535",
)
PORT_SELECTOR = Obj({"number": PORT_NUMBER})
LABELS = MapOf(Str())
STRINGS = ListOf(Str())
SELECTOR = Obj({"matchLabels": LABELS})  # security kinds: selector.matchLabels
WORKLOAD_SELECTOR = Obj({"labels": LABELS})  # networking kinds: workloadSelector.labels
TARGET_REF = Obj({"group": Str(), "kind": Str(), "name": Str(), "namespace": Str()}, required=("kind", "name"))

DESTINATION = Obj(
    {"host": Str(host_error), "subset": Str(), "port": PORT_SELECTOR},
    required=("host",),
)


# the match fields Istio names in its regex messages
_MATCH_FIELDS = frozenset({"uri", "scheme", "method", "authority", "headers", "withoutHeaders", "queryParams"})


def _string_match_rule(allow_empty: bool) -> Any:
    def rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
        given = [k for k in ("exact", "prefix", "regex") if k in value]
        if len(given) > 1:
            ck.error(path, f"only one of exact, prefix or regex can be set (found {', '.join(given)})")
        elif not given and not allow_empty:
            ck.error(path, "one of exact, prefix or regex must be set")
        regex = value.get("regex")
        if isinstance(regex, str) and not (regex == "*" and "withoutHeaders" in path):
            # withoutHeaders' "*" is a presence test in Istio, not a regex
            where = next((p for p in reversed(path) if isinstance(p, str) and p in _MATCH_FIELDS), "regex")
            if msg := re2_error(regex, where):
                ck.error((*path, "regex"), msg)

    return rule


#: StringMatch for uri/scheme/method/authority: exactly one of exact|prefix|regex
STRING_MATCH = Obj({"exact": Str(), "prefix": Str(), "regex": Str()}, rules=[_string_match_rule(False)])
#: StringMatch in headers/queryParams maps: may be empty (a presence check)
PRESENCE_MATCH = Obj({"exact": Str(), "prefix": Str(), "regex": Str()}, rules=[_string_match_rule(True)])
