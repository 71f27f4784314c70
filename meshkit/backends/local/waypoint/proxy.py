"""The waypoint proxy: HBONE in, the sidecar's L7 chain, the destination pod's ztunnel out.

A client ztunnel opens an HBONE tunnel (HTTP/2 CONNECT over mutual TLS, the *source* workload's
certificate) to the waypoint's port 15008, with ``:authority`` naming the Service the app dialed
(``recommendation.tutorial.svc.cluster.local:8080``). The waypoint ends the tunnel, reads the HTTP
requests inside it and runs them through the same chain a sidecar's outbound side runs: L7
AuthorizationPolicy attached by ``targetRefs`` (403 ``RBAC: access denied``), the route (VirtualService
or HTTPRoute for that Service), fault, and the router with DestinationRule clusters, retries and
timeouts. Upstream it speaks Istio mTLS with its *own* certificate
(``spiffe://cluster.local/ns/<ns>/sa/<waypoint>``) to the destination pod's ztunnel, so the server
side sees the waypoint's identity, as in Istio.

What the waypoint takes from the mesh's VirtualServices (Istio 1.30, ``listener_waypoint.go``):
only those in the Service's or the waypoint's own namespace whose hosts name the Service; all of
them, merged in creation order (a sidecar keeps only the oldest). A ``match`` entry with
``sourceLabels`` is dropped, not ignored: the rest of the rule's entries stay, and a rule whose
entries all had ``sourceLabels`` yields no route at all (it does not become a catch-all). A
VirtualService left with no route is skipped, and the Service's default route applies.

Example::

    pod = WaypointPod(args)        # started by the control plane for a Gateway of class istio-waypoint
    await pod.run()
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from meshkit.backends.local.ca import peer_spiffe_id, principal_of
from meshkit.backends.local.peerauth import ROOT_NAMESPACE
from meshkit.backends.local.pod import Pod
from meshkit.backends.local.proxy.admin import EnvoyAdmin
from meshkit.backends.local.proxy.authz import (
    DENIED_BODY,
    DENIED_STATUS,
    AuthzPolicySet,
    AuthzRequest,
    compile_policies,
)
from meshkit.backends.local.proxy.config import ProxyIdentity, ProxyView, fqdn
from meshkit.backends.local.proxy.exchange import Exchange
from meshkit.backends.local.proxy.routing import VHOST_KEY
from meshkit.backends.local.proxy.security import CompiledSecurity
from meshkit.backends.local.proxy.sidecar import Sidecar
from meshkit.backends.local.tls import RotatingContexts, server_context
from meshkit.backends.local.ztunnel import hbone
from meshkit.http1 import DEFAULT_LIMITS, Listener, Request, Response, ServerProtocol, serve
from meshkit.telemetry.record import RequestRecord

GATEWAY_GROUP = "gateway.networking.k8s.io"


def waypoint_resources(resources: Iterable[Mapping[str, Any]], waypoint_ns: str) -> list[dict[str, Any]]:
    """The snapshot's resources as a waypoint uses them: its VirtualServices filtered, merged per host,
    with ``sourceLabels`` match entries dropped (see the module docstring); other kinds unchanged."""
    out: list[dict[str, Any]] = []
    merged: dict[str, dict[str, Any]] = {}
    for res in resources:
        if res.get("kind") != "VirtualService":
            out.append(dict(res))
            continue
        meta, spec = res.get("metadata") or {}, res.get("spec") or {}
        vs_ns = str(meta.get("namespace") or "default")
        if "mesh" not in (spec.get("gateways") or ["mesh"]):
            continue
        http = _without_source_labels(spec.get("http") or [])
        if not http:
            continue  # Istio: "no routes matched", the VirtualService is omitted
        for host in spec.get("hosts") or []:
            name = fqdn(str(host), vs_ns)
            svc_ns = name.split(".")[1] if name.count(".") >= 2 else vs_ns
            if vs_ns not in (waypoint_ns, svc_ns):
                continue  # only routes in the Service's namespace or the waypoint's own
            vs = merged.get(name)
            if vs is None:
                vs = merged[name] = {**res, "spec": {**spec, "hosts": [host], "gateways": ["mesh"], "http": []}}
                out.append(vs)
            vs["spec"]["http"] = [*vs["spec"]["http"], *http]
    return out


def _without_source_labels(rules: list[Any]) -> list[dict[str, Any]]:
    kept = []
    for rule in rules:
        if not isinstance(rule, dict):
            continue
        matches = rule.get("match")
        if not matches:
            kept.append(rule)
            break  # a catch-all: Istio stops translating the VirtualService's later rules here
        left = [m for m in matches if not (isinstance(m, dict) and m.get("sourceLabels"))]
        if left:
            kept.append({**rule, "match": left})
    return kept


class WaypointSidecar(Sidecar):
    """The sidecar's compiled view and chain, fed the waypoint's view of the VirtualServices."""

    def __init__(self, identity: ProxyIdentity, contexts: RotatingContexts, waypoint: str, seed_name: str = "") -> None:
        super().__init__(identity, app_port=None, contexts=contexts, seed_name=seed_name)
        self.waypoint = waypoint  # the Gateway's name (the pod's name has a hash)
        self.peers: dict[str, tuple[str, str, str]] = {}
        self._policies: dict[str, AuthzPolicySet] = {}

    def _compile(self, snapshot: Mapping[str, Any]) -> tuple[ProxyView, CompiledSecurity]:
        resources = waypoint_resources(snapshot.get("resources", []), self.identity.namespace)
        return super()._compile({**snapshot, "resources": resources})

    def apply_snapshot(self, snapshot: Mapping[str, Any]) -> list[str]:
        rejected = super().apply_snapshot(snapshot)
        # who a tunnel's identity is (the workload metadata Istio looks up by the peer's identity)
        self.peers = {str(e["principal"]): (str(e.get("workload") or "unknown"), str(e.get("app") or "unknown"),
                                            str(e.get("version") or "unknown"))
                      for e in snapshot.get("endpoints", []) if e.get("principal")}
        self._policies = {}
        return rejected

    def policies_for(self, service: str) -> AuthzPolicySet:
        """The AuthorizationPolicies this waypoint enforces for ``service`` (an FQDN): ``targetRefs`` to
        the Service, to this waypoint's Gateway, or to the istio-waypoint GatewayClass (root namespace)."""
        cached = self._policies.get(service)
        if cached is not None:
            return cached
        name, _, rest = service.partition(".")
        svc_ns = rest.split(".", 1)[0]
        me = self.identity.namespace

        def targets(res: Mapping[str, Any]) -> bool:
            spec, meta = res.get("spec") or {}, res.get("metadata") or {}
            ns = str(meta.get("namespace") or "default")
            refs = spec.get("targetRefs") or ([spec["targetRef"]] if spec.get("targetRef") else [])
            for ref in refs if isinstance(refs, list) else []:
                if not isinstance(ref, dict):
                    continue
                kind, group, ref_name = ref.get("kind"), ref.get("group", ""), ref.get("name")
                if kind == "Service" and group in ("", "core") and ref_name == name and ns == svc_ns:
                    return True
                if kind == "Gateway" and group == GATEWAY_GROUP and ref_name == self.waypoint and ns == me:
                    return True
                if kind == "GatewayClass" and ref_name == "istio-waypoint" and ns == ROOT_NAMESPACE:
                    return True
            return False

        try:
            compiled = compile_policies(self.view.resources, me, {}, targeted=targets)
        except Exception:
            # a policy the waypoint cannot compile denies, as Envoy's RBAC fails closed
            compiled = compile_policies([{"kind": "AuthorizationPolicy", "metadata": {"name": "invalid",
                                          "namespace": me}, "spec": {}}], me, {}, targeted=lambda r: True)
        self._policies[service] = compiled
        return compiled


class WaypointPod(Pod):
    """A waypoint's pod: no app, a proxy with an HBONE listener (15008) and the admin port."""

    def __init__(self, args: dict[str, Any]) -> None:
        super().__init__(args)
        # tunnels in flight -> (peer identity, service:port), for the admin's /tunnels
        self.tunnels: dict[int, tuple[str, str]] = {}
        self.listener = Listener(DEFAULT_LIMITS, envoy=True)  # an Envoy: its codec frames HEAD answers

    async def start(self) -> None:
        a = self.args
        identity = ProxyIdentity(a["pod"], a["labels"].get("app", a["service"]), "", a["labels"], a["namespace"],
                                 a["service_account"], False)
        self.contexts = RotatingContexts(await self._while_control_plane_restarts(self._fetch_cert))
        self.sidecar = WaypointSidecar(identity, self.contexts, a["service"],
                                       seed_name=f"{identity.workload}#{a.get('ordinal', 0)}")
        self.envoy_admin = EnvoyAdmin(self.sidecar, self.sidecar.dump_context)
        ctx = hbone.hbone_context(server_context(self.contexts.cert))
        tunnel = await asyncio.start_server(self._hbone, "127.0.0.1", 0, ssl=ctx)
        self.ports["hbone"] = tunnel.sockets[0].getsockname()[1]
        admin = await serve(self._owner_only(self.admin), "127.0.0.1", 0)
        self.ports["admin"] = admin.sockets[0].getsockname()[1]
        await self._while_control_plane_restarts(lambda: self._poll_once(0))
        await self._while_control_plane_restarts(lambda: self._post("/register", {"pod": self.name,
                                                                                 "ports": self.ports}))

    # HBONE in --------------------------------------------------------------------------------------
    async def _hbone(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        identity = peer_spiffe_id(writer.get_extra_info("ssl_object")) or ""

        async def decide(stream: hbone.HboneStream, authority: str) -> int:
            host, _, port = authority.rpartition(":")
            assert self.sidecar is not None
            return 200 if identity and port.isdigit() and self.sidecar.view.vhost_for(host) else 400

        async def on_open(stream: hbone.HboneStream, authority: str) -> None:
            # the HTTP/1.1 inside the tunnel, served straight from the stream (no socket in between)
            handler = functools.partial(self.handle, identity, authority)
            transport = hbone.StreamTransport(stream, ServerProtocol(handler, listener=self.listener))
            self.tunnels[id(transport)] = (identity, authority)
            try:
                await transport.done.wait()
            finally:
                self.tunnels.pop(id(transport), None)

        hbone.nodelay(writer)
        await hbone.serve_stream(reader, writer, decide, on_open)

    # L7 ----------------------------------------------------------------------------------------------
    async def handle(self, identity: str, authority: str, req: Request) -> Response:
        """One request that came through a tunnel from ``identity`` for the Service ``authority`` names."""
        sidecar = self.sidecar
        assert isinstance(sidecar, WaypointSidecar)
        service = authority.rpartition(":")[0]
        me = sidecar.identity
        rec = RequestRecord(proxy=me.pod, reporter="waypoint", start_time=time.time())
        rec.source_workload, rec.source_app, rec.source_version = sidecar.peers.get(
            identity, ("unknown", "unknown", "unknown"))
        rec.source_principal = identity
        rec.connection_security_policy = "mutual_tls"
        rec.destination_service, rec.destination_service_name = service, service.split(".")[0]
        rec.namespace = service.split(".")[1] if service.count(".") >= 2 else me.namespace
        req.context[VHOST_KEY] = authority
        req.context["principal"] = principal_of(identity)
        if "x-request-id" not in req.headers:
            req.headers["x-request-id"] = str(uuid.uuid4())
        ex = Exchange(req, rec)
        span = sidecar.telemetry.begin(req, "server", sidecar.view.trace_sampling, sidecar.rng)
        started = time.perf_counter()
        policies = sidecar.policies_for(service)
        resp = None
        if policies.deny or policies.allow or policies.audit:
            decision = policies.evaluate(AuthzRequest(
                method=req.method, path=req.path, host=req.headers.get("host", ""),
                port=int(authority.rpartition(":")[2] or 0), headers=req.headers,
                source_principal=principal_of(identity), source_ip="127.0.0.1", destination_ip="127.0.0.1"))
            if not decision.allowed:
                resp = ex.local_reply(DENIED_STATUS, "", decision.response_code_details, DENIED_BODY,
                                      rule=f"AuthorizationPolicy at waypoint {sidecar.waypoint}: {decision.reason}")
        if resp is None:
            resp = await sidecar.outbound(ex)
        sidecar.telemetry.finish_at_end(ex, resp, started, span)
        return resp

    async def run(self) -> None:
        await self.start()
        tasks = [asyncio.ensure_future(t) for t in (self._flush_loop(), self._xds_loop(), self._watch_state_file(),
                                                     self._rotate_loop())]
        await self.stop_event.wait()
        for task in tasks:
            task.cancel()
        await self._flush()

    async def admin(self, req: Request) -> Response:
        if req.path.split("?", 1)[0] == "/tunnels":
            body = json.dumps([{"identity": i, "authority": a} for i, a in self.tunnels.values()])
            return Response(200, {"content-type": "application/json"}, body.encode())
        return await super().admin(req)

