"""The service graph, derived from per-request telemetry as Kiali derives its versionedApp graph.

Nodes are app versions (``customer v1``), the services between them (Kiali's injected service nodes)
and ``unknown`` for callers outside the mesh; the ingress gateway is an app node marked ``isRoot``.
An edge runs from a caller's app node to the service it called, and from the service to each version
that answered.

Which proxy's view is used, and why:

* **traffic** (rate, response codes, error ratio, flags) comes from ``reporter="source"`` records:
  only the caller's proxy sees requests that never reached a server (``UO``, ``NR``, ``FI``, ``URX``,
  ``NC``), and the gateway only reports as a source. Each request is thus counted once per edge.
* **mTLS and latency** come from ``reporter="destination"`` records: only the server's proxy knows
  whether the connection was mutual TLS (a source reports ``unknown``), and its duration is the
  server's response time, as Kiali's responseTime appender reads it. An edge whose requests never
  reached a server (a ServiceEntry host, a circuit breaker) falls back to the caller's durations.
* requests whose caller has no sidecar (``source_workload="unknown"`` on the destination report)
  have no source report, so they come from the destination report with an ``unknown`` source node.
* **TCP edges** (ambient pods, whose only proxy is ztunnel) come from ztunnel's ``istio_tcp_*`` series
  over the window, as Kiali reads them from Prometheus: connections opened, bytes both ways, close
  flags from the source reporter (the destination's when the caller is outside the mesh), mTLS from
  the destination reporter. They carry ``protocol: "tcp"`` and Kiali's ``rates: {"tcp": bytes/s}``, and
  are separate from any HTTP edge between the same nodes.
* requests between ambient pods through a waypoint are seen by the waypoint alone
  (``reporter="waypoint"``): its report gives both the traffic and the server view of their edges.

Example::

    g = graph(records, window_s=60)
    print(format_graph(g))
    [e["data"]["errorRatio"] for e in g["elements"]["edges"]]
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshkit.telemetry.queries import GATEWAY_WORKLOADS, service_namespace, workload_namespace
from meshkit.telemetry.record import UNKNOWN, RequestRecord

UNKNOWN_NODE = "unknown"


@dataclass
class _Edge:
    count: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    flags: Counter[str] = field(default_factory=Counter)
    hosts: Counter[str] = field(default_factory=Counter)
    code_flags: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    source_durations: list[float] = field(default_factory=list)
    dest_durations: list[float] = field(default_factory=list)
    dest_count: int = 0
    mtls: int = 0

    def add_traffic(self, rec: Mapping[str, Any]) -> None:
        code = str(rec.get("response_code", 0))
        flags = str(rec.get("response_flags", "-"))
        self.count += 1
        self.codes[code] += 1
        self.code_flags[code][flags] += 1
        self.hosts[str(rec.get("destination_service", UNKNOWN))] += 1
        for flag in flags.split(","):
            if flag != "-":
                self.flags[flag] += 1
        self.source_durations.append(float(rec.get("duration_ms", 0.0)))

    def add_server_view(self, rec: Mapping[str, Any]) -> None:
        self.dest_count += 1
        self.dest_durations.append(float(rec.get("duration_ms", 0.0)))
        if rec.get("connection_security_policy") == "mutual_tls":
            self.mtls += 1


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * 0.95
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}" if whole else "0.0"


TCP_FAILURES = frozenset({"CONNECT", "DENY", "TLS_FAILURE", "H2_HANDSHAKE_FAILURE", "NETWORK_POLICY",
                          "IDENTITY_ERROR"})


@dataclass
class _TcpEdge:
    opened: int = 0
    closed: int = 0
    failed: int = 0
    bytes: int = 0
    flags: Counter[str] = field(default_factory=Counter)
    hosts: Counter[str] = field(default_factory=Counter)
    dest_opened: int = 0
    mtls: int = 0

    def add(self, metric: str, labels: Mapping[str, str], value: float) -> None:
        n = int(value)
        if metric in ("istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total"):
            self.bytes += n
        elif metric == "istio_tcp_connections_opened_total":
            self.opened += n
            self.hosts[str(labels.get("destination_service", UNKNOWN))] += n
        elif metric == "istio_tcp_connections_closed_total":
            self.closed += n
            flag = str(labels.get("response_flags", "-"))
            self.flags[flag] += n
            if flag in TCP_FAILURES:
                self.failed += n


class _Builder:
    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: dict[tuple[str, str], _Edge] = defaultdict(_Edge)
        self.tcp: dict[tuple[str, str], _TcpEdge] = defaultdict(_TcpEdge)

    def add_tcp_series(self, row: Mapping[str, Any]) -> None:
        """One ztunnel series' increase: its caller → service → workload edges, as Kiali draws TCP."""
        labels: Mapping[str, str] = row.get("labels") or {}
        rec = {**labels, "namespace": labels.get("destination_service_namespace") or "tutorial"}
        caller, callee = self.app_node(rec, "source"), self.app_node(rec, "destination")
        hops = [(caller, callee)]
        if labels.get("destination_service", UNKNOWN) != UNKNOWN:
            svc = self.service_node(rec)
            hops = [(caller, svc), (svc, callee)] if callee != UNKNOWN_NODE else [(caller, svc)]
        metric, value = str(row.get("metric")), float(row.get("value") or 0)
        traffic = labels.get("reporter") == "source" or caller == UNKNOWN_NODE
        for hop in hops:
            if traffic:
                self.tcp[hop].add(metric, labels, value)
            if labels.get("reporter") == "destination" and metric == "istio_tcp_connections_opened_total":
                self.tcp[hop].dest_opened += int(value)
                if labels.get("connection_security_policy") == "mutual_tls":
                    self.tcp[hop].mtls += int(value)

    def app_node(self, rec: Mapping[str, Any], side: str) -> str:
        workload = str(rec.get(f"{side}_workload", UNKNOWN))
        if workload == UNKNOWN:
            return self.unknown_node()
        app = str(rec.get(f"{side}_app", UNKNOWN))
        version = str(rec.get(f"{side}_version", UNKNOWN))
        ns = workload_namespace(workload, str(rec.get(f"{side}_principal", UNKNOWN)), rec.get("namespace", "tutorial"))
        node_id = f"{ns}/{app}/{version}"
        if node_id not in self.nodes:
            data: dict[str, Any] = {
                "id": node_id,
                "nodeType": "app",
                "namespace": ns,
                "app": app,
                "version": version,
                "workload": workload,
            }
            if workload in GATEWAY_WORKLOADS:
                data.update(isGateway=True, isRoot=True)
            self.nodes[node_id] = data
        return node_id

    def service_node(self, rec: Mapping[str, Any]) -> str:
        name = str(rec.get("destination_service_name", UNKNOWN))
        ns = service_namespace(str(rec.get("destination_service", UNKNOWN)), rec.get("namespace", "tutorial"))
        node_id = f"{ns}/svc/{name}"
        self.nodes.setdefault(
            node_id, {"id": node_id, "nodeType": "service", "namespace": ns, "service": name, "app": name}
        )
        return node_id

    def unknown_node(self) -> str:
        self.nodes.setdefault(
            UNKNOWN_NODE, {"id": UNKNOWN_NODE, "nodeType": "unknown", "namespace": UNKNOWN, "isRoot": True}
        )
        return UNKNOWN_NODE

    def add_source_report(self, rec: Mapping[str, Any]) -> None:
        caller, svc = self.app_node(rec, "source"), self.service_node(rec)
        self.edges[(caller, svc)].add_traffic(rec)
        if rec.get("destination_workload", UNKNOWN) != UNKNOWN:
            self.edges[(svc, self.app_node(rec, "destination"))].add_traffic(rec)

    def add_destination_report(self, rec: Mapping[str, Any]) -> None:
        caller, svc = self.app_node(rec, "source"), self.service_node(rec)
        callee = self.app_node(rec, "destination")
        if caller == UNKNOWN_NODE:  # no sidecar on the caller: this is the only report of the request
            self.edges[(caller, svc)].add_traffic(rec)
            self.edges[(svc, callee)].add_traffic(rec)
        self.edges[(caller, svc)].add_server_view(rec)
        self.edges[(svc, callee)].add_server_view(rec)


    def add_waypoint_report(self, rec: Mapping[str, Any]) -> None:
        """A waypoint's report: the one HTTP view of a request between ambient pods (their callers have
        no sidecar), so it carries the traffic and, as it ends the client's mTLS, the server view too."""
        caller, svc = self.app_node(rec, "source"), self.service_node(rec)
        self.edges[(caller, svc)].add_traffic(rec)
        self.edges[(caller, svc)].add_server_view(rec)
        if rec.get("destination_workload", UNKNOWN) != UNKNOWN:
            callee = self.app_node(rec, "destination")
            self.edges[(svc, callee)].add_traffic(rec)
            self.edges[(svc, callee)].add_server_view(rec)


def _edge_data(source: str, target: str, edge: _Edge, window_s: float, out_of_source: int) -> dict[str, Any]:
    errors = sum(n for code, n in edge.codes.items() if code.startswith("5"))
    p95 = _p95(edge.dest_durations or edge.source_durations)
    mtls = edge.mtls / edge.dest_count if edge.dest_count else None
    rate = edge.count / window_s
    data: dict[str, Any] = {
        "id": f"{source}->{target}",
        "source": source,
        "target": target,
        "protocol": "http",
        "count": edge.count,
        "rate": rate,
        "errorRatio": errors / edge.count if edge.count else 0.0,
        "codes": dict(sorted(edge.codes.items())),
        "flags": dict(sorted(edge.flags.items())),
        "p95Ms": p95,
        "mtlsShare": mtls,
        # Kiali's own fields, with Kiali's string formatting
        "traffic": {
            "protocol": "http",
            "rates": {
                "http": f"{rate:.2f}",
                "httpPercentReq": _pct(edge.count, out_of_source),
                "http4xx": f"{sum(n for c, n in edge.codes.items() if c.startswith('4')) / window_s:.2f}",
                "http5xx": f"{errors / window_s:.2f}",
                "httpPercentErr": _pct(errors, edge.count),
            },
            "responses": {
                code: {
                    "flags": {f: _pct(n, edge.codes[code]) for f, n in sorted(flags.items())},
                    "hosts": {h: _pct(n, edge.count) for h, n in sorted(edge.hosts.items())},
                }
                for code, flags in sorted(edge.code_flags.items())
            },
        },
    }
    if p95 is not None:
        data["responseTime"] = f"{p95:.1f}"
    if mtls:
        data["isMTLS"] = f"{100 * mtls:.0f}"
    return data


def _tcp_edge_data(source: str, target: str, edge: _TcpEdge, window_s: float) -> dict[str, Any]:
    mtls = edge.mtls / edge.dest_opened if edge.dest_opened else None
    data: dict[str, Any] = {
        "id": f"{source}->{target}:tcp",
        "source": source,
        "target": target,
        "protocol": "tcp",
        "count": edge.opened,
        "rate": edge.opened / window_s,  # connections per second
        "bytes": edge.bytes,
        "bytesRate": edge.bytes / window_s,
        "errorRatio": edge.failed / edge.closed if edge.closed else 0.0,
        "codes": {},
        "flags": {f: n for f, n in sorted(edge.flags.items()) if f != "-"},
        "p95Ms": None,
        "mtlsShare": mtls,
        "traffic": {
            "protocol": "tcp",
            "rates": {"tcp": f"{edge.bytes / window_s:.2f}"},
            "responses": {"-": {
                "flags": {f: _pct(n, edge.closed) for f, n in sorted(edge.flags.items())},
                "hosts": {h: _pct(n, edge.opened) for h, n in sorted(edge.hosts.items())},
            }},
        },
    }
    if mtls:
        data["isMTLS"] = f"{100 * mtls:.0f}"
    return data


def graph(
    records: Iterable[Mapping[str, Any] | RequestRecord], window_s: float, now: float | None = None,
    tcp: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The versionedApp service graph of the requests that completed in the last ``window_s`` seconds.

    Returns Kiali's cytoscape shape: ``{"elements": {"nodes": [{"data"}], "edges": [{"data"}]},
    "timestamp", "duration", "graphType": "versionedApp"}``. Edge ``data`` has the numeric fields
    ``count``, ``rate`` (rps), ``errorRatio`` (5xx share), ``codes``, ``flags``, ``p95Ms``,
    ``mtlsShare`` and Kiali's string fields ``traffic``, ``responseTime``, ``isMTLS``. ``tcp`` is ztunnel's
    ``istio_tcp_*`` series' increase over the same window (``{"metric", "labels", "value"}``): each makes
    a TCP edge (``protocol: "tcp"``, ``count`` connections, ``bytes``, ``bytesRate``).

    Example::

        g = graph(collector.records(since=time.time() - 60), window_s=60)
    """
    if window_s <= 0:
        raise ValueError(f"window_s must be > 0, got {window_s}")
    until = time.time() if now is None else now
    since = until - window_s
    builder = _Builder()
    for raw in records:
        rec = raw.to_dict() if isinstance(raw, RequestRecord) else raw
        end = float(rec.get("start_time", 0.0)) + float(rec.get("duration_ms", 0.0)) / 1000.0
        if not since < end <= until:
            continue
        if rec.get("reporter") == "source":
            builder.add_source_report(rec)
        elif rec.get("reporter") == "destination":
            builder.add_destination_report(rec)
        elif rec.get("reporter") == "waypoint":
            builder.add_waypoint_report(rec)
    for row in tcp:
        builder.add_tcp_series(row)
    out_of: Counter[str] = Counter()
    for (source, _), edge in builder.edges.items():
        out_of[source] += edge.count
    edges = [
        {"data": _edge_data(s, t, e, window_s, out_of[s])}
        for (s, t), e in sorted(builder.edges.items())
        if e.count  # a server view with no traffic report: its caller's report fell outside the window
    ]
    edges += [{"data": _tcp_edge_data(s, t, e, window_s)} for (s, t), e in sorted(builder.tcp.items())
              if e.opened or e.bytes]
    used = {e["data"]["source"] for e in edges} | {e["data"]["target"] for e in edges}
    nodes = [{"data": builder.nodes[n]} for n in sorted(builder.nodes) if n in used]
    return {
        "elements": {"nodes": nodes, "edges": edges},
        "timestamp": int(until),
        "duration": int(window_s),
        "graphType": "versionedApp",
    }


def node_label(data: Mapping[str, Any]) -> str:
    """``customer v1``, ``recommendation (svc)``, ``istio-ingressgateway`` or ``unknown``."""
    if data.get("nodeType") == "service":
        return f"{data.get('service')} (svc)"
    if data.get("nodeType") == "unknown":
        return UNKNOWN_NODE
    version = data.get("version", UNKNOWN)
    return str(data.get("app")) if version in (UNKNOWN, "", None) else f"{data.get('app')} {version}"


def format_graph(g: Mapping[str, Any]) -> str:
    """The graph as the table ``meshkit graph`` prints: one line per edge.

    Example::

        SOURCE                TARGET                 RPS   ERR%  P95ms  MTLS%  CODES           FLAGS
        istio-ingressgateway  customer (svc)        1.00    0.0   12.3      -  200:60          -
    """
    nodes = {n["data"]["id"]: n["data"] for n in g["elements"]["nodes"]}
    edges = g["elements"]["edges"]
    if not edges:
        return f"no requests in the last {g.get('duration', 0)}s"
    header = f"{'SOURCE':<24} {'TARGET':<26} {'RPS':>7} {'ERR%':>6} {'P95ms':>7} {'MTLS%':>6}  {'CODES':<20} FLAGS"
    lines = [header]
    for e in edges:
        d = e["data"]
        p95 = "-" if d["p95Ms"] is None else f"{d['p95Ms']:.1f}"
        mtls = "-" if d["mtlsShare"] is None else f"{100 * d['mtlsShare']:.0f}"
        codes = ",".join(f"{c}:{n}" for c, n in d["codes"].items())
        if d.get("protocol") == "tcp":  # an L4 edge: connections per second, and the bytes they carried
            codes = f"tcp {d['bytes']}B"
        flags = ",".join(f"{f}:{n}" for f, n in d["flags"].items()) or "-"
        lines.append(
            f"{node_label(nodes[d['source']]):<24} {node_label(nodes[d['target']]):<26} {d['rate']:>7.2f} "
            f"{100 * d['errorRatio']:>6.1f} {p95:>7} {mtls:>6}  {codes:<20} {flags}"
        )
    return "\n".join(lines)
