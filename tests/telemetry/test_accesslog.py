"""Envoy/Istio default access-log lines: format, parse, round trip, ring buffer."""

from __future__ import annotations

import re

import pytest

from meshkit.backends.local.proxy.accesslog import AccessLog, format_line, format_time, parse_line
from meshkit.telemetry.record import RequestRecord

from .synthetic import PREFERENCE, RECOMMENDATION, hop

# Istio's default text format, one group per operator, written independently of the formatter
ISTIO_DEFAULT = re.compile(
    r"^\[(?P<start>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\] "
    r'"(?P<method>\S+) (?P<path>\S+) (?P<protocol>\S+)" '
    r"(?P<code>\d+) (?P<flags>\S+) (?P<details>\S+) (?P<termination>\S+) "
    r'"(?P<transport_failure>[^"]*)" (?P<rx>\d+) (?P<tx>\d+) (?P<duration>\d+) (?P<ust>\d+|-) '
    r'"(?P<xff>[^"]*)" "(?P<ua>[^"]*)" "(?P<rid>[^"]*)" "(?P<authority>[^"]*)" "(?P<upstream>[^"]*)" '
    r"(?P<cluster>\S+) (?P<ula>\S+) (?P<dla>\S+) (?P<dra>\S+) (?P<sni>\S+) (?P<route>\S+)$"
)


def outbound_record() -> RequestRecord:
    return hop(
        PREFERENCE,
        RECOMMENDATION["v1"],
        "source",
        t=1704110400.123,
        duration_ms=5.7,
        request_id="8e3c-11",
        subset="version-v1",
        upstream_service_time_ms=4,
        upstream_local_address="127.0.0.1:51234",
        downstream_local_address="127.0.0.1:15001",
        downstream_remote_address="127.0.0.1:33100",
    )


def test_line_matches_istio_default_format_field_by_field() -> None:
    line = format_line(outbound_record())
    m = ISTIO_DEFAULT.match(line)
    assert m, line
    assert m.groupdict() == {
        "start": "2024-01-01T12:00:00.123Z",
        "method": "GET",
        "path": "/",
        "protocol": "HTTP/1.1",
        "code": "200",
        "flags": "-",
        "details": "via_upstream",
        "termination": "-",
        "transport_failure": "-",
        "rx": "0",
        "tx": "83",
        "duration": "5",
        "ust": "4",
        "xff": "-",
        "ua": "curl/8.5.0",
        "rid": "8e3c-11",
        "authority": "recommendation:8080",
        "upstream": "127.0.0.1:40123",
        "cluster": "outbound|8080|version-v1|recommendation.tutorial.svc.cluster.local",
        "ula": "127.0.0.1:51234",
        "dla": "127.0.0.1:15001",
        "dra": "127.0.0.1:33100",
        "sni": "-",
        "route": "default",
    }


def test_inbound_and_proxy_generated_lines() -> None:
    inbound = hop(PREFERENCE, RECOMMENDATION["v1"], "destination", t=0.0, duration_ms=2.0)
    m = ISTIO_DEFAULT.match(format_line(inbound))
    assert m and m["cluster"] == "inbound|8080||"
    assert m["ust"] == "2"  # not measured separately: the upstream time is the request's
    overflow = hop(
        PREFERENCE,
        RECOMMENDATION["v2"],
        "source",
        t=0.0,
        duration_ms=0.3,
        code=503,
        flags="UO",
        reached=False,
        details="upstream_reset_before_response_started{overflow}",
    )
    m = ISTIO_DEFAULT.match(format_line(overflow))
    assert m
    assert (m["code"], m["flags"], m["ust"], m["upstream"]) == ("503", "UO", "-", "-")
    assert m["details"] == "upstream_reset_before_response_started{overflow}"


def test_start_time_is_utc_with_milliseconds() -> None:
    assert format_time(0.0) == "1970-01-01T00:00:00.000Z"
    assert format_time(1704110400.999) == "2024-01-01T12:00:00.999Z"
    assert format_time(1704110400.0009) == "2024-01-01T12:00:00.000Z"  # truncated, as Envoy does
    assert format_time(1704110400.123) == "2024-01-01T12:00:00.123Z"


def test_round_trip_through_parse() -> None:
    rec = outbound_record()
    line = format_line(rec)
    parsed = parse_line(line)
    assert parsed["start_time"] == pytest.approx(1704110400.123)
    assert parsed["response_code"] == 200 and parsed["duration_ms"] == 5
    assert parsed["upstream_cluster"] == rec.upstream_cluster
    assert parsed["x_forwarded_for"] == ""
    again = RequestRecord.from_dict({"proxy": rec.proxy, "reporter": rec.reporter, **parsed})
    assert format_line(again) == line


def test_hostile_values_cannot_forge_fields_or_lines() -> None:
    rec = outbound_record()
    rec.user_agent = 'evil" 999 "x\ninjected'
    rec.response_code_details = "two words"
    line = format_line(rec)
    assert "\n" not in line
    m = ISTIO_DEFAULT.match(line.replace('\\"', "'"))
    assert m and m["code"] == "200" and m["details"] == "two_words"
    assert parse_line(line)["user_agent"] == 'evil" 999 "x?injected'


def test_lines_carry_only_the_formats_fields() -> None:
    rec = outbound_record()
    rec.rule = "Authorization: Bearer eyJhbGciOi.secret"
    rec.body_excerpt = "token=abc123"
    line = format_line(rec)
    assert "Bearer" not in line and "secret" not in line and "abc123" not in line


def test_parse_real_istio_lines() -> None:
    # the documented 1.9+ default format (istio.io, Envoy access logs task)
    current = (
        '[2020-11-25T21:26:18.409Z] "GET /status/418 HTTP/1.1" 418 - via_upstream - "-" 0 135 4 4 "-" '
        '"curl/7.73.0-DEV" "84961386-6d84-929d-98bd-c5aee93b5c88" "httpbin:8000" "10.44.1.27:80" '
        "outbound|8000||httpbin.foo.svc.cluster.local 10.44.1.23:37652 10.0.45.184:8000 10.44.1.23:46520 "
        "- default"
    )
    p = parse_line(current)
    assert (p["method"], p["path"], p["response_code"], p["response_flags"]) == (
        "GET",
        "/status/418",
        418,
        "-",
    )
    assert (p["bytes_sent"], p["duration_ms"], p["upstream_service_time_ms"]) == (135, 4, 4)
    assert p["upstream_cluster"] == "outbound|8000||httpbin.foo.svc.cluster.local"
    assert (p["downstream_remote_address"], p["requested_server_name"], p["route_name"]) == (
        "10.44.1.23:46520",
        "",
        "default",
    )
    # the 1.5-1.8 default (a quoted mixer status where code details are now)
    older = (
        '[2020-03-02T10:00:00.000Z] "GET / HTTP/1.1" 503 UO "-" "-" 0 81 0 - "-" "curl/7.64.0" '
        '"5b1c6f2a" "recommendation:8080" "-" '
        "outbound|8080|version-v2|recommendation.tutorial.svc.cluster.local "
        "- 10.96.0.1:8080 10.1.0.5:45678 - -"
    )
    p = parse_line(older)
    assert (p["response_code"], p["response_flags"], p["upstream_service_time_ms"]) == (503, "UO", -1)
    assert p["upstream_cluster"].startswith("outbound|8080|version-v2|") and p["route_name"] == ""
    tcp = '[2024-01-01T00:00:00.000Z] "- - -" 0 UF - - "-" 0 0 1 - "-" "-" "-" "-" "10.0.0.9:443" PassthroughCluster'
    p = parse_line(tcp)
    assert (p["method"], p["response_flags"], p["upstream_cluster"]) == ("", "UF", "PassthroughCluster")
    assert "route_name" not in p  # missing trailing fields are tolerated


def test_parse_errors_say_what_was_expected() -> None:
    with pytest.raises(ValueError, match="not an Envoy access-log line"):
        parse_line("2024-01-01 INFO customer started")
    with pytest.raises(ValueError, match="START_TIME 'yesterday'"):
        parse_line('[yesterday] "GET / HTTP/1.1" 200 -')
    with pytest.raises(ValueError, match="response_code must be an integer"):
        parse_line('[2024-01-01T00:00:00.000Z] "GET / HTTP/1.1" OK -')


def test_access_log_is_a_bounded_ring() -> None:
    log = AccessLog(capacity=3)
    for i in range(5):
        log.append(hop(PREFERENCE, RECOMMENDATION["v1"], "source", t=float(i), duration_ms=1.0, request_id=f"r{i}"))
    assert len(log) == 3
    tail = log.tail(2)
    assert [parse_line(line)["request_id"] for line in tail] == ["r3", "r4"]
    assert [parse_line(line)["request_id"] for line in log.tail()] == ["r2", "r3", "r4"]
    assert log.tail(0) == []
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        AccessLog(capacity=0)
