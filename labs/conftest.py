"""``pytest --nbval-lax labs/`` (part of ``make test``): every lab runs top to bottom on one local mesh.

Each cell must run without an error; ``MESHKIT_LAB_STRICT=1`` makes a check that answers ✗ raise, so
a lab whose lesson does not hold fails here, and ``MESHKIT_LAB_FAST=1`` scales the delays down.
Output comparison needs stored outputs, which the labs are committed without, so nbval compares
none; the time and peak memory (kernel + mesh) of each lab go to ``artifacts/labs-timing.json``,
and the labs together must finish within the budget.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.labs.conftest import MemorySampler, stop_mesh  # noqa: E402

# measured: 415 s for the six under --nbval-lax on a 2-core machine with load average 14-24 (FAST);
# the budget catches a lab that became several times slower, not a busy machine
BUDGET_S = 900.0
_state: dict[str, Any] = {"seconds": defaultdict(float), "peak": defaultdict(int)}


def pytest_configure(config: pytest.Config) -> None:
    if not (getattr(config.option, "nbval_lax", False) or getattr(config.option, "nbval", False)):
        return
    home = Path(tempfile.mkdtemp(prefix="meshkit-nbval-"))
    _state["home"] = home
    os.environ.update(MESHKIT_HOME=str(home), MESHKIT_LAB_STRICT="1", MESHKIT_LAB_FAST="1", MESHKIT_PROGRESS="off")
    os.environ.pop("MESHKIT_BACKEND", None)
    _state["sampler"] = MemorySampler(home).__enter__()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and ".ipynb" in report.nodeid:
        lab = Path(report.nodeid.split("::")[0]).stem
        _state["seconds"][lab] += report.duration
        sampler = _state.get("sampler")
        if sampler is not None:
            _state["peak"][lab] = max(_state["peak"][lab], sampler.peak)
            sampler.peak = 0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    home = _state.get("home")
    if home is None:
        return
    _state["sampler"].__exit__(None, None, None)
    stop_mesh(home)
    seconds = {lab: round(s, 1) for lab, s in sorted(_state["seconds"].items())}
    if not seconds:
        return
    total = round(sum(seconds.values()), 1)
    report = {"labs": {lab: {"seconds": s, "peak_rss_mb": round(_state["peak"][lab] / 2**20)} for lab, s in
                       seconds.items()}, "total_seconds": total, "measured_at": time.strftime("%Y-%m-%d %H:%M")}
    artifacts = REPO / "artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "labs-timing.json").write_text(json.dumps(report, indent=2) + "\n")
    if total > BUDGET_S and session.exitstatus == 0:
        print(f"\nthe labs took {total} s together, over the {BUDGET_S:g} s budget", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
