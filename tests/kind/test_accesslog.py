"""Istio's default access-log format parsed into RequestRecord fields."""

from __future__ import annotations

from datetime import UTC, datetime

from meshkit.backends.base import Pod
from meshkit.backends.kind.accesslog import parse_line, parse_log
from meshkit.telemetry.record import RequestRecord

PREF = Pod("preference-v1-6b8c7f5d9c-7hw2m", "preference", "v1", "preference-v1", True, extra={"ip": "10.244.0.12"})
REC_V1 = Pod(
    "recommendation-v1-5f8d9c7b6d-k2x9p",
    "recommendation",
    "v1",
    "recommendation-v1",
    True,
    extra={"ip": "10.244.0.15"},
)
REC_V2 = Pod(
    "recommendation-v2-7c9f8b6d5e-q4w8z",
    "recommendation",
    "v2",
    "recommendation-v2",
    True,
    extra={"ip": "10.244.0.16"},
)
BY_IP = {"10.244.0.12": PREF, "10.244.0.15": REC_V1, "10.244.0.16": REC_V2}

OUTBOUND_OK = (
    '[2026-08-30T10:15:02.123Z] "GET / HTTP/1.1" 200 - via_upstream - "-" 0 61 12 11 "-" "curl/8.5.0" '
    '"0f4a2c1e-8d7b-9a6f-b5e4-3c2d1e0f9a8b" "recommendation:8080" "10.244.0.15:8080" '
    "outbound|8080||recommendation.tutorial.svc.cluster.local 10.244.0.12:51234 10.96.44.7:8080 "
    "10.244.0.12:40112 - default"
)
INBOUND_MISBEHAVE = (
    '[2026-08-30T10:15:03.500Z] "GET / HTTP/1.1" 503 - via_upstream - "-" 0 69 3 2 "-" "curl/8.5.0" '
    '"1a2b3c4d-0000-4000-8000-000000000001" "recommendation:8080" "10.244.0.16:8080" '
    "inbound|8080|| 127.0.0.6:44321 10.244.0.16:8080 10.244.0.12:40114 "
    "outbound_.8080_._.recommendation.tutorial.svc.cluster.local default"
)
OVERFLOW = (
    '[2026-08-30T10:15:04.000Z] "GET / HTTP/1.1" 503 UO upstream_reset_before_response_started{overflow} '
    '- "-" 0 81 0 - "-" "Go-http-client/1.1" "5d1e-77" "recommendation:8080" "-" '
    "outbound|8080|version-v2|recommendation.tutorial.svc.cluster.local - 10.96.44.7:8080 "
    "10.244.0.12:40116 - -"
)
TIMEOUT = (
    '[2026-08-30T10:15:05.000Z] "GET / HTTP/1.1" 504 UT response_timeout - "-" 0 24 1001 - "-" "curl/8.5.0" '
    '"5d1e-78" "recommendation:8080" "10.244.0.16:8080" '
    "outbound|8080|version-v2|recommendation.tutorial.svc.cluster.local 10.244.0.12:51240 10.96.44.7:8080 "
    "10.244.0.12:40118 - -"
)


def test_outbound_success_line() -> None:
    rec = parse_line(OUTBOUND_OK, proxy=PREF, pods_by_ip=BY_IP)
    assert rec is not None and set(rec) == set(RequestRecord.__dataclass_fields__)
    assert rec["start_time"] == datetime(2026, 8, 30, 10, 15, 2, 123000, tzinfo=UTC).timestamp()
    assert (rec["proxy"], rec["reporter"], rec["method"], rec["path"], rec["protocol"]) == (
        "preference-v1-6b8c7f5d9c-7hw2m",
        "source",
        "GET",
        "/",
        "HTTP/1.1",
    )
    assert (rec["response_code"], rec["response_flags"], rec["response_code_details"]) == (
        200,
        "-",
        "via_upstream",
    )
    assert (rec["bytes_received"], rec["bytes_sent"], rec["duration_ms"]) == (0, 61, 12.0)
    assert rec["request_id"] == "0f4a2c1e-8d7b-9a6f-b5e4-3c2d1e0f9a8b" and rec["user_agent"] == "curl/8.5.0"
    assert rec["x_forwarded_for"] == "" and rec["authority"] == "recommendation:8080"
    assert rec["destination_service"] == "recommendation.tutorial.svc.cluster.local"
    assert rec["destination_service_name"] == "recommendation"
    assert (rec["source_workload"], rec["source_app"], rec["source_version"]) == (
        "preference-v1",
        "preference",
        "v1",
    )
    assert (rec["destination_workload"], rec["destination_version"], rec["upstream_pod"]) == (
        "recommendation-v1",
        "v1",
        "recommendation-v1-5f8d9c7b6d-k2x9p",
    )
    assert rec["route_name"] == "default"


def test_inbound_line_is_the_destination_report_with_mtls() -> None:
    rec = parse_line(INBOUND_MISBEHAVE, proxy=REC_V2, pods_by_ip=BY_IP)
    assert rec is not None
    assert (rec["reporter"], rec["response_code"], rec["response_flags"]) == ("destination", 503, "-")
    assert (rec["destination_app"], rec["destination_version"]) == ("recommendation", "v2")
    assert (rec["source_workload"], rec["source_app"]) == ("preference-v1", "preference")
    assert rec["connection_security_policy"] == "mutual_tls"
    assert rec["upstream_cluster"] == "inbound|8080||"


def test_envoy_flags_and_missing_upstream() -> None:
    overflow = parse_line(OVERFLOW, proxy=PREF, pods_by_ip=BY_IP)
    assert overflow is not None
    assert (overflow["response_code"], overflow["response_flags"]) == (503, "UO")
    assert overflow["response_code_details"] == "upstream_reset_before_response_started{overflow}"
    assert overflow["upstream_host"] == "" and overflow["destination_workload"] == "unknown"
    assert overflow["upstream_cluster"].split("|")[2] == "version-v2" and overflow["route_name"] == ""
    timeout = parse_line(TIMEOUT, proxy=PREF, pods_by_ip=BY_IP)
    assert timeout is not None
    assert (timeout["response_code"], timeout["response_flags"], timeout["duration_ms"]) == (
        504,
        "UT",
        1001.0,
    )
    assert timeout["upstream_pod"] == "recommendation-v2-7c9f8b6d5e-q4w8z"


def test_other_proxy_log_lines_are_skipped_and_since_filters() -> None:
    log = "\n".join(
        [
            "2026-08-30T10:15:00.000000Z\tinfo\tEnvoy proxy is ready",
            OUTBOUND_OK,
            "2026-08-30T10:15:03.000000Z\twarning\tenvoy config\tgRPC config stream closed",
            TIMEOUT,
        ]
    )
    assert [r["response_code"] for r in parse_log(log, proxy=PREF, pods_by_ip=BY_IP)] == [200, 504]
    since = datetime(2026, 8, 30, 10, 15, 4, tzinfo=UTC).timestamp()
    assert [r["response_code"] for r in parse_log(log, proxy=PREF, since=since)] == [504]
    assert parse_line('[not a time] "GET / HTTP/1.1" 200') is None
