"""The questions the labs ask of the mesh's telemetry, answered as tidy rows on both backends.

The local backend answers from per-request records (``RequestRecord.to_dict()`` dicts); the kind
backend sends the PromQL built by the ``promql_*`` functions to Prometheus and converts the answer with
:func:`from_prometheus_vector` / :func:`from_prometheus_matrix` / :func:`merge_percentiles`, so a lab
sees the same rows either way. Label values are strings, as in Prometheus (``"200"``, not ``200``).

Common columns: ``rate_by`` → ``{field, "rate", "share"}`` (local adds the exact ``"count"``, Prometheus
the extrapolated ``increase``); ``success_ratio`` → ``{"ratio"}``; ``latency_percentiles`` →
``{by, "p50", "p90", "p99"}`` (local: exact percentiles of the raw durations; Prometheus:
``histogram_quantile`` interpolated inside the bucket); ``timeseries`` → ``{"t", "key", "count"}``.

Example::

    rows = rate_by(records, "destination_version", window_s=60, service="recommendation")
    # [{'destination_version': 'v1', 'count': 90, 'rate': 1.5, 'share': 0.9}, {... 'v2' ...}]
    promql_rate_by("destination_version", "recommendation")
    # 'sum by (destination_version) (rate(istio_requests_total{reporter="destination",...}[1m]))'
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from meshkit.errors import BackendUnavailable, MeshkitError
from meshkit.telemetry.record import UNKNOWN, RequestRecord

CLUSTER_ID = "Kubernetes"  # Istio's default cluster id, the value of source_cluster/destination_cluster
GATEWAY_NAMESPACE = "istio-system"
GATEWAY_WORKLOADS = frozenset({"istio-ingressgateway", "istio-egressgateway"})

#: record fields that are also Istio metric labels, usable as ``field``/``by`` in the local queries
LABEL_FIELDS: tuple[str, ...] = (
    "reporter", "source_workload", "source_app", "source_version", "source_principal",
    "destination_workload", "destination_app", "destination_version", "destination_service",
    "destination_service_name", "destination_principal", "response_code", "response_flags",
    "connection_security_policy",
)  # fmt: skip

_WINDOW = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

Row = dict[str, Any]
Records = Iterable[Mapping[str, Any] | RequestRecord]


# -- Istio label derivations shared by the metrics, the graph and the spans ------------------------
def workload_namespace(workload: str, principal: str = UNKNOWN, default: str = "tutorial") -> str:
    """A workload's namespace: its SPIFFE principal's, else ``istio-system`` for gateways, else ``default``.

    >>> workload_namespace("preference-v1", "spiffe://cluster.local/ns/tutorial/sa/preference")
    'tutorial'
    """
    if principal.startswith("spiffe://"):
        parts = principal.split("/")  # spiffe: '' cluster.local ns <ns> sa <sa>
        if len(parts) > 4 and parts[3] == "ns" and parts[4]:
            return parts[4]
    if workload in GATEWAY_WORKLOADS:
        return GATEWAY_NAMESPACE
    if not workload or workload == UNKNOWN:
        return UNKNOWN
    return default


def service_namespace(fqdn: str, default: str = "tutorial") -> str:
    """``recommendation.tutorial.svc.cluster.local`` → ``tutorial``; a ServiceEntry host → ``default``."""
    if not fqdn or fqdn == UNKNOWN:
        return UNKNOWN
    parts = fqdn.split(".")
    if len(parts) >= 3 and parts[2] == "svc":
        return parts[1]
    return default


def short_service(fqdn: str) -> str:
    """``recommendation.tutorial.svc.cluster.local`` → ``recommendation``; other hosts unchanged."""
    return fqdn.split(".", 1)[0] if fqdn.endswith(".svc.cluster.local") else fqdn


def parse_cluster(name: str) -> tuple[str, str, str, str]:
    """Envoy cluster name → ``(direction, port, subset, host)``; other names → ``("", "", "", name)``.

    >>> parse_cluster("outbound|8080|version-v2|recommendation.tutorial.svc.cluster.local")
    ('outbound', '8080', 'version-v2', 'recommendation.tutorial.svc.cluster.local')
    """
    parts = name.split("|")
    if len(parts) == 4 and parts[0] in ("outbound", "inbound"):
        return parts[0], parts[1], parts[2], parts[3]
    return "", "", "", name


# -- local queries over records --------------------------------------------------------------------
def _as_dict(rec: Mapping[str, Any] | RequestRecord) -> Mapping[str, Any]:
    return rec.to_dict() if isinstance(rec, RequestRecord) else rec


def _check_field(field: str) -> None:
    if field not in LABEL_FIELDS:
        raise ValueError(f"unknown field {field!r}; choose one of: {', '.join(LABEL_FIELDS)}")


def _select(
    records: Records, reporter: str | None, service: str | None, since: float | None, until: float | None
) -> list[Mapping[str, Any]]:
    """Records of one reporter and destination service whose response completed in (since, until]."""
    out = []
    for raw in records:
        rec = _as_dict(raw)
        if reporter is not None and rec.get("reporter") != reporter:
            continue
        if service is not None and service not in (
            rec.get("destination_service_name"),
            rec.get("destination_service"),
        ):
            continue
        end = _end_time(rec)
        if (since is not None and end <= since) or (until is not None and end > until):
            continue
        out.append(rec)
    return out


def _end_time(rec: Mapping[str, Any]) -> float:
    # counters move when the response completes, so a request belongs to the window it ended in
    return float(rec.get("start_time", 0.0)) + float(rec.get("duration_ms", 0.0)) / 1000.0


def _window(window_s: float, now: float | None) -> tuple[float, float]:
    if window_s <= 0:
        raise ValueError(f"window_s must be > 0, got {window_s}")
    until = time.time() if now is None else now
    return until - window_s, until


def rate_by(
    records: Records,
    field: str,
    window_s: float,
    reporter: str = "destination",
    service: str | None = None,
    now: float | None = None,
) -> list[Row]:
    """Requests per second over the last ``window_s`` seconds, grouped by one label.

    Example::

        rate_by(records, "response_flags", 60, reporter="source", service="recommendation")
        # [{'response_flags': '-', 'count': 80, 'rate': 1.33, 'share': 0.8}, {'response_flags': 'UO', ...}]
    """
    _check_field(field)
    since, until = _window(window_s, now)
    counts = Counter(str(r.get(field, UNKNOWN)) for r in _select(records, reporter, service, since, until))
    total = sum(counts.values())
    return [{field: key, "count": n, "rate": n / window_s, "share": n / total} for key, n in sorted(counts.items())]


def success_ratio(
    records: Records,
    window_s: float,
    reporter: str = "destination",
    service: str | None = None,
    by: str | None = None,
    now: float | None = None,
) -> list[Row]:
    """Share of non-5xx responses (Istio dashboards' ``response_code!~"5.."``), overall or per ``by``.

    An empty window gives ``[]``, as Prometheus gives an empty vector.

    Example::

        success_ratio(records, 60, service="recommendation")   # [{'ratio': 0.5, 'success': 5, 'total': 10}]
    """
    if by is not None:
        _check_field(by)
    since, until = _window(window_s, now)
    totals: Counter[str] = Counter()
    ok: Counter[str] = Counter()
    for rec in _select(records, reporter, service, since, until):
        key = str(rec.get(by, UNKNOWN)) if by else ""
        totals[key] += 1
        if not 500 <= int(rec.get("response_code", 0)) <= 599:
            ok[key] += 1
    rows = []
    for key in sorted(totals):
        row: Row = {by: key} if by else {}
        row.update(ratio=ok[key] / totals[key], success=ok[key], total=totals[key])
        rows.append(row)
    return rows


def _percentile(sorted_values: Sequence[float], pct: float) -> float:
    # linear interpolation between closest ranks (numpy's default method)
    pos = (len(sorted_values) - 1) * pct / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def latency_percentiles(
    records: Records,
    by: str = "destination_version",
    percentiles: Sequence[float] = (50, 90, 99),
    window_s: float | None = None,
    reporter: str = "destination",
    service: str | None = None,
    now: float | None = None,
) -> list[Row]:
    """Latency percentiles in milliseconds per ``by`` value (all records when ``window_s`` is None).

    Example::

        latency_percentiles(records, service="recommendation")
        # [{'destination_version': 'v1', 'p50': 2.1, 'p90': 3.9, 'p99': 7.5, 'count': 90}, ...]
    """
    _check_field(by)
    for pct in percentiles:
        if not 0 <= pct <= 100:
            raise ValueError(f"percentiles must be within 0..100, got {pct}")
    since, until = _window(window_s, now) if window_s is not None else (None, None)
    groups: dict[str, list[float]] = defaultdict(list)
    for rec in _select(records, reporter, service, since, until):
        groups[str(rec.get(by, UNKNOWN))].append(float(rec.get("duration_ms", 0.0)))
    rows = []
    for key in sorted(groups):
        values = sorted(groups[key])
        row: Row = {by: key}
        row.update({f"p{pct:g}": _percentile(values, pct) for pct in percentiles})
        row["count"] = len(values)
        rows.append(row)
    return rows


def timeseries(
    records: Records,
    field: str,
    bucket_s: float = 1.0,
    reporter: str = "destination",
    service: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> list[Row]:
    """Request counts per time bucket and label value, dense (zeros included) for plotting.

    ``t`` is the bucket's start (epoch seconds, a multiple of ``bucket_s``).

    Example::

        timeseries(records, "destination_version", bucket_s=1.0, service="recommendation")
        # [{'t': 1700000000.0, 'key': 'v1', 'count': 9}, {'t': 1700000000.0, 'key': 'v2', 'count': 1}, ...]
    """
    _check_field(field)
    if bucket_s <= 0:
        raise ValueError(f"bucket_s must be > 0, got {bucket_s}")
    counts: Counter[tuple[int, str]] = Counter()
    for rec in _select(records, reporter, service, since, until):
        counts[(math.floor(_end_time(rec) / bucket_s), str(rec.get(field, UNKNOWN)))] += 1
    if not counts:
        return []
    keys = sorted({k for _, k in counts})
    first = math.floor(since / bucket_s) if since is not None else min(b for b, _ in counts)
    last = math.floor(until / bucket_s) if until is not None else max(b for b, _ in counts)
    return [{"t": b * bucket_s, "key": k, "count": counts.get((b, k), 0)} for b in range(first, last + 1) for k in keys]


# -- the same questions in PromQL (kind backend) ---------------------------------------------------
def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_promql_args(window: str, *labels: str) -> None:
    if not _WINDOW.match(window):
        raise ValueError(f"window must be a Prometheus duration like '30s', '1m', '5m', got {window!r}")
    for label in labels:
        if not _LABEL_NAME.match(label):
            raise ValueError(f"{label!r} is not a valid Prometheus label name")


def _selector(reporter: str, service: str | None, namespace: str | None, extra: str = "") -> str:
    matchers = [f"reporter={_quote(reporter)}"]
    if service:
        name = "destination_service" if service.endswith(".svc.cluster.local") else "destination_service_name"
        matchers.append(f"{name}={_quote(service)}")
        if namespace:
            matchers.append(f"destination_service_namespace={_quote(namespace)}")
    if extra:
        matchers.append(extra)
    return "{" + ",".join(matchers) + "}"


def promql_rate_by(
    field: str,
    service: str | None = None,
    window: str = "1m",
    reporter: str = "destination",
    namespace: str | None = "tutorial",
) -> str:
    """PromQL for :func:`rate_by` (use one reporter to avoid counting each request twice).

    Example::

        promql_rate_by("response_code", "preference", namespace=None)
        # sum by (response_code) (rate(istio_requests_total{reporter="destination",
        #                                 destination_service_name="preference"}[1m]))
    """
    _check_promql_args(window, field)
    sel = _selector(reporter, service, namespace)
    return f"sum by ({field}) (rate(istio_requests_total{sel}[{window}]))"


def promql_success_ratio(
    service: str | None = None,
    window: str = "1m",
    reporter: str = "destination",
    namespace: str | None = "tutorial",
    by: str | None = None,
) -> str:
    """PromQL for :func:`success_ratio`: non-5xx rate over total rate."""
    _check_promql_args(window, *([by] if by else []))
    grouping = f" by ({by})" if by else ""
    ok = _selector(reporter, service, namespace, 'response_code!~"5.."')
    total = _selector(reporter, service, namespace)
    return (
        f"sum{grouping} (rate(istio_requests_total{ok}[{window}])) / "
        f"sum{grouping} (rate(istio_requests_total{total}[{window}]))"
    )


def promql_latency(
    percentile: float,
    by: str = "destination_version",
    service: str | None = None,
    window: str = "1m",
    reporter: str = "destination",
    namespace: str | None = "tutorial",
) -> str:
    """PromQL for one percentile of :func:`latency_percentiles` (``histogram_quantile`` over buckets).

    Example::

        promql_latency(99, service="recommendation", namespace=None)
        # histogram_quantile(0.99, sum by (le, destination_version) (rate(
        #     istio_request_duration_milliseconds_bucket{reporter="destination",
        #                                                destination_service_name="recommendation"}[1m])))
    """
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be within 0..100, got {percentile}")
    _check_promql_args(window, by)
    sel = _selector(reporter, service, namespace)
    return (
        f"histogram_quantile({percentile / 100:g}, sum by (le, {by}) "
        f"(rate(istio_request_duration_milliseconds_bucket{sel}[{window}])))"
    )


def promql_timeseries(
    field: str,
    bucket_s: int = 1,
    service: str | None = None,
    reporter: str = "destination",
    namespace: str | None = "tutorial",
) -> str:
    """PromQL for :func:`timeseries`, to send to ``/api/v1/query_range`` with ``step=bucket_s``."""
    window = f"{int(bucket_s)}s"
    _check_promql_args(window, field)
    sel = _selector(reporter, service, namespace)
    return f"sum by ({field}) (increase(istio_requests_total{sel}[{window}]))"


# -- Prometheus answers → the same rows ------------------------------------------------------------
def _result(answer: Mapping[str, Any] | Sequence[Any], expected: str) -> list[Mapping[str, Any]]:
    """The ``result`` list of an ``/api/v1/query(_range)`` answer (whole body, ``data`` or the list)."""
    if isinstance(answer, Mapping):
        if answer.get("status") == "error":
            raise MeshkitError(f"Prometheus answered {answer.get('errorType')}: {answer.get('error')}")
        data = answer.get("data", answer)
        kind = data.get("resultType")
        if kind is not None and kind != expected:
            raise ValueError(f"expected a Prometheus {expected} result, got {kind}")
        result = data.get("result")
        if not isinstance(result, list):
            raise ValueError("not a Prometheus query answer: no data.result list")
        return result
    return list(answer)


def from_prometheus_vector(
    answer: Mapping[str, Any] | Sequence[Any], value: str = "rate", window_s: float | None = None
) -> list[Row]:
    """Rows ``{<labels>..., value: float}`` from an instant-query answer, sorted by labels.

    With ``window_s`` (the rate's range in seconds) rows also get ``count`` (rate × window, i.e.
    Prometheus' ``increase``) and ``share``, the columns :func:`rate_by` gives.

    Example::

        body = {"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"destination_version": "v1"}, "value": [1700000000.0, "1.5"]}]}}
        from_prometheus_vector(body, window_s=60)
        # [{'destination_version': 'v1', 'rate': 1.5, 'count': 90.0, 'share': 1.0}]
    """
    rows: list[Row] = []
    for series in _result(answer, "vector"):
        labels = {k: v for k, v in series.get("metric", {}).items() if k != "__name__"}
        rows.append({**labels, value: float(series["value"][1])})
    rows.sort(key=lambda r: sorted((k, str(v)) for k, v in r.items() if k != value))
    if window_s is not None:
        total = sum(r[value] for r in rows if not math.isnan(r[value]))
        for r in rows:
            r["count"] = r[value] * window_s
            r["share"] = r[value] / total if total else 0.0
    return rows


def from_prometheus_matrix(answer: Mapping[str, Any] | Sequence[Any], field: str, bucket_s: float = 1.0) -> list[Row]:
    """:func:`timeseries` rows from a ``query_range`` answer of :func:`promql_timeseries`.

    ``increase(...[b])`` evaluated at ``ts`` covers ``(ts-b, ts]``, so ``t = ts - b`` is the bucket start.
    """
    rows = [
        {"t": float(ts) - bucket_s, "key": series.get("metric", {}).get(field, ""), "count": float(v)}
        for series in _result(answer, "matrix")
        for ts, v in series.get("values", [])
    ]
    rows.sort(key=lambda r: (r["t"], r["key"]))
    return rows


def merge_percentiles(answers: Mapping[float, Mapping[str, Any] | Sequence[Any]], by: str) -> list[Row]:
    """:func:`latency_percentiles` rows from one :func:`promql_latency` answer per percentile.

    Example::

        merge_percentiles({50: ans50, 99: ans99}, by="destination_version")
        # [{'destination_version': 'v1', 'p50': 4.1, 'p99': 24.3}, ...]
    """
    merged: dict[str, Row] = {}
    for pct, answer in answers.items():
        for row in from_prometheus_vector(answer, value="v"):
            key = str(row.get(by, ""))
            merged.setdefault(key, {by: key})[f"p{pct:g}"] = row["v"]
    return [merged[k] for k in sorted(merged)]


def to_frame(rows: Sequence[Row]) -> Any:
    """The rows as a pandas DataFrame (pandas comes with ``pip install 'meshkit[lab]'``)."""
    try:
        import pandas as pd
    except ImportError:
        raise BackendUnavailable("to_frame needs pandas: pip install 'meshkit[lab]'") from None
    return pd.DataFrame(list(rows))
