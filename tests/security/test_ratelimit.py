"""Envoy local rate limit: the token bucket on an injected clock and the EnvoyFilter shape Istio documents."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshkit.backends.local.proxy.ratelimit import (
    RATE_LIMITED_BODY,
    RATE_LIMITED_FLAG,
    LocalRateLimit,
    TokenBucket,
)
from meshkit.errors import InvalidConfig


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_bucket_starts_full_and_refills_in_discrete_steps() -> None:
    clock = FakeClock()
    bucket = TokenBucket(max_tokens=3, tokens_per_fill=2, fill_interval_s=1.0, clock=clock)
    assert [bucket.try_take() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.999  # no trickle between timer ticks
    assert bucket.try_take() is False
    clock.now += 0.001
    assert [bucket.try_take() for _ in range(3)] == [True, True, False]
    clock.now += 10.0  # ten ticks, capped at max_tokens
    assert bucket.tokens == 3
    assert [bucket.try_take() for _ in range(4)] == [True, True, True, False]


def test_tick_schedule_does_not_drift_with_request_times() -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(max_tokens=1, tokens_per_fill=1, fill_interval_s=1.0, clock=clock)
    assert bucket.try_take()
    clock.now = 1.7  # tick at 1.0
    assert bucket.try_take()
    clock.now = 2.0  # next tick at 2.0, not 2.7
    assert bucket.try_take()
    assert not bucket.try_take()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((0, 1, 1.0), "must be greater than 0"),
        ((5, 0, 1.0), "must be greater than 0"),
        ((5, 1, 0.01), "below Envoy's minimum of 50ms"),
    ],
)
def test_bucket_validation(args: tuple[int, int, float], fragment: str) -> None:
    with pytest.raises(InvalidConfig, match=fragment):
        TokenBucket(*args, clock=FakeClock())


def poisson_arrivals(rng: random.Random, rate: float, duration: float) -> list[float]:
    times: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= duration:
            return times
        times.append(t)


def test_exact_counts_per_window_and_rate_within_ten_percent() -> None:
    """10 tokens every 1 s, Poisson arrivals at 25 req/s (seed 7) for 100 windows."""
    rng = random.Random(7)
    arrivals = poisson_arrivals(rng, 25.0, 100.0)
    clock = FakeClock(0.0)
    bucket = TokenBucket(max_tokens=10, tokens_per_fill=10, fill_interval_s=1.0, clock=clock)
    allowed_per_window = [0] * 100
    arrivals_per_window = [0] * 100
    for t in arrivals:
        clock.now = t
        window = int(t)
        arrivals_per_window[window] += 1
        allowed_per_window[window] += bucket.try_take()
    # each tick refills to full, so every window lets through exactly min(arrivals, 10)
    assert allowed_per_window == [min(n, 10) for n in arrivals_per_window]
    observed_rate = sum(allowed_per_window) / 100.0
    assert abs(observed_rate - 10.0) <= 1.0  # the ±10 % statement


def test_sustained_rate_with_a_burst_allowance_is_within_ten_percent() -> None:
    """max 20, +5 every 0.5 s (10 req/s sustained); 30 req/s offered (seed 11) for 100 s."""
    arrivals = poisson_arrivals(random.Random(11), 30.0, 100.0)
    clock = FakeClock(0.0)
    bucket = TokenBucket(max_tokens=20, tokens_per_fill=5, fill_interval_s=0.5, clock=clock)
    allowed = 0
    for t in arrivals:
        clock.now = t
        allowed += bucket.try_take()
    # at most the initial 20 plus 5 per tick (199 ticks before t=100)
    assert allowed <= 20 + 5 * 199
    assert abs(allowed / 100.0 - 10.0) <= 1.0


# Istio's "Enabling Rate Limits using Envoy" (local rate limit) EnvoyFilter, for recommendation.
ENVOYFILTER = yaml.safe_load("""
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: filter-local-ratelimit-svc, namespace: tutorial}
spec:
  workloadSelector:
    labels: {app: recommendation}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        filterChain:
          filter: {name: envoy.filters.network.http_connection_manager}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.local_ratelimit
        typed_config:
          "@type": type.googleapis.com/udpa.type.v1.TypedStruct
          type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
          value:
            stat_prefix: http_local_rate_limiter
            token_bucket: {max_tokens: 4, tokens_per_fill: 4, fill_interval: 60s}
            filter_enabled:
              runtime_key: local_rate_limit_enabled
              default_value: {numerator: 100, denominator: HUNDRED}
            filter_enforced:
              runtime_key: local_rate_limit_enforced
              default_value: {numerator: 100, denominator: HUNDRED}
            response_headers_to_add:
            - append: false
              header: {key: x-local-rate-limit, value: 'true'}
""")
RECOMMENDATION = {"app": "recommendation", "version": "v1"}


def local_value(resource: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = resource["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["value"]
    return value


def test_documented_envoyfilter_shape() -> None:
    limit = LocalRateLimit.from_envoyfilter(ENVOYFILTER, RECOMMENDATION, namespace="tutorial")
    assert limit is not None
    assert (limit.max_tokens, limit.tokens_per_fill, limit.fill_interval_s) == (4, 4, 60.0)
    assert (limit.enabled_percent, limit.enforced_percent, limit.context) == (100.0, 100.0, "SIDECAR_INBOUND")
    assert limit.response_headers == (("x-local-rate-limit", "true"),) and limit.warnings == ()
    clock = FakeClock()
    limiter = limit.new_limiter(clock=clock)
    decisions = [limiter.check() for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 4 + [False] * 2
    refused = decisions[-1]
    assert (refused.status, refused.body, refused.flag, refused.details) == (
        429,
        RATE_LIMITED_BODY,
        RATE_LIMITED_FLAG,
        "local_rate_limited",
    )
    assert RATE_LIMITED_BODY == b"local_rate_limited"
    assert refused.headers == (("x-local-rate-limit", "true"),)
    clock.now += 60.0
    assert limiter.check().allowed
    assert limiter.stats() == {
        "http_local_rate_limiter.http_local_rate_limit.enabled": 7,
        "http_local_rate_limiter.http_local_rate_limit.ok": 5,
        "http_local_rate_limiter.http_local_rate_limit.rate_limited": 2,
        "http_local_rate_limiter.http_local_rate_limit.enforced": 2,
    }


def test_direct_typed_config_and_status_override() -> None:
    resource = copy.deepcopy(ENVOYFILTER)
    value = local_value(resource)
    value["status"] = {"code": "ServiceUnavailable"}
    resource["spec"]["configPatches"][0]["patch"]["value"]["typed_config"] = {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        **value,
    }
    limit = LocalRateLimit.from_envoyfilter(resource, RECOMMENDATION)
    assert limit is not None and limit.status == 503


def test_selection() -> None:
    assert LocalRateLimit.from_envoyfilter(ENVOYFILTER, {"app": "customer"}) is None
    assert LocalRateLimit.from_envoyfilter(ENVOYFILTER, RECOMMENDATION, namespace="other") is None
    mesh_wide = copy.deepcopy(ENVOYFILTER)
    mesh_wide["metadata"]["namespace"] = "istio-system"
    assert LocalRateLimit.from_envoyfilter(mesh_wide, RECOMMENDATION, namespace="tutorial") is not None
    unrelated = copy.deepcopy(ENVOYFILTER)
    unrelated["spec"]["configPatches"][0]["patch"]["value"] = {
        "name": "envoy.filters.http.lua",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"},
    }
    assert LocalRateLimit.from_envoyfilter(unrelated, RECOMMENDATION) is None
    assert LocalRateLimit.from_envoyfilter({"kind": "DestinationRule"}, RECOMMENDATION) is None


def test_missing_filter_enabled_means_disabled_and_missing_enforced_means_shadow() -> None:
    disabled = copy.deepcopy(ENVOYFILTER)
    del local_value(disabled)["filter_enabled"]
    limit = LocalRateLimit.from_envoyfilter(disabled, RECOMMENDATION)
    assert limit is not None and "filter_enabled is not set" in limit.warnings[0]
    limiter = limit.new_limiter(clock=FakeClock())
    assert all(limiter.check().allowed for _ in range(20)) and limiter.counters["enabled"] == 0

    shadow = copy.deepcopy(ENVOYFILTER)
    del local_value(shadow)["filter_enforced"]
    limit = LocalRateLimit.from_envoyfilter(shadow, RECOMMENDATION)
    assert limit is not None and "never refuses" in limit.warnings[0]
    limiter = limit.new_limiter(clock=FakeClock())
    decisions = [limiter.check() for _ in range(6)]
    assert all(d.allowed for d in decisions)
    assert [d.limited for d in decisions] == [False] * 4 + [True] * 2


def test_fractional_enablement_is_sampled_with_the_injected_rng() -> None:
    half = copy.deepcopy(ENVOYFILTER)
    local_value(half)["filter_enabled"]["default_value"] = {"numerator": 5000, "denominator": "TEN_THOUSAND"}
    limit = LocalRateLimit.from_envoyfilter(half, RECOMMENDATION)
    assert limit is not None and limit.enabled_percent == 50.0
    limiter = limit.new_limiter(clock=FakeClock(), rng=random.Random(3))
    for _ in range(2000):
        limiter.check()
    # 2000 Bernoulli(0.5) draws: 4 standard deviations is ±89
    assert abs(limiter.counters["enabled"] - 1000) < 90


@pytest.mark.parametrize(
    ("mutate", "error", "fragment"),
    [
        (lambda v: v["token_bucket"].update(fill_interval="soon"), InvalidConfig, "is not a duration"),
        (lambda v: v["token_bucket"].update(fill_interval="10ms"), InvalidConfig, "minimum of 50ms"),
        (lambda v: v["token_bucket"].update(max_tokens="many"), InvalidConfig, "must be integers"),
        (
            lambda v: v["filter_enabled"]["default_value"].update(denominator="THOUSAND"),
            InvalidConfig,
            "denominator: 'THOUSAND'",
        ),
        (lambda v: v.update(status={"code": "Teapotish"}), InvalidConfig, "unknown HTTP status"),
    ],
)
def test_bad_filters_are_located_errors(mutate: Any, error: type[Exception], fragment: str) -> None:
    resource = copy.deepcopy(ENVOYFILTER)
    mutate(local_value(resource))
    with pytest.raises(error) as err:
        LocalRateLimit.from_envoyfilter(resource, RECOMMENDATION)
    assert "EnvoyFilter tutorial/filter-local-ratelimit-svc: configPatches[0]" in str(err.value)
    assert fragment in str(err.value)


PER_ROUTE = Path(__file__).parents[1] / "resources" / "data" / "envoy-filter-local-ratelimit-per-route.yaml"


def test_per_route_form_of_istios_sample_limits_by_route_and_descriptor() -> None:
    resource = yaml.safe_load(PER_ROUTE.read_text())
    limit = LocalRateLimit.from_envoyfilter(resource, RECOMMENDATION)
    assert limit is not None and (limit.max_tokens, limit.fill_interval_s) == (4, 60.0)
    clock = FakeClock()
    limiter = limit.new_limiter(clock=clock)
    # /admin matches the header_match descriptor (1 token) and also takes from the default bucket (4)
    assert limiter.check("/admin/x", {}, "127.0.0.1").allowed
    refused = limiter.check("/ADMIN", {}, "127.0.0.1")  # ignore_case prefix match; the default bucket is spared
    assert (refused.allowed, refused.status, refused.headers) == (False, 429, (("x-local-rate-limit", "true"),))
    assert [limiter.check("/", {}, "127.0.0.1").allowed for _ in range(4)] == [True, True, True, False]
    clock.now += 60.0
    assert limiter.check("/", {}, "127.0.0.1").allowed


def test_per_route_config_for_another_port_or_a_filter_without_bucket_limits_nothing() -> None:
    resource = yaml.safe_load(PER_ROUTE.read_text())
    assert LocalRateLimit.from_envoyfilter(resource, RECOMMENDATION, port=9080) is None
    del resource["spec"]["configPatches"][1]
    assert LocalRateLimit.from_envoyfilter(resource, RECOMMENDATION) is None


@pytest.mark.parametrize(
    ("interval", "seconds"), [("500ms", 0.5), ("1m", 60.0), ({"seconds": 1, "nanos": 500_000_000}, 1.5)]
)
def test_fill_interval_forms(interval: Any, seconds: float) -> None:
    resource = copy.deepcopy(ENVOYFILTER)
    local_value(resource)["token_bucket"]["fill_interval"] = interval
    limit = LocalRateLimit.from_envoyfilter(resource, RECOMMENDATION)
    assert limit is not None and limit.fill_interval_s == seconds
