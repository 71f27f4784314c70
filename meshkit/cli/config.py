"""Verbs for Istio resources: apply, delete, get, reset, analyze."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from meshkit.cli.common import _mesh, _print, _ref, _sources, _table
from meshkit.errors import MeshkitError
from meshkit.mesh import load_resources
from meshkit.resources import resolve_kind


def cmd_apply(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    results = mesh.apply(*_sources(args.filename), namespace=args.namespace)
    for w in mesh.warnings:
        print(w, file=sys.stderr)
    for r in results:
        for w in r.warnings:
            print(f"Warning: {w}", file=sys.stderr)
        _print(str(r))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    if args.filename:
        resources, _ = load_resources(_sources(args.filename), namespace=args.namespace)
        for res in resources:
            meta = res["metadata"]
            _print(str(mesh.delete(res["kind"], meta["name"], meta.get("namespace"))))
        return 0
    if not args.kind:
        raise MeshkitError("delete needs KIND NAME, KIND/NAME or -f FILE")
    kind, name = _ref(args.kind)
    names = [name] if kind else ([args.name] if args.name else [])
    kind = kind or args.kind
    if args.selector:
        names = [o["metadata"]["name"] for o in mesh.get(kind, namespace=args.namespace, selector=args.selector)]
        if not names:
            _print(f"No resources found in {args.namespace or 'tutorial'} namespace.")
            return 0
    if not names:
        raise MeshkitError("delete needs KIND NAME, KIND/NAME or -f FILE")
    for one in names:
        if resolve_kind(kind).kind == "Pod":
            mesh.kill(one)  # its Deployment replaces it, as a ReplicaSet does
            _print(f'pod "{one}" deleted')
        else:
            _print(str(mesh.delete(kind, one, args.namespace)))
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    kind, name = (None, None)
    if args.kind:
        kind, name = _ref(args.kind)
        kind, name = (kind, name) if kind else (args.kind, args.name)
    ns = args.namespace or "tutorial"
    # kubectl lists the current namespace's pods, deployments and services unless told otherwise
    scoped = kind is not None and resolve_kind(kind).kind in KUBE_TABLES and resolve_kind(kind).namespaced
    items = mesh.get(kind, name, namespace=ns if scoped else args.namespace, selector=args.selector)
    if name and not items:
        raise MeshkitError(f'{kind} "{name}" not found')
    if args.output == "json":
        _print(json.dumps(items if not name else items[0], indent=2))
    elif args.output == "yaml":
        import yaml

        _print(yaml.safe_dump_all(items, sort_keys=False).rstrip())
    elif args.output == "name":
        for res in items:
            info = resolve_kind(res["kind"])
            _print(f"{info.kind.lower()}{'.' + info.group if info.group else ''}/{res['metadata']['name']}")
    elif kind and resolve_kind(kind).kind in KUBE_TABLES:
        rows = KUBE_TABLES[resolve_kind(kind).kind](items)
        _table(rows) if len(rows) > 1 else _print(f"No resources found in {ns} namespace.")
    else:
        rows = [("KIND", "NAME", "AGE")]
        for res in items:
            rows.append((res["kind"], res["metadata"]["name"], res["metadata"].get("creationTimestamp", "")))
        if len(rows) == 1:
            _print(f"No resources found in {ns} namespace.")
        else:
            _table(rows)
    return 0


def _pods_table(items: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("NAME", "READY", "STATUS", "RESTARTS")]
    for p in items:
        st = p["status"]
        rows.append((p["metadata"]["name"], st["ready"], st["phase"], str(st["restarts"])))
    return rows


def _deployments_table(items: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("NAME", "READY", "UP-TO-DATE", "AVAILABLE")]
    for d in items:
        st = d.get("status") or {}
        want = st.get("wanted", (d.get("spec") or {}).get("replicas", 1))
        rows.append((d["metadata"]["name"], f"{st.get('readyReplicas', 0)}/{want}", str(st.get("updatedReplicas", 0)),
                     str(st.get("availableReplicas", 0))))
    return rows


def _services_table(items: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("NAME", "TYPE", "PORT(S)", "SELECTOR")]
    for s in items:
        spec = s.get("spec") or {}
        ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or []) or "<none>"
        selector = ",".join(f"{k}={v}" for k, v in (spec.get("selector") or {}).items()) or "<none>"
        rows.append((s["metadata"]["name"], spec.get("type", "ClusterIP"), ports, selector))
    return rows


def _names_table(items: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("NAME", "AGE")]
    rows += [(o["metadata"]["name"], o["metadata"].get("creationTimestamp", "")) for o in items]
    return rows


KUBE_TABLES = {"Pod": _pods_table, "Deployment": _deployments_table, "Service": _services_table,
               "ServiceAccount": _names_table, "Namespace": _names_table}


def cmd_reset(args: argparse.Namespace) -> int:
    mesh = _mesh(args)
    for r in mesh.reset():
        _print(str(r))
    return 0


ISTIO_DOCS = "https://istio.io/v1.30/docs/reference/config/analysis"
EXIT_ANALYZER_FOUND_ISSUES = 79  # istioctl's exit code when an Error-level message was found


def cmd_analyze(args: argparse.Namespace) -> int:
    """``istioctl analyze``: the running mesh plus files, or the files alone (``--use-kube=false``)."""
    from meshkit.resources import analyze, load_paths
    from meshkit.resources.kinds import canonical_key
    from meshkit.resources.model import Origin

    namespace = None if args.all_namespaces else (args.namespace or "tutorial")
    target = "all namespaces" if namespace is None else f"namespace: {namespace}"
    objects: dict[tuple[str, str, str], dict[str, Any]] = {}
    profile = "current"
    if args.use_kube == "true":
        mesh = _mesh(args)
        profile = mesh.profile
        for obj in [*mesh.get(), *mesh.get("namespaces"), *mesh.get("services"), *mesh.get("pods")]:
            objects[canonical_key(obj)] = obj
    origins: dict[tuple[str, str, str], Origin] = {}
    parse_errors = 0
    files = [str(f) for f in args.filename or []]
    for doc in load_paths(files) if files else []:
        if doc.error is not None:
            parse_errors += 1
            print(f"Error(s) adding files: {doc.error.format()}", file=sys.stderr)
            continue
        if not isinstance(doc.data, dict):
            continue
        obj = doc.data
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else None
        if meta is not None and not meta.get("namespace") and obj.get("kind") != "Namespace":
            obj = {**obj, "metadata": {**meta, "namespace": namespace or "tutorial"}}
        key = canonical_key(obj)
        objects[key] = obj  # a file's version of a resource replaces the mesh's
        origins[key] = Origin(doc.source, doc.index, doc.line, doc.lines)
    problems = analyze(list(objects.values()), origins=origins, profile=profile, namespace=namespace)
    for problem in problems:
        _print(problem.analyze_line())
    if not problems:
        if parse_errors:
            noun = "file" if parse_errors == 1 else "files"
            print(f"No validation issues found when analyzing {target} (but {parse_errors} {noun} could not be "
                  "parsed).", file=sys.stderr)
        elif len(files) > 1:
            listed = "\n  - ".join(files)
            print(f"\u2714 No validation issues found when analyzing:\n  - {listed}", file=sys.stderr)
        elif files:
            print(f"\u2714 No validation issues found when analyzing {files[0]}.", file=sys.stderr)
        else:
            print(f"\u2714 No validation issues found when analyzing {target}.", file=sys.stderr)
    if any(p.level == "Error" for p in problems):
        print(f"Error: Analyzers found issues when analyzing {target}.\nSee {ISTIO_DOCS} for more information "
              "about causes and resolutions.", file=sys.stderr)
        return EXIT_ANALYZER_FOUND_ISSUES
    return 1 if parse_errors else 0
