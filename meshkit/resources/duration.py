"""Istio durations: Go-style strings (``1.000s``, ``500ms``, ``3m``, ``1h``) with the webhook's rules.

Istio's webhook rejects durations under one millisecond and durations finer than a millisecond;
the strings themselves follow Go's ``time.ParseDuration`` grammar.

Example::

    >>> parse_duration("1.000s")
    1.0
    >>> parse_duration("1m30s")
    90.0
    >>> duration_error("1.5ms")
    'only durations to ms precision are supported'
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_PART = re.compile(r"([0-9]*\.?[0-9]*)([^0-9.]*)")
_MS = 1_000_000


def _format_error(text: str) -> str:
    return f'invalid duration "{text}": use a number and a unit (ms, s, m, h), e.g. "500ms", "1s", "3m"'


def parse_nanos(text: str) -> int:
    """Parse a Go duration string into integer nanoseconds; raise ValueError on bad syntax."""
    s = text.strip()
    sign = 1
    if s and s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(_format_error(text))
    total = Decimal(0)
    pos = 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m or not m.group(1) or m.group(1) == ".":
            raise ValueError(_format_error(text))
        number, unit = m.group(1), m.group(2)
        if not unit and m.end() < len(s):
            raise ValueError(_format_error(text))
        if not unit:
            raise ValueError(f'missing unit in duration "{text}" (e.g. "{text}s")')
        if unit not in _UNIT_NS:
            raise ValueError(f'unknown unit "{unit}" in duration "{text}" (valid units: ns, us, ms, s, m, h)')
        try:
            total += Decimal(number) * _UNIT_NS[unit]
        except InvalidOperation:
            raise ValueError(_format_error(text)) from None
        pos = m.end()
    return sign * int(total)  # Go truncates fractions of a nanosecond


def duration_error(text: str) -> str | None:
    """The webhook's message for a bad duration string, or ``None`` when it is valid."""
    try:
        nanos = parse_nanos(text)
    except ValueError as exc:
        return str(exc)
    if nanos < _MS:
        return "duration must be greater than 1ms"
    if nanos % _MS:
        return "only durations to ms precision are supported"
    return None


def parse_duration(text: str) -> float:
    """Seconds in an Istio duration string; ValueError with the webhook's message when invalid."""
    problem = duration_error(text)
    if problem:
        raise ValueError(problem)
    return parse_nanos(text) / 1e9
