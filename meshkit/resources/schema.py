"""A small declarative schema for Istio specs: types, unknown fields, ranges, plus semantic rules.

Each node checks one value at one path and reports into a :class:`Checker`. :class:`Obj` runs its
semantic ``rules`` only when the fields beneath it were well-typed, so rules can trust the types.

Example::

    >>> ck = Checker()
    >>> Obj({"weight": Int(lo=0, lo_msg="weight {value} < 0")}).check({"weight": -5, "x": 1}, ("r",), ck)
    >>> [(f.path, f.message) for f in ck.findings]
    [(('r', 'weight'), 'weight -5 < 0'), (('r', 'x'), 'unknown field "x"')]
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshkit.resources.duration import duration_error, parse_nanos
from meshkit.resources.model import Path

SCHEMA_ERROR = "IST0106"
SCHEMA_WARNING = "IST0133"


@dataclass(frozen=True)
class Finding:
    level: str
    code: str
    path: Path
    message: str


@dataclass
class Checker:
    """Collects findings; ``profile`` selects tutorial-era (Istio 1.9) or current rules."""

    profile: str = "current"
    findings: list[Finding] = field(default_factory=list)
    #: the resource being checked (some of Istio's rules depend on its namespace, name or annotations)
    namespace: str = "tutorial"
    name: str = ""
    annotations: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tutorial_era(self) -> bool:
        return self.profile.startswith("tutorial")

    def error(self, path: Path, message: str, code: str = SCHEMA_ERROR) -> None:
        self.findings.append(Finding("Error", code, path, message))

    def warn(self, path: Path, message: str, code: str = SCHEMA_WARNING) -> None:
        self.findings.append(Finding("Warning", code, path, message))

    def info(self, path: Path, message: str, code: str) -> None:
        self.findings.append(Finding("Info", code, path, message))

    @property
    def error_count(self) -> int:
        return sum(1 for f in self.findings if f.level == "Error")


def describe(value: Any) -> str:
    """``string "ten"``, ``integer 5``, ``list`` ... for type-mismatch messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, str):
        return f'string "{value}"' if len(value) <= 80 else f'string "{value[:60]}..." ({len(value)} characters)'
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class Schema(ABC):
    """Base node: ``check`` reports problems about ``value`` (never ``None``) found at ``path``."""

    expected = "value"

    @abstractmethod
    def check(self, value: Any, path: Path, ck: Checker) -> None:
        """Report every problem of ``value`` to ``ck``; every concrete node implements it."""

    def mismatch(self, value: Any, path: Path, ck: Checker) -> None:
        ck.error(path, f"expected {self.expected}, got {describe(value)}")


Validator = Callable[[Any], str | None]
Rule = Callable[[dict[str, Any], Path, Checker], None]


class Loose(Schema):
    """Accepted but not interpreted (e.g. ``corsPolicy``); ``mapping`` still requires an object."""

    expected = "object"

    def __init__(self, *, mapping: bool = True) -> None:
        self.mapping = mapping

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if self.mapping and not isinstance(value, dict):
            self.mismatch(value, path, ck)


class Str(Schema):
    expected = "string"

    def __init__(self, validate: Validator | None = None) -> None:
        self.validate = validate

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if not isinstance(value, str):
            self.mismatch(value, path, ck)
        elif self.validate and (msg := self.validate(value)):
            ck.error(path, msg)


class Int(Schema):
    """An integer; ``lo_msg``/``hi_msg`` are formatted with ``{value}`` (Istio's own wording)."""

    expected = "integer"

    def __init__(
        self,
        lo: int | None = None,
        hi: int | None = None,
        lo_msg: str = "",
        hi_msg: str = "",
        validate: Callable[[int], str | None] | None = None,
    ) -> None:
        self.lo, self.hi = lo, hi
        self.validate = validate
        self.lo_msg = lo_msg or "{value} is less than the minimum " + str(lo)
        self.hi_msg = hi_msg or "{value} is greater than the maximum " + str(hi)

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.mismatch(value, path, ck)
        elif self.lo is not None and value < self.lo:
            ck.error(path, self.lo_msg.format(value=value))
        elif self.hi is not None and value > self.hi:
            ck.error(path, self.hi_msg.format(value=value))
        elif self.validate and (msg := self.validate(value)):
            ck.error(path, msg)


class Num(Schema):
    """A number (integer or decimal); ``validate`` receives it as a float."""

    expected = "number"

    def __init__(self, validate: Validator | None = None) -> None:
        self.validate = validate

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.mismatch(value, path, ck)
        elif not _finite(value):
            ck.error(path, f"expected a finite number, got {value}")
        elif self.validate and (msg := self.validate(float(value))):
            ck.error(path, msg)


def _finite(value: float) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


class Bool(Schema):
    expected = "boolean"

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if not isinstance(value, bool):
            self.mismatch(value, path, ck)


class Dur(Schema):
    """A duration string such as ``1.000s`` or ``500ms`` (webhook rules, see :mod:`.duration`)."""

    expected = 'duration string (e.g. "1s", "500ms")'

    def __init__(self, *, zero_ok: bool = False, any_ok: bool = False) -> None:
        # zero_ok: "0s" means "disabled" (tcp idleTimeout); any_ok: no webhook range check (cookie ttl)
        self.zero_ok = zero_ok
        self.any_ok = any_ok

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if not isinstance(value, str):
            self.mismatch(value, path, ck)
            return
        msg = duration_error(value)
        if msg and (self.zero_ok or self.any_ok):
            try:
                nanos = parse_nanos(value)
            except ValueError:
                pass
            else:
                # Istio skips the check when the value truncates to 0 ms
                if self.any_ok or -1_000_000 < nanos < 1_000_000:
                    msg = None
        if msg:
            ck.error(path, msg)


class Enum(Schema):
    expected = "string"

    def __init__(self, *values: str) -> None:
        self.values = values

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if not isinstance(value, str):
            self.mismatch(value, path, ck)
        elif value not in self.values:
            allowed = ", ".join(f'"{v}"' for v in self.values)
            ck.error(path, f'unsupported value "{value}": supported values: {allowed}')


class ListOf(Schema):
    expected = "list"

    def __init__(self, item: Schema, *, no_empty_strings: bool = False) -> None:
        self.item = item
        self.no_empty_strings = no_empty_strings

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if not isinstance(value, list):
            self.mismatch(value, path, ck)
            return
        for i, item in enumerate(value):
            if item is None:
                ck.error((*path, i), f"expected {self.item.expected}, got null")
            elif self.no_empty_strings and item == "":
                ck.error((*path, i), f"empty value is not allowed in {path[-1]}")
            else:
                self.item.check(item, (*path, i), ck)


class MapOf(Schema):
    """A map with string keys (or integer keys when ``int_keys``) and values of one schema."""

    expected = "object"

    def __init__(self, value: Schema, *, key: Validator | None = None, int_keys: bool = False) -> None:
        self.value = value
        self.key = key
        self.int_keys = int_keys

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if not isinstance(value, dict):
            self.mismatch(value, path, ck)
            return
        for k, v in value.items():
            child = (*path, str(k))
            if not isinstance(k, str) and not (self.int_keys and isinstance(k, int) and not isinstance(k, bool)):
                ck.error(child, f"expected a string key, got {describe(k)}")
                continue
            if self.key and (msg := self.key(k)):
                ck.error(child, msg)
            if v is None:
                ck.error(child, f"expected {self.value.expected}, got null")
            else:
                self.value.check(v, child, ck)


class Obj(Schema):
    """A mapping with known fields. Unknown fields are errors (Istio's CRDs prune nothing).

    ``required`` names fields that must be present; ``rules`` are semantic checks run on the whole
    mapping once its fields type-check; ``hints`` add a sentence to the unknown-field message.
    """

    expected = "object"

    def __init__(
        self,
        fields: Mapping[str, Schema],
        *,
        required: Iterable[str] = (),
        rules: Iterable[Rule] = (),
        hints: Mapping[str, str] | None = None,
        unknown_hint: str = "",
    ) -> None:
        self.fields = dict(fields)
        self.required = tuple(required)
        self.rules = tuple(rules)
        self.hints = dict(hints or {})
        self.unknown_hint = unknown_hint

    def check(self, value: Any, path: Path, ck: Checker) -> None:
        if not isinstance(value, dict):
            self.mismatch(value, path, ck)
            return
        before = ck.error_count
        for key, item in value.items():
            schema = self.fields.get(key) if isinstance(key, str) else None
            if schema is None:
                hint = self.hints.get(str(key), self.unknown_hint)
                ck.error((*path, str(key)), f'unknown field "{key}"' + (f" ({hint})" if hint else ""))
            elif item is not None:
                schema.check(item, (*path, key), ck)
        for key in self.required:
            if value.get(key) is None:
                ck.error((*path, key), f'required field "{key}" is missing')
        if ck.error_count == before:
            present = _without_nulls(value)  # null means "not set", at any depth
            for rule in self.rules:
                rule(present, path, ck)


def _without_nulls(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_nulls(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [_without_nulls(v) for v in node if v is not None]
    return node
