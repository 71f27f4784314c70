"""The trust boundary's pieces on their own: the home, the owner credential, pod tokens, the guard."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from meshkit.backends.local.trust import (
    OWNER,
    OWNER_HEADER,
    authenticate,
    ensure_owner_credential,
    held_by_another,
    is_owner,
    owner_only,
    owner_verifier,
    pod_token,
    read_owner_credential,
    secure_home,
)
from meshkit.errors import MeshkitError
from meshkit.http1 import Request, Response, SimpleClient, serve


def test_home_is_created_0700_and_an_open_one_is_tightened(tmp_path: Path) -> None:
    home = secure_home(tmp_path / "a" / "mesh")
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    home.chmod(0o755)
    secure_home(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_a_home_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    if os.getuid() == 0:
        other = tmp_path / "theirs"
        other.mkdir()
        os.chown(other, 65534, 65534)
    else:
        other = Path("/usr")  # exists and belongs to root, never to a test user
    with pytest.raises(MeshkitError, match="belongs to another user"):
        secure_home(other)
    if os.getuid() == 0:
        assert stat.S_IMODE(other.stat().st_mode) != 0o700  # refused before anything was changed


def test_owner_credential_is_created_once_0600_and_read_back(tmp_path: Path) -> None:
    first = ensure_owner_credential(tmp_path)
    assert stat.S_IMODE((tmp_path / "owner-credential").stat().st_mode) == 0o600
    assert len(first) >= 40
    assert ensure_owner_credential(tmp_path) == first == read_owner_credential(tmp_path)
    assert read_owner_credential(tmp_path / "nowhere") is None
    other = tmp_path / "b"
    other.mkdir()
    assert ensure_owner_credential(other) != first


def test_authenticate_owner_and_pods() -> None:
    key = "k" * 43
    assert authenticate({"authorization": f"Bearer {key}"}, key) == OWNER
    assert authenticate({"authorization": f"bearer {pod_token(key, 'customer-x-1')}"}, key) == "customer-x-1"
    # a pod's token proves that pod only: renaming it or forging the MAC gets nothing
    token = pod_token(key, "customer-x-1")
    assert authenticate({"authorization": f"Bearer preference-y-2.{token.rsplit('.', 1)[1]}"}, key) is None
    assert authenticate({"authorization": f"Bearer {token[:-1]}A"}, key) is None
    assert authenticate({"authorization": f"Bearer {pod_token('another-mesh', 'customer-x-1')}"}, key) is None
    for bad in ({}, {"authorization": ""}, {"authorization": "Bearer"}, {"authorization": f"Basic {key}"},
                {"authorization": f"Bearer {key[:-1]}"}, {"authorization": "Bearer " + "a" * 300 + ".b"},
                {"authorization": "Bearer é\u2603"}):
        assert authenticate(bad, key) is None, bad


def test_is_owner_compares_the_credential_not_a_prefix() -> None:
    verifier = owner_verifier("secret-credential")
    assert is_owner({OWNER_HEADER: "secret-credential"}, verifier)
    assert not is_owner({OWNER_HEADER: "secret-credentia"}, verifier)
    assert not is_owner({OWNER_HEADER: ""}, verifier)
    assert not is_owner({}, verifier)
    assert not is_owner({OWNER_HEADER: "secret-credential"}, b"")  # a pod without a verifier trusts nobody


def test_owner_only_guard_on_a_real_listener() -> None:
    seen: list[dict[str, str]] = []

    async def app(req: Request) -> Response:
        seen.append(dict(req.headers))
        return Response(200, {}, b"secret app data")

    async def scenario() -> None:
        server = await serve(owner_only(app, owner_verifier("cred")), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        stranger = SimpleClient("127.0.0.1", port)
        resp = await stranger.request("GET", "/misbehave", {"host": "x"})
        assert resp.status == 401 and b"secret" not in resp.body
        resp = await stranger.request("GET", "/", {"host": "x", OWNER_HEADER: "wrong"})
        assert resp.status == 401
        owner = SimpleClient("127.0.0.1", port)
        resp = await owner.request("GET", "/", {"host": "x", OWNER_HEADER: "cred"})
        assert resp.status == 200 and resp.body == b"secret app data"
        # the connection proved the owner once: its later requests pass without the header
        resp = await owner.request("GET", "/", {"host": "x"})
        assert resp.status == 200
        assert all(OWNER_HEADER not in h for h in seen)  # the credential never reaches the handler
        assert len(seen) == 2
        stranger.close()
        owner.close()
        server.close()

    asyncio.run(scenario())


def test_a_port_held_by_another_user_is_recognised() -> None:
    """The kernel's record of who listens: ours is fine, nobody is fine, another uid is refused."""
    import socket

    mine = socket.socket()
    mine.bind(("127.0.0.1", 0))
    mine.listen()
    port = mine.getsockname()[1]
    assert not held_by_another(port)
    mine.close()
    assert not held_by_another(port)  # nobody: the connection will simply be refused
    if os.getuid() != 0:
        return  # only root can listen as someone else; the rest of the check ran above
    port_r, port_w = os.pipe()  # child -> parent: its port
    done_r, done_w = os.pipe()  # parent -> child: looked, you may go
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        try:
            os.setgid(65534)
            os.setuid(65534)
            theirs = socket.socket()
            theirs.bind(("127.0.0.1", 0))
            theirs.listen()
            os.write(port_w, str(theirs.getsockname()[1]).encode().ljust(8))
            os.read(done_r, 1)
        finally:
            os._exit(0)
    try:
        theirs_port = int(os.read(port_r, 8).decode())
        assert held_by_another(theirs_port)
    finally:
        os.write(done_w, b"x")
        os.waitpid(child, 0)
        for fd in (port_r, port_w, done_r, done_w):
            os.close(fd)
