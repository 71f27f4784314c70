"""Static plotly figures of what the mesh did, each a pure function of plain data.

Inputs are the shapes the rest of meshkit produces (and the kind backend reads from the real
addons): the load generator's records, Jaeger query responses, the Kiali-like graph and the pod
list. Colours are shared: v1 blue, v2 orange, v3 green everywhere.

Example::

    from meshkit.viz.figures import split_over_time, codes_over_time
    runner = mesh.traffic(rate=20)
    runner.start()
    ...                                     # a few seconds later
    split_over_time(runner.records()).show()
"""

from __future__ import annotations

from meshkit.viz.codes import codes_over_time
from meshkit.viz.data import InvalidData
from meshkit.viz.graph import service_graph
from meshkit.viz.latency import latency_figure, latency_stats
from meshkit.viz.pods import config_push_timeline, pods_table
from meshkit.viz.split import split_over_time, split_pie
from meshkit.viz.trace import trace_waterfall

__all__ = [
    "InvalidData",
    "codes_over_time",
    "config_push_timeline",
    "latency_figure",
    "latency_stats",
    "pods_table",
    "service_graph",
    "split_over_time",
    "split_pie",
    "trace_waterfall",
]
