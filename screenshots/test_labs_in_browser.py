"""Every lab in JupyterLab (headless Chromium): Run All, then a screenshot of it as test artifact,
its figures checked for overlapping text where plotly.js drew them, no news prompt, no ✗ and no
traceback. ``make screenshots`` (minutes: six labs; kept out of ``make test`` for its time).

JupyterLab runs with the settings ``meshkit lab`` gives it (shipped overrides.json, news and
update checks off), so the absence of the news prompt is what a learner gets, not a test setting.
"""

from __future__ import annotations

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
from tests.labs.conftest import ARTIFACTS, NOTEBOOKS, stop_mesh
from tests.labs.test_browser import CHROMIUM, CHROMIUM_ARGS, RUN_ALL_DONE, _free_port, _wait_http, run_all
from tests.viz.layout_geometry import TEXT_BOXES_JS, problems

NEWS = "() => document.body.innerText.includes('Jupyter news')"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Path]]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install 'meshkit[test]'")
    tmp = Path(tempfile.mkdtemp(prefix="meshkit-screens-"))
    home = tmp / "home"
    root = tmp / "root" / "labs"  # a copy: JupyterLab saves what it runs
    root.mkdir(parents=True)
    for nb in NOTEBOOKS:
        shutil.copy(nb, root / nb.name)
    env = {**os.environ, "MESHKIT_HOME": str(home), "MESHKIT_LAB_FAST": "1",
           "JUPYTERLAB_SETTINGS_DIR": str(tmp / "user-settings"),  # empty: only what meshkit ships applies
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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_lab_after_run_all(path: Path, server: tuple[str, Path], browser: Any) -> None:
    url, _ = server
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        # a workspace of its own, reset: only this lab is open (not the previous labs restored beside it)
        page.goto(f"{url}/lab/workspaces/{path.stem}/tree/labs/{path.name}?reset")
        page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=90_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
        dialogs = []
        if page.locator(".jp-Dialog").count():  # say what JupyterLab asked, then go on without it
            dialogs.append(page.locator(".jp-Dialog").first.inner_text())
            page.keyboard.press("Escape")
        run_all(page)
        page.wait_for_function(RUN_ALL_DONE, timeout=600_000)
        page.wait_for_timeout(1500)  # the last figures draw
        page.screenshot(path=str(ARTIFACTS / f"lab-{path.stem}.png"))
        assert not page.evaluate(NEWS), "JupyterLab shows its news prompt"
        outputs = page.locator(".jp-OutputArea-output").evaluate_all("els => els.map(e => e.innerText)")
        assert not [t for t in outputs if "Traceback" in t], [t for t in outputs if "Traceback" in t][:1]
        assert not [t for t in outputs if t.lstrip().startswith("✗")]
        solution_outputs = page.evaluate("""() => [...document.querySelectorAll('.jp-CodeCell')]
          .filter(c => (c.querySelector('.jp-InputPlaceholder') || {}).textContent?.includes('# Solution'))
          .map(c => [...c.querySelectorAll('.jp-OutputArea-output')].map(o => o.innerText).join(''))""")
        assert solution_outputs and all(not text.strip() for text in solution_outputs), solution_outputs
        found = []
        for plot in page.query_selector_all(".js-plotly-plot"):
            plot.scroll_into_view_if_needed()
            found.extend(problems(page.evaluate(TEXT_BOXES_JS, plot)))
        assert found == [], found
        assert not dialogs, dialogs
    finally:
        page.close()
        _shut_kernels(url)  # one lab's kernel at a time, as a learner's session holds


def _shut_kernels(url: str) -> None:
    import json
    import urllib.request

    with urllib.request.urlopen(f"{url}/api/kernels", timeout=30) as resp:
        kernels = json.loads(resp.read())
    for kernel in kernels:
        req = urllib.request.Request(f"{url}/api/kernels/{kernel['id']}", method="DELETE")
        urllib.request.urlopen(req, timeout=30).close()
