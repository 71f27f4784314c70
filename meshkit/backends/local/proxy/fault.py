"""The fault filter (Envoy ``envoy.filters.http.fault``), in the caller's sidecar, before routing.

A delay holds the request before it is forwarded (flag DI); an abort answers at once with the
configured status and body ``fault filter abort`` (flag FI), so the request never reaches a pod.
Unset percentages inject nothing, as in Istio. Randomness and sleeping are injected.

Example::

    fault = FaultFilter(random.Random(7), asyncio.sleep)
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

from meshkit.backends.local.proxy.exchange import FAULT_ABORT_BODY, Exchange, Filter, Handler
from meshkit.http1 import Response


class FaultFilter(Filter):
    def __init__(self, rng: random.Random, sleep: Callable[[float], Awaitable[None]]) -> None:
        self.rng = rng
        self.sleep = sleep

    async def __call__(self, ex: Exchange, next_: Handler) -> Response:
        fault = ex.route.fault if ex.route is not None else None
        if fault is None:
            return await next_(ex)
        origin = ex.route.origin if ex.route is not None else ""
        if fault.delay_percent > 0 and self.rng.random() * 100.0 < fault.delay_percent:
            ex.flag("DI", f"fault delay {fault.delay_s:g}s ({fault.delay_percent:g}%) in {origin}")
            await self.sleep(fault.delay_s)
        if fault.abort_status and self.rng.random() * 100.0 < fault.abort_percent:
            rule = f"fault abort {fault.abort_status} ({fault.abort_percent:g}%) in {origin}"
            return ex.local_reply(fault.abort_status, "FI", "fault_filter_abort", FAULT_ABORT_BODY, rule)
        return await next_(ex)
