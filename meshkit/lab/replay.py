"""Bring a learner's mesh to a lab's step, or back to a lab's start (``meshkit lab goto|reset``).

``goto`` resets the mesh as the lab's first cell does, then runs the lab's own code cells (the
hidden solutions included) from its jupytext source, up to and including step ``STEP`` — the
lab's ``## N ·`` section. The mesh then holds what the solutions build by the end of that step,
and the learner goes on with the next one. The cells run in this process, as a kernel would run
them, with the lab's parameters (``FAST`` scales the delays down).

Example::

    mesh = meshkit.connect()
    goto(mesh, "02", 4)        # load balancing, retries, timeout and circuit breaker done
    reset(mesh)                # every Istio resource gone, one healthy replica per deployment
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from meshkit.errors import MeshkitError, NotFound
from meshkit.lab import progress
from meshkit.mesh import Mesh

LABS = Path(__file__).resolve().parents[2] / "labs"


def lab_source(lab: str, labs_dir: Path | None = None) -> Path:
    """``labs/NN_slug.py`` for ``"NN"`` or ``"NN_slug"``."""
    roots = [labs_dir] if labs_dir else [LABS, Path.cwd() / "labs"]
    for root in roots:
        if root is not None and re.fullmatch(r"[\w-]+", lab):
            found = sorted(root.glob(f"{lab}*.py"))
            if found:
                return found[0]
    known = sorted(p.stem for p in LABS.glob("[0-9][0-9]_*.py"))
    raise NotFound(f"no lab {lab!r}; known: {', '.join(known)}")


def cells_through(source: Path, step: int) -> list[str]:
    """The lab's code cells after its setup cell, through the end of step ``step``."""
    sections = 0
    code: list[str] = []
    chunks = re.split(r"^# %%(.*)$", source.read_text(), flags=re.MULTILINE)
    # re.split with one group: [preamble, header1, body1, header2, body2, ...]
    for header, body in zip(chunks[1::2], chunks[2::2], strict=True):
        if "[markdown]" in header:
            heading = re.search(r"^# ## (.+)$", body, flags=re.MULTILINE)
            if heading:
                if sections == step or heading.group(1).lower().startswith("clean up"):
                    break
                sections += 1
            continue
        if "parameters" in header:
            continue
        code.append(body.strip("\n"))
    steps = len(progress.lab_steps(source.stem, source.parent))
    if not 1 <= step <= steps:
        raise MeshkitError(f"{source.stem} has steps 1 to {steps}; no step {step}")
    return code[1:]  # the first is the setup cell: goto resets and connects itself


def reset(mesh: Mesh) -> list[str]:
    """What a lab's first cell does to the mesh: no Istio resources but the gateway's, one healthy,
    undelayed replica of each default deployment and nothing else."""
    from meshkit.lab import tidy

    lines = [str(r) for r in mesh.reset()]
    tidy(mesh)
    return lines


def goto(mesh: Mesh, lab: str, step: int, fast: bool = False, labs_dir: Path | None = None) -> dict[str, Any]:
    """Reset, then replay the lab's cells through ``step``; returns the namespace they ran in."""
    from meshkit import lab as lab_module
    from meshkit.lab import check

    source = lab_source(lab, labs_dir)
    cells = cells_through(source, step)
    reset(mesh)
    progress.CURRENT["lab"] = source.stem
    namespace: dict[str, Any] = {"__name__": "__lab__", "mesh": mesh, "lab": lab_module, "check": check,
                                 "BACKEND": mesh.backend.name, "CONTEXT": None, "NAMESPACE": None,
                                 "FAST": fast, "T": 0.1 if fast else 1.0}
    for i, cell in enumerate(cells):
        try:
            exec(compile(cell, f"{source.name} cell {i + 1}", "exec"), namespace)
        except AssertionError as exc:  # a strict check: say which and stop where the lesson broke
            raise MeshkitError(f"{source.stem} step {step}: a check failed on the way: {exc}") from None
    for live in ("runner", "traffic", "push", "split", "codes", "latency"):
        stop = getattr(namespace.get(live), "stop", None)
        if callable(stop):
            stop()
    return namespace
