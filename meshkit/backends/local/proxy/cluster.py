"""An upstream cluster as Envoy builds it from a service (or a DestinationRule subset).

A cluster owns its endpoints, its load balancer, its connection pool with Envoy's circuit-breaker
thresholds (``connectionPool``) and its outlier detector (``outlierDetection``). Limits are per
client proxy and per cluster, exactly like Envoy: two sidecars calling the same subset do not
share a budget.

Envoy semantics kept here:

* **Load balancing** — ROUND_ROBIN strict rotation, RANDOM uniform, LEAST_REQUEST "power of two
  choices" (two hosts drawn with replacement, the one with fewer active requests wins).
* **Connection pool (HTTP/1.1)** — one request per connection at a time. A request with no idle
  connection is *pending* (``max_pending_requests``) until a connection is opened for it (below
  ``max_connections``; a host with no connection at all may always open one, as Envoy's per-host
  pools do) or a busy connection of its host is handed over. ``max_requests`` is checked when a
  request is attached to a connection. ``max_requests_per_connection`` closes a connection after
  that many requests (1 disables keep-alive). Overflow raises :class:`Overflow` (503 UO).
* **Outlier detection** — consecutive 5xx / gateway errors counted per host (locally originated
  failures mapped to 503/504 by the router; overflows never count); ejection for
  ``base × backoff`` (capped at ``max(300 s, base)``), lifted at the first interval sweep after
  that time; the backoff decays by one per healthy interval; ``max_ejection_percent`` bounds the
  share of ejected hosts; ``min_health_percent`` is Envoy's panic threshold.

Example::

    cluster = Cluster(ClusterSpec("outbound|8080|version-v1|recommendation.tutorial.svc.cluster.local",
                                  endpoints=(Endpoint("recommendation-v1-x", "127.0.0.1", 41234),)))
    host = cluster.pick()
    conn = await cluster.acquire(host)          # counted active; raises Overflow at a threshold
    ...
    cluster.release(host, conn, reusable=True)
"""

from __future__ import annotations

import asyncio
import math
import random
import ssl
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from meshkit.http1 import DEFAULT_LIMITS, ConnectFailure, Connection, connect

UNLIMITED = 2**32 - 1
_RQ_CLASS = ("upstream_rq_xxx", "upstream_rq_1xx", "upstream_rq_2xx", "upstream_rq_3xx", "upstream_rq_4xx",
             "upstream_rq_5xx")
MAX_EJECTION_TIME = 300.0  # Envoy's max_ejection_time default (or base_ejection_time if larger)


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
    hbone_port: int = 0  # an ambient pod: its ztunnel's HBONE listener (15008)
    hbone_target: str = ""  # the CONNECT authority there: the pod's address and target port


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
    """Istio ``outlierDetection`` with Istio's defaults.

    ``at_least_one``: Envoy before 1.27 compared the share of hosts *already* ejected with
    ``max_ejection_percent``, so the first ejection always happened (the tutorial era); today's
    Envoy checks the share *after* the ejection and Istio does not set ``always_eject_one_host``,
    so with the default 10 % a cluster of fewer than ten hosts ejects nothing.
    """

    consecutive_5xx: int = 5  # 0 disables
    consecutive_gateway: int = 0  # 0 disables
    interval: float = 10.0
    base_ejection: float = 30.0
    max_ejection_percent: float = 10.0
    min_health_percent: float = 0.0
    at_least_one: bool = False

    @property
    def max_ejection(self) -> float:
        return max(MAX_EJECTION_TIME, self.base_ejection)


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
        if lim.max_requests_per_connection:
            parts.append(f"maxRequestsPerConnection {lim.max_requests_per_connection}")
        if lim.max_retries != UNLIMITED:
            parts.append(f"maxRetries {lim.max_retries}")
        return ", ".join(parts)


class Host:
    """Runtime state of one endpoint inside one cluster."""

    __slots__ = (
        "active",
        "connections",
        "consecutive_5xx",
        "consecutive_gateway",
        "cx_connect_fail",
        "cx_total",
        "eject_backoff",
        "ejected",
        "ejected_at",
        "endpoint",
        "idle",
        "rq_error",
        "rq_success",
        "rq_timeout",
        "rq_total",
        "times_ejected",
        "unejected_at",
    )

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.active = 0  # requests attached to a connection of this host (LEAST_REQUEST's measure)
        self.connections = 0  # open or opening connections, idle ones included
        self.idle: deque[Connection] = deque()
        self.consecutive_5xx = 0
        self.consecutive_gateway = 0
        self.ejected = False
        self.ejected_at = 0.0
        self.unejected_at: float | None = None
        self.eject_backoff = 0  # Envoy's multiplier of base_ejection_time; decays while healthy
        self.times_ejected = 0
        # Envoy's per-host counters, as /clusters prints them
        self.rq_total = self.rq_success = self.rq_error = self.rq_timeout = 0
        self.cx_total = self.cx_connect_fail = 0

    def ejection_time(self, od: OutlierSpec) -> float:
        """How long the current (or next) ejection lasts."""
        return min(od.base_ejection * max(1, self.eject_backoff), od.max_ejection)


Waiter = tuple[Host, "asyncio.Future[Connection | None]"]
SslFor = Callable[[Endpoint, ClusterSpec], tuple[ssl.SSLContext | None, int]]


class Cluster:
    """Runtime cluster: load balancing, connection pool + circuit breaker, outlier detection."""

    def __init__(
        self,
        spec: ClusterSpec,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        ssl_for: SslFor | None = None,
    ) -> None:
        self.spec = spec
        # asyncio's loop clock is time.monotonic; reading it directly also works outside a running loop
        self.clock = clock or time.monotonic
        self.rng = rng or random.Random()
        self.ssl_for = ssl_for
        self.hosts: list[Host] = [Host(e) for e in spec.endpoints]
        self.connections = 0
        self.pending = 0
        self.active_requests = 0
        self.active_retries = 0
        self.waiters: deque[Waiter] = deque()
        self.stats: Counter[str] = Counter()  # Envoy counter names: upstream_rq_pending_overflow, ...
        self.draining = False  # replaced by a newer cluster: finishes its requests, pools nothing
        self._rr = 0
        self._next_sweep = self.clock() + (spec.outlier.interval if spec.outlier else 0.0)

    @property
    def overflows(self) -> int:
        return self.stats["upstream_rq_pending_overflow"]

    @property
    def ejections(self) -> int:
        return self.stats["outlier_detection.ejections_enforced_total"]

    # configuration -------------------------------------------------------------------------------
    def same_cluster(self, spec: ClusterSpec) -> bool:
        """True when ``spec`` differs from this cluster's in its endpoints only (an EDS update).

        Any other change (a DestinationRule's pool limits, load balancer, outlier detection, TLS)
        makes Envoy build a new cluster: see :meth:`drain`.
        """
        return replace(spec, endpoints=()) == replace(self.spec, endpoints=())

    def drain(self) -> None:
        """Envoy's ``DrainAndDelete`` of a replaced cluster's pools: idle connections close now;
        requests in flight (and those already pending here) finish, and their connections close
        instead of returning to a pool. New requests go to the new cluster, whose circuit-breaker
        counters start at zero."""
        self.draining = True
        for host in self.hosts:
            while host.idle:
                self._discard(host, host.idle.pop(), dispatch=False)

    def update(self, spec: ClusterSpec) -> None:
        """Take a new spec; hosts that stay keep their outlier state and idle connections."""
        old = {h.endpoint.pod: h for h in self.hosts}
        hosts = []
        for ep in spec.endpoints:
            host = old.get(ep.pod)
            if host is not None and host.endpoint.port == ep.port:
                del old[ep.pod]
                host.endpoint = ep
            else:
                host = Host(ep)
            hosts.append(host)
        for gone in old.values():
            while gone.idle:
                self._discard(gone, gone.idle.pop(), dispatch=False)
        if spec.outlier != self.spec.outlier:
            # Envoy builds a new detector with a new cluster: all outlier state starts afresh
            for host in hosts:
                host.ejected, host.eject_backoff, host.unejected_at = False, 0, None
                host.consecutive_5xx = host.consecutive_gateway = 0
            self._next_sweep = self.clock() + (spec.outlier.interval if spec.outlier else 0.0)
        self.hosts = hosts
        self.spec = spec
        self._dispatch()  # new limits may let waiters in

    # load balancing ------------------------------------------------------------------------------
    def available(self) -> list[Host]:
        """Ready hosts that outlier detection has not ejected (or all, in panic mode)."""
        ready = [h for h in self.hosts if h.endpoint.ready]
        od = self.spec.outlier
        if od is None or not ready:
            return ready
        self.sweep()
        healthy = [h for h in ready if not h.ejected]
        if len(healthy) * 100.0 < od.min_health_percent * len(ready):
            return ready  # Envoy's panic mode: below the threshold, balance over every host
        return healthy

    def pick(self, exclude: frozenset[str] = frozenset()) -> Host | None:
        """Choose a host; ``exclude`` (previously tried pods) is avoided when others exist."""
        hosts = self.available()
        if not hosts:
            return None
        if exclude:
            hosts = [h for h in hosts if h.endpoint.pod not in exclude] or hosts
        n = len(hosts)
        if n == 1:
            return hosts[0]
        lb = self.spec.lb
        if lb == "ROUND_ROBIN":
            host = hosts[self._rr % n]
            self._rr += 1
            return host
        if lb == "RANDOM":
            return hosts[self.rng.randrange(n)]
        # LEAST_REQUEST (and its alias LEAST_CONN): Envoy's two choices, drawn with replacement
        first, second = hosts[self.rng.randrange(n)], hosts[self.rng.randrange(n)]
        return second if second.active < first.active else first

    # connection pool / circuit breaker ----------------------------------------------------------
    async def acquire(self, host: Host) -> Connection:
        """A connection to ``host`` with this request attached (counted active).

        Raises :class:`Overflow` at a threshold, or the connect error. Pair with :meth:`release`.
        """
        lim = self.spec.limits
        conn = self._take_idle(host)
        if conn is None:
            if self.pending >= lim.max_pending_requests:
                self.stats["upstream_rq_pending_overflow"] += 1
                raise Overflow("max_pending_requests")
            self.pending += 1
            self.stats["upstream_rq_pending_total"] += 1
            try:
                if self._can_open(host):
                    conn = await self._open(host, reserved=False)
                else:
                    self.stats["upstream_cx_overflow"] += 1
                    conn = await self._wait(host)
            except ConnectFailure:
                self.stats["upstream_rq_pending_failure_eject"] += 1
                raise
            finally:
                self.pending -= 1
        if self.active_requests >= lim.max_requests:
            self.stats["upstream_rq_pending_overflow"] += 1  # Envoy counts both pool overflows here
            self._recycle(host, conn)
            raise Overflow("max_requests")
        self.active_requests += 1
        host.active += 1
        host.rq_total += 1
        self.stats["upstream_rq_total"] += 1
        return conn

    def release(self, host: Host, conn: Connection, reusable: bool) -> None:
        """The request on ``conn`` is over: keep the connection for the next one, or close it."""
        self.active_requests -= 1
        host.active -= 1
        per_conn = self.spec.limits.max_requests_per_connection
        if (per_conn and conn.requests >= per_conn) or not conn.usable:
            reusable = False
        if reusable:
            self._recycle(host, conn)
        else:
            self._discard(host, conn)

    def _can_open(self, host: Host) -> bool:
        # Envoy pools are per host: a host without any connection may always open one, so a
        # pending request never waits on connections that belong to other hosts
        return self.connections < self.spec.limits.max_connections or host.connections == 0

    async def _open(self, host: Host, reserved: bool) -> Connection:
        if not reserved:
            host.connections += 1
            self.connections += 1
        ctx, port = self.ssl_for(host.endpoint, self.spec) if self.ssl_for else (None, host.endpoint.port)
        host.cx_total += 1
        self.stats["upstream_cx_total"] += 1
        try:
            if ctx is not None and port and port == host.endpoint.hbone_port:
                return await _connect_hbone(host.endpoint, ctx, self.spec.limits.connect_timeout)
            return await connect(host.endpoint.address, port, ctx, timeout=self.spec.limits.connect_timeout,
                                 stream_limit=DEFAULT_LIMITS.buffer_limit)
        except BaseException as exc:
            if isinstance(exc, ConnectFailure):
                host.cx_connect_fail += 1
                self.stats["upstream_cx_connect_fail"] += 1
            host.connections -= 1
            self.connections -= 1
            self._dispatch()
            raise

    async def _wait(self, host: Host) -> Connection:
        fut: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
        entry: Waiter = (host, fut)
        self.waiters.append(entry)
        try:
            handed = await fut
        except asyncio.CancelledError:
            self._abandon(entry)
            raise
        if handed is not None:
            return handed
        return await self._open(host, reserved=True)  # a slot was reserved for us

    def _abandon(self, entry: Waiter) -> None:
        # a waiter cancelled (route timeout) must give back whatever it was handed meanwhile
        host, fut = entry
        try:
            self.waiters.remove(entry)
        except ValueError:
            pass
        if fut.done() and not fut.cancelled():
            handed = fut.result()
            if handed is not None:
                self._recycle(host, handed)
            else:
                host.connections -= 1
                self.connections -= 1
                self._dispatch()
        else:
            fut.cancel()

    def _take_idle(self, host: Host) -> Connection | None:
        while host.idle:
            conn = host.idle.pop()
            if conn.usable:
                return conn
            self._discard(host, conn)
        return None

    def _recycle(self, host: Host, conn: Connection) -> None:
        """A free, reusable connection: to the first request waiting for its host, else idle."""
        for entry in self.waiters:
            waiter_host, fut = entry
            if waiter_host is host and not fut.done():
                self.waiters.remove(entry)
                fut.set_result(conn)
                return
        if self.draining:
            self._discard(host, conn, dispatch=False)
            return
        host.idle.append(conn)

    def _discard(self, host: Host, conn: Connection, dispatch: bool = True) -> None:
        conn.close()
        host.connections -= 1
        self.connections -= 1
        if dispatch:
            self._dispatch()

    def _dispatch(self) -> None:
        """Let waiting requests open a connection where the thresholds now allow it (FIFO)."""
        keep: deque[Waiter] = deque()
        while self.waiters:
            host, fut = entry = self.waiters.popleft()
            if fut.done():
                continue
            if self._can_open(host):
                host.connections += 1  # reserve the slot now, the waiter connects when it runs
                self.connections += 1
                fut.set_result(None)
            else:
                keep.append(entry)
        self.waiters = keep

    def try_retry_budget(self) -> bool:
        """Envoy's ``max_retries``: concurrent retries per cluster; pair with :meth:`end_retry`."""
        if self.active_retries >= self.spec.limits.max_retries:
            self.stats["upstream_rq_retry_overflow"] += 1
            return False
        self.active_retries += 1
        return True

    def end_retry(self) -> None:
        self.active_retries -= 1

    # outlier detection ---------------------------------------------------------------------------
    def report(self, host: Host, status: int) -> bool:
        """Feed one attempt's outcome (locally originated failures as 503/504); True if ejected now."""
        if status >= 500:
            host.rq_error += 1
        else:
            host.rq_success += 1
        self.stats[_RQ_CLASS[status // 100 % 6]] += 1
        od = self.spec.outlier
        if od is None:
            return False
        if not 500 <= status <= 599:
            host.consecutive_5xx = host.consecutive_gateway = 0
            return False
        ejected = False
        if status in (502, 503, 504):
            host.consecutive_gateway += 1
            if od.consecutive_gateway and host.consecutive_gateway == od.consecutive_gateway:
                ejected = self._consecutive_error(host, "gateway")
        else:
            host.consecutive_gateway = 0
        host.consecutive_5xx += 1
        if od.consecutive_5xx and host.consecutive_5xx == od.consecutive_5xx:
            ejected = self._consecutive_error(host, "5xx") or ejected
        return ejected

    def _consecutive_error(self, host: Host, kind: str) -> bool:
        od = self.spec.outlier
        assert od is not None
        if host.ejected:
            return False
        suffix = "consecutive_5xx" if kind == "5xx" else "consecutive_gateway_failure"
        self.stats[f"outlier_detection.ejections_detected_{suffix}"] += 1
        ejected = self._may_eject(od)
        if ejected:
            self.stats[f"outlier_detection.ejections_enforced_{suffix}"] += 1
            self._eject(host, od)
        else:
            self.stats["outlier_detection.ejections_overflow"] += 1
        # the triggering counter restarts, so the next bout needs the full count again
        if kind == "5xx":
            host.consecutive_5xx = 0
        else:
            host.consecutive_gateway = 0
        return ejected

    def _may_eject(self, od: OutlierSpec) -> bool:
        total = len(self.hosts)
        already = sum(1 for h in self.hosts if h.ejected)
        if od.at_least_one:
            return 100.0 * already / total < od.max_ejection_percent
        return 100.0 * (already + 1) / total <= od.max_ejection_percent

    def _eject(self, host: Host, od: OutlierSpec) -> None:
        host.ejected = True
        host.ejected_at = self.clock()
        host.times_ejected += 1
        if host.eject_backoff * od.base_ejection < od.max_ejection + od.base_ejection:
            host.eject_backoff += 1
        self.stats["outlier_detection.ejections_enforced_total"] += 1

    def sweep(self) -> None:
        """Run the interval timer's work for every tick that has passed (un-ejection, decay)."""
        od = self.spec.outlier
        if od is None or od.interval <= 0:
            return
        now = self.clock()
        while self._next_sweep <= now:
            self._tick(self._next_sweep, od)
            self._next_sweep += od.interval
            if not any(h.ejected or h.eject_backoff for h in self.hosts) and self._next_sweep <= now:
                # nothing left to lift or decay: jump to the first tick after now
                self._next_sweep += od.interval * (math.floor((now - self._next_sweep) / od.interval) + 1)

    def _tick(self, now: float, od: OutlierSpec) -> None:
        for host in self.hosts:
            if host.ejected and host.ejection_time(od) <= now - host.ejected_at:
                host.ejected = False
                host.unejected_at = now
                host.consecutive_5xx = host.consecutive_gateway = 0
        for host in self.hosts:
            if (
                not host.ejected
                and host.eject_backoff
                and host.unejected_at is not None
                and now - host.unejected_at >= od.interval
            ):
                host.eject_backoff -= 1

    def drop_idle(self) -> None:
        """Close pooled idle connections (new requests open fresh ones)."""
        for host in self.hosts:
            while host.idle:
                host.idle.pop().close()
                self.connections -= 1

    def close(self) -> None:
        for host in self.hosts:
            while host.idle:
                host.idle.pop().close()
            host.connections = 0
        for _, fut in self.waiters:
            if not fut.done():
                fut.set_exception(ConnectFailure("cluster removed"))
        self.waiters.clear()
        self.connections = 0


async def _connect_hbone(ep: Endpoint, ctx: ssl.SSLContext, timeout: float | None) -> Connection:
    """An upstream connection to an ambient pod: HTTP/1.1 inside an HBONE tunnel to its ztunnel, the
    peer's certificate checked against the pod's identity (a mismatch or a refused CONNECT is a connect
    failure, as for any upstream)."""
    from meshkit.backends.local.ztunnel.hbone import connect_http
    from meshkit.http1 import ClientProtocol

    proto = ClientProtocol(DEFAULT_LIMITS.buffer_limit)
    try:
        await asyncio.wait_for(connect_http(ep.hbone_port, ctx, ep.hbone_target, ep.principal, proto), timeout)
    except (TimeoutError, OSError, ssl.SSLError) as exc:
        raise ConnectFailure(f"{type(exc).__name__}: {exc}") from exc
    return Connection(proto, (ep.address, ep.hbone_port))
