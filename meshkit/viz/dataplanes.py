"""Lab 06's side-by-side figure: what sidecars and ambient cost on the learner's own mesh.

Three panels, one bar group per data plane measured (:class:`meshkit.lab.ambient.DataPlaneUse`):
memory (PSS, stacked by who holds it: the sample's pods, ztunnel, waypoints), how many proxies and
processes carry the traffic, and the latency per hop. Colours are Okabe–Ito, and every memory
segment also has its own fill pattern, so the figure reads without colour vision.

Example::

    dataplane_figure([sidecars, ambient, with_waypoint])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from meshkit.viz.data import InvalidData

#: who holds the memory, in stacking order: (role key, legend label, colour, fill pattern)
HOLDERS = (
    ("pods+sidecar", "sample pods (app + sidecar)", "#56B4E9", ""),
    ("pods", "sample pods (app only)", "#0072B2", "."),
    ("ztunnel", "ztunnel (one per node)", "#D55E00", "/"),
    ("waypoint", "waypoint", "#CC79A7", "x"),
)
COUNT_COLORS = {"proxies": "#009E73", "processes": "#999999"}
LATENCY_COLOR = "#E69F00"


def _holder(role: str) -> str:
    if role in ("ztunnel", "waypoint"):
        return role
    return "pods+sidecar" if role.endswith("+ sidecar") else "pods"


def memory_by_holder(use: Any) -> dict[str, float]:
    """PSS in MB summed by holder (the keys of :data:`HOLDERS`) for one measurement."""
    out = {key: 0.0 for key, *_ in HOLDERS}
    for pod, mb in use.memory_mb.items():
        out[_holder(str(use.roles.get(pod, "")))] += float(mb)
    return {k: round(v, 1) for k, v in out.items()}


def dataplane_figure(uses: Sequence[Any], title: str = "Sidecars and ambient on this mesh") -> go.Figure:
    """Memory, proxies/processes and latency per hop of each measured data plane, side by side.

    Example::

        fig = dataplane_figure([sidecars, ambient])
        [t.name for t in fig.data][:2]      # ['sample pods (app + sidecar)', 'sample pods (app only)']
    """
    if not uses:
        raise InvalidData("dataplane_figure needs at least one measurement (meshkit.lab.ambient.measure)")
    for i, use in enumerate(uses):
        for attr in ("label", "memory_mb", "roles", "proxies", "processes", "hop_ms"):
            if not hasattr(use, attr):
                raise InvalidData(f"measurement {i}: missing {attr} (expected a DataPlaneUse)")
    # "ambient + waypoint" on two lines: three panels side by side leave each bar group a narrow axis
    labels = [str(u.label).replace(" + ", "<br>+ ") for u in uses]
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.11,
                        subplot_titles=("memory (PSS, MB)", "proxies and processes", "latency per hop (ms)"))
    by_holder = [memory_by_holder(u) for u in uses]
    base = [0.0] * len(uses)
    for key, name, color, pattern in HOLDERS:  # stacked by hand: the counts beside them are grouped
        values = [m[key] for m in by_holder]
        if not any(values):
            continue
        fig.add_trace(go.Bar(
            x=labels, y=values, base=list(base), name=name, offsetgroup="memory",
            marker={"color": color, "pattern": {"shape": pattern}}, legendgroup="memory",
            hovertemplate="%{x}: %{y:.1f} MB<extra>" + name + "</extra>",
        ), row=1, col=1)
        base = [b + v for b, v in zip(base, values, strict=True)]
    totals = [sum(m.values()) for m in by_holder]
    fig.add_trace(go.Scatter(x=labels, y=totals, mode="text", text=[f"{t:.0f}" for t in totals],
                             textposition="top center", showlegend=False, hoverinfo="skip"), row=1, col=1)
    for key in ("proxies", "processes"):
        fig.add_trace(go.Bar(
            x=labels, y=[getattr(u, key) for u in uses], name=key, marker={"color": COUNT_COLORS[key]},
            text=[str(getattr(u, key)) for u in uses], textposition="outside", legendgroup="counts",
            hovertemplate="%{x}: %{y} " + key + "<extra></extra>",
        ), row=1, col=2)
    fig.add_trace(go.Bar(
        x=labels, y=[u.hop_ms for u in uses], name="p50 / hops", marker={"color": LATENCY_COLOR},
        text=[f"{u.hop_ms:.2f}" for u in uses], textposition="outside", showlegend=False,
        hovertemplate="%{x}: %{y:.2f} ms per hop<extra></extra>",
    ), row=1, col=3)
    fig.update_layout(
        title=title, barmode="group", height=470, margin={"t": 90, "b": 40, "l": 50, "r": 20},
        legend={"orientation": "h", "y": -0.18, "x": 0, "xanchor": "left", "yanchor": "top"}, bargap=0.35,
    )
    fig.update_xaxes(automargin=True, type="category", tickangle=0)
    # headroom above the tallest bar of each panel for its label
    fig.update_yaxes(range=[0, max(totals) * 1.2 or 1], row=1, col=1)
    fig.update_yaxes(range=[0, max(max(u.proxies, u.processes) for u in uses) * 1.3 + 1], row=1, col=2)
    fig.update_yaxes(range=[0, max(u.hop_ms for u in uses) * 1.3 or 1], row=1, col=3)
    return fig


__all__ = ["HOLDERS", "dataplane_figure", "memory_by_holder"]
