"""Latency per version: overlaid histograms, p50/p99 lines and a p50/p90/p99 table.

Latencies are what the load generator measured end to end (through the ingress gateway), so an
injected delay or a route timeout shows up here as a second hump at its duration.

Example::

    fig = latency_figure(runner.records())
    fig.data[-1].cells.values[0]     # ('v1', 'v2')   the table's version column
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from meshkit.viz.data import check_records, percentile, version_key
from meshkit.viz.layout import TICK_STANDOFF, UIREVISION, nice_step, waiting_note
from meshkit.viz.palette import NO_VERSION_LABEL, version_color, version_pattern
from meshkit.viz.split import Record

PERCENTILES = (50.0, 90.0, 99.0)


def latency_stats(records: Iterable[Record]) -> list[dict[str, object]]:
    """Per version: requests, p50/p90/p99/max latency in ms and the share of non-2xx answers.

    Example::

        latency_stats(records)[0]
        # {'version': 'v1', 'requests': 900, 'p50': 8.1, 'p90': 12.0, 'p99': 19.5, 'max': 25.2,
        #  'errors_pct': 0.0}
    """
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in check_records(records):
        groups[r["version"]].append(r)
    rows: list[dict[str, object]] = []
    for version in sorted(groups, key=version_key):
        recs = groups[version]
        lat = [float(r["latency_ms"]) for r in recs]
        bad = sum(1 for r in recs if not 200 <= int(r["code"]) < 300)
        row: dict[str, object] = {"version": version or NO_VERSION_LABEL, "requests": len(recs)}
        for q in PERCENTILES:
            row[f"p{q:g}"] = percentile(lat, q)
        row["max"] = max(lat)
        row["errors_pct"] = 100.0 * bad / len(recs)
        rows.append(row)
    return rows


# the figure is laid out in pixels: the table below the histogram gets exactly the rows it has
_MARGIN = {"t": 60, "b": 10, "l": 60, "r": 20}
_PLOT_PX = 260          # the histogram
_AXIS_PX = 64           # under it: tick labels and the axis title
_HEADER_PX, _ROW_PX = 44, 24   # a two-line header: unit under the name


def latency_figure(records: Iterable[Record]) -> go.Figure:
    """Histogram of latency per version (shared bins from 0 ms) with a percentile table underneath.

    Dotted lines mark each version's p50 and dashed lines its p99, in the version's colour.
    """
    recs = check_records(records)
    by_version: dict[str, list[float]] = defaultdict(list)
    for r in recs:
        by_version[r["version"]].append(float(r["latency_ms"]))
    stats = latency_stats(recs)
    table_px = _HEADER_PX + _ROW_PX * max(1, len(stats)) + 6
    plot_h = _PLOT_PX + _AXIS_PX + table_px
    fig = make_subplots(
        rows=2,
        cols=1,
        row_heights=[_PLOT_PX / plot_h, table_px / plot_h],
        vertical_spacing=_AXIS_PX / plot_h,
        specs=[[{"type": "xy"}], [{"type": "table"}]],
    )
    top = max((max(v) for v in by_version.values()), default=1.0)
    step = nice_step(top, 40)
    end = (int(top // step) + 1) * step
    for version in sorted(by_version, key=version_key):
        name = version or NO_VERSION_LABEL
        fig.add_trace(
            go.Histogram(
                x=by_version[version],
                name=name,
                marker={"color": version_color(version), "pattern": {"shape": version_pattern(version)}},
                opacity=0.65,
                bingroup="latency",
                xbins={"start": 0, "end": end, "size": step},  # from 0: no bin of negative latency
                hovertemplate="%{x} ms: %{y} requests<extra>" + name + "</extra>",
            ),
            row=1,
            col=1,
        )
    for row in stats:
        color = version_color("" if row["version"] == NO_VERSION_LABEL else str(row["version"]))
        for q, dash in (("p50", "dot"), ("p99", "dash")):
            fig.add_vline(x=row[q], line={"color": color, "dash": dash, "width": 1.5}, row=1, col=1)
    fig.add_trace(_table(stats), row=2, col=1)
    n = len(recs)
    fig.update_layout(
        title=f"Latency per version (ms, {n} requests)" if n else "Latency per version (ms)",
        barmode="overlay",
        uirevision=UIREVISION,
        height=plot_h + _MARGIN["t"] + _MARGIN["b"],
        margin=_MARGIN,
        xaxis={"title": "latency (ms) · dotted p50, dashed p99", "range": [0, end]},
        yaxis={"title": "requests", "rangemode": "tozero", "ticklabelstandoff": TICK_STANDOFF},
    )
    if not recs:
        waiting_note(fig)
    return fig


def _table(stats: list[dict[str, object]]) -> go.Table:
    cols = ["version", "requests", "p50", "p90", "p99", "max", "errors_pct"]
    # the unit on its own line: at a notebook's width plotly wrapped "p50 ms" anyway, and the taller
    # header pushed the last row out of the table's area
    header = ["version", "requests", "p50<br>ms", "p90<br>ms", "p99<br>ms", "max<br>ms", "non-2xx<br>%"]
    values: list[list[object]] = []
    for c in cols:
        column = [row[c] for row in stats]
        if c not in ("version", "requests"):
            column = [round(float(v), 1) for v in column]  # type: ignore[arg-type]
        values.append(column)
    font_colors = [
        version_color("" if row["version"] == NO_VERSION_LABEL else str(row["version"])) for row in stats
    ]
    return go.Table(
        columnwidth=[3, 1.2, 1, 1, 1, 1, 1.2],  # "no version (error)" on one line at a notebook's 700 px
        header={"values": header, "align": "left", "fill": {"color": "#eeeeee"}, "height": _HEADER_PX},
        cells={
            "values": values,
            "align": "left",
            "height": _ROW_PX,
            "font": {"color": [font_colors] + [["#222222"] * len(stats)] * 6},
        },
    )
