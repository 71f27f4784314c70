"""The committed notebooks: no outputs, no widget state, the lab rhythm, and in sync with labs/_build.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import nbformat
import pytest

from tests.labs.conftest import LABS, NOTEBOOKS

EXPECTED = ["00_setup", "01_traffic_control", "02_resiliency", "03_chaos", "04_observability", "05_security"]


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("labs_build", LABS / "_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
            assert cell.metadata["jupyter"]["source_hidden"] is True
            assert nb.cells[i - 1].source == "" and "exercise" in nb.cells[i - 1].metadata["tags"]
            assert "Exercise" in nb.cells[i - 2].source
    assert any("solution" in c.metadata.get("tags", []) for c in code)
    assert "mesh.reset()" in code[-1].source, "the last cell cleans up"
    # thin notebooks: no function or class definitions, helpers live in meshkit
    assert not any(line.lstrip().startswith(("def ", "class ")) for c in code for line in c.source.splitlines())


def test_notebooks_match_their_generator(tmp_path: Path) -> None:
    build = _builder()
    for slug, cells in build.LABS.items():
        fresh = build.build(slug, cells, out_dir=tmp_path).read_text()
        assert fresh == (LABS / f"{slug}.ipynb").read_text(), f"run python labs/_build.py ({slug} is stale)"
