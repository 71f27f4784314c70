"""An upstream cluster as Envoy builds it from a service (or a DestinationRule subset).

A cluster owns its endpoints, its load balancer, its connection pool with Envoy's circuit-breaker
thresholds (``connectionPool``) and its outlier detector (``outlierDetection``). Limits are per
client proxy and per cluster, exactly like Envoy: two sidecars calling the same subset do not
share a budget.

Example::

    cluster = Cluster(ClusterSpec("outbound|8080|version-v1|recommendation.tutorial.svc.cluster.local",
                                  endpoints=(Endpoint("recommendation-v1-x", "127.0.0.1", 41234),)))
    host = cluster.pick(exclude=frozenset())
"""

from __future__ import annotations

import asyncio
import math
import random
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshkit.http1 import Connection, connect

UNLIMITED = 2**32 - 1


class Overflow(Exception):
    """A circuit-breaker threshold was hit: Envoy answers 503 UO at once and never retries it."""

    def __init__(self, threshold: str) -> None:
        super().__init__(threshold)
        self.threshold = threshold


@dataclass(frozen=True, slots=True)
class Endpoint:
    pod: str
    address: str
    port: int  # plaintext inbound port of the pod's sidecar (or of the app when it has none)
    tls_port: int = 0  # mTLS inbound port (0: the pod has no sidecar)
    app: str = ""
    version: str = ""
    workload: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    principal: str = ""  # spiffe://cluster.local/ns/<ns>/sa/<sa>
    ready: bool = True


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """Istio ``connectionPool`` mapped to Envoy thresholds; defaults are Istio's (effectively none)."""

    max_connections: int = UNLIMITED
    max_pending_requests: int = UNLIMITED
    max_requests: int = UNLIMITED
    max_requests_per_connection: int = 0  # 0: unlimited; 1 disables keep-alive
    max_retries: int = UNLIMITED
    connect_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class OutlierSpec:
    """Istio ``outlierDetection`` with Istio's defaults."""

    consecutive_5xx: int = 5
    consecutive_gateway: int = 0
    interval: float = 10.0
    base_ejection: float = 30.0
    max_ejection_percent: float = 10.0
    min_health_percent: float = 0.0


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    name: str  # outbound|8080|<subset>|<fqdn>
    service: str = ""  # FQDN
    subset: str = ""
    endpoints: tuple[Endpoint, ...] = ()
    lb: str = "LEAST_REQUEST"
    limits: PoolLimits = PoolLimits()
    outlier: OutlierSpec | None = None
    tls: str = "AUTO"  # AUTO (Istio's auto mTLS) | ISTIO_MUTUAL | DISABLE | SIMPLE | MUTUAL
    origin: str = ""  # "DestinationRule tutorial/recommendation" for explanations
    external: bool = False

    def describe_limits(self) -> str:
        """The configured thresholds, for ``meshkit explain`` (``maxConnections 1, ...``)."""
        lim, parts = self.limits, []
        if lim.max_connections != UNLIMITED:
            parts.append(f"maxConnections {lim.max_connections}")
        if lim.max_pending_requests != UNLIMITED:
            parts.append(f"http1MaxPendingRequests {lim.max_pending_requests}")
        if lim.max_requests != UNLIMITED:
            parts.append(f"http2MaxRequests {lim.max_requests}")
        if lim.max_retries != UNLIMITED:
            parts.append(f"maxRetries {lim.max_retries}")
        return ", ".join(parts)


class Host:
    """Runtime state of one endpoint inside one cluster."""

    __slots__ = (
        "active",
        "consecutive_5xx",
        "consecutive_gateway",
        "ejected_until",
        "endpoint",
        "idle",
        "times_ejected",
    )

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.active = 0
        self.idle: deque[Connection] = deque()
        self.consecutive_5xx = 0
        self.consecutive_gateway = 0
        self.ejected_until: float | None = None
        self.times_ejected = 0

    @property
    def ejected(self) -> bool:
        return self.ejected_until is not None


Connector = Callable[[Endpoint, "Cluster"], "asyncio.Future[Connection] | Any"]


class Cluster:
    """Runtime cluster: load balancing, connection pool + circuit breaker, outlier detection."""

    def __init__(
        self,
        spec: ClusterSpec,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        ssl_for: Callable[[Endpoint, ClusterSpec], tuple[ssl.SSLContext | None, int]] | None = None,
    ) -> None:
        self.spec = spec
        self.clock = clock or asyncio.get_event_loop().time
        self.rng = rng or random.Random()
        self.ssl_for = ssl_for
        self.hosts: list[Host] = [Host(e) for e in spec.endpoints]
        self.connections = 0
        self.pending = 0
        self.active_requests = 0
        self.active_retries = 0
        self.waiters: deque[tuple[Host, asyncio.Future[Connection | None]]] = deque()
        self._rr = 0
        self._next_sweep = self.clock() + (spec.outlier.interval if spec.outlier else 0.0)
        self.overflows = 0
        self.ejections = 0

    # configuration -------------------------------------------------------------------------------
    def update(self, spec: ClusterSpec) -> None:
        """Take a new spec; hosts that stay keep their outlier state and idle connections."""
        old = {h.endpoint.pod: h for h in self.hosts}
        hosts = []
        for ep in spec.endpoints:
            host = old.pop(ep.pod, None)
            if host is None or host.endpoint.port != ep.port:
                host = Host(ep)
            else:
                host.endpoint = ep
            hosts.append(host)
        for gone in old.values():
            while gone.idle:
                gone.idle.pop().close()
                self.connections -= 1
        if spec.outlier != self.spec.outlier:
            for host in hosts:
                host.ejected_until, host.times_ejected = None, 0
            self._next_sweep = self.clock() + (spec.outlier.interval if spec.outlier else 0.0)
        self.hosts = hosts
        self.spec = spec

    # load balancing ------------------------------------------------------------------------------
    def available(self) -> list[Host]:
        """Ready hosts that outlier detection has not ejected (or all, in panic mode)."""
        ready = [h for h in self.hosts if h.endpoint.ready]
        od = self.spec.outlier
        if od is None or not ready:
            return ready
        self._sweep()
        healthy = [h for h in ready if not h.ejected]
        if od.min_health_percent > 0 and len(healthy) * 100.0 < od.min_health_percent * len(ready):
            return ready  # Envoy's panic mode: below the threshold, balance over every host
        return healthy

    def pick(self, exclude: frozenset[str] = frozenset()) -> Host | None:
        """Choose a host; ``exclude`` (previously tried pods) is avoided when others exist."""
        hosts = self.available()
        if not hosts:
            return None
        if exclude:
            fresh = [h for h in hosts if h.endpoint.pod not in exclude]
            hosts = fresh or hosts
        if len(hosts) == 1:
            return hosts[0]
        lb = self.spec.lb
        if lb == "ROUND_ROBIN":
            self._rr += 1
            return hosts[self._rr % len(hosts)]
        if lb == "RANDOM":
            return hosts[self.rng.randrange(len(hosts))]
        # LEAST_REQUEST (and its alias LEAST_CONN): Envoy's power of two random choices
        a, b = self.rng.sample(hosts, 2)
        return b if b.active < a.active else a

    # connection pool / circuit breaker ----------------------------------------------------------
    async def acquire(self, host: Host) -> Connection:
        """A connection to ``host`` within the cluster's thresholds; raises Overflow or connect errors."""
        lim = self.spec.limits
        if self.active_requests >= lim.max_requests:
            self.overflows += 1
            raise Overflow("max_requests")
        while host.idle:
            conn = host.idle.pop()
            if conn.usable:
                return conn
            self.connections -= 1
        if self.connections >= lim.max_connections:
            if self.pending >= lim.max_pending_requests:
                self.overflows += 1
                raise Overflow("max_pending_requests")
            self.pending += 1
            fut: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
            self.waiters.append((host, fut))
            try:
                handed = await fut
            finally:
                self.pending -= 1
            if handed is not None:
                return handed
            # a slot was freed for us (the count already includes this new connection)
            return await self._open(host, counted=True)
        return await self._open(host, counted=False)

    async def _open(self, host: Host, counted: bool) -> Connection:
        if not counted:
            self.connections += 1
        ctx, port = self.ssl_for(host.endpoint, self.spec) if self.ssl_for else (None, host.endpoint.port)
        try:
            return await connect(host.endpoint.address, port, ctx, timeout=self.spec.limits.connect_timeout)
        except BaseException:
            self.connections -= 1
            self._wake_one()
            raise

    def release(self, host: Host, conn: Connection, reusable: bool) -> None:
        per_conn = self.spec.limits.max_requests_per_connection
        if per_conn and conn.requests >= per_conn:
            reusable = False
        if reusable and not conn.usable:
            reusable = False
        if self.waiters:
            waiter_host, fut = self.waiters[0]
            if reusable and waiter_host is host:
                self.waiters.popleft()
                if not fut.done():
                    fut.set_result(conn)
                    return
            conn.close()
            self._hand_slot()
            return
        if reusable:
            host.idle.append(conn)
        else:
            conn.close()
            self.connections -= 1

    def _hand_slot(self) -> None:
        # the closed connection's slot passes to the first waiter, which opens its own
        while self.waiters:
            _, fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.connections -= 1

    def _wake_one(self) -> None:
        if self.waiters and self.connections < self.spec.limits.max_connections:
            self.connections += 1
            self._hand_slot()

    def try_retry_budget(self) -> bool:
        """Envoy's ``max_retries``: concurrent retries per cluster."""
        if self.active_retries >= self.spec.limits.max_retries:
            return False
        self.active_retries += 1
        return True

    # outlier detection ---------------------------------------------------------------------------
    def report(self, host: Host, status: int) -> bool:
        """Feed one attempt's outcome (locally originated failures as 503/504); True if ejected now."""
        od = self.spec.outlier
        if od is None:
            return False
        if status >= 500:
            host.consecutive_5xx += 1
        else:
            host.consecutive_5xx = 0
        if status in (502, 503, 504):
            host.consecutive_gateway += 1
        else:
            host.consecutive_gateway = 0
        trip = (od.consecutive_5xx and host.consecutive_5xx >= od.consecutive_5xx) or (
            od.consecutive_gateway and host.consecutive_gateway >= od.consecutive_gateway
        )
        if not trip or host.ejected:
            return False
        ejected = sum(1 for h in self.hosts if h.ejected)
        if ejected and ejected * 100.0 / max(1, len(self.hosts)) >= od.max_ejection_percent:
            return False
        host.times_ejected += 1
        cap = max(300.0, od.base_ejection)
        host.ejected_until = self.clock() + min(cap, od.base_ejection * host.times_ejected)
        host.consecutive_5xx = host.consecutive_gateway = 0
        self.ejections += 1
        return True

    def _sweep(self) -> None:
        od = self.spec.outlier
        if od is None or od.interval <= 0:
            return
        now = self.clock()
        if now < self._next_sweep:
            return
        ticks = math.floor((now - self._next_sweep) / od.interval) + 1
        tick = self._next_sweep
        for _ in range(min(ticks, 1000)):
            for host in self.hosts:
                if host.ejected_until is not None:
                    if host.ejected_until <= tick:
                        host.ejected_until = None
                elif host.times_ejected > 0:
                    host.times_ejected -= 1  # a healthy interval lowers the next ejection's length
            tick += od.interval
        self._next_sweep = self._next_sweep + ticks * od.interval

    def close(self) -> None:
        for host in self.hosts:
            while host.idle:
                host.idle.pop().close()
        self.connections = 0
