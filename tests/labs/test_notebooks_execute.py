"""Papermill with parameters: lab 00 runs with BACKEND and FAST injected, and every check answers ✓.

Every lab runs under ``pytest --nbval-lax labs/`` (``make test``; see labs/conftest.py, which also
measures each lab's time and memory); this module keeps what nbval cannot do: inject the
parameters a workshop or CI gives (papermill's ``parameters`` cell), and look at what each check said.
``MESHKIT_LAB_STRICT=1`` makes a failing check raise inside the notebook.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import papermill as pm
import pytest

from tests.labs.conftest import LABS, NOTEBOOKS, MemorySampler

pytestmark = pytest.mark.notebooks
BUDGET_S = 300.0  # the goal for all labs together


@pytest.fixture(scope="module")
def strict_home(lab_home: Path) -> Iterator[Path]:
    os.environ["MESHKIT_LAB_STRICT"] = "1"
    yield lab_home


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, Any]]:
    return {}


def _texts(cell: nbformat.NotebookNode) -> list[str]:
    out = []
    for o in cell.get("outputs", []):
        if o.output_type == "stream":
            out.append(o.text)
        elif o.output_type in ("execute_result", "display_data"):
            out.append(o.data.get("text/plain", ""))
    return out


def check_lines(nb: nbformat.NotebookNode) -> list[str]:
    lines = [line for cell in nb.cells if cell.cell_type == "code" for text in _texts(cell)
             for line in text.splitlines()]
    return [line for line in lines if line.startswith(("✓ ", "✗ "))]


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem == "00_setup"], ids=lambda p: p.stem)
def test_lab_executes_and_its_checks_pass(path: Path, strict_home: Path, tmp_path: Path,
                                          results: dict[str, dict[str, Any]]) -> None:
    out = tmp_path / path.name
    with MemorySampler(strict_home) as memory:
        started = time.monotonic()
        pm.execute_notebook(
            str(path), str(out), parameters={"BACKEND": "local", "FAST": True}, kernel_name="python3",
            cwd=str(LABS), progress_bar=False, store_widget_state=False, execution_timeout=180,
        )
        elapsed = time.monotonic() - started
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    checks = check_lines(nb)
    assert checks, f"{path.name} ran no check"
    assert all(line.startswith("✓") for line in checks), "\n".join(checks)
    solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert solutions and all(c.execution_count for c in solutions), "every hidden solution cell runs"
    assert "widgets" not in nb.metadata, "widget state must not be stored"
    results[path.stem] = {"seconds": round(elapsed, 1), "peak_rss_mb": round(memory.peak / 2**20),
                          "checks": len(checks)}
    assert elapsed < BUDGET_S, results[path.stem]  # lab 00 took 99 s under nbval on a busy 2-core box


def test_lab_01_in_gateway_api_form(strict_home: Path, tmp_path: Path) -> None:
    """Lab 01 with API="gateway": every traffic step as HTTPRoutes, the same checks pass."""
    path = next(p for p in NOTEBOOKS if p.stem.startswith("01_"))
    out = tmp_path / path.name
    pm.execute_notebook(
        str(path), str(out), parameters={"BACKEND": "local", "FAST": True, "API": "gateway"},
        kernel_name="python3", cwd=str(LABS), progress_bar=False, store_widget_state=False, execution_timeout=180,
    )
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    checks = check_lines(nb)
    assert checks and all(line.startswith("✓") for line in checks), "\n".join(checks)
    text = "\n".join(t for c in nb.cells if c.cell_type == "code" for t in _texts(c))
    assert "httproute.gateway.networking.k8s.io/recommendation" in text  # HTTPRoutes were applied
    assert "virtualservice.networking.istio.io/recommendation" not in text
