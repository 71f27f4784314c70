"""``meshkit dashboard``: the read-only web view of the mesh's telemetry (see :mod:`meshkit.dashboard`).

Example::

    meshkit dashboard --print-url            # the link through jupyter-server-proxy (hub, Binder, local)
    meshkit dashboard                        # serve on 127.0.0.1, a token in the printed URL
    meshkit dashboard --unix-socket DIR/socket   # what the "Mesh dashboard" launcher runs
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from meshkit.cli.common import _mesh, _print
from meshkit.errors import MeshkitError


def cmd_dashboard(args: argparse.Namespace) -> int:
    from meshkit.backends.choice import default_home
    from meshkit.dashboard import Dashboard
    from meshkit.serverproxy import DASHBOARD, links, proxied_url

    if args.print_url:
        if args.backend == "local":
            _print(proxied_url(DASHBOARD))
        else:
            for title, url in links(args.backend).items():
                _print(f"{title}: {url}")
        return 0
    if args.unix_socket and args.port is not None:
        raise MeshkitError("dashboard: --unix-socket and --port exclude each other")
    if args.port is not None and not 0 <= args.port <= 65535:
        raise MeshkitError(f"dashboard: --port {args.port}: must be 0-65535 (0: a free port)")
    home = str(default_home(args.home)) if args.backend == "local" else f"{args.backend} {args.context or ''}".strip()
    server = Dashboard(lambda: _mesh(args), unix_socket=args.unix_socket, port=args.port, home=home,
                       verbose=args.verbose)
    _print(f"mesh dashboard on {server.url}" if args.unix_socket else f"mesh dashboard: {server.url}")

    def stop(*_: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


def add_dashboard_verb(sub: argparse._SubParsersAction) -> None:
    da = sub.add_parser("dashboard", help="a read-only web view of the mesh's telemetry (graph, traffic, traces, "
                        "proxies)", description="serve the mesh dashboard (the Mesh dashboard launcher runs it on a "
                        "Unix socket), or print the browser link to it with --print-url")
    da.add_argument("--unix-socket", metavar="PATH", help="listen on this Unix socket; its directory must be "
                    "yours alone (mode 0700)")
    da.add_argument("--port", type=int, help="listen on 127.0.0.1:PORT (default: a free port), token required")
    da.add_argument("--print-url", action="store_true",
                    help="print the link through jupyter-server-proxy, from $JUPYTERHUB_SERVICE_PREFIX")
    da.add_argument("-v", "--verbose", action="store_true", help="log every request to stderr")
    da.set_defaults(func=cmd_dashboard)
