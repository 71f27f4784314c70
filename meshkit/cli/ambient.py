"""Ambient verbs: ``label`` (kubectl label) and ``ztunnel-config`` (istioctl zc)."""

from __future__ import annotations

import argparse
import json

from meshkit.cli.common import _mesh, _print, _table
from meshkit.errors import MeshkitError

KINDS = {"ns": "Namespace", "namespace": "Namespace", "namespaces": "Namespace",
         "pod": "Pod", "pods": "Pod", "po": "Pod", "svc": "Service", "service": "Service", "services": "Service"}


def cmd_label(args: argparse.Namespace) -> int:
    kind_text, _, name = args.target.partition("/")
    if not name:
        kind_text, name = kind_text, (args.pairs.pop(0) if args.pairs else "")
    kind = KINDS.get(kind_text.lower())
    if kind is None or not name:
        raise MeshkitError(f'the server doesn\'t have a resource type "{kind_text}" that meshkit labels '
                           "(namespace, pod)")
    labels: dict[str, str | None] = {}
    for pair in args.pairs:
        if pair.endswith("-") and "=" not in pair:
            labels[pair[:-1]] = None
            continue
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise MeshkitError(f"at least one label update is required; {pair!r} is not key=value or key-")
        labels[key] = value
    if not labels:
        raise MeshkitError("at least one label update is required")
    _mesh(args).label(kind, name, labels)
    _print(f"{ {'Namespace': 'namespace', 'Service': 'service'}.get(kind, 'pod')}/{name} labeled")
    return 0


def cmd_ztunnel_config(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    if args.output == "json" or args.kind == "all":
        dump = mesh.ztunnel_dump()
        from meshkit.ztunnelconfig import KINDS as ZC

        which = ZC.get(args.kind, "")
        _print(json.dumps(dump if which in ("all", "") else dump.get(which, []), indent=2))
        return 0
    namespace = getattr(args, "zc_namespace", None)
    _table(mesh.ztunnel_config(args.kind, namespace))
    return 0


def add_ambient_verbs(sub: argparse._SubParsersAction) -> None:
    la = sub.add_parser("label", help="kubectl label: a namespace's or a pod's labels "
                        "(istio.io/dataplane-mode=ambient moves pods to ambient without a restart)",
                        description="meshkit label namespace/tutorial istio.io/dataplane-mode=ambient")
    la.add_argument("target", help="namespace/NAME or pod/NAME (or KIND NAME)")
    la.add_argument("pairs", nargs="*", help="key=value, or key- to remove")
    la.add_argument("--overwrite", action="store_true", help="accepted as kubectl takes it")
    la.set_defaults(func=cmd_label)
    for name in ("ztunnel-config", "zc"):
        zc = sub.add_parser(name, help="istioctl ztunnel-config: the node ztunnel's workloads, services, "
                            "certificates, policies, connections",
                            description="istioctl ztunnel-config with istioctl's columns")
        zc.add_argument("kind", help="workloads|services|certificates|policies|connections|all")
        zc.add_argument("-o", "--output", choices=["short", "json"], default="short")
        zc.add_argument("--workload-namespace", dest="zc_namespace", default=None)
        zc.set_defaults(func=cmd_ztunnel_config)
