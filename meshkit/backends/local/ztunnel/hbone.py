"""HBONE: one TCP connection carried as an HTTP/2 ``CONNECT`` stream over mutual TLS (port 15008).

The client ztunnel opens TLS 1.3 with ALPN ``h2`` presenting the *source* workload's certificate,
sends ``CONNECT`` with ``:authority`` = the destination pod's ``address:targetPort``, and pipes bytes
once the destination ztunnel answers 200. A policy denial is a 401 (the client then resets the app's
connection). One stream per TLS connection keeps this simple; real ztunnel pools them.

Example::

    stream = await open_stream(port, client_ctx, "127.0.0.1:43121")
    if stream.status == 200:
        await stream.send(b"GET / HTTP/1.1\\r\\n...")
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections import deque
from collections.abc import Awaitable, Callable

import h2.config
import h2.connection
import h2.events
import h2.exceptions

READ_CHUNK = 65536
HANDSHAKE_TIMEOUT_S = 10.0


def hbone_context(ctx: ssl.SSLContext) -> ssl.SSLContext:
    """HBONE's TLS: 1.3 only, ALPN h2 (as istiod configures a waypoint's CONNECT listener)."""
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["h2"])
    return ctx


class HboneStream:
    """The one CONNECT stream of an HTTP/2 connection, as a byte pipe with HTTP/2 flow control."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 conn: h2.connection.H2Connection, stream_id: int) -> None:
        self.reader, self.writer, self.conn, self.stream_id = reader, writer, conn, stream_id
        self.status = 0
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.window = asyncio.Event()
        self.reset = False
        self._pump: asyncio.Future[None] | None = None
        self._owed: deque[int] = deque()  # flow-controlled bytes of each queued DATA frame, not yet acknowledged

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        obj = self.writer.get_extra_info("ssl_object")
        return obj if isinstance(obj, ssl.SSLObject) else None

    def start(self) -> None:
        self._pump = asyncio.ensure_future(self._read_loop())

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    def handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived) and event.stream_id == self.stream_id:
            # the window is given back when the reader takes the bytes (recv), not on arrival: a slow
            # local socket then holds the peer back instead of piling the stream up in this process
            self.inbox.put_nowait(event.data)
            self._owed.append(event.flow_controlled_length)
        elif isinstance(event, h2.events.StreamEnded) and event.stream_id == self.stream_id:
            self.inbox.put_nowait(None)
        elif isinstance(event, h2.events.StreamReset | h2.events.ConnectionTerminated):
            self.reset = True
            self.inbox.put_nowait(None)
            self.window.set()
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self.window.set()

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self.reader.read(READ_CHUNK)
                if not data:
                    break
                for event in self.conn.receive_data(data):
                    self.handle(event)
                self._flush()
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
            pass
        self.reset = self.reset or self.inbox.empty()
        self.inbox.put_nowait(None)
        self.window.set()

    async def recv(self) -> bytes | None:
        """The next bytes from the peer; None at the end of the stream (or a reset)."""
        data = await self.inbox.get()
        if data is not None and self._owed:
            with contextlib.suppress(h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
                self.conn.acknowledge_received_data(self._owed.popleft(), self.stream_id)
                self._flush()
        return data

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.reset:
                raise ConnectionResetError("HBONE stream reset")
            room = min(self.conn.local_flow_control_window(self.stream_id), self.conn.max_outbound_frame_size)
            if room <= 0:
                self.window.clear()
                await self.window.wait()
                continue
            self.conn.send_data(self.stream_id, bytes(view[:room]))
            view = view[room:]
            self._flush()
            await self.writer.drain()

    def end(self) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
            self.conn.end_stream(self.stream_id)
            self._flush()

    def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        self.writer.close()


async def open_stream(port: int, ctx: ssl.SSLContext, authority: str,
                      timeout: float = HANDSHAKE_TIMEOUT_S) -> HboneStream:
    """Connect to an HBONE listener on 127.0.0.1 and send CONNECT; ``status`` holds the answer."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=None), timeout)
    nodelay(writer)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "CONNECT"), (":authority", authority)])
    writer.write(conn.data_to_send())
    stream = HboneStream(reader, writer, conn, sid)

    async def answer() -> None:
        while not stream.status:
            data = await reader.read(READ_CHUNK)
            if not data:
                raise ConnectionResetError("HBONE peer closed before answering CONNECT")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    stream.status = int(_headers(event.headers).get(":status", "0"))
                else:
                    stream.handle(event)
            stream._flush()

    try:
        await asyncio.wait_for(answer(), timeout)
    except BaseException:
        writer.close()
        raise
    stream.start()
    return stream


#: decides a CONNECT: (stream, authority) -> status to answer; the handler then pipes on 200
Decide = Callable[[HboneStream, str], Awaitable[int]]
Serve = Callable[[HboneStream, str], Awaitable[None]]


async def serve_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, decide: Decide,
                       on_open: Serve) -> None:
    """The server side of one HBONE connection: read the CONNECT, let ``decide`` answer it."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    writer.write(conn.data_to_send())
    stream: HboneStream | None = None
    authority = ""
    try:
        async def request() -> None:
            nonlocal stream, authority
            while stream is None:
                data = await reader.read(READ_CHUNK)
                if not data:
                    raise ConnectionResetError("closed before CONNECT")
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived) and stream is None:
                        headers = _headers(event.headers)
                        stream = HboneStream(reader, writer, conn, event.stream_id)
                        authority = str(headers.get(":authority", ""))
                        if headers.get(":method") != "CONNECT":
                            authority = ""
                    elif stream is not None:
                        stream.handle(event)
                writer.write(conn.data_to_send())

        await asyncio.wait_for(request(), HANDSHAKE_TIMEOUT_S)
    except (TimeoutError, OSError, ssl.SSLError, h2.exceptions.ProtocolError):
        writer.close()
        return
    assert stream is not None
    status = await decide(stream, authority) if authority else 400
    conn.send_headers(stream.stream_id, [(":status", str(status))], end_stream=status != 200)
    stream._flush()
    if status != 200:
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.drain()
        writer.close()
        return
    stream.start()
    try:
        await on_open(stream, authority)
    finally:
        stream.close()


def _headers(raw: object) -> dict[str, str]:
    """h2 gives str pairs with a header_encoding set; typed loosely upstream."""
    out: dict[str, str] = {}
    for k, v in raw or []:  # type: ignore[attr-defined]
        key = k.decode() if isinstance(k, bytes) else str(k)
        out[key] = v.decode() if isinstance(v, bytes) else str(v)
    return out


def nodelay(writer: asyncio.StreamWriter | asyncio.BaseTransport) -> None:
    """No Nagle delay on a tunnel's sockets: small HTTP messages go out at once."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST, as ztunnel does to the app's connection on a denial (curl exit 56)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, ValueError):  # ValueError: the socket is closed already
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class StreamTransport(asyncio.Transport):
    """An HBONE stream as an asyncio transport, so an HTTP/1.1 protocol (a sidecar's client or its
    inbound server) runs over the tunnel unchanged. ``ssl_object`` is the outer mutual TLS: the peer's
    identity is the tunnel's. Writes keep their order and follow HTTP/2 flow control; the protocol is
    told to pause writing while more than a buffer's worth waits.

    Example::

        stream = await open_stream(port, ctx, "127.0.0.1:43121")
        transport = StreamTransport(stream, http1.ClientProtocol())   # the protocol sees connection_made
    """

    HIGH_WATER = 1 << 20

    def __init__(self, stream: HboneStream, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._stream = stream
        self._protocol = protocol
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._pending = 0
        self._paused = False
        self._closing = False
        self._lost = False
        self.done = asyncio.Event()  # set once the protocol has been told the connection is lost
        self._reading = asyncio.Event()
        self._reading.set()
        protocol.connection_made(self)
        self._tasks = [asyncio.ensure_future(self._send_loop()), asyncio.ensure_future(self._recv_loop())]

    def get_extra_info(self, name: str, default: object = None) -> object:
        if name == "ssl_object":
            return self._stream.ssl_object
        if name in ("peername", "sockname"):
            return self._stream.writer.get_extra_info(name, default)
        return default

    def is_closing(self) -> bool:
        return self._closing

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        chunk = bytes(data)
        self._pending += len(chunk)
        self._outbox.put_nowait(chunk)
        if not self._paused and self._pending > self.HIGH_WATER:
            self._paused = True
            self._protocol.pause_writing()

    def writelines(self, list_of_data: object) -> None:
        for data in list_of_data:  # type: ignore[attr-defined]
            self.write(data)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self._outbox.put_nowait(None)

    def close(self) -> None:
        """End the stream once what was written has gone (a half close, then the tunnel's end)."""
        if not self._closing:
            self._closing = True
            self._outbox.put_nowait(None)

    def abort(self) -> None:
        self._closing = True
        self._stream.reset = True
        for task in self._tasks:
            task.cancel()
        self._stream.close()
        self._lose(None)

    def pause_reading(self) -> None:
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def is_reading(self) -> bool:
        return self._reading.is_set()

    def _lose(self, exc: Exception | None) -> None:
        if not self._lost:
            self._lost = True
            self.done.set()
            self._protocol.connection_lost(exc)

    async def _send_loop(self) -> None:
        try:
            while (chunk := await self._outbox.get()) is not None:
                await self._stream.send(chunk)
                self._pending -= len(chunk)
                if self._paused and self._pending <= self.HIGH_WATER // 4:
                    self._paused = False
                    self._protocol.resume_writing()
            self._stream.end()
        except (OSError, ConnectionError, h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
            self.abort()
            return
        if self._closing:
            # our side is done; the peer's answer may still be coming (the receive loop closes the tunnel)
            await asyncio.sleep(0)

    async def _recv_loop(self) -> None:
        try:
            while True:
                await self._reading.wait()
                data = await self._stream.recv()
                if data is None:
                    break
                self._protocol.data_received(data)
            if not self._stream.reset and hasattr(self._protocol, "eof_received"):
                self._protocol.eof_received()
        finally:
            self._closing = True
            self._stream.close()
            self._lose(ConnectionResetError("HBONE stream reset") if self._stream.reset else None)


async def connect_http(port: int, ctx: ssl.SSLContext, authority: str, expected_identity: str,
                       protocol: asyncio.Protocol, timeout: float = HANDSHAKE_TIMEOUT_S) -> StreamTransport:
    """A sidecar's upstream connection to an ambient pod: HBONE to its ztunnel, the peer's certificate
    checked against the pod's identity, ``protocol`` (HTTP/1.1) run over the tunnel.

    Raises ``ConnectionRefusedError`` when the CONNECT is refused (a policy denial answers 401), and
    ``ssl.SSLError`` when the peer is not the identity the registry names."""
    from meshkit.backends.local.ca import peer_spiffe_id

    stream = await open_stream(port, ctx, authority, timeout)
    peer = peer_spiffe_id(stream.ssl_object) or ""
    if expected_identity and peer != expected_identity:
        stream.close()
        raise ssl.SSLError(f"identity verification error: peer is {peer or 'unknown'}, expected {expected_identity}")
    if stream.status != 200:
        stream.close()
        raise ConnectionRefusedError(f"HBONE CONNECT answered {stream.status}")
    return StreamTransport(stream, protocol)


async def serve_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str,
                     protocol_factory: Callable[[], asyncio.Protocol]) -> None:
    """A sidecar's HBONE listener (15008): one CONNECT to ``target`` (the pod's own address:port) carried
    into the sidecar's inbound HTTP server, the tunnel's mutual TLS standing for the connection's."""

    async def decide(_stream: HboneStream, authority: str) -> int:
        return 200 if authority == target else 400

    async def on_open(stream: HboneStream, _authority: str) -> None:
        transport = StreamTransport(stream, protocol_factory())
        await transport.done.wait()

    await serve_stream(reader, writer, decide, on_open)
