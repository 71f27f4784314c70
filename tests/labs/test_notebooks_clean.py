"""The committed notebooks: no outputs, no widget state, the lab rhythm, and in sync with their jupytext sources."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest

from tests.labs.conftest import LABS, NOTEBOOKS

EXPECTED = ["00_setup", "01_traffic_control", "02_resiliency", "03_chaos", "04_observability", "05_security"]


def test_every_chapter_has_its_lab() -> None:
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_or_widget_state(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] for c in code), "strip the outputs before committing"
    assert all(c.execution_count is None for c in code), "strip the execution counts"
    assert "widgets" not in nb.metadata


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_lab_rhythm(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert nb.cells[0].cell_type == "markdown" and "**Goal:**" in nb.cells[0].source
    params = code[0]
    assert params.metadata["tags"] == ["parameters"]
    assert 'BACKEND = "local"' in params.source and "FAST = False" in params.source
    assert "lab.setup(backend=BACKEND)" in code[1].source
    for i, cell in enumerate(nb.cells):
        if "solution" in cell.metadata.get("tags", []):
            # hidden source and output: Run All still runs the solution without showing it
            assert cell.metadata["jupyter"] == {"source_hidden": True, "outputs_hidden": True}
            assert nb.cells[i - 1].source == "" and "exercise" in nb.cells[i - 1].metadata["tags"]
            assert "Exercise" in nb.cells[i - 2].source
    assert any("solution" in c.metadata.get("tags", []) for c in code)
    assert "mesh.reset()" in code[-1].source, "the last cell cleans up"
    # thin notebooks: no function or class definitions, helpers live in meshkit
    assert not any(line.lstrip().startswith(("def ", "class ")) for c in code for line in c.source.splitlines())


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, dict[str, object]]]:
    return [(c.cell_type, c.source, dict(c.metadata)) for c in nb.cells]


def test_every_notebook_has_its_jupytext_source() -> None:
    assert sorted(p.stem for p in LABS.glob("[0-9][0-9]_*.py")) == [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_in_sync_with_its_source(path: Path) -> None:
    """labs/NN_slug.py is what people edit; the .ipynb is built from it (make notebooks)."""
    source = jupytext.read(path.with_suffix(".py"), fmt="py:percent")
    built = nbformat.read(path, as_version=4)
    assert _cells(source) == _cells(built), f"{path.name} is stale: run make notebooks"
    assert source.metadata["kernelspec"] == built.metadata["kernelspec"]
