"""Trace context in and out of a proxy (B3 and W3C headers) and the span each proxy reports.

Every proxy on a request's path makes one span: the server sidecar a ``server`` span, the client
sidecar and the gateway a ``client`` span, each the child of the span whose id arrived in the headers
(Istio configures Envoy's Zipkin tracer with ``shared_span_context: false``, so a server span does not
reuse its caller's span id). The app between a server and a client span only has to copy the headers,
which is why the sample apps propagate them.

Incoming context is read from B3 multi-headers first, then the single ``b3`` header, then W3C
``traceparent``; outgoing headers carry the same ids in every format present, so a hop reading either
format continues the same trace. The sampling decision is made once, at the root, with
``sampling_percent`` (Istio's default is 1 %, the demo profile 100 %); a child follows the parent.

Example::

    ctx = start_span(headers, "server", sampling_percent=100.0, rng=random.Random(7))
    ...  # the request is served, its RequestRecord filled
    span = finish_span(ctx, rec)   # a Jaeger-shaped span dict for the collector (when ctx.sampled)
"""

from __future__ import annotations

import os
import random
import re
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from meshkit.telemetry.queries import GATEWAY_WORKLOADS, parse_cluster, workload_namespace
from meshkit.telemetry.record import UNKNOWN, RequestRecord

_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_HEX16_32 = re.compile(r"^(?:[0-9a-f]{16}|[0-9a-f]{32})$")
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$")
_ZERO16, _ZERO32 = "0" * 16, "0" * 32
SPAN_KINDS = ("server", "client")


class Rng(Protocol):
    def random(self) -> float: ...


@dataclass(frozen=True, slots=True)
class SpanContext:
    """The span a proxy opened for one request.

    ``trace_id`` is 32 hex digits, or 16 when the caller sent a 64-bit B3 trace id (kept as sent);
    ``parent_span_id`` is empty for a root span.
    """

    trace_id: str
    span_id: str
    parent_span_id: str
    sampled: bool
    kind: str
    request_id: str
    debug: bool = False


@dataclass(frozen=True, slots=True)
class _Incoming:
    trace_id: str
    span_id: str
    sampled: bool | None  # None: the caller left the decision to us
    debug: bool


# ids come from a generator seeded from os.urandom per process, not the injected rng: pods are
# separate processes and a shared seed would give every pod the same ids
_IDS = random.Random(os.urandom(16))


def _new_id(nbytes: int) -> str:
    while True:
        value = _IDS.getrandbits(nbytes * 8)
        if value:
            return f"{value:0{nbytes * 2}x}"


def _sampled_flag(value: str | None) -> bool | None:
    if value is None:
        return None
    value = value.strip().lower()
    if value in ("1", "true", "d"):
        return True
    if value in ("0", "false"):
        return False
    return None


def _from_b3_multi(headers: dict[str, str]) -> _Incoming | None:
    trace_id = headers.get("x-b3-traceid", "").strip().lower()
    span_id = headers.get("x-b3-spanid", "").strip().lower()
    debug = headers.get("x-b3-flags", "").strip() == "1"
    if not (_HEX16_32.match(trace_id) and _HEX16.match(span_id)) or trace_id in (_ZERO16, _ZERO32):
        return None
    sampled = True if debug else _sampled_flag(headers.get("x-b3-sampled"))
    return _Incoming(trace_id, span_id, sampled, debug)


def _from_b3_single(headers: dict[str, str]) -> _Incoming | None:
    # b3: {traceid}-{spanid}[-{sampling}[-{parentspanid}]]; a lone "0" only denies sampling
    parts = headers.get("b3", "").strip().lower().split("-")
    if len(parts) < 2 or not (_HEX16_32.match(parts[0]) and _HEX16.match(parts[1])):
        return None
    sampling = parts[2] if len(parts) > 2 else None
    return _Incoming(parts[0], parts[1], _sampled_flag(sampling), sampling == "d")


def _from_traceparent(headers: dict[str, str]) -> _Incoming | None:
    m = _TRACEPARENT.match(headers.get("traceparent", "").strip().lower())
    if not m or m.group(1) == "ff" or m.group(2) == _ZERO32 or m.group(3) == _ZERO16:
        return None
    return _Incoming(m.group(2), m.group(3), bool(int(m.group(4), 16) & 1), False)


def _deny_only(headers: dict[str, str]) -> bool | None:
    """A sampling decision sent without ids (``x-b3-sampled: 0`` alone or ``b3: 0``)."""
    single = headers.get("b3", "").strip().lower()
    if single in ("0", "1", "d"):
        return single != "0"
    return _sampled_flag(headers.get("x-b3-sampled"))


def start_span(
    headers: dict[str, str],
    kind: str,
    sampling_percent: float = 100.0,
    rng: Rng | None = None,
) -> SpanContext:
    """Open this proxy's span for a request and rewrite ``headers`` (lower-case names) for the next hop.

    Continues the incoming trace (or starts one, deciding sampling with ``sampling_percent`` using
    ``rng``), then writes ``x-b3-traceid/spanid/parentspanid/sampled`` and ``traceparent`` (and ``b3``
    when the request used it) naming the new span as the parent of whatever comes next. ``tracestate``
    and ``x-b3-flags`` pass through; ``x-request-id`` is generated (uuid4) when absent.

    Example::

        headers = {"x-request-id": "abc"}
        ctx = start_span(headers, "client", 100.0, random.Random(1))
        headers["x-b3-spanid"] == ctx.span_id      # True
    """
    if kind not in SPAN_KINDS:
        raise ValueError(f"span kind must be one of {SPAN_KINDS}, got {kind!r}")
    if not 0.0 <= sampling_percent <= 100.0:
        raise ValueError(f"sampling_percent must be within 0..100, got {sampling_percent}")
    incoming = _from_b3_multi(headers) or _from_b3_single(headers) or _from_traceparent(headers)
    if incoming is None:
        trace_id, parent, debug = _new_id(16), "", False
        sampled = _deny_only(headers)
    else:
        trace_id, parent, debug, sampled = (
            incoming.trace_id,
            incoming.span_id,
            incoming.debug,
            incoming.sampled,
        )
    if sampled is None:
        sampled = (rng or random).random() * 100.0 < sampling_percent
    request_id = headers.get("x-request-id") or str(uuid.uuid4())
    ctx = SpanContext(trace_id, _new_id(8), parent, sampled, kind, request_id, debug)
    write_headers(ctx, headers)
    return ctx


def write_headers(ctx: SpanContext, headers: dict[str, str]) -> None:
    """Write ``ctx`` as the parent context for the next hop, consistently in B3 and W3C form."""
    flag = "1" if ctx.sampled else "0"
    headers["x-b3-traceid"] = ctx.trace_id
    headers["x-b3-spanid"] = ctx.span_id
    if ctx.parent_span_id:
        headers["x-b3-parentspanid"] = ctx.parent_span_id
    else:
        headers.pop("x-b3-parentspanid", None)
    headers["x-b3-sampled"] = flag
    headers["traceparent"] = f"00-{ctx.trace_id.rjust(32, '0')}-{ctx.span_id}-0{flag}"
    if "b3" in headers:
        single = f"{ctx.trace_id}-{ctx.span_id}-{'d' if ctx.debug else flag}"
        headers["b3"] = f"{single}-{ctx.parent_span_id}" if ctx.parent_span_id else single
    headers["x-request-id"] = ctx.request_id


def jaeger_trace_id(trace_id: str) -> str:
    """Jaeger prints a 128-bit id whose high half is zero as its 16-digit low half."""
    return trace_id[16:] if len(trace_id) == 32 and trace_id.startswith(_ZERO16) else trace_id


def operation_name(rec: RequestRecord) -> str:
    """Istio's span name, the route decorator ``<destination host>:<port>/*``.

    >>> operation_name(RequestRecord(proxy="p", reporter="source",
    ...     destination_service="recommendation.tutorial.svc.cluster.local",
    ...     upstream_cluster="outbound|8080|version-v1|recommendation.tutorial.svc.cluster.local"))
    'recommendation.tutorial.svc.cluster.local:8080/*'
    """
    authority_host, _, authority_port = rec.authority.partition(":")
    host = rec.destination_service if rec.destination_service != UNKNOWN else authority_host or UNKNOWN
    port = parse_cluster(rec.upstream_cluster)[1] or authority_port or "80"
    return f"{host}:{port}/*"


def _own_identity(rec: RequestRecord) -> tuple[str, str, str]:
    """(app, version, namespace) of the proxy that made the record."""
    if rec.reporter == "waypoint":
        # a waypoint's canonical service is its Gateway's name (its pod: <gateway>-<hash>-<suffix>)
        return rec.proxy.rsplit("-", 2)[0], "latest", rec.namespace
    if rec.reporter == "source":
        app, version = rec.source_app, rec.source_version
        ns = workload_namespace(rec.source_workload, rec.source_principal, rec.namespace)
    else:
        app, version = rec.destination_app, rec.destination_version
        ns = workload_namespace(rec.destination_workload, rec.destination_principal, rec.namespace)
    return app, version, ns if ns != UNKNOWN else rec.namespace


def _tag(key: str, value: Any) -> dict[str, Any]:
    kind = "bool" if isinstance(value, bool) else "int64" if isinstance(value, int) else "string"
    return {"key": key, "type": kind, "value": value}


def finish_span(ctx: SpanContext, rec: RequestRecord, operation: str | None = None) -> dict[str, Any]:
    """The span for a completed request, in the pieces of Jaeger's shape the collector assembles.

    Keys: ``traceID``, ``spanID``, ``parentSpanID`` ("" at the root), ``operationName``, ``startTime``
    and ``duration`` (µs), ``tags`` (``[{"key", "type", "value"}]``), ``process`` (``serviceName``
    ``<app>.<namespace>`` as Istio names it, ``tags``) and ``flags`` (1 = sampled, 2 = debug). Report
    it only when ``ctx.sampled``; the collector drops unsampled spans anyway.

    Example::

        span = finish_span(ctx, rec)
        span["process"]["serviceName"]     # 'customer.tutorial'
    """
    app, version, ns = _own_identity(rec)
    gateway = rec.reporter == "source" and rec.source_workload in GATEWAY_WORKLOADS
    node_kind = "router" if gateway else "waypoint" if rec.reporter == "waypoint" else "sidecar"
    tags = [
        _tag("component", "proxy"),
        _tag("span.kind", ctx.kind),
        _tag("node_id", f"{node_kind}~127.0.0.1~{rec.proxy}.{ns}~{ns}.svc.cluster.local"),
        _tag("guid:x-request-id", ctx.request_id),
        _tag("http.method", rec.method),
        _tag("http.url", f"http://{rec.authority}{rec.path}"),
        _tag("http.protocol", rec.protocol),
        _tag("http.status_code", str(rec.response_code)),
        _tag("response_flags", rec.response_flags or "-"),
        _tag("response_size", str(rec.bytes_sent)),
        _tag("request_size", str(rec.bytes_received)),
        _tag("upstream_cluster", rec.upstream_cluster or "-"),
        _tag("upstream_address", rec.upstream_host or "-"),
        _tag("user_agent", rec.user_agent or "-"),
        _tag("downstream_cluster", "-"),
        _tag("istio.canonical_service", app),
        _tag("istio.canonical_revision", version if version != UNKNOWN else "latest"),
        _tag("istio.namespace", ns),
        _tag("istio.mesh_id", "cluster.local"),
    ]
    if rec.response_code >= 500 or rec.response_code == 0:
        tags.append(_tag("error", True))
    return {
        "traceID": jaeger_trace_id(ctx.trace_id),
        "spanID": ctx.span_id,
        "parentSpanID": ctx.parent_span_id,
        "operationName": operation or operation_name(rec),
        "startTime": int(rec.start_time * 1_000_000),
        "duration": int(rec.duration_ms * 1000),
        "tags": tags,
        "process": {
            "serviceName": f"{app}.{ns}",
            "tags": [_tag("hostname", rec.proxy), _tag("ip", "127.0.0.1")],
        },
        "flags": (1 if ctx.sampled else 0) | (2 if ctx.debug else 0),
    }
