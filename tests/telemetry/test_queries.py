"""Lab questions over records, their PromQL twins, and Prometheus answers converted to the same rows."""

from __future__ import annotations

import math

import pytest

from meshkit.errors import MeshkitError
from meshkit.telemetry.queries import (
    from_prometheus_matrix,
    from_prometheus_vector,
    latency_percentiles,
    merge_percentiles,
    promql_latency,
    promql_rate_by,
    promql_success_ratio,
    promql_timeseries,
    rate_by,
    success_ratio,
    timeseries,
    to_frame,
    workload_namespace,
)

from .synthetic import PREFERENCE, RECOMMENDATION, chain, hop

T0 = 1_700_000_000.0


def split_records(n: int = 100) -> list[dict]:
    """n requests one per 0.5 s, 90/10 between recommendation v1 and v2; every 20th v1 misbehaves."""
    out = []
    for i in range(n):
        version = "v2" if i % 10 == 9 else "v1"
        failure = "app503" if i % 20 == 0 else None
        out += [r.to_dict() for r in chain(f"r{i}", T0 + 0.5 * i, version=version, failure=failure)]
    return out


def test_rate_by_version_is_the_90_10_split() -> None:
    rows = rate_by(split_records(), "destination_version", window_s=60, service="recommendation", now=T0 + 51)
    assert [(r["destination_version"], r["count"]) for r in rows] == [("v1", 90), ("v2", 10)]
    assert rows[0]["rate"] == pytest.approx(1.5) and rows[0]["share"] == pytest.approx(0.9)
    fqdn = rate_by(
        split_records(),
        "destination_version",
        60,
        service="recommendation.tutorial.svc.cluster.local",
        now=T0 + 51,
    )
    assert fqdn == rows


def test_window_keeps_only_requests_that_completed_in_it() -> None:
    records = split_records()
    rows = rate_by(records, "destination_version", window_s=10, service="recommendation", now=T0 + 50)
    assert sum(r["count"] for r in rows) == 20  # requests 80..99 ended within (40, 50]
    assert rate_by(records, "response_code", 10, now=T0 + 500) == []


def test_rate_by_code_and_by_flag_per_reporter() -> None:
    records = split_records(40)
    records += [
        hop(
            PREFERENCE,
            RECOMMENDATION["v2"],
            "source",
            t=T0 + i,
            duration_ms=0.2,
            code=503,
            flags="UO",
            reached=False,
        ).to_dict()
        for i in range(4)
    ]
    codes = rate_by(records, "response_code", 60, service="recommendation", now=T0 + 30)
    assert [(r["response_code"], r["count"]) for r in codes] == [("200", 38), ("503", 2)]
    flags = rate_by(records, "response_flags", 60, reporter="source", service="recommendation", now=T0 + 30)
    assert [(r["response_flags"], r["count"]) for r in flags] == [("-", 40), ("UO", 4)]
    with pytest.raises(ValueError, match="unknown field 'colour'; choose one of: reporter, source_workload"):
        rate_by(records, "colour", 60)
    with pytest.raises(ValueError, match="window_s must be > 0"):
        rate_by(records, "response_code", 0)


def test_success_ratio_overall_and_per_version() -> None:
    records = split_records()
    (overall,) = success_ratio(records, 60, service="recommendation", now=T0 + 51)
    assert (overall["success"], overall["total"]) == (95, 100) and overall["ratio"] == pytest.approx(0.95)
    per = success_ratio(records, 60, service="recommendation", by="destination_version", now=T0 + 51)
    assert [(r["destination_version"], r["total"], r["ratio"]) for r in per] == [
        ("v1", 90, 85 / 90),
        ("v2", 10, 1.0),
    ]
    assert success_ratio([], 60, now=T0) == []


def test_latency_percentiles_are_exact_over_raw_durations() -> None:
    records = [
        hop(
            PREFERENCE,
            RECOMMENDATION["v1" if i <= 100 else "v2"],
            "destination",
            t=T0,
            duration_ms=float(i if i <= 100 else 50),
        ).to_dict()
        for i in range(1, 111)
    ]
    rows = latency_percentiles(records, service="recommendation")
    v1, v2 = rows
    assert v1["destination_version"] == "v1" and v1["count"] == 100
    assert (v1["p50"], v1["p90"], v1["p99"]) == pytest.approx((50.5, 90.1, 99.01))
    assert (v2["p50"], v2["p99"], v2["count"]) == (50.0, 50.0, 10)
    with pytest.raises(ValueError, match=r"percentiles must be within 0\.\.100"):
        latency_percentiles(records, percentiles=(150,))


def test_timeseries_is_dense_per_bucket() -> None:
    records = split_records(20)  # one request per 0.5 s from t0; v2 at i=9 and i=19
    rows = timeseries(records, "destination_version", bucket_s=5.0, service="recommendation")
    assert rows == [
        {"t": T0, "key": "v1", "count": 9},
        {"t": T0, "key": "v2", "count": 1},
        {"t": T0 + 5, "key": "v1", "count": 9},
        {"t": T0 + 5, "key": "v2", "count": 1},
    ]
    only_v1 = timeseries(records[:54], "destination_version", 5.0, service="recommendation")
    assert only_v1 == [{"t": T0, "key": "v1", "count": 9}]
    empty_tail = timeseries(records, "destination_version", 5.0, service="recommendation", until=T0 + 15)
    assert empty_tail[-2:] == [
        {"t": T0 + 15, "key": "v1", "count": 0},
        {"t": T0 + 15, "key": "v2", "count": 0},
    ]


def test_promql_matches_the_reference_queries() -> None:
    assert promql_rate_by("destination_version", "recommendation", namespace=None) == (
        'sum by (destination_version) (rate(istio_requests_total{reporter="destination",'
        'destination_service_name="recommendation"}[1m]))'
    )
    assert promql_rate_by("response_flags", "recommendation", reporter="source", window="5m") == (
        'sum by (response_flags) (rate(istio_requests_total{reporter="source",destination_service_name='
        '"recommendation",destination_service_namespace="tutorial"}[5m]))'
    )
    assert promql_success_ratio("recommendation", namespace=None) == (
        'sum (rate(istio_requests_total{reporter="destination",destination_service_name="recommendation",'
        'response_code!~"5.."}[1m])) / sum (rate(istio_requests_total{reporter="destination",'
        'destination_service_name="recommendation"}[1m]))'
    )
    assert promql_latency(99, service="recommendation", namespace=None) == (
        "histogram_quantile(0.99, sum by (le, destination_version) "
        "(rate(istio_request_duration_milliseconds_bucket"
        '{reporter="destination",destination_service_name="recommendation"}[1m])))'
    )
    assert promql_timeseries("destination_version", 5, "recommendation.tutorial.svc.cluster.local", namespace=None) == (
        'sum by (destination_version) (increase(istio_requests_total{reporter="destination",'
        'destination_service="recommendation.tutorial.svc.cluster.local"}[5s]))'
    )
    assert 'destination_service_name="a\\"b"' in promql_rate_by("response_code", 'a"b')
    with pytest.raises(ValueError, match="window must be a Prometheus duration"):
        promql_rate_by("response_code", window="1 minute")
    with pytest.raises(ValueError, match="not a valid Prometheus label name"):
        promql_rate_by("response code")


def vector(*series: tuple[dict[str, str], str]) -> dict:
    return {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": m, "value": [T0, v]} for m, v in series]},
    }


def test_prometheus_vector_gives_the_local_rows_shape() -> None:
    answer = vector(({"destination_version": "v2"}, "0.15"), ({"destination_version": "v1"}, "1.35"))
    rows = from_prometheus_vector(answer, window_s=60)
    local = rate_by(split_records(), "destination_version", 60, service="recommendation", now=T0 + 51)
    assert [set(r) for r in rows] == [set(r) for r in local]
    assert [r["destination_version"] for r in rows] == ["v1", "v2"]
    assert rows[0]["rate"] == 1.35 and rows[0]["count"] == pytest.approx(81.0)
    assert rows[0]["share"] == pytest.approx(0.9)
    (nan_row,) = from_prometheus_vector(vector(({}, "NaN")), value="ratio")
    assert math.isnan(nan_row["ratio"])
    with pytest.raises(MeshkitError, match="Prometheus answered bad_data: parse error"):
        from_prometheus_vector({"status": "error", "errorType": "bad_data", "error": "parse error"})
    with pytest.raises(ValueError, match="expected a Prometheus vector result, got matrix"):
        from_prometheus_vector({"status": "success", "data": {"resultType": "matrix", "result": []}})


def test_prometheus_matrix_and_percentiles() -> None:
    matrix = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {"metric": {"destination_version": "v1"}, "values": [[T0 + 5, "9"], [T0 + 10, "8"]]},
                {"metric": {"destination_version": "v2"}, "values": [[T0 + 5, "1"], [T0 + 10, "2"]]},
            ],
        },
    }
    rows = from_prometheus_matrix(matrix, "destination_version", bucket_s=5)
    assert rows[:2] == [{"t": T0, "key": "v1", "count": 9.0}, {"t": T0, "key": "v2", "count": 1.0}]
    assert [set(r) for r in rows] == [{"t", "key", "count"}] * 4
    merged = merge_percentiles(
        {
            50: vector(({"destination_version": "v1"}, "4.1")),
            99: vector(({"destination_version": "v1"}, "24.3")),
        },
        by="destination_version",
    )
    assert merged == [{"destination_version": "v1", "p50": 4.1, "p99": 24.3}]


def test_to_frame() -> None:
    frame = to_frame(rate_by(split_records(), "destination_version", 60, service="recommendation", now=T0 + 51))
    assert list(frame.columns) == ["destination_version", "count", "rate", "share"]
    assert frame["count"].sum() == 100


def test_workload_namespace() -> None:
    assert workload_namespace("x", "spiffe://cluster.local/ns/team-a/sa/x") == "team-a"
    assert workload_namespace("istio-ingressgateway") == "istio-system"
    assert workload_namespace("unknown") == "unknown"
    assert workload_namespace("customer-v1", default="tutorial") == "tutorial"
