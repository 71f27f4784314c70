"""VirtualService validation: one test per webhook message, with the field path it points at."""

from __future__ import annotations

from tests.resources.helpers import dest, errors, route, vs, warnings


def test_negative_weight() -> None:
    assert errors(vs(route(dest("version-v1", 105), dest("version-v2", -5)))) == [
        ("spec.http[0].route[1].weight", "weight -5 < 0")
    ]


def test_total_weight_zero() -> None:
    assert errors(vs(route(dest("version-v1", 0), dest("version-v2", 0)))) == [
        ("spec.http[0].route", "total destination weight = 0")
    ]


def test_weights_are_relative_today_but_must_sum_to_100_in_the_tutorial_profile() -> None:
    text = vs(route(dest("version-v1", 90), dest("version-v2", 0)))
    assert errors(text) == []
    text = vs(route(dest("version-v1", 80), dest("version-v2", 10)))
    assert errors(text) == []
    assert errors(text, profile="tutorial") == [("spec.http[0].route", "total destination weight 90 != 100")]
    assert errors(vs(route(dest("version-v1", 50))), profile="tutorial") == []


def test_no_hosts_is_a_delegate() -> None:
    assert errors(vs(route(), hosts=[])) == []
    assert errors(vs(route(), hosts=[], gateways=["istio-system/gw"])) == [
        ("spec.gateways", "delegate virtual service must have no gateways specified")
    ]


def test_some_routes_required() -> None:
    assert ("spec", "http, tcp or tls must be provided in virtual service") in errors(vs())


def test_destination_host_required_and_valid() -> None:
    assert errors(vs(route({"destination": {"subset": "v1"}}))) == [
        ("spec.http[0].route[0].destination.host", 'required field "host" is missing')
    ]
    assert errors(vs(route(dest(host="http://recommendation:8080")))) == [
        (
            "spec.http[0].route[0].destination.host",
            'domain name "http://recommendation:8080" invalid (label "http://recommendation:8080" invalid)',
        )
    ]


def test_unknown_field_and_snake_case_are_rejected() -> None:
    assert errors(vs(route(dest(), time_out="1s"))) == [("spec.http[0].time_out", 'unknown field "time_out"')]


def test_wrong_type() -> None:
    assert errors(vs(route(dest("version-v1", "ten"), dest("version-v2", 0)))) == [  # type: ignore[arg-type]
        ("spec.http[0].route[0].weight", 'expected integer, got string "ten"')
    ]


def test_port_selector() -> None:
    d = {"destination": {"host": "recommendation", "port": {"number": 70000}}}
    assert errors(vs(route(d))) == [
        ("spec.http[0].route[0].destination.port.number", "port number 70000 must be in the range 1..65535")
    ]


def test_string_match_needs_exactly_one_kind() -> None:
    text = vs(route(match=[{"uri": {"exact": "/a", "prefix": "/"}}, {"method": {}}]))
    assert errors(text) == [
        ("spec.http[0].match[0].uri", "only one of exact, prefix or regex can be set (found exact, prefix)"),
    ]


def test_header_presence_match_may_be_empty() -> None:
    assert errors(vs(route(match=[{"headers": {"end-user": {}}}]))) == []


RE2_HINT = "; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)"


def test_invalid_regex() -> None:
    text = vs(route(match=[{"headers": {"baggage-user-agent": {"regex": "("}}}]))
    assert errors(text) == [
        (
            "spec.http[0].match[0].headers.baggage-user-agent.regex",
            '"headers": error parsing regexp: missing closing ): `(`' + RE2_HINT,
        )
    ]


def test_re2_refuses_lookarounds_and_backreferences() -> None:
    text = vs(route(match=[{"uri": {"regex": "(?!/admin).*"}}, {"uri": {"regex": r"(a)\1"}}]))
    assert [m for _, m in errors(text)] == [
        '"uri": error parsing regexp: invalid or unsupported Perl syntax: `(?!`' + RE2_HINT,
        '"uri": error parsing regexp: invalid escape sequence: `\\1`' + RE2_HINT,
    ]


def test_regex_rules_of_istio_admission() -> None:
    """Empty and over-long regexes, Go's wording for RE2's errors, withoutHeaders' "*" presence test."""
    text = vs(route(match=[
        {"queryParams": {"q": {"regex": ""}}},
        {"authority": {"regex": "a" * 1025}},
        {"method": {"regex": "a**"}},
        {"headers": {"x": {"regex": "a{1001}"}}},
        {"withoutHeaders": {"x": {"regex": "*"}}},
        {"headers": {"x": {"regex": "(a+)+$"}}},  # valid RE2: admitted, and matched in linear time
    ]))
    assert [m for _, m in errors(text)] == [
        '"queryParams": regex string match should not be empty',
        '"authority": regex is too large, max length allowed is 1024',
        '"method": error parsing regexp: invalid nested repetition operator: `**`' + RE2_HINT,
        '"headers": error parsing regexp: invalid repeat count: `{1001}`' + RE2_HINT,
    ]


def test_uppercase_header_key_is_a_warning() -> None:
    text = vs(route(match=[{"headers": {"User-Agent": {"regex": ".*Safari.*"}}}]))
    assert warnings(text) == [
        (
            "IST0133",
            "spec.http[0].match[0].headers.User-Agent",
            'header name "User-Agent" should be lowercase: Istio matches header keys in lowercase, so use "user-agent"',
        )
    ]


def test_timeout_duration_rules() -> None:
    assert errors(vs(route(dest(), timeout="0.5ms"))) == [("spec.http[0].timeout", "duration must be greater than 1ms")]
    assert errors(vs(route(dest(), timeout="1.0005s"))) == [
        ("spec.http[0].timeout", "only durations to ms precision are supported")
    ]
    assert errors(vs(route(dest(), timeout=1))) == [
        ("spec.http[0].timeout", 'expected duration string (e.g. "1s", "500ms"), got integer 1')
    ]


def test_retry_attempts_cannot_be_negative() -> None:
    assert errors(vs(route(dest(), retries={"attempts": -1}))) == [
        ("spec.http[0].retries.attempts", "attempts cannot be negative")
    ]


def test_retry_policy_with_zero_attempts() -> None:
    assert errors(vs(route(dest(), retries={"attempts": 0, "perTryTimeout": "2s"}))) == [
        ("spec.http[0].retries", "http retry policy configured when attempts are set to 0 (disabled)")
    ]
    assert errors(vs(route(dest(), retries={"attempts": 0}))) == []


def test_retry_on_policies() -> None:
    ok = {"attempts": 3, "retryOn": "5xx,gateway-error,connect-failure,retriable-status-codes,503"}
    assert errors(vs(route(dest(), retries=ok))) == []
    bad = {"attempts": 3, "retryOn": "5xx,foo,700"}
    assert errors(vs(route(dest(), retries=bad))) == [
        ("spec.http[0].retries.retryOn", '"foo" is not a valid retryOn policy'),
        ("spec.http[0].retries.retryOn", '"700" is not a valid retryOn policy'),
    ]


def test_retry_bool_fields() -> None:
    assert errors(vs(route(dest(), retries={"attempts": 1, "retryIgnorePreviousHosts": "yes please"}))) == [
        ("spec.http[0].retries.retryIgnorePreviousHosts", 'expected boolean, got string "yes please"')
    ]


def test_fault_needs_abort_or_delay() -> None:
    assert errors(vs(route(dest(), fault={}))) == [
        ("spec.http[0].fault", "HTTP fault injection must have an abort and/or a delay")
    ]


def test_abort_http_status_range() -> None:
    assert errors(vs(route(dest(), fault={"abort": {"httpStatus": 700}}))) == [
        ("spec.http[0].fault.abort.httpStatus", "HTTP status 700 is not in range 200-599")
    ]


def test_abort_percent_was_removed() -> None:
    assert errors(vs(route(dest(), fault={"abort": {"httpStatus": 503, "percent": 50}}))) == [
        (
            "spec.http[0].fault.abort.percent",
            'unknown field "percent" (removed from Istio\'s Abort; use percentage.value)',
        )
    ]


def test_percentage_range() -> None:
    fault = {"abort": {"httpStatus": 503, "percentage": {"value": 150}}}
    assert errors(vs(route(dest(), fault=fault))) == [
        ("spec.http[0].fault.abort.percentage.value", "percentage 150 is neither 0.0, nor in range [0.0001, 100.0]")
    ]
    fault = {"abort": {"httpStatus": 503, "percentage": {"value": 0.00001}}}
    assert errors(vs(route(dest(), fault=fault)))[0][1] == (
        "percentage 1e-05 is neither 0.0, nor in range [0.0001, 100.0]"
    )


def test_delay_rules() -> None:
    assert errors(vs(route(dest(), fault={"delay": {"percentage": {"value": 10}}}))) == []
    assert errors(vs(route(dest(), fault={"delay": {"exponentialDelay": "1s"}}))) == [
        ("spec.http[0].fault.delay.exponentialDelay", "exponentialDelay not supported yet")
    ]
    assert errors(vs(route(dest(), fault={"delay": {"fixedDelay": "1s", "percent": 101}}))) == [
        ("spec.http[0].fault.delay.percent", "percentage 101 is not in range 0..100")
    ]


def test_delay_percent_deprecation_warning() -> None:
    assert warnings(vs(route(dest(), fault={"delay": {"fixedDelay": "7s", "percent": 50}}))) == [
        (
            "IST0002",
            "spec.http[0].fault.delay.percent",
            "Deprecated: HTTPRoute.fault.delay.percent is deprecated; use HTTPRoute.fault.delay.percentage",
        )
    ]


def test_mirror_percentage() -> None:
    text = vs(
        route(
            dest("version-v1"),
            mirror={"host": "recommendation", "subset": "version-v2"},
            mirrorPercentage={"value": 150},
        )
    )
    assert errors(text) == [
        ("spec.http[0].mirrorPercentage.value", "mirror_percentage must have a max value of 100 (it has 150.000000)")
    ]


def test_mirrors_list_and_deprecated_mirror_percent() -> None:
    text = vs(
        route(
            dest("version-v1"),
            mirrors=[{"destination": {"host": "recommendation", "subset": "version-v2"}, "percentage": {"value": 50}}],
        )
    )
    assert errors(text) == []
    text = vs(route(dest("version-v1"), mirror={"host": "recommendation"}, mirrorPercent=25))
    assert warnings(text) == [
        (
            "IST0002",
            "spec.http[0].mirrorPercent",
            'using deprecated setting "mirrorPercent", use "mirrorPercentage" instead',
        )
    ]


def test_route_redirect_and_direct_response_shapes() -> None:
    assert errors(vs({"redirect": {"uri": "/v2", "redirectCode": 301}})) == []
    assert errors(vs({"directResponse": {"status": 503, "body": {"string": "unavailable"}}})) == []
    assert errors(vs({"match": [{"uri": {"prefix": "/"}}]})) == [
        ("spec.http[0]", "HTTP route, redirect or direct_response is required")
    ]
    assert errors(vs(route(dest(), redirect={"uri": "/x"}))) == [
        ("spec.http[0]", "HTTP route cannot contain both route and redirect")
    ]
    assert errors(vs({"directResponse": {"status": 700}})) == [
        ("spec.http[0].directResponse.status", "HTTP status 700 is not in range 200-599")
    ]


def test_rewrite_headers_and_cors_are_accepted() -> None:
    text = vs(
        route(
            dest(),
            rewrite={"uri": "/", "authority": "x"},
            headers={"request": {"set": {"x-lab": "1"}, "remove": ["x-old"]}, "response": {"add": {"a": "b"}}},
            corsPolicy={"allowOrigins": [{"exact": "https://example.com"}], "allowMethods": ["GET"]},
        )
    )
    assert errors(text) == []
    assert errors(vs(route(dest(), rewrite={"path": "/"}))) == [("spec.http[0].rewrite.path", 'unknown field "path"')]


def test_full_match_request() -> None:
    match = {
        "name": "m",
        "uri": {"prefix": "/"},
        "scheme": {"exact": "http"},
        "method": {"exact": "GET"},
        "authority": {"prefix": "rec"},
        "headers": {"x": {"exact": "1"}},
        "withoutHeaders": {"y": {}},
        "queryParams": {"q": {"regex": "[0-9]+"}},
        "port": 8080,
        "sourceLabels": {"app": "preference"},
        "gateways": ["mesh"],
        "ignoreUriCase": True,
        "sourceNamespace": "tutorial",
    }
    assert errors(vs(route(dest(), match=[match]))) == []


def test_tcp_route_destinations_are_checked() -> None:
    text = vs(tcp=[{"route": [{"destination": {"port": {"number": 27017}}}]}])
    assert errors(text) == [("spec.tcp[0].route[0].destination.host", 'required field "host" is missing')]


def test_unreachable_rule_after_catch_all() -> None:
    text = vs(
        route(dest("version-v1")), route(dest("version-v2"), match=[{"headers": {"end-user": {"exact": "jason"}}}])
    )
    assert warnings(text) == [
        ("IST0130", "spec.http[1]", "VirtualService rule #1 not used (route without matches defined before).")
    ]


def test_only_the_last_rule_may_have_no_match_and_duplicates_are_ineffective() -> None:
    m = [{"uri": {"prefix": "/a"}}]
    text = vs(
        route(dest(), match=m, name="first"),
        route(dest(), match=[{"name": "again", "uri": {"prefix": "/a"}}]),
        route(dest()),
        route(dest()),
    )
    assert warnings(text) == [
        (
            "IST0131",
            "spec.http[1].match[0]",
            'VirtualService rule #1 match "again" is not used (duplicate/overlapping match in rule "first").',
        ),
        ("IST0130", "spec.http[1]", "VirtualService rule #1 not used (all matches used by prior rules)."),
        ("IST0130", "spec.http[3]", "VirtualService rule #3 not used (only the last rule can have no matches)."),
    ]


def test_wildcard_host_not_allowed_on_mesh() -> None:
    assert errors(vs(route(dest()), hosts=["*"])) == [
        ("spec.hosts[0]", "wildcard host * is not allowed for virtual services bound to the mesh gateway")
    ]
    assert errors(vs(route(dest()), hosts=["*"], gateways=["customer-gateway"])) == []
