"""The state one request carries through a proxy's filter chain, and Envoy's canned replies.

Example::

    ex = Exchange(req, RequestRecord(proxy="customer-v1-x", reporter="source"))
    return ex.local_reply(503, "UH", "no_healthy_upstream", b"no healthy upstream")
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from meshkit.backends.local.proxy.config import Destination, Route, VirtualHost
from meshkit.http1 import DownstreamReset, Request, Response, StreamTimeout
from meshkit.telemetry.record import RequestRecord

TEXT = {"content-type": "text/plain"}
OVERFLOW_BODY = b"upstream connect error or disconnect/reset before headers. reset reason: overflow"
CONNECT_FAILURE_BODY = (
    b"upstream connect error or disconnect/reset before headers. reset reason: connection failure"
)
RESET_BODY = b"upstream connect error or disconnect/reset before headers. reset reason: connection termination"
TIMEOUT_BODY = b"upstream request timeout"
NO_HEALTHY_BODY = b"no healthy upstream"
FAULT_ABORT_BODY = b"fault filter abort"


@dataclass(slots=True)
class Exchange:
    req: Request
    rec: RequestRecord
    vhost: VirtualHost | None = None
    route: Route | None = None
    flags: list[str] = field(default_factory=list)
    dest: Destination | None = None  # the weighted choice, made once per request

    def flag(self, flag: str, rule: str = "") -> None:
        if flag not in self.flags:
            self.flags.append(flag)
        if rule and not self.rec.rule:
            self.rec.rule = rule

    def local_reply(self, status: int, flag: str, details: str, body: bytes = b"", rule: str = "") -> Response:
        """A response the proxy makes itself (Envoy's local reply), with its flag and details."""
        if flag:
            self.flag(flag, rule)
        self.rec.response_code_details = details
        return Response(status, dict(TEXT) if body else {}, body)


def note_body_error(ex: Exchange, error: BaseException | None) -> None:
    """Flag a response whose body did not reach its end, as Envoy's access log does once the
    headers were already sent: a timeout running into the body (UT, or SI for the stream idle
    timeout), the client gone (DC), the upstream gone mid-body (UC)."""
    if error is None:
        return
    if isinstance(error, StreamTimeout):
        ex.flag(error.flag)
        ex.rec.response_code_details = error.details
    elif isinstance(error, DownstreamReset):
        ex.flag("DC")
        ex.rec.response_code_details = "downstream_remote_disconnect"
    else:
        ex.flag("UC")
        ex.rec.response_code_details = "upstream_reset_after_response_started{connection_termination}"


Handler = Callable[[Exchange], Awaitable[Response]]


class Filter:
    """One concern of the chain; calls ``next_`` to continue or answers itself."""

    async def __call__(self, ex: Exchange, next_: Handler) -> Response:  # pragma: no cover - interface
        return await next_(ex)


def chain(filters: list[Filter], terminal: Handler) -> Handler:
    """Compose filters in order into one handler (the first filter sees the request first)."""
    handler = terminal
    for f in reversed(filters):
        handler = _bind(f, handler)
    return handler


def _bind(f: Filter, next_: Handler) -> Handler:
    async def call(ex: Exchange) -> Response:
        return await f(ex, next_)

    return call
