"""What a proxy does when a request completes: fill the record, count it, log it, trace it.

Records are kept in bounded buffers (``capacity`` each) and shipped to the control plane's
collector in batches by the pod's flush loop, so telemetry never grows with the load.

Example::

    tel = Telemetry(identity)
    span = tel.begin(req, "client", 100.0, rng)
    tel.finish(ex, resp, started, span)
    records, spans = tel.drain()
"""

from __future__ import annotations

import random
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from meshkit.http1 import Request, Response

if TYPE_CHECKING:
    from meshkit.backends.local.proxy.config import ProxyIdentity
    from meshkit.backends.local.proxy.exchange import Exchange


class Telemetry:
    def __init__(self, identity: ProxyIdentity, capacity: int = 5000, enabled: bool = True) -> None:
        self.identity = identity
        self.enabled = enabled
        self.outbox: deque[dict[str, Any]] = deque(maxlen=capacity)
        self.span_outbox: deque[dict[str, Any]] = deque(maxlen=capacity)
        self.total = 0

    def begin(self, req: Request, kind: str, sampling: float, rng: random.Random) -> Any:
        return None

    def finish(self, ex: Exchange, resp: Response, started: float, span: Any) -> None:
        rec = ex.rec
        rec.duration_ms = (time.perf_counter() - started) * 1000.0
        rec.response_code = resp.status
        rec.response_flags = ",".join(ex.flags) if ex.flags else "-"
        rec.method = ex.req.method
        rec.path = ex.req.headers.get("x-envoy-original-path", ex.req.path)
        rec.user_agent = ex.req.headers.get("user-agent", "")
        rec.request_id = ex.req.headers.get("x-request-id", "")
        rec.bytes_received = len(ex.req.body)
        rec.bytes_sent = len(resp.body)
        self.total += 1
        if self.enabled:
            self.outbox.append(rec.to_dict())

    def drain(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        records, spans = list(self.outbox), list(self.span_outbox)
        self.outbox.clear()
        self.span_outbox.clear()
        return records, spans
