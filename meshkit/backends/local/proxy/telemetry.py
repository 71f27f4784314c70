"""What a proxy does when a request completes: fill the record, count it, log it, trace it.

Records and spans wait in bounded outboxes (``capacity`` each) until the pod's flush loop ships
them to the control plane's collector, so telemetry never grows with the load. Istio's metrics
live in :class:`~meshkit.backends.local.proxy.stats.ProxyStats`, the access log in a ring buffer.
``MESHKIT_TELEMETRY=off`` turns all of it off (the benchmark measures its cost that way).

Example::

    tel = Telemetry(identity)
    span = tel.begin(req, "client", 100.0, rng)
    tel.finish(ex, resp, started, span)
    records, spans = tel.drain()
"""

from __future__ import annotations

import operator
import os
import random
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from meshkit.backends.local.proxy.accesslog import AccessLog
from meshkit.backends.local.proxy.exchange import note_body_error
from meshkit.backends.local.proxy.stats import ProxyStats
from meshkit.backends.local.proxy.tracing import SpanContext, start_span
from meshkit.http1 import Request, Response
from meshkit.telemetry.record import FIELDS, RequestRecord

if TYPE_CHECKING:
    from meshkit.backends.local.proxy.config import ProxyIdentity
    from meshkit.backends.local.proxy.exchange import Exchange

EXCERPT = 120
_ROW = operator.attrgetter(*FIELDS)  # one C call turns a record into its wire row


def enabled_by_env() -> bool:
    return os.environ.get("MESHKIT_TELEMETRY", "on").lower() not in ("0", "off", "false", "no")


class Telemetry:
    def __init__(self, identity: ProxyIdentity, capacity: int = 5000, enabled: bool | None = None) -> None:
        self.identity = identity
        self.enabled = enabled_by_env() if enabled is None else enabled
        self.outbox: deque[tuple[Any, ...]] = deque(maxlen=capacity)
        self.access_log = AccessLog(capacity=2000)
        self.stats = ProxyStats(identity.pod, identity.workload, identity.app, identity.version or "unknown",
                                identity.namespace)
        self.total = 0
        self.access_logging = True  # a Telemetry resource with accessLogging disabled turns it off

    def begin(self, req: Request, kind: str, sampling: float, rng: random.Random) -> SpanContext | None:
        """Open this proxy's span and rewrite the trace headers for the next hop."""
        if not self.enabled:
            return None
        return start_span(req.headers, kind, sampling, rng)

    def finish(self, ex: Exchange, resp: Response, started: float, span: SpanContext | None) -> None:
        rec = ex.rec
        rec.duration_ms = (time.perf_counter() - started) * 1000.0
        rec.response_code = resp.status
        rec.response_flags = ",".join(ex.flags) if ex.flags else "-"
        headers = ex.req.headers
        rec.method = ex.req.method
        rec.path = headers.get("x-envoy-original-path", ex.req.path)
        rec.user_agent = headers.get("user-agent", "")
        rec.request_id = headers.get("x-request-id", "")
        rec.x_forwarded_for = headers.get("x-forwarded-for", "")
        rec.bytes_received = len(ex.req.body) if ex.req.stream is None else ex.req.stream.received
        if ex.req.method == "HEAD":
            rec.bytes_sent = 0  # a HEAD's answer is its head: even a local reply's body stays unsent
        else:
            rec.bytes_sent = len(resp.body) if resp.stream is None else resp.stream.sent
        if resp.status >= 400 and resp.body:
            rec.body_excerpt = resp.body[:EXCERPT].decode("utf-8", "replace")
        self.total += 1
        if not self.enabled:
            return
        if span is not None:
            # the record carries its span: the collector builds the Jaeger span only when asked
            rec.trace_id, rec.span_id, rec.parent_span_id = span.trace_id, span.span_id, span.parent_span_id
            rec.sampled = span.sampled
        else:
            rec.sampled = False
        self.stats.record(rec)
        if self.access_logging:
            self.access_log.append(rec)
        self.outbox.append(_ROW(rec))

    def finish_at_end(self, ex: Exchange, resp: Response, started: float, span: SpanContext | None) -> None:
        """:meth:`finish` now, or, for a streamed body, once it ended (Envoy logs a request when
        its response is complete: duration and bytes cover the body, a reset mid-body is flagged)."""
        stream = resp.stream
        if stream is None:
            self.finish(ex, resp, started, span)
            return

        def ended(error: BaseException | None) -> None:
            note_body_error(ex, error)
            self.finish(ex, resp, started, span)

        stream.on_end(ended)

    def report(self, rec: RequestRecord) -> None:
        """Count, log and ship a record no filter chain saw: a request the listener refused itself
        (Envoy's codec-level local reply, logged with flag DPE or SI)."""
        self.total += 1
        if not self.enabled:
            return
        self.stats.record(rec)
        if self.access_logging:
            self.access_log.append(rec)
        self.outbox.append(_ROW(rec))

    def drain(self) -> list[tuple[Any, ...]]:
        """The records waiting to be shipped, as rows in ``RequestRecord`` field order."""
        rows = list(self.outbox)
        self.outbox.clear()
        return rows
