"""Two versions of meshkit measured back to back on one machine: ``up`` time, CPU per request, memory.

A busy machine moves every absolute figure; the ratio between two versions measured in the same
run, interleaved (A, B, A, B, ...), moves much less. Each version runs from its own tree (a git
revision is checked out into a temporary worktree), in fresh processes, with its modules compiled
to bytecode first so neither pays for compiling its sources.

Per repetition and version:

* ``up``: seconds from ``meshkit.up()`` (fresh home) to the first 200 through the gateway, and the
  CPU seconds every mesh process (control plane and pods) used to get there;
* ``pass``: a paced load through the gateway; CPU milliseconds per request of the gateway (one
  proxy pass: client → gateway → customer's sidecar, mTLS upstream) and of the whole mesh, p50/p99;
* ``memory``: PSS of the gateway and of every mesh process after that load;
* ``throughput``: then a closed loop of 8 connections for as long: successful requests per second.

Example::

    python -m benchmarks.compare --rev main --rev HEAD --reps 5
    python -m benchmarks.compare --tree /tmp/old-checkout --tree . --reps 3 --seconds 5 --qps 300
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent

# The child runs with the measured tree first on sys.path and uses only what every version of
# meshkit has: meshkit.up, Mesh.curl/pods, the backend's gateway_url and state, run_load.
CHILD = r'''
import json, os, sys, tempfile, time
t_import = time.monotonic()
import meshkit
from meshkit.traffic import run_load
CLK = os.sysconf("SC_CLK_TCK")

def cpu(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in f[11:15]) / CLK  # with reaped children (a pod forks to make its first key)
    except OSError:
        return 0.0

def pss(pid):
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0

seconds, qps = float(sys.argv[1]), float(sys.argv[2])
out = {"load": os.getloadavg()[0]}
with tempfile.TemporaryDirectory() as home:
    started = time.monotonic()
    mesh = meshkit.up(home=home)
    while mesh.curl()[0] != 200:
        time.sleep(0.005)
    out["up_s"] = time.monotonic() - started
    pods = mesh.pods()
    cp = int(mesh.backend._state()["pid"])
    pids = {p.name: int(p.extra["pid"]) for p in pods}
    out["up_cpu_s"] = sum(cpu(p) for p in pids.values()) + cpu(cp)
    try:
        if seconds > 0:
            gw_name = next(n for n in pids if n.startswith("istio-ingressgateway"))
            url = mesh.backend.gateway_url()
            run_load(url, n=300, concurrency=8, path="/customer")
            before = {n: cpu(p) for n, p in pids.items()} | {"cp": cpu(cp)}
            result = run_load(url, duration=seconds, concurrency=16, qps=qps, path="/customer")
            after = {n: cpu(p) for n, p in pids.items()} | {"cp": cpu(cp)}
            summary = result.summary()
            ok = summary["codes"].get("200", 0)
            out["rps"] = summary["rps"]
            out["ok_ratio"] = ok / max(1, summary["requests"])
            out["gw_cpu_ms_per_req"] = 1000 * (after[gw_name] - before[gw_name]) / max(1, ok)
            out["mesh_cpu_ms_per_req"] = 1000 * sum(after[n] - before[n] for n in after) / max(1, ok)
            out["p50_ms"] = summary["latency_ms"]["p50"]
            out["p99_ms"] = summary["latency_ms"]["p99"]
            out["gw_pss_mb"] = pss(pids[gw_name])
            out["mesh_pss_mb"] = sum(pss(p) for p in pids.values()) + pss(cp)
            closed = run_load(url, duration=seconds, concurrency=8, path="/customer").summary()
            out["max_rps"] = closed["codes"].get("200", 0) / max(1e-9, closed["duration_s"]) \
                if "duration_s" in closed else closed["rps"]
    finally:
        mesh.backend.down()
print("RESULT " + json.dumps(out))
'''

METRICS = (
    ("up_s", "up → first 200", "s"),
    ("up_cpu_s", "CPU used by up", "s"),
    ("gw_cpu_ms_per_req", "gateway CPU per request (1 pass)", "ms"),
    ("mesh_cpu_ms_per_req", "whole mesh CPU per request", "ms"),
    ("gw_pss_mb", "gateway PSS", "MB"),
    ("mesh_pss_mb", "whole mesh PSS", "MB"),
    ("rps", "achieved rps of the paced load", ""),
    ("p50_ms", "paced load p50 through the chain", "ms"),
    ("p99_ms", "paced load p99 through the chain", "ms"),
    ("max_rps", "closed loop, 8 connections: requests/s", ""),
)


def _env(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(tree)
    return env


def run_once(tree: Path, seconds: float, qps: float) -> dict[str, Any]:
    """One child run in ``tree``; its figures (``RESULT`` line) as a dict."""
    proc = subprocess.run([sys.executable, "-c", CHILD, str(seconds), str(qps)], cwd=tree, env=_env(tree),
                          capture_output=True, text=True, timeout=300)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise RuntimeError(f"run in {tree} failed:\n{proc.stderr[-2000:]}")


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.3f}  [{min(values):.3f} – {max(values):.3f}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", action="append", default=[], help="a git revision of this repository (repeatable)")
    parser.add_argument("--tree", action="append", default=[], help="a checkout of meshkit (repeatable)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions per version, interleaved")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the paced load (0: up only)")
    parser.add_argument("--qps", type=float, default=300.0, help="pace of the load through the gateway")
    args = parser.parse_args(argv)

    temp = tempfile.mkdtemp(prefix="meshkit-compare-")
    trees: list[tuple[str, Path]] = []
    try:
        for rev in args.rev:
            path = Path(temp) / rev.replace("/", "_")
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), rev],
                           check=True, capture_output=True)
            trees.append((rev, path))
        trees += [(t, Path(t).resolve()) for t in args.tree]
        if len(trees) < 1:
            parser.error("name at least one --rev or --tree")
        for _, tree in trees:  # both versions start from bytecode, as an installed package does
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "meshkit")], check=True,
                           env=_env(tree), stdout=subprocess.DEVNULL)
            run_once(tree, 0, args.qps)  # warm-up, discarded
        results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in trees}
        for rep in range(args.reps):
            for name, tree in trees:
                results[name].append(run_once(tree, args.seconds, args.qps))
                print(f"  rep {rep + 1}/{args.reps} {name}: " + json.dumps(
                    {k: round(v, 3) for k, v in results[name][-1].items()}), flush=True)
    finally:
        for _, path in trees:
            if str(path).startswith(temp):
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
                               capture_output=True)
        subprocess.run(["rm", "-rf", temp], check=False)

    loads = [r["load"] for rs in results.values() for r in rs]
    print(f"\nmedian [min – max] of {args.reps} interleaved runs each; 1-min load average "
          f"{min(loads):.1f} – {max(loads):.1f} on {os.cpu_count()} CPUs")
    first = trees[0][0]
    for key, label, unit in METRICS:
        print(f"{label} ({unit})" if unit else label)
        for name, _ in trees:
            values = [r[key] for r in results[name] if key in r]
            if not values:
                continue
            ratio = ""
            base = [r[key] for r in results[first] if key in r]
            if name != first and base:
                ratio = f"   × {statistics.median(values) / statistics.median(base):.2f} of {first}"
            print(f"  {name:24s} {_spread(values)}{ratio}")


if __name__ == "__main__":
    main()
