"""The local control plane ("istiod"): one process that stores and validates resources, runs the
pods, computes the registry and pushes versioned config to every proxy, and collects telemetry.

Proxies long-poll ``GET /xds?pod=P&version=N``: the answer comes as soon as the mesh's config
version passes N, which is a push in effect; the ``version`` of the next poll acknowledges it, and
``/status`` shows each proxy as SYNCED or STALE like ``istioctl proxy-status``.

Run by ``meshkit up``::

    python -m meshkit.backends.local.controlplane --home ~/.meshkit --profile current
"""

from __future__ import annotations

import sys

from meshkit.backends.local import earlykey

if __name__ == "__main__":  # before the imports below: a new mesh's root key is made while they run
    earlykey.prefetch_root(sys.argv)

import argparse
import asyncio
import concurrent.futures
import dataclasses
import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives.serialization import Encoding

from meshkit.backends.local import ambient, apiinput
from meshkit.backends.local.ca import CertificateAuthority, CsrRefused, spiffe_id_for
from meshkit.backends.local.collector import Collector, Reporter
from meshkit.backends.local.durable import StateWriteError, read_json, write_atomic
from meshkit.backends.local.jwt import LocalIssuer
from meshkit.backends.local.kubeobjects import KubeObjects
from meshkit.backends.local.probes import ProbeSettings
from meshkit.backends.local.processes import HomeLock, ProcessRecord
from meshkit.backends.local.proxy.stats import merge_expositions
from meshkit.backends.local.store import ResourceStore, key_of
from meshkit.backends.local.timeapi import TimeService
from meshkit.backends.local.trust import (
    OWNER,
    OWNER_HEADER,
    authenticate,
    ensure_owner_credential,
    forbidden,
    held_by_another,
    secure_home,
    unauthorized,
)
from meshkit.backends.local.waypoint import binding as waypoint_binding
from meshkit.backends.local.workloads import (
    GATEWAY,
    ZTUNNEL,
    Deployments,
    DeploymentSpec,
    PodState,
    service_account,
)
from meshkit.errors import MeshkitError, NotFound
from meshkit.http1 import (
    BodyError,
    ConnectFailure,
    Limits,
    Request,
    ResetConnection,
    Response,
    SimpleClient,
    UpstreamReset,
    serve,
)
from meshkit.resources.gatewayapi import GROUP as GATEWAY_API_GROUP
from meshkit.resources.gatewayapi import is_gateway_api
from meshkit.resources.gatewayapi.translate import Translation, builtin_gateway_classes, translate
from meshkit.resources.kubernetes import KUBE_KINDS
from meshkit.sample.ingress import gateway_customer
from meshkit.wire import dumps

SERVICES = ("customer", "preference", "recommendation")
DEFAULT_DEPLOYMENTS = (
    DeploymentSpec(GATEWAY, ""),
    DeploymentSpec("customer", "v1"),
    DeploymentSpec("preference", "v1"),
    DeploymentSpec("recommendation", "v1"),
    DeploymentSpec("recommendation", "v2"),
)
JSON = {"content-type": "application/json"}
MAX_WORKLOAD_CERT_TTL_S = 90 * 24 * 3600  # istiod's MAX_WORKLOAD_CERT_TTL default: the longest a CSR may ask
# kubectl label's key: an optional DNS-subdomain prefix and a name of at most 63 characters
LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
DEPLOYABLE = ("customer", "preference", "recommendation", "curl")
POD_PORTS = frozenset({"app", "outbound", "inbound", "inbound_tls", "admin", "https", "hbone"})
# where RequestAuthentication can fetch the local issuer's keys (jwks inline works as well)
LOCAL_JWKS_URI = "http://jwks.meshkit.local/jwks.json"


class ControlPlane:
    def __init__(self, home: Path, profile: str, outbound_policy: str, gateway_port: int) -> None:
        self.home = home
        # the owner's credential guards every route; pods prove themselves with tokens derived from it
        self.credential = ensure_owner_credential(home)
        self.profile = profile
        self.outbound_policy = outbound_policy
        self.gateway_port = gateway_port
        self.gateway_port_strict = False
        self.store = ResourceStore(home / "resources.json")
        self.version = 1
        self._translation: tuple[int, Translation] | None = None
        self.changed = asyncio.Event()
        self.deployments: Deployments | None = None
        self.time_service = TimeService()
        # bounded: about 1 KB per record and per span, so some 60 MB when full
        self.collector = Collector(max_records=30_000, max_spans=30_000, max_traces=5_000)
        self.started = time.time()
        self.api_port = 0
        self.ca = CertificateAuthority.load_or_create(home / "ca", make_root_key=earlykey.take_root)
        self._issuer = _load_or_make_issuer(home / "jwt")
        self.cert_ttl = float(os.environ.get("MESHKIT_CERT_TTL", 24 * 3600))
        self.secrets: dict[str, dict[str, str]] = read_json(home / "secrets.json", default={}, expect=dict)
        self.probes = ProbeSettings.from_env()
        # SIGTERM ends this process only: the pods keep serving (``meshkit down`` ends them)
        self.keep_pods = True
        self.dataplane = "sidecar"  # `up --dataplane ambient`: the sample without sidecars, and a ztunnel

    @property
    def issuer(self) -> LocalIssuer:
        """The local JWT issuer (``meshkit token``, the JWKS in every push)."""
        return self._issuer.result()

    # config -------------------------------------------------------------------------------------
    def bump(self) -> None:
        self.version += 1
        self.changed.set()
        self.changed = asyncio.Event()

    def services(self) -> list[dict[str, Any]]:
        """The registry's Services: the Kubernetes Services, plus one per version each sample deployment
        carries (``recommendation-v1``...), as Istio's bookinfo-versions.yaml adds for Gateway API routes,
        which split traffic between Services for want of subsets."""
        out = self.kube.services()
        names = {(s["namespace"], s["name"]) for s in out}
        assert self.deployments is not None
        for spec in self.deployments.specs.values():
            labels = spec.labels()
            app, version = labels.get("app"), labels.get("version")
            if spec.gateway or not app or not version or (spec.namespace, f"{app}-{version}") in names:
                continue
            names.add((spec.namespace, f"{app}-{version}"))
            out.append({"name": f"{app}-{version}", "namespace": spec.namespace, "port": 8080,
                        "selector": {"app": app, "version": version}})
        return out

    def _translate(self, items: list[dict[str, Any]]) -> Translation:
        assert self.deployments is not None
        known = {(s["namespace"], s["name"]): (int(s["port"]),) for s in self.services()}
        pods = self.deployments.pods.values()
        ready = {f"{p.namespace}/{p.deployment}" for p in pods if p.spec.gateway_of and p.ready}
        return translate(items, known, ready)

    def translation(self) -> Translation:
        """istiod's Gateway API controller: generated config, gateway deployments and status (per version)."""
        if self._translation is None or self._translation[0] != self.version:
            self._translation = (self.version, self._translate(self.store.list()))
        return self._translation[1]

    def pushed_resources(self, items: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """What proxies get: Istio's kinds plus the VirtualServices and Gateways generated from Gateway API
        resources, in creation order (a sidecar keeps the oldest VirtualService of a host)."""
        tx = self.translation() if items is None else self._translate(items)
        own = [r for r in (self.store.list() if items is None else items)
               if not is_gateway_api(r) and r["kind"] not in KUBE_KINDS]
        merged = own + tx.virtual_services + tx.gateways
        return sorted(merged, key=lambda r: str(r.get("metadata", {}).get("creationTimestamp") or ""))

    async def reconcile_gateways(self) -> None:
        """Istio's deployment controller: a ``<gateway>-istio`` deployment per Gateway of class istio."""
        deps = self.deployments
        assert deps is not None
        want = {d.name: d for d in self.translation().deployments}
        for name, spec in list(deps.specs.items()):
            if spec.gateway_of and name not in want:
                await deps.remove(name)
        for name, d in want.items():
            if name not in deps.specs and d.waypoint:
                await deps.ensure(DeploymentSpec(d.name, "", 1, True, namespace=d.namespace, gateway_of=d.gateway,
                                                 waypoint=True))
            elif name not in deps.specs:
                await deps.ensure(DeploymentSpec(d.name, "", 1, True, gateway_of=d.gateway))

    def with_status(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        statuses = self.translation().statuses
        out = []
        bound: dict[tuple[str, str], str] | None = None
        for r in items:
            if r.get("kind") == "AuthorizationPolicy" and self.has_ztunnel():
                if bound is None:
                    bound = self.bound_services()
                status = ambient.authorization_status(r, {(s["namespace"], s["name"]) for s in self.kube.services()},
                                                      bound)
                if status:
                    r = {**r, "status": status}
            if r.get("kind") == "Service" and self.has_ztunnel():
                meta = r.get("metadata") or {}
                ns = str(meta.get("namespace") or "tutorial")
                cond = waypoint_binding.bound_condition(waypoint_binding.bind_service(
                    meta.get("labels") or {}, ns, self.namespace_labels().get(ns, {}), self.waypoints()))
                if cond is not None:
                    r = {**r, "status": {**(r.get("status") or {}), "conditions": [cond]}}
            if is_gateway_api(r):
                meta = r.get("metadata", {})
                r = {**r, "status": statuses.get((r["kind"], meta.get("namespace", "tutorial"), meta["name"]), {})}
                if r["kind"] in ("HTTPRoute", "GRPCRoute") and self.has_ztunnel() and r["status"].get("parents"):
                    r = {**r, "status": waypoint_binding.with_resolved_waypoints(
                        r["status"], str(meta.get("namespace") or "tutorial"), int(meta.get("generation", 1)),
                        {(s["namespace"], s["name"]): s.get("labels") or {} for s in self.kube.services()},
                        self.namespace_labels())}
            out.append(r)
        return out

    def snapshot(self, gateway: bool = False, resources: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        assert self.deployments is not None
        pods = [p for p in self.deployments.pods.values() if p.ports]
        resources = self.pushed_resources() if resources is None else resources
        return {
            "version": self.version,
            "profile": self.profile,
            "outbound_policy": self.outbound_policy,
            "services": self.services(),
            "endpoints": [p.endpoint() for p in pods if not p.spec.gateway],
            "internet": {"worldtimeapi.org": ["127.0.0.1", self.time_service.port]},
            "jwks": {LOCAL_JWKS_URI: self.issuer.jwks()},
            "resources": resources,
            # TLS keys go to gateways only, and only those a Gateway names: SDS serves a credentialName to
            # the gateway that uses it, never the namespace's other secrets
            "secrets": _referenced(self.secrets, resources) if gateway else {},
        }

    # API ----------------------------------------------------------------------------------------
    async def handle(self, req: Request) -> Response:
        # who is calling comes first: nothing of the request is parsed for a stranger
        caller = authenticate(req.headers, self.credential)
        if caller is None:
            return unauthorized()
        route = req.method
        try:
            url = urlsplit(req.path)
            route = f"{req.method} {url.path}"
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            body = apiinput.json_object(req.body)
            if caller != OWNER:
                return await self._pod_route(caller, route, query, body)
            result = await self._dispatch(route, query, body)
        except KeyError as exc:
            return _json({"error": f"not found: {exc.args[0]}"}, 404)
        except NotFound as exc:
            return _json({"error": str(exc)}, 404)
        except CsrRefused as exc:
            return _json({"error": f"certificate signing refused: {exc}"}, 403)
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        except StateWriteError as exc:
            return _json({"error": f"{exc}: nothing was applied"}, 507)
        if isinstance(result, Response):
            return result
        return _json(result)

    async def _pod_route(self, pod_name: str, route: str, q: dict[str, str], body: dict[str, Any]) -> Response:
        """What a pod may ask with its bootstrap token: its own config, certificate and endpoint, and
        to ship telemetry (istiod's xDS and CA servers check the workload's token the same way)."""
        assert self.deployments is not None
        pod = self.deployments.pods.get(pod_name)
        if pod is None:
            return unauthorized()  # a token of a pod that is gone proves nothing any more
        if route == "POST /telemetry":
            refused = self._ingest(body, _reporter(pod))
            if refused:
                why = self.collector.last_refusal
                return forbidden(f"{refused} telemetry row(s) refused: a pod reports as itself only ({why})")
            return _json({"ok": True})
        if pod.spec.service == ZTUNNEL and route == "POST /ztunnel/ports" and body.get("pod") == pod_name:
            return _json(await self._ztunnel_ports(body))
        if pod.spec.service == ZTUNNEL and route == "POST /certs" and body.get("pod") != pod_name:
            # ztunnel holds the certificates of the pods on its node (and of no other pod)
            target = self.deployments.pods.get(str(body.get("pod")))
            if target is None or ambient.dataplane_mode(target, self.namespace_labels()) != "ambient":
                return forbidden(f"ztunnel {pod_name} may only ask certificates for ambient pods of its node")
            return _json(self._sign(target, body))
        if route not in ("GET /xds", "POST /certs", "POST /register", "POST /nack"):
            return forbidden(f"pod {pod_name} may not call {route}")
        claimed = q.get("pod") if route == "GET /xds" else body.get("pod", pod_name)
        if claimed != pod_name:
            return forbidden(f"pod {pod_name} may only act for itself")
        if route == "GET /xds":
            version = apiinput.query_int(q, "version", 0, 0, 2**53)
            result = await self._xds(pod, version, apiinput.query_int(q, "seen", 0, 0, 2**53))
            return result if isinstance(result, Response) else _json(result)
        if route == "POST /certs":
            return _json(self._sign(pod, body))
        if route == "POST /nack":
            return _json(self._nack(pod, body))
        return _json(self._register(pod, body))

    @staticmethod
    def _nack(pod: PodState, body: dict[str, Any]) -> dict[str, Any]:
        """The proxy could not use some of a push (Envoy's NACK): what, and why, for `meshkit status`."""
        errors = body.get("errors") or []
        if not isinstance(errors, list):
            raise apiinput.BadInput("errors: Invalid value: must be a list")
        pod.last_error = "; ".join(str(e) for e in errors)[:2000]
        return {"ok": True}

    def _ingest(self, body: dict[str, Any], reporter: Reporter) -> int:
        rows = body.get("rows", [])
        if not isinstance(rows, list):
            raise apiinput.BadInput("rows: Invalid value: must be a list")
        return self.collector.ingest_rows(rows, reporter)

    def _register(self, pod: PodState, body: dict[str, Any]) -> dict[str, Any]:
        raw = apiinput.required(body, "ports")
        if not isinstance(raw, dict) or not raw or set(raw) - POD_PORTS:
            raise apiinput.BadInput(f"ports: Invalid value: must map some of {', '.join(sorted(POD_PORTS))} "
                                    "to port numbers")
        ports = {name: apiinput.integer(port, f"ports.{name}", 1, 65535) for name, port in raw.items()}
        assert self.deployments is not None
        pod.ports, pod.ready = ports, True
        self.deployments.record(pod)
        if pod.spec.gateway and ports.get("outbound", self.gateway_port) != self.gateway_port:
            self.gateway_port = self.deployments.gateway_port = ports["outbound"]
            self._write_state()
        self.bump()
        return {"version": self.version}

    def _sign(self, pod: PodState, body: dict[str, Any]) -> dict[str, Any]:
        """The CA's answer to a pod's CSR: a certificate for that pod's identity, never a key."""
        csr = apiinput.text(apiinput.required(body, "csr"), "csr", 16_384)
        ttl = self.cert_ttl
        if body.get("validity_duration") is not None:  # the lifetime the requester asks (ztunnel's SECRET_TTL)
            ttl = apiinput.integer(body["validity_duration"], "validity_duration", 1, MAX_WORKLOAD_CERT_TTL_S)
        try:
            cert = self.ca.sign_csr(csr, pod.namespace, service_account(pod.spec), ttl_s=ttl)
        except CsrRefused as exc:
            raise CsrRefused(f"pod {pod.name}: csr: {exc}") from None
        return {
            "spiffe_id": spiffe_id_for(pod.namespace, service_account(pod.spec)),
            "not_before": cert.not_valid_before_utc.isoformat(), "not_after": cert.not_valid_after_utc.isoformat(),
            "serial_number": str(cert.serial_number), "issuer": self.ca.issuer,
            "cert_pem": cert.public_bytes(Encoding.PEM).decode(), "root_pem": self.ca.root_pem,
        }

    async def _dispatch(self, route: str, q: dict[str, str], body: dict[str, Any]) -> Any:
        deps = self.deployments
        assert deps is not None
        if route == "GET /healthz":
            return {"ok": True, "ready": self.ready()}
        if route == "GET /xds":
            pod = deps.pods.get(apiinput.dns_subdomain(apiinput.required(q, "pod"), "pod"))
            return await self._xds(pod, apiinput.query_int(q, "version", 0, 0, 2**53),
                                   apiinput.query_int(q, "seen", 0, 0, 2**53))
        if route == "POST /nack":
            return self._nack(self._pod(body), body)
        if route == "GET /config_dump":
            return self.istiod_view(apiinput.dns_subdomain(apiinput.required(q, "pod"), "pod"))
        if route == "POST /register":
            return self._register(self._pod(body), body)
        if route == "POST /certs":
            return self._sign(self._pod(body), body)
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
            claims = body.get("claims") or {}
            if not isinstance(claims, dict):
                raise apiinput.BadInput("claims: Invalid value: must be an object")
            subject = body.get("subject")
            audience = body.get("audience")
            if subject is not None:
                apiinput.text(subject, "subject", 1024)
            if audience is not None and not isinstance(audience, str | list):
                raise apiinput.BadInput("audience: Invalid value: must be a string or a list of strings")
            year = 366 * 24 * 3600
            ttl = apiinput.number(body.get("ttl", 3600), "ttl", -year, year)  # below 0: a token already expired
            token = self.issuer.mint(claims, subject=subject, ttl_s=ttl, audience=audience)
            return {"token": token, "issuer": self.issuer.issuer, "jwks_uri": LOCAL_JWKS_URI}
        if route == "GET /jwks":
            return self.issuer.jwks()
        if route == "POST /telemetry":
            # what a proxy saw is reported by that proxy, with its own token, about itself (Reporter)
            return forbidden("telemetry is accepted from a pod's proxy only, with its bootstrap token")
        if route == "GET /status":
            return self.status()
        if route == "POST /apply":
            raw = apiinput.required(body, "resources")
            if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
                raise apiinput.BadInput("resources: Invalid value: must be a list of objects")
            resources = self._admit(raw)
            for r in resources:
                if r["kind"] == "Deployment":  # each replica is a process on this machine: the API's cap holds
                    where = f'Deployment {r["metadata"].get("namespace", "tutorial")}/{r["metadata"]["name"]}'
                    apiinput.integer((r.get("spec") or {}).get("replicas", 1), f"{where}: spec.replicas", 0,
                                     apiinput.MAX_REPLICAS)
            warnings = self._compile_check([r for r in resources if r["kind"] not in KUBE_KINDS])
            # stored on disk first: what is not stored is not applied
            stored = dict(self.store.put_all([r for r in resources if r["kind"] not in KUBE_KINDS]))
            results = []
            for r in resources:
                action, notes = (await self.kube.apply(r)) if r["kind"] in KUBE_KINDS else (stored[key_of(r)], [])
                results.append((key_of(r), action, notes))
            if any(action != "unchanged" for _, action, _ in results):
                self.bump()
                await self.reconcile_gateways()
            return {"results": [{"kind": r["kind"], "namespace": k[1], "name": k[2], "action": a, "warnings": w}
                                for r, (k, a, w) in zip(resources, results, strict=True)], "warnings": warnings}
        if route == "POST /delete":
            of_kind = apiinput.kind(apiinput.required(body, "kind"))
            key = (of_kind, apiinput.dns_label(body.get("namespace", "tutorial"), "namespace"),
                   apiinput.object_name(apiinput.required(body, "name"), "name", of_kind))
            found = await self.kube.delete(*key) if key[0] in KUBE_KINDS else self.store.delete(key) is not None
            if not found:
                raise KeyError(f"{key[0]} {key[2]}")
            self.bump()
            await self.reconcile_gateways()
            return {"deleted": True}
        if route == "GET /resources":
            kind = apiinput.kind(q["kind"]) if "kind" in q else None
            name = apiinput.object_name(q["name"], "name", kind) if "name" in q else None
            namespace = apiinput.dns_label(q["namespace"], "namespace") if "namespace" in q else None
            if kind is not None and (kind in KUBE_KINDS or kind == "Pod"):
                selector = apiinput.text(q.get("selector", ""), "selector", 4096)
                objects = self.kube.objects(kind, name, namespace, selector)
                return {"items": self.with_status(objects) if kind == "Service" else objects}
            items = [r for r in self.store.list(kind, name) if r["kind"] not in KUBE_KINDS
                     and namespace in (None, r["metadata"].get("namespace"))]
            if kind is None:  # the cluster-scoped classes Istio installs are listed only when asked for
                items = [r for r in items if r.get("kind") != "GatewayClass"]
            return {"items": self.with_status(items)}
        if route == "POST /deploy":
            spec = _deployment_spec(body)
            await deps.ensure(spec)
            if self.kube.ensure_service(spec):
                self.store.save()
                self.bump()
            return {"deployment": spec.name}
        if route == "POST /scale":
            spec = self._deployment(body)
            replicas = apiinput.integer(apiinput.required(body, "replicas"), "replicas", 0, apiinput.MAX_REPLICAS)
            self.kube.scaled(spec.name, replicas)  # stored first (both files), then the pods follow
            await deps.ensure(dataclasses.replace(spec, replicas=replicas))
            return {"ok": True}
        if route == "POST /undeploy":
            services = await self.kube.undeploy(self._deployment(body).name)
            self.store.save()
            self.bump()
            return {"ok": True, "services": services}
        if route == "POST /kill":
            await deps.kill(self._pod(body).name)
            return {"ok": True}
        if route == "GET /records":
            since = apiinput.query_number(q, "since", 0.0, -1e12, 1e12)
            return {"records": self.collector.records(since, apiinput.query_int(q, "limit", 10_000, 0, 10_000_000))}
        if route == "GET /traces":
            service = apiinput.text(q["service"], "service") if q.get("service") else None
            return self.collector.jaeger_traces(service, apiinput.query_int(q, "limit", 20, 0, 10_000_000),
                                                apiinput.query_number(q, "lookback", 3600.0, 0.0, 1e9))
        if route == "GET /metrics":
            pod_name = apiinput.dns_subdomain(q["pod"], "pod") if "pod" in q else None
            return Response(200, {"content-type": "text/plain; version=0.0.4"},
                            (await self._metrics(pod_name)).encode())
        if route == "POST /label":
            return await self._label(body)
        if route == "POST /rollout":
            return await self._rollout(self._deployment(body))
        if route == "POST /ambient":
            return await self._install_ambient()
        if route == "POST /shutdown":
            # ``meshkit down`` stops the pods with the control plane; ``meshkit restart`` keeps them
            self.keep_pods = bool(body.get("keep_pods", False))
            asyncio.get_running_loop().call_soon(self.stop_event.set)
            return {"ok": True}
        raise KeyError(route)

    def _pod(self, body: dict[str, Any]) -> PodState:
        assert self.deployments is not None
        name = apiinput.dns_subdomain(apiinput.required(body, "pod"), "pod")
        pod = self.deployments.pods.get(name)
        if pod is None:
            raise NotFound(f'pods "{name}" not found')
        return pod

    def _deployment(self, body: dict[str, Any]) -> DeploymentSpec:
        assert self.deployments is not None
        name = apiinput.dns_label(apiinput.required(body, "deployment"), "deployment")
        spec = self.deployments.specs.get(name)
        if spec is None:
            raise NotFound(f'deployments.apps "{name}" not found')
        return spec

    async def _metrics(self, pod: str | None) -> str:
        assert self.deployments is not None
        pods = [p for p in self.deployments.pods.values()
                if (p.spec.sidecar or p.spec.service == ZTUNNEL) and "admin" in p.ports]
        if pod is not None:
            chosen = [p for p in pods if pod in (p.name, p.deployment, p.spec.labels().get("app", p.spec.service))]
            if not chosen:
                names = ", ".join(sorted(p.name for p in pods))
                raise NotFound(f'no pod named "{pod}" with a sidecar; known: {names}')
            pods = chosen
        texts = {}
        for p in pods:
            if held_by_another(p.ports["admin"]):
                continue  # the pod is gone and someone else holds its port: no credential for them
            client = SimpleClient("127.0.0.1", p.ports["admin"], timeout=5)
            try:
                resp = await client.request("GET", "/stats/prometheus",
                                            {"host": "localhost", OWNER_HEADER: self.credential})
                texts[p.name] = resp.body
            except Exception:
                continue  # a pod that just died has no metrics to give
            finally:
                client.close()
        return merge_expositions(texts)

    async def _xds(self, state: PodState | None, version: int, seen: int = 0) -> Any:
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
                return self._snapshot_for(state)
        if max(version, seen) >= self.version:
            try:
                await asyncio.wait_for(self.changed.wait(), 25.0)
            except TimeoutError:
                return Response(304, {}, b"")
        return self._snapshot_for(state)

    def _snapshot_for(self, state: PodState | None) -> dict[str, Any]:
        if state is not None and state.spec.service == ZTUNNEL:
            return self.ztunnel_snapshot()
        return self.snapshot(gateway=state is not None and state.spec.gateway)

    # ambient ------------------------------------------------------------------------------------
    def namespace_labels(self) -> dict[str, dict[str, str]]:
        return ambient.namespace_labels(self.store.list("Namespace"))

    def ztunnel_snapshot(self) -> dict[str, Any]:
        """What istiod sends ztunnel: workloads (WDS), services, and the policies it enforces."""
        assert self.deployments is not None
        pods = list(self.deployments.pods.values())
        resources = [r for r in self.store.list() if r["kind"] in ("AuthorizationPolicy", "PeerAuthentication")]
        ns_labels = self.namespace_labels()
        wps = self.waypoints()
        services = [waypoint_binding.with_waypoint(svc, waypoint_binding.bind_service(
            svc.get("labels") or {}, svc["namespace"], ns_labels.get(svc["namespace"], {}), wps), pods)
            for svc in self.services()]
        workloads = ambient.ztunnel_workloads(pods, ns_labels)
        for w in workloads:
            bound = waypoint_binding.bind_workload(w["labels"], w["namespace"], ns_labels.get(w["namespace"], {}), wps)
            w["waypoint"] = bound.waypoint.key if bound.waypoint else None
        return {"version": self.version, "workloads": workloads, "services": services, "resources": resources}

    def bound_services(self) -> dict[tuple[str, str], str]:
        """(namespace, name) of each Service bound to a waypoint -> the waypoint's ``<ns>/<name>``."""
        ns_labels, wps, out = self.namespace_labels(), self.waypoints(), {}
        for svc in self.kube.services():
            b = waypoint_binding.bind_service(svc.get("labels") or {}, svc["namespace"],
                                              ns_labels.get(svc["namespace"], {}), wps)
            if b.waypoint is not None:
                out[(svc["namespace"], svc["name"])] = b.waypoint.key
        return out

    def waypoints(self) -> dict[str, waypoint_binding.Waypoint]:
        """The waypoint Gateways, each ready when its pod is (istiod's Waypoints collection)."""
        assert self.deployments is not None
        ready = {f"{p.namespace}/{p.spec.gateway_of}" for p in self.deployments.pods.values()
                 if p.spec.waypoint and p.ready and p.ports.get("hbone")}
        return waypoint_binding.waypoints(self.store.list(f"Gateway.{waypoint_binding.GROUP}"), ready)

    def has_ztunnel(self) -> bool:
        return self.deployments is not None and ZTUNNEL in self.deployments.specs

    async def _ztunnel_ports(self, body: dict[str, Any]) -> dict[str, Any]:
        """ztunnel reports the listeners it opened for each enrolled pod; the CNI then captures the pod."""
        assert self.deployments is not None
        raw = body.get("workloads")
        if not isinstance(raw, dict):
            raise apiinput.BadInput("workloads: Invalid value: must map pod names to ports")
        changed = []
        for pod in self.deployments.pods.values():
            entry = raw.get(pod.name) or {}
            ports = {k: apiinput.integer(entry[k], f"workloads.{pod.name}.{k}", 1, 65535)
                     for k in ("outbound", "inbound", "hbone", "mtls") if k in entry}
            if len(ports) != 4:
                ports = {}
            if ports != pod.ztunnel_ports:
                pod.ztunnel_ports = ports
                self.deployments.record(pod)
                changed.append(pod)
        for pod in changed:
            await self._capture(pod)
        if changed:
            self.bump()
        return {"version": self.version}

    async def _capture(self, pod: PodState) -> None:
        """Point the pod's outbound traffic at ztunnel (or release it), as istio-cni does in its netns."""
        admin = pod.ports.get("admin")
        if not admin or held_by_another(admin):
            return
        client = SimpleClient("127.0.0.1", admin, timeout=5)
        try:
            body = json.dumps({"outbound": pod.ztunnel_ports.get("outbound", 0)}).encode()
            await client.request("POST", "/capture", {"host": "localhost", OWNER_HEADER: self.credential,
                                                      "content-type": "application/json"}, body)
        except (OSError, TimeoutError, ConnectFailure, ResetConnection, UpstreamReset, BodyError):
            pass  # a pod that just died is captured no more
        finally:
            client.close()

    async def _rollout(self, spec: DeploymentSpec) -> dict[str, Any]:
        """``kubectl rollout restart``: new pods replace the old ones, and injection is decided again
        from the namespace's ``istio-injection`` label, as the injection webhook decides at pod creation."""
        assert self.deployments is not None
        if not spec.gateway and spec.service != ZTUNNEL:
            labels = self.namespace_labels().get(spec.namespace, {})
            spec = dataclasses.replace(spec, sidecar=labels.get("istio-injection") == "enabled")
        await self.deployments.rollout(spec)
        self.bump()
        return {"deployment": spec.name, "sidecar": spec.sidecar}

    async def _install_ambient(self) -> dict[str, Any]:
        """The ambient profile installed over a running mesh: the node's ztunnel joins; every pod keeps
        its data plane until its namespace or itself is labelled (sidecar pods never enroll)."""
        assert self.deployments is not None
        installed = self.has_ztunnel()
        if not installed:
            await self.deployments.ensure(ambient.ZTUNNEL_SPEC)
            self.dataplane = "ambient"
            self.bump()
        return {"ztunnel": True, "installed": not installed}

    async def _label(self, body: dict[str, Any]) -> dict[str, Any]:
        """``kubectl label``: a Namespace's or a pod's labels change in place (pods are not restarted)."""
        assert self.deployments is not None
        kind = apiinput.required(body, "kind")
        name = apiinput.dns_subdomain(apiinput.required(body, "name"), "name")
        raw = apiinput.required(body, "labels")
        if not isinstance(raw, dict) or not all(isinstance(v, str | None) for v in raw.values()):
            raise apiinput.BadInput("labels: Invalid value: must map label keys to values (null removes)")
        if kind == "Namespace":
            found = [n for n in self.store.list("Namespace") if n["metadata"]["name"] == name]
            if not found:
                raise NotFound(f'namespaces "{name}" not found')
            ns = json.loads(json.dumps(found[0]))
            labels = dict(ns["metadata"].get("labels") or {})
        elif kind == "Service":
            svc_ns = str(body.get("namespace") or "tutorial")
            found = [s for s in self.store.list("Service") if s["metadata"]["name"] == name
                     and s["metadata"].get("namespace", "tutorial") == svc_ns]
            if not found:
                raise NotFound(f'services "{name}" not found')
            ns = json.loads(json.dumps(found[0]))
            labels = dict(ns["metadata"].get("labels") or {})
        elif kind == "Pod":
            pod: PodState | None = self.deployments.pods.get(name)
            if pod is None:
                raise NotFound(f'pods "{name}" not found')
            labels = dict(pod.extra_labels)
        else:
            raise apiinput.BadInput(f"kind: Unsupported value: {json.dumps(kind)[:60]}: supported values: "
                                    '"Namespace", "Pod", "Service"')
        for key, value in raw.items():
            if not isinstance(key, str) or not LABEL_KEY.fullmatch(key):
                raise apiinput.BadInput(f"labels: Invalid value: {json.dumps(key)[:80]}: a label key is an optional "
                                        "DNS-subdomain prefix and a name of at most 63 characters")
            if value is None:
                labels.pop(key, None)
            else:
                labels[key] = apiinput.text(value, f"labels.{key}", 63)
        if kind in ("Namespace", "Service"):
            ns["metadata"]["labels"] = labels
            self.store.put(ns)
            self.store.save()
        else:
            assert pod is not None
            pod.extra_labels = labels
            self.deployments.record(pod)
        self.bump()
        return {"kind": kind, "name": name, "labels": labels}

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
        pushed = self.pushed_resources(candidate)
        errors: dict[str, None] = {}
        warnings: dict[str, None] = {}
        specs = {s.name: s for s in self.deployments.specs.values() if s.sidecar}
        for spec in specs.values():
            labels = spec.labels()
            namespace = "istio-system" if spec.gateway else spec.namespace
            identity = ProxyIdentity(f"{spec.name}-admission", labels.get("app", spec.service), spec.version, labels,
                                     namespace, service_account(spec), spec.gateway)
            snapshot = self.snapshot(gateway=spec.gateway, resources=pushed)
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
        apiinput.dns_subdomain(body["name"], "name")
        apiinput.text(body["cert"], "cert", 1 << 20)
        apiinput.text(body["key"], "key", 1 << 20)
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
        if self.has_ztunnel():  # an ambient pod serves once the CNI has handed it to ztunnel
            ns_labels = self.namespace_labels()
            if any(ambient.dataplane_mode(p, ns_labels) == "ambient" and not p.ztunnel_ports for p in pods):
                return False
        return len(pods) >= want and all(p.ready and (p.acked_version >= 1 or not p.spec.sidecar) for p in pods)

    def status(self) -> dict[str, Any]:
        assert self.deployments is not None
        pods = []
        ns_labels = self.namespace_labels()
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
                    "dataplane": ambient.dataplane_mode(p, ns_labels),
                    "ztunnel_ports": p.ztunnel_ports,
                    "service_account": p.endpoint()["principal"].rsplit("/", 1)[-1] if p.spec.sidecar else "",
                    "config_version": p.acked_version,
                    "synced": p.acked_version >= self.version or not (p.spec.sidecar or p.spec.service == ZTUNNEL),
                    "restarts": p.restarts,
                    "last_error": p.last_error,
                    "telemetry_refused": self.collector.refused_by_pod.get(p.name, 0),
                    "probe": p.probe,
                    "ports": p.ports,
                    "pid": p.proc.pid if p.proc else 0,
                }
            )
        return {
            "control_plane": {"state": "running", "pid": os.getpid(), "api_port": self.api_port,
                              "started": self.started},
            "version": self.version,
            "profile": self.profile,
            "dataplane": "ambient" if self.has_ztunnel() else "sidecar",
            "outbound_policy": self.outbound_policy,
            "gateway_port": self.gateway_port,
            "time_service_port": self.time_service.port,
            "pods": pods,
            "crashes": self.deployments.crashes,
            "ready": self.ready(),
            "telemetry": {**self.collector.stats(), "last_refusal": self.collector.last_refusal},
        }

    # lifecycle ----------------------------------------------------------------------------------
    async def run(self, deployments: tuple[DeploymentSpec, ...]) -> None:
        self.stop_event = asyncio.Event()
        previous = read_json(self.home / "state.json", default={}, expect=dict)
        server = await self._serve_api(int(previous.get("api_port") or 0))
        self.api_port = server.sockets[0].getsockname()[1]
        await self.time_service.start()
        self.deployments = Deployments(self.home, f"http://127.0.0.1:{self.api_port}", self.bump, self.gateway_port,
                                       credential=self.credential)
        self.deployments.gateway_port_strict = self.gateway_port_strict
        self.deployments.hbone = self.dataplane == "ambient"
        # pods left serving by an earlier control plane are adopted, not started again
        adopted = self.deployments.adopt()
        self.version = max(int(previous.get("version") or 0), *(p.acked_version for p in adopted), 0) + 1
        for pod in adopted:
            if pod.spec.gateway and pod.ports.get("outbound"):
                self.gateway_port = self.deployments.gateway_port = pod.ports["outbound"]
        defaults: list[dict[str, Any]] = []  # stored in one durable write below
        if not self.store.list("Gateway"):
            defaults += gateway_customer()
        if not self.store.list(f"GatewayClass.{GATEWAY_API_GROUP}"):
            defaults += builtin_gateway_classes()
        self.kube = KubeObjects(self.store, self.deployments)
        specs = self.deployments.load()
        if not specs:  # a fresh mesh: the sample's namespace, accounts and Services come with its pods
            specs = list(deployments)
            self.kube.seed(defaults)
            if self.dataplane == "ambient":
                self._seed_ambient()
        elif defaults:
            self.store.put_all(defaults)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        self._write_state()
        await self.deployments.ensure_all(specs)
        await asyncio.wrap_future(self._issuer)  # made while the pods start; a failure stops the start here
        owner = {OWNER_HEADER: self.credential}  # a pod's admin port answers its owner only
        prober = asyncio.ensure_future(self.deployments.probe_loop(self.probes, owner.copy))
        await self.reconcile_gateways()
        await self.stop_event.wait()
        prober.cancel()
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

    def _seed_ambient(self) -> None:
        """The ambient profile: the sample's namespace labelled for ambient instead of injection."""
        for ns in self.store.list("Namespace"):
            if ns["metadata"]["name"] == "tutorial":
                labels = {k: v for k, v in (ns["metadata"].get("labels") or {}).items() if k != "istio-injection"}
                ns = {**ns, "metadata": {**ns["metadata"], "labels": {**labels, ambient.LABEL: "ambient"}}}
                self.store.put(ns)
        self.store.save()

    async def _serve_api(self, port: int) -> asyncio.base_events.Server:
        """The API on the last control plane's port when free, so running pods find it where it was."""
        if port:
            try:
                return await serve(self.handle, "127.0.0.1", port, limits=API_LIMITS)
            except OSError:
                pass
        return await serve(self.handle, "127.0.0.1", 0, limits=API_LIMITS)


def _load_or_make_issuer(state_dir: Path) -> concurrent.futures.Future[LocalIssuer]:
    """The JWT issuer: an existing key is loaded now (a bad file stops the start with its name); a
    fresh mesh's key was started by a child forked as this process started (:mod:`earlykey`: OpenSSL
    makes an RSA key holding the GIL, so a thread here stalled the control plane for as long)."""
    done: concurrent.futures.Future[LocalIssuer] = concurrent.futures.Future()
    done.set_result(LocalIssuer.load_or_create(state_dir, make_key=earlykey.take_jwt))
    return done


def _deployment_spec(body: dict[str, Any]) -> DeploymentSpec:
    """A new deployment from the API: one of the sample's services, a version label, 0-50 replicas."""
    service = apiinput.required(body, "service")
    if service not in DEPLOYABLE:
        raise apiinput.BadInput(f"service: Unsupported value: {json.dumps(service)[:80]}: supported values: "
                                + ", ".join(f'"{s}"' for s in DEPLOYABLE))
    version = apiinput.dns_label(body.get("version", "v1"), "version")
    replicas = apiinput.integer(body.get("replicas", 1), "replicas", 0, apiinput.MAX_REPLICAS)
    sidecar = apiinput.boolean(body.get("sidecar", True), "sidecar")
    spec = DeploymentSpec(service, version, replicas, sidecar)
    apiinput.dns_label(spec.name, "deployment")  # service and version together stay one DNS label
    return spec


#: a body limit in the Kubernetes API server's manner ("Request entity too large: limit is N"); its
#: 3 MiB is per object, and `apply` sends all of a batch in one request, so the limit here is larger
#: while admission still refuses any one object over 1.5 MiB, as etcd does
API_LIMITS = Limits(max_body=16 * 1024 * 1024)


def _referenced(secrets: dict[str, dict[str, str]], resources: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The TLS secrets some Gateway server names as its ``credentialName``."""
    names = {
        str((server.get("tls") or {}).get("credentialName") or "")
        for gw in resources if gw.get("kind") == "Gateway" and isinstance(gw.get("spec"), dict)
        for server in gw["spec"].get("servers") or [] if isinstance(server, dict)
    }
    return {name: secret for name, secret in secrets.items() if name in names}


def _reporter(pod: PodState) -> Reporter:
    """The labels ``pod``'s proxy writes about itself, derived as the pod derives its identity at spawn."""
    from meshkit.backends.local.proxy.config import ProxyIdentity

    spec = pod.spec
    labels = spec.labels()
    me = ProxyIdentity(pod.name, labels.get("app", spec.service), spec.version, labels, pod.namespace,
                       service_account(spec), spec.gateway)
    sa = me.service_account
    principal = f"spiffe://cluster.local/ns/{me.namespace}/sa/{sa}" if sa else "unknown"
    return Reporter.of(pod.name, me.workload, me.app, me.version, principal, me.namespace, spec.waypoint)


def _json(data: Any, status: int = 200) -> Response:
    return Response(status, dict(JSON), dumps(data))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="meshkit-controlplane")
    parser.add_argument("--home", required=True)
    parser.add_argument("--profile", default="current", choices=["current", "tutorial"])
    parser.add_argument("--outbound", default="REGISTRY_ONLY", choices=["REGISTRY_ONLY", "ALLOW_ANY"])
    parser.add_argument("--gateway-port", type=int, default=0)
    parser.add_argument("--gateway-port-strict", action="store_true", help="fail rather than pick another port")
    parser.add_argument("--dataplane", default="sidecar", choices=["sidecar", "ambient"])
    args = parser.parse_args(argv)
    home = secure_home(Path(args.home).resolve())
    (home / "logs").mkdir(parents=True, exist_ok=True)
    lock = HomeLock(home / "controlplane.lock")
    if lock.held_by_other(settle_s=3.0) or not lock.try_acquire("control plane"):
        print(f"error: {lock.holder()} already serves the mesh in {home}", file=sys.stderr, flush=True)
        sys.exit(3)
    try:
        cp = ControlPlane(home, args.profile, args.outbound, args.gateway_port)
        cp.gateway_port_strict = args.gateway_port_strict
        cp.dataplane = args.dataplane
        specs: tuple[DeploymentSpec, ...] = DEFAULT_DEPLOYMENTS
        if args.dataplane == "ambient":  # no sidecars in the sample, and the node's ztunnel
            specs = (*(s if s.gateway else dataclasses.replace(s, sidecar=False) for s in specs),
                     ambient.ZTUNNEL_SPEC)
        try:
            import uvloop

            uvloop.run(cp.run(specs))
        except ImportError:
            asyncio.run(cp.run(specs))
    except MeshkitError as exc:
        # a corrupt state file, a CA that does not match its key: one line, no traceback
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
