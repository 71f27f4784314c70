"""What observability costs: the mesh with telemetry on vs off, and its memory under a long load.

``python -m benchmarks.telemetry`` starts two fresh meshes in turn, the second with
``MESHKIT_TELEMETRY=off`` in the environment (the control plane inherits it, and every pod inherits
it from the control plane), and measures each at full speed (closed loop, 8 connections, 5 s per
round, rounds alternating between the meshes): throughput, p50/p99, CPU per 1,000 requests and the
memory (PSS) of every process. Then it runs a
paced load (300 requests/s) against a telemetry-on mesh for ``--long`` seconds (120 by default,
``--long 600`` for the ten-minute figure) and prints the total PSS every 10 s and its growth.

Everything runs on 127.0.0.1 and the load generator shares the machine's cores with the mesh, so
figures move by about one significant digit between runs, more when the machine is busy (the load
average is printed with the figures).

Example::

    python -m benchmarks.telemetry --seconds 5 --long 120
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import meshkit
from benchmarks.proc import cpu_seconds, pss_mb
from meshkit.mesh import Mesh
from meshkit.traffic import LoadResult, run_load

MEDIANS = ("rps", "p50", "p99", "ok", "cpu_per_1k", "cp_cpu_per_1k")






def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} on {os.cpu_count()} cores"


def processes(mesh: Mesh) -> dict[str, int]:
    """Every process of the mesh: pod name -> pid, plus the control plane."""
    pids = {p.name: int(p.extra["pid"]) for p in mesh.pods()}
    state = mesh.backend._state()  # type: ignore[attr-defined]
    pids["control plane"] = int(state["pid"])
    return pids


@contextmanager
def running_mesh(telemetry: bool) -> Iterator[Mesh]:
    """A fresh mesh in a temporary home, started with ``MESHKIT_TELEMETRY`` set; stopped on exit."""
    saved = os.environ.get("MESHKIT_TELEMETRY")
    os.environ["MESHKIT_TELEMETRY"] = "on" if telemetry else "off"
    with tempfile.TemporaryDirectory(prefix="meshkit-bench-") as home:
        try:
            mesh = meshkit.up(home=home)
        finally:
            # only the processes started above need it; this process's own telemetry is not involved
            if saved is None:
                os.environ.pop("MESHKIT_TELEMETRY", None)
            else:
                os.environ["MESHKIT_TELEMETRY"] = saved
        try:
            yield mesh
        finally:
            mesh.backend.down()


def closed_loop(mesh: Mesh, seconds: float, concurrency: int) -> dict[str, Any]:
    """One full-speed load through the gateway: throughput, latency, CPU per request, records kept."""
    gateway = mesh.backend.gateway_url()
    named = processes(mesh)
    pids = list(named.values())
    run_load(gateway, n=300, concurrency=concurrency)  # warm connections and code paths
    cpu0, cp0 = cpu_seconds(pids), cpu_seconds([named["control plane"]])
    since = time.time()
    result = run_load(gateway, duration=seconds, concurrency=concurrency)
    cpu, cp = cpu_seconds(pids) - cpu0, cpu_seconds([named["control plane"]]) - cp0
    time.sleep(0.5)  # proxies ship telemetry every 0.2 s
    collected = len(mesh.backend.request_log(since, limit=1_000_000))
    summary = result.summary()
    return {
        "rps": summary["rps"],
        "p50": summary["latency_ms"]["p50"],
        "p99": summary["latency_ms"]["p99"],
        "ok": summary["codes"].get("200", 0) / max(1, summary["requests"]),
        "cpu_per_1k": 1000.0 * cpu / max(1, summary["requests"]),
        "cp_cpu_per_1k": 1000.0 * cp / max(1, summary["requests"]),
        "records": collected,
        "requests": summary["requests"],
    }


def on_and_off(seconds: float, concurrency: int, rounds: int) -> dict[str, dict[str, Any]]:
    """Both meshes, started in turn, measured in alternating rounds so a busy machine hits both alike.

    Each mode's figures are the medians over its rounds; memory is read after the last round.
    """
    out: dict[str, dict[str, Any]] = {}
    with running_mesh(True) as on, running_mesh(False) as off:
        meshes = {"on": on, "off": off}
        runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
        for _ in range(rounds):
            for mode, mesh in meshes.items():
                runs[mode].append(closed_loop(mesh, seconds, concurrency))
        for mode, mesh in meshes.items():
            med = {k: statistics.median(r[k] for r in runs[mode]) for k in MEDIANS}
            med["records"] = runs[mode][-1]["records"]
            med["rounds"] = [r["rps"] for r in runs[mode]]
            med["memory"] = {name: pss_mb(pid) for name, pid in processes(mesh).items()}
            out[mode] = med
    return out


def long_load(seconds: float, rate: float, every: float, concurrency: int) -> dict[str, Any]:
    """A paced load on a telemetry-on mesh, sampling the total PSS every ``every`` seconds."""
    with running_mesh(True) as mesh:
        gateway = mesh.backend.gateway_url()
        pids = processes(mesh)
        series: list[tuple[float, float, float]] = []  # (t, total MB, control plane MB)
        out: list[LoadResult] = []
        worker = threading.Thread(
            target=lambda: out.append(run_load(gateway, duration=seconds, qps=rate, concurrency=concurrency)),
            name="bench-long-load",
            daemon=True,
        )
        t0 = time.monotonic()
        series.append((0.0, sum(pss_mb(p) for p in pids.values()), pss_mb(pids["control plane"])))
        worker.start()
        k = 1
        while worker.is_alive():
            due = t0 + k * every
            worker.join(max(0.0, due - time.monotonic()))
            if time.monotonic() >= due:
                series.append((k * every, sum(pss_mb(p) for p in pids.values()), pss_mb(pids["control plane"])))
                k += 1
        worker.join()
        time.sleep(0.5)
        kept = len(mesh.backend.request_log(0, limit=1_000_000))
        series.append((time.monotonic() - t0, sum(pss_mb(p) for p in pids.values()),
                       pss_mb(pids["control plane"])))
    summary = out[0].summary()
    return {"series": series, "summary": summary, "kept": kept}


def report_closed_loop(on: dict[str, Any], off: dict[str, Any], seconds: float, concurrency: int,
                       rounds: int) -> None:
    print(f"closed loop, {concurrency} connections, {rounds} alternating rounds of {seconds:g} s per mesh "
          "(medians)")
    print("  telemetry     rps     p50 ms   p99 ms   ok %   CPU s/1k req   PSS total MB   records kept")
    for label, m in (("on", on), ("off", off)):
        print(f"  {label:9s} {m['rps']:7.0f}   {m['p50']:7.2f}  {m['p99']:7.2f}  {100 * m['ok']:5.1f}   "
              f"{m['cpu_per_1k']:12.2f}   {sum(m['memory'].values()):12.1f}   {m['records']:12d}")
    print(f"  on / off: throughput {on['rps'] / off['rps']:.2f}, p50 {on['p50'] / off['p50']:.2f}, "
          f"p99 {on['p99'] / off['p99']:.2f}, CPU per request {on['cpu_per_1k'] / off['cpu_per_1k']:.2f}, "
          f"PSS {sum(on['memory'].values()) / sum(off['memory'].values()):.2f}")
    print(f"  CPU s per 1,000 requests in the control plane (the collector's ingest): on "
          f"{on['cp_cpu_per_1k']:.2f}, off {off['cp_cpu_per_1k']:.2f}; in the pods: on "
          f"{on['cpu_per_1k'] - on['cp_cpu_per_1k']:.2f}, off {off['cpu_per_1k'] - off['cp_cpu_per_1k']:.2f}")
    print(f"  rps per round: on {', '.join(f'{r:.0f}' for r in on['rounds'])}; "
          f"off {', '.join(f'{r:.0f}' for r in off['rounds'])}")
    print("\nmemory per process after the closed loop (PSS, MB)    on      off")
    for name in sorted(on["memory"], key=lambda n: (n == "control plane", n)):
        kind = name.rsplit("-", 2)[0] if name != "control plane" else name
        off_mb = next((mb for n, mb in off["memory"].items() if n.rsplit("-", 2)[0] == kind), 0.0)
        print(f"  {kind:48s} {on['memory'][name]:6.1f}  {off_mb:6.1f}")


def report_long(long: dict[str, Any], rate: float) -> None:
    series = long["series"]
    s = long["summary"]
    print(f"\nlong load: paced at {rate:g} requests/s for {s['duration_s']:.0f} s, telemetry on")
    print(f"  sent {s['requests']} ({s['rps']:.0f} rps), codes {s['codes']}, "
          f"p50 {s['latency_ms']['p50']:.2f} ms, p99 {s['latency_ms']['p99']:.2f} ms")
    print(f"  records kept by the collector at the end: {long['kept']} (capacity 30,000)")
    print("     t s   total PSS MB   control plane MB")
    for t, total, cp in series:
        print(f"  {t:6.0f}   {total:12.1f}   {cp:16.1f}")
    first, last = series[0], series[-1]
    print(f"  growth over the run: {last[1] - first[1]:+.1f} MB total, {last[2] - first[2]:+.1f} MB control plane")
    # the collector's ring fills after 30,000 records (6 per request): growth past that point is a leak
    fill_s = 30_000 / 6 / rate
    settled = [p for p in series if p[0] >= 2 * fill_s]
    if len(settled) >= 2:
        a, b = settled[0], settled[-1]
        per_min = 60.0 * (b[1] - a[1]) / max(1.0, b[0] - a[0])
        print(f"  after the rings filled (t ≥ {a[0]:.0f} s): {b[1] - a[1]:+.1f} MB total "
              f"({per_min:+.2f} MB/min), {b[2] - a[2]:+.1f} MB control plane")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.telemetry", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each closed-loop load")
    parser.add_argument("--concurrency", type=int, default=8, help="connections of the closed loop")
    parser.add_argument("--rounds", type=int, default=3, help="alternating closed-loop rounds per mesh")
    parser.add_argument("--long", type=float, default=120.0, help="seconds of the paced load (0 skips it)")
    parser.add_argument("--rate", type=float, default=300.0, help="requests/s of the paced load")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between memory samples")
    args = parser.parse_args(argv)
    if min(args.seconds, args.rate, args.every) <= 0 or min(args.concurrency, args.rounds) < 1 or args.long < 0:
        parser.error("--seconds, --rate and --every must be > 0, --concurrency and --rounds >= 1, --long >= 0")

    print("meshkit telemetry benchmark (loopback, load generator in-process)")
    print(f"  before: {load_average()}\n")
    both = on_and_off(args.seconds, args.concurrency, args.rounds)
    report_closed_loop(both["on"], both["off"], args.seconds, args.concurrency, args.rounds)
    print(f"  after the closed loops: {load_average()}")
    if args.long:
        long = long_load(args.long, args.rate, args.every, args.concurrency)
        report_long(long, args.rate)
        print(f"  after the long load: {load_average()}")


if __name__ == "__main__":
    main()
