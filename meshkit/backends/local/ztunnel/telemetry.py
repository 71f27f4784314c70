"""ztunnel's telemetry: the ``istio_tcp_*`` counters with their labels and the access log lines.

Example::

    t = ZtunnelTelemetry()
    t.record(Connection("outbound", src, dst, "mutual_tls"), sent=80, received=175, flags="-")
    t.exposition()       # istio_tcp_connections_opened_total{reporter="source",...} 1
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
            "istio_tcp_received_bytes_total", "istio_tcp_sent_bytes_total")
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


@dataclass
class Connection:
    direction: str  # outbound (reported by the source's ztunnel) | inbound (the destination's)
    src: Side
    dst: Side
    security: str = "mutual_tls"  # | unknown
    hbone_addr: str = ""
    opened: float = field(default_factory=time.monotonic)


def _u(value: str) -> str:
    return value or "unknown"


class ZtunnelTelemetry:
    def __init__(self, log_capacity: int = 2000) -> None:
        self.counters: dict[tuple[str, tuple[str, ...]], int] = {}
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

    def opened(self, c: Connection, flags: str = "-") -> None:
        self._add("istio_tcp_connections_opened_total", self.labels(c, flags), 1)

    def closed(self, c: Connection, sent: int, received: int, flags: str = "-", error: str = "") -> None:
        """Count the connection's end and write its ``connection complete`` line."""
        self._add("istio_tcp_connections_closed_total", self.labels(c, flags), 1)
        self.access(c, sent, received, error)

    def flow(self, c: Connection, sent: int = 0, received: int = 0) -> None:
        """Bytes as they pass (ztunnel counts them live): from the reporting workload's side."""
        key = self.labels(c, "-")
        if received:
            self._add("istio_tcp_received_bytes_total", key, received)
        if sent:
            self._add("istio_tcp_sent_bytes_total", key, sent)

    def _add(self, name: str, key: tuple[str, ...], n: int) -> None:
        self.counters[(name, key)] = self.counters.get((name, key), 0) + n

    def access(self, c: Connection, sent: int, received: int, error: str = "") -> None:
        """``<time>\\t<level>\\taccess\\tconnection complete\\t<fields>``, ztunnel's layout."""
        ms = (time.monotonic() - c.opened) * 1000
        fields: list[tuple[str, Any, bool]] = [("src.addr", c.src.addr, False)]
        if c.src.workload:
            fields += [("src.workload", c.src.workload, True), ("src.namespace", c.src.namespace, True)]
        if c.src.identity and c.security == "mutual_tls":
            fields.append(("src.identity", c.src.identity, True))
        fields.append(("dst.addr", c.dst.addr, False))
        if c.hbone_addr:
            fields.append(("dst.hbone_addr", c.hbone_addr, True))
        if c.dst.service:
            fields.append(("dst.service", c.dst.service, True))
        if c.dst.workload:
            fields += [("dst.workload", c.dst.workload, True), ("dst.namespace", c.dst.namespace, True)]
        if c.dst.identity and c.security == "mutual_tls":
            fields.append(("dst.identity", c.dst.identity, True))
        fields += [("direction", c.direction, True), ("bytes_sent", sent, False), ("bytes_recv", received, False),
                   ("duration", f"{ms:.0f}ms", True)]
        if error:
            fields.append(("error", error, True))
        text = " ".join(f'{k}="{v}"' if quoted else f"{k}={v}" for k, v, quoted in fields)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.write(f"{stamp}\t{'error' if error else 'info'}\taccess\tconnection complete\t{text}")

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
        return "".join(f"{line}\n" for line in out)
