"""One proxy's compiled view rendered as Envoy's admin ``/config_dump`` (snake_case, Istio's names).

Everything here is read from the structures the proxy routes with (:class:`ProxyView`, its
:class:`ClusterSpec` and :class:`Route` objects, the workload certificate), never from a second
description of the config: a cluster's circuit-breaker thresholds are the :class:`PoolLimits` the
pool enforces, a route's weights are the ones the router draws from. The names follow Istio's
generator: ``outbound|8080|v1|recommendation.tutorial.svc.cluster.local``, ``inbound|8080||``,
route configurations named by port with virtual hosts ``<fqdn>:<port>``, the static
``BlackHoleCluster`` / ``PassthroughCluster``, and ``metadata.filter_metadata.istio.config``
pointing at the resource a piece came from.

Example::

    dump = config_dump(sidecar.view, DumpContext(server_modes={}, cert=None), include_eds=True)
    [c["@type"].rsplit(".", 1)[1] for c in dump["configs"]]
    # ['BootstrapConfigDump', 'ClustersConfigDump', 'EndpointsConfigDump', 'ListenersConfigDump', ...]
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from meshkit.backends.local.proxy.cluster import UNLIMITED, ClusterSpec, Endpoint
from meshkit.backends.local.proxy.config import (
    DEFAULT_RETRY_ON,
    SUFFIX,
    FaultSpec,
    ProxyView,
    RetryPolicy,
    Route,
    VirtualHost,
)
from meshkit.backends.local.proxy.matching import Match

ADMIN = "type.googleapis.com/envoy.admin.v3."
CLUSTER_T = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LISTENER_T = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_T = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLA_T = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET_T = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
HCM = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"
FAULT = "envoy.filters.http.fault"
ISTIO_VERSION = "1.28.0"
SERVICE_PORT = 8080
# Envoy's defaults for the high-priority thresholds: Istio sets only the default priority's
HIGH_PRIORITY = {"max_connections": 1024, "max_pending_requests": 1024, "max_requests": 1024, "max_retries": 3}
_ORDERED_DEFAULT_RETRY_ON = ("connect-failure", "refused-stream", "unavailable", "cancelled",
                             "retriable-status-codes")
REDACTED = base64.b64encode(b"[redacted]").decode()


@dataclass(frozen=True)
class DumpContext:
    """What a dump needs besides the view: peers' mTLS modes, the workload cert, update times."""

    server_modes: Mapping[str, str] = field(default_factory=dict)  # pod -> DISABLE | PERMISSIVE | STRICT
    inbound_mode: str = "PERMISSIVE"
    cert: Any = None  # WorkloadCert (None: no secrets, e.g. istiod's own view)
    cert_updated: float = 0.0
    last_updated: float = 0.0  # when the proxy took this view


def iso(ts: float) -> str:
    """Envoy's ``last_updated`` form: ``2026-12-01T15:43:56.123Z``."""
    moment = datetime.fromtimestamp(ts or 0, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def duration(seconds: float | None) -> str:
    """A protobuf JSON duration (``2s``, ``0.500s``)."""
    s = float(seconds or 0.0)
    if s == int(s):
        return f"{int(s)}s"
    return f"{s:.9f}".rstrip("0") + "s"


def config_path(origin: str) -> str:
    """``VirtualService tutorial/recommendation`` → ``/apis/networking.istio.io/v1/namespaces/…``."""
    kind, _, ref = origin.partition(" ")
    ref, _, generated = ref.partition(" (generated ")
    ns, _, name = ref.partition("/")
    if generated:  # a Gateway API route: Istio's metadata names the VirtualService it generated
        kind, name = "VirtualService", generated.rstrip(")")
    plural = {"VirtualService": "virtual-service", "DestinationRule": "destination-rule",
              "ServiceEntry": "service-entry", "Gateway": "gateway"}.get(kind, kind.lower())
    return f"/apis/networking.istio.io/v1/namespaces/{ns}/{plural}/{name}"


def _percent(value: float) -> dict[str, Any]:
    # Istio: a percentage becomes a FractionalPercent out of a million
    return {"numerator": round(value * 10_000), "denominator": "MILLION"}


def node_id(view: ProxyView) -> str:
    me = view.identity
    kind = "router" if me.gateway else "sidecar"
    return f"{kind}~127.0.0.1~{me.pod}.{me.namespace}~{me.namespace}.svc.cluster.local"


# clusters -------------------------------------------------------------------------------------------


def _thresholds(spec: ClusterSpec) -> dict[str, Any]:
    lim = spec.limits
    return {"thresholds": [{
        "max_connections": lim.max_connections,
        "max_pending_requests": lim.max_pending_requests,
        "max_requests": lim.max_requests,
        "max_retries": lim.max_retries,
        "track_remaining": True,
    }]}


def _outlier(spec: ClusterSpec) -> dict[str, Any]:
    od = spec.outlier
    assert od is not None
    out: dict[str, Any] = {}
    if od.consecutive_5xx:
        out["consecutive_5xx"] = od.consecutive_5xx
    out["interval"] = duration(od.interval)
    out["base_ejection_time"] = duration(od.base_ejection)
    out["max_ejection_percent"] = round(od.max_ejection_percent)
    out["enforcing_consecutive_5xx"] = 100 if od.consecutive_5xx else 0
    out["enforcing_success_rate"] = 0
    if od.consecutive_gateway:
        out["consecutive_gateway_failure"] = od.consecutive_gateway
        out["enforcing_consecutive_gateway_failure"] = 100
    return out


def _spiffe(ep: Endpoint) -> str:
    return ep.principal or ""


def _tls_socket(sans: Sequence[str], sni: str) -> dict[str, Any]:
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": {
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                "alpn_protocols": ["istio-peer-exchange", "istio"],
                "tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": {"ads": {}}}],
                "combined_validation_context": {
                    "default_validation_context": {
                        "match_typed_subject_alt_names": [
                            {"san_type": "URI", "matcher": {"exact": san}} for san in sorted(set(sans))
                        ]
                    },
                    "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": {"ads": {}}},
                },
            },
            "sni": sni,
        },
    }


def _transport(spec: ClusterSpec, ctx: DumpContext) -> dict[str, Any]:
    """Istio's auto mTLS (a ``tlsMode: istio`` match) or the DestinationRule's explicit mode."""
    sni = f"outbound_.{spec.name.split('|')[1]}_.{spec.subset}_.{spec.service}"
    sans = [_spiffe(e) for e in spec.endpoints if e.principal]
    if spec.external or spec.tls == "DISABLE":
        if spec.tls in ("SIMPLE", "MUTUAL"):
            return {"transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": spec.service}}}
        return {}
    if spec.tls == "ISTIO_MUTUAL":
        return {"transport_socket": _tls_socket(sans, sni)}
    return {"transport_socket_matches": [
        {"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transport_socket": _tls_socket(sans, sni)},
        {"name": "tlsMode-disabled", "match": {},
         "transport_socket": {"name": "envoy.transport_sockets.raw_buffer", "typed_config": {
             "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}}},
    ]}


def outbound_cluster(spec: ClusterSpec, ctx: DumpContext) -> dict[str, Any]:
    """The Cluster Istio generates for one service (or subset) port, from the spec the pool enforces."""
    c: dict[str, Any] = {"@type": CLUSTER_T, "name": spec.name}
    c["type"] = "STRICT_DNS" if spec.external and not spec.endpoints else "EDS"
    if c["type"] == "EDS":
        c["eds_cluster_config"] = {"eds_config": {"ads": {}, "initial_fetch_timeout": "0s",
                                                  "resource_api_version": "V3"}, "service_name": spec.name}
    c["connect_timeout"] = duration(spec.limits.connect_timeout)
    if spec.lb != "ROUND_ROBIN":  # proto3 JSON leaves the enum's zero value out
        c["lb_policy"] = spec.lb
    c["circuit_breakers"] = _thresholds(spec)
    if spec.outlier is not None:
        c["outlier_detection"] = _outlier(spec)
        c["common_lb_config"] = {"healthy_panic_threshold": {"value": spec.outlier.min_health_percent}}
    http_opts: dict[str, Any] = {"explicit_http_config": {"http_protocol_options": {}}}
    common: dict[str, Any] = {"idle_timeout": "3600s"}
    if spec.limits.max_requests_per_connection:
        common["max_requests_per_connection"] = spec.limits.max_requests_per_connection
    http_opts["common_http_protocol_options"] = common
    c["typed_extension_protocol_options"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions", **http_opts}}
    c.update(_transport(spec, ctx))
    meta: dict[str, Any] = {}
    if spec.origin:
        meta["config"] = config_path(spec.origin)
    if spec.subset:
        meta["subset"] = spec.subset
    name, _, rest = spec.service.partition(".")
    meta["services"] = [{"host": spec.service, "name": name if not spec.external else spec.service,
                         "namespace": rest.split(".")[0] if not spec.external else ""}]
    c["metadata"] = {"filter_metadata": {"istio": meta}}
    c["alt_stat_name"] = f"{spec.name};"
    return c


def static_cluster(name: str, kind: str, view: ProxyView) -> dict[str, Any]:
    c: dict[str, Any] = {"@type": CLUSTER_T, "name": name, "type": kind, "connect_timeout": "10s"}
    if name == "PassthroughCluster":
        c["lb_policy"] = "CLUSTER_PROVIDED"
        c["circuit_breakers"] = {"thresholds": [{"max_connections": UNLIMITED, "max_pending_requests": UNLIMITED,
                                                 "max_requests": UNLIMITED, "max_retries": UNLIMITED}]}
    if name.startswith("inbound|"):
        c["type"] = "ORIGINAL_DST"
        c["lb_policy"] = "CLUSTER_PROVIDED"
        c["metadata"] = {"filter_metadata": {"istio": {"services": [{
            "host": f"{view.identity.app}.{view.identity.namespace}.{SUFFIX}", "name": view.identity.app,
            "namespace": view.identity.namespace}]}}}
        c["upstream_bind_config"] = {"source_address": {"address": "127.0.0.6", "port_value": 0}}
    return c


def clusters_dump(view: ProxyView, ctx: DumpContext) -> dict[str, Any]:
    version, updated = str(view.version), iso(ctx.last_updated)
    static = [{"cluster": {"@type": CLUSTER_T, "name": n, "type": "STATIC", "connect_timeout": "1s"},
               "last_updated": updated} for n in ("agent", "prometheus_stats", "sds-grpc", "xds-grpc")]
    dynamic = [outbound_cluster(view.clusters[n], ctx) for n in sorted(view.clusters)]
    dynamic.append(static_cluster("BlackHoleCluster", "STATIC", view))
    dynamic.append(static_cluster("PassthroughCluster", "ORIGINAL_DST", view))
    if not view.identity.gateway:
        dynamic.append(static_cluster("InboundPassthroughCluster", "ORIGINAL_DST", view))
        dynamic.append(static_cluster(f"inbound|{SERVICE_PORT}||", "ORIGINAL_DST", view))
    return {
        "@type": ADMIN + "ClustersConfigDump",
        "version_info": version,
        "static_clusters": static,
        "dynamic_active_clusters": [{"version_info": version, "cluster": c, "last_updated": updated}
                                    for c in dynamic],
    }


def endpoints_dump(view: ProxyView, ctx: DumpContext) -> dict[str, Any]:
    configs = []
    for name in sorted(view.clusters):
        spec = view.clusters[name]
        lb = []
        for ep in spec.endpoints:
            if not ep.ready:
                continue  # Istio does not send unready endpoints (PILOT_SEND_UNHEALTHY_ENDPOINTS=false)
            meta: dict[str, Any] = {}
            if not spec.external:
                meta["istio"] = {"workload": f"{ep.workload or ep.app};{view.identity.namespace};{ep.app};"
                                 f"{ep.version};Kubernetes"}
                if ep.tls_port and ctx.server_modes.get(ep.pod, "PERMISSIVE") != "DISABLE":
                    meta["envoy.transport_socket_match"] = {"tlsMode": "istio"}
            lb.append({"endpoint": {"address": {"socket_address": {"address": ep.address, "port_value": ep.port}}},
                       "health_status": "HEALTHY", "metadata": {"filter_metadata": meta},
                       "load_balancing_weight": 1})
        cla: dict[str, Any] = {"@type": CLA_T, "cluster_name": name}
        if lb:
            cla["endpoints"] = [{"locality": {}, "lb_endpoints": lb}]
        configs.append({"endpoint_config": cla})
    return {"@type": ADMIN + "EndpointsConfigDump", "dynamic_endpoint_configs": configs}


# routes ---------------------------------------------------------------------------------------------


def _string_match(spec: Mapping[str, Any]) -> dict[str, Any]:
    if "exact" in spec:
        return {"exact": str(spec["exact"])}
    if "prefix" in spec:
        return {"prefix": str(spec["prefix"])}
    if "regex" in spec:
        return {"safe_regex": {"regex": str(spec["regex"])}}
    return {}


def _route_match(block: Match | None) -> dict[str, Any]:
    spec = block.spec if block is not None else {}
    m: dict[str, Any] = {}
    uri = spec.get("uri") or {}
    if "exact" in uri:
        m["path"] = str(uri["exact"])
    elif "regex" in uri:
        m["safe_regex"] = {"regex": str(uri["regex"])}
    else:
        m["prefix"] = str(uri.get("prefix", "/"))
    m["case_sensitive"] = not spec.get("ignoreUriCase", False)
    headers = []
    for name, value in (spec.get("headers") or {}).items():
        sm = _string_match(value or {})
        headers.append({"name": name.lower(), "string_match": sm} if sm else
                       {"name": name.lower(), "present_match": True})
    for name, value in (spec.get("withoutHeaders") or {}).items():
        sm = _string_match(value or {})
        h = {"name": name.lower(), "string_match": sm} if sm else {"name": name.lower(), "present_match": True}
        headers.append({**h, "invert_match": True})
    for key, value in (("method", spec.get("method")), ("authority", spec.get("authority"))):
        if value:
            headers.append({"name": ":" + key, "string_match": _string_match(value)})
    if headers:
        m["headers"] = headers
    if spec.get("queryParams"):
        m["query_parameters"] = [{"name": k, "string_match": _string_match(v or {})}
                                 for k, v in spec["queryParams"].items()]
    return m


def _retry(policy: RetryPolicy) -> dict[str, Any]:
    if policy.explicit and policy.retry_on_order:
        on = list(policy.retry_on_order)
    elif policy.retry_on == DEFAULT_RETRY_ON:
        on = list(_ORDERED_DEFAULT_RETRY_ON)
    else:
        on = sorted(policy.retry_on)
    r: dict[str, Any] = {"retry_on": ",".join(on), "num_retries": policy.num_retries}
    if policy.per_try_timeout:
        r["per_try_timeout"] = duration(policy.per_try_timeout)
    if policy.previous_hosts:
        r["retry_host_predicate"] = [{"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}]
        r["host_selection_retry_max_attempts"] = "5"
    if policy.codes:
        r["retriable_status_codes"] = sorted(policy.codes)
    if abs(policy.backoff_base - 0.025) > 1e-9:
        r["retry_back_off"] = {"base_interval": duration(policy.backoff_base)}
    return r


def _fault(fault: FaultSpec) -> dict[str, Any]:
    f: dict[str, Any] = {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}
    if fault.delay_s:
        f["delay"] = {"fixed_delay": duration(fault.delay_s), "percentage": _percent(fault.delay_percent)}
    if fault.abort_status:
        f["abort"] = {"http_status": fault.abort_status, "percentage": _percent(fault.abort_percent)}
    return f


def _headers_to(ops: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, target in (("add", "append_if_exists_or_add"), ("set", "overwrite_if_exists_or_add")):
        items = [{"header": {"key": k, "value": str(v)}, "append_action": target.upper()}
                 for k, v in (ops.get(key) or {}).items()]
        if items:
            out.setdefault("add", []).extend(items)
    if ops.get("remove"):
        out["remove"] = list(ops["remove"])
    return out


def envoy_routes(route: Route, vhost: VirtualHost, default_timeout: str = "0s") -> list[dict[str, Any]]:
    """One VirtualService http rule → Envoy routes (one per match block, as Istio does)."""
    blocks: Sequence[Match | None] = route.matches.blocks or (None,)
    out = []
    for block in blocks:
        r: dict[str, Any] = {}
        if route.name and not route.name.startswith("#"):
            r["name"] = route.name if block is None or not block.name else f"{block.name}"
        r["match"] = _route_match(block)
        if route.direct_response is not None:
            status, body = route.direct_response
            r["direct_response"] = {"status": status}
            if body:
                r["direct_response"]["body"] = {"inline_string": body.decode(errors="replace")}
        else:
            action: dict[str, Any] = {}
            dests = route.destinations
            if len(dests) == 1:
                action["cluster"] = dests[0].cluster
            elif dests:
                action["weighted_clusters"] = {"clusters": [{"name": d.cluster, "weight": d.weight} for d in dests]}
            else:
                action["cluster_not_found_response_code"] = "SERVICE_UNAVAILABLE"
            timeout = duration(route.timeout) if route.timeout else default_timeout
            action["timeout"] = timeout
            if route.retry is not None:
                action["retry_policy"] = _retry(route.retry)
            if route.mirrors:
                action["request_mirror_policies"] = [
                    {"cluster": m.cluster, "runtime_fraction": {"default_value": _percent(m.percent)},
                     "trace_sampled": False} for m in route.mirrors]
            if route.rewrite_uri is not None:
                action["prefix_rewrite"] = route.rewrite_uri
            if route.rewrite_authority:
                action["host_rewrite_literal"] = route.rewrite_authority
            action["max_grpc_timeout"] = timeout
            r["route"] = action
        if route.origin:
            r["metadata"] = {"filter_metadata": {"istio": {"config": config_path(route.origin)}}}
        r["decorator"] = {"operation": f"{vhost.name}:{vhost.port}/*"}
        req_ops = _headers_to(route.request_headers)
        if req_ops.get("add"):
            r["request_headers_to_add"] = req_ops["add"]
        if req_ops.get("remove"):
            r["request_headers_to_remove"] = req_ops["remove"]
        resp_ops = _headers_to(route.response_headers)
        if resp_ops.get("add"):
            r["response_headers_to_add"] = resp_ops["add"]
        if resp_ops.get("remove"):
            r["response_headers_to_remove"] = resp_ops["remove"]
        if route.fault is not None:
            r["typed_per_filter_config"] = {FAULT: _fault(route.fault)}
        out.append(r)
    return out


def _domains(vhost: VirtualHost, aliases: Sequence[str]) -> list[str]:
    """Istio's order: the FQDN, the short name, ``name.ns.svc``, ``name.ns`` (no port variants)."""
    fq = vhost.name
    if fq.endswith("." + SUFFIX):
        short, ns = fq.split(".")[:2]
        wanted = [fq, short, f"{short}.{ns}.svc", f"{short}.{ns}"]
        return [d for d in wanted if d == fq or d in aliases]
    return [fq]


def _unique_vhosts(view: ProxyView) -> list[tuple[VirtualHost, list[str]]]:
    """Each distinct virtual host of the view once, with the aliases it answers to."""
    seen: dict[int, tuple[VirtualHost, list[str]]] = {}
    for alias, vh in view.vhosts.items():
        seen.setdefault(id(vh), (vh, []))[1].append(alias)
    return sorted(seen.values(), key=lambda item: item[0].name)


def _catch_all(view: ProxyView) -> dict[str, Any]:
    if view.outbound_policy == "ALLOW_ANY":
        return {"name": "allow_any", "domains": ["*"], "routes": [{
            "name": "allow_any", "match": {"prefix": "/"},
            "route": {"cluster": "PassthroughCluster", "timeout": "0s", "max_grpc_timeout": "0s"}}],
            "include_request_attempt_count": True}
    return {"name": "block_all", "domains": ["*"], "routes": [{
        "name": "block_all", "match": {"prefix": "/"}, "direct_response": {"status": 502}}],
        "include_request_attempt_count": True}


def route_configs(view: ProxyView) -> list[dict[str, Any]]:
    """Outbound route configurations named by port (``8080``, ``80``), or a gateway's ``http.8080``."""
    by_port: dict[str, list[dict[str, Any]]] = {}
    if view.identity.gateway:
        for port, vhosts in sorted(view.gateway_routes.items()):
            name = "http.8080" if port == 80 else f"https.{port}"
            for vh in vhosts:
                routes = [r for route in vh.routes for r in envoy_routes(route, vh)]
                by_port.setdefault(name, []).append({
                    "name": f"{vh.name}:{port}", "domains": [vh.name, f"{vh.name}:*"] if vh.name != "*" else ["*"],
                    "routes": routes, "include_request_attempt_count": True})
    else:
        for vh, aliases in _unique_vhosts(view):
            routes = [r for route in vh.routes for r in envoy_routes(route, vh)]
            by_port.setdefault(str(vh.port), []).append({
                "name": f"{vh.name}:{vh.port}", "domains": _domains(vh, aliases), "routes": routes,
                "include_request_attempt_count": True})
        for entries in by_port.values():
            entries.append(_catch_all(view))
    return [{"@type": ROUTE_T, "name": name, "virtual_hosts": vhosts, "validate_clusters": False,
             "ignore_port_in_host_matching": True}
            for name, vhosts in sorted(by_port.items(), key=lambda kv: (not kv[0].isdigit(), kv[0]))]


def routes_dump(view: ProxyView, ctx: DumpContext) -> dict[str, Any]:
    version, updated = str(view.version), iso(ctx.last_updated)
    return {"@type": ADMIN + "RoutesConfigDump", "dynamic_route_configs": [
        {"version_info": version, "route_config": rc, "last_updated": updated} for rc in route_configs(view)]}


# listeners ------------------------------------------------------------------------------------------


def _hcm(stat_prefix: str, rds: str | None = None, inline: dict[str, Any] | None = None) -> dict[str, Any]:
    typed: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                 "HttpConnectionManager",
        "stat_prefix": stat_prefix,
        "http_filters": [{"name": n} for n in ("istio.metadata_exchange", FAULT, "envoy.filters.http.cors",
                                               "istio.stats", "envoy.filters.http.router")],
    }
    if rds is not None:
        typed["rds"] = {"config_source": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
                        "route_config_name": rds}
    if inline is not None:
        typed["route_config"] = inline
    return {"name": HCM, "typed_config": typed}


def _tcp(cluster: str) -> dict[str, Any]:
    return {"name": TCP_PROXY, "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": cluster, "cluster": cluster}}


def _socket(address: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": address, "port_value": port}}


def listeners(view: ProxyView, ctx: DumpContext) -> list[dict[str, Any]]:
    """Istio's sidecar listeners: 15001 (outbound capture), one per outbound service port, 15006
    (inbound capture, a filter chain per mTLS mode), and the inline 15021/15090 ones."""
    me = view.identity
    passthrough = "PassthroughCluster" if view.outbound_policy == "ALLOW_ANY" else "BlackHoleCluster"
    out: list[dict[str, Any]] = []
    if me.gateway:
        for port in sorted(view.gateway_routes):
            name = "http.8080" if port == 80 else f"https.{port}"
            listen = 8080 if port == 80 else 8443
            out.append({"@type": LISTENER_T, "name": f"0.0.0.0_{listen}", "address": _socket("0.0.0.0", listen),
                        "filter_chains": [{"filters": [_hcm(f"outbound_0.0.0.0_{listen};", rds=name)]}],
                        "traffic_direction": "OUTBOUND"})
    else:
        out.append({"@type": LISTENER_T, "name": "virtualOutbound", "address": _socket("0.0.0.0", 15001),
                    "filter_chains": [{"name": "virtualOutbound-catchall-tcp", "filters": [_tcp(passthrough)]}],
                    "use_original_dst": True, "traffic_direction": "OUTBOUND"})
        ports = sorted({vh.port for vh, _ in _unique_vhosts(view)})
        for port in ports:
            out.append({"@type": LISTENER_T, "name": f"0.0.0.0_{port}", "address": _socket("0.0.0.0", port),
                        "filter_chains": [{"filter_chain_match": {"transport_protocol": "raw_buffer",
                                                                  "application_protocols": ["http/1.1", "h2c"]},
                                           "filters": [_hcm(f"outbound_0.0.0.0_{port};", rds=str(port))]}],
                        "default_filter_chain": {"name": "PassthroughFilterChain", "filters": [_tcp(passthrough)]},
                        "traffic_direction": "OUTBOUND", "bind_to_port": False})
        inbound = f"inbound|{SERVICE_PORT}||"
        inline = {"name": inbound, "virtual_hosts": [{"name": "inbound|http|8080", "domains": ["*"], "routes": [{
            "name": "default", "match": {"prefix": "/"},
            "route": {"cluster": inbound, "timeout": "0s", "max_grpc_timeout": "0s"},
            "decorator": {"operation": f"{me.app}.{me.namespace}.{SUFFIX}:{SERVICE_PORT}/*"}}]}],
            "validate_clusters": False}
        chains = []
        mode = ctx.inbound_mode
        if mode != "DISABLE":
            chains.append({"name": f"0.0.0.0_{SERVICE_PORT}", "filter_chain_match": {
                "destination_port": SERVICE_PORT, "transport_protocol": "tls",
                "application_protocols": ["istio-http/1.0", "istio-http/1.1", "istio-h2"]},
                "filters": [_hcm(f"inbound_0.0.0.0_{SERVICE_PORT};", inline=inline)],
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "common_tls_context": {
                        "tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": {"ads": {}}}],
                        "combined_validation_context": {"validation_context_sds_secret_config": {
                            "name": "ROOTCA", "sds_config": {"ads": {}}}}},
                    "require_client_certificate": True}}})
        if mode != "STRICT":
            chains.append({"name": f"0.0.0.0_{SERVICE_PORT}", "filter_chain_match": {
                "destination_port": SERVICE_PORT, "transport_protocol": "raw_buffer"},
                "filters": [_hcm(f"inbound_0.0.0.0_{SERVICE_PORT};", inline=inline)]})
        chains.append({"name": "virtualInbound-blackhole", "filter_chain_match": {"destination_port": 15006},
                       "filters": [_tcp("BlackHoleCluster")]})
        out.append({"@type": LISTENER_T, "name": "virtualInbound", "address": _socket("0.0.0.0", 15006),
                    "filter_chains": chains, "use_original_dst": True, "traffic_direction": "INBOUND"})
    for port, path, cluster in ((15021, "/healthz/ready", "agent"), (15090, "/stats/prometheus",
                                                                     "prometheus_stats")):
        inline = {"virtual_hosts": [{"name": "backend", "domains": ["*"], "routes": [
            {"match": {"prefix": path}, "route": {"cluster": cluster}}]}]}
        out.append({"@type": LISTENER_T, "name": f"0.0.0.0_{port}", "address": _socket("0.0.0.0", port),
                    "filter_chains": [{"filters": [_hcm(f"stats_{port}", inline=inline)]}]})
    return out


def listeners_dump(view: ProxyView, ctx: DumpContext) -> dict[str, Any]:
    version, updated = str(view.version), iso(ctx.last_updated)
    return {"@type": ADMIN + "ListenersConfigDump", "version_info": version, "dynamic_listeners": [
        {"name": lst["name"], "active_state": {"version_info": version, "listener": lst, "last_updated": updated}}
        for lst in listeners(view, ctx)]}


# secrets and bootstrap ------------------------------------------------------------------------------


def secrets_dump(ctx: DumpContext) -> dict[str, Any]:
    cert = ctx.cert
    if cert is None:
        return {"@type": ADMIN + "SecretsConfigDump"}
    version, updated = iso(ctx.cert_updated), iso(ctx.cert_updated)

    def b64(pem: str) -> str:
        return base64.b64encode(pem.encode()).decode()

    chain = getattr(cert, "chain_pem", cert.cert_pem)
    return {"@type": ADMIN + "SecretsConfigDump", "dynamic_active_secrets": [
        {"name": "default", "version_info": version, "last_updated": updated, "secret": {
            "@type": SECRET_T, "name": "default", "tls_certificate": {
                "certificate_chain": {"inline_bytes": b64(chain)}, "private_key": {"inline_bytes": REDACTED}}}},
        {"name": "ROOTCA", "version_info": version, "last_updated": updated, "secret": {
            "@type": SECRET_T, "name": "ROOTCA", "validation_context": {
                "trusted_ca": {"inline_bytes": b64(cert.root_pem)}}}},
    ]}


def bootstrap_dump(view: ProxyView, ctx: DumpContext) -> dict[str, Any]:
    me = view.identity
    return {"@type": ADMIN + "BootstrapConfigDump", "bootstrap": {
        "node": {"id": node_id(view), "cluster": f"{me.workload}.{me.namespace}", "metadata": {
            "NAME": me.pod, "NAMESPACE": me.namespace, "LABELS": dict(me.labels), "ISTIO_VERSION": ISTIO_VERSION,
            "SERVICE_ACCOUNT": me.service_account, "WORKLOAD_NAME": me.workload, "CLUSTER_ID": "Kubernetes",
            "MESH_ID": "cluster.local"}},
        "static_resources": {"clusters": [{"name": n} for n in ("prometheus_stats", "agent", "sds-grpc",
                                                               "xds-grpc")]},
        "dynamic_resources": {"lds_config": {"ads": {}, "resource_api_version": "V3"},
                              "cds_config": {"ads": {}, "resource_api_version": "V3"},
                              "ads_config": {"api_type": "GRPC", "transport_api_version": "V3"}},
        "admin": {"address": _socket("127.0.0.1", 15000)},
    }, "last_updated": iso(ctx.last_updated)}


def config_dump(view: ProxyView, ctx: DumpContext, include_eds: bool = False) -> dict[str, Any]:
    """The whole ``/config_dump`` in Envoy's order (Endpoints only with ``include_eds``)."""
    configs = [bootstrap_dump(view, ctx), clusters_dump(view, ctx)]
    if include_eds:
        configs.append(endpoints_dump(view, ctx))
    configs += [listeners_dump(view, ctx), {"@type": ADMIN + "ScopedRoutesConfigDump"}, routes_dump(view, ctx),
                secrets_dump(ctx)]
    return {"configs": configs}


_RESOURCE_TYPES = {
    "static_clusters": "ClustersConfigDump.StaticCluster",
    "dynamic_active_clusters": "ClustersConfigDump.DynamicCluster",
    "dynamic_endpoint_configs": "EndpointsConfigDump.DynamicEndpointConfig",
    "dynamic_listeners": "ListenersConfigDump.DynamicListener",
    "dynamic_route_configs": "RoutesConfigDump.DynamicRouteConfig",
    "dynamic_active_secrets": "SecretsConfigDump.DynamicSecret",
}


def select_resource(dump: Mapping[str, Any], resource: str) -> dict[str, Any] | None:
    """Envoy's ``?resource=dynamic_active_clusters`` (etc.): the entries, each typed; None if unknown."""
    if resource not in _RESOURCE_TYPES:
        return None
    found = []
    for cfg in dump.get("configs", []):
        for item in cfg.get(resource) or []:
            found.append({"@type": ADMIN + _RESOURCE_TYPES[resource], **item})
    return {"configs": found}
