"""Helpers shared by the verbs: backend options, the running mesh, tables, headers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from meshkit.errors import MeshkitError
from meshkit.mesh import Mesh


def _backend_options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if args.backend == "local" and args.home:
        opts["home"] = args.home
    if args.backend == "kube":
        opts.update(context=args.context, namespace=args.namespace or "tutorial")
    return opts


def _mesh(args: argparse.Namespace) -> Mesh:
    from meshkit.backends.base import get_backend
    from meshkit.errors import MeshNotRunning

    backend = get_backend(args.backend)(**_backend_options(args))
    if not backend.is_running():
        explain = getattr(backend, "not_running_error", None)  # the local mesh: is the data plane still up?
        raise explain() if callable(explain) else MeshNotRunning(str(getattr(backend, "home", "")))
    return Mesh(backend)


def _print(line: str = "") -> None:
    print(line, flush=True)


# verbs ----------------------------------------------------------------------------------------------


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        _print("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _sources(files: list[str]) -> list[Any]:
    out: list[Any] = []
    for f in files:
        out.append(sys.stdin.read() if f == "-" else Path(f))
    return out


def _headers(values: list[str] | None) -> dict[str, str]:
    out = {}
    for h in values or []:
        name, sep, value = h.partition(":")
        if not sep:
            raise MeshkitError(f'bad header "{h}": use -H "Name: value"')
        out[name.strip().lower()] = value.strip()
    return out


def _pods_verb(action: Callable[[Mesh, argparse.Namespace], list[str]], message: str) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        for pod in action(_mesh(args), args):
            _print(f"{pod}: {message}")
        return 0

    return run


def _ref(text: str, default_kind: str | None = None) -> tuple[str | None, str]:
    """kubectl's ``KIND/NAME`` (``deployment/customer``, ``pod/customer-…``, ``svc/x``) → (kind, name)."""
    kind, sep, name = text.partition("/")
    if not sep:
        return default_kind, text
    from meshkit.resources import resolve_kind

    return resolve_kind(kind).kind, name


def _target(text: str) -> str:
    """A pod or deployment named as kubectl would (``deployment/NAME``, ``pod/NAME``) or plainly."""
    kind, name = _ref(text)
    if kind not in (None, "Pod", "Deployment"):
        raise MeshkitError(f'"{text}": expected a pod or a deployment (pod/NAME, deployment/NAME)')
    return name
