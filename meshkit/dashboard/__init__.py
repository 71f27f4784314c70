"""``meshkit dashboard``: a small read-only web view of the learner's mesh telemetry.

Served by a process jupyter-server-proxy launches (the "Mesh dashboard" launcher icon), on a Unix
socket in a directory only the learner can enter, so on a shared host (every learner on one
loopback) no other user can connect to it. Without jupyter-server-proxy it listens on 127.0.0.1 and
answers only requests carrying a random token printed with its URL.

Routes (GET and HEAD only): ``/`` the page (service graph, requests per service, recent traces,
proxy status); ``/api/graph``, ``/api/services``, ``/api/traces``, ``/api/proxies`` the same as JSON;
``?window=SECONDS`` (1-3600, default 60) for the graph and services.

Example::

    server = Dashboard(lambda: meshkit.connect(home=home), unix_socket="/run/user/1000/d/socket")
    server.serve_forever()
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import socket
import socketserver
import stat
import struct
import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from meshkit.dashboard import views
from meshkit.errors import MeshkitError
from meshkit.mesh import Mesh

HEADERS = {
    # no script may run in the page whatever a telemetry string holds; framing only by Jupyter's own page
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'self'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class DashboardError(MeshkitError):
    """The dashboard cannot serve where it was asked to (an unsafe socket directory, a taken port)."""


def check_socket_dir(path: Path) -> None:
    """Refuse a socket whose directory is not this user's alone (mode 0700 or stricter, owned by us).

    jupyter-server-proxy's ``unix_socket: True`` makes such a directory with ``mkdtemp``.
    """
    parent = path.parent
    try:
        info = parent.lstat()
    except OSError as exc:
        raise DashboardError(f"--unix-socket {path}: directory {parent}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise DashboardError(f"--unix-socket {path}: {parent} is not a directory")
    if info.st_uid != os.geteuid():
        raise DashboardError(f"--unix-socket {path}: directory {parent} belongs to uid {info.st_uid}, not to you")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise DashboardError(f"--unix-socket {path}: directory {parent} has mode "
                             f"{stat.S_IMODE(info.st_mode):04o}; other users could connect (use a 0700 directory)")


def _peer_uid(sock: socket.socket) -> int | None:
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    return int(struct.unpack("3i", creds)[1])


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "meshkit-dashboard"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            sys.stderr.write(f"dashboard: {format % args}\n")

    def _send(self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for name, value in {**HEADERS, "Content-Type": ctype, "Content-Length": str(len(body)),
                            **(extra or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, data: Any) -> None:
        self._send(code, json.dumps(data, default=str).encode(), "application/json")

    def _authorized(self, query: dict[str, list[str]]) -> bool:
        """On TCP, the token in ``?token=`` or ``Authorization: Bearer``; False after a 403.

        Not a cookie: browsers send a host's cookies to every port of it, so another user's server
        on the same loopback would receive it.
        """
        token = self.server.token
        if token is None:
            return True
        auth = self.headers.get("Authorization", "")
        given = (query.get("token") or [""])[0] or (auth[7:] if auth.lower().startswith("bearer ") else "")
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return True
        self._send(403, b"403: this dashboard answers its owner only; open the URL meshkit dashboard printed\n",
                   "text/plain; charset=utf-8")
        return False

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if not self._authorized(query):
            return
        try:
            window = float((query.get("window") or ["60"])[0])
            if not 1 <= window <= 3600 or window != window:
                raise ValueError
        except ValueError:
            self._send(400, b"400: window: must be a number of seconds from 1 to 3600\n", "text/plain; charset=utf-8")
            return
        route = url.path.rstrip("/") or "/"
        api = {f"/api/{s}": s for s in views.SECTIONS}
        if route not in api and route != "/":
            self._send(404, b"404: no such page\n", "text/plain; charset=utf-8")
            return
        try:
            mesh = self.server.connect()
        except Exception as exc:  # no mesh (MeshkitError), or its state unreadable: one line, never a traceback
            message = str(exc) if isinstance(exc, MeshkitError) else \
                f"cannot reach the mesh: {type(exc).__name__}: {exc}"
            if route in api:
                self._json(503, {"error": message})
            else:
                self._page({"window_s": window}, message)
            return
        try:
            sections = [api[route]] if route in api else list(views.SECTIONS)
            data = views.snapshot(mesh, window_s=window, sections=sections)
        except MeshkitError as exc:
            data, error = {"window_s": window}, str(exc)
        except Exception as exc:  # a bug must not kill the server or reach the page as a traceback
            sys.stderr.write(f"dashboard: {route}: {type(exc).__name__}: {exc}\n")
            data, error = {"window_s": window}, f"the dashboard failed to read the mesh ({type(exc).__name__})"
        else:
            error = ""
        finally:
            mesh.close()
        if route in api:
            self._json(503 if error else 200, {"error": error} if error else data[api[route]])
        else:
            self._page(data, error)

    def _page(self, data: dict[str, Any], error: str) -> None:
        token = f"token={self.server.token}" if self.server.token else ""
        self._send(200, views.render(data, self.server.home, error, query=token).encode(), "text/html; charset=utf-8")

    do_HEAD = do_GET

    def _refuse(self) -> None:
        self._send(405, b"405: the dashboard is read-only\n", "text/plain; charset=utf-8", {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse


class _Server(socketserver.ThreadingMixIn, socketserver.BaseServer):
    daemon_threads = True
    connect: Callable[[], Mesh]
    home: str
    token: str | None
    verbose: bool


class _UnixServer(_Server, socketserver.UnixStreamServer):
    def verify_request(self, request: Any, client_address: Any) -> bool:
        # the 0700 directory already keeps others out; the peer's uid is checked as well
        return _peer_uid(request) in (None, os.geteuid())


class _TCPServer(_Server, socketserver.TCPServer):
    allow_reuse_address = True


class Dashboard:
    """The dashboard's server on ``unix_socket`` (a path in a 0700 directory) or 127.0.0.1:``port``.

    ``connect`` returns a :class:`Mesh` per request (the mesh may come and go while the page is open).
    On TCP a ``token`` is required (one is made when none is given) in every request's ``?token=``;
    the page's links and its refresh carry it.

    Example::

        d = Dashboard(connect, port=0)
        print(d.url)           # http://127.0.0.1:PORT/?token=...
        d.serve_forever()
    """

    def __init__(self, connect: Callable[[], Mesh], *, unix_socket: str | None = None, port: int | None = None,
                 token: str | None = None, home: str = "", verbose: bool = False) -> None:
        self.server: _Server
        if unix_socket:
            path = Path(unix_socket)
            check_socket_dir(path)
            if path.is_socket():
                path.unlink()  # a stale socket of ours (the directory is ours alone)
            old = os.umask(0o077)
            try:
                self.server = _UnixServer(str(path), _Handler)
            except OSError as exc:
                raise DashboardError(f"--unix-socket {path}: {exc.strerror}") from None
            finally:
                os.umask(old)
            self.token = None
            self.url = f"unix:{path}"
            self.socket_path: Path | None = path
        else:
            self.token = token or secrets.token_urlsafe(24)
            try:
                self.server = _TCPServer(("127.0.0.1", port or 0), _Handler)
            except OSError as exc:
                raise DashboardError(f"--port {port}: {exc.strerror}") from None
            self.url = f"http://127.0.0.1:{self.server.server_address[1]}/?token={self.token}"
            self.socket_path = None
        self.server.connect, self.server.home, self.server.token = connect, home, self.token
        self.server.verbose = verbose

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.5)

    def shutdown(self) -> None:
        self.server.shutdown()
        self.close()

    def close(self) -> None:
        """Stop listening; a Unix socket's file goes too."""
        self.server.server_close()
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)
