"""The two small records every part of :mod:`meshkit.resources` passes around.

A :class:`Document` is one YAML document as read from a file; a :class:`Problem` is one located
finding about it (a webhook-style validation error, a warning, or an ``istioctl analyze`` message).

Example::

    >>> p = Problem("Error", "IST0106", "weight -5 < 0", source="canary.yaml", index=1,
    ...             kind="VirtualService", namespace="tutorial", name="recommendation",
    ...             field="spec.http[0].route[1].weight", line=14)
    >>> p.analyze_line()
    'Error [IST0106] (VirtualService tutorial/recommendation canary.yaml:14) weight -5 < 0'
    >>> p.format()[:62]
    'error: canary.yaml, document 2 (line 14): VirtualService tutor'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: a location inside a document: ("spec", "http", 0, "route", 1, "weight")
Path = tuple[str | int, ...]

LEVELS = ("Error", "Warning", "Info")


def format_path(path: Path) -> str:
    """Render a path the way the webhook names fields: ``spec.http[0].route[1].weight``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def display_source(source: str) -> str:
    """How a document's source is shown in messages (``-`` is standard input)."""
    return "<stdin>" if source == "-" else source


@dataclass(frozen=True)
class Problem:
    """One located finding. ``level`` is ``Error``, ``Warning`` or ``Info``.

    ``code`` is an ``istioctl analyze`` code (``IST0106``, ``IST0101`` ...) or ``YAML`` for a syntax
    error. ``field`` is the webhook-style path of the offending field ("" when the whole resource is
    meant) and ``line`` the 1-based line of that field in ``source`` (``None`` when unknown).
    """

    level: str
    code: str
    message: str
    source: str = ""
    index: int = 0
    kind: str = ""
    namespace: str = ""
    name: str = ""
    field: str = ""
    line: int | None = None

    def _subject(self) -> str:
        if self.kind and self.name:
            return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"
        return self.kind

    def format(self) -> str:
        """Validation style: ``error: f.yaml, document 2 (line 14): VirtualService ns/name: field: msg``."""
        parts = [f"{self.level.lower()}:"]
        if self.source:
            where = f"{display_source(self.source)}, document {self.index + 1}"
            if self.line is not None:
                where += f" (line {self.line})"
            parts.append(where + ":")
        subject = self._subject()
        if subject:
            parts.append(subject + ":")
        if self.field:
            parts.append(self.field + ":")
        parts.append(self.message)
        return " ".join(parts)

    def analyze_line(self) -> str:
        """``istioctl analyze`` style: ``Error [IST0101] (VirtualService ns/name f.yaml:14) message``."""
        loc = self._subject()
        if self.source:
            where = display_source(self.source) + (f":{self.line}" if self.line is not None else "")
            loc = f"{loc} {where}" if loc else where
        head = f"{self.level} [{self.code}]"
        return f"{head} ({loc}) {self.message}" if loc else f"{head} {self.message}"


@dataclass(frozen=True)
class Document:
    """One YAML document of a file: ``index`` is its 0-based position, ``line`` its first line.

    ``lines`` maps field paths to the 1-based line where each field starts, so problems can point at
    the exact line; ``error`` holds the syntax error when the YAML could not be read.
    """

    source: str
    index: int
    data: Any
    line: int = 1
    lines: Mapping[Path, int] = field(default_factory=dict, compare=False, repr=False)
    error: Problem | None = None

    def line_of(self, path: Path) -> int:
        """The line of ``path``, or of its nearest located parent, or the document's first line."""
        for end in range(len(path), 0, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return self.line


@dataclass(frozen=True)
class Origin:
    """Where a validated resource came from; :func:`meshkit.resources.analyze` uses it for file:line."""

    source: str
    index: int
    line: int
    lines: Mapping[Path, int] = field(default_factory=dict, compare=False, repr=False)

    def line_of(self, path: Path) -> int:
        for end in range(len(path), 0, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return self.line


def go_float(value: float) -> str:
    """Format a number as Go's ``%v`` does for float64 (``150``, ``0.5``, ``1e-05``)."""
    f = float(value)
    if f.is_integer() and abs(f) < 1e21:
        return str(int(f))
    return repr(f)
