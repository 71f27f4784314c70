"""What istiod makes of Gateway API resources: VirtualServices, Istio Gateways, deployments, status.

Istio converts each HTTPRoute rule into one VirtualService HTTP route per match (named
``<ns>.<route>.<rule index>`` unless the rule has a ``name``), sorts them by the Gateway API's
precedence (Exact > longer PathPrefix > Regex, then method, headers, query params; matchless
routes last), and merges every route bound to the same parent and host into one VirtualService
whose name is the merge key with ``/`` turned into ``~`` (``tutorial~8080~recommendation.tutorial
.svc.cluster.local``). Those VirtualServices carry ``internal.istio.io/route-semantics: gateway``,
which makes the proxies answer 500 (not 503) for a missing backend and match PathPrefix on whole
path segments. A Gateway of class ``istio`` becomes one Istio Gateway per listener and a
deployment plus Service named ``<gateway>-istio``.

Example::

    >>> services = {("tutorial", "recommendation"): (8080,), ("tutorial", "recommendation-v1"): (8080,)}
    >>> route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
    ...          "metadata": {"name": "recommendation", "namespace": "tutorial"},
    ...          "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "recommendation", "port": 8080}],
    ...                   "rules": [{"backendRefs": [{"name": "recommendation-v1", "port": 8080}]}]}}
    >>> out = translate([route], services)
    >>> vs = out.virtual_services[0]
    >>> vs["metadata"]["name"], vs["spec"]["http"][0]["name"]
    ('tutorial~8080~recommendation.tutorial.svc.cluster.local', 'tutorial.recommendation.0')
    >>> out.statuses[("HTTPRoute", "tutorial", "recommendation")]["parents"][0]["conditions"][1]["reason"]
    'ResolvedRefs'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

GROUP = "gateway.networking.k8s.io"
CONTROLLER = "istio.io/gateway-controller"
MESH_CONTROLLER = "istio.io/mesh-controller"
SEMANTICS = "internal.istio.io/route-semantics"
PARENTS = "internal.istio.io/parents"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
SUFFIX = "svc.cluster.local"
#: the GatewayClasses Istio 1.30 installs (istio-waypoint with ambient; listed here as the brief of the lab)
BUILTIN_CLASSES = (
    ("istio", CONTROLLER, "The default Istio GatewayClass"),
    ("istio-waypoint", MESH_CONTROLLER, "The default Istio waypoint GatewayClass"),
)
_ROUTE_KINDS = {
    "HTTP": ("HTTPRoute", "GRPCRoute"),
    "HTTPS": ("HTTPRoute", "GRPCRoute"),
    "TLS": ("TLSRoute",),
    "TCP": ("TCPRoute",),
}

#: (kind, namespace, name) of a Gateway API object
Key = tuple[str, str, str]
Services = Mapping[tuple[str, str], tuple[int, ...]]


@dataclass(frozen=True)
class ConfigError:
    """One of Istio's route ``ConfigError``s: ``reason`` becomes a condition reason."""

    reason: str
    message: str


@dataclass(frozen=True)
class GatewayDeployment:
    """What Istio's deployment controller creates for a Gateway of class ``istio``."""

    gateway: str
    namespace: str
    name: str  # <gateway>-istio: Deployment, Service and ServiceAccount
    ports: tuple[int, ...]  # one Service port per distinct listener port (plus status-port 15021)
    labels: Mapping[str, str]
    waypoint: bool = False  # class istio-waypoint: named like the Gateway, a waypoint proxy


@dataclass
class Translation:
    virtual_services: list[dict[str, Any]] = field(default_factory=list)
    gateways: list[dict[str, Any]] = field(default_factory=list)
    deployments: list[GatewayDeployment] = field(default_factory=list)
    statuses: dict[Key, dict[str, Any]] = field(default_factory=dict)


def builtin_gateway_classes() -> list[dict[str, Any]]:
    """The GatewayClasses an Istio 1.30 install creates (``istio``; ``istio-waypoint``)."""
    return [
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "GatewayClass",
            "metadata": {"name": name, "namespace": "tutorial", "labels": {}, "annotations": {}},
            "spec": {"controllerName": controller, "description": description},
        }
        for name, controller, description in BUILTIN_CLASSES
    ]


def _meta(res: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = res.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _ns(res: Mapping[str, Any]) -> str:
    return str(_meta(res).get("namespace") or "tutorial")


def _name(res: Mapping[str, Any]) -> str:
    return str(_meta(res).get("name", ""))


def _creation_order(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    # Istio orders by creation time, then namespace, then name (timestamps have 1 s resolution)
    return sorted(items, key=lambda r: (str(_meta(r).get("creationTimestamp") or ""), _ns(r), _name(r)))


def condition(kind: str, status: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


# --- Gateways --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Listener:
    gateway: dict[str, Any]
    name: str
    port: int
    protocol: str
    hostname: str  # "" when unset
    allowed_from: str  # Same | All | Selector
    kinds: tuple[str, ...]

    @property
    def internal_name(self) -> str:
        return f"{_ns(self.gateway)}/{_name(self.gateway)}~istio-autogenerated-k8s-gateway~{self.name}"


def _listeners(gw: dict[str, Any]) -> list[_Listener]:
    out = []
    for item in gw.get("spec", {}).get("listeners") or []:
        allowed = item.get("allowedRoutes") or {}
        protocol = str(item.get("protocol", "HTTP"))
        kinds = tuple(k.get("kind", "") for k in allowed.get("kinds") or []) or _ROUTE_KINDS.get(protocol, ())
        out.append(
            _Listener(
                gw,
                str(item.get("name", "")),
                int(item.get("port", 80)),
                protocol,
                str(item.get("hostname") or ""),
                str((allowed.get("namespaces") or {}).get("from", "Same")),
                kinds,
            )
        )
    return out


def _class_controller(resources: list[dict[str, Any]], name: str) -> str | None:
    for gc in resources:
        if gc.get("kind") == "GatewayClass" and _name(gc) == name:
            return str(gc.get("spec", {}).get("controllerName", ""))
    # Istio creates its classes at install; a resource set without them still has them
    return next((controller for n, controller, _ in BUILTIN_CLASSES if n == name), None)


def _managed_gateways(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    gws = [r for r in resources if r.get("kind") == "Gateway" and str(r.get("apiVersion", "")).startswith(GROUP)]
    return [
        g
        for g in _creation_order(gws)
        if _class_controller(resources, str(g.get("spec", {}).get("gatewayClassName", ""))) == CONTROLLER
    ]


def _waypoint_gateways(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    gws = [r for r in resources if r.get("kind") == "Gateway" and str(r.get("apiVersion", "")).startswith(GROUP)]
    return [
        g
        for g in _creation_order(gws)
        if _class_controller(resources, str(g.get("spec", {}).get("gatewayClassName", ""))) == MESH_CONTROLLER
    ]


def _istio_gateway(listener: _Listener) -> dict[str, Any]:
    gw = listener.gateway
    ns_part = _ns(gw) if listener.allowed_from == "Same" else "*"
    host = listener.hostname or "*"
    name = listener.internal_name.split("/", 1)[1]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {
            "name": name,
            "namespace": _ns(gw),
            "annotations": {PARENTS: f"Gateway/{_name(gw)}/{listener.name}.{_ns(gw)}"},
            "creationTimestamp": _meta(gw).get("creationTimestamp"),
        },
        "spec": {
            "selector": {GATEWAY_NAME_LABEL: _name(gw)},
            "servers": [
                {
                    "port": {"number": listener.port, "protocol": listener.protocol, "name": listener.name},
                    "hosts": [f"{ns_part}/{host}"],
                }
            ],
        },
    }


# --- routes ----------------------------------------------------------------------------------


@dataclass
class _Parent:
    """One parentRef resolved against one listener (or the mesh)."""

    ref: dict[str, Any]
    mesh: bool
    internal_name: str = "mesh"
    listener: _Listener | None = None
    denied: ConfigError | None = None


def _ref_key(ref: Mapping[str, Any], route_ns: str) -> str:
    return "/".join(
        str(x)
        for x in (
            ref.get("group", GROUP),
            ref.get("kind", "Gateway"),
            ref.get("namespace") or route_ns,
            ref.get("name"),
            ref.get("sectionName", ""),
            ref.get("port", ""),
        )
    )


def _host_matches(a: str, b: str) -> bool:
    """Istio's bidirectional wildcard host match (``*.example.com`` vs ``foo.example.com``)."""
    if a == b or a == "*" or b == "*":
        return True
    if a.startswith("*") and b.endswith(a[1:]):
        return True
    return b.startswith("*") and a.endswith(b[1:])


def _gateway_parent(ref: dict[str, Any], listener: _Listener, route: dict[str, Any], kind: str) -> _Parent:
    parent = _Parent(ref, False, listener.internal_name, listener)
    route_ns = _ns(route)
    if ref.get("port") and int(ref["port"]) != listener.port:
        parent.denied = ConfigError("NoMatchingParent", f"port {ref['port']} not found")
        return parent
    if ref.get("sectionName") and ref["sectionName"] != listener.name:
        parent.denied = ConfigError("NoMatchingParent", f'sectionName "{ref["sectionName"]}" not found')
        return parent
    hostnames = route.get("spec", {}).get("hostnames") or ["*"]
    parent_ns = _ns(listener.gateway) if listener.allowed_from == "Same" else "*"
    host = listener.hostname or "*"
    host_matched = any(_host_matches(host, h) for h in hostnames)
    if not host_matched:
        parent.denied = ConfigError("NoMatchingListenerHostname", f'no hostnames matched parent hostname "{host}"')
    elif parent_ns not in ("*", route_ns):
        parent.denied = ConfigError(
            "NotAllowedByListeners",
            f'hostnames matched parent hostname "{host}", but namespace "{route_ns}" is not allowed by the parent',
        )
    elif kind not in listener.kinds:
        parent.denied = ConfigError("NotAllowedByListeners", f"kind {GROUP}/v1, Kind={kind} is not allowed")
    return parent


def _parents(route: dict[str, Any], gateways: list[dict[str, Any]], services: Services) -> list[_Parent]:
    out: list[_Parent] = []
    route_ns = _ns(route)
    for ref in route.get("spec", {}).get("parentRefs") or []:
        group, kind = ref.get("group", GROUP), ref.get("kind", "Gateway")
        ns = ref.get("namespace") or route_ns
        if group == "" and kind == "Service":
            parent = _Parent(ref, True)
            if (ns, ref.get("name")) not in services:
                parent.denied = ConfigError("NoMatchingParent", f'parent service: "{ref.get("name")}" not found')
            out.append(parent)
        elif group == GROUP and kind == "Gateway":
            for gw in gateways:
                if _name(gw) == ref.get("name") and _ns(gw) == ns:
                    out.extend(_gateway_parent(ref, lst, route, str(route.get("kind"))) for lst in _listeners(gw))
        # any other parent kind is not Istio's to handle
    return out


def _uri_match(match: Mapping[str, Any]) -> dict[str, str]:
    path = match.get("path") or {"type": "PathPrefix", "value": "/"}
    kind, value = path.get("type", "PathPrefix"), str(path.get("value", "/"))
    if kind == "Exact":
        return {"exact": value}
    if kind == "RegularExpression":
        return {"regex": value}
    return {"prefix": value if value == "/" else value.rstrip("/") or "/"}


def _string_match(item: Mapping[str, Any]) -> dict[str, str]:
    return {"regex" if item.get("type") == "RegularExpression" else "exact": str(item.get("value", ""))}


def _http_match(match: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"uri": _uri_match(match)}
    headers = {str(h["name"]).lower(): _string_match(h) for h in match.get("headers") or []}
    if headers:
        out["headers"] = headers
    query = {str(q["name"]): _string_match(q) for q in match.get("queryParams") or []}
    if query:
        out["queryParams"] = query
    if match.get("method"):
        out["method"] = {"exact": str(match["method"])}
    return out


def _grpc_match(match: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    method = match.get("method")
    if method:
        svc, name = method.get("service"), method.get("method")
        if method.get("type", "Exact") == "Exact":
            if name is None:
                out["uri"] = {"prefix": f"/{svc}/"}
            elif svc is None:
                out["uri"] = {"regex": f"/[^/]+/{name}"}
            else:
                out["uri"] = {"exact": f"/{svc}/{name}"}
        else:
            out["uri"] = {
                "regex": f"/{svc}/.+" if name is None else (f"/[^/]+/{name}" if svc is None else f"/{svc}/{name}")
            }
    headers = {str(h["name"]).lower(): _string_match(h) for h in match.get("headers") or []}
    if headers:
        out["headers"] = headers
    return out


def _valid_header_value(value: str) -> bool:
    return all(c == "\t" or (c >= " " and c != "\x7f") for c in value)


def _header_ops(spec: Mapping[str, Any]) -> dict[str, Any]:
    for item in [*(spec.get("set") or []), *(spec.get("add") or [])]:
        if not _valid_header_value(str(item.get("value", ""))):
            raise _HardError(
                ConfigError("InvalidFilter", f'header "{item.get("name")}" value contains invalid characters')
            )
    out: dict[str, Any] = {}
    for op in ("add", "set"):
        items: dict[str, str] = {}
        for item in spec.get(op) or []:
            items.setdefault(str(item["name"]).lower(), str(item["value"]))  # the first duplicate wins
        if items:
            out[op] = items
    if spec.get("remove"):
        out["remove"] = list(spec["remove"])
    return out


class _HardError(Exception):
    """A conversion error that leaves the whole route without routes."""

    def __init__(self, error: ConfigError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass
class _Context:
    services: Services
    grants: list[dict[str, Any]]
    route_kind: str
    route_ns: str
    enforce_grants: bool


def _granted(ctx: _Context, to_ns: str, name: str) -> bool:
    for grant in ctx.grants:
        if _ns(grant) != to_ns:
            continue
        spec = grant.get("spec", {})
        from_ok = any(
            f.get("group") == GROUP and f.get("kind") == ctx.route_kind and f.get("namespace") == ctx.route_ns
            for f in spec.get("from") or []
        )
        to_ok = any(
            t.get("group", "") == "" and t.get("kind") == "Service" and t.get("name") in (None, "", name)
            for t in spec.get("to") or []
        )
        if from_ok and to_ok:
            return True
    return False


def _destination(ctx: _Context, ref: Mapping[str, Any]) -> tuple[dict[str, Any], ConfigError | None]:
    """Istio's ``buildDestination``: a hard error raises, a backend error is returned with the destination."""
    group, kind = ref.get("group", ""), ref.get("kind", "Service")
    name = str(ref.get("name", ""))
    to_ns = ref.get("namespace")
    if ctx.enforce_grants and to_ns and to_ns != ctx.route_ns and not _granted(ctx, to_ns, name):
        return {}, ConfigError(
            "RefNotPermitted",
            f"backendRef {name}/{to_ns} not accessible to a {ctx.route_kind} "
            f'in namespace "{ctx.route_ns}" (missing a ReferenceGrant?)',
        )
    namespace = to_ns or ctx.route_ns
    if not (group == "" and kind == "Service"):
        return {}, ConfigError("InvalidKind", f'referencing unsupported backendRef: group "{group}" kind "{kind}"')
    if "." in name:
        raise _HardError(
            ConfigError(
                "InvalidDestination", "service name invalid; the name of the Service must be used, not the hostname."
            )
        )
    host = f"{name}.{namespace}.{SUFFIX}"
    error = None
    if (namespace, name) not in ctx.services:
        error = ConfigError("BackendNotFound", f"backend({host}) not found")
    if ref.get("port") is None:
        raise _HardError(ConfigError("InvalidDestination", "port is required in backendRef"))
    return {"host": host, "port": {"number": int(ref["port"])}}, error


def _weight(ref: Mapping[str, Any]) -> int:
    return int(ref.get("weight", 1))


def _cors(spec: Mapping[str, Any]) -> dict[str, Any]:
    origins = []
    for origin in spec.get("allowOrigins") or []:
        if origin == "*":
            origins.append({"regex": r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s?#]+$"})
        elif "*" not in origin:
            origins.append({"exact": origin})
        elif origin.count("*") == 1 and origin.endswith("*"):
            origins.append({"prefix": origin[:-1]})
        else:
            origins.append({"regex": "^" + re.escape(origin).replace(r"\*", ".*") + "$"})
    out: dict[str, Any] = {"allowOrigins": origins, "unmatchedPreflights": "IGNORE"}
    if spec.get("allowCredentials"):
        out["allowCredentials"] = True
    for key in ("allowMethods", "allowHeaders", "exposeHeaders"):
        if spec.get(key):
            out[key] = list(spec[key])
    max_age = int(spec.get("maxAge", 5))
    if max_age > 0:
        out["maxAge"] = f"{max_age}s"
    return out


def _redirect(spec: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"redirectCode": int(spec.get("statusCode", 302))}
    if spec.get("hostname"):
        out["authority"] = spec["hostname"]
    if spec.get("scheme"):
        out["scheme"] = spec["scheme"]
    if spec.get("port"):
        out["port"] = int(spec["port"])
    else:
        # "when empty, the port of the request is used" unless a scheme says otherwise (not Istio's VS default)
        out["derivePort"] = "FROM_PROTOCOL_DEFAULT" if spec.get("scheme") else "FROM_REQUEST_PORT"
    path = spec.get("path") or {}
    if path.get("type") == "ReplaceFullPath":
        out["uri"] = path.get("replaceFullPath", "")
    elif path.get("type") == "ReplacePrefixMatch":
        out["prefixRewrite"] = path.get("replacePrefixMatch", "")
    return out


def _rewrite(spec: Mapping[str, Any]) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    path = spec.get("path") or {}
    if path.get("type") == "ReplacePrefixMatch":
        out["uri"] = str(path.get("replacePrefixMatch", "")).rstrip("/") or "/"
    elif path.get("type") == "ReplaceFullPath":
        out["uriRegexRewrite"] = {"match": "/.*", "rewrite": path.get("replaceFullPath", "")}
    if spec.get("hostname"):
        out["authority"] = spec["hostname"]
    return out or None


def _mirror(ctx: _Context, spec: Mapping[str, Any]) -> dict[str, Any]:
    dest, error = _destination(ctx, {**spec.get("backendRef", {}), "weight": 1})
    if error is not None:
        raise _SoftMirrorError(error)
    out: dict[str, Any] = {"destination": dest}
    if spec.get("fraction") is not None:
        frac = spec["fraction"]
        out["percentage"] = {"value": 100 * int(frac.get("numerator", 0)) / int(frac.get("denominator", 100))}
    elif spec.get("percent") is not None:
        out["percentage"] = {"value": float(spec["percent"])}
    return out


class _SoftMirrorError(Exception):
    def __init__(self, error: ConfigError) -> None:
        super().__init__(error.message)
        self.error = error


def _convert_rule(
    ctx: _Context, rule: Mapping[str, Any], match: Mapping[str, Any] | None, name: str, grpc: bool
) -> tuple[dict[str, Any], ConfigError | None]:
    """Istio's ``convertHTTPRoute`` for one (rule, match): the VirtualService route and any soft error."""
    out: dict[str, Any] = {"name": name}
    if match is not None:
        out["match"] = [_grpc_match(match) if grpc else _http_match(match)]
    soft: list[ConfigError] = []
    for flt in rule.get("filters") or []:
        kind = flt.get("type")
        if kind == "RequestHeaderModifier":
            out.setdefault("headers", {})["request"] = _header_ops(flt.get("requestHeaderModifier") or {})
        elif kind == "ResponseHeaderModifier":
            out.setdefault("headers", {})["response"] = _header_ops(flt.get("responseHeaderModifier") or {})
        elif kind == "RequestRedirect" and not grpc:
            out["redirect"] = _redirect(flt.get("requestRedirect") or {})
        elif kind == "RequestMirror":
            try:
                out.setdefault("mirrors", []).append(_mirror(ctx, flt.get("requestMirror") or {}))
            except _SoftMirrorError as exc:
                if grpc:
                    raise _HardError(exc.error) from None
                soft.append(exc.error)
        elif kind == "URLRewrite" and not grpc:
            rewrite = _rewrite(flt.get("urlRewrite") or {})
            if rewrite:
                out["rewrite"] = rewrite
        elif kind == "CORS" and not grpc:
            out["corsPolicy"] = _cors(flt.get("cors") or {})
        else:
            raise _HardError(ConfigError("InvalidFilter", f'unsupported filter type "{kind}"'))
    retry = rule.get("retry")
    if retry is not None and not grpc:
        attempts = int(retry.get("attempts", 2))
        retry_on = [
            "connect-failure",
            "refused-stream",
            "unavailable",
            "cancelled",
            *(str(c) for c in retry.get("codes") or []),
        ]
        out["retries"] = {"attempts": attempts, "retryOn": ",".join(retry_on) if attempts else ""}
        if retry.get("backoff"):
            out["retries"]["backoff"] = retry["backoff"]
    timeouts = rule.get("timeouts") or {}
    if timeouts.get("request") and not _zero(timeouts["request"]):
        out["timeout"] = timeouts["request"]
    if timeouts.get("backendRequest") and not _zero(timeouts["backendRequest"]):
        if "retries" in out:
            out["retries"]["perTryTimeout"] = timeouts["backendRequest"]
        else:
            out["timeout"] = timeouts["backendRequest"]
    refs = rule.get("backendRefs") or []
    if sum(_weight(r) for r in refs) == 0 and "redirect" not in out:
        out["directResponse"] = {"status": 500}  # the spec: no backend with a weight > 0 answers 500
        return out, soft[0] if soft else None
    kept = [r for r in refs if _weight(r) > 0]
    if refs:
        route = []
        for ref in kept:
            dest, error = _destination(ctx, ref)
            if error is not None:
                soft.insert(0, error)
            item: dict[str, Any] = {"destination": dest, "weight": _weight(ref) if len(kept) > 1 else 0}
            for flt in ref.get("filters") or []:
                kind = flt.get("type")
                if kind == "RequestHeaderModifier":
                    item.setdefault("headers", {})["request"] = _header_ops(flt.get("requestHeaderModifier") or {})
                elif kind == "ResponseHeaderModifier":
                    item.setdefault("headers", {})["response"] = _header_ops(flt.get("responseHeaderModifier") or {})
                else:
                    raise _HardError(ConfigError("InvalidFilter", f'unsupported filter type "{kind}"'))
            route.append(item)
        out["route"] = route
    error = None
    if soft:
        error = ConfigError(soft[0].reason, "; ".join(e.message for e in soft)) if len(soft) > 1 else soft[0]
    return out, error


def _zero(text: str) -> bool:
    return all(n == "0" or set(n) == {"0"} for n in re.findall(r"[0-9]+", str(text)))


def _uri_rank(route: Mapping[str, Any]) -> tuple[int, int]:
    uri = route["match"][0].get("uri") if route.get("match") else None
    if not uri:
        return -1, 0
    for rank, key in ((3, "exact"), (2, "prefix"), (1, "regex")):
        if key in uri:
            return rank, len(uri[key])
    return -1, 0


def sort_routes(routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Istio's ``sortHTTPRoutes`` (a stable sort on each route's first match): see the module doc."""

    def key(route: Mapping[str, Any]) -> tuple[int, int, int, int, int, int]:
        if not route.get("match"):
            return (1, 0, 0, 0, 0, 0)
        m = route["match"][0]
        rank, length = _uri_rank(route)
        return (
            0,
            -rank,
            -length,
            0 if m.get("method") else 1,
            -len(m.get("headers") or {}),
            -len(m.get("queryParams") or {}),
        )

    return sorted(routes, key=key)


def _convert_route(ctx: _Context, route: dict[str, Any]) -> tuple[list[dict[str, Any]], ConfigError | None]:
    """All VirtualService routes of one HTTPRoute/GRPCRoute, or none with the hard error."""
    grpc = route.get("kind") == "GRPCRoute"
    out: list[dict[str, Any]] = []
    error: ConfigError | None = None
    default_rule: list[dict[str, Any]] = [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}]
    rules = route.get("spec", {}).get("rules") or ([] if grpc else default_rule)
    for index, rule in enumerate(rules):
        name = rule.get("name") or f"{_ns(route)}.{_name(route)}.{index}"
        # the CRD defaults an HTTPRoute rule without matches to PathPrefix "/" (so it ranks above a regex)
        matches: list[Any] = list(rule.get("matches") or []) or [None if grpc else {}]
        for match in matches:
            try:
                converted, soft = _convert_rule(ctx, rule, match, name, grpc)
            except _HardError as exc:
                return [], exc.error
            error = soft or error
            out.append(converted)
    return out, error


def _with_port(routes: list[dict[str, Any]], port: int) -> list[dict[str, Any]]:
    out = []
    for r in routes:
        r = {**r, "match": [{**m, "port": port} for m in r.get("match") or [{}]]}
        out.append(r)
    return out


def _route_status(route: dict[str, Any], parents: list[_Parent], error: ConfigError | None) -> dict[str, Any]:
    """Istio's ``createRouteStatus``: one entry per parentRef, the least severe listener result wins."""
    generation = int(_meta(route).get("generation", 1))
    rank = {
        None: 0,
        "NotAllowedByListeners": 1,
        "NoMatchingListenerHostname": 2,
        "ParentRefConflict": 3,
        "NoMatchingParent": 4,
    }
    grouped: dict[str, list[_Parent]] = {}
    refs: dict[str, dict[str, Any]] = {}
    for p in parents:
        key = _ref_key(p.ref, _ns(route))
        grouped.setdefault(key, []).append(p)
        refs[key] = p.ref
    entries = []
    for key in sorted(grouped, reverse=True):
        items = grouped[key]
        ok = sum(1 for p in items if p.denied is None)
        best = min(items, key=lambda p: rank.get(p.denied.reason if p.denied else None, 5))
        denied = best.denied
        if denied is not None:
            same = [p.denied.message for p in items if p.denied and p.denied.reason == denied.reason]
            denied = ConfigError(denied.reason, "; ".join(dict.fromkeys(same)))
        msg = "Route was valid" if ok <= 1 else f"Route was valid, bound to {ok} parents"
        accepted = condition("Accepted", True, "Accepted", msg, generation)
        if denied is not None:
            accepted = condition("Accepted", False, denied.reason, denied.message, generation)
        resolved = condition("ResolvedRefs", True, "ResolvedRefs", "All references resolved", generation)
        if error is not None:
            resolved = condition("ResolvedRefs", False, error.reason, error.message, generation)
        entries.append({"parentRef": refs[key], "controllerName": CONTROLLER, "conditions": [accepted, resolved]})
    return {"parents": entries}


def translate(resources: list[dict[str, Any]], services: Services, ready_gateways: Iterable[str] = ()) -> Translation:
    """Everything istiod derives from the Gateway API resources among ``resources``.

    ``services`` maps ``(namespace, name)`` of every Service to its ports; ``ready_gateways``
    names (``<ns>/<deployment>``) the gateway deployments that have a ready pod.
    """
    out = Translation()
    gateways = _managed_gateways(resources)
    grants = [r for r in resources if r.get("kind") == "ReferenceGrant"]
    known = dict(services)
    for gw in gateways:
        listeners = _listeners(gw)
        name = f"{_name(gw)}-istio"
        ports = tuple(dict.fromkeys(lst.port for lst in listeners))
        out.deployments.append(
            GatewayDeployment(
                _name(gw), _ns(gw), name, ports, {GATEWAY_NAME_LABEL: _name(gw), "istio.io/gateway-name": _name(gw)}
            )
        )
        known[(_ns(gw), name)] = (15021, *ports)
        out.gateways.extend(_istio_gateway(lst) for lst in listeners)
    waypoints = _waypoint_gateways(resources)
    for gw in waypoints:
        # Istio's waypoint template: Deployment, Service and ServiceAccount named exactly like the Gateway
        out.deployments.append(
            GatewayDeployment(_name(gw), _ns(gw), _name(gw), (15008,), {GATEWAY_NAME_LABEL: _name(gw)}, True)
        )
        known[(_ns(gw), _name(gw))] = (15021, 15008)
    attached: dict[str, int] = {}
    merged: dict[str, dict[str, Any]] = {}
    routes = [
        r
        for r in resources
        if r.get("kind") in ("HTTPRoute", "GRPCRoute") and str(r.get("apiVersion", "")).startswith(GROUP)
    ]
    for route in _creation_order(routes):
        parents = _parents(route, gateways, known)
        ns = _ns(route)
        # the mesh does not enforce ReferenceGrants (GAMMA), gateways do
        mesh_ctx = _Context(known, grants, str(route["kind"]), ns, False)
        gw_ctx = _Context(known, grants, str(route["kind"]), ns, True)
        mesh_routes, mesh_error = _convert_route(mesh_ctx, route) if any(p.mesh for p in parents) else ([], None)
        gw_routes, gw_error = _convert_route(gw_ctx, route) if any(not p.mesh for p in parents) else ([], None)
        error = mesh_error if any(p.mesh for p in parents) else gw_error
        if any(p.mesh for p in parents) and any(not p.mesh for p in parents):
            error = gw_error or mesh_error
        out.statuses[(str(route["kind"]), ns, _name(route))] = _route_status(route, parents, error)
        for parent in parents:
            if parent.denied is not None:
                continue
            if parent.mesh:
                svc_ns = parent.ref.get("namespace") or ns
                hosts = [f"{parent.ref['name']}.{svc_ns}.{SUFFIX}"]
                key, converted = ns, mesh_routes
                if parent.ref.get("port"):
                    converted = _with_port(converted, int(parent.ref["port"]))
                    key += f"/{parent.ref['port']}"
                gateways_field = ["mesh"]
            else:
                assert parent.listener is not None
                attached[parent.internal_name] = attached.get(parent.internal_name, 0) + 1
                hosts = list(route.get("spec", {}).get("hostnames") or ["*"])
                key, converted = parent.internal_name, gw_routes
                gateways_field = [parent.internal_name]
            if not converted:
                continue
            for host in hosts:
                merge_key = f"{key}/{host}"
                vs = merged.get(merge_key)
                parent_note = f"{route['kind']}/{_name(route)}.{ns}"
                if vs is None:
                    merged[merge_key] = {
                        "apiVersion": "networking.istio.io/v1",
                        "kind": "VirtualService",
                        "metadata": {
                            "name": merge_key.replace("/", "~"),
                            "namespace": ns if parent.mesh else _ns(parent.listener.gateway),  # type: ignore[union-attr]
                            "annotations": {PARENTS: parent_note, SEMANTICS: "gateway"},
                            "creationTimestamp": _meta(route).get("creationTimestamp"),
                        },
                        "spec": {"hosts": [host], "gateways": gateways_field, "http": list(converted)},
                    }
                else:
                    notes = vs["metadata"]["annotations"]
                    if parent_note not in notes[PARENTS].split(","):
                        notes[PARENTS] += "," + parent_note
                    vs["spec"]["http"].extend(converted)
    for vs in merged.values():
        vs["spec"]["http"] = sort_routes(vs["spec"]["http"])
    out.virtual_services = list(merged.values())
    ready = set(ready_gateways)
    for gw in gateways:
        out.statuses[("Gateway", _ns(gw), _name(gw))] = _gateway_status(gw, attached, ready)
    for gw in waypoints:
        out.statuses[("Gateway", _ns(gw), _name(gw))] = _gateway_status(gw, attached, ready, waypoint=True)
    for gc in resources:
        if gc.get("kind") == "GatewayClass" and gc.get("spec", {}).get("controllerName") in (
            CONTROLLER,
            MESH_CONTROLLER,
        ):
            gen = int(_meta(gc).get("generation", 1))
            out.statuses[("GatewayClass", _ns(gc), _name(gc))] = {
                "conditions": [condition("Accepted", True, "Accepted", "Handled by Istio controller", gen)]
            }
    return out


#: what an HBONE (waypoint) listener takes (gatewaycommon's GenerateGatewaySupportedKinds)
_HBONE_KINDS = ("HTTPRoute", "GRPCRoute", "TCPRoute", "TLSRoute")
_WAYPOINT_LISTENER = 'Expected a single listener on port 15008 with protocol "HBONE"'


def _gateway_status(gw: dict[str, Any], attached: Mapping[str, int], ready: set[str],
                    waypoint: bool = False) -> dict[str, Any]:
    gen = int(_meta(gw).get("generation", 1))
    listeners = _listeners(gw)
    deployment = _name(gw) if waypoint else f"{_name(gw)}-istio"
    service = f"{deployment}.{_ns(gw)}.{SUFFIX}"
    ports = list(dict.fromkeys(lst.port for lst in listeners))
    assigned = ", ".join(f"{service}:{p}" for p in ports)
    is_ready = f"{_ns(gw)}/{deployment}" in ready
    programmed = condition(
        "Programmed", True, "Programmed", f"Resource programmed, assigned to service(s) {assigned}", gen
    )
    if not is_ready:
        programmed = condition(
            "Programmed",
            False,
            "AddressNotAssigned",
            f"Assigned to service(s) {assigned}, but failed to assign to all requested addresses: "
            "address pending for hostname " + f'"{service}"',
            gen,
        )
    status: dict[str, Any] = {
        "conditions": [
            condition("Accepted", True, "Accepted", "Resource accepted", gen),
            programmed,
            condition("ResolvedRefs", True, "ResolvedRefs", "All references resolved", gen),
        ],
        "listeners": [
            {
                "name": lst.name,
                "attachedRoutes": attached.get(lst.internal_name, 0),
                "supportedKinds": [{"group": GROUP, "kind": k}
                                   for k in (_HBONE_KINDS if lst.protocol == "HBONE" else lst.kinds)],
                "conditions": [
                    condition("Accepted", True, "Accepted", "No errors found", gen)
                    if not (waypoint and (lst.port != 15008 or lst.protocol != "HBONE"))
                    else condition("Accepted", False, "UnsupportedProtocol", _WAYPOINT_LISTENER, gen),
                    condition("Conflicted", False, "NoConflicts", "No errors found", gen),
                    condition("Programmed", True, "Programmed", "No errors found", gen),
                    condition("ResolvedRefs", True, "ResolvedRefs", "No errors found", gen),
                ],
            }
            for lst in listeners
        ],
    }
    if is_ready:
        status["addresses"] = [{"type": "IPAddress", "value": "127.0.0.1"}]
    return status
