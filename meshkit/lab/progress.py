"""Each learner's progress, written by the checks: one JSON line per check in ``<home>/progress.jsonl``.

A line says which lab, which step (the lab's ``## N ·`` section), which check, ✓ or ✗, and when.
``meshkit class`` reads these files for every learner of a workshop; nothing leaves the learner's
home. ``MESHKIT_PROGRESS=off`` turns the recording off.

Example::

    from meshkit.lab import progress
    progress.record("02_resiliency", "circuit_breaker", ok=True, seen="36 overflows of 40")
    progress.read(progress.progress_file())[-1]["step"]      # 4
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

FILE = "progress.jsonl"
#: a learner whose last check is older than this, or failed this many times in a row, is flagged stuck
STUCK_AFTER_S = 600.0
STUCK_FAILURES = 3
_MAX_LINE = 4096
_LABS = Path(__file__).resolve().parents[2] / "labs"
#: the lab this kernel is in (``lab.setup`` sets it); checks record their outcome under it
CURRENT: dict[str, str | None] = {"lab": None}


def home() -> Path:
    """The learner's mesh home (``$MESHKIT_HOME``, else ``~/.meshkit``)."""
    return Path(os.environ.get("MESHKIT_HOME") or Path.home() / ".meshkit")


def progress_file(where: Path | None = None) -> Path:
    return (where or home()) / FILE


def enabled() -> bool:
    return os.environ.get("MESHKIT_PROGRESS", "on").lower() not in ("0", "off", "false", "no")


@lru_cache(maxsize=16)
def lab_steps(lab: str, labs_dir: Path = _LABS) -> tuple[tuple[int, str, tuple[str, ...]], ...]:
    """The lab's steps from its jupytext source: (number, title, the checks its cells call).

    Steps are the ``## `` sections other than "Clean up", numbered from 1 in order.

    Example::

        lab_steps("02_resiliency")[3][:2]      # (4, '4 · Circuit breaker')
    """
    source = _source(lab, labs_dir)
    if source is None:
        return ()
    steps: list[tuple[int, str, list[str]]] = []
    for cell in re.split(r"^# %%", source.read_text(), flags=re.MULTILINE):
        heading = re.search(r"^# ## (.+)$", cell, flags=re.MULTILINE)
        if heading and "[markdown]" in cell.splitlines()[0]:
            title = heading.group(1).strip()
            if title.lower().startswith("clean up"):
                break
            steps.append((len(steps) + 1, title, []))
        elif steps:
            steps[-1][2].extend(re.findall(r"\bcheck\.(\w+)\(", cell))
    return tuple((n, title, tuple(checks)) for n, title, checks in steps)


def _source(lab: str, labs_dir: Path) -> Path | None:
    matches = sorted(labs_dir.glob(f"{lab}*.py")) if re.fullmatch(r"[\w-]+", lab) else []
    return matches[0] if matches else None


def step_of(lab: str, check: str, after: int = 0) -> int:
    """The step a check belongs to: the first step at or after ``after`` whose cells call it
    (a check such as ``succeeds`` appears in several steps); 0 when unknown."""
    steps = lab_steps(lab)
    for n, _, checks in steps:
        if n >= after and check in checks:
            return n
    return next((n for n, _, checks in steps if check in checks), 0)


def record(lab: str | None, check: str, ok: bool, seen: str = "", where: Path | None = None,
           clock: float | None = None) -> dict[str, Any] | None:
    """Append one check's outcome to the learner's progress file; returns the line written."""
    if not lab or not enabled():
        return None
    path = progress_file(where)
    last = read(path)[-1:] if path.exists() else []
    after = int(last[0]["step"]) if last and last[0].get("lab") == lab else 0
    line = {"t": round(time.time() if clock is None else clock, 3), "lab": lab, "step": step_of(lab, check, after),
            "check": check, "ok": bool(ok), "seen": seen[:300]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    except OSError:  # progress is a courtesy to the instructor: never break a learner's check over it
        return None
    return line


def read(path: Path) -> list[dict[str, Any]]:
    """The lines of a progress file, oldest first; malformed or oversized lines are skipped."""
    out: list[dict[str, Any]] = []
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for raw in fh:
                if len(raw) > _MAX_LINE:
                    continue
                try:
                    item = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(item, dict) and {"t", "lab", "step", "ok"} <= item.keys():
                    out.append(item)
    except OSError:
        return []
    return out


@dataclass(frozen=True)
class LearnerStatus:
    """Where one learner is: their last lab and step, how many checks passed, and whether stuck."""

    learner: str
    lab: str
    step: int
    passed: int
    failed_in_a_row: int
    last_t: float
    last_ok: bool
    stuck: bool
    why: str

    def row(self, now: float) -> tuple[str, ...]:
        ago = max(0.0, now - self.last_t)
        mark = "✓" if self.last_ok else "✗"
        when = f"{ago / 60:.0f} min ago" if ago >= 60 else f"{ago:.0f} s ago"
        return (self.learner, self.lab or "-", str(self.step or "-"), mark, str(self.passed), when,
                "STUCK: " + self.why if self.stuck else "")


def status(learner: str, lines: Iterable[Mapping[str, Any]], now: float,
           stuck_after_s: float = STUCK_AFTER_S, stuck_failures: int = STUCK_FAILURES) -> LearnerStatus:
    """Summarise one learner's lines (oldest first) as of ``now``."""
    items = list(lines)
    if not items:
        return LearnerStatus(learner, "", 0, 0, 0, 0.0, False, True, "no check run yet")
    last = items[-1]
    failed = 0
    for item in reversed(items):
        if item.get("ok"):
            break
        failed += 1
    passed = len({(i["lab"], i.get("check"), i["step"]) for i in items if i.get("ok")})
    idle = now - float(last["t"])
    why = ""
    if failed >= stuck_failures:
        why = f"{failed} failed checks in a row at step {last['step']}"
    elif idle > stuck_after_s:
        why = f"no check for {idle / 60:.0f} min"
    return LearnerStatus(learner, str(last["lab"]), int(last["step"]), passed, failed, float(last["t"]),
                         bool(last.get("ok")), bool(why), why)
