"""Outlier detection on an injected clock: consecutive errors, ejection time, sweeps, limits, panic."""

from __future__ import annotations

import pytest

from meshkit.backends.local.proxy.cluster import Cluster, ClusterSpec, OutlierSpec
from tests.proxy.support import FakeClock, endpoint, host_named, make_cluster

PODS = ["good", "bad"]


def cluster_with(od: OutlierSpec, pods: list[str] = PODS, clock: FakeClock | None = None) -> Cluster:
    return make_cluster([endpoint(p) for p in pods], outlier=od, clock=clock or FakeClock())


def pods_of(cluster: Cluster) -> set[str]:
    return {h.endpoint.pod for h in cluster.available()}


def test_consecutive_5xx_ejects_on_the_nth_error_and_a_success_resets_the_count() -> None:
    cluster = cluster_with(OutlierSpec(consecutive_5xx=3, max_ejection_percent=100))
    bad = host_named(cluster, "bad")
    assert not cluster.report(bad, 500)
    assert not cluster.report(bad, 503)
    assert not cluster.report(bad, 200)  # resets
    assert not cluster.report(bad, 502)
    assert not cluster.report(bad, 500)
    assert cluster.report(bad, 599)
    assert pods_of(cluster) == {"good"}
    assert cluster.ejections == 1 and bad.times_ejected == 1


def test_4xx_is_not_an_error_for_outlier_detection() -> None:
    cluster = cluster_with(OutlierSpec(consecutive_5xx=1, max_ejection_percent=100))
    bad = host_named(cluster, "bad")
    for status in (400, 403, 404, 409, 429):
        assert not cluster.report(bad, status)
    assert pods_of(cluster) == set(PODS)


def test_gateway_errors_count_only_502_503_504() -> None:
    cluster = cluster_with(OutlierSpec(consecutive_5xx=0, consecutive_gateway=2, max_ejection_percent=100))
    bad = host_named(cluster, "bad")
    assert not cluster.report(bad, 502)
    assert not cluster.report(bad, 500)  # a 5xx that is not a gateway error resets the gateway count
    assert not cluster.report(bad, 504)
    assert cluster.report(bad, 503)
    assert pods_of(cluster) == {"good"}


def test_gateway_errors_also_count_as_5xx() -> None:
    cluster = cluster_with(OutlierSpec(consecutive_5xx=2, consecutive_gateway=0, max_ejection_percent=100))
    bad = host_named(cluster, "bad")
    assert not cluster.report(bad, 503)
    assert cluster.report(bad, 504)


def test_zero_thresholds_disable_detection() -> None:
    cluster = cluster_with(OutlierSpec(consecutive_5xx=0, consecutive_gateway=0, max_ejection_percent=100))
    bad = host_named(cluster, "bad")
    assert not any(cluster.report(bad, 503) for _ in range(50))


def test_ejection_lasts_base_time_and_ends_at_the_next_sweep() -> None:
    clock = FakeClock(0.0)  # sweeps at 10, 20, 30, 40 ...
    cluster = cluster_with(OutlierSpec(consecutive_5xx=1, interval=10, base_ejection=30, max_ejection_percent=100),
                           clock=clock)
    bad = host_named(cluster, "bad")
    clock.advance(5)
    assert cluster.report(bad, 503)  # ejected at t=5 for 30 s
    clock.now = 34.9
    assert pods_of(cluster) == {"good"}
    clock.now = 35.5  # the time is up, but un-ejection waits for the interval timer
    assert pods_of(cluster) == {"good"}
    clock.now = 40.0
    assert pods_of(cluster) == set(PODS)
    assert bad.unejected_at == 40.0


def test_each_ejection_lasts_base_times_the_number_of_ejections() -> None:
    clock = FakeClock(0.0)
    cluster = cluster_with(OutlierSpec(consecutive_5xx=1, interval=1, base_ejection=10, max_ejection_percent=100),
                           clock=clock)
    bad = host_named(cluster, "bad")
    lengths = []
    for _ in range(3):
        assert cluster.report(bad, 503)
        start = clock.now
        while not {"bad"} <= pods_of(cluster):
            clock.advance(1)
        lengths.append(clock.now - start)
    assert lengths == [10, 20, 30]


def test_the_multiplier_decays_by_one_per_healthy_interval() -> None:
    clock = FakeClock(0.0)
    cluster = cluster_with(OutlierSpec(consecutive_5xx=1, interval=1, base_ejection=10, max_ejection_percent=100),
                           clock=clock)
    bad = host_named(cluster, "bad")
    for expected in (1, 2, 3):
        cluster.report(bad, 503)
        assert bad.eject_backoff == expected
        clock.advance(expected * 10)
        cluster.available()
    assert not bad.ejected and bad.eject_backoff == 3
    clock.advance(1)
    cluster.available()
    assert bad.eject_backoff == 2
    clock.advance(5)
    cluster.available()
    assert bad.eject_backoff == 0
    cluster.report(bad, 503)
    assert cluster.spec.outlier is not None
    assert bad.ejection_time(cluster.spec.outlier) == 10  # back to the base time


def test_ejection_time_is_capped_at_300s_or_the_base_time() -> None:
    od = OutlierSpec(consecutive_5xx=1, interval=1, base_ejection=100, max_ejection_percent=100)
    clock = FakeClock(0.0)
    cluster = cluster_with(od, clock=clock)
    bad = host_named(cluster, "bad")
    lengths = []
    for _ in range(5):
        assert cluster.report(bad, 503)
        lengths.append(bad.ejection_time(od))
        clock.advance(bad.ejection_time(od))
        assert "bad" in pods_of(cluster)
    assert lengths == [100, 200, 300, 300, 300]
    assert OutlierSpec(base_ejection=400).max_ejection == 400


def test_default_max_ejection_percent_ejects_nothing_below_ten_hosts_today() -> None:
    # Envoy >= 1.27 checks the share after the ejection and Istio does not set always_eject_one_host
    cluster = cluster_with(OutlierSpec(consecutive_5xx=1))
    assert not cluster.report(host_named(cluster, "bad"), 503)
    assert pods_of(cluster) == set(PODS)
    ten = cluster_with(OutlierSpec(consecutive_5xx=1), pods=[f"p{i}" for i in range(10)])
    assert ten.report(host_named(ten, "p0"), 503)
    assert not ten.report(host_named(ten, "p1"), 503)
    assert len(ten.available()) == 9


def test_tutorial_era_envoy_always_ejects_at_least_one_host() -> None:
    cluster = cluster_with(OutlierSpec(consecutive_5xx=1, at_least_one=True), pods=["a", "b", "c"])
    assert cluster.report(host_named(cluster, "a"), 503)  # 10 % of 3 hosts, still one goes
    assert not cluster.report(host_named(cluster, "b"), 503)
    assert pods_of(cluster) == {"b", "c"}


@pytest.mark.parametrize(
    ("percent", "at_least_one", "ejected"),
    [(50, False, 1), (50, True, 2), (67, False, 2), (100, False, 3), (34, False, 1), (33, False, 0)],
)
def test_max_ejection_percent_bounds_the_ejected_share(percent: float, at_least_one: bool, ejected: int) -> None:
    cluster = cluster_with(OutlierSpec(consecutive_5xx=1, max_ejection_percent=percent, at_least_one=at_least_one),
                           pods=["a", "b", "c"])
    for pod in ("a", "b", "c"):
        cluster.report(host_named(cluster, pod), 503)
    assert sum(h.ejected for h in cluster.hosts) == ejected


def test_a_refused_ejection_restarts_the_count() -> None:
    cluster = cluster_with(OutlierSpec(consecutive_5xx=2, max_ejection_percent=50), pods=["a", "b"])
    a, b = host_named(cluster, "a"), host_named(cluster, "b")
    cluster.report(a, 503)
    assert cluster.report(a, 503)
    cluster.report(b, 503)
    assert not cluster.report(b, 503)  # 2 of 2 would be 100 % > 50 %
    assert b.consecutive_5xx == 0 and cluster.stats["outlier_detection.ejections_overflow"] == 1


def test_all_hosts_ejected_leaves_no_host_and_min_health_percent_is_a_panic_threshold() -> None:
    od = OutlierSpec(consecutive_5xx=1, max_ejection_percent=100)
    cluster = cluster_with(od)
    for pod in PODS:
        cluster.report(host_named(cluster, pod), 503)
    assert cluster.pick() is None

    half = cluster_with(OutlierSpec(consecutive_5xx=1, max_ejection_percent=100, min_health_percent=60))
    half.report(host_named(half, "bad"), 503)
    assert pods_of(half) == set(PODS)  # 50 % healthy < 60 %: panic, balance over every host
    at = cluster_with(OutlierSpec(consecutive_5xx=1, max_ejection_percent=100, min_health_percent=50))
    at.report(host_named(at, "bad"), 503)
    assert pods_of(at) == {"good"}  # 50 % is not below 50 %


def test_a_new_outlier_spec_starts_afresh_and_endpoint_changes_keep_state() -> None:
    clock = FakeClock(0.0)
    od = OutlierSpec(consecutive_5xx=1, max_ejection_percent=100)
    cluster = cluster_with(od, pods=["a", "b"], clock=clock)
    cluster.report(host_named(cluster, "a"), 503)
    spec = cluster.spec
    more = ClusterSpec(spec.name, spec.service, spec.subset, (*spec.endpoints, endpoint("c")), spec.lb,
                       spec.limits, od)
    cluster.update(more)
    assert pods_of(cluster) == {"b", "c"}
    cluster.update(ClusterSpec(spec.name, spec.service, spec.subset, more.endpoints, spec.lb, spec.limits,
                               OutlierSpec(consecutive_5xx=2, max_ejection_percent=100)))
    assert pods_of(cluster) == {"a", "b", "c"}
