"""The router (Envoy ``envoy.filters.http.router``): weighted cluster choice, mirroring, the route
timeout, retries and the upstream exchange through the cluster's pool.

Semantics kept from Envoy/Istio:

* the route ``timeout`` covers every attempt and backoff; hitting it cancels the attempt in
  flight (its connection is closed and its pool slot freed, and outlier detection counts it as a
  timeout) and answers 504 ``upstream request timeout`` with flag UT; it is never retried;
* ``perTryTimeout`` bounds one attempt (from when the request is on a connection); an expired
  attempt counts as a 504 for outlier detection and is retried only under ``5xx``,
  ``gateway-error`` or ``reset``;
* retries follow ``retryOn``, prefer a host not tried before (previous-hosts predicate), wait a
  jittered exponential backoff (retry *n* waits ``rand[0, (2^n - 1) × base)``, at most 10 × base)
  and hold one unit of the cluster's ``maxRetries`` budget while they run; when the retries are
  exhausted the last answer is returned with flag URX, when the budget is full with flag UO;
* a body larger than the buffer limit (or of unknown length) is streamed: the response goes
  downstream at headers time, the connection and its slot are held until the body ends, the
  route and per-try timeouts keep running until then (expiring mid-body they reset the response,
  flag UT), an upstream reset mid-body resets the downstream connection (flag UC), and a response
  already on its way is never retried;
* a circuit-breaker overflow answers 503 UO at once, is never retried and never counts for
  outlier detection; a cluster with no host left answers 503 UH ``no healthy upstream``.

Example::

    router = Router(lambda: clusters, random.Random(1), asyncio.sleep, prepare, lambda: False)
    response = await router(exchange)        # exchange.route already chosen by the route filter
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from meshkit.backends.local.proxy.cluster import Cluster, Host, Overflow
from meshkit.backends.local.proxy.config import Destination, RetryPolicy, Route
from meshkit.backends.local.proxy.exchange import (
    CONNECT_FAILURE_BODY,
    NO_HEALTHY_BODY,
    OVERFLOW_BODY,
    RESET_BODY,
    TIMEOUT_BODY,
    Exchange,
)
from meshkit.backends.local.proxy.routing import edit_headers
from meshkit.http1 import (
    BodyError,
    BodyStream,
    ConnectFailure,
    Connection,
    Request,
    Response,
    StreamTimeout,
    UpstreamReset,
)

# gRPC retryOn conditions and the grpc-status each one matches
GRPC_RETRY_ON = {"cancelled": "1", "deadline-exceeded": "4", "resource-exhausted": "8", "internal": "13",
                 "unavailable": "14"}


@dataclass(frozen=True, slots=True)
class Failure:
    """An attempt that got no upstream response."""

    kind: str  # connect | reset | timeout | overflow
    detail: str = ""

    @property
    def as_status(self) -> int:
        """How outlier detection counts it: Envoy maps local-origin errors to 503 and timeouts to 504."""
        return 504 if self.kind == "timeout" else 503


Outcome = Response | Failure


def should_retry(outcome: Outcome, policy: RetryPolicy) -> bool:
    """Envoy's retry decision for one attempt's outcome under ``policy.retry_on``.

    Example::

        should_retry(Response(503), RetryPolicy(retry_on=frozenset({"5xx"})))      # True
        should_retry(Failure("overflow"), RetryPolicy(retry_on=frozenset({"5xx"})))  # False, never
    """
    on = policy.retry_on
    if isinstance(outcome, Failure):
        if outcome.kind == "overflow":
            return False
        if outcome.kind == "connect" and on & {"connect-failure", "reset-before-request"}:
            return True
        # a reset (including an expired per-try timeout) counts as a 5xx and as a gateway error
        return bool(on & {"5xx", "gateway-error", "reset"})
    status = outcome.status
    if "5xx" in on and 500 <= status <= 599:
        return True
    if "gateway-error" in on and status in (502, 503, 504):
        return True
    if "retriable-4xx" in on and status == 409:
        return True
    if "retriable-status-codes" in on and status in policy.codes:
        return True
    if "envoy-ratelimited" in on and "x-envoy-ratelimited" in outcome.headers:
        return True
    grpc = outcome.headers.get("grpc-status")
    return grpc is not None and any(GRPC_RETRY_ON.get(name) == grpc for name in on)


def backoff(retry: int, base: float, rng: random.Random) -> float:
    """Envoy's jittered exponential backoff before retry number ``retry`` (1, 2, ...).

    Example::

        backoff(1, 0.025, rng)   # in [0, 0.025)
        backoff(3, 0.025, rng)   # in [0, 0.175)
    """
    return min(rng.random() * (2**retry - 1) * base, 10 * base)


class _Flight:
    """The attempt currently on a connection, so a route timeout can charge its host, and when
    the route timeout expires (it covers a streamed body too)."""

    __slots__ = ("deadline", "host")

    def __init__(self, deadline: float | None = None) -> None:
        self.host: Host | None = None
        self.deadline = deadline


class Router:
    """The terminal handler of the outbound chain."""

    def __init__(
        self,
        clusters: Callable[[], Mapping[str, Cluster]],
        rng: random.Random,
        sleep: Callable[[float], Awaitable[None]],
        prepare: Callable[[Exchange, Cluster, Host, int], Request],
        shadow_suffix: Callable[[], bool],
    ) -> None:
        self.clusters = clusters
        self.rng = rng
        self.sleep = sleep
        self.prepare = prepare  # builds the upstream request (headers for tracing, peer metadata...)
        self.shadow_suffix = shadow_suffix
        self._background: set[asyncio.Future[None]] = set()

    async def __call__(self, ex: Exchange) -> Response:
        route = ex.route
        assert route is not None
        if not route.destinations:
            return ex.local_reply(503, "NC", "cluster_not_found", rule=f"route {route.name} has no destination")
        dest = self.choose(ex)
        clusters = self.clusters()
        cluster = clusters.get(dest.cluster)
        if cluster is None:
            if route.gateway_semantics:
                # istiod sets cluster_not_found_response_code INTERNAL_SERVER_ERROR on Gateway API routes
                rule = f"backend {dest.host} of {route.origin} not found"
            else:
                rule = f"route to subset {dest.subset} of {dest.host.split('.')[0]} not defined in any DestinationRule"
            return ex.local_reply(route.cluster_not_found_status, "NC", "cluster_not_found", rule=rule)
        if dest.request_headers:
            edit_headers(ex.req.headers, dest.request_headers)
        if dest.response_headers:
            resp = await self._route_to(ex, cluster, route, clusters)
            edit_headers(resp.headers, dest.response_headers)
            return resp
        return await self._route_to(ex, cluster, route, clusters)

    async def _route_to(
        self, ex: Exchange, cluster: Cluster, route: Route, clusters: Mapping[str, Cluster]
    ) -> Response:
        for mirror in route.mirrors:
            if self.rng.random() * 100.0 < mirror.percent and mirror.cluster in clusters:
                self._mirror(ex, clusters[mirror.cluster])
        if not route.timeout:
            return await self._attempts(ex, cluster, route, _Flight())
        flight = _Flight(asyncio.get_running_loop().time() + route.timeout)
        try:
            return await asyncio.wait_for(self._attempts(ex, cluster, route, flight), route.timeout)
        except TimeoutError:
            cluster.stats["upstream_rq_timeout"] += 1
            if flight.host is not None:
                flight.host.rq_timeout += 1
                cluster.report(flight.host, 504)  # the reset attempt is a local-origin timeout
            rule = f"timeout {route.timeout:g}s in {route.origin}"
            return ex.local_reply(504, "UT", "upstream_response_timeout", TIMEOUT_BODY, rule)

    def choose(self, ex: Exchange) -> Destination:
        """The route's weighted destination for this request (chosen once), noted in its record.

        The fault filter calls it too before an abort, so an injected fault is attributed to the
        destination it stands in for, as Envoy's stats and Kiali do.
        """
        if ex.dest is None:
            assert ex.route is not None and ex.route.destinations
            ex.dest = self._pick(ex.route)
            rec = ex.rec
            rec.upstream_cluster = ex.dest.cluster
            rec.destination_service = ex.dest.host
            rec.destination_service_name = ex.dest.host.split(".")[0]
        return ex.dest

    def _pick(self, route: Route) -> Destination:
        dests = route.destinations
        if len(dests) == 1:
            return dests[0]
        point = self.rng.random() * route.total_weight
        for dest in dests:
            point -= dest.weight
            if point < 0:
                return dest
        return dests[-1]

    async def _attempts(self, ex: Exchange, cluster: Cluster, route: Route, flight: _Flight) -> Response:
        policy = route.retry
        retries_left = policy.num_retries if policy else 0
        tried: set[str] = set()
        attempt = 0
        while True:
            attempt += 1
            exclude = frozenset(tried) if policy is not None and policy.previous_hosts else frozenset()
            host = cluster.pick(exclude)
            if host is None:
                rule = f"no healthy host in {_cluster_label(cluster)}"
                if any(h.ejected for h in cluster.hosts):
                    rule += " (ejected by outlier detection)"
                return ex.local_reply(503, "UH", "no_healthy_upstream", NO_HEALTHY_BODY, rule)
            tried.add(host.endpoint.pod)
            ex.rec.attempts = attempt
            self._note_upstream(ex, host)
            per_try = policy.per_try_timeout if policy else None
            try:
                outcome = await self._send(ex, cluster, host, attempt, per_try, flight)
            finally:
                if attempt > 1:
                    cluster.end_retry()  # the retry budget is held until the retried attempt ends
            if isinstance(outcome, Failure) and outcome.kind == "overflow":
                rule = f"circuit breaker on {_cluster_label(cluster)} ({cluster.spec.describe_limits()})"
                details = "upstream_reset_before_response_started{overflow}"
                return ex.local_reply(503, "UO", details, OVERFLOW_BODY, rule)
            status = outcome.status if isinstance(outcome, Response) else outcome.as_status
            if cluster.report(host, status):
                self._note_ejection(ex, cluster, host)
            if policy is None or not should_retry(outcome, policy):
                return self._reply(ex, outcome)
            if isinstance(outcome, Response) and outcome.stream is not None:
                # nothing was sent downstream yet: the answer's body is dropped with its connection
                outcome.stream.abort(BodyError("response dropped for a retry"))
            if ex.req.stream is not None:
                # a body beyond the buffer limit cannot be replayed: Envoy abandons the retry
                cluster.stats["retry_or_shadow_abandoned"] += 1
                return self._reply(ex, outcome)
            label = _cluster_label(cluster)
            if retries_left == 0:
                if policy.num_retries > 0:
                    ex.flag("URX", f"retries exhausted on {label} ({policy.num_retries} retries)")
                return self._reply(ex, outcome)
            retries_left -= 1
            if not cluster.try_retry_budget():
                limit = cluster.spec.limits.max_retries
                ex.flag("UO", f"retry budget of {label} exhausted (maxRetries {limit})")
                return self._reply(ex, outcome)
            cluster.stats["upstream_rq_retry"] += 1
            try:
                await self.sleep(backoff(attempt, policy.backoff_base, self.rng))
            except BaseException:
                cluster.end_retry()
                raise

    def _reply(self, ex: Exchange, outcome: Outcome) -> Response:
        if isinstance(outcome, Response):
            ex.rec.response_code_details = "via_upstream"
            return outcome
        if outcome.kind == "connect":
            return ex.local_reply(
                503, "UF", "upstream_reset_before_response_started{connection_failure}", CONNECT_FAILURE_BODY
            )
        if outcome.kind == "timeout":
            return ex.local_reply(504, "UT", "upstream_per_try_timeout", TIMEOUT_BODY)
        return ex.local_reply(
            503, "UC", "upstream_reset_before_response_started{connection_termination}", RESET_BODY
        )

    def _note_upstream(self, ex: Exchange, host: Host) -> None:
        ep, rec = host.endpoint, ex.rec
        rec.upstream_host = f"{ep.address}:{ep.port}"
        rec.upstream_pod = ep.pod
        rec.destination_workload = ep.workload or rec.destination_workload
        rec.destination_app = ep.app or rec.destination_app
        rec.destination_version = ep.version or rec.destination_version
        rec.destination_principal = ep.principal or rec.destination_principal

    def _note_ejection(self, ex: Exchange, cluster: Cluster, host: Host) -> None:
        od = cluster.spec.outlier
        if od is not None and not ex.rec.rule:
            ex.rec.rule = (
                f"outlier detection ejected {host.endpoint.pod} from {_cluster_label(cluster)}"
                f" for {host.ejection_time(od):g}s"
            )

    async def _send(
        self, ex: Exchange, cluster: Cluster, host: Host, attempt: int, per_try: float | None, flight: _Flight
    ) -> Outcome:
        try:
            conn = await cluster.acquire(host)
        except Overflow as exc:
            return Failure("overflow", exc.threshold)
        except ConnectFailure as exc:
            return Failure("connect", str(exc))
        reusable = False
        streamed = False
        flight.host = host
        outcome: Outcome
        try:
            coro = conn.roundtrip(self.prepare(ex, cluster, host, attempt))
            try:
                started = asyncio.get_running_loop().time() if per_try else 0.0
                outcome = await (asyncio.wait_for(coro, per_try) if per_try else coro)
                reusable = outcome.keep_alive
                if outcome.stream is not None:
                    # the body is still on its way: the connection is released when it ends
                    streamed = True
                    deadline = started + per_try if per_try else None
                    if flight.deadline is not None:
                        deadline = flight.deadline if deadline is None else min(deadline, flight.deadline)
                    _watch_body(outcome, outcome.stream, cluster, host, conn, deadline)
            except TimeoutError:
                cluster.stats["upstream_rq_per_try_timeout"] += 1
                host.rq_timeout += 1
                outcome = Failure("timeout")
            except UpstreamReset as exc:
                outcome = Failure("reset", str(exc))
        finally:
            # runs on a route timeout too (cancellation): the connection closes, the slot frees
            if not streamed:
                cluster.release(host, conn, reusable)
        flight.host = None  # not reached when cancelled: the route timeout charges this host
        return outcome

    def _mirror(self, ex: Exchange, cluster: Cluster) -> None:
        host = cluster.pick()
        if host is None:
            return
        req = ex.req
        headers = dict(req.headers)
        if self.shadow_suffix():
            name, _, port = headers.get("host", "").partition(":")
            headers["host"] = f"{name}-shadow" + (f":{port}" if port else "")
        # a streamed body is teed to the shadow, which is cut off when it falls a buffer behind
        tap = req.stream.tap() if req.stream is not None else None
        shadow = Exchange(Request(req.method, req.path, headers, req.body, stream=tap), ex.rec)

        async def fire() -> None:
            # fire and forget: the reply is discarded and never delays the caller
            try:
                outcome = await self._send(shadow, cluster, host, 1, None, _Flight())
                if tap is not None and tap.dropped:
                    cluster.stats["retry_or_shadow_abandoned"] += 1
                    return  # dropped for falling behind: not the upstream's fault
                if not isinstance(outcome, Failure):
                    if outcome.stream is not None:
                        await outcome.stream.discard()  # the shadow's answer is read and dropped
                    cluster.report(host, outcome.status)
                elif outcome.kind != "overflow":
                    cluster.report(host, outcome.as_status)
            except Exception:
                return

        task = asyncio.ensure_future(fire())
        self._background.add(task)  # keep a reference until done, or the loop may drop the task
        task.add_done_callback(self._background.discard)


def _watch_body(resp: Response, stream: BodyStream, cluster: Cluster, host: Host, conn: Connection,
                deadline: float | None) -> None:
    """Hold the connection and the request's slot until the streamed body ends; a route or
    per-try timeout still running when it expires resets the response (Envoy's timers run until
    the upstream response is complete, and a response already started can only be reset)."""
    timer = None
    if deadline is not None:
        timeout = StreamTimeout("the route timeout expired while the response body was arriving")
        timer = asyncio.get_running_loop().call_at(deadline, stream.abort, timeout)

    def over(error: BaseException | None) -> None:
        if timer is not None:
            timer.cancel()
        cluster.release(host, conn, resp.keep_alive and error is None)

    stream.on_end(over)


def _cluster_label(cluster: Cluster) -> str:
    name = cluster.spec.service.split(".")[0]
    return f"{name}/{cluster.spec.subset}" if cluster.spec.subset else name
