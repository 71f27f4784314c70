"""A large download through the ingress gateway: ``python -m benchmarks.download [--mb 256]``.

``GET /customer/bytes?n=N`` goes gateway → customer → preference → recommendation, which makes
the body a piece at a time (never whole in memory); every proxy on the way passes it on as it
arrives. A process of its own reads it and hashes it, while another client sends steady GETs.
Printed: the download's throughput through the mesh and, in the same run, through the same three
apps wired directly (no proxy: the baseline); every pod's proportional memory (PSS) before and at
its peak and the CPU each used meanwhile; the other client's p50/p99 before and during the
download (at least 200 requests each: the download is repeated until the client has them), with
the load average, on a mesh whose pods pace bulk transfers and on one whose pods do not (``--pacing``,
as for the upload). ``--slow`` reads at a capped rate instead, to show back-pressure: the proxies'
memory stays put while the reader lags.

Example::

    from benchmarks.download import download_route, measure_download
    mesh.apply(download_route())
    figures = measure_download(mesh, megabytes=128)
    figures["digest_ok"], figures["pss_peak_mb"]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from typing import Any
from urllib.parse import urlsplit

import meshkit
from benchmarks.upload import bulk_pacing, compare_pacing, pacing_modes, report_steady, while_steady
from meshkit import Mesh
from meshkit.sample.app import pattern_digest
from meshkit.sample.ingress import gateway_customer

# the downloader runs in a process of its own, so the steady client's timings are the mesh's
_DOWNLOADER = """
import hashlib, http.client, json, sys, time
READ = 256 * 1024
host, port, path, rate = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
conn = http.client.HTTPConnection(host, port, timeout=300)
conn.connect()
began, started = time.time(), time.perf_counter()
conn.request("GET", path)
resp = conn.getresponse()
digest, got, error = hashlib.sha256(), 0, ""
try:
    while chunk := resp.read(READ):
        digest.update(chunk)
        got += len(chunk)
        if rate:
            time.sleep(max(0.0, got / rate - (time.perf_counter() - started)))
except Exception as exc:
    error = type(exc).__name__ + ": " + str(exc)
print(json.dumps({"status": resp.status, "bytes": got, "digest": digest.hexdigest(), "error": error,
                  "seconds": time.perf_counter() - started, "window": [began, time.time()]}))
"""


def download_route(ns: str = "tutorial") -> dict[str, Any]:
    """The tutorial's gateway VirtualService with a first rule that sends ``/customer/bytes`` to
    customer's ``/bytes`` (the tutorial's own rule rewrites ``/customer`` to ``/``)."""
    vs = gateway_customer(ns)[1]
    rules = vs["spec"]["http"]
    download = {"match": [{"uri": {"prefix": "/customer/bytes"}}], "rewrite": {"uri": "/bytes"},
                "route": rules[0]["route"]}
    vs["spec"]["http"] = [download, *rules]
    return vs


def download(host: str, port: int, path: str, rate: float = 0.0) -> dict[str, Any]:
    """GET ``path`` from another process, reading at most ``rate`` bytes/s (0: as fast as it can)."""
    done = subprocess.run([sys.executable, "-c", _DOWNLOADER, host, str(port), path, str(rate)],
                          capture_output=True, text=True, timeout=600)
    try:
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"status": 0, "bytes": 0, "digest": "", "error": done.stderr[-500:], "seconds": 0.0}
    return result


def measure_download(mesh: Mesh, megabytes: int = 256, rate: float = 20.0, baseline_s: float = 3.0,
                     read_rate: float = 0.0, path: str = "/customer", min_samples: int = 0) -> dict[str, Any]:
    """Download ``megabytes`` through the gateway (``download_route`` applied) while a steady
    client GETs ``path``; the figures (see :func:`benchmarks.upload.while_steady`)."""
    url = urlsplit(mesh.backend.gateway_url())
    host, port = url.hostname or "127.0.0.1", int(url.port or 80)
    size = megabytes * 2**20

    def once() -> dict[str, Any]:
        got = download(host, port, f"/customer/bytes?n={size}", read_rate)
        seconds = got["seconds"] or 0.0
        return {"megabytes": megabytes, "status": got["status"], "bytes": got["bytes"],
                "digest_ok": got["digest"] == pattern_digest(size), "error": got["error"], "seconds": seconds,
                "mb_per_s": got["bytes"] / 2**20 / seconds if seconds else 0.0,
                "window": tuple(got.get("window") or (0.0, 0.0))}

    return while_steady(mesh, once, rate, baseline_s, min_samples, path)


def measure_direct(megabytes: int) -> dict[str, Any]:
    """The same download from the same three apps wired directly (no proxy), for the baseline."""
    from benchmarks.__main__ import start_direct_chain

    procs, url = start_direct_chain()
    try:
        parts = urlsplit(url)
        size = megabytes * 2**20
        got = download(parts.hostname or "127.0.0.1", int(parts.port or 80), f"/bytes?n={size}")
        seconds = got["seconds"] or 0.0
        return {"status": got["status"], "digest_ok": got["digest"] == pattern_digest(size), "seconds": seconds,
                "mb_per_s": got["bytes"] / 2**20 / seconds if seconds else 0.0}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def report(figures: dict[str, Any], direct: dict[str, Any] | None = None) -> None:
    error = f" {figures['error']}" if figures["error"] else ""
    print(f"download {figures['megabytes']} MB through the gateway: HTTP {figures['status']}, "
          f"{figures['bytes']} bytes, sha256 {'ok' if figures['digest_ok'] else 'WRONG'} in "
          f"{figures['seconds']:.1f} s ({figures['mb_per_s']:.0f} MB/s){error}")
    if direct is not None:
        print(f"same download from the three apps wired directly: HTTP {direct['status']}, sha256 "
              f"{'ok' if direct['digest_ok'] else 'WRONG'} in {direct['seconds']:.1f} s "
              f"({direct['mb_per_s']:.0f} MB/s)")
    report_steady(figures, "download")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--rate", type=float, default=50.0, help="the other client's requests per second")
    parser.add_argument("--samples", type=int, default=200, help="the other client's requests before and during")
    parser.add_argument("--slow", type=float, default=0.0, help="read at most this many MB/s (back-pressure)")
    parser.add_argument("--pacing", choices=("on", "off", "both"), default="both",
                        help="the pods' bulk pacing (MESHKIT_BULK_PACING); both: a mesh each, compared")
    args = parser.parse_args(argv)
    direct = measure_direct(args.mb) if not args.slow else None
    results: dict[str, dict[str, Any]] = {}
    for mode in pacing_modes(args.pacing):
        with bulk_pacing(mode), tempfile.TemporaryDirectory() as home:
            mesh = meshkit.up(home=home)
            try:
                mesh.apply(download_route())
                time.sleep(1.0)  # the push reaches the gateway
                print(f"-- bulk pacing {mode}")
                results[mode] = measure_download(mesh, args.mb, args.rate, read_rate=args.slow * 2**20,
                                                 min_samples=args.samples)
                report(results[mode], direct)
            finally:
                mesh.backend.down()
    compare_pacing(results, "download")


if __name__ == "__main__":
    main()
