"""Istio metrics of one proxy, read back from its Prometheus text exposition."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
from prometheus_client.parser import text_string_to_metric_families

from meshkit.backends.local.proxy.stats import HTTP_LABELS, ISTIO_BUCKETS, ProxyStats, merge_expositions
from meshkit.telemetry.record import RequestRecord

from .synthetic import CUSTOMER, GATEWAY, GATEWAY_POD, PREFERENCE, RECOMMENDATION, hop


def samples(text: bytes | str, name: str) -> list[tuple[dict[str, str], float]]:
    raw = text.decode() if isinstance(text, bytes) else text
    return [(s.labels, s.value) for fam in text_string_to_metric_families(raw) for s in fam.samples if s.name == name]


def preference_stats() -> ProxyStats:
    return ProxyStats(PREFERENCE.pod, PREFERENCE.workload, "preference", "v1")


def test_a_90_10_split_gives_two_series_with_istio_labels() -> None:
    stats = preference_stats()
    for i in range(100):
        version = "v2" if i % 10 == 0 else "v1"
        stats.record(hop(PREFERENCE, RECOMMENDATION[version], "source", t=1000.0 + i, duration_ms=4.0))
    series = samples(stats.exposition(), "istio_requests_total")
    assert sorted((lbl["destination_version"], v) for lbl, v in series) == [("v1", 90.0), ("v2", 10.0)]
    v1 = next(lbl for lbl, _ in series if lbl["destination_version"] == "v1")
    assert v1 == {
        "reporter": "source",
        "source_workload": "preference-v1",
        "source_workload_namespace": "tutorial",
        "source_principal": "spiffe://cluster.local/ns/tutorial/sa/preference",
        "source_app": "preference",
        "source_version": "v1",
        "source_canonical_service": "preference",
        "source_canonical_revision": "v1",
        "source_cluster": "Kubernetes",
        "destination_workload": "recommendation-v1",
        "destination_workload_namespace": "tutorial",
        "destination_principal": "spiffe://cluster.local/ns/tutorial/sa/recommendation",
        "destination_app": "recommendation",
        "destination_version": "v1",
        "destination_service": "recommendation.tutorial.svc.cluster.local",
        "destination_service_name": "recommendation",
        "destination_service_namespace": "tutorial",
        "destination_canonical_service": "recommendation",
        "destination_canonical_revision": "v1",
        "destination_cluster": "Kubernetes",
        "request_protocol": "http",
        "response_code": "200",
        "grpc_response_status": "",
        "response_flags": "-",
        "connection_security_policy": "unknown",
    }
    assert set(v1) == set(HTTP_LABELS)


def test_flags_fault_overflow_and_retries_are_separate_series() -> None:
    stats = ProxyStats(CUSTOMER.pod, CUSTOMER.workload, "customer", "v1")
    rec_v2 = RECOMMENDATION["v2"]
    cases = [
        (PREFERENCE, 503, "FI", False, 3),
        (rec_v2, 503, "UO", False, 5),
        (rec_v2, 503, "URX", True, 2),
        (rec_v2, 200, "-", True, 7),
    ]
    for callee, code, flags, reached, n in cases:
        for i in range(n):
            stats.record(
                hop(
                    CUSTOMER,
                    callee,
                    "source",
                    t=float(i),
                    duration_ms=1.0,
                    code=code,
                    flags=flags,
                    reached=reached,
                )
            )
    series = samples(stats.exposition(), "istio_requests_total")
    got = {(lbl["response_flags"], lbl["response_code"], lbl["destination_workload"]): v for lbl, v in series}
    assert got == {
        ("FI", "503", "unknown"): 3.0,
        ("UO", "503", "unknown"): 5.0,
        ("URX", "503", "recommendation-v2"): 2.0,
        ("-", "200", "recommendation-v2"): 7.0,
    }
    unreached = next(lbl for lbl, _ in series if lbl["response_flags"] == "UO")
    # a request that never reached a pod has an unknown destination workload but a known service
    assert unreached["destination_workload_namespace"] == "unknown"
    assert unreached["destination_canonical_revision"] == "unknown"
    assert unreached["destination_service_name"] == "recommendation"
    assert unreached["destination_service_namespace"] == "tutorial"


def test_connection_security_policy_at_the_destination() -> None:
    stats = ProxyStats(RECOMMENDATION["v1"].pod, "recommendation-v1", "recommendation", "v1")
    for i in range(4):
        stats.record(hop(PREFERENCE, RECOMMENDATION["v1"], "destination", t=float(i), duration_ms=1, mtls=True))
    for i in range(6):
        stats.record(hop(PREFERENCE, RECOMMENDATION["v1"], "destination", t=float(i), duration_ms=1, mtls=False))
    series = samples(stats.exposition(), "istio_requests_total")
    by_policy = {lbl["connection_security_policy"]: (lbl, v) for lbl, v in series}
    assert {k: v for k, (_, v) in by_policy.items()} == {"mutual_tls": 4.0, "none": 6.0}
    assert all(lbl["reporter"] == "destination" for lbl, _ in series)
    assert by_policy["mutual_tls"][0]["source_principal"] == "spiffe://cluster.local/ns/tutorial/sa/preference"
    # without mTLS the server cannot know the caller's principal
    assert by_policy["none"][0]["source_principal"] == "unknown"


def test_gateway_series_live_in_istio_system() -> None:
    stats = ProxyStats(GATEWAY_POD, "istio-ingressgateway", "istio-ingressgateway", "unknown", "istio-system")
    stats.record(hop(GATEWAY, CUSTOMER, "source", t=0.0, duration_ms=5.0))
    ((lbl, value),) = samples(stats.exposition(), "istio_requests_total")
    assert value == 1.0
    assert lbl["source_workload"] == "istio-ingressgateway"
    assert lbl["source_workload_namespace"] == "istio-system"
    assert lbl["source_canonical_revision"] == "latest"  # no version label, as Istio defaults it
    assert lbl["destination_workload_namespace"] == "tutorial"


def test_histograms_use_envoys_default_buckets() -> None:
    stats = preference_stats()
    for duration, size in ((0.3, 0), (3.0, 83), (30.0, 700), (3000.0, 20_000)):
        stats.record(
            hop(
                PREFERENCE,
                RECOMMENDATION["v1"],
                "source",
                t=0.0,
                duration_ms=duration,
                bytes_sent=size,
                bytes_received=size,
            )
        )
    text = stats.exposition()
    expected_le = [*(float(b) for b in ISTIO_BUCKETS), float("inf")]
    for name in ("istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes"):
        buckets = samples(text, f"{name}_bucket")
        assert [float(lbl["le"]) for lbl, _ in buckets] == expected_le
    cumulative = {float(lbl["le"]): v for lbl, v in samples(text, "istio_request_duration_milliseconds_bucket")}
    assert (cumulative[0.5], cumulative[1], cumulative[5], cumulative[25], cumulative[50]) == (1, 1, 2, 2, 3)
    assert (cumulative[2500], cumulative[5000], cumulative[float("inf")]) == (3, 4, 4)
    ((_, total),) = samples(text, "istio_request_duration_milliseconds_sum")
    assert total == pytest.approx(3033.3)
    sizes = {float(lbl["le"]): v for lbl, v in samples(text, "istio_response_bytes_bucket")}
    assert (sizes[0.5], sizes[100], sizes[1000], sizes[10000], sizes[30000]) == (1, 2, 3, 3, 4)


def test_no_client_library_created_series() -> None:
    stats = preference_stats()
    stats.record(hop(PREFERENCE, RECOMMENDATION["v1"], "source", t=0.0, duration_ms=1.0))
    text = stats.exposition().decode()
    assert "_created" not in text
    assert "istio_agent_process_resident_memory_bytes" in text


def test_label_children_are_cached_and_series_are_bounded() -> None:
    stats = ProxyStats(PREFERENCE.pod, PREFERENCE.workload, "preference", "v1", max_series=2)
    for _ in range(5):
        stats.record(hop(PREFERENCE, RECOMMENDATION["v1"], "source", t=0.0, duration_ms=1.0))
    assert stats.series == 1
    stats.record(hop(PREFERENCE, RECOMMENDATION["v1"], "source", t=0.0, duration_ms=1.0, code=503))
    stats.record(hop(PREFERENCE, RECOMMENDATION["v2"], "source", t=0.0, duration_ms=1.0, code=404))
    assert stats.series == 2
    text = stats.exposition()
    assert sorted(v for _, v in samples(text, "istio_requests_total")) == [1.0, 5.0]
    assert samples(text, "meshkit_proxy_stats_series_dropped_total") == [({}, 1.0)]


def test_tcp_connection_metrics() -> None:
    stats = preference_stats()
    peer = RequestRecord(
        proxy=PREFERENCE.pod,
        reporter="source",
        source_workload="preference-v1",
        source_app="preference",
        source_version="v1",
        destination_service="worldtimeapi.org",
        destination_service_name="worldtimeapi.org",
    )
    stats.record_connection_open(peer)
    stats.record_connection_open(peer)
    stats.record_connection_close(peer, sent_bytes=1200, received_bytes=300)
    text = stats.exposition()
    values: defaultdict[str, float] = defaultdict(float)
    for name in ("opened", "closed"):
        for lbl, v in samples(text, f"istio_tcp_connections_{name}_total"):
            values[name] += v
            assert lbl["request_protocol"] == "tcp"
            assert "response_code" not in lbl
            assert lbl["destination_service_namespace"] == "tutorial"
    assert dict(values) == {"opened": 2.0, "closed": 1.0}
    assert samples(text, "istio_tcp_sent_bytes_total")[0][1] == 1200.0
    assert samples(text, "istio_tcp_received_bytes_total")[0][1] == 300.0
    with pytest.raises(ValueError, match="byte counts must be >= 0"):
        stats.record_connection_close(peer, sent_bytes=-1, received_bytes=0)


def test_merged_exposition_keeps_pods_apart() -> None:
    a = ProxyStats("preference-v1-aaaaa", PREFERENCE.workload, "preference", "v1")
    b = ProxyStats("preference-v1-bbbbb", PREFERENCE.workload, "preference", "v1")
    for _ in range(3):
        a.record(hop(PREFERENCE, RECOMMENDATION["v1"], "source", t=0.0, duration_ms=1.0))
    b.record(hop(PREFERENCE, RECOMMENDATION["v1"], "source", t=0.0, duration_ms=1.0))
    merged = merge_expositions({"preference-v1-aaaaa": a.exposition(), "preference-v1-bbbbb": b.exposition()})
    assert merged.count("# TYPE istio_requests_total counter") == 1
    got = {lbl["pod"]: v for lbl, v in samples(merged, "istio_requests_total")}
    assert got == {"preference-v1-aaaaa": 3.0, "preference-v1-bbbbb": 1.0}
    with pytest.raises(ValueError, match="metrics of pod 'x'"):
        merge_expositions({"x": "istio_requests_total{a=b} 1"})


def test_merged_exposition_keeps_envoys_counter_names_as_prometheus_does() -> None:
    """Envoy's counters have no ``_total``: merged as Prometheus stores them, not folded into the
    ``_total`` family next to them (``envoy_http_downstream_rq`` beside ``..._rq_total``)."""
    from meshkit.backends.local.proxy.stats_tags import prometheus_text

    def proxy(pod: str, ok: int) -> bytes:
        stats = ProxyStats(pod, PREFERENCE.workload, "preference", "v1", process_metrics=False)
        stats.record(hop(PREFERENCE, RECOMMENDATION["v1"], "source", t=0.0, duration_ms=1.0))
        return stats.exposition() + prometheus_text([
            ("http.inbound_0.0.0.0_8080;.downstream_rq_2xx", ok, "counter"),
            ("http.inbound_0.0.0.0_8080;.downstream_rq_total", ok + 1, "counter"),
            ("server.live", 1, "gauge")]).encode()

    merged = merge_expositions({"preference-v1-aaaaa": proxy("preference-v1-aaaaa", 3),
                                "preference-v1-bbbbb": proxy("preference-v1-bbbbb", 5)})
    assert merged.count("# TYPE envoy_http_downstream_rq counter") == 1
    assert merged.count("# TYPE envoy_http_downstream_rq_total counter") == 1

    def lines(name: str) -> dict[tuple[str, ...], float]:  # read as Prometheus reads it: names verbatim
        found = {}
        for line in merged.splitlines():
            m = re.fullmatch(r"(\w+)\{(.*)\} (\S+)", line)
            if m and m.group(1) == name:
                found[tuple(v for _, v in re.findall(r'(\w+)="([^"]*)"', m.group(2)))] = float(m.group(3))
        return found

    assert lines("envoy_http_downstream_rq") == {("2xx", "inbound_0.0.0.0_8080", "preference-v1-aaaaa"): 3.0,
                                                 ("2xx", "inbound_0.0.0.0_8080", "preference-v1-bbbbb"): 5.0}
    assert lines("envoy_http_downstream_rq_total") == {("inbound_0.0.0.0_8080", "preference-v1-aaaaa"): 4.0,
                                                       ("inbound_0.0.0.0_8080", "preference-v1-bbbbb"): 6.0}
    assert lines("envoy_server_live") == {("preference-v1-aaaaa",): 1.0, ("preference-v1-bbbbb",): 1.0}
    assert {lbl["pod"]: v for lbl, v in samples(merged, "istio_requests_total")} == {
        "preference-v1-aaaaa": 1.0, "preference-v1-bbbbb": 1.0}
    assert {f.name for f in text_string_to_metric_families(merged)} >= {"istio_requests", "envoy_server_live"}


def test_exposition_is_what_prometheus_client_writes_for_the_same_observations() -> None:
    """The proxies render their own text (prometheus_client stays out of every proxy); for the same
    observations it must be byte for byte what the reference client library writes."""
    import prometheus_client
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from meshkit.backends.local.proxy.prometheus import Family, exposition

    names = ("zone", "app", "path")
    values = [("a", "x", "/"), ("b", 'quo"te', "back\\slash"), ("c", "new\nline", "/p"), ("a", "x", "/")]
    amounts = [0, 0.3, 0.5, 1, 3.3, 499.999, 500, 1e6, 1_800_000, 2e6, 123456.789, 4e9]
    registry = CollectorRegistry(auto_describe=False)
    prometheus_client.disable_created_metrics()
    try:
        counter = Counter("demo_requests_total", "Requests, with a back\\slash\nand a newline.", names,
                          registry=registry)
        histogram = Histogram("demo_duration_ms", "Durations.", names, registry=registry, buckets=ISTIO_BUCKETS)
        unlabelled = Counter("demo_dropped_total", "Never incremented.", registry=registry)
        reference = (counter, histogram)
        mine = (Family("demo_requests_total", "Requests, with a back\\slash\nand a newline.", "counter", names),
                Family("demo_duration_ms", "Durations.", "histogram", names, ISTIO_BUCKETS))
        for i, labels in enumerate(values):
            for amount in amounts[i:]:
                reference[0].labels(*labels).inc(amount)
                reference[1].labels(*labels).observe(amount)
                mine[0].counter(*labels).inc(amount)
                mine[1].histogram(*labels).observe(amount)
        assert unlabelled is not None
        expected = generate_latest(registry)
    finally:
        prometheus_client.enable_created_metrics()
    got = exposition([*mine, Family("demo_dropped_total", "Never incremented.", "counter")])
    assert got == expected
    assert b'le="1.8e+06"' in got and b'le="+Inf"' in got and b'\\"te' in got  # the cases that need care
