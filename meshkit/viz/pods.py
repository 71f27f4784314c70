"""Lab 00's pictures of the data plane: the pods with their proxies, and config pushes over time.

A pod is ``{name, app, version, ready, sidecar, config_version, synced}`` (what ``meshkit status``
lists, like ``istioctl proxy-status``); :class:`meshkit.backends.base.Pod` objects work too.

Example::

    pods_table(mesh.pods())
    config_push_timeline([{"t": t0, "pods": before}, {"t": t1, "pods": after}])
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import plotly.graph_objects as go

from meshkit.viz.data import InvalidData, version_key
from meshkit.viz.layout import TICK_STANDOFF, UIREVISION, nice_step, waiting_note
from meshkit.viz.palette import service_color, version_color

POD_FIELDS = ("name", "app", "version", "ready", "sidecar", "config_version", "synced")
_STALE_BG, _BAD_BG, _OK_BG = "#ffe0b2", "#ffcdd2", "#ffffff"


def pod_dicts(pods: Iterable[Any]) -> list[dict[str, Any]]:
    """Pods as dicts with the fields the figures read, sorted by app, version and name."""
    out = []
    for i, p in enumerate(pods):
        d = p.to_dict() if hasattr(p, "to_dict") else dict(p) if isinstance(p, Mapping) else None
        if d is None:
            raise InvalidData(f"pod {i}: expected a dict or a Pod, got {type(p).__name__}")
        missing = [f for f in POD_FIELDS if f not in d]
        if missing:
            raise InvalidData(f"pod {i} ({d.get('name', '?')}): missing {', '.join(missing)}")
        out.append(d)
    return sorted(out, key=lambda d: (str(d["app"]), version_key(str(d["version"])), str(d["name"])))


def pods_table(pods: Iterable[Any]) -> go.Figure:
    """A table like ``kubectl get pods`` + ``istioctl proxy-status``: READY, proxy, config version, sync.

    Example::

        pods_table(pods).data[0].cells.values[-1]     # ('SYNCED', 'SYNCED', 'STALE', ...)
    """
    rows = pod_dicts(pods)
    header = ["NAME", "APP", "VERSION", "READY", "PROXY", "CONFIG", "SYNC"]
    ready, proxy, sync, cfg = [], [], [], []
    for p in rows:
        n = 2 if p["sidecar"] else 1
        ready.append(f"{n if p['ready'] else 0}/{n}")
        proxy.append("istio-proxy" if p["sidecar"] else "—")
        sync.append(("SYNCED" if p["synced"] else "STALE") if p["sidecar"] else "—")
        cfg.append(p["config_version"] if p["sidecar"] else "—")
    values = [
        [p["name"] for p in rows],
        [p["app"] for p in rows],
        [p["version"] for p in rows],
        ready,
        proxy,
        cfg,
        sync,
    ]
    fills = [[_OK_BG] * len(rows) for _ in header]
    fills[3] = [_OK_BG if p["ready"] else _BAD_BG for p in rows]
    fills[6] = [_STALE_BG if s == "STALE" else _OK_BG for s in sync]
    version_font = [version_color(str(p["version"])) for p in rows]
    fonts = [["#222222"] * len(rows) for _ in header]
    fonts[2] = version_font
    fig = go.Figure(
        go.Table(
            header={"values": header, "align": "left", "fill": {"color": "#eeeeee"}},
            cells={"values": values, "align": "left", "fill": {"color": fills}, "font": {"color": fonts}},
            columnwidth=[3.2, 1.4, 0.9, 0.8, 1.1, 0.9, 0.9],
        )
    )
    stale = sum(1 for s in sync if s == "STALE")
    synced = f"{stale} {'proxy' if stale == 1 else 'proxies'} stale" if stale else "every proxy synced"
    fig.update_layout(
        title=f"{len(rows)} pods · {synced}",
        uirevision=UIREVISION,
        height=120 + 28 * max(len(rows), 1),
        margin={"t": 50, "b": 10},
    )
    return fig


def config_push_timeline(snapshots: Sequence[Any]) -> go.Figure:
    """Each proxy's config version over time (steps); hollow markers where it was not yet synced.

    ``snapshots`` are ``{"t": epoch seconds, "pods": [...]}`` dicts or ``(t, pods)`` pairs, oldest
    first. Proxies that share a version are drawn a hair apart so one line does not hide another.

    Example::

        fig = config_push_timeline(history)
        fig.data[0].customdata      # the true config versions of the first pod
    """
    series: dict[str, list[tuple[float, int, bool]]] = defaultdict(list)
    apps: dict[str, str] = {}
    for i, snap in enumerate(snapshots):
        t, pods = (snap["t"], snap["pods"]) if isinstance(snap, Mapping) else snap
        if not isinstance(t, int | float):
            raise InvalidData(f"snapshot {i}: 't' must be epoch seconds, got {t!r}")
        for p in pod_dicts(pods):
            if p["sidecar"]:
                series[p["name"]].append((float(t), int(p["config_version"]), bool(p["synced"])))
                apps[p["name"]] = str(p["app"])
    fig = go.Figure()
    for k, name in enumerate(sorted(series, key=lambda n: (apps[n], n))):
        pts = series[name]
        offset = 0.04 * k
        fig.add_trace(
            go.Scatter(
                x=[datetime.fromtimestamp(t) for t, _, _ in pts],
                y=[v + offset for _, v, _ in pts],
                customdata=[v for _, v, _ in pts],
                mode="lines+markers",
                line={"shape": "hv", "color": service_color(apps[name])},
                marker={
                    "size": 9,
                    "symbol": ["circle" if ok else "circle-open" for _, _, ok in pts],
                    "color": service_color(apps[name]),
                },
                name=name,
                hovertemplate="config v%{customdata}<extra>" + name + "</extra>",
            )
        )
    last_synced = [pts[-1][2] for pts in series.values()]
    title = "Config pushes to each proxy"
    if last_synced:
        title += f" · {sum(last_synced)}/{len(last_synced)} synced now"
    fig.update_layout(
        title=title,
        uirevision=UIREVISION,
        # one-line time labels as on the other time figures: the default puts the date under the first
        # tick, wide enough to run into the y axis's "0"
        xaxis={"title": "time", "type": "date", "tickformat": "%H:%M:%S", "ticklabelstandoff": TICK_STANDOFF},
        # whole-number steps: versions are integers, and "d" on a 0.5 step prints 1, 1, 2, 2, …
        yaxis={"title": "config version", "tickformat": "d", "rangemode": "tozero",
               "dtick": _version_step(max((v for pts in series.values() for _, v, _ in pts), default=1)),
               "ticklabelstandoff": TICK_STANDOFF},
        hovermode="x unified",
    )
    if not series:
        waiting_note(fig, "no proxies yet")
    return fig


def _version_step(top: int) -> int:
    """A whole tick step giving at most about six ticks from 0 to ``top``."""
    return max(1, math.ceil(nice_step(float(top), 6)))
