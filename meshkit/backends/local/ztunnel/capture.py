"""The ambient pod's traffic capture: what istio-cni's redirection does in the pod's namespace.

An enrolled pod's outbound connections go to its ztunnel's outbound listener (15001). The address the
app dialed rides as the connection's first line, standing in for ``SO_ORIGINAL_DST`` (loopback here
cannot keep it in the socket). Everything after that line is the app's own bytes: ztunnel sees L4 only.
A response body larger than the buffer limit (or of unknown length) reaches the app as it arrives
(``Response.stream``), its connection pooled again once the body was read to its end, so a large
download through ztunnel is never held whole in the app's memory.

Example::

    app.transport = Capture(ztunnel_outbound_port)      # the app's next call goes through ztunnel
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections import deque

from meshkit.http1 import (
    DEFAULT_LIMITS,
    ClientProtocol,
    ConnectFailure,
    Connection,
    Request,
    Response,
    UpstreamReset,
)


class Capture:
    """Send the app's requests through ztunnel, one kept-alive connection pool per dialed address."""

    def __init__(self, port: int, stream_limit: int = DEFAULT_LIMITS.buffer_limit) -> None:
        self.port = port
        self.stream_limit = stream_limit
        self.idle: dict[str, deque[Connection]] = {}

    async def _connect(self, target: str) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: ClientProtocol(self.stream_limit), "127.0.0.1", self.port), 10.0)
        except (TimeoutError, OSError) as exc:
            raise ConnectFailure(f"{type(exc).__name__}: {exc}") from exc
        assert proto.transport is not None
        sock = proto.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        proto.transport.write(f"{target}\n".encode())
        return Connection(proto, ("127.0.0.1", self.port))

    async def __call__(self, req: Request) -> Response:
        target = req.headers.get("host", "")
        if ":" not in target:
            target = f"{target}:80"
        pool = self.idle.setdefault(target, deque())
        conn = None
        while pool:
            candidate = pool.pop()
            if candidate.usable:
                conn = candidate
                break
        fresh = conn is None
        if conn is None:
            conn = await self._connect(target)
        try:
            resp = await conn.roundtrip(req)
        except UpstreamReset:
            if fresh or req.stream is not None:
                raise
            conn = await self._connect(target)
            resp = await conn.roundtrip(req)
        if resp.stream is not None:
            resp.stream.on_end(functools.partial(self._body_over, pool, conn, resp.keep_alive))
        elif resp.keep_alive and conn.usable:
            pool.append(conn)
        else:
            conn.close()
        return resp

    @staticmethod
    def _body_over(pool: deque[Connection], conn: Connection, keep_alive: bool, error: BaseException | None) -> None:
        """A streamed body ended: its connection is pooled again only if read cleanly to its end."""
        if error is None and keep_alive and conn.usable:
            pool.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        for pool in self.idle.values():
            while pool:
                pool.pop().close()
