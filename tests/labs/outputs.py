"""A lab's figure outputs after Run All, one by one as a reader scrolls to them: each is screenshot
(an element screenshot, saved as a test artifact), its drawn text measured for overlaps, and the page
checked for JupyterLab's news prompt.

A figure output is a cell output holding a plotly figure or an ipywidget. Plotly's SVG texts are
measured by :data:`tests.viz.layout_geometry.TEXT_BOXES_JS`; a widget's texts (labels, readouts,
buttons, its HTML and YAML previews) by the boxes of their text nodes in the rendered DOM, each
clipped to the scroll areas around it, so a line scrolled out of a preview does not count.

The PNGs go to ``$MESHKIT_SCREENSHOTS`` when set (CI uploads that directory), else to a
``screenshots`` folder under pytest's temporary directory.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.viz.layout_geometry import MIN_OVERLAP_PX2, TEXT_BOXES_JS, overlap, problems

ENV = "MESHKIT_SCREENSHOTS"

#: JupyterLab's "Would you like to get notified about official Jupyter news?" toast, and its update notice
NEWS_JS = """() => [...document.querySelectorAll('.Toastify__toast, .jp-Notification-Toast, .jp-toast')]
  .map(t => t.innerText).filter(t => /Jupyter news|update is available|new version/i.test(t))"""

# Figure outputs not yet visited, in document order: the cell's position in the notebook is the key,
# so an output JupyterLab re-renders after scrolling is not taken twice.
PENDING_JS = """(done) => {
  const cells = [...document.querySelectorAll('.jp-Notebook .jp-Cell')];
  const out = [];
  cells.forEach((cell, i) => {
    const key = cell.dataset.windowedListIndex ?? String(i);
    cell.querySelectorAll(':scope .jp-OutputArea-output').forEach((o, j) => {
      const id = key + '.' + j;
      if (done.includes(id)) return;
      // (a figure's output is itself the plot; a widget's holds it)
      if (!o.matches('.js-plotly-plot') && !o.querySelector('.js-plotly-plot, .jupyter-widgets, .widget-box')) return;
      o.dataset.shotId = id;
      out.push(id);
    });
  });
  return out;
}"""

# Every visible text fragment of a widget output outside its plotly figures, in page pixels, clipped
# to the boxes of the scrolling or clipping elements around it; and the labels, readouts and buttons
# whose text is wider than their box (cut off, or ended with an ellipsis).
WIDGET_TEXT_JS = """(root) => {
  const boxes = [], cut = [];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  let node, n = 0;
  while ((node = walker.nextNode())) {
    n += 1;
    const text = (node.textContent || '').trim();
    const el = node.parentElement;
    if (!text || !el || el.closest('.js-plotly-plot, script, style, select, option')) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || style.display === 'none' || style.opacity === '0') continue;
    let clip = {x0: -1e9, y0: -1e9, x1: 1e9, y1: 1e9};
    for (let a = el; a && a !== root.parentElement; a = a.parentElement) {
      const s = getComputedStyle(a);
      if (s.overflowX !== 'visible' || s.overflowY !== 'visible') {
        const r = a.getBoundingClientRect();
        clip = {x0: Math.max(clip.x0, r.left), y0: Math.max(clip.y0, r.top),
                x1: Math.min(clip.x1, r.right), y1: Math.min(clip.y1, r.bottom)};
      }
    }
    range.selectNodeContents(node);
    for (const r of range.getClientRects()) {
      const b = {text, node: n, x0: Math.max(r.left, clip.x0), y0: Math.max(r.top, clip.y0),
                 x1: Math.min(r.right, clip.x1), y1: Math.min(r.bottom, clip.y1)};
      if (b.x1 - b.x0 >= 1 && b.y1 - b.y0 >= 1) boxes.push(b);
    }
  }
  for (const el of root.querySelectorAll('.widget-label, .widget-readout, .widget-button, .widget-toggle-button')) {
    const text = (el.innerText || '').trim();
    if (text && el.offsetParent !== null && el.scrollWidth > el.clientWidth + 1) cut.push(text);
  }
  return {boxes, cut};
}"""


def widget_problems(measured: dict[str, Any]) -> list[str]:
    """Texts of a widget drawn over each other, and labels too wide for their box."""
    boxes = measured["boxes"]
    out = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            if a["node"] != b["node"] and overlap(a, b) > MIN_OVERLAP_PX2:
                out.append(f"{a['text'][:40]!r} overlaps {b['text'][:40]!r} ({overlap(a, b):.0f} px²)")
    out.extend(f"{text[:60]!r} is cut off (wider than its box)" for text in measured["cut"])
    return out


def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the PNGs go: ``$MESHKIT_SCREENSHOTS``, else ``screenshots/`` under pytest's temporary root."""
    path = Path(os.environ[ENV]) if os.environ.get(ENV) else tmp_path_factory.getbasetemp() / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Visit:
    """What walking one lab's figure outputs found."""

    shots: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    outputs: int = 0
    figures: int = 0
    widgets: int = 0


def visit_figure_outputs(page: Any, shots: Path | None, prefix: str, max_outputs: int = 80) -> Visit:
    """Scroll to each figure output in turn: no news prompt, no overlapping text, and (with ``shots``)
    an element screenshot ``{prefix}-NN.png`` of it.

    Outputs JupyterLab renders only once scrolled near are found by walking down the notebook.
    """
    visit = Visit()
    done: list[str] = []
    scroller = page.locator(".jp-WindowedPanel-outer").first
    page.evaluate("el => el.scrollTo(0, 0)", scroller.element_handle())
    for _ in range(max_outputs):
        pending = page.evaluate(PENDING_JS, done)
        if not pending:
            moved = page.evaluate("""el => { const before = el.scrollTop;
                el.scrollTop = before + el.clientHeight * 0.8; return el.scrollTop > before; }""",
                                  scroller.element_handle())
            if not moved:
                break
            page.wait_for_timeout(150)  # the cells scrolled in render
            continue
        shot_id = pending[0]
        done.append(shot_id)
        visit.outputs += 1
        this = f".jp-OutputArea-output[data-shot-id='{shot_id}']"
        output = page.locator(this)
        output.scroll_into_view_if_needed()
        where = f"{prefix} output {len(done)} (cell {shot_id})"
        plots = page.locator(f"{this}.js-plotly-plot, {this} .js-plotly-plot")
        if plots.count():
            page.wait_for_selector(f"{this} .main-svg", timeout=30_000)
        news = page.evaluate(NEWS_JS)
        if news:
            visit.problems.append(f"{where}: JupyterLab shows {news}")
        for plot in plots.element_handles():
            visit.figures += 1
            visit.problems.extend(f"{where}: {p}" for p in problems(page.evaluate(TEXT_BOXES_JS, plot)))
        if output.locator(".jupyter-widgets, .widget-box").count():
            visit.widgets += 1
            visit.problems.extend(f"{where}: {p}" for p in widget_problems(
                page.evaluate(WIDGET_TEXT_JS, output.element_handle())))
        if shots is not None:
            path = shots / f"{prefix}-{len(done):02d}.png"
            output.screenshot(path=str(path), animations="disabled")
            visit.shots.append(path)
    return visit


def slug(text: str) -> str:
    """A file-name-safe form of a lab or test name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")
