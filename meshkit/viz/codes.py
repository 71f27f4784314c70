"""Status codes and Envoy response flags over time: ``200``, ``503 UO``, ``503 FI``, ``504 UT``...

A 503 from a circuit breaker, from an injected fault and from the application look the same to a
user; the flag tells them apart, so each (code, flag) pair is its own coloured series.

Example::

    fig = codes_over_time(runner.records(), bucket_s=1.0)
    [t.name for t in fig.data]    # ['200', '503 UO']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import plotly.graph_objects as go

from meshkit.viz.data import check_records, code_label, in_range
from meshkit.viz.layout import time_layout, waiting_note
from meshkit.viz.palette import code_color, code_pattern
from meshkit.viz.split import Record, stacked_counts


def codes_over_time(
    records: Iterable[Record], bucket_s: float = 1.0, t_range: tuple[float, float] | None = None
) -> go.Figure:
    """Stacked bars of requests per (code, flags) per bucket, successes first.

    Example::

        fig = codes_over_time(records, bucket_s=1.0)
        fig.data[1].name, sum(fig.data[1].y)     # ('503 FI', 52)
    """
    recs = in_range(check_records(records), t_range)
    bars = stacked_counts(
        recs,
        series=lambda r: code_label(int(r["code"]), r.get("flags")),
        order=_code_order,
        color=code_color,
        pattern=code_pattern,
        bucket_s=bucket_s,
        t_range=t_range,
        noun="responses",
    )
    fig = go.Figure(bars)
    totals = Counter(code_label(int(r["code"]), r.get("flags")) for r in recs)
    ok = sum(n for label, n in totals.items() if label.startswith("2"))
    title = (
        f"Status codes and flags ({100.0 * ok / len(recs):.1f} % 2xx of {len(recs)})"
        if recs
        else ("Status codes and flags")
    )
    time_layout(fig, title, f"responses per {bucket_s:g} s", t_range)
    if not recs:
        waiting_note(fig)
    return fig


def _code_order(label: str) -> tuple[int, int, str]:
    code = label.split(" ", 1)[0]
    if not code.isdigit():  # "no response"
        return (1, 1000, label)
    n = int(code)
    return (0 if 200 <= n < 300 else 1, n, label)
