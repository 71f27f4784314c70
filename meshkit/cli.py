"""The ``meshkit`` command: kubectl/istioctl-like verbs over :class:`meshkit.Mesh`.

Example::

    meshkit up
    meshkit apply -f cluster/istiofiles/destination-rule-recommendation-v1-v2.yaml
    meshkit load -n 200 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from meshkit.backends.base import registered_backends
from meshkit.errors import InvalidConfig, MeshkitError
from meshkit.mesh import Mesh, load_resources


def _backend_options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if args.backend == "local" and args.home:
        opts["home"] = args.home
    if args.backend == "kube":
        opts.update(context=args.context, namespace=args.namespace)
    return opts


def _mesh(args: argparse.Namespace) -> Mesh:
    from meshkit.backends.base import get_backend
    from meshkit.errors import MeshNotRunning

    backend = get_backend(args.backend)(**_backend_options(args))
    if not backend.is_running():
        raise MeshNotRunning(str(getattr(backend, "home", "")))
    return Mesh(backend)


def _print(line: str = "") -> None:
    print(line, flush=True)


# verbs ----------------------------------------------------------------------------------------------
def cmd_up(args: argparse.Namespace) -> int:
    from meshkit.backends.base import get_backend

    if args.dry_run:
        if args.backend == "local":
            raise MeshkitError("--dry-run prints the install plan of the kind backend; use --backend kind")
        kind_opts = _backend_options(args)
        if args.gateway_port:
            kind_opts["host_port"] = args.gateway_port
        get_backend(args.backend)(**kind_opts).up(profile=args.profile, dry_run=True)
        return 0
    started = time.monotonic()
    backend = get_backend(args.backend)(**_backend_options(args))
    opts: dict[str, Any] = {}
    if args.backend == "local":
        opts = {"outbound": args.outbound, "gateway_port": args.gateway_port}
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


def cmd_status(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    pods = mesh.pods()
    if args.output == "json":
        _print(json.dumps({"pods": [p.to_dict() for p in pods], "gateway": mesh.backend.gateway_url()}, indent=2))
        return 0
    rows = [("NAME", "READY", "RESTARTS", "APP", "VERSION", "CONFIG", "SYNC")]
    for p in pods:
        containers = 2 if p.sidecar and p.app != "istio-ingressgateway" else 1
        ready = f"{containers if p.ready else 0}/{containers}"
        sync = "SYNCED" if p.synced else "STALE"
        rows.append((p.name, ready, str(p.restarts), p.app, p.version or "-", f"v{p.config_version}", sync))
    _table(rows)
    _print(f"\ningress gateway: {mesh.backend.gateway_url()}")
    return 0


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        _print("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _sources(files: list[str]) -> list[Any]:
    out: list[Any] = []
    for f in files:
        out.append(sys.stdin.read() if f == "-" else Path(f))
    return out


def cmd_apply(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    results = mesh.apply(*_sources(args.filename))
    for w in mesh.warnings:
        print(w, file=sys.stderr)
    for r in results:
        _print(str(r))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    if args.filename:
        resources, _ = load_resources(_sources(args.filename))
        for res in resources:
            _print(str(mesh.backend.delete(res["kind"], res["metadata"]["name"])))
        return 0
    if not args.kind or not args.name:
        raise MeshkitError("delete needs KIND NAME or -f FILE")
    _print(str(mesh.delete(args.kind, args.name)))
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    items = mesh.get(args.kind, args.name)
    if args.name and not items:
        raise MeshkitError(f'{args.kind} "{args.name}" not found')
    if args.output == "json":
        _print(json.dumps(items if not args.name else items[0], indent=2))
    elif args.output == "yaml":
        import yaml

        _print(yaml.safe_dump_all(items, sort_keys=False).rstrip())
    else:
        rows = [("KIND", "NAME", "AGE")]
        for res in items:
            rows.append((res["kind"], res["metadata"]["name"], res["metadata"].get("creationTimestamp", "")))
        if len(rows) == 1:
            _print("No resources found in tutorial namespace.")
        else:
            _table(rows)
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    for r in mesh.reset():
        _print(str(r))
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from meshkit.resources import analyze

    mesh = _mesh(args)
    resources = mesh.get()
    origins = None
    if args.filename:
        from meshkit.resources import load_paths, validate_documents

        report = validate_documents(load_paths([str(s) for s in args.filename]), profile=mesh.profile)
        report.raise_for_errors()
        extra, origins = report.resources, report.origins
        keys = {(r["kind"], r["metadata"]["name"]) for r in extra}
        resources = [r for r in resources if (r["kind"], r["metadata"]["name"]) not in keys] + extra
    pods = []
    for p in mesh.pods():
        labels = {"app": p.app, "istio": "ingressgateway"} if p.app == "istio-ingressgateway" else {
            "app": p.app, "version": p.version}
        pods.append({"name": p.name, "labels": labels, "namespace": p.namespace, "sidecar": p.sidecar})
    services = {s: {"http": 8080} for s in ("customer", "preference", "recommendation")}
    problems = analyze(resources, services, pods, origins=origins, profile=mesh.profile)
    for problem in problems:
        _print(problem.analyze_line())
    if not problems:
        _print("✔ No validation issues found when analyzing namespace: tutorial.")
    return 1 if any(p.level == "Error" for p in problems) else 0


def _headers(values: list[str] | None) -> dict[str, str]:
    out = {}
    for h in values or []:
        name, sep, value = h.partition(":")
        if not sep:
            raise MeshkitError(f'bad header "{h}": use -H "Name: value"')
        out[name.strip().lower()] = value.strip()
    return out


def cmd_curl(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    headers = _headers(args.header)
    if args.user_agent:
        headers["user-agent"] = args.user_agent
    cacert = Path(args.cacert).read_text() if args.cacert else None
    for i in range(args.n):
        _, body = mesh.curl(args.path, headers, https=args.https, cacert=cacert)
        _print(body)
        if args.interval and i + 1 < args.n:
            time.sleep(args.interval)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    if args.n is None and args.duration is None:
        args.n = 100
    result = mesh.load(args.n, args.duration, args.concurrency, args.qps, _headers(args.header), args.path)
    summary = result.summary()
    if args.json:
        _print(json.dumps(summary))
        return 0
    lat = summary["latency_ms"]
    _print(f"{summary['requests']} requests in {summary['duration_s']}s ({summary['rps']} req/s)")
    _print("codes:    " + ", ".join(f"{k}: {v}" for k, v in sorted(summary["codes"].items())))
    _print("versions: " + ", ".join(f"{k}: {v}" for k, v in sorted(summary["versions"].items())))
    _print("flags:    " + ", ".join(f"{k}: {v}" for k, v in sorted(summary["flags"].items())))
    _print(f"latency:  p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms, max {lat['max']} ms")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    name = mesh.deploy(args.service, args.version, args.replicas, not args.no_sidecar)
    _print(f"deployment.apps/{name} created")
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    _mesh(args).scale(args.deployment, args.replicas)
    _print(f"deployment.apps/{args.deployment} scaled")
    return 0


def cmd_undeploy(args: argparse.Namespace) -> int:
    _mesh(args).undeploy(args.deployment)
    _print(f'deployment.apps "{args.deployment}" deleted')
    return 0


def _pods_verb(action: Callable[[Mesh, argparse.Namespace], list[str]], message: str) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        for pod in action(_mesh(args), args):
            _print(f"{pod}: {message}")
        return 0

    return run


cmd_misbehave = _pods_verb(lambda m, a: m.misbehave(a.target), "following requests to / will return a 503")
cmd_behave = _pods_verb(lambda m, a: m.behave(a.target), "following requests to / will return 200")
cmd_delay = _pods_verb(lambda m, a: m.delay(a.target, a.seconds), "requests to / now wait the given delay")


def cmd_kill(args: argparse.Namespace) -> int:
    new = _mesh(args).kill(args.pod)
    _print(f'pod "{args.pod}" deleted; replaced by {new}')
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    command = [c for c in args.command if c != "--"]
    if not command or command[0] != "curl":
        raise MeshkitError("exec supports: meshkit exec POD -- curl URL [-H 'Name: value']")
    parser = argparse.ArgumentParser(prog="curl", add_help=False)
    parser.add_argument("url")
    parser.add_argument("-H", dest="header", action="append")
    parser.add_argument("-s", action="store_true")
    curl = parser.parse_args(command[1:])
    status, body = _mesh(args).exec(args.pod, curl.url, _headers(curl.header))
    _print(body.rstrip("\n"))
    return 0 if status < 400 else 22  # curl -f's exit code for HTTP errors


def cmd_logs(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    if args.container == "istio-proxy":
        for line in mesh.backend.access_log(args.pod):  # type: ignore[attr-defined]
            _print(line)
        return 0
    text = mesh.backend.app_log(args.pod)  # type: ignore[attr-defined]
    _print(text.rstrip("\n"))
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    _print(_mesh(args).metrics(args.pod).rstrip("\n"))
    return 0


def cmd_traces(args: argparse.Namespace) -> int:
    body = _mesh(args).traces(args.service, args.limit)
    if args.output == "json":
        _print(json.dumps(body, indent=2))
        return 0
    for trace in body["data"]:
        spans = sorted(trace["spans"], key=lambda s: s["startTime"])
        root = spans[0]
        services = trace["processes"]
        _print(f"trace {trace['traceID']}  {len(spans)} spans  {root['duration'] / 1000:.2f} ms")
        for span in spans:
            who = services[span["processID"]]["serviceName"]
            offset = (span["startTime"] - root["startTime"]) / 1000
            _print(f"  +{offset:7.2f} ms {span['duration'] / 1000:7.2f} ms  {who:38s} {span['operationName']}")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from meshkit.telemetry.graph import format_graph

    g = _mesh(args).graph(args.window)
    _print(json.dumps(g, indent=2) if args.output == "json" else format_graph(g))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    lines = _mesh(args).explain(args.limit)
    for line in lines:
        _print(line)
    if not lines:
        _print("no failed request in the recent telemetry")
    return 0


def cmd_certs(args: argparse.Namespace) -> int:
    secrets = _mesh(args).certs(args.pod)
    if args.output == "json":
        _print(json.dumps(secrets, indent=2))
        return 0
    rows = [("RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER", "NOT BEFORE")]
    for name, s in secrets.items():
        rows.append((name, str(s.get("type", "")), str(s.get("status", "")), str(s.get("valid_cert", "")),
                     str(s.get("serial_number", "")), str(s.get("not_after", "")), str(s.get("not_before", ""))))
    _table(rows)
    default = secrets.get("default", {})
    _print(f"\nidentity: {default.get('spiffe_id', '-')}   issuer: {default.get('issuer', '-')}")
    return 0


def cmd_sniff(args: argparse.Namespace) -> int:
    from meshkit.backends.local.sniff import render

    views = _mesh(args).sniff(args.target, args.requests, args.seconds)
    _print(json.dumps(views, indent=2) if args.output == "json" else render(views))
    return 0


def cmd_secret(args: argparse.Namespace) -> int:
    if args.self_signed:
        from meshkit.backends.local.tls import make_self_signed

        cert, key = make_self_signed(args.self_signed)
        out = Path(f"{args.name}.crt")
        out.write_text(cert)
        _print(f"self-signed certificate for {', '.join(args.self_signed)} written to {out} (trust it with --cacert)")
    elif args.cert and args.key:
        cert, key = Path(args.cert).read_text(), Path(args.key).read_text()
    else:
        raise MeshkitError("secret tls needs --cert FILE --key FILE, or --self-signed HOST")
    _mesh(args).create_tls_secret(args.name, cert, key)
    _print(f"secret/{args.name} created")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    claims: dict[str, Any] = {}
    for item in args.claim or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise MeshkitError(f'bad claim "{item}": use --claim name=value')
        claims[key] = value
    _print(_mesh(args).token(args.subject, args.ttl, **claims))
    return 0


def cmd_lab(args: argparse.Namespace) -> int:
    labs = Path(__file__).resolve().parent.parent / "labs"
    if not labs.is_dir():
        labs = Path.cwd() / "labs"
    if args.reset:
        from meshkit.backends.base import get_backend

        backend = get_backend("local")(**_backend_options(args))
        if backend.is_running():
            backend.reset()
            _print("lab reset: every Istio resource except the ingress gateway's removed")
        return 0
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={labs.parent}", "--ServerApp.ip=127.0.0.1",
           "--LabApp.default_url=/lab/tree/labs/00_setup.ipynb"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    os.execv(sys.executable, cmd)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshkit", description="A hands-on Istio lab: a local mesh or real Istio.")
    p.add_argument("--backend", default=os.environ.get("MESHKIT_BACKEND", "local"), choices=registered_backends())
    p.add_argument("--home", default=None, help="state directory of the local mesh (default $MESHKIT_HOME)")
    p.add_argument("--context", default=None, help="kube context (--backend kube)")
    p.add_argument("--namespace", default="tutorial", help="namespace (--backend kube)")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(func=func)
        return sp

    up = verb("up", cmd_up, "start the mesh and deploy the sample (idempotent)")
    up.add_argument("--profile", default="current", choices=["current", "tutorial"])
    up.add_argument("--outbound", default="REGISTRY_ONLY", choices=["REGISTRY_ONLY", "ALLOW_ANY"])
    up.add_argument("--gateway-port", type=int, default=0)
    up.add_argument("--dry-run", action="store_true", help="kind backend: print the install plan only")
    verb("down", cmd_down, "stop everything the mesh started")
    st = verb("status", cmd_status, "pods, their proxies and config sync")
    st.add_argument("-o", "--output", choices=["table", "json"], default="table")
    ap = verb("apply", cmd_apply, "apply Istio resources from files, directories or - (stdin)")
    ap.add_argument("-f", "--filename", action="append", required=True)
    de = verb("delete", cmd_delete, "delete resources by KIND NAME or -f FILE")
    de.add_argument("kind", nargs="?")
    de.add_argument("name", nargs="?")
    de.add_argument("-f", "--filename", action="append")
    ge = verb("get", cmd_get, "list stored resources")
    ge.add_argument("kind", nargs="?")
    ge.add_argument("name", nargs="?")
    ge.add_argument("-o", "--output", choices=["table", "yaml", "json"], default="table")
    verb("reset", cmd_reset, "remove every Istio resource except the ingress gateway's")
    an = verb("analyze", cmd_analyze, "istioctl analyze for the mesh (and files)")
    an.add_argument("-f", "--filename", action="append")
    cu = verb("curl", cmd_curl, "requests through the ingress gateway")
    cu.add_argument("path", nargs="?", default="/customer")
    cu.add_argument("-H", "--header", action="append")
    cu.add_argument("-A", "--user-agent")
    cu.add_argument("-n", type=int, default=1)
    cu.add_argument("--interval", type=float, default=0.0)
    cu.add_argument("--https", action="store_true", help="use the gateway's HTTPS listener")
    cu.add_argument("--cacert", help="PEM file of the certificate to trust (with --https)")
    lo = verb("load", cmd_load, "generate load through the gateway")
    lo.add_argument("-n", type=int)
    lo.add_argument("-d", "--duration", type=float)
    lo.add_argument("-c", "--concurrency", type=int, default=4)
    lo.add_argument("--qps", type=float)
    lo.add_argument("-H", "--header", action="append")
    lo.add_argument("--path", default="/customer")
    lo.add_argument("--json", action="store_true")
    dp = verb("deploy", cmd_deploy, "deploy SERVICE VERSION")
    dp.add_argument("service")
    dp.add_argument("version", nargs="?", default="v1")
    dp.add_argument("--replicas", type=int, default=1)
    dp.add_argument("--no-sidecar", action="store_true")
    sc = verb("scale", cmd_scale, "scale a deployment")
    sc.add_argument("deployment")
    sc.add_argument("--replicas", type=int, required=True)
    ud = verb("undeploy", cmd_undeploy, "delete a deployment")
    ud.add_argument("deployment")
    for name, func, help_ in (("misbehave", cmd_misbehave, "make a pod or deployment answer 503"),
                              ("behave", cmd_behave, "make a pod or deployment answer 200 again")):
        sp = verb(name, func, help_)
        sp.add_argument("target")
    dl = verb("delay", cmd_delay, "make a pod or deployment answer after SECONDS (0 clears)")
    dl.add_argument("target")
    dl.add_argument("seconds", type=float)
    ki = verb("kill", cmd_kill, "kill a pod (its deployment replaces it)")
    ki.add_argument("pod")
    ex = verb("exec", cmd_exec, "run curl inside a pod, through its sidecar")
    ex.add_argument("pod")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    lg = verb("logs", cmd_logs, "a pod's app log, or its proxy's access log with -c istio-proxy")
    lg.add_argument("pod")
    lg.add_argument("-c", "--container", default="app")
    me = verb("metrics", cmd_metrics, "Istio metrics of every proxy (Prometheus text format)")
    me.add_argument("--pod")
    tr = verb("traces", cmd_traces, "recent traces (Jaeger query-API shape with -o json)")
    tr.add_argument("--service")
    tr.add_argument("--limit", type=int, default=5)
    tr.add_argument("-o", "--output", choices=["text", "json"], default="text")
    gr = verb("graph", cmd_graph, "the service graph of the last minute, as Kiali derives it")
    gr.add_argument("--window", type=float, default=60.0)
    gr.add_argument("-o", "--output", choices=["text", "json"], default="text")
    xp = verb("explain", cmd_explain, "why did the last requests fail?")
    xp.add_argument("--limit", type=int, default=10)
    ce = verb("certs", cmd_certs, "a pod's workload certificate (like istioctl proxy-config secret)")
    ce.add_argument("pod")
    ce.add_argument("-o", "--output", choices=["table", "json"], default="table")
    sn = verb("sniff", cmd_sniff, "show the bytes that cross the wire to a pod (plaintext vs mTLS)")
    sn.add_argument("target")
    sn.add_argument("--requests", type=int, default=3)
    sn.add_argument("--seconds", type=float, default=3.0)
    sn.add_argument("-o", "--output", choices=["text", "json"], default="text")
    se = verb("secret", cmd_secret, "create a TLS secret for a Gateway's credentialName")
    se.add_argument("type", choices=["tls"])
    se.add_argument("name")
    se.add_argument("--cert")
    se.add_argument("--key")
    se.add_argument("--self-signed", nargs="+", metavar="HOST", help="mint a self-signed certificate for HOST")
    to = verb("token", cmd_token, "mint a test JWT from the mesh's local issuer")
    to.add_argument("--claim", action="append", help="name=value (repeatable)")
    to.add_argument("--subject")
    to.add_argument("--ttl", type=float, default=3600)
    la = verb("lab", cmd_lab, "open JupyterLab on the labs")
    la.add_argument("--reset", action="store_true", help="remove learners' leftovers from the running mesh")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except InvalidConfig as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except MeshkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
