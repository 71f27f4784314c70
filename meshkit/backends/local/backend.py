"""The local backend: starts the control plane process and talks to it over loopback HTTP.

State lives in ``MESHKIT_HOME`` (default ``~/.meshkit``): ``state.json`` (pid and ports of the
running control plane), ``resources.json``, ``deployments.json``, ``logs/``. Several meshes run
side by side with different homes.

Example::

    backend = LocalBackend(home="/tmp/mesh-a")
    backend.up()
    print(backend.gateway_url())
    backend.down()
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from meshkit.backends.base import CAP_LOCAL_TIME, CAP_SNIFF, ApplyResult, Backend, Pod
from meshkit.errors import MeshkitError, MeshNotRunning, NotFound

DEFAULT_HOME = Path.home() / ".meshkit"


def default_home() -> Path:
    return Path(os.environ.get("MESHKIT_HOME") or DEFAULT_HOME)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; reaps it when it is our own exited child (no zombie left)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class LocalBackend(Backend):
    name = "local"
    capabilities: ClassVar[frozenset[str]] = frozenset({CAP_LOCAL_TIME, CAP_SNIFF})

    def __init__(self, home: str | Path | None = None, **_: Any) -> None:
        self.home = Path(home) if home else default_home()

    # plumbing ------------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any] | None:
        path = self.home / "state.json"
        if not path.exists():
            return None
        try:
            state: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        try:
            pid = int(state["pid"])
        except (KeyError, ValueError):
            return None
        return state if _alive(pid) else None

    def _call(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        state = self._state()
        if state is None:
            raise MeshNotRunning(str(self.home))
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"http://127.0.0.1:{state['api_port']}{path}", data=data, method=method,
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = json.loads(exc.read() or b"{}").get("error", exc.reason)
            if exc.code == 404:
                raise NotFound(str(detail)) from None
            raise MeshkitError(f"{detail}") from None
        except (urllib.error.URLError, ConnectionError) as exc:
            raise MeshNotRunning(str(self.home)) from exc

    # lifecycle -----------------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self._state() is not None

    def up(self, profile: str = "current", *, outbound: str = "REGISTRY_ONLY", gateway_port: int = 0,
           timeout: float = 30.0, **_: Any) -> None:
        started = False
        if not self.is_running():
            (self.home / "logs").mkdir(parents=True, exist_ok=True)
            if gateway_port and not _port_free(gateway_port):
                raise MeshkitError(f"port {gateway_port} is already in use on 127.0.0.1: free it, or choose "
                                   "another with --gateway-port (0 picks a free one)")
            # an explicit port must be honoured; otherwise the gateway reuses the last one when free
            port = gateway_port or self._remembered_gateway_port()
            log = open(self.home / "logs" / "controlplane.log", "ab")  # noqa: SIM115 - owned by the child
            proc = subprocess.Popen(
                [sys.executable, "-m", "meshkit.backends.local.controlplane", "--home", str(self.home),
                 "--profile", profile, "--outbound", outbound, "--gateway-port", str(port),
                 *(["--gateway-port-strict"] if gateway_port else [])],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
            )
            log.close()
            started = True
        try:
            self.wait_ready(timeout)
        except MeshkitError:
            if started:
                # a mesh that did not come up leaves nothing running behind it
                self.down()
                if proc.poll() is None:  # not serving yet: it has started no pod so far
                    proc.terminate()
                    proc.wait(timeout=10)
            raise
        state = self._state()
        if state is not None:
            (self.home / "gateway_port").write_text(str(state["gateway_port"]))

    def _remembered_gateway_port(self) -> int:
        path = self.home / "gateway_port"
        try:
            port = int(path.read_text())
        except (OSError, ValueError):
            return 0
        return port if _port_free(port) else 0

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = "the control plane to start"
        while time.monotonic() < deadline:
            if self._state() is not None:
                try:
                    status = self._call("GET", "/status", timeout=5)
                except MeshNotRunning:
                    status = None
                if status and status["ready"]:
                    return
                if status:
                    waiting = [p["name"] for p in status["pods"] if not p["ready"] or not p["synced"]]
                    last = f"pods to become ready: {', '.join(waiting) or 'pods to start'}"
            time.sleep(0.02)
        logs = self.home / "logs"
        crashes = []
        for path in sorted(logs.glob("*.log")):
            lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
            if lines and ("Error" in lines[-1] or "Exception" in lines[-1]):
                crashes.append(f"  {path.name}: {lines[-1]}")
        detail = ("\n" + "\n".join(crashes)) if crashes else ""
        raise MeshkitError(f"the mesh did not become ready within {timeout:g}s (waiting for {last}); "
                           f"logs in {logs}{detail}")

    def wait_synced(self, timeout: float = 10.0) -> None:
        """Return once every proxy has acknowledged the latest config (a local push takes ms)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self._call("GET", "/status")
            if all(p["synced"] for p in status["pods"] if p["sidecar"]):
                return
            time.sleep(0.01)
        stale = [p["name"] for p in self._call("GET", "/status")["pods"] if not p["synced"]]
        raise MeshkitError(f"proxies did not take the new config within {timeout:g}s: {', '.join(stale)}")

    def down(self) -> None:
        state = self._state()
        if state is None:
            return
        try:
            self._call("POST", "/shutdown", {}, timeout=5)
        except MeshkitError:
            os.kill(int(state["pid"]), signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(int(state["pid"])):
            time.sleep(0.02)
        if _alive(int(state["pid"])):
            os.kill(int(state["pid"]), signal.SIGKILL)
        (self.home / "state.json").unlink(missing_ok=True)

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/status")
        return result

    # resources -----------------------------------------------------------------------------------
    def apply(self, resources: Sequence[Mapping[str, Any]]) -> list[ApplyResult]:
        reply = self._call("POST", "/apply", {"resources": list(resources)})
        self.wait_synced()
        out = []
        for res, item in zip(resources, reply["results"], strict=True):
            group = str(res.get("apiVersion", "")).split("/")[0]
            out.append(ApplyResult(item["kind"], group, item["name"], item["action"]))
        return out

    def delete(self, kind: str, name: str, namespace: str = "tutorial") -> ApplyResult:
        items = self.get(kind, name)
        if not items:
            raise NotFound(f'{kind.lower()} "{name}" not found')
        res = items[0]
        self._call("POST", "/delete", {"kind": kind, "name": name, "namespace": res["metadata"]["namespace"]})
        self.wait_synced()
        return ApplyResult(kind, res["apiVersion"].split("/")[0], name, "deleted")

    def get(self, kind: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in (("kind", kind), ("name", name)) if v)
        items: list[dict[str, Any]] = self._call("GET", f"/resources?{query}")["items"]
        return items

    def reset(self) -> list[ApplyResult]:
        removed = []
        for res in self.get():
            meta = res["metadata"]
            if meta["name"] == "customer-gateway" and res["kind"] in ("Gateway", "VirtualService"):
                continue
            removed.append(self.delete(res["kind"], meta["name"], meta.get("namespace", "tutorial")))
        return removed

    # workloads -----------------------------------------------------------------------------------
    def pods(self) -> list[Pod]:
        return [
            Pod(p["name"], p["app"], p["version"], p["deployment"], p["ready"], p["sidecar"], p["service_account"],
                p["namespace"], p["config_version"], p["synced"], p["restarts"], {"ports": p["ports"], "pid": p["pid"]})
            for p in self.status()["pods"]
        ]

    def _pods_of(self, target: str) -> list[Pod]:
        pods = self.pods()
        chosen = ([p for p in pods if p.name == target] or [p for p in pods if p.deployment == target]
                  or [p for p in pods if p.app == target])
        if not chosen:
            names = ", ".join(sorted({p.deployment for p in pods} | {p.name for p in pods}))
            raise NotFound(f'no pod or deployment named "{target}"; known: {names}')
        return chosen

    def _app_call(self, pod: Pod, path: str) -> str:
        port = pod.extra["ports"].get("app")
        if not port:
            raise MeshkitError(f"pod {pod.name} has no application container")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return str(resp.read().decode())

    def deploy(self, service: str, version: str, replicas: int = 1, sidecar: bool = True) -> str:
        known = ("customer", "preference", "recommendation", "curl")
        if service not in known:
            raise NotFound(f'unknown service "{service}"; choose one of: {", ".join(known)}')
        reply = self._call("POST", "/deploy", {"service": service, "version": version, "replicas": replicas,
                                               "sidecar": sidecar})
        self.wait_ready()
        return str(reply["deployment"])

    def scale(self, deployment: str, replicas: int) -> None:
        self._call("POST", "/scale", {"deployment": deployment, "replicas": replicas})
        self.wait_ready()

    def undeploy(self, deployment: str) -> None:
        self._call("POST", "/undeploy", {"deployment": deployment})

    def misbehave(self, target: str, on: bool = True) -> list[str]:
        pods = self._pods_of(target)
        for pod in pods:
            self._app_call(pod, "/misbehave" if on else "/behave")
        return [p.name for p in pods]

    def delay(self, target: str, seconds: float) -> list[str]:
        pods = self._pods_of(target)
        for pod in pods:
            self._app_call(pod, f"/delay?seconds={seconds}")
        return [p.name for p in pods]

    def kill(self, pod: str) -> str:
        victim = self._pods_of(pod)[0]
        self._call("POST", "/kill", {"pod": victim.name})
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            others = [p for p in self.pods() if p.deployment == victim.deployment and p.name != victim.name]
            fresh = [p for p in others if p.ready]
            if fresh and all(p.name != victim.name for p in self.pods()):
                self.wait_ready()
                return fresh[-1].name
            time.sleep(0.05)
        raise MeshkitError(f"no replacement for {victim.name} became ready within 15s")

    def exec_request(self, pod: str, url: str, headers: Mapping[str, str] | None = None,
                     method: str = "GET") -> tuple[int, str]:
        target = self._pods_of(pod)[0]
        rest = url.split("://", 1)[-1]
        authority, _, path = rest.partition("/")
        hdrs = {"host": authority, **{k.lower(): v for k, v in (headers or {}).items()}}
        port = target.extra["ports"].get("outbound")
        if port is None:
            # no sidecar: the pod reaches the service's pod directly, in plaintext (like Istio's curl sample)
            service = authority.split(":")[0].split(".")[0]
            backends = [p for p in self.pods() if p.app == service and p.ready]
            if not backends:
                return 503, f"curl: (6) Could not resolve host: {service}"
            port = backends[0].extra["ports"].get("inbound") or backends[0].extra["ports"]["app"]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/{path}", headers=hdrs, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except (ConnectionError, urllib.error.URLError) as exc:
            reason = getattr(exc, "reason", exc)
            return 0, f"curl: (56) Recv failure: {reason}"

    def certs(self, pod: str) -> dict[str, Any]:
        """The pod's workload certificate and root, like ``istioctl proxy-config secret``."""
        target = self._pods_of(pod)[0]
        admin = target.extra["ports"]["admin"]
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/certs", timeout=10) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result

    def sniff(self, target: str, seconds: float = 3.0, requests: int = 3,
              headers: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Capture what crosses the wire to a pod while ``requests`` go through the gateway."""
        from meshkit.traffic import run_load

        pod = self._pods_of(target)[0]
        admin = pod.extra["ports"]["admin"]
        post = urllib.request.Request(f"http://127.0.0.1:{admin}/sniff?seconds={seconds}", data=b"", method="POST")
        urllib.request.urlopen(post, timeout=10).close()
        self.wait_synced()
        run_load(self.gateway_url(), n=requests, headers=headers)
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/sniff", timeout=10) as resp:
            views: list[dict[str, Any]] = json.loads(resp.read())
        return views

    def gateway_https_url(self) -> str:
        """The ingress gateway's HTTPS listener (Gateway servers on port 443)."""
        gw = [p for p in self.pods() if p.app == "istio-ingressgateway"]
        if not gw:
            raise MeshkitError("the ingress gateway is not running")
        return f"https://127.0.0.1:{gw[0].extra['ports']['https']}"

    def create_tls_secret(self, name: str, cert_pem: str, key_pem: str) -> None:
        """Store a TLS credential for Gateway ``credentialName`` (kubectl create secret tls)."""
        self._call("POST", "/secrets", {"name": name, "cert": cert_pem, "key": key_pem})
        self.wait_synced()

    def token(self, claims: Mapping[str, Any], subject: str | None = None, ttl: float = 3600) -> str:
        """A JWT from the mesh's local issuer (``testing@secure.istio.io``), for the JWT labs."""
        return str(self._call("POST", "/token", {"claims": dict(claims), "subject": subject, "ttl": ttl})["token"])

    # traffic / telemetry -------------------------------------------------------------------------
    def gateway_url(self) -> str:
        state = self._state()
        if state is None:
            raise MeshNotRunning(str(self.home))
        return f"http://127.0.0.1:{state['gateway_port']}"

    def _raw(self, path: str) -> str:
        state = self._state()
        if state is None:
            raise MeshNotRunning(str(self.home))
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{state['api_port']}{path}", timeout=30) as resp:
                return str(resp.read().decode())
        except urllib.error.HTTPError as exc:
            raise NotFound(json.loads(exc.read() or b"{}").get("error", exc.reason)) from None

    def metrics_text(self, pod: str | None = None) -> str:
        return self._raw("/metrics" + (f"?pod={pod}" if pod else ""))

    def access_log(self, pod: str) -> list[str]:
        """The istio-proxy container's log: Istio's default access-log lines."""
        target = self._pods_of(pod)[0]
        admin = target.extra["ports"].get("admin")
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/access_log", timeout=10) as resp:
            return resp.read().decode().splitlines()

    def request_log(self, since: float = 0.0, limit: int = 10_000) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._call("GET", f"/records?since={since}&limit={limit}")["records"]
        return rows

    def traces(self, service: str | None = None, limit: int = 20) -> dict[str, Any]:
        query = f"/traces?limit={limit}" + (f"&service={service}" if service else "")
        result: dict[str, Any] = self._call("GET", query)
        return result

    def app_log(self, pod: str) -> str:
        target = self._pods_of(pod)[0]
        if "app" not in target.extra["ports"]:
            raise MeshkitError(f"pod {target.name} has no app container; its container is istio-proxy "
                               "(use -c istio-proxy)")
        with urllib.request.urlopen(f"http://127.0.0.1:{target.extra['ports']['admin']}/app_log", timeout=10) as r:
            return str(r.read().decode())
