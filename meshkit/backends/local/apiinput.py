"""Checks for what the control plane's API receives: types, ranges and Kubernetes names.

Every check raises :class:`BadInput` (a ``ValueError``, answered 400 with its message) naming the
field and what it must be, in the API server's words. Names are Kubernetes DNS-1123 labels (or
subdomains where Kubernetes allows them): never a path, so no name can reach outside
``MESHKIT_HOME`` when it becomes part of a file name.

Example:
    >>> dns_label("recommendation-v2", "version")
    'recommendation-v2'
    >>> integer(51, "replicas", 0, 50)
    Traceback (most recent call last):
    ...
    meshkit.backends.local.apiinput.BadInput: replicas: Invalid value: 51: must be between 0 and 50
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from meshkit.wire import loads

MAX_REPLICAS = 50
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# a kind, or a store key qualified by its API group (``HTTPRoute.gateway.networking.k8s.io``)
_KIND = re.compile(r"[A-Za-z][A-Za-z0-9]{0,62}(\.gateway\.networking\.k8s\.io)?")
_MAX_QUERY_NUMBER = 32  # characters: enough for any float or int the API takes


class BadInput(ValueError):
    """A request the API refuses with 400 and this message."""


def _show(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    try:
        text = json.dumps(value) if isinstance(value, str) else repr(value)
    except ValueError:
        text = f"a {type(value).__name__}"
    return text if len(text) <= 80 else text[:77] + "..."


def dns_label(value: Any, field: str) -> str:
    """A Kubernetes DNS-1123 label: at most 63 lower-case letters, digits and '-', alphanumeric ends.

    >>> dns_label("../x", "version")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    meshkit.backends.local.apiinput.BadInput: version: Invalid value: "../x": a lowercase RFC 1123 label must ...
    """
    if not isinstance(value, str):
        raise BadInput(f"{field}: Invalid value: {_show(value)}: must be a string")
    if len(value) > 63:
        raise BadInput(f"{field}: Invalid value: {_show(value)}: must be no more than 63 characters")
    if not _LABEL.fullmatch(value):
        raise BadInput(f"{field}: Invalid value: {_show(value)}: a lowercase RFC 1123 label must consist of "
                       "lower case alphanumeric characters or '-', and must start and end with an alphanumeric "
                       "character")
    return value


def dns_subdomain(value: Any, field: str) -> str:
    """A Kubernetes DNS-1123 subdomain (object names: pods, secrets, Istio resources)."""
    if not isinstance(value, str):
        raise BadInput(f"{field}: Invalid value: {_show(value)}: must be a string")
    if len(value) > 253:
        raise BadInput(f"{field}: Invalid value: {_show(value)}: must be no more than 253 characters")
    if not _SUBDOMAIN.fullmatch(value):
        raise BadInput(f"{field}: Invalid value: {_show(value)}: a lowercase RFC 1123 subdomain must consist of "
                       "lower case alphanumeric characters, '-' or '.', and must start and end with an "
                       "alphanumeric character")
    return value


#: kinds whose names Kubernetes checks only as path segments (RBAC: ``system:auth-delegator``)
PATH_SEGMENT_KINDS = frozenset({"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def object_name(value: Any, field: str, kind: str | None) -> str:
    """An object's name as the API server takes it for ``kind``: a DNS-1123 subdomain, or for the RBAC
    kinds any path segment (not ``.`` or ``..``, no ``/`` or ``%``), so ``system:auth-delegator`` can be
    read and deleted. Neither form can climb out of a directory; control characters are refused too.

    >>> object_name("system:auth-delegator", "name", "ClusterRole")
    'system:auth-delegator'
    >>> object_name("..", "name", "ClusterRole")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    meshkit.backends.local.apiinput.BadInput: name: Invalid value: "..": may not be '.' or '..' and may not ...
    """
    if kind not in PATH_SEGMENT_KINDS:
        return dns_subdomain(value, field)
    if not isinstance(value, str):
        raise BadInput(f"{field}: Invalid value: {_show(value)}: must be a string")
    if len(value) > 253:
        raise BadInput(f"{field}: Invalid value: {_show(value)}: must be no more than 253 characters")
    if not value or value in (".", "..") or "/" in value or "%" in value or _CONTROL.search(value):
        raise BadInput(f"{field}: Invalid value: {_show(value)}: may not be '.' or '..' and may not contain '/', "
                       "'%' or control characters")
    return value


def kind(value: Any, field: str = "kind") -> str:
    """A resource kind as a word (``VirtualService``); which kinds exist is the store's business."""
    if not isinstance(value, str) or not _KIND.fullmatch(value):
        raise BadInput(f"{field}: Invalid value: {_show(value)}: must be a resource kind such as VirtualService")
    return value


def integer(value: Any, field: str, low: int, high: int) -> int:
    """An integer (not a bool, not a float) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput(f"{field}: Invalid value: {_show(value)}: must be an integer")
    if not low <= value <= high:
        raise BadInput(f"{field}: Invalid value: {_show(value)}: must be between {low} and {high}")
    return value


def number(value: Any, field: str, low: float, high: float) -> float:
    """A finite number (int or float, not a bool) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadInput(f"{field}: Invalid value: {_show(value)}: must be a number")
    result = float(value)
    if not math.isfinite(result) or not low <= result <= high:
        raise BadInput(f"{field}: Invalid value: {_show(value)}: must be between {low:g} and {high:g}")
    return result


def boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise BadInput(f"{field}: Invalid value: {_show(value)}: must be true or false")
    return value


def text(value: Any, field: str, max_len: int = 253) -> str:
    """A string of at most ``max_len`` characters."""
    if not isinstance(value, str):
        raise BadInput(f"{field}: Invalid value: {_show(value)}: must be a string")
    if len(value) > max_len:
        raise BadInput(f"{field}: Invalid value: {_show(value)}: must be no more than {max_len} characters")
    return value


def required(body: Mapping[str, Any], field: str) -> Any:
    if field not in body:
        raise BadInput(f"{field}: Required value")
    return body[field]


def query_number(query: Mapping[str, str], field: str, default: float, low: float, high: float) -> float:
    """A number from the query string (``?since=...``), ``default`` when absent."""
    raw = query.get(field)
    if raw is None:
        return default
    try:
        value = float(raw) if len(raw) <= _MAX_QUERY_NUMBER else math.nan
    except ValueError:
        value = math.nan
    if math.isnan(value):
        raise BadInput(f"{field}: Invalid value: {_show(raw)}: must be a number")
    return number(value, field, low, high)


def query_int(query: Mapping[str, str], field: str, default: int, low: int, high: int) -> int:
    """An integer from the query string, ``default`` when absent."""
    raw = query.get(field)
    if raw is None:
        return default
    if len(raw) > _MAX_QUERY_NUMBER or not raw.lstrip("-").isdigit() or not raw.isascii():
        raise BadInput(f"{field}: Invalid value: {_show(raw)}: must be an integer")
    return integer(int(raw), field, low, high)


def json_object(raw: bytes) -> dict[str, Any]:
    """The request body: empty, or one JSON object."""
    if not raw:
        return {}
    try:
        value = loads(raw)
    except ValueError:
        # the fast parser refuses some valid JSON (integers beyond 64 bits): let the checks name the field
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            raise BadInput("the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadInput("the request body must be a JSON object")
    return value
