"""Regex checks in the spirit of RE2, the engine Envoy and Istio use for ``regex`` string matches.

Python's ``re`` compiles the pattern (so syntax errors are caught); constructs RE2 refuses —
lookarounds, backreferences, atomic groups, conditionals, possessive quantifiers — are rejected
with a clear message, because a pattern using them would be refused by the real mesh.

Example::

    >>> re2_error(".*Safari.*") is None
    True
    >>> re2_error("(?=x)")
    '"(?=x)" is not a valid regex: lookaround assertions ((?=, (?!, (?<=, (?<!) are not supported by RE2'
"""

from __future__ import annotations

import re

_GROUP_PREFIXES = (
    ("(?=", "lookaround assertions ((?=, (?!, (?<=, (?<!) are not supported by RE2"),
    ("(?!", "lookaround assertions ((?=, (?!, (?<=, (?<!) are not supported by RE2"),
    ("(?<=", "lookaround assertions ((?=, (?!, (?<=, (?<!) are not supported by RE2"),
    ("(?<!", "lookaround assertions ((?=, (?!, (?<=, (?<!) are not supported by RE2"),
    ("(?>", "atomic groups (?>...) are not supported by RE2"),
    ("(?(", "conditional groups (?(...)...) are not supported by RE2"),
    ("(?P=", "backreferences are not supported by RE2"),
)


def _unsupported(pattern: str) -> str | None:
    i, in_class = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            nxt = pattern[i + 1 : i + 2]
            if not in_class and nxt.isdigit() and nxt != "0":
                return "backreferences are not supported by RE2"
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
        elif ch == "[":
            in_class = True
            # a ']' right after '[' or '[^' is a literal, not the end of the class
            if pattern[i + 1 : i + 2] == "^":
                i += 1
            if pattern[i + 1 : i + 2] == "]":
                i += 1
        elif ch == "(":
            for prefix, why in _GROUP_PREFIXES:
                if pattern.startswith(prefix, i):
                    return why
        elif ch == "+" and i > 0 and pattern[i - 1] in "*+?}" and pattern[i - 2 : i] != "\\" + pattern[i - 1]:
            return "possessive quantifiers (*+, ++, ?+) are not supported by RE2"
        i += 1
    return None


def re2_error(pattern: str) -> str | None:
    """Why ``pattern`` would be rejected as an Istio regex, or ``None`` when it is acceptable."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return f'"{pattern}" is not a valid regex: {exc}'
    why = _unsupported(pattern)
    return f'"{pattern}" is not a valid regex: {why}' if why else None
