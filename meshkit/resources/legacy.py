"""Book-era kinds Istio removed, explained with today's replacement built from the legacy fields.

The tutorial's oldest files (``config.istio.io/v1alpha2`` RouteRule, DestinationPolicy, EgressRule,
Mixer adapters; ``authentication.istio.io`` Policy; ``rbac.istio.io`` roles) no longer apply on any
supported Istio. Instead of "no matches for kind", a learner gets the modern equivalent as YAML.

Example::

    >>> msg = explain_legacy({"apiVersion": "config.istio.io/v1alpha2", "kind": "EgressRule",
    ...     "metadata": {"name": "httpbin"}, "spec": {"destination": {"service": "httpbin.org"},
    ...     "ports": [{"port": 80, "protocol": "http"}]}})
    >>> msg.splitlines()[0][:70]
    'EgressRule (config.istio.io/v1alpha2) was removed from Istio (1.0): us'
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from meshkit.resources.envoyfilter import local_rate_limit_filter

LEGACY_GROUPS = ("config.istio.io", "authentication.istio.io", "rbac.istio.io")
_ACCESS_KINDS = {"denier", "listchecker", "listentry", "checknothing", "authorization", "opa", "apikey"}
_QUOTA_KINDS = {"memquota", "redisquota", "quota", "quotaspec", "quotaspecbinding"}
_NET = "networking.istio.io/v1"
_SEC = "security.istio.io/v1"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _resource(api: str, kind: str, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def _yaml(*resources: dict[str, Any]) -> str:
    text = "---\n".join(yaml.safe_dump(r, sort_keys=False, default_flow_style=False) for r in resources)
    return "\n".join("    " + line for line in text.rstrip().splitlines())


def _subset(labels: dict[str, Any]) -> str:
    return "-".join(f"{k}-{v}" for k, v in labels.items()) or "default"


def _route_rule(spec: dict[str, Any], name: str, ns: str) -> list[dict[str, Any]]:
    dest = _dict(spec.get("destination"))
    host = str(dest.get("name") or "<service>")
    ns = str(dest.get("namespace") or ns)
    subsets: dict[str, dict[str, Any]] = {}
    route: list[dict[str, Any]] = []
    for r in _list(spec.get("route")):
        labels = _dict(_dict(r).get("labels"))
        destination: dict[str, Any] = {"host": host}
        if labels:
            subsets[_subset(labels)] = labels
            destination["subset"] = _subset(labels)
        entry: dict[str, Any] = {"destination": destination}
        if "weight" in _dict(r):
            entry["weight"] = r["weight"]
        route.append(entry)
    http: dict[str, Any] = {}
    headers = _dict(_dict(_dict(spec.get("match")).get("request")).get("headers"))
    if headers:
        http["match"] = [{"headers": {str(k).lower(): v for k, v in headers.items()}}]
    http["route"] = route or [{"destination": {"host": host}}]
    timeout = _dict(_dict(spec.get("httpReqTimeout")).get("simpleTimeout")).get("timeout")
    if timeout:
        http["timeout"] = timeout
    retry = _dict(_dict(spec.get("httpReqRetries")).get("simpleRetry"))
    if retry:
        http["retries"] = {k: retry[k] for k in ("attempts", "perTryTimeout") if k in retry}
    fault: dict[str, Any] = {}
    for kind, fields in (("delay", ("fixedDelay",)), ("abort", ("httpStatus",))):
        old = _dict(_dict(spec.get("httpFault")).get(kind))
        if old:
            new = {f: old[f] for f in fields if f in old}
            new["percentage"] = {"value": old.get("percent", 100)}
            fault[kind] = new
    if fault:
        http["fault"] = fault
    mirror = _dict(spec.get("mirror"))
    if mirror:
        mirror_labels = _dict(mirror.get("labels"))
        http["mirror"] = {"host": str(mirror.get("name") or host)}
        if mirror_labels:
            subsets[_subset(mirror_labels)] = mirror_labels
            http["mirror"]["subset"] = _subset(mirror_labels)
    out = [_resource(_NET, "VirtualService", host, ns, {"hosts": [host], "http": [http]})]
    if subsets:
        out.append(
            _resource(
                _NET,
                "DestinationRule",
                host,
                ns,
                {"host": host, "subsets": [{"name": n, "labels": labels} for n, labels in subsets.items()]},
            )
        )
    return out


def _destination_policy(spec: dict[str, Any], name: str, ns: str) -> list[dict[str, Any]]:
    dest = _dict(spec.get("destination"))
    host = str(dest.get("name") or "<service>")
    cb = _dict(_dict(spec.get("circuitBreaker")).get("simpleCb"))
    policy: dict[str, Any] = {}
    lb = _dict(spec.get("loadBalancing")).get("name")
    if lb:
        policy["loadBalancer"] = {"simple": str(lb).upper()}
    tcp = {"maxConnections": cb["maxConnections"]} if "maxConnections" in cb else {}
    http = {
        new: cb[old]
        for old, new in (
            ("httpMaxPendingRequests", "http1MaxPendingRequests"),
            ("httpMaxRequestsPerConnection", "maxRequestsPerConnection"),
            ("httpMaxRequests", "http2MaxRequests"),
        )
        if old in cb
    }
    pool = {k: v for k, v in (("tcp", tcp), ("http", http)) if v}
    if pool:
        policy["connectionPool"] = pool
    outlier = {
        new: cb[old]
        for old, new in (
            ("httpConsecutiveErrors", "consecutive5xxErrors"),
            ("httpDetectionInterval", "interval"),
            ("sleepWindow", "baseEjectionTime"),
            ("httpMaxEjectionPercent", "maxEjectionPercent"),
        )
        if old in cb
    }
    if outlier:
        policy["outlierDetection"] = outlier
    rule: dict[str, Any] = {"host": host}
    labels = _dict(dest.get("labels"))
    if labels:
        rule["subsets"] = [{"name": _subset(labels), "labels": labels, "trafficPolicy": policy}]
    else:
        rule["trafficPolicy"] = policy or {"loadBalancer": {"simple": "ROUND_ROBIN"}}
    return [_resource(_NET, "DestinationRule", name, ns, rule)]


def _egress_rule(spec: dict[str, Any], name: str, ns: str) -> list[dict[str, Any]]:
    host = str(_dict(spec.get("destination")).get("service") or "<external host>")
    ports = [
        {
            "number": p.get("port", 80),
            "name": f"{str(p.get('protocol', 'http')).lower()}-{p.get('port', 80)}",
            "protocol": str(p.get("protocol", "http")).upper(),
        }
        for p in map(_dict, _list(spec.get("ports")))
    ]
    return [
        _resource(
            _NET,
            "ServiceEntry",
            name,
            ns,
            {
                "hosts": [host],
                "ports": ports or [{"number": 80, "name": "http-80", "protocol": "HTTP"}],
                "location": "MESH_EXTERNAL",
                "resolution": "DNS",
            },
        )
    ]


def _app_selector(name: Any) -> dict[str, Any]:
    return {"matchLabels": {"app": str(name)}}


def _auth_policy(kind: str, spec: dict[str, Any], name: str, ns: str) -> list[dict[str, Any]]:
    if kind == "MeshPolicy":
        ns = "istio-system"
    targets = [t.get("name") for t in map(_dict, _list(spec.get("targets"))) if t.get("name")] or [None]
    out: list[dict[str, Any]] = []
    for target in targets:
        suffix = f"-{target}" if target and len(targets) > 1 else ""
        selector = {"selector": _app_selector(target)} if target else {}
        for peer in map(_dict, _list(spec.get("peers"))):
            if "mtls" in peer:
                mode = str(_dict(peer.get("mtls")).get("mode", "STRICT")).upper()
                out.append(
                    _resource(
                        _SEC,
                        "PeerAuthentication",
                        f"{name}{suffix}",
                        ns,
                        {**selector, "mtls": {"mode": mode}},
                    )
                )
        rules = []
        for origin in map(_dict, _list(spec.get("origins"))):
            jwt = _dict(origin.get("jwt"))
            if jwt:
                rules.append({k: jwt[k] for k in ("issuer", "jwksUri", "audiences") if k in jwt})
        if rules:
            out.append(_resource(_SEC, "RequestAuthentication", f"{name}{suffix}", ns, {**selector, "jwtRules": rules}))
            out.append(
                _resource(
                    _SEC,
                    "AuthorizationPolicy",
                    f"{name}-require-jwt{suffix}",
                    ns,
                    {
                        **selector,
                        "action": "ALLOW",
                        "rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}],
                    },
                )
            )
    return out or [_resource(_SEC, "PeerAuthentication", "default", ns, {"mtls": {"mode": "STRICT"}})]


def _rbac(kind: str, spec: dict[str, Any], name: str, ns: str) -> list[dict[str, Any]]:
    if kind in ("RbacConfig", "ClusterRbacConfig"):
        namespaces = _list(_dict(spec.get("inclusion")).get("namespaces")) or [ns]
        return [_resource(_SEC, "AuthorizationPolicy", "allow-nothing", str(n), {}) for n in namespaces]
    if kind == "ServiceRole":
        rules = []
        for r in map(_dict, _list(spec.get("rules"))):
            op = {k: r[k] for k in ("methods", "paths") if r.get(k)}
            rules.append({"to": [{"operation": op}]} if op else {})
        return [_resource(_SEC, "AuthorizationPolicy", name, ns, {"action": "ALLOW", "rules": rules or [{}]})]
    sources: list[dict[str, Any]] = []
    when: list[dict[str, Any]] = []
    for subject in map(_dict, _list(spec.get("subjects"))):
        user = subject.get("user")
        if user and user != "*":
            sources.append({"source": {"principals": [str(user)]}})
        for key, value in _dict(subject.get("properties")).items():
            if key == "source.namespace":
                sources.append({"source": {"namespaces": [str(value)]}})
            else:
                when.append({"key": str(key), "values": [str(value)]})
    rule: dict[str, Any] = {}
    if sources:
        rule["from"] = sources
    if when:
        rule["when"] = when
    return [_resource(_SEC, "AuthorizationPolicy", name, ns, {"action": "ALLOW", "rules": [rule]})]


_MATCH_APP = re.compile(r'(source|destination)\.labels\["app"\]\s*==\s*"([^"]+)"')


def _mixer_category(kind: str, spec: dict[str, Any]) -> str:
    lowered = kind.lower()
    if lowered in _ACCESS_KINDS:
        return "access"
    if lowered in _QUOTA_KINDS:
        return "quota"
    if lowered == "handler":
        adapter = str(spec.get("compiledAdapter") or spec.get("adapter") or "").lower()
        if adapter in ("memquota", "redisquota"):
            return "quota"
        if adapter in ("denier", "listchecker"):
            return "access"
    if lowered == "rule":
        handlers = " ".join(str(_dict(a).get("handler", "")) for a in _list(spec.get("actions")))
        if "denier" in handlers or "list" in handlers:
            return "access"
        if "quota" in handlers:
            return "quota"
    return "telemetry"


def _mixer(kind: str, spec: dict[str, Any], name: str, ns: str) -> tuple[str, list[dict[str, Any]]]:
    category = _mixer_category(kind, spec)
    if category == "access":
        found = dict((side, app) for side, app in _MATCH_APP.findall(str(spec.get("match", ""))))
        dest, src = found.get("destination", "<app>"), found.get("source")
        policy: dict[str, Any] = {"selector": _app_selector(dest), "action": "DENY"}
        principal = f"cluster.local/ns/{ns}/sa/{src}" if src else f"cluster.local/ns/{ns}/sa/<caller>"
        policy["rules"] = [{"from": [{"source": {"principals": [principal]}}]}]
        return "AuthorizationPolicy (deny/allow lists)", [_resource(_SEC, "AuthorizationPolicy", name, ns, policy)]
    if category == "quota":
        quotas = _list(spec.get("quotas")) or _list(_dict(spec.get("params")).get("quotas"))
        quota = _dict((quotas or [{}])[0])
        services = [_dict(s).get("name") for s in _list(spec.get("services"))]
        app = str(services[0]) if services and services[0] else "<app>"
        tokens = quota.get("maxAmount", 10)
        interval = str(quota.get("validDuration", "1s"))
        filt = local_rate_limit_filter(
            f"{name}-ratelimit",
            app,
            namespace=ns,
            max_tokens=int(tokens) if str(tokens).isdigit() else 10,
            fill_interval=interval,
        )
        return "Envoy's local rate limit (an EnvoyFilter) for quotas and rate limits", [filt]
    return "the Telemetry API (metrics, access logs and traces are built into the sidecar)", [
        _resource(
            "telemetry.istio.io/v1",
            "Telemetry",
            "mesh-default",
            "istio-system",
            {"accessLogging": [{"disabled": False}], "tracing": [{"randomSamplingPercentage": 100.0}]},
        )
    ]


def explain_legacy(data: dict[str, Any]) -> str | None:
    """The removal message for a book-era resource, or ``None`` when ``data`` is not one."""
    api = str(data.get("apiVersion", ""))
    kind = str(data.get("kind", ""))
    group = api.split("/")[0]
    if group not in LEGACY_GROUPS:
        return None
    meta = _dict(data.get("metadata"))
    name = str(meta.get("name") or kind.lower())
    ns = str(meta.get("namespace") or "tutorial")
    spec = _dict(data.get("spec"))
    if group == "config.istio.io" and kind == "RouteRule":
        removed, use, out = "1.0", "VirtualService (+ DestinationRule subsets)", _route_rule(spec, name, ns)
    elif group == "config.istio.io" and kind == "DestinationPolicy":
        removed, use = "1.0", "DestinationRule trafficPolicy (connectionPool/outlierDetection)"
        out = _destination_policy(spec, name, ns)
    elif group == "config.istio.io" and kind == "EgressRule":
        removed, use, out = "1.0", "ServiceEntry", _egress_rule(spec, name, ns)
    elif group == "config.istio.io":
        removed = "1.8, Mixer"
        use, out = _mixer(kind, spec, name, ns)
    elif group == "authentication.istio.io":
        removed, use = "1.6", "PeerAuthentication (mTLS) + RequestAuthentication (JWT)"
        out = _auth_policy(kind, spec, name, ns)
    else:
        removed, use, out = "1.6", "AuthorizationPolicy", _rbac(kind, spec, name, ns)
    head = f"{kind} ({api}) was removed from Istio ({removed}): use {use} instead."
    return f"{head} Equivalent today:\n{_yaml(*out)}"
