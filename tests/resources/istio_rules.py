"""Istio's validation rules, one case pair each: a resource Istio accepts and one it refuses (or warns
about) with Istio's message. Written for this suite from Istio 1.30's pkg/config/validation and the
CRD schemas of istio/api; ``python -m tests.resources.istio_rules`` prints how many rules each kind has.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Spec = dict[str, Any]


@dataclass(frozen=True)
class Rule:
    kind: str
    name: str
    valid: Spec
    invalid: Spec
    message: str
    warning: bool = False
    namespace: str = "tutorial"
    resource_name: str = "r"
    invalid_name: str = ""
    annotations: tuple[tuple[str, str], ...] = ()
    valid_annotations: bool = True  # False: the annotations go on the invalid case only


RULES: list[Rule] = []


def rule(kind: str, name: str, valid: Spec, invalid: Spec | Callable[[Spec], None], message: str, **kw: Any) -> None:
    if callable(invalid):
        bad = copy.deepcopy(valid)
        invalid(bad)
        invalid = bad
    RULES.append(Rule(kind, name, valid, invalid, message, **kw))


# --------------------------------------------------------------------------------- VirtualService
def vs(*http: Spec, **spec: Any) -> Spec:
    return {"hosts": ["recommendation"], "http": list(http) or [route()], **spec}


def route(**extra: Any) -> Spec:
    return {"route": [{"destination": {"host": "recommendation"}}], **extra}


def http0(v: Spec) -> Spec:
    result: Spec = v["http"][0]
    return result


VS = "VirtualService"
rule(
    VS,
    "delegate has no gateways",
    vs(hosts=[]),
    vs(hosts=[], gateways=["istio-system/gw"]),
    "delegate virtual service must have no gateways specified",
)
rule(
    VS,
    "delegate has no tcp routes",
    vs(hosts=[]),
    vs(hosts=[], tcp=[{"route": [{"destination": {"host": "db"}}]}]),
    "delegate virtual service must have no tcp route specified",
)
rule(
    VS,
    "delegate has no tls routes",
    vs(hosts=[]),
    vs(hosts=[], tls=[{"match": [{"sniHosts": ["a.com"]}], "route": [{"destination": {"host": "a.com"}}]}]),
    "delegate virtual service must have no tls route specified",
)
rule(VS, "some routes", vs(), {"hosts": ["recommendation"]}, "http, tcp or tls must be provided in virtual service")
rule(
    VS,
    "host is a wildcard domain",
    vs(hosts=["*-foo.baz"]),
    vs(hosts=["foo.*.baz"]),
    'domain name "*.baz" invalid (label "*" invalid)',
)
rule(
    VS,
    "host top level domain not numeric",
    vs(hosts=["a.b.c"]),
    vs(hosts=["a.b.123"]),
    'domain name "b.123" invalid (top level domain "123" cannot be all-numeric)',
)
rule(VS, "host not empty", vs(hosts=["a"]), vs(hosts=[""]), "empty domain name not allowed")
rule(
    VS,
    "host at most 255 characters",
    vs(hosts=["a" * 60]),
    vs(hosts=[".".join(["a" * 60] * 5)]),
    f'domain name "{".".join(["a" * 60] * 5)}" too long (max 255)',
)
rule(
    VS,
    "IP hosts allowed",
    vs(hosts=["10.0.0.1"]),
    vs(hosts=["10.0.0.1/8"]),
    'domain name "0.0.1/8" invalid (label "1/8" invalid)',
)
rule(
    VS,
    "wildcard * not on mesh",
    vs(hosts=["*"], gateways=["istio-system/gw"]),
    vs(hosts=["*"]),
    "wildcard host * is not allowed for virtual services bound to the mesh gateway",
)
rule(
    VS,
    "duplicate hosts",
    vs(hosts=["*.foo.com", "bar.org"]),
    vs(hosts=["*.foo.com", "a.foo.com"]),
    "duplicate hosts in virtual service: *.foo.com & a.foo.com",
)
rule(
    VS,
    "gateway names",
    vs(gateways=["istio-system/gw"]),
    vs(gateways=["istio-system/Gw_1"]),
    'invalid value for gateway name: "Gw_1"',
)
rule(
    VS,
    "gateway namespace",
    vs(gateways=["istio-system/gw"]),
    vs(gateways=["Istio_System/gw"]),
    'invalid value for namespace: "Istio_System"',
)
rule(
    VS,
    "gateway name not empty",
    vs(gateways=["istio-system/gw"]),
    vs(gateways=["istio-system/"]),
    "config namespace and gateway name cannot be empty",
)
rule(
    VS,
    "legacy gateway name",
    vs(gateways=["istio-system/gw"]),
    vs(gateways=["gw.istio-system"]),
    'using legacy gatewayName format "gw.istio-system"; prefer the <namespace>/<name> format: "istio-system/gw"',
    warning=True,
)
rule(
    VS,
    "JWT claim routing only at gateways",
    vs(route(match=[{"headers": {"@request.auth.claims.group": {"exact": "a"}}}]), gateways=["istio-system/gw"]),
    vs(route(match=[{"headers": {"@request.auth.claims.group": {"exact": "a"}}}])),
    "JWT claim based routing (key: @request.auth.claims.group) is only supported for gateway, found no gateways: []",
)
rule(
    VS,
    "route or redirect or direct response",
    vs(),
    vs({"match": [{"uri": {"prefix": "/"}}]}),
    "HTTP route, redirect or direct_response is required",
)
rule(
    VS,
    "route and redirect",
    vs({"redirect": {"uri": "/v2"}}),
    vs({"redirect": {"uri": "/v2"}, **route()}),
    "HTTP route cannot contain both route and redirect",
)
rule(
    VS,
    "fault and redirect",
    vs({"redirect": {"uri": "/v2"}}),
    vs({"redirect": {"uri": "/v2"}, "fault": {"abort": {"httpStatus": 500}}}),
    "HTTP route cannot contain both fault and redirect",
)
rule(
    VS,
    "rewrite and redirect",
    vs({"redirect": {"uri": "/v2"}}),
    vs({"redirect": {"uri": "/v2"}, "rewrite": {"uri": "/"}}),
    "HTTP route rule cannot contain both rewrite and redirect",
)
rule(
    VS,
    "direct response and redirect",
    vs({"redirect": {"uri": "/v2"}}),
    vs({"redirect": {"uri": "/v2"}, "directResponse": {"status": 200}}),
    "HTTP route rule cannot contain both direct_response and redirect",
)
rule(
    VS,
    "route and direct response",
    vs({"directResponse": {"status": 200}}),
    vs({"directResponse": {"status": 200}, **route()}),
    "HTTP route cannot contain both route and direct_response",
)
rule(
    VS,
    "fault and direct response",
    vs({"directResponse": {"status": 200}}),
    vs({"directResponse": {"status": 200}, "fault": {"abort": {"httpStatus": 500}}}),
    "HTTP route cannot contain both fault and direct_response",
)
rule(
    VS,
    "rewrite and direct response",
    vs({"directResponse": {"status": 200}}),
    vs({"directResponse": {"status": 200}, "rewrite": {"uri": "/"}}),
    "HTTP route rule cannot contain both rewrite and direct_response",
)
rule(
    VS,
    "root route delegates only",
    vs({"delegate": {"name": "d"}}),
    vs({"delegate": {"name": "d"}, **route()}),
    "root HTTP route  must not specify route",
)
rule(
    VS,
    "root route has no redirect",
    vs({"delegate": {"name": "d"}}),
    vs({"delegate": {"name": "d"}, "redirect": {"uri": "/"}}),
    "root HTTP route  must not specify redirect",
)
rule(
    VS,
    "delegate route cannot delegate",
    vs(hosts=[]),
    vs(route(delegate={"name": "d"}), hosts=[]),
    "delegate HTTP route cannot contain delegate",
)
rule(
    VS,
    "mirror and mirrors",
    vs(route(mirror={"host": "a"})),
    vs(route(mirror={"host": "a"}, mirrors=[{"destination": {"host": "b"}}])),
    "HTTP route cannot contain both mirror and mirrors",
)
rule(
    VS,
    "header match names",
    vs(route(match=[{"headers": {":authority": {"exact": "a"}}}])),
    vs(route(match=[{"headers": {"a b": {"exact": "a"}}}])),
    "header name a b is not a valid header name",
)
rule(
    VS,
    "header prefix not empty",
    vs(route(match=[{"headers": {"x": {"prefix": "a"}}}])),
    vs(route(match=[{"headers": {"x": {"prefix": ""}}}])),
    '"headers": prefix string match should not be empty',
)
rule(
    VS,
    "uri prefix may be empty",
    vs(route(match=[{"uri": {"prefix": ""}}])),
    vs(route(match=[{"uri": {"regex": ""}}])),
    '"uri": regex string match should not be empty',
)
rule(
    VS,
    "method prefix not empty",
    vs(route(match=[{"method": {"exact": "GET"}}])),
    vs(route(match=[{"method": {"prefix": ""}}])),
    '"method": prefix string match should not be empty',
)
rule(
    VS,
    "scheme prefix not empty",
    vs(route(match=[{"scheme": {"exact": "http"}}])),
    vs(route(match=[{"scheme": {"prefix": ""}}])),
    '"scheme": prefix string match should not be empty',
)
rule(
    VS,
    "authority prefix not empty",
    vs(route(match=[{"authority": {"prefix": "a"}}])),
    vs(route(match=[{"authority": {"prefix": ""}}])),
    '"authority": prefix string match should not be empty',
)
rule(
    VS,
    "query param prefix not empty",
    vs(route(match=[{"queryParams": {"q": {"exact": ""}}}])),
    vs(route(match=[{"queryParams": {"q": {"prefix": ""}}}])),
    '"queryParams": prefix string match should not be empty',
)
rule(
    VS,
    "withoutHeaders regex * is presence",
    vs(route(match=[{"withoutHeaders": {"x": {"regex": "*"}}}])),
    vs(route(match=[{"headers": {"x": {"regex": "*"}}}])),
    '"headers": error parsing regexp: missing argument to repetition operator: `*`; Istio uses RE2 style '
    "regex-based match (https://github.com/google/re2/wiki/Syntax)",
)
rule(
    VS,
    "regex at most 1024",
    vs(route(match=[{"uri": {"regex": "a" * 1024}}])),
    vs(route(match=[{"uri": {"regex": "a" * 1025}}])),
    '"uri": regex is too large, max length allowed is 1024',
)
rule(
    VS,
    "match port",
    vs(route(match=[{"port": 8080}])),
    vs(route(match=[{"port": 0}])),
    "port number 0 must be in the range 1..65535",
)
rule(
    VS,
    "source labels",
    vs(route(match=[{"sourceLabels": {"app": "customer"}}])),
    vs(route(match=[{"sourceLabels": {"app": "a b"}}])),
    'invalid tag value: "a b"',
)
rule(
    VS,
    "source namespace",
    vs(route(match=[{"sourceNamespace": "tutorial"}])),
    vs(route(match=[{"sourceNamespace": "Tutorial_1"}])),
    "sourceNamespace match Tutorial_1 is invalid",
)
rule(
    VS,
    "request header set may write :authority",
    vs(route(headers={"request": {"set": {":authority": "a.example.com"}}})),
    vs(route(headers={"request": {"set": {":path": "/"}}})),
    'invalid header ":path": header cannot have ":" prefix',
)
rule(
    VS,
    "response headers cannot set Host",
    vs(route(headers={"response": {"set": {"x-a": "1"}}})),
    vs(route(headers={"response": {"set": {"host": "a"}}})),
    'invalid header "host": cannot set Host header',
)
rule(
    VS,
    "removed header names",
    vs(route(headers={"request": {"remove": ["x-a"]}})),
    vs(route(headers={"request": {"remove": [":authority"]}})),
    'invalid header ":authority": header cannot have ":" prefix',
)
rule(
    VS,
    "header value percent escaped",
    vs(route(headers={"request": {"set": {"x-a": "100%% %HOSTNAME%"}}})),
    vs(route(headers={"request": {"set": {"x-a": "100%"}}})),
    "header value configuration: invalid header configuration. Un-escaped %",
)
rule(
    VS,
    "header value variables terminated",
    vs(route(headers={"request": {"add": {"x-a": "%REQ(x-b)%"}}})),
    vs(route(headers={"request": {"add": {"x-a": "abc%123"}}})),
    "header value configuration: invalid header configuration. Un-terminated variable expression 'abc%123'",
)
rule(
    VS,
    "header value control characters",
    vs(route(headers={"response": {"add": {"x-a": "b"}}})),
    vs(route(headers={"response": {"add": {"x-a": "b\x01"}}})),
    "header value configuration b\x01 is invalid",
)
rule(
    VS,
    "authority set once",
    vs(route(rewrite={"authority": "a"})),
    vs(route(rewrite={"authority": "a"}, headers={"request": {"set": {"host": "b"}}})),
    'authority header cannot be set multiple times: have "a", attempting to set "b"',
)
rule(
    VS,
    "destination header operations",
    vs({"route": [{"destination": {"host": "r"}, "headers": {"request": {"set": {"x-a": "1"}}}}]}),
    vs({"route": [{"destination": {"host": "r"}, "headers": {"request": {"set": {"x-a": "%"}}}}]}),
    "header value configuration: invalid header configuration. Un-escaped %",
)
rule(
    VS,
    "CORS allow origins",
    vs(route(corsPolicy={"allowOrigins": [{"exact": "https://a.com"}]})),
    vs(route(corsPolicy={"allowOrigins": [{"exact": ""}]})),
    "'' is not a valid match type for CORS allow origins",
)
rule(
    VS,
    "CORS origin regex",
    vs(route(corsPolicy={"allowOrigins": [{"regex": ".*"}]})),
    vs(route(corsPolicy={"allowOrigins": [{"regex": "(?!a)"}]})),
    '"corsPolicy.allowOrigins": error parsing regexp: invalid or unsupported Perl syntax: `(?!`; Istio uses RE2 '
    "style regex-based match (https://github.com/google/re2/wiki/Syntax)",
)
rule(
    VS,
    "CORS methods",
    vs(route(corsPolicy={"allowMethods": ["GET", "*"]})),
    vs(route(corsPolicy={"allowMethods": ["FETCH"]})),
    '"FETCH" is not a supported HTTP method',
)
rule(
    VS,
    "CORS headers",
    vs(route(corsPolicy={"allowHeaders": ["*", "x-a"], "exposeHeaders": ["x-b"]})),
    vs(route(corsPolicy={"exposeHeaders": ["x b"]})),
    "header name x b is not a valid header name",
)
rule(
    VS,
    "CORS max age in seconds",
    vs(route(corsPolicy={"maxAge": "24h"})),
    vs(route(corsPolicy={"maxAge": "1500ms"})),
    "max_age duration is accurate only to seconds precision",
)
rule(
    VS,
    "fault has abort or delay",
    vs(route(fault={"delay": {"fixedDelay": "1s"}})),
    vs(route(fault={})),
    "HTTP fault injection must have an abort and/or a delay",
)
rule(
    VS,
    "abort status range",
    vs(route(fault={"abort": {"httpStatus": 600}})),
    vs(route(fault={"abort": {"httpStatus": 601}})),
    "HTTP status 601 is not in range 200-599",
)
rule(
    VS,
    "abort gRPC status",
    vs(route(fault={"abort": {"grpcStatus": "UNAVAILABLE"}})),
    vs(route(fault={"abort": {"grpcStatus": "BROKEN"}})),
    'gRPC status "BROKEN" is not supported. See https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a '
    "list of supported codes, for example 'NOT_FOUND'",
)
rule(
    VS,
    "abort HTTP/2 error",
    vs(route(fault={"abort": {"httpStatus": 503}})),
    vs(route(fault={"abort": {"http2Error": "ENHANCE_YOUR_CALM"}})),
    "HTTP/2 abort fault injection not supported yet",
)
rule(
    VS,
    "abort error type",
    vs(route(fault={"abort": {"httpStatus": 503}})),
    vs(route(fault={"abort": {"percentage": {"value": 5}}})),
    "abort configured, but error type not set",
    warning=True,
)
rule(
    VS,
    "fault percentage",
    vs(route(fault={"abort": {"httpStatus": 503, "percentage": {"value": 0}}})),
    vs(route(fault={"abort": {"httpStatus": 503, "percentage": {"value": 0.00001}}})),
    "percentage 1e-05 is neither 0.0, nor in range [0.0001, 100.0]",
)
rule(
    VS,
    "exponential delay",
    vs(route(fault={"delay": {"fixedDelay": "1s"}})),
    vs(route(fault={"delay": {"exponentialDelay": "1s"}})),
    "exponentialDelay not supported yet",
)
rule(
    VS,
    "delay duration",
    vs(route(fault={"delay": {"fixedDelay": "1ms"}})),
    vs(route(fault={"delay": {"fixedDelay": "0.5ms"}})),
    "duration must be greater than 1ms",
)
rule(
    VS,
    "redirect uri or prefixRewrite",
    vs({"redirect": {"prefixRewrite": "/v2"}}),
    vs({"redirect": {"uri": "/a", "prefixRewrite": "/v2"}}),
    "redirect may only specify one of uri or prefix_rewrite",
)
rule(
    VS,
    "redirect prefixRewrite needs prefix matches",
    vs({"redirect": {"prefixRewrite": "/v2"}, "match": [{"uri": {"prefix": "/v1"}}]}),
    vs({"redirect": {"prefixRewrite": "/v2"}, "match": [{"uri": {"exact": "/v1"}}]}),
    "redirect prefix_rewrite requires all URI matches to use prefix match type",
)
rule(
    VS,
    "redirect has a target",
    vs({"redirect": {"scheme": "https"}}),
    vs({"redirect": {"redirectCode": 301}}),
    "redirect must specify URI, authority, scheme, or port",
)
rule(
    VS,
    "redirect code 3xx",
    vs({"redirect": {"uri": "/", "redirectCode": 308}}),
    vs({"redirect": {"uri": "/", "redirectCode": 200}}),
    "200 is not a valid redirect code, must be 3xx",
)
rule(
    VS,
    "redirect scheme",
    vs({"redirect": {"scheme": "http"}}),
    vs({"redirect": {"scheme": "ftp"}}),
    'invalid redirect scheme, must be "http" or "https"',
)
rule(
    VS,
    "redirect port",
    vs({"redirect": {"port": 8443}}),
    vs({"redirect": {"port": 70000}}),
    "port number 70000 must be in the range 1..65535",
)
rule(
    VS,
    "direct response status",
    vs({"directResponse": {"status": 503}}),
    vs({"directResponse": {"status": 99}}),
    "HTTP status 99 is not in range 200-599",
)
rule(
    VS,
    "direct response body under 1MB",
    vs({"directResponse": {"status": 200, "body": {"string": "ok"}}}),
    vs({"directResponse": {"status": 200, "body": {"string": "x" * (1024 * 1024 + 1)}}}),
    "large direct_responses may impact control plane performance, must be less than 1MB",
)
rule(
    VS,
    "rewrite uri or regex",
    vs(route(rewrite={"uriRegexRewrite": {"match": "^/a", "rewrite": "/b"}})),
    vs(route(rewrite={"uri": "/", "uriRegexRewrite": {"match": "^/a", "rewrite": "/b"}})),
    "rewrite may only contain one of URI or UriRegexRewrite",
)
rule(
    VS,
    "rewrite has a target",
    vs(route(rewrite={"authority": "a"})),
    vs(route(rewrite={})),
    "rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or UriRegexRewrite "
    "may be specified",
)
rule(
    VS,
    "regex rewrite needs both fields",
    vs(route(rewrite={"uriRegexRewrite": {"match": "a", "rewrite": "b"}})),
    vs(route(rewrite={"uriRegexRewrite": {"match": "a"}})),
    "UriRegexRewrite has errors: UriRegexRewrite requires both Rewrite and Match fields to be specified",
)
rule(
    VS,
    "retry attempts",
    vs(route(retries={"attempts": 3})),
    vs(route(retries={"attempts": -1})),
    "attempts cannot be negative",
)
rule(
    VS,
    "retry policy without attempts",
    vs(route(retries={"attempts": 1, "perTryTimeout": "1s"})),
    vs(route(retries={"perTryTimeout": "1s"})),
    "http retry policy configured when attempts are set to 0 (disabled)",
)
rule(
    VS,
    "retryOn policies",
    vs(route(retries={"attempts": 1, "retryOn": "5xx,503,reset"})),
    vs(route(retries={"attempts": 1, "retryOn": "5xx,599"})),
    '"599" is not a valid retryOn policy',
)
rule(
    VS,
    "retry backoff",
    vs(route(retries={"attempts": 1, "backoff": "25ms"})),
    vs(route(retries={"attempts": 1, "backoff": "1.5ms"})),
    "only durations to ms precision are supported",
)
rule(VS, "timeout duration", vs(route(timeout="1.5s")), vs(route(timeout="0s")), "duration must be greater than 1ms")
rule(
    VS,
    "destination host not *",
    vs(route()),
    vs({"route": [{"destination": {"host": "*"}}]}),
    "invalid destination host *",
)
rule(
    VS,
    "destination subset name",
    vs({"route": [{"destination": {"host": "r", "subset": "Version-1"}}]}),
    vs({"route": [{"destination": {"host": "r", "subset": "v_1"}}]}),
    "subset name is invalid: v_1",
)
rule(
    VS,
    "weights not negative",
    vs({"route": [{"destination": {"host": "r"}, "weight": 0}]}),
    vs({"route": [{"destination": {"host": "r"}, "weight": -1}]}),
    "weight -1 < 0",
)
rule(
    VS,
    "weights not all zero",
    vs({"route": [{"destination": {"host": "r", "subset": "a"}, "weight": 1}, {"destination": {"host": "r"}}]}),
    vs({"route": [{"destination": {"host": "r", "subset": "a"}}, {"destination": {"host": "r"}}]}),
    "total destination weight = 0",
)
rule(
    VS,
    "mirror percentage",
    vs(route(mirror={"host": "a"}, mirrorPercentage={"value": 100})),
    vs(route(mirror={"host": "a"}, mirrorPercentage={"value": 101})),
    "mirror_percentage must have a max value of 100 (it has 101.000000)",
)
rule(
    VS,
    "mirrors percentage",
    vs(route(mirrors=[{"destination": {"host": "a"}, "percentage": {"value": 0}}])),
    vs(route(mirrors=[{"destination": {"host": "a"}, "percentage": {"value": -1}}])),
    "mirror percentage must have a min value of 0 (it has -1.000000)",
)
rule(
    VS,
    "deprecated mirrorPercent",
    vs(route(mirror={"host": "a"})),
    vs(route(mirror={"host": "a"}, mirrorPercent=5)),
    'using deprecated setting "mirrorPercent", use "mirrorPercentage" instead',
    warning=True,
)
rule(
    VS,
    "tcp route required",
    vs(http=[], tcp=[{"route": [{"destination": {"host": "db"}}]}]),
    vs(http=[], tcp=[{"match": [{"port": 3306}]}]),
    "TCP route is required",
)
rule(
    VS,
    "tcp destination subnets",
    vs(http=[], tcp=[{"match": [{"destinationSubnets": ["10.0.0.0/8"]}], "route": [{"destination": {"host": "db"}}]}]),
    vs(http=[], tcp=[{"match": [{"destinationSubnets": ["10.0.0.0/40"]}], "route": [{"destination": {"host": "db"}}]}]),
    "10.0.0.0/40 is not a valid CIDR block",
)
rule(
    VS,
    "tls routes need SNI hosts",
    vs(
        hosts=["*.a.com"],
        http=[],
        tls=[{"match": [{"sniHosts": ["b.a.com"]}], "route": [{"destination": {"host": "b.a.com"}}]}],
    ),
    vs(hosts=["*.a.com"], http=[], tls=[{"match": [{"port": 443}], "route": [{"destination": {"host": "b.a.com"}}]}]),
    "TLS match must have at least one SNI host",
)
rule(
    VS,
    "tls SNI within hosts",
    vs(
        hosts=["*.a.com"],
        http=[],
        tls=[{"match": [{"sniHosts": ["b.a.com"]}], "route": [{"destination": {"host": "b.a.com"}}]}],
    ),
    vs(
        hosts=["*.a.com"],
        http=[],
        tls=[{"match": [{"sniHosts": ["b.c.com"]}], "route": [{"destination": {"host": "b.a.com"}}]}],
    ),
    'SNI host "b.c.com" is not a compatible subset of any of the virtual service hosts: [*.a.com]',
)
rule(
    VS,
    "exportTo values",
    vs(exportTo=[".", "other"]),
    vs(exportTo=["~"]),
    "exportTo ~ (none) is not allowed for Istio configuration objects",
)
rule(
    VS,
    "exportTo duplicates",
    vs(exportTo=["."]),
    vs(exportTo=["tutorial", "."]),
    "duplicate entries in exportTo: . and current namespace tutorial",
)
rule(
    VS,
    "exportTo * alone",
    vs(exportTo=["*"]),
    vs(exportTo=["*", "other"]),
    "cannot have both public (*) and non-public exportTo values for a resource",
)
rule(
    VS,
    "unreachable rules",
    vs(route(match=[{"uri": {"prefix": "/a"}}]), route()),
    vs(route(), route()),
    "VirtualService rule #1 not used (only the last rule can have no matches).",
    warning=True,
)

# -------------------------------------------------------------------------------- DestinationRule
DR = "DestinationRule"


def dr(**spec: Any) -> Spec:
    return {"host": "recommendation", **spec}


def lb(**settings: Any) -> Spec:
    return dr(trafficPolicy={"loadBalancer": settings})


rule(
    DR,
    "host is a wildcard domain",
    dr(host="*.example.com"),
    dr(host="a..b"),
    'domain name ".b" invalid (label "" invalid)',
)
rule(
    DR,
    "traffic policy not empty",
    dr(trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL"}}),
    dr(trafficPolicy={}),
    "traffic policy must have at least one field",
)
rule(
    DR,
    "tunnel or proxyProtocol",
    dr(trafficPolicy={"proxyProtocol": {"version": "V1"}}),
    dr(trafficPolicy={"proxyProtocol": {"version": "V1"}, "tunnel": {"targetHost": "a.b", "targetPort": 80}}),
    "tunnel and proxyProtocol must not be set together",
)
rule(
    DR,
    "tunnel protocol",
    dr(trafficPolicy={"tunnel": {"protocol": "POST", "targetHost": "a.b", "targetPort": 80}}),
    dr(trafficPolicy={"tunnel": {"protocol": "GET", "targetHost": "a.b", "targetPort": 80}}),
    'tunnel protocol must be "CONNECT" or "POST"',
)
rule(
    DR,
    "tunnel target port",
    dr(trafficPolicy={"tunnel": {"targetHost": "10.0.0.1", "targetPort": 80}}),
    dr(trafficPolicy={"tunnel": {"targetHost": "10.0.0.1", "targetPort": 0}}),
    "tunnel target port is invalid: port number 0 must be in the range 1..65535",
)
rule(
    DR,
    "subset names unique",
    dr(subsets=[{"name": "v1"}, {"name": "v2"}]),
    dr(subsets=[{"name": "v1"}, {"name": "v1"}]),
    "duplicate subset names: v1",
)
rule(DR, "subset name", dr(subsets=[{"name": "V1"}]), dr(subsets=[{"name": "v.1"}]), "subset name is invalid: v.1")
rule(
    DR,
    "subset labels",
    dr(subsets=[{"name": "v1", "labels": {"version": "v1"}}]),
    dr(subsets=[{"name": "v1", "labels": {"version": "-v1"}}]),
    'invalid tag value: "-v1"',
)
rule(
    DR,
    "maglev table size set",
    lb(consistentHash={"useSourceIp": True, "maglev": {"tableSize": 65537}}),
    lb(consistentHash={"useSourceIp": True, "maglev": {}}),
    "tableSize must be set for maglev",
)
rule(
    DR,
    "maglev table size prime",
    lb(consistentHash={"useSourceIp": True, "maglev": {"tableSize": 65537}}),
    lb(consistentHash={"useSourceIp": True, "maglev": {"tableSize": 65536}}),
    "tableSize must be a prime number for maglev",
)
rule(
    DR,
    "maglev table size bound",
    lb(consistentHash={"useSourceIp": True, "maglev": {"tableSize": 1000003}}),
    lb(consistentHash={"useSourceIp": True, "maglev": {"tableSize": 5000011}}),
    "tableSize must be less than 5000011 for maglev",
)
rule(
    DR,
    "cookie name",
    lb(consistentHash={"httpCookie": {"name": "u", "ttl": "0s"}}),
    lb(consistentHash={"httpCookie": {"name": "", "ttl": "0s"}}),
    "name required for HttpCookie",
)
rule(
    DR,
    "cookie attributes unique",
    lb(consistentHash={"httpCookie": {"name": "u", "attributes": [{"name": "a"}]}}),
    lb(consistentHash={"httpCookie": {"name": "u", "attributes": [{"name": "a"}, {"name": "a"}]}}),
    "duplicate cookie attribute name: a",
)
rule(
    DR,
    "minimumRingSize deprecated",
    lb(consistentHash={"useSourceIp": True, "ringHash": {"minimumRingSize": 1024}}),
    lb(consistentHash={"useSourceIp": True, "minimumRingSize": 1024}),
    "consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash configuration instead",
    warning=True,
)
rule(
    DR,
    "minimumRingSize or hash algorithm",
    lb(consistentHash={"useSourceIp": True, "minimumRingSize": 1024}),
    lb(consistentHash={"useSourceIp": True, "minimumRingSize": 1024, "maglev": {"tableSize": 65537}}),
    "only one of MinimumRingSize or Maglev/Ringhash can be specified",
)
rule(
    DR,
    "locality distribute or failover",
    lb(localityLbSetting={"failover": [{"from": "us", "to": "eu"}]}),
    lb(
        localityLbSetting={
            "failover": [{"from": "us", "to": "eu"}],
            "distribute": [{"from": "us/*", "to": {"eu/*": 100}}],
        }
    ),
    "can not simultaneously specify 'distribute' and 'failover'",
)
rule(
    DR,
    "locality weights sum to 100",
    lb(localityLbSetting={"distribute": [{"from": "us/*", "to": {"eu/*": 100}}]}),
    lb(localityLbSetting={"distribute": [{"from": "us/*", "to": {"eu/*": 60}}]}),
    "total locality weight 60 != 100",
)
rule(
    DR,
    "locality failover regions differ",
    lb(localityLbSetting={"failover": [{"from": "us", "to": "eu"}]}),
    lb(localityLbSetting={"failover": [{"from": "us", "to": "us"}]}),
    "locality lb failover settings must specify different regions",
)
rule(
    DR,
    "locality failover needs outlier detection",
    dr(
        trafficPolicy={
            "loadBalancer": {"localityLbSetting": {"failover": [{"from": "us", "to": "eu"}]}},
            "outlierDetection": {"consecutive5xxErrors": 1},
        }
    ),
    lb(localityLbSetting={"failover": [{"from": "us", "to": "eu"}]}),
    "outlier detection policy must be provided for failover",
    warning=True,
)
rule(
    DR,
    "locality or zone aware",
    lb(zoneAwareLbSetting={"enabled": True}),
    lb(zoneAwareLbSetting={"enabled": True}, localityLbSetting={"enabled": True}),
    "only one of localityLbSetting and zoneAwareLbSetting can be set",
)
rule(DR, "warmup duration", lb(warmup={"duration": "30s"}), lb(warmup={"minimumPercent": 10}), "duration is required")
rule(
    DR,
    "warmup aggression",
    lb(warmup={"duration": "30s", "aggression": 1.5}),
    lb(warmup={"duration": "30s", "aggression": 0}),
    "aggression should be greater than 0",
)
rule(
    DR,
    "connection pool not empty",
    dr(trafficPolicy={"connectionPool": {"tcp": {"maxConnections": 1}}}),
    dr(trafficPolicy={"connectionPool": {}}),
    "connection pool must have at least one field",
)
rule(
    DR,
    "max connections",
    dr(trafficPolicy={"connectionPool": {"tcp": {"maxConnections": 0}}}),
    dr(trafficPolicy={"connectionPool": {"tcp": {"maxConnections": -1}}}),
    "max connections must be non-negative",
)
rule(
    DR,
    "tcp idleTimeout 0s disables",
    dr(trafficPolicy={"connectionPool": {"tcp": {"idleTimeout": "0s"}}}),
    dr(trafficPolicy={"connectionPool": {"tcp": {"idleTimeout": "1.5ms"}}}),
    "only durations to ms precision are supported",
)
rule(
    DR,
    "http idleTimeout",
    dr(trafficPolicy={"connectionPool": {"http": {"idleTimeout": "1s"}}}),
    dr(trafficPolicy={"connectionPool": {"http": {"idleTimeout": "0s"}}}),
    "duration must be greater than 1ms",
)
rule(
    DR,
    "h2 upgrade and client protocol",
    dr(trafficPolicy={"connectionPool": {"http": {"h2UpgradePolicy": "UPGRADE"}}}),
    dr(trafficPolicy={"connectionPool": {"http": {"h2UpgradePolicy": "UPGRADE", "useClientProtocol": True}}}),
    "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
)
rule(
    DR,
    "http2 keepalive",
    dr(trafficPolicy={"connectionPool": {"http": {"http2KeepAlive": {"interval": "1s", "timeout": "1s"}}}}),
    dr(trafficPolicy={"connectionPool": {"http": {"http2KeepAlive": {"interval": "1s"}}}}),
    "http2 keepalive timeout is required",
)
rule(
    DR,
    "outlier local origin failures",
    dr(
        trafficPolicy={
            "outlierDetection": {"consecutiveLocalOriginFailures": 1, "splitExternalLocalOriginErrors": True}
        }
    ),
    dr(trafficPolicy={"outlierDetection": {"consecutiveLocalOriginFailures": 1}}),
    "outlier detection consecutive local origin failures is specified, but split external local origin errors is set "
    "to false",
)
rule(
    DR,
    "outlier percentages",
    dr(trafficPolicy={"outlierDetection": {"maxEjectionPercent": 100}}),
    dr(trafficPolicy={"outlierDetection": {"maxEjectionPercent": 101}}),
    "percentage 101 is not in range 0..100",
)
rule(
    DR,
    "consecutiveErrors deprecated",
    dr(trafficPolicy={"outlierDetection": {"consecutive5xxErrors": 1}}),
    dr(trafficPolicy={"outlierDetection": {"consecutiveErrors": 1}}),
    "outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead",
    warning=True,
)
rule(
    DR,
    "ISTIO_MUTUAL may carry certificates",
    dr(trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL", "sni": "a"}}),
    dr(trafficPolicy={"tls": {"mode": "MUTUAL"}}),
    "client certificate required for mutual tls",
)
rule(
    DR,
    "mutual TLS private key",
    dr(trafficPolicy={"tls": {"mode": "MUTUAL", "credentialName": "c"}}),
    dr(trafficPolicy={"tls": {"mode": "MUTUAL", "clientCertificate": "/c"}}),
    "private key required for mutual tls",
)
rule(
    DR,
    "credentialName excludes files",
    dr(trafficPolicy={"tls": {"mode": "SIMPLE", "credentialName": "c"}}),
    dr(trafficPolicy={"tls": {"mode": "SIMPLE", "credentialName": "c", "caCertificates": "/ca"}}),
    "cannot specify client certificates or CA certificate or CA CRL If credentialName is set",
)
rule(
    DR,
    "insecureSkipVerify in SIMPLE",
    dr(trafficPolicy={"tls": {"mode": "SIMPLE", "insecureSkipVerify": True}}),
    dr(trafficPolicy={"tls": {"mode": "SIMPLE", "insecureSkipVerify": True, "subjectAltNames": ["a"]}}),
    "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true",
)
rule(
    DR,
    "insecureSkipVerify in MUTUAL",
    dr(trafficPolicy={"tls": {"mode": "MUTUAL", "credentialName": "c", "insecureSkipVerify": True}}),
    dr(
        trafficPolicy={
            "tls": {"mode": "MUTUAL", "credentialName": "c", "insecureSkipVerify": True, "caCertificates": "/ca"}
        }
    ),
    "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true",
)
rule(
    DR,
    "port level settings have a port",
    dr(trafficPolicy={"portLevelSettings": [{"port": {"number": 80}, "tls": {"mode": "DISABLE"}}]}),
    dr(trafficPolicy={"portLevelSettings": [{"tls": {"mode": "DISABLE"}}]}),
    "portTrafficPolicy must have valid port",
)
rule(
    DR,
    "port level settings not empty",
    dr(trafficPolicy={"portLevelSettings": [{"port": {"number": 80}, "tls": {"mode": "DISABLE"}}]}),
    dr(trafficPolicy={"portLevelSettings": [{"port": {"number": 80}}]}),
    "port traffic policy must have at least one field",
)
rule(
    DR,
    "selector exportTo",
    dr(workloadSelector={"matchLabels": {"app": "a"}}, exportTo=["."]),
    dr(workloadSelector={"matchLabels": {"app": "a"}}, exportTo=["other"]),
    "destination rule with workload selector cannot have exportTo beyond current namespace",
)
rule(
    DR,
    "selector without wildcards",
    dr(workloadSelector={"matchLabels": {"app": "a"}}),
    dr(workloadSelector={"matchLabels": {"app": "a*"}}),
    'wildcard is not supported in selector: "app=a*"',
)

# ---------------------------------------------------------------------------------------- Gateway
GW = "Gateway"


def server(**extra: Any) -> Spec:
    return {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"], **extra}


def gw(*servers: Spec) -> Spec:
    return {"selector": {"istio": "ingressgateway"}, "servers": list(servers) or [server()]}


def https(**tls: Any) -> Spec:
    return server(port={"number": 443, "name": "https", "protocol": "HTTPS"}, tls=tls)


rule(
    GW, "at least one server", gw(), {"selector": {"istio": "ingressgateway"}}, "gateway must have at least one server"
)
rule(GW, "hosts not empty", gw(), gw(server(hosts=[])), "server config must contain at least one host")
rule(
    GW,
    "no short names",
    gw(server(hosts=["*.example.com", "ns/a.example.com"])),
    gw(server(hosts=["customer"])),
    "short names (non FQDN) are not allowed",
)
rule(
    GW,
    "no partial wildcards",
    gw(server(hosts=["*.example.com"])),
    gw(server(hosts=["*example.com"])),
    'partial wildcard "*example.com" not allowed',
)
rule(
    GW,
    "host namespace",
    gw(server(hosts=["./a.example.com", "*/b.example.com"])),
    gw(server(hosts=["Tutorial_1/a.example.com"])),
    'invalid namespace value "Tutorial_1" in gateway',
)
rule(
    GW,
    "protocols",
    gw(server(port={"number": 3306, "name": "mysql", "protocol": "MYSQL"})),
    gw(server(port={"number": 25, "name": "smtp", "protocol": "SMTP"})),
    'invalid protocol "SMTP", supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP',
)
rule(
    GW,
    "port names unique",
    gw(server(), server(port={"number": 81, "name": "http2", "protocol": "HTTP"})),
    gw(server(), server(port={"number": 81, "name": "http", "protocol": "HTTP"})),
    "port names in servers must be unique: duplicate name http",
)
rule(
    GW,
    "port name set",
    gw(),
    gw(server(port={"number": 80, "name": "", "protocol": "HTTP"})),
    'port name must be set: number:80 protocol:"HTTP"',
)
rule(
    GW,
    "targetPort has no impact",
    gw(),
    gw(server(port={"number": 80, "name": "h", "protocol": "HTTP", "targetPort": 8080})),
    "targetPort has no impact on Gateways",
)
rule(
    GW,
    "unix socket binds",
    gw(server(port={"number": 0, "name": "uds", "protocol": "HTTP"}, bind="unix:///var/run/gw.sock")),
    gw(server(port={"number": 80, "name": "uds", "protocol": "HTTP"}, bind="unix:///var/run/gw.sock")),
    'port number must be 0 for unix domain socket: number:80 protocol:"HTTP" name:"uds"',
)
rule(
    GW,
    "unix socket path absolute",
    gw(server(port={"number": 0, "name": "uds", "protocol": "HTTP"}, bind="unix://@abstract")),
    gw(server(port={"number": 0, "name": "uds", "protocol": "HTTP"}, bind="unix://relative/sock")),
    "relative/sock is not an absolute path to a file",
)
rule(GW, "IP binds", gw(server(bind="127.0.0.1")), gw(server(bind="localhost")), "localhost is not a valid IP")
rule(
    GW,
    "HTTPS needs TLS",
    gw(https(mode="SIMPLE", credentialName="c")),
    gw(server(port={"number": 443, "name": "https", "protocol": "HTTPS"})),
    "server must have TLS settings for HTTPS/TLS protocols",
)
rule(
    GW,
    "plain HTTP without TLS",
    gw(server(tls={"httpsRedirect": True})),
    gw(server(tls={"mode": "SIMPLE", "credentialName": "c"})),
    "server cannot have TLS settings for plain text HTTP ports",
)
rule(
    GW,
    "non-HTTP without TLS",
    gw(server(port={"number": 3306, "name": "tcp", "protocol": "TCP"})),
    gw(server(port={"number": 3306, "name": "tcp", "protocol": "TCP"}, tls={"mode": "SIMPLE", "credentialName": "c"})),
    "server cannot have TLS settings for non HTTPS/TLS ports",
)
rule(
    GW,
    "httpsRedirect on http servers",
    gw(server(tls={"httpsRedirect": True})),
    gw(
        server(
            port={"number": 443, "name": "tls", "protocol": "TLS"}, tls={"mode": "PASSTHROUGH", "httpsRedirect": True}
        )
    ),
    "tls.httpsRedirect should only be used with http servers",
    warning=True,
)
rule(
    GW,
    "ISTIO_MUTUAL without certificates",
    gw(https(mode="ISTIO_MUTUAL")),
    gw(https(mode="ISTIO_MUTUAL", credentialName="c")),
    "ISTIO_MUTUAL TLS cannot have associated credentialName",
)
rule(
    GW,
    "tlsCertificates",
    gw(https(mode="SIMPLE", tlsCertificates=[{"serverCertificate": "/a", "privateKey": "/k"}])),
    gw(https(mode="SIMPLE", tlsCertificates=[{"serverCertificate": "/a"}])),
    "SIMPLE TLS requires a private key",
)
rule(
    GW,
    "one certificate source",
    gw(https(mode="SIMPLE", serverCertificate="/a", privateKey="/k")),
    gw(https(mode="SIMPLE", serverCertificate="/a", privateKey="/k", credentialName="c")),
    "only one of credential_name, credential_names, "
    "server_certificate/private_key, tls_certificates should be specified",
)
rule(
    GW,
    "mutual TLS CA bundle",
    gw(https(mode="MUTUAL", credentialName="c")),
    gw(https(mode="MUTUAL", serverCertificate="/a", privateKey="/k")),
    "MUTUAL TLS requires a client CA bundle",
)
rule(
    GW,
    "CRL not with SIMPLE",
    gw(https(mode="MUTUAL", serverCertificate="/a", privateKey="/k", caCertificates="/ca", caCrl="/crl")),
    gw(https(mode="SIMPLE", serverCertificate="/a", privateKey="/k", caCrl="/crl")),
    "CRL is not supported with SIMPLE TLS",
)
rule(
    GW,
    "passthrough ignores certificates",
    gw(https(mode="PASSTHROUGH")),
    gw(https(mode="PASSTHROUGH", credentialName="c")),
    "PASSTHROUGH mode does not use certificates, they will be ignored",
    warning=True,
)
rule(
    GW,
    "cipher suites",
    gw(https(mode="SIMPLE", credentialName="c", cipherSuites=["ECDHE-RSA-AES128-GCM-SHA256"])),
    gw(https(mode="SIMPLE", credentialName="c", cipherSuites=["NOPE"])),
    "ignoring invalid cipher suites: [NOPE]",
    warning=True,
)
rule(
    GW,
    "old TLS needs ciphers",
    gw(https(mode="SIMPLE", credentialName="c", minProtocolVersion="TLSV1_2")),
    gw(https(mode="SIMPLE", credentialName="c", minProtocolVersion="TLSV1_1")),
    "TLS version below TLSV1_2 require setting compatible ciphers as by default they no longer include compatible "
    "ciphers.",
    warning=True,
)
rule(
    GW,
    "gateway name is a DNS label",
    gw(),
    gw(),
    'invalid gateway name: "customer.gateway"',
    invalid_name="customer.gateway",
)

# ----------------------------------------------------------------------------------- ServiceEntry
SE = "ServiceEntry"


def se(**spec: Any) -> Spec:
    base: Spec = {
        "hosts": ["api.example.com"],
        "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}],
        "resolution": "DNS",
        "location": "MESH_EXTERNAL",
    }
    return {**base, **spec}


rule(SE, "at least one host", se(), se(hosts=[]), "service entry must have at least one host")
rule(
    SE,
    "host not *",
    se(hosts=["*.example.com"], resolution="NONE"),
    se(hosts=["*"], resolution="NONE"),
    "invalid host *",
)
rule(
    SE,
    "partial wildcards warn",
    se(hosts=["*.example.com"], resolution="NONE"),
    se(hosts=["*example.com"], resolution="NONE"),
    'partial wildcard "*example.com" not allowed',
    warning=True,
)
rule(SE, "addresses", se(addresses=["240.0.0.1"]), se(addresses=["240.0.0"]), "240.0.0 is not a valid IP")
rule(
    SE,
    "CIDR only for NONE/STATIC",
    se(addresses=["10.0.0.0/24"], resolution="NONE"),
    se(addresses=["10.0.0.0/24"]),
    "CIDR addresses are allowed only for NONE/STATIC resolution types",
)
rule(
    SE,
    "port names unique",
    se(ports=[{"number": 80, "name": "http"}, {"number": 81, "name": "http2"}]),
    se(ports=[{"number": 80, "name": "http"}, {"number": 81, "name": "http"}]),
    'service entry port name "http" already defined',
)
rule(
    SE,
    "port numbers unique",
    se(ports=[{"number": 80, "name": "a"}, {"number": 81, "name": "b"}]),
    se(ports=[{"number": 80, "name": "a"}, {"number": 80, "name": "b"}]),
    "service entry port 80 already defined",
)
rule(
    SE,
    "port names are labels",
    se(ports=[{"number": 80, "name": "http-web"}]),
    se(ports=[{"number": 80, "name": "http_web"}]),
    "invalid port name: http_web",
)
rule(
    SE,
    "protocols MYSQL REDIS GRPC-WEB UDP",
    se(
        ports=[
            {"number": 3306, "name": "a", "protocol": "MYSQL"},
            {"number": 6379, "name": "b", "protocol": "REDIS"},
            {"number": 8080, "name": "c", "protocol": "GRPC-WEB"},
            {"number": 53, "name": "d", "protocol": "UDP"},
        ],
        resolution="NONE",
    ),
    se(ports=[{"number": 25, "name": "smtp", "protocol": "SMTP"}]),
    "unsupported protocol: SMTP",
)
rule(
    SE,
    "port numbers in range",
    se(),
    se(ports=[{"number": 0, "name": "a"}]),
    "port number 0 must be in the range 1..65535",
)
rule(
    SE,
    "no endpoints for NONE",
    se(resolution="NONE"),
    se(resolution="NONE", endpoints=[{"address": "1.1.1.1"}]),
    "no endpoints should be provided for resolution type none",
)
rule(
    SE,
    "STATIC endpoints are IPs",
    se(resolution="STATIC", endpoints=[{"address": "10.0.0.1"}]),
    se(resolution="STATIC", endpoints=[{"address": "example.com"}]),
    'endpoint address "example.com" is not a valid IP address',
)
rule(
    SE,
    "endpoint ports defined",
    se(resolution="STATIC", endpoints=[{"address": "10.0.0.1", "ports": {"https": 8443}}]),
    se(resolution="STATIC", endpoints=[{"address": "10.0.0.1", "ports": {"http": 8080}}]),
    "endpoint port 8080 is not defined by the service entry",
)
rule(
    SE,
    "DNS hosts are FQDNs",
    se(),
    se(hosts=["*.example.com"]),
    "hosts must be FQDN or contain only prefix wildcards if no endpoints are provided for resolution mode DNS, domain "
    'name "*.example.com" invalid (label "*" invalid)',
)
rule(
    SE,
    "DNS_ROUND_ROBIN one endpoint",
    se(resolution="DNS_ROUND_ROBIN", endpoints=[{"address": "a.example.com"}]),
    se(resolution="DNS_ROUND_ROBIN", endpoints=[{"address": "a.example.com"}, {"address": "b.example.com"}]),
    "there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN",
)
rule(
    SE,
    "DNS endpoints FQDN or IP",
    se(endpoints=[{"address": "a.example.com"}]),
    se(endpoints=[{"address": "a_b.example.com"}]),
    'endpoint address "a_b.example.com" is not a valid FQDN or an IP address',
)
rule(
    SE,
    "DYNAMIC_DNS wildcard hosts",
    se(hosts=["*.example.com"], resolution="DYNAMIC_DNS", ports=[{"number": 443, "name": "tls", "protocol": "TLS"}]),
    se(resolution="DYNAMIC_DNS", ports=[{"number": 443, "name": "tls", "protocol": "TLS"}]),
    "host must be wildcarded for resolution mode DYNAMIC_DNS",
)
rule(
    SE,
    "multiple hosts need HTTP or TLS",
    se(hosts=["a.example.com", "b.example.com"]),
    se(hosts=["a.example.com", "b.example.com"], ports=[{"number": 3306, "name": "db", "protocol": "TCP"}]),
    "multiple hosts provided with non-HTTP, non-TLS ports",
)
rule(
    SE,
    "workloadSelector or endpoints",
    se(resolution="STATIC", workloadSelector={"labels": {"app": "vm"}}),
    se(resolution="STATIC", workloadSelector={"labels": {"app": "vm"}}, endpoints=[{"address": "10.0.0.1"}]),
    "only one of WorkloadSelector or Endpoints is allowed in Service Entry",
)
rule(
    SE,
    "workloadSelector not with NONE",
    se(resolution="STATIC", workloadSelector={"labels": {"app": "vm"}}),
    se(resolution="NONE", workloadSelector={"labels": {"app": "vm"}}),
    "workloadSelector should not be set when resolution mode is NONE",
    warning=True,
)
rule(
    SE,
    "TCP ports need addresses without auto-allocation",
    se(resolution="NONE", addresses=["240.0.0.1"], ports=[{"number": 3306, "name": "db"}]),
    se(resolution="NONE", ports=[{"number": 3306, "name": "db"}]),
    "addresses are required for ports serving TCP (or unset) protocol when IP Autoallocation is not enabled",
    warning=True,
)
rule(
    SE,
    "exportTo ~ only alone",
    se(exportTo=["~"]),
    se(exportTo=["~", "other"]),
    "cannot export service entry to no one (~) and someone",
)

# ------------------------------------------------------------------------------------------ Sidecar
SC = "Sidecar"
rule(SC, "not empty", {"egress": [{"hosts": ["./*"]}]}, {}, "sidecar: empty configuration provided")
rule(
    SC,
    "egress hosts ns/name",
    {"egress": [{"hosts": ["istio-system/*", "~other/*"]}]},
    {"egress": [{"hosts": ["recommendation"]}]},
    "host must be of form namespace/dnsName",
)
rule(
    SC,
    "egress host namespace",
    {"egress": [{"hosts": ["./*"]}]},
    {"egress": [{"hosts": ["Bad_NS/*"]}]},
    'invalid namespace value "Bad_NS" in sidecar',
)
rule(
    SC,
    "egress hosts not short",
    {"egress": [{"hosts": ["./recommendation.tutorial.svc.cluster.local"]}]},
    {"egress": [{"hosts": ["./recommendation"]}]},
    "short names (non FQDN) are not allowed",
)
rule(
    SC,
    "egress needs hosts",
    {"egress": [{"hosts": ["./*"]}]},
    {"egress": [{"hosts": []}]},
    "sidecar: egress listener must contain at least one host",
)
rule(
    SC,
    "catch-all egress last",
    {"egress": [{"port": {"number": 80, "protocol": "HTTP", "name": "h"}, "hosts": ["./*"]}, {"hosts": ["*/*"]}]},
    {"egress": [{"hosts": ["*/*"]}, {"port": {"number": 80, "protocol": "HTTP", "name": "h"}, "hosts": ["./*"]}]},
    "sidecar: the egress listener with empty port should be the last listener in the list",
)
rule(
    SC,
    "egress ports unique",
    {"egress": [{"port": {"number": 80, "name": "a"}, "hosts": ["./*"]}]},
    {
        "egress": [
            {"port": {"number": 80, "name": "a"}, "hosts": ["./*"]},
            {"port": {"number": 80, "name": "b"}, "hosts": ["./*"]},
        ]
    },
    "sidecar: ports on IP bound listeners must be unique",
)
rule(
    SC,
    "egress unix sockets",
    {"egress": [{"port": {"number": 0, "name": "u"}, "bind": "unix:///var/run/s", "hosts": ["./*"]}]},
    {"egress": [{"port": {"number": 0, "name": "u"}, "bind": "127.0.0.1", "hosts": ["./*"]}]},
    "sidecar: ports with 0 value must have a unix domain socket bind address",
)
rule(
    SC,
    "duplicated egress host",
    {"egress": [{"hosts": ["./a.b.c", "./d.e.f"]}]},
    {"egress": [{"hosts": ["./*", "./a.b.c"]}]},
    "duplicated egress host: ./a.b.c",
    warning=True,
)
rule(
    SC,
    "ingress port required",
    {"ingress": [{"port": {"number": 9080, "protocol": "HTTP", "name": "h"}}]},
    {"ingress": [{"defaultEndpoint": "127.0.0.1:8080"}]},
    "sidecar: port is required for ingress listeners",
)
rule(
    SC,
    "ingress defaultEndpoint",
    {"ingress": [{"port": {"number": 9080, "name": "h"}, "defaultEndpoint": "127.0.0.1:8080"}]},
    {"ingress": [{"port": {"number": 9080, "name": "h"}, "defaultEndpoint": "10.0.0.1:8080"}]},
    "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,"
    "[::1]:port,[::]:port,unix://filepath or unset",
)
rule(
    SC,
    "ingress TLS on TLS ports",
    {
        "ingress": [
            {
                "port": {"number": 443, "protocol": "HTTPS", "name": "h"},
                "tls": {"mode": "SIMPLE", "serverCertificate": "/c", "privateKey": "/k"},
            }
        ]
    },
    {
        "ingress": [
            {
                "port": {"number": 80, "protocol": "HTTP", "name": "h"},
                "tls": {"mode": "SIMPLE", "serverCertificate": "/c", "privateKey": "/k"},
            }
        ]
    },
    "server cannot have TLS settings for non HTTPS/TLS ports",
)
rule(
    SC,
    "ingress TLS mode",
    {
        "ingress": [
            {
                "port": {"number": 443, "protocol": "HTTPS", "name": "h"},
                "tls": {"mode": "SIMPLE", "serverCertificate": "/c", "privateKey": "/k"},
            }
        ]
    },
    {"ingress": [{"port": {"number": 443, "protocol": "HTTPS", "name": "h"}, "tls": {"mode": "ISTIO_MUTUAL"}}]},
    "configuration is invalid: cannot set mode to ISTIO_MUTUAL in sidecar ingress tls",
)
rule(
    SC,
    "ingress TLS credentialName",
    {
        "ingress": [
            {
                "port": {"number": 443, "protocol": "HTTPS", "name": "h"},
                "tls": {"mode": "SIMPLE", "serverCertificate": "/c", "privateKey": "/k"},
            }
        ]
    },
    {
        "ingress": [
            {
                "port": {"number": 443, "protocol": "HTTPS", "name": "h"},
                "tls": {"mode": "SIMPLE", "credentialName": "c"},
            }
        ]
    },
    "sidecar: credentialName is not currently supported",
)
rule(
    SC,
    "egress proxy with ALLOW_ANY",
    {
        "outboundTrafficPolicy": {
            "mode": "ALLOW_ANY",
            "egressProxy": {"host": "egress.istio-system.svc.cluster.local", "port": {"number": 80}},
        }
    },
    {
        "outboundTrafficPolicy": {
            "mode": "REGISTRY_ONLY",
            "egressProxy": {"host": "egress.istio-system.svc.cluster.local", "port": {"number": 80}},
        }
    },
    "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode",
)
rule(
    SC,
    "no ALLOW_ANY_DYNAMIC_DNS",
    {"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}},
    {"outboundTrafficPolicy": {"mode": "ALLOW_ANY_DYNAMIC_DNS"}},
    "sidecar: ALLOW_ANY_DYNAMIC_DNS mode is only supported in MeshConfig, not in Sidecar resource",
)
rule(
    SC,
    "workload selector",
    {"workloadSelector": {"labels": {"app": "a"}}, "egress": [{"hosts": ["./*"]}]},
    {"workloadSelector": {"labels": {"app": "*"}}, "egress": [{"hosts": ["./*"]}]},
    'wildcard is not supported in selector: "app=*"',
)

# ------------------------------------------------------------------------- WorkloadEntry / WorkloadGroup / ProxyConfig
WE = "WorkloadEntry"
rule(WE, "address required", {"address": "10.0.0.1"}, {"labels": {"app": "vm"}}, "address is required")
rule(
    WE,
    "address FQDN or IP",
    {"address": "vm.example.com"},
    {"address": "vm_1.example.com"},
    'endpoint address "vm_1.example.com" is not a valid FQDN or an IP address',
)
rule(
    WE,
    "unix address without ports",
    {"address": "unix:///var/run/vm.sock"},
    {"address": "unix:///var/run/vm.sock", "ports": {"http": 80}},
    "unix endpoint unix:///var/run/vm.sock must not include ports",
)
rule(
    WE,
    "port numbers",
    {"address": "10.0.0.1", "ports": {"http": 8080}},
    {"address": "10.0.0.1", "ports": {"http": 0}},
    "port number 0 must be in the range 1..65535",
)
rule(
    WE,
    "port names",
    {"address": "10.0.0.1", "ports": {"http-web": 8080}},
    {"address": "10.0.0.1", "ports": {"http_web": 8080}},
    "invalid port name: http_web",
)
rule(
    WE,
    "labels",
    {"address": "10.0.0.1", "labels": {"app": "vm"}},
    {"address": "10.0.0.1", "labels": {"app": "v m"}},
    'invalid tag value: "v m"',
)
rule(
    WE,
    "network without address",
    {"network": "n1", "address": "10.0.0.1"},
    {"network": "n1"},
    'address is unset with network "n1"',
    warning=True,
)
WG = "WorkloadGroup"
rule(
    WG,
    "template required",
    {"template": {"serviceAccount": "vm"}},
    {"metadata": {"labels": {"app": "vm"}}},
    'required field "template" is missing',
)
rule(
    WG,
    "metadata labels",
    {"template": {}, "metadata": {"labels": {"app": "vm"}}},
    {"template": {}, "metadata": {"labels": {"app": "v m"}}},
    'invalid labels: invalid tag value: "v m"',
)
rule(
    WG,
    "probe port",
    {"template": {}, "probe": {"httpGet": {"port": 8080}}},
    {"template": {}, "probe": {"httpGet": {"port": 0}}},
    "port number 0 must be in the range 1..65535",
)
rule(
    WG,
    "probe scheme",
    {"template": {}, "probe": {"httpGet": {"port": 8080, "scheme": "HTTPS"}}},
    {"template": {}, "probe": {"httpGet": {"port": 8080, "scheme": "FTP"}}},
    'httpGet.scheme must be one of "HTTPS", "HTTP"',
)
rule(
    WG,
    "probe header names",
    {"template": {}, "probe": {"httpGet": {"port": 80, "httpHeaders": [{"name": "x-a", "value": "1"}]}}},
    {"template": {}, "probe": {"httpGet": {"port": 80, "httpHeaders": [{"name": "x_a", "value": "1"}]}}},
    "header name x_a is not a valid header name",
)
rule(
    WG,
    "probe periods",
    {"template": {}, "probe": {"periodSeconds": 5, "tcpSocket": {"port": 80}}},
    {"template": {}, "probe": {"periodSeconds": -1, "tcpSocket": {"port": 80}}},
    "periodSeconds must be non-negative",
)
rule(
    WG,
    "probe exec command",
    {"template": {}, "probe": {"exec": {"command": ["true"]}}},
    {"template": {}, "probe": {"exec": {"command": []}}},
    "exec.command is required",
)
PC = "ProxyConfig"
rule(PC, "concurrency", {"concurrency": 0}, {"concurrency": -1}, "concurrency must be greater than or equal to 0")
rule(
    PC,
    "selector",
    {"selector": {"matchLabels": {"app": "a"}}},
    {"selector": {"matchLabels": {"": "a"}}},
    'empty key is not supported in selector: "=a"',
)

# ---------------------------------------------------------------------------------------- security
AP = "AuthorizationPolicy"


def ap(*rules: Spec, **spec: Any) -> Spec:
    return {"rules": list(rules), **spec} if rules else spec


def src(**source: Any) -> Spec:
    return {"from": [{"source": source}]}


rule(
    AP,
    "serviceAccounts",
    ap(src(serviceAccounts=["preference", "tutorial/customer"])),
    ap(src(serviceAccounts=["a/b/c"])),
    "expected format 'serviceAccount' or 'namespace/serviceAccount', found \"a/b/c\" in ServiceAccounts",
)
rule(
    AP,
    "serviceAccounts not wildcards",
    ap(src(notServiceAccounts=["customer"])),
    ap(src(notServiceAccounts=["cust*"])),
    "wildcard not allowed, found in NotServiceAccounts",
)
rule(
    AP,
    "serviceAccounts not with principals",
    ap(src(serviceAccounts=["customer"])),
    ap(src(serviceAccounts=["customer"], principals=["cluster.local/ns/tutorial/sa/customer"])),
    "Cannot set serviceAccounts with namespaces or principals",
)
rule(
    AP,
    "trustDomains",
    ap(src(trustDomains=["cluster.local", "*.example.com"])),
    ap(src(trustDomains=["a/b"])),
    "trust domain must not contain '/', found in TrustDomains: \"a/b\"",
)
rule(
    AP,
    "trustDomains wildcards",
    ap(src(notTrustDomains=["*.local"])),
    ap(src(notTrustDomains=["a*b"])),
    'wildcard is only allowed at the start or end, found in NotTrustDomains: "a*b"',
)
rule(
    AP,
    "source not empty",
    ap(src(namespaces=["tutorial"])),
    ap(src()),
    "`from.source` must not be empty, found at rule 0",
)
rule(
    AP,
    "from not empty",
    ap(src(namespaces=["tutorial"])),
    ap({"from": []}),
    "`from` must not be empty, found at rule 0",
)
rule(
    AP,
    "to not empty",
    ap({"to": [{"operation": {"methods": ["GET"]}}]}),
    ap({"to": []}),
    "`to` must not be empty, found at rule 0",
)
rule(
    AP,
    "operation not empty",
    ap({"to": [{"operation": {"paths": ["/a"]}}]}),
    ap({"to": [{"operation": {}}]}),
    "`to.operation` must not be empty, found at rule 0",
)
rule(
    AP,
    "source values not empty",
    ap(src(principals=["a"])),
    ap(src(principals=[""])),
    "empty value not allowed, found in Principals",
)
rule(
    AP,
    "ip blocks",
    ap(src(ipBlocks=["10.0.0.0/8", "1.2.3.4"])),
    ap(src(ipBlocks=["10.0.0.300"])),
    "bad IP address (10.0.0.300)",
)
rule(
    AP,
    "ports",
    ap({"to": [{"operation": {"ports": ["8080"]}}]}),
    ap({"to": [{"operation": {"ports": ["http"]}}]}),
    'bad port (http): strconv.ParseUint: parsing "http": invalid syntax',
)
rule(
    AP,
    "path templates",
    ap({"to": [{"operation": {"paths": ["/api/{*}/items/{**}"]}}]}),
    ap({"to": [{"operation": {"paths": ["/api/{**}/{*}"]}}]}),
    "invalid or unsupported path api/{**}/{*}, found in Paths. {**} is not the last operator",
)
rule(
    AP,
    "condition values",
    ap({"when": [{"key": "request.headers[x-a]", "values": ["1"]}]}),
    ap({"when": [{"key": "request.headers[x-a]"}]}),
    "at least one of `values` or `notValues` must be set for key request.headers[x-a]",
)
rule(
    AP,
    "condition keys",
    ap({"when": [{"key": "source.serviceAccount", "values": ["tutorial/customer"]}]}),
    ap({"when": [{"key": "destination.labels[app]", "values": ["a"]}]}),
    "invalid `value` for `key` destination.labels[app]: "
    "attribute destination.labels[app] is replaced by the workload selector",
)
rule(
    AP,
    "map keys",
    ap({"when": [{"key": "request.auth.claims[groups]", "values": ["a"]}]}),
    ap({"when": [{"key": "request.auth.claims[]", "values": ["a"]}]}),
    "invalid `value` for `key` request.auth.claims[]: bad key (request.auth.claims[]): should have format a[b]",
)
rule(
    AP,
    "DENY needs rules",
    ap({}, action="DENY"),
    ap(action="DENY"),
    "DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it "
    "be triggered for every request",
)
rule(
    AP,
    "CUSTOM needs a provider",
    ap({}, action="CUSTOM", provider={"name": "ext"}),
    ap({}, action="CUSTOM"),
    "`provider.name` must not be empty",
)
rule(
    AP,
    "provider only with CUSTOM",
    ap({}, action="ALLOW"),
    ap({}, action="ALLOW", provider={"name": "ext"}),
    "`provider` must not be with non CUSTOM action, found ALLOW",
)
rule(
    AP,
    "CUSTOM source fields",
    ap(src(ipBlocks=["1.2.3.4"]), action="CUSTOM", provider={"name": "ext"}),
    ap(src(principals=["a"]), action="CUSTOM", provider={"name": "ext"}),
    "From.Principals is currently not supported with CUSTOM action",
)
rule(
    AP,
    "HTTP-only DENY warns",
    ap({"to": [{"operation": {"methods": ["GET"], "ports": ["8080"]}}]}, action="DENY"),
    ap({"to": [{"operation": {"methods": ["GET"]}}]}, action="DENY"),
    "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the use of only HTTP "
    "attributes in a DENY rule; it is recommended to explicitly specify the port",
    warning=True,
)
rule(
    AP,
    "selector or targetRefs",
    ap(selector={"matchLabels": {"app": "a"}}),
    ap(selector={"matchLabels": {"app": "a"}}, targetRefs=[{"kind": "Service", "name": "a"}]),
    "only one of targetRefs or selector can be set",
)
rule(
    AP,
    "targetRef kinds",
    ap(targetRefs=[{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "g"}]),
    ap(targetRefs=[{"kind": "Pod", "name": "g"}]),
    "targetRef must be to one of [core/v1/Service networking.istio.io/v1/ServiceEntry "
    "gateway.networking.k8s.io/v1/Gateway gateway.networking.k8s.io/v1/GatewayClass] but was /Pod",
)
rule(
    AP,
    "targetRef namespace",
    ap(targetRefs=[{"kind": "Service", "name": "a"}]),
    ap(targetRefs=[{"kind": "Service", "name": "a", "namespace": "other"}]),
    "cross namespace referencing is not currently supported",
)
rule(
    AP,
    "selector warns when empty",
    ap(selector={"matchLabels": {"app": "a"}}),
    ap(selector={}),
    "workload selector specified without labels",
    warning=True,
)
rule(
    AP,
    "dry-run only ALLOW/DENY",
    ap({}, action="DENY"),
    ap({}, action="AUDIT"),
    "the annotation istio.io/dry-run currently only supports action ALLOW/DENY, found action AUDIT in tutorial/r",
    annotations=(("istio.io/dry-run", "true"),),
)

RA = "RequestAuthentication"


def jwt(**fields: Any) -> Spec:
    return {"jwtRules": [{"issuer": "testing@secure.istio.io", "jwksUri": "https://a.example.com/jwks.json", **fields}]}


rule(
    RA,
    "issuer or jwksUri",
    {"jwtRules": [{"jwksUri": "https://a/jwks.json"}]},
    {"jwtRules": [{"audiences": ["a"]}]},
    "issuer or jwksUri must be non-empty string",
)
rule(RA, "jwksUri scheme", jwt(), jwt(jwksUri="ftp://a/jwks.json"), "url must have scheme http:// or https://")
rule(RA, "jwks or jwksUri", jwt(), jwt(jwks='{"keys": []}'), "only one of jwks or jwksUri can be set")
rule(RA, "audiences not empty", jwt(audiences=["a"]), jwt(audiences=[""]), "audience must be non-empty string")
rule(
    RA,
    "fromParams not empty",
    jwt(fromParams=["token"]),
    jwt(fromParams=[""]),
    "location query must be non-empty string",
)
rule(
    RA,
    "fromCookies not empty",
    jwt(fromCookies=["session"]),
    jwt(fromCookies=[""]),
    "cookie name must be non-empty string",
)
rule(
    RA,
    "fromHeaders name",
    jwt(fromHeaders=[{"name": "x-jwt"}]),
    jwt(fromHeaders=[{"name": "", "prefix": "Bearer "}]),
    "location header name must be non-empty string",
)
rule(
    RA,
    "outputClaimToHeaders names",
    jwt(outputClaimToHeaders=[{"header": "x-sub", "claim": "sub"}]),
    jwt(outputClaimToHeaders=[{"header": "x sub", "claim": "sub"}]),
    "header name x sub is not a valid header name",
)
rule(
    RA,
    "spaceDelimitedClaims",
    jwt(spaceDelimitedClaims=["scope", "permissions"]),
    jwt(spaceDelimitedClaims="scope"),
    'expected list, got string "scope"',
)
rule(RA, "timeout", jwt(timeout="5s"), jwt(timeout="0.5ms"), "duration must be greater than 1ms")
rule(
    RA,
    "jwks parses",
    {"jwtRules": [{"issuer": "i", "jwks": '{"keys": []}'}]},
    {"jwtRules": [{"issuer": "i", "jwks": "{"}]},
    "jwks parse error: failed to unmarshal JWK set: "
    "Expecting property name enclosed in double quotes (line 1, column 2)",
)

PA = "PeerAuthentication"
rule(
    PA,
    "port level needs a selector",
    {"selector": {"matchLabels": {"app": "a"}}, "portLevelMtls": {8080: {"mode": "DISABLE"}}},
    {"portLevelMtls": {8080: {"mode": "DISABLE"}}},
    "portLevelMtls requires selector: mesh/namespace peer authentication cannot have port level mTLS",
)
rule(
    PA,
    "port level not empty",
    {"selector": {"matchLabels": {"app": "a"}}, "mtls": {"mode": "STRICT"}},
    {"selector": {"matchLabels": {"app": "a"}}, "portLevelMtls": {}},
    "port level mTLS, if defined, must have at least one element",
)
rule(
    PA,
    "port level ports",
    {"selector": {"matchLabels": {"app": "a"}}, "portLevelMtls": {1: {"mode": "DISABLE"}}},
    {"selector": {"matchLabels": {"app": "a"}}, "portLevelMtls": {0: {"mode": "DISABLE"}}},
    "port must be between 1-65535",
)
rule(
    PA,
    "selector keys",
    {"selector": {"matchLabels": {"app": "a"}}},
    {"selector": {"matchLabels": {"a*": "a"}}},
    'wildcard is not supported in selector: "a*=a"',
)

# ---------------------------------------------------------------------------------------- Telemetry
TEL = "Telemetry"
rule(
    TEL,
    "sampling range",
    {"tracing": [{"randomSamplingPercentage": 100}]},
    {"tracing": [{"randomSamplingPercentage": 100.5}]},
    "randomSamplingPercentage must be in range [0.0, 100.0]",
)
rule(
    TEL,
    "providers named",
    {"tracing": [{"providers": [{"name": "zipkin"}]}]},
    {"tracing": [{"providers": [{"name": ""}]}]},
    "providers.name may not be empty",
)
rule(
    TEL,
    "one tracing",
    {"tracing": [{"randomSamplingPercentage": 1}]},
    {"tracing": [{"randomSamplingPercentage": 1}, {"disableSpanReporting": True}]},
    "multiple tracing is not currently supported",
    warning=True,
)
rule(
    TEL,
    "custom tag literal",
    {"tracing": [{"customTags": {"team": {"literal": {"value": "lab"}}}}]},
    {"tracing": [{"customTags": {"team": {"literal": {"value": ""}}}}]},
    "literal tag value may not be empty",
)
rule(
    TEL,
    "custom tag header",
    {"tracing": [{"customTags": {"ua": {"header": {"name": "user-agent"}}}}]},
    {"tracing": [{"customTags": {"ua": {"header": {"name": ""}}}}]},
    "header tag name may not be empty",
)
rule(
    TEL,
    "custom tag environment",
    {"tracing": [{"customTags": {"pod": {"environment": {"name": "POD_NAME"}}}}]},
    {"tracing": [{"customTags": {"pod": {"environment": {"name": ""}}}}]},
    "environment tag name may not be empty",
)
rule(
    TEL,
    "tag override UPSERT value",
    {"metrics": [{"overrides": [{"tagOverrides": {"x": {"value": "request.host"}}}]}]},
    {"metrics": [{"overrides": [{"tagOverrides": {"x": {"operation": "UPSERT"}}}]}]},
    "tagOverrides.value must be set when operation is UPSERT",
)
rule(
    TEL,
    "tag override REMOVE value",
    {"metrics": [{"overrides": [{"tagOverrides": {"x": {"operation": "REMOVE"}}}]}]},
    {"metrics": [{"overrides": [{"tagOverrides": {"x": {"operation": "REMOVE", "value": "a"}}}]}]},
    "tagOverrides.value may only be set when operation is UPSERT",
)
rule(
    TEL,
    "custom metric name",
    {"metrics": [{"overrides": [{"match": {"customMetric": "m"}, "disabled": True}]}]},
    {"metrics": [{"overrides": [{"match": {"customMetric": ""}, "disabled": True}]}]},
    "customMetric may not be empty",
)
rule(
    TEL,
    "metric names",
    {"metrics": [{"overrides": [{"match": {"metric": "REQUEST_COUNT"}, "disabled": True}]}]},
    {"metrics": [{"overrides": [{"match": {"metric": "REQUESTS"}, "disabled": True}]}]},
    'unsupported value "REQUESTS": supported values: "ALL_METRICS", "REQUEST_COUNT", "REQUEST_DURATION", '
    '"REQUEST_SIZE", "RESPONSE_SIZE", "TCP_OPENED_CONNECTIONS", "TCP_CLOSED_CONNECTIONS", "TCP_SENT_BYTES", '
    '"TCP_RECEIVED_BYTES", "GRPC_REQUEST_MESSAGES", "GRPC_RESPONSE_MESSAGES"',
)
rule(
    TEL,
    "access log filter is CEL",
    {"accessLogging": [{"filter": {"expression": "response.code >= 400"}}]},
    {"accessLogging": [{"filter": {"expression": "response.code >= (400"}}]},
    "must be a valid CEL expression, ERROR: <input>:1:22: Syntax error: missing closing token",
)
rule(
    TEL,
    "selector or targetRef",
    {"selector": {"matchLabels": {"app": "a"}}},
    {"selector": {"matchLabels": {"app": "a"}}, "targetRef": {"kind": "Service", "name": "a"}},
    "only one of targetRefs or selector can be set",
)

# ------------------------------------------------------------------------------------- EnvoyFilter
EF = "EnvoyFilter"


def ef(**patch: Any) -> Spec:
    base: Spec = {
        "applyTo": "HTTP_FILTER",
        "match": {"context": "SIDECAR_INBOUND"},
        "patch": {"operation": "INSERT_BEFORE", "value": {"name": "envoy.filters.http.lua", "typed_config": {}}},
    }
    return {"workloadSelector": {"labels": {"app": "a"}}, "configPatches": [{**base, **patch}]}


rule(EF, "applyTo set", ef(), ef(applyTo="INVALID"), "Envoy filter: missing applyTo")
rule(EF, "patch set", ef(), {"configPatches": [{"applyTo": "CLUSTER"}]}, "Envoy filter: missing patch")
rule(EF, "patch operation set", ef(), ef(patch={"value": {}}), "Envoy filter: missing patch operation")
rule(
    EF,
    "patch value unless REMOVE",
    ef(patch={"operation": "REMOVE"}),
    ef(patch={"operation": "MERGE"}),
    "Envoy filter: missing patch value for non-remove operation",
)
rule(
    EF,
    "listener class match",
    ef(match={"listener": {"portNumber": 8080}}),
    ef(match={"cluster": {"service": "a"}}),
    "Envoy filter: applyTo for listener class objects cannot have non listener match",
)
rule(
    EF,
    "route class match",
    ef(applyTo="HTTP_ROUTE", match={"routeConfiguration": {"vhost": {"name": "a"}}}),
    ef(applyTo="HTTP_ROUTE", match={"listener": {"portNumber": 8080}}),
    "Envoy filter: applyTo for http route class objects cannot have non route configuration match",
)
rule(
    EF,
    "cluster class match",
    ef(applyTo="CLUSTER", match={"cluster": {"service": "a"}}),
    ef(applyTo="CLUSTER", match={"listener": {"portNumber": 8080}}),
    "Envoy filter: applyTo for cluster class objects cannot have non cluster match",
)
rule(
    EF,
    "filter match named",
    ef(match={"listener": {"filterChain": {"filter": {"name": "envoy.filters.network.http_connection_manager"}}}}),
    ef(match={"listener": {"filterChain": {"filter": {"name": ""}}}}),
    "Envoy filter: filter match has no name to match on",
)
rule(
    EF,
    "subfilter only for HTTP filters",
    ef(
        match={
            "listener": {
                "filterChain": {
                    "filter": {
                        "name": "envoy.filters.network.http_connection_manager",
                        "subFilter": {"name": "envoy.filters.http.router"},
                    }
                }
            }
        }
    ),
    ef(
        applyTo="NETWORK_FILTER",
        match={
            "listener": {
                "filterChain": {
                    "filter": {"name": "envoy.filters.network.http_connection_manager", "subFilter": {"name": "x"}}
                }
            }
        },
    ),
    "Envoy filter: subfilter match can be used with applyTo HTTP_FILTER only",
)
rule(
    EF,
    "proxy version regex",
    ef(match={"proxy": {"proxyVersion": "^1\\.30.*"}}),
    ef(match={"proxy": {"proxyVersion": "(1"}}),
    'Envoy filter: invalid regex for proxy version, ["proxyVersion": error parsing regexp: missing closing ): `(1`; '
    "Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)]",
)
rule(
    EF,
    "selector or targetRefs",
    ef(),
    {**ef(), "targetRefs": [{"kind": "Service", "name": "a"}]},
    "only one of targetRefs or workloadSelector can be set",
)
rule(
    EF,
    "selector has labels",
    ef(),
    {**ef(), "workloadSelector": {"labels": {}}},
    "Envoy filter: workload selector specified without labels, will be applied to all services in namespace",
    warning=True,
)


rule(
    EF,
    "waypoint match only for WAYPOINT",
    ef(),
    ef(match={"context": "SIDECAR_INBOUND", "waypoint": {"portNumber": 80}}),
    "only support waypointMatch when context is WAYPOINT",
)
rule(
    RA,
    "spaceDelimitedClaims not empty",
    jwt(spaceDelimitedClaims=["scope"]),
    jwt(spaceDelimitedClaims=[""]),
    "spaceDelimitedClaims[] in body should be at least 1 chars long",
)
WASM = "WasmPlugin"
rule(
    WASM,
    "url schemes",
    {"url": "oci://ghcr.io/example/filter:1.0"},
    {"url": "fake://example.com"},
    "url must have schema one of [http, https, file, oci]",
)
rule(
    WASM,
    "sha256 digest",
    {"url": "ghcr.io/example/filter:1.0", "sha256": "a" * 64},
    {"url": "ghcr.io/example/filter:1.0", "sha256": "xyz"},
    "spec.sha256 in body should match '(^$|^[a-f0-9]{64}$)'",
)
rule(
    WASM,
    "env values only inline",
    {"url": "ghcr.io/f:1", "vmConfig": {"env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": "HOST"}]}},
    {"url": "ghcr.io/f:1", "vmConfig": {"env": [{"name": "B", "valueFrom": "HOST", "value": "1"}]}},
    "value may only be set when valueFrom is INLINE",
)

# ------------------------------------------------------------------------------- any Istio kind
rule(
    VS,
    "dry-run only on AuthorizationPolicy",
    vs(),
    vs(),
    "tutorial/r has unsupported annotation istio.io/dry-run, please remove the annotation",
    annotations=(("istio.io/dry-run", "true"),),
    valid_annotations=False,
)
rule(
    DR,
    "internal annotations are not for users",
    dr(),
    dr(),
    '"internal.istio.io/parent-namespace" annotation found, this may not be set by users',
    annotations=(("internal.istio.io/parent-namespace", "x"),),
    valid_annotations=False,
)


def counts() -> Counter[str]:
    return Counter(r.kind for r in RULES)


if __name__ == "__main__":
    total = counts()
    for kind, n in sorted(total.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"{kind:24} {n:4}")
    print(f"{'total':24} {sum(total.values()):4}")
