"""The local control plane ("istiod"): one process that stores and validates resources, runs the
pods, computes the registry and pushes versioned config to every proxy, and collects telemetry.

Proxies long-poll ``GET /xds?pod=P&version=N``: the answer comes as soon as the mesh's config
version passes N, which is a push in effect; the ``version`` of the next poll acknowledges it, and
``/status`` shows each proxy as SYNCED or STALE like ``istioctl proxy-status``.

Run by ``meshkit up``::

    python -m meshkit.backends.local.controlplane --home ~/.meshkit --profile current
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from meshkit.backends.local.ca import CertificateAuthority
from meshkit.backends.local.collector import Collector
from meshkit.backends.local.durable import StateWriteError, read_json, write_atomic
from meshkit.backends.local.jwt import LocalIssuer
from meshkit.backends.local.kubeobjects import KubeObjects
from meshkit.backends.local.processes import HomeLock, ProcessRecord
from meshkit.backends.local.proxy.stats import merge_expositions
from meshkit.backends.local.store import ResourceStore, key_of
from meshkit.backends.local.timeapi import TimeService
from meshkit.backends.local.workloads import GATEWAY, Deployments, DeploymentSpec, service_account
from meshkit.errors import MeshkitError, NotFound
from meshkit.http1 import Request, Response, SimpleClient, serve
from meshkit.resources.kubernetes import KUBE_KINDS
from meshkit.sample.ingress import gateway_customer
from meshkit.wire import dumps, loads

SERVICES = ("customer", "preference", "recommendation")
DEFAULT_DEPLOYMENTS = (
    DeploymentSpec(GATEWAY, ""),
    DeploymentSpec("customer", "v1"),
    DeploymentSpec("preference", "v1"),
    DeploymentSpec("recommendation", "v1"),
    DeploymentSpec("recommendation", "v2"),
)
JSON = {"content-type": "application/json"}
# where RequestAuthentication can fetch the local issuer's keys (jwks inline works as well)
LOCAL_JWKS_URI = "http://jwks.meshkit.local/jwks.json"


class ControlPlane:
    def __init__(self, home: Path, profile: str, outbound_policy: str, gateway_port: int) -> None:
        self.home = home
        self.profile = profile
        self.outbound_policy = outbound_policy
        self.gateway_port = gateway_port
        self.gateway_port_strict = False
        self.store = ResourceStore(home / "resources.json")
        self.version = 1
        self.changed = asyncio.Event()
        self.deployments: Deployments | None = None
        self.time_service = TimeService()
        # bounded: about 1 KB per record and per span, so some 60 MB when full
        self.collector = Collector(max_records=30_000, max_spans=30_000, max_traces=5_000)
        self.started = time.time()
        self.api_port = 0
        self.ca = CertificateAuthority.load_or_create(home / "ca")
        self.issuer = LocalIssuer.load_or_create(home / "jwt")
        self.cert_ttl = float(os.environ.get("MESHKIT_CERT_TTL", 24 * 3600))
        self.secrets: dict[str, dict[str, str]] = read_json(home / "secrets.json", default={}, expect=dict)
        # SIGTERM ends this process only: the pods keep serving (``meshkit down`` ends them)
        self.keep_pods = True

    # config -------------------------------------------------------------------------------------
    def bump(self) -> None:
        self.version += 1
        self.changed.set()
        self.changed = asyncio.Event()

    def snapshot(self, gateway: bool = False) -> dict[str, Any]:
        assert self.deployments is not None
        pods = [p for p in self.deployments.pods.values() if p.ports]
        return {
            "version": self.version,
            "profile": self.profile,
            "outbound_policy": self.outbound_policy,
            "services": self.kube.services(),
            "endpoints": [p.endpoint() for p in pods if not p.spec.gateway],
            "internet": {"worldtimeapi.org": ["127.0.0.1", self.time_service.port]},
            "jwks": {LOCAL_JWKS_URI: self.issuer.jwks()},
            "resources": [r for r in self.store.list() if r["kind"] not in KUBE_KINDS],
            # TLS keys go to the gateway only, as SDS serves a credentialName to the gateway that uses it
            "secrets": self.secrets if gateway else {},
        }

    # API ----------------------------------------------------------------------------------------
    async def handle(self, req: Request) -> Response:
        url = urlsplit(req.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = loads(req.body) if req.body else {}
        route = f"{req.method} {url.path}"
        try:
            result = await self._dispatch(route, query, body)
        except KeyError as exc:
            return _json({"error": f"not found: {exc.args[0]}"}, 404)
        except NotFound as exc:
            return _json({"error": str(exc)}, 404)
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        except StateWriteError as exc:
            return _json({"error": f"{exc}: nothing was applied"}, 507)
        if isinstance(result, Response):
            return result
        return _json(result)

    async def _dispatch(self, route: str, q: dict[str, str], body: dict[str, Any]) -> Any:
        deps = self.deployments
        assert deps is not None
        if route == "GET /healthz":
            return {"ok": True, "ready": self.ready()}
        if route == "GET /xds":
            return await self._xds(q["pod"], int(q.get("version", 0)), int(q.get("seen", 0)))
        if route == "POST /nack":
            # the proxy could not use some of a push (Envoy's NACK): what, and why, for `meshkit status`
            pod = deps.pods[body["pod"]]
            pod.last_error = "; ".join(str(e) for e in body.get("errors") or [])[:2000]
            return {"ok": True}
        if route == "GET /config_dump":
            return self.istiod_view(q["pod"])
        if route == "POST /register":
            pod = deps.pods[body["pod"]]
            pod.ports, pod.ready = body["ports"], True
            deps.record(pod)
            if pod.spec.gateway and body["ports"].get("outbound") != self.gateway_port:
                self.gateway_port = deps.gateway_port = int(body["ports"]["outbound"])
                self._write_state()
            self.bump()
            return {"version": self.version}
        if route == "POST /certs":
            pod = deps.pods[body["pod"]]
            cert = self.ca.issue(pod.namespace, service_account(pod.spec), ttl_s=self.cert_ttl)
            return {
                "spiffe_id": cert.spiffe_id, "not_before": cert.not_before.isoformat(),
                "not_after": cert.not_after.isoformat(), "serial_number": str(cert.serial_number),
                "issuer": cert.issuer, "cert_pem": cert.cert_pem, "root_pem": cert.root_pem, "key_pem": cert.key_pem,
            }
        if route == "POST /secrets":
            self._check_secret(body)
            secrets = {**self.secrets, body["name"]: {"cert": body["cert"], "key": body["key"]}}
            write_atomic(self.home / "secrets.json", json.dumps(secrets).encode())  # stored, then live
            self.secrets = secrets
            self.bump()
            return {"name": body["name"]}
        if route == "GET /secrets":
            return {"names": sorted(self.secrets)}
        if route == "POST /token":
            token = self.issuer.mint(body.get("claims") or {}, subject=body.get("subject"),
                                     ttl_s=float(body.get("ttl", 3600)), audience=body.get("audience"))
            return {"token": token, "issuer": self.issuer.issuer, "jwks_uri": LOCAL_JWKS_URI}
        if route == "GET /jwks":
            return self.issuer.jwks()
        if route == "POST /telemetry":
            self.collector.ingest_rows(body.get("rows", []))
            return {"ok": True}
        if route == "GET /status":
            return self.status()
        if route == "POST /apply":
            resources = self._admit(body["resources"])
            warnings = self._compile_check([r for r in resources if r["kind"] not in KUBE_KINDS])
            # stored on disk first: what is not stored is not applied
            stored = dict(self.store.put_all([r for r in resources if r["kind"] not in KUBE_KINDS]))
            results = []
            for r in resources:
                action, notes = (await self.kube.apply(r)) if r["kind"] in KUBE_KINDS else (stored[key_of(r)], [])
                results.append((key_of(r), action, notes))
            if any(action != "unchanged" for _, action, _ in results):
                self.bump()
            return {"results": [{"kind": k[0], "namespace": k[1], "name": k[2], "action": a, "warnings": w}
                                for k, a, w in results], "warnings": warnings}
        if route == "POST /delete":
            key = (body["kind"], body.get("namespace", "tutorial"), body["name"])
            found = await self.kube.delete(*key) if key[0] in KUBE_KINDS else self.store.delete(key) is not None
            if not found:
                raise KeyError(f"{body['kind']} {body['name']}")
            self.bump()
            return {"deleted": True}
        if route == "GET /resources":
            kind = q.get("kind")
            if kind is not None and (kind in KUBE_KINDS or kind == "Pod"):
                return {"items": self.kube.objects(kind, q.get("name"), q.get("namespace"), q.get("selector", ""))}
            items = [r for r in self.store.list(kind, q.get("name")) if r["kind"] not in KUBE_KINDS
                     and q.get("namespace") in (None, r["metadata"].get("namespace"))]
            return {"items": items}
        if route == "POST /deploy":
            spec = DeploymentSpec(body["service"], body.get("version", "v1"), int(body.get("replicas", 1)),
                                  bool(body.get("sidecar", True)))
            await deps.ensure(spec)
            if self.kube.ensure_service(spec):
                self.store.save()
                self.bump()
            return {"deployment": spec.name}
        if route == "POST /scale":
            spec = deps.specs[body["deployment"]]
            await deps.ensure(dataclasses.replace(spec, replicas=int(body["replicas"])))
            self.kube.scaled(spec.name, int(body["replicas"]))
            self.store.save()
            return {"ok": True}
        if route == "POST /undeploy":
            deps.specs[body["deployment"]]
            services = await self.kube.undeploy(body["deployment"])
            self.store.save()
            self.bump()
            return {"ok": True, "services": services}
        if route == "POST /kill":
            await deps.kill(body["pod"])
            return {"ok": True}
        if route == "GET /records":
            return {"records": self.collector.records(float(q.get("since", 0)), int(q.get("limit", 10_000)))}
        if route == "GET /traces":
            return self.collector.jaeger_traces(q.get("service") or None, int(q.get("limit", 20)),
                                                float(q.get("lookback", 3600)))
        if route == "GET /metrics":
            return Response(200, {"content-type": "text/plain; version=0.0.4"},
                            (await self._metrics(q.get("pod"))).encode())
        if route == "POST /shutdown":
            # ``meshkit down`` stops the pods with the control plane; ``meshkit restart`` keeps them
            self.keep_pods = bool(body.get("keep_pods", False))
            asyncio.get_running_loop().call_soon(self.stop_event.set)
            return {"ok": True}
        raise KeyError(route)

    async def _metrics(self, pod: str | None) -> str:
        assert self.deployments is not None
        pods = [p for p in self.deployments.pods.values() if p.spec.sidecar and "admin" in p.ports]
        if pod is not None:
            chosen = [p for p in pods if pod in (p.name, p.deployment, p.spec.labels().get("app", p.spec.service))]
            if not chosen:
                names = ", ".join(sorted(p.name for p in pods))
                raise NotFound(f'no pod named "{pod}" with a sidecar; known: {names}')
            pods = chosen
        texts = {}
        for p in pods:
            client = SimpleClient("127.0.0.1", p.ports["admin"], timeout=5)
            try:
                resp = await client.request("GET", "/stats/prometheus", {"host": "localhost"})
                texts[p.name] = resp.body
            except Exception:
                continue  # a pod that just died has no metrics to give
            finally:
                client.close()
        return merge_expositions(texts)

    async def _xds(self, pod: str, version: int, seen: int = 0) -> Any:
        assert self.deployments is not None
        state = self.deployments.pods.get(pod)
        if state is not None:
            state.acked_version = version
            if not state.connected:
                # a proxy (re)connecting gets the whole config at once, as Envoy does from a new istiod;
                # one configured by an earlier control plane moves the version past its own
                state.connected = True
                if max(version, seen) >= self.version:
                    version = max(version, seen)
                    self.version = version
                    self.bump()
                return self.snapshot(gateway=state.spec.gateway)
        if max(version, seen) >= self.version:
            try:
                await asyncio.wait_for(self.changed.wait(), 25.0)
            except TimeoutError:
                return Response(304, {}, b"")
        return self.snapshot(gateway=state is not None and state.spec.gateway)

    def istiod_view(self, pod_name: str) -> dict[str, Any]:
        """What istiod would send this proxy now, as an Envoy config dump (``proxy-status POD`` diffs it)."""
        from meshkit.backends.local.proxy.config import ProxyIdentity, compile_view
        from meshkit.backends.local.proxy.configdump import DumpContext, config_dump
        from meshkit.backends.local.proxy.security import WorkloadSecurity

        assert self.deployments is not None
        pod = self.deployments.pods.get(pod_name)
        if pod is None or not pod.spec.sidecar:
            raise NotFound(f'no pod named "{pod_name}" with a sidecar')
        spec = pod.spec
        labels = spec.labels()
        identity = ProxyIdentity(pod.name, labels["app"], spec.version, labels, pod.namespace,
                                 service_account(spec), spec.gateway)
        view = compile_view(self.snapshot(gateway=spec.gateway), identity)
        security = WorkloadSecurity(identity, None)
        security.apply(view, {})
        return config_dump(view, DumpContext(security.server_modes, security.mode), include_eds=True)

    def _admit(self, raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The admission webhook: every resource is validated here too, whoever sent it."""
        from meshkit.resources import Document, validate_documents

        docs = [Document("<api>", i, r, 1) for i, r in enumerate(raw)]
        report = validate_documents(docs, profile=self.profile)
        if report.errors:
            problems = "; ".join(p.message for p in report.errors)
            raise ValueError(f'admission webhook "validation.istio.io" denied the request: {problems}')
        return report.resources

    def _compile_check(self, resources: list[dict[str, Any]]) -> list[str]:
        """Compile the store as it would be after ``resources`` for every workload's proxy, as the
        proxies will: a resource that any of them would reject is refused here. Returns warnings."""
        from meshkit.backends.local.proxy.config import ProxyIdentity
        from meshkit.backends.local.proxy.sidecar import check_push
        from meshkit.backends.local.store import key_of

        assert self.deployments is not None
        keys = {key_of(r) for r in resources}
        candidate = [r for r in self.store.list() if key_of(r) not in keys] + resources
        errors: dict[str, None] = {}
        warnings: dict[str, None] = {}
        specs = {s.name: s for s in self.deployments.specs.values() if s.sidecar}
        for spec in specs.values():
            labels = spec.labels()
            namespace = "istio-system" if spec.gateway else spec.namespace
            identity = ProxyIdentity(f"{spec.name}-admission", labels.get("app", spec.service), spec.version, labels,
                                     namespace, service_account(spec), spec.gateway)
            snapshot = {**self.snapshot(gateway=spec.gateway), "resources": candidate}
            found, warned = check_push(snapshot, identity)
            errors.update(dict.fromkeys(found))
            warnings.update(dict.fromkeys(w for w in warned if any(f"{k[1]}/{k[2]}:" in w for k in keys)))
        if errors:
            raise ValueError('admission webhook "validation.istio.io" denied the request: '
                             f"the proxies cannot use it: {'; '.join(errors)}")
        return list(warnings)

    @staticmethod
    def _check_secret(body: dict[str, Any]) -> None:
        from meshkit.backends.local.tls import gateway_server_context
        from meshkit.errors import InvalidConfig

        if not body.get("name") or not body.get("cert") or not body.get("key"):
            raise ValueError("a TLS secret needs a name, a certificate and a key")
        try:
            gateway_server_context(body["cert"], body["key"])
        except InvalidConfig as exc:
            raise ValueError(f'secret "{body["name"]}": {exc}') from None

    def _write_state(self) -> None:
        me = ProcessRecord.of(os.getpid())
        write_atomic(self.home / "state.json", json.dumps({
            "pid": os.getpid(), "start": me.start if me else 0, "api_port": self.api_port,
            "gateway_port": self.gateway_port, "profile": self.profile, "outbound": self.outbound_policy,
            "started": self.started, "version": self.version}).encode())

    def ready(self) -> bool:
        assert self.deployments is not None
        pods = list(self.deployments.pods.values())
        want = sum(s.replicas for s in self.deployments.specs.values())
        return len(pods) >= want and all(p.ready and (p.acked_version >= 1 or not p.spec.sidecar) for p in pods)

    def status(self) -> dict[str, Any]:
        assert self.deployments is not None
        pods = []
        for p in sorted(self.deployments.pods.values(), key=lambda p: p.name):
            pods.append(
                {
                    "name": p.name,
                    "app": p.spec.labels().get("app", p.spec.service),
                    "version": p.spec.version,
                    "deployment": p.deployment,
                    "namespace": p.namespace,
                    "ready": p.ready,
                    "sidecar": p.spec.sidecar,
                    "service_account": p.endpoint()["principal"].rsplit("/", 1)[-1] if p.spec.sidecar else "",
                    "config_version": p.acked_version,
                    "synced": p.acked_version >= self.version or not p.spec.sidecar,
                    "restarts": p.restarts,
                    "last_error": p.last_error,
                    "ports": p.ports,
                    "pid": p.proc.pid if p.proc else 0,
                }
            )
        return {
            "control_plane": {"state": "running", "pid": os.getpid(), "api_port": self.api_port,
                              "started": self.started},
            "version": self.version,
            "profile": self.profile,
            "outbound_policy": self.outbound_policy,
            "gateway_port": self.gateway_port,
            "time_service_port": self.time_service.port,
            "pods": pods,
            "crashes": self.deployments.crashes,
            "ready": self.ready(),
        }

    # lifecycle ----------------------------------------------------------------------------------
    async def run(self, deployments: tuple[DeploymentSpec, ...]) -> None:
        self.stop_event = asyncio.Event()
        previous = read_json(self.home / "state.json", default={}, expect=dict)
        server = await self._serve_api(int(previous.get("api_port") or 0))
        self.api_port = server.sockets[0].getsockname()[1]
        await self.time_service.start()
        self.deployments = Deployments(self.home, f"http://127.0.0.1:{self.api_port}", self.bump, self.gateway_port)
        self.deployments.gateway_port_strict = self.gateway_port_strict
        # pods left serving by an earlier control plane are adopted, not started again
        adopted = self.deployments.adopt()
        self.version = max(int(previous.get("version") or 0), *(p.acked_version for p in adopted), 0) + 1
        for pod in adopted:
            if pod.spec.gateway and pod.ports.get("outbound"):
                self.gateway_port = self.deployments.gateway_port = pod.ports["outbound"]
        if not self.store.list("Gateway"):
            self.store.put_all(gateway_customer())
        self.kube = KubeObjects(self.store, self.deployments)
        specs = self.deployments.load()
        if not specs:  # a fresh mesh: the sample's namespace, accounts and Services come with its pods
            specs = list(deployments)
            self.kube.seed()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        self._write_state()
        await asyncio.gather(*(self.deployments.ensure(s) for s in specs))
        await self.stop_event.wait()
        server.close()
        if self.keep_pods:
            self.deployments.stopping = True  # no more restarts: the next control plane takes over
            for pod in self.deployments.pods.values():
                self.deployments.record(pod)
            self._write_state()
        else:
            await self.deployments.stop_all()
            (self.home / "state.json").unlink(missing_ok=True)
        self.time_service.stop()

    async def _serve_api(self, port: int) -> asyncio.base_events.Server:
        """The API on the last control plane's port when free, so running pods find it where it was."""
        if port:
            try:
                return await serve(self.handle, "127.0.0.1", port)
            except OSError:
                pass
        return await serve(self.handle, "127.0.0.1", 0)


def _json(data: Any, status: int = 200) -> Response:
    return Response(status, dict(JSON), dumps(data))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="meshkit-controlplane")
    parser.add_argument("--home", required=True)
    parser.add_argument("--profile", default="current", choices=["current", "tutorial"])
    parser.add_argument("--outbound", default="REGISTRY_ONLY", choices=["REGISTRY_ONLY", "ALLOW_ANY"])
    parser.add_argument("--gateway-port", type=int, default=0)
    parser.add_argument("--gateway-port-strict", action="store_true", help="fail rather than pick another port")
    args = parser.parse_args(argv)
    home = Path(args.home).resolve()
    (home / "logs").mkdir(parents=True, exist_ok=True)
    lock = HomeLock(home / "controlplane.lock")
    if not lock.try_acquire("control plane"):
        print(f"error: {lock.holder()} already serves the mesh in {home}", file=sys.stderr, flush=True)
        sys.exit(3)
    try:
        cp = ControlPlane(home, args.profile, args.outbound, args.gateway_port)
        cp.gateway_port_strict = args.gateway_port_strict
        try:
            import uvloop

            uvloop.run(cp.run(DEFAULT_DEPLOYMENTS))
        except ImportError:
            asyncio.run(cp.run(DEFAULT_DEPLOYMENTS))
    except MeshkitError as exc:
        # a corrupt state file, a CA that does not match its key: one line, no traceback
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
