"""Envoy's limits in the HTTP/1.1 stack every proxy, app and API listener runs on (real sockets).

431 above 60 KiB or 100 request headers (refused before the rest is read), ``Expect: 100-continue``
answered by the server, bodies over the buffer limit streamed with reading paused while the
buffer is full, 413 where a body limit is set (the API), the stream idle timeout (408) and the
connection idle timeout, and the per-listener connection cap (over it: closed at accept).
"""

from __future__ import annotations

import asyncio
import socket
import time

from meshkit.http1 import BodyStream, Limits, Listener, Request, Response, connect, serve
from tests.proxy.support import run

OK = Response(200, {"content-type": "text/plain"}, b"ok\n")


async def _ok(req: Request) -> Response:
    return OK


async def _raw(port: int, data: bytes, read_timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    out = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), read_timeout):
            out += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    writer.close()
    return out


def _head(headers: dict[str, str], method: str = "GET", extra: str = "") -> bytes:
    lines = [f"{method} / HTTP/1.1", "host: x", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode("latin-1")


def test_request_headers_over_60_kib_or_100_headers_get_431() -> None:
    async def body() -> None:
        server = await serve(_ok, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        big = await _raw(port, _head({"x-big": "a" * 100 * 1024}))
        assert big.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
        assert b"connection: close" in big and big.endswith(b"Request Header Fields Too Large")
        many = await _raw(port, _head({f"x-h{i}": "v" for i in range(101)}))
        assert many.startswith(b"HTTP/1.1 431")
        fits = await _raw(port, _head({"x-big": "a" * 59 * 1024, "connection": "close"}))
        assert fits.startswith(b"HTTP/1.1 200")  # Envoy's limit is on 60 KiB: just under it passes
        server.close()

    run(body())


def test_an_endless_header_is_refused_before_it_is_read() -> None:
    """A 64 MB header: the server answers 431 after about 68 KiB and reads no further."""

    async def body() -> None:
        server = await serve(_ok, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answer = asyncio.ensure_future(reader.read(4096))  # read while sending, as curl does
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nx-big: ")
        sent = 0
        started = time.perf_counter()
        try:
            while sent < 64 * 2**20 and not answer.done():
                writer.write(b"a" * 65536)
                await asyncio.wait_for(writer.drain(), 5)
                sent += 65536
        except (ConnectionResetError, BrokenPipeError, TimeoutError):
            pass
        assert (await asyncio.wait_for(answer, 5)).startswith(b"HTTP/1.1 431")
        assert sent < 16 * 2**20  # refused long before the 64 MB were sent
        assert time.perf_counter() - started < 5
        writer.close()
        server.close()

    run(body())


def test_expect_100_continue_is_answered_and_not_passed_on() -> None:
    seen: list[dict[str, str]] = []

    async def handler(req: Request) -> Response:
        seen.append(dict(req.headers))
        return Response(200, {}, req.body)

    async def body() -> None:
        server = await serve(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_head({"expect": "100-continue", "content-length": "5"}, "POST"))
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"  # before any byte of the body was sent
        writer.write(b"hello")
        final = await asyncio.wait_for(reader.readuntil(b"hello"), 5)
        assert final.startswith(b"HTTP/1.1 200")
        assert "expect" not in seen[0]
        writer.close()
        server.close()

    run(body())


def test_a_large_body_is_streamed_with_bounded_buffering_through_a_proxy_hop() -> None:
    """client → proxy (forwards the stream) → upstream that reads slowly: 32 MB pass, memory bounded."""
    limit = 64 * 1024
    peak = {"proxy": 0}
    received = {"bytes": 0}

    async def upstream(req: Request) -> Response:
        assert req.stream is not None and req.body == b""
        while chunk := await req.stream.read():
            received["bytes"] += len(chunk)
            await asyncio.sleep(0)  # a slow reader
        return Response(200, {}, b"%d" % received["bytes"])

    async def body() -> None:
        up = await serve(upstream, "127.0.0.1", 0, limits=Limits(buffer_limit=limit))
        up_port = up.sockets[0].getsockname()[1]

        async def proxy(req: Request) -> Response:
            assert req.stream is not None
            conn = await connect("127.0.0.1", up_port)
            task = asyncio.ensure_future(conn.roundtrip(Request(req.method, req.path, dict(req.headers),
                                                                 stream=req.stream)))
            while not task.done():
                peak["proxy"] = max(peak["proxy"], req.stream._buffered)
                await asyncio.sleep(0.001)
            return task.result()

        px = await serve(proxy, "127.0.0.1", 0, limits=Limits(buffer_limit=limit))
        port = px.sockets[0].getsockname()[1]
        total = 32 * 2**20
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_head({"content-length": str(total)}, "POST"))
        for _ in range(total // 65536):
            writer.write(b"z" * 65536)
            await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 30)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"%d" % total)
        # what the proxy held never grew beyond one buffer and the chunk that crossed it
        assert 0 < peak["proxy"] <= limit + 256 * 1024
        writer.close()
        px.close()
        up.close()

    run(body())


def test_chunked_bodies_switch_to_streaming_past_the_buffer_limit() -> None:
    got: list[tuple[bool, int]] = []

    async def handler(req: Request) -> Response:
        if req.stream is not None:
            got.append((True, await req.stream.discard()))
        else:
            got.append((False, len(req.body)))
        return OK

    async def body() -> None:
        server = await serve(handler, "127.0.0.1", 0, limits=Limits(buffer_limit=1000))
        port = server.sockets[0].getsockname()[1]
        small = _head({"transfer-encoding": "chunked"}, "POST") + b"a\r\n" + b"x" * 10 + b"\r\n0\r\n\r\n"
        large = _head({"transfer-encoding": "chunked", "connection": "close"}, "POST") + (
            b"3e8\r\n" + b"y" * 1000 + b"\r\n") * 5 + b"0\r\n\r\n"
        answer = await _raw(port, small + large)
        assert answer.count(b"HTTP/1.1 200") == 2
        assert got == [(False, 10), (True, 5000)]
        server.close()

    run(body())


def test_a_body_limit_answers_413_with_the_api_servers_words() -> None:
    """Kubernetes' API server says "Request entity too large: limit is 3145728" over its 3 MiB."""
    async def body() -> None:
        server = await serve(_ok, "127.0.0.1", 0, limits=Limits(max_body=3 * 1024 * 1024))
        port = server.sockets[0].getsockname()[1]
        answer = await _raw(port, _head({"content-length": str(4 * 2**20)}, "POST") + b"x" * 1000)
        assert answer.startswith(b"HTTP/1.1 413")
        assert answer.endswith(b"Request entity too large: limit is 3145728")
        server.close()

    run(body())


def test_stream_idle_timeout_answers_408_and_idle_connections_close() -> None:
    async def body() -> None:
        limits = Limits(stream_idle_timeout=0.3, idle_timeout=0.5)
        server = await serve(_ok, "127.0.0.1", 0, limits=limits)
        port = server.sockets[0].getsockname()[1]
        started = time.perf_counter()
        slow = await _raw(port, b"GET / HTTP/1.1\r\nhost: x\r\nx-half: ")  # and then nothing
        assert slow.startswith(b"HTTP/1.1 408") and slow.endswith(b"stream timeout")
        assert 0.3 <= time.perf_counter() - started < 3
        started = time.perf_counter()
        idle = await _raw(port, _head({}))  # one complete request, then the keep-alive connection idles
        assert idle.startswith(b"HTTP/1.1 200") and idle.count(b"HTTP/1.1") == 1
        assert 0.5 <= time.perf_counter() - started < 3  # closed by the server, not by the read timeout
        server.close()

    run(body())


def test_connections_over_the_listener_cap_are_closed_at_accept() -> None:
    async def body() -> None:
        listener = Listener(Limits(max_connections=3))
        server = await serve(_ok, "127.0.0.1", 0, listener=listener)
        port = server.sockets[0].getsockname()[1]
        held = [await connect("127.0.0.1", port) for _ in range(3)]
        for conn in held:
            assert (await conn.roundtrip(Request("GET", "/", {"host": "x"}))).status == 200
        extra = await _raw(port, _head({}), read_timeout=2)
        assert extra == b""  # accepted and closed at once, unanswered
        assert listener.overflow == 1 and listener.open == 3
        held[0].close()
        await asyncio.sleep(0.05)
        assert (await _raw(port, _head({"connection": "close"}))).startswith(b"HTTP/1.1 200")
        for conn in held[1:]:
            conn.close()
        server.close()

    run(body())


def test_a_tap_that_falls_a_buffer_behind_is_dropped_and_the_main_reader_is_not_slowed() -> None:
    async def body() -> None:
        a, b = socket.socketpair()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
        main = BodyStream(transport, 1000, None)  # type: ignore[arg-type]
        tap = main.tap()
        for _ in range(5):
            main.feed(b"x" * 400)
            assert await main.read() == b"x" * 400  # the main reader goes on at its own pace
        main.finish()
        assert await main.read() == b""
        assert tap.dropped  # the tap was never read: cut off once a buffer behind
        transport.close()
        b.close()

    run(body())
