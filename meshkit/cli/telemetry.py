"""Verbs for traffic and what it left behind: curl, load, logs, metrics, traces, graph, explain."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from meshkit.cli.common import _headers, _mesh, _print, _target
from meshkit.errors import MeshkitError


def cmd_curl(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    headers = _headers(args.header)
    if args.user_agent:
        headers["user-agent"] = args.user_agent
    cacert = Path(args.cacert).read_text() if args.cacert else None
    for i in range(args.n):
        _, body = mesh.curl(args.path, headers, https=args.https, cacert=cacert)
        _print(body)
        if args.interval and i + 1 < args.n:
            time.sleep(args.interval)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    if args.n is None and args.duration is None:
        args.n = 100
    result = mesh.load(args.n, args.duration, args.concurrency, args.qps, _headers(args.header), args.path)
    summary = result.summary()
    if args.json:
        _print(json.dumps(summary))
        return 0
    lat = summary["latency_ms"]
    _print(f"{summary['requests']} requests in {summary['duration_s']}s ({summary['rps']} req/s)")
    _print("codes:    " + ", ".join(f"{k}: {v}" for k, v in sorted(summary["codes"].items())))
    _print("versions: " + ", ".join(f"{k}: {v}" for k, v in sorted(summary["versions"].items())))
    _print("flags:    " + ", ".join(f"{k}: {v}" for k, v in sorted(summary["flags"].items())))
    _print(f"latency:  p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms, max {lat['max']} ms")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    if args.selector:
        pods = [p["metadata"]["name"] for p in mesh.get("pods", namespace=args.namespace, selector=args.selector)]
    elif args.pod:
        pods = [_target(args.pod)]
    else:
        raise MeshkitError("logs needs a POD, deployment/NAME or -l app=NAME")
    backend = mesh.backend
    proxy = args.container == "istio-proxy"
    seen: dict[str, Any] = {}
    for pod in pods:
        if proxy:
            lines = backend.access_log(pod)  # type: ignore[attr-defined]
            seen[pod] = lines[-1] if lines else None
            for line in lines:
                _print(line)
        else:
            text, seen[pod] = backend.app_log_since(pod)  # type: ignore[attr-defined]
            if text.strip():
                _print(text.rstrip("\n"))
    while args.follow:  # kubectl logs -f: new lines as they come, until Ctrl-C
        time.sleep(0.5)
        for pod in pods:
            if proxy:
                lines = backend.access_log(pod)  # type: ignore[attr-defined]
                last = seen[pod]
                new = lines[len(lines) - lines[::-1].index(last):] if last in lines else lines
                seen[pod] = lines[-1] if lines else last
                for line in new:
                    _print(line)
            else:
                text, seen[pod] = backend.app_log_since(pod, seen[pod])  # type: ignore[attr-defined]
                if text.strip():
                    _print(text.rstrip("\n"))
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    _print(_mesh(args).metrics(args.pod).rstrip("\n"))
    return 0


def cmd_traces(args: argparse.Namespace) -> int:
    body = _mesh(args).traces(args.service, args.limit)
    if args.output == "json":
        _print(json.dumps(body, indent=2))
        return 0
    for trace in body["data"]:
        spans = sorted(trace["spans"], key=lambda s: s["startTime"])
        root = spans[0]
        services = trace["processes"]
        _print(f"trace {trace['traceID']}  {len(spans)} spans  {root['duration'] / 1000:.2f} ms")
        for span in spans:
            who = services[span["processID"]]["serviceName"]
            offset = (span["startTime"] - root["startTime"]) / 1000
            _print(f"  +{offset:7.2f} ms {span['duration'] / 1000:7.2f} ms  {who:38s} {span['operationName']}")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from meshkit.telemetry.graph import format_graph

    g = _mesh(args).graph(args.window)
    _print(json.dumps(g, indent=2) if args.output == "json" else format_graph(g))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    lines = _mesh(args).explain(args.limit)
    for line in lines:
        _print(line)
    if not lines:
        _print("no failed request in the recent telemetry")
    return 0
