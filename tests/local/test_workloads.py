"""Pods as processes: deploy, scale, kill (and the ReplicaSet's replacement), durable state."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from meshkit.backends.local.backend import _alive
from meshkit.errors import NotFound
from meshkit.mesh import Mesh
from tests.local.conftest import start_mesh, stop_mesh


def test_kill_restarts_the_pod_under_a_new_name(clean: Mesh) -> None:
    victim = next(p for p in clean.pods() if p.deployment == "preference-v1")
    new = clean.kill(victim.name)
    assert new != victim.name and new.startswith("preference-v1-")
    assert not _alive(int(victim.extra["pid"]))
    assert clean.curl()[0] == 200  # the chain works again through the replacement


def test_scale_and_undeploy(clean: Mesh) -> None:
    clean.scale("recommendation-v2", 2)
    try:
        v2 = [p for p in clean.pods() if p.deployment == "recommendation-v2"]
        assert len(v2) == 2 and all(p.ready for p in v2)
        pods = clean.load(n=200, concurrency=4, flags=False).summary()["pods"]
        assert {p.name for p in v2} <= set(pods)  # both replicas serve traffic
    finally:
        clean.scale("recommendation-v2", 1)
    assert len([p for p in clean.pods() if p.deployment == "recommendation-v2"]) == 1


def test_unknown_names_are_reported_with_the_valid_ones(clean: Mesh) -> None:
    with pytest.raises(NotFound, match="recommendation-v1"):
        clean.misbehave("nope")
    with pytest.raises(NotFound, match="customer, preference, recommendation"):
        clean.deploy("ratings", "v1")


def test_state_survives_a_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    mesh = start_mesh(home)
    mesh.apply("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: recommendation}\n"
               "spec:\n  host: recommendation\n  subsets:\n  - {name: version-v1, labels: {version: v1}}\n")
    mesh.scale("recommendation-v2", 2)
    stop_mesh(mesh)
    assert not os.path.exists(home / "state.json")
    again = start_mesh(home)
    try:
        assert [r["metadata"]["name"] for r in again.get("destinationrule")] == ["recommendation"]
        assert len([p for p in again.pods() if p.deployment == "recommendation-v2"]) == 2
    finally:
        stop_mesh(again)


def test_two_meshes_side_by_side(clean: Mesh, tmp_path: Path) -> None:
    other = start_mesh(tmp_path / "other")
    try:
        assert other.backend.gateway_url() != clean.backend.gateway_url()
        other.apply("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: only-here}\n"
                    "spec: {host: recommendation}\n")
        assert [r["metadata"]["name"] for r in clean.get("dr")] == []
        assert other.curl()[0] == clean.curl()[0] == 200
    finally:
        stop_mesh(other)


def test_a_mesh_that_does_not_come_up_leaves_nothing_behind(tmp_path: Path) -> None:
    from meshkit.backends.local.backend import LocalBackend
    from meshkit.errors import MeshkitError

    backend = LocalBackend(home=tmp_path / "slow")
    with pytest.raises(MeshkitError, match=r"did not become ready within 0\.01s"):
        backend.up(timeout=0.01)  # far too short for any mesh: up gives up and cleans after itself
    assert not backend.is_running()
    time.sleep(1.0)  # long enough for a forgotten control plane to have started its pods
    leftovers = subprocess.run(["pgrep", "-f", f"--home {tmp_path / 'slow'}"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""


def test_an_explicit_gateway_port_in_use_is_refused(tmp_path: Path) -> None:
    import socket

    from meshkit.backends.local.backend import LocalBackend
    from meshkit.errors import MeshkitError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(MeshkitError, match=f"port {port} is already in use"):
            LocalBackend(home=tmp_path / "busy").up(gateway_port=port)
