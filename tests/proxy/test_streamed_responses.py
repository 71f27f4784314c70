"""Response bodies streamed through a proxy hop, on real loopback sockets.

* a response larger than the buffer limit reaches the client at headers time and flows with
  back-pressure: a slow client slows the upstream's producer, so what is in flight stays bounded;
* the router holds the upstream connection until the body ended, then pools it again; the access
  record (bytes, duration) is written at the end of the body;
* a client gone mid-body: flag DC, the upstream connection closed and its producer stopped;
* a streamed 5xx is dropped with its connection and retried (nothing went downstream yet);
* a mirror's streamed answer is read and dropped, its connection freed;
* a pooled client never hands out a connection whose response body is still unread;
* an upstream that resets mid-body: the client's connection is reset (a short body), the record
  says UC ``upstream_reset_after_response_started{connection_termination}`` as Envoy's does, and the
  connection is not reused; a route timeout that expires mid-body resets the response with UT.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from meshkit.backends.local.proxy.cluster import Cluster
from meshkit.backends.local.proxy.config import Mirror, ProxyIdentity, RetryPolicy
from meshkit.backends.local.proxy.exchange import Exchange
from meshkit.backends.local.proxy.router import Router
from meshkit.backends.local.proxy.telemetry import Telemetry
from meshkit.http1 import GeneratedBody, Limits, Request, Response, SimpleClient, serve
from meshkit.telemetry.record import RequestRecord
from tests.proxy.support import CLUSTER, endpoint, make_cluster, make_route, prepare, run

MB = 2**20
RATE = 16 * MB  # the slow client's reading speed
# Without back-pressure the producer would be the whole body ahead within a second. With it, the
# lead is what the buffers on the way hold: the proxy's 1 MiB limit plus the kernel's socket
# buffers of two loopback hops (autotuned, a few MB each).
LEAD_BOUND = 24 * MB


class Producer:
    """An upstream app whose ``/bytes`` body is made piece by piece, counting what it made."""

    def __init__(self, size: int, piece: int = 64 * 1024) -> None:
        self.size, self.piece = size, piece
        self.made = 0

    async def handle(self, req: Request) -> Response:
        async def pieces() -> AsyncIterator[bytes]:
            while self.made < self.size:
                n = min(self.piece, self.size - self.made)
                self.made += n
                yield b"p" * n

        return Response(200, {"content-type": "application/octet-stream"}, stream=GeneratedBody(pieces(), self.size))


async def _cut_upstream(size: int, sent: int, stall: bool = False) -> asyncio.base_events.Server:
    """An upstream that announces ``size`` bytes, sends ``sent`` and then closes (or stalls)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: %d\r\n\r\n" % size)
        writer.write(b"c" * sent)
        await writer.drain()
        if stall:
            await asyncio.wait_for(reader.read(), 30)  # until the proxy gives up on it
        writer.transport.abort()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def _proxy(router: Router, telemetry: Telemetry,
           route_timeout: float | None = None) -> Callable[[Request], Awaitable[Response]]:
    """A proxy listener: route → router, the access record finished when the response ends."""

    async def handle(req: Request) -> Response:
        ex = Exchange(req, RequestRecord(proxy="proxy", reporter="source", start_time=time.time()))
        ex.route = make_route(timeout=route_timeout)
        started = time.perf_counter()
        resp = await router(ex)
        telemetry.finish_at_end(ex, resp, started, None)
        return resp

    return handle


async def _get(port: int, read_rate: float = 0.0) -> tuple[bytes, bytes, bool]:
    """GET / and read until the server closes or the body ends; (head, body, reset)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /bytes HTTP/1.1\r\nhost: recommendation:8080\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
    body = bytearray()
    started = time.perf_counter()
    reset = False
    try:
        while len(body) < length:
            chunk = await asyncio.wait_for(reader.read(64 * 1024), 20)
            if not chunk:
                reset = True
                break
            body += chunk
            if read_rate:
                await asyncio.sleep(max(0.0, len(body) / read_rate - (time.perf_counter() - started)))
    except ConnectionResetError:
        reset = True
    writer.close()
    return head, bytes(body), reset


def _setup(upstream_port: int) -> tuple[Router, Telemetry, Cluster]:
    cluster = make_cluster([endpoint("up", upstream_port)])
    router = Router(lambda: {CLUSTER: cluster}, random.Random(1), asyncio.sleep, prepare, lambda: False)
    telemetry = Telemetry(ProxyIdentity("proxy", "proxy", "v1", {"app": "proxy"}), enabled=True)
    return router, telemetry, cluster


def test_a_slow_client_back_pressures_the_upstream_producer_through_the_proxy() -> None:
    """64 MB read at 16 MB/s: the producer is never more than a few buffers ahead of the reader."""
    size, limit = 64 * MB, Limits().buffer_limit
    producer = Producer(size)
    lead = {"max": 0}

    async def body() -> None:
        up = await serve(producer.handle, "127.0.0.1", 0)
        router, telemetry, cluster = _setup(up.sockets[0].getsockname()[1])
        px = await serve(_proxy(router, telemetry), "127.0.0.1", 0)
        port = px.sockets[0].getsockname()[1]

        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=limit)
        writer.write(b"GET /bytes HTTP/1.1\r\nhost: recommendation:8080\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"content-length: %d" % size in head
        got, started = 0, time.perf_counter()
        while got < size:
            chunk = await asyncio.wait_for(reader.read(256 * 1024), 20)
            assert chunk
            got += len(chunk)
            lead["max"] = max(lead["max"], producer.made - got)
            await asyncio.sleep(max(0.0, got / RATE - (time.perf_counter() - started)))
        writer.close()
        await asyncio.sleep(0.05)
        # the record is written once the body is over, with every byte counted
        rec = telemetry.access_log._records[-1]
        assert rec.response_code == 200 and rec.bytes_sent == size and rec.response_flags == "-"
        # the body's time, not the headers': at least what the reader took past what buffers can hold
        assert rec.duration_ms >= 1000 * (size - LEAD_BOUND) / RATE
        assert cluster.active_requests == 0 and cluster.connections == 1  # released and pooled
        px.close()
        up.close()

    run(body())
    print(f"producer's largest lead over the reader: {lead['max'] / MB:.1f} MB of {size / MB:.0f} MB")
    assert lead["max"] < LEAD_BOUND, lead


def test_an_upstream_reset_mid_body_resets_the_client_and_is_logged_uc() -> None:
    size, sent = 8 * MB, 3 * MB

    async def body() -> None:
        up = await _cut_upstream(size, sent)
        router, telemetry, cluster = _setup(up.sockets[0].getsockname()[1])
        px = await serve(_proxy(router, telemetry), "127.0.0.1", 0)
        head, got, reset = await _get(px.sockets[0].getsockname()[1])
        assert head.startswith(b"HTTP/1.1 200") and reset and len(got) < size
        await asyncio.sleep(0.05)
        rec = telemetry.access_log._records[-1]
        assert rec.response_code == 200 and rec.response_flags == "UC"
        assert rec.response_code_details == "upstream_reset_after_response_started{connection_termination}"
        assert len(got) <= rec.bytes_sent <= sent
        assert cluster.active_requests == 0 and cluster.connections == 0
        px.close()
        up.close()

    run(body())


def test_a_route_timeout_expiring_mid_body_resets_the_response_with_ut() -> None:
    size, sent = 8 * MB, 2 * MB

    async def body() -> None:
        up = await _cut_upstream(size, sent, stall=True)
        router, telemetry, cluster = _setup(up.sockets[0].getsockname()[1])
        px = await serve(_proxy(router, telemetry, route_timeout=1.0), "127.0.0.1", 0)
        head, got, reset = await _get(px.sockets[0].getsockname()[1])
        assert head.startswith(b"HTTP/1.1 200") and reset and len(got) < size
        await asyncio.sleep(0.05)
        rec = telemetry.access_log._records[-1]
        assert rec.response_flags == "UT" and rec.response_code_details == "upstream_response_timeout"
        assert rec.duration_ms >= 990.0  # the route timeout ran on after the headers (1 ms: timer resolution)
        assert cluster.active_requests == 0 and cluster.connections == 0
        assert cluster.stats["upstream_rq_timeout"] == 0  # headers were seen
        px.close()
        up.close()

    run(body())


def test_a_client_gone_mid_body_is_logged_dc_and_the_upstream_connection_closed() -> None:
    size = 64 * MB
    producer = Producer(size)

    async def body() -> None:
        up = await serve(producer.handle, "127.0.0.1", 0)
        router, telemetry, cluster = _setup(up.sockets[0].getsockname()[1])
        px = await serve(_proxy(router, telemetry), "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", px.sockets[0].getsockname()[1])
        writer.write(b"GET /bytes HTTP/1.1\r\nhost: recommendation:8080\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(2 * MB)
        writer.transport.abort()  # the client goes away with most of the body unread
        for _ in range(200):
            if telemetry.access_log._records:
                break
            await asyncio.sleep(0.01)
        rec = telemetry.access_log._records[-1]
        assert rec.response_flags == "DC" and rec.response_code_details == "downstream_remote_disconnect"
        assert 2 * MB <= rec.bytes_sent < size
        await asyncio.sleep(0.1)
        assert cluster.active_requests == 0 and cluster.connections == 0
        assert producer.made < size  # the upstream stopped making it
        px.close()
        up.close()

    run(body())


def test_a_streamed_5xx_is_dropped_with_its_connection_and_retried() -> None:
    """Nothing went downstream yet when a 503's headers arrive: Envoy resets that upstream request
    and retries; the large 503 body is never read whole."""
    calls = {"n": 0}

    async def flaky(req: Request) -> Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return Response(503, {}, stream=GeneratedBody(_pieces(32 * MB), 32 * MB))
        return Response(200, {}, b"fine")

    async def body() -> None:
        up = await serve(flaky, "127.0.0.1", 0)
        cluster = make_cluster([endpoint("up", up.sockets[0].getsockname()[1])])
        router = Router(lambda: {CLUSTER: cluster}, random.Random(1), _no_sleep, prepare, lambda: False)
        ex = Exchange(Request("GET", "/", {"host": "recommendation:8080"}),
                      RequestRecord(proxy="proxy", reporter="source"))
        ex.route = make_route(retry=RetryPolicy(num_retries=1, retry_on=frozenset({"5xx"}), explicit=True))
        resp = await router(ex)
        assert resp.status == 200 and resp.body == b"fine" and resp.stream is None and calls["n"] == 2
        assert cluster.active_requests == 0 and cluster.connections == 1  # the 503's connection closed
        up.close()

    run(body())


async def _no_sleep(seconds: float) -> None:
    return None


async def _pieces(size: int) -> AsyncIterator[bytes]:
    for _ in range(size // (64 * 1024)):
        yield b"e" * (64 * 1024)


def test_a_pooled_client_never_reuses_a_connection_before_its_body_was_read() -> None:
    async def body() -> None:
        async def handle(req: Request) -> Response:
            return Response(200, {}, stream=GeneratedBody(_pieces(4 * MB), 4 * MB))

        up = await serve(handle, "127.0.0.1", 0)
        client = SimpleClient("127.0.0.1", up.sockets[0].getsockname()[1], stream_limit=Limits().buffer_limit)
        first = await client.request("GET", "/", {"host": "x"})
        assert first.stream is not None and not client.idle  # held while its body is unread
        second = await client.request("GET", "/", {"host": "x"})  # a new connection, not the busy one
        assert second.stream is not None
        assert await first.stream.discard() == 4 * MB and await second.stream.discard() == 4 * MB
        assert len(client.idle) == 2  # both back in the pool once read to the end
        client.close()
        up.close()

    run(body())


def test_a_mirrors_streamed_answer_is_read_and_dropped_and_its_connection_pooled() -> None:
    """The shadow's reply never reaches the client: Envoy reads and drops it; its connection is
    then free for the next shadow."""
    shadow_cluster = "outbound|8080|v2|recommendation.tutorial.svc.cluster.local"

    async def big(req: Request) -> Response:
        return Response(200, {}, stream=GeneratedBody(_pieces(8 * MB), 8 * MB))

    async def small(req: Request) -> Response:
        return Response(200, {}, b"primary")

    async def body() -> None:
        primary, shadow = await serve(small, "127.0.0.1", 0), await serve(big, "127.0.0.1", 0)
        main_cluster = make_cluster([endpoint("v1", primary.sockets[0].getsockname()[1])])
        mirror_cluster = make_cluster([endpoint("v2", shadow.sockets[0].getsockname()[1])])
        clusters = {CLUSTER: main_cluster, shadow_cluster: mirror_cluster}
        router = Router(lambda: clusters, random.Random(1), _no_sleep, prepare, lambda: False)
        route = dataclasses.replace(make_route(), mirrors=(
            Mirror(shadow_cluster, "recommendation.tutorial.svc.cluster.local", "v2", 100.0),))
        for _ in range(2):
            ex = Exchange(Request("GET", "/", {"host": "recommendation:8080"}),
                          RequestRecord(proxy="proxy", reporter="source"))
            ex.route = route
            resp = await router(ex)
            assert resp.status == 200 and resp.body == b"primary"
        for _ in range(500):
            if mirror_cluster.active_requests == 0 and mirror_cluster.stats["upstream_cx_total"] >= 1:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        assert mirror_cluster.active_requests == 0
        assert mirror_cluster.connections <= 2  # pooled again after each shadow answer was read
        primary.close()
        shadow.close()

    run(body())
