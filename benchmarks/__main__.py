"""meshkit benchmarks: ``python -m benchmarks`` (or ``make bench``) prints figures and ratios.

Everything runs on 127.0.0.1 and is measured in the same run against its own baseline:

* seconds from ``meshkit up`` to the first successful request (fresh state directory);
* the whole chain (gateway + 5 sidecar passes) vs the same three apps wired directly, at full
  speed (closed loop) and paced at 1,000 requests/s: throughput, p50/p99, the latency and CPU each
  proxy pass adds, and memory (PSS) of every process.

The load generator runs in this process and shares the 2 cores with the mesh; figures are about
one significant digit apart from run to run on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import meshkit
from meshkit.traffic import run_load

PROXY_PASSES = 6  # gateway, customer in+out, preference in+out, recommendation in
CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            continue
    return total / CLK


def pss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_direct_chain() -> tuple[list[subprocess.Popen[bytes]], str]:
    """customer → preference → recommendation v1, no sidecars, each app calling the next directly."""
    rec, pref, cust = free_port(), free_port(), free_port()
    cmd = [sys.executable, "-m", "meshkit.sample"]
    procs = [
        subprocess.Popen([*cmd, "--service", "recommendation", "--version", "v1", "--port", str(rec)]),
        subprocess.Popen([*cmd, "--service", "preference", "--port", str(pref), "--upstream", f"127.0.0.1:{rec}"]),
        subprocess.Popen([*cmd, "--service", "customer", "--port", str(cust), "--upstream", f"127.0.0.1:{pref}"]),
    ]
    url = f"http://127.0.0.1:{cust}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if run_load(url, n=1, path="/").records[0]["code"] == 200:
            return procs, url
        time.sleep(0.05)
    raise RuntimeError("direct chain did not start")


def measure(url: str, path: str, pids: list[int], seconds: float, qps: float | None, conc: int) -> dict[str, Any]:
    run_load(url, n=200, concurrency=conc, path=path)  # warm connections and code paths
    cpu0 = cpu_seconds(pids)
    result = run_load(url, duration=seconds, concurrency=conc, qps=qps, path=path)
    cpu = cpu_seconds(pids) - cpu0
    summary = result.summary()
    ok = summary["codes"].get("200", 0)
    return {
        "rps": summary["rps"],
        "p50": summary["latency_ms"]["p50"],
        "p99": summary["latency_ms"]["p99"],
        "ok_ratio": ok / max(1, summary["requests"]),
        "cpu_per_s": cpu / result.duration_s,
    }


def bench_up() -> float:
    times = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as home:
            started = time.monotonic()
            mesh = meshkit.up(home=home)
            while mesh.curl()[0] != 200:
                time.sleep(0.01)
            times.append(time.monotonic() - started)
            mesh.backend.down()
    return sorted(times)[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measured load")
    args = parser.parse_args(argv)

    print("meshkit benchmarks (loopback, this machine, load generator in-process)\n")
    up_s = bench_up()
    print(f"up → first successful request: {up_s:.2f} s   (goal ≤ 1.5 s)")

    procs, direct_url = start_direct_chain()
    direct_pids = [p.pid for p in procs]
    with tempfile.TemporaryDirectory() as home:
        mesh = meshkit.up(home=home)
        mesh.apply(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: recommendation}\n"
            "spec:\n  hosts: [recommendation]\n  http:\n  - route:\n    - destination: {host: recommendation, "
            "subset: v1}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: "
            "{name: recommendation}\nspec:\n  host: recommendation\n  subsets:\n  - {name: v1, labels: {version: v1}}\n"
        )
        pods = mesh.pods()
        mesh_pids = [int(p.extra["pid"]) for p in pods]
        state = mesh.backend._state()  # type: ignore[attr-defined]
        cp_pid = int(state["pid"])
        gw = mesh.backend.gateway_url()
        try:
            direct_max = measure(direct_url, "/", direct_pids, args.seconds, None, 8)
            mesh_max = measure(gw, "/customer", mesh_pids, args.seconds, None, 8)
            direct_1k = measure(direct_url, "/", direct_pids, args.seconds, 1000, 16)
            mesh_1k = measure(gw, "/customer", mesh_pids, args.seconds, 1000, 16)
            memory = {p.name: pss_mb(int(p.extra["pid"])) for p in pods}
            memory["control plane"] = pss_mb(cp_pid)
        finally:
            mesh.backend.down()
            for p in procs:
                p.terminate()
                p.wait()

    print("\nclosed loop, 8 connections            rps      p50 ms   p99 ms")
    for label, m in (("direct (3 apps, no sidecars)", direct_max), ("mesh (gateway + 5 sidecars)", mesh_max)):
        print(f"  {label:30s} {m['rps']:8.0f}   {m['p50']:7.2f}  {m['p99']:7.2f}")
    ratio = mesh_max["rps"] / direct_max["rps"]
    print(f"  mesh / direct throughput: {ratio:.0%}   (goals: ≥ 1,000 rps and ≥ 30 %)")

    print("\npaced at 1,000 requests/s, 16 connections")
    print(f"  direct: {direct_1k['rps']:.0f} rps, p50 {direct_1k['p50']:.2f} ms, p99 {direct_1k['p99']:.2f} ms, "
          f"{direct_1k['cpu_per_s']:.2f} vCPU")
    print(f"  mesh:   {mesh_1k['rps']:.0f} rps, p50 {mesh_1k['p50']:.2f} ms, p99 {mesh_1k['p99']:.2f} ms, "
          f"{mesh_1k['cpu_per_s']:.2f} vCPU (pods, apps included)")
    add50 = (mesh_1k["p50"] - direct_1k["p50"]) / PROXY_PASSES
    add99 = (mesh_1k["p99"] - direct_1k["p99"]) / PROXY_PASSES
    per_k = 1000.0 / max(1.0, mesh_1k["rps"])
    cpu_pass = (mesh_1k["cpu_per_s"] - direct_1k["cpu_per_s"] * mesh_1k["rps"] / max(1.0, direct_1k["rps"]))
    cpu_pass = cpu_pass * per_k / PROXY_PASSES
    print(f"  per proxy pass ({PROXY_PASSES} passes): +{add50:.3f} ms p50, +{add99:.3f} ms p99, "
          f"{cpu_pass:.3f} vCPU per 1,000 rps")
    print("  goals: ≤ +0.25 ms p50, ≤ +0.6 ms p99, ≤ 0.15 vCPU per 1,000 rps (Envoy publishes 0.20)")

    print("\nmemory (PSS, MB)")
    for name, mb in sorted(memory.items()):
        print(f"  {name:45s} {mb:6.1f}")
    total = sum(memory.values())
    proxies = [mb for name, mb in memory.items() if name.startswith("istio-ingressgateway")]
    print(f"  total {total:.0f} MB (goal < 300 MB); gateway proxy alone {proxies[0] if proxies else 0:.1f} MB "
          "(goal ≤ 30 MB per proxy)")


if __name__ == "__main__":
    main()
