"""Deployments and pods of the local mesh: the kubelet and ReplicaSet controller in one.

Each pod is one OS process (its app and its sidecar). A pod that dies is replaced by a new pod
with a new name, as a ReplicaSet does; scaling adds or removes pods.

Example::

    deployments = Deployments(home, control_url, on_change)
    await deployments.ensure(DeploymentSpec("recommendation", "v2", replicas=2))
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import signal
import string
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ALPHABET = string.ascii_lowercase + string.digits
GATEWAY = "istio-ingressgateway"


@dataclass(frozen=True)
class DeploymentSpec:
    service: str  # customer | preference | recommendation | istio-ingressgateway | curl
    version: str = "v1"
    replicas: int = 1
    sidecar: bool = True

    @property
    def name(self) -> str:
        if self.service in ("customer", GATEWAY, "curl"):
            return self.service
        return f"{self.service}-{self.version}"

    @property
    def gateway(self) -> bool:
        return self.service == GATEWAY

    def template_hash(self) -> str:
        digest = hashlib.sha256(json.dumps([self.service, self.version, self.sidecar]).encode()).digest()
        return "".join(ALPHABET[b % len(ALPHABET)] for b in digest[:10])

    def labels(self) -> dict[str, str]:
        if self.gateway:
            return {"app": GATEWAY, "istio": "ingressgateway", "workload": GATEWAY}
        labels = {"app": self.service, "version": self.version, "workload": self.name}
        return labels


@dataclass
class PodState:
    name: str
    deployment: str
    spec: DeploymentSpec
    proc: asyncio.subprocess.Process | None = None
    ports: dict[str, int] = field(default_factory=dict)
    ready: bool = False
    acked_version: int = 0
    restarts: int = 0
    stopping: bool = False

    @property
    def namespace(self) -> str:
        return "istio-system" if self.spec.gateway else "tutorial"

    def endpoint(self) -> dict[str, Any]:
        """How the registry (and so every proxy) sees this pod."""
        spec = self.spec
        return {
            "pod": self.name,
            "address": "127.0.0.1",
            "port": self.ports.get("inbound") or self.ports.get("app", 0),
            "tls_port": self.ports.get("inbound_tls", 0),
            "app": spec.labels()["app"],
            "version": spec.version if not spec.gateway else "",
            "workload": spec.name,
            "labels": spec.labels(),
            "principal": f"spiffe://cluster.local/ns/{self.namespace}/sa/{service_account(spec)}"
            if spec.sidecar
            else "",
            "ready": self.ready,
        }


def service_account(spec: DeploymentSpec) -> str:
    return "istio-ingressgateway-service-account" if spec.gateway else spec.service


def pod_name(spec: DeploymentSpec) -> str:
    suffix = "".join(secrets.choice(ALPHABET) for _ in range(5))
    return f"{spec.name}-{spec.template_hash()}-{suffix}"


class Deployments:
    """Starts, watches, restarts and stops pod processes."""

    def __init__(
        self, home: Path, control_url: str, on_change: Callable[[], None], gateway_port: int = 0
    ) -> None:
        self.home = home
        self.control_url = control_url
        self.on_change = on_change
        self.gateway_port = gateway_port
        self.gateway_port_strict = False
        self.specs: dict[str, DeploymentSpec] = {}
        self.pods: dict[str, PodState] = {}
        self.path = home / "deployments.json"
        self.stopping = False
        self._watchers: set[asyncio.Future[None]] = set()

    def load(self) -> list[DeploymentSpec]:
        if not self.path.exists():
            return []
        return [DeploymentSpec(**d) for d in json.loads(self.path.read_text())]

    def save(self) -> None:
        self.path.write_text(json.dumps([asdict(s) for s in self.specs.values()], indent=1))

    async def ensure(self, spec: DeploymentSpec) -> None:
        """Create or update a deployment and converge its pods to ``replicas``."""
        self.specs[spec.name] = spec
        self.save()
        await self.converge(spec.name)

    async def converge(self, name: str) -> None:
        spec = self.specs.get(name)
        current = [p for p in self.pods.values() if p.deployment == name and not p.stopping]
        want = spec.replicas if spec else 0
        for pod in current[want:] if len(current) > want else []:
            await self.stop_pod(pod)
        for _ in range(want - len(current)):
            assert spec is not None
            await self.start_pod(spec)
        if spec is None:
            self.save()
        self.on_change()

    async def remove(self, name: str) -> None:
        self.specs.pop(name, None)
        await self.converge(name)

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
            "control": self.control_url,
            "gateway_port": self.gateway_port if spec.gateway else 0,
            "gateway_port_strict": self.gateway_port_strict,
            "home": str(self.home),
        }
        log = open(self.home / "logs" / f"{spec.name}.log", "ab")  # noqa: SIM115 - owned by the child
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        pod.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "meshkit.backends.local.pod",
            json.dumps(args),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
        )
        log.close()
        watcher = asyncio.ensure_future(self._watch(pod))
        self._watchers.add(watcher)  # the loop keeps only weak references to tasks
        watcher.add_done_callback(self._watchers.discard)
        return pod

    async def _watch(self, pod: PodState) -> None:
        assert pod.proc is not None
        await pod.proc.wait()
        self.pods.pop(pod.name, None)
        self.on_change()
        spec = self.specs.get(pod.deployment)
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
        pod.ready = False
        if pod.proc is not None and pod.proc.returncode is None:
            pod.proc.kill()

    async def stop_all(self) -> None:
        self.stopping = True
        await asyncio.gather(*(self.stop_pod(p) for p in list(self.pods.values())))
