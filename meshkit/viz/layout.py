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
#: pixels between the y axis and its tick labels, so its "0" stays clear of the x axis's first label
TICK_STANDOFF = 6


def nice_step(span: float, bins: int) -> float:
    """A round bin width (1, 2 or 5 × 10^k) giving about ``bins`` bins over ``span``.

    >>> nice_step(1030, 40), nice_step(21, 40)
    (50.0, 1.0)
    """
    import math

    raw = max(span, 1e-9) / bins
    power = 10 ** math.floor(math.log10(raw))
    return float(next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw))


def time_layout(fig: go.Figure, title: str, y_title: str, t_range: tuple[float, float] | None) -> None:
    """Stacked bars over a date axis; ``t_range`` (epoch seconds) pins the axis to a window."""
    fig.update_layout(
        title=title,
        barmode="stack",
        bargap=0.05,
        hovermode="x unified",
        uirevision=UIREVISION,
        legend={"traceorder": "normal"},
        yaxis={"title": y_title, "rangemode": "tozero", "ticklabelstandoff": TICK_STANDOFF},
        xaxis={"title": "time", "type": "date", "tickformat": "%H:%M:%S",  # one line: the date is today
               "ticklabelstandoff": TICK_STANDOFF},
    )
    if t_range is not None:
        fig.update_xaxes(range=[datetime.fromtimestamp(t_range[0]), datetime.fromtimestamp(t_range[1])])


def waiting_note(fig: go.Figure, text: str = "waiting for traffic…") -> None:
    """A centred note for a figure that has no data yet."""
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    # An axis with no data and no range of its own shows plotly's made-up default (−1 to 6 by −1 to 4
    # on numbers, whose two "−1" labels meet at the corner; a year of "00:00:00" on a time axis):
    # no tick labels until data arrives. An axis given a range (a live window's times) keeps them.
    fig.update_xaxes(ticklabelstandoff=TICK_STANDOFF, selector=lambda ax: ax.range is not None)
    fig.update_yaxes(ticklabelstandoff=TICK_STANDOFF, selector=lambda ax: ax.range is not None)
    fig.update_xaxes(showticklabels=False, selector=lambda ax: ax.range is None)
    fig.update_yaxes(showticklabels=False, selector=lambda ax: ax.range is None)
