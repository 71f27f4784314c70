"""Verbs for Istio resources: apply, delete, get, reset, analyze."""

from __future__ import annotations

import argparse
import json
import sys

from meshkit.cli.common import _mesh, _print, _sources, _table
from meshkit.errors import MeshkitError
from meshkit.mesh import load_resources


def cmd_apply(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    results = mesh.apply(*_sources(args.filename))
    for w in mesh.warnings:
        print(w, file=sys.stderr)
    for r in results:
        _print(str(r))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    if args.filename:
        resources, _ = load_resources(_sources(args.filename))
        for res in resources:
            _print(str(mesh.backend.delete(res["kind"], res["metadata"]["name"])))
        return 0
    if not args.kind or not args.name:
        raise MeshkitError("delete needs KIND NAME or -f FILE")
    _print(str(mesh.delete(args.kind, args.name)))
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    items = mesh.get(args.kind, args.name)
    if args.name and not items:
        raise MeshkitError(f'{args.kind} "{args.name}" not found')
    if args.output == "json":
        _print(json.dumps(items if not args.name else items[0], indent=2))
    elif args.output == "yaml":
        import yaml

        _print(yaml.safe_dump_all(items, sort_keys=False).rstrip())
    else:
        rows = [("KIND", "NAME", "AGE")]
        for res in items:
            rows.append((res["kind"], res["metadata"]["name"], res["metadata"].get("creationTimestamp", "")))
        if len(rows) == 1:
            _print("No resources found in tutorial namespace.")
        else:
            _table(rows)
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    for r in mesh.reset():
        _print(str(r))
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from meshkit.resources import analyze

    mesh = _mesh(args)
    resources = mesh.get()
    origins = None
    if args.filename:
        from meshkit.resources import load_paths, validate_documents

        report = validate_documents(load_paths([str(s) for s in args.filename]), profile=mesh.profile)
        report.raise_for_errors()
        extra, origins = report.resources, report.origins
        keys = {(r["kind"], r["metadata"]["name"]) for r in extra}
        resources = [r for r in resources if (r["kind"], r["metadata"]["name"]) not in keys] + extra
    pods = []
    for p in mesh.pods():
        labels = {"app": p.app, "istio": "ingressgateway"} if p.app == "istio-ingressgateway" else {
            "app": p.app, "version": p.version}
        pods.append({"name": p.name, "labels": labels, "namespace": p.namespace, "sidecar": p.sidecar})
    services = {s: {"http": 8080} for s in ("customer", "preference", "recommendation")}
    problems = analyze(resources, services, pods, origins=origins, profile=mesh.profile)
    for problem in problems:
        _print(problem.analyze_line())
    if not problems:
        _print("✔ No validation issues found when analyzing namespace: tutorial.")
    return 1 if any(p.level == "Error" for p in problems) else 0
