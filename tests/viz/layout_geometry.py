"""Overlapping text, measured where it happens: plotly.js lays a figure out in headless Chromium and
every drawn text's box is compared with every other one's, and with the area it must stay inside.

Used by the figure tests (one page for many figures) and by the lab screenshots.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import plotly
import plotly.graph_objects as go

#: the browser: $MESHKIT_CHROMIUM, else Debian's chromium, else Google Chrome (GitHub's Ubuntu runners have it)
CHROMIUM = next((Path(p) for p in (os.environ.get("MESHKIT_CHROMIUM", ""), "/usr/bin/chromium",
                                   "/usr/bin/google-chrome") if p and Path(p).exists()), Path("/usr/bin/chromium"))
NO_CHROMIUM = ("no Chromium: Debian's chromium is not at /usr/bin/chromium (apt-get install chromium), nor Google "
               "Chrome at /usr/bin/google-chrome; or set MESHKIT_CHROMIUM to the browser's path")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
MIN_OVERLAP_PX2 = 4.0  # two boxes that touch at an edge or a corner are not an overlap

# Every non-empty <text> in the figure's SVG layers, with its box in page pixels; plus, for table
# traces, the box its cells are clipped to (a cell outside it is cut off for the reader).
TEXT_BOXES_JS = """(root) => {
  const boxes = [];
  for (const t of root.querySelectorAll('.main-svg text, .main-svg .cell-text')) {
    const text = (t.textContent || '').trim();
    if (!text) continue;
    const style = getComputedStyle(t);
    if (style.display === 'none' || style.visibility === 'hidden' || style.opacity === '0') continue;
    const r = t.getBoundingClientRect();
    if (r.width < 1 || r.height < 1) continue;
    const table = t.closest('.table');
    boxes.push({text, x0: r.left, y0: r.top, x1: r.right, y1: r.bottom,
                cls: t.getAttribute('class') || '', inTable: table !== null});
  }
  const gd = root.classList.contains('js-plotly-plot') ? root : root.querySelector('.js-plotly-plot');
  const tables = [];
  if (gd && gd._fullLayout) {
    const size = gd._fullLayout._size, box = gd.getBoundingClientRect();
    for (const tr of gd._fullData.filter(d => d.type === 'table')) {
      tables.push({x0: box.left + size.l + tr.domain.x[0] * size.w, x1: box.left + size.l + tr.domain.x[1] * size.w,
                   y0: box.top + size.t + (1 - tr.domain.y[1]) * size.h,
                   y1: box.top + size.t + (1 - tr.domain.y[0]) * size.h});
    }
  }
  const svg = root.querySelector('.main-svg');
  const figure = svg ? svg.getBoundingClientRect() : root.getBoundingClientRect();
  const xaxis = gd && gd._fullLayout && gd._fullLayout.xaxis ? gd._fullLayout.xaxis.range : null;
  return {boxes, tables, figure: {x0: figure.left, y0: figure.top, x1: figure.right, y1: figure.bottom}, xaxis};
}"""


def overlap(a: dict[str, Any], b: dict[str, Any]) -> float:
    w = min(a["x1"], b["x1"]) - max(a["x0"], b["x0"])
    h = min(a["y1"], b["y1"]) - max(a["y0"], b["y0"])
    return w * h if w > 0 and h > 0 else 0.0


def problems(measured: dict[str, Any]) -> list[str]:
    """What a reader would see wrong: texts drawn over each other, table cells cut off, text off the figure."""
    boxes = measured["boxes"]
    out = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            area = overlap(a, b)
            if area > MIN_OVERLAP_PX2:
                out.append(f"{a['text']!r} overlaps {b['text']!r} ({area:.0f} px²)")
    for table in measured["tables"]:
        for cell in (b for b in boxes if b["inTable"]):
            if cell["y1"] > table["y1"] + 1 or cell["y0"] < table["y0"] - 1:
                out.append(f"table cell {cell['text']!r} is cut off (outside the table's area)")
    fig = measured["figure"]
    for b in boxes:
        if b["x0"] < fig["x0"] - 1 or b["x1"] > fig["x1"] + 1 or b["y0"] < fig["y0"] - 1 or b["y1"] > fig["y1"] + 1:
            out.append(f"{b['text']!r} is drawn outside the figure")
    return out


class FigurePage:
    """One Chromium page with plotly.js; :meth:`measure` draws a figure at a notebook's width."""

    def __init__(self, page: Any) -> None:
        self.page = page
        page.set_content("<html><body style='margin:0'><div id='fig'></div></body></html>")
        page.add_script_tag(path=str(PLOTLY_JS))

    def measure(self, fig: go.Figure, width: int = 860) -> dict[str, Any]:
        spec = json.loads(fig.to_json())
        layout = {**spec.get("layout", {}), "width": width}
        self.page.evaluate(
            "([data, layout]) => Plotly.newPlot(document.getElementById('fig'), data, layout, {staticPlot: true})",
            [spec.get("data", []), layout],
        )
        result: dict[str, Any] = self.page.evaluate(TEXT_BOXES_JS, self.page.query_selector("#fig"))
        return result
