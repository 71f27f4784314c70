"""One pod of the local mesh as an OS process: the app, its sidecar and an admin listener.

Started by the control plane with a JSON description. The pod binds its ports on 127.0.0.1,
registers them, then long-polls its config (xDS in spirit) and ships telemetry in batches.
The admin listener is the pod's Envoy admin port (``/stats/prometheus``, ``/config_dump``,
``/logging``) plus the app's own log for ``meshkit logs``.
"""

from __future__ import annotations

import sys

from meshkit.backends.local import earlykey

if __name__ == "__main__":  # before the proxy's imports below: the first key is made while they run
    earlykey.prefetch(sys.argv)

import asyncio
import gc
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from meshkit import http1
from meshkit.backends.local.ca import WorkloadCert, csr_for, spiffe_id_for
from meshkit.backends.local.probes import PATH as PROBE_PATH
from meshkit.backends.local.proxy.admin import EnvoyAdmin
from meshkit.backends.local.proxy.config import ProxyIdentity
from meshkit.backends.local.proxy.sidecar import Sidecar
from meshkit.backends.local.sniff import Tap, describe
from meshkit.backends.local.tls import RotatingContexts
from meshkit.backends.local.trust import (
    OWNER_VERIFIER_ENV,
    POD_TOKEN_ENV,
    Handler,
    held_by_another,
    owner_only,
    owner_verifier_from_env,
)
from meshkit.backends.local.workloadkey import KeySpec, WorkloadKey, key_pem
from meshkit.errors import InvalidConfig
from meshkit.http1 import BodyStream, ConnectFailure, Limits, Request, Response, SimpleClient, UpstreamReset, serve
from meshkit.sample.app import AppSpec, SampleApp
from meshkit.wire import dumps

# how often a sidecar ships its records; a reader that cannot wait asks for POST /flush instead
FLUSH_INTERVAL = float(os.environ.get("MESHKIT_FLUSH_INTERVAL_S", "0.2"))
APP_PROBE_TIMEOUT_S = 1.0
T = TypeVar("T")


class ControlPlaneClient(SimpleClient):
    """The pod's client to its control plane: a new connection goes only to a listener of this user,
    so a port left free by a dead control plane cannot collect the pod's token (istio-agent likewise
    checks istiod's certificate before it sends its service-account token)."""

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"",
                      stream: BodyStream | None = None) -> Response:
        if not any(c.usable for c in self.idle) and held_by_another(self.port):
            raise ConnectionRefusedError(f"127.0.0.1:{self.port} is not this mesh's control plane")
        return await super().request(method, path, headers, body, stream)


class Pod:
    def __init__(self, args: dict[str, Any]) -> None:
        self.args = args
        self.name: str = args["pod"]
        host, _, port = args["control"].removeprefix("http://").partition(":")
        self.control = ControlPlaneClient(host, int(port))
        self.poller = ControlPlaneClient(host, int(port))
        self.app: SampleApp | None = None
        self.sidecar: Sidecar | None = None
        self.envoy_admin: EnvoyAdmin | None = None
        self.contexts: RotatingContexts
        self.taps: list[Tap] = []
        self._restore: asyncio.Future[None] | None = None
        self.ports: dict[str, int] = {}
        self.stop_event = asyncio.Event()
        self.seen = 0  # the last pushed version, taken or not (what the next poll waits past)
        self._poll: asyncio.Future[None] | None = None
        self.reported: list[str] = []  # the rejections the control plane knows of
        # handed over by the control plane at spawn; taken out of the environment so nothing inherits it
        token = os.environ.pop(POD_TOKEN_ENV, "")
        self.owner = owner_verifier_from_env()
        os.environ.pop(OWNER_VERIFIER_ENV, None)
        self.control_headers = {"host": "istiod", "authorization": f"Bearer {token}"}
        self._flushing = asyncio.Lock()  # /flush returns only once a shipment in flight has landed too
        self.captured: Any = None  # the ambient capture to the node's ztunnel, when enrolled
        # istio-agent's key settings (ECC_SIGNATURE_ALGORITHM, ...), read once: a bad one stops the pod here
        self.key_spec = self.workload_key_spec()
        self._first_key = True

    def workload_key_spec(self) -> KeySpec:
        """The key this proxy makes for its certificate: istio-agent's choice from the environment.
        A pod without a proxy has no agent, so those settings are not its own: the default key."""
        if not (self.args.get("sidecar") or self.args.get("waypoint")):
            return KeySpec()
        return KeySpec.from_env()

    async def start(self) -> None:
        a = self.args
        identity = ProxyIdentity(
            a["pod"], a["labels"].get("app", a["service"]), a["version"], a["labels"], a["namespace"],
            a["service_account"], a["gateway"],
        )
        app_server = None
        if not a["gateway"] and a["service"] != "curl":
            self.app = SampleApp(AppSpec(a["service"], a["version"], pod=self.name))
            self.app.delay_s = float(a.get("delay") or 0.0)
            # with a sidecar the app's own port is the owner's (meshkit exec, misbehave): everyone else goes
            # through the sidecar, as Istio's capture sends them; without one the port is the pod's endpoint
            handler = owner_only(self.app.handle, self.owner) if a["sidecar"] else self.app.handle
            app_server = await serve(handler, "127.0.0.1", 0)
            self.ports["app"] = app_server.sockets[0].getsockname()[1]
        if a["sidecar"]:
            self.contexts = RotatingContexts(await self._while_control_plane_restarts(self._fetch_cert))
            self.sidecar = Sidecar(identity, app_port=self.ports.get("app"), contexts=self.contexts,
                                   seed_name=f"{identity.workload}#{a.get('ordinal', 0)}")
            self.envoy_admin = EnvoyAdmin(self.sidecar, self.sidecar.dump_context)
            # injected under the ambient profile (ISTIO_META_ENABLE_HBONE): HBONE to ambient pods, and a 15008
            # listener for ztunnel; a sidecar from before keeps its mTLS (ztunnel ends it at the pod)
            self.sidecar.accept_hbone = self.sidecar.security.send_hbone = bool(a.get("hbone"))
            ports = await self._start_sidecar(a)
            self.ports.update(ports)
            if self.app is not None:
                self.app.spec = AppSpec(a["service"], a["version"], self.name, ("127.0.0.1", ports["outbound"]))
                # app and sidecar share the process: the pod-internal hop is a call, not a socket
                # (the ports stay open for `meshkit exec` and direct calls to the app)
                self.app.transport = self.sidecar.handle_outbound
                self.app.resolves = self.sidecar.dns_resolves
                self.sidecar.app_handler = self.app.handle
        admin = await serve(owner_only(self.admin, self.owner), "127.0.0.1", 0, limits=Limits(max_body=1024 * 1024))
        self.ports["admin"] = admin.sockets[0].getsockname()[1]
        if self.sidecar is not None:
            # first config before announcing readiness, so a ready pod routes like the mesh says
            await self._while_control_plane_restarts(lambda: self._poll_once(0))
        await self._while_control_plane_restarts(lambda: self._post("/register", {"pod": self.name,
                                                                                 "ports": self.ports}))

    async def _while_control_plane_restarts(self, call: Callable[[], Awaitable[T]], within: float = 30.0) -> T:
        """A start-up call to the control plane, tried again while it cannot be reached (a restart)."""
        deadline = time.monotonic() + within
        while True:
            try:
                return await call()
            except (OSError, ConnectFailure, UpstreamReset):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
                self._follow_control_plane()

    async def run(self) -> None:
        await self.start()
        # what exists now (modules, config, metric families) lives as long as the pod: keep it out of
        # the collector's generations, so a full collection does not stall a request for milliseconds
        gc.collect()
        gc.freeze()
        tasks = [asyncio.ensure_future(self._flush_loop())]
        if self.sidecar is not None:
            tasks.append(asyncio.ensure_future(self._xds_loop()))
            tasks.append(asyncio.ensure_future(self._watch_state_file()))
            tasks.append(asyncio.ensure_future(self._rotate_loop()))
        await self.stop_event.wait()
        for task in tasks:
            task.cancel()
        if self.sidecar is not None:
            await self._flush()
            await self.sidecar.stop()

    async def _sniff(self, seconds: float) -> None:
        """Put taps in front of the inbound listeners for ``seconds``; clients reconnect through them."""
        for tap in self.taps:
            tap.close()
        self.taps = []
        ports = dict(self.ports)
        for name in ("inbound", "inbound_tls"):
            if name in self.ports:
                tap = Tap(name, self.ports[name])
                ports[name] = await tap.start()
                self.taps.append(tap)
        await self._post("/register", {"pod": self.name, "ports": ports})

        async def restore() -> None:
            await asyncio.sleep(seconds)
            await self._post("/register", {"pod": self.name, "ports": self.ports})

        self._restore = asyncio.ensure_future(restore())

    async def _start_sidecar(self, a: dict[str, Any]) -> dict[str, int]:
        assert self.sidecar is not None
        wanted = int(a.get("gateway_port", 0)) if a["gateway"] else 0
        try:
            return await self.sidecar.start(outbound_port=wanted, guard=self._owner_only)
        except OSError:
            if not wanted or a.get("gateway_port_strict"):
                raise
            # the last run's port is taken now: take a free one (the control plane records which)
            for server in self.sidecar.servers:
                server.close()
            self.sidecar.servers.clear()
            return await self.sidecar.start(outbound_port=0, guard=self._owner_only)

    async def _fetch_cert(self) -> WorkloadCert:
        """Get this workload's certificate as istio-agent does: a key made here (it never leaves the
        pod), a CSR for the pod's own SPIFFE id, signed by the control plane's CA for this token only."""
        a = self.args
        key = await self._new_key()
        spiffe_id = spiffe_id_for(a["namespace"], a["service_account"])
        resp = await self._post("/certs", {"pod": self.name, "csr": csr_for(key, spiffe_id)})
        if resp.status != 200:
            why = resp.body[:200].decode(errors="replace")
            raise RuntimeError(f"the CA refused this pod's CSR: {resp.status} {why}")
        data = json.loads(resp.body)
        return WorkloadCert(
            spiffe_id=data["spiffe_id"],
            not_before=datetime.fromisoformat(data["not_before"]),
            not_after=datetime.fromisoformat(data["not_after"]),
            serial_number=int(data["serial_number"]),
            issuer=data["issuer"],
            cert_pem=data["cert_pem"],
            root_pem=data["root_pem"],
            key_pem=key_pem(key),
        )

    async def _new_key(self) -> WorkloadKey:
        """A fresh key of the kind istio-agent would make (:class:`KeySpec`): the first one was started
        with the process; a rotation's is made by a child while the proxy keeps serving (:mod:`earlykey`)."""
        if self._first_key:
            self._first_key = False
            return earlykey.take(self.key_spec)
        return await earlykey.make(self.key_spec)

    async def _rotate_loop(self) -> None:
        # rotate at half of the certificate's life, as istio-agent does; open connections keep theirs
        while True:
            await asyncio.sleep(1.0)
            try:
                if self.contexts.cert.needs_rotation(time.time()):
                    self.contexts.rotate(await self._fetch_cert())
            except Exception:
                await asyncio.sleep(1.0)

    async def _xds_loop(self) -> None:
        assert self.sidecar is not None
        while True:
            poll = asyncio.ensure_future(self._poll_once(self.sidecar.view.version, self.seen))
            self._poll = poll
            try:
                await poll
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # the pod is stopping
                self._follow_control_plane()  # the poll was dropped: the control plane moved
            except Exception:
                # the control plane is gone: keep serving the last config, and look for its successor
                await asyncio.sleep(0.2)
                self._follow_control_plane()

    async def _watch_state_file(self) -> None:
        """A control plane that had to take another API port says so in the state file; a poll still
        waiting on the old port (where anything may answer now, or nothing ever) is dropped."""
        state = Path(self.args["home"]) / "state.json"
        seen = 0
        while True:
            await asyncio.sleep(1.0)
            try:
                mtime = state.stat().st_mtime_ns
                if mtime == seen:
                    continue
                seen = mtime
                port = int(json.loads(state.read_text())["api_port"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if port != self.poller.port and self._poll is not None and not self._poll.done():
                self._poll.cancel()

    def _follow_control_plane(self) -> None:
        """A restarted control plane may listen elsewhere: its state file says where."""
        try:
            port = int(json.loads((Path(self.args["home"]) / "state.json").read_text())["api_port"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        if port != self.poller.port:
            self.control.close()
            self.poller.close()
            self.control = ControlPlaneClient("127.0.0.1", port)
            self.poller = ControlPlaneClient("127.0.0.1", port)

    async def _poll_once(self, version: int, seen: int = 0) -> None:
        """One long poll: ``version`` acknowledges the config in force, ``seen`` the last push
        (rejected pushes are not asked for again, as an Envoy NACK does not ask for a resend)."""
        assert self.sidecar is not None
        resp = await self.poller.request("GET", f"/xds?pod={self.name}&version={version}&seen={seen}",
                                         dict(self.control_headers))
        if resp.status != 200:
            return
        snapshot = json.loads(resp.body)
        self.seen = int(snapshot.get("version", 0))
        try:
            rejected = self.sidecar.apply_snapshot(snapshot)
        except Exception as exc:
            rejected = [f"push v{self.seen} rejected whole, v{self.sidecar.view.version} stays in force: "
                        f"{type(exc).__name__}: {exc}"]
        if rejected != self.reported:
            await self._post("/nack", {"pod": self.name, "version": self.seen, "errors": rejected})
            self.reported = rejected

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            try:
                await self._flush()
            except Exception:
                await asyncio.sleep(1.0)

    async def _flush(self) -> int:
        if self.sidecar is None:
            return 0
        async with self._flushing:
            rows = self.sidecar.telemetry.drain()
            if rows:
                headers = {**self.control_headers, "content-type": "application/json"}
                try:
                    await self.control.request("POST", "/telemetry", headers, dumps({"rows": rows}))
                except Exception:
                    # no control plane (restarting, or gone): the records wait in the bounded outbox (the
                    # oldest go first when it is full), as an Envoy keeps its stats while istiod is away
                    outbox = self.sidecar.telemetry.outbox
                    waiting = [*rows, *outbox]
                    outbox.clear()
                    outbox.extend(waiting)
                    raise
            return len(rows)

    async def _post(self, path: str, body: dict[str, Any]) -> Response:
        data = json.dumps(body).encode()
        return await self.control.request("POST", path, {**self.control_headers, "content-type": "application/json"},
                                          data)

    def _owner_only(self, handler: Handler) -> Handler:
        return owner_only(handler, self.owner)

    async def admin(self, req: Request) -> Response:
        path = req.path.split("?", 1)[0]
        if self.sidecar is not None and self.envoy_admin is not None:
            answer = self.envoy_admin.handle(req.path)
            if answer is not None:
                status, ctype, body = answer
                return Response(status, {"content-type": ctype}, body)
        if path == "/gateway_tls" and self.sidecar is not None:
            tls = {"https_hosts": sorted(self.sidecar.gateway_tls.by_host),
                   "https_problems": self.sidecar.gateway_tls.problems}
            return Response(200, {"content-type": "application/json"}, json.dumps(tls).encode())
        if path == "/stats/prometheus" and self.sidecar is not None and self.envoy_admin is not None:
            body = self.sidecar.telemetry.stats.exposition() + self.envoy_admin.prometheus()
            return Response(200, {"content-type": "text/plain; version=0.0.4"}, body)
        if path == "/access_log" and self.sidecar is not None:
            lines = self.sidecar.telemetry.access_log.tail()
            return Response(200, {"content-type": "text/plain"}, ("".join(f"{line}\n" for line in lines)).encode())
        if path == "/sniff" and req.method == "POST":
            seconds = float(req.path.partition("seconds=")[2] or 3)
            await self._sniff(min(seconds, 60.0))
            return Response(200, {"content-type": "application/json"}, b'{"sniffing": true}')
        if path == "/sniff":
            views = [describe(c) for tap in self.taps for c in tap.captures()]
            return Response(200, {"content-type": "application/json"}, json.dumps(views).encode())
        if path == "/certs" and self.sidecar is not None:
            described = self.contexts.cert.describe(time.time())
            return Response(200, {"content-type": "application/json"}, json.dumps(described, default=str).encode())
        if path == "/app_log" and self.app is not None:
            lines = list(self.app.log)
            since = req.path.partition("since=")[2]
            if since.isdigit():  # `logs -f`: only what was written after the caller's last read
                lines = lines[max(0, len(lines) - (self.app.logged - int(since))):]
            body = ("\n".join(lines) + "\n").encode() if lines else b""
            return Response(200, {"content-type": "text/plain", "x-log-lines": str(self.app.logged)}, body)
        if path == "/flush" and req.method == "POST":
            shipped = await self._flush()
            return Response(200, {"content-type": "application/json"}, json.dumps({"shipped": shipped}).encode())
        if path == "/capture" and req.method == "POST":
            return self._capture(req)
        if path == "/ready":
            return Response(200, {"content-type": "text/plain"}, b"LIVE\n")
        if path == PROBE_PATH:
            return await self._probe()
        return Response(404, {"content-type": "text/plain"}, b"unknown admin path\n")


    def _capture(self, req: Request) -> Response:
        """istio-cni enrolling (or releasing) this ambient pod: its app's calls now go to the node's
        ztunnel, without a restart. A pod with a sidecar never enrolls."""
        from meshkit.backends.local.ztunnel.capture import Capture

        try:
            port = int(json.loads(req.body or b"{}").get("outbound") or 0)
        except (ValueError, TypeError, AttributeError):
            return Response(400, {"content-type": "text/plain"}, b"outbound: must be a port number\n")
        if self.sidecar is not None:
            return Response(409, {"content-type": "text/plain"}, b"a pod with a sidecar is not captured by ztunnel\n")
        if isinstance(self.captured, Capture):
            self.captured.close()
        self.captured = Capture(port) if 0 < port < 65536 else None
        if self.app is not None:
            self.app.transport = self.captured
        return Response(200, {"content-type": "application/json"},
                        json.dumps({"captured": self.captured is not None}).encode())

    async def _probe(self) -> Response:
        """The kubelet's probes, answered as istio-agent answers its rewritten ones: ask the app."""
        ready, live, detail = True, True, ""
        if self.sidecar is not None and self.sidecar.view.version == 0:
            ready, detail = False, "istio-proxy: no config from the control plane yet"
        if self.app is not None:
            for kind in ("live", "ready"):
                try:
                    req = Request("GET", f"/health/{kind}", {"host": "localhost"})
                    ok = (await asyncio.wait_for(self.app.handle(req), APP_PROBE_TIMEOUT_S)).status < 400
                except Exception as exc:
                    ok, detail = False, f"app /health/{kind}: {type(exc).__name__}"
                if not ok:
                    detail = detail or f"app /health/{kind} failed"
                    ready = False
                    live = live and kind != "live"
        version = self.sidecar.view.version if self.sidecar is not None else 0
        body = json.dumps({"ready": ready, "live": live, "detail": detail, "config_version": version}).encode()
        return Response(200, {"content-type": "application/json"}, body)


def bulk_pacer() -> http1.BulkPacer | None:
    """The pacer of this pod's bulk transfers (``MESHKIT_BULK_PACING=off``: none)."""
    if os.environ.get("MESHKIT_BULK_PACING", "on").strip().lower() in ("off", "0", "false", "no"):
        return None
    return http1.BulkPacer()


def main() -> None:
    args = json.loads(sys.argv[1])
    http1.install_pacer(bulk_pacer())
    pod: Pod
    try:
        if args.get("service") == "ztunnel":
            from meshkit.backends.local.ztunnel.node import Ztunnel

            pod = Ztunnel(args)
        elif args.get("waypoint"):
            from meshkit.backends.local.waypoint.proxy import WaypointPod

            pod = WaypointPod(args)
        else:
            pod = Pod(args)
    except InvalidConfig as exc:  # a bad setting in the pod's environment (ECC_SIGNATURE_ALGORITHM, ...)
        print(f"pod {args.get('pod')}: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, pod.stop_event.set)
        loop.add_signal_handler(signal.SIGINT, pod.stop_event.set)
        await pod.run()

    try:
        import uvloop

        uvloop.run(run())
    except ImportError:
        asyncio.run(run())


if __name__ == "__main__":
    main()
