"""The local backend: starts the control plane process and talks to it over loopback HTTP.

State lives in ``MESHKIT_HOME`` (default ``~/.meshkit``): ``state.json`` (pid, start time and
ports of the control plane, and the config version), ``pods/`` (one record per pod process, for
``down`` and for the next control plane to adopt), ``resources.json``, ``deployments.json``,
``secrets.json``, ``ca/``, ``jwt/``, ``logs/``, and two locks: ``lifecycle.lock`` (one
``up``/``down``/``restart`` at a time) and ``controlplane.lock`` (held by the running control
plane). Several meshes run side by side with different homes.

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
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar

from meshkit.backends.base import CAP_LOCAL_TIME, CAP_SNIFF, ApplyResult, Backend, Pod
from meshkit.backends.local.durable import CorruptState, read_json, write_atomic
from meshkit.backends.local.probes import PATH as PROBE_PATH
from meshkit.backends.local.processes import (
    HomeLock,
    ProcessRecord,
    bytecode_env,
    mesh_processes,
    reap,
    start_time,
    terminate,
)
from meshkit.backends.local.statecheck import check_state, state_files
from meshkit.backends.local.trust import (
    OWNER_HEADER,
    ensure_owner_credential,
    held_by_another,
    read_owner_credential,
    secure_home,
)
from meshkit.errors import MeshkitError, MeshNotRunning, NotFound
from meshkit.resources.kinds import key_kind

DEFAULT_HOME = Path.home() / ".meshkit"


def default_home() -> Path:
    return Path(os.environ.get("MESHKIT_HOME") or DEFAULT_HOME)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; reaps it when it is our own exited child (no zombie left)."""
    reap(pid)
    return start_time(pid) is not None


def _port_free(port: int) -> bool:
    """Whether the gateway can listen on ``port``: SO_REUSEADDR, as the listener itself binds, so
    the TIME_WAIT connections of the previous run do not count as "in use"."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


LIFECYCLE_WAIT_S = 120.0  # a second `up` waits this long for the first to finish


class LocalBackend(Backend):
    name = "local"
    capabilities: ClassVar[frozenset[str]] = frozenset({CAP_LOCAL_TIME, CAP_SNIFF})

    def __init__(self, home: str | Path | None = None, **_: Any) -> None:
        self.home = (Path(home) if home else default_home()).absolute()

    # plumbing ------------------------------------------------------------------------------------
    def _read_state(self) -> dict[str, Any]:
        """state.json as last written, whether or not its control plane still runs."""
        try:
            state = json.loads((self.home / "state.json").read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _control_plane(self, state: dict[str, Any]) -> ProcessRecord | None:
        try:
            pid = int(state["pid"])
        except (KeyError, TypeError, ValueError):
            return None
        reap(pid)
        rec = ProcessRecord.of(pid)
        if rec is None or (state.get("start") and rec.start != int(state["start"])):
            return None  # gone, or its pid now names another process
        return rec

    def _state(self) -> dict[str, Any] | None:
        """state.json while its control plane runs; None otherwise."""
        state = self._read_state()
        return state if self._control_plane(state) is not None else None

    def _credential(self) -> str:
        """The owner credential from the home (read per call: a new ``up`` may have made a new one)."""
        credential = read_owner_credential(self.home)
        if credential is None:
            raise MeshkitError(f"no owner credential readable in {self.home}: only the user who ran "
                               "`meshkit up` with this MESHKIT_HOME can use this mesh")
        return credential

    def _owner_request(self, port: int, path: str, method: str = "GET", data: bytes | None = None,
                       headers: Mapping[str, str] | None = None) -> urllib.request.Request:
        """A request to an owner-only port of a pod (its app, admin port, or sidecar's outbound)."""
        _refuse_foreign_listener(port)
        return urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                      headers={**(headers or {}), OWNER_HEADER: self._credential()})

    def _call(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        state = self._state()
        if state is None:
            raise MeshNotRunning(str(self.home))
        data = json.dumps(body).encode() if body is not None else None
        _refuse_foreign_listener(int(state["api_port"]))
        req = urllib.request.Request(
            f"http://127.0.0.1:{state['api_port']}{path}", data=data, method=method,
            headers={"content-type": "application/json", "authorization": f"Bearer {self._credential()}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                detail = json.loads(raw or b"{}").get("error", exc.reason)
            except (ValueError, AttributeError):
                detail = raw.decode("utf-8", "replace")[:500] or exc.reason  # a plain-text refusal (413)
            if exc.code == 404:
                raise NotFound(str(detail)) from None
            if exc.code == 401:
                raise MeshkitError(f"the control plane refused the owner credential of {self.home} "
                                   f"({detail})") from None
            raise MeshkitError(f"{detail}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise MeshNotRunning(str(self.home)) from exc

    def _lock(self, what: str) -> AbstractContextManager[None]:
        secure_home(self.home)
        lock = HomeLock(self.home / "lifecycle.lock")
        if lock.held_by_other():
            print(f"waiting for {lock.holder()} to finish with {self.home} ...", file=sys.stderr, flush=True)
        return lock.hold(LIFECYCLE_WAIT_S, what)

    def _pod_records(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted((self.home / "pods").glob("*.json")):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            rec = ProcessRecord.from_dict(data)
            if rec is not None and rec.alive():
                out.append(data)
        return out

    # lifecycle -----------------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self._state() is not None

    def up(self, profile: str = "current", *, outbound: str = "REGISTRY_ONLY", gateway_port: int = 0,
           timeout: float = 30.0, restart_control_plane: bool = False, reset_state: bool = False,
           dataplane: str = "sidecar", **_: Any) -> None:
        """Start the mesh, or adopt the pods a dead control plane left serving; idempotent.

        One ``up``/``down``/``restart`` at a time per home (a file lock): a second one waits.
        """
        with self._lock("meshkit up"):
            if reset_state:
                self._reset_state()
            if self.is_running():
                if restart_control_plane:
                    self._restart_locked(timeout)
                else:
                    self.wait_ready(timeout)
                if dataplane == "ambient":  # the ambient profile over a running mesh: ztunnel joins
                    self._call("POST", "/ambient", {})
                    self.wait_ready(timeout)
                return
            self._refuse_unknown_control_plane()
            self._start_control_plane(profile, outbound, gateway_port, timeout, dataplane)

    def _refuse_unknown_control_plane(self) -> None:
        """A control plane holds this home but its state file does not lead to it: never start a second."""
        lock = HomeLock(self.home / "controlplane.lock")
        if not lock.held_by_other(settle_s=3.0):
            return
        holder = lock.holder()
        try:
            read_json(self.home / "state.json", default={}, expect=dict)
        except CorruptState as exc:
            raise MeshkitError(f"{exc.path} is corrupt ({exc.detail}) while the "
                               f"{holder} still runs the mesh: `meshkit down` ends the mesh (it finds every "
                               "process without that file), then `meshkit up` starts a new one") from None
        raise MeshkitError(f"the {holder} holds the mesh in {self.home} but does not answer: "
                           "`meshkit restart` replaces it (the pods keep serving), `meshkit down` ends the mesh")

    def not_running_error(self) -> MeshkitError:
        """Why verbs that need the control plane cannot run, saying so when the pods still serve."""
        if self._pod_records():
            try:
                gateway = f" (ingress gateway {self.gateway_url()})"
            except MeshkitError:
                gateway = ""
            return MeshNotRunning(str(self.home), f"the control plane of the mesh in {self.home} is down; its pods "
                                  f"keep serving their last config{gateway}. `meshkit up` starts a control plane "
                                  "that adopts them, `meshkit down` ends them")
        return MeshNotRunning(str(self.home))

    def restart(self, timeout: float = 30.0) -> None:
        """Restart only the control plane: the pods keep serving and the new one adopts them."""
        with self._lock("meshkit restart"):
            if not self.is_running() and not self._pod_records():
                raise MeshNotRunning(str(self.home))
            self._restart_locked(timeout)

    def _restart_locked(self, timeout: float) -> None:
        state = self._read_state()
        cp = self._control_plane(state)
        if cp is not None:
            try:
                self._call("POST", "/shutdown", {"keep_pods": True}, timeout=5)
            except MeshkitError:
                cp.signal(signal.SIGTERM)  # SIGTERM keeps the pods too
            deadline = time.monotonic() + 10
            while cp.alive() and time.monotonic() < deadline:
                reap(cp.pid)
                time.sleep(0.01)
            if cp.alive():
                cp.signal(signal.SIGKILL)
        self._start_control_plane(str(state.get("profile", "current")), str(state.get("outbound", "REGISTRY_ONLY")),
                                  0, timeout)

    def _start_control_plane(self, profile: str, outbound: str, gateway_port: int, timeout: float,
                             dataplane: str = "sidecar") -> None:
        ensure_owner_credential(self.home)  # kept across restarts: adopted pods know the owner by it
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        adopting = bool(self._pod_records())
        if not adopting:
            check_state(self.home)
        else:
            # the pods serve under the mesh's profile and outbound policy: the new control plane keeps them
            previous = self._read_state()
            profile, outbound = str(previous.get("profile", profile)), str(previous.get("outbound", outbound))
        if gateway_port and not adopting and not _port_free(gateway_port):
            raise MeshkitError(f"port {gateway_port} is already in use on 127.0.0.1: free it, or choose "
                               "another with --gateway-port (0 picks a free one)")
        # an explicit port must be honoured; otherwise the gateway reuses the last one when free
        port = gateway_port or self._remembered_gateway_port()
        log_path = self.home / "logs" / "controlplane.log"
        log = open(log_path, "ab")  # noqa: SIM115 - owned by the child
        log_start = log.tell()
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshkit.backends.local.controlplane", "--home", str(self.home),
             "--profile", profile, "--outbound", outbound, "--gateway-port", str(port),
             *(["--gateway-port-strict"] if gateway_port else []), "--dataplane", dataplane],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
            env=bytecode_env(os.environ),  # the pods inherit it from the control plane
        )
        log.close()
        try:
            self.wait_ready(timeout, proc=proc, log=(log_path, log_start))
            if adopting:
                self.wait_synced(timeout)  # the adopted proxies have the new control plane's config
        except MeshkitError:
            if not adopting:
                # a mesh that did not come up leaves nothing running behind it
                self._down_locked()
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
            raise
        state = self._state()
        if state is not None:
            write_atomic(self.home / "gateway_port", str(state["gateway_port"]).encode())

    def _remembered_gateway_port(self) -> int:
        path = self.home / "gateway_port"
        try:
            port = int(path.read_text())
        except (OSError, ValueError):
            return 0
        return port if _port_free(port) else 0

    def _reset_state(self) -> None:
        """``up --reset-state``: set every state file aside (kept as ``*.corrupt``) and start empty."""
        if self._pod_records() or self.is_running():
            raise MeshkitError(f"a mesh is running in {self.home}; run `meshkit down` before --reset-state")
        for path in state_files(self.home):
            if path.exists():
                path.replace(path.with_name(path.name + ".corrupt"))

    def wait_ready(self, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None,
                   log: tuple[Path, int] | None = None) -> None:
        deadline, since = time.monotonic() + timeout, time.time() - 1
        last = "the control plane to start"
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise MeshkitError(f"the control plane exited with code {proc.returncode} while starting:"
                                   f"\n{_log_tail(*(log or (self.home / 'logs' / 'controlplane.log', 0)))}")
            if self._state() is not None:
                try:
                    status = self._call("GET", "/status", timeout=5)
                except MeshNotRunning:
                    status = None
                if status and status["ready"]:
                    return
                if status:
                    crashed = [c for c in status.get("crashes", [])
                               if c.get("before_ready") and c.get("at", 0) >= since]
                    if crashed:
                        raise MeshkitError(_crash_report(self.home, crashed))
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
            if all(p["synced"] for p in status["pods"] if p["sidecar"] or p["app"] == "ztunnel"):
                return
            time.sleep(0.01)
        stale = [p["name"] for p in self._call("GET", "/status")["pods"] if not p["synced"]]
        raise MeshkitError(f"proxies did not take the new config within {timeout:g}s: {', '.join(stale)}")

    def down(self) -> None:
        """End every process of the mesh, control plane dead, hung or alive, and leave nothing listening."""
        with self._lock("meshkit down"):
            self._down_locked()

    def _down_locked(self) -> None:
        state = self._read_state()
        cp = self._control_plane(state)
        if cp is not None:
            try:
                # a live control plane stops its pods gracefully; a hung one does not answer in time
                self._call("POST", "/shutdown", {}, timeout=2)
                deadline = time.monotonic() + 4
                while cp.alive() and time.monotonic() < deadline:
                    reap(cp.pid)
                    time.sleep(0.02)
            except MeshkitError:
                pass
            if cp.alive():
                cp.signal(signal.SIGKILL)
        # whatever is left: recorded pods and anything whose command line names this home
        recorded = [r for r in (ProcessRecord.from_dict(d) for d in self._pod_records()) if r is not None]
        terminate({*recorded, *mesh_processes(self.home)}, grace=2.0)
        for path in (self.home / "pods").glob("*.json"):
            path.unlink(missing_ok=True)
        (self.home / "state.json").unlink(missing_ok=True)

    def status(self) -> dict[str, Any]:
        """The control plane's view; with the control plane down, what the pods themselves say."""
        try:
            result: dict[str, Any] = self._call("GET", "/status", timeout=5)
            return result
        except MeshNotRunning:
            records = self._pod_records()
            if not records:
                raise
            return self._status_without_control_plane(records)

    def _status_without_control_plane(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """As ``istioctl proxy-status`` against a dead istiod can't: ask each proxy's admin port."""
        state = self._read_state()
        pods = []
        for rec in records:
            spec = rec.get("spec", {})
            gateway = spec.get("service") == "istio-ingressgateway"
            version = 0
            admin = rec.get("ports", {}).get("admin")
            serving = False
            if admin:
                try:
                    # the pod's probe answer carries the version of the config it serves
                    with urllib.request.urlopen(self._owner_request(int(admin), PROBE_PATH), timeout=2) as resp:
                        answer = json.loads(resp.read())
                    version, serving = int(answer.get("config_version", 0)), bool(answer.get("ready"))
                except (OSError, ValueError, AttributeError):
                    serving = False
            app = "istio-ingressgateway" if gateway else spec.get("service", "")
            pods.append({
                "name": rec["name"], "app": app, "version": "" if gateway else spec.get("version", ""),
                "deployment": rec.get("deployment", ""), "namespace": "istio-system" if gateway else "tutorial",
                "ready": serving and bool(rec.get("ready")), "sidecar": bool(spec.get("sidecar", True)),
                "service_account": "", "config_version": version, "synced": False,
                "restarts": int(rec.get("restarts", 0)), "ports": rec.get("ports", {}), "pid": rec.get("pid", 0),
            })
        return {
            "control_plane": {"state": "down", "pid": state.get("pid", 0)},
            "version": state.get("version", 0),
            "profile": state.get("profile", "current"),
            "outbound_policy": state.get("outbound", "REGISTRY_ONLY"),
            "gateway_port": state.get("gateway_port", 0),
            "pods": sorted(pods, key=lambda p: p["name"]),
            "ready": False,
        }


    # resources -----------------------------------------------------------------------------------
    def apply(self, resources: Sequence[Mapping[str, Any]]) -> list[ApplyResult]:
        reply = self._call("POST", "/apply", {"resources": list(resources)})
        if any(r.get("kind") == "Deployment" for r in resources):
            self.wait_ready()
        self.wait_synced()
        out = []
        warnings = tuple(reply.get("warnings") or ())  # what the proxies will make of it (keys they cannot fetch)
        for res, item in zip(resources, reply["results"], strict=True):
            api = str(res.get("apiVersion", ""))
            group = api.split("/")[0] if "/" in api else ""  # the core group ("v1") has no name
            out.append(ApplyResult(item["kind"], group, item["name"], item["action"],
                                   warnings + tuple(item.get("warnings", ()))))
            warnings = ()
        return out

    def delete(self, kind: str, name: str, namespace: str | None = None) -> ApplyResult:
        items = self.get(kind, name, namespace=namespace)
        if not items:
            raise NotFound(f'{kind.lower()} "{name}" not found')
        res = items[0]
        ns = res["metadata"].get("namespace", "tutorial")
        self._call("POST", "/delete", {"kind": kind, "name": name, "namespace": ns})
        self.wait_synced()
        api = str(res["apiVersion"])
        return ApplyResult(res["kind"], api.split("/")[0] if "/" in api else "", name, "deleted")

    def get(self, kind: str | None = None, name: str | None = None, *, namespace: str | None = None,
            selector: str = "") -> list[dict[str, Any]]:
        """Stored resources; Kubernetes kinds (and pods) also by ``namespace`` and label ``selector``."""
        from urllib.parse import urlencode

        params = {"kind": kind, "name": name, "namespace": namespace, "selector": selector}
        query = urlencode({k: v for k, v in params.items() if v})
        items: list[dict[str, Any]] = self._call("GET", f"/resources?{query}")["items"]
        return items

    def reset(self) -> list[ApplyResult]:
        removed = []
        for res in self.get():
            meta = res["metadata"]
            if meta["name"] == "customer-gateway" and res["kind"] in ("Gateway", "VirtualService"):
                continue
            if res["kind"] == "GatewayClass":
                continue  # installed with Istio
            removed.append(self.delete(key_kind(res), meta["name"], meta.get("namespace", "tutorial")))
        return removed

    # workloads -----------------------------------------------------------------------------------
    def pods(self) -> list[Pod]:
        return [
            Pod(p["name"], p["app"], p["version"], p["deployment"], p["ready"], p["sidecar"], p["service_account"],
                p["namespace"], p["config_version"], p["synced"], p["restarts"],
                {"ports": p["ports"], "pid": p["pid"], "last_error": p.get("last_error", ""),
                 "probe": p.get("probe", ""), "dataplane": p.get("dataplane", "sidecar" if p["sidecar"] else "none"),
                 "ztunnel_ports": p.get("ztunnel_ports") or {}})
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
        with urllib.request.urlopen(self._owner_request(port, path), timeout=10) as resp:
            return str(resp.read().decode())

    def deploy(self, service: str, version: str, replicas: int = 1, sidecar: bool = True) -> str:
        known = ("customer", "preference", "recommendation", "curl")
        if service not in known:
            raise NotFound(f'unknown service "{service}"; choose one of: {", ".join(known)}')
        reply = self._call("POST", "/deploy", {"service": service, "version": version, "replicas": replicas,
                                               "sidecar": sidecar})
        self.wait_ready()
        return str(reply["deployment"])

    def rollout_restart(self, *deployments: str) -> None:
        """``kubectl rollout restart deployment/NAME...``: new pods, injected as the namespace now says."""
        for name in deployments:
            self._call("POST", "/rollout", {"deployment": name})
        self.wait_ready()

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
        from meshkit.backends.local.proxy.dns import ClusterDns

        target = self._pods_of(pod)[0]
        rest = url.split("://", 1)[-1]
        authority, _, path = rest.partition("/")
        host, _, port_text = authority.partition(":")
        if host in ("localhost", "127.0.0.1"):
            # loopback is not captured by Istio's iptables rules: it reaches the pod's own ports
            return self._loopback(target, int(port_text or 80), "/" + path, headers, method)
        hdrs = {"host": authority, **{k.lower(): v for k, v in (headers or {}).items()}}
        ports = target.extra["ports"]
        if not ClusterDns(self._services(), target.namespace).resolves(host):
            return 0, f"curl: (6) Could not resolve host: {host}"
        if target.extra.get("ztunnel_ports"):
            # an ambient pod: its connection is captured to the node's ztunnel (curl sees a reset on a deny)
            return _through_ztunnel(int(target.extra["ztunnel_ports"]["outbound"]), authority, f"/{path}", method, hdrs)
        if "outbound" in ports:
            req = self._owner_request(ports["outbound"], f"/{path}", method, headers=hdrs)
        else:
            # no sidecar: the pod reaches the service's pod directly, in plaintext (like Istio's curl sample)
            service = host.split(".")[0]
            backends = [p for p in self.pods() if p.app == service and p.ready]
            if not backends:
                return 503, f"curl: (6) Could not resolve host: {service}"
            # an ambient pod's address leads to its ztunnel's plaintext inbound (STRICT refuses it there)
            port = ((backends[0].extra.get("ztunnel_ports") or {}).get("inbound")
                    or backends[0].extra["ports"].get("inbound") or backends[0].extra["ports"]["app"])
            req = urllib.request.Request(f"http://127.0.0.1:{port}/{path}", headers=hdrs, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except (ConnectionError, urllib.error.URLError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ConnectionResetError):  # curl's words for an RST
                reason = "Connection reset by peer"
            return 0, f"curl: (56) Recv failure: {reason}"

    def label(self, kind: str, name: str, labels: Mapping[str, str | None]) -> dict[str, Any]:
        """``kubectl label``: a Namespace's or a pod's labels change in place (no pod restarts)."""
        result: dict[str, Any] = self._call("POST", "/label", {"kind": kind, "name": name, "labels": dict(labels)})
        return result

    def tcp_increase(self, since: float, until: float) -> list[dict[str, Any]]:
        """ztunnel's ``istio_tcp_*`` series increase over ``(since, until]`` (none without a ztunnel)."""
        zt = [p for p in self.pods() if p.app == "ztunnel" and p.extra.get("ports", {}).get("admin")]
        if not zt:
            return []
        path = f"/tcp_increase?since={since}&until={until}"
        with urllib.request.urlopen(self._owner_request(int(zt[0].extra["ports"]["admin"]), path), timeout=10) as resp:
            rows: list[dict[str, Any]] = json.loads(resp.read())
        return rows

    def ztunnel_dump(self) -> dict[str, Any]:
        """The node ztunnel's config dump (its ``localhost:15000/config_dump``)."""
        zt = [p for p in self.pods() if p.app == "ztunnel"]
        if not zt:
            raise MeshkitError("no ztunnel: this mesh runs sidecars only (meshkit up --dataplane ambient)")
        with urllib.request.urlopen(self._owner_request(int(zt[0].extra["ports"]["admin"]), "/config_dump"),
                                    timeout=10) as resp:
            dump: dict[str, Any] = json.loads(resp.read())
        return dump

    def envoy_admin(self, pod: str, path: str) -> str:
        """GET ``path`` on the pod's Envoy admin port (the pod's ``localhost:15000``)."""
        target = self._pods_of(pod)[0]
        admin = target.extra["ports"].get("admin")
        if not target.sidecar or not admin:
            raise MeshkitError(f"pod {target.name} has no istio-proxy container")
        try:
            with urllib.request.urlopen(self._owner_request(int(admin), path), timeout=10) as resp:
                return str(resp.read().decode())
        except urllib.error.HTTPError as exc:
            raise MeshkitError(f"{path}: {exc.read().decode().strip() or exc.reason}") from None

    def istiod_config_dump(self, pod: str) -> dict[str, Any]:
        target = self._pods_of(pod)[0]
        result: dict[str, Any] = self._call("GET", f"/config_dump?pod={target.name}")
        return result

    def _loopback(self, target: Pod, port: int, path: str, headers: Mapping[str, str] | None,
                  method: str) -> tuple[int, str]:
        ports = target.extra["ports"]
        local = {15000: ports.get("admin") if target.sidecar else None, 8080: ports.get("app")}.get(port)
        if not local:
            return 0, f"curl: (7) Failed to connect to localhost port {port}: Connection refused"
        hdrs = {"host": f"localhost:{port}", **{k.lower(): v for k, v in (headers or {}).items()}}
        if target.sidecar:  # a pod with a sidecar keeps its own ports to itself (and to its owner)
            req = self._owner_request(int(local), path, method, headers=hdrs)
        else:
            req = urllib.request.Request(f"http://127.0.0.1:{local}{path}", headers=hdrs, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except (ConnectionError, urllib.error.URLError) as exc:
            return 0, f"curl: (56) Recv failure: {getattr(exc, 'reason', exc)}"

    def _services(self) -> list[dict[str, Any]]:
        return [{"name": s["metadata"]["name"], "namespace": s["metadata"].get("namespace", "tutorial")}
                for s in self.get("Service")]

    def certs(self, pod: str) -> dict[str, Any]:
        """The pod's workload certificate and root, like ``istioctl proxy-config secret``."""
        target = self._pods_of(pod)[0]
        admin = target.extra["ports"]["admin"]
        with urllib.request.urlopen(self._owner_request(admin, "/certs"), timeout=10) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result

    def sniff(self, target: str, seconds: float = 3.0, requests: int = 3,
              headers: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Capture what crosses the wire to a pod while ``requests`` go through the gateway."""
        from meshkit.traffic import run_load

        pod = self._pods_of(target)[0]
        admin, query = pod.extra["ports"]["admin"], ""
        if pod.extra.get("dataplane") == "ambient":  # the wire to an ambient pod ends at ztunnel's HBONE port
            ztunnel = next((p for p in self.pods() if p.app == "ztunnel"), None)
            if ztunnel is None:
                raise MeshkitError(f"pod {pod.name} is enrolled in ambient but no ztunnel runs")
            admin, query = ztunnel.extra["ports"]["admin"], f"pod={pod.name}&"
        post = self._owner_request(admin, f"/sniff?{query}seconds={seconds}", "POST", b"")
        urllib.request.urlopen(post, timeout=10).close()
        self.wait_synced()
        run_load(self.gateway_url(), n=requests, headers=headers)
        with urllib.request.urlopen(self._owner_request(admin, f"/sniff?{query.rstrip('&')}"), timeout=10) as resp:
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
            # the control plane may be down while the gateway keeps serving
            state = self._read_state()
            if not state.get("gateway_port") or not self._pod_records():
                raise MeshNotRunning(str(self.home))
        return f"http://127.0.0.1:{state['gateway_port']}"

    def _raw(self, path: str) -> str:
        state = self._state()
        if state is None:
            raise MeshNotRunning(str(self.home))
        try:
            _refuse_foreign_listener(int(state["api_port"]))
            req = urllib.request.Request(f"http://127.0.0.1:{state['api_port']}{path}",
                                         headers={"authorization": f"Bearer {self._credential()}"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                return str(resp.read().decode())
        except urllib.error.HTTPError as exc:
            raise NotFound(json.loads(exc.read() or b"{}").get("error", exc.reason)) from None

    def metrics_text(self, pod: str | None = None) -> str:
        return self._raw("/metrics" + (f"?pod={pod}" if pod else ""))

    def access_log(self, pod: str) -> list[str]:
        """The istio-proxy container's log: Istio's default access-log lines."""
        target = self._pods_of(pod)[0]
        admin = target.extra["ports"].get("admin")
        with urllib.request.urlopen(self._owner_request(admin, "/access_log"), timeout=10) as resp:
            return resp.read().decode().splitlines()

    def request_log(self, since: float = 0.0, limit: int = 10_000) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._call("GET", f"/records?since={since}&limit={limit}")["records"]
        return rows

    def flush_telemetry(self) -> bool:
        """Every sidecar ships its buffered records now; a request answered before this call is then
        in :meth:`request_log` (a sidecar writes its record before it sends the response)."""
        for pod in self.pods():
            admin = pod.extra.get("ports", {}).get("admin")
            if not pod.sidecar or not admin:
                continue
            try:
                urllib.request.urlopen(self._owner_request(int(admin), "/flush", "POST", b""), timeout=10).close()
            except urllib.error.HTTPError:
                raise  # the pod refused: a real fault, not a pod on its way out
            except OSError:  # a pod being replaced: its records went with it
                continue
        return True

    def traces(self, service: str | None = None, limit: int = 20) -> dict[str, Any]:
        query = f"/traces?limit={limit}" + (f"&service={service}" if service else "")
        result: dict[str, Any] = self._call("GET", query)
        return result

    def app_log(self, pod: str) -> str:
        return self.app_log_since(pod)[0]

    def app_log_since(self, pod: str, since: int | None = None) -> tuple[str, int]:
        """The app's log (only the lines written after the ``since``-th with it) and its line count."""
        target = self._pods_of(pod)[0]
        if "app" not in target.extra["ports"] and target.app != "ztunnel":  # ztunnel's log is its container's
            raise MeshkitError(f"pod {target.name} has no app container; its container is istio-proxy "
                               "(use -c istio-proxy)")
        query = f"?since={since}" if since is not None else ""
        with urllib.request.urlopen(self._owner_request(target.extra["ports"]["admin"], f"/app_log{query}"),
                                    timeout=10) as r:
            return str(r.read().decode()), int(r.headers.get("x-log-lines", 0))


def _refuse_foreign_listener(port: int) -> None:
    """Never send the owner credential to another user's listener (a dead process's port may have been
    taken by someone else in the meantime)."""
    if held_by_another(port):
        raise MeshkitError(f"127.0.0.1:{port} is held by another user, not by this mesh: the credential was "
                           "not sent; run `meshkit status`")


def _log_tail(path: Path, offset: int = 0, lines: int = 12) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return f"  (no log at {path})"
    kept = [x for x in text.splitlines() if x.strip()][-lines:]
    return "\n".join(f"  {x}" for x in kept) or f"  (nothing in {path})"


def _crash_report(home: Path, crashed: list[dict[str, Any]]) -> str:
    parts = []
    for c in crashed:
        parts.append(f"pod {c['pod']} exited with code {c.get('code')} before it became ready; "
                     f"the last lines of {home / 'logs' / (c['deployment'] + '.log')}:\n"
                     f"{_log_tail(home / 'logs' / (c['deployment'] + '.log'), int(c.get('log_offset', 0)))}")
    return "the mesh cannot start: " + "\n".join(parts)


def _through_ztunnel(port: int, authority: str, path: str, method: str, headers: Mapping[str, str]) -> tuple[int, str]:
    """One request from an ambient pod: over its capture to ztunnel, curl's view of the outcome."""
    import http.client

    target = authority if ":" in authority else f"{authority}:80"
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    except OSError as exc:
        return 0, f"curl: (7) Failed to connect: {exc}"
    try:
        sock.sendall(f"{target}\n".encode())
        conn = http.client.HTTPConnection(authority)
        conn.sock = sock
        conn.request(method, path, headers=dict(headers))
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError):
        return 0, "curl: (56) Recv failure: Connection reset by peer"
    except OSError as exc:
        return 0, f"curl: (56) Recv failure: {exc}"
    finally:
        sock.close()
