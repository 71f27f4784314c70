"""One real local mesh (current profile) for the whole resiliency suite, cleaned between tests.

The mesh runs in a temporary MESHKIT_HOME and is always taken down; the finalizer checks that
the control plane and every pod process are gone.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meshkit import Mesh
from tests.resiliency.support import restore, start_mesh


@pytest.fixture(scope="session")
def shared_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    yield from start_mesh(tmp_path_factory.mktemp("mesh-current"), "current")


@pytest.fixture
def mesh(shared_mesh: Mesh) -> Iterator[Mesh]:
    restore(shared_mesh)
    yield shared_mesh
    restore(shared_mesh)
