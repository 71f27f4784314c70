"""One real local mesh per test module (processes on 127.0.0.1), torn down without leftovers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import meshkit
from meshkit.backends.local.backend import _alive
from meshkit.mesh import Mesh


def start_mesh(home: Path, profile: str = "current") -> Mesh:
    return meshkit.up(home=str(home), profile=profile)


def stop_mesh(mesh: Mesh) -> None:
    backend = mesh.backend
    state = backend._state()  # type: ignore[attr-defined]
    state_pods = [int(p.extra["pid"]) for p in backend.pods()]
    backend.down()
    assert state is not None
    assert not _alive(int(state["pid"]))  # down leaves no control plane behind ...
    for pod in state_pods:
        assert not _alive(pod)  # ... and no pod process


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = start_mesh(tmp_path_factory.mktemp("mesh"))
    yield m
    stop_mesh(m)


@pytest.fixture
def clean(mesh: Mesh) -> Iterator[Mesh]:
    """The module's mesh with no leftovers from the previous test."""
    mesh.reset()
    yield mesh
    mesh.reset()
    for dep in ("recommendation-v1", "recommendation-v2"):
        mesh.behave(dep)
        mesh.delay(dep, 0)
