"""meshkit benchmarks: ``python -m benchmarks`` (or ``make bench``) prints figures and ratios.

Everything runs on 127.0.0.1 and is measured in the same run against its own baseline:

* seconds from ``meshkit up`` to the first successful request (fresh state directory);
* Envoy's limits: the HTTP/1.1 path's cost per request, RE2 against a backtracking regex, and
  a 256 MB upload and a 256 MB download through the gateway (every pod's PSS and CPU, another
  client's p50/p99 meanwhile; the download also from the three apps wired directly);
* the whole chain (gateway + 5 sidecar passes) vs the same three apps wired directly, at full
  speed (closed loop) and paced at 1,000 requests/s: throughput, p50/p99, the latency and CPU each
  proxy pass adds, and memory (PSS) of every process;
* requests lost while the control plane restarts, or is killed and adopted, under a paced load,
  and how long ``down`` takes with a hung control plane.

The load generator runs in this process and shares the 2 cores with the mesh; figures are about
one significant digit apart from run to run on a shared machine.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import meshkit
from benchmarks.proc import cpu_seconds, pss_mb
from meshkit.traffic import run_load

PROXY_PASSES = 6  # gateway, customer in+out, preference in+out, recommendation in






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


ROUTE_V1 = (
    "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: recommendation}\n"
    "spec:\n  hosts: [recommendation]\n  http:\n  - route:\n    - destination: {host: recommendation, "
    "subset: v1}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: "
    "{name: recommendation}\nspec:\n  host: recommendation\n  subsets:\n  - {name: v1, labels: {version: v1}}\n"
)
PLAINTEXT = (
    "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default}\n"
    "spec: {mtls: {mode: DISABLE}}\n"
)


def bench_mesh(seconds: float, extra: str = "") -> dict[str, Any]:
    """Closed-loop and paced figures through the whole chain, with the control plane's CPU included."""
    with tempfile.TemporaryDirectory() as home:
        mesh = meshkit.up(home=home)
        mesh.apply(ROUTE_V1 + ("---\n" + extra if extra else ""))
        pods = mesh.pods()
        cp_pid = int(mesh.backend._state()["pid"])  # type: ignore[attr-defined]
        pids = [int(p.extra["pid"]) for p in pods] + [cp_pid]
        gw = mesh.backend.gateway_url()
        try:
            result = {
                "max": measure(gw, "/customer", pids, seconds, None, 8),
                "1k": measure(gw, "/customer", pids, seconds, 1000, 16),
                "memory": {p.name: pss_mb(int(p.extra["pid"])) for p in pods} | {"control plane": pss_mb(cp_pid)},
            }
        finally:
            mesh.backend.down()
    return result


def bench_control_plane(rate: float = 200.0) -> dict[str, tuple[int, int, float]]:
    """Requests sent and lost, and seconds taken, while the control plane restarts, is killed (-9)
    and adopted by a new one, and while ``down`` ends a mesh whose control plane hangs."""
    import os
    import signal
    import threading

    from meshkit.traffic import TrafficRunner

    out: dict[str, tuple[int, int, float]] = {}
    with tempfile.TemporaryDirectory() as home:
        mesh = meshkit.up(home=home)
        backend = mesh.backend
        gw = backend.gateway_url()

        def under_load(name: str, action: Any) -> None:
            runner = TrafficRunner(gw, rate=rate, concurrency=8, max_seconds=60).start()
            time.sleep(0.5)
            started = time.monotonic()
            action()
            took = time.monotonic() - started
            time.sleep(0.5)
            runner.stop()
            records = runner.records()
            out[name] = (len(records), sum(1 for r in records if r["code"] != 200), took)

        def kill_and_adopt() -> None:
            os.kill(int(backend._state()["pid"]), signal.SIGKILL)  # type: ignore[attr-defined]
            time.sleep(1.0)
            backend.up()

        under_load("meshkit restart", mesh.restart_control_plane)
        under_load("kill -9, 1 s alone, up adopts", kill_and_adopt)
        cp = int(backend._state()["pid"])  # type: ignore[attr-defined]
        os.kill(cp, signal.SIGSTOP)
        started = time.monotonic()
        guard = threading.Timer(15, lambda: os.kill(cp, signal.SIGKILL))  # never leave it stopped
        guard.start()
        backend.down()
        guard.cancel()
        out["down, control plane hung"] = (0, 0, time.monotonic() - started)
    return out


def report_pass(label: str, direct: dict[str, Any], mesh: dict[str, Any]) -> None:
    add50 = (mesh["p50"] - direct["p50"]) / PROXY_PASSES
    add99 = (mesh["p99"] - direct["p99"]) / PROXY_PASSES
    extra_cpu = mesh["cpu_per_s"] - direct["cpu_per_s"] * mesh["rps"] / max(1.0, direct["rps"])
    cpu_pass = extra_cpu * 1000.0 / max(1.0, mesh["rps"]) / PROXY_PASSES
    print(f"  {label:28s} {mesh['rps']:6.0f} rps  p50 {mesh['p50']:6.2f}  p99 {mesh['p99']:7.2f}  "
          f"per pass +{add50:.3f} / +{add99:.3f} ms, {cpu_pass:.3f} vCPU per 1,000 rps")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measured load")
    parser.add_argument("--long", type=float, default=120.0,
                        help="seconds of the paced memory run after the telemetry on/off comparison (0 skips)")
    args = parser.parse_args(argv)

    print("meshkit benchmarks (loopback, this machine, load generator in-process)\n")
    up_s = bench_up()
    print(f"up → first successful request: {up_s:.2f} s   (goal ≤ 1.5 s)")

    procs, direct_url = start_direct_chain()
    direct_pids = [p.pid for p in procs]
    try:
        direct_max = measure(direct_url, "/", direct_pids, args.seconds, None, 8)
        direct_1k = measure(direct_url, "/", direct_pids, args.seconds, 1000, 16)
    finally:
        for p in procs:
            p.terminate()
            p.wait()
    default = bench_mesh(args.seconds)
    plain = bench_mesh(args.seconds, PLAINTEXT)

    print("\nclosed loop, 8 connections                 rps   p50 ms   p99 ms   vs direct")
    rows = (("direct (3 apps, no sidecars)", direct_max), ("mesh, mTLS + telemetry (default)", default["max"]),
            ("mesh, plaintext (PA DISABLE)", plain["max"]))
    for label, m in rows:
        print(f"  {label:34s} {m['rps']:7.0f}  {m['p50']:7.2f}  {m['p99']:7.2f}   {m['rps'] / direct_max['rps']:6.0%}")
    print("  goals: the full chain ≥ 1,000 rps and ≥ 30 % of the direct chain")
    mtls_cost = 1 - default["max"]["rps"] / plain["max"]["rps"]
    print(f"  mTLS costs {mtls_cost:.0%} of the throughput; "
          f"p50 {default['max']['p50'] - plain['max']['p50']:+.2f} ms over the chain's 3 mTLS hops")

    print(f"\npaced at 1,000 requests/s, 16 connections ({PROXY_PASSES} proxy passes per request)")
    print(f"  {'direct':28s} {direct_1k['rps']:6.0f} rps  p50 {direct_1k['p50']:6.2f}  p99 {direct_1k['p99']:7.2f}  "
          f"{direct_1k['cpu_per_s']:.2f} vCPU")
    report_pass("mesh, mTLS + telemetry", direct_1k, default["1k"])
    report_pass("mesh, plaintext", direct_1k, plain["1k"])
    print("  goals per pass: ≤ +0.25 ms p50, ≤ +0.6 ms p99, ≤ 0.15 vCPU per 1,000 rps (Envoy publishes 0.20)")

    print("\nmemory (PSS, MB), default mesh after its loads")
    memory = default["memory"]
    for name, mb in sorted(memory.items()):
        print(f"  {name:45s} {mb:6.1f}")
    total = sum(memory.values())
    gateway = [mb for name, mb in memory.items() if name.startswith("istio-ingressgateway")]
    print(f"  total {total:.0f} MB (goal < 300 MB); the gateway (a proxy alone) {gateway[0] if gateway else 0:.1f} MB "
          "(goal ≤ 30 MB per proxy)")

    print()
    from benchmarks import envoystats, trust

    trust.main()
    print()
    envoystats.main()

    print("\nEnvoy's limits: the HTTP/1.1 path per request, the header regex engine, a 256 MB upload "
          "and a 256 MB download")
    from benchmarks import download, http1_path, regex_match, upload

    http1_path.main([])
    regex_match.main()
    upload.main(["--mb", "256"])
    download.main(["--mb", "256"])

    print("\nthe control plane's life, under a paced load of 200 requests/s through the gateway")
    for name, (sent, lost, took) in bench_control_plane().items():
        traffic = f"{lost} of {sent} requests failed" if sent else "no process or port left"
        print(f"  {name:34s} {took:5.2f} s   {traffic}")
    print("  goals: 0 failed requests; down within 10 s")

    print("\ntelemetry on vs off, and memory under a long paced load")
    from benchmarks import telemetry

    telemetry.main(["--seconds", str(args.seconds), "--rounds", "2", "--long", str(args.long)])

    print()
    from benchmarks import ambient

    ambient.main(["--seconds", str(args.seconds)])


if __name__ == "__main__":
    main()
