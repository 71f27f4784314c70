"""Verbs for the mesh and its workloads: up, down, status, deploy, scale, misbehave, kill, exec, lab."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from meshkit.cli.common import _backend_options, _headers, _mesh, _pods_verb, _print, _table, _target
from meshkit.errors import MeshkitError


def cmd_up(args: argparse.Namespace) -> int:
    from meshkit.backends.base import get_backend

    if args.dry_run:
        if args.backend == "local":
            raise MeshkitError("--dry-run prints the install plan of the kind backend; use --backend kind")
        kind_opts = _backend_options(args)
        if args.gateway_port:
            kind_opts["host_port"] = args.gateway_port
        get_backend(args.backend)(**kind_opts).up(profile=args.profile, dry_run=True, dataplane=args.dataplane)
        return 0
    started = time.monotonic()
    backend = get_backend(args.backend)(**_backend_options(args))
    opts: dict[str, Any] = {}
    if args.backend == "local":
        opts = {"outbound": args.outbound, "gateway_port": args.gateway_port,
                "restart_control_plane": args.restart_control_plane, "reset_state": args.reset_state,
                "dataplane": args.dataplane}
    elif args.restart_control_plane or args.reset_state:
        raise MeshkitError("--restart-control-plane and --reset-state are for the local backend")
    elif args.backend == "kind":
        opts = {"dataplane": args.dataplane}
    backend.up(profile=args.profile, **opts)
    pods = backend.pods()
    _print(
        f"mesh is up in {time.monotonic() - started:.2f}s: {len(pods)} pods, profile {args.profile}, "
        f"ingress gateway {backend.gateway_url()}"
    )
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from meshkit.backends.base import get_backend

    backend = get_backend(args.backend)(**_backend_options(args))
    backend.down()
    _print("mesh stopped")
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    from meshkit.backends.base import get_backend

    if args.backend != "local":
        raise MeshkitError("restart restarts the local control plane; on a cluster: "
                           "kubectl -n istio-system rollout restart deployment/istiod")
    started = time.monotonic()
    backend = get_backend(args.backend)(**_backend_options(args))
    backend.restart()  # type: ignore[attr-defined]
    _print(f"control plane restarted in {time.monotonic() - started:.2f}s; the pods kept serving "
           f"(ingress gateway {backend.gateway_url()})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from meshkit.backends.base import get_backend

    backend = get_backend(args.backend)(**_backend_options(args))
    status_of = getattr(backend, "status", None)
    refused: dict[str, Any] = {}
    if not callable(status_of):
        backend = _mesh(args).backend
        pods, cp, gateway = backend.pods(), {"state": "running"}, backend.gateway_url()
    else:
        status = status_of()
        refused = status.get("telemetry") or {}
        cp = status.get("control_plane", {"state": "running"})
        pods = backend.pods() if cp.get("state") == "running" else _pods_of_status(status)
        gateway = f"http://127.0.0.1:{status['gateway_port']}" if "gateway_port" in status else backend.gateway_url()
    if args.output == "json":
        _print(json.dumps({"pods": [p.to_dict() for p in pods], "gateway": gateway, "control_plane": cp}, indent=2))
        return 0
    down = cp.get("state") == "down"
    rows: list[tuple[str, ...]] = [("NAME", "READY", "RESTARTS", "APP", "VERSION", "CONFIG", "SYNC")]
    # a mesh with ambient pods (or a ztunnel) says which data plane each pod has
    modes = any(p.extra.get("dataplane") == "ambient" or p.app == "ztunnel" for p in pods)
    if modes:
        rows[0] = (*rows[0], "DATAPLANE")
    for p in pods:
        containers = 2 if p.sidecar and p.app != "istio-ingressgateway" else 1
        ready = f"{containers if p.ready else 0}/{containers}"
        # no control plane: nothing is being sent, each proxy keeps what it had (Envoy's last good config)
        sync = "NO CONTROL PLANE" if down else "SYNCED" if p.synced else "STALE"
        row = (p.name, ready, str(p.restarts), p.app, p.version or "-", f"v{p.config_version}", sync)
        rows.append((*row, str(p.extra.get("dataplane", "sidecar" if p.sidecar else "none"))) if modes else row)
    _table(rows)
    for p in pods:
        if p.extra.get("probe"):
            _print(f"{p.name}: {p.extra['probe']}")  # as `kubectl describe pod` shows a probe's event
        if p.extra.get("last_error"):
            _print(f"{p.name}: config rejected: {p.extra['last_error']}")
    if refused.get("refused"):
        # rows a pod sent about another workload: dropped by the collector, never in metrics or traces
        _print(f"telemetry: {refused['refused']} row(s) refused, a pod reported as another workload "
               f"(last: {refused.get('last_refusal', '')})")
    if down:
        _print(f"\ncontrol plane: DOWN (pid {cp.get('pid', '?')} is gone); the pods keep serving their last "
               "config. `meshkit up` starts a new control plane that adopts them, `meshkit down` ends them.")
    _print(f"\ningress gateway: {gateway}")
    return 0


def _pods_of_status(status: dict[str, Any]) -> list[Any]:
    from meshkit.backends.base import Pod

    return [Pod(p["name"], p["app"], p["version"], p["deployment"], p["ready"], p["sidecar"], p["service_account"],
                p["namespace"], p["config_version"], p["synced"], p["restarts"], {"ports": p["ports"], "pid": p["pid"]})
            for p in status["pods"]]


def cmd_deploy(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    name = mesh.deploy(args.service, args.version, args.replicas, not args.no_sidecar)
    _print(f"deployment.apps/{name} created")
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    name = _target(args.deployment)
    _mesh(args).scale(name, args.replicas)
    _print(f"deployment.apps/{name} scaled")
    return 0


def cmd_undeploy(args: argparse.Namespace) -> int:
    name = _target(args.deployment)
    _mesh(args).undeploy(name)
    _print(f'deployment.apps "{name}" deleted')
    return 0


cmd_misbehave = _pods_verb(lambda m, a: m.misbehave(a.target), "following requests to / will return a 503")


cmd_behave = _pods_verb(lambda m, a: m.behave(a.target), "following requests to / will return 200")


cmd_delay = _pods_verb(lambda m, a: m.delay(a.target, a.seconds), "requests to / now wait the given delay")


def cmd_kill(args: argparse.Namespace) -> int:
    new = _mesh(args).kill(_target(args.pod))
    _print(f'pod "{args.pod}" deleted; replaced by {new}')
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    command = list(args.command)
    if "--" in command:  # kubectl options may come between the pod and "--" (-c NAME, -n NS, -it)
        cut = command.index("--")
        options = argparse.ArgumentParser(prog="meshkit exec", add_help=False)
        options.add_argument("-c", "--container")
        options.add_argument("-n", "--namespace")
        options.add_argument("-i", "--stdin", action="store_true")
        options.add_argument("-t", "--tty", action="store_true")
        options.parse_args(command[:cut])
        command = command[cut + 1 :]
    if not command or command[0] != "curl":
        raise MeshkitError("exec supports: meshkit exec POD -- curl URL [-H 'Name: value']")
    parser = argparse.ArgumentParser(prog="curl", add_help=False)
    parser.add_argument("url")
    parser.add_argument("-H", dest="header", action="append")
    parser.add_argument("-s", action="store_true")
    curl = parser.parse_args(command[1:])
    status, body = _mesh(args).exec(_target(args.pod), curl.url, _headers(curl.header))
    _print(body.rstrip("\n"))
    if status == 0:
        return 7  # curl: failed to connect
    return 0 if status < 400 else 22  # curl -f's exit code for HTTP errors
