"""A large upload through the ingress gateway: ``python -m benchmarks.upload [--mb 256]``.

A generated body (never a file, never whole in memory) is POSTed through the gateway to the
customer pod while another client sends steady GETs. Printed: the upload's throughput, every
pod's proportional memory (PSS, from /proc) before and at its peak, and the other client's
p50/p99 before the upload and while it runs. Envoy streams bodies with bounded buffers; so does
the local mesh, so memory stays where it was whatever the size of the upload.

Example::

    from benchmarks.upload import measure_upload
    figures = measure_upload(mesh, megabytes=256)
    figures["pss_peak_mb"]        # {"istio-ingressgateway-...": 28.2, ...}
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import meshkit
from benchmarks.proc import pss_mb
from meshkit import Mesh

CHUNK = 64 * 1024


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _body(size: int) -> Iterator[bytes]:
    chunk = b"u" * CHUNK
    for _ in range(size // CHUNK):
        yield chunk


class _Steady:
    """GETs through the gateway at a steady pace on one keep-alive connection; latencies in seconds."""

    def __init__(self, host: str, port: int, path: str, rate: float) -> None:
        self.host, self.port, self.path, self.gap = host, port, path, 1.0 / rate
        self.latencies: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                conn.request("GET", self.path)
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    self.failures += 1
                self.latencies.append(time.perf_counter() - started)
            except (OSError, http.client.HTTPException):
                self.failures += 1
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            self._stop.wait(max(0.0, self.gap - (time.perf_counter() - started)))
        conn.close()

    def take(self) -> list[float]:
        out, self.latencies = self.latencies, []
        return out

    def __enter__(self) -> _Steady:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def measure_upload(mesh: Mesh, megabytes: int = 256, rate: float = 20.0, baseline_s: float = 3.0,
                   path: str = "/customer") -> dict[str, Any]:
    """Upload ``megabytes`` through the gateway while a steady client runs; the figures."""
    url = urlsplit(mesh.backend.gateway_url())
    host, port = url.hostname or "127.0.0.1", int(url.port or 80)
    pids = {p.name: int(p.extra["pid"]) for p in mesh.pods()}
    before = {name: pss_mb(pid) for name, pid in pids.items()}
    peak = dict(before)
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            for name, pid in pids.items():
                peak[name] = max(peak[name], pss_mb(pid))
            sampling.wait(0.05)

    size = megabytes * 2**20
    with _Steady(host, port, path, rate) as steady:
        time.sleep(baseline_s)
        baseline = steady.take()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        conn = http.client.HTTPConnection(host, port, timeout=300)
        conn.request("POST", path, body=_body(size), headers={"content-length": str(size)})
        resp = conn.getresponse()
        reply = resp.read()
        elapsed = time.perf_counter() - started
        conn.close()
        during = steady.take()
        sampling.set()
        sampler.join(5)
        failures = steady.failures
    return {
        "megabytes": megabytes,
        "status": resp.status,
        "reply": reply.decode("utf-8", "replace"),
        "seconds": elapsed,
        "mb_per_s": megabytes / elapsed if elapsed else 0.0,
        "pss_before_mb": before,
        "pss_peak_mb": peak,
        "baseline_latencies": baseline,
        "during_latencies": during,
        "other_failures": failures,
    }


def report(figures: dict[str, Any]) -> None:
    print(f"upload {figures['megabytes']} MB through the gateway: HTTP {figures['status']} in "
          f"{figures['seconds']:.1f} s ({figures['mb_per_s']:.0f} MB/s)")
    print(f"{'process':44s} {'PSS before':>11s} {'PSS peak':>9s}")
    for name, peak in sorted(figures["pss_peak_mb"].items()):
        print(f"{name:44s} {figures['pss_before_mb'][name]:9.1f} MB {peak:6.1f} MB")
    for label, key in (("before the upload", "baseline_latencies"), ("during the upload", "during_latencies")):
        lat = figures[key]
        print(f"other client {label}: n={len(lat)} p50 {statistics.median(lat) * 1e3 if lat else 0:.1f} ms"
              f"  p99 {quantile(lat, 0.99) * 1e3:.1f} ms")
    print(f"other client failures: {figures['other_failures']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--rate", type=float, default=20.0, help="the other client's requests per second")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as home:
        mesh = meshkit.up(home=home)
        try:
            report(measure_upload(mesh, args.mb, args.rate))
        finally:
            mesh.backend.down()


if __name__ == "__main__":
    main()
