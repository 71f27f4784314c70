"""Unknown pod and service names: NotFound listing the valid names; the CLI prints one line, exit 1."""

from __future__ import annotations

import pytest

from meshkit.errors import NotFound
from meshkit.mesh import Mesh
from tests.observability.conftest import cli, eventually


def test_unknown_pod_for_metrics(clean: Mesh) -> None:
    with pytest.raises(NotFound) as err:
        clean.metrics("nope")
    message = str(err.value)
    assert '"nope"' in message
    for pod in clean.pods():
        assert pod.name in message


def one_full_trace(mesh: Mesh) -> None:
    """Send one request and wait until all six proxies' spans of it reached the collector."""
    mesh.curl()
    eventually(lambda: [t for t in mesh.traces(limit=1)["data"] if len(t["spans"]) == 6], what="a full trace")


def test_unknown_service_for_traces(clean: Mesh) -> None:
    one_full_trace(clean)
    with pytest.raises(NotFound) as err:
        clean.traces("nope")
    message = str(err.value)
    assert "'nope'" in message
    for service in ("istio-ingressgateway.istio-system", "customer.tutorial", "preference.tutorial",
                    "recommendation.tutorial"):
        assert service in message
    # a known service by its short name is found
    assert clean.traces("preference", limit=1)["data"]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["metrics", "--pod", "nope"], ["customer-", "preference-v1-", "recommendation-v2-"]),
        (["traces", "--service", "nope"], ["customer.tutorial", "recommendation.tutorial"]),
        (["logs", "nope", "-c", "istio-proxy"], ["customer", "preference-v1", "recommendation-v1"]),
    ],
)
def test_cli_prints_one_line_and_exits_1(clean: Mesh, args: list[str], names: list[str]) -> None:
    one_full_trace(clean)
    out = cli(clean, *args)
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ") and "nope" in lines[0]
    assert "Traceback" not in out.stderr
    for name in names:
        assert name in lines[0]
