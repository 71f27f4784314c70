"""HEAD requests on real loopback sockets (RFC 9110 9.3.2, RFC 9112 6.3): the answer is the GET's
head, ``content-length`` telling the GET body's size, and never a body.

* a server answers HEAD with the handler's status and headers and no body, and the same
  keep-alive connection then serves a GET correctly;
* a streamed (generated) body is never produced for a HEAD;
* a client that sent HEAD returns at the end of the head, even when the server announces a
  ``content-length`` (or chunked framing) and keeps the connection open, and reuses the connection;
* a server that sends a body anyway: its connection is not reused;
* through a proxy hop (router + telemetry): the client gets the upstream's ``content-length`` and no
  body, the connection stays reusable, and the record says method HEAD and 0 bytes sent;
* through a sidecar's inbound listener, an app's HEAD answer framed as Envoy's HTTP/1 codec frames it:
  its ``content-length`` kept; without one (chunked or no framing at all) ``transfer-encoding: chunked``
  and still no body (Envoy guesses the GET would be chunked); 204 and 304 with neither header.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from meshkit.backends.local.proxy.config import ProxyIdentity
from meshkit.backends.local.proxy.exchange import Exchange
from meshkit.backends.local.proxy.router import Router
from meshkit.backends.local.proxy.sidecar import Sidecar
from meshkit.backends.local.proxy.telemetry import Telemetry
from meshkit.http1 import GeneratedBody, Request, Response, connect, serve
from meshkit.telemetry.record import RequestRecord
from tests.proxy.support import CLUSTER, endpoint, make_cluster, make_route, prepare, run

BODY = b"recommendation v1 from 'recommendation-v1-abc': 1\n"
# A HEAD answered by waiting for a body that never comes would hang until this; a correct one
# returns in milliseconds even on a saturated box.
PATIENCE = 5.0


async def _app(req: Request) -> Response:
    return Response(200, {"content-type": "text/plain", "x-app": "yes"}, BODY)


async def _read_head(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return head, headers


async def _head_then_get(port: int, path: bytes = b"/") -> tuple[dict[str, str], bytes, dict[str, str], bytes]:
    """HEAD then GET on one raw keep-alive connection; what follows each head, exactly."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"HEAD " + path + b" HTTP/1.1\r\nhost: recommendation:8080\r\n\r\n")
    _, head_headers = await _read_head(reader)
    writer.write(b"GET " + path + b" HTTP/1.1\r\nhost: recommendation:8080\r\n\r\n")
    # had the server sent a body for the HEAD, it would be read here as the GET's status line
    status_line, get_headers = await _read_head(reader)
    assert status_line.startswith(b"HTTP/1.1 200"), status_line
    body = await asyncio.wait_for(reader.readexactly(int(get_headers["content-length"])), PATIENCE)
    writer.write_eof()
    rest = await asyncio.wait_for(reader.read(), PATIENCE)  # nothing more on the wire
    writer.close()
    return head_headers, rest, get_headers, body


def test_a_server_answers_head_with_the_gets_headers_and_no_body_and_keeps_the_connection() -> None:
    async def body() -> None:
        server = await serve(_app, "127.0.0.1", 0)
        head, rest, get, got = await _head_then_get(server.sockets[0].getsockname()[1])
        assert head["content-length"] == str(len(BODY)) and head["x-app"] == "yes"
        assert "connection" not in head  # kept alive
        assert got == BODY and get["content-length"] == str(len(BODY))
        assert rest == b""
        server.close()

    run(body())


def test_a_generated_body_is_never_produced_for_a_head() -> None:
    made = {"pieces": 0}
    size = 64 * 2**20

    async def handler(req: Request) -> Response:
        async def pieces() -> AsyncIterator[bytes]:
            while True:
                made["pieces"] += 1
                yield b"x" * 65536

        return Response(200, {"content-type": "application/octet-stream"}, stream=GeneratedBody(pieces(), size))

    async def body() -> None:
        server = await serve(handler, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        writer.write(b"HEAD /bytes HTTP/1.1\r\nhost: x\r\n\r\n")
        _, headers = await _read_head(reader)
        assert headers["content-length"] == str(size)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), PATIENCE) == b""
        writer.close()
        server.close()

    run(body())
    assert made["pieces"] == 0


async def _raw_upstream(head_answer: bytes, extra: bytes = b"") -> asyncio.base_events.Server:
    """An upstream that answers HEAD with ``head_answer`` (+ ``extra``), GET with ``BODY``, and keeps
    the connection open between requests."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                if request.startswith(b"HEAD"):
                    writer.write(head_answer + extra)
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(BODY), BODY))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_the_client_returns_at_the_end_of_a_heads_answer_and_reuses_the_connection() -> None:
    answers = [
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1234\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n",  # no framing at all
    ]

    async def body() -> None:
        for answer in answers:
            for limit in (None, 1024):  # a buffering client and a proxy's streaming one
                up = await _raw_upstream(answer)
                conn = await connect("127.0.0.1", up.sockets[0].getsockname()[1], stream_limit=limit)
                resp = await asyncio.wait_for(conn.roundtrip(Request("HEAD", "/", {"host": "x"})), PATIENCE)
                assert resp.status == 200 and resp.body == b"" and resp.stream is None and resp.keep_alive
                if b"1234" in answer:
                    assert resp.headers["content-length"] == "1234"
                assert conn.usable
                resp = await asyncio.wait_for(conn.roundtrip(Request("GET", "/", {"host": "x"})), PATIENCE)
                assert resp.status == 200 and resp.body == BODY
                conn.close()
                up.close()

    run(body())


def test_a_server_that_sends_a_body_for_a_head_loses_its_connection() -> None:
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"

    async def body() -> None:
        up = await _raw_upstream(answer, extra=b"hello")
        conn = await connect("127.0.0.1", up.sockets[0].getsockname()[1])
        resp = await asyncio.wait_for(conn.roundtrip(Request("HEAD", "/", {"host": "x"})), PATIENCE)
        assert resp.status == 200 and resp.body == b""
        assert not conn.usable  # "hello" would be read as the next response
        up.close()

    run(body())


def _proxy(router: Router, telemetry: Telemetry) -> Callable[[Request], Awaitable[Response]]:
    async def handle(req: Request) -> Response:
        ex = Exchange(req, RequestRecord(proxy="proxy", reporter="source", start_time=time.time()))
        ex.route = make_route()
        started = time.perf_counter()
        resp = await router(ex)
        telemetry.finish_at_end(ex, resp, started, None)
        return resp

    return handle


def test_head_through_a_proxy_hop_keeps_the_upstreams_length_and_logs_head_with_no_bytes() -> None:
    async def body() -> None:
        up = await serve(_app, "127.0.0.1", 0)
        cluster = make_cluster([endpoint("up", up.sockets[0].getsockname()[1])])
        router = Router(lambda: {CLUSTER: cluster}, random.Random(1), asyncio.sleep, prepare, lambda: False)
        telemetry = Telemetry(ProxyIdentity("proxy", "proxy", "v1", {"app": "proxy"}), enabled=True)
        px = await serve(_proxy(router, telemetry), "127.0.0.1", 0)
        started = time.perf_counter()
        head, rest, _, got = await _head_then_get(px.sockets[0].getsockname()[1])
        elapsed = time.perf_counter() - started
        assert head["content-length"] == str(len(BODY)) and head["x-app"] == "yes"
        assert got == BODY and rest == b""
        assert elapsed < PATIENCE
        head_rec, get_rec = list(telemetry.access_log._records)[-2:]
        assert head_rec.method == "HEAD" and head_rec.response_code == 200 and head_rec.bytes_sent == 0
        assert head_rec.response_flags == "-"
        assert get_rec.method == "GET" and get_rec.bytes_sent == len(BODY)
        assert cluster.connections == 1  # the upstream connection served both: HEAD left it reusable
        px.close()
        up.close()

    run(body())


def test_a_proxys_own_reply_to_head_has_its_length_and_no_body() -> None:
    async def body() -> None:
        cluster = make_cluster([])  # no endpoint: the router answers 503 itself
        router = Router(lambda: {CLUSTER: cluster}, random.Random(1), asyncio.sleep, prepare, lambda: False)
        telemetry = Telemetry(ProxyIdentity("proxy", "proxy", "v1", {"app": "proxy"}), enabled=True)
        px = await serve(_proxy(router, telemetry), "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", px.sockets[0].getsockname()[1])
        writer.write(b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\n")
        status, headers = await _read_head(reader)
        assert status.startswith(b"HTTP/1.1 503") and int(headers["content-length"]) > 0
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), PATIENCE) == b""
        writer.close()
        rec = telemetry.access_log._records[-1]
        assert rec.method == "HEAD" and rec.response_code == 503 and rec.bytes_sent == 0
        px.close()

    run(body())


def test_a_sidecar_frames_an_apps_head_answer_as_envoys_codec_does() -> None:
    identity = ProxyIdentity("preference-v1-6b8c7f5d9c-x2x7q", "preference", "v1",
                             {"app": "preference", "version": "v1"}, "tutorial", "preference")
    # the app's HEAD answer -> (content-length, transfer-encoding) the client must get
    cases = [
        (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n", None, "chunked"),  # no framing at all
        (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n", None, "chunked"),
        (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1234\r\n\r\n", "1234", None),
        (b"HTTP/1.1 204 No Content\r\n\r\n", None, None),
        (b"HTTP/1.1 304 Not Modified\r\netag: x\r\n\r\n", None, None),
    ]

    async def body() -> None:
        for answer, length, coding in cases:
            app = await _raw_upstream(answer)
            sidecar = Sidecar(identity, app_port=app.sockets[0].getsockname()[1])
            await sidecar.start()
            try:
                # HEAD then GET on one connection: a body sent after the HEAD's head would be read as
                # the GET's status line, and anything left over shows in ``rest``
                head, rest, _, got = await _head_then_get(sidecar.ports["inbound"])
            finally:
                await sidecar.stop()
                app.close()
            assert (head.get("content-length"), head.get("transfer-encoding")) == (length, coding), (answer, head)
            assert got == BODY and rest == b""

    run(body())
