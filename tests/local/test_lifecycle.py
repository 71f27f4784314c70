"""A data plane that outlives its control plane, and a control plane that can restart.

One mesh for the module, under a steady 100 requests/s through the ingress gateway while its
control plane is killed (-9), adopted by a new one, restarted, stopped with SIGTERM and finally
frozen (SIGSTOP) before ``down``. Every request is counted: none may fail.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import meshkit
from meshkit.backends.local.backend import LocalBackend
from meshkit.backends.local.processes import ProcessRecord, mesh_processes
from meshkit.mesh import Mesh
from meshkit.traffic import TrafficRunner

RATE = 100.0


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = meshkit.up(home=str(tmp_path_factory.mktemp("lifecycle")))
    yield m
    m.backend.down()  # type: ignore[attr-defined]
    assert mesh_processes(m.backend.home) == []  # type: ignore[attr-defined]


def _backend(mesh: Mesh) -> LocalBackend:
    assert isinstance(mesh.backend, LocalBackend)
    return mesh.backend


def _cp(mesh: Mesh) -> ProcessRecord:
    state = json.loads((_backend(mesh).home / "state.json").read_text())
    rec = ProcessRecord.of(int(state["pid"]))
    assert rec is not None
    return rec


def _pids(mesh: Mesh) -> dict[str, int]:
    return {p.name: int(p.extra["pid"]) for p in mesh.pods()}


class Traffic:
    """A steady load through the gateway; ``failures()`` lists every request that did not get a 200."""

    def __init__(self, mesh: Mesh) -> None:
        self.runner = TrafficRunner(mesh.backend.gateway_url(), rate=RATE, concurrency=4, max_seconds=60)

    def __enter__(self) -> Traffic:
        self.runner.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)
        self.runner.stop()

    def records(self) -> list[dict[str, object]]:
        return self.runner.records()

    def failures(self) -> list[dict[str, object]]:
        return [r for r in self.records() if r["code"] != 200]


def _wait_gone(rec: ProcessRecord, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while rec.alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not rec.alive()


def test_kill_9_of_the_control_plane_loses_nothing_and_up_adopts_the_pods(mesh: Mesh) -> None:
    backend = _backend(mesh)
    gateway, pids = backend.gateway_url(), _pids(mesh)
    version = backend.status()["version"]
    cp = _cp(mesh)
    with Traffic(mesh) as traffic:
        os.kill(cp.pid, signal.SIGKILL)
        _wait_gone(cp)
        dead_from = time.time()
        time.sleep(1.0)  # a second of traffic with no control plane at all
        dead_until = time.time()
        status = backend.status()
        assert status["control_plane"]["state"] == "down"
        assert {p["name"]: p["pid"] for p in status["pods"]} == pids
        assert all(p["ready"] and p["config_version"] >= version for p in status["pods"])
        started = time.monotonic()
        backend.up()
        adopt_s = time.monotonic() - started
    records, failures = traffic.records(), traffic.failures()
    print(f"kill -9 + up: {len(records)} requests, {len(failures)} failed; adoption took {adopt_s:.2f}s")
    assert failures == []
    assert len(records) >= RATE * 1.0
    assert backend.gateway_url() == gateway  # same URL for every notebook
    assert _pids(mesh) == pids  # adopted, not started again: one data plane
    after = backend.status()
    assert after["control_plane"]["state"] == "running" and after["version"] > version  # versions continue
    assert all(p["synced"] and p["config_version"] == after["version"] for p in after["pods"])
    # what the proxies recorded while no control plane was there reached the new one
    while_dead = {r["request_id"] for r in records if dead_from + 0.1 < float(r["t"]) < dead_until - 0.1}
    assert backend.flush_telemetry()
    logged = {r.get("request_id") for r in backend.request_log(since=dead_from - 1, limit=100_000)}
    assert while_dead and while_dead <= logged


def test_restart_restarts_only_the_control_plane_and_loses_nothing(mesh: Mesh) -> None:
    backend = _backend(mesh)
    pids, old_cp = _pids(mesh), _cp(mesh)
    version = backend.status()["version"]
    with Traffic(mesh) as traffic:
        started = time.monotonic()
        mesh.restart_control_plane()  # `meshkit restart`
        restart_s = time.monotonic() - started
        # the same through the CLI's spelling: `meshkit up --restart-control-plane`
        second = _cp(mesh)
        from meshkit.cli import main

        assert main(["--home", str(backend.home), "up", "--restart-control-plane"]) == 0
    records, failures = traffic.records(), traffic.failures()
    print(f"restart: {len(records)} requests, {len(failures)} failed; restart took {restart_s:.2f}s")
    assert failures == []
    assert not old_cp.alive() and not second.alive() and _cp(mesh).alive()
    assert _pids(mesh) == pids
    assert backend.status()["version"] > version


def test_a_pod_starting_when_its_control_plane_dies_comes_up_under_the_next_one(mesh: Mesh) -> None:
    backend = _backend(mesh)
    before = set(_pids(mesh))
    cp = _cp(mesh)
    backend._call("POST", "/scale", {"deployment": "recommendation-v2", "replicas": 2})  # no waiting for it
    os.kill(cp.pid, signal.SIGKILL)  # the new pod is still starting: no certificate, not registered yet
    _wait_gone(cp)
    backend.up()
    pods = [p for p in mesh.pods() if p.deployment == "recommendation-v2"]
    assert len(pods) == 2 and all(p.ready and p.restarts == 0 for p in pods)
    assert len({p.name for p in pods} - before) == 1  # the very pod that was starting, adopted
    mesh.scale("recommendation-v2", 1)


def test_sigterm_of_the_control_plane_leaves_the_pods_serving(mesh: Mesh, capsys: pytest.CaptureFixture[str]) -> None:
    backend = _backend(mesh)
    pids, cp = _pids(mesh), _cp(mesh)
    with Traffic(mesh) as traffic:
        os.kill(cp.pid, signal.SIGTERM)
        _wait_gone(cp)
        time.sleep(0.5)
        from meshkit.cli import main

        assert main(["--home", str(backend.home), "status"]) == 0
        out = capsys.readouterr().out
        assert "control plane: DOWN" in out and out.count("NO CONTROL PLANE") == len(pids)
        # the old API port is taken meanwhile: the next control plane listens elsewhere, and the pods
        # find it through the state file
        old_api = int(json.loads((backend.home / "state.json").read_text())["api_port"])
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", old_api))
            squatter.listen()
            backend.up()
            assert backend.status()["control_plane"]["api_port"] != old_api
    assert traffic.failures() == []
    assert _pids(mesh) == pids
    assert all(p.synced for p in mesh.pods())


def test_a_corrupt_state_file_under_a_running_mesh_never_makes_a_second_one(
        mesh: Mesh, capsys: pytest.CaptureFixture[str]) -> None:
    from meshkit.cli import main

    backend = _backend(mesh)
    state = backend.home / "state.json"
    saved = state.read_bytes()
    state.write_bytes(saved[: len(saved) // 2])
    try:
        started = time.monotonic()
        code = main(["--home", str(backend.home), "up"])
        took = time.monotonic() - started
        err = capsys.readouterr().err
        assert code != 0 and took < 2.0
        assert f"{state} is corrupt (line 1" in err and "`meshkit down`" in err and "Traceback" not in err
        control_planes = [p for p in mesh_processes(backend.home)
                          if b"controlplane" in Path(f"/proc/{p.pid}/cmdline").read_bytes()]
        assert len(control_planes) == 1
    finally:
        state.write_bytes(saved)
    # with the control plane down, verbs that need it say that the pods still serve
    cp = _cp(mesh)
    os.kill(cp.pid, signal.SIGKILL)
    _wait_gone(cp)
    assert main(["--home", str(backend.home), "get"]) != 0
    assert "control plane of the mesh" in capsys.readouterr().err
    backend.up()


def test_down_ends_everything_even_with_a_hung_control_plane(mesh: Mesh) -> None:
    backend = _backend(mesh)
    status = backend.status()
    ports = _listening_ports(backend)
    processes = mesh_processes(backend.home)
    assert len(processes) == len(status["pods"]) + 1  # the control plane and one process per pod
    cp = _cp(mesh)
    os.kill(cp.pid, signal.SIGSTOP)  # hung: it accepts connections and never answers
    try:
        started = time.monotonic()
        backend.down()
        down_s = time.monotonic() - started
    finally:
        if cp.alive():
            os.kill(cp.pid, signal.SIGKILL)
    print(f"down with a hung control plane: {down_s:.2f}s")
    assert down_s < 10
    assert not any(p.alive() for p in processes)
    assert mesh_processes(backend.home) == []
    assert _still_listening(ports, backend.home) == []
    assert not backend.is_running()


def test_two_concurrent_ups_make_one_mesh_on_the_same_gateway_port(mesh: Mesh) -> None:
    backend = _backend(mesh)
    remembered = int((backend.home / "gateway_port").read_text())
    env = {**os.environ, "MESHKIT_HOME": str(backend.home), "PYTHONPATH": str(Path(meshkit.__file__).parents[1])}
    ups = [subprocess.Popen([sys.executable, "-m", "meshkit.cli", "up"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=90) for p in ups]
    assert [p.returncode for p in ups] == [0, 0], outs
    processes = mesh_processes(backend.home)
    control_planes = [p for p in processes
                      if b"controlplane" in Path(f"/proc/{p.pid}/cmdline").read_bytes()]
    assert len(control_planes) == 1
    assert len(processes) == 1 + len(mesh.pods()) == 6
    # the gateway kept its port across down and up (TIME_WAIT connections do not count as in use)
    assert backend.gateway_url() == f"http://127.0.0.1:{remembered}"
    assert mesh.curl()[0] == 200
    # and with its control plane dead, down still ends every pod and closes every port
    ports = _listening_ports(backend)
    cp = _cp(mesh)
    os.kill(cp.pid, signal.SIGKILL)
    _wait_gone(cp)
    started = time.monotonic()
    backend.down()
    print(f"down with a dead control plane: {time.monotonic() - started:.2f}s")
    assert not any(p.alive() for p in processes) and mesh_processes(backend.home) == []
    assert _still_listening(ports, backend.home) == []


def _listening_ports(backend: LocalBackend) -> set[int]:
    status = backend.status()
    ports = {int(status["gateway_port"]), int(status["control_plane"]["api_port"])}
    return ports | {int(port) for p in status["pods"] for port in p["ports"].values()}


def _still_listening(ports: set[int], home: Path) -> list[tuple[int, str]]:
    """The mesh's ports that a process of this mesh still listens on. Found through the sockets'
    owners, not by connecting: on a shared machine another mesh may take a freed port at once."""
    inodes = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and int(local.split(":")[1], 16) in ports:  # LISTEN
            inodes[f"socket:[{inode}]"] = int(local.split(":")[1], 16)
    found = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        links = set()
        try:
            for fd in fd_dir.iterdir():
                try:
                    links.add(os.readlink(fd))
                except OSError:
                    continue  # closed meanwhile
        except OSError:
            continue  # the process is gone, or not ours to look at
        for link in links & set(inodes):
            cmdline = (fd_dir.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            found.append((inodes[link], cmdline))
    return [(port, cmd) for port, cmd in found if str(home) in cmd]
