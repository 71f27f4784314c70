"""The ``meshkit`` command: kubectl/istioctl-like verbs over :class:`meshkit.Mesh`.

Example::

    meshkit up
    meshkit apply -f cluster/istiofiles/destination-rule-recommendation-v1-v2.yaml
    meshkit load -n 200 --json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from meshkit.backends.base import registered_backends
from meshkit.backends.choice import remember, resolve
from meshkit.cli.ambient import add_ambient_verbs
from meshkit.cli.config import cmd_analyze, cmd_apply, cmd_delete, cmd_get, cmd_reset
from meshkit.cli.dashboard import add_dashboard_verb
from meshkit.cli.lifecycle import (
    cmd_behave,
    cmd_delay,
    cmd_deploy,
    cmd_down,
    cmd_exec,
    cmd_kill,
    cmd_misbehave,
    cmd_restart,
    cmd_scale,
    cmd_status,
    cmd_undeploy,
    cmd_up,
)
from meshkit.cli.proxy import add_verbs as add_proxy_verbs
from meshkit.cli.security import cmd_certs, cmd_secret, cmd_sniff, cmd_token
from meshkit.cli.telemetry import cmd_curl, cmd_explain, cmd_graph, cmd_load, cmd_logs, cmd_metrics, cmd_traces
from meshkit.cli.waypoint import add_waypoint_verb
from meshkit.cli.workshop import add_class_verb, add_doctor_verb
from meshkit.cli.workshop import add_verbs as add_workshop_verbs
from meshkit.errors import InvalidConfig, MeshkitError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshkit", description="A hands-on Istio lab: a local mesh or real Istio.")
    # no defaults here: meshkit.backends.choice resolves flag > $MESHKIT_* > the home's memory > local
    p.add_argument("--backend", default=None, choices=registered_backends(),
                   help="local, kind or kube (default $MESHKIT_BACKEND, else what this home last ran)")
    p.add_argument("--home", default=None, help="state directory of the local mesh (default $MESHKIT_HOME)")
    p.add_argument("--context", default=None, help="kube context (--backend kube)")
    p.add_argument("-n", "--namespace", default=None, help="namespace (default tutorial)")
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
    up.add_argument("--dataplane", default="sidecar", choices=["sidecar", "ambient"],
                    help="local: ambient runs the sample without sidecars and a ztunnel on the node")
    up.add_argument("--restart-control-plane", action="store_true",
                    help="local: restart the control plane of a running mesh (the pods keep serving)")
    up.add_argument("--reset-state", action="store_true",
                    help="local: set the stored config, deployments and any broken key aside (*.corrupt) and "
                         "start from an empty state")
    verb("down", cmd_down, "stop every process of the mesh, even with its control plane dead or hung")
    verb("restart", cmd_restart, "restart only the local control plane; the pods keep serving and are adopted")
    st = verb("status", cmd_status, "pods, their proxies and config sync")
    st.add_argument("-o", "--output", choices=["table", "json"], default="table")
    ap = verb("apply", cmd_apply, "apply Istio and Kubernetes resources from files, directories or - (stdin)")
    ap.add_argument("-f", "--filename", action="append", required=True)
    de = verb("delete", cmd_delete, "delete resources by KIND NAME, KIND/NAME or -f FILE")
    de.add_argument("kind", nargs="?")
    de.add_argument("name", nargs="?")
    de.add_argument("-f", "--filename", action="append")
    ge = verb("get", cmd_get, "list stored resources (and pods, deployments, services: -l app=...)")
    ge.add_argument("kind", nargs="?")
    ge.add_argument("name", nargs="?")
    ge.add_argument("-o", "--output", choices=["table", "yaml", "json", "wide", "name"], default="table")
    for sp in (ap, de, ge):
        kubectl_namespace(sp)
    for sp in (de, ge):
        sp.add_argument("-l", "--selector", default="", help="label selector, e.g. app=customer,version=v1")
    verb("reset", cmd_reset, "remove every Istio resource except the ingress gateway's")
    an = verb("analyze", cmd_analyze, "istioctl analyze for the mesh (and files)")
    an.add_argument("-f", "--filename", action="append")
    an.add_argument("--use-kube", default="true", choices=["true", "false"],
                    help="false: analyze the files alone (their own Services, Pods and Namespaces)")
    an.add_argument("-A", "--all-namespaces", action="store_true")
    kubectl_namespace(an)
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
    kubectl_namespace(sc)
    ud = verb("undeploy", cmd_undeploy, "delete a deployment (and its Service with the last one of a service)")
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
    ex.add_argument("-c", "--container", default="app", help="accepted as kubectl does; curl runs in the pod")
    ex.add_argument("-i", "--stdin", action="store_true", help=argparse.SUPPRESS)
    ex.add_argument("-t", "--tty", action="store_true", help=argparse.SUPPRESS)
    kubectl_namespace(ex)
    ex.add_argument("command", nargs=argparse.REMAINDER)
    lg = verb("logs", cmd_logs, "a pod's app log, or its proxy's access log with -c istio-proxy")
    lg.add_argument("pod", nargs="?")
    lg.add_argument("-c", "--container", default="app")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C stops)")
    lg.add_argument("-l", "--selector", default="")
    kubectl_namespace(lg)
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
    add_proxy_verbs(sub)
    add_ambient_verbs(sub)
    add_waypoint_verb(sub)
    add_workshop_verbs(sub)
    add_class_verb(sub)
    add_doctor_verb(sub)
    add_dashboard_verb(sub)
    _accept_after_the_verb(sub)
    return p


def kubectl_namespace(sp: argparse.ArgumentParser) -> None:
    """kubectl's ``-n/--namespace`` after the verb (unset: the top-level --namespace stays)."""
    sp.add_argument("-n", "--namespace", default=argparse.SUPPRESS, help="namespace (default tutorial)")


def _accept_after_the_verb(sub: argparse._SubParsersAction) -> None:
    """``--backend``, ``--home``, ``--context`` and ``--namespace`` after the verb as well as before it
    (``meshkit up --backend kind --dry-run``). SUPPRESS keeps a value given before the verb when the
    same option is not repeated after it."""
    for sp in {id(sp): sp for sp in sub.choices.values()}.values():
        for option, extra in (("--backend", {"choices": registered_backends()}), ("--home", {}),
                              ("--context", {}), ("--namespace", {})):
            if option not in sp._option_string_actions:
                sp.add_argument(option, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **extra)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "normalise", None) is not None:
        args.normalise(args)
    choice = resolve(args.backend, args.context, args.namespace, args.home)
    args.backend, args.context, args.namespace = choice.backend, choice.context, choice.namespace
    try:
        code: int = args.func(args)
        if args.verb == "up" and code == 0 and not getattr(args, "dry_run", False):
            remember(choice)
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
