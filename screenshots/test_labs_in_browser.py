"""Every lab in JupyterLab (headless Chromium): Run All, then a screenshot of it as test artifact,
its figures checked for overlapping text where plotly.js drew them, no news prompt, no ✗ and no
traceback. ``make screenshots`` (minutes: six labs; kept out of ``make test`` for its time).

JupyterLab runs with the settings ``meshkit lab`` gives it (shipped overrides.json, news and
update checks off), so the absence of the news prompt is what a learner gets, not a test setting.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshkit.cli.workshop import jupyterlab_args
from tests.labs.conftest import NOTEBOOKS, stop_mesh
from tests.labs.outputs import screenshot_dir, visit_figure_outputs
from tests.labs.test_browser import RUN_ALL_DONE, _free_port, _wait_http, run_all
from tests.viz.layout_geometry import CHROMIUM, CHROMIUM_ARGS, NO_CHROMIUM

NEWS = "() => document.body.innerText.includes('Jupyter news')"
#: the figure outputs (plotly figures and widgets) each lab shows at least, counted in the labs' text
FIGURE_OUTPUTS = {"00": 3, "01": 2, "02": 6, "03": 2, "04": 5, "05": 1, "06": 1}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Path]]:
    if not CHROMIUM.exists():
        pytest.skip(NO_CHROMIUM)
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install 'meshkit[test]'")
    tmp = Path(tempfile.mkdtemp(prefix="meshkit-screens-"))
    home = tmp / "home"
    root = tmp / "root" / "labs"  # a copy: JupyterLab saves what it runs
    root.mkdir(parents=True)
    for nb in NOTEBOOKS:
        shutil.copy(nb, root / nb.name)
    # only what meshkit ships applies, plus one test setting: every cell stays in the page (JupyterLab
    # otherwise drops cells far from view, and a check of all outputs would miss a traceback down there)
    tracker = tmp / "user-settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    env = {**os.environ, "MESHKIT_HOME": str(home), "MESHKIT_LAB_FAST": "1",
           "JUPYTERLAB_SETTINGS_DIR": str(tmp / "user-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces")}
    env.pop("MESHKIT_LAB_STRICT", None)
    port = _free_port()
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.token=", "--ServerApp.password=",
           f"--port={port}", "--allow-root", "--ServerApp.disable_check_xsrf=True",  # the kernel clean-up's DELETE
           *jupyterlab_args(root.parent)]
    log = (tmp / "jupyter.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/status", 300, proc)  # a busy machine took over 90 s
        yield f"http://127.0.0.1:{port}", home
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        stop_mesh(home)


@pytest.fixture(scope="module")
def browser(server: tuple[str, Path]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_dir(tmp_path_factory)  # (tests/labs/conftest.py's fixture is not in scope here)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_lab_after_run_all(path: Path, server: tuple[str, Path], browser: Any, shots: Path) -> None:
    url, _ = server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        # a workspace of its own, reset: only this lab is open (not the previous labs restored beside it)
        page.goto(f"{url}/lab/workspaces/{path.stem}/tree/labs/{path.name}?reset")
        page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=90_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
        dialogs: list[str] = []
        for _ in range(10):  # say what JupyterLab asked (it may ask a moment after loading), go on without it
            if page.locator(".jp-Dialog").count():
                dialogs.append(page.locator(".jp-Dialog").first.inner_text())
                page.keyboard.press("Escape")
            page.wait_for_timeout(200)
        run_all(page)
        page.wait_for_function(RUN_ALL_DONE, timeout=600_000)
        page.wait_for_timeout(1500)  # the last figures draw
        page.screenshot(path=str(shots / f"{path.stem}.png"))
        assert not page.evaluate(NEWS), "JupyterLab shows its news prompt"
        outputs = page.locator(".jp-OutputArea-output").evaluate_all("els => els.map(e => e.innerText)")
        assert not [t for t in outputs if "Traceback" in t], [t for t in outputs if "Traceback" in t][:1]
        assert not [t for t in outputs if t.lstrip().startswith("✗")]
        solution_outputs = page.evaluate("""() => [...document.querySelectorAll('.jp-CodeCell')]
          .filter(c => (c.querySelector('.jp-InputPlaceholder') || {}).textContent?.includes('# Solution'))
          .map(c => [...c.querySelectorAll('.jp-OutputArea-output')].map(o => o.innerText).join(''))""")
        assert solution_outputs and all(not text.strip() for text in solution_outputs), solution_outputs
        # each figure output in turn: scrolled to, screenshot, its text measured, no news prompt
        visit = visit_figure_outputs(page, shots, path.stem)
        assert visit.outputs >= FIGURE_OUTPUTS[path.stem[:2]], visit
        assert visit.problems == [], visit.problems
        assert not dialogs, dialogs
    finally:
        page.close()
        _shut_kernels(url)  # one lab's kernel at a time, as a learner's session holds


def _shut_kernels(url: str) -> None:
    import urllib.request

    with urllib.request.urlopen(f"{url}/api/kernels", timeout=30) as resp:
        kernels = json.loads(resp.read())
    for kernel in kernels:
        req = urllib.request.Request(f"{url}/api/kernels/{kernel['id']}", method="DELETE")
        urllib.request.urlopen(req, timeout=30).close()
