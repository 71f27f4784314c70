"""Ambient (ztunnel) against sidecars on the same sample: memory and per-request cost.

``python -m benchmarks.ambient [--seconds S]`` starts one mesh of each data plane in turn, sends the
same loads through the ingress gateway (closed loop with 8 connections, then paced at 200 requests/s)
and reports throughput, p50/p99, the data plane's CPU per 1,000 requests and every process's PSS.

In the local mesh a pod's app and its sidecar share one process, so a sidecar pod's PSS is app plus
proxy; an ambient pod is the app alone and the node's ztunnel carries every pod's traffic. The third
run, ``ambient+waypoint``, applies a waypoint for the namespace (``waypoint apply --enroll-namespace``):
customer → preference → recommendation then each pass ztunnel → waypoint → ztunnel (the gateway's
call to customer bypasses it, as ingress does without ``istio.io/ingress-use-waypoint``), and the
waypoint's PSS is counted with ztunnel's.
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

import meshkit
from benchmarks.__main__ import measure
from benchmarks.proc import pss_mb

SAMPLE = ("customer", "preference", "recommendation")


def bench(dataplane: str, seconds: float, waypoint: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as home:
        mesh = meshkit.up(home=home, dataplane=dataplane)
        try:
            if waypoint:
                mesh.waypoint_apply(enroll_namespace=True)
                mesh.backend.wait_synced()  # type: ignore[attr-defined]
            pods = mesh.pods()
            data_plane = [p for p in pods if p.app in (*SAMPLE, "ztunnel", "waypoint")]
            pids = [int(p.extra["pid"]) for p in pods]  # the gateway's and the pods' CPU: the data plane's
            gw = mesh.backend.gateway_url()
            result = {
                "max": measure(gw, "/customer", pids, seconds, None, 8),
                "paced": measure(gw, "/customer", pids, seconds, 200, 8),
                "memory": {p.name: pss_mb(int(p.extra["pid"])) for p in data_plane},
            }
        finally:
            mesh.backend.down()
    return result


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ambient")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    runs = {mode: bench(mode, args.seconds) for mode in ("sidecar", "ambient")}
    runs["ambient+waypoint"] = bench("ambient", args.seconds, waypoint=True)
    print("ambient (ztunnel) vs sidecars, through the gateway, the same sample")
    print(f"  {'data plane':16s} {'rps':>7s} {'p50 ms':>8s} {'p99 ms':>8s}   paced 200/s: {'p50':>6s} {'p99':>7s} "
          f"{'vCPU-ms/req':>11s}   PSS MB: pods + ztunnel (+ waypoint) = total")
    for mode, r in runs.items():
        mem = r["memory"]
        zt = sum(mb for name, mb in mem.items() if name.startswith(("ztunnel-", "waypoint-")))
        pods = sum(mem.values()) - zt
        paced = r["paced"]
        per_req = paced["cpu_per_s"] / max(paced["rps"], 1e-9) * 1000
        print(f"  {mode:16s} {r['max']['rps']:7.0f} {r['max']['p50']:8.2f} {r['max']['p99']:8.2f}   "
              f"{'':12s} {paced['p50']:6.2f} {paced['p99']:7.2f} {per_req:11.2f}   "
              f"{pods:6.1f} + {zt:5.1f} = {pods + zt:6.1f}  ({sum(1 for n in mem if n.split('-')[0] in SAMPLE)} pods)")
    return runs


if __name__ == "__main__":
    main()
