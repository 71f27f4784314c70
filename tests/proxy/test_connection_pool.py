"""The connection pool as Envoy's circuit breaker, on real loopback connections.

Upstreams that answer when the test opens a gate make the timing explicit: nothing sleeps.
"""

from __future__ import annotations

import asyncio

import pytest

from meshkit.backends.local.proxy.cluster import Overflow, PoolLimits
from meshkit.http1 import ConnectFailure, Connection, Request
from tests.proxy.support import Upstream, closed_port, endpoint, host_named, make_cluster, run, settle

ONE = PoolLimits(max_connections=1, max_pending_requests=1, max_requests_per_connection=1)


async def roundtrip(conn: Connection) -> int:
    resp = await conn.roundtrip(Request("GET", "/", {"host": "recommendation:8080"}))
    return resp.status


def test_max_connections_queues_then_pending_overflows() -> None:
    async def body() -> None:
        up = await Upstream("rec", "hang").start()
        cluster = make_cluster([up.endpoint()], limits=PoolLimits(max_connections=1, max_pending_requests=1))
        host = cluster.hosts[0]
        first = await cluster.acquire(host)
        assert cluster.connections == 1 and cluster.active_requests == 1 and host.active == 1
        second = asyncio.ensure_future(cluster.acquire(host))
        await settle(lambda: cluster.pending == 1)
        with pytest.raises(Overflow) as info:
            await cluster.acquire(host)
        assert info.value.threshold == "max_pending_requests"
        assert cluster.stats["upstream_rq_pending_overflow"] == 1
        # the first request completes: its keep-alive connection goes to the waiting request
        call = asyncio.ensure_future(roundtrip(first))
        await settle(lambda: up.hits == 1)
        up.gate.set()
        assert await call == 200
        cluster.release(host, first, reusable=True)
        handed = await second
        assert handed is first and cluster.connections == 1 and cluster.pending == 0
        assert await roundtrip(handed) == 200
        cluster.release(host, handed, reusable=True)
        assert cluster.active_requests == 0 and list(host.idle) == [first]
        cluster.close()
        up.close()

    run(body())


def test_one_request_per_connection_opens_a_new_connection_each_time() -> None:
    async def body() -> None:
        up = await Upstream("rec").start()
        cluster = make_cluster([up.endpoint()], limits=ONE)
        host = cluster.hosts[0]
        seen = []
        for _ in range(3):
            conn = await cluster.acquire(host)
            seen.append(conn)
            assert await roundtrip(conn) == 200
            cluster.release(host, conn, reusable=True)
            assert not conn.usable and cluster.connections == 0 and not host.idle
        assert len({id(c) for c in seen}) == 3
        # a waiting request gets the slot of the closed connection, not the connection itself
        first = await cluster.acquire(host)
        waiting = asyncio.ensure_future(cluster.acquire(host))
        await settle(lambda: cluster.pending == 1)
        assert await roundtrip(first) == 200
        cluster.release(host, first, reusable=True)
        second = await waiting
        assert second is not first and second.usable and cluster.connections == 1
        cluster.release(host, second, reusable=False)
        assert cluster.connections == 0
        up.close()

    run(body())


def test_max_requests_counts_attached_requests_only() -> None:
    async def body() -> None:
        up = await Upstream("rec").start()
        cluster = make_cluster([up.endpoint()], limits=PoolLimits(max_requests=1))
        host = cluster.hosts[0]
        first = await cluster.acquire(host)  # the request itself does not count before attaching
        with pytest.raises(Overflow) as info:
            await cluster.acquire(host)
        assert info.value.threshold == "max_requests"
        assert cluster.connections == 2 and len(host.idle) == 1  # the new connection stays ready
        cluster.release(host, first, reusable=True)
        again = await cluster.acquire(host)
        assert again is first and cluster.active_requests == 1  # the most recently idle connection
        cluster.release(host, again, reusable=True)
        cluster.close()
        up.close()

    run(body())


def test_a_host_without_connections_may_exceed_max_connections() -> None:
    async def body() -> None:
        a, b = await Upstream("a").start(), await Upstream("b").start()
        cluster = make_cluster([a.endpoint(), b.endpoint()], limits=PoolLimits(max_connections=1,
                                                                                max_pending_requests=1))
        ha, hb = host_named(cluster, "a"), host_named(cluster, "b")
        ca = await cluster.acquire(ha)
        cb = await cluster.acquire(hb)  # Envoy's per-host pool: b has none, so it may open one
        assert cluster.connections == 2
        waiting = asyncio.ensure_future(cluster.acquire(ha))
        await settle(lambda: cluster.pending == 1)
        cluster.release(hb, cb, reusable=True)  # an idle b connection does not serve a's queue
        await asyncio.sleep(0)
        assert not waiting.done()
        cluster.release(ha, ca, reusable=True)
        assert await waiting is ca
        cluster.release(ha, ca, reusable=True)
        cluster.close()
        a.close()
        b.close()

    run(body())


def test_a_cancelled_waiter_leaves_the_queue_and_gives_back_what_it_was_handed() -> None:
    async def body() -> None:
        up = await Upstream("rec").start()
        cluster = make_cluster([up.endpoint()], limits=PoolLimits(max_connections=1, max_pending_requests=5))
        host = cluster.hosts[0]
        first = await cluster.acquire(host)
        waiting = asyncio.ensure_future(cluster.acquire(host))
        await settle(lambda: cluster.pending == 1)
        waiting.cancel()  # a route timeout while queued
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert cluster.pending == 0 and not cluster.waiters
        # handed a connection and cancelled before it could run: the connection is not lost
        late = asyncio.ensure_future(cluster.acquire(host))
        await settle(lambda: cluster.pending == 1)
        cluster.release(host, first, reusable=True)
        late.cancel()
        with pytest.raises(asyncio.CancelledError):
            await late
        assert cluster.connections == 1 and list(host.idle) == [first] and cluster.active_requests == 0
        # same with a reserved slot (the connection was closed, one per connection)
        conn = await cluster.acquire(host)
        late = asyncio.ensure_future(cluster.acquire(host))
        await settle(lambda: cluster.pending == 1)
        cluster.release(host, conn, reusable=False)
        late.cancel()
        with pytest.raises(asyncio.CancelledError):
            await late
        assert cluster.connections == 0 and cluster.pending == 0 and cluster.active_requests == 0
        up.close()

    run(body())


def test_connect_failure_frees_the_slot() -> None:
    async def body() -> None:
        cluster = make_cluster([endpoint("gone", closed_port())], limits=PoolLimits(max_connections=1))
        with pytest.raises(ConnectFailure):
            await cluster.acquire(cluster.hosts[0])
        assert cluster.connections == 0 and cluster.pending == 0 and cluster.active_requests == 0

    run(body())


def test_keep_alive_connections_are_reused_without_limits() -> None:
    async def body() -> None:
        up = await Upstream("rec").start()
        cluster = make_cluster([up.endpoint()])
        host = cluster.hosts[0]
        conn = await cluster.acquire(host)
        assert await roundtrip(conn) == 200
        cluster.release(host, conn, reusable=True)
        again = await cluster.acquire(host)
        assert again is conn and conn.requests == 1
        cluster.release(host, again, reusable=True)
        cluster.close()
        up.close()

    run(body())
