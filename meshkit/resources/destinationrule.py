"""DestinationRule: subsets and traffic policy (load balancer, connection pool, outlier detection, TLS).

Example::

    >>> from meshkit.resources.schema import Checker
    >>> ck = Checker()
    >>> DESTINATION_RULE.check({"host": "r", "subsets": [{"name": "v1"}, {"name": "v1"}]}, ("spec",), ck)
    >>> ck.findings[0].message
    'duplicate subset names: v1'
"""

from __future__ import annotations

from typing import Any

from meshkit.resources.common import (
    LABELS,
    PORT_SELECTOR,
    STRINGS,
    dns1123_label_error,
    host_error,
)
from meshkit.resources.model import Path
from meshkit.resources.schema import Bool, Checker, Dur, Enum, Int, ListOf, Loose, Obj, Str

LB_SIMPLE = ("UNSPECIFIED", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST", "LEAST_CONN")
_HASH_KEYS = ("httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName")


def _non_negative(what: str) -> Int:
    return Int(lo=0, lo_msg=what + " must be non-negative")


def _percent() -> Int:
    return Int(
        lo=0,
        hi=100,
        lo_msg="percentage {value} is not in range 0..100",
        hi_msg="percentage {value} is not in range 0..100",
    )


def _consistent_hash_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    keys = [k for k in _HASH_KEYS if k in value]
    if len(keys) != 1:
        found = f" (found {', '.join(keys)})" if keys else ""
        ck.error(
            path,
            "consistentHash must set exactly one of httpHeaderName, httpCookie, useSourceIp "
            "or httpQueryParameterName" + found,
        )
    cookie = value.get("httpCookie")
    if isinstance(cookie, dict):
        if not cookie.get("name"):
            ck.error((*path, "httpCookie", "name"), "name required for HttpCookie")
        if not cookie.get("ttl"):
            ck.error((*path, "httpCookie", "ttl"), "ttl required for HttpCookie")
    if "ringHash" in value and "maglev" in value:
        ck.error(path, "only one of ringHash or maglev can be set")


def _load_balancer_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if "simple" in value and "consistentHash" in value:
        ck.error(path, "only one of simple or consistentHash can be set")


LOAD_BALANCER = Obj(
    {
        "simple": Enum(*LB_SIMPLE),
        "consistentHash": Obj(
            {
                "httpHeaderName": Str(),
                "httpCookie": Obj({"name": Str(), "path": Str(), "ttl": Dur(), "attributes": Loose(mapping=False)}),
                "useSourceIp": Bool(),
                "httpQueryParameterName": Str(),
                "ringHash": Obj({"minimumRingSize": _non_negative("minimumRingSize")}),
                "maglev": Obj({"tableSize": _non_negative("tableSize")}),
                "minimumRingSize": _non_negative("minimumRingSize"),
            },
            rules=[_consistent_hash_rule],
        ),
        "localityLbSetting": Loose(),
        "warmupDurationSecs": Dur(),
        "warmup": Loose(),
    },
    rules=[_load_balancer_rule],
)


def _pool_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if "tcp" not in value and "http" not in value:
        ck.error(path, "connection pool must have at least one field")
    http = value.get("http") or {}
    if http.get("h2UpgradePolicy") == "UPGRADE" and http.get("useClientProtocol"):
        ck.error((*path, "http"), "use client protocol must not be true when H2UpgradePolicy is UPGRADE")


CONNECTION_POOL = Obj(
    {
        "tcp": Obj(
            {
                "maxConnections": _non_negative("max connections"),
                "connectTimeout": Dur(),
                "tcpKeepalive": Obj({"probes": _non_negative("probes"), "time": Dur(), "interval": Dur()}),
                "maxConnectionDuration": Dur(),
                "idleTimeout": Dur(),
            }
        ),
        "http": Obj(
            {
                "http1MaxPendingRequests": _non_negative("http1 max pending requests"),
                "http2MaxRequests": _non_negative("http2 max requests"),
                "maxRequestsPerConnection": _non_negative("max requests per connection"),
                "maxRetries": _non_negative("max retries"),
                "idleTimeout": Dur(),
                "h2UpgradePolicy": Enum("DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"),
                "useClientProtocol": Bool(),
                "maxConcurrentStreams": _non_negative("max concurrent streams"),
            }
        ),
    },
    rules=[_pool_rule],
)


def _outlier_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if value.get("consecutiveErrors"):
        ck.warn(
            (*path, "consecutiveErrors"),
            "outlier detection consecutive errors is deprecated, "
            "use consecutiveGatewayErrors or consecutive5xxErrors instead",
        )


OUTLIER_DETECTION = Obj(
    {
        "consecutiveErrors": Int(),
        "consecutive5xxErrors": _non_negative("consecutive 5xx errors"),
        "consecutiveGatewayErrors": _non_negative("consecutive gateway errors"),
        "consecutiveLocalOriginFailures": _non_negative("consecutive local origin failures"),
        "splitExternalLocalOriginErrors": Bool(),
        "interval": Dur(),
        "baseEjectionTime": Dur(),
        "maxEjectionPercent": _percent(),
        "minHealthPercent": _percent(),
    },
    rules=[_outlier_rule],
)


def _tls_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    mode = value.get("mode", "DISABLE")
    certs = [k for k in ("clientCertificate", "privateKey", "caCertificates", "caCrl") if value.get(k)]
    if mode == "ISTIO_MUTUAL" and (certs or value.get("credentialName")):
        ck.error(
            path,
            "cannot specify client certificates or CA certificate or credentialName if tls mode is ISTIO_MUTUAL",
        )
    elif mode in ("SIMPLE", "MUTUAL") and value.get("credentialName") and certs:
        ck.error(path, "cannot specify client certificates or CA certificate or CA CRL if credentialName is set")
    elif mode == "MUTUAL" and not value.get("credentialName"):
        if not value.get("clientCertificate"):
            ck.error((*path, "clientCertificate"), "client certificate required for mutual tls")
        if not value.get("privateKey"):
            ck.error((*path, "privateKey"), "private key required for mutual tls")


CLIENT_TLS = Obj(
    {
        "mode": Enum("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"),
        "clientCertificate": Str(),
        "privateKey": Str(),
        "caCertificates": Str(),
        "credentialName": Str(),
        "subjectAltNames": STRINGS,
        "sni": Str(),
        "insecureSkipVerify": Bool(),
        "caCrl": Str(),
    },
    rules=[_tls_rule],
)


def _policy_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if not value:
        ck.error(path, "traffic policy must have at least one field")


_POLICY_FIELDS = {
    "loadBalancer": LOAD_BALANCER,
    "connectionPool": CONNECTION_POOL,
    "outlierDetection": OUTLIER_DETECTION,
    "tls": CLIENT_TLS,
}
PORT_TRAFFIC_POLICY = Obj({"port": PORT_SELECTOR, **_POLICY_FIELDS})
TRAFFIC_POLICY = Obj(
    {
        **_POLICY_FIELDS,
        "portLevelSettings": ListOf(PORT_TRAFFIC_POLICY),
        "tunnel": Loose(),
        "proxyProtocol": Loose(),
    },
    rules=[_policy_rule],
)


def _subset_name(value: str) -> str | None:
    if not value:
        return "subset name cannot be empty"
    return dns1123_label_error(value)


def _subset_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if value.get("name") is None:
        ck.error((*path, "name"), "subset name cannot be empty")


SUBSET = Obj({"name": Str(_subset_name), "labels": LABELS, "trafficPolicy": TRAFFIC_POLICY}, rules=[_subset_rule])


def _destination_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    seen: set[str] = set()
    for i, subset in enumerate(value.get("subsets") or []):
        name = subset.get("name")
        if name and name in seen:
            ck.error((*path, "subsets", i, "name"), f"duplicate subset names: {name}")
        seen.add(name)


DESTINATION_RULE = Obj(
    {
        "host": Str(host_error),
        "trafficPolicy": TRAFFIC_POLICY,
        "subsets": ListOf(SUBSET),
        "exportTo": STRINGS,
        "workloadSelector": Obj({"matchLabels": LABELS}),
    },
    required=("host",),
    rules=[_destination_rule],
)
