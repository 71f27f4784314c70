"""Micro-benchmark of the per-request HTTP/1.1 path every proxy pass uses: ``python -m benchmarks.http1_path``.

One event loop, one keep-alive connection over loopback, an echo handler: sequential round trips
of a small GET and of a 16 KiB POST, then the cost of a header ``regex`` match (RE2) per call.
Prints microseconds per round trip, wall clock and CPU (client and server share the process, so
CPU time is the whole cost of one request on both sides, and moves less than wall time when other
work shares the machine); medians of rounds. Run it before and after a change to the HTTP stack,
on the same machine, and compare.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

from meshkit.backends.local.proxy.matching import string_matcher
from meshkit.http1 import Request, Response, connect, serve

UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Safari/605.1.15"


async def _echo(req: Request) -> Response:
    return Response(200, {"content-type": "text/plain"}, b"ok\n")


async def _rounds(n: int, rounds: int, body: bytes) -> tuple[list[float], list[float]]:
    server = await serve(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = await connect("127.0.0.1", port)
    headers = {"host": "customer:8080", "user-agent": UA, "x-request-id": "0" * 36}
    method = "POST" if body else "GET"
    wall, cpu = [], []
    for _ in range(rounds):
        started, started_cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            resp = await conn.roundtrip(Request(method, "/", dict(headers), body))
            assert resp.status == 200
        wall.append((time.perf_counter() - started) / n * 1e6)
        cpu.append((time.process_time() - started_cpu) / n * 1e6)
    conn.close()
    server.close()
    return wall, cpu


def regex_cost(n: int = 200_000) -> float:
    """Microseconds per ``regex: .*Safari.*`` header match."""
    match = string_matcher({"regex": ".*Safari.*"})
    started = time.perf_counter()
    for _ in range(n):
        match(UA)
    return (time.perf_counter() - started) / n * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=2000, help="round trips per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    run: Callable[[Coroutine[Any, Any, tuple[list[float], list[float]]]], tuple[list[float], list[float]]]
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    for label, body in (("GET round trip", b""), ("POST 16 KiB round trip", b"x" * 16384)):
        wall, cpu = run(_rounds(args.n, args.rounds, body))
        print(f"{label:24s} {statistics.median(wall):7.1f} µs wall  {statistics.median(cpu):7.1f} µs CPU"
              f"  (CPU per round: {', '.join(f'{v:.0f}' for v in cpu)})")
    print(f"{'header regex match':24s} {regex_cost():7.2f} µs")


if __name__ == "__main__":
    main()
