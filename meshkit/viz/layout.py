"""Layout pieces every figure shares: the time axis, the empty-state note, the zoom-keeping revision.

Example::

    fig = go.Figure()
    waiting_note(fig)      # "waiting for traffic…" in the middle until data arrives
"""

from __future__ import annotations

from datetime import datetime

import plotly.graph_objects as go

#: keeps zoom and legend clicks when a live figure swaps its data
UIREVISION = "meshkit"


def time_layout(fig: go.Figure, title: str, y_title: str, t_range: tuple[float, float] | None) -> None:
    """Stacked bars over a date axis; ``t_range`` (epoch seconds) pins the axis to a window."""
    fig.update_layout(
        title=title,
        barmode="stack",
        bargap=0.05,
        hovermode="x unified",
        uirevision=UIREVISION,
        legend={"traceorder": "normal"},
        yaxis={"title": y_title, "rangemode": "tozero"},
        xaxis={"title": "time", "type": "date"},
    )
    if t_range is not None:
        fig.update_xaxes(range=[datetime.fromtimestamp(t_range[0]), datetime.fromtimestamp(t_range[1])])


def waiting_note(fig: go.Figure, text: str = "waiting for traffic…") -> None:
    """A centred note for a figure that has no data yet."""
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
