"""``meshkit dashboard`` on a real mesh: served over a Unix socket, through jupyter-server-proxy in a real
Jupyter server, telemetry text escaped, and nothing for another Unix user.

One mesh for the module. The hostile value travels as a request's User-Agent through the gateway and
every sidecar into the traces the page lists.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from meshkit.mesh import Mesh
from tests.local.conftest import start_mesh, stop_mesh

REPO = Path(__file__).resolve().parents[2]
HOSTILE = '<script>alert("mesh")</script><img src=x onerror=alert(1)>'
ESCAPED = "&lt;script&gt;alert(&quot;mesh&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


def request(conn: http.client.HTTPConnection, path: str, method: str = "GET",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
    finally:
        conn.close()


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    pytest.fail(f"{what} within {timeout} s (last: {last!r})")


def start_dashboard(home: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, MESHKIT_HOME=str(home), PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get(
        "PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "meshkit.cli", "dashboard", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# Stands in for `kubectl port-forward` (no cluster here): listens where it is told and answers with the
# arguments it was given and the path each request reached it with.
KUBECTL_STAND_IN = r'''
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
address, port = sys.argv[sys.argv.index("--address") + 1], int(sys.argv[-1].split(":")[0])
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"argv": sys.argv[1:], "path": self.path}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
HTTPServer((address, port), H).serve_forever()
'''


@dataclass
class Jupyter:
    proc: subprocess.Popen[bytes]
    runtime: Path
    token: str
    launched: list[tuple[int, str]] = field(default_factory=list)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dash")


@pytest.fixture(scope="module")
def jupyter(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jupyter]:
    """A Jupyter server with jupyter-server-proxy at base URL /user/learner/, for the mesh in ``home``.

    Started before the mesh (its imports take the longest) and waited for by the test that uses it.
    """
    tmp = tmp_path_factory.mktemp("jupyter")
    (tmp / "bin").mkdir()
    stand_in = tmp / "bin" / "kubectl"
    stand_in.write_text(f"#!{sys.executable}\n{KUBECTL_STAND_IN}")
    stand_in.chmod(0o755)
    token = "t" + os.urandom(12).hex()
    extra = _entry_points_dir(tmp / "ep")
    runtime = tmp / "runtime"
    env = dict(os.environ, MESHKIT_HOME=str(home), JUPYTER_RUNTIME_DIR=str(runtime),
               PATH=os.pathsep.join([str(tmp / "bin"), os.environ.get("PATH", "")]),
               JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_DATA_DIR=str(tmp / "data"),
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), str(extra or ""), os.environ.get("PYTHONPATH", ""))
                                          if p))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "jupyter_server", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False", f"--ServerApp.root_dir={tmp}",
           "--ServerApp.base_url=/user/learner/", '--ServerApp.jpserver_extensions={"jupyter_server_proxy": True}']
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    server = Jupyter(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), runtime,
                     token)
    try:
        yield server
    finally:
        # a throw-away server: no graceful shutdown to wait for; the dashboard it launched goes too
        server.proc.kill()
        server.proc.wait()
        for pid, _ in server.launched:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def mesh(home: Path, jupyter: Jupyter) -> Iterator[Mesh]:
    m = start_mesh(home)
    for _ in range(4):
        m.curl("/customer", headers={"user-agent": HOSTILE})
    yield m
    stop_mesh(m)


@pytest.fixture(scope="module")
def socket_path(mesh: Mesh) -> Iterator[str]:
    """The dashboard as the launcher runs it: a socket in a fresh mkdtemp directory (0700)."""
    sock_dir = tempfile.mkdtemp(prefix="meshkit-dash-test-")
    path = os.path.join(sock_dir, "socket")
    proc = start_dashboard(Path(mesh.backend.home), "--unix-socket", path)  # type: ignore[attr-defined]
    try:
        wait_for(lambda: request(UnixConnection(path), "/api/proxies")[0] == 200, 60, "the dashboard answers")
        yield path
    finally:
        stop(proc)
        assert not Path(path).exists()  # the dashboard removes its socket when it stops
        os.rmdir(sock_dir)


def test_pages_return_the_meshs_telemetry(mesh: Mesh, socket_path: str) -> None:
    status, headers, body = request(UnixConnection(socket_path), "/api/services?window=3600")
    assert status == 200 and headers["content-type"] == "application/json"
    rows = {r["service"]: r for r in json.loads(body)}
    assert {"customer", "preference", "recommendation"} <= set(rows)
    assert rows["customer"]["requests"] >= 4 and rows["customer"]["p50_ms"] > 0

    graph = json.loads(request(UnixConnection(socket_path), "/api/graph?window=3600")[2])
    pairs = {(e["data"]["source"], e["data"]["target"]) for e in graph["elements"]["edges"]}
    assert len(pairs) >= 6  # gateway → customer svc → customer v1 → preference svc → ... recommendation v1|v2

    traces = json.loads(request(UnixConnection(socket_path), "/api/traces")[2])
    mine = [t for t in traces if t["user_agent"] == HOSTILE]
    assert mine and mine[0]["url"].endswith("/customer") and mine[0]["spans"] >= 4

    proxies = json.loads(request(UnixConnection(socket_path), "/api/proxies")[2])
    assert {r["NAME"].split(".")[0] for r in proxies} == {p.name for p in mesh.pods() if p.sidecar}
    assert {r["CDS"] for r in proxies} == {"SYNCED"}


def test_the_page_escapes_telemetry_text_and_runs_no_script(socket_path: str) -> None:
    status, headers, page = request(UnixConnection(socket_path), "/")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    for section in ("Service graph", "Requests per service", "Recent traces", "Proxy status"):
        assert f"<h2>{section}</h2>" in page
    assert ESCAPED in page                       # shown, as text
    assert HOSTILE not in page and "<script" not in page and "<img" not in page
    assert "default-src 'none'" in headers["content-security-policy"]  # and no script could run anyway
    assert headers["x-content-type-options"] == "nosniff"


def test_read_only_and_bad_input(socket_path: str) -> None:
    for method in ("POST", "PUT", "DELETE"):
        status, headers, body = request(UnixConnection(socket_path), "/", method=method)
        assert (status, headers["allow"]) == (405, "GET, HEAD"), body
    status, _, body = request(UnixConnection(socket_path), "/api/services?window=abc")
    assert (status, body) == (400, "400: window: must be a number of seconds from 1 to 3600\n")
    assert request(UnixConnection(socket_path), "/api/services?window=99999")[0] == 400
    assert request(UnixConnection(socket_path), "/etc/passwd")[0] == 404
    assert request(UnixConnection(socket_path), "/api/services?window=30")[0] == 200


def test_socket_directory_is_the_owners_alone(socket_path: str, tmp_path: Path) -> None:
    info = os.stat(os.path.dirname(socket_path))
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.geteuid()
    assert stat.S_IMODE(os.stat(socket_path).st_mode) & 0o077 == 0
    # a directory others may enter is refused, with one line naming it
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o755)
    proc = start_dashboard(tmp_path, "--unix-socket", str(open_dir / "socket"))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in err
    assert err.strip() == (f"error: --unix-socket {open_dir}/socket: directory {open_dir} has mode 0755; "
                           "other users could connect (use a 0700 directory)")
    assert not (open_dir / "socket").exists()


def test_without_a_mesh_the_page_says_so(tmp_path: Path) -> None:
    sock_dir = tempfile.mkdtemp(prefix="meshkit-dash-test-")
    path = os.path.join(sock_dir, "socket")
    proc = start_dashboard(tmp_path / "empty-home", "--unix-socket", path)
    try:
        status, _, page = wait_for(lambda: request(UnixConnection(path), "/"), 60, "the dashboard answers")
        assert status == 200 and "no mesh is running" in page and "meshkit up" in page
        status, _, body = request(UnixConnection(path), "/api/graph")
        assert status == 503 and "no mesh is running" in json.loads(body)["error"]
    finally:
        stop(proc)
        Path(path).unlink(missing_ok=True)
        os.rmdir(sock_dir)


# -- another Unix user ------------------------------------------------------------------------------------
PROBE = r'''
import json, socket, sys, urllib.request, urllib.error
plan = json.loads(sys.stdin.read())
out = {}
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(plan["socket"]); s.sendall(b"GET /api/traces HTTP/1.0\r\n\r\n"); out["unix"] = s.recv(200).decode()
except OSError as exc:
    out["unix"] = type(exc).__name__
for name, url in plan["urls"].items():
    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            out[name] = [r.status, r.read(300).decode()]
    except urllib.error.HTTPError as exc:
        out[name] = [exc.code, exc.read(300).decode()]
    except OSError as exc:
        out[name] = [0, type(exc).__name__]
print(json.dumps(out))
'''


def test_another_user_gets_nothing(mesh: Mesh, socket_path: str) -> None:
    """As a second Unix user: the Unix socket refuses the connection; the TCP form answers 403 without the
    owner's token (and the owner, with it, gets the data)."""
    from tests.security_mesh.test_trust_boundary import _python_for, _second_user

    uid, gid = _second_user()
    python = _python_for(uid, gid)
    tcp = start_dashboard(Path(mesh.backend.home), "--port", "0")  # type: ignore[attr-defined]
    try:
        assert tcp.stdout is not None
        line = tcp.stdout.readline()
        match = re.fullmatch(r"mesh dashboard: (http://127\.0\.0\.1:(\d+)/)\?token=([\w-]+)\n", line)
        assert match, line
        base, token = match.group(1), match.group(3)
        owner = wait_for(lambda: request(http.client.HTTPConnection("127.0.0.1", int(match.group(2))),
                                         f"/api/traces?token={token}"), 60, "the TCP dashboard answers")
        assert owner[0] == 200 and HOSTILE in {t["user_agent"] for t in json.loads(owner[2])}
        plan = {"socket": socket_path, "urls": {"no_token": base + "api/traces", "page": base,
                                                "wrong_token": base + "api/traces?token=" + "x" * len(token)}}
        run = subprocess.run([python, "-I", "-S", "-c", PROBE], input=json.dumps(plan), user=uid, group=gid,
                             extra_groups=[], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        seen = json.loads(run.stdout)
    finally:
        stop(tcp)
    assert seen["unix"] == "PermissionError"
    for name in ("no_token", "page", "wrong_token"):
        status, body = seen[name]
        assert status == 403 and "owner only" in body, (name, seen[name])
        assert "spiffe" not in body and "customer" not in body and "script" not in body


# -- through jupyter-server-proxy in a real Jupyter server --------------------------------------------------
def _entry_points_dir(tmp: Path) -> Path | None:
    """A dist-info carrying pyproject's entry points when the installed meshkit's metadata predates them."""
    if {"mesh-dashboard", "kiali"} <= {ep.name for ep in entry_points(group="jupyter_serverproxy_servers")}:
        return None
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    dist = tmp / "meshkit_launchers-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: meshkit-launchers\nVersion: 0\n")
    (dist / "entry_points.txt").write_text("[jupyter_serverproxy_servers]\n" + "".join(
        f"{name} = {target}\n" for name, target in declared["jupyter_serverproxy_servers"].items()))
    return tmp


def _children_cmdlines(pid: int) -> list[tuple[int, str]]:
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append((int(proc.name), (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
        except (OSError, IndexError, ValueError):
            continue
    return out


def test_the_launcher_starts_the_dashboard_through_jupyter_server_proxy(mesh: Mesh, jupyter: Jupyter) -> None:
    info = wait_for(lambda: next(iter(jupyter.runtime.glob("jpserver-*.json")), None), 180, "Jupyter starts")
    port = json.loads(info.read_text())["port"]
    auth = {"Authorization": f"token {jupyter.token}"}

    def get(path: str) -> tuple[int, dict[str, str], str]:
        return request(http.client.HTTPConnection("127.0.0.1", port, timeout=150), path, headers=auth)

    status, _, body = wait_for(lambda: (r := get("/user/learner/server-proxy/servers-info"))[0] == 200 and r,
                               60, "servers-info answers")
    entries = {s["name"]: s["launcher_entry"] for s in json.loads(body)["server_processes"]}
    assert entries["mesh-dashboard"]["title"] == "Mesh dashboard"
    assert {"kiali", "jaeger", "prometheus"} <= set(entries)
    assert entries["mesh-dashboard"]["icon_url"] == "/user/learner/server-proxy/icon/mesh-dashboard"
    status, _, svg = get("/user/learner/server-proxy/icon/mesh-dashboard")
    assert status == 200 and svg.lstrip().startswith("<svg")

    # fresh traffic: the module's first requests may be older than the page's 60 s window on a busy machine
    for _ in range(2):
        mesh.curl("/customer", headers={"user-agent": HOSTILE})
    # the first request launches `meshkit dashboard` on a socket jupyter-server-proxy makes, then proxies
    status, _, body = get("/user/learner/mesh-dashboard/api/services")
    jupyter.launched.extend((pid, c) for pid, c in _children_cmdlines(jupyter.proc.pid)
                            if "dashboard --unix-socket" in c)
    assert status == 200, body[:500]
    assert {"customer", "preference", "recommendation"} <= {r["service"] for r in json.loads(body)}
    status, _, page = get("/user/learner/mesh-dashboard/")
    assert status == 200 and ESCAPED in page and HOSTILE not in page
    assert 'href="api/traces"' in page  # relative links: right under any prefix

    assert len(jupyter.launched) == 1, _children_cmdlines(jupyter.proc.pid)
    pid, cmdline = jupyter.launched[0]
    sock = cmdline.split("--unix-socket", 1)[1].split()[0]
    assert stat.S_IMODE(os.stat(os.path.dirname(sock)).st_mode) == 0o700
    # no TCP listener of the dashboard: its process holds only the Unix socket
    net = Path("/proc/net/tcp").read_text() + Path("/proc/net/tcp6").read_text()
    inodes = {os.readlink(f).split("[")[1].rstrip("]") for f in Path(f"/proc/{pid}/fd").iterdir()
              if os.readlink(f).startswith("socket:[")}
    listening = {line.split()[9] for line in net.splitlines()[1:] if line.split()[3] == "0A"}
    assert not inodes & listening
    # without the Jupyter token, the proxy refuses (Jupyter's own auth guards the launcher's process)
    status, _, _ = request(http.client.HTTPConnection("127.0.0.1", port, timeout=60),
                           "/user/learner/mesh-dashboard/api/traces")
    assert status in (302, 403)


def test_kind_launchers_run_port_forward_on_loopback_and_keep_the_addons_paths(mesh: Mesh, jupyter: Jupyter) -> None:
    """With a stand-in kubectl (no cluster here): jupyter-server-proxy runs each addon's port-forward on a free
    loopback port and sends Kiali and Jaeger the path with Jupyter's base URL kept (their UIs' own base path
    when Jupyter is at /), Prometheus the path with it removed."""
    info = wait_for(lambda: next(iter(jupyter.runtime.glob("jpserver-*.json")), None), 180, "Jupyter starts")
    port = json.loads(info.read_text())["port"]

    def get(path: str) -> tuple[int, dict[str, str], str]:
        return request(http.client.HTTPConnection("127.0.0.1", port, timeout=150), path,
                       headers={"Authorization": f"token {jupyter.token}"})

    entries = {s["name"]: s["launcher_entry"] for s in json.loads(get("/user/learner/server-proxy/servers-info")[2])[
        "server_processes"]}
    assert all(entries[name]["enabled"] for name in ("kiali", "jaeger", "prometheus"))  # kubectl is on PATH
    context = os.environ.get("MESHKIT_CONTEXT") or "kind-meshkit"
    for name, service, target, path, seen in (
            ("kiali", "svc/kiali", 20001, "", "/user/learner/kiali/"),
            ("jaeger", "svc/tracing", 80, "search", "/user/learner/jaeger/search"),
            ("prometheus", "svc/prometheus", 9090, "query?g0.expr=up", "/query?g0.expr=up")):
        status, _, body = get(f"/user/learner/{name}/{path}")
        jupyter.launched.extend((pid, c) for pid, c in _children_cmdlines(jupyter.proc.pid) if "port-forward" in c)
        assert status == 200, body[:300]
        answer = json.loads(body)
        argv = answer["argv"]
        assert argv[:-2] == ["--context", context, "--namespace", "istio-system", "port-forward",
                             "--address", "127.0.0.1"] and argv[-2] == service
        local, remote = argv[-1].split(":")
        assert local.isdigit() and int(local) != port and remote == str(target)
        assert answer["path"] == seen
