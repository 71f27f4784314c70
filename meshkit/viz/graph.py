"""The service graph (Kiali's versioned-app graph): nodes left to right by hops from the gateway.

Each edge is a line labelled ``rate rps, error %``: red as soon as any request on it failed, grey
otherwise; a 🔒 and a solid line when most of its traffic was mutual TLS, a dotted line when it
went in plain text. Reads the Kiali-like shape ``{"elements": {"nodes": [...], "edges": [...]}}``.

A graph of more than :data:`MAX_LABELLED_COLUMNS` columns (lab 01's leftovers: recommendation v3, its
external worldtimeapi.org and the BlackHoleCluster, with the service nodes about 11 nodes) leaves no
room between columns for a label on every edge at a notebook's 700 px: its edges' numbers move to a
table under the graph (and to each edge's hover), and node names alternate above and below from one
column to the next, so neighbouring columns' names never meet.

Example::

    fig = service_graph(mesh.graph())
    [t.line.color for t in fig.data if t.meta]     # one colour per edge
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from meshkit.viz.data import InvalidData, version_key
from meshkit.viz.layout import UIREVISION, waiting_note
from meshkit.viz.palette import ERROR_RED, SERVICE_COLORS, version_color

EDGE_OK = "#6b6b6b"
NODE_SIZE = 30
#: columns (hops from the gateway) up to which every edge carries its label on the figure
MAX_LABELLED_COLUMNS = 4
_GRAPH_HEIGHT = 420
_ROW_PX = 24  # a table row (11 px text, one line) with its padding
_SYMBOLS = {"app": "circle", "service": "triangle-up", "workload": "square", "unknown": "x"}


def graph_elements(graph: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The nodes' and edges' ``data`` dicts, checked: every edge must join two known nodes."""
    if not isinstance(graph, Mapping):
        raise InvalidData(f"expected a graph dict, got {type(graph).__name__}")
    elements = graph.get("elements", graph)
    if not isinstance(elements, Mapping) or "nodes" not in elements:
        raise InvalidData("expected {'elements': {'nodes': [...], 'edges': [...]}}")
    nodes = [dict(n.get("data", n)) for n in elements.get("nodes") or []]
    edges = [dict(e.get("data", e)) for e in elements.get("edges") or []]
    ids = {n.get("id") for n in nodes}
    problems = [f"node {i}: missing 'id'" for i, n in enumerate(nodes) if not n.get("id")]
    for i, e in enumerate(edges):
        for end in ("source", "target"):
            if e.get(end) not in ids:
                problems.append(f"edge {i} ({e.get('id', '?')}): {end} {e.get(end)!r} is not a node")
    if problems:
        raise InvalidData("\n".join(problems))
    return nodes, edges


def hop_depths(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> dict[str, int]:
    """Hops from the root (the gateway, ``isRoot``); nodes it cannot reach start their own column 0."""
    out: dict[str, list[str]] = defaultdict(list)
    incoming: set[str] = set()
    for e in edges:
        out[e["source"]].append(e["target"])
        incoming.add(e["target"])
    ordered = sorted((n["id"] for n in nodes), key=str)
    roots = [n["id"] for n in nodes if n.get("isRoot")] or [i for i in ordered if i not in incoming]
    depth: dict[str, int] = {}
    seeds = deque(roots)
    while len(depth) < len(nodes):
        if not seeds:
            seeds.append(next(i for i in ordered if i not in depth))
        start = seeds.popleft()
        if start in depth:
            continue
        depth[start] = 0
        queue = deque([start])
        while queue:
            cur = queue.popleft()
            for nxt in out[cur]:
                if nxt not in depth:
                    depth[nxt] = depth[cur] + 1
                    queue.append(nxt)
    return depth


def node_label(node: Mapping[str, Any]) -> str:
    """``recommendation v2`` for a versioned app, else the app, workload or id."""
    app = node.get("app") or node.get("workload") or node.get("service") or node["id"]
    version = node.get("version") or ""
    return f"{app} {version}" if version and version != "unknown" else str(app)


def edge_label(edge: Mapping[str, Any]) -> str:
    """``🔒 4.2 rps, 10.0 % err`` (the lock only when most of the traffic was mutual TLS)."""
    lock = "🔒 " if _mtls(edge) > 0.5 else ""
    if edge.get("protocol") == "tcp":  # a ztunnel (L4) edge: bytes, not requests
        bytes_rate, err = float(edge.get("bytesRate") or 0), 100 * float(edge.get("errorRatio") or 0)
        return f"{lock}TCP {bytes_rate:.0f} B/s, {err:.1f} % err"
    return (
        f"{lock}{float(edge.get('rate') or 0):.1f} rps, {100 * float(edge.get('errorRatio') or 0):.1f} % err"
    )


def _edge_text(edge: Mapping[str, Any]) -> str:
    # on the figure the label takes two short lines, so labels of edges that fan out stay apart
    return edge_label(edge).replace(", ", "<br>")


def service_graph(graph: Mapping[str, Any]) -> go.Figure:
    """Draw the graph: columns by hop depth, edge width by rate, red edges where requests failed.

    Example::

        fig = service_graph(graph)
        fig.layout.title.text     # 'Service graph · 5 nodes · 4 edges · 10.0 rps in'
    """
    nodes, edges = graph_elements(graph)
    depth = hop_depths(nodes, edges)
    pos = _positions(nodes, depth)
    max_rate = max((float(e.get("rate") or 0) for e in edges if e.get("protocol") != "tcp"), default=0.0) or 1.0
    labels = {n["id"]: node_label(n) for n in nodes}
    last = max(depth.values(), default=0)
    tabled = last + 1 > MAX_LABELLED_COLUMNS
    fig = go.Figure()
    mids_x, mids_y, texts, hovers, positions = [], [], [], [], []
    for e in edges:
        (sx, sy), (tx, ty) = pos[e["source"]], pos[e["target"]]
        err = float(e.get("errorRatio") or 0)
        color = ERROR_RED if err > 0 else EDGE_OK
        width = 1.5 if e.get("protocol") == "tcp" else 1.5 + 4.5 * float(e.get("rate") or 0) / max_rate
        secure = _mtls(e) > 0.5
        fig.add_trace(
            go.Scatter(
                x=[sx, tx],
                y=[sy, ty],
                mode="lines",
                hoverinfo="skip",
                showlegend=False,
                name=f"{labels[e['source']]} → {labels[e['target']]}",
                meta=str(e.get("id") or f"{e['source']}->{e['target']}"),
                line={"color": color, "width": width, "dash": "solid" if secure else "dot"},
            )
        )
        fig.add_annotation(
            x=tx,
            y=ty,
            ax=sx,
            ay=sy,
            xref="x",
            yref="y",
            axref="x",
            ayref="y",
            text="",
            showarrow=True,
            arrowhead=2,
            arrowsize=1,
            arrowwidth=width,
            arrowcolor=color,
            standoff=NODE_SIZE / 2 + 2,
            startstandoff=NODE_SIZE / 2,
        )
        mids_x.append((sx + tx) / 2)
        mids_y.append((sy + ty) / 2)
        texts.append(_edge_text(e))
        positions.append("bottom center" if ty < sy else "top center")
        hovers.append(_edge_hover(e, labels))
    if edges and tabled:
        # the labels cannot fit between the columns: hover on the edge's middle, numbers in the table
        fig.add_trace(
            go.Scatter(
                x=mids_x,
                y=mids_y,
                mode="markers",
                marker={"size": 14, "opacity": 0},
                hovertext=hovers,
                hoverinfo="text",
                showlegend=False,
                name="edges",
            )
        )
        _edge_table(fig, edges, labels)
    elif edges:
        fig.add_trace(
            go.Scatter(
                x=mids_x,
                y=mids_y,
                mode="text",
                text=texts,
                # above an edge that climbs or runs level, below one that descends: away from the
                # name under its source node
                textposition=positions,
                hovertext=hovers,
                hoverinfo="text",
                showlegend=False,
                name="edges",
                textfont={"size": 11},
                cliponaxis=False,
            )
        )
    if nodes:
        fig.add_trace(
            go.Scatter(
                x=[pos[n["id"]][0] for n in nodes],
                y=[pos[n["id"]][1] for n in nodes],
                mode="markers+text",
                text=[labels[n["id"]] for n in nodes],
                textposition=[_node_text_position(depth[n["id"]], last, tabled) for n in nodes],
                cliponaxis=False,
                marker={
                    "size": NODE_SIZE,
                    "color": [_node_color(n) for n in nodes],
                    "symbol": [_node_symbol(n) for n in nodes],
                    "line": {"color": "white", "width": 2},
                },
                hovertext=[_node_hover(n) for n in nodes],
                hoverinfo="text",
                showlegend=False,
                name="nodes",
            )
        )
    rate_in = sum(float(e.get("rate") or 0) for e in edges if depth[e["source"]] == 0)
    fig.update_layout(
        title=f"Service graph · {len(nodes)} nodes · {len(edges)} edges · {rate_in:.1f} rps in",
        uirevision=UIREVISION,
        plot_bgcolor="white",
        xaxis={"visible": False, "range": [-0.35, last + 0.15]},
        yaxis={"visible": False, "range": _y_range(pos)},
        height=_GRAPH_HEIGHT,
        margin={"l": 70, "r": 130, "t": 60, "b": 30},  # room for the outer columns' names
    )
    if edges and tabled:
        table_px = _ROW_PX * (len(edges) + 1) + 10
        height = _GRAPH_HEIGHT + table_px
        plot_px = height - 60 - 30
        fig.update_layout(height=height, yaxis={"domain": [(table_px + 20) / plot_px, 1.0]})
        fig.update_traces(domain={"x": [0.0, 1.0], "y": [0.0, table_px / plot_px]}, selector={"type": "table"})
    if not nodes:
        waiting_note(fig, "no traffic in the graph yet")
    return fig


def _node_text_position(column: int, last: int, tabled: bool) -> str:
    if column == last and last > 0:
        return "middle right"  # the last column's names go right, clear of the edges arriving from the left
    if tabled and column % 2:
        return "top center"  # columns too close for names side by side: every other one above
    return "bottom center"


def _edge_table(fig: go.Figure, edges: list[dict[str, Any]], labels: Mapping[str, str]) -> None:
    """Every edge's numbers, one row each, under the graph (its domain is set with the height)."""
    rows = [
        (
            f"{labels[e['source']]} → {labels[e['target']]}",
            edge_label(e).replace("🔒 ", "").replace(", ", " · "),
            "🔒 mTLS" if _mtls(e) > 0.5 else "plain text",
        )
        for e in edges
    ]
    fig.add_trace(
        go.Table(
            columnwidth=[5, 4, 2],
            header={"values": ["edge", "traffic", "security"], "align": "left", "height": _ROW_PX,
                    "font": {"size": 11}},
            cells={"values": [list(c) for c in zip(*rows, strict=True)], "align": "left", "height": _ROW_PX,
                   "font": {"size": 11}},
            name="edge table",
        )
    )


def _positions(nodes: list[dict[str, Any]], depth: dict[str, int]) -> dict[str, tuple[float, float]]:
    columns: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for n in nodes:
        columns[depth[n["id"]]].append(n)
    pos = {}
    for d, members in columns.items():
        members.sort(
            key=lambda n: (str(n.get("app") or ""), version_key(str(n.get("version") or "")), n["id"])
        )
        m = len(members)
        for k, n in enumerate(members):
            pos[n["id"]] = (float(d), (m - 1) / 2 - k)
    return pos


def _y_range(pos: Mapping[str, tuple[float, float]]) -> list[float]:
    ys = [y for _, y in pos.values()] or [0.0]
    return [min(ys) - 0.7, max(ys) + 0.7]


def _node_color(node: Mapping[str, Any]) -> str:
    app = str(node.get("app") or "")
    if "gateway" in app or node.get("isRoot"):
        return SERVICE_COLORS["istio-ingressgateway"]
    version = str(node.get("version") or "")
    return version_color(version) if version and version != "unknown" else "#9a9a9a"


def _node_symbol(node: Mapping[str, Any]) -> str:
    if node.get("isRoot") or "gateway" in str(node.get("app") or ""):
        return "diamond"
    return _SYMBOLS.get(str(node.get("nodeType") or "app"), "circle")


def _node_hover(node: Mapping[str, Any]) -> str:
    parts = [f"<b>{node_label(node)}</b>"]
    for key in ("workload", "namespace", "nodeType"):
        if node.get(key):
            parts.append(f"{key}: {node[key]}")
    return "<br>".join(parts)


def _edge_hover(edge: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    parts = [
        f"<b>{labels[edge['source']]} → {labels[edge['target']]}</b>",
        f"{float(edge.get('rate') or 0):.2f} rps, {100 * float(edge.get('errorRatio') or 0):.1f} % errors",
        f"p95 {float(edge.get('p95') or 0):.1f} ms, mTLS {100 * float(edge.get('mtls') or 0):.0f} %",
    ]
    codes = edge.get("codes") or {}
    if codes:
        parts.append("codes: " + ", ".join(f"{c}×{n}" for c, n in sorted(codes.items())))
    flags = edge.get("flags") or {}
    if flags:
        parts.append("flags: " + ", ".join(f"{f}×{n}" for f, n in sorted(flags.items())))
    return "<br>".join(parts)


def _mtls(edge: Mapping[str, Any]) -> float:
    """The edge's mTLS share; the telemetry graph names it ``mtlsShare`` (``mtls`` is accepted too)."""
    return float(edge.get("mtlsShare", edge.get("mtls")) or 0)
