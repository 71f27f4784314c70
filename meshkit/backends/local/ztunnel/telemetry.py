"""ztunnel's telemetry: the ``istio_tcp_*`` counters with their labels and the access log lines.

ztunnel's rules, as its source has them: a connection is counted opened (``response_flags="-"``) once
it has enough context, and closed with its final flag; a failure flag (``CONNECT``, ``DENY``,
``TLS_FAILURE``, ``H2_HANDSHAKE_FAILURE``, ``NETWORK_POLICY``, ``IDENTITY_ERROR``) also counts
``istio_tcp_connections_failed_total``. Bytes count as Envoy's do at both reporters: received is what the
client sent, sent is what came back (so the source's metric is the flip of its log line, whose
``bytes_sent`` is what the source sent). ``istio_tcp_sockets_open`` counts accepted sockets per
reporter. A connection refused before ztunnel knows enough about it logs one ``connection failed``
line and counts nothing.

Example::

    t = ZtunnelTelemetry()
    c = Connection("outbound", src, dst, "mutual_tls")
    t.opened(c)
    t.flow(c, sent=80, received=175)
    t.closed(c, 80, 175)     # istio_tcp_connections_closed_total{reporter="source",...} 1
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

LABELS = (
    "reporter", "source_workload", "source_canonical_service", "source_canonical_revision",
    "source_workload_namespace", "source_principal", "source_app", "source_version", "source_cluster",
    "destination_service", "destination_service_namespace", "destination_service_name",
    "destination_workload", "destination_canonical_service", "destination_canonical_revision",
    "destination_workload_namespace", "destination_principal", "destination_app", "destination_version",
    "destination_cluster", "request_protocol", "response_flags", "connection_security_policy",
)
COUNTERS = ("istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total",
            "istio_tcp_connections_failed_total", "istio_tcp_received_bytes_total", "istio_tcp_sent_bytes_total")
SOCKETS = "istio_tcp_sockets_open"
FAILURE_FLAGS = frozenset({"CONNECT", "DENY", "TLS_FAILURE", "H2_HANDSHAKE_FAILURE", "NETWORK_POLICY",
                           "IDENTITY_ERROR"})
POLICY_CHANGE = "connection closed due to policy change"
HISTORY_S = 3600  # seconds of per-second increments kept for windowed rates (the service graph)
CLUSTER = "Kubernetes"


@dataclass
class Side:
    """One end of a connection as ztunnel knows it (a workload, or an address outside the mesh)."""

    addr: str
    workload: str = ""
    namespace: str = ""
    identity: str = ""
    app: str = ""
    version: str = ""
    service: str = ""  # destination only: the Service's FQDN
    pod: str = ""  # the log names the pod (ztunnel's workload name); the metrics its workload


@dataclass
class Connection:
    direction: str  # outbound (reported by the source's ztunnel) | inbound (the destination's)
    src: Side
    dst: Side
    security: str = "mutual_tls"  # | unknown
    hbone_addr: str = ""
    opened: float = field(default_factory=time.monotonic)
    original_dst: str = ""  # outbound: the address dialed; inbound: the Service asked for
    actual_dst: str = ""  # inbound: the pod address served (outbound: dst.addr)


def _u(value: str) -> str:
    return value or "unknown"


class ZtunnelTelemetry:
    def __init__(self, log_capacity: int = 2000) -> None:
        self.counters: dict[tuple[str, tuple[str, ...]], int] = {}
        self.sockets: dict[str, int] = {"source": 0, "destination": 0}
        self.open: dict[int, Connection] = {}  # opened and not yet closed: ``ztunnel-config connections``
        # what Prometheus would have scraped: counter increments per second, for rates over a window
        self.history: deque[tuple[int, dict[tuple[str, tuple[str, ...]], int]]] = deque(maxlen=HISTORY_S)
        self.log: deque[str] = deque(maxlen=log_capacity)
        self.logged = 0

    def labels(self, c: Connection, flags: str) -> tuple[str, ...]:
        s, d = c.src, c.dst
        svc_name, _, rest = d.service.partition(".")
        return (
            "source" if c.direction == "outbound" else "destination",
            _u(s.workload), _u(s.app or s.workload), _u(s.version or ("latest" if s.workload else "")),
            _u(s.namespace), _u(s.identity), _u(s.app), _u(s.version), CLUSTER if s.workload else "unknown",
            _u(d.service), _u(rest.partition(".")[0] if d.service else ""), _u(svc_name if d.service else ""),
            _u(d.workload), _u(d.app or d.workload), _u(d.version or ("latest" if d.workload else "")),
            _u(d.namespace), _u(d.identity), _u(d.app), _u(d.version), CLUSTER if d.workload else "unknown",
            "tcp", flags, c.security,
        )

    def opened(self, c: Connection) -> None:
        """The connection is known well enough to report: counted with ``response_flags="-"``."""
        self._add("istio_tcp_connections_opened_total", self.labels(c, "-"), 1)
        self.open[id(c)] = c

    def closed(self, c: Connection, sent: int, received: int, flags: str = "-", error: str = "") -> None:
        """Count the connection's end (and its failure) and write its ``connection complete`` line.
        ``sent``/``received`` are the log's: from the reporting side's point of view."""
        self.open.pop(id(c), None)
        key = self.labels(c, flags)
        self._add("istio_tcp_connections_closed_total", key, 1)
        if flags in FAILURE_FLAGS:
            self._add("istio_tcp_connections_failed_total", key, 1)
        self.access(c, sent, received, error)

    def socket(self, reporter: str, delta: int) -> None:
        """An accepted socket (+1) or its end (-1): the ``istio_tcp_sockets_open`` gauge."""
        self.sockets[reporter] = self.sockets.get(reporter, 0) + delta

    def flow(self, c: Connection, sent: int = 0, received: int = 0) -> None:
        """Bytes as they pass (ztunnel counts them live), ``sent``/``received`` from the reporting side:
        the source's request bytes are its received bytes in the metric, as Envoy counts them."""
        key = self.labels(c, "-")
        request, response = (sent, received) if c.direction == "outbound" else (received, sent)
        if request:
            self._add("istio_tcp_received_bytes_total", key, request)
        if response:
            self._add("istio_tcp_sent_bytes_total", key, response)

    def _add(self, name: str, key: tuple[str, ...], n: int) -> None:
        self.counters[(name, key)] = self.counters.get((name, key), 0) + n
        second = int(time.time())
        if not self.history or self.history[-1][0] != second:
            self.history.append((second, {}))
        bucket = self.history[-1][1]
        bucket[(name, key)] = bucket.get((name, key), 0) + n

    def increase(self, since: float, until: float) -> list[dict[str, Any]]:
        """Each series' increase over ``(since, until]`` (whole seconds), as Prometheus' ``increase()``
        would give it: ``{"metric": name, "labels": {...}, "value": n}``, for the service graph.

        >>> ZtunnelTelemetry().increase(0, time.time())
        []
        """
        total: dict[tuple[str, tuple[str, ...]], int] = {}
        for second, bucket in self.history:
            if since < second + 1 and second <= until:
                for k, n in bucket.items():
                    total[k] = total.get(k, 0) + n
        return [{"metric": name, "labels": dict(zip(LABELS, key, strict=True)), "value": n}
                for (name, key), n in sorted(total.items())]

    def access(self, c: Connection, sent: int, received: int, error: str = "") -> None:
        """``<time>\\t<level>\\taccess\\tconnection complete\\t<fields>``, ztunnel's layout and order."""
        ms = int((time.monotonic() - c.opened) * 1000)
        fields: list[tuple[str, Any, bool]] = [("src.addr", c.src.addr, False)]
        if c.src.pod or c.src.workload:
            fields.append(("src.workload", c.src.pod or c.src.workload, True))
        if c.src.namespace:
            fields.append(("src.namespace", c.src.namespace, True))
        if c.src.identity and c.security == "mutual_tls":
            fields.append(("src.identity", c.src.identity, True))
        fields.append(("dst.addr", c.dst.addr, False))
        if c.hbone_addr:
            fields.append(("dst.hbone_addr", c.hbone_addr, True))
        if c.dst.service:
            fields.append(("dst.service", c.dst.service, True))
        if c.dst.pod or c.dst.workload:
            fields.append(("dst.workload", c.dst.pod or c.dst.workload, True))
        if c.dst.namespace:
            fields.append(("dst.namespace", c.dst.namespace, True))
        if c.dst.identity and c.security == "mutual_tls":
            fields.append(("dst.identity", c.dst.identity, True))
        fields += [("direction", c.direction, True), ("bytes_sent", sent, False), ("bytes_recv", received, False),
                   ("duration", f"{ms}ms", True)]
        if error:
            fields.append(("error", error, True))
        self.event("error" if error else "info", "connection complete", fields)

    def failed(self, src_addr: str, dst_addr: str, direction: str, error: str) -> None:
        """ztunnel's early deny: refused before it knew enough to report, one ``warn`` line, no metric."""
        self.event("warn", "connection failed", [("src.addr", src_addr, False), ("dst.addr", dst_addr, False),
                                                 ("direction", direction, True), ("error", error, True)])

    def event(self, level: str, message: str, fields: list[tuple[str, Any, bool]]) -> None:
        text = " ".join(f'{k}="{v}"' if quoted else f"{k}={v}" for k, v, quoted in fields)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.write(f"{stamp}\t{level}\taccess\t{message}\t{text}")

    def write(self, line: str) -> None:
        self.log.append(line)
        self.logged += 1

    def exposition(self) -> str:
        out: list[str] = []
        for name in COUNTERS:
            rows = [(key, n) for (metric, key), n in self.counters.items() if metric == name]
            if not rows:
                continue
            out.append(f"# TYPE {name} counter")
            for key, n in sorted(rows):
                labels = ",".join(f'{k}="{v}"' for k, v in zip(LABELS, key, strict=True))
                out.append(f"{name}{{{labels}}} {n}")
        out.append(f"# TYPE {SOCKETS} gauge")
        for reporter, n in sorted(self.sockets.items()):
            out.append(f'{SOCKETS}{{reporter="{reporter}"}} {n}')
        return "".join(f"{line}\n" for line in out)
