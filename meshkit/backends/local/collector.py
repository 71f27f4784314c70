"""The control plane's telemetry collector: recent request records and spans, in bounded memory.

Proxies send batches (``ingest``); the API, CLI and live plots read records (``records``,
``by_request_id``) and traces in Jaeger's query-API shape (``jaeger_traces``, ``jaeger_trace``,
``jaeger_services``), so code written against a real Jaeger reads the local mesh unchanged.

Everything is a ring buffer with a stated capacity, so a ten-minute load cannot grow the process:

* records: the last ``max_records`` (default 50,000; measured ~0.95 KB each, ~47 MB when full);
* spans: at most ``max_spans`` in total (default 50,000; measured ~0.8 KB each, ~41 MB when full) in at most
  ``max_traces`` traces (default 10,000) of at most ``max_spans_per_trace`` spans (default 1,000);
  the least recently updated trace is dropped first.

Example::

    collector = Collector()
    collector.ingest([rec.to_dict()], [finish_span(ctx, rec)])
    collector.jaeger_traces(service="customer", limit=20)["data"][0]["spans"]
"""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshkit.backends.local.proxy.tracing import GATEWAY_WORKLOADS, SpanContext, finish_span, jaeger_trace_id
from meshkit.errors import NotFound
from meshkit.telemetry.record import RequestRecord

_FIELDS = tuple(RequestRecord.__dataclass_fields__)
# fields whose values repeat across records: sharing one string object per value saves memory
_INTERNED = frozenset(
    f for f in _FIELDS if f.startswith(("source_", "destination_")) or f in {
        "proxy", "reporter", "method", "path", "protocol", "authority", "user_agent", "response_flags",
        "response_code_details", "upstream_cluster", "upstream_pod", "route_name", "namespace",
        "connection_security_policy", "rule",
    }
)  # fmt: skip
_TAG_CACHE_LIMIT = 20_000
_MAX_SERVICES = 1_000


@dataclass(slots=True)
class _Span:
    trace_id: str
    span_id: str
    parent_id: str
    operation: str
    start_us: int
    duration_us: int
    tags: tuple[tuple[str, str, Any], ...]
    service: str
    process_tags: tuple[tuple[str, str, Any], ...]
    flags: int


@dataclass(slots=True)
class _Trace:
    spans: list[_Span] = field(default_factory=list)
    span_ids: set[str] = field(default_factory=set)
    start_us: int = 0
    # records whose span is built only when someone asks for traces (most never are)
    pending: list[RequestRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Reporter:
    """The pod that shipped a batch (its bootstrap token checked) and the labels that are its own.

    A proxy reports as itself only: a ``reporter="source"`` row is about a request its pod sent, so
    its ``source_*`` side must be that pod's workload, app, version and SPIFFE principal; a
    ``reporter="destination"`` row is about a request its pod received, so its ``destination_*``
    side (service included) must be the pod's. The other side is the peer, which the proxy only
    heard about. A waypoint pod also reports ``reporter="waypoint"`` rows, which name the client and
    the service it stands in front of, never the waypoint: only a waypoint pod may send those. Rows
    from anyone else, or with another ``proxy`` or reporter, are refused.

    Example::

        me = Reporter.of("customer-v1-abc", "customer-v1", "customer", "v1",
                         "spiffe://cluster.local/ns/tutorial/sa/customer", "tutorial")
        me.refuses(RequestRecord(proxy="customer-v1-abc", reporter="source", source_workload="preference-v1"))
        # "reporter=source row with source_workload='preference-v1': the pod's is 'customer-v1'"
    """

    pod: str
    source: tuple[tuple[str, frozenset[str]], ...]  # (field, values) a source row may carry
    destination: tuple[tuple[str, frozenset[str]], ...]  # (field, values) a destination row may carry
    waypoint: bool = False  # the pod is a waypoint proxy (Gateway of class istio-waypoint)
    source_row: tuple[str, ...] = ()  # the source side's values in field order, for a one-step check

    @classmethod
    def of(cls, pod: str, workload: str, app: str, version: str, principal: str, namespace: str,
           waypoint: bool = False) -> Reporter:
        own = [("workload", workload), ("app", app), ("version", version or "unknown"), ("principal", principal)]
        # a request the inbound codec refused names no service: Istio labels it unknown
        service = [("service", f"{app}.{namespace}.svc.cluster.local"), ("service_name", app)]
        return cls(
            pod,
            tuple((f"source_{k}", frozenset({v})) for k, v in own),
            (*((f"destination_{k}", frozenset({v})) for k, v in own),
             *((f"destination_{k}", frozenset({v, "unknown"})) for k, v in service)),
            waypoint,
            tuple(v for _, v in own),
        )

    def refuses(self, rec: RequestRecord) -> str | None:
        """Why ``rec`` is not this pod's to report, or None when it is."""
        if rec.proxy != self.pod:
            return f"row for proxy {rec.proxy!r} sent by pod {self.pod}"
        if rec.reporter == "waypoint":
            return None if self.waypoint else f"reporter 'waypoint' from {self.pod}, which is no waypoint"
        if rec.reporter == "source":
            own = self.source
            # the common case in one comparison; the field by field walk below only names a lie
            if (rec.source_workload, rec.source_app, rec.source_version, rec.source_principal) == self.source_row:
                return None
        elif rec.reporter == "destination":
            own = self.destination
        else:
            return f"reporter {rec.reporter!r}: a proxy reports as source, destination or waypoint"
        for name, allowed in own:
            got = getattr(rec, name)
            if got not in allowed:
                own_value = min(allowed - {"unknown"} or allowed)
                return f"reporter={rec.reporter} row with {name}={got!r}: the pod's is {own_value!r}"
        return None


def _record_dict(rec: RequestRecord) -> dict[str, Any]:
    return {f: getattr(rec, f) for f in _FIELDS}


def _context_of(rec: RequestRecord) -> SpanContext:
    """The span context a proxy had for ``rec`` (client side on a sidecar's outbound, else server)."""
    outbound = rec.reporter == "source" and rec.source_workload not in GATEWAY_WORKLOADS
    return SpanContext(rec.trace_id, rec.span_id, rec.parent_span_id, rec.sampled,
                       "client" if outbound else "server", rec.request_id)


def _jaeger_tags(tags: tuple[tuple[str, str, Any], ...]) -> list[dict[str, Any]]:
    return [{"key": k, "type": t, "value": v} for k, t, v in tags]


class Collector:
    """Bounded store of request records and spans (see the module docstring for capacities).

    Example::

        c = Collector(max_records=1000)
        c.ingest(records=[...], spans=[...])
        c.records(since=time.time() - 60, reporter="source", response_flags="UO")
    """

    def __init__(
        self,
        max_records: int = 50_000,
        max_spans: int = 50_000,
        max_traces: int = 10_000,
        max_spans_per_trace: int = 1_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for name, value in (
            ("max_records", max_records),
            ("max_spans", max_spans),
            ("max_traces", max_traces),
            ("max_spans_per_trace", max_spans_per_trace),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.max_records, self.max_spans, self.max_traces = max_records, max_spans, max_traces
        self.max_spans_per_trace = max_spans_per_trace
        self._clock = clock
        self._lock = threading.Lock()
        self._records: deque[RequestRecord] = deque()
        self._by_request: dict[str, list[RequestRecord]] = {}
        self._traces: OrderedDict[str, _Trace] = OrderedDict()
        self._span_count = 0
        self._services: set[str] = set()
        self._tag_cache: dict[tuple[str, str, Any], tuple[str, str, Any]] = {}
        self.rejected = 0  # malformed or unsampled items dropped at ingest
        # rows a pod was not entitled to report (another workload's labels): dropped, counted per pod
        self.refused = 0
        self.refused_by_pod: dict[str, int] = {}
        self.last_refusal = ""

    # -- ingest ----------------------------------------------------------------------------------
    def ingest(self, records: Iterable[Mapping[str, Any]] = (), spans: Iterable[Mapping[str, Any]] = ()) -> None:
        """Store a batch from a proxy: record dicts (``RequestRecord.to_dict()``) and span dicts
        (``finish_span``). Malformed items and unsampled spans are dropped and counted in ``rejected``.
        """
        with self._lock:
            for data in records:
                rec = self._parse_record(data)
                if rec is not None:
                    self._add_record(rec)
            for raw in spans:
                span = self._parse_span(raw)
                if span is not None:
                    self._add_span(span)

    def ingest_rows(self, rows: Iterable[list[Any]], reporter: Reporter | None = None) -> int:
        """The proxies' compact batch: one list of values per record, in ``RequestRecord`` field order.

        Sampled records also stand for their span; it is built from the record when traces are read,
        so the per-request cost here is one record, not a record and a span. With ``reporter`` (the
        authenticated pod that sent the batch) a row that pod may not report is dropped and counted
        (``refused`` in :meth:`stats`, and per pod in ``refused_by_pod``, why in ``last_refusal``).
        Returns how many rows were refused so.
        """
        width = len(_FIELDS)
        refused = 0
        with self._lock:
            for row in rows:
                if not isinstance(row, list) or len(row) != width or not isinstance(row[0], str):
                    self.rejected += 1
                    continue
                rec = RequestRecord(*row)
                if reporter is not None and (why := reporter.refuses(rec)) is not None:
                    refused += 1
                    self.last_refusal = f"{reporter.pod}: {why}"[:500]
                    continue
                self._add_record(rec)
                if rec.sampled and rec.trace_id and rec.span_id:
                    self._add_pending(rec)
            if refused and reporter is not None:
                self.refused += refused
                if reporter.pod in self.refused_by_pod or len(self.refused_by_pod) < _MAX_SERVICES:
                    self.refused_by_pod[reporter.pod] = self.refused_by_pod.get(reporter.pod, 0) + refused
        return refused

    def _add_pending(self, rec: RequestRecord) -> None:
        tid = jaeger_trace_id(rec.trace_id)
        trace = self._traces.get(tid)
        start_us = int(rec.start_time * 1_000_000)
        if trace is None:
            trace = self._traces[tid] = _Trace(start_us=start_us)
        elif len(trace.spans) + len(trace.pending) >= self.max_spans_per_trace:
            self.rejected += 1
            return
        else:
            self._traces.move_to_end(tid)
        trace.pending.append(rec)
        trace.start_us = min(trace.start_us, start_us)
        self._span_count += 1
        while self._span_count > self.max_spans or len(self._traces) > self.max_traces:
            _, evicted = self._traces.popitem(last=False)
            self._span_count -= len(evicted.spans) + len(evicted.pending)

    def _materialize(self) -> None:
        """Turn pending records into spans (called under the lock, before reading traces)."""
        for trace in self._traces.values():
            if not trace.pending:
                continue
            pending, trace.pending = trace.pending, []
            for rec in pending:
                span = self._parse_span(finish_span(_context_of(rec), rec))
                if span is None or span.span_id in trace.span_ids:
                    self._span_count -= 1
                    continue
                trace.spans.append(span)
                trace.span_ids.add(span.span_id)
                if len(self._services) < _MAX_SERVICES:
                    self._services.add(span.service)

    def _parse_record(self, data: Mapping[str, Any]) -> RequestRecord | None:
        if not isinstance(data, Mapping) or not isinstance(data.get("proxy"), str):
            self.rejected += 1
            return None
        try:
            rec = RequestRecord.from_dict(
                {k: sys.intern(v) if k in _INTERNED and isinstance(v, str) else v for k, v in data.items()}
            )
        except TypeError:
            self.rejected += 1
            return None
        return rec

    def _add_record(self, rec: RequestRecord) -> None:
        if len(self._records) >= self.max_records:
            old = self._records.popleft()
            chain = self._by_request.get(old.request_id)
            if chain:
                # records of one request arrive oldest first, so the evicted one leads its list
                if chain[0] is old:
                    chain.pop(0)
                if not chain:
                    del self._by_request[old.request_id]
        self._records.append(rec)
        if rec.request_id:
            self._by_request.setdefault(rec.request_id, []).append(rec)

    def _tags(self, raw: Any) -> tuple[tuple[str, str, Any], ...]:
        if len(self._tag_cache) > _TAG_CACHE_LIMIT:
            self._tag_cache.clear()
        out = []
        for tag in raw or ():
            key = (str(tag["key"]), str(tag.get("type", "string")), tag.get("value"))
            out.append(self._tag_cache.setdefault(key, key))
        return tuple(out)

    def _parse_span(self, data: Mapping[str, Any]) -> _Span | None:
        try:
            if not int(data.get("flags", 1)) & 1:
                self.rejected += 1  # not sampled: a real proxy would not have reported it
                return None
            span = _Span(
                trace_id=str(data["traceID"]),
                span_id=str(data["spanID"]),
                parent_id=str(data.get("parentSpanID") or ""),
                operation=sys.intern(str(data["operationName"])),
                start_us=int(data["startTime"]),
                duration_us=int(data["duration"]),
                tags=self._tags(data.get("tags")),
                service=sys.intern(str(data["process"]["serviceName"])),
                process_tags=self._tags(data["process"].get("tags")),
                flags=int(data.get("flags", 1)),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            self.rejected += 1
            return None
        if not span.trace_id or not span.span_id:
            self.rejected += 1
            return None
        return span

    def _add_span(self, span: _Span) -> None:
        trace = self._traces.get(span.trace_id)
        if trace is None:
            trace = self._traces[span.trace_id] = _Trace(start_us=span.start_us)
        elif span.span_id in trace.span_ids or len(trace.spans) >= self.max_spans_per_trace:
            self.rejected += 1
            return
        else:
            self._traces.move_to_end(span.trace_id)
        trace.spans.append(span)
        trace.span_ids.add(span.span_id)
        trace.start_us = min(trace.start_us, span.start_us)
        self._span_count += 1
        if len(self._services) < _MAX_SERVICES:
            self._services.add(span.service)
        while self._span_count > self.max_spans or len(self._traces) > self.max_traces:
            _, evicted = self._traces.popitem(last=False)
            self._span_count -= len(evicted.spans)

    # -- records ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._records)

    @property
    def span_count(self) -> int:
        return self._span_count

    def stats(self) -> dict[str, int]:
        """Current sizes and capacities, for ``meshkit status`` and the memory benchmark."""
        return {
            "records": len(self._records),
            "max_records": self.max_records,
            "spans": self._span_count,
            "max_spans": self.max_spans,
            "traces": len(self._traces),
            "max_traces": self.max_traces,
            "rejected": self.rejected,
            "refused": self.refused,
        }

    def records(self, since: float = 0.0, limit: int = 10_000, **filters: Any) -> list[dict[str, Any]]:
        """The most recent ``limit`` records that started after ``since``, oldest first.

        ``filters`` name record fields; a value matches by its string form (``response_code=503``
        or ``"503"``), a list/tuple/set matches any of its values.

        Example::

            collector.records(reporter="destination", destination_service_name="recommendation")
        """
        unknown = sorted(set(filters) - set(_FIELDS))
        if unknown:
            raise ValueError(f"unknown record field(s) {', '.join(unknown)}; fields are: {', '.join(_FIELDS)}")
        wanted = {
            k: {str(x) for x in v} if isinstance(v, list | tuple | set | frozenset) else {str(v)}
            for k, v in filters.items()
        }
        with self._lock:
            snapshot = list(self._records)
        out = [
            r
            for r in snapshot
            if r.start_time > since and all(str(getattr(r, k)) in vals for k, vals in wanted.items())
        ]
        out.sort(key=lambda r: r.start_time)
        return [_record_dict(r) for r in out[max(0, len(out) - limit) :]]

    def by_request_id(self, ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """The records of each known request id, in start order (unknown ids are left out)."""
        with self._lock:
            chains = {i: list(self._by_request[i]) for i in ids if i in self._by_request}
        return {i: [_record_dict(r) for r in sorted(c, key=lambda r: r.start_time)] for i, c in chains.items()}

    # -- Jaeger query API ------------------------------------------------------------------------
    def jaeger_services(self) -> dict[str, Any]:
        """``GET /api/services``: the service names seen in spans, e.g. ``customer.tutorial``."""
        with self._lock:
            self._materialize()
            names = sorted(self._services)
        return {"data": names, "total": len(names), "limit": 0, "offset": 0, "errors": None}

    def _resolve_service(self, service: str) -> set[str]:
        if service in self._services:
            return {service}
        matches = {s for s in self._services if s.split(".", 1)[0] == service}
        if matches:
            return matches
        if not self._services:
            raise NotFound(f"no traces for service {service!r}: no spans have been collected yet")
        raise NotFound(f"no traces for service {service!r}; services with traces: {', '.join(sorted(self._services))}")

    def jaeger_traces(
        self,
        service: str | None = None,
        limit: int = 20,
        lookback_s: float = 3600.0,
        min_duration_us: int | None = None,
        tags: Mapping[str, Any] | None = None,
        now: float | None = None,
    ) -> dict[str, Any]:
        """``GET /api/traces``: the newest ``limit`` traces with a span in the lookback window.

        ``service`` (``customer`` or ``customer.tutorial``) keeps traces that contain a span of that
        service; ``min_duration_us`` and ``tags`` (all must match, compared as strings) must hold for
        one span of the trace, as in Jaeger. An unknown service raises NotFound naming the known ones.

        Example::

            body = collector.jaeger_traces(service="recommendation", limit=5)
            [s["operationName"] for s in body["data"][0]["spans"]]
        """
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        cutoff_us = int(((self._clock() if now is None else now) - lookback_s) * 1_000_000)
        want_tags = {k: str(v) for k, v in (tags or {}).items()}
        with self._lock:
            self._materialize()
            services = self._resolve_service(service) if service else None
            traces = [(tid, list(t.spans), t.start_us) for tid, t in self._traces.items() if t.spans]
        found = []
        for tid, spans, start_us in traces:
            if max(s.start_us for s in spans) < cutoff_us:
                continue
            if services is not None and not any(s.service in services for s in spans):
                continue
            if (min_duration_us is not None or want_tags) and not any(
                self._span_matches(s, min_duration_us, want_tags) for s in spans
            ):
                continue
            found.append((start_us, tid, spans))
        found.sort(key=lambda item: item[0], reverse=True)
        data = [self._jaeger_trace(tid, spans) for _, tid, spans in found[:limit]]
        return {"data": data, "total": 0, "limit": 0, "offset": 0, "errors": None}

    @staticmethod
    def _span_matches(span: _Span, min_duration_us: int | None, want_tags: Mapping[str, str]) -> bool:
        if min_duration_us is not None and span.duration_us < min_duration_us:
            return False
        have = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, _, v in span.tags}
        return all(have.get(k) == v for k, v in want_tags.items())

    def jaeger_trace(self, trace_id: str) -> dict[str, Any]:
        """``GET /api/traces/{traceID}``; NotFound when the trace is unknown or already evicted."""
        with self._lock:
            self._materialize()
            trace = self._traces.get(trace_id.lower())
            spans = list(trace.spans) if trace else None
        if spans is None:
            raise NotFound(f"trace {trace_id!r} not found (unknown, or evicted from the last {self.max_spans} spans)")
        return {
            "data": [self._jaeger_trace(trace_id.lower(), spans)],
            "total": 0,
            "limit": 0,
            "offset": 0,
            "errors": None,
        }

    @staticmethod
    def _jaeger_trace(trace_id: str, spans: list[_Span]) -> dict[str, Any]:
        processes: dict[tuple[str, tuple[Any, ...]], str] = {}
        out_spans = []
        for s in sorted(spans, key=lambda s: (s.start_us, s.span_id)):
            pid = processes.setdefault((s.service, s.process_tags), f"p{len(processes) + 1}")
            refs = [{"refType": "CHILD_OF", "traceID": trace_id, "spanID": s.parent_id}] if s.parent_id else []
            out_spans.append(
                {
                    "traceID": trace_id,
                    "spanID": s.span_id,
                    "operationName": s.operation,
                    "references": refs,
                    "startTime": s.start_us,
                    "duration": s.duration_us,
                    "tags": _jaeger_tags(s.tags),
                    "logs": [],
                    "processID": pid,
                    "warnings": None,
                    "flags": s.flags,
                }
            )
        return {
            "traceID": trace_id,
            "spans": out_spans,
            "processes": {
                pid: {"serviceName": service, "tags": _jaeger_tags(ptags)}
                for (service, ptags), pid in processes.items()
            },
            "warnings": None,
        }
