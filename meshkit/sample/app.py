"""The tutorial's three services — customer, preference, recommendation — as one small codebase.

Behaviour follows the Red Hat istio-tutorial (Quarkus flavour): plain-text replies on ``/``,
``customer => preference => recommendation v1 from '<pod>': <n>`` on success, every downstream
failure wrapped as HTTP 503 ``<service> => Error: <code> - <body>``, transport errors as
``<service> => <ExceptionName>: <message>``, per-pod ``/misbehave`` and ``/behave``, probes on
``/health/live`` and ``/health/ready``. ``user-agent`` is copied into ``baggage-user-agent``, and
the tracing headers travel to every outbound call, as a well-behaved app in a mesh must.

The same code runs in the local mesh (its outbound calls go to the pod's sidecar, HTTP-proxy
style) and in Kubernetes (it calls ``preference:8080`` and the Istio sidecar intercepts).

Example::

    app = SampleApp(AppSpec("recommendation", "v1", pod="recommendation-v1-abc-12345"))
    resp = await app.handle(Request("GET", "/", {"host": "recommendation:8080"}))
    assert resp.body.startswith(b"recommendation v1 from 'recommendation-v1-abc-12345': 1")
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from meshkit.http1 import (
    DEFAULT_LIMITS,
    BodyError,
    ConnectFailure,
    GeneratedBody,
    Request,
    Response,
    SimpleClient,
    UpstreamReset,
    head_response,
)

CALLS = {"customer": "preference", "preference": "recommendation"}
TIME_URL = ("worldtimeapi.org", 80, "/api/timezone/Europe/Madrid")
# headers a mesh-aware app copies from each inbound request to the calls it makes
PROPAGATED = (
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "x-ot-span-context",
    "authorization",
    "user-preference",
    "baggage-user-preference",
    "baggage-user-agent",
    "baggage",
)
INTERNAL_ERROR_HTML = b"<html><head><title>Error</title></head><body>Internal Server Error</body></html>"
TEXT = {"content-type": "text/plain;charset=UTF-8"}
VIRTUALIZED_REPLY = b"recommendation v2 from 'virtualized': 2\n"
HOVERFLY_NO_MATCH = (
    b"Hoverfly Error!\n\nThere was an error when matching\n\nGot error: Could not find a match for request, "
    b"create or record a valid matcher first!\n"
)
JAVA_PACKAGES = {
    "UnknownHostException": "java.net",
    "ConnectException": "java.net",
    "SocketTimeoutException": "java.net",
    "IOException": "java.io",
}
MAX_BYTES = 2**30  # /bytes answers at most 1 GiB
PIECE = 256 * 1024  # what /bytes makes at a time
HEALTH = b'{\n    "status": "UP",\n    "checks": [\n    ]\n}'


@dataclass(frozen=True)
class AppSpec:
    service: str  # customer | preference | recommendation
    version: str  # v1 | v2 | v3
    pod: str = "local"
    # where outbound calls go: None = straight to "<service>:8080" (Kubernetes); else the sidecar
    outbound: tuple[str, int] | None = None
    port: int = 8080


class SampleApp:
    """One pod's application: its counter, its misbehave flag and its slowness."""

    def __init__(self, spec: AppSpec, log_capacity: int = 500) -> None:
        self.spec = spec
        self.count = 0
        self.misbehaving = False
        self.delay_s = 0.0
        self.log: deque[str] = deque(maxlen=log_capacity)
        self.logged = 0  # lines ever written: `logs -f` asks for what came after its last read
        self._clients: dict[tuple[str, int], SimpleClient] = {}
        # in a local pod the sidecar shares the process: outbound calls are handed to it directly
        self.transport: Callable[[Request], Awaitable[Response]] | None = None
        # cluster DNS as the pod sees it (None: the system resolver, as in Kubernetes)
        self.resolves: Callable[[str], bool] | None = None

    @property
    def label(self) -> str:
        """How the reply names this service: the advanced chapters' preference v2 shouts it."""
        if self.spec.service == "preference" and self.spec.version == "v2":
            return "PREFERENCE"
        return self.spec.service

    async def _send(self, host: str, port: int, path: str, headers: dict[str, str],
                    method: str = "GET") -> Response:
        if self.resolves is not None and not self.resolves(host):
            raise ConnectFailure(f"gaierror: [Errno -2] Name or service not known: {host}")
        if self.transport is not None:
            return await self.transport(Request(method, path, headers))
        return await self._client(host, port).request(method, path, headers)

    def _client(self, host: str, port: int) -> SimpleClient:
        target = self.spec.outbound or (host, port)
        client = self._clients.get(target)
        if client is None:
            client = self._clients[target] = SimpleClient(*target, stream_limit=DEFAULT_LIMITS.buffer_limit)
        return client

    async def handle(self, req: Request) -> Response:
        """Answer one request. HEAD gets what GET would (the JAX-RS services run their GET method
        for it), headers only: ``content-length`` gives the GET body's size, no body is sent."""
        if req.method == "HEAD":
            return head_response(await self._handle(req))
        return await self._handle(req)

    async def _handle(self, req: Request) -> Response:
        if req.stream is not None:
            # the services take no body; like a Java server they read one to its end before answering
            await req.stream.discard()
        path = req.path.split("?", 1)[0]
        if self.spec.service == "recommendation" and self.spec.version == "virtualized" and \
                not path.startswith("/health"):  # the lab's probes (the tutorial's pod has none) still pass
            return self._virtualized(req)
        if path == "/":
            return await self._root(req)
        if path == "/misbehave":
            self.misbehaving = True
            self._log(f"'misbehave' has been set to 'true' on {self.spec.pod}")
            return Response(200, dict(TEXT), b"Following requests to / will return a 503\n")
        if path == "/behave":
            self.misbehaving = False
            self._log(f"'misbehave' has been set to 'false' on {self.spec.pod}")
            return Response(200, dict(TEXT), b"Following requests to / will return 200\n")
        if path == "/bytes":
            return await self._bytes(req)
        if path in ("/health/live", "/health/ready", "/health"):
            return Response(200, {"content-type": "application/json"}, HEALTH)
        if path == "/delay":
            query = parse_qs(urlsplit(req.path).query)
            try:
                self.delay_s = max(0.0, float(query.get("seconds", ["0"])[0]))
            except ValueError:
                return Response(400, dict(TEXT), b"seconds must be a number\n")
            return Response(200, dict(TEXT), f"Requests to / will wait {self.delay_s:g}s\n".encode())
        return Response(404, dict(TEXT), b"Not Found\n")

    async def _root(self, req: Request) -> Response:
        spec = self.spec
        if spec.service == "recommendation":
            self.count += 1
            self._log(f"recommendation request from {spec.pod}: {self.count}")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.misbehaving:
            body = f"{spec.service} misbehavior from '{spec.pod}'\n".encode()
            return Response(503, dict(TEXT), body)
        if spec.service in CALLS:
            return await self._call_next(req, CALLS[spec.service])
        if spec.version == "v3":
            return await self._v3(req)
        reply = f"recommendation {spec.version} from '{spec.pod}': {self.count}\n"
        return Response(200, dict(TEXT), reply.encode())

    async def _call_next(self, req: Request, callee: str) -> Response:
        name = self.spec.service
        label = self.label
        headers = {k: v for k in PROPAGATED if (v := req.headers.get(k)) is not None}
        if name == "customer" and "user-agent" in req.headers:
            headers["baggage-user-agent"] = req.headers["user-agent"]
        headers["host"] = f"{callee}:8080"
        headers["user-agent"] = f"{name}/{self.spec.version}"
        try:
            resp = await self._send(callee, 8080, "/", headers)
        except Exception as exc:
            kind, message = _java_like(exc, callee)
            # the sample's logger.warn(..., ex): the message, the wrapping exception, its cause
            cause = f"{JAVA_PACKAGES.get(kind, 'java.lang')}.{kind}: {message}"
            self._log(f"Exception trying to get the response from {callee} service.: "
                      f"javax.ws.rs.ProcessingException: {cause}", "WARN")
            self._log(f"Caused by: {cause}", "")
            return Response(503, dict(TEXT), f"{label} => {kind}: {message}\n".encode())
        text = (resp.body if resp.stream is None else await _read_capped(resp)).decode("utf-8", "replace")
        if 200 <= resp.status < 300:
            # customer trims what it got, preference passes it on as it came (both add a newline)
            got = text.strip() if name == "customer" else text
            return Response(200, dict(TEXT), f"{label} => {got}\n".encode())
        self._log(f"Non HTTP 20x trying to get the response from {callee} service: {resp.status}", "WARN")
        if name == "preference":  # its ex.printStackTrace()
            self._log(f"javax.ws.rs.WebApplicationException: HTTP {resp.status} {_reason(resp.status)}", "")
        # the tutorial's services answer 503 for any downstream failure; the code is only in the text
        return Response(503, dict(TEXT), f"{label} => Error: {resp.status} - {text}\n".encode())

    async def _bytes(self, req: Request) -> Response:
        """``GET /bytes?n=N``: N bytes of a fixed pattern (httpbin's ``/bytes`` idea, for large
        downloads). customer and preference ask the next service for the same and pass its body on
        as it arrives; recommendation makes it, a piece at a time, never whole in memory."""
        raw = parse_qs(urlsplit(req.path).query).get("n", [""])[0]
        if not raw.isdigit() or int(raw) > MAX_BYTES:
            return Response(400, dict(TEXT), f"n must be a whole number of bytes from 0 to {MAX_BYTES}\n".encode())
        size = int(raw)
        callee = CALLS.get(self.spec.service)
        if callee is None:
            return Response(200, {"content-type": "application/octet-stream"},
                            stream=GeneratedBody(pattern_bytes(size), size))
        headers = {k: v for k in PROPAGATED if (v := req.headers.get(k)) is not None}
        headers["host"] = f"{callee}:8080"
        headers["user-agent"] = f"{self.spec.service}/{self.spec.version}"
        try:
            resp = await self._send(callee, 8080, f"/bytes?n={size}", headers, req.method)
        except Exception as exc:
            kind, message = _java_like(exc, callee)
            return Response(503, dict(TEXT), f"{self.label} => {kind}: {message}\n".encode())
        if not 200 <= resp.status < 300:
            text = (await _read_capped(resp)).decode("utf-8", "replace")
            return Response(503, dict(TEXT), f"{self.label} => Error: {resp.status} - {text}\n".encode())
        headers = {"content-type": resp.headers.get("content-type", "application/octet-stream")}
        if req.method == "HEAD" and "content-length" in resp.headers:
            headers["content-length"] = resp.headers["content-length"]  # the size the GET would bring
        return Response(resp.status, headers, resp.body, stream=resp.stream)

    def _virtualized(self, req: Request) -> Response:
        """The advanced chapter's Hoverfly simulation: one recorded pair, GET / answers it."""
        if req.method == "GET" and req.path == "/":
            return Response(200, {**TEXT, "hoverfly": "Was-Here"}, VIRTUALIZED_REPLY)
        return Response(502, dict(TEXT), HOVERFLY_NO_MATCH)

    async def _v3(self, req: Request) -> Response:
        host, port, path = TIME_URL
        headers = {k: v for k in PROPAGATED if (v := req.headers.get(k)) is not None}
        headers["host"] = host
        try:
            resp = await self._send(host, port, path, headers)
            if resp.status != 200:
                raise OSError(f"time service answered {resp.status}")
            now = json.loads(resp.body)["datetime"]
        except Exception as exc:
            self._log(f"time service call failed: {exc}")
            return Response(500, {"content-type": "text/html"}, INTERNAL_ERROR_HTML)
        body = f"recommendation v3 {now} from '{self.spec.pod}': {self.count}\n"
        return Response(200, dict(TEXT), body.encode())

    def _log(self, line: str, level: str = "INFO") -> None:
        """One log line; ``level`` "" continues the previous entry (a stack trace line)."""
        if not level:
            self.log.append(line)
        else:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
            self.log.append(f"{stamp} {level:<5} [{self.spec.service}] {line}")
        self.logged += 1

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def pattern_bytes(size: int, piece: int = PIECE) -> AsyncIterator[bytes]:
    """``size`` bytes of a repeating 0..255 pattern, ``piece`` bytes at a time (a test can hash what
    it got against :func:`pattern_digest`)."""
    block = bytes(range(256)) * (piece // 256)

    async def pieces() -> AsyncIterator[bytes]:
        left = size
        while left > 0:
            yield block if left >= piece else block[:left]
            left -= piece

    return pieces()


def pattern_digest(size: int) -> str:
    """The SHA-256 of what ``GET /bytes?n=size`` answers.

    Example::

        hashlib.sha256(body).hexdigest() == pattern_digest(len(body))
    """
    block = bytes(range(256)) * (PIECE // 256)
    digest = hashlib.sha256()
    for _ in range(size // PIECE):
        digest.update(block)
    digest.update(block[: size % PIECE])
    return digest.hexdigest()


async def _read_capped(resp: Response, cap: int = 64 * 1024) -> bytes:
    """A reply's text: its buffered body, or the start of a streamed one (the rest dropped)."""
    stream = resp.stream
    if stream is None:
        return resp.body
    got = b""
    while len(got) < cap and (chunk := await stream.read()):
        got += chunk
    if not stream.ended:
        stream.abort(BodyError("reply read only in part"))
    return got[:cap]


def _java_like(exc: Exception, host: str) -> tuple[str, str]:
    """Render a transport failure the way the tutorial's Java services print it."""
    if isinstance(exc, ConnectFailure):
        text = str(exc)
        if "Name or service not known" in text or "nodename nor servname" in text or "gaierror" in text:
            return "UnknownHostException", host
        return "ConnectException", "Connection refused"
    if isinstance(exc, UpstreamReset):
        return "IOException", "Connection reset by peer"
    if isinstance(exc, asyncio.TimeoutError):
        return "SocketTimeoutException", "Read timed out"
    return type(exc).__name__, str(exc)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
