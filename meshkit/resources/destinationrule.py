"""DestinationRule: subsets and traffic policy (load balancer, connection pool, outlier detection, TLS).

Example::

    >>> from meshkit.resources.schema import Checker
    >>> ck = Checker()
    >>> DESTINATION_RULE.check({"host": "r", "subsets": [{"name": "v1"}, {"name": "v1"}]}, ("spec",), ck)
    >>> ck.findings[0].message
    'duplicate subset names: v1'
"""

from __future__ import annotations

import math
from typing import Any

from meshkit.resources.common import LABELS, PORT_SELECTOR, SELECTOR, STRINGS, host_error, subset_name_error
from meshkit.resources.model import Path
from meshkit.resources.names import export_to_errors, fqdn_error, ip_error, label_errors, port_error
from meshkit.resources.schema import Bool, Checker, Dur, Enum, Int, ListOf, MapOf, Num, Obj, Str

LB_SIMPLE = ("UNSPECIFIED", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST", "LEAST_CONN")
_HASH_KEYS = ("httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName")
_TOPOLOGY_LABELS = ("topology.kubernetes.io/region", "topology.kubernetes.io/zone", "topology.istio.io/subzone")


def _non_negative(what: str) -> Int:
    return Int(lo=0, lo_msg=what + " must be non-negative")


def _percent() -> Int:
    return Int(
        lo=0,
        hi=100,
        lo_msg="percentage {value} is not in range 0..100",
        hi_msg="percentage {value} is not in range 0..100",
    )


def is_prime(x: int) -> bool:
    """Envoy's primality test for the maglev table size."""
    if 0 < x < 4:
        return True
    if x % 2 == 0:
        return False
    return all(x % f for f in range(3, math.isqrt(x) + 1, 2))


def _consistent_hash_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    keys = [k for k in _HASH_KEYS if k in value]
    if len(keys) > 1:
        ck.error(path, f"only one of {', '.join(_HASH_KEYS)} can be set (found {', '.join(keys)})")
    cookie = value.get("httpCookie")
    if isinstance(cookie, dict):
        if not cookie.get("name"):
            ck.error((*path, "httpCookie", "name"), "name required for HttpCookie")
        seen: set[str] = set()
        for i, attr in enumerate(cookie.get("attributes") or []):
            name = attr.get("name", "") if isinstance(attr, dict) else ""
            where = (*path, "httpCookie", "attributes", i)
            if not name:
                ck.error(where, "cookie attribute name cannot be empty")
            elif name in seen:
                ck.error(where, f"duplicate cookie attribute name: {name}")
            seen.add(name)
    if "ringHash" in value and "maglev" in value:
        ck.error(path, "only one of ringHash or maglev can be set")
    if value.get("minimumRingSize"):
        ck.warn(
            (*path, "minimumRingSize"),
            "consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash configuration instead",
        )
        if "ringHash" in value or "maglev" in value:
            ck.error(path, "only one of MinimumRingSize or Maglev/Ringhash can be specified")
    maglev = value.get("maglev")
    if isinstance(maglev, dict):
        size = maglev.get("tableSize", 0)
        where = (*path, "maglev", "tableSize")
        if size == 0:
            ck.error(where, "tableSize must be set for maglev")
        if size >= 5000011:
            ck.error(where, "tableSize must be less than 5000011 for maglev")
        if not is_prime(size):
            ck.error(where, "tableSize must be a prime number for maglev")


def _locality_errors(localities: list[str]) -> str | None:
    """Istio's ``validateLocalities``: ``region/zone/subzone`` with one trailing ``*``, no overlaps."""
    seen: dict[str, Any] = {}
    for locality in localities:
        stars = locality.count("*")
        if stars and (stars > 1 or not locality.endswith("*")):
            return f"locality {locality} wildcard '*' number can not exceed 1 and must be in the end"
        if "*" in seen:
            return f"locality {locality} overlap with previous specified ones"
        items = locality.split("/", 2)
        if any(item == "" for item in items):
            return f"locality {locality} must not contain empty region/zone/subzone info"
        overlap = f"locality {locality} overlap with previous specified ones"
        region = items[0]
        if len(items) == 1:
            if region in seen:
                return overlap
            seen[region] = {"*": {"*": True}}
            continue
        zones = seen.setdefault(region, {})
        if "*" in zones:
            return overlap
        zone = items[1]
        if len(items) == 2:
            if zone in zones:
                return overlap
            zones[zone] = {"*": True}
            continue
        subzones = zones.setdefault(zone, {})
        if subzones.get("*") or subzones.get(items[2]):
            return overlap
        subzones[items[2]] = True
    return None


def _failover_rule(lb: dict[str, Any], path: Path, ck: Checker, what: str, only_region: str) -> None:
    for i, failover in enumerate(lb.get("failover") or []):
        src, dst = failover.get("from", ""), failover.get("to", "")
        where = (*path, "failover", i)
        if src == dst:
            ck.error(where, f"{what} failover settings must specify different regions")
        if "/" in src or "/" in dst:
            ck.error(where, only_region)
        if "*" in src or "*" in dst:
            ck.error(where, f"{what} failover region should not contain '*' wildcard")


def _locality_rule(value: dict[str, Any], path: Path, ck: Checker, outlier: Any) -> None:
    distribute, failover = value.get("distribute") or [], value.get("failover") or []
    if distribute and failover:
        ck.error(path, "can not simultaneously specify 'distribute' and 'failover'")
        return
    if failover:
        for label in value.get("failoverPriority") or []:
            if label in _TOPOLOGY_LABELS:
                ck.error(
                    (*path, "failoverPriority"),
                    f"can not simultaneously set 'failover' and topology label '{label}' in 'failover_priority'",
                )
                return
    for i, rule in enumerate(distribute):
        to = rule.get("to") or {}
        if any(not isinstance(w, int) or w <= 0 or w > 100 for w in to.values()):
            ck.error((*path, "distribute", i, "to"), "locality weight must be in range [1, 100]")
            return
        if sum(to.values()) != 100:
            ck.error((*path, "distribute", i, "to"), f"total locality weight {sum(to.values())} != 100")
            return
        if msg := _locality_errors(list(to)):
            ck.error((*path, "distribute", i, "to"), msg)
    if msg := _locality_errors([rule.get("from", "") for rule in distribute]):
        ck.error((*path, "distribute"), msg)
    if (failover or value.get("failoverPriority")) and outlier is None:
        ck.warn(path, "outlier detection policy must be provided for failover")
    _failover_rule(value, path, ck, "locality lb", "locality lb failover only specify region")


def _zone_aware_rule(value: dict[str, Any], path: Path, ck: Checker, outlier: Any) -> None:
    for label in value.get("failoverPriority") or []:
        if label in _TOPOLOGY_LABELS:
            ck.error(
                (*path, "failoverPriority"),
                f"'failover_priority' for zone aware lb must not use topology label '{label}'; region- and "
                "zone-level routing are handled automatically",
            )
    if (value.get("failover") or value.get("failoverPriority")) and outlier is None:
        ck.warn(path, "outlier detection policy must be provided for failover")
    _failover_rule(
        value,
        path,
        ck,
        "zone aware lb",
        "zone aware lb failover only specifies region; zone and subzone failover are handled automatically",
    )


def _warmup_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if "duration" not in value:
        ck.error((*path, "duration"), "duration is required")
    if value.get("minimumPercent", 0) > 100:
        ck.error((*path, "minimumPercent"), "minimumPercent value should be less than or equal to 100")
    if "aggression" in value and value["aggression"] <= 0:
        ck.error((*path, "aggression"), "aggression should be greater than 0")


def _load_balancer_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if "simple" in value and "consistentHash" in value:
        ck.error(path, "only one of simple or consistentHash can be set")
    if "localityLbSetting" in value and "zoneAwareLbSetting" in value:
        ck.error(path, "only one of localityLbSetting and zoneAwareLbSetting can be set")


_FAILOVER = ListOf(Obj({"from": Str(), "to": Str()}))
LOAD_BALANCER = Obj(
    {
        "simple": Enum(*LB_SIMPLE),
        "consistentHash": Obj(
            {
                "httpHeaderName": Str(),
                "httpCookie": Obj(
                    {
                        "name": Str(),
                        "path": Str(),
                        "ttl": Dur(any_ok=True),
                        "attributes": ListOf(Obj({"name": Str(), "value": Str()})),
                    }
                ),
                "useSourceIp": Bool(),
                "httpQueryParameterName": Str(),
                "ringHash": Obj({"minimumRingSize": _non_negative("minimumRingSize")}),
                "maglev": Obj({"tableSize": _non_negative("tableSize")}),
                "minimumRingSize": _non_negative("minimumRingSize"),
            },
            rules=[_consistent_hash_rule],
        ),
        "localityLbSetting": Obj(
            {
                "distribute": ListOf(Obj({"from": Str(), "to": MapOf(Int())})),
                "failover": _FAILOVER,
                "failoverPriority": ListOf(Str()),
                "enabled": Bool(),
            }
        ),
        "zoneAwareLbSetting": Obj(
            {
                "failover": _FAILOVER,
                "failoverPriority": ListOf(Str()),
                "enabled": Bool(),
                "minClusterSize": Int(lo=1),
            }
        ),
        "warmupDurationSecs": Dur(),
        "warmup": Obj(
            {"duration": Dur(), "minimumPercent": Num(), "aggression": Num()},
            rules=[_warmup_rule],
        ),
    },
    rules=[_load_balancer_rule],
)


def _pool_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if "tcp" not in value and "http" not in value:
        ck.error(path, "connection pool must have at least one field")
    http = value.get("http") or {}
    if http.get("h2UpgradePolicy") == "UPGRADE" and http.get("useClientProtocol"):
        ck.error((*path, "http"), "use client protocol must not be true when H2UpgradePolicy is UPGRADE")
    keepalive = http.get("http2KeepAlive")
    if isinstance(keepalive, dict):
        for key in ("interval", "timeout"):
            if key not in keepalive:
                ck.error((*path, "http", "http2KeepAlive", key), f"http2 keepalive {key} is required")


CONNECTION_POOL = Obj(
    {
        "tcp": Obj(
            {
                "maxConnections": _non_negative("max connections"),
                "connectTimeout": Dur(),
                "tcpKeepalive": Obj({"probes": _non_negative("probes"), "time": Dur(), "interval": Dur()}),
                "maxConnectionDuration": Dur(),
                "idleTimeout": Dur(zero_ok=True),
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
                "http2KeepAlive": Obj({"interval": Dur(), "timeout": Dur()}),
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
    if not value.get("splitExternalLocalOriginErrors") and (value.get("consecutiveLocalOriginFailures") or 0) > 0:
        ck.error(
            (*path, "consecutiveLocalOriginFailures"),
            "outlier detection consecutive local origin failures is specified, but split external local origin "
            "errors is set to false",
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
        "outlierDetectionHttpErrorCodes": ListOf(Int()),
    },
    rules=[_outlier_rule],
)


def _tls_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    mode = value.get("mode", "DISABLE")
    credential = value.get("credentialName", "")
    if credential.startswith("configmap://"):
        ns = credential.removeprefix("configmap://").split("/")
        if len(ns) == 2 and ns[0] != ck.namespace:
            ck.error(
                (*path, "credentialName"),
                "invalid configmap:// credentialName: namespace must match the configuration namespace "
                f'"{ck.namespace}"',
            )
    if value.get("insecureSkipVerify"):
        if mode == "SIMPLE" and (value.get("caCertificates") or credential or "subjectAltNames" in value):
            ck.error(
                path,
                "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set "
                "true",
            )
        if mode == "MUTUAL" and (value.get("caCertificates") or "subjectAltNames" in value):
            ck.error(path, "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true")
    if mode in ("SIMPLE", "MUTUAL") and credential:
        if any(value.get(k) for k in ("clientCertificate", "caCertificates", "privateKey", "caCrl")):
            ck.error(path, "cannot specify client certificates or CA certificate or CA CRL If credentialName is set")
        return
    if mode == "MUTUAL":
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


def _tunnel_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    protocol = value.get("protocol", "")
    if protocol not in ("", "CONNECT", "POST"):
        ck.error((*path, "protocol"), 'tunnel protocol must be "CONNECT" or "POST"')
    target = value.get("targetHost", "")
    fqdn, ip = fqdn_error(target), ip_error(target)
    if fqdn and ip:
        ck.error((*path, "targetHost"), f"tunnel target host must be valid FQDN or IP address: {fqdn}; {ip}")
    if msg := port_error(value.get("targetPort", 0)):
        ck.error((*path, "targetPort"), f"tunnel target port is invalid: {msg}")


def _lb_and_outlier(value: dict[str, Any], path: Path, ck: Checker) -> None:
    """Locality settings are checked against the policy's outlier detection (failover needs one)."""
    lb = value.get("loadBalancer") or {}
    outlier = value.get("outlierDetection")
    if isinstance(lb.get("localityLbSetting"), dict):
        _locality_rule(lb["localityLbSetting"], (*path, "loadBalancer", "localityLbSetting"), ck, outlier)
    if isinstance(lb.get("zoneAwareLbSetting"), dict):
        _zone_aware_rule(lb["zoneAwareLbSetting"], (*path, "loadBalancer", "zoneAwareLbSetting"), ck, outlier)


def _policy_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if not value:
        ck.error(path, "traffic policy must have at least one field")
        return
    if "tunnel" in value and "proxyProtocol" in value:
        ck.error(path, "tunnel and proxyProtocol must not be set together")
    _lb_and_outlier(value, path, ck)


def _port_policy_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if "port" not in value:
        ck.error((*path, "port"), "portTrafficPolicy must have valid port")
    if not any(k in value for k in ("outlierDetection", "connectionPool", "loadBalancer", "tls")):
        ck.error(path, "port traffic policy must have at least one field")
    _lb_and_outlier(value, path, ck)


_POLICY_FIELDS = {
    "loadBalancer": LOAD_BALANCER,
    "connectionPool": CONNECTION_POOL,
    "outlierDetection": OUTLIER_DETECTION,
    "tls": CLIENT_TLS,
}
PORT_TRAFFIC_POLICY = Obj({"port": PORT_SELECTOR, **_POLICY_FIELDS}, rules=[_port_policy_rule])
TRAFFIC_POLICY = Obj(
    {
        **_POLICY_FIELDS,
        "portLevelSettings": ListOf(PORT_TRAFFIC_POLICY),
        "tunnel": Obj(
            {"protocol": Str(), "targetHost": Str(), "targetPort": Int()},
            rules=[_tunnel_rule],
        ),
        "proxyProtocol": Obj({"version": Enum("V1", "V2")}),
        "retryBudget": Obj({"percent": Num(), "minRetryConcurrency": Int(lo=0), "budgetInterval": Dur(any_ok=True)}),
    },
    rules=[_policy_rule],
)


def _subset_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    name = value.get("name", "")
    if msg := subset_name_error(name):
        ck.error((*path, "name"), msg)
    for msg in label_errors(value.get("labels") or {}):
        ck.error((*path, "labels"), msg)


SUBSET = Obj({"name": Str(), "labels": LABELS, "trafficPolicy": TRAFFIC_POLICY}, rules=[_subset_rule])


def _destination_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    seen: set[str] = set()
    for i, subset in enumerate(value.get("subsets") or []):
        name = subset.get("name")
        if name in seen:
            ck.error((*path, "subsets", i, "name"), f"duplicate subset names: {name}")
        seen.add(name)
    for msg in export_to_errors(ck.namespace, value.get("exportTo") or [], selector="workloadSelector" in value):
        ck.error((*path, "exportTo"), msg)


DESTINATION_RULE = Obj(
    {
        "host": Str(host_error),
        "trafficPolicy": TRAFFIC_POLICY,
        "subsets": ListOf(SUBSET),
        "exportTo": STRINGS,
        "workloadSelector": SELECTOR,
    },
    required=("host",),
    rules=[_destination_rule],
)
