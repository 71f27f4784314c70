"""Regexes as Istio admits them and Envoy runs them: RE2 syntax, linear-time matching.

Istio compiles every ``regex`` of a route match with Go's ``regexp`` (RE2 syntax) and refuses
patterns longer than 1,024 characters; Envoy then matches with Google's RE2, whose running time is
linear in the input, so a pattern like ``(a+)+$`` cannot make a proxy backtrack for seconds. Both
halves use the same engine here: the ``google-re2`` binding. Its error codes are reported with
the words Go's ``regexp`` uses, inside Istio's message.

Example::

    >>> re2_error(".*Safari.*", "headers") is None
    True
    >>> print(re2_error("(?=x)", "uri"))
    "uri": error parsing regexp: invalid or unsupported Perl syntax: `(?=`; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)
    >>> compile_fullmatch("(a+)+$")("a" * 40 + "!")
    False
"""

from __future__ import annotations

from collections.abc import Callable

import re2
from re2 import _re2

__all__ = ["MAX_REGEX_LENGTH", "compile_fullmatch", "re2_error"]

#: Istio approximates Envoy's RE2 program-size limit by the pattern's length
MAX_REGEX_LENGTH = 1024
_SYNTAX_URL = "https://github.com/google/re2/wiki/Syntax"

# RE2's error text -> Go regexp's wording for the same error code
_GO_WORDS = {
    "invalid escape sequence": "invalid escape sequence",
    "invalid character class": "invalid character class",
    "invalid character class range": "invalid character class range",
    "missing ]": "missing closing ]",
    "missing )": "missing closing )",
    "unexpected )": "unexpected )",
    "trailing \\": "trailing backslash at end of expression",
    "no argument for repetition operator": "missing argument to repetition operator",
    "invalid repetition size": "invalid repeat count",
    "bad repetition operator": "invalid nested repetition operator",
    "invalid perl operator": "invalid or unsupported Perl syntax",
    "invalid UTF-8": "invalid UTF-8",
    "invalid named capture group": "invalid named capture",
}


def _options() -> re2.Options:
    opts = re2.Options()
    opts.log_errors = False  # RE2 would print every refused pattern on stderr
    return opts


_OPTIONS = _options()
_BOTH = _re2.RE2.Anchor.ANCHOR_BOTH


def _go_error(raw: str) -> str:
    code, sep, arg = raw.partition(": ")
    if code.startswith("pattern too large"):
        return "expression too large"
    words = _GO_WORDS.get(code, code)
    return f"{words}: `{arg}`" if sep else words


def re2_error(pattern: str, where: str = "regex") -> str | None:
    """Why Istio's admission refuses ``pattern`` for the match field ``where``, or ``None``."""
    if pattern == "":
        return f'"{where}": regex string match should not be empty'
    if len(pattern) > MAX_REGEX_LENGTH:
        return f'"{where}": regex is too large, max length allowed is {MAX_REGEX_LENGTH}'
    try:
        compiled = _re2.RE2(pattern.encode("utf-8", "surrogatepass"), _OPTIONS)
    except Exception as exc:  # the binding raises on bytes it cannot take at all
        return f'"{where}": error parsing regexp: {exc}; Istio uses RE2 style regex-based match ({_SYNTAX_URL})'
    if compiled.ok():
        return None
    why = _go_error(compiled.error().decode("utf-8", "replace"))
    return f'"{where}": error parsing regexp: {why}; Istio uses RE2 style regex-based match ({_SYNTAX_URL})'


def compile_fullmatch(pattern: str) -> Callable[[str], bool]:
    """A predicate: does the whole value match ``pattern`` (Envoy's ``safe_regex``, RE2)?

    Values are matched as the bytes that came off the wire (headers are decoded as Latin-1), so a
    UTF-8 value matches a UTF-8 pattern as it does in Envoy. Raises ``ValueError`` on a pattern RE2
    refuses (admission stops those first).
    """
    compiled = _re2.RE2(pattern.encode("utf-8"), _OPTIONS)
    if not compiled.ok():
        raise ValueError(compiled.error().decode("utf-8", "replace"))
    match = compiled.Match

    def fullmatch(value: str) -> bool:
        try:
            data = value.encode("latin-1")
        except UnicodeEncodeError:
            data = value.encode("utf-8", "surrogatepass")
        return match(_BOTH, data, 0, len(data))[0][0] != -1

    return fullmatch

