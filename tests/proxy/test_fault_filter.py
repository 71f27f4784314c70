"""Fault injection: Istio's translation and the fault filter on a seeded rng and a fake sleep."""

from __future__ import annotations

import random

from meshkit.backends.local.proxy.config import FaultSpec, compile_fault
from meshkit.backends.local.proxy.exchange import Exchange
from meshkit.backends.local.proxy.fault import FaultFilter, per_million
from meshkit.http1 import Response
from tests.proxy.support import Sleeps, exchange, make_route, run


def test_unset_percentage_injects_nothing() -> None:
    spec = compile_fault({"abort": {"httpStatus": 503}, "delay": {"fixedDelay": "7s"}})
    assert spec == FaultSpec(delay_s=7.0, delay_percent=0.0, abort_status=503, abort_percent=0.0)
    assert compile_fault({"abort": {"httpStatus": 503, "percentage": {}}}) == FaultSpec(abort_status=503)


def test_percentage_and_the_deprecated_integer_percent() -> None:
    spec = compile_fault({"delay": {"fixedDelay": "1.5s", "percent": 50}})
    assert spec is not None and spec.delay_s == 1.5 and spec.delay_percent == 50.0
    spec = compile_fault({"delay": {"fixedDelay": "100ms", "percentage": {"value": 12.5}, "percent": 99}})
    assert spec is not None and spec.delay_percent == 12.5  # percentage wins when both are set
    spec = compile_fault({"abort": {"httpStatus": 418, "percentage": {"value": 100}}})
    assert spec == FaultSpec(abort_status=418, abort_percent=100.0)
    assert compile_fault(None) is None and compile_fault({}) is None


def test_envoy_precision_is_per_million() -> None:
    assert per_million(50.0) == 500_000
    assert per_million(0.0001) == 1
    assert per_million(100) == 1_000_000


async def _through(fault: FaultSpec, n: int, seed: int) -> tuple[list[Exchange], list[Response], Sleeps, int]:
    sleeps = Sleeps()
    filt = FaultFilter(random.Random(seed), sleeps)
    forwarded = 0

    async def upstream(ex: Exchange) -> Response:
        nonlocal forwarded
        forwarded += 1
        return Response(200, {}, b"ok")

    exchanges, responses = [], []
    for _ in range(n):
        ex = exchange(make_route(fault=fault))
        responses.append(await filt(ex, upstream))
        exchanges.append(ex)
    return exchanges, responses, sleeps, forwarded


def test_abort_percentage_on_a_seeded_rng() -> None:
    exs, resps, sleeps, forwarded = run(_through(FaultSpec(abort_status=503, abort_percent=50), 10_000, 1))
    aborted = [r for r in resps if r.status == 503]
    # binomial sd is 50 requests: 200 is four of them
    assert abs(len(aborted) - 5000) < 200
    assert forwarded == 10_000 - len(aborted)  # an aborted request never reaches the upstream
    assert all(r.body == b"fault filter abort" and r.headers["content-type"] == "text/plain" for r in aborted)
    assert all(ex.flags == ["FI"] and ex.rec.response_code_details == "fault_filter_abort"
               for ex, r in zip(exs, resps, strict=True) if r.status == 503)
    assert not sleeps.calls


def test_delay_percentage_sleeps_before_forwarding() -> None:
    exs, resps, sleeps, forwarded = run(_through(FaultSpec(delay_s=7.0, delay_percent=30), 10_000, 2))
    assert forwarded == 10_000 and all(r.status == 200 for r in resps)
    assert abs(len(sleeps.calls) - 3000) < 200 and set(sleeps.calls) == {7.0}
    assert sum(ex.flags == ["DI"] for ex in exs) == len(sleeps.calls)


def test_delay_and_abort_are_independent_and_both_flags_show() -> None:
    exs, resps, sleeps, _ = run(_through(FaultSpec(delay_s=1.0, delay_percent=50, abort_status=500,
                                                   abort_percent=50), 4000, 3))
    assert abs(len(sleeps.calls) - 2000) < 150
    both = sum(ex.flags == ["DI", "FI"] for ex in exs)
    assert abs(both - 1000) < 120  # a quarter: delayed, then aborted
    assert abs(sum(r.status == 500 for r in resps) - 2000) < 150


def test_zero_and_full_percentages() -> None:
    _, resps, sleeps, forwarded = run(_through(FaultSpec(delay_s=1.0, abort_status=503), 500, 4))
    assert forwarded == 500 and not sleeps.calls
    _, resps, sleeps, forwarded = run(_through(FaultSpec(abort_status=503, abort_percent=100), 500, 5))
    assert forwarded == 0 and all(r.status == 503 for r in resps)


def test_a_route_without_fault_passes_through() -> None:
    async def body() -> int:
        filt = FaultFilter(random.Random(0), Sleeps())

        async def upstream(ex: Exchange) -> Response:
            return Response(204)

        return (await filt(exchange(make_route()), upstream)).status

    assert run(body()) == 204
