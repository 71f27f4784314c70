"""Istio's standard metrics for one proxy, rendered in the Prometheus text format.

Names, types and labels are Istio's (istio.io "Istio Standard Metrics"): ``istio_requests_total``,
``istio_request_duration_milliseconds``, ``istio_request_bytes``, ``istio_response_bytes`` and the
``istio_tcp_*`` counters, labelled ``reporter``, ``source_*``, ``destination_*``, ``response_code``,
``response_flags``, ``connection_security_policy`` and the rest. Every histogram uses Envoy's default
buckets: Istio's stats plugin records into Envoy histograms and configures no buckets of its own, so
durations *and* byte sizes share ``HistogramSettingsImpl::defaultBuckets()`` from envoyproxy/envoy
``source/common/stats/histogram_impl.cc`` (0.5 … 3600000). Real sidecars confirm it: their
``istio_request_bytes_bucket`` series carry ``le="500"``, a bound no byte-specific scheme would pick.

The hot path (:meth:`ProxyStats.record`) is one dict lookup on the record's raw label values plus
one ``inc`` and three ``observe`` calls (:mod:`.prometheus`: no locks, one bisection each); label
strings are derived only the first time a combination is seen. The number of combinations is
bounded by the mesh's shape (peers × response codes × flags × security policies: a few hundred
in the labs); ``max_series`` is a hard stop beyond which new combinations are counted in
``meshkit_proxy_stats_series_dropped_total`` instead.

Example::

    stats = ProxyStats("preference-v1-6b8c7f5d9c-x2x7q", "preference-v1", "preference", "v1")
    stats.record(RequestRecord(proxy="preference-v1-6b8c7f5d9c-x2x7q", reporter="source",
                               response_code=200, duration_ms=3.2))
    print(stats.exposition().decode())
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from meshkit.backends.local.proxy.metric_overrides import MetricOverrides
from meshkit.backends.local.proxy.prometheus import CounterChild, Family, HistogramChild, exposition, process_families
from meshkit.telemetry.queries import CLUSTER_ID, service_namespace, workload_namespace
from meshkit.telemetry.record import UNKNOWN, RequestRecord

#: Envoy's default histogram buckets, used by Istio for every standard histogram
ISTIO_BUCKETS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000,
    1800000, 3600000,
)  # fmt: skip

_PEER_LABELS = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_canonical_service",
    "source_canonical_revision",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_cluster",
    "request_protocol",
)
#: the labels of the HTTP metrics, in the order of Istio's documentation
HTTP_LABELS: tuple[str, ...] = (
    *_PEER_LABELS,
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
)
#: the TCP metrics have no response code or gRPC status
TCP_LABELS: tuple[str, ...] = (*_PEER_LABELS, "response_flags", "connection_security_policy")

MAX_SERIES = 4096


def _peer_values(rec: RequestRecord, own_namespace: str, protocol: str) -> list[str]:
    """The values of ``_PEER_LABELS`` for a record, Istio's ``unknown`` where a side is not known."""
    source_reporter = rec.reporter == "source"
    src_ns = workload_namespace(
        rec.source_workload, rec.source_principal, own_namespace if source_reporter else rec.namespace
    )
    dst_ns = workload_namespace(
        rec.destination_workload,
        rec.destination_principal,
        rec.namespace if source_reporter else own_namespace,
    )
    src_known = rec.source_workload != UNKNOWN
    dst_known = rec.destination_workload != UNKNOWN
    return [
        rec.reporter,
        rec.source_workload,
        src_ns,
        rec.source_principal,
        rec.source_app,
        rec.source_version,
        # canonical service/revision default to the app and version labels, as in Istio
        rec.source_app,
        rec.source_version if rec.source_version != UNKNOWN else ("latest" if src_known else UNKNOWN),
        CLUSTER_ID if src_known else UNKNOWN,
        rec.destination_workload,
        dst_ns,
        rec.destination_principal,
        rec.destination_app,
        rec.destination_version,
        rec.destination_service,
        rec.destination_service_name,
        service_namespace(rec.destination_service, rec.namespace),
        rec.destination_app,
        rec.destination_version if rec.destination_version != UNKNOWN else ("latest" if dst_known else UNKNOWN),
        CLUSTER_ID if dst_known else UNKNOWN,
        protocol,
    ]


class ProxyStats:
    """The metrics one proxy (sidecar or gateway) exposes, as Envoy serves on ``:15090/stats/prometheus``.

    ``pod``/``workload``/``app``/``version``/``namespace`` identify the proxy itself; the labels of each
    request come from its :class:`RequestRecord`. The registry also carries the process collector
    under Istio's agent prefix (``istio_agent_process_resident_memory_bytes`` and friends), read only
    when scraped.

    Example::

        stats = ProxyStats("istio-ingressgateway-7d4f8c9b6-abcde", "istio-ingressgateway",
                           "istio-ingressgateway", "unknown", namespace="istio-system")
        stats.record(rec)                       # per request, after the response completed
        text = stats.exposition()               # bytes, Prometheus text format 0.0.4
    """

    def __init__(
        self,
        pod: str,
        workload: str,
        app: str,
        version: str,
        namespace: str = "tutorial",
        *,
        max_series: int = MAX_SERIES,
        process_metrics: bool = True,
    ) -> None:
        self.pod, self.workload, self.app, self.version = pod, workload, app, version
        self.namespace = namespace
        self.max_series = max_series
        self.process_metrics = process_metrics
        self._requests = Family("istio_requests_total", "Requests handled by this proxy.", "counter", HTTP_LABELS)
        self._duration = Family("istio_request_duration_milliseconds", "Request durations in milliseconds.",
                                "histogram", HTTP_LABELS, ISTIO_BUCKETS)
        self._req_bytes = Family("istio_request_bytes", "HTTP request body sizes.", "histogram", HTTP_LABELS,
                                 ISTIO_BUCKETS)
        self._resp_bytes = Family("istio_response_bytes", "HTTP response body sizes.", "histogram", HTTP_LABELS,
                                  ISTIO_BUCKETS)
        self._tcp_opened = Family("istio_tcp_connections_opened_total", "TCP connections opened.", "counter",
                                  TCP_LABELS)
        self._tcp_closed = Family("istio_tcp_connections_closed_total", "TCP connections closed.", "counter",
                                  TCP_LABELS)
        self._tcp_sent = Family("istio_tcp_sent_bytes_total", "Bytes sent during response on TCP.", "counter",
                                TCP_LABELS)
        self._tcp_received = Family("istio_tcp_received_bytes_total", "Bytes received during request on TCP.",
                                    "counter", TCP_LABELS)
        self._dropped = Family("meshkit_proxy_stats_series_dropped_total",
                               "Requests not counted because max_series label combinations exist.", "counter")
        self._http_families = (self._requests, self._duration, self._req_bytes, self._resp_bytes)
        self._other_families = (self._tcp_opened, self._tcp_closed, self._tcp_sent, self._tcp_received,
                                self._dropped)
        self._http: dict[tuple[Any, ...], tuple[CounterChild, HistogramChild, HistogramChild, HistogramChild]] = {}
        self._tcp: dict[tuple[Any, ...], tuple[CounterChild, CounterChild, CounterChild, CounterChild]] = {}
        # Telemetry metric overrides: the HTTP metrics then take the slower, reshaped path
        self._overrides = MetricOverrides()
        self._reshaped: dict[tuple[str, tuple[str, ...]], Family] = {}
        self._reshaped_series: set[tuple[Any, ...]] = set()

    def configure(self, overrides: MetricOverrides) -> None:
        """Apply a Telemetry's metric overrides (a change starts the reshaped series afresh)."""
        if overrides == self._overrides:
            return
        self._overrides = overrides
        self._reshaped.clear()
        self._reshaped_series.clear()

    def _reshaped_metric(self, family: str, names: tuple[str, ...]) -> Family:
        found = self._reshaped.get((family, names))
        if found is None:
            if family == "istio_requests_total":
                found = Family(family, "Requests handled by this proxy.", "counter", names)
            else:
                found = Family(family, "Istio standard histogram.", "histogram", names, ISTIO_BUCKETS)
            self._reshaped[(family, names)] = found
        return found

    def _record_reshaped(self, rec: RequestRecord) -> None:
        values = _peer_values(rec, self.namespace, "http")
        values += [str(rec.response_code), "", rec.response_flags, rec.connection_security_policy]
        base = dict(zip(HTTP_LABELS, values, strict=True))
        for family, amount in (
            ("istio_requests_total", 1.0),
            ("istio_request_duration_milliseconds", rec.duration_ms),
            ("istio_request_bytes", float(rec.bytes_received)),
            ("istio_response_bytes", float(rec.bytes_sent)),
        ):
            if self._overrides.disabled(family, rec.reporter):
                continue
            labels = self._overrides.values(family, base, rec)
            names = tuple(labels)
            series = (family, names, *labels.values())
            if series not in self._reshaped_series:
                if self.series >= self.max_series:
                    self._dropped.inc()
                    continue
                self._reshaped_series.add(series)
            metric = self._reshaped_metric(family, names)
            if family == "istio_requests_total":
                metric.counter(*labels.values()).inc()
            else:
                metric.histogram(*labels.values()).observe(amount)

    @staticmethod
    def _key(rec: RequestRecord) -> tuple[Any, ...]:
        return (
            rec.reporter, rec.source_workload, rec.source_app, rec.source_version, rec.source_principal,
            rec.destination_workload, rec.destination_app, rec.destination_version, rec.destination_service,
            rec.destination_service_name, rec.destination_principal, rec.namespace, rec.response_flags,
            rec.connection_security_policy,
        )  # fmt: skip

    @property
    def series(self) -> int:
        """Distinct label combinations in use (HTTP plus TCP); bounded by ``max_series``."""
        return len(self._http) + len(self._tcp) + len(self._reshaped_series)

    def record(self, rec: RequestRecord) -> None:
        """Count one completed HTTP request (called once per request, on the hot path)."""
        if self._overrides:
            self._record_reshaped(rec)
            return
        # the raw record values identify the series; label strings are derived only on a miss
        key = (
            rec.reporter, rec.source_workload, rec.source_app, rec.source_version, rec.source_principal,
            rec.destination_workload, rec.destination_app, rec.destination_version, rec.destination_service,
            rec.destination_service_name, rec.destination_principal, rec.namespace, rec.response_flags,
            rec.connection_security_policy, rec.response_code,
        )  # fmt: skip
        children = self._http.get(key)
        if children is None:
            if self.series >= self.max_series:
                self._dropped.inc()
                return
            values = _peer_values(rec, self.namespace, "http")
            values += [str(rec.response_code), "", rec.response_flags, rec.connection_security_policy]
            children = (
                self._requests.counter(*values),
                self._duration.histogram(*values),
                self._req_bytes.histogram(*values),
                self._resp_bytes.histogram(*values),
            )
            self._http[key] = children
        requests, duration, req_bytes, resp_bytes = children
        requests.inc()
        duration.observe(rec.duration_ms)
        req_bytes.observe(rec.bytes_received)
        resp_bytes.observe(rec.bytes_sent)

    def _tcp_children(self, rec: RequestRecord) -> tuple[CounterChild, CounterChild, CounterChild, CounterChild] | None:
        key = self._key(rec)
        children = self._tcp.get(key)
        if children is None:
            if self.series >= self.max_series:
                self._dropped.inc()
                return None
            values = _peer_values(rec, self.namespace, "tcp")
            values += [rec.response_flags, rec.connection_security_policy]
            children = (
                self._tcp_opened.counter(*values),
                self._tcp_closed.counter(*values),
                self._tcp_sent.counter(*values),
                self._tcp_received.counter(*values),
            )
            self._tcp[key] = children
        return children

    def record_connection_open(self, rec: RequestRecord) -> None:
        """Count a TCP connection opened to/from the peer described by ``rec`` (TCP traffic only)."""
        children = self._tcp_children(rec)
        if children is not None:
            children[0].inc()

    def record_connection_close(self, rec: RequestRecord, sent_bytes: int, received_bytes: int) -> None:
        """Count a closed TCP connection and the bytes it carried (sent = towards the downstream)."""
        if sent_bytes < 0 or received_bytes < 0:
            raise ValueError(f"byte counts must be >= 0, got sent={sent_bytes} received={received_bytes}")
        children = self._tcp_children(rec)
        if children is not None:
            children[1].inc()
            children[2].inc(sent_bytes)
            children[3].inc(received_bytes)

    def exposition(self) -> bytes:
        """The Prometheus text exposition of this proxy, without client-library ``_created`` series.

        Envoy exposes no ``*_created`` samples, and neither does this. With metric overrides the
        reshaped HTTP families replace the standard ones, each name once, its series from every label set.
        """
        process = process_families("istio_agent") if self.process_metrics else []
        if not self._overrides:
            return exposition([*self._http_families, *self._other_families, *process])
        return exposition([*self._other_families, *process, *self._reshaped.values()])


def merge_expositions(by_pod: Mapping[str, bytes | str]) -> str:
    """Merge the expositions of several proxies into one, adding a ``pod`` label as Prometheus does.

    Two replicas of one workload report identical Istio labels; the ``pod`` label (added by
    Prometheus' Kubernetes service discovery on a real cluster) keeps their series apart.

    Example::

        print(merge_expositions({"customer-v1-…": a.exposition(), "preference-v1-…": b.exposition()}))
    """
    # the control plane's side (it parses what the proxies send); no proxy loads prometheus_client
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.metrics_core import Metric
    from prometheus_client.parser import text_string_to_metric_families

    class _Families:
        """A one-shot collector that yields already-built metric families."""

        def __init__(self, families: Iterable[Metric]) -> None:
            self._families = list(families)

        def collect(self) -> Iterator[Metric]:
            return iter(self._families)

    merged: dict[str, Metric] = {}
    envoy: dict[str, tuple[str, list[str]]] = {}
    for pod, text in by_pod.items():
        raw = _split_envoy(text.decode() if isinstance(text, bytes) else text, pod, envoy)
        try:
            families = list(text_string_to_metric_families(raw))
        except ValueError as exc:
            raise ValueError(f"metrics of pod {pod!r} are not in Prometheus text format: {exc}") from None
        for fam in families:
            target = merged.get(fam.name)
            if target is None:
                target = merged[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
            for s in fam.samples:
                target.add_sample(s.name, {**s.labels, "pod": pod}, s.value, s.timestamp, s.exemplar)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(merged.values()))
    tail = "".join(f"# TYPE {name} {kind}\n" + "".join(lines) + "\n" for name, (kind, lines) in envoy.items())
    return generate_latest(registry).decode() + tail


def _split_envoy(text: str, pod: str, envoy: dict[str, tuple[str, list[str]]]) -> str:
    """Move the ``envoy_*`` families of one proxy's text into ``envoy`` (name -> kind, samples with
    ``pod`` added) and return the rest. Envoy's counters carry no ``_total`` and keep their names
    as Prometheus keeps them; a round trip through prometheus_client would append ``_total`` and fold
    ``envoy_http_downstream_rq`` and ``envoy_http_downstream_rq_total`` into one family."""
    if "# TYPE envoy_" not in text:
        return text
    rest: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines(keepends=True):
        if line.startswith("# TYPE envoy_"):
            _, _, name, kind = (line.split() + [""] * 4)[:4]
            current = envoy.setdefault(name, (kind, []))[1]
        elif line.startswith("#") or not line.strip():
            current = None
            if line.strip():
                rest.append(line)
        elif current is not None:
            head, brace, value = line.rpartition("} ")
            if not brace:
                raise ValueError(f"metrics of pod {pod!r} are not in Prometheus text format: {line.strip()!r}")
            current.append(f'{head}{"," if not head.endswith("{") else ""}pod="{pod}"}} {value}')
        else:
            rest.append(line)
    return "".join(rest)
