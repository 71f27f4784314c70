"""The router (Envoy ``envoy.filters.http.router``): weighted cluster choice, mirroring, the route
timeout, retries and the upstream exchange through the cluster's pool.

Semantics kept from Envoy/Istio:

* the route ``timeout`` covers every attempt; hitting it answers 504 ``upstream request timeout``
  with flag UT and is never retried; ``perTryTimeout`` bounds one attempt;
* retries follow ``retryOn`` (a per-try timeout is retried only under ``5xx``, ``gateway-error``
  or ``reset``), prefer a host not tried before, wait a fully jittered exponential backoff
  (base 25 ms) and, when exhausted, return the last answer with flag URX;
* a circuit-breaker overflow answers 503 UO at once and is never retried;
* every attempt's outcome feeds outlier detection; a cluster with no host left answers 503 UH.
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
from meshkit.http1 import ConnectFailure, Request, Response, UpstreamReset


@dataclass(frozen=True, slots=True)
class Failure:
    """An attempt that got no upstream response."""

    kind: str  # connect | reset | timeout | overflow
    detail: str = ""

    @property
    def as_status(self) -> int:
        """How outlier detection counts it (locally originated errors as gateway errors)."""
        return 504 if self.kind == "timeout" else 503


Outcome = Response | Failure


def should_retry(outcome: Outcome, policy: RetryPolicy) -> bool:
    on = policy.retry_on
    if isinstance(outcome, Failure):
        if outcome.kind == "overflow":
            return False
        if outcome.kind == "connect":
            return bool(on & {"connect-failure", "5xx", "gateway-error", "reset"})
        if outcome.kind == "timeout":
            return bool(on & {"5xx", "gateway-error", "reset"})
        return bool(on & {"5xx", "reset"})
    status = outcome.status
    if "5xx" in on and status >= 500:
        return True
    if "gateway-error" in on and status in (502, 503, 504):
        return True
    if "retriable-4xx" in on and status == 409:
        return True
    return "retriable-status-codes" in on and status in policy.codes


def backoff(attempt: int, base: float, rng: random.Random) -> float:
    """Envoy's fully jittered exponential backoff: retry N waits rand[0, (2^N - 1) * base)."""
    ceiling = min((2**attempt - 1) * base, 10 * base)
    return rng.random() * ceiling


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

    async def __call__(self, ex: Exchange) -> Response:
        route = ex.route
        assert route is not None
        if not route.destinations:
            return ex.local_reply(503, "NC", "cluster_not_found", rule=f"route {route.name} has no destination")
        dest = self._pick(route)
        clusters = self.clusters()
        cluster = clusters.get(dest.cluster)
        rec = ex.rec
        rec.upstream_cluster = dest.cluster
        rec.destination_service = dest.host
        rec.destination_service_name = dest.host.split(".")[0]
        if cluster is None:
            rule = f"route to subset {dest.subset} of {dest.host.split('.')[0]} not defined in any DestinationRule"
            return ex.local_reply(503, "NC", "cluster_not_found", rule=rule)
        for mirror in route.mirrors:
            if self.rng.random() * 100.0 < mirror.percent and mirror.cluster in clusters:
                self._mirror(ex, clusters[mirror.cluster])
        if route.timeout:
            try:
                return await asyncio.wait_for(self._attempts(ex, cluster, route), route.timeout)
            except asyncio.TimeoutError:
                rule = f"timeout {route.timeout:g}s in {route.origin}"
                return ex.local_reply(504, "UT", "upstream_response_timeout", TIMEOUT_BODY, rule)
        return await self._attempts(ex, cluster, route)

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

    async def _attempts(self, ex: Exchange, cluster: Cluster, route: Route) -> Response:
        policy = route.retry
        retries_left = policy.num_retries if policy else 0
        tried: set[str] = set()
        attempt = 0
        while True:
            attempt += 1
            exclude = frozenset(tried) if policy is None or policy.previous_hosts else frozenset()
            host = cluster.pick(exclude)
            if host is None:
                rule = f"no healthy host in {_cluster_label(cluster)}"
                if cluster.hosts:
                    rule += " (all ejected by outlier detection)"
                return ex.local_reply(503, "UH", "no_healthy_upstream", NO_HEALTHY_BODY, rule)
            tried.add(host.endpoint.pod)
            ex.rec.attempts = attempt
            self._note_upstream(ex, host)
            retrying = attempt > 1
            outcome = await self._send(ex, cluster, host, attempt, policy.per_try_timeout if policy else None)
            if retrying:
                cluster.active_retries -= 1
            if isinstance(outcome, Failure) and outcome.kind == "overflow":
                rule = f"circuit breaker on {_cluster_label(cluster)} ({cluster.spec.describe_limits()})"
                return ex.local_reply(503, "UO", "upstream_reset_before_response_started{overflow}", OVERFLOW_BODY, rule)
            status = outcome.status if isinstance(outcome, Response) else outcome.as_status
            if cluster.report(host, status):
                od = cluster.spec.outlier
                ex.rec.rule = ex.rec.rule or (
                    f"outlier detection ejected {host.endpoint.pod} from {_cluster_label(cluster)}"
                    f" for {od.base_ejection * host.times_ejected:g}s" if od else ""
                )
            retryable = policy is not None and should_retry(outcome, policy)
            if retryable and retries_left > 0 and cluster.try_retry_budget():
                retries_left -= 1
                await self.sleep(backoff(attempt, policy.backoff_base if policy else 0.025, self.rng))
                continue
            if retryable and policy is not None and policy.num_retries > 0:
                ex.flag("URX", f"retries exhausted ({policy.num_retries}) on {_cluster_label(cluster)}")
            return self._reply(ex, outcome)

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

    async def _send(
        self, ex: Exchange, cluster: Cluster, host: Host, attempt: int, per_try: float | None
    ) -> Outcome:
        cluster.active_requests += 1
        host.active += 1
        conn = None
        reusable = False
        try:
            try:
                conn = await cluster.acquire(host)
            except Overflow as exc:
                return Failure("overflow", exc.threshold)
            except ConnectFailure as exc:
                return Failure("connect", str(exc))
            upstream = self.prepare(ex, cluster, host, attempt)
            try:
                coro = conn.roundtrip(upstream)
                resp = await (asyncio.wait_for(coro, per_try) if per_try else coro)
            except asyncio.TimeoutError:
                return Failure("timeout")
            except UpstreamReset as exc:
                return Failure("reset", str(exc))
            reusable = resp.keep_alive
            return resp
        finally:
            cluster.active_requests -= 1
            host.active -= 1
            if conn is not None:
                cluster.release(host, conn, reusable)

    def _mirror(self, ex: Exchange, cluster: Cluster) -> None:
        host = cluster.pick()
        if host is None:
            return
        req = ex.req
        headers = dict(req.headers)
        if self.shadow_suffix():
            name, _, port = headers.get("host", "").partition(":")
            headers["host"] = f"{name}-shadow" + (f":{port}" if port else "")
        shadow = Exchange(Request(req.method, req.path, headers, req.body), ex.rec)

        async def fire() -> None:
            # fire and forget: the reply is discarded and never delays the caller
            try:
                outcome = await self._send(shadow, cluster, host, 1, None)
                if not isinstance(outcome, Failure):
                    cluster.report(host, outcome.status)
            except Exception:
                return

        asyncio.ensure_future(fire())


def _cluster_label(cluster: Cluster) -> str:
    name = cluster.spec.service.split(".")[0]
    return f"{name}/{cluster.spec.subset}" if cluster.spec.subset else name
