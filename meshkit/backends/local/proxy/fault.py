"""The fault filter (Envoy ``envoy.filters.http.fault``), in the caller's sidecar, before routing.

A delay holds the request before it is forwarded (flag DI), so the route timeout only starts
after it; an abort answers at once with the configured status and body ``fault filter abort``
(flag FI), so the request never reaches a pod. Delay and abort are drawn independently, the
delay first (a delayed request may then be aborted). Percentages have Envoy's precision (Istio
sends ``value × 10000`` per million); unset percentages inject nothing, as in Istio. Randomness
and sleeping are injected, so tests run on virtual time.

Example::

    fault = FaultFilter(random.Random(7), asyncio.sleep)
    response = await fault(exchange, next_filter)
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

from meshkit.backends.local.proxy.exchange import FAULT_ABORT_BODY, Exchange, Filter, Handler
from meshkit.http1 import Response

PER_MILLION = 1_000_000


def per_million(percent: float) -> int:
    """Istio's translation of a percentage to Envoy's FractionalPercent numerator (per million)."""
    return int(percent * 10_000)


class FaultFilter(Filter):
    def __init__(
        self,
        rng: random.Random,
        sleep: Callable[[float], Awaitable[None]],
        attribute: Callable[[Exchange], object] | None = None,
    ) -> None:
        self.rng = rng
        self.sleep = sleep
        self.attribute = attribute  # notes the destination an abort stands in for (the router's choice)

    def _hit(self, percent: float) -> bool:
        return percent > 0 and self.rng.randrange(PER_MILLION) < per_million(percent)

    async def __call__(self, ex: Exchange, next_: Handler) -> Response:
        route = ex.route
        fault = route.fault if route is not None else None
        if fault is None:
            return await next_(ex)
        origin = route.origin if route is not None else ""
        if fault.delay_s > 0 and self._hit(fault.delay_percent):
            ex.flag("DI", f"fault delay {fault.delay_s:g}s ({fault.delay_percent:g}%) in {origin}")
            await self.sleep(fault.delay_s)
        if fault.abort_status and self._hit(fault.abort_percent):
            rule = f"fault abort {fault.abort_status} ({fault.abort_percent:g}%) in {origin}"
            if self.attribute is not None and route is not None and route.destinations:
                self.attribute(ex)
            return ex.local_reply(fault.abort_status, "FI", "fault_filter_abort", FAULT_ABORT_BODY, rule)
        return await next_(ex)
