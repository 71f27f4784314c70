"""Deployments and pods of the local mesh: the kubelet and ReplicaSet controller in one.

Each pod is one OS process (its app and its sidecar). A pod that dies is replaced by a new pod
with a new name, as a ReplicaSet does; scaling adds or removes pods.

Example::

    deployments = Deployments(home, control_url, on_change)
    await deployments.ensure(DeploymentSpec("recommendation", "v2", replicas=2))
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import secrets
import signal
import string
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from meshkit.backends.local.durable import read_json, write_atomic
from meshkit.backends.local.probes import ProbeSettings, probe_once
from meshkit.backends.local.processes import AdoptedProcess, ProcessRecord
from meshkit.backends.local.trust import OWNER_VERIFIER_ENV, POD_TOKEN_ENV, owner_verifier, pod_token

ALPHABET = string.ascii_lowercase + string.digits
GATEWAY = "istio-ingressgateway"
ZTUNNEL = "ztunnel"


@dataclass(frozen=True)
class DeploymentSpec:
    service: str  # customer | preference | recommendation | istio-ingressgateway | curl
    version: str = "v1"
    replicas: int = 1
    sidecar: bool = True
    # set by a Deployment applied as YAML: its name, namespace, pod template labels, service account
    deployment: str = ""
    namespace: str = "tutorial"
    pod_labels: dict[str, str] = field(default_factory=dict)
    account: str = ""
    delay: float = 0.0  # seconds the app takes per request from its start (the tutorial's "-timeout" image)
    # a Gateway API Gateway of class istio this deployment serves (service is then "<gateway>-istio")
    gateway_of: str = ""
    # a Gateway of class istio-waypoint: this deployment is its waypoint proxy (named like the Gateway)
    waypoint: bool = False

    @property
    def name(self) -> str:
        if self.deployment:
            return self.deployment
        if self.service in ("customer", GATEWAY, "curl") or self.gateway_of:
            return self.service
        return f"{self.service}-{self.version}"

    @property
    def gateway(self) -> bool:
        return self.service == GATEWAY or bool(self.gateway_of)

    def template_hash(self) -> str:
        parts: list[object] = [self.service, self.version, self.sidecar]
        if self.pod_labels or self.account:
            parts += [sorted(self.pod_labels.items()), self.account]
        if self.delay:
            parts.append(self.delay)
        digest = hashlib.sha256(json.dumps(parts).encode()).digest()
        return "".join(ALPHABET[b % len(ALPHABET)] for b in digest[:10])

    def labels(self) -> dict[str, str]:
        if self.waypoint:
            # the labels of Istio's waypoint template (files/waypoint.yaml): out of ambient capture itself
            return {"gateway.networking.k8s.io/gateway-name": self.gateway_of,
                    "gateway.networking.k8s.io/gateway-class-name": "istio-waypoint",
                    "gateway.istio.io/managed": "istio.io-mesh-controller", "istio.io/dataplane-mode": "none",
                    "sidecar.istio.io/inject": "false", "service.istio.io/canonical-name": self.service,
                    "service.istio.io/canonical-revision": "latest", "app": self.service, "workload": self.service}
        if self.gateway_of:
            # the labels Istio's deployment controller puts on a Gateway's pods
            return {"app": self.service, "workload": self.service, "istio.io/gateway-name": self.gateway_of,
                    "gateway.networking.k8s.io/gateway-name": self.gateway_of,
                    "service.istio.io/canonical-name": self.service}
        if self.gateway:
            return {"app": GATEWAY, "istio": "ingressgateway", "workload": GATEWAY}
        if self.pod_labels:
            return {**self.pod_labels, "workload": self.name}
        labels = {"app": self.service, "version": self.version, "workload": self.name}
        return labels


@dataclass
class PodState:
    name: str
    deployment: str
    spec: DeploymentSpec
    proc: asyncio.subprocess.Process | AdoptedProcess | None = None
    record: ProcessRecord | None = None
    ports: dict[str, int] = field(default_factory=dict)
    ready: bool = False
    acked_version: int = 0
    restarts: int = 0
    stopping: bool = False
    connected: bool = False  # has polled this control plane since it started
    log_offset: int = 0  # where this pod's lines start in its deployment's log
    probe: str = ""  # the last failed probe, as `kubectl describe pod` shows it
    ready_failures: int = 0
    live_failures: int = 0
    last_error: str = ""  # why the proxy rejected part of its last push (its NACK detail)
    killed: bool = False  # by `meshkit kill` (or a failed liveness probe), not by itself
    # ambient: the node ztunnel's listeners for this pod (outbound 15001, inbound 15006, hbone 15008)
    ztunnel_ports: dict[str, int] = field(default_factory=dict)
    extra_labels: dict[str, str] = field(default_factory=dict)  # `meshkit label pod/NAME k=v`, no restart

    def labels(self) -> dict[str, str]:
        return {**self.spec.labels(), **self.extra_labels}

    @property
    def namespace(self) -> str:
        return "istio-system" if self.spec.gateway and not self.spec.gateway_of else self.spec.namespace

    def endpoint(self) -> dict[str, Any]:
        """How the registry (and so every proxy) sees this pod."""
        spec = self.spec
        if self.ztunnel_ports:
            # an ambient pod: whoever dials it (a sidecar, the gateway, a pod outside the mesh) meets
            # the node's ztunnel, as the CNI's redirection sends them there (plaintext, or mTLS from sidecars)
            return {"pod": self.name, "address": "127.0.0.1", "port": self.ztunnel_ports["inbound"],
                    "tls_port": self.ztunnel_ports["mtls"], "app": spec.labels().get("app", spec.service),
                    "hbone_port": self.ztunnel_ports.get("hbone", 0),
                    "hbone_target": f"127.0.0.1:{self.ports.get('app', 0)}",
                    "version": spec.version, "workload": spec.name, "labels": self.labels(),
                    "principal": f"spiffe://cluster.local/ns/{self.namespace}/sa/{service_account(spec)}",
                    "ready": self.ready}
        return {
            "pod": self.name,
            "address": "127.0.0.1",
            "port": self.ports.get("inbound") or self.ports.get("app", 0),
            "tls_port": self.ports.get("inbound_tls", 0),
            "app": spec.labels().get("app", spec.service),
            "version": spec.version if not spec.gateway else "",
            "workload": spec.name,
            "labels": spec.labels(),
            "principal": f"spiffe://cluster.local/ns/{self.namespace}/sa/{service_account(spec)}"
            if spec.sidecar
            else "",
            "ready": self.ready,
        }

    def to_record(self) -> dict[str, Any]:
        """What a later control plane needs to adopt this pod (see :meth:`Deployments.adopt`)."""
        rec = self.record
        return {"name": self.name, "deployment": self.deployment, "spec": asdict(self.spec),
                "pid": rec.pid if rec else 0, "start": rec.start if rec else 0, "ports": self.ports,
                "ready": self.ready, "restarts": self.restarts, "acked_version": self.acked_version,
                "extra_labels": self.extra_labels, "ztunnel_ports": self.ztunnel_ports}


def service_account(spec: DeploymentSpec) -> str:
    if spec.gateway_of:
        return spec.service  # <gateway>-istio, as Istio names the ServiceAccount
    return "istio-ingressgateway-service-account" if spec.gateway else spec.account or spec.service


def pod_name(spec: DeploymentSpec) -> str:
    if spec.service == ZTUNNEL:
        from meshkit.backends.local.ztunnel.node import daemon_pod_name

        return daemon_pod_name()  # a DaemonSet's pod: no template hash
    suffix = "".join(secrets.choice(ALPHABET) for _ in range(5))
    return f"{spec.name}-{spec.template_hash()}-{suffix}"


class Deployments:
    """Starts, watches, restarts and stops pod processes."""

    def __init__(
        self, home: Path, control_url: str, on_change: Callable[[], None], gateway_port: int = 0,
        credential: str = "",
    ) -> None:
        self.home = home
        self.credential = credential
        self.control_url = control_url
        self.on_change = on_change
        self.gateway_port = gateway_port
        self.gateway_port_strict = False
        self.hbone = False  # an ambient mesh: sidecars also listen for HBONE, as Istio's ambient profile has them
        self.specs: dict[str, DeploymentSpec] = {}
        self.pods: dict[str, PodState] = {}
        self.path = home / "deployments.json"
        self.records = home / "pods"
        self.stopping = False
        self._watchers: set[asyncio.Future[None]] = set()
        # pods that exited on their own, newest last (``up`` fails fast on one that never got ready)
        self.crashes: list[dict[str, Any]] = []
        self._started: dict[str, int] = {}  # pods started per deployment (their seeding ordinal)

    def load(self) -> list[DeploymentSpec]:
        from meshkit.backends.local.durable import CorruptState

        try:
            return [DeploymentSpec(**d) for d in read_json(self.path, default=[], expect=list)]
        except TypeError as exc:
            raise CorruptState(self.path, f"a deployment is malformed: {exc}") from None

    def save(self, specs: dict[str, DeploymentSpec] | None = None) -> None:
        specs = self.specs if specs is None else specs
        write_atomic(self.path, json.dumps([asdict(s) for s in specs.values()], indent=1).encode())

    # pod records: how the pods outlive this control plane ---------------------------------------
    def record(self, pod: PodState) -> None:
        """Write down the pod (pid, start time, ports) for ``meshkit down`` and the next control plane."""
        if pod.stopping or pod.name not in self.pods:
            return
        self.records.mkdir(mode=0o700, exist_ok=True)
        try:
            write_atomic(self.records / f"{pod.name}.json", json.dumps(pod.to_record()).encode())
        except OSError:
            pass  # a full disk: down still finds the pod by its command line

    def forget(self, pod: PodState) -> None:
        (self.records / f"{pod.name}.json").unlink(missing_ok=True)

    def adopt(self) -> list[PodState]:
        """Take over the pods a previous control plane left running (their records say which)."""
        adopted = []
        for path in sorted(self.records.glob("*.json")) if self.records.is_dir() else []:
            try:
                data = json.loads(path.read_text())
                rec = ProcessRecord.from_dict(data)
                spec = DeploymentSpec(**data["spec"])
            except (OSError, ValueError, KeyError, TypeError):
                rec = None
            if rec is None or not rec.alive():
                path.unlink(missing_ok=True)
                continue
            pod = PodState(data["name"], data["deployment"], spec, proc=AdoptedProcess(rec), record=rec,
                           ports={k: int(v) for k, v in data.get("ports", {}).items()},
                           ready=bool(data.get("ready")) and bool(data.get("ports")),
                           acked_version=int(data.get("acked_version", 0)), restarts=int(data.get("restarts", 0)),
                           extra_labels={str(k): str(v) for k, v in (data.get("extra_labels") or {}).items()},
                           ztunnel_ports={k: int(v) for k, v in (data.get("ztunnel_ports") or {}).items()})
            self.pods[pod.name] = pod
            self._watch_pod(pod)
            adopted.append(pod)
        return adopted

    async def ensure(self, spec: DeploymentSpec) -> None:
        """Create or update a deployment and converge its pods to ``replicas``."""
        await self.ensure_all([spec])

    async def ensure_all(self, specs: Iterable[DeploymentSpec]) -> None:
        """:meth:`ensure` for several deployments: stored in one durable write, converged together."""
        wanted = list(specs)
        merged = {**self.specs, **{spec.name: spec for spec in wanted}}
        self.save(merged)  # stored first: a deployment that cannot be stored is not created
        self.specs = merged
        await asyncio.gather(*(self.converge(spec.name) for spec in wanted))

    async def rollout(self, spec: DeploymentSpec) -> None:
        """Replace every pod of the deployment with a new one made from ``spec`` (new pods first)."""
        old = [p for p in self.pods.values() if p.deployment == spec.name and not p.stopping]
        specs = {**self.specs, spec.name: spec}
        self.save(specs)
        self.specs = specs
        for _ in range(spec.replicas):
            await self.start_pod(spec)
        for pod in old:
            await self.stop_pod(pod)
        self.on_change()

    async def converge(self, name: str) -> None:
        spec = self.specs.get(name)
        current = [p for p in self.pods.values() if p.deployment == name and not p.stopping]
        want = spec.replicas if spec else 0
        for pod in current[want:] if len(current) > want else []:
            await self.stop_pod(pod)
        for _ in range(want - len(current)):
            assert spec is not None
            await self.start_pod(spec)
        self.on_change()

    async def remove(self, name: str) -> None:
        specs = {k: v for k, v in self.specs.items() if k != name}
        self.save(specs)
        self.specs = specs
        await self.converge(name)

    def _ordinal(self, deployment: str) -> int:
        n = self._started.get(deployment, 0)
        self._started[deployment] = n + 1
        return n

    async def start_pod(self, spec: DeploymentSpec, restarts: int = 0) -> PodState:
        pod = PodState(pod_name(spec), spec.name, spec, restarts=restarts)
        self.pods[pod.name] = pod
        args = {
            "pod": pod.name,
            "service": spec.service,
            "version": spec.version,
            "labels": spec.labels(),
            "namespace": pod.namespace,
            "service_account": service_account(spec),
            "sidecar": spec.sidecar,
            "gateway": spec.gateway,
            "waypoint": spec.waypoint,
            "hbone": self.hbone,
            "control": self.control_url,
            "gateway_port": self.gateway_port if spec.gateway and not spec.gateway_of else 0,
            "gateway_port_strict": self.gateway_port_strict,
            "home": str(self.home),
            "delay": spec.delay,
            # the how-manyth pod of its deployment this control plane starts: with the pod's workload, what
            # seeds its proxy's random draws under MESHKIT_SEED (pod names end in a random suffix)
            "ordinal": self._ordinal(spec.name),
        }
        log = open(self.home / "logs" / f"{spec.name}.log", "ab")  # noqa: SIM115 - owned by the child
        pod.log_offset = log.tell()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # the pod's own bootstrap token and how to recognise the owner: in its environment (readable by
        # this user only), never on its command line (which every user can read in /proc)
        env[POD_TOKEN_ENV] = pod_token(self.credential, pod.name)
        env[OWNER_VERIFIER_ENV] = owner_verifier(self.credential).hex()
        pod.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "meshkit.backends.local.pod",
            json.dumps(args),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,  # the pod outlives this control plane, as Envoy outlives istiod
        )
        log.close()
        pod.record = ProcessRecord.of(pod.proc.pid) or ProcessRecord(pod.proc.pid, 0)
        self.record(pod)
        self._watch_pod(pod)
        return pod

    def _watch_pod(self, pod: PodState) -> None:
        watcher = asyncio.ensure_future(self._watch(pod))
        self._watchers.add(watcher)  # the loop keeps only weak references to tasks
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, pod: PodState) -> None:
        assert pod.proc is not None
        code = await pod.proc.wait()
        self.pods.pop(pod.name, None)
        self.forget(pod)
        self.on_change()
        spec = self.specs.get(pod.deployment)
        if not pod.stopping and not self.stopping and not pod.killed:
            self.crashes = [*self.crashes[-19:], {"pod": pod.name, "deployment": pod.deployment, "code": code,
                                                  "before_ready": not pod.ready, "log_offset": pod.log_offset,
                                                  "at": time.time()}]
        if not pod.stopping and not self.stopping and spec is not None:
            # CrashLoopBackOff in miniature: a pod that keeps dying is restarted more and more slowly
            if not pod.ready:
                await asyncio.sleep(min(0.5 * 2**pod.restarts, 30.0))
            await self.start_pod(spec, restarts=pod.restarts + 1)
            self.on_change()

    async def stop_pod(self, pod: PodState, timeout: float = 3.0) -> None:
        pod.stopping = True
        pod.ready = False
        proc = pod.proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def kill(self, name: str) -> None:
        """Kill a pod the hard way; its deployment replaces it."""
        pod = self.pods[name]
        pod.ready, pod.killed = False, True
        if pod.proc is not None and pod.proc.returncode is None:
            pod.proc.kill()

    # probes: the kubelet's part -----------------------------------------------------------------
    async def probe_loop(self, settings: ProbeSettings, headers: Callable[[], dict[str, str]] = dict) -> None:
        """Probe every registered pod each period; a probe still waiting for its pod is not sent again."""
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="probe")
        in_flight: set[str] = set()
        try:
            while not self.stopping:
                for pod in list(self.pods.values()):
                    admin = pod.ports.get("admin")
                    if not admin or pod.stopping or pod.killed or pod.name in in_flight:
                        continue
                    in_flight.add(pod.name)
                    future = loop.run_in_executor(executor, probe_once, admin, settings.timeout_s, headers())
                    future.add_done_callback(functools.partial(self._probed, pod, settings, in_flight))
                await asyncio.sleep(settings.period_s)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    def _probed(self, pod: PodState, settings: ProbeSettings, in_flight: set[str],
                future: asyncio.Future[tuple[bool, bool, str]]) -> None:
        in_flight.discard(pod.name)
        if future.cancelled() or self.pods.get(pod.name) is not pod or pod.stopping or pod.killed:
            return
        ready, live, detail = future.result()
        if ready:
            pod.ready_failures = 0
            if not pod.ready:
                pod.ready, pod.probe = True, ""
                self.record(pod)
                self.on_change()
        else:
            pod.ready_failures += 1
            if pod.ready and pod.ready_failures >= settings.readiness_failures:
                # out of every proxy's endpoints, as a NotReady pod leaves its Service's
                pod.ready, pod.probe = False, f"Readiness probe failed: {detail}"
                self.record(pod)
                self.on_change()
        pod.live_failures = 0 if live else pod.live_failures + 1
        if pod.live_failures >= settings.liveness_failures and pod.proc is not None:
            pod.probe = f"Liveness probe failed: {detail}; killed and replaced"
            pod.ready, pod.killed = False, True
            self.on_change()
            pod.proc.kill()  # SIGKILL: a stopped process cannot act on SIGTERM

    async def stop_all(self) -> None:
        self.stopping = True
        await asyncio.gather(*(self.stop_pod(p) for p in list(self.pods.values())))
