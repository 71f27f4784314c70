"""Cluster load balancing: Envoy's ROUND_ROBIN, RANDOM and LEAST_REQUEST, and host exclusion."""

from __future__ import annotations

from collections import Counter

from meshkit.backends.local.proxy.cluster import Cluster
from tests.proxy.support import endpoint, host_named, make_cluster

PODS = ["rec-a", "rec-b", "rec-c"]


def pick(cluster: Cluster, exclude: frozenset[str] = frozenset()) -> str:
    host = cluster.pick(exclude)
    assert host is not None
    return host.endpoint.pod


def test_round_robin_is_a_strict_rotation() -> None:
    cluster = make_cluster([endpoint(p) for p in PODS], lb="ROUND_ROBIN")
    picks = [pick(cluster) for _ in range(9)]
    assert sorted(picks[:3]) == sorted(PODS)
    assert picks[3:6] == picks[:3] and picks[6:9] == picks[:3]


def test_random_spreads_uniformly_with_a_seeded_rng() -> None:
    cluster = make_cluster([endpoint(p) for p in PODS], lb="RANDOM", seed=11)
    counts = Counter(pick(cluster) for _ in range(3000))
    # binomial sd is about 26 requests per host: 100 is almost four of them
    assert set(counts) == set(PODS)
    assert all(abs(n - 1000) < 100 for n in counts.values()), counts
    # and it is not a rotation in disguise
    picks = [pick(cluster) for _ in range(30)]
    assert any(picks[i] == picks[i + 1] for i in range(29))


def test_least_request_prefers_the_host_with_fewer_active_requests() -> None:
    cluster = make_cluster([endpoint("busy"), endpoint("idle")], lb="LEAST_REQUEST", seed=3)
    host_named(cluster, "busy").active = 4
    counts = Counter(pick(cluster) for _ in range(4000))
    # two draws with replacement: the busy host wins only when drawn twice (1/4)
    assert abs(counts["idle"] / 4000 - 0.75) < 0.03, counts


def test_least_request_with_three_hosts_and_equal_load_is_even() -> None:
    cluster = make_cluster([endpoint(p) for p in PODS], lb="LEAST_REQUEST", seed=5)
    counts = Counter(pick(cluster) for _ in range(3000))
    assert all(abs(n - 1000) < 100 for n in counts.values()), counts
    host_named(cluster, "rec-a").active = 2
    host_named(cluster, "rec-b").active = 1
    counts = Counter(pick(cluster) for _ in range(9000))
    # rec-c (idle) wins unless both draws miss it: 1 - (2/3)^2 = 5/9
    assert abs(counts["rec-c"] / 9000 - 5 / 9) < 0.03, counts
    assert counts["rec-c"] > counts["rec-b"] > counts["rec-a"]


def test_previous_hosts_are_avoided_when_others_exist() -> None:
    for lb in ("ROUND_ROBIN", "RANDOM", "LEAST_REQUEST"):
        cluster = make_cluster([endpoint(p) for p in PODS], lb=lb)
        for _ in range(50):
            assert pick(cluster, frozenset({"rec-a", "rec-b"})) == "rec-c"
        # every host tried already: the predicate gives up and any host is used
        assert cluster.pick(frozenset(PODS)) is not None


def test_not_ready_endpoints_are_not_balanced_and_none_left_means_no_host() -> None:
    cluster = make_cluster([endpoint("up"), endpoint("starting", ready=False)], lb="ROUND_ROBIN")
    assert {pick(cluster) for _ in range(10)} == {"up"}
    empty = make_cluster([endpoint("starting", ready=False)])
    assert empty.pick() is None
