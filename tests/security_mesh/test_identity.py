"""Workload identity on real processes: SPIFFE certificates from the mesh CA, rotated under load, and
every listener of every mesh process on loopback only.

This module's mesh runs with 4-second certificates (``MESHKIT_CERT_TTL=4``, read by the control
plane when it starts), so a few rotations happen while the tests watch.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import struct
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from meshkit.backends.local.ca import BACKDATE
from meshkit.mesh import Mesh
from tests.local.conftest import start_mesh, stop_mesh
from tests.security_mesh.conftest import GATEWAY_ID, cli, spiffe

CERT_TTL_S = 4
LOAD_S = 6.0


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    before = os.environ.get("MESHKIT_CERT_TTL")
    os.environ["MESHKIT_CERT_TTL"] = str(CERT_TTL_S)
    try:
        m = start_mesh(tmp_path_factory.mktemp("mesh-short-certs"))
    finally:
        if before is None:
            del os.environ["MESHKIT_CERT_TTL"]
        else:
            os.environ["MESHKIT_CERT_TTL"] = before
    try:
        yield m
    finally:
        stop_mesh(m)


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_every_workload_holds_its_spiffe_identity(mesh: Mesh) -> None:
    expected = {"customer": spiffe("customer"), "preference": spiffe("preference"),
                "recommendation-v1": spiffe("recommendation"), "recommendation-v2": spiffe("recommendation"),
                "istio-ingressgateway": GATEWAY_ID}
    for deployment, identity in expected.items():
        secrets = mesh.certs(deployment)
        leaf, root = secrets["default"], secrets["ROOTCA"]
        assert leaf["spiffe_id"] == identity, deployment
        assert (leaf["type"], leaf["status"], leaf["valid_cert"]) == ("Cert Chain", "ACTIVE", True)
        assert leaf["issuer"] == root["subject"] == "O=cluster.local"  # issued by the mesh's own root
        assert leaf["subject"] == ""  # Istio workload certs carry the identity in the SAN only
        assert "key_pem" not in leaf and "PRIVATE KEY" not in repr(secrets)
        assert _when(leaf["not_after"]) - _when(leaf["not_before"]) <= BACKDATE + dt.timedelta(seconds=CERT_TTL_S)


def test_cli_certs_prints_the_proxy_config_secret_table(mesh: Mesh) -> None:
    out = cli(mesh, "certs", "preference")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["RESOURCE", "NAME", "TYPE", "STATUS", "VALID", "CERT", "SERIAL", "NUMBER",
                                "NOT", "AFTER", "NOT", "BEFORE"]
    default = next(line.split() for line in lines if line.startswith("default"))
    assert default[1:5] == ["Cert", "Chain", "ACTIVE", "True"]
    int(default[5], 16)  # the serial number, in hex as istioctl prints it
    assert next(line.split()[:3] for line in lines if line.startswith("ROOTCA")) == ["ROOTCA", "CA", "ACTIVE"]
    assert f"identity: {spiffe('preference')}   issuer: O=cluster.local" in out.stdout
    missing = cli(mesh, "certs", "nosuchpod")
    assert missing.returncode != 0 and 'no pod or deployment named "nosuchpod"' in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.fixture(scope="module")
def rotation(mesh: Mesh) -> dict[str, Any]:
    """Background traffic at 50 rps for 6 s while customer's certificate is watched every 0.1 s."""
    runner = mesh.traffic(rate=50, concurrency=2).start()
    samples: list[tuple[float, dict[str, Any]]] = []
    try:
        deadline = time.monotonic() + LOAD_S
        while time.monotonic() < deadline:
            samples.append((time.time(), mesh.certs("customer")["default"]))
            time.sleep(0.1)
    finally:
        runner.stop()
    return {"requests": runner.records(), "samples": samples}


def test_rotation_drops_no_request(rotation: dict[str, Any]) -> None:
    requests = rotation["requests"]
    failed = [(r["code"], r["body"]) for r in requests if r["code"] != 200]
    assert failed == []
    first_seen: dict[str, float] = {}
    for seen_at, cert in rotation["samples"]:
        first_seen.setdefault(cert["serial_number"], seen_at)
    assert len(first_seen) >= 2, "customer's certificate was never rotated during the load"
    # the claim needs requests on both sides of every rotation, not a throughput: count the requests
    # sent while each certificate was the one presented (how many fit depends on the machine's load)
    starts = [*sorted(first_seen.values()), float("inf")]
    sent_under = [sum(1 for r in requests if a <= r["t"] < b) for a, b in pairwise(starts)]
    assert all(n > 0 for n in sent_under), f"requests sent under each certificate: {sent_under}"
    for seen_at, cert in rotation["samples"]:
        # the certificate a proxy presents is never expired, even with a 4 s lifetime
        assert cert["valid_cert"] is True
        assert _when(cert["not_before"]).timestamp() <= seen_at < _when(cert["not_after"]).timestamp()


def test_certificate_is_rotated_at_half_life(rotation: dict[str, Any]) -> None:
    """istio-agent renews a certificate once half of its life since issuance has passed, before expiry."""
    first_seen: dict[str, tuple[float, dict[str, Any]]] = {}
    for seen_at, cert in rotation["samples"]:
        first_seen.setdefault(cert["serial_number"], (seen_at, cert))
    chain = sorted(first_seen.values(), key=lambda item: item[0])
    assert len(chain) >= 3, "fewer than two rotations in 6 s of 4-second certificates"

    def issued(cert: dict[str, Any]) -> float:  # not_before is back-dated; both are whole seconds
        return (_when(cert["not_before"]) + BACKDATE).timestamp()

    # read from the certificates' own times, not from when the sampling (slow on a busy machine) saw
    # them: each replacement was issued before its predecessor expired, and not before half of the
    # predecessor's life had passed (the agent measures that life from the same whole-second times)
    for (_, old), (_, new) in pairwise(chain):
        assert issued(new) < _when(old["not_after"]).timestamp(), (old, new)
        assert issued(new) - issued(old) >= CERT_TTL_S / 2, (old, new)


# --- every listener binds 127.0.0.1 ------------------------------------------------------------------

def _listening_inodes() -> dict[int, tuple[str, int]]:
    """inode -> (local address, port) of every LISTEN TCP socket on the host."""
    found: dict[int, tuple[str, int]] = {}
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":
                continue
            addr_hex, port_hex = fields[1].split(":")
            raw = bytes.fromhex(addr_hex)
            if v6:
                words = b"".join(struct.pack("<I", w) for w in struct.unpack(">4I", raw))
                ip = socket.inet_ntop(socket.AF_INET6, words)
                ip = ip.removeprefix("::ffff:") if ip.startswith("::ffff:") and "." in ip else ip
            else:
                ip = socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(addr_hex, 16)))
            found[int(fields[9])] = (ip, int(port_hex, 16))
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return tree


def test_every_listener_of_every_mesh_process_binds_loopback(mesh: Mesh, curl_pod: str) -> None:
    assert curl_pod in {p.deployment for p in mesh.pods()}  # a pod without sidecar has listeners too
    mesh.sniff("preference", requests=1, seconds=2.0)  # and so do the sniffing relays
    state = mesh.backend._state()  # type: ignore[attr-defined]
    assert state is not None
    status = mesh.backend.status()  # type: ignore[attr-defined]
    pids = _descendants(int(state["pid"])) | {int(p["pid"]) for p in status["pods"]}
    listening = _listening_inodes()
    by_pid = {pid: [listening[i] for i in _socket_inodes(pid) if i in listening] for pid in pids}
    bound = [addr for addrs in by_pid.values() for addr in addrs]
    assert [addr for addr in bound if addr[0] != "127.0.0.1"] == []
    # the check saw the mesh's real listeners: the API, the gateway, and every port each pod announced
    ports = {port for _, port in bound}
    assert {int(state["api_port"]), int(state["gateway_port"]), int(status["time_service_port"])} <= ports
    for pod in status["pods"]:
        own = {port for _, port in by_pid[int(pod["pid"])]}
        assert pod["ports"] and set(pod["ports"].values()) <= own, pod["name"]
