"""Compile the control plane's snapshot into one proxy's view: virtual hosts, routes and clusters.

This is where Istio's translation rules live (VirtualService → routes, DestinationRule → clusters,
ServiceEntry → external clusters, mesh defaults per semantics profile). Everything that can be done
once per config push is done here, so the per-request path only walks prepared objects.

Example::

    view = compile_view(snapshot, ProxyIdentity("preference-v1-x", "preference", "v1", {...}))
    vhost = view.vhost_for("recommendation:8080")
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from meshkit.backends.local.peerauth import ROOT_NAMESPACE
from meshkit.backends.local.proxy.cluster import ClusterSpec, Endpoint
from meshkit.backends.local.proxy.matching import MatchSet, compile_match, qualify_gateway, string_matcher
from meshkit.backends.local.proxy.metric_overrides import MetricOverrides, overrides_for
from meshkit.backends.local.proxy.traffic_policy import (
    _dur,
    cluster_name,
    cluster_spec,
    merge_policy,
)

_HTTP_STATUSES = frozenset(s.value for s in HTTPStatus)  # Istio: integers that are HTTP statuses
DEFAULT_RETRY_ON = frozenset(
    {"connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"}
)
SUFFIX = "svc.cluster.local"
ROUTE_SEMANTICS = "internal.istio.io/route-semantics"
ROUTE_PARENTS = "internal.istio.io/parents"


@dataclass(frozen=True, slots=True)
class ProxyIdentity:
    pod: str
    app: str
    version: str
    labels: Mapping[str, str]
    namespace: str = "tutorial"
    service_account: str = ""
    gateway: bool = False

    @property
    def workload(self) -> str:
        return self.labels.get("workload", f"{self.app}-{self.version}" if self.version else self.app)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """One route's compiled retry policy (Envoy ``RetryPolicy`` as Istio builds it).

    The defaults are Istio's default policy: 2 retries on connect-failure, refused-stream and
    the gRPC cancelled/unavailable codes, previous hosts avoided.

    Example::

        compile_retry({"attempts": 3, "retryOn": "5xx"}, "current")
        # RetryPolicy(num_retries=3, retry_on=frozenset({'5xx'}), ...)
    """

    num_retries: int = 2
    retry_on: frozenset[str] = DEFAULT_RETRY_ON
    codes: frozenset[int] = frozenset()
    per_try_timeout: float | None = None
    backoff_base: float = 0.025
    previous_hosts: bool = True
    explicit: bool = False  # set by a VirtualService (else Istio's default policy)
    retry_on_order: tuple[str, ...] = ()  # retry_on as written, for config_dump


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One route's compiled ``fault``: percentages in 0–100 (0: never), 0 s / status 0: none."""

    delay_s: float = 0.0
    delay_percent: float = 0.0
    abort_status: int = 0
    abort_percent: float = 0.0


@dataclass(frozen=True, slots=True)
class Destination:
    cluster: str
    host: str
    subset: str
    port: int
    weight: int
    request_headers: Mapping[str, Any] = field(default_factory=dict)  # route[].headers, per destination
    response_headers: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Redirect:
    """A compiled ``redirect`` (Envoy's redirect action): ``port`` 0 derives it per ``derive_port``."""

    status: int = 301
    scheme: str = ""
    authority: str = ""
    port: int = 0
    derive_port: str = ""  # FROM_PROTOCOL_DEFAULT | FROM_REQUEST_PORT | "" (Istio's default: keep none)
    uri: str | None = None
    prefix_rewrite: str | None = None


@dataclass(frozen=True, slots=True)
class Cors:
    """A compiled ``corsPolicy`` (Envoy's CORS filter); origins are string matchers."""

    origins: tuple[Any, ...]
    methods: str = ""
    headers: str = ""
    expose: str = ""
    max_age: str = ""
    credentials: bool = False
    forward_unmatched_preflights: bool = True


@dataclass(frozen=True, slots=True)
class Mirror:
    cluster: str
    host: str
    subset: str
    percent: float


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    matches: MatchSet
    destinations: tuple[Destination, ...]
    total_weight: int
    timeout: float | None = None
    retry: RetryPolicy | None = RetryPolicy()
    fault: FaultSpec | None = None
    mirrors: tuple[Mirror, ...] = ()
    rewrite_uri: str | None = None
    rewrite_authority: str | None = None
    request_headers: Mapping[str, Any] = field(default_factory=dict)
    response_headers: Mapping[str, Any] = field(default_factory=dict)
    direct_response: tuple[int, bytes] | None = None
    origin: str = ""  # "VirtualService tutorial/recommendation"
    redirect: Redirect | None = None
    rewrite_regex: tuple[str, str] | None = None  # (pattern, substitution), Envoy's regex_rewrite
    cors: Cors | None = None
    # Gateway API routes (route semantics "gateway") answer 500 for a missing cluster, others 503
    cluster_not_found_status: int = 503
    gateway_semantics: bool = False


@dataclass(frozen=True, slots=True)
class VirtualHost:
    name: str  # FQDN or external host
    routes: tuple[Route, ...]
    port: int = 8080


@dataclass
class ProxyView:
    """Everything one proxy needs; built once per push."""

    version: int
    identity: ProxyIdentity
    profile: str
    outbound_policy: str
    vhosts: dict[str, VirtualHost]  # alias ("recommendation", "recommendation:8080", FQDN...) -> vhost
    clusters: dict[str, ClusterSpec]
    # gateway proxies: per Gateway server port (80, 443), the VirtualServices bound to it
    gateway_routes: dict[int, tuple[VirtualHost, ...]] = field(default_factory=dict)
    # gateway proxies: HTTPS servers as (hosts, credentialName, tls mode)
    gateway_tls: tuple[tuple[tuple[str, ...], str, str], ...] = ()
    resources: list[dict[str, Any]] = field(default_factory=list)
    trace_sampling: float = 100.0
    access_logging: bool = True
    metric_overrides: MetricOverrides = field(default_factory=MetricOverrides)

    def vhost_for(self, authority: str) -> VirtualHost | None:
        return self.vhosts.get(authority.lower()) or self.vhosts.get(authority.lower().split(":")[0])


def fqdn(host: str, namespace: str) -> str:
    """Istio's short-name resolution: ``recommendation`` in ``tutorial`` → the service FQDN."""
    host = host.lower()
    if host.endswith("." + SUFFIX) or host.endswith(".svc.cluster.local"):
        return host
    parts = host.split(".")
    if len(parts) == 1:
        return f"{host}.{namespace}.{SUFFIX}"
    if len(parts) == 2:
        return f"{host}.{SUFFIX}"
    if len(parts) == 3 and parts[2] == "svc":
        return f"{host}.cluster.local"
    return host


def _aliases(name: str, namespace: str, port: int) -> list[str]:
    names = [name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.{SUFFIX}"]
    return names + [f"{n}:{port}" for n in names]


def compile_retry(spec: Mapping[str, Any] | None, profile: str) -> RetryPolicy | None:
    """Istio's translation of ``HTTPRetry`` (and its default policy when ``retries`` is unset).

    ``None`` means no retry at all: ``attempts`` 0 or unset disables retries (Istio reads the
    unset int as 0). The default policy retries an application's 503 only in the tutorial-era
    profile (Istio >= 1.24 excludes it). Otherwise Istio starts from the default policy and
    overrides field by field; integers in ``retryOn`` become retriable status codes.

    Example::

        compile_retry(None, "tutorial").codes                       # frozenset({503})
        compile_retry({"attempts": 0}, "current")                   # None
        compile_retry({"attempts": 3, "retryOn": "gateway-error,409"}, "current").codes  # {409}
    """
    default_codes = frozenset({503}) if profile == "tutorial" else frozenset()
    if spec is None:
        return RetryPolicy(codes=default_codes)
    attempts = int(spec.get("attempts") or 0)
    if attempts <= 0:
        return None
    retry_on, codes = DEFAULT_RETRY_ON, default_codes
    if str(spec.get("retryOn") or "").strip():
        names, nums, order = set(), set(), []
        for item in str(spec["retryOn"]).split(","):
            item = item.strip()
            if item.isdigit() and int(item) in _HTTP_STATUSES:
                nums.add(int(item))
            elif item:
                names.add(item)
                order.append(item)
        if nums:
            names.add("retriable-status-codes")
            order.append("retriable-status-codes")
        retry_on, codes = frozenset(names), frozenset(nums)
    ignore_previous = spec.get("retryIgnorePreviousHosts")
    return RetryPolicy(
        num_retries=attempts,
        retry_on=retry_on,
        codes=codes,
        per_try_timeout=_dur(spec.get("perTryTimeout")),
        backoff_base=_dur(spec.get("backoff")) or 0.025,
        previous_hosts=True if ignore_previous is None else bool(ignore_previous),
        explicit=True,
        retry_on_order=tuple(dict.fromkeys(order)) if str(spec.get("retryOn") or "").strip() else (),
    )


def _percent(block: Mapping[str, Any]) -> float:
    # Istio uses ``percentage`` when set, else the deprecated integer ``percent`` (0 when unset)
    if "percentage" in block:
        return float((block.get("percentage") or {}).get("value", 0.0))
    if "percent" in block:
        return float(block["percent"])
    return 0.0  # unset percentage: Istio injects the fault into no request


def compile_fault(spec: Mapping[str, Any] | None) -> FaultSpec | None:
    """Istio's ``TranslateFault``: an unset percentage injects nothing; ``percent`` is the old int.

    Example::

        compile_fault({"abort": {"httpStatus": 503, "percentage": {"value": 50}}})
        # FaultSpec(delay_s=0.0, delay_percent=0.0, abort_status=503, abort_percent=50.0)
    """
    if not spec:
        return None
    delay, abort = spec.get("delay") or {}, spec.get("abort") or {}
    return FaultSpec(
        delay_s=_dur(delay.get("fixedDelay")) or 0.0 if delay else 0.0,
        delay_percent=_percent(delay) if delay else 0.0,
        abort_status=int(abort.get("httpStatus", 0)) if abort else 0,
        abort_percent=_percent(abort) if abort else 0.0,
    )


def _by_kind(resources: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in resources if r.get("kind") == kind]


def compile_view(snapshot: Mapping[str, Any], me: ProxyIdentity) -> ProxyView:
    """Build one proxy's view from the control plane's snapshot (see ControlPlane.snapshot)."""
    profile = snapshot.get("profile", "current")
    resources: list[dict[str, Any]] = list(snapshot.get("resources", []))
    ns = me.namespace
    endpoints = [Endpoint(**{**e, "labels": dict(e.get("labels", {}))}) for e in snapshot.get("endpoints", [])]
    services: dict[str, dict[str, Any]] = {}
    vhosts: dict[str, VirtualHost] = {}
    clusters: dict[str, ClusterSpec] = {}

    for svc in snapshot.get("services", []):
        host = fqdn(svc["name"], svc.get("namespace", ns))
        services[host] = svc

    # DestinationRules → clusters, per service and subset
    drs: dict[str, dict[str, Any]] = {}
    for dr in _by_kind(resources, "DestinationRule"):
        host = fqdn(dr["spec"]["host"], dr["metadata"].get("namespace", ns))
        drs.setdefault(host, dr)  # the oldest wins, like Istio

    internet: dict[str, list[Any]] = snapshot.get("internet", {})
    externals: dict[str, tuple[int, tuple[Endpoint, ...]]] = {}
    host_namespace: dict[str, str] = {}
    for se in _by_kind(resources, "ServiceEntry"):
        spec = se["spec"]
        se_ns = se["metadata"].get("namespace", ns)
        for h in spec.get("hosts", []):
            ports = spec.get("ports") or [{"number": 80}]
            port = int(ports[0].get("number", 80))
            eps: list[Endpoint] = []
            for e in spec.get("endpoints") or []:
                addr = internet.get(e.get("address", ""))
                if addr:
                    eps.append(Endpoint(pod=e["address"], address=addr[0], port=int(addr[1]), app=h))
            if not eps and h in internet:
                eps.append(Endpoint(pod=h, address=internet[h][0], port=int(internet[h][1]), app=h))
            if spec.get("workloadSelector") is not None:
                eps += _selected_workloads(spec, se_ns, resources, endpoints, h)
            externals[h] = (port, tuple(eps))
            host_namespace[h] = se_ns

    def add_clusters(host: str, port: int, eps: tuple[Endpoint, ...], external: bool) -> None:
        dr = drs.get(host)
        spec = (dr or {}).get("spec", {})
        top = spec.get("trafficPolicy") or {}
        origin = f"DestinationRule {dr['metadata'].get('namespace', ns)}/{dr['metadata']['name']}" if dr else ""
        clusters[cluster_name(host, "", port)] = cluster_spec(host, "", port, eps, top, profile, origin, external)
        for subset in spec.get("subsets") or []:
            labels = subset.get("labels") or {}
            sub_eps = tuple(e for e in eps if all(e.labels.get(k) == v for k, v in labels.items()))
            policy = merge_policy(top, subset.get("trafficPolicy") or {})
            name = cluster_name(host, subset["name"], port)
            clusters[name] = cluster_spec(host, subset["name"], port, sub_eps, policy, profile, origin, external)

    for host, svc in services.items():
        port = int(svc.get("port", 8080))
        add_clusters(host, port, tuple(e for e in endpoints if _selects(svc, e)), False)
        default = _default_vhost(host, port, profile)
        for alias in _aliases(svc["name"], svc.get("namespace", ns), port):
            vhosts[alias] = default
    for host, (port, external_eps) in externals.items():
        add_clusters(host, port, external_eps, True)
        default = _default_vhost(host, port, profile)
        vhosts[host] = vhosts[f"{host}:{port}"] = default

    # VirtualServices bound to the mesh → sidecar routes; bound to a Gateway → gateway routes
    gateway_ports = _gateways_selecting(resources, me) if me.gateway else {}
    gateway_vhosts: dict[int, list[VirtualHost]] = {}
    claimed: set[str] = set()
    for vs in _by_kind(resources, "VirtualService"):
        vs_ns = vs["metadata"].get("namespace", ns)
        spec = vs["spec"]
        bound = {qualify_gateway(g, vs_ns) for g in spec.get("gateways") or ["mesh"]}
        origin = f"VirtualService {vs_ns}/{vs['metadata']['name']}"
        semantics = (vs["metadata"].get("annotations") or {}).get(ROUTE_SEMANTICS) == "gateway"
        if semantics:
            parents = (vs["metadata"].get("annotations") or {}).get(ROUTE_PARENTS, "")
            kind, _, owner = parents.split(",")[0].partition("/")  # "HTTPRoute/<name>.<namespace>"
            name, _, owner_ns = owner.rpartition(".")
            origin = f"{kind or 'HTTPRoute'} {owner_ns or vs_ns}/{name or owner} (generated {vs['metadata']['name']})"
        for h in spec.get("hosts", []):
            routes = tuple(
                _route(r, i, vs_ns, profile, services, externals, origin, semantics)
                for i, r in enumerate(spec.get("http") or [])
            )
            if me.gateway:
                # a gateway matches the Host it was sent, as written in the VirtualService
                for gw in bound & set(gateway_ports):
                    for server_port in gateway_ports[gw]:
                        gateway_vhosts.setdefault(server_port, []).append(VirtualHost(h.lower(), routes, server_port))
                continue
            host = h if h == "*" or h in externals else fqdn(h, vs_ns)
            port = int(services.get(host, {}).get("port", 8080)) if host in services else 80
            vhost = VirtualHost(host, routes, port)
            if not me.gateway and "mesh" in bound and host not in claimed and host != "*":
                claimed.add(host)  # two VirtualServices for one host: the oldest wins
                if host in services:
                    for alias in _aliases(services[host]["name"], services[host].get("namespace", ns), port):
                        vhosts[alias] = vhost
                else:
                    vhosts[host] = vhosts[f"{host}:{port}"] = vhost

    outbound_policy = snapshot.get("outbound_policy", "REGISTRY_ONLY")
    sidecar = None if me.gateway else sidecar_for(resources, me)
    if sidecar is not None:
        sidecar_spec = sidecar.get("spec") or {}
        outbound_policy = (sidecar_spec.get("outboundTrafficPolicy") or {}).get("mode", outbound_policy)
        hosts = [h for e in sidecar_spec.get("egress") or [] for h in e.get("hosts") or []]
        if hosts:
            sidecar_ns = sidecar["metadata"].get("namespace", ns)
            vhosts = {
                alias: v for alias, v in vhosts.items()
                if egress_visible(v.name, host_namespace.get(v.name) or _namespace_of_fqdn(v.name, ns), hosts,
                                  sidecar_ns)
            }

    sampling, access_logging = 100.0, True
    for tel in _by_kind(resources, "Telemetry"):
        for tracing in tel["spec"].get("tracing") or []:
            if "randomSamplingPercentage" in tracing:
                sampling = float(tracing["randomSamplingPercentage"])
        for logging in tel["spec"].get("accessLogging") or []:
            if "disabled" in logging:
                access_logging = not logging["disabled"]
    return ProxyView(
        version=int(snapshot.get("version", 0)),
        identity=me,
        profile=profile,
        outbound_policy=outbound_policy,
        vhosts=vhosts,
        clusters=clusters,
        gateway_routes={port: tuple(v) for port, v in gateway_vhosts.items()},
        gateway_tls=_gateway_tls(resources, me) if me.gateway else (),
        resources=resources,
        trace_sampling=sampling,
        access_logging=access_logging,
        metric_overrides=overrides_for(resources, me.namespace, me.labels),
    )


def _selects(svc: Mapping[str, Any], ep: Endpoint) -> bool:
    """A Service's endpoints are the pods its selector picks (none without a selector)."""
    selector = svc.get("selector", {"app": svc["name"]})
    return bool(selector) and all(ep.labels.get(k) == v for k, v in selector.items())


def _labels_match(selector: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    return all(str(labels.get(k)) == str(v) for k, v in selector.items())


def sidecar_for(resources: list[dict[str, Any]], me: ProxyIdentity) -> dict[str, Any] | None:
    """The Sidecar that configures ``me``, as Istio picks it: the oldest one in the workload's namespace
    whose workloadSelector matches its labels, else the namespace's one without a selector, else the
    root namespace's one without a selector."""
    sidecars = _by_kind(resources, "Sidecar")

    def in_ns(namespace: str) -> list[dict[str, Any]]:
        return [s for s in sidecars if s["metadata"].get("namespace", me.namespace) == namespace]

    for s in in_ns(me.namespace):
        labels = ((s.get("spec") or {}).get("workloadSelector") or {}).get("labels")
        if labels and _labels_match(labels, me.labels):
            return s
    for namespace in (me.namespace, ROOT_NAMESPACE):
        for s in in_ns(namespace):
            if not ((s.get("spec") or {}).get("workloadSelector") or {}).get("labels"):
                return s
    return None


def _namespace_of_fqdn(host: str, default: str) -> str:
    parts = host.split(".")
    return parts[1] if len(parts) >= 3 and parts[2] == "svc" else default


def egress_visible(host: str, namespace: str, egress_hosts: list[str], sidecar_ns: str) -> bool:
    """Is ``host`` (of ``namespace``) among a Sidecar's egress hosts (``ns/dnsName``, ``*/``, ``./``)?"""
    for entry in egress_hosts:
        ns, _, name = entry.partition("/")
        if ns == "~":
            continue
        if ns not in ("*", namespace) and not (ns == "." and namespace == sidecar_ns):
            continue
        if name == "*" or name == host or (name.startswith("*") and host.endswith(name[1:])):
            return True
    return False


def _selected_workloads(
    spec: Mapping[str, Any], namespace: str, resources: list[dict[str, Any]], pods: list[Endpoint], host: str
) -> list[Endpoint]:
    """Endpoints a ServiceEntry's workloadSelector selects: the mesh's pods with those labels, and
    WorkloadEntries of its namespace (a loopback address only: the local mesh never leaves 127.0.0.1)."""
    selector = (spec.get("workloadSelector") or {}).get("labels") or {}
    ports = spec.get("ports") or [{"number": 80}]
    out = [e for e in pods if _labels_match(selector, e.labels)]
    for we in _by_kind(resources, "WorkloadEntry"):
        we_spec = we.get("spec") or {}
        if we["metadata"].get("namespace", namespace) != namespace or not _labels_match(
            selector, we_spec.get("labels") or {}
        ):
            continue
        address = str(we_spec.get("address", ""))
        if not address.startswith("127.") and address != "::1":
            continue
        named = we_spec.get("ports") or {}
        first = ports[0]
        port = int(named.get(first.get("name", ""), first.get("targetPort", first.get("number", 80))))
        out.append(
            Endpoint(pod=we["metadata"]["name"], address=address, port=port, app=host,
                     labels=dict(we_spec.get("labels") or {}))
        )
    return out


def _default_vhost(host: str, port: int, profile: str) -> VirtualHost:
    """The route Istio builds for a service no VirtualService names (with the default retry policy)."""
    dest = Destination(cluster_name(host, "", port), host, "", port, 100)
    return VirtualHost(host, (Route("default", MatchSet(), (dest,), 100, retry=compile_retry(None, profile)),), port)


def _route(
    spec: Mapping[str, Any],
    index: int,
    ns: str,
    profile: str,
    services: Mapping[str, Any],
    externals: Mapping[str, Any],
    origin: str,
    gateway_semantics: bool = False,
) -> Route:
    def resolve(dest: Mapping[str, Any]) -> tuple[str, str, int]:
        raw = str(dest.get("host", ""))
        host = raw if raw in externals else fqdn(raw, ns)
        default_port = services[host].get("port", 8080) if host in services else externals.get(host, (80,))[0]
        port = int((dest.get("port") or {}).get("number", default_port))
        return host, str(dest.get("subset", "")), port

    dests = []
    for d in spec.get("route") or []:
        host, subset, port = resolve(d.get("destination") or {})
        weight = int(d.get("weight", 100 if len(spec.get("route") or []) == 1 else 0))
        if len(spec.get("route") or []) == 1:
            weight = 100  # a single destination takes all traffic whatever its weight
        if weight > 0:
            ops = d.get("headers") or {}
            dests.append(Destination(cluster_name(host, subset, port), host, subset, port, weight,
                                     ops.get("request") or {}, ops.get("response") or {}))
    mirrors = []
    if spec.get("mirror"):
        host, subset, _ = resolve(spec["mirror"])
        pct = float((spec.get("mirrorPercentage") or {}).get("value", 100.0))
        mirrors.append(Mirror(cluster_name(host, subset, _), host, subset, pct))
    for m in spec.get("mirrors") or []:
        host, subset, port = resolve(m.get("destination") or {})
        pct = float((m.get("percentage") or {}).get("value", 100.0))
        mirrors.append(Mirror(cluster_name(host, subset, port), host, subset, pct))
    rewrite = spec.get("rewrite") or {}
    headers = spec.get("headers") or {}
    direct = spec.get("directResponse")
    fault = compile_fault(spec.get("fault"))
    regex = rewrite.get("uriRegexRewrite")
    return Route(
        name=str(spec.get("name") or f"#{index}"),
        matches=MatchSet(tuple(compile_match(m, ns, gateway_semantics) for m in spec.get("match") or [])),
        destinations=tuple(dests),
        total_weight=sum(d.weight for d in dests),
        timeout=_dur(spec.get("timeout")),
        retry=compile_retry(spec.get("retries"), profile),
        fault=fault,
        mirrors=tuple(mirrors),
        rewrite_uri=rewrite.get("uri"),
        rewrite_authority=rewrite.get("authority"),
        request_headers=headers.get("request") or {},
        response_headers=headers.get("response") or {},
        direct_response=(int(direct["status"]), str((direct.get("body") or {}).get("string", "")).encode())
        if direct
        else None,
        origin=origin,
        redirect=_redirect(spec["redirect"]) if spec.get("redirect") else None,
        rewrite_regex=(str(regex.get("match", "")), str(regex.get("rewrite", ""))) if regex else None,
        cors=_cors(spec["corsPolicy"]) if spec.get("corsPolicy") else None,
        cluster_not_found_status=500 if gateway_semantics else 503,
        gateway_semantics=gateway_semantics,
    )


def _redirect(spec: Mapping[str, Any]) -> Redirect:
    return Redirect(
        status=int(spec.get("redirectCode") or 301),
        scheme=str(spec.get("scheme") or ""),
        authority=str(spec.get("authority") or ""),
        port=int(spec.get("port") or 0),
        derive_port=str(spec.get("derivePort") or ""),
        uri=spec.get("uri"),
        prefix_rewrite=spec.get("prefixRewrite"),
    )


def _cors(spec: Mapping[str, Any]) -> Cors:
    return Cors(
        origins=tuple(string_matcher(m) for m in spec.get("allowOrigins") or []),
        methods=",".join(spec.get("allowMethods") or []),
        headers=",".join(spec.get("allowHeaders") or []),
        expose=",".join(spec.get("exposeHeaders") or []),
        max_age=str(int(_dur(spec.get("maxAge")) or 0)) if spec.get("maxAge") else "",
        credentials=bool(spec.get("allowCredentials")),
        forward_unmatched_preflights=str(spec.get("unmatchedPreflights", "FORWARD")) != "IGNORE",
    )


def _selecting(resources: list[dict[str, Any]], me: ProxyIdentity) -> list[dict[str, Any]]:
    return [
        gw for gw in _by_kind(resources, "Gateway")
        if all(me.labels.get(k) == v for k, v in (gw["spec"].get("selector") or {}).items())
    ]


def _gateways_selecting(resources: list[dict[str, Any]], me: ProxyIdentity) -> dict[str, set[int]]:
    """Gateway name → the server ports it opens on this gateway proxy (80 plain, 443 HTTPS)."""
    names: dict[str, set[int]] = {}
    for gw in _selecting(resources, me):
        name = f"{gw['metadata'].get('namespace', 'tutorial')}/{gw['metadata']['name']}"
        for server in gw["spec"].get("servers") or []:
            https = str((server.get("port") or {}).get("protocol", "HTTP")).upper() == "HTTPS"
            names.setdefault(name, set()).add(443 if https else 80)
    return names


def _gateway_tls(resources: list[dict[str, Any]], me: ProxyIdentity) -> tuple[tuple[tuple[str, ...], str, str], ...]:
    out = []
    for gw in _selecting(resources, me):
        for server in gw["spec"].get("servers") or []:
            tls = server.get("tls") or {}
            if str((server.get("port") or {}).get("protocol", "")).upper() == "HTTPS" and tls:
                hosts = tuple(h.split("/")[-1].lower() for h in server.get("hosts") or ["*"])
                out.append((hosts, str(tls.get("credentialName", "")), str(tls.get("mode", "SIMPLE"))))
    return tuple(out)
