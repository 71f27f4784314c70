"""Shared pieces of the lab tests: the labs on disk, a throw-away mesh home, a memory sampler."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LABS = REPO / "labs"
ARTIFACTS = REPO / "artifacts"
NOTEBOOKS = sorted(LABS.glob("[0-9][0-9]_*.ipynb"))


def stop_mesh(home: Path) -> None:
    """Stop the local mesh under ``home`` if one runs, and check nothing of it is left."""
    from meshkit.backends.local.backend import LocalBackend, _alive

    backend = LocalBackend(home=home)
    state = backend._state()
    if state is None:
        return
    pods = [int(p.extra["pid"]) for p in backend.pods()]
    backend.down()
    assert not _alive(int(state["pid"])), "the control plane survived meshkit down"
    assert not any(_alive(pid) for pid in pods), "a pod survived meshkit down"


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, resident bytes) for every process we can read."""
    page = os.sysconf("SC_PAGE_SIZE")
    out: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            rss = int((entry / "statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
        out[int(entry.name)] = (ppid, rss)
    return out


def tree_rss(roots: set[int], exclude: set[int]) -> int:
    """Resident memory of ``roots`` and all their descendants, minus the ``exclude`` pids themselves."""
    procs = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    seen, stack = set(), [r for r in roots if r in procs]
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        stack.extend(children.get(pid, []))
    return sum(procs[p][1] for p in seen - exclude)


class MemorySampler:
    """Peak resident memory of this process's children (the kernel) plus the mesh under ``home``."""

    def __init__(self, home: Path, interval_s: float = 0.25) -> None:
        self.home, self.interval_s = home, interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _roots(self) -> set[int]:
        roots = {os.getpid()}
        try:
            roots.add(int(json.loads((self.home / "state.json").read_text())["pid"]))
        except (OSError, ValueError, KeyError):
            pass
        return roots

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, tree_rss(self._roots(), exclude={os.getpid()}))

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests save a screenshot of each figure output (``$MESHKIT_SCREENSHOTS``)."""
    from tests.labs.outputs import screenshot_dir

    return screenshot_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def lab_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh MESHKIT_HOME, exported so kernels and servers started by the test inherit it."""
    home = tmp_path_factory.mktemp("lab-home")
    saved = {k: os.environ.get(k) for k in ("MESHKIT_HOME", "MESHKIT_LAB_STRICT")}
    os.environ["MESHKIT_HOME"] = str(home)
    yield home
    stop_mesh(home)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
