"""Pre-flight for a learner's machine or a hub image: one verdict per line, before the class starts.

Each check answers ✓ (fine), ⚠ (works, but watch it) or ✗ (a lab will fail), with what it saw.
The sizes are the ones measured for the labs: the local mesh about 0.35 GB, a lab kernel up to
0.2 GB, JupyterLab about 0.15 GB.

Example::

    for line in run_checks("local"):
        print(line)
    # ✓ Python 3.11.2 (3.11 or newer)
    # ✓ memory: 5.1 GB available (the labs need about 0.7 GB; 1 GB recommended)
"""

from __future__ import annotations

import importlib.util
import os
import platform
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

NEED_GB, RECOMMENDED_GB = 0.7, 1.0
LAB_PACKAGES = ("jupyterlab", "ipywidgets", "plotly", "anywidget", "pandas")


@dataclass(frozen=True)
class Verdict:
    """One line of the pre-flight."""

    mark: str  # ✓ ⚠ ✗
    what: str

    def __str__(self) -> str:
        return f"{self.mark} {self.what}"

    @property
    def failed(self) -> bool:
        return self.mark == "✗"


def check_python() -> Verdict:
    v = sys.version_info
    ok = v >= (3, 11)
    return Verdict("✓" if ok else "✗", f"Python {platform.python_version()} (3.11 or newer)")


def check_packages() -> Verdict:
    missing = [p for p in LAB_PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        return Verdict("✗", f"lab packages missing: {', '.join(missing)} (pip install 'meshkit[lab]')")
    return Verdict("✓", f"lab packages: {', '.join(LAB_PACKAGES)}")


def check_server_proxy(version: str | None = "installed") -> Verdict:
    """jupyter-server-proxy for the launcher icons: 4.2 or newer (Unix-socket servers since 4.0, and the
    security fixes of 4.1.1 and 4.2.0). ``version`` is for tests; by default the installed one."""
    if version == "installed":
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as installed

        try:
            version = installed("jupyter-server-proxy")
        except PackageNotFoundError:
            version = None
    if version is None:
        return Verdict("⚠", "jupyter-server-proxy not installed: no Mesh dashboard or Kiali/Jaeger/Prometheus icons "
                            "in the launcher (pip install 'jupyter-server-proxy>=4.2')")
    parts = tuple(int(p) if p.isdigit() else 0 for p in version.split(".")[:2])
    if parts < (4, 2):
        return Verdict("⚠", f"jupyter-server-proxy {version}: older than 4.2, which fixes its known vulnerabilities; "
                            "the Mesh dashboard launcher needs its Unix sockets (4.0+)")
    return Verdict("✓", f"jupyter-server-proxy {version}: launcher icons (Mesh dashboard on a Unix socket)")


def check_ports(count: int = 20) -> Verdict:
    """The local mesh binds about 20 free ports on 127.0.0.1 (the OS picks them: no fixed port)."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
    except OSError as exc:
        return Verdict("✗", f"ports: only {len(held)} free ports on 127.0.0.1 ({exc})")
    finally:
        for s in held:
            s.close()
    return Verdict("✓", f"ports: {count} free ports on 127.0.0.1 (the mesh takes free ones only)")


def available_gb(meminfo: Path = Path("/proc/meminfo"), cgroup: Path = Path("/sys/fs/cgroup")) -> float | None:
    """Memory this process can still use: MemAvailable, capped by a cgroup v2 limit when one is set."""
    try:
        fields = dict(line.split(":", 1) for line in meminfo.read_text().splitlines() if ":" in line)
        avail = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        used = int((cgroup / "memory.current").read_text().strip())
        if limit != "max":
            avail = min(avail, int(limit) - used)
    except (OSError, ValueError):
        pass
    return avail / 2**30


def check_memory(gb: float | None = None) -> Verdict:
    gb = available_gb() if gb is None else gb
    if gb is None:
        return Verdict("⚠", "memory: could not read /proc/meminfo")
    need = f"the labs need about {NEED_GB:g} GB; {RECOMMENDED_GB:g} GB recommended"
    mark = "✓" if gb >= RECOMMENDED_GB else "⚠" if gb >= NEED_GB else "✗"
    return Verdict(mark, f"memory: {gb:.1f} GB available ({need})")


def check_cpu() -> Verdict:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    mark = "✓" if cpus >= 1 else "✗"
    return Verdict(mark, f"CPU: {cpus} core(s) usable (every lab runs on one)")


def check_backend(backend: str) -> Verdict:
    if backend == "local":
        return Verdict("✓", "backend local: nothing to install (processes on 127.0.0.1)")
    from meshkit.backends.kind.prereqs import check_prerequisites

    tools = ("docker", "kind", "kubectl") if backend == "kind" else ("kubectl",)
    found = check_prerequisites(tools, installer="auto" if backend == "kind" else "")
    if found.problems:
        return Verdict("✗", f"backend {backend}: " + " | ".join(p.splitlines()[0] for p in found.problems))
    names = ", ".join(t.name for t in found.tools)
    return Verdict("✓", f"backend {backend}: {names} found")


def check_request(home: str | None = None, start: Callable[..., object] | None = None) -> Verdict:
    """One request through the gateway and every sidecar: the running mesh's, else a throw-away one."""
    import meshkit
    from meshkit.errors import MeshkitError, MeshNotRunning

    try:
        mesh = meshkit.connect("local", **({"home": home} if home else {}))
        code, body = mesh.curl()
        where = "the running mesh"
    except MeshNotRunning:
        with tempfile.TemporaryDirectory(prefix="meshkit-doctor-") as tmp:
            started = time.monotonic()
            try:
                mesh = meshkit.up("local", home=tmp)
            except MeshkitError as exc:
                return Verdict("✗", f"one request: the mesh did not start: {str(exc).splitlines()[0]}")
            try:
                code, body = mesh.curl()
                where = f"a throw-away mesh (up in {time.monotonic() - started:.1f} s)"
            finally:
                mesh.backend.down()
    ok = code == 200 and "recommendation" in body
    return Verdict("✓" if ok else "✗", f"one request through {where}: {code} {body.strip()[:80]!r}")


def run_checks(backend: str = "local", home: str | None = None, request: bool = True) -> Iterator[Verdict]:
    yield check_python()
    yield check_packages()
    yield check_server_proxy()
    yield check_ports()
    yield check_memory()
    yield check_cpu()
    yield check_backend(backend)
    if request and backend == "local":
        yield check_request(home)
