"""HTTP/1.1 on asyncio Protocols with httptools: a server and a client connection.

This is the per-request stack of the whole local mesh (sidecars, gateway and sample apps): no
framework, no per-request allocations beyond the request itself. Measured on a 2-core box this
design costs about a fifth of the CPU of an aiohttp server and client (see the benchmarks).

Every server keeps Envoy's limits (:class:`Limits`): 60 KiB and 100 request headers (431 above),
a body larger than the 1 MiB buffer limit streamed through :class:`BodyStream` with reading paused
while the buffer is full, ``Expect: 100-continue`` answered by the server itself, a stream idle
timeout (408 ``stream timeout``) and a connection idle timeout, and a cap on open connections per
listener (connections over it are closed as soon as they are accepted, like Envoy's overflow).

Example::

    async def hello(req: Request) -> Response:
        return Response(200, {"content-type": "text/plain"}, b"hi\\n")

    server = await serve(hello, port=0)
    conn = await connect("127.0.0.1", server.sockets[0].getsockname()[1])
    resp = await conn.roundtrip(Request("GET", "/", {"host": "x"}))
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import httptools

__all__ = [
    "BodyStream",
    "BulkPacer",
    "ConnectFailure",
    "Connection",
    "DownstreamReset",
    "GeneratedBody",
    "Limits",
    "Listener",
    "Refusal",
    "Request",
    "ResetConnection",
    "Response",
    "StreamTimeout",
    "UpstreamReset",
    "connect",
    "head_response",
    "install_pacer",
    "pace_bulk",
    "serve",
]

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}
)
_REASONS = {s.value: s.phrase for s in HTTPStatus}
_BACKGROUND: set[asyncio.Future[Any]] = set()
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Limits:
    """What one listener accepts; the defaults are Envoy's (Istio keeps them).

    ``max_body`` is for servers that are not proxies (the control plane, an admin port): a body
    larger than it is refused with 413, as the Kubernetes API server refuses one over 3 MiB.
    Proxies leave it ``None`` and stream any body larger than ``buffer_limit``.

    Example::

        await serve(handler, limits=Limits(max_body=3 * 1024 * 1024))
    """

    max_request_headers_kb: int = 60  # HttpConnectionManager max_request_headers_kb
    max_headers_count: int = 100  # HttpProtocolOptions max_headers_count
    buffer_limit: int = 1024 * 1024  # per_connection_buffer_limit_bytes: larger bodies are streamed
    stream_idle_timeout: float = 300.0  # HttpConnectionManager stream_idle_timeout (5 min)
    idle_timeout: float = 3600.0  # HttpProtocolOptions idle_timeout of downstream connections (1 h)
    max_connections: int = 1024  # per listener; Envoy's default is unbounded, a shared host needs one
    max_body: int | None = None


DEFAULT_LIMITS = Limits()


def _run_delay_clock() -> Callable[[], float]:
    """Seconds this process has spent runnable but waiting for a CPU (Linux schedstat); a clock
    that stands still where the kernel does not say (then nothing is ever paced)."""
    try:
        fd = os.open("/proc/self/schedstat", os.O_RDONLY)
    except OSError:
        return lambda: 0.0

    def waited() -> float:
        try:
            return int(os.pread(fd, 128, 0).split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            return 0.0

    return waited


class BulkPacer:
    """Holds back bulk transfers while the CPU is contended, so they cannot starve other requests.

    A Python proxy spends tens of times Envoy's CPU per byte, so on a small shared host (two cores,
    a hub of learners) one large upload would keep every process on its path runnable and delay
    everyone else's requests by whole scheduler slices. A body (or a tunnelled stream) past its
    first ``after`` bytes is bulk. The pacer looks at the process in windows of ``window`` seconds:
    the CPU time it used and the time it spent waiting for a CPU. A window with more than
    ``contended`` of its time waited cuts the share of a core that bulk work may use by a third
    (down to ``floor``), a window without waiting gives back a twentieth (up to the whole core):
    the same additive increase and multiplicative decrease with which TCP shares a link, here
    shared by every process of the machine. Before each further bulk chunk the reader sleeps off
    any CPU used over the share. The sleep is that reader's alone: the event loop serves every other
    request meanwhile; and while the bulk reader sleeps its buffer fills and reading pauses (the
    same back-pressure as a slow client), so the process really goes idle. On an idle machine
    nothing waits and nothing is paced; requests and small bodies are never paced.

    Example::

        pacer = BulkPacer()
        await pacer.pace()          # before handing on a chunk of a bulk body
    """

    MAX_SLEEP = 0.05  # several windows' worth at the floor; never a stall

    def __init__(self, floor: float = 0.1, after: int = 1024 * 1024, window: float = 0.01,
                 contended: float = 0.1, clock: Callable[[], float] = time.perf_counter,
                 cpu_clock: Callable[[], float] = time.process_time,
                 wait_clock: Callable[[], float] | None = None) -> None:
        if not 0 < floor <= 1:
            raise ValueError(f"floor must be a share of one core, above 0 and at most 1, not {floor}")
        self.floor = floor
        self.after = after
        self.window = window
        self.contended = contended
        self.share = 1.0  # of one core, for bulk work now
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._wait_clock = wait_clock or _run_delay_clock()
        self._wall = clock()
        self._cpu = cpu_clock()
        self._waited = self._wait_clock()
        self.slept = 0.0  # seconds, in all

    def due(self) -> float:
        """Seconds to sleep now; when the current window is over, judges it and starts the next."""
        wall = self._clock()
        elapsed = wall - self._wall
        if elapsed < self.window:
            return 0.0
        cpu, waited = self._cpu_clock(), self._wait_clock()
        used, wait = cpu - self._cpu, waited - self._waited
        self._wall, self._cpu, self._waited = wall, cpu, waited
        if elapsed > 10 * self.window:
            return 0.0  # no bulk bytes moved all that while: the window says nothing about them
        if wait > self.contended * elapsed:
            self.share = max(self.floor, self.share * 2 / 3)
        else:
            self.share = min(1.0, self.share + 0.05)
            if self.share == 1.0:
                return 0.0  # a whole core: never held back (other threads may add CPU past the wall time)
        # `used` CPU seconds are within the share once the wall time reaches used / share
        debt = min(used / self.share - elapsed, self.MAX_SLEEP)
        if debt <= 0:
            return 0.0
        self._wall += debt  # the sleep is part of this window, not the next
        return debt

    async def pace(self) -> None:
        """Sleep off the CPU this process used over its share, if a window has ended."""
        debt = self.due()
        if debt:
            self.slept += debt
            await asyncio.sleep(debt)


PACER: BulkPacer | None = None  # installed by the processes that move bulk bytes (pods, ztunnel)


def install_pacer(pacer: BulkPacer | None) -> BulkPacer | None:
    """Pace this process's bulk transfers with ``pacer`` (``None``: not at all).

    Example::

        install_pacer(BulkPacer())
    """
    global PACER
    PACER = pacer
    return PACER


async def pace_bulk(moved: int) -> None:
    """Called with the bytes a stream has moved so far, before it moves more."""
    if PACER is not None and moved > PACER.after:
        await PACER.pace()


class BodyError(Exception):
    """A streamed body that cannot be read to its end (the sender went away or stalled)."""


class DownstreamReset(BodyError):
    """The client went away (or stalled past the stream idle timeout) before a streamed response ended."""


class StreamTimeout(Exception):
    """A timeout that expired while a response body was on its way: the route or per-try timeout
    (Envoy's flag UT) or the stream idle timeout (SI); ``flag`` and ``details`` say which."""

    def __init__(self, message: str, flag: str = "UT", details: str = "upstream_response_timeout") -> None:
        super().__init__(message)
        self.flag = flag
        self.details = details


EndCallback = Callable[[BaseException | None], None]


class BodyStream:
    """A body read as it arrives, with at most about ``limit`` bytes held in memory.

    The receiving connection stops reading from its socket while the buffer is over the limit
    and resumes once the reader has taken most of it, so a slow reader slows the sender instead
    of filling memory. Requests and responses both use it: a response body larger than the buffer
    limit (or of unknown length) reaches the handler as ``Response.stream`` at headers time.
    :meth:`tap` gives a second reader (a mirror) that never slows the first: when it falls a whole
    buffer behind it is cut off, as Envoy drops a shadow it cannot feed. :meth:`on_end` registers
    what must happen once the body is over (delivered to its end, failed or aborted): pool
    release, access log, stats.

    Example::

        async for chunk in req.stream:         # or: await req.stream.read() until b""
            upstream.write(chunk)
    """

    __slots__ = ("_buffered", "_chunks", "_done", "_ended", "_error", "_on_end", "_paused", "_transport",
                 "_waiter", "dropped", "length", "limit", "received", "sent", "taps")

    def __init__(self, transport: asyncio.Transport | None, limit: int, length: int | None = None) -> None:
        self._transport = transport
        self.limit = limit
        self.length = length  # the declared content-length, None when chunked
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._error: BaseException | None = None
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self.received = 0
        self.sent = 0  # bytes handed to the reader
        self.taps: list[BodyStream] = []
        self.dropped = False  # a tap cut off for falling a whole buffer behind
        self._on_end: list[EndCallback] | None = None
        self._ended = False

    @property
    def complete(self) -> bool:
        """Every byte has arrived and been read."""
        return self._done and not self._chunks

    @property
    def ended(self) -> bool:
        """The body is over for its reader: read to its end, failed or aborted."""
        return self._ended

    def on_end(self, callback: EndCallback) -> None:
        """Call ``callback(error)`` once, when the reader has the last byte (``None``) or the body
        failed or was aborted (the exception). Callbacks run in the order they were added."""
        if self._ended:
            callback(self._error)
            return
        if self._on_end is None:
            self._on_end = []
        self._on_end.append(callback)

    def _settle(self, exc: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        callbacks, self._on_end = self._on_end, None
        for callback in callbacks or ():
            callback(exc)

    def feed(self, chunk: bytes) -> bool:
        """Add arriving bytes; False when this stream is a tap that has fallen too far behind."""
        if self._error is not None:
            return False
        if not chunk:
            return True  # httptools reports an empty piece at EOF: b"" is the end marker for readers
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        self.received += len(chunk)
        if self._buffered > self.limit:
            if self._transport is None:
                self.dropped = True
                self.fail(BodyError("shadow could not keep up: dropped"))
                return False
            if not self._paused:
                self._paused = True
                self._transport.pause_reading()
        self._wake()
        return True

    def finish(self) -> None:
        self._done = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if not self._done or self._chunks:
            self._error = exc
        self._wake()
        for tap in self.taps:
            tap.fail(exc)

    def abort(self, exc: BaseException) -> None:
        """Give up on the rest of the body: the sending connection is closed (it cannot carry
        another message once a body was cut), the reader gets ``exc``, the end callbacks run."""
        self._drop(exc)

    def skip(self) -> None:
        """The body is not wanted at all (the answer to a HEAD): nothing more is read, a sending
        connection is closed (unread bytes would spoil it), the end callbacks run without error."""
        self._drop(None)

    def _drop(self, exc: BaseException | None) -> None:
        """Discard what is buffered and close the sender; the reader sees ``exc``, or a clean end."""
        if self._ended:
            return
        if exc is None:
            self._done = True
        else:
            self._error = exc
        self._chunks.clear()
        self._buffered = 0
        if self._transport is not None:
            self._transport.abort()
        self._wake()
        for tap in self.taps:
            if exc is None:
                tap.finish()
            else:
                tap.fail(exc)
        self._settle(exc)

    def tap(self) -> BodyStream:
        """A second reader of the bytes not read yet; dropped (fails) when a buffer behind."""
        tap = BodyStream(None, self.limit, self.length)
        for chunk in self._chunks:
            tap.feed(chunk)
        if self._done:
            tap.finish()
        self.taps.append(tap)
        return tap

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> bytes:
        """The next chunk, or ``b""`` at the end; raises :class:`BodyError` when it cannot end."""
        while not self._chunks:
            if self._error is not None:
                self._settle(self._error)
                raise self._error
            if self._done:
                for tap in self.taps:
                    tap.finish()
                self._settle(None)
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        self.sent += len(chunk)
        if self._paused and self._buffered <= self.limit // 4 and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        if self.taps:
            self.taps = [t for t in self.taps if t.feed(chunk)]
        if PACER is not None and self.sent > PACER.after:
            await PACER.pace()
        return chunk

    async def discard(self) -> int:
        """Read the body to its end without keeping it; the number of bytes."""
        total = 0
        while chunk := await self.read():
            total += len(chunk)
        return total

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.read()
        if not chunk:
            raise StopAsyncIteration
        return chunk


class GeneratedBody(BodyStream):
    """A response body an application produces piece by piece (an async generator of bytes).

    ``length`` is the content-length to announce (``None``: sent chunked). The server asks for the
    next piece only when the client has taken the last one, so a slow client slows the generator.

    Example::

        async def pieces():
            for _ in range(1024):
                yield b"x" * 65536

        return Response(200, {"content-type": "application/octet-stream"},
                        stream=GeneratedBody(pieces(), 64 * 2**20))
    """

    __slots__ = ("_source",)

    def __init__(self, source: AsyncIterator[bytes], length: int | None = None) -> None:
        super().__init__(None, 0, length)
        self._source = source

    async def read(self) -> bytes:
        if self._error is not None:
            self._settle(self._error)
            raise self._error
        if self._done:
            return b""
        try:
            chunk = await self._source.__anext__()
        except StopAsyncIteration:
            self._done = True
            self._settle(None)
            return b""
        except Exception as exc:
            error = BodyError(f"the body's producer failed: {exc!r}")
            self.abort(error)
            raise error from exc
        self.received += len(chunk)
        self.sent += len(chunk)
        return chunk

    def skip(self) -> None:
        close = getattr(self._source, "aclose", None)
        if close is not None and not self._ended:
            _spawn(close())
        super().skip()

    def abort(self, exc: BaseException) -> None:
        close = getattr(self._source, "aclose", None)
        if close is not None and not self._ended:
            _spawn(close())
        super().abort(exc)


@dataclass(slots=True)
class Request:
    method: str
    path: str  # the request target as sent: path and query
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes = b""
    keep_alive: bool = True
    peer: tuple[str, int] | None = None
    ssl_object: ssl.SSLObject | None = None
    local_port: int = 0
    context: dict[str, Any] = field(default_factory=dict)  # per-request scratch space for filters
    connection: dict[str, Any] | None = None  # per-connection scratch space (e.g. the peer's identity)
    stream: BodyStream | None = None  # a body too large to buffer, read as it arrives (``body`` is empty)


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    keep_alive: bool = True
    # a body sent (or received) as it comes, with bounded buffering; ``body`` is then empty
    stream: BodyStream | None = None


Handler = Callable[[Request], Awaitable[Response]]


class UpstreamReset(Exception):
    """The connection closed or reset before a complete response arrived."""


class ResetConnection(Exception):
    """Raised by a handler to reset the downstream connection instead of answering."""


class ConnectFailure(Exception):
    """The TCP (or TLS) connection could not be established."""


def _spawn(coro: Awaitable[Any]) -> None:
    """Run ``coro`` in the background, kept referenced, its failure ignored (a clean-up step)."""
    task = asyncio.ensure_future(coro)
    _BACKGROUND.add(task)
    task.add_done_callback(_forget)


def _forget(task: asyncio.Future[Any]) -> None:
    _BACKGROUND.discard(task)
    if not task.cancelled():
        task.exception()


def encode_response(resp: Response, keep_alive: bool, head: bool = False, envoy: bool = False) -> bytes:
    """The response head and, for a buffered body, the body; a streamed body's framing is
    its declared length, or chunked when it has none.

    ``head``: the answer to a HEAD request. Only the head is encoded; its framing headers describe
    the body a GET would get (RFC 9110 9.3.2): the ``content-length`` the response carries (a HEAD
    answer relayed from upstream), else the length of the body it holds. A relayed answer that came
    chunked and without a length keeps ``transfer-encoding: chunked``, as Envoy writes it.

    ``envoy``: framed as Envoy's HTTP/1 codec frames a HEAD answer (a proxy's listener). A response
    that declares no length and holds no body (an upstream's HEAD answer without ``content-length``,
    chunked or not) gets ``transfer-encoding: chunked`` and still no body: Envoy guesses that a GET
    would be chunked rather than claim an empty one. 1xx, 204 and 304 get neither header.
    """
    reason = _REASONS.get(resp.status, "Unknown")
    lines = [f"HTTP/1.1 {resp.status} {reason}"]
    for name, value in resp.headers.items():
        if name not in HOP_BY_HOP and name != "content-length":
            lines.append(f"{name}: {value}")
    stream = resp.stream
    declared = resp.headers.get("content-length") if head else None
    if declared is not None and declared.isdigit():
        lines.append(f"content-length: {declared}")
    elif head and stream is None and not resp.body and (
            envoy or "chunked" in resp.headers.get("transfer-encoding", "")):
        if not (envoy and (resp.status < 200 or resp.status in (204, 304))):
            lines.append("transfer-encoding: chunked")
    elif stream is None:
        lines.append(f"content-length: {len(resp.body)}")
    elif stream.length is not None:
        lines.append(f"content-length: {stream.length}")
    else:
        lines.append("transfer-encoding: chunked")
    if not keep_alive:
        lines.append("connection: close")
    wire = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return wire if head else wire + resp.body


def head_response(resp: Response) -> Response:
    """``resp`` (made for a GET) as the answer to a HEAD: the same status and headers, a
    ``content-length`` telling the GET body's size when it is known, and no body. A streamed body
    is given up unread (:meth:`BodyStream.skip`), so a HEAD never produces or pulls the body.

    Example::

        head = head_response(Response(200, {"content-type": "text/plain"}, b"hello\\n"))
        assert head.headers["content-length"] == "6" and head.body == b""
    """
    headers = dict(resp.headers)
    stream = resp.stream
    if "content-length" not in headers:
        if stream is None:
            headers["content-length"] = str(len(resp.body))
        elif stream.length is not None:
            headers["content-length"] = str(stream.length)
        else:
            headers["transfer-encoding"] = "chunked"
    if stream is not None:
        stream.skip()
    return Response(resp.status, headers, b"", resp.keep_alive)


def encode_request(req: Request) -> bytes:
    lines = [f"{req.method} {req.path} HTTP/1.1"]
    for name, value in req.headers.items():
        if name not in HOP_BY_HOP and name != "content-length":
            lines.append(f"{name}: {value}")
    if req.stream is not None:
        length = req.stream.length
        lines.append(f"content-length: {length}" if length is not None else "transfer-encoding: chunked")
    elif req.body or req.method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
        lines.append(f"content-length: {len(req.body)}")
    if not req.keep_alive:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + req.body


class _HeadersTooLarge(Exception):
    pass


@dataclass(slots=True)
class Refusal:
    """A request the listener answered itself before any handler saw it (Envoy's codec-level local
    reply): a protocol error (400, 431: flag ``DPE``), a stream idle timeout (408: flag ``SI``) or a
    body over ``max_body`` (413). ``method``, ``path`` and ``headers`` are known only when the whole
    request head had arrived; Envoy logs ``-`` for them otherwise.
    """

    status: int
    details: str  # Envoy's response code details: http1.codec_error, http1.headers_too_large, ...
    flag: str  # Envoy's response flag: DPE, SI, or "-"
    started: float  # wall-clock time the request (or the connection) began
    duration_ms: float
    bytes_received: int
    bytes_sent: int
    peer: tuple[str, int] | None
    local_port: int
    tls: bool
    method: str = ""
    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class Listener:
    """What the connections of one listening socket share: the limits, Envoy's ``listener.*``
    connection counters, and who is told about the requests the listener refuses itself.

    One Listener may serve several sockets that stand for one Envoy listener (a sidecar's plain and
    mTLS inbound sockets are both ``virtualInbound``).

    Example::

        seen: list[Refusal] = []
        server = await serve(handler, listener=Listener(Limits(max_connections=8), seen.append))
    """

    __slots__ = ("envoy", "limits", "on_refusal", "open", "overflow", "total")

    def __init__(self, limits: Limits, on_refusal: Callable[[Refusal], None] | None = None,
                 envoy: bool = False) -> None:
        self.limits = limits
        # a proxy's listener: HTTP/1.0 refused with 426 and HEAD answers framed as Envoy's codec does
        self.envoy = envoy
        self.open = 0  # downstream_cx_active
        self.total = 0  # downstream_cx_total: connections taken (one closed over the cap is not)
        self.overflow = 0  # Envoy's downstream_cx_overflow
        self.on_refusal = on_refusal


_LOCAL_REPLY = {400: b"Bad Request", 408: b"stream timeout", 413: b"Payload Too Large",
                426: b"Upgrade Required", 431: b"Request Header Fields Too Large"}
# what Envoy's HTTP/1 codec and connection manager write as response code details and flag
_REFUSAL = {400: ("http1.codec_error", "DPE"), 408: ("stream_idle_timeout", "SI"),
            413: ("request_payload_too_large", "-"), 426: ("low_version", "DPE"),
            431: ("http1.headers_too_large", "DPE")}


class ServerProtocol(asyncio.Protocol):
    """One downstream connection. Requests are answered in order (pipelining-safe)."""

    __slots__ = (
        "_began",
        "_body",
        "_body_size",
        "_cur_header",
        "_head_budget",
        "_head_size",
        "_headers",
        "_in_head",
        "_last",
        "_nheaders",
        "_out",
        "_receiving",
        "_stream",
        "_timer",
        "_too_large",
        "_url",
        "_writable",
        "busy",
        "conn_state",
        "handler",
        "limits",
        "listener",
        "local_port",
        "on_close",
        "parser",
        "peer",
        "queue",
        "ssl_object",
        "transport",
    )

    def __init__(
        self,
        handler: Handler,
        on_close: Callable[[ServerProtocol], None] | None = None,
        listener: Listener | None = None,
    ) -> None:
        self.handler = handler
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[Request] = deque()
        self.busy = False
        self.peer: tuple[str, int] | None = None
        self.ssl_object: ssl.SSLObject | None = None
        self.local_port = 0
        self.on_close = on_close
        self.conn_state: dict[str, Any] = {}
        self.listener = listener
        self.limits = listener.limits if listener is not None else DEFAULT_LIMITS
        self._url = b""
        self._headers: dict[str, str] = {}
        self._cur_header = ""
        self._body: list[bytes] = []
        self._body_size = 0
        self._stream: BodyStream | None = None
        self._in_head = True
        # raw bytes a request head may take before it is refused: the 60 KiB Envoy counts
        # (URL, names, values) plus the separators around them
        self._head_budget = self._head_cap()
        self._head_size = 0
        self._nheaders = 0
        self._too_large = False
        self._receiving = False
        self._last = 0.0
        self._began = 0.0  # loop time the current request (or the connection) began
        self._timer: asyncio.TimerHandle | None = None
        self._out: BodyStream | None = None  # a response body being sent
        self._writable: asyncio.Future[None] | None = None  # set while the socket's buffer is full

    def _head_cap(self) -> int:
        return self.limits.max_request_headers_kb * 1024 + 4 * self.limits.max_headers_count + 8192

    # asyncio callbacks ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        listener = self.listener
        if listener is not None:
            if listener.open >= listener.limits.max_connections:
                listener.overflow += 1
                self.listener = None  # not counted as open
                transport.abort()  # type: ignore[attr-defined]  # Envoy closes a connection over the listener's limit at once
                return
            listener.total += 1
            listener.open += 1
        self.peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.local_port = sock[1] if sock else 0
        self.ssl_object = transport.get_extra_info("ssl_object")
        loop = asyncio.get_running_loop()
        self._last = self._began = loop.time()
        self._timer = loop.call_later(min(self.limits.stream_idle_timeout, self.limits.idle_timeout), self._on_timer)

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return  # answered and closing: dropped
        self._last = _now()
        while True:
            if self._in_head:
                budget = self._head_budget
                if len(data) > budget:
                    chunk, data = data[:budget], data[budget:]
                else:
                    chunk, data = data, b""
                self._head_budget -= len(chunk)
            else:
                chunk, data = data, b""
            try:
                self.parser.feed_data(chunk)
            except httptools.HttpParserUpgrade:
                self._fail(400)
                return
            except httptools.HttpParserError:
                self._fail(431 if self._too_large else 400, self._too_large_details())
                return
            if self.transport is None:
                return
            if self._in_head and self._head_budget <= 0:
                self._fail(431, self._too_large_details())  # the head is still not complete at the cap: refused unread
                return
            if not data:
                return

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.resume_writing()
        if self._out is not None:
            self._out.abort(DownstreamReset("downstream connection closed before the response ended"))
            self._out = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.listener is not None:
            self.listener.open -= 1
            self.listener = None
        if self._stream is not None:
            self._stream.fail(BodyError("downstream connection closed before the body ended"))
            self._stream = None
        if self.on_close is not None:
            self.on_close(self)

    # httptools callbacks -------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_size = 0
        self._head_size = 0
        self._nheaders = 0
        self._in_head = True
        self._receiving = True
        self._began = self._last

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > self.limits.max_request_headers_kb * 1024:
            self._too_large = True
            raise _HeadersTooLarge()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value)
        self._nheaders += 1
        limits = self.limits
        if self._head_size > limits.max_request_headers_kb * 1024 or self._nheaders > limits.max_headers_count:
            self._too_large = True
            raise _HeadersTooLarge()
        key = name.decode("latin-1").lower()
        val = value.decode("latin-1")
        old = self._headers.get(key)
        self._headers[key] = val if old is None else f"{old}, {val}"

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self.listener is not None and self.listener.envoy and self.parser.get_http_version() != "1.1":
            # Envoy's codec refuses HTTP/1.0 unless accept_http_10 is set, and Istio leaves it unset
            self._fail(426)
            return
        headers = self._headers
        if "expect" in headers and headers["expect"].lower() == "100-continue" and self.transport is not None:
            # Envoy answers 100 Continue itself and does not pass the expectation upstream
            del headers["expect"]
            self.transport.write(_CONTINUE)
        length = headers.get("content-length")
        if length is None:
            return  # no body, or a chunked one: buffered until it outgrows the limit (on_body)
        try:
            size = int(length)
        except ValueError:
            return  # httptools refuses it
        limits = self.limits
        if limits.max_body is not None:
            if size > limits.max_body:
                self._refuse_body()
        elif size > limits.buffer_limit:
            self._start_stream(size)

    def on_body(self, body: bytes) -> None:
        if self._stream is not None:
            self._stream.feed(body)
            return
        if self.transport is None:
            return
        self._body.append(body)
        self._body_size += len(body)
        limits = self.limits
        if limits.max_body is not None:
            if self._body_size > limits.max_body:
                self._refuse_body()
        elif self._body_size > limits.buffer_limit:
            # a chunked body that outgrew the buffer: what arrived so far starts the stream
            self._start_stream(None)

    def on_message_complete(self) -> None:
        self._in_head = True
        self._receiving = False
        self._head_budget = self._head_cap()
        if self._stream is not None:
            self._stream.finish()
            self._stream = None
            return
        if self.transport is None:
            return
        self._dispatch(self._request(b"".join(self._body)))

    # ---------------------------------------------------------------------------------------------
    def _request(self, body: bytes) -> Request:
        req = Request(
            self.parser.get_method().decode("ascii"),
            self._url.decode("latin-1"),
            self._headers,
            body,
            self.parser.should_keep_alive(),
            self.peer,
            self.ssl_object,
            self.local_port,
        )
        req.connection = self.conn_state
        return req

    def _start_stream(self, length: int | None) -> None:
        stream = BodyStream(self.transport, self.limits.buffer_limit, length)
        for chunk in self._body:
            stream.feed(chunk)
        self._body = []
        self._stream = stream
        req = self._request(b"")
        req.stream = stream
        self._dispatch(req)

    def _refuse_body(self) -> None:
        limit = self.limits.max_body
        body = f"Request entity too large: limit is {limit}".encode()
        if self.transport is not None:
            wire = encode_response(Response(413, {"content-type": "text/plain"}, body), False)
            self.transport.write(wire)
            _delayed_close(self.transport)
            self.transport = None  # what still arrives is dropped
            self._report(413, None, len(wire))
        self._body = []

    def _dispatch(self, req: Request) -> None:
        self.queue.append(req)
        if not self.busy:
            self.busy = True
            task = asyncio.ensure_future(self._drain())
            _BACKGROUND.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(_BACKGROUND.discard)

    async def _drain(self) -> None:
        while self.queue and self.transport is not None:
            req = self.queue.popleft()
            try:
                resp = await self.handler(req)
            except ResetConnection:
                if self.transport is not None:
                    self.transport.abort()
                break
            except BodyError:
                if self.transport is not None:
                    self.transport.abort()  # the request never ended: nothing to answer
                break
            except Exception as exc:  # a handler bug must not kill the connection silently
                resp = Response(500, {"content-type": "text/plain"}, f"internal error: {exc!r}\n".encode())
            if self.transport is None:
                break
            # a response before the end of a streamed body: the rest is not read, the connection ends
            keep = req.keep_alive and resp.keep_alive and (req.stream is None or req.stream.complete)
            if req.method == "HEAD":
                # headers only, whatever the handler made: a body here would be read as the next response
                if resp.stream is not None:
                    resp = head_response(resp)
                envoy = self.listener is not None and self.listener.envoy
                self.transport.write(encode_response(resp, keep, head=True, envoy=envoy))
            elif resp.stream is not None:
                if not await self._send_stream(resp, keep):
                    break
                if req.stream is not None and not req.stream.complete:
                    keep = False
            else:
                self.transport.write(encode_response(resp, keep))
            self._last = _now()
            if not keep:
                if self.transport is not None:
                    self.transport.close()
                break
        self.busy = False

    async def _send_stream(self, resp: Response, keep: bool) -> bool:
        """Write the head, then the body as it comes, waiting while the client's socket is full
        (so a slow client slows the upstream read). False when the connection had to be reset:
        the body failed mid-way (an upstream reset, a timeout) or the client went away."""
        stream = resp.stream
        assert stream is not None and self.transport is not None
        self._out = stream
        chunked = stream.length is None
        loop = asyncio.get_running_loop()
        self.transport.write(encode_response(resp, keep))
        try:
            while True:
                if self._writable is not None:
                    await self._writable
                chunk = await stream.read()
                transport = self.transport
                if transport is None:
                    return False  # connection_lost aborted the stream
                if not chunk:
                    break
                if chunked:
                    transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                else:
                    transport.write(chunk)
                self._last = loop.time()
        except Exception:
            # HTTP/1.1 cannot signal a failed body other than by resetting the connection (Envoy too)
            self._out = None
            if self.transport is not None:
                self.transport.abort()
                self.transport = None
            return False
        self._out = None
        if self.transport is None:
            return False
        if chunked:
            self.transport.write(b"0\r\n\r\n")
        elif stream.sent != stream.length:  # the producer ended short of its content-length
            self.transport.abort()
            self.transport = None
            return False
        return True

    def _on_timer(self) -> None:
        self._timer = None
        if self.transport is None:
            return
        limits = self.limits
        idle = _now() - self._last
        if self._receiving:
            # a request is arriving (its head or its body) and the client has gone quiet
            if idle >= limits.stream_idle_timeout:
                self._fail(408)
                return
            wait = limits.stream_idle_timeout - idle
        elif not self.busy and not self.queue:
            if idle >= limits.idle_timeout:
                self.transport.close()  # an idle keep-alive connection
                return
            wait = min(limits.idle_timeout, limits.stream_idle_timeout) - idle
        elif self._out is not None:
            # a response body on its way: the stream idle timeout covers it, as in Envoy
            if idle >= limits.stream_idle_timeout:
                self._out.abort(StreamTimeout("stream idle timeout while sending the response", "SI",
                                              "stream_idle_timeout"))
                self.transport.abort()
                return
            wait = limits.stream_idle_timeout - idle
        else:
            wait = limits.stream_idle_timeout  # a handler is at work: its own timeouts apply
        self._timer = asyncio.get_running_loop().call_later(max(wait, 0.01), self._on_timer)

    def _fail(self, status: int, details: str | None = None) -> None:
        transport = self.transport
        if transport is not None:
            body = _LOCAL_REPLY.get(status, b"")
            headers = {"content-type": "text/plain"} if body else {}
            wire = encode_response(Response(status, headers, body), False)
            transport.write(wire)
            _delayed_close(transport)
            self.transport = None  # what still arrives is dropped
            self._report(status, details, len(wire))

    def _too_large_details(self) -> str | None:
        if not self._too_large:
            return None
        over_count = self._nheaders > self.limits.max_headers_count
        return "http1.too_many_headers" if over_count else "http1.headers_too_large"

    def _report(self, status: int, details: str | None, sent: int) -> None:
        """Tell the listener's owner about a local reply of the codec (Envoy logs and counts each)."""
        listener = self.listener
        if listener is None or listener.on_refusal is None:
            return
        default_details, flag = _REFUSAL.get(status, ("http1.codec_error", "DPE"))
        elapsed = max(0.0, asyncio.get_running_loop().time() - self._began)
        head = not self._in_head  # the whole head arrived: the request line and headers are known
        refusal = Refusal(status, details or default_details, flag, time.time() - elapsed, elapsed * 1000.0,
                          self._head_size + self._body_size, sent, self.peer, self.local_port,
                          self.ssl_object is not None)
        if head:
            try:
                refusal.method = self.parser.get_method().decode("ascii", "replace")
            except Exception:
                refusal.method = ""
            refusal.path = self._url.decode("latin-1")
            refusal.headers = dict(self._headers)
        try:
            listener.on_refusal(refusal)
        except Exception:
            pass


def _delayed_close(transport: asyncio.Transport) -> None:
    """Close after a local reply the way Envoy does (delayed_close_timeout, 1 s): stop sending, keep
    reading (and dropping) a moment, so a client still sending gets the reply rather than a reset."""
    if transport.can_write_eof():
        transport.write_eof()
    asyncio.get_running_loop().call_later(1.0, transport.close)


def _now() -> float:
    return asyncio.get_running_loop().time()


async def serve(
    handler: Handler,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
    protocol_factory: Callable[[], asyncio.Protocol] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    listener: Listener | None = None,
) -> asyncio.base_events.Server:
    """Start an HTTP/1.1 server on ``host:port`` (port 0 picks a free one) with Envoy's ``limits``.

    Pass a :class:`Listener` to watch its open and overflowed connections.
    """
    loop = asyncio.get_running_loop()
    shared = listener or Listener(limits)
    factory = protocol_factory or (lambda: ServerProtocol(handler, listener=shared))
    return await loop.create_server(factory, host, port, ssl=ssl_context, reuse_address=True, backlog=1024)


class ClientProtocol(asyncio.Protocol):
    """One upstream connection carrying one request at a time.

    With ``stream_limit`` set (a proxy's upstream), a response whose body is larger than it, or
    chunked, or ended by the connection's close, is returned at headers time with the body in
    ``Response.stream`` (reading paused while more than the limit waits); smaller bodies are
    buffered and returned whole, as before. Without it every body is buffered.
    """

    def __init__(self, stream_limit: int | None = None) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self.closed = False
        self._writable: asyncio.Future[None] | None = None  # set while the socket's buffer is full
        self.stream_limit = stream_limit
        self.no_body = False  # the request in flight is a HEAD: its response has no body
        self._headed = False  # the HEAD's response head arrived: the parser is replaced after this read
        self._stream: BodyStream | None = None  # the response body being streamed

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    async def drain(self) -> None:
        """Wait until the socket takes more (a streamed body never piles up in memory)."""
        if self._writable is not None:
            await self._writable

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish_error(UpstreamReset(f"protocol error: {exc}"))
            if self.transport is not None:
                self.transport.close()
        if self._headed:
            # the HEAD's response is over at its head: a fresh parser reads the next response
            self._headed = False
            self.no_body = False
            self.parser = httptools.HttpResponseParser(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        self.resume_writing()
        self._finish_error(UpstreamReset("connection closed by upstream"))

    def eof_received(self) -> bool | None:
        # let a response delimited by EOF complete
        try:
            self.parser.feed_data(b"")
        except httptools.HttpParserError:
            pass
        return None

    def on_message_begin(self) -> None:
        self._headers = {}
        self._body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        val = value.decode("latin-1")
        old = self._headers.get(key)
        self._headers[key] = val if old is None else f"{old}, {val}"

    def on_headers_complete(self) -> None:
        if self.no_body:
            self._head_answered()
            return
        limit = self.stream_limit
        if limit is None:
            return
        status = self.parser.get_status_code()
        if status < 200 or status in (204, 304):
            return
        length = self._headers.get("content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                return  # httptools refuses it
            if size <= limit:
                return  # small enough to buffer: returned whole (the fast path)
            declared: int | None = size
        else:
            declared = None  # chunked, or ended by the close: streamed as it comes
        stream = BodyStream(self.transport, limit, declared)
        self._stream = stream
        resp = Response(status, self._headers, b"", self.parser.should_keep_alive(), stream)
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(resp)

    def _head_answered(self) -> None:
        """A HEAD's response ends with its head whatever its framing headers say (RFC 9112 6.3).
        httptools cannot be told to skip the body, so the response is returned here and the
        parser is replaced once this read is parsed (:meth:`data_received`)."""
        status = self.parser.get_status_code()
        if status < 200:
            return  # an interim response: the final one follows
        self._headed = True
        version = self.parser.get_http_version()
        tokens = {t.strip().lower() for t in self._headers.get("connection", "").split(",")}
        keep = "keep-alive" in tokens if version == "1.0" else "close" not in tokens
        resp = Response(status, self._headers, b"", keep)
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(resp)

    def on_body(self, body: bytes) -> None:
        if self._headed:
            # a body after a HEAD's response: the peer broke the framing, the connection cannot be reused
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        elif self._stream is not None:
            self._stream.feed(body)
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self._headed:
            return
        stream = self._stream
        if stream is not None:
            self._stream = None
            stream.finish()
            return
        resp = Response(
            self.parser.get_status_code(), self._headers, b"".join(self._body), self.parser.should_keep_alive()
        )
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(resp)

    def _finish_error(self, exc: Exception) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.fail(exc)  # cut mid-body: the reader gets the reset
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class Connection:
    """A client connection to one upstream address; ``roundtrip`` sends one request."""

    __slots__ = ("address", "protocol", "requests", "ssl_object")

    def __init__(self, protocol: ClientProtocol, address: tuple[str, int]) -> None:
        self.protocol = protocol
        self.address = address
        self.requests = 0
        transport = protocol.transport
        self.ssl_object: ssl.SSLObject | None = (
            transport.get_extra_info("ssl_object") if transport is not None else None
        )

    @property
    def usable(self) -> bool:
        """Open, and not in the middle of a response body (never reused before the body was read)."""
        proto = self.protocol
        return not proto.closed and proto.transport is not None and proto._stream is None

    async def roundtrip(self, req: Request) -> Response:
        proto = self.protocol
        if proto.transport is None:
            raise UpstreamReset("connection already closed")
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        proto.waiter = fut
        proto.no_body = req.method == "HEAD"
        proto.transport.write(encode_request(req))
        self.requests += 1
        if req.stream is not None:
            return await self._streamed(req.stream, fut)
        try:
            return await fut
        except asyncio.CancelledError:
            # a timed-out attempt: the connection is unusable (a late reply would be misread)
            self.close()
            raise

    async def _streamed(self, stream: BodyStream, fut: asyncio.Future[Response]) -> Response:
        pump = asyncio.ensure_future(self._pump(stream))
        try:
            return await fut
        except asyncio.CancelledError:
            self.close()
            raise
        finally:
            if not pump.done():
                pump.cancel()  # answered before the body was sent: the connection cannot be reused
                self.close()

    async def _pump(self, stream: BodyStream) -> None:
        proto = self.protocol
        chunked = stream.length is None
        try:
            while chunk := await stream.read():
                transport = proto.transport
                if transport is None:
                    return
                if chunked:
                    transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                else:
                    transport.write(chunk)
                await proto.drain()
            if chunked and proto.transport is not None:
                proto.transport.write(b"0\r\n\r\n")
        except BodyError:
            self.close()  # the sender went away: the upstream request cannot end either

    def close(self) -> None:
        if self.protocol.transport is not None:
            self.protocol.transport.close()
        self.protocol.closed = True


async def connect(
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    timeout: float | None = 10.0,
    stream_limit: int | None = None,
) -> Connection:
    """Open a connection; raises :class:`ConnectFailure` on refusal, timeout or TLS failure.

    ``stream_limit``: response bodies larger than it (or of unknown length) come back streamed
    (:class:`ClientProtocol`); ``None`` buffers every body.
    """
    loop = asyncio.get_running_loop()
    try:
        coro = loop.create_connection(
            lambda: ClientProtocol(stream_limit),
            host,
            port,
            ssl=ssl_context,
            server_hostname=(server_hostname or "") if ssl_context is not None else None,
        )
        _, proto = await asyncio.wait_for(coro, timeout)
    except (TimeoutError, OSError, ssl.SSLError) as exc:
        raise ConnectFailure(f"{type(exc).__name__}: {exc}") from exc
    return Connection(proto, (host, port))


class SimpleClient:
    """A keep-alive client for one address with an unbounded idle pool (the sample apps' client).

    With ``stream_limit`` set, a large response comes back with its body in ``Response.stream``;
    its connection goes back to the pool only once that body was read to its end.

    Example::

        client = SimpleClient("127.0.0.1", 15001)
        resp = await client.request("GET", "/", {"host": "preference:8080"})
    """

    def __init__(self, host: str, port: int, timeout: float | None = None, stream_limit: int | None = None) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.stream_limit = stream_limit
        self.idle: deque[Connection] = deque()

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b"", stream: BodyStream | None = None
    ) -> Response:
        conn = None
        while self.idle:
            candidate = self.idle.pop()
            if candidate.usable:
                conn = candidate
                break
        fresh = conn is None
        if conn is None:
            conn = await connect(self.host, self.port, stream_limit=self.stream_limit)
        try:
            coro = conn.roundtrip(Request(method, path, headers, body, stream=stream))
            resp = await (asyncio.wait_for(coro, self.timeout) if self.timeout else coro)
        except UpstreamReset:
            if fresh or stream is not None:
                raise
            # a pooled connection the peer had closed meanwhile: retry once on a new one
            conn = await connect(self.host, self.port, stream_limit=self.stream_limit)
            resp = await conn.roundtrip(Request(method, path, headers, body))
        if resp.stream is not None:
            resp.stream.on_end(functools.partial(self._body_over, conn, resp.keep_alive))
        elif resp.keep_alive and conn.usable:
            self.idle.append(conn)
        else:
            conn.close()
        return resp

    def _body_over(self, conn: Connection, keep_alive: bool, error: BaseException | None) -> None:
        if error is None and keep_alive and conn.usable:
            self.idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()
