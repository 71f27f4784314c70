"""Istio's rules for HTTP header names and values in matches and header operations.

Header values go to Envoy as custom header formats, where ``%`` starts a variable
(``%HOSTNAME%``, ``%REQ(x-id)%``) and ``%%`` is a literal percent sign.

Example::

    >>> header_value_error("100%%") is None
    True
    >>> header_value_error("100%")
    'header value configuration: invalid header configuration. Un-escaped %'
    >>> operation_name_error(":path", request_set=True)
    'invalid header ":path": header cannot have ":" prefix'
"""

from __future__ import annotations

import re

_TCHARS = re.compile(r"^[!#$%&'*+\-.^_`|~A-Za-z0-9]+$")
_STRICT = re.compile(r"^[-_A-Za-z0-9]+$")
_PROBE = re.compile(r"^[-A-Za-z0-9]+$")
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
_PSEUDO = (":method", ":scheme", ":authority", ":path", ":status")
_CLAIM = re.compile(r"^@request\.auth\.claims(\.[^.\[\]]+)+$|^@request\.auth\.claims(\[[^\[\]]+\])+$")


def is_jwt_claim_route(name: str) -> bool:
    """``@request.auth.claims.<claim>`` / ``@request.auth.claims[<claim>]``: JWT claim routing keys."""
    return bool(_CLAIM.match(name))


def match_name_error(name: str) -> str | None:
    """Header names in ``match.headers`` / ``withoutHeaders``: tokens, pseudo headers or JWT claims."""
    if not name:
        return "header name cannot be empty"
    if is_jwt_claim_route(name) or name in _PSEUDO:
        return None
    if not _TCHARS.match(name):
        return f"header name {name} is not a valid header name"
    return None


def cors_name_error(name: str) -> str | None:
    if not name:
        return "header name cannot be empty"
    if name != "*" and not _TCHARS.match(name):
        return f"header name {name} is not a valid header name"
    return None


def strict_name_error(name: str) -> str | None:
    if not name:
        return "header name cannot be empty"
    if not _STRICT.match(name):
        return f"header name {name} is not a valid header name"
    return None


def probe_name_error(name: str) -> str | None:
    if not name:
        return "header name cannot be empty"
    if not _PROBE.match(name):
        return f"header name {name} is not a valid header name"
    return None


def is_authority(name: str) -> bool:
    return name.lower() in (":authority", "host")


def operation_name_error(name: str, *, request_set: bool = False) -> str | None:
    """Header operation names. ``request_set`` is a request ``set``/``add``, where ``:authority``
    and ``host`` may be written (they rewrite the authority); elsewhere they may not."""
    if not name:
        return "header name cannot be empty"
    internal = name.startswith(":") or name.lower() == "host"
    if request_set:
        if internal and not is_authority(name):
            return f'invalid header "{name}": header cannot have ":" prefix'
        return None
    if name.lower() == "host":
        return f'invalid header "{name}": cannot set Host header'
    if internal:
        return f'invalid header "{name}": header cannot have ":" prefix'
    return None


def header_value_error(value: str) -> str | None:
    """Envoy's custom header format: no control characters, ``%`` escaped or closing a variable."""
    if _CONTROL.search(value):
        return f"header value configuration {value} is invalid"
    if msg := _format_error(value):
        return "header value configuration: " + msg
    return None


def _format_error(value: str) -> str | None:
    state = "literal"
    pos = 0
    while pos < len(value):
        ch = value[pos]
        has_next = pos + 1 < len(value)
        if state == "literal":
            if ch == "%":
                if not has_next:
                    return "invalid header configuration. Un-escaped %"
                if value[pos + 1] == "%":
                    pos += 1
                else:
                    state = "name"
        elif state == "name":
            if ch == "%":
                state = "literal"
            elif ch == "(":
                state = "array"
        elif state == "array":
            if ch == "[":
                state = "want_string"
            elif not ch.isspace():
                state = "string"
        elif state == "delim":
            if ch == ",":
                state = "want_string"
            elif ch == "]":
                state = "args_end"
            elif not ch.isspace():
                return "invalid header configuration. Expecting ',', ']', or whitespace"
        elif state == "want_string":
            if ch == '"':
                state = "string"
            elif not ch.isspace():
                return "invalid header configuration. Expecting '\"'"
        elif state == "string":
            if ch == "\\":
                if not has_next:
                    return "invalid header configuration. Un-terminated backslash in JSON string"
                pos += 1
            elif ch == ")":
                state = "var_end"
            elif ch == '"':
                state = "delim"
        elif state == "args_end":
            if ch == ")":
                state = "var_end"
            elif not ch.isspace():
                return "invalid header configuration. Expecting ')' or whitespace after '{}', but found '{}'"
        elif state == "var_end":
            if ch == "%":
                state = "literal"
            elif not ch.isspace():
                return "invalid header configuration. Expecting '%' or whitespace after"
        pos += 1
    if state != "literal":
        return f"invalid header configuration. Un-terminated variable expression '{value}'"
    return None
