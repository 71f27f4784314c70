"""Durable and clear state: a broken home stops ``up`` at once, with the file and the way out; a pod
that crashes at start fails ``up`` fast with its log; a frozen pod goes NOT READY, leaves the
endpoints and is replaced, as Kubernetes' probes do.

Only the last test keeps a mesh running (the one ``up --reset-state`` starts, with fast probes).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import meshkit
from meshkit.backends.local.backend import LocalBackend
from meshkit.backends.local.ca import CertificateAuthority
from meshkit.backends.local.processes import mesh_processes
from meshkit.cli import main
from meshkit.mesh import Mesh

FAST_PROBES = "period=0.5,timeout=0.5,readiness=2,liveness=6"
CRASHING_UVLOOP = '''\
"""Stands in for uvloop in the test's processes: recommendation-v2's pod crashes as it starts."""
import asyncio
import sys


def run(main):
    if any('"service": "recommendation"' in a and '"version": "v2"' in a for a in sys.argv):
        main.close()
        raise RuntimeError("recommendation-v2 cannot start: injected start-up crash")
    return asyncio.run(main)
'''


def _up(home: Path, *extra: str) -> tuple[int, float, str]:
    import contextlib
    import io

    err = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["--home", str(home), "up", *extra])
    return code, time.monotonic() - started, err.getvalue()


@pytest.fixture(scope="module")
def broken_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("broken")
    (home / "resources.json").write_text('[{"apiVersion": "networking.istio.io/v1", "kind": "VirtualSer')
    return home


def test_a_corrupt_state_file_stops_up_within_2s_naming_the_file(broken_home: Path) -> None:
    code, took, err = _up(broken_home)
    print(f"corrupt resources.json: up refused in {took:.2f}s")
    assert code != 0 and took < 2.0
    assert f"state file {broken_home / 'resources.json'} is corrupt (line 1" in err
    assert "meshkit up --reset-state" in err and "Traceback" not in err
    assert mesh_processes(broken_home) == []


def test_up_refuses_a_ca_certificate_that_does_not_belong_to_its_key(tmp_path: Path) -> None:
    CertificateAuthority.load_or_create(tmp_path / "ca")
    CertificateAuthority.load_or_create(tmp_path / "other")
    shutil.copy(tmp_path / "other" / "root-key.pem", tmp_path / "ca" / "root-key.pem")
    code, took, err = _up(tmp_path)
    assert code != 0 and took < 2.0
    assert f"{tmp_path / 'ca' / 'root-cert.pem'}" in err and "does not belong to the key root-key.pem" in err
    assert "--reset-state" in err and "Traceback" not in err
    assert mesh_processes(tmp_path) == []


def test_a_start_up_crash_fails_up_fast_with_the_pods_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "uvloop.py").write_text(CRASHING_UVLOOP)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(fake), *filter(None, [os.environ.get("PYTHONPATH")])]))
    home = tmp_path / "home"
    code, took, err = _up(home)
    print(f"start-up crash: up failed in {took:.2f}s")
    # the crash report, not the readiness timeout: the message names the crash, and up returned before
    # the 30 s it would have waited (start-up of the whole mesh takes 10-20 s on a saturated 2-core box)
    assert code != 0 and took < 30 and "did not become ready within" not in err
    assert "pod recommendation-v2-" in err and "before it became ready" in err
    assert "RuntimeError: recommendation-v2 cannot start: injected start-up crash" in err
    assert mesh_processes(home) == []  # a mesh that fails to come up leaves nothing running


@pytest.fixture(scope="module")
def mesh(broken_home: Path) -> Iterator[Mesh]:
    """``up --reset-state`` on the corrupt home: the broken file is set aside, the mesh starts
    (with the book-era profile, which a control plane adopting its pods must keep)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MESHKIT_PROBES", FAST_PROBES)
        code, _, err = _up(broken_home, "--reset-state", "--profile", "tutorial")
    assert code == 0, err
    assert (broken_home / "resources.json.corrupt").read_text().startswith('[{"apiVersion"')
    m = meshkit.connect(home=str(broken_home))
    yield m
    m.backend.down()  # type: ignore[attr-defined]


def test_a_frozen_pod_leaves_the_endpoints_then_is_restarted(mesh: Mesh,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    backend = mesh.backend
    assert isinstance(backend, LocalBackend)
    frozen = next(p for p in mesh.pods() if p.deployment == "recommendation-v2")
    pid = int(frozen.extra["pid"])
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        while next(p for p in mesh.pods() if p.name == frozen.name).ready:
            assert time.monotonic() - started < 10
            time.sleep(0.05)
        not_ready_s = time.monotonic() - started
        assert main(["--home", str(backend.home), "status"]) == 0
        out = capsys.readouterr().out
        assert f"{frozen.name}: Readiness probe failed:" in out and "context deadline exceeded" in out
        backend.wait_synced()
        # out of every proxy's endpoints: the traffic goes to v1 only, and none of it fails
        result = mesh.load(n=40, concurrency=4, flags=False)
        assert result.summary()["codes"] == {"200": 40} and result.summary()["versions"] == {"v1": 40}
        while frozen.name in {p.name for p in mesh.pods()}:
            assert time.monotonic() - started < 20
            time.sleep(0.05)
        restarted_s = time.monotonic() - started
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    print(f"frozen pod: NOT READY after {not_ready_s:.2f}s, replaced after {restarted_s:.2f}s")
    backend.wait_ready()
    replacement = next(p for p in mesh.pods() if p.deployment == "recommendation-v2")
    assert replacement.restarts == 1 and replacement.ready
    assert "v2" in mesh.load(n=30, concurrency=3, flags=False).summary()["versions"]
    status = json.loads(json.dumps(backend.status()))
    assert all(p["ready"] for p in status["pods"])


def test_a_new_control_plane_keeps_the_profile_of_the_pods_it_adopts(mesh: Mesh) -> None:
    backend = mesh.backend
    assert isinstance(backend, LocalBackend)
    state = json.loads((backend.home / "state.json").read_text())
    os.kill(int(state["pid"]), signal.SIGKILL)
    code, _, err = _up(backend.home)  # the default profile is "current": the running pods say otherwise
    assert code == 0, err
    assert backend.status()["profile"] == "tutorial"
