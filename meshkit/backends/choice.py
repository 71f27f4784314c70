"""Which backend, context and namespace a command or a lab means, whichever door it came through.

Precedence, first that says something wins: what was given explicitly (a CLI flag before or after
the verb, the lab's parameters cell), then the environment a hub sets for every learner
(``MESHKIT_BACKEND``, ``MESHKIT_CONTEXT``, ``MESHKIT_NAMESPACE``), then what the mesh home remembers
from its last ``up`` (``<home>/backend.json``), then the local backend.

Example::

    choice = resolve(namespace="alice")          # backend from $MESHKIT_BACKEND or the home
    mesh = meshkit.connect(choice.backend, **choice.options())
    remember(choice)                             # the next command in this home needs no flags
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from meshkit.errors import MeshkitError

ENV = {"backend": "MESHKIT_BACKEND", "context": "MESHKIT_CONTEXT", "namespace": "MESHKIT_NAMESPACE"}
FILE = "backend.json"


def default_home(home: str | Path | None = None) -> Path:
    return Path(home or os.environ.get("MESHKIT_HOME") or Path.home() / ".meshkit")


@dataclass(frozen=True)
class Choice:
    """A backend and where it points; ``options()`` are its constructor's keyword arguments."""

    backend: str
    context: str | None = None
    namespace: str | None = None
    home: str | None = None

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if self.home:
            opts["home"] = self.home
        if self.backend == "kube":
            if not self.context or not self.namespace:
                raise MeshkitError(
                    "the kube backend needs a context and a namespace: --context CTX --namespace NAME, "
                    "CONTEXT = ... and NAMESPACE = ... in a lab's parameters cell, or MESHKIT_CONTEXT and "
                    "MESHKIT_NAMESPACE set by the hub"
                )
            opts.update(context=self.context, namespace=self.namespace)
        elif self.backend == "kind" and self.namespace:
            opts["namespace"] = self.namespace
        return opts


def remembered(home: str | Path | None = None) -> dict[str, str]:
    """What ``<home>/backend.json`` says ({} when nothing or something unreadable is there)."""
    try:
        data = json.loads((default_home(home) / FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: str(v) for k, v in data.items() if k in ENV and isinstance(v, str) and v} if isinstance(data, dict) \
        else {}


def resolve(backend: str | None = None, context: str | None = None, namespace: str | None = None,
            home: str | Path | None = None) -> Choice:
    """The backend, context and namespace meant, by the precedence in the module docstring."""
    given = {"backend": backend, "context": context, "namespace": namespace}
    memory = remembered(home)
    # a remembered context or namespace belongs to the remembered backend only
    meant = given["backend"] or os.environ.get(ENV["backend"]) or memory.get("backend")
    same_backend = meant == memory.get("backend")
    values: dict[str, str | None] = {}
    for key, value in given.items():
        values[key] = value or os.environ.get(ENV[key]) or (memory.get(key) if same_backend or key == "backend"
                                                             else None) or None
    return Choice(values["backend"] or "local", values["context"], values["namespace"],
                  str(home) if home else None)


def remember(choice: Choice) -> None:
    """Write the choice into its home, so later commands there mean the same mesh."""
    path = default_home(choice.home) / FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in asdict(choice).items() if k in ENV and v}
        path.write_text(json.dumps(data, indent=2) + "\n")
    except OSError:
        pass
