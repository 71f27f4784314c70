"""The mesh belongs to its owner: another Unix user, pods' tokens, and bad API input on a real mesh.

One mesh for the module, under STRICT mTLS, with a TLS credential on the gateway (a private key a
stranger must never see). The headline test runs a prober as a second Unix user against every
port the mesh's processes listen on, then checks as the owner that nothing changed.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshkit.backends.local.ca import csr_for, spiffe_id_for
from meshkit.backends.local.tls import make_self_signed
from meshkit.backends.local.trust import OWNER_HEADER, pod_token
from meshkit.mesh import Mesh
from meshkit.telemetry.record import FIELDS, RequestRecord
from tests.local.conftest import start_mesh, stop_mesh
from tests.security_mesh.conftest import istiofile
from tests.security_mesh.test_identity import _descendants, _listening_inodes, _socket_inodes

PROBE_USER = "meshkit-probe"
# what must never reach a stranger, whatever port answered
SECRET_MARKERS = ("PRIVATE KEY", "BEGIN CERTIFICATE", "spiffe://", "istio_requests_total", "VirtualService",
                  "PeerAuthentication", '"resources"', '"records"', '"pods"', '"endpoints"', "eyJ")


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    mesh = start_mesh(tmp_path_factory.mktemp("trust"))
    try:
        mesh.apply(istiofile("peer-authentication-all-strict.yaml"))
        cert, key = make_self_signed(["customer.example.com"])
        mesh.create_tls_secret("customer-credential", cert, key)
        mesh.create_tls_secret("unused-credential", cert, key)  # no Gateway names it
        mesh.apply(istiofile("gateway-customer-https.yaml"))
        yield mesh
    finally:
        stop_mesh(mesh)


def _state(mesh: Mesh) -> dict[str, Any]:
    state = mesh.backend._state()  # type: ignore[attr-defined]
    assert state is not None
    return dict(state)


def _home(mesh: Mesh) -> Path:
    return Path(mesh.backend.home)  # type: ignore[attr-defined]


def _credential(mesh: Mesh) -> str:
    return (_home(mesh) / "owner-credential").read_text()


def _api(mesh: Mesh, method: str, path: str, body: Any = None, token: str | None = None,
         raw: bytes | None = None) -> tuple[int, Any]:
    """One request to the control plane, as whoever ``token`` says (the owner by default)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(f"http://127.0.0.1:{_state(mesh)['api_port']}{path}", data=data, method=method,
                                 headers={"authorization": f"Bearer {token or _credential(mesh)}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        text = exc.read().decode()
        return exc.code, json.loads(text) if text.startswith("{") else text


# --- the home ------------------------------------------------------------------------------------

def test_home_and_secrets_are_the_owners_alone(strict: Mesh) -> None:
    home = _home(strict)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for secret in ("owner-credential", "ca/root-key.pem", "secrets.json"):
        assert stat.S_IMODE((home / secret).stat().st_mode) == 0o600, secret


def test_no_token_on_any_pods_command_line(strict: Mesh) -> None:
    """/proc/PID/cmdline is world-readable; the bootstrap token travels in the environment (owner-only)."""
    credential = _credential(strict)
    for pod in strict.pods():
        cmdline = Path(f"/proc/{pod.extra['pid']}/cmdline").read_bytes().decode(errors="replace")
        assert pod.name in cmdline  # the right process
        assert pod_token(credential, pod.name).split(".")[1] not in cmdline
        assert credential not in cmdline
        assert stat.S_IMODE(Path(f"/proc/{pod.extra['pid']}/environ").stat().st_mode) == 0o400


# --- pods' bootstrap tokens ----------------------------------------------------------------------

def _pod(mesh: Mesh, app: str) -> str:
    return next(p.name for p in mesh.pods() if p.app == app)


def test_a_pods_token_gets_its_own_config_certificate_and_nothing_else(strict: Mesh) -> None:
    credential = _credential(strict)
    customer, preference, gateway = (_pod(strict, a) for a in ("customer", "preference", "istio-ingressgateway"))
    token = pod_token(credential, customer)

    status, snapshot = _api(strict, "GET", f"/xds?pod={customer}&version=0", token=token)
    assert status == 200 and snapshot["secrets"] == {}  # a sidecar never receives the gateway's keys
    status, snapshot = _api(strict, "GET", f"/xds?pod={gateway}&version=0", token=pod_token(credential, gateway))
    assert status == 200 and "PRIVATE KEY" in snapshot["secrets"]["customer-credential"]["key"]
    assert set(snapshot["secrets"]) == {"customer-credential"}  # only what a Gateway names, even there

    # a certificate for its own identity, from a CSR: the answer carries no private key
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    own = csr_for(key, spiffe_id_for("tutorial", "customer"))
    status, cert = _api(strict, "POST", "/certs", {"pod": customer, "csr": own}, token=token)
    assert status == 200 and cert["spiffe_id"] == "spiffe://cluster.local/ns/tutorial/sa/customer"
    assert "key_pem" not in cert and "PRIVATE" not in json.dumps(cert)

    # ... and never for someone else's
    theirs = csr_for(key, spiffe_id_for("tutorial", "recommendation"))
    status, body = _api(strict, "POST", "/certs", {"pod": customer, "csr": theirs}, token=token)
    assert status == 403 and "asks for spiffe://cluster.local/ns/tutorial/sa/recommendation" in body["error"]
    # ... nor for a key neither istio-agent nor ztunnel would make: the refusal names the pod, field and key
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = csr_for(rsa.generate_private_key(65537, 1024), spiffe_id_for("tutorial", "customer"))
    status, body = _api(strict, "POST", "/certs", {"pod": customer, "csr": weak}, token=token)
    assert (status, body["error"]) == (403, f"certificate signing refused: pod {customer}: csr: the CSR's key is "
                                            "RSA 1024; the CA signs RSA keys of 2048 to 4096 bits and ECDSA P-256 "
                                            "or P-384 keys")
    denied: list[tuple[str, str, Any]] = [
        ("GET", f"/xds?pod={preference}&version=0", None),
        ("POST", "/certs", {"pod": preference, "csr": own}),
        ("POST", "/register", {"pod": preference, "ports": {"inbound": 1}}),
        ("GET", "/status", None),
        ("GET", "/resources", None),
        ("GET", "/records", None),
        ("POST", "/token", {"claims": {"role": "admin"}}),
        ("POST", "/apply", {"resources": []}),
        ("POST", "/scale", {"deployment": "recommendation-v2", "replicas": 0}),
        ("POST", "/shutdown", {}),
    ]
    for method, path, body in denied:
        status, answer = _api(strict, method, path, body, token=token)
        assert status == 403, (path, status, answer)
        assert set(answer) == {"error"}, path

    # a token for a pod that does not exist, or forged, proves nothing
    assert _api(strict, "GET", "/xds?pod=ghost-1&version=0", token=pod_token(credential, "ghost-1"))[0] == 401
    assert _api(strict, "GET", f"/xds?pod={customer}&version=0", token=f"{customer}.AAAA")[0] == 401
    assert _api(strict, "GET", "/status", token=pod_token("another-mesh", customer))[0] == 401


def _rows(*records: RequestRecord) -> dict[str, Any]:
    return {"rows": [[getattr(r, f) for f in FIELDS] for r in records]}


def test_telemetry_rows_are_taken_only_from_their_own_pod(strict: Mesh, capsys: pytest.CaptureFixture[str]) -> None:
    """A pod's token ships rows about that pod's own side only; strangers and the owner ship none."""
    credential = _credential(strict)
    customer = _pod(strict, "customer")
    token = pod_token(credential, customer)
    me = {"source_workload": "customer", "source_app": "customer", "source_version": "v1",
          "source_principal": "spiffe://cluster.local/ns/tutorial/sa/customer"}
    started = time.time()

    def row(tag: str, **fields: Any) -> RequestRecord:
        return RequestRecord(**{"proxy": customer, "reporter": "source", "start_time": time.time(),
                                "request_id": f"posted-{tag}-{started}", **me, **fields})

    lies = {
        "other-source": row("other-source", source_workload="recommendation-v2", source_app="recommendation",
                            source_version="v2"),
        "other-principal": row("other-principal",
                               source_principal="spiffe://cluster.local/ns/tutorial/sa/recommendation"),
        "other-destination": row("other-destination", reporter="destination",
                                 destination_workload="recommendation-v2", destination_app="recommendation",
                                 destination_version="v2"),
        "other-proxy": row("other-proxy", proxy=_pod(strict, "preference")),
        "waypoint": row("waypoint", reporter="waypoint"),
    }
    for tag, lie in lies.items():
        status, answer = _api(strict, "POST", "/telemetry", _rows(lie), token=token)
        assert status == 403 and "a pod reports as itself only" in answer["error"], (tag, status, answer)
    # nobody else ships rows at all: no token, a forged one, another mesh's, or the owner's credential
    honest = _rows(row("honest"))
    assert _api(strict, "POST", "/telemetry", raw=json.dumps(honest).encode(), token="-")[0] == 401
    assert _api(strict, "POST", "/telemetry", honest, token=f"{customer}.AAAA")[0] == 401
    assert _api(strict, "POST", "/telemetry", honest, token=pod_token("another-mesh", customer))[0] == 401
    status, answer = _api(strict, "POST", "/telemetry", honest)
    assert status == 403 and "from a pod's proxy only" in answer["error"]
    unauthenticated = urllib.request.Request(f"http://127.0.0.1:{_state(strict)['api_port']}/telemetry",
                                             data=json.dumps(honest).encode(), method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(unauthenticated, timeout=30)
    assert refused.value.code == 401

    # the pod's own row, with its own token, is taken
    assert _api(strict, "POST", "/telemetry", honest, token=token) == (200, {"ok": True})
    kept = {r["request_id"] for r in strict.request_log(since=started - 1) if r["request_id"].startswith("posted-")}
    assert kept == {f"posted-honest-{started}"}
    status = strict.backend.status()  # type: ignore[attr-defined]
    assert status["telemetry"]["refused"] >= len(lies)
    assert next(p for p in status["pods"] if p["name"] == customer)["telemetry_refused"] == len(lies)
    assert "reporter 'waypoint' from " + customer + ", which is no waypoint" in status["telemetry"]["last_refusal"]
    from meshkit.cli import main

    capsys.readouterr()
    assert main(["--home", str(_home(strict)), "status"]) == 0
    assert f"telemetry: {status['telemetry']['refused']} row(s) refused, a pod reported as another workload" \
        in capsys.readouterr().out

    # and the real proxies' rows still arrive end to end: every hop of a request, from both sides
    mark = time.time()
    code, body = strict.curl()
    assert code == 200 and body.startswith("customer => preference => recommendation"), body
    hops = strict.settled_request_log(since=mark - 0.5)
    seen = {(r["reporter"], r["source_workload"], r["destination_workload"]) for r in hops}
    assert {("source", "customer", "preference-v1"), ("destination", "customer", "preference-v1"),
            ("source", "istio-ingressgateway", "customer")} <= seen, seen
    assert all(p["telemetry_refused"] == 0 for p in strict.backend.status()["pods"]  # type: ignore[attr-defined]
               if p["name"] != customer)


# --- API input -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/scale", {"deployment": "recommendation-v2", "replicas": -1}, "replicas: Invalid value: -1"),
        ("/scale", {"deployment": "recommendation-v2", "replicas": 51}, "must be between 0 and 50"),
        ("/scale", {"deployment": "recommendation-v2", "replicas": "2"}, 'replicas: Invalid value: "2"'),
        ("/scale", {"deployment": "recommendation-v2", "replicas": True}, "must be an integer"),
        ("/scale", {"deployment": "recommendation-v2"}, "replicas: Required value"),
        ("/scale", {"deployment": "../../etc", "replicas": 1}, "deployment: Invalid value"),
        ("/deploy", {"service": "recommendation", "version": "../../../../tmp/meshkit-escape"}, "version: Invalid"),
        ("/deploy", {"service": "recommendation", "version": "v9", "replicas": 10**4000}, "about 4001 digits"),
        ("/deploy", {"service": "ratings"}, 'service: Unsupported value: "ratings"'),
        ("/deploy", {"service": "recommendation", "version": "v9", "sidecar": "no"}, "sidecar: Invalid value"),
        ("/delete", {"kind": "VirtualService", "name": "a/b"}, "name: Invalid value"),
        ("/kill", {"pod": ["x"]}, "pod: Invalid value"),
        ("/secrets", {"name": "../x", "cert": "c", "key": "k"}, "name: Invalid value"),
        ("/token", {"ttl": "forever"}, "ttl: Invalid value"),
        ("/apply", {"resources": "everything"}, "resources: Invalid value"),
        ("/apply", {"resources": [{
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "preference-v9"},
            "spec": {"replicas": 1000, "selector": {"matchLabels": {"app": "preference"}},
                     "template": {"metadata": {"labels": {"app": "preference", "version": "v9"}},
                                  "spec": {"containers": [{"name": "p", "image": "example/preference:v9"}]}}}}]},
         "Deployment tutorial/preference-v9: spec.replicas: Invalid value: 1000: must be between 0 and 50"),
    ],
)
def test_bad_input_is_400_with_the_field_named(strict: Mesh, path: str, body: Any, message: str) -> None:
    status, answer = _api(strict, "POST", path, body)
    assert status == 400, answer
    assert message in answer["error"]
    assert not Path("/tmp/meshkit-escape.log").exists()
    assert "preference-v9" not in {p.deployment for p in strict.pods()}


BAD_VALUES: list[Any] = [None, True, -1, 10**30, 1.5, "", "../../x", "A" * 300, [], {}, [{}], "é\u0000"]
WRITE_ROUTES: dict[str, dict[str, Any]] = {
    "/scale": {"deployment": "recommendation-v2", "replicas": 1},
    "/deploy": {"service": "recommendation", "version": "v9", "replicas": 0, "sidecar": True},
    "/undeploy": {"deployment": "recommendation-v9"},
    "/kill": {"pod": "nope"},
    "/delete": {"kind": "VirtualService", "namespace": "tutorial", "name": "nope"},
    "/secrets": {"name": "x", "cert": "c", "key": "k"},
    "/token": {"claims": {}, "subject": "s", "ttl": 60, "audience": "a"},
    "/apply": {"resources": []},
    "/certs": {"pod": "nope", "csr": "x"},
    "/register": {"pod": "nope", "ports": {"inbound": 1}},
    "/nack": {"pod": "nope", "errors": []},
}


def test_no_field_of_any_write_route_gets_a_500(strict: Mesh) -> None:
    """Every field of every write route, given each wrong type or range: 4xx with a message, never 500."""
    before = _world(strict)
    tried = 0
    for path, good in WRITE_ROUTES.items():
        for field in good:
            for value in BAD_VALUES:
                if field == "sidecar" and isinstance(value, bool):
                    continue  # a valid value: this loop sends only wrong ones
                status, answer = _api(strict, "POST", path, {**good, field: value})
                tried += 1
                assert status < 500, (path, field, value, answer)
                if status >= 400:
                    assert isinstance(answer, dict) and answer.get("error"), (path, field, value, answer)
    for query in ("/records?since=x", "/records?limit=-5", "/traces?limit=1e3", "/traces?lookback=inf",
                  "/metrics?pod=../x", "/resources?kind=../x", "/resources?name=A%2FB", "/xds?pod=%00",
                  "/xds?pod=x&version=" + "9" * 40, "/%ZZ", "//[x"):
        status, answer = _api(strict, "GET", query)
        tried += 1
        assert 400 <= status < 500, (query, status, answer)
    assert tried >= 300
    after = _world(strict)
    assert after["pods"] == before["pods"]  # no bad value scaled, deployed, killed or re-registered a pod
    assert _api(strict, "POST", "/undeploy", {"deployment": "recommendation-v9"})[0] == 404  # never created


def test_bad_query_and_body_are_400_and_unknown_names_404(strict: Mesh) -> None:
    assert _api(strict, "GET", "/records?limit=lots")[0] == 400
    assert _api(strict, "GET", "/records?since=nan")[0] == 400
    assert _api(strict, "GET", "/xds?pod=x&version=-1")[0] == 400
    assert _api(strict, "POST", "/apply", raw=b"[1, 2]")[0] == 400
    assert _api(strict, "POST", "/apply", raw=b"\xff{")[0] == 400
    assert _api(strict, "POST", "/scale", {"deployment": "nope", "replicas": 1}) == (
        404, {"error": 'deployments.apps "nope" not found'})
    assert _api(strict, "POST", "/kill", {"pod": "nope"})[0] == 404
    assert {p.deployment for p in strict.pods()} >= {"recommendation-v2"}  # nothing was scaled


# --- the owner still has the in-pod views ----------------------------------------------------------

def test_the_owner_reaches_apps_and_admin_ports_through_mesh(strict: Mesh) -> None:
    status, body = strict.exec("recommendation-v1", "http://localhost:8080/")
    assert status == 200 and body.startswith("recommendation v1 from")  # the app itself, no sidecar hop
    strict.misbehave("recommendation-v1")
    try:
        status, body = strict.exec("recommendation-v1", "http://localhost:8080/")
        assert status == 503
    finally:
        strict.behave("recommendation-v1")
    assert strict.certs("preference")["default"]["spiffe_id"].endswith("/sa/preference")
    status, body = strict.exec("customer", "http://preference:8080/")
    assert status == 200 and body.startswith("preference => recommendation")


# --- a second Unix user --------------------------------------------------------------------------

PROBE = r'''
import json, socket, ssl, sys
plan = json.load(sys.stdin)
out = {"ports": {}, "files": {}}

def http(port, method, path, body=b"", headers=()):
    head = f"{method} {path} HTTP/1.1\r\nhost: {plan['host_header']}\r\ncontent-length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "connection: close\r\n\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(head.encode() + body)
            data = b""
            while len(data) < 65536:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        return {"error": type(exc).__name__}
    if not data:
        return {"error": "closed"}
    status = data.split(b" ", 2)[1].decode(errors="replace") if data.startswith(b"HTTP/") else "?"
    return {"status": status, "body": data.decode(errors="replace")[:4000]}

def tls(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="customer.example.com") as s:
                s.sendall(b"GET /status HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                data = s.recv(65536)
                if not data:  # TLS 1.3: a refused client certificate shows up after the handshake
                    return {"error": "closed"}
                return {"status": data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "?",
                        "body": data.decode(errors="replace")[:4000]}
    except (OSError, ssl.SSLError) as exc:
        return {"error": type(exc).__name__}

for port in plan["ports"]:
    results = []
    for method, path, body, headers in plan["requests"]:
        r = http(port, method, path, json.dumps(body).encode() if body is not None else b"", headers)
        results.append([method, path, r])
    results.append(["TLS", "/status", tls(port)])
    out["ports"][str(port)] = results
for path in plan["files"]:
    try:
        with open(path, "rb") as f:
            out["files"][path] = "READ " + f.read(64).decode(errors="replace")
    except OSError as exc:
        out["files"][path] = type(exc).__name__
print(json.dumps(out))
'''


def _second_user() -> tuple[int, int]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a second Unix user (useradd) and run a prober as that user; "
                    f"running as uid {os.geteuid()}")
    useradd = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
    if useradd is None:
        pytest.skip("needs the useradd command to create a second Unix user; it is not installed")
    try:
        entry = pwd.getpwnam(PROBE_USER)
    except KeyError:
        # another test process may create it at the same moment (useradd then exits 9, name in use)
        made = subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                               PROBE_USER], capture_output=True, text=True)
        try:
            entry = pwd.getpwnam(PROBE_USER)
        except KeyError:
            pytest.fail(f"useradd {PROBE_USER} failed ({made.returncode}): {made.stderr.strip()}")
    return entry.pw_uid, entry.pw_gid


def _python_for(uid: int, gid: int) -> str:
    """An interpreter the second user may run (ours can sit under a home they cannot enter)."""
    candidates = [os.path.realpath(sys.executable), getattr(sys, "_base_executable", ""), shutil.which("python3") or "",
                  "/usr/bin/python3", "/usr/local/bin/python3"]
    for candidate in dict.fromkeys(c for c in candidates if c):
        try:
            ok = subprocess.run([candidate, "-I", "-S", "-c", "pass"], user=uid, group=gid, extra_groups=[],
                                capture_output=True, timeout=30).returncode == 0
        except OSError:
            ok = False
        if ok:
            return candidate
    pytest.fail(f"no Python interpreter that user {PROBE_USER} may run among {candidates}")


def _mesh_listeners(mesh: Mesh) -> set[int]:
    state = _state(mesh)
    pids = _descendants(int(state["pid"])) | {int(p.extra["pid"]) for p in mesh.pods()}
    listening = _listening_inodes()
    return {listening[i][1] for pid in pids for i in _socket_inodes(pid) if i in listening}


def _world(mesh: Mesh) -> dict[str, Any]:
    """What a stranger's writes would change, read as the owner."""
    status = mesh.backend.status()  # type: ignore[attr-defined]
    return {
        "resources": sorted((r["kind"], r["metadata"]["name"], r["metadata"]["generation"]) for r in mesh.get()),
        "pods": sorted((p["name"], json.dumps(p["ports"], sort_keys=True), p["restarts"]) for p in status["pods"]),
        "secrets": _api(mesh, "GET", "/secrets")[1],
    }


def test_a_second_unix_user_gets_nothing_from_any_port(strict: Mesh) -> None:
    uid, gid = _second_user()
    python = _python_for(uid, gid)
    state, credential = _state(strict), _credential(strict)
    pods = strict.pods()
    ports = _mesh_listeners(strict)
    gateway = next(p for p in pods if p.app == "istio-ingressgateway").extra["ports"]
    time_port = int(strict.backend.status()["time_service_port"])  # type: ignore[attr-defined]
    # the mesh's front door answers strangers, as a LoadBalancer does; the stand-in for the internet too
    public = {int(gateway["outbound"]), int(gateway["https"]), time_port}
    assert int(state["api_port"]) in ports and len(ports) >= 3 + 5 * 4  # the check sees the real listeners

    victim = next(p for p in pods if p.deployment == "recommendation-v2")
    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "stolen"},
          "spec": {"hosts": ["recommendation"], "http": [{"route": [{"destination": {"host": "recommendation"}}]}]}}
    forged = [("authorization", f"Bearer {victim.name}.AAAA")]
    writes = [
        ("POST", "/apply", {"resources": [vs]}, ()),
        ("POST", "/scale", {"deployment": "recommendation-v2", "replicas": 0}, ()),
        ("POST", "/deploy", {"service": "recommendation", "version": "v9"}, ()),
        ("POST", "/undeploy", {"deployment": "preference-v1"}, ()),
        ("POST", "/kill", {"pod": victim.name}, ()),
        ("POST", "/register", {"pod": victim.name, "ports": {"inbound": 1, "inbound_tls": 1}}, ()),
        ("POST", "/register", {"pod": victim.name, "ports": {"inbound": 1}}, forged),
        ("POST", "/delete", {"kind": "Gateway", "name": "customer-gateway"}, ()),
        ("POST", "/secrets", {"name": "x", "cert": "c", "key": "k"}, ()),
        ("POST", "/shutdown", {}, ()),
        ("POST", "/sniff?seconds=30", None, ()),
        ("GET", "/misbehave", None, ()),
        ("GET", "/delay?seconds=5", None, ()),
    ]
    reads = [
        ("GET", path, None, headers)
        for path in ("/status", "/resources", "/records", "/traces", "/metrics", "/secrets", "/jwks", "/healthz",
                     f"/xds?pod={victim.name}&version=0", "/config_dump", "/stats/prometheus", "/certs",
                     "/access_log", "/app_log", "/sniff", "/")
        for headers in ((), forged)
    ] + [
        ("POST", "/certs", {"pod": victim.name}, ()),
        ("POST", "/token", {"claims": {"role": "admin"}}, ()),
        ("GET", "/", None, [(OWNER_HEADER, "guess")]),
    ]
    home = _home(strict)
    plan = {
        "ports": sorted(ports),
        "host_header": "recommendation:8080",  # through a sidecar's outbound, this would borrow its identity
        "requests": reads + writes,
        "files": [str(home / "owner-credential"), str(home / "ca" / "root-key.pem"), str(home / "state.json"),
                  f"/proc/{victim.extra['pid']}/environ"],
    }
    before = _world(strict)
    started = time.monotonic()
    run = subprocess.run([python, "-I", "-S", "-c", PROBE], input=json.dumps(plan), user=uid, group=gid,
                         extra_groups=[], capture_output=True, text=True, timeout=300, cwd="/")
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    elapsed = time.monotonic() - started

    assert all(result in ("PermissionError",) for result in seen["files"].values()), seen["files"]
    answered: dict[str, int] = {}
    for port, results in seen["ports"].items():
        for method, path, result in results:
            body = result.get("body", "")
            for marker in (*SECRET_MARKERS, credential):
                assert marker not in body, (port, method, path, marker, body[:300])
            if int(port) in public:
                continue
            # everything else refuses: 401/403 with a short body, or no conversation at all
            assert "error" in result or result["status"] in ("401", "403"), (port, method, path, result)
            if "status" in result:
                answered[result["status"]] = answered.get(result["status"], 0) + 1
    assert answered.get("401", 0) > 100  # the API and the owner-only ports did answer, and refused

    # nothing the stranger sent took effect
    assert _world(strict) == before
    assert strict.backend.is_running()
    assert strict.curl()[0] == 200  # not misbehaving, not delayed, not shut down
    print(f"probed {len(ports)} ports x {len(plan['requests']) + 1} requests as uid {uid} in {elapsed:.1f}s")


SQUATTER = r'''
import json, socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)
s.settimeout(0.1)
print("listening", flush=True)
got, deadline = [], time.monotonic() + seconds
while time.monotonic() < deadline:
    try:
        conn, _ = s.accept()
    except OSError:
        continue
    conn.settimeout(0.5)
    try:
        got.append(conn.recv(65536).decode(errors="replace"))
    except OSError:
        got.append("")
    conn.close()
print(json.dumps(got))
'''


def test_a_port_left_by_a_dead_control_plane_collects_no_token(strict: Mesh) -> None:
    """Last in the module: the control plane dies, a second user takes its port, and the pods, which
    keep serving, never send it their token; then ``up`` adopts them again."""
    import signal

    uid, gid = _second_user()
    python = _python_for(uid, gid)
    state = _state(strict)
    api_port = int(state["api_port"])
    os.kill(int(state["pid"]), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while strict.backend.is_running() and time.monotonic() < deadline:
        time.sleep(0.02)
    squatter = subprocess.Popen([python, "-I", "-S", "-c", SQUATTER, str(api_port), "2.0"], user=uid, group=gid,
                                extra_groups=[], stdout=subprocess.PIPE, text=True, cwd="/")
    assert squatter.stdout is not None
    assert squatter.stdout.readline().strip() == "listening"
    out, _ = squatter.communicate(timeout=30)
    received = json.loads(out)
    # the pods kept polling for their control plane the whole time (every 0.2 s), and never connected
    assert received == [], received[:3]
    assert strict.curl()[0] == 200  # the data plane served on with its last config
    strict.backend.up()
    assert strict.curl()[0] == 200
    assert all(p.ready for p in strict.pods())
