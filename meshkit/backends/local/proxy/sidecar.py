"""The sidecar proxy of one pod (and, with ``gateway=True``, the ingress gateway).

Listeners:

* **outbound** — the app's HTTP-proxy-style exit (``Host: recommendation:8080``); the chain is
  route → fault → router, applied in the caller's sidecar as Istio does;
* **inbound** — where other pods reach this pod; the chain is the server-side policies, then the
  local app. A gateway has only a public listener that routes with the VirtualServices bound to
  the Gateways selecting it.

Config arrives as versioned snapshots (:meth:`Sidecar.apply_snapshot`) and is compiled once; the
request path only reads the compiled view and the runtime clusters.

Example::

    sidecar = Sidecar(ProxyIdentity("customer-v1-x", "customer", "v1", {"app": "customer"}), app_port=8081)
    await sidecar.start()
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import random
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from meshkit.backends.local.proxy.cluster import Cluster, ClusterSpec, Endpoint
from meshkit.backends.local.proxy.config import ProxyIdentity, ProxyView, compile_view
from meshkit.backends.local.proxy.configdump import DumpContext
from meshkit.backends.local.proxy.dns import ClusterDns
from meshkit.backends.local.proxy.downstream import Downstream
from meshkit.backends.local.proxy.exchange import CONNECT_FAILURE_BODY, Exchange, Filter, Handler, chain
from meshkit.backends.local.proxy.fault import FaultFilter
from meshkit.backends.local.proxy.matching import qualify_gateway
from meshkit.backends.local.proxy.router import Router
from meshkit.backends.local.proxy.routing import RouteFilter
from meshkit.backends.local.proxy.security import CompiledSecurity, WorkloadSecurity
from meshkit.backends.local.proxy.seeding import proxy_rng
from meshkit.backends.local.proxy.telemetry import Telemetry
from meshkit.backends.local.tls import RotatingContexts, gateway_server_context
from meshkit.errors import InvalidConfig
from meshkit.http1 import DEFAULT_LIMITS, Limits, Request, Response, SimpleClient, serve
from meshkit.telemetry.record import RequestRecord

PEER_ID = "x-envoy-peer-metadata-id"
PEER_META = "x-envoy-peer-metadata"
Sleep = Callable[[float], Awaitable[None]]


class Sidecar:
    def __init__(
        self,
        identity: ProxyIdentity,
        app_port: int | None = None,
        telemetry: Telemetry | None = None,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
        inbound_filters: Callable[[Sidecar], list[Filter]] | None = None,
        contexts: RotatingContexts | None = None,
        seed_name: str = "",
    ) -> None:
        self.identity = identity
        self.app_port = app_port
        # the proxy's own streams (seedable with MESHKIT_SEED: see seeding.py); faults draw apart
        stable = seed_name or identity.workload
        self.rng = rng or proxy_rng(stable)
        self.fault_rng = rng if rng is not None else proxy_rng(stable, "fault")
        self.sleep = sleep
        self.telemetry = telemetry or Telemetry(identity)
        self.view = ProxyView(0, identity, "current", "REGISTRY_ONLY", {}, {})
        self.applied_at = 0.0  # when the current view was taken (config_dump's last_updated)
        self.clusters: dict[str, Cluster] = {}
        self.dns = ClusterDns([], identity.namespace)
        self.contexts = contexts
        self.security = WorkloadSecurity(identity, contexts)
        self.ssl_for: Callable[[Endpoint, ClusterSpec], tuple[ssl.SSLContext | None, int]] = self.security.ssl_for
        self.servers: list[asyncio.base_events.Server] = []
        self.ports: dict[str, int] = {}
        self.accept_hbone = False  # an ambient-profile mesh: an HBONE listener (15008) for ztunnel's callers
        self._app = SimpleClient("127.0.0.1", app_port, stream_limit=DEFAULT_LIMITS.buffer_limit) if app_port else None
        # set by the pod when the app shares this process: inbound requests are handed over directly
        self.app_handler: Callable[[Request], Awaitable[Response]] | None = None
        self._peer_meta = _encode_peer(identity)
        self.outbound = self._outbound_chain("mesh", 80)
        self.https = self.outbound
        self.gateway_tls = GatewayTls()
        # the last good version of every resource, and why the last push's others were rejected
        self.accepted: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.rejected: list[str] = []
        filters = inbound_filters(self) if inbound_filters else self.security.inbound_filters()
        self.inbound = chain(filters, self._to_app)
        # Envoy's listeners and connection managers, named as Istio names them (downstream.py)
        report = self.telemetry.report
        if identity.gateway:
            self.outbound_downstream = Downstream("0.0.0.0_8080", "outbound_0.0.0.0_8080;", DEFAULT_LIMITS,
                                                  self._refused_outbound, report)
            self.https_downstream = Downstream("0.0.0.0_8443", "outbound_0.0.0.0_8443;", DEFAULT_LIMITS,
                                               self._refused_outbound, report)
            self.downstreams = [self.outbound_downstream, self.https_downstream]
        else:
            self.outbound_downstream = Downstream("0.0.0.0_15001", "outbound_0.0.0.0_8080;", DEFAULT_LIMITS,
                                                  self._refused_outbound, report, host_fallback=True)
            self.inbound_downstream = Downstream("0.0.0.0_15006", "inbound_0.0.0.0_8080;", DEFAULT_LIMITS,
                                                 self._refused_inbound, report)
            self.https_downstream = self.outbound_downstream  # a sidecar has no HTTPS server of its own
            self.downstreams = [self.outbound_downstream, self.inbound_downstream]

    # config ------------------------------------------------------------------------------------
    def apply_snapshot(self, snapshot: Mapping[str, Any]) -> list[str]:
        """Compile a pushed snapshot and swap it in; runtime cluster state survives the push.

        A resource this proxy cannot use is rejected alone, with its reason (Envoy's NACK with an
        error detail), and its last good version, if any, stays in force; the rest of the push is
        taken. Returns the reasons ([] when everything was taken). Raises when not even the push
        without any resource compiles: the proxy then keeps its whole last good config.
        """
        resources = list(snapshot.get("resources", []))
        try:
            view, security = self._compile(snapshot)
            rejected: dict[tuple[str, str, str], str] = {}
        except Exception:
            resources, rejected = self._screen(snapshot, resources)
            snapshot = {**snapshot, "resources": resources}
            view, security = self._compile(snapshot)
        self._install(snapshot, view, security)
        self.accepted = {_key(r): r for r in resources}
        self.rejected = list(rejected.values())
        return self.rejected

    def _compile(self, snapshot: Mapping[str, Any]) -> tuple[ProxyView, CompiledSecurity]:
        view = compile_view(snapshot, self.identity)
        return view, self.security.compile(view, snapshot.get("jwks", {}))

    def _screen(self, snapshot: Mapping[str, Any], resources: list[dict[str, Any]]
                ) -> tuple[list[dict[str, Any]], dict[tuple[str, str, str], str]]:
        """The resources this proxy can use, and a reason for each one it cannot (its last good
        version is used instead when it had one)."""
        self._compile({**snapshot, "resources": []})  # raises: nothing in this push is usable
        rejected: dict[tuple[str, str, str], str] = {}
        for res in resources:
            try:
                self._compile({**snapshot, "resources": [res]})
            except Exception as exc:
                rejected[_key(res)] = _reason(res, exc)
        kept = [r if _key(r) not in rejected else self.accepted.get(_key(r)) for r in resources]
        usable = [r for r in kept if r is not None]
        try:
            self._compile({**snapshot, "resources": usable})
            return usable, rejected
        except Exception:
            pass
        # resources that only fail together: take them one by one, oldest first, as far as they go
        taken: list[dict[str, Any]] = []
        for res in usable:
            try:
                self._compile({**snapshot, "resources": [*taken, res]})
                taken.append(res)
            except Exception as exc:
                rejected.setdefault(_key(res), _reason(res, exc))
        return taken, rejected

    def _install(self, snapshot: Mapping[str, Any], view: ProxyView, security: CompiledSecurity) -> None:
        self.dns = ClusterDns(snapshot.get("services", []), self.identity.namespace)
        stale = self.security.commit(security)
        clusters: dict[str, Cluster] = {}
        for name, spec in view.clusters.items():
            old = self.clusters.get(name)
            if old is not None and not old.same_cluster(spec):
                # Envoy builds a new cluster for a changed one: new limits and counters for new
                # requests at once, while the old pools drain (statistics keep their names, so go on)
                fresh = Cluster(spec, rng=self.rng, ssl_for=self.ssl_for)
                fresh.stats = old.stats
                old.drain()
                clusters[name] = fresh
            elif old is not None:
                old.update(spec)
                if stale:
                    old.drop_idle()  # mTLS on/off changed: pooled connections speak the old way
                clusters[name] = old
            else:
                clusters[name] = Cluster(spec, rng=self.rng, ssl_for=self.ssl_for)
        for name, old in self.clusters.items():
            if name not in clusters:
                old.close()
        if self.identity.gateway:
            bound = [qualify_gateway(n, self.identity.namespace) for n in _selecting_gateways(view)]
            self.outbound = self._outbound_chain(bound[0] if bound else "mesh", 80)
            self.https = self._outbound_chain(bound[0] if bound else "mesh", 443)
            self.gateway_tls.update(view.gateway_tls, snapshot.get("secrets", {}))
        self.telemetry.access_logging = view.access_logging
        self.telemetry.stats.configure(view.metric_overrides)
        self.view, self.clusters = view, clusters
        self.applied_at = time.time()

    def dump_context(self) -> DumpContext:
        """What ``/config_dump`` needs besides the view (mTLS modes, certificate, times)."""
        contexts = self.contexts
        return DumpContext(self.security.server_modes, self.security.mode,
                           contexts.cert if contexts is not None else None,
                           contexts.rotated_at if contexts is not None else 0.0, self.applied_at)

    def _outbound_chain(self, gateway_name: str, server_port: int) -> Handler:
        """The outbound chain (a gateway has one per server port): route → fault → router."""
        router = Router(lambda: self.clusters, self.rng, self.sleep, self._upstream_request, self._shadow)
        return chain(
            [RouteFilter(lambda: self.view, gateway_name, server_port),
             FaultFilter(self.fault_rng, self.sleep, attribute=router.choose)],
            router,
        )

    def _shadow(self) -> bool:
        return self.view.profile == "tutorial"

    # listeners ---------------------------------------------------------------------------------
    async def start(self, outbound_port: int = 0, inbound_port: int = 0,
                    guard: Callable[[Callable[[Request], Awaitable[Response]]],
                                    Callable[[Request], Awaitable[Response]]] | None = None,
                    limits: Limits = DEFAULT_LIMITS) -> dict[str, int]:
        """Open the listeners, each with Envoy's ``limits``. ``guard`` wraps a sidecar's outbound listener:
        the app's exit is the pod's own (Istio captures it inside the pod's network namespace), so
        others must not send through it. A gateway's outbound listener is the mesh's public entry and
        is never guarded."""
        for downstream in self.downstreams:
            downstream.listener.limits = limits
        outbound = self.handle_outbound if guard is None or self.identity.gateway else guard(self.handle_outbound)
        out = await serve(outbound, "127.0.0.1", outbound_port, listener=self.outbound_downstream.listener)
        self.servers.append(out)
        self.ports["outbound"] = out.sockets[0].getsockname()[1]
        if self.identity.gateway:
            tls_server = await serve(self.handle_https, "127.0.0.1", 0, ssl_context=self.gateway_tls.listener,
                                     listener=self.https_downstream.listener)
            self.servers.append(tls_server)
            self.ports["https"] = tls_server.sockets[0].getsockname()[1]
        if not self.identity.gateway:
            # the plain and the mTLS socket are one Envoy listener (virtualInbound): one cap, one count
            shared = self.inbound_downstream.listener
            inb = await serve(self.handle_inbound, "127.0.0.1", inbound_port, listener=shared)
            self.servers.append(inb)
            self.ports["inbound"] = inb.sockets[0].getsockname()[1]
            if self.contexts is not None:
                tls = await serve(self.handle_inbound, "127.0.0.1", 0, ssl_context=self.contexts.listener_context,
                                  listener=shared)
                self.servers.append(tls)
                self.ports["inbound_tls"] = tls.sockets[0].getsockname()[1]
            if self.accept_hbone and self.contexts is not None and self.app_port:
                self.ports["hbone"] = await self._serve_hbone(self.contexts, self.app_port)
        return self.ports

    async def _serve_hbone(self, contexts: RotatingContexts, app_port: int) -> int:
        """Istio's HBONE-enabled sidecar inbound (15008): ambient callers' ztunnel tunnels here; each
        CONNECT to this pod's address runs into the same inbound chain (peer authentication sees the
        tunnel's mutual TLS, so STRICT admits it and authorization gets the caller's identity)."""
        from meshkit.backends.local.tls import server_context
        from meshkit.backends.local.ztunnel.hbone import hbone_context, nodelay, reset, serve_http
        from meshkit.http1 import ServerProtocol

        current: dict[int, ssl.SSLContext] = {}

        def switch(obj: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
            if contexts.generation not in current:  # the certificate rotated: HBONE contexts from the new one
                current.clear()
                current[contexts.generation] = hbone_context(server_context(contexts.cert))
            obj.context = current[contexts.generation]

        listener = hbone_context(server_context(contexts.cert))
        listener.sni_callback = switch
        inbound = self.inbound_downstream.listener

        async def tunnel(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nodelay(writer)
            try:
                await serve_http(reader, writer, f"127.0.0.1:{app_port}",
                                 lambda: ServerProtocol(self.handle_inbound, listener=inbound))
            except Exception:
                reset(writer)

        server = await asyncio.start_server(tunnel, "127.0.0.1", 0, ssl=listener)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    def _refused_outbound(self) -> RequestRecord:
        """The record of a request the outbound (or gateway) codec refused: this proxy is its source."""
        me = self.identity
        rec = RequestRecord(proxy=me.pod, reporter="source")
        rec.source_workload, rec.source_app, rec.source_version = me.workload, me.app, me.version or "unknown"
        rec.source_principal = self._principal
        rec.connection_security_policy = "unknown"
        return rec

    def _refused_inbound(self) -> RequestRecord:
        """The record of a request the inbound codec refused: this proxy is its destination; the caller
        and the service it meant are unknown (no peer metadata or route was read)."""
        me = self.identity
        rec = RequestRecord(proxy=me.pod, reporter="destination")
        rec.destination_workload, rec.destination_app = me.workload, me.app
        rec.destination_version = me.version or "unknown"
        rec.destination_principal = self._principal
        return rec

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        for cluster in self.clusters.values():
            cluster.close()
        if self._app is not None:
            self._app.close()

    # outbound (client side) ---------------------------------------------------------------------
    def dns_resolves(self, host: str) -> bool:
        """Whether the pod's app can resolve ``host`` (cluster DNS: only names with a Service)."""
        return self.dns.resolves(host)

    async def handle_https(self, req: Request) -> Response:
        """The gateway's HTTPS server (Gateway port 443, TLS terminated here)."""
        return await self.handle_outbound(req, self.https)

    async def handle_outbound(self, req: Request, handler: Handler | None = None) -> Response:
        me = self.identity
        rec = RequestRecord(proxy=me.pod, reporter="source", start_time=time.time())
        rec.source_workload, rec.source_app, rec.source_version = me.workload, me.app, me.version or "unknown"
        rec.source_principal = self._principal
        rec.connection_security_policy = "unknown"
        if "x-request-id" not in req.headers:
            req.headers["x-request-id"] = str(uuid.uuid4())
        ex = Exchange(req, rec)
        span = self.telemetry.begin(req, "client" if not me.gateway else "server", self.view.trace_sampling, self.rng)
        started = time.perf_counter()
        hcm = self.https_downstream if handler is not None and handler is self.https else self.outbound_downstream
        hcm.begin()
        resp = await (handler or self.outbound)(ex)
        hcm.request(resp.status)
        self.telemetry.finish_at_end(ex, resp, started, span)
        return resp

    def _upstream_request(self, ex: Exchange, cluster: Cluster, host: Any, attempt: int) -> Request:
        headers = dict(ex.req.headers)
        headers["x-envoy-attempt-count"] = str(attempt)
        headers.setdefault("x-forwarded-proto", "http")
        if not cluster.spec.external:
            ns = self.identity.namespace
            headers[PEER_ID] = f"sidecar~127.0.0.1~{self.identity.pod}.{ns}~{ns}.svc.cluster.local"
            headers[PEER_META] = self._peer_meta
            port = cluster.spec.name.split("|")[1]
            headers["x-envoy-decorator-operation"] = f"{cluster.spec.service}:{port}/*"
        return Request(ex.req.method, ex.req.path, headers, ex.req.body, stream=ex.req.stream)

    @functools.cached_property
    def _principal(self) -> str:
        sa = self.identity.service_account
        return f"spiffe://cluster.local/ns/{self.identity.namespace}/sa/{sa}" if sa else "unknown"

    # inbound (server side) ----------------------------------------------------------------------
    async def handle_inbound(self, req: Request) -> Response:
        me = self.identity
        rec = RequestRecord(proxy=me.pod, reporter="destination", start_time=time.time())
        rec.destination_workload, rec.destination_app = me.workload, me.app
        rec.destination_version = me.version or "unknown"
        rec.destination_principal = self._principal
        rec.destination_service = f"{me.app}.{me.namespace}.svc.cluster.local"
        rec.destination_service_name = me.app
        rec.upstream_cluster = f"inbound|{8080}||"
        rec.authority = req.headers.get("host", "")
        rec.route_name = "default"
        peer = _peer_labels(req.headers.pop(PEER_META, ""))
        req.headers.pop(PEER_ID, None)
        if peer is not None:
            rec.source_workload, rec.source_app, rec.source_version = peer
        ex = Exchange(req, rec)
        span = self.telemetry.begin(req, "server", self.view.trace_sampling, self.rng)
        started = time.perf_counter()
        hcm = self.inbound_downstream
        hcm.begin()
        resp = await self.inbound(ex)
        hcm.request(resp.status)
        self.telemetry.finish_at_end(ex, resp, started, span)
        return resp

    async def _to_app(self, ex: Exchange) -> Response:
        ex.rec.upstream_host = f"127.0.0.1:{self.app_port}"  # only a request that reaches the app has one
        if self.app_handler is not None:
            ex.rec.response_code_details = "via_upstream"
            return await self.app_handler(ex.req)
        if self._app is None:
            return ex.local_reply(503, "UH", "no_healthy_upstream", b"no healthy upstream")
        req = ex.req
        try:
            resp = await self._app.request(req.method, req.path, req.headers, req.body, req.stream)
        except Exception:
            return ex.local_reply(
                503, "UF", "upstream_reset_before_response_started{connection_failure}", CONNECT_FAILURE_BODY
            )
        ex.rec.response_code_details = "via_upstream"
        return resp


class GatewayTls:
    """The HTTPS servers of a gateway: one certificate per host, chosen by SNI like Envoy's filter chains.

    The listener context has no certificate of its own; each handshake switches to the context of
    the Gateway server whose ``hosts`` match the SNI name, or is refused when none does.
    """

    def __init__(self) -> None:
        self.by_host: dict[str, ssl.SSLContext] = {}
        self.problems: list[str] = []
        listener = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        listener.minimum_version = ssl.TLSVersion.TLSv1_2
        listener.sni_callback = self._select
        self.listener = listener
        self._seen: tuple[Any, ...] = ()

    def update(self, servers: tuple[tuple[tuple[str, ...], str, str], ...], secrets: Mapping[str, Any]) -> None:
        key = (servers, tuple(sorted((n, s.get("cert", "")) for n, s in secrets.items())))
        if key == self._seen:
            return
        by_host: dict[str, ssl.SSLContext] = {}
        problems = []
        for hosts, credential, _mode in servers:
            secret = secrets.get(credential)
            if secret is None:
                problems.append(f'credentialName "{credential}" not found: create it with meshkit secret tls')
                continue
            ctx = gateway_server_context(secret["cert"], secret["key"])
            for host in hosts:
                by_host.setdefault(host, ctx)
        self.by_host, self.problems, self._seen = by_host, problems, key

    def _select(self, ssl_object: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> int | None:
        name = (server_name or "").lower()
        ctx = self.by_host.get(name)
        if ctx is None:
            wildcard = "*." + name.split(".", 1)[1] if "." in name else ""
            ctx = self.by_host.get(wildcard) or self.by_host.get("*")
        if ctx is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        ssl_object.context = ctx
        return None


def _selecting_gateways(view: ProxyView) -> list[str]:
    names = []
    for gw in view.resources:
        if gw.get("kind") != "Gateway":
            continue
        selector = gw["spec"].get("selector") or {}
        if all(view.identity.labels.get(k) == v for k, v in selector.items()):
            names.append(f"{gw['metadata'].get('namespace', 'tutorial')}/{gw['metadata']['name']}")
    return names


def _encode_peer(me: ProxyIdentity) -> str:
    # Istio exchanges workload metadata in these headers for telemetry only; identity comes from mTLS
    meta = {
        "WORKLOAD_NAME": me.workload,
        "NAMESPACE": me.namespace,
        "LABELS": {"app": me.app, "version": me.version},
        "SERVICE_ACCOUNT": me.service_account,
    }
    return base64.b64encode(json.dumps(meta, separators=(",", ":")).encode()).decode()


@functools.lru_cache(maxsize=256)
def _peer_labels(value: str) -> tuple[str, str, str] | None:
    """(workload, app, version) of a caller's peer metadata; a caller sends the same value every
    time, so each distinct one is decoded once (bounded cache)."""
    if not value:
        return None
    try:
        data = json.loads(base64.b64decode(value))
    except (ValueError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    raw = data.get("LABELS")
    labels: dict[str, Any] = raw if isinstance(raw, dict) else {}
    return (str(data.get("WORKLOAD_NAME") or "unknown"), str(labels.get("app") or "unknown"),
            str(labels.get("version") or "unknown"))


__all__ = ["Handler", "Sidecar"]


def check_push(snapshot: Mapping[str, Any], identity: ProxyIdentity) -> tuple[list[str], list[str]]:
    """What a proxy with ``identity`` would reject in ``snapshot`` (the reasons), and its warnings.

    The same compilation :meth:`Sidecar.apply_snapshot` runs, without a proxy: the control plane's
    admission uses it so that a resource no proxy could use is refused before it is stored.

    Example::

        errors, warnings = check_push(cp.snapshot(), ProxyIdentity("p", "customer", "v1", {"app": "customer"}))
    """
    security = WorkloadSecurity(identity, None)

    def compile_(resources: list[dict[str, Any]]) -> CompiledSecurity:
        view = compile_view({**snapshot, "resources": resources}, identity)
        return security.compile(view, snapshot.get("jwks", {}))

    resources = list(snapshot.get("resources", []))
    try:
        compiled = compile_(resources)
        return [], [*compiled.authz.warnings, *compiled.authn.warnings]
    except Exception:
        pass
    errors = []
    for res in resources:
        try:
            compile_([res])
        except Exception as exc:
            errors.append(_reason(res, exc))
    if not errors:  # only some of them together
        try:
            compile_(resources)
        except Exception as exc:
            errors.append(f"the resources together: {type(exc).__name__}: {exc}")
    return errors, []


def _key(res: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = res.get("metadata") or {}
    return str(res.get("kind", "")), str(meta.get("namespace", "")), str(meta.get("name", ""))


def _reason(res: Mapping[str, Any], exc: Exception) -> str:
    kind, ns, name = _key(res)
    detail = "; ".join(exc.problems) if isinstance(exc, InvalidConfig) else f"{type(exc).__name__}: {exc}"
    return f"{kind} {ns}/{name} rejected: {detail}"
