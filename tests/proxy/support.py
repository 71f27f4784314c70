"""Shared helpers for the proxy unit tests: a fake clock, real upstreams on 127.0.0.1, exchanges."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from meshkit.backends.local.proxy.cluster import Cluster, ClusterSpec, Endpoint, Host, OutlierSpec, PoolLimits
from meshkit.backends.local.proxy.config import Destination, FaultSpec, RetryPolicy, Route
from meshkit.backends.local.proxy.exchange import Exchange
from meshkit.backends.local.proxy.matching import MatchSet
from meshkit.http1 import Request, Response, serve
from meshkit.telemetry.record import RequestRecord

T = TypeVar("T")
CLUSTER = "outbound|8080||recommendation.tutorial.svc.cluster.local"


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one async test body on a fresh event loop."""
    return asyncio.run(coro)


class FakeClock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Sleeps:
    """An injected ``sleep`` that records what it was asked and returns at once."""

    calls: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def endpoint(pod: str, port: int = 9, ready: bool = True) -> Endpoint:
    return Endpoint(pod=pod, address="127.0.0.1", port=port, app="recommendation", ready=ready)


def make_cluster(
    endpoints: list[Endpoint],
    lb: str = "ROUND_ROBIN",
    limits: PoolLimits | None = None,
    outlier: OutlierSpec | None = None,
    clock: Callable[[], float] | None = None,
    seed: int = 7,
) -> Cluster:
    import random

    spec = ClusterSpec(CLUSTER, "recommendation.tutorial.svc.cluster.local", "", tuple(endpoints), lb,
                       limits or PoolLimits(), outlier)
    return Cluster(spec, clock=clock or FakeClock(), rng=random.Random(seed))


def host_named(cluster: Cluster, pod: str) -> Host:
    return next(h for h in cluster.hosts if h.endpoint.pod == pod)


class Upstream:
    """A real HTTP server on 127.0.0.1 whose behaviour the test chooses.

    ``mode``: ``ok`` (200), ``fail`` (503), ``hang`` (answers 200 when ``gate`` is set), ``slow``
    (answers 200 after ``delay`` seconds of real time).
    """

    def __init__(self, name: str, mode: str = "ok", delay: float = 0.0) -> None:
        self.name = name
        self.mode = mode
        self.delay = delay
        self.gate = asyncio.Event()
        self.hits = 0
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> Upstream:
        self.server = await serve(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def handle(self, req: Request) -> Response:
        self.hits += 1
        if self.mode == "hang":
            await self.gate.wait()
        elif self.mode == "slow":
            await asyncio.sleep(self.delay)
        status = 503 if self.mode == "fail" else 200
        return Response(status, {"content-type": "text/plain"}, f"{self.name} {status}".encode())

    def endpoint(self) -> Endpoint:
        return endpoint(self.name, self.port)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


class _Hangup(asyncio.Protocol):
    def __init__(self, upstream: ResettingUpstream) -> None:
        self.upstream = upstream
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.upstream.hits += 1
        if self.transport is not None:
            self.transport.close()


class ResettingUpstream(Upstream):
    """Closes every connection as soon as a request arrives (an upstream reset, flag UC)."""

    async def start(self) -> Upstream:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _Hangup(self), "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self


def closed_port() -> int:
    """A loopback port nothing listens on (connect is refused)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_route(
    timeout: float | None = None,
    retry: RetryPolicy | None = None,
    fault: FaultSpec | None = None,
    cluster: str = CLUSTER,
) -> Route:
    dest = Destination(cluster, "recommendation.tutorial.svc.cluster.local", "", 8080, 100)
    return Route("test", MatchSet(), (dest,), 100, timeout=timeout, retry=retry, fault=fault,
                 origin="VirtualService tutorial/recommendation")


def exchange(route: Route | None = None) -> Exchange:
    ex = Exchange(Request("GET", "/", {"host": "recommendation:8080"}), RequestRecord(proxy="test", reporter="source"))
    ex.route = route
    return ex


def prepare(ex: Exchange, cluster: Cluster, host: Host, attempt: int) -> Request:
    headers = dict(ex.req.headers)
    headers["x-envoy-attempt-count"] = str(attempt)
    return Request(ex.req.method, ex.req.path, headers, ex.req.body)


async def settle(predicate: Callable[[], bool], rounds: int = 5000) -> None:
    """Yield to the event loop until ``predicate`` holds (no wall-clock sleeping)."""
    for _ in range(rounds):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


Handler = Callable[[Exchange], Awaitable[Response]]
