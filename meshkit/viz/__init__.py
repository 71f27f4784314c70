"""Plotly figures of what the mesh did: static builders and live FigureWidgets.

Needs the ``lab`` extra (plotly, ipywidgets, anywidget). Names are imported on first use, so
``import meshkit`` works without it and the error says what to install.

Example::

    from meshkit.viz import split_over_time, live_split
    split_over_time(records).show()
    live = live_split(runner, window_s=30)
"""

from __future__ import annotations

import importlib
from typing import Any

from meshkit.errors import BackendUnavailable

_EXPORTS = {
    "split_over_time": "figures",
    "split_pie": "figures",
    "codes_over_time": "figures",
    "latency_figure": "figures",
    "latency_stats": "figures",
    "trace_waterfall": "figures",
    "service_graph": "figures",
    "pods_table": "figures",
    "config_push_timeline": "figures",
    "dataplane_figure": "dataplanes",
    "InvalidData": "figures",
    "LiveFigure": "live",
    "RecordSource": "live",
    "live_split": "live",
    "live_codes": "live",
    "live_latency": "live",
    "live_graph": "live",
    "live_trace": "live",
    "live_config_push": "live",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'meshkit.viz' has no attribute {name!r}")
    try:
        module = importlib.import_module(f"meshkit.viz.{_EXPORTS[name]}")
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("meshkit"):  # our own bug, not a missing extra
            raise
        raise BackendUnavailable(
            f"meshkit.viz needs {exc.name!r}, part of the lab extra: pip install 'meshkit[lab]'"
        ) from exc
    return getattr(module, name)
