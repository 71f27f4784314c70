"""What the dashboard shows, read from a :class:`~meshkit.Mesh`: the service graph, per-service traffic,
recent traces and proxy status, as plain data (the JSON routes) and as escaped HTML (the page).

Every string that came from telemetry (paths, user agents, hosts, pod names) passes ``html.escape``
before it is put in the page, and the page carries no script at all: a hostile request header that
ends up in a trace is shown as text.

Example::

    data = snapshot(mesh, window_s=60)
    html = render(data)
"""

from __future__ import annotations

import html
import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from meshkit.mesh import Mesh
from meshkit.telemetry.graph import graph as build_graph
from meshkit.telemetry.graph import node_label
from meshkit.telemetry.queries import short_service

SECTIONS = ("graph", "services", "traces", "proxies")


def _p(values: Sequence[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * pct / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def services(records: Sequence[Mapping[str, Any]], window_s: float, now: float) -> list[dict[str, Any]]:
    """Requests, rate, 5xx share and latency per destination service over the window.

    Traffic is the callers' view (``reporter="source"``, plus server reports of callers outside the
    mesh), latency the servers' (their reports' durations), as the service graph counts them.

    Example::

        services(mesh.settled_request_log(time.time() - 60), 60, time.time())
        # [{'service': 'customer', 'requests': 120, 'rps': 2.0, 'error_pct': 0.0, 'p50_ms': 4.1, ...}]
    """
    count: dict[str, int] = defaultdict(int)
    errors: dict[str, int] = defaultdict(int)
    durations: dict[str, list[float]] = defaultdict(list)
    since = now - window_s
    for rec in records:
        end = float(rec.get("start_time", 0.0)) + float(rec.get("duration_ms", 0.0)) / 1000.0
        if not since < end <= now:
            continue
        name = short_service(str(rec.get("destination_service", "unknown")))
        reporter = rec.get("reporter")
        if reporter == "source" or (reporter == "destination" and rec.get("source_workload") == "unknown"):
            count[name] += 1
            code = int(rec.get("response_code", 0) or 0)
            errors[name] += code >= 500 or code == 0
        if reporter == "destination":
            durations[name].append(float(rec.get("duration_ms", 0.0)))
    rows = []
    for name in sorted(set(count) | set(durations)):
        n = count.get(name, 0)
        rows.append({"service": name, "requests": n, "rps": round(n / window_s, 3),
                     "error_pct": round(100.0 * errors.get(name, 0) / n, 1) if n else 0.0,
                     "p50_ms": _round(_p(durations.get(name, []), 50)),
                     "p95_ms": _round(_p(durations.get(name, []), 95))})
    return rows


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _tags(span: Mapping[str, Any]) -> dict[str, str]:
    return {str(t.get("key")): str(t.get("value")) for t in span.get("tags", []) if isinstance(t, Mapping)}


def traces(answer: Mapping[str, Any], limit: int) -> list[dict[str, Any]]:
    """One row per trace of a Jaeger query answer: its root span's request, status and duration.

    Example::

        traces(mesh.traces(limit=10), 10)[0]["url"]     # 'http://localhost/customer'
    """
    rows: list[dict[str, Any]] = []
    for trace in list(answer.get("data") or [])[:limit]:
        spans = [s for s in trace.get("spans") or [] if isinstance(s, Mapping)]
        if not spans:
            continue
        ids = {s.get("spanID") for s in spans}
        root = min((s for s in spans if not s.get("parentSpanID") or s.get("parentSpanID") not in ids),
                   key=lambda s: s.get("startTime", 0), default=spans[0])
        processes = trace.get("processes") or {}
        names = sorted({str((processes.get(s.get("processID")) or {}).get("serviceName", "?")) for s in spans})
        tags = _tags(root)
        start = min(int(s.get("startTime", 0)) for s in spans)
        end = max(int(s.get("startTime", 0)) + int(s.get("duration", 0)) for s in spans)
        rows.append({"trace_id": str(trace.get("traceID", "")), "start": start / 1e6,
                     "duration_ms": (end - start) / 1e3,
                     "spans": len(spans), "services": names, "method": tags.get("http.method", ""),
                     "url": tags.get("http.url", ""), "status": tags.get("http.status_code", ""),
                     "flags": tags.get("response_flags", ""), "user_agent": tags.get("user_agent", "")})
    rows.sort(key=lambda r: r["start"], reverse=True)
    return rows


def proxies(mesh: Mesh) -> list[dict[str, Any]] | str:
    """``istioctl proxy-status`` rows (a real cluster: the real istioctl's text)."""
    status = mesh.proxy_status()
    if isinstance(status, str):
        return status
    rows: list[dict[str, Any]] = [dict(r) for r in status]
    return rows


def snapshot(mesh: Mesh, window_s: float = 60.0, limit: int = 10, sections: Sequence[str] = SECTIONS,
             now: float | None = None) -> dict[str, Any]:
    """Everything the page shows, read once: ``{"window_s", "time", "graph", "services", "traces", "proxies"}``.

    One telemetry read serves the graph and the per-service table, so both count the same requests.

    Example::

        snapshot(mesh, window_s=30)["services"]
    """
    now = time.time() if now is None else now
    out: dict[str, Any] = {"window_s": window_s, "time": now}
    if "graph" in sections or "services" in sections:
        records = mesh.settled_request_log(now - window_s)
        if "graph" in sections:
            out["graph"] = build_graph(records, window_s, now=now)
        if "services" in sections:
            out["services"] = services(records, window_s, now)
    if "traces" in sections:
        out["traces"] = traces(mesh.traces(limit=limit), limit)
    if "proxies" in sections:
        out["proxies"] = proxies(mesh)
    return out


# -- HTML --------------------------------------------------------------------------------------------------
def e(value: Any) -> str:
    """Escaped text for HTML content and quoted attributes. ``e('<b a="1">')`` → ``&lt;b a=&quot;1&quot;&gt;``."""
    return html.escape("" if value is None else str(value), quote=True)


STYLE = """
body{font:14px system-ui,sans-serif;margin:1rem 1.5rem;color:#1b1b1b}
h1{font-size:1.3rem}h2{font-size:1.05rem;margin-top:1.6rem}
table{border-collapse:collapse}td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}.bad{color:#b2182b;font-weight:600}
.muted{color:#666}pre{background:#f6f6f6;padding:.5rem;overflow:auto}
svg text{font:12px system-ui,sans-serif}
"""


def _table(headers: Sequence[str], rows: Sequence[Sequence[tuple[str, str]]]) -> str:
    """``rows`` of (text, css class) cells, every text escaped here."""
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="{e(cls)}">{e(text)}</td>' for text, cls in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num(value: float | None, fmt: str = "{:.1f}") -> tuple[str, str]:
    return ("-" if value is None else fmt.format(value), "n")


def depths(g: Mapping[str, Any]) -> dict[str, int]:
    """Each node's call depth: 0 for nodes nothing calls (the gateway), then one more per hop."""
    nodes = [n["data"]["id"] for n in g["elements"]["nodes"]]
    edges = [edge["data"] for edge in g["elements"]["edges"]]
    targets = {d["target"] for d in edges}
    depth = {n: 0 for n in nodes if n not in targets}
    for _ in range(len(nodes)):
        for d in edges:
            if d["source"] in depth and depth.get(d["target"], -1) < depth[d["source"]] + 1 <= len(nodes):
                depth[d["target"]] = depth[d["source"]] + 1
    return {n: depth.get(n, 0) for n in nodes}


def graph_svg(g: Mapping[str, Any]) -> str:
    """The graph drawn in columns by call depth (the gateway left); labels escaped."""
    nodes = {n["data"]["id"]: n["data"] for n in g["elements"]["nodes"]}
    edges = [edge["data"] for edge in g["elements"]["edges"]]
    if not nodes:
        return ""
    depth = depths(g)
    columns: dict[int, list[str]] = defaultdict(list)
    for n in sorted(nodes):
        columns[depth[n]].append(n)
    col_w, row_h = 190, 46
    pos = {n: (20 + c * col_w, 30 + i * row_h) for c, names in columns.items() for i, n in enumerate(names)}
    width = 40 + (max(columns) + 1) * col_w
    height = 40 + max(len(v) for v in columns.values()) * row_h
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="service graph">']
    for d in edges:
        (x1, y1), (x2, y2) = pos[d["source"]], pos[d["target"]]
        bad = d.get("errorRatio", 0) > 0
        colour = "#b2182b" if bad else "#2166ac"
        parts.append(f'<line x1="{x1 + 150}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{colour}" stroke-width="1.5">'
                     f'<title>{float(d.get("rate", 0)):.2f} rps, {100 * float(d.get("errorRatio", 0)):.1f} % 5xx'
                     '</title></line>')
    for n, (x, y) in pos.items():
        shape = "rhombus" if nodes[n].get("nodeType") == "service" else "box"
        rx = 12 if shape == "rhombus" else 3
        parts.append(f'<rect x="{x}" y="{y - 13}" width="150" height="26" rx="{rx}" fill="#f3f6fa" stroke="#555"/>'
                     f'<text x="{x + 8}" y="{y + 4}">{e(node_label(nodes[n])[:22])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render(data: Mapping[str, Any], home: str = "", error: str = "", query: str = "") -> str:
    """The whole page; it refreshes itself every 5 s with a meta tag (no script).

    ``query`` (``token=...`` on TCP) is added to the page's own links and to its refresh.
    """
    window = data.get("window_s", 60)
    q = "?" + "&".join(p for p in (f"window={window:g}" if window != 60 else "", query) if p)
    q = "" if q == "?" else q
    out = ['<!doctype html><html lang="en"><head><meta charset="utf-8">',
           f'<meta http-equiv="refresh" content="5; url=./{e(q)}">', '<link rel="icon" href="data:,">',
           "<title>Mesh dashboard</title>",
           f"<style>{STYLE}</style></head><body>",
           f'<h1>Mesh dashboard <span class="muted">last {e(f"{window:g}")} s, refreshed every 5 s</span></h1>']
    if home:
        api = " ".join(f'<a href="api/{s}{e(q)}">{s}</a>' for s in SECTIONS)
        out.append(f'<p class="muted">mesh {e(home)} · read-only · JSON: {api}</p>')
    if error:
        out.append(f'<p class="bad">{e(error)}</p></body></html>')
        return "".join(out)
    g = data.get("graph")
    if g is not None:
        out.append("<h2>Service graph</h2>")
        edges = g["elements"]["edges"]
        if not edges:
            out.append(f'<p class="muted">no requests in the last {e(window)} s</p>')
        else:
            nodes = {n["data"]["id"]: n["data"] for n in g["elements"]["nodes"]}
            order = depths(g)
            out.append(graph_svg(g))
            out.append(_table(
                ["source", "target", "rps", "5xx %", "p95 ms", "mTLS %", "codes", "flags"],
                [[(node_label(nodes[d["source"]]), ""), (node_label(nodes[d["target"]]), ""), _num(d["rate"], "{:.2f}"),
                  (f"{100 * d['errorRatio']:.1f}", "n bad" if d["errorRatio"] else "n"), _num(d["p95Ms"]),
                  _num(None if d["mtlsShare"] is None else 100 * d["mtlsShare"], "{:.0f}"),
                  (" ".join(f"{k}:{v}" for k, v in sorted(d["codes"].items())), ""),
                  (" ".join(f"{k}:{v}" for k, v in sorted(d["flags"].items())) or "-", "")]
                 for d in sorted((edge["data"] for edge in edges),
                                 key=lambda d: (order[d["source"]], d["source"], d["target"]))]))
    rows = data.get("services")
    if rows is not None:
        out.append("<h2>Requests per service</h2>")
        out.append(_table(["service", "requests", "rps", "5xx %", "p50 ms", "p95 ms"], [
            [(r["service"], ""), (str(r["requests"]), "n"), _num(r["rps"], "{:.2f}"),
             (f"{r['error_pct']:.1f}", "n bad" if r["error_pct"] else "n"), _num(r["p50_ms"]), _num(r["p95_ms"])]
            for r in rows]) if rows else f'<p class="muted">no requests in the last {e(window)} s</p>')
    trace_rows = data.get("traces")
    if trace_rows is not None:
        out.append("<h2>Recent traces</h2>")
        out.append(_table(["time", "trace", "request", "status", "flags", "ms", "spans", "services", "user agent"], [
            [(time.strftime("%H:%M:%S", time.localtime(t["start"])), ""), (t["trace_id"][:16], ""),
             (f"{t['method']} {t['url']}", ""), (t["status"], "bad" if t["status"].startswith("5") else ""),
             (t["flags"], ""), _num(t["duration_ms"]), (str(t["spans"]), "n"), (", ".join(t["services"]), ""),
             (t["user_agent"], "")] for t in trace_rows]) if trace_rows else '<p class="muted">no traces yet</p>')
    status = data.get("proxies")
    if status is not None:
        out.append("<h2>Proxy status</h2>")
        if isinstance(status, str):
            out.append(f"<pre>{e(status)}</pre>")
        elif status:
            headers = list(status[0])
            out.append(_table(headers, [[(str(r.get(h, "")), "bad" if r.get(h) in ("STALE", "NOT SENT") else "")
                                         for h in headers] for r in status]))
        else:
            out.append('<p class="muted">no proxies</p>')
    out.append("</body></html>")
    return "".join(out)
