"""The node's ztunnel: one process that carries every ambient pod's traffic on the local node.

As ztunnel does in its in-pod mode, it opens listeners for each enrolled pod, as if inside the pod's
network namespace: the pod's outbound capture (15001), its plaintext inbound (15006) and its HBONE
inbound (15008). It holds a certificate for each enrolled workload's identity (its key made here,
signed by the mesh CA for that pod only), sends each outbound connection over HBONE (HTTP/2 CONNECT
over mutual TLS) to the destination pod's 15008 with the *source* workload's certificate, picks the
destination pod round-robin per connection (L4), and enforces L4 AuthorizationPolicy and
PeerAuthentication STRICT at the destination. Denials reset the caller's connection.

The local stand-in for ``SO_ORIGINAL_DST``: the pod's capture sends the address the app dialed as
the first line of the redirected connection (``preference:8080\\n``), since loopback redirection
here cannot keep it in the socket as iptables does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import os
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization

from meshkit.backends.local.ca import WorkloadCert, csr_for, peer_spiffe_id, spiffe_id_for
from meshkit.backends.local.peerauth import effective_mtls_mode
from meshkit.backends.local.pod import Pod
from meshkit.backends.local.probes import PATH as PROBE_PATH
from meshkit.backends.local.sniff import Tap, describe
from meshkit.backends.local.trust import owner_only, peer_uid
from meshkit.backends.local.workloadkey import KeySpec
from meshkit.backends.local.ztunnel import hbone
from meshkit.backends.local.ztunnel.certs import Certificates, Held
from meshkit.backends.local.ztunnel.policy import L4Policy, Peer, compile_policies, evaluate
from meshkit.backends.local.ztunnel.telemetry import POLICY_CHANGE, Connection, Side, ZtunnelTelemetry
from meshkit.http1 import Request, Response, pace_bulk, serve

NODE = "meshkit-control-plane"  # the single node, named as kind names a one-node cluster's node
TARGET_PORT = 8080  # the sample's containerPort: what policies and the HBONE authority name
CHUNK = 65536
Handler = Callable[[str, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Enrolled:
    """One ambient pod as this ztunnel serves it."""

    info: dict[str, Any]
    held: Held  # the certificate of the pod's identity (shared by pods of one service account)
    servers: list[asyncio.base_events.Server] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def cert(self) -> WorkloadCert:
        return self.held.cert

    @property
    def client_ctx(self) -> ssl.SSLContext:
        """HBONE's client side with the identity's current certificate (renewed ones apply at once)."""
        return self.held.hbone_client

    def side(self, addr: str) -> Side:
        i = self.info
        return Side(addr, i["workload"], i["namespace"], self.cert.spiffe_id, i["labels"].get("app", ""),
                    i["labels"].get("version", ""), i.get("service", ""), i["pod"])

    def close(self) -> None:
        for s in self.servers:
            s.close()


def workload_side(w: dict[str, Any], addr: str, service: str = "") -> Side:
    identity = spiffe_id_for(w["namespace"], w["service_account"]) if w.get("dataplane") != "none" else ""
    return Side(addr, w["workload"], w["namespace"], identity, w["labels"].get("app", ""),
                w["labels"].get("version", ""), service, w["pod"])


class Ztunnel(Pod):
    def __init__(self, args: dict[str, Any]) -> None:
        super().__init__(args)
        self.enrolled: dict[str, Enrolled] = {}
        self.config: dict[str, Any] = {"version": 0, "workloads": [], "services": [], "resources": []}
        self.policies: list[L4Policy] = []
        self.telemetry = ZtunnelTelemetry()
        self.rr: dict[str, itertools.count[int]] = {}
        self.config_version = 0
        self._announced: dict[str, dict[str, int]] = {}
        # open inbound connections: (pod, source identity, abort, connection) — a policy change re-checks them
        self.inbound_open: dict[int, tuple[str, str | None, Callable[[], None], Connection]] = {}
        self.late_rejected: set[int] = set()  # closed by a policy change: their close is a DENY
        self.certs = Certificates(self._request_cert)
        # `meshkit sniff POD`: a tap in front of an enrolled pod's HBONE port (15008) while it lasts
        self.hbone_taps: dict[int, Tap] = {}
        self.sniffs: dict[str, Tap] = {}
        self._sniff_stops: set[asyncio.Future[None]] = set()

    # lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        admin = await serve(owner_only(self.admin, self.owner), "127.0.0.1", 0)
        self.ports["admin"] = admin.sockets[0].getsockname()[1]
        await self._post("/register", {"pod": self.name, "ports": self.ports})
        self.log("info", "ztunnel::app", f"ztunnel started on node {NODE}")

    async def run(self) -> None:
        await self.start()
        tasks = [asyncio.ensure_future(self._wds_loop()), asyncio.ensure_future(self._rotate_loop())]
        await self.stop_event.wait()
        for task in tasks:
            task.cancel()
        for e in self.enrolled.values():
            e.close()

    def log(self, level: str, target: str, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.telemetry.write(f"{stamp}\t{level}\t{target}\t{message}")

    async def _wds_loop(self) -> None:
        while True:
            try:
                resp = await self.poller.request(
                    "GET", f"/xds?pod={self.name}&version={self.config_version}", dict(self.control_headers))
                if resp.status == 200:
                    self.config = json.loads(resp.body)
                    self.policies = compile_policies(self.config.get("resources", []))
                    self._recheck_open_connections()
                    await self._reconcile()
                    self.config_version = int(self.config.get("version", 0))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log("warn", "xds::client", f"XDS client connection error: {type(exc).__name__}: {exc}")
                await asyncio.sleep(0.2)
                self._follow_control_plane()

    def _recheck_open_connections(self) -> None:
        """ztunnel closes a connection a new policy no longer allows (``connection closed due to policy change``)."""
        for key, (pod, identity, abort, c) in list(self.inbound_open.items()):
            e = self.enrolled.get(pod)
            if e is None or not evaluate(self.policies, self._peer(e), identity, "127.0.0.1").allowed:
                self.inbound_open.pop(key, None)
                self.late_rejected.add(key)
                self.log("info", "proxy::connection_manager",
                         f"connection {c.src.addr}({identity or 'None'})->{c.actual_dst or c.dst.addr} "
                         f"(Kubernetes//Pod/{c.dst.namespace}/{pod}) closed because it's no longer allowed "
                         "after a policy update")
                abort()

    async def _reconcile(self) -> None:
        want = {w["pod"]: w for w in self.config["workloads"] if w.get("dataplane") == "ambient"}
        for name in [n for n in self.enrolled if n not in want]:
            gone = self.enrolled.pop(name)
            gone.close()
            self.certs.release(gone.cert.spiffe_id, name)
            self.log("info", "inpod::statemanager", f"pod delete request, shutting down proxy pod={name}")
        for name, w in want.items():
            w["service"] = self._service_of(w)
            if name in self.enrolled:
                self.enrolled[name].info = w
                continue
            try:
                self.enrolled[name] = await self._enroll(w)
                self.log("info", "inpod::statemanager", f"pod received, starting proxy pod={name}")
            except Exception as exc:
                self.log("error", "inpod::statemanager", f"failed to enroll pod={name}: {exc}")
        ports = {n: e.ports for n, e in self.enrolled.items()}
        if ports != self._announced:
            resp = await self._post("/ztunnel/ports", {"pod": self.name, "workloads": ports})
            if resp.status == 200:
                self._announced = ports

    async def _enroll(self, w: dict[str, Any]) -> Enrolled:
        name = w["pod"]
        held = await self.certs.get(spiffe_id_for(w["namespace"], w["service_account"]), name)
        e = Enrolled(w, held)
        out = await asyncio.start_server(self._guard(self._outbound, name), "127.0.0.1", 0)
        plain = await asyncio.start_server(self._guard(self._inbound_plain, name), "127.0.0.1", 0)
        tunnel = await asyncio.start_server(self._guard(self._inbound_hbone, name), "127.0.0.1", 0,
                                            ssl=held.hbone_listener)
        # a sidecar (the ingress gateway) calling an ambient pod: Istio mTLS, ended here (Istio's sidecars
        # send HBONE to ambient pods; the local sidecar speaks its own mTLS, the identity checks are the same)
        mtls = await asyncio.start_server(self._guard(self._inbound_mtls, name), "127.0.0.1", 0,
                                          ssl=held.mtls_listener)
        e.servers = [out, plain, tunnel, mtls]
        e.ports = {"outbound": out.sockets[0].getsockname()[1], "inbound": plain.sockets[0].getsockname()[1],
                   "hbone": tunnel.sockets[0].getsockname()[1], "mtls": mtls.sockets[0].getsockname()[1]}
        return e

    def _guard(self, handler: Handler, pod: str) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                                             Awaitable[None]]:
        """A connection handler that ends quietly: a failure is a log line and a reset, never a traceback."""
        reporter = "source" if handler == self._outbound else "destination"

        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            hbone.nodelay(writer)
            self.telemetry.socket(reporter, 1)
            try:
                await handler(pod, reader, writer)
            except asyncio.CancelledError:
                writer.transport.abort()  # the process is stopping
            except Exception as exc:
                self.log("error", "proxy", f"connection failed: {type(exc).__name__}: {exc}")
                hbone.reset(writer)
            finally:
                self.telemetry.socket(reporter, -1)

        return run

    async def _request_cert(self, pod: str, identity: str, ttl_s: float) -> WorkloadCert:
        """A certificate for a pod on this node: ztunnel's key, a CSR for the pod's identity, ztunnel's
        own token on the request (the CA signs only for ambient pods of this node), ztunnel's lifetime."""
        key = self.key_spec.generate()
        resp = await self._post("/certs", {"pod": pod, "csr": csr_for(key, identity),
                                           "validity_duration": int(max(1, ttl_s))})
        if resp.status != 200:
            raise RuntimeError(f"the CA refused the CSR: {resp.status} {resp.body[:200]!r}")
        d = json.loads(resp.body)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        return WorkloadCert(d["spiffe_id"], datetime.fromisoformat(d["not_before"]),
                            datetime.fromisoformat(d["not_after"]), int(d["serial_number"]), d["issuer"],
                            d["cert_pem"], d["root_pem"], pem)

    def workload_key_spec(self) -> KeySpec:
        """ztunnel makes ECDSA P-256 keys whatever istio-agent's variables say (they are not its own)."""
        return KeySpec("ECDSA", curve="P-256")

    async def _rotate_loop(self) -> None:
        """Renew each identity's certificate at half its life, as ztunnel's secret manager does."""
        while True:
            await asyncio.sleep(self.certs.next_refresh(time.time()))
            try:
                await self.certs.refresh_due(time.time())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log("warn", "identity::manager", f"certificate fetch failed ({exc})")

    # registry -----------------------------------------------------------------------------------
    def _resolve(self, host: str, namespace: str) -> dict[str, Any] | None:
        parts = host.split(".")
        ns = parts[1] if len(parts) > 1 and parts[1] != "svc" else namespace
        for svc in self.config["services"]:
            if svc["name"] == parts[0] and svc.get("namespace", "tutorial") == ns:
                return dict(svc)
        return None

    def _service_of(self, w: dict[str, Any]) -> str:
        """The FQDN of the (first) Service selecting a workload: the inbound side's destination_service."""
        for svc in self.config["services"]:
            selector = svc.get("selector") or {}
            if selector and svc.get("namespace", "tutorial") == w["namespace"] and \
                    all(w["labels"].get(k) == v for k, v in selector.items()):
                return f"{svc['name']}.{w['namespace']}.svc.cluster.local"
        return ""

    def _endpoints(self, svc: dict[str, Any]) -> list[dict[str, Any]]:
        selector = svc.get("selector") or {}
        return [w for w in self.config["workloads"]
                if w["namespace"] == svc.get("namespace", "tutorial") and w.get("ready") and selector
                and all(w["labels"].get(k) == v for k, v in selector.items())]

    # outbound: the source pod's capture ------------------------------------------------------------
    async def _outbound(self, pod: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        src_addr = "127.0.0.1:{}".format(writer.get_extra_info("peername")[1])
        e = self.enrolled.get(pod)
        listen_port = writer.get_extra_info("sockname")[1]
        uid = peer_uid(listen_port, writer.get_extra_info("peername")[1])
        if uid is not None and uid != os.getuid():
            # only the pod's own netns reaches its 15001 in Istio; here another local user could dial it
            # and be tunnelled under the pod's identity: refused before a byte is read
            self.telemetry.failed(src_addr, f"127.0.0.1:{listen_port}", "outbound",
                                  f"connection from uid {uid}, not this mesh's user: not the pod's own traffic")
            hbone.reset(writer)
            return
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
        except (TimeoutError, OSError, ValueError):
            hbone.reset(writer)
            return
        target = line.decode(errors="replace").strip()
        host, _, _port_text = target.rpartition(":")
        if e is None or not host:
            hbone.reset(writer)
            return
        svc = self._resolve(host, e.info["namespace"])
        if svc is None:
            self.telemetry.failed(src_addr, target, "outbound", f"no service or workload for hostname: {host}")
            hbone.reset(writer)
            return
        fqdn = f"{svc['name']}.{svc.get('namespace', 'tutorial')}.svc.cluster.local"
        waypoint = svc.get("waypoint") or {}
        if waypoint.get("hbone_port"):
            # the Service is bound to a waypoint: the connection goes there, whatever its endpoints
            port = _port_text if _port_text.isdigit() else str(svc.get("port", TARGET_PORT))
            await self._outbound_waypoint(e, src_addr, reader, writer, waypoint, f"{fqdn}:{port}")
            return
        eps = self._endpoints(svc)
        if not eps:
            self.telemetry.failed(src_addr, target, "outbound", f"no healthy upstream: {target}")
            hbone.reset(writer)
            return
        counter = self.rr.setdefault(fqdn, itertools.count())
        dst = eps[next(counter) % len(eps)]  # L4 round-robin, one pick per connection
        if dst.get("hbone_port"):  # an ambient pod's ztunnel, or an HBONE-enabled sidecar
            await self._outbound_hbone(e, src_addr, reader, writer, dst, fqdn, original=f"{fqdn}:{_port_text}")
        else:
            await self._outbound_plain(e, src_addr, reader, writer, dst, fqdn, original=f"{fqdn}:{_port_text}")

    async def _outbound_hbone(self, e: Enrolled, src_addr: str, reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter, dst: dict[str, Any], fqdn: str, original: str = "") -> None:
        authority = f"127.0.0.1:{dst['app_port']}"
        c = Connection("outbound", e.side(src_addr), workload_side(dst, f"127.0.0.1:{dst['hbone_port']}", fqdn),
                       "mutual_tls", authority, original_dst=original)
        try:
            stream = await hbone.open_stream(self._via_tap(int(dst["hbone_port"])), e.client_ctx, authority)
        except ssl.SSLError as exc:
            self.telemetry.opened(c)
            self.telemetry.closed(c, 0, 0, "TLS_FAILURE", f"tls error: {exc}")
            hbone.reset(writer)
            return
        except Exception as exc:
            self.telemetry.opened(c)
            self.telemetry.closed(c, 0, 0, "CONNECT", f"connection failed: {type(exc).__name__}: {exc}")
            hbone.reset(writer)
            return
        peer = peer_spiffe_id(stream.ssl_object)
        if peer != c.dst.identity:
            stream.close()
            self.telemetry.opened(c)
            self.telemetry.closed(c, 0, 0, "IDENTITY_ERROR",
                                  f"identity error: identity verification error: peer is {peer}, "
                                  f"expected {c.dst.identity}")
            hbone.reset(writer)
            return
        if stream.status != 200:
            stream.close()
            self.telemetry.opened(c)
            reason = {401: "Unauthorized", 400: "Bad Request", 503: "Service Unavailable"}.get(stream.status, "")
            # ztunnel's source side flags a refused CONNECT as a connection failure (CONNECT), not DENY
            self.telemetry.closed(c, 0, 0, "CONNECT", f"http status: {stream.status} {reason}".rstrip())
            hbone.reset(writer)  # the app sees a reset, never an HTTP status
            return
        self.telemetry.opened(c)
        sent, received = await self._pipe_stream(reader, writer, stream, c)
        self.telemetry.closed(c, sent, received)

    async def _outbound_waypoint(self, e: Enrolled, src_addr: str, reader: asyncio.StreamReader,
                                 writer: asyncio.StreamWriter, wp: dict[str, Any], authority: str) -> None:
        """HBONE to the Service's waypoint (its 15008), ``:authority`` the Service's address and port;
        the waypoint makes the L7 decisions and opens its own tunnel to the chosen pod."""
        service = authority.rpartition(":")[0]
        dst = Side(f"127.0.0.1:{wp['hbone_port']}", wp["name"], wp["namespace"], wp["identity"], wp["name"], "",
                   service)
        c = Connection("outbound", e.side(src_addr), dst, "mutual_tls", authority)
        try:
            stream = await hbone.open_stream(int(wp["hbone_port"]), e.client_ctx, authority)
        except Exception as exc:
            self.telemetry.opened(c)
            self.telemetry.closed(c, 0, 0, "CONNECT", f"connection failed: {type(exc).__name__}: {exc}")
            hbone.reset(writer)
            return
        peer = peer_spiffe_id(stream.ssl_object)
        if peer != wp["identity"] or stream.status != 200:
            stream.close()
            flag = "IDENTITY_ERROR" if peer != wp["identity"] else "CONNECT"
            self.telemetry.opened(c)
            self.telemetry.closed(c, 0, 0, flag, f"waypoint {wp['namespace']}/{wp['name']} refused: "
                                  f"peer {peer}, status {stream.status}")
            hbone.reset(writer)
            return
        self.telemetry.opened(c)
        sent, received = await self._pipe_stream(reader, writer, stream, c)
        self.telemetry.closed(c, sent, received)

    async def _outbound_plain(self, e: Enrolled, src_addr: str, reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter, dst: dict[str, Any], fqdn: str, original: str = "") -> None:
        """To a pod ztunnel cannot tunnel to (a sidecar pod, or one outside the mesh): plain TCP."""
        c = Connection("outbound", e.side(src_addr), workload_side(dst, f"127.0.0.1:{dst['port']}", fqdn), "unknown",
                       original_dst=original)
        try:
            up_r, up_w = await _dial(int(dst["port"]))
        except OSError as exc:
            self.telemetry.opened(c)
            self.telemetry.closed(c, 0, 0, "CONNECT", f"connection failed: {exc}")
            hbone.reset(writer)
            return
        self.telemetry.opened(c)
        sent, received = await _pipe_tcp(reader, writer, up_r, up_w, self._counter(c))
        self.telemetry.closed(c, sent, received)

    # inbound: the destination pod's 15008 and 15006 ------------------------------------------------
    async def _inbound_hbone(self, pod: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        e = self.enrolled.get(pod)
        if e is None:
            writer.close()
            return
        ssl_object = writer.get_extra_info("ssl_object")
        identity = peer_spiffe_id(ssl_object) or ""
        src_addr = "127.0.0.1:{}".format(writer.get_extra_info("peername")[1])
        src = self._side_of_identity(identity, src_addr)
        c = Connection("inbound", src, e.side(f"127.0.0.1:{e.ports['hbone']}"), "mutual_tls",
                       original_dst=e.info.get("service", ""), actual_dst=f"127.0.0.1:{e.info.get('app_port')}")

        async def decide(stream: hbone.HboneStream, authority: str) -> int:
            c.hbone_addr = authority
            if not e.info.get("app_port") or authority != f"127.0.0.1:{e.info['app_port']}":
                # too little known to report it: ztunnel's early deny, a log line and no metric
                self.telemetry.failed(src_addr, c.dst.addr, "inbound", f"no valid routing destination: {authority}")
                return 400
            self.telemetry.opened(c)
            decision = evaluate(self.policies, self._peer(e), identity, "127.0.0.1")
            if not decision.allowed:
                self.telemetry.closed(c, 0, 0, "DENY", f"connection closed due to policy rejection: {decision.reason}")
                return 401
            return 200

        async def on_open(stream: hbone.HboneStream, authority: str) -> None:
            try:
                up_r, up_w = await _dial(int(e.info["app_port"]))
            except OSError as exc:
                self.telemetry.closed(c, 0, 0, "CONNECT", f"connection failed: {exc}")
                return

            def abort() -> None:
                hbone.reset(up_w)
                stream.writer.transport.abort()

            self.inbound_open[id(c)] = (pod, identity, abort, c)
            try:
                sent, received = await self._pipe_stream(up_r, up_w, stream, c, inbound=True)
            finally:
                self.inbound_open.pop(id(c), None)
            self._close(c, sent, received)

        await hbone.serve_stream(reader, writer, decide, on_open)

    async def _inbound_plain(self, pod: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A caller outside the mesh reaching the pod directly: only STRICT and L4 policy stop it."""
        e = self.enrolled.get(pod)
        src_addr = "127.0.0.1:{}".format(writer.get_extra_info("peername")[1])
        if e is None:
            hbone.reset(writer)
            return
        identity = ""  # plaintext: no peer identity
        c = Connection("inbound", Side(src_addr), e.side(f"127.0.0.1:{e.info['app_port']}"), "unknown",
                       original_dst=e.info.get("service", ""), actual_dst=f"127.0.0.1:{e.info['app_port']}")
        mode = effective_mtls_mode(self.config.get("resources", []), e.info["namespace"], e.info["labels"],
                                   TARGET_PORT)
        if mode == "STRICT":
            self.telemetry.opened(c)
            self.telemetry.closed(c, 0, 0, "DENY", "connection closed due to policy rejection: "
                                  "explicitly denied by: istio-system/istio_converted_static_strict")
            hbone.reset(writer)
            return
        await self._admit_and_pipe(pod, e, c, None, identity, reader, writer)

    async def _inbound_mtls(self, pod: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        e = self.enrolled.get(pod)
        if e is None:
            hbone.reset(writer)
            return
        identity = peer_spiffe_id(writer.get_extra_info("ssl_object")) or ""
        src = self._side_of_identity(identity, "127.0.0.1:{}".format(writer.get_extra_info("peername")[1]))
        c = Connection("inbound", src, e.side(f"127.0.0.1:{e.ports['mtls']}"), "mutual_tls",
                       original_dst=e.info.get("service", ""), actual_dst=f"127.0.0.1:{e.info.get('app_port')}")
        await self._admit_and_pipe(pod, e, c, identity, identity, reader, writer)

    async def _admit_and_pipe(self, pod: str, e: Any, c: Connection, principal: str | None, identity: str,
                              reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Authorize an inbound connection (``principal`` None for plaintext), then pipe it to the app."""
        self.telemetry.opened(c)
        decision = evaluate(self.policies, self._peer(e), principal, "127.0.0.1")
        if not decision.allowed:
            self.telemetry.closed(c, 0, 0, "DENY", f"connection closed due to policy rejection: {decision.reason}")
            hbone.reset(writer)
            return
        try:
            up_r, up_w = await _dial(int(e.info["app_port"]))
        except OSError as exc:
            self.telemetry.closed(c, 0, 0, "CONNECT", f"connection failed: {exc}")
            hbone.reset(writer)
            return
        self.inbound_open[id(c)] = (pod, identity or None, functools.partial(_abort, writer, up_w), c)
        try:
            received, sent = await _pipe_tcp(reader, writer, up_r, up_w, self._counter(c, inbound=True))
        finally:
            self.inbound_open.pop(id(c), None)
        self._close(c, sent, received)

    def _close(self, c: Connection, sent: int, received: int) -> None:
        """An inbound connection's end; one a policy change cut is a DENY with ztunnel's late-rejection error."""
        if id(c) in self.late_rejected:
            self.late_rejected.discard(id(c))
            self.telemetry.closed(c, sent, received, "DENY", POLICY_CHANGE)
        else:
            self.telemetry.closed(c, sent, received)

    def _counter(self, c: Connection, inbound: bool = False) -> Callable[[int, int], None]:
        """Live byte counts for a plain TCP pipe: direction 0 is caller→upstream."""

        def count(direction: int, n: int) -> None:
            sent_by_reporter = (direction == 0) != inbound
            self.telemetry.flow(c, sent=n if sent_by_reporter else 0, received=0 if sent_by_reporter else n)

        return count

    def _peer(self, e: Enrolled) -> Peer:
        return Peer(e.info["namespace"], e.info["labels"], TARGET_PORT)

    def _side_of_identity(self, identity: str, addr: str) -> Side:
        for w in self.config["workloads"]:
            if w.get("dataplane") == "ambient" and spiffe_id_for(w["namespace"], w["service_account"]) == identity:
                return workload_side(w, addr)
            if w.get("waypoint_of") and spiffe_id_for(w["namespace"], w["service_account"]) == identity:
                return Side(addr, w["workload"], w["namespace"], identity, w["labels"].get("app", ""), "", "",
                            w["pod"])
        ns = identity.split("/ns/", 1)[-1].split("/", 1)[0] if "/ns/" in identity else ""
        return Side(addr, namespace=ns, identity=identity)

    async def _pipe_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           stream: hbone.HboneStream, c: Connection, inbound: bool = False) -> tuple[int, int]:
        """Bytes between a local socket and an HBONE stream. Returns (sent, received) as the
        reporting side counts them: outbound, what the source sent; inbound, what the pod sent back."""
        to_stream = 0
        from_stream = 0

        async def up() -> None:
            nonlocal to_stream
            try:
                while data := await reader.read(CHUNK):
                    await stream.send(data)
                    to_stream += len(data)
                    self.telemetry.flow(c, sent=len(data))
                    await pace_bulk(to_stream)
            except (OSError, ConnectionError):
                pass
            stream.end()

        async def down() -> None:
            nonlocal from_stream
            try:
                while (data := await stream.recv()) is not None:
                    writer.write(data)
                    from_stream += len(data)
                    self.telemetry.flow(c, received=len(data))
                    await writer.drain()
                    await pace_bulk(from_stream)
            except (OSError, ConnectionError):
                pass
            if stream.reset:
                hbone.reset(writer)
            else:
                with contextlib.suppress(OSError):
                    if writer.can_write_eof():
                        writer.write_eof()

        try:
            await asyncio.gather(up(), down())
        finally:
            stream.close()
            writer.close()
        # outbound the socket is the source app's, inbound the destination pod's: either way what went into
        # the stream was sent by the reporting side and what came out of it was received
        return to_stream, from_stream

    # sniffing the wire to a pod's HBONE port ----------------------------------------------------------
    def _via_tap(self, port: int) -> int:
        tap = self.hbone_taps.get(port)
        return tap.port if tap is not None else port

    async def _sniff_pod(self, pod: str, seconds: float) -> bool:
        """Put a tap on the wire to ``pod``'s HBONE listener for ``seconds``; its open connections are
        closed so that the callers' next ones cross the tap (the apps reconnect by themselves)."""
        e = self.enrolled.get(pod)
        if e is None or "hbone" not in e.ports:
            return False
        port = e.ports["hbone"]
        old = self.sniffs.pop(pod, None)
        if old is not None:
            old.close()
        tap = Tap("HBONE (15008)", port)
        await tap.start()
        self.hbone_taps[port] = self.sniffs[pod] = tap
        for key, (name, _, abort, *_) in list(self.inbound_open.items()):
            if name == pod:
                self.inbound_open.pop(key, None)
                abort()

        async def stop() -> None:
            await asyncio.sleep(seconds)
            if self.hbone_taps.get(port) is tap:
                del self.hbone_taps[port]  # new connections go straight again; the captures stay readable

        stopping = asyncio.ensure_future(stop())
        self._sniff_stops.add(stopping)
        stopping.add_done_callback(self._sniff_stops.discard)
        return True

    # admin (the pod's localhost:15000 and :15020/metrics) ------------------------------------------
    async def admin(self, req: Request) -> Response:
        path = req.path.split("?", 1)[0]
        if path == "/sniff":
            query = dict(p.partition("=")[::2] for p in req.path.partition("?")[2].split("&") if p)
            pod = query.get("pod", "")
            if req.method == "POST":
                try:
                    seconds = min(max(float(query.get("seconds") or 3), 0.1), 60.0)
                except ValueError:
                    return Response(400, {"content-type": "text/plain"}, b"seconds: must be a number\n")
                if not await self._sniff_pod(pod, seconds):
                    return Response(404, {"content-type": "text/plain"}, f"pod {pod[:80]} is not enrolled\n".encode())
                return Response(200, {"content-type": "application/json"}, b'{"sniffing": true}')
            tap = self.sniffs.get(pod)
            views = [describe(c) for c in tap.captures()] if tap is not None else []
            return Response(200, {"content-type": "application/json"}, json.dumps(views).encode())
        if path in ("/stats/prometheus", "/metrics"):
            return Response(200, {"content-type": "text/plain; version=0.0.4"}, self.telemetry.exposition().encode())
        if path == "/config_dump":
            return Response(200, {"content-type": "application/json"}, json.dumps(self.config_dump()).encode())
        if path in ("/app_log", "/access_log"):
            lines = list(self.telemetry.log)
            since = req.path.partition("since=")[2]
            if since.isdigit():
                lines = lines[max(0, len(lines) - (self.telemetry.logged - int(since))):]
            text = ("\n".join(lines) + "\n") if lines else ""
            return Response(200, {"content-type": "text/plain", "x-log-lines": str(self.telemetry.logged)},
                            text.encode())
        if path == "/tcp_increase":  # the series' increase over a window (what Kiali reads from Prometheus)
            q = dict(part.partition("=")[::2] for part in req.path.partition("?")[2].split("&") if part)
            try:
                window = float(q.get("since") or 0), float(q.get("until") or time.time())
            except ValueError:
                return Response(400, {"content-type": "text/plain"}, b"since, until: must be numbers\n")
            rows = json.dumps(self.telemetry.increase(*window)).encode()
            return Response(200, {"content-type": "application/json"}, rows)
        if path in ("/ready", "/healthz/ready"):
            return Response(200, {"content-type": "text/plain"}, b"ready\n")
        if path == PROBE_PATH:
            body = json.dumps({"ready": True, "live": True, "detail": "", "config_version": self.config_version})
            return Response(200, {"content-type": "application/json"}, body.encode())
        if path == "/flush" and req.method == "POST":
            return Response(200, {"content-type": "application/json"}, b'{"shipped": 0}')
        return Response(404, {"content-type": "text/plain"}, b"unknown admin path\n")

    def config_dump(self) -> dict[str, Any]:
        """What ``istioctl ztunnel-config all -o json`` reads: workloads, services, policies, certificates."""
        workloads = []
        for w in self.config["workloads"]:
            protocol = "HBONE" if w.get("dataplane") == "ambient" else "TCP"
            workloads.append({"name": w["pod"], "namespace": w["namespace"], "workloadIps": ["127.0.0.1"],
                              "node": NODE, "protocol": protocol, "serviceAccount": w["service_account"],
                              "workloadName": w["workload"], "canonicalName": w["labels"].get("app", ""),
                              "status": "Healthy" if w.get("ready") else "Unhealthy",
                              "waypoint": _gateway_address(w.get("waypoint")),
                              "appPort": w.get("app_port") or w.get("port") or 0,
                              "ports": {k: v for k, v in self.enrolled[w["pod"]].ports.items()}
                              if w["pod"] in self.enrolled else {}})
        services = []
        for svc in self.config["services"]:
            eps = [w for w in self.config["workloads"]
                   if w["namespace"] == svc.get("namespace", "tutorial") and svc.get("selector")
                   and all(w["labels"].get(k) == v for k, v in svc["selector"].items())]
            services.append({"name": svc["name"], "namespace": svc.get("namespace", "tutorial"),
                             "hostname": f"{svc['name']}.{svc.get('namespace', 'tutorial')}.svc.cluster.local",
                             "vips": [svc.get("vip", "")], "ports": {str(svc.get("port", 8080)): 8080},
                             "endpoints": {w["pod"]: {"status": "Healthy" if w.get("ready") else "Unhealthy"}
                                           for w in eps},
                             "waypoint": _gateway_address((svc.get("waypoint") or {}).get("key"))})
        policies = [{"name": p.name, "namespace": p.namespace, "action": p.action, "scope": p.scope,
                     "rules": p.rules} for p in self.policies]
        return {"workloads": workloads, "services": services, "policies": policies, "certificates": self.certs.dump(),
                "workloadState": self._workload_state()}

    def _workload_state(self) -> dict[str, Any]:
        """ztunnel's ``workloadState``: each local workload's open connections, as its connection manager
        tracks them (inbound: source, service asked for, address served, protocol; outbound likewise)."""
        state: dict[str, Any] = {}
        for name, e in self.enrolled.items():
            state[f"Kubernetes//Pod/{e.info['namespace']}/{name}"] = {
                "info": {"name": name, "namespace": e.info["namespace"], "trustDomain": "cluster.local",
                         "serviceAccount": e.info["service_account"]},
                "connections": {"inbound": [], "outbound": []}}
        for c in list(self.telemetry.open.values()):
            local = c.dst if c.direction == "inbound" else c.src
            entry = state.get(f"Kubernetes//Pod/{local.namespace}/{local.pod}")
            if entry is None:
                continue
            if c.direction == "inbound":
                entry["connections"]["inbound"].append({
                    "src": c.src.addr, "originalDst": c.original_dst or None, "actualDst": c.actual_dst or c.dst.addr,
                    "protocol": "HBONE" if c.src.identity and c.security == "mutual_tls" else "TCP"})
            else:
                entry["connections"]["outbound"].append({
                    "src": c.src.addr, "originalDst": c.original_dst, "actualDst": c.dst.addr,
                    "protocol": "HBONE" if c.security == "mutual_tls" else "TCP"})
        return state


async def _pipe_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    up_r: asyncio.StreamReader, up_w: asyncio.StreamWriter,
                    count: Callable[[int, int], None] | None = None) -> tuple[int, int]:
    """Plain TCP both ways. Returns (bytes from ``reader`` to upstream, bytes back)."""
    counts = [0, 0]

    async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter, i: int) -> None:
        try:
            while data := await src.read(CHUNK):
                dst.write(data)
                counts[i] += len(data)
                if count is not None:
                    count(i, len(data))
                await dst.drain()
                await pace_bulk(counts[i])
            if dst.can_write_eof():
                dst.write_eof()
        except (OSError, ConnectionError):
            hbone.reset(dst)

    try:
        await asyncio.gather(copy(reader, up_w, 0), copy(up_r, writer, 1))
    finally:
        writer.close()
        up_w.close()
    return counts[0], counts[1]


async def _dial(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    hbone.nodelay(writer)
    return reader, writer


def _abort(*writers: asyncio.StreamWriter) -> None:
    for w in writers:
        hbone.reset(w)


def _gateway_address(key: str | None) -> dict[str, str] | None:
    """ztunnel's ``GatewayAddress`` of a waypoint ``<ns>/<name>``: ``<ns>/<name>.<ns>.svc.cluster.local``."""
    if not key:
        return None
    ns, _, name = key.partition("/")
    return {"destination": f"{ns}/{name}.{ns}.svc.cluster.local"}


def daemon_pod_name() -> str:
    """``ztunnel-xxxxx``: a DaemonSet's pod name (no template hash, five random characters)."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "ztunnel-" + "".join(secrets.choice(alphabet) for _ in range(5))


__all__ = ["NODE", "Ztunnel", "daemon_pod_name"]

