"""The router end to end on real loopback upstreams: retries, timeouts, overflow, flags.

Backoff sleeps are injected (recorded, not slept); route and per-try timeouts are real but short
and hit upstreams that never answer, so the outcome does not depend on the machine's speed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence

from meshkit.backends.local.proxy.cluster import Cluster, Endpoint, OutlierSpec, PoolLimits
from meshkit.backends.local.proxy.config import RetryPolicy, Route, compile_retry
from meshkit.backends.local.proxy.exchange import Exchange
from meshkit.backends.local.proxy.router import Router
from meshkit.http1 import Response
from tests.proxy.support import (
    CLUSTER,
    ResettingUpstream,
    Sleeps,
    Upstream,
    closed_port,
    endpoint,
    exchange,
    host_named,
    make_cluster,
    make_route,
    prepare,
    run,
    settle,
)

RETRY_5XX = RetryPolicy(num_retries=2, retry_on=frozenset({"5xx"}), explicit=True)


def router_for(cluster: Cluster, sleeps: Sleeps | None = None) -> Router:
    return Router(lambda: {CLUSTER: cluster}, random.Random(5), sleeps or Sleeps(), prepare, lambda: False)


async def send(cluster: Cluster, route: Route, sleeps: Sleeps | None = None) -> tuple[Response, Exchange]:
    ex = exchange(route)
    resp = await router_for(cluster, sleeps)(ex)
    return resp, ex


def cluster_of(
    endpoints: Sequence[Endpoint],
    lb: str = "ROUND_ROBIN",
    limits: PoolLimits | None = None,
    outlier: OutlierSpec | None = None,
) -> Cluster:
    return make_cluster(list(endpoints), lb=lb, limits=limits, outlier=outlier)


def test_a_503_is_retried_on_another_host_with_a_jittered_backoff() -> None:
    async def body() -> None:
        bad, good = await Upstream("bad", "fail").start(), await Upstream("good").start()
        cluster = cluster_of([bad.endpoint(), good.endpoint()], lb="ROUND_ROBIN")
        sleeps = Sleeps()
        resp, ex = await send(cluster, make_route(retry=RETRY_5XX), sleeps)
        assert resp.status == 200 and resp.body == b"good 200"
        assert ex.rec.attempts == 2 and bad.hits == 1 and good.hits == 1
        assert ex.flags == [] and ex.rec.upstream_pod == "good"
        assert len(sleeps.calls) == 1 and 0 <= sleeps.calls[0] < 0.025
        assert cluster.active_retries == 0 and cluster.active_requests == 0
        bad.close()
        good.close()

    run(body())


def test_exhausted_retries_return_the_last_answer_with_urx() -> None:
    async def body() -> None:
        ups = [await Upstream(f"bad{i}", "fail").start() for i in range(3)]
        cluster = cluster_of([u.endpoint() for u in ups])
        sleeps = Sleeps()
        resp, ex = await send(cluster, make_route(retry=RETRY_5XX), sleeps)
        assert resp.status == 503 and resp.body.startswith(b"bad")
        assert ex.flags == ["URX"] and ex.rec.attempts == 3
        assert [u.hits for u in ups] == [1, 1, 1]  # the previous-hosts predicate: three pods
        assert len(sleeps.calls) == 2 and sleeps.calls[1] < 0.075
        assert ex.rec.response_code_details == "via_upstream"
        for u in ups:
            u.close()

    run(body())


def test_default_policy_per_profile_for_an_application_503() -> None:
    async def body() -> None:
        bad, good = await Upstream("bad", "fail").start(), await Upstream("good").start()
        for profile, expected in (("current", 503), ("tutorial", 200)):
            cluster = cluster_of([bad.endpoint(), good.endpoint()], lb="ROUND_ROBIN")
            resp, ex = await send(cluster, make_route(retry=compile_retry(None, profile)))
            assert resp.status == expected, profile
            assert ex.flags == []
        bad.close()
        good.close()

    run(body())


def test_no_retry_policy_means_one_attempt_and_no_urx() -> None:
    async def body() -> None:
        bad = await Upstream("bad", "fail").start()
        cluster = cluster_of([bad.endpoint(), endpoint("other", closed_port())])
        resp, ex = await send(cluster, make_route(retry=compile_retry({"attempts": 0}, "current")))
        assert resp.status == 503 and ex.rec.attempts == 1 and ex.flags == []
        bad.close()

    run(body())


def test_connect_failure_is_retried_by_default_and_flagged_uf_otherwise() -> None:
    async def body() -> None:
        good = await Upstream("good").start()
        dead = endpoint("dead", closed_port())
        cluster = cluster_of([dead, good.endpoint()], lb="ROUND_ROBIN")
        resp, ex = await send(cluster, make_route(retry=compile_retry(None, "current")))
        assert resp.status == 200 and ex.rec.attempts == 2
        lonely = cluster_of([dead])
        resp, ex = await send(lonely, make_route(retry=None))
        assert resp.status == 503 and ex.flags == ["UF"]
        assert resp.body.endswith(b"reset reason: connection failure")
        resp, ex = await send(lonely, make_route(retry=compile_retry(None, "current")))
        assert resp.status == 503 and ex.flags == ["URX", "UF"] and ex.rec.attempts == 3
        good.close()

    run(body())


def test_an_upstream_reset_is_retried_under_reset_and_flagged_uc() -> None:
    async def body() -> None:
        rst = await ResettingUpstream("rst").start()
        good = await Upstream("good").start()
        cluster = cluster_of([rst.endpoint(), good.endpoint()], lb="ROUND_ROBIN")
        reset_policy = RetryPolicy(num_retries=1, retry_on=frozenset({"reset"}), explicit=True)
        resp, ex = await send(cluster, make_route(retry=reset_policy))
        assert resp.status == 200 and ex.rec.attempts == 2
        only = cluster_of([rst.endpoint()])
        resp, ex = await send(only, make_route(retry=compile_retry(None, "current")))
        assert resp.status == 503 and ex.flags == ["UC"] and ex.rec.attempts == 1  # default: not retried
        assert resp.body.endswith(b"reset reason: connection termination")
        rst.close()
        good.close()

    run(body())


def test_route_timeout_answers_504_ut_never_retries_and_frees_the_pool() -> None:
    async def body() -> None:
        slow = await Upstream("slow", "hang").start()
        od = OutlierSpec(consecutive_5xx=1, max_ejection_percent=100)
        cluster = cluster_of([slow.endpoint()], limits=PoolLimits(max_connections=1, max_pending_requests=1),
                             outlier=od)
        route = make_route(timeout=0.05, retry=RETRY_5XX)
        started = time.monotonic()
        resp, ex = await send(cluster, route)
        elapsed = time.monotonic() - started
        assert resp.status == 504 and resp.body == b"upstream request timeout"
        assert ex.flags == ["UT"] and ex.rec.response_code_details == "upstream_response_timeout"
        assert 0.05 <= elapsed < 5.0 and slow.hits == 1  # one attempt, no retry (a retry would hang too)
        assert cluster.connections == 0 and cluster.active_requests == 0 and cluster.pending == 0
        assert cluster.active_retries == 0
        assert host_named(cluster, "slow").ejected  # the cancelled attempt counted as a 504
        slow.close()

    run(body())


def test_route_timeout_covers_all_attempts_and_cancels_queued_requests() -> None:
    async def body() -> None:
        slow = await Upstream("slow", "hang").start()
        cluster = cluster_of([slow.endpoint()], limits=PoolLimits(max_connections=1, max_pending_requests=5))
        # the first request holds the only connection until the gate opens, so the two queued behind it
        # time out while still queued however slow the machine is (no race between equal timers)
        first = asyncio.ensure_future(send(cluster, make_route(timeout=30.0)))
        await settle(lambda: slow.hits == 1)
        queued = await asyncio.gather(*(send(cluster, make_route(timeout=0.05)) for _ in range(2)))
        assert [r.status for r, _ in queued] == [504, 504]
        assert all(ex.flags == ["UT"] for _, ex in queued)  # the route timeout counts the time in the queue
        assert cluster.pending == 0 and not cluster.waiters
        slow.gate.set()
        resp, _ = await first
        assert resp.status == 200
        assert slow.hits == 1  # the queued two never reached the upstream
        slow.mode = "ok"
        resp, _ = await send(cluster, make_route())
        assert resp.status == 200  # the pool is usable again
        slow.close()

    run(body())


def test_per_try_timeout_is_retried_only_under_5xx_gateway_error_or_reset() -> None:
    async def body() -> None:
        slow, good = await Upstream("slow", "hang").start(), await Upstream("good").start()
        for retry_on, expected in (("5xx", 200), ("gateway-error", 200), ("reset", 200),
                                   ("connect-failure,refused-stream,retriable-status-codes", 504)):
            cluster = cluster_of([slow.endpoint(), good.endpoint()], lb="ROUND_ROBIN",
                                 outlier=OutlierSpec(consecutive_5xx=2, max_ejection_percent=100))
            policy = RetryPolicy(num_retries=2, retry_on=frozenset(retry_on.split(",")), per_try_timeout=0.03,
                                 explicit=True)
            resp, ex = await send(cluster, make_route(retry=policy))
            assert resp.status == expected, retry_on
            assert host_named(cluster, "slow").consecutive_5xx == 1  # the expired try is a 504 for outlier
            if expected == 504:
                assert ex.flags == ["UT"] and ex.rec.response_code_details == "upstream_per_try_timeout"
            assert cluster.connections == (1 if expected == 200 else 0)  # only good's keep-alive stays
        slow.close()
        good.close()

    run(body())


def test_overflow_answers_503_uo_at_once_is_never_retried_nor_counted_as_an_outlier() -> None:
    async def body() -> None:
        slow = await Upstream("slow", "hang").start()
        od = OutlierSpec(consecutive_5xx=1, max_ejection_percent=100)
        limits = PoolLimits(max_connections=1, max_pending_requests=1, max_requests_per_connection=1)
        cluster = cluster_of([slow.endpoint()], limits=limits, outlier=od)
        route = make_route(retry=RetryPolicy(num_retries=3, retry_on=frozenset({"5xx"}), explicit=True))
        busy = [asyncio.ensure_future(send(cluster, route))]
        await settle(lambda: slow.hits == 1)  # on its connection
        busy.append(asyncio.ensure_future(send(cluster, route)))
        await settle(lambda: cluster.pending == 1)  # queued behind it
        resp, ex = await send(cluster, route)
        assert resp.status == 503 and ex.flags == ["UO"] and ex.rec.attempts == 1
        assert resp.body == (b"upstream connect error or disconnect/reset before headers. reset reason: overflow")
        assert len(resp.body) == 81
        assert not host_named(cluster, "slow").ejected and host_named(cluster, "slow").consecutive_5xx == 0
        slow.gate.set()
        assert [(await b)[0].status for b in busy] == [200, 200]
        assert cluster.connections == 0 and cluster.active_requests == 0
        slow.close()

    run(body())


def test_retry_budget_overflow_returns_the_last_answer_with_uo() -> None:
    async def body() -> None:
        ups = [await Upstream(f"bad{i}", "fail").start() for i in range(2)]
        cluster = cluster_of([u.endpoint() for u in ups], limits=PoolLimits(max_retries=1))
        gate = asyncio.Event()

        class HeldSleep(Sleeps):
            async def __call__(self, seconds: float) -> None:
                self.calls.append(seconds)
                await gate.wait()  # the first request's retry holds the budget

        held = asyncio.ensure_future(send(cluster, make_route(retry=RETRY_5XX), HeldSleep()))
        await settle(lambda: cluster.active_retries == 1)
        resp, ex = await send(cluster, make_route(retry=RETRY_5XX))
        assert resp.status == 503 and ex.flags == ["UO"] and ex.rec.attempts == 1
        assert cluster.stats["upstream_rq_retry_overflow"] == 1
        gate.set()
        resp, ex = await held
        assert ex.flags == ["URX"] and cluster.active_retries == 0
        for u in ups:
            u.close()

    run(body())


def test_all_hosts_ejected_answers_503_uh() -> None:
    async def body() -> None:
        bad = await Upstream("bad", "fail").start()
        cluster = cluster_of([bad.endpoint()], outlier=OutlierSpec(consecutive_5xx=1, max_ejection_percent=100))
        resp, ex = await send(cluster, make_route(retry=None))
        assert resp.status == 503 and resp.body == b"bad 503" and "ejected" in ex.rec.rule
        resp, ex = await send(cluster, make_route(retry=None))
        assert resp.status == 503 and resp.body == b"no healthy upstream" and ex.flags == ["UH"]
        assert bad.hits == 1
        bad.close()

    run(body())


def test_a_request_waiting_for_its_new_connection_is_pending() -> None:
    async def body() -> None:
        up = await Upstream("rec").start()
        limits = PoolLimits(max_connections=10, max_pending_requests=1)
        cluster = cluster_of([up.endpoint()], limits=limits)
        # two requests at the same instant: the second finds the first still connecting (pending)
        results = await asyncio.gather(*(send(cluster, make_route()) for _ in range(2)))
        assert sorted(r.status for r, _ in results) == [200, 503]
        assert [ex.flags for r, ex in results if r.status == 503] == [["UO"]]
        up.close()

    run(body())


def test_outlier_ejection_with_retries_hides_the_failing_pod() -> None:
    async def body() -> None:
        bad, good = await Upstream("bad", "fail").start(), await Upstream("good").start()
        od = OutlierSpec(consecutive_5xx=1, max_ejection_percent=100)
        cluster = cluster_of([bad.endpoint(), good.endpoint()], lb="RANDOM", outlier=od)
        statuses = [(await send(cluster, make_route(retry=RETRY_5XX)))[0].status for _ in range(20)]
        assert statuses == [200] * 20
        assert bad.hits <= 1 and host_named(cluster, "bad").ejected is (bad.hits == 1)
        bad.close()
        good.close()

    run(body())
