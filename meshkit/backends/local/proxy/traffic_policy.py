"""DestinationRule traffic policy → the cluster's runtime settings (Istio's translation rules).

The connection pool becomes Envoy's circuit-breaker thresholds, outlier detection keeps Istio's
defaults (and the book-era ``consecutiveErrors`` in the tutorial profile), a subset's policy
replaces the top level one sub-policy at a time, and an unset load balancer is Istio's default
for the profile.

Example::

    spec = cluster_spec("recommendation.tutorial.svc.cluster.local", "version-v2", 8080, endpoints,
                        {"connectionPool": {"tcp": {"maxConnections": 1}}}, "current", "", False)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from meshkit.backends.local.proxy.cluster import UNLIMITED, ClusterSpec, Endpoint, OutlierSpec, PoolLimits

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")


def parse_seconds(text: str) -> float:
    """A protobuf/Go duration (``1.000s``, ``500ms``, ``1m30s``) in seconds; validated upstream."""
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"invalid duration {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _dur(value: Any) -> float | None:
    # the proxy never imports the validation package: durations were validated before storage
    if value in (None, ""):
        return None
    return parse_seconds(str(value)) or None


def pool_limits(policy: Mapping[str, Any]) -> PoolLimits:
    """Istio's ``applyConnectionPool``: a zero or unset threshold keeps Istio's "unlimited"."""
    cp = policy.get("connectionPool") or {}
    tcp, http = cp.get("tcp") or {}, cp.get("http") or {}

    def lim(section: Mapping[str, Any], key: str) -> int:
        value = section.get(key)
        return int(value) if value else UNLIMITED

    return PoolLimits(
        max_connections=lim(tcp, "maxConnections"),
        max_pending_requests=lim(http, "http1MaxPendingRequests"),
        max_requests=lim(http, "http2MaxRequests"),
        max_requests_per_connection=int(http.get("maxRequestsPerConnection") or 0),
        max_retries=lim(http, "maxRetries"),
        connect_timeout=_dur(tcp.get("connectTimeout")) or 10.0,
    )


def outlier_spec(policy: Mapping[str, Any], profile: str) -> OutlierSpec | None:
    """Istio's ``applyOutlierDetection``: unset or zero fields keep Envoy's defaults."""
    od = policy.get("outlierDetection")
    if od is None:
        return None
    c5, gw = 5, 0  # Envoy enforces consecutive 5xx (5) by default, gateway errors not at all
    legacy = int(od.get("consecutiveErrors") or 0)
    if profile == "tutorial" and legacy > 0:
        # Istio <= 1.6 mapped the deprecated field to gateway errors with 5xx enforcement off;
        # since 1.7 it is ignored (the validation warns)
        gw, c5 = legacy, 0
    if od.get("consecutive5xxErrors") is not None:
        c5 = int(od["consecutive5xxErrors"])
    if od.get("consecutiveGatewayErrors") is not None:
        gw = int(od["consecutiveGatewayErrors"])
    max_percent = float(od.get("maxEjectionPercent") or 0)
    return OutlierSpec(
        consecutive_5xx=c5,
        consecutive_gateway=gw,
        interval=_dur(od.get("interval")) or 10.0,
        base_ejection=_dur(od.get("baseEjectionTime")) or 30.0,
        max_ejection_percent=max_percent if max_percent > 0 else 10.0,
        min_health_percent=max(0.0, float(od.get("minHealthPercent") or 0)),
        at_least_one=profile == "tutorial",  # Envoy < 1.27 always allowed the first ejection
    )


def merge_policy(top: Mapping[str, Any], sub: Mapping[str, Any]) -> dict[str, Any]:
    # Istio merges subset policy over the top level one whole sub-policy at a time
    merged = dict(top)
    for key in ("connectionPool", "loadBalancer", "outlierDetection", "tls", "portLevelSettings"):
        if key in sub:
            merged[key] = sub[key]
    return merged


def load_balancer(policy: Mapping[str, Any], profile: str) -> str:
    simple = (policy.get("loadBalancer") or {}).get("simple")
    if simple in (None, "UNSPECIFIED"):
        return "ROUND_ROBIN" if profile == "tutorial" else "LEAST_REQUEST"
    return "LEAST_REQUEST" if simple == "LEAST_CONN" else str(simple)


def cluster_spec(
    host: str,
    subset: str,
    port: int,
    eps: tuple[Endpoint, ...],
    policy: Mapping[str, Any],
    profile: str,
    origin: str,
    external: bool,
) -> ClusterSpec:
    tls = (policy.get("tls") or {}).get("mode", "AUTO")
    return ClusterSpec(
        name=cluster_name(host, subset, port),
        service=host,
        subset=subset,
        endpoints=eps,
        lb=load_balancer(policy, profile),
        limits=pool_limits(policy),
        outlier=outlier_spec(policy, profile),
        tls="DISABLE" if external and tls == "AUTO" else tls,
        origin=origin,
        external=external,
    )


def cluster_name(host: str, subset: str, port: int) -> str:
    return f"outbound|{port}|{subset}|{host}"
