"""Istio resources as plain dicts, built from a few arguments, and their YAML.

Pure functions (no ipywidgets): the policy panels call them on every slider move, and notebooks or
tests can call them directly. Each returns one resource in the shape ``kubectl apply`` takes, keys
in the order a person writes them (apiVersion, kind, metadata, spec). Resources are named after the
service (``recommendation``), as the tutorial's istiofiles are, so applying a new rule replaces the
previous one instead of adding a second VirtualService for the same host.

Builders check only what they need to build a well-formed resource (enum values, types). Values
Istio itself rejects, such as a negative weight, are passed through so that applying them shows
the mesh's own validation message.

Example::

    print(to_yaml([subsets_rule("recommendation"), weights_rule("recommendation", {"v1": 90, "v2": 10})]))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from meshkit.errors import InvalidConfig

NAMESPACE = "tutorial"
NETWORKING_API = "networking.istio.io/v1"
SECURITY_API = "security.istio.io/v1"
ENVOY_FILTER_API = "networking.istio.io/v1alpha3"  # EnvoyFilter never left v1alpha3

MATCH_TYPES = ("exact", "prefix", "regex")
LB_POLICIES = ("LEAST_REQUEST", "ROUND_ROBIN", "RANDOM", "PASSTHROUGH")
MTLS_MODES = ("UNSET", "DISABLE", "PERMISSIVE", "STRICT")
AUTHZ_ACTIONS = ("ALLOW", "DENY", "AUDIT")
LOCAL_RATE_LIMIT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"

Resource = dict[str, Any]


def resource(
    kind: str, name: str, spec: Mapping[str, Any], api: str = NETWORKING_API, namespace: str = NAMESPACE
) -> Resource:
    """The common envelope: ``apiVersion``, ``kind``, ``metadata {name, namespace}``, ``spec``."""
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": dict(spec),
    }


def subset_name(version: str) -> str:
    """``v2`` → ``version-v2``, the tutorial's subset naming (an existing subset name is kept)."""
    return version if version.startswith("version-") else f"version-{version}"


def duration(seconds: float) -> str:
    """Seconds as an Istio duration with millisecond precision: 1 → ``1s``, 0.25 → ``0.25s``."""
    text = f"{float(seconds):.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def destination(service: str, version: str | None = None) -> dict[str, str]:
    """``{host, subset}`` for a version, or just ``{host}`` for the whole service."""
    return {"host": service, "subset": subset_name(version)} if version else {"host": service}


def subsets_rule(
    service: str = "recommendation", versions: Sequence[str] = ("v1", "v2"), *, namespace: str = NAMESPACE
) -> Resource:
    """A DestinationRule with one subset per version (``version-v1`` selects ``version: v1``).

    Example::

        subsets_rule("recommendation", ("v1", "v2"))["spec"]["subsets"][1]
        # {'name': 'version-v2', 'labels': {'version': 'v2'}}
    """
    return resource(
        "DestinationRule", service, {"host": service, "subsets": _subsets(versions)}, namespace=namespace
    )


def weights_rule(
    service: str = "recommendation", weights: Mapping[str, int] | None = None, *, namespace: str = NAMESPACE
) -> Resource:
    """A VirtualService splitting traffic between versions by weight; weight-0 versions are left out.

    Weights are relative in current Istio (90 and 10, or 9 and 1, give the same split).

    Example::

        weights_rule("recommendation", {"v1": 75, "v2": 25})["spec"]["http"][0]["route"][1]
        # {'destination': {'host': 'recommendation', 'subset': 'version-v2'}, 'weight': 25}
    """
    weights = dict(weights or {"v1": 100})
    problems = [
        f"weights_rule: weight for {v!r} must be an integer, got {w!r}"
        for v, w in weights.items()
        if isinstance(w, bool) or not isinstance(w, int)
    ]
    if problems:
        raise InvalidConfig(problems)
    route = [{"destination": destination(service, v), "weight": w} for v, w in weights.items() if w != 0]
    if not route:
        raise InvalidConfig(["weights_rule: every weight is 0; give at least one version a weight above 0"])
    return _virtual_service(service, [{"route": route}], namespace)


def header_rule(
    service: str = "recommendation",
    header: str = "baggage-user-agent",
    match_type: str = "regex",
    value: str = ".*Safari.*",
    version: str = "v2",
    default_version: str | None = "v1",
    *,
    namespace: str = NAMESPACE,
) -> Resource:
    """Requests whose header matches go to ``version``; the rest to ``default_version``.

    ``default_version=None`` leaves no catch-all route, so unmatched requests get 404 (flag NR).

    Example::

        header_rule(value=".*Firefox.*")["spec"]["http"][0]["match"]
        # [{'headers': {'baggage-user-agent': {'regex': '.*Firefox.*'}}}]
    """
    if match_type not in MATCH_TYPES:
        raise InvalidConfig(
            [f"header_rule: match_type {match_type!r} must be one of {', '.join(MATCH_TYPES)}"]
        )
    http: list[dict[str, Any]] = [
        {
            "match": [{"headers": {header: {match_type: value}}}],
            "route": [{"destination": destination(service, version)}],
        }
    ]
    if default_version:
        http.append({"route": [{"destination": destination(service, default_version)}]})
    return _virtual_service(service, http, namespace)


def mirror_rule(
    service: str = "recommendation",
    version: str = "v1",
    mirror_version: str = "v2",
    percent: float | None = 100.0,
    *,
    namespace: str = NAMESPACE,
) -> Resource:
    """Every request goes to ``version``; a copy of ``percent`` % goes to ``mirror_version`` (dark launch).

    Example::

        mirror_rule(percent=50.0)["spec"]["http"][0]["mirrorPercentage"]     # {'value': 50.0}
    """
    rule: dict[str, Any] = {
        "route": [{"destination": destination(service, version), "weight": 100}],
        "mirror": destination(service, mirror_version),
    }
    if percent is not None:
        rule["mirrorPercentage"] = {"value": float(percent)}
    return _virtual_service(service, [rule], namespace)


def timeout_retry_rule(
    service: str = "recommendation",
    timeout_s: float | None = None,
    attempts: int | None = None,
    per_try_timeout_s: float | None = None,
    retry_on: str | Sequence[str] | None = None,
    version: str | None = None,
    *,
    namespace: str = NAMESPACE,
) -> Resource:
    """A route with a request timeout and/or a retry policy (``attempts=0`` turns retries off).

    Leaving everything ``None`` gives a plain route, which clears a previous timeout. With
    ``attempts=0`` the per-try timeout and retry-on are left out: Istio rejects a retry policy
    that sets them while retries are off.

    Example::

        timeout_retry_rule(timeout_s=1, attempts=3, per_try_timeout_s=0.5, retry_on="5xx")["spec"]["http"][0]
        # {'route': [...], 'timeout': '1s',
        #  'retries': {'attempts': 3, 'perTryTimeout': '0.5s', 'retryOn': '5xx'}}
    """
    rule: dict[str, Any] = {"route": [{"destination": destination(service, version)}]}
    if timeout_s is not None:
        rule["timeout"] = duration(timeout_s)
    retries: dict[str, Any] = {}
    if attempts is not None:
        retries["attempts"] = attempts
    if attempts == 0:
        per_try_timeout_s = retry_on = None
    if per_try_timeout_s is not None:
        retries["perTryTimeout"] = duration(per_try_timeout_s)
    if retry_on:
        retries["retryOn"] = retry_on if isinstance(retry_on, str) else ",".join(retry_on)
    if retries:
        rule["retries"] = retries
    return _virtual_service(service, [rule], namespace)


def connection_pool_rule(
    service: str = "recommendation",
    subset: str | None = None,
    max_connections: int | None = None,
    pending: int | None = None,
    per_connection: int | None = None,
    consecutive_5xx: int | None = None,
    interval_s: float | None = None,
    base_ejection_s: float | None = None,
    max_ejection_percent: int | None = None,
    versions: Sequence[str] = ("v1", "v2"),
    *,
    namespace: str = NAMESPACE,
) -> Resource:
    """A DestinationRule with a circuit breaker (connection pool) and/or outlier detection.

    The subsets for ``versions`` are kept, so routes by version keep working. With ``subset`` (a
    version such as ``"v2"``) the policy applies to that subset only; otherwise to the whole host.

    Example::

        dr = connection_pool_rule(max_connections=1, pending=1, per_connection=1, consecutive_5xx=1,
                                  interval_s=1, base_ejection_s=180, max_ejection_percent=100)
        dr["spec"]["trafficPolicy"]["connectionPool"]
        # {'tcp': {'maxConnections': 1},
        #  'http': {'http1MaxPendingRequests': 1, 'maxRequestsPerConnection': 1}}
    """
    pool: dict[str, Any] = {}
    if max_connections is not None:
        pool["tcp"] = {"maxConnections": max_connections}
    http = {
        k: v
        for k, v in (("http1MaxPendingRequests", pending), ("maxRequestsPerConnection", per_connection))
        if v is not None
    }
    if http:
        pool["http"] = http
    outlier: dict[str, Any] = {}
    if consecutive_5xx is not None:
        outlier["consecutive5xxErrors"] = consecutive_5xx
    if interval_s is not None:
        outlier["interval"] = duration(interval_s)
    if base_ejection_s is not None:
        outlier["baseEjectionTime"] = duration(base_ejection_s)
    if max_ejection_percent is not None:
        outlier["maxEjectionPercent"] = max_ejection_percent
    policy: dict[str, Any] = {}
    if pool:
        policy["connectionPool"] = pool
    if outlier:
        policy["outlierDetection"] = outlier
    subsets = _subsets(versions)
    spec: dict[str, Any] = {"host": service}
    if subset is None:
        if policy:
            spec["trafficPolicy"] = policy
    else:
        target = next((s for s in subsets if s["name"] == subset_name(subset)), None)
        if target is None:
            raise InvalidConfig(
                [f"connection_pool_rule: subset {subset!r} is not one of the versions {', '.join(versions)}"]
            )
        if policy:
            target["trafficPolicy"] = policy
    if subsets:
        spec["subsets"] = subsets
    return resource("DestinationRule", service, spec, namespace=namespace)


def fault_rule(
    service: str = "recommendation",
    abort_status: int | None = None,
    abort_percent: float | None = None,
    delay_s: float | None = None,
    delay_percent: float | None = None,
    route_version: str | None = None,
    *,
    namespace: str = NAMESPACE,
) -> Resource:
    """Inject an HTTP abort and/or a fixed delay into the route (chaos testing).

    A percentage left ``None`` becomes 100 when its fault is set: Istio itself applies a fault with
    no percentage to no request at all, which surprises everyone once. With neither fault set the
    rule is a plain route (a way to clear the faults).

    Example::

        fault_rule(abort_status=503, abort_percent=50)["spec"]["http"][0]["fault"]
        # {'abort': {'httpStatus': 503, 'percentage': {'value': 50.0}}}
    """
    fault: dict[str, Any] = {}
    if delay_s is not None:
        fault["delay"] = {"fixedDelay": duration(delay_s), "percentage": {"value": _percent(delay_percent)}}
    if abort_status is not None:
        fault["abort"] = {"httpStatus": abort_status, "percentage": {"value": _percent(abort_percent)}}
    rule: dict[str, Any] = {"fault": fault} if fault else {}
    rule["route"] = [{"destination": destination(service, route_version)}]
    return _virtual_service(service, [rule], namespace)


def load_balancer_rule(
    service: str = "recommendation",
    simple: str = "RANDOM",
    versions: Sequence[str] = (),
    *,
    namespace: str = NAMESPACE,
) -> Resource:
    """A DestinationRule choosing the load-balancing algorithm (Istio's default is LEAST_REQUEST).

    Pass ``versions`` to keep the subsets that version routes need.

    Example::

        load_balancer_rule(simple="ROUND_ROBIN")["spec"]
        # {'host': 'recommendation', 'trafficPolicy': {'loadBalancer': {'simple': 'ROUND_ROBIN'}}}
    """
    if simple not in LB_POLICIES:
        raise InvalidConfig(
            [f"load_balancer_rule: simple {simple!r} must be one of {', '.join(LB_POLICIES)}"]
        )
    spec: dict[str, Any] = {"host": service, "trafficPolicy": {"loadBalancer": {"simple": simple}}}
    if versions:
        spec["subsets"] = _subsets(versions)
    return resource("DestinationRule", service, spec, namespace=namespace)


def mtls_rule(mode: str = "STRICT", namespace: str = NAMESPACE, workload: str | None = None) -> Resource:
    """A PeerAuthentication: namespace-wide (named ``default``) or for one app's pods.

    Example::

        mtls_rule("PERMISSIVE")["spec"]        # {'mtls': {'mode': 'PERMISSIVE'}}
    """
    if mode not in MTLS_MODES:
        raise InvalidConfig([f"mtls_rule: mode {mode!r} must be one of {', '.join(MTLS_MODES)}"])
    spec: dict[str, Any] = {}
    if workload:
        spec["selector"] = {"matchLabels": {"app": workload}}
    spec["mtls"] = {"mode": mode}
    return resource("PeerAuthentication", workload or "default", spec, api=SECURITY_API, namespace=namespace)


def authz_rule(
    name: str,
    app: str | None,
    action: str = "ALLOW",
    principals: Sequence[str] = (),
    methods: Sequence[str] = (),
    paths: Sequence[str] = (),
    claims: Mapping[str, str | Sequence[str]] | None = None,
    *,
    namespace: str = NAMESPACE,
) -> Resource:
    """An AuthorizationPolicy for one app (or the namespace when ``app`` is None) with a single rule.

    Sources, operations and JWT claims that are left empty are not constrained; a rule with none
    of them matches every request.

    Example::

        authz_rule("allow-preference", "preference", principals=["cluster.local/ns/tutorial/sa/customer"],
                   methods=["GET"])["spec"]["rules"]
        # [{'from': [{'source': {'principals': [...]}}], 'to': [{'operation': {'methods': ['GET']}}]}]
    """
    if action not in AUTHZ_ACTIONS:
        raise InvalidConfig([f"authz_rule: action {action!r} must be one of {', '.join(AUTHZ_ACTIONS)}"])
    rule: dict[str, Any] = {}
    if principals:
        rule["from"] = [{"source": {"principals": list(principals)}}]
    operation = {k: list(v) for k, v in (("methods", methods), ("paths", paths)) if v}
    if operation:
        rule["to"] = [{"operation": operation}]
    if claims:
        rule["when"] = [
            {
                "key": f"request.auth.claims[{claim}]",
                "values": [value] if isinstance(value, str) else list(value),
            }
            for claim, value in claims.items()
        ]
    spec: dict[str, Any] = {}
    if app:
        spec["selector"] = {"matchLabels": {"app": app}}
    spec["action"] = action
    spec["rules"] = [rule]
    return resource("AuthorizationPolicy", name, spec, api=SECURITY_API, namespace=namespace)


def deny_all(namespace: str = NAMESPACE) -> Resource:
    """The allow-nothing policy (``spec: {}``): every request in the namespace is denied with 403.

    Example::

        deny_all()["spec"]      # {}
    """
    return resource("AuthorizationPolicy", "deny-all", {}, api=SECURITY_API, namespace=namespace)


def rate_limit_rule(
    app: str, max_tokens: int, tokens_per_fill: int, fill_interval_s: float, *, namespace: str = NAMESPACE
) -> Resource:
    """An EnvoyFilter adding Envoy's local rate limit (a token bucket) to an app's inbound sidecar.

    Over the limit, the sidecar answers 429 with flag RL. This is the shape of Istio's "Enabling
    Rate Limits using Envoy" task, inserted just before the router filter.

    Example::

        ef = rate_limit_rule("recommendation", max_tokens=5, tokens_per_fill=5, fill_interval_s=60)
        ef["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["value"]["token_bucket"]
        # {'max_tokens': 5, 'tokens_per_fill': 5, 'fill_interval': '60s'}
    """
    always = {"numerator": 100, "denominator": "HUNDRED"}
    limiter = {
        "stat_prefix": "http_local_rate_limiter",
        "token_bucket": {
            "max_tokens": max_tokens,
            "tokens_per_fill": tokens_per_fill,
            "fill_interval": duration(fill_interval_s),
        },
        "filter_enabled": {"runtime_key": "local_rate_limit_enabled", "default_value": dict(always)},
        "filter_enforced": {"runtime_key": "local_rate_limit_enforced", "default_value": dict(always)},
        "response_headers_to_add": [
            {"append": False, "header": {"key": "x-local-rate-limit", "value": "true"}}
        ],
    }
    patch = {
        "applyTo": "HTTP_FILTER",
        "match": {
            "context": "SIDECAR_INBOUND",
            "listener": {
                "filterChain": {
                    "filter": {
                        "name": "envoy.filters.network.http_connection_manager",
                        "subFilter": {"name": "envoy.filters.http.router"},
                    }
                }
            },
        },
        "patch": {
            "operation": "INSERT_BEFORE",
            "value": {
                "name": "envoy.filters.http.local_ratelimit",
                "typed_config": {
                    "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                    "type_url": LOCAL_RATE_LIMIT_TYPE,
                    "value": limiter,
                },
            },
        },
    }
    spec = {"workloadSelector": {"labels": {"app": app}}, "configPatches": [patch]}
    return resource("EnvoyFilter", f"local-ratelimit-{app}", spec, api=ENVOY_FILTER_API, namespace=namespace)


def to_yaml(resources: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> str:
    """One or more resources as YAML documents separated by ``---``, keys in the order built.

    Example::

        print(to_yaml(mtls_rule("STRICT")))
        # apiVersion: security.istio.io/v1
        # kind: PeerAuthentication
        # ...
    """
    docs = [resources] if isinstance(resources, Mapping) else list(resources)
    return yaml.safe_dump_all(
        [_plain(d) for d in docs], sort_keys=False, default_flow_style=False, allow_unicode=True, width=100
    )


def _plain(value: Any) -> Any:
    # safe_dump refuses Mapping subclasses and tuples; hand it plain dicts and lists
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _subsets(versions: Sequence[str]) -> list[dict[str, Any]]:
    return [{"name": subset_name(v), "labels": {"version": v.removeprefix("version-")}} for v in versions]


def _virtual_service(service: str, http: list[dict[str, Any]], namespace: str) -> Resource:
    return resource("VirtualService", service, {"hosts": [service], "http": http}, namespace=namespace)


def _percent(value: float | None) -> float:
    return 100.0 if value is None else float(value)
