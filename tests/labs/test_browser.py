"""The real UI: JupyterLab in headless Chromium runs (a copy of) lab 01, its widgets and plots render, and moving
the weights slider then pressing Apply changes the traffic split the mesh serves; lab 00 runs with its
checks and its push-diff widget shows the routes and clusters a VirtualService changed.

Needs Chromium (Debian's, or Google Chrome: see ``tests/viz/layout_geometry.py``) and Playwright from PyPI
(no browser download).
A screenshot is saved to ``artifacts/browser-lab.png``; then each figure output of labs 01 and 00 is
scrolled to, its text checked for overlaps in the rendered DOM (plotly's SVG and the widgets' text),
and screenshot to the screenshot directory (``$MESHKIT_SCREENSHOTS``, see ``tests/labs/outputs.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

import meshkit
from tests.labs.conftest import LABS
from tests.labs.outputs import visit_figure_outputs
from tests.viz.layout_geometry import CHROMIUM, CHROMIUM_ARGS, NO_CHROMIUM

pytestmark = pytest.mark.browser

LAB = "01_traffic_control.ipynb"
LAB_00 = "00_setup.ipynb"
PANEL_TITLE = "Traffic split for recommendation"
RUN_STARTED = """() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
  .some(e => /\\[(\\*|\\d+)\\]/.test(e.textContent))"""
# done when nothing is queued and the last cell ran, or when a cell failed (JupyterLab drops the queue)
RUN_ALL_DONE = """() => {
  const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent.trim());
  if (prompts.length === 0 || prompts.some(t => t.includes('*'))) return false;
  const failed = document.querySelector('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]');
  return failed !== null || /\\[\\d+\\]/.test(prompts[prompts.length - 1]);
}"""


def run_all(page: Any, attempts: int = 4) -> None:
    """Run > Run All Cells, again if the notebook was not ready to take it (no cell started)."""
    for _ in range(attempts):
        page.locator(".jp-Notebook .jp-Cell").first.click()
        page.click(".lm-MenuBar-itemLabel:text-is('Run')")
        page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
        try:
            page.wait_for_function(RUN_STARTED, timeout=10_000)
            return
        except Exception:  # playwright's TimeoutError: the click came too early, try again
            continue
    raise AssertionError(f"Run All Cells did not start any cell after {attempts} tries")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:g}s")


@pytest.fixture
def jupyter(lab_home: Path, tmp_path: Path) -> Iterator[str]:
    if not CHROMIUM.exists():
        pytest.skip(NO_CHROMIUM)
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install 'meshkit[test]'")
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # no "get notified about Jupyter news?" toast over the screenshot
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    # every cell stays in the page, so the checks of all outputs see the cells far from view too
    tracker = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "MESHKIT_HOME": str(lab_home)}
    env.pop("MESHKIT_LAB_STRICT", None)  # a learner's session: checks answer, they do not raise
    # serve a copy: JupyterLab saves what it runs, and the committed notebook must stay clean
    root = tmp_path / "labs"
    root.mkdir()
    for name in (LAB, LAB_00):
        shutil.copy(LABS / name, root / name)
    port = _free_port()
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.token=", "--ServerApp.password=",
           "--ServerApp.ip=127.0.0.1", f"--port={port}", "--allow-root", f"--ServerApp.root_dir={root}"]
    log = (tmp_path / "jupyter.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/status", 300, proc)  # an upper bound: 60 s ran out under load
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()



def wait_for_kernel_preview(page: Any, panel: Any, text: str) -> None:
    """Wait until the kernel has rebuilt the panel's YAML preview from the slider's last step.

    The browser moves the slider at once; the kernel learns each step over the comm, and Apply reads
    the kernel's value, so clicking Apply before the preview shows ``text`` can apply a step short.
    """
    page.wait_for_function("([el, t]) => el.innerText.includes(t)", arg=[panel.element_handle(), text],
                           timeout=30_000)

def test_lab_runs_in_jupyterlab_and_the_slider_moves_the_split(jupyter: str, lab_home: Path,
                                                               artifacts: Path, shots: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{jupyter}/lab/tree/{LAB}")
            page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
            page.wait_for_selector(".jp-Toolbar-kernelName:has-text('Python 3')", timeout=60_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            run_all(page)
            page.wait_for_function(RUN_ALL_DONE, timeout=240_000)
            page.screenshot(path=str(artifacts / "browser-lab.png"))  # replaced below once the slider moved

            outputs = page.locator(".jp-OutputArea-output").evaluate_all("els => els.map(e => e.textContent)")
            assert not [t for t in outputs if "Traceback" in t or "Error displaying widget" in t], outputs
            assert sum("✓" in t for t in outputs) >= 7 and not [t for t in outputs if "✗" in t]
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
            page.wait_for_selector(".widget-slider", timeout=30_000)

            panel = page.locator(f".widget-vbox:has(> .widget-html:has-text('{PANEL_TITLE}'))").first
            panel.scroll_into_view_if_needed()
            sliders = panel.locator(".widget-slider")
            assert sliders.count() == 2
            handle = sliders.nth(1).locator(".noUi-handle")
            handle.focus()
            for _ in range(5):
                handle.press("ArrowRight")
            readouts = [int(sliders.nth(i).locator(".widget-readout").inner_text()) for i in range(2)]
            assert readouts == [75, 30]  # the lab left 75/25; five steps right
            wait_for_kernel_preview(page, panel, "weight: 30")
            panel.locator("button:has-text('Apply')").click()
            page.wait_for_function(
                "el => el.innerText.includes('virtualservice.networking.istio.io/recommendation')",
                arg=panel.element_handle(), timeout=30_000,
            )
            page.screenshot(path=str(artifacts / "browser-lab.png"))
            visit = visit_figure_outputs(page, shots, "browser-01_traffic_control")
            assert visit.outputs >= 2 and visit.figures >= 1, visit  # the weights panel, the traffic panel
            assert visit.problems == [], visit.problems
        finally:
            browser.close()

    mesh = meshkit.connect(home=str(lab_home))
    route = mesh.get("virtualservice", "recommendation")[0]["spec"]["http"][0]["route"]
    assert {r["destination"]["subset"]: r["weight"] for r in route} == {"version-v1": 75, "version-v2": 30}
    share = 100 * mesh.load(n=2000, concurrency=8, flags=False).share("v2")
    assert abs(share - 30) <= 4, share  # 2000 draws: one standard deviation is about 1 point


def test_lab_00_runs_in_jupyterlab_with_its_checks_and_the_push_diff(jupyter: str, artifacts: Path,
                                                                     shots: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{jupyter}/lab/tree/{LAB_00}")
            page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
            page.wait_for_selector(".jp-Toolbar-kernelName:has-text('Python 3')", timeout=60_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            run_all(page)
            page.wait_for_function(RUN_ALL_DONE, timeout=240_000)
            outputs = page.locator(".jp-OutputArea-output").evaluate_all("els => els.map(e => e.textContent)")
            assert not [t for t in outputs if "Traceback" in t or "Error displaying widget" in t], outputs
            # succeeds, listeners, config pushed, weighted route, identity (the solution's output is collapsed)
            assert sum("✓" in t for t in outputs) >= 5 and not [t for t in outputs if "✗" in t], outputs
            # the push diff: the recommendation route now comes from the VirtualService
            diff = page.locator(".widget-html:has-text('proxy-config routes')").first
            diff.scroll_into_view_if_needed()
            text = diff.text_content() or ""
            assert "recommendation.tutorial.svc.cluster.local:8080" in text and "recommendation.tutorial" in text, text
            assert "Envoy JSON diff" in text
            assert any("SERVICE FQDN" in t and "DESTINATION RULE" in t for t in outputs)
            page.screenshot(path=str(artifacts / "browser-lab00.png"))
            visit = visit_figure_outputs(page, shots, "browser-00_setup")
            assert visit.figures >= 2, visit  # the pods table, the live config pushes
            assert visit.problems == [], visit.problems
        finally:
            browser.close()


def test_the_weights_widget_in_gateway_api_form_moves_the_split(jupyter: str, lab_home: Path, tmp_path: Path) -> None:
    """The weights panel with api="gateway", driven in the browser: Apply sends an HTTPRoute the mesh routes by."""
    from playwright.sync_api import sync_playwright

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from meshkit import lab\nfrom meshkit.widgets import weights_panel\n"
        "mesh = lab.setup(backend='local')\n"
        "panel = weights_panel(mesh, weights={'v1': 75, 'v2': 25}, api='gateway')\npanel")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, tmp_path / "labs" / "gateway_widget.ipynb")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{jupyter}/lab/tree/gateway_widget.ipynb")
            page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
            page.wait_for_selector(".jp-Toolbar-kernelName:has-text('Python 3')", timeout=60_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            run_all(page)
            page.wait_for_function(RUN_ALL_DONE, timeout=120_000)
            panel = page.locator(f".widget-vbox:has(> .widget-html:has-text('{PANEL_TITLE}'))").first
            panel.wait_for(timeout=30_000)
            assert "gateway.networking.k8s.io/v1" in panel.inner_text()  # the YAML preview is an HTTPRoute
            sliders = panel.locator(".widget-slider")
            handle = sliders.nth(1).locator(".noUi-handle")
            handle.focus()
            for _ in range(5):
                handle.press("ArrowRight")
            wait_for_kernel_preview(page, panel, "weight: 30")
            panel.locator("button:has-text('Apply')").click()
            page.wait_for_function(
                "el => el.innerText.includes('httproute.gateway.networking.k8s.io/recommendation')",
                arg=panel.element_handle(), timeout=30_000,
            )
        finally:
            browser.close()
    mesh = meshkit.connect(home=str(lab_home))
    refs = mesh.get("httproute", "recommendation")[0]["spec"]["rules"][0]["backendRefs"]
    assert {r["name"]: r["weight"] for r in refs} == {"recommendation-v1": 75, "recommendation-v2": 30}
    share = 100 * mesh.load(n=2000, concurrency=8, flags=False).share("v2")
    assert abs(share - 30) <= 4, share
    mesh.reset()
