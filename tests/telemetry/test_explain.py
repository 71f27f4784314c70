"""`meshkit explain`: where each failed request's answer came from, in one line."""

from __future__ import annotations

from typing import Any

import pytest

from meshkit.telemetry.explain import explain, flag_of_request, origin
from meshkit.telemetry.record import RequestRecord

from .synthetic import CUSTOMER, GATEWAY, MISBEHAVIOR, PREFERENCE, RECOMMENDATION, chain, hop

T0 = 1_700_000_000.0


def registry_only(request_id: str, t: float) -> list[RequestRecord]:
    """preference's app calls worldtimeapi.org; REGISTRY_ONLY sends it to the BlackHoleCluster."""
    kw: dict[str, Any] = {"request_id": request_id, "code": 502}
    return [
        hop(GATEWAY, CUSTOMER, "source", t=t, duration_ms=5, **kw),
        hop(GATEWAY, CUSTOMER, "destination", t=t + 0.001, duration_ms=4, **kw),
        hop(CUSTOMER, PREFERENCE, "source", t=t + 0.002, duration_ms=3, **kw),
        hop(CUSTOMER, PREFERENCE, "destination", t=t + 0.003, duration_ms=2, **kw),
        hop(
            PREFERENCE,
            RECOMMENDATION["v1"],
            "source",
            t=t + 0.004,
            duration_ms=0.1,
            reached=False,
            details="direct_response",
            upstream_cluster="BlackHoleCluster",
            route_name="block_all",
            destination_service="BlackHoleCluster",
            destination_service_name="BlackHoleCluster",
            authority="worldtimeapi.org",
            **kw,
        ),
    ]


def timeout_then_gone(request_id: str, t: float) -> list[RequestRecord]:
    """customer's sidecar times out calling preference; preference's sidecar sees its caller leave."""
    return [
        hop(GATEWAY, CUSTOMER, "source", t=t, duration_ms=1002, code=504, request_id=request_id),
        hop(
            CUSTOMER,
            PREFERENCE,
            "source",
            t=t + 0.001,
            duration_ms=1000,
            code=504,
            flags="UT",
            details="upstream_response_timeout",
            rule="timeout 1s",
            request_id=request_id,
        ),
        hop(
            CUSTOMER,
            PREFERENCE,
            "destination",
            t=t + 0.002,
            duration_ms=999,
            code=0,
            flags="DC",
            details="downstream_remote_disconnect",
            request_id=request_id,
        ),
    ]


def rbac_denied(request_id: str, t: float) -> list[RequestRecord]:
    return [
        hop(PREFERENCE, RECOMMENDATION["v1"], "source", t=t, duration_ms=1, code=403, request_id=request_id),
        hop(
            PREFERENCE,
            RECOMMENDATION["v1"],
            "destination",
            t=t + 0.001,
            duration_ms=0.2,
            code=403,
            details="rbac_access_denied_matched_policy[none]",
            request_id=request_id,
        ),
    ]


def all_records() -> list[RequestRecord]:
    return [
        *chain("ok", T0),
        *chain("uo", T0 + 1, failure="UO"),
        *chain("app", T0 + 2, version="v2", failure="app503"),
        *chain("nr", T0 + 3, failure="NR"),
        *chain("nc", T0 + 4, failure="NC"),
        *chain("fi", T0 + 5, failure="FI"),
        *chain("urx", T0 + 6, version="v2", failure="URX"),
        *registry_only("reg", T0 + 7),
        *timeout_then_gone("ut", T0 + 8),
        *rbac_denied("rbac", T0 + 9),
        *chain("ok2", T0 + 10),
    ]


def test_one_line_per_failed_request_latest_first() -> None:
    assert explain(all_records(), limit=20) == [
        "403 at recommendation's sidecar: RBAC: access denied by AuthorizationPolicy "
        "(rbac_access_denied_matched_policy[none])",
        "504 UT at customer's sidecar: route timeout calling preference (timeout 1s)",
        "502 at preference's sidecar: REGISTRY_ONLY blocked worldtimeapi.org (no ServiceEntry)",
        "503 URX at preference's sidecar: retries exhausted after 3 attempts "
        "(retries: attempts 3, retryOn 5xx); "
        f'last answer from recommendation-v2-6f7c9d9b5-kq2xz: the app answered "{MISBEHAVIOR}"',
        "503 FI at customer's sidecar: fault injection aborted the call to preference (abort 503 for 100% of requests)",
        "503 NC at preference's sidecar: route to subset version-v3 not defined in DestinationRule",
        "404 NR at istio-ingressgateway: no route matched",
        f'503 at recommendation-v2-6f7c9d9b5-kq2xz: the app answered "{MISBEHAVIOR}"',
        "503 UO at preference's sidecar: circuit breaker on recommendation/version-v2 (maxConnections 1)",
    ]


def test_limit_and_dict_input() -> None:
    lines = explain([r.to_dict() for r in all_records()], limit=2)
    assert len(lines) == 2 and lines[0].startswith("403 at recommendation's sidecar")
    assert explain(chain("ok", T0)) == []
    with pytest.raises(ValueError, match="limit must be >= 0"):
        explain([], limit=-1)


def test_app_error_without_body_says_no_flag() -> None:
    recs = chain("x", T0, failure="app503")
    for r in recs:
        r.body_excerpt = ""
    assert explain(recs) == ["503 at recommendation-v1-7d9f8b6c4-q8w2e: the app answered 503 (no proxy flag)"]


def test_origin_and_flag_of_request() -> None:
    uo = chain("uo", T0, failure="UO")
    where = origin(uo)
    assert where is not None and where["proxy"] == PREFERENCE.pod and where["response_flags"] == "UO"
    assert origin(chain("ok", T0)) is None
    assert flag_of_request(uo) == "UO"
    assert flag_of_request(chain("app", T0, failure="app503")) == "-"
    assert flag_of_request(timeout_then_gone("ut", T0)) == "UT"  # DC is the consequence, not the cause
    delayed = chain("d", T0)
    delayed[2].response_flags = "DI"
    assert flag_of_request(delayed) == "DI"
    assert flag_of_request([]) == "-"


def test_each_cause_is_named_once_when_the_rule_restates_the_flag() -> None:
    """The proxies' rules as the router writes them restate the flag's cause: it is said once."""
    uo = [r.to_dict() for r in chain("uo", T0, failure="UO")]
    urx = [r.to_dict() for r in chain("urx", T0 + 1, version="v2", failure="URX")]
    for rec in uo:
        if rec["response_flags"] == "UO":
            rec["rule"] = "circuit breaker on recommendation/version-v2 (maxConnections 1, http1MaxPendingRequests 1)"
    for rec in urx:
        if rec["response_flags"] == "URX":
            rec["rule"] = "retries exhausted on recommendation/version-v2 (2 retries)"
    lines = explain([*uo, *urx], limit=5)
    assert lines[0].startswith("503 URX at preference's sidecar: retries exhausted after 3 attempts on "
                               "recommendation/version-v2 (2 retries); last answer from ")
    assert lines[1] == ("503 UO at preference's sidecar: circuit breaker on recommendation/version-v2 "
                        "(maxConnections 1, http1MaxPendingRequests 1)")
    assert all(line.count("circuit breaker") <= 1 and line.count("retries exhausted") <= 1 for line in lines)
