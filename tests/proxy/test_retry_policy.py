"""Retry policy: Istio's translation (per profile), Envoy's retry decision table and backoff."""

from __future__ import annotations

import random

import pytest

from meshkit.backends.local.proxy.config import DEFAULT_RETRY_ON, RetryPolicy, compile_retry
from meshkit.backends.local.proxy.router import Failure, backoff, should_retry
from meshkit.http1 import Response


def policy(retry_on: str, codes: frozenset[int] = frozenset()) -> RetryPolicy:
    return RetryPolicy(retry_on=frozenset(retry_on.split(",")), codes=codes)


# (retryOn, outcome, retried?)
TABLE = [
    ("5xx", Response(500), True),
    ("5xx", Response(503), True),
    ("5xx", Response(504), True),
    ("5xx", Response(404), False),
    ("5xx", Response(200), False),
    ("5xx", Failure("connect"), True),
    ("5xx", Failure("reset"), True),
    ("5xx", Failure("timeout"), True),
    ("5xx", Failure("overflow"), False),
    ("gateway-error", Response(502), True),
    ("gateway-error", Response(503), True),
    ("gateway-error", Response(504), True),
    ("gateway-error", Response(500), False),
    ("gateway-error", Failure("timeout"), True),
    ("gateway-error", Failure("reset"), True),
    ("gateway-error", Failure("overflow"), False),
    ("reset", Failure("reset"), True),
    ("reset", Failure("timeout"), True),
    ("reset", Failure("connect"), True),
    ("reset", Response(503), False),
    ("connect-failure", Failure("connect"), True),
    ("connect-failure", Failure("reset"), False),
    ("connect-failure", Failure("timeout"), False),
    ("connect-failure", Response(503), False),
    ("reset-before-request", Failure("connect"), True),
    ("reset-before-request", Failure("reset"), False),
    ("refused-stream", Failure("reset"), False),
    ("refused-stream", Response(503), False),
    ("retriable-4xx", Response(409), True),
    ("retriable-4xx", Response(404), False),
    ("retriable-4xx", Response(503), False),
    ("retriable-status-codes", Response(503), False),  # no codes listed
    (",".join(sorted(DEFAULT_RETRY_ON)), Response(503), False),  # Istio's default today
    (",".join(sorted(DEFAULT_RETRY_ON)), Failure("timeout"), False),  # per-try timeout: 504 UT
    (",".join(sorted(DEFAULT_RETRY_ON)), Failure("connect"), True),
    (",".join(sorted(DEFAULT_RETRY_ON)), Failure("overflow"), False),
    ("unavailable", Response(200, {"grpc-status": "14"}), True),
    ("cancelled", Response(200, {"grpc-status": "1"}), True),
    ("cancelled", Response(200, {"grpc-status": "14"}), False),
    ("envoy-ratelimited", Response(429, {"x-envoy-ratelimited": "true"}), True),
    ("envoy-ratelimited", Response(429), False),
]


@pytest.mark.parametrize(("retry_on", "outcome", "expected"), TABLE)
def test_retry_decision_table(retry_on: str, outcome: Response | Failure, expected: bool) -> None:
    assert should_retry(outcome, policy(retry_on)) is expected


def test_retriable_status_codes_match_only_the_listed_codes() -> None:
    p = policy("retriable-status-codes", frozenset({503, 409}))
    assert should_retry(Response(503), p) and should_retry(Response(409), p)
    assert not should_retry(Response(500), p)
    assert not should_retry(Response(503), policy("connect-failure", frozenset({503})))


def test_backoff_is_fully_jittered_exponential_and_capped_at_ten_times_the_base() -> None:
    rng = random.Random(1)
    base = 0.025
    for retry, ceiling in ((1, 0.025), (2, 0.075), (3, 0.175), (4, 0.25), (8, 0.25)):
        waits = [backoff(retry, base, rng) for _ in range(2000)]
        assert all(0 <= w <= ceiling for w in waits), retry
        assert max(waits) > 0.9 * ceiling  # the whole range is used
    assert all(backoff(1, 0.1, rng) < 0.1 for _ in range(100))


def test_default_policy_current_profile_does_not_retry_503() -> None:
    p = compile_retry(None, "current")
    assert p is not None and not p.explicit
    assert p.num_retries == 2 and p.retry_on == DEFAULT_RETRY_ON and p.codes == frozenset()
    assert p.previous_hosts and p.per_try_timeout is None
    assert not should_retry(Response(503), p)


def test_default_policy_tutorial_profile_retries_503() -> None:
    p = compile_retry(None, "tutorial")
    assert p is not None and p.codes == frozenset({503})
    assert should_retry(Response(503), p)
    assert not should_retry(Response(500), p)


def test_attempts_zero_or_unset_disables_retries() -> None:
    assert compile_retry({"attempts": 0}, "current") is None
    assert compile_retry({"attempts": 0, "retryOn": "5xx"}, "tutorial") is None
    assert compile_retry({"perTryTimeout": "2s"}, "current") is None  # the unset int is 0 for Istio


def test_user_policy_overrides_the_default_field_by_field() -> None:
    p = compile_retry({"attempts": 3, "perTryTimeout": "2s"}, "tutorial")
    assert p is not None and p.explicit
    assert p.num_retries == 3 and p.per_try_timeout == 2.0
    assert p.retry_on == DEFAULT_RETRY_ON and p.codes == frozenset({503})  # default retryOn kept
    p = compile_retry({"attempts": 3, "retryOn": "5xx,connect-failure,refused-stream"}, "tutorial")
    assert p is not None and p.retry_on == {"5xx", "connect-failure", "refused-stream"}
    assert p.codes == frozenset()  # a user retryOn replaces the default codes too


def test_integers_in_retry_on_become_retriable_status_codes() -> None:
    p = compile_retry({"attempts": 2, "retryOn": "gateway-error, 409,503"}, "current")
    assert p is not None
    assert p.codes == {409, 503}
    assert p.retry_on == {"gateway-error", "retriable-status-codes"}


def test_previous_hosts_and_backoff_options() -> None:
    p = compile_retry({"attempts": 1, "retryIgnorePreviousHosts": False, "backoff": "100ms"}, "current")
    assert p is not None and not p.previous_hosts and p.backoff_base == pytest.approx(0.1)
    p = compile_retry({"attempts": 1}, "current")
    assert p is not None and p.previous_hosts and p.backoff_base == 0.025
