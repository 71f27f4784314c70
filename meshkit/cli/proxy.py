"""istioctl's data-plane verbs: proxy-status, proxy-config, x describe pod (all through ``Mesh``)."""

from __future__ import annotations

import argparse

from meshkit.cli.common import _mesh, _print
from meshkit.errors import MeshkitError


def cmd_proxy_status(args: argparse.Namespace) -> int:
    from meshkit import proxyconfig as pc

    mesh = _mesh(args)
    if args.pod:
        _print(mesh.proxy_status(args.pod).rstrip("\n"))
        return 0
    rows = mesh.proxy_status(verbose=args.verbose > 0)
    if isinstance(rows, str):  # the real istioctl's own table
        _print(rows.rstrip("\n"))
        return 0
    columns = pc.STATUS_VERBOSE_COLUMNS if args.verbose > 0 else pc.STATUS_COLUMNS
    _print(pc.render(rows, columns, 5).rstrip("\n"))
    return 0


def cmd_proxy_config(args: argparse.Namespace) -> int:
    filters = {"fqdn": args.fqdn, "port": args.port, "subset": args.subset, "direction": args.direction,
               "name": args.name, "cluster": args.cluster, "address": args.address, "status": args.status}
    text = _mesh(args).proxy_config_text(args.pod, args.type, args.output, **filters)
    _print(text.rstrip("\n"))
    return 0


def cmd_x(args: argparse.Namespace) -> int:
    if args.what != "describe" or args.kind != "pod":
        raise MeshkitError("meshkit x supports: meshkit x describe pod POD")
    _print(_mesh(args).describe_pod(args.pod).rstrip("\n"))
    return 0


def add_verbs(sub: argparse._SubParsersAction) -> None:
    """Register the verbs (and istioctl's short aliases ``ps`` and ``pc``) on the main parser."""
    ps = sub.add_parser("proxy-status", aliases=["ps"], help="istioctl proxy-status: config sync of every proxy",
                        description="istioctl proxy-status: config sync of every proxy, or istiod's view "
                                    "against the proxy's for one pod")
    ps.add_argument("pod", nargs="?")
    ps.add_argument("-v", "--verbose", type=int, default=0, help="1: per-type SYNCED/STALE/NOT SENT")
    ps.set_defaults(func=cmd_proxy_status)
    pc = sub.add_parser("proxy-config", aliases=["pc"], help="istioctl proxy-config: a proxy's Envoy config",
                        description="istioctl proxy-config TYPE POD: clusters, listeners, routes, endpoints, "
                                    "secret or all of a pod's Envoy config")
    pc.add_argument("type", choices=["clusters", "cluster", "c", "listeners", "listener", "l", "routes", "route",
                                     "r", "endpoints", "endpoint", "ep", "secret", "s", "all", "bootstrap", "b"])
    pc.add_argument("pod")
    pc.add_argument("--fqdn", default="")
    pc.add_argument("--port", type=int, default=0)
    pc.add_argument("--subset", default="")
    pc.add_argument("--direction", default="", choices=["", "inbound", "outbound"])
    pc.add_argument("--name", default="")
    pc.add_argument("--cluster", default="")
    pc.add_argument("--address", default="")
    pc.add_argument("--status", default="")
    pc.add_argument("-o", "--output", default="short", choices=["short", "json", "yaml"])
    pc.set_defaults(func=cmd_proxy_config, normalise=_normalise_type)
    x = sub.add_parser("x", help="experimental istioctl verbs: x describe pod POD",
                       description="istioctl x describe pod POD: service, subsets, traffic policy, routes")
    x.add_argument("what", choices=["describe"])
    x.add_argument("kind", choices=["pod"])
    x.add_argument("pod")
    x.set_defaults(func=cmd_x)


_ALIASES = {"cluster": "clusters", "c": "clusters", "listener": "listeners", "l": "listeners", "route": "routes",
            "r": "routes", "endpoint": "endpoints", "ep": "endpoints", "s": "secret", "b": "bootstrap"}


def _normalise_type(args: argparse.Namespace) -> None:
    args.type = _ALIASES.get(args.type, args.type)
