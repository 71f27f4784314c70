"""``meshkit waypoint apply|list|status|delete``: istioctl waypoint's verbs, flags and output."""

from __future__ import annotations

import argparse
import sys

from meshkit.cli.common import _mesh, _print


def cmd_waypoint(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    action = args.waypoint_verb
    if action == "apply":
        for line in mesh.waypoint_apply(args.namespace, args.name, args.for_, args.enroll_namespace,
                                        args.overwrite, wait=args.wait):
            _print(line)
    elif action == "list":
        sys.stdout.write(mesh.waypoint_list(args.namespace, args.all_namespaces))
    elif action == "status":
        sys.stdout.write(mesh.waypoint_status(None, args.namespace))
    else:
        names = args.names or [args.name]
        for name in names:
            for line in mesh.waypoint_delete(name, args.namespace):
                _print(line)
    return 0


def add_waypoint_verb(sub: argparse._SubParsersAction) -> None:
    wp = sub.add_parser("waypoint", help="istioctl waypoint: apply, list, status, delete waypoints (ambient L7)",
                        description="istioctl waypoint with istioctl's flags and output")
    verbs = wp.add_subparsers(dest="waypoint_verb", required=True, metavar="apply|list|status|delete")

    def verb(name: str, help_: str) -> argparse.ArgumentParser:
        sp = verbs.add_parser(name, help=help_, description=help_)
        sp.add_argument("-n", "--namespace", default=argparse.SUPPRESS, help="namespace (default tutorial)")
        sp.add_argument("--name", default="waypoint", help="name of the waypoint (default waypoint)")
        sp.set_defaults(func=cmd_waypoint)
        return sp

    ap = verb("apply", "apply a waypoint (a Gateway of class istio-waypoint); with --wait, until it is programmed")
    ap.add_argument("--for", dest="for_", default=None, help="traffic type: service, workload, all or none")
    ap.add_argument("--enroll-namespace", action="store_true", help="label the namespace with the waypoint name")
    ap.add_argument("--overwrite", action="store_true", help="overwrite the namespace's enrolled waypoint")
    ap.add_argument("-w", "--wait", action="store_true", help="wait until the waypoint is programmed (ready)")
    li = verb("list", "list the waypoints: NAME REVISION TRAFFIC TYPE PROGRAMMED")
    li.add_argument("-A", "--all-namespaces", action="store_true", help="in every namespace")
    verb("status", "the waypoints' Programmed condition: NAME STATUS TYPE REASON MESSAGE")
    de = verb("delete", "delete waypoints by name")
    de.add_argument("names", nargs="*", help="waypoint names (default: --name)")
