"""Envoy's local rate limit (the EnvoyFilter Istio documents) on recommendation's real sidecar.

A paced load of 40 rps for 5 s goes through the gateway; every request is routed to recommendation-v1
so one token bucket (10 tokens, 10 more every second) sees the whole load. The bucket refills on a
timer, once per second, so each one-second window of the steady state admits one refill's worth.
"""

from __future__ import annotations

import math
import time
from collections import Counter

from meshkit.mesh import Mesh
from meshkit.widgets.builders import rate_limit_rule
from tests.security_mesh.conftest import destination, istiofile, records_of

TOKENS_PER_S = 10
QPS = 40
SECONDS = 5
LIMITED_BODY = "customer => Error: 503 - preference => Error: 429 - local_rate_limited"


def test_local_rate_limit_answers_429_rl_at_the_configured_rate(clean: Mesh) -> None:
    clean.apply(istiofile("destination-rule-recommendation-v1-v2.yaml"),
                istiofile("virtual-service-recommendation-v1.yaml"),
                rate_limit_rule("recommendation", max_tokens=TOKENS_PER_S, tokens_per_fill=TOKENS_PER_S,
                                fill_interval_s=1.0))
    since = time.time() - 1
    result = clean.load(duration=SECONDS, qps=QPS, concurrency=4)
    records = result.records
    assert len(records) >= 0.95 * QPS * SECONDS
    ok = [r for r in records if r["code"] == 200]
    limited = [r for r in records if r["code"] != 200]
    assert {r["version"] for r in ok} == {"v1"}
    assert limited and {(r["code"], r["body"], r["flags"]) for r in limited} == {(503, LIMITED_BODY, "RL")}

    # the 429 RL is answered by recommendation's inbound sidecar, before its app
    rows = records_of(clean, [r["request_id"] for r in limited], since,
                      lambda rs: any(r["reporter"] == "destination" and r["destination_app"] == "recommendation"
                                     for r in rs))
    for rs in rows.values():
        (rec,) = [r for r in rs if r["reporter"] == "destination" and r["destination_app"] == "recommendation"]
        assert (rec["response_code"], rec["response_flags"], rec["response_code_details"]) == (
            429, "RL", "local_rate_limited")

    # The rate, on recommendation's own clock (the bucket ticks there; a busy machine can hold a
    # request between the client and the proxy for a few hundred ms). At each refused request the
    # bucket is empty, so between the first and the last refusal, S seconds apart, the bucket admits
    # exactly the refills of the ticks in that span: floor(S) or ceil(S) of them, 10 tokens each. It can
    # admit fewer only if a tick's tokens find no request before the next tick (the cap drops them);
    # the paced 40 rps leaves at most one such tick on a busy machine.
    admitted = records_of(clean, [r["request_id"] for r in ok], since,
                          lambda rs: bool(destination(rs, "recommendation")))
    arrivals = sorted(destination(rs, "recommendation")[0]["start_time"] for rs in admitted.values())
    assert len(arrivals) == len(ok)
    refused = sorted(destination(rs, "recommendation")[0]["start_time"] for rs in rows.values())
    first, last = refused[0], refused[-1]
    between = sum(1 for t in arrivals if first < t < last)
    span = last - first
    per_second = Counter(int(t - arrivals[0]) for t in arrivals)
    print(f"\nadmitted per second at the proxy: {[per_second[s] for s in range(SECONDS + 1)]}; "
          f"{between} admitted in the {span:.2f} s between the first and last refusal; "
          f"limited: {len(limited)} of {len(records)} ({result.summary()['rps']} rps offered)")
    assert span >= SECONDS - 2, span
    assert TOKENS_PER_S * (math.floor(span) - 1) <= between <= TOKENS_PER_S * math.ceil(span), (between, span)
    # one second's window holds exactly one tick: at most the full bucket plus one refill
    assert max(per_second.values()) <= 2 * TOKENS_PER_S, per_second
    assert len(ok) <= TOKENS_PER_S * (SECONDS + 2)  # never more than the initial bucket plus the refills

    # the filter's own counters, in /stats and (with the same values) in /stats/prometheus, named as in
    # Istio's rate limit task; a 503 may be retried by customer's sidecar, so recommendation saw at least
    # as many refusals as the client did
    (pod,) = [p.name for p in clean.pods() if p.name.startswith("recommendation-v1-")]
    stats = dict(line.rsplit(": ", 1) for line in clean.envoy_admin(pod, "/stats").splitlines())
    prom = clean.envoy_admin(pod, "/stats/prometheus")
    for counter in ("enabled", "enforced", "ok", "rate_limited"):
        value = stats[f"http_local_rate_limiter.http_local_rate_limit.{counter}"]
        assert f"\nenvoy_http_local_rate_limiter_http_local_rate_limit_{counter}{{}} {value}\n" in prom, counter
    assert int(stats["http_local_rate_limiter.http_local_rate_limit.rate_limited"]) >= len(limited)
    assert stats["http_local_rate_limiter.http_local_rate_limit.enforced"] == \
        stats["http_local_rate_limiter.http_local_rate_limit.rate_limited"]


def test_removing_the_filter_lifts_the_limit(clean: Mesh) -> None:
    clean.apply(istiofile("destination-rule-recommendation-v1-v2.yaml"),
                istiofile("virtual-service-recommendation-v1.yaml"),
                rate_limit_rule("recommendation", max_tokens=2, tokens_per_fill=2, fill_interval_s=60.0))
    codes = [r["code"] for r in clean.load(n=6, flags=False).records]
    assert codes == [200, 200, 503, 503, 503, 503]  # two tokens, no refill within the minute
    clean.delete("EnvoyFilter", "local-ratelimit-recommendation")
    assert {r["code"] for r in clean.load(n=10, flags=False).records} == {200}
