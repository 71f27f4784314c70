"""Traffic split: how many requests each version answered, per time bucket and in total.

Both figures read the load generator's records (``{"t", "latency_ms", "code", "version", ...}``).
Requests that got no version back (an error before recommendation answered) are their own grey
series, so the bars always add up to what was sent.

Example::

    fig = split_over_time(runner.records(), bucket_s=1.0)
    fig.show()
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import plotly.graph_objects as go

from meshkit.viz.data import bucket_of, bucket_starts, check_records, in_range, version_key
from meshkit.viz.layout import UIREVISION, time_layout, waiting_note
from meshkit.viz.palette import NO_VERSION_LABEL, version_color, version_pattern

Record = Mapping[str, Any]


def split_over_time(
    records: Iterable[Record], bucket_s: float = 1.0, t_range: tuple[float, float] | None = None
) -> go.Figure:
    """Stacked bars of requests per version per bucket; hovering shows each version's share.

    ``t_range`` (epoch seconds) fixes the x axis, fills empty buckets and drops records outside it,
    which is what a sliding live window needs.

    Example::

        fig = split_over_time(records, bucket_s=2.0)
        [t.name for t in fig.data]      # ['v1', 'v2']
    """
    recs = in_range(check_records(records), t_range)
    bars = stacked_counts(
        recs,
        series=lambda r: r["version"] or NO_VERSION_LABEL,
        order=lambda s: version_key(_v(s)),
        color=lambda s: version_color(_v(s)),
        pattern=lambda s: version_pattern(_v(s)),
        bucket_s=bucket_s,
        t_range=t_range,
        noun="requests",
    )
    fig = go.Figure(bars)
    totals = Counter(r["version"] or NO_VERSION_LABEL for r in recs)
    share = " · ".join(
        f"{name} {100.0 * n / len(recs):.1f} %"
        for name, n in sorted(totals.items(), key=lambda kv: version_key(_v(kv[0])))
    )
    title = f"Requests per version ({share} of {len(recs)})" if recs else "Requests per version"
    time_layout(fig, title, f"requests per {bucket_s:g} s", t_range)
    if not recs:
        waiting_note(fig)
    return fig


def split_pie(records: Iterable[Record]) -> go.Figure:
    """A donut of the total requests per version (same colours as :func:`split_over_time`).

    Example::

        split_pie(records).data[0].values    # (903, 97)
    """
    recs = check_records(records)
    totals = Counter(r["version"] or NO_VERSION_LABEL for r in recs)
    names = sorted(totals, key=lambda s: version_key(_v(s)))
    fig = go.Figure()
    if names:
        fig.add_trace(
            go.Pie(
                labels=names,
                values=[totals[n] for n in names],
                marker={"colors": [version_color(_v(n)) for n in names]},
                sort=False,
                hole=0.45,
                textinfo="label+percent",
                hovertemplate="%{label}: %{value} requests (%{percent})<extra></extra>",
            )
        )
    fig.update_layout(title=f"Requests per version (total {len(recs)})", uirevision=UIREVISION)
    if not recs:
        waiting_note(fig)
    return fig


def stacked_counts(
    records: list[Record],
    series: Callable[[Record], str],
    order: Callable[[str], Any],
    color: Callable[[str], str],
    bucket_s: float,
    t_range: tuple[float, float] | None,
    noun: str,
    pattern: Callable[[str], str] | None = None,
) -> list[go.Bar]:
    """One bar trace per series with its count in every bucket; ``customdata`` holds the share %."""
    buckets = bucket_starts((r["t"] for r in records), bucket_s, t_range)
    counts: dict[str, Counter[float]] = defaultdict(Counter)
    per_bucket: Counter[float] = Counter()
    for r in records:
        b = bucket_of(r["t"], bucket_s)
        counts[series(r)][b] += 1
        per_bucket[b] += 1
    xs = [datetime.fromtimestamp(b) for b in buckets]
    bars = []
    for name in sorted(counts, key=order):
        ys = [counts[name][b] for b in buckets]
        shares = [
            100.0 * y / per_bucket[b] if per_bucket[b] else 0.0 for y, b in zip(ys, buckets, strict=True)
        ]
        bars.append(
            go.Bar(
                x=xs,
                y=ys,
                name=name,
                # a pattern as well as a colour: series stay apart for colour-blind readers and in grey print
                marker={"color": color(name), "pattern": {"shape": pattern(name) if pattern else ""}},
                customdata=shares,
                hovertemplate=f"%{{y}} {noun} (%{{customdata:.1f}} %)<extra>{name}</extra>",
            )
        )
    return bars


def _v(series_name: str) -> str:
    return "" if series_name == NO_VERSION_LABEL else series_name
