"""The local mesh's trust boundary: the owner's credential and each pod's bootstrap token.

A mesh belongs to the Unix user who ran ``meshkit up``. Three kinds of proof, all cheap to check:

* **The owner credential** — a random secret in ``MESHKIT_HOME/owner-credential`` (0600, the home
  0700), created at ``up``. The CLI and :class:`~meshkit.mesh.Mesh` read it from there; anyone who
  cannot read the home cannot use the mesh, as a kubeconfig guards a cluster. The control plane's
  API takes it as ``authorization: Bearer <credential>``; a pod's owner-only ports (the app, a
  sidecar's outbound listener, the admin port) take it as ``x-meshkit-owner: <credential>``
  (another header than ``authorization``, which belongs to the apps' JWTs).
* **A pod's bootstrap token** — handed by the control plane to one pod process at spawn (in its
  environment, never on its command line), as Kubernetes mounts a service-account token that
  istiod's CA and xDS server then check. It reads ``<pod name>.<mac>``: the MAC binds it to that
  pod alone, and a restarted control plane re-derives it from the owner credential.
* **The owner verifier** — what a pod keeps to recognise the owner: the SHA-256 of the owner
  credential, so a pod never holds the credential itself.

Guarding a listener of a pod (for example a new admin endpoint) takes one line: wrap the
listener's handler, and every request on it must come from the owner. The check runs once per
connection (then one dict lookup per request) and strips the header before the handler sees it::

    verifier = owner_verifier_from_env()            # in the pod process, set at spawn
    server = await serve(owner_only(handler, verifier), "127.0.0.1", 0)

A client (the CLI, ``Mesh``) sends the credential it read from the home, and never to a port that
another user holds (a dead process's port can be taken: :func:`held_by_another` asks the kernel)::

    if not held_by_another(port):
        headers = {OWNER_HEADER: read_owner_credential(home)}

The pods' Envoy admin endpoints (``/config_dump``, ``/clusters``, ``/stats``...) are all served by
``Pod.admin``, which the pod already wraps with :func:`owner_only`; a backend method reaching them
builds its request with ``LocalBackend._owner_request(port, path)``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import secrets
import socket
import stat
import struct
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from meshkit.errors import MeshkitError
from meshkit.http1 import Request, Response

OWNER_FILE = "owner-credential"
OWNER_HEADER = "x-meshkit-owner"
POD_TOKEN_ENV = "MESHKIT_POD_TOKEN"
OWNER_VERIFIER_ENV = "MESHKIT_OWNER_VERIFIER"
_CONN_KEY = "meshkit.owner"  # per-connection mark: this connection proved the owner once
_UNAUTHORIZED = b'{"error": "unauthorized: this mesh belongs to another user"}'

Handler = Callable[[Request], Awaitable[Response]]


def secure_home(home: Path) -> Path:
    """Create ``home`` with mode 0700 (or tighten it to 0700); refuse a home owned by another user.

    >>> secure_home(Path(tempfile.mkdtemp()) / "mesh").stat().st_mode & 0o777   # doctest: +SKIP
    448
    """
    home = Path(home)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = home.stat()
    if info.st_uid != os.getuid():
        raise MeshkitError(f"{home} belongs to another user (uid {info.st_uid}): choose your own MESHKIT_HOME")
    if stat.S_IMODE(info.st_mode) != 0o700:
        home.chmod(0o700)
    return home


def ensure_owner_credential(home: Path) -> str:
    """The home's owner credential, created (0600, from the start) when it does not exist yet."""
    path = Path(home) / OWNER_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        credential = read_owner_credential(home)
        if credential is None:
            raise MeshkitError(f"{path} is empty or unreadable: remove it and run meshkit up again") from None
        return credential
    credential = secrets.token_urlsafe(32)
    try:
        os.write(fd, credential.encode())
    finally:
        os.close(fd)
    return credential


def read_owner_credential(home: Path) -> str | None:
    """The owner credential of the mesh in ``home``, or None when there is none (or it is not ours)."""
    try:
        value = (Path(home) / OWNER_FILE).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return value or None


def owner_verifier(credential: str) -> bytes:
    """What a pod keeps to recognise the owner: the credential's SHA-256."""
    return hashlib.sha256(credential.encode()).digest()


def owner_verifier_from_env() -> bytes:
    """The verifier the control plane gave this pod at spawn (hex in ``MESHKIT_OWNER_VERIFIER``).

    Without one (a pod started by hand) nobody is the owner: owner-only ports answer 401 to all.
    """
    try:
        return bytes.fromhex(os.environ.get(OWNER_VERIFIER_ENV, ""))
    except ValueError:
        return b""


def is_owner(headers: Mapping[str, str], verifier: bytes) -> bool:
    """True when ``headers`` carry the owner credential matching ``verifier`` (constant time)."""
    presented = headers.get(OWNER_HEADER)
    if not presented or len(verifier) != hashlib.sha256().digest_size:
        return False
    return hmac.compare_digest(hashlib.sha256(presented.encode("latin-1", "replace")).digest(), verifier)


def unauthorized() -> Response:
    """The short answer to anyone who is not the owner: no data, connection closed."""
    return Response(401, {"content-type": "application/json", "www-authenticate": "Bearer"}, _UNAUTHORIZED, False)


def forbidden(why: str) -> Response:
    body = ('{"error": "forbidden: ' + why.replace('"', "'") + '"}').encode()
    return Response(403, {"content-type": "application/json"}, body, False)


def owner_only(handler: Handler, verifier: bytes) -> Handler:
    """Wrap a pod listener's handler so that only the mesh's owner can use it.

    The first request on a connection must carry ``x-meshkit-owner``; a connection that proved it
    once is trusted for its later requests (a cheap per-connection check, no crypto per request).
    The header never reaches ``handler`` (nor, through a sidecar, any upstream).

    Example::

        admin = await serve(owner_only(pod.admin, owner_verifier_from_env()), "127.0.0.1", 0)
    """

    async def guarded(req: Request) -> Response:
        conn = req.connection
        if conn is None or not conn.get(_CONN_KEY):
            if not is_owner(req.headers, verifier):
                return unauthorized()
            if conn is not None:
                conn[_CONN_KEY] = True
        req.headers.pop(OWNER_HEADER, None)
        return await handler(req)

    return guarded


@functools.lru_cache(maxsize=4096)
def pod_token(credential: str, pod: str) -> str:
    """The bootstrap token of ``pod`` in the mesh whose owner credential is ``credential``.

    >>> pod_token("k", "customer-abc").startswith("customer-abc.")
    True
    """
    mac = hmac.new(credential.encode(), b"meshkit-pod-token\x00" + pod.encode(), hashlib.sha256).digest()
    return f"{pod}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def bearer(headers: Mapping[str, str]) -> str | None:
    """The token of an ``authorization: Bearer ...`` header, or None."""
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


OWNER = "owner"


def authenticate(headers: Mapping[str, str], credential: str) -> str | None:
    """Who is calling the control plane: :data:`OWNER`, a pod's name (its token checked), or None.

    A pod's name is only claimed by its token; whether that pod exists is the caller's check.

    >>> authenticate({"authorization": "Bearer " + pod_token("k", "p-1")}, "k")
    'p-1'
    >>> authenticate({"authorization": "Bearer guess"}, "k") is None
    True
    """
    token = bearer(headers)
    if token is None:
        return None
    if hmac.compare_digest(token.encode("latin-1", "replace"), credential.encode()):
        return OWNER
    pod, dot, _ = token.rpartition(".")
    if not dot or not pod or len(pod) > 253:  # no pod has a longer name; keeps the cache small
        return None
    if hmac.compare_digest(token.encode("latin-1", "replace"), pod_token(credential, pod).encode()):
        return pod
    return None


# A port is only an address: when a mesh process dies, another local user may bind its port and
# wait for the owner's credential or a pod's token. Before handing a secret to a port, a client
# checks that every socket listening there belongs to its own user (the kernel's record, asked over
# sock_diag netlink, which filters by port: well under a millisecond where /proc/net/tcp can take
# tens), as a kubeconfig pins its API server's certificate.
_SOCK_DIAG_BY_FAMILY = 20
_NETLINK_SOCK_DIAG = 4
_TCP_LISTEN = 10
_REACHES_LOOPBACK_V4 = (bytes([127, 0, 0, 1]), bytes(4))  # 127.0.0.1, 0.0.0.0
_REACHES_LOOPBACK_V6 = (bytes(16), bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1]))  # ::, ::ffff:127.0.0.1


def listening_uids(port: int) -> set[int] | None:
    """The uids of the sockets listening where a connection to 127.0.0.1:``port`` can land, or None
    when the kernel cannot be asked (no Linux netlink): then nobody is checked, nobody refused."""
    uids: set[int] = set()
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as nl:
            nl.settimeout(2.0)
            for seq, (family, reach) in enumerate(((socket.AF_INET, _REACHES_LOOPBACK_V4),
                                                    (socket.AF_INET6, _REACHES_LOOPBACK_V6)), 1):
                sockid = struct.pack("!HH16s16s", port, 0, b"", b"") + struct.pack("=I2I", 0, 0, 0)
                req = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 1 << _TCP_LISTEN) + sockid
                nl.send(struct.pack("=IHHII", 16 + len(req), _SOCK_DIAG_BY_FAMILY, 0x301, seq, 0) + req)
                if not _collect(nl, seq, port, reach, uids):
                    return None
    except OSError:
        return None
    return uids


def _collect(nl: socket.socket, seq: int, port: int, reach: tuple[bytes, ...], uids: set[int]) -> bool:
    while True:
        data = nl.recv(65536)
        offset = 0
        while offset + 16 <= len(data):
            length, kind, _, got_seq, _ = struct.unpack_from("=IHHII", data, offset)
            if length < 16:
                return False
            if got_seq == seq:
                if kind == 3:  # NLMSG_DONE
                    return True
                if kind == 2:  # NLMSG_ERROR: sock_diag unavailable here
                    return False
                body = offset + 16
                sport = struct.unpack_from("!H", data, body + 4)[0]
                src = data[body + 8: body + 8 + (4 if reach is _REACHES_LOOPBACK_V4 else 16)]
                if sport == port and src in reach:
                    uids.add(struct.unpack_from("=I", data, body + 64)[0])
            offset += (length + 3) & ~3


def peer_uid(server_port: int, client_port: int) -> int | None:
    """The uid owning the client end of a loopback TCP connection to our ``server_port`` from
    ``client_port`` (the kernel's record, one exact sock_diag lookup), or None when it cannot be asked.
    A listener that stands in for a pod's own capture (ztunnel's outbound) serves only its user's
    processes, as only the pod's network namespace reaches ztunnel's 15001 in Istio.

    >>> peer_uid(1, 1) is None or True      # no such connection: None
    True
    """
    loopback = bytes([127, 0, 0, 1]) + bytes(12)
    sockid = struct.pack("!HH16s16s", client_port, server_port, loopback, loopback)
    sockid += struct.pack("=I2I", 0, 0xFFFFFFFF, 0xFFFFFFFF)  # any interface, no cookie: an exact lookup
    req = struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as nl:
            nl.settimeout(2.0)
            nl.send(struct.pack("=IHHII", 16 + len(req), _SOCK_DIAG_BY_FAMILY, 0x1, 1, 0) + req)
            data = nl.recv(65536)
    except OSError:
        return None
    if len(data) < 16 + 68:
        return None
    _, kind, _, _, _ = struct.unpack_from("=IHHII", data, 0)
    if kind != _SOCK_DIAG_BY_FAMILY:
        return None  # NLMSG_ERROR: no such socket, or sock_diag unavailable
    uid: int = struct.unpack_from("=I", data, 16 + 64)[0]
    return uid


def held_by_another(port: int) -> bool:
    """True when another user listens where a connection to 127.0.0.1:``port`` can land.

    Nobody listening is not refused here (the connection fails on its own), nor is a kernel that
    cannot be asked.

    >>> held_by_another(1)   # nothing listens there
    False
    """
    uids = listening_uids(port)
    return bool(uids) and uids != {os.getuid()}
