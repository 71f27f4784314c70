"""AuthorizationPolicy: action, rules (from/to/when) and Istio's supported condition keys.

Example::

    >>> condition_key_error("request.auth.claims[role]") is None
    True
    >>> condition_key_error("source.labels[app]").split(":")[0]
    'unknown attribute (source.labels[app])'
"""

from __future__ import annotations

import re
from typing import Any

from meshkit.resources.common import SELECTOR, TARGET_REF, ip_or_cidr_error
from meshkit.resources.model import Path
from meshkit.resources.schema import Checker, Enum, ListOf, Obj, Str

ACTIONS = ("ALLOW", "DENY", "AUDIT", "CUSTOM")
_PLAIN_KEYS = (
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "destination.ip",
    "destination.port",
    "connection.sni",
)
_KEY_PATTERNS = (
    re.compile(r"^request\.headers\[[^\[\]]+\]$"),
    re.compile(r"^request\.auth\.claims(\[[^\[\]]+\])+$"),
    re.compile(r"^experimental\.envoy\.filters\.[\w.\-]+\[[^\[\]]+\]$"),
)
_SUPPORTED = (
    "request.headers[<name>], "
    + ", ".join(_PLAIN_KEYS[:7])
    + ", request.auth.claims[<claim>], destination.ip, destination.port, connection.sni, "
    + "experimental.envoy.filters.*"
)
_IP_KEYS = ("source.ip", "remote.ip", "destination.ip")


def condition_key_error(key: str) -> str | None:
    if key in _PLAIN_KEYS or any(p.match(key) for p in _KEY_PATTERNS):
        return None
    return f"unknown attribute ({key}): supported keys are {_SUPPORTED}"


def _port_value(value: str) -> str | None:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        return f'invalid port "{value}": ports are numbers in 0..65535, written as strings'
    return None


def _nonempty_section(what: str) -> Any:
    def rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
        if not value:
            ck.error(path, f"`{what}` must not be empty")

    return rule


def _strings(item: Str | None = None) -> ListOf:
    return ListOf(item or Str(), no_empty_strings=True)


_IPS = _strings(Str(ip_or_cidr_error))
_PORTS = _strings(Str(_port_value))

SOURCE = Obj(
    {
        **{
            k: _strings()
            for k in (
                "principals",
                "notPrincipals",
                "requestPrincipals",
                "notRequestPrincipals",
                "namespaces",
                "notNamespaces",
            )
        },
        **{k: _IPS for k in ("ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks")},
    },
    rules=[_nonempty_section("from.source")],
)
OPERATION = Obj(
    {
        **{k: _strings() for k in ("hosts", "notHosts", "methods", "notMethods", "paths", "notPaths")},
        "ports": _PORTS,
        "notPorts": _PORTS,
    },
    rules=[_nonempty_section("to.operation")],
)


def _condition_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    key = value["key"]
    if msg := condition_key_error(key):
        ck.error((*path, "key"), msg)
        return
    if not value.get("values") and not value.get("notValues"):
        ck.error(path, f"at least one of `values` or `notValues` must be set for key {key}")
    for field in ("values", "notValues"):
        for i, item in enumerate(value.get(field) or []):
            if (key in _IP_KEYS and (msg := ip_or_cidr_error(item))) or (
                key == "destination.port" and (msg := _port_value(item))
            ):
                ck.error((*path, field, i), msg)


CONDITION = Obj(
    {"key": Str(), "values": _strings(), "notValues": _strings()}, required=("key",), rules=[_condition_rule]
)
RULE = Obj(
    {
        "from": ListOf(Obj({"source": SOURCE}, required=("source",))),
        "to": ListOf(Obj({"operation": OPERATION}, required=("operation",))),
        "when": ListOf(CONDITION),
    }
)


def _policy_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if value.get("selector") and (value.get("targetRef") or value.get("targetRefs")):
        ck.error(path, "only one of targetRefs or workload selector can be set")
    action = value.get("action", "ALLOW")
    if action == "CUSTOM" and not (value.get("provider") or {}).get("name"):
        ck.error((*path, "provider"), "must specify provider when using CUSTOM action")
    if action != "CUSTOM" and value.get("provider"):
        ck.error((*path, "provider"), "provider is only allowed with the CUSTOM action")


AUTHORIZATION_POLICY = Obj(
    {
        "selector": SELECTOR,
        "targetRef": TARGET_REF,
        "targetRefs": ListOf(TARGET_REF),
        "action": Enum(*ACTIONS),
        "provider": Obj({"name": Str()}),
        "rules": ListOf(RULE),
    },
    rules=[_policy_rule],
)
