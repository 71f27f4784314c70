"""Notebook helpers: start or reuse the mesh, load the tutorial's files, and checks that explain.

Every lab starts with ``mesh = lab.setup(backend=BACKEND)`` (start or connect, remove leftovers)
and asserts its lesson with a check, which measures the mesh and answers ✓ or ✗ with what it saw,
what was expected and a hint. Checks raise :class:`AssertionError` instead when ``strict=True`` or
when the environment variable ``MESHKIT_LAB_STRICT=1`` is set (the test suite sets it, so a lab
whose lesson does not hold fails its run). On a backend other than ``local`` config takes a moment
to reach the proxies, so checks measure again until a deadline, saying "not yet, retrying".

Example::

    from meshkit import lab
    from meshkit.lab import check
    mesh = lab.setup()
    mesh.apply(lab.istiofile("destination-rule-recommendation-v1-v2.yaml"),
               lab.istiofile("virtual-service-recommendation-v1_and_v2.yaml"))
    check.canary(mesh, v2=10)        # ✓ canary 90/10: v2 answered 9.6 % of 1000 replies (expected 10 % ± 4)
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import meshkit
from meshkit.backends.choice import remember, resolve
from meshkit.errors import MeshkitError, MeshNotRunning, NotFound
from meshkit.lab import progress
from meshkit.lab.checks import GATEWAY, STRICT_ENV, CheckResult, Checks, check, cluster_stats, overflows, poll
from meshkit.mesh import Mesh
from meshkit.resources.duration import parse_duration


def _find_istiofiles() -> Path:
    """cluster/istiofiles beside the package (a checkout), else under the working directory or its parent."""
    beside = Path(__file__).resolve().parents[2] / "cluster" / "istiofiles"
    for candidate in (beside, Path.cwd() / "cluster" / "istiofiles", Path.cwd().parent / "cluster" / "istiofiles"):
        if candidate.is_dir():
            return candidate
    return beside


ISTIOFILES = _find_istiofiles()
#: the deployments ``meshkit up`` creates, one replica each; setup() returns the mesh to them
DEFAULT_DEPLOYMENTS = {
    "customer": ("customer", "v1"),
    "preference-v1": ("preference", "v1"),
    "recommendation-v1": ("recommendation", "v1"),
    "recommendation-v2": ("recommendation", "v2"),
}
_DURATION_KEYS = frozenset({"timeout", "perTryTimeout", "fixedDelay", "interval", "baseEjectionTime",
                            "connectTimeout", "idleTimeout", "fill_interval"})


# -- setup -----------------------------------------------------------------------------------------
def setup(backend: str | None = None, profile: str = "current", home: str | Path | None = None,
          context: str | None = None, namespace: str | None = None, lab: str | None = None,
          **options: Any) -> Mesh:
    """Start the mesh (or connect to the running one) and remove every leftover of earlier labs.

    Leftovers are Istio resources (all but the ingress gateway's), extra deployments and replicas,
    misbehaving or slowed-down pods. A local mesh running another semantics profile is restarted.
    A mesh whose processes are gone (a hub culled the server) is started again from its home, on
    the same ports. ``backend``, ``context`` and ``namespace`` left ``None`` come from the hub's
    ``MESHKIT_BACKEND``/``MESHKIT_CONTEXT``/``MESHKIT_NAMESPACE``, else from what the home last ran,
    else the local mesh. ``lab`` names the notebook for the learner's progress file (in JupyterLab
    it is found by itself).

    Example::

        mesh = lab.setup()                     # local mesh under $MESHKIT_HOME
        mesh = lab.setup(backend="kind")       # real Istio
        mesh = lab.setup(backend="kube", context="workshop", namespace="alice")
    """
    choice = resolve(backend, context, namespace, home)
    opts = {**choice.options(), **options}
    name = choice.backend
    progress.CURRENT["lab"] = lab or _notebook_lab()
    try:
        mesh = meshkit.connect(name, **opts)
        if name == "local" and mesh.profile != profile:
            print(f"restarting the local mesh: it runs profile {mesh.profile!r}, this lab wants {profile!r}")
            mesh.backend.down()
            raise MeshNotRunning(str(home or ""))
    except MeshNotRunning:
        print(f"starting the {name} mesh (profile {profile}) ...", flush=True)
        mesh = meshkit.up(name, profile=profile, **opts)
    remember(choice)
    mesh.reset()
    tidy(mesh)
    pods = mesh.pods()
    print(f"mesh ready: {len(pods)} pods, profile {mesh.profile}, ingress gateway {mesh.backend.gateway_url()}")
    return mesh


class Solution:
    """Runs a hidden solution cell without printing (JupyterLab shows a cell's new output even when
    the cell's output is collapsed, so Run All would give the answer away).

    Example::

        with lab.solution():
            print(*mesh.apply(lab.istiofile("virtual-service-recommendation-v2.yaml")))
            check.all_to(mesh, "v2")
        lab.solution.show()          # what the last solution printed, for a learner who wants it
    """

    def __init__(self) -> None:
        self.captured = ""
        self._buffer: io.StringIO | None = None
        self._redirect: contextlib.redirect_stdout[io.StringIO] | None = None

    def __call__(self) -> Solution:
        return self

    def __enter__(self) -> Solution:
        self._buffer = io.StringIO()
        self._redirect = contextlib.redirect_stdout(self._buffer)
        self._redirect.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._redirect is not None and self._buffer is not None
        self._redirect.__exit__(None, None, None)
        self.captured = self._buffer.getvalue()

    def show(self) -> None:
        print(self.captured, end="")


solution = Solution()

FAST_ENV = "MESHKIT_LAB_FAST"


def fast() -> bool:
    """True when ``MESHKIT_LAB_FAST=1``: the labs scale delays and request counts down (CI, nbval)."""
    return os.environ.get(FAST_ENV, "").lower() in ("1", "true", "yes")


def _notebook_lab() -> str | None:
    """The lab this kernel runs: Jupyter Server tells the kernel its notebook in JPY_SESSION_NAME."""
    session = os.environ.get("JPY_SESSION_NAME", "")
    stem = Path(session).stem if session else ""
    return stem if stem[:2].isdigit() else None


def tidy(mesh: Mesh) -> None:
    """Bring the workloads back to the defaults: one healthy, fast replica per default deployment,
    each with its sidecar (lab 06 moves the sample to ambient; every lab starts from sidecars)."""
    from meshkit.lab.ambient import restore_sidecars

    restore_sidecars(mesh)
    from meshkit.lab.ambient import is_waypoint

    # ztunnel is part of the install (the ambient profile), a waypoint belongs to its Gateway (reset removes it)
    replicas = Counter(p.deployment for p in mesh.pods() if p.app != "ztunnel" and not is_waypoint(p))
    for deployment in replicas:
        if deployment not in DEFAULT_DEPLOYMENTS and deployment != GATEWAY:
            mesh.undeploy(deployment)
    for deployment, (service, version) in DEFAULT_DEPLOYMENTS.items():
        if deployment not in replicas:
            mesh.deploy(service, version)
        elif replicas[deployment] != 1:
            mesh.scale(deployment, 1)
        mesh.behave(deployment)
        mesh.delay(deployment, 0)


# -- files, logs and the CLI -----------------------------------------------------------------------
def pick(api: str, istio_file: str, gateway_file: str) -> str:
    """The file of a step in the API a lab runs with: ``"istio"`` (VirtualService) or ``"gateway"`` (HTTPRoute).

    Example::

        pick("gateway", "virtual-service-recommendation-v1.yaml", "httproute-recommendation-v1.yaml")
        # 'httproute-recommendation-v1.yaml'
    """
    if api not in ("istio", "gateway"):
        raise MeshkitError(f'API must be "istio" or "gateway", got {api!r}')
    return gateway_file if api == "gateway" else istio_file


def istiofile(name: str, time_scale: float = 1.0) -> str:
    """The YAML of ``cluster/istiofiles/<name>``, every duration multiplied by ``time_scale``.

    ``time_scale=0.1`` turns the tutorial's ``timeout: 1s`` into ``100ms`` (the labs' FAST mode).

    Example::

        mesh.apply(lab.istiofile("virtual-service-recommendation-timeout.yaml", time_scale=0.1))
    """
    path = ISTIOFILES / name
    if not path.is_file():
        known = ", ".join(sorted(p.name for p in ISTIOFILES.glob("*.yaml")))
        raise NotFound(f"no file {name!r} in {ISTIOFILES}; known: {known}")
    text = path.read_text()
    if time_scale == 1.0:
        return text
    docs = [_scale(doc, time_scale) for doc in yaml.safe_load_all(text) if doc]
    return yaml.safe_dump_all(docs, sort_keys=False)


def _scale(node: Any, factor: float) -> Any:
    if isinstance(node, dict):
        return {k: _format_duration(parse_duration(str(v)) * factor) if k in _DURATION_KEYS else _scale(v, factor)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_scale(v, factor) for v in node]
    return node


def _format_duration(seconds: float) -> str:
    ms = max(1, round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


@dataclass(frozen=True)
class Yaml:
    """YAML text that a notebook shows highlighted (``lab.show(...)``)."""

    text: str

    def __str__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        return f"```yaml\n{self.text.rstrip()}\n```"


def show(name_or_text: str, time_scale: float = 1.0) -> Yaml:
    """An istiofile (by name) or YAML text, displayed highlighted as a cell's last expression."""
    is_name = "\n" not in name_or_text and name_or_text.endswith((".yaml", ".yml"))
    return Yaml(istiofile(name_or_text, time_scale) if is_name else name_or_text)


def pod_of(mesh: Mesh, deployment: str, index: int = 0) -> str:
    """The name of a deployment's ``index``-th pod (pods sorted by name)."""
    pods = sorted(p.name for p in mesh.pods() if p.deployment == deployment)
    if len(pods) <= index:
        raise NotFound(f"deployment {deployment!r} has {len(pods)} pods; no pod #{index}")
    return pods[index]


def logs(mesh: Mesh, target: str, tail: int = 5) -> str:
    """The last ``tail`` lines of a pod's (or a deployment's first pod's) application log."""
    app_log = getattr(mesh.backend, "app_log", None)
    if app_log is None:
        raise MeshkitError(f"the {mesh.backend.name} backend has no application logs")
    pod = target if any(p.name == target for p in mesh.pods()) else pod_of(mesh, target)
    lines = str(app_log(pod)).splitlines()
    return "\n".join(lines[-tail:])


def cli(mesh: Mesh, *args: str) -> str:
    """Run ``meshkit ARGS...`` against this mesh, as a learner would in a terminal; returns stdout.

    Example::

        print(lab.cli(mesh, "sniff", "preference"))
    """
    home = getattr(mesh.backend, "home", None)
    base = ["--backend", mesh.backend.name] + (["--home", str(home)] if home else [])
    code = "import sys; from meshkit.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, *base, *args], capture_output=True, text=True,
                          timeout=120, check=False)
    if proc.returncode != 0:
        raise MeshkitError(f"meshkit {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


# -- telemetry shortcuts ---------------------------------------------------------------------------
def metrics(mesh: Mesh, name: str = "istio_requests_total", limit: int = 12) -> str:
    """The first ``limit`` series of metric ``name`` in the proxies' Prometheus exposition."""
    lines = [x for x in mesh.metrics().splitlines() if x.startswith((name + "{", name + " "))]
    more = f"\n... {len(lines) - limit} more series" if len(lines) > limit else ""
    return "\n".join(lines[:limit]) + more


__all__ = [
    "FAST_ENV",
    "GATEWAY",
    "ISTIOFILES",
    "STRICT_ENV",
    "CheckResult",
    "Checks",
    "Yaml",
    "check",
    "cli",
    "cluster_stats",
    "fast",
    "istiofile",
    "logs",
    "metrics",
    "overflows",
    "pick",
    "pod_of",
    "poll",
    "setup",
    "show",
    "solution",
    "tidy",
]
