"""Run one sample service standalone, as in its container image.

Example::

    python -m meshkit.sample --service recommendation --version v2 --port 8080
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket

from meshkit.http1 import serve
from meshkit.sample.app import AppSpec, SampleApp


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m meshkit.sample", description=__doc__)
    parser.add_argument("--service", required=True, choices=["customer", "preference", "recommendation"])
    parser.add_argument("--version", default="v1")
    parser.add_argument("--port", type=int, default=8080)
    # in a container the app must accept the sidecar's traffic on the pod IP; locally keep loopback
    parser.add_argument("--host", default=os.environ.get("MESHKIT_SAMPLE_HOST", "127.0.0.1"))
    parser.add_argument("--upstream", default="", help="HOST:PORT to send every outbound call to (a proxy)")
    args = parser.parse_args(argv)
    pod = os.environ.get("HOSTNAME") or socket.gethostname()
    outbound = None
    if args.upstream:
        host, _, port = args.upstream.rpartition(":")
        outbound = (host, int(port))
    app = SampleApp(AppSpec(args.service, args.version, pod=pod, outbound=outbound, port=args.port))

    async def run() -> None:
        server = await serve(app.handle, args.host, args.port)
        async with server:
            await server.serve_forever()

    try:
        import uvloop

        uvloop.run(run())
    except ImportError:
        asyncio.run(run())


if __name__ == "__main__":
    main()
