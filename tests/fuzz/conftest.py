"""The fuzz suite: hypothesis, derandomized (the same inputs every run), bounded examples and time.

Each test counts the inputs it tried in :data:`TRIED`; the numbers are printed at the end of the
run ("fuzz inputs tried: ...").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.local.conftest import start_mesh, stop_mesh

TRIED: Counter[str] = Counter()

settings.register_profile(
    "meshkit-fuzz",
    derandomize=True,  # seeded from each test's own source: reproducible, no example database
    database=None,
    deadline=5000,  # ms per input: a hang is a failure, a slow machine is not
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TRIED:
        terminalreporter.write_line("fuzz inputs tried: " + ", ".join(f"{k} {v}" for k, v in sorted(TRIED.items())))


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    m = start_mesh(tmp_path_factory.mktemp("fuzz-mesh"))
    yield m
    stop_mesh(m)
