"""A trace as a waterfall (Gantt): one bar per span, indented by depth, coloured by service.

Reads Jaeger's query-API shape, which both the local collector and a real Jaeger answer with:
``{"data": [{"traceID", "spans": [...], "processes": {...}}]}``. Spans that failed (an ``error``
tag, or an HTTP status of 500 and above) are drawn red whatever their service.

Example::

    fig = trace_waterfall(mesh.traces(limit=1))
    len(fig.layout.yaxis.ticktext)     # one row per span
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from meshkit.errors import NotFound
from meshkit.viz.data import InvalidData
from meshkit.viz.layout import UIREVISION
from meshkit.viz.palette import ERROR_RED, service_color


@dataclass(frozen=True)
class SpanRow:
    """One span placed in the waterfall: when it started (ms after the trace began), how deep it is."""

    span_id: str
    parent_id: str
    service: str
    operation: str
    start_ms: float
    duration_ms: float
    depth: int
    error: bool
    tags: Mapping[str, Any]

    @property
    def label(self) -> str:
        indent = "\u00a0\u00a0\u00a0" * self.depth + ("↳ " if self.depth else "")
        short = self.service.split(".", 1)[0]
        return f"{indent}{short}: {self.operation} ({self.duration_ms:.1f} ms)"


def pick_trace(trace_or_response: Mapping[str, Any], trace_index: int = 0) -> Mapping[str, Any]:
    """The trace itself, from either a whole Jaeger response or a single trace."""
    if not isinstance(trace_or_response, Mapping):
        raise InvalidData(f"expected a Jaeger response or trace dict, got {type(trace_or_response).__name__}")
    if "spans" in trace_or_response:
        return trace_or_response
    if "data" not in trace_or_response:
        raise InvalidData("expected a Jaeger response {'data': [...]} or one trace {'traceID', 'spans', ...}")
    traces = trace_or_response["data"] or []
    if not -len(traces) <= trace_index < len(traces):
        raise NotFound(
            f"trace {trace_index} not found: the response holds {len(traces)} trace(s)"
            + (f" (indexes 0..{len(traces) - 1})" if traces else "")
        )
    trace = traces[trace_index]
    if not isinstance(trace, Mapping) or "spans" not in trace:
        raise InvalidData(f"data[{trace_index}]: a trace needs a 'spans' list")
    return trace


def span_rows(trace: Mapping[str, Any]) -> list[SpanRow]:
    """The spans of one trace, ordered by start time, each with its depth below the root."""
    spans = trace.get("spans") or []
    processes = trace.get("processes") or {}
    problems: list[str] = []
    for i, s in enumerate(spans):
        for key in ("spanID", "startTime", "duration"):
            if not isinstance(s, Mapping) or key not in s:
                problems.append(f"span {i}: missing {key!r}")
        if isinstance(s, Mapping) and not all(
            isinstance(s.get(k), int | float) and not isinstance(s.get(k), bool)
            for k in ("startTime", "duration")
        ):
            problems.append(f"span {i} ({s.get('spanID')!r}): startTime and duration must be numbers (µs)")
    if problems:
        raise InvalidData("\n".join(dict.fromkeys(problems)))
    by_id = {s["spanID"]: s for s in spans}
    parent = {s["spanID"]: _parent(s, by_id) for s in spans}
    t0 = min((s["startTime"] for s in spans), default=0)
    rows = []
    for s in spans:
        tags = {str(t.get("key")): t.get("value") for t in s.get("tags") or [] if isinstance(t, Mapping)}
        rows.append(
            SpanRow(
                span_id=s["spanID"],
                parent_id=parent[s["spanID"]],
                service=_service(s, processes),
                operation=str(s.get("operationName", "")),
                start_ms=(s["startTime"] - t0) / 1000.0,
                duration_ms=s["duration"] / 1000.0,
                depth=_depth(s["spanID"], parent),
                error=_is_error(tags),
                tags=tags,
            )
        )
    return sorted(rows, key=lambda r: (r.start_ms, r.depth, r.span_id))


def trace_waterfall(trace_or_response: Mapping[str, Any], trace_index: int = 0) -> go.Figure:
    """Gantt of one trace: a bar per span from its start for its duration, red when it failed.

    ``trace_or_response`` is a Jaeger query response (``trace_index`` picks the trace) or one trace.

    Example::

        fig = trace_waterfall(response)
        fig.layout.yaxis.ticktext[1]
        # '   ↳ customer: customer.tutorial.svc.cluster.local:8080/* (11.2 ms)'
    """
    trace = pick_trace(trace_or_response, trace_index)
    rows = span_rows(trace)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups["error" if r.error else r.service].append(i)
    fig = go.Figure()
    for name in sorted(groups, key=lambda g: (g == "error", min(groups[g]))):
        idx = groups[name]
        fig.add_trace(
            go.Bar(
                orientation="h",
                y=idx,
                x=[max(rows[i].duration_ms, 0.001) for i in idx],
                base=[rows[i].start_ms for i in idx],
                name=name if name == "error" else name.split(".", 1)[0],
                marker={"color": ERROR_RED if name == "error" else service_color(name)},
                customdata=[[rows[i].span_id, rows[i].depth] for i in idx],
                hovertext=[_hover(rows[i]) for i in idx],
                hoverinfo="text",
            )
        )
    total = max((r.start_ms + r.duration_ms for r in rows), default=0.0)
    trace_id = str(trace.get("traceID", ""))
    fig.update_layout(
        title=f"Trace {trace_id[:16]} · {len(rows)} spans · {total:.1f} ms",
        barmode="overlay",
        uirevision=UIREVISION,
        height=140 + 30 * max(len(rows), 1),
        xaxis={"title": "ms since the trace started", "rangemode": "tozero"},
        yaxis={
            "tickmode": "array",
            "tickvals": list(range(len(rows))),
            "ticktext": [r.label for r in rows],
            "autorange": "reversed",
            "automargin": True,
        },
        legend={"title": "service"},
    )
    return fig


def _parent(span: Mapping[str, Any], by_id: Mapping[str, Any]) -> str:
    for ref in span.get("references") or []:
        if ref.get("refType", "CHILD_OF") in ("CHILD_OF", "FOLLOWS_FROM") and ref.get("spanID") in by_id:
            return str(ref["spanID"])
    return ""  # a root, or a parent this response does not hold


def _depth(span_id: str, parent: Mapping[str, str]) -> int:
    depth, seen = 0, {span_id}
    while parent.get(span_id):
        span_id = parent[span_id]
        if span_id in seen:  # a reference cycle in bad data: stop rather than loop forever
            break
        seen.add(span_id)
        depth += 1
    return depth


def _service(span: Mapping[str, Any], processes: Mapping[str, Any]) -> str:
    proc = processes.get(span.get("processID", "")) or span.get("process") or {}
    return str(proc.get("serviceName") or span.get("processID") or "unknown")


def _is_error(tags: Mapping[str, Any]) -> bool:
    if tags.get("error") in (True, "true", "True"):
        return True
    code = tags.get("http.status_code")
    try:
        return code is not None and int(code) >= 500
    except (TypeError, ValueError):
        return False


def _hover(r: SpanRow) -> str:
    lines = [
        f"<b>{r.service}</b>",
        r.operation,
        f"start +{r.start_ms:.1f} ms, duration {r.duration_ms:.1f} ms",
    ]
    for key in ("http.status_code", "response_flags", "upstream_cluster", "error"):
        if key in r.tags:
            lines.append(f"{key}: {r.tags[key]}")
    lines.append(f"span {r.span_id}" + (f" ← {r.parent_id}" if r.parent_id else " (root)"))
    return "<br>".join(lines)
