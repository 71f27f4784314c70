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
from meshkit.resources.names import is_dns1123_label, label_errors, selector_errors, wildcard_domain_error
from meshkit.resources.regex import re2_error
from meshkit.resources.schema import Checker, Int, ListOf, MapOf, Num, Obj, Str

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


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
    """Hosts are DNS names whose first label may be a wildcard (``*``, ``*.example.com``, ``*-foo.baz``)."""
    return wildcard_domain_error(value)


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


def _label_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    for msg in label_errors(value):
        ck.error(path, msg)


def _selector_rule(key: str, empty_warning: str = "workload selector specified without labels") -> Any:
    def rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
        labels = value.get(key) or {}
        for msg in selector_errors(labels):
            ck.error((*path, key), msg)
        if not labels:
            ck.warn(path, empty_warning)

    return rule


def _target_ref_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if not value.get("name"):
        ck.error((*path, "name"), "targetRef name must be set")
    if value.get("namespace"):
        ck.error((*path, "namespace"), "cross namespace referencing is not currently supported")
    group, kind = value.get("group", ""), value.get("kind", "")
    if (group or "core", kind) not in _TARGET_KINDS:
        ck.error(
            path,
            "targetRef must be to one of [core/v1/Service networking.istio.io/v1/ServiceEntry "
            "gateway.networking.k8s.io/v1/Gateway gateway.networking.k8s.io/v1/GatewayClass] "
            f"but was {group}/{kind}",
        )


_TARGET_KINDS = {
    ("core", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
}


class _Labels(MapOf):
    """A label map checked with Istio's label rules (keys and values like Kubernetes labels)."""

    def __init__(self) -> None:
        super().__init__(Str())

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        before = ck.error_count
        super().check(value, path, ck)
        if ck.error_count == before and isinstance(value, dict):
            _label_rule(value, path, ck)


LABELS = MapOf(Str())
#: labels Istio validates as Kubernetes labels (subset labels, sourceLabels, workload labels)
VALID_LABELS = _Labels()
STRINGS = ListOf(Str())
SELECTOR = Obj({"matchLabels": LABELS}, rules=[_selector_rule("matchLabels")])  # security kinds
WORKLOAD_SELECTOR = Obj({"labels": LABELS}, rules=[_selector_rule("labels")])  # networking kinds
TARGET_REF = Obj(
    {"group": Str(), "kind": Str(), "name": Str(), "namespace": Str()},
    required=("kind",),
    rules=[_target_ref_rule],
)


def _destination_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    host = value.get("host", "")
    if host == "*":
        ck.error((*path, "host"), f"invalid destination host {host}")
    subset = value.get("subset")
    if subset is not None and (msg := subset_name_error(subset)):
        ck.error((*path, "subset"), msg)


def subset_name_error(name: str) -> str | None:
    if not name:
        return "subset name cannot be empty"
    if not is_dns1123_label(name):
        return f"subset name is invalid: {name}"
    return None


DESTINATION = Obj(
    {"host": Str(host_error), "subset": Str(), "port": PORT_SELECTOR},
    required=("host",),
    rules=[_destination_rule],
)
def regex_error(pattern: str, where: str) -> str | None:
    """Istio's ``validateStringRegexp`` (non-empty, at most 1024 characters, RE2 syntax) with its message."""
    return re2_error(pattern, where)


def string_match_errors(value: Any, where: str, *, empty_prefix_ok: bool = False) -> list[tuple[str, str]]:
    """Istio's ``validateStringMatch``: non-empty prefix (except for uri), valid regex; ``(field, message)``."""
    if not isinstance(value, dict):
        return []
    if "prefix" in value and value["prefix"] == "" and not empty_prefix_ok:
        return [("prefix", f'"{where}": prefix string match should not be empty')]
    if isinstance(value.get("regex"), str) and (msg := regex_error(value["regex"], where)):
        return [("regex", msg)]
    return []


def _one_of_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    given = [k for k in ("exact", "prefix", "regex") if k in value]
    if len(given) > 1:
        ck.error(path, f"only one of exact, prefix or regex can be set (found {', '.join(given)})")


def string_match(where: str, *, empty_prefix_ok: bool = False) -> Obj:
    """A StringMatch checked the way Istio checks it at ``where`` (``uri``, ``headers``...)."""

    def rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
        for key, msg in string_match_errors(value, where, empty_prefix_ok=empty_prefix_ok):
            ck.error((*path, key), msg)

    return Obj({"exact": Str(), "prefix": Str(), "regex": Str()}, rules=[_one_of_rule, rule])


#: StringMatch with no rule but one-of (kept for callers that check values themselves)
STRING_MATCH = Obj({"exact": Str(), "prefix": Str(), "regex": Str()}, rules=[_one_of_rule])
PRESENCE_MATCH = STRING_MATCH
