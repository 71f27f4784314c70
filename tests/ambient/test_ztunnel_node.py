"""ztunnel on a real local mesh: its certificates and their rotation, its access log and TCP metrics as
ztunnel writes them, ``ztunnel-config`` tables, and a policy change closing an open connection.

One ambient mesh for the module, its ztunnel asking the CA for short-lived certificates
(``MESHKIT_ZTUNNEL_SECRET_TTL``), so a rotation happens while the module runs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import SignatureAlgorithmOID

import meshkit
from meshkit.backends.base import Pod
from meshkit.backends.local.ca import BACKDATE
from meshkit.backends.local.workloadkey import describe_key
from meshkit.mesh import Mesh
from tests.ambient.support import presented_certificate
from tests.local.conftest import stop_mesh

TTL_S = 8  # ztunnel renews at half-life (4 s): long enough that a busy machine renews well before expiry
BACKDATE_S = int(BACKDATE.total_seconds())  # the CA back-dates not_before for clock skew
CURL = "spiffe://cluster.local/ns/tutorial/sa/curl"
PREFERENCE = "spiffe://cluster.local/ns/tutorial/sa/preference"
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    before = os.environ.get("MESHKIT_ZTUNNEL_SECRET_TTL")
    os.environ["MESHKIT_ZTUNNEL_SECRET_TTL"] = str(TTL_S)
    try:
        m = meshkit.up(home=str(tmp_path_factory.mktemp("ztunnel")), dataplane="ambient")
    finally:
        if before is None:
            del os.environ["MESHKIT_ZTUNNEL_SECRET_TTL"]
        else:
            os.environ["MESHKIT_ZTUNNEL_SECRET_TTL"] = before
    m.deploy("curl", "v1", sidecar=False)
    yield m
    stop_mesh(m)


def _pod(mesh: Mesh, app: str) -> Pod:
    return next(p for p in mesh.pods() if p.app == app)


def _log(mesh: Mesh) -> list[str]:
    return mesh.backend.app_log(_pod(mesh, "ztunnel").name).splitlines()  # type: ignore[attr-defined]


def _wait_line(mesh: Mesh, *needles: str, since: int = 0, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in _log(mesh)[since:] if all(n in line for n in needles)]
        if found or time.monotonic() > deadline:
            assert found, f"no ztunnel log line with {needles}"
            return found[-1]
        time.sleep(0.05)


def _fields(line: str) -> list[tuple[str, str]]:
    """The ``k=v`` fields of a ztunnel log line, in order (values unquoted)."""
    return [(k, v.strip('"')) for k, v in re.findall(r'(\S+?)=("[^"]*"|\S+)', line.split("\t", 4)[4])]


def _metric(mesh: Mesh, name: str, *needles: str) -> float:
    """The sum of a ztunnel metric's series holding every needle."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in mesh.metrics().splitlines()
               if line.startswith(name + "{") and all(n in line for n in needles))


class Captured:
    """One connection of the curl pod's app, captured to ztunnel (as istio-cni redirects it), kept open."""

    def __init__(self, mesh: Mesh, target: str = "preference:8080") -> None:
        port = int(_pod(mesh, "curl").extra["ztunnel_ports"]["outbound"])
        self.target = target
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.sock.sendall(f"{target}\n".encode())  # the dialed address, as the capture hands it over

    def get(self) -> tuple[int, bytes]:
        self.sock.sendall(f"GET / HTTP/1.1\r\nhost: {self.target}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("closed")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("closed")
            body += chunk
        return int(head.split()[1]), body

    def closed_by_peer(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def _leaf_serial(mesh: Mesh, identity: str) -> tuple[str, str, str]:
    """(serial, not after, not before) of ztunnel's leaf certificate for ``identity``."""
    [row] = [r for r in mesh.ztunnel_config("certificates")[1:] if r[0] == identity and r[1] == "Leaf"]
    return row[4], row[5], row[6]


def _presented_serial(port: int) -> str:
    return format(presented_certificate(port).serial_number, "x")


def _stamp(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()


def test_access_log_lines_in_ztunnels_format_and_order(mesh: Mesh) -> None:
    curl, pref = _pod(mesh, "curl"), _pod(mesh, "preference")
    before = len(_log(mesh))
    received = _metric(mesh, "istio_tcp_received_bytes_total", 'reporter="source"', f'source_principal="{CURL}"',
                       'destination_service="preference.tutorial.svc.cluster.local"')
    assert mesh.exec(curl.name, "http://preference:8080/")[0] == 200
    out = _wait_line(mesh, "connection complete", 'direction="outbound"', f'dst.workload="{pref.name}"', since=before)
    inn = _wait_line(mesh, "connection complete", 'direction="inbound"', f'src.workload="{curl.name}"', since=before)
    order = ["src.addr", "src.workload", "src.namespace", "src.identity", "dst.addr", "dst.hbone_addr", "dst.service",
             "dst.workload", "dst.namespace", "dst.identity", "direction", "bytes_sent", "bytes_recv", "duration"]
    for line in (out, inn):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", line.split("\t")[0])
        assert line.split("\t")[1:4] == ["info", "access", "connection complete"]
        assert [k for k, _ in _fields(line)] == order
    o, i = dict(_fields(out)), dict(_fields(inn))
    assert (o["src.identity"], o["dst.identity"]) == (i["src.identity"], i["dst.identity"]) == (CURL, PREFERENCE)
    assert o["dst.addr"] == i["dst.addr"] == f'127.0.0.1:{pref.extra["ztunnel_ports"]["hbone"]}'
    assert o["dst.hbone_addr"] == i["dst.hbone_addr"] == f'127.0.0.1:{pref.extra["ports"]["app"]}'
    assert o["dst.service"] == "preference.tutorial.svc.cluster.local"
    # each side logs what it sent: the request the source sent is what the destination received
    assert int(o["bytes_sent"]) == int(i["bytes_recv"]) > 0 and int(o["bytes_recv"]) == int(i["bytes_sent"]) > 0
    assert re.fullmatch(r"\d+ms", o["duration"])
    # the metric counts as Envoy does: the request bytes are the source reporter's *received* bytes
    after = _metric(mesh, "istio_tcp_received_bytes_total", 'reporter="source"', f'source_principal="{CURL}"',
                    'destination_service="preference.tutorial.svc.cluster.local"')
    assert after - received == int(o["bytes_sent"])


def test_an_unknown_destination_is_one_connection_failed_line(mesh: Mesh) -> None:
    before = len(_log(mesh))
    conn = Captured(mesh, "nowhere:8080")
    try:
        assert conn.closed_by_peer(10)
    finally:
        conn.close()
    line = _wait_line(mesh, "connection failed", since=before)
    assert line.split("\t")[1:4] == ["warn", "access", "connection failed"]
    fields = _fields(line)
    assert [k for k, _ in fields] == ["src.addr", "dst.addr", "direction", "error"]
    assert dict(fields)["direction"] == "outbound"
    assert dict(fields)["error"] == "no service or workload for hostname: nowhere"


def test_open_sockets_and_the_connections_table(mesh: Mesh) -> None:
    curl, pref = _pod(mesh, "curl"), _pod(mesh, "preference")
    idle = {r: _metric(mesh, "istio_tcp_sockets_open", f'reporter="{r}"') for r in ("source", "destination")}
    conn = Captured(mesh)
    try:
        assert conn.get()[0] == 200
        rows = mesh.ztunnel_config("connections")
        assert rows[0] == ("WORKLOAD", "DIRECTION", "LOCAL", "REMOTE", "REMOTE TARGET", "PROTOCOL")
        mine = [r for r in rows[1:] if r[0] == f"{curl.name}.tutorial"]
        hbone, app = pref.extra["ztunnel_ports"]["hbone"], pref.extra["ports"]["app"]
        assert ("Outbound", f"{pref.name}.tutorial:{hbone}", "preference.tutorial.svc.cluster.local:8080",
                "HBONE") in {(r[1], r[3], r[4], r[5]) for r in mine}
        theirs = [r for r in rows[1:] if r[0] == f"{pref.name}.tutorial" and r[1] == "Inbound"]
        assert (f"{pref.name}.tutorial:{app}", "preference.tutorial.svc.cluster.local", "HBONE") in \
            {(r[2], r[4], r[5]) for r in theirs}
        assert [r[0] for r in rows[1:]] == sorted(r[0] for r in rows[1:])  # by namespace, then name
        for reporter in ("source", "destination"):
            assert _metric(mesh, "istio_tcp_sockets_open", f'reporter="{reporter}"') >= idle[reporter] + 1
        held = {r: _metric(mesh, "istio_tcp_sockets_open", f'reporter="{r}"') for r in ("source", "destination")}
    finally:
        conn.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = {r: _metric(mesh, "istio_tcp_sockets_open", f'reporter="{r}"') for r in ("source", "destination")}
        if now == {r: held[r] - 1 for r in held}:
            break
        time.sleep(0.05)
    assert now == {r: held[r] - 1 for r in held}
    assert not [r for r in mesh.ztunnel_config("connections")[1:] if r[0] == f"{curl.name}.tutorial"]


def test_a_policy_change_closes_an_open_connection_it_no_longer_allows(mesh: Mesh, tmp_path: Path) -> None:
    curl = _pod(mesh, "curl")
    conn = Captured(mesh)
    try:
        assert conn.get()[0] == 200
        before = len(_log(mesh))
        denied = _metric(mesh, "istio_tcp_connections_failed_total", 'reporter="destination"',
                         'response_flags="DENY"', f'source_principal="{CURL}"')
        path = tmp_path / "deny.yaml"
        path.write_text(yaml.safe_dump({
            "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "no-curl", "namespace": "tutorial"},
            "spec": {"selector": {"matchLabels": {"app": "preference"}}, "action": "DENY",
                     "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/tutorial/sa/curl"]}}]}]}}))
        mesh.apply(str(path))
        assert conn.closed_by_peer(15)
        line = _wait_line(mesh, "connection complete", 'error="connection closed due to policy change"', since=before)
        assert line.split("\t")[1] == "error"
        assert dict(_fields(line))["direction"] == "inbound" and dict(_fields(line))["src.workload"] == curl.name
        note = _wait_line(mesh, "no longer allowed after a policy update", since=before)
        assert note.split("\t")[1:3] == ["info", "proxy::connection_manager"]
        assert f"({CURL})->" in note
        assert _metric(mesh, "istio_tcp_connections_failed_total", 'reporter="destination"',
                       'response_flags="DENY"', f'source_principal="{CURL}"') == denied + 1
    finally:
        conn.close()
        mesh.reset()
        mesh.backend.wait_synced()  # type: ignore[attr-defined]


def test_ztunnel_certificates_table_and_rotation_without_dropping_connections(mesh: Mesh) -> None:
    rows = mesh.ztunnel_config("certificates")
    assert rows[0] == ("CERTIFICATE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER",
                       "NOT BEFORE")
    mine = [r for r in rows[1:] if r[0] == CURL]
    assert [r[1:4] for r in mine] == [("Leaf", "Available", "true"), ("Root", "Available", "true")]
    for r in rows[1:]:
        assert re.fullmatch(r"[0-9a-f]+", r[4]) and re.fullmatch(STAMP, r[5]) and re.fullmatch(STAMP, r[6])
    # one certificate per identity of the node's ambient pods, none for the gateway's sidecar or ztunnel
    assert {r[0] for r in rows[1:]} == {CURL, PREFERENCE, "spiffe://cluster.local/ns/tutorial/sa/customer",
                                        "spiffe://cluster.local/ns/tutorial/sa/recommendation"}
    serial, not_after, not_before = _leaf_serial(mesh, PREFERENCE)
    # the lifetime ztunnel asked for (SECRET_TTL), plus the CA's back-dating
    assert _stamp(not_after) - _stamp(not_before) == TTL_S + BACKDATE_S
    hbone = int(_pod(mesh, "preference").extra["ztunnel_ports"]["hbone"])
    # the table shows the certificate ztunnel serves with (read around the handshake: a renewal may fall between)
    presented = presented_certificate(hbone)
    assert format(presented.serial_number, "x") in {serial, _leaf_serial(mesh, PREFERENCE)[0]}
    # ztunnel makes ECDSA P-256 keys whatever istio-agent's settings; the mesh's RSA root signs them
    assert describe_key(presented.public_key()) == "ECDSA P-256"
    assert presented.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256

    conn = Captured(mesh)
    try:
        assert conn.get()[0] == 200  # an HBONE connection made with the current certificates
        deadline = time.monotonic() + 4 * TTL_S
        while _leaf_serial(mesh, PREFERENCE)[0] == serial and time.monotonic() < deadline:
            time.sleep(0.1)
        renewed, renewed_after, renewed_before = _leaf_serial(mesh, PREFERENCE)
        assert renewed != serial, "ztunnel did not renew the certificate"
        # renewed at half-life or later (never early), judged from the certificates' own issue times
        assert _stamp(renewed_before) - _stamp(not_before) >= TTL_S / 2 - 1
        assert _stamp(renewed_after) - _stamp(renewed_before) == TTL_S + BACKDATE_S
        # the open connection survives the rotation; new handshakes get the new certificate
        assert conn.get()[0] == 200
        first = _leaf_serial(mesh, PREFERENCE)[0]
        assert _presented_serial(hbone) in {first, _leaf_serial(mesh, PREFERENCE)[0]} and first != serial
        assert mesh.exec(_pod(mesh, "curl").name, "http://preference:8080/")[0] == 200
    finally:
        conn.close()


def _as_ztunnel(mesh: Mesh, body: dict) -> tuple[int, str]:
    """A CSR to the CA with ztunnel's own token (read from its environment, as its service-account token)."""
    import urllib.error
    import urllib.request

    from cryptography.hazmat.primitives.asymmetric import ec

    from meshkit.backends.local.ca import csr_for
    from meshkit.backends.local.trust import POD_TOKEN_ENV

    zt = _pod(mesh, "ztunnel")
    environ = Path(f"/proc/{zt.extra['pid']}/environ").read_bytes().split(b"\0")
    token = next(v.split(b"=", 1)[1].decode() for v in environ if v.startswith(POD_TOKEN_ENV.encode() + b"="))
    state = json.loads((Path(mesh.backend.home) / "state.json").read_text())  # type: ignore[attr-defined]
    payload = {**body, "csr": csr_for(ec.generate_private_key(ec.SECP256R1()), body.pop("identity"))}
    req = urllib.request.Request(f"http://127.0.0.1:{state['api_port']}/certs", data=json.dumps(payload).encode(),
                                 method="POST", headers={"authorization": f"Bearer {token}", "host": "istiod",
                                                         "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_ztunnels_csr_names_the_workload_and_its_token_covers_only_ambient_pods(mesh: Mesh) -> None:
    curl, gateway = _pod(mesh, "curl"), _pod(mesh, "istio-ingressgateway")
    status, body = _as_ztunnel(mesh, {"pod": curl.name, "identity": CURL, "validity_duration": 30})
    assert status == 200, body
    cert = x509.load_pem_x509_certificate(json.loads(body)["cert_pem"].encode())
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier) == [CURL]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() == 30 + BACKDATE_S
    # the pod's identity only, and only for an ambient pod: not a sidecar pod's, not another identity
    status, body = _as_ztunnel(mesh, {"pod": curl.name, "identity": PREFERENCE})
    assert status == 403 and f"the CSR asks for {PREFERENCE}; the caller is {CURL}" in body
    status, body = _as_ztunnel(mesh, {"pod": gateway.name,
                                      "identity": "spiffe://cluster.local/ns/istio-system/sa/"
                                                  "istio-ingressgateway-service-account"})
    assert status == 403 and "may only ask certificates for ambient pods of its node" in body
    status, body = _as_ztunnel(mesh, {"pod": curl.name, "identity": CURL, "validity_duration": 10**9})
    assert status == 400 and "validity_duration: Invalid value" in body


def test_service_graph_shows_ztunnel_tcp_edges_apart_from_http_edges(mesh: Mesh) -> None:
    from meshkit.telemetry.graph import format_graph
    from meshkit.viz.graph import edge_label, service_graph

    for _ in range(3):
        assert mesh.curl()[0] == 200  # gateway (sidecar, HTTP) → customer → preference → recommendation (ztunnel)
    g = mesh.graph(window_s=3600)
    nodes = {n["data"]["id"]: n["data"] for n in g["elements"]["nodes"]}
    edges = {(nodes[e["data"]["source"]].get("app"), nodes[e["data"]["target"]].get("app"),
              nodes[e["data"]["target"]]["nodeType"], e["data"]["protocol"]): e["data"] for e in g["elements"]["edges"]}
    # the gateway's sidecar reports HTTP; between ambient pods only ztunnel sees the traffic: TCP edges
    http = edges[("istio-ingressgateway", "customer", "service", "http")]
    assert http["count"] >= 3 and set(http["codes"]) == {"200"} and "bytes" not in http
    for caller, callee in (("customer", "preference"), ("preference", "recommendation")):
        assert (caller, callee, "service", "http") not in edges
        tcp = edges[(caller, callee, "service", "tcp")]
        assert tcp["id"].endswith(":tcp") and tcp["count"] >= 1 and tcp["bytes"] > 0 and tcp["mtlsShare"] == 1.0
        assert tcp["traffic"]["protocol"] == "tcp" and float(tcp["traffic"]["rates"]["tcp"]) > 0
        # what reached the service went on to its workloads: bytes in equal bytes out
        into = sum(e["bytes"] for k, e in edges.items() if k[1:] == (callee, "service", "tcp"))
        out = sum(e["bytes"] for k, e in edges.items() if k[0] == callee and k[2:] == ("app", "tcp"))
        assert into == out >= tcp["bytes"]
    # the edge's bytes are ztunnel's byte counters for that caller and service, both ways
    counted = sum(_metric(mesh, name, 'reporter="source"', 'source_workload="customer"',
                          'destination_service="preference.tutorial.svc.cluster.local"')
                  for name in ("istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total"))
    assert edges[("customer", "preference", "service", "tcp")]["bytes"] == counted
    table = format_graph(g)
    assert any(line.startswith("customer v1") and "tcp " in line for line in table.splitlines())
    tcp_edge = edges[("customer", "preference", "service", "tcp")]
    assert edge_label(tcp_edge).startswith("🔒 TCP ") and "B/s" in edge_label(tcp_edge)
    assert len(service_graph(g).data) >= len(g["elements"]["edges"])


GATEWAY = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"


def test_sidecars_and_ambient_pods_talk_hbone_identities_checked_on_both_ends(mesh: Mesh, tmp_path: Path) -> None:
    """In the ambient profile a sidecar speaks HBONE to an ambient pod, and ztunnel speaks HBONE to a
    sidecar's 15008; STRICT admits both (mutual TLS) and refuses a plaintext caller outside the mesh."""
    name = mesh.deploy("recommendation", "v9", sidecar=True)
    v9 = next(p for p in mesh.pods() if p.deployment == name)
    curl = _pod(mesh, "curl")
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                                      "metadata": {"name": "default", "namespace": "tutorial"},
                                      "spec": {"mtls": {"mode": "STRICT"}}}))
    try:
        mesh.backend.wait_synced()  # type: ignore[attr-defined]
        assert "hbone" in v9.extra["ports"]  # an HBONE-enabled sidecar (ISTIO_META_ENABLE_HBONE)
        mesh.apply(str(strict))
        mesh.backend.wait_synced()  # type: ignore[attr-defined]
        # sidecar → ambient: the gateway's sidecar tunnels to customer's ztunnel, which sees its identity
        assert mesh.curl()[0] == 200
        assert _metric(mesh, "istio_tcp_connections_opened_total", 'reporter="destination"',
                       f'source_principal="{GATEWAY}"', 'destination_workload="customer"',
                       'connection_security_policy="mutual_tls"') > 0
        rows = [r for r in mesh.ztunnel_config("connections")[1:] if r[0].startswith("customer-") and
                r[1] == "Inbound"]
        assert rows and {(r[4], r[5]) for r in rows} == {("customer.tutorial.svc.cluster.local", "HBONE")}
        # ambient → sidecar: curl's ztunnel tunnels to v9's sidecar and checks the identity it presents
        before = len(_log(mesh))
        answers = [mesh.exec(curl.name, "http://recommendation:8080/") for _ in range(3)]  # v1, v2, v9 in turn
        assert all(status == 200 for status, _ in answers) and any("v9" in body for _, body in answers)
        out = _wait_line(mesh, "connection complete", 'direction="outbound"', f'dst.workload="{v9.name}"',
                         since=before)
        fields = dict(_fields(out))
        assert fields["dst.addr"] == f'127.0.0.1:{v9.extra["ports"]["hbone"]}'
        assert fields["dst.hbone_addr"] == f'127.0.0.1:{v9.extra["ports"]["app"]}'
        assert (fields["src.identity"], fields["dst.identity"]) == (CURL, "spiffe://cluster.local/ns/tutorial/sa/"
                                                                          "recommendation")
        # ... and the sidecar read the caller's identity from the tunnel's certificate (STRICT let it in)
        [rec] = [r for r in mesh.settled_request_log()
                 if r.get("proxy") == v9.name and r.get("reporter") == "destination"][-1:]
        assert (rec["source_principal"], rec["connection_security_policy"], rec["response_code"]) == (
            CURL, "mutual_tls", 200)
        # a plaintext caller outside the mesh is refused at the sidecar (and at ambient pods' ztunnel)
        # (a listener that refuses at once can reset the connection before connect() has read its
        # result, so a reset at any step is a refusal too)
        for port in (v9.extra["ports"]["inbound"], _pod(mesh, "preference").extra["ztunnel_ports"]["inbound"]):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                    raw.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                    got = raw.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                got = b""
            assert not got.startswith(b"HTTP/1.1 200"), got
    finally:
        mesh.reset()
        mesh.undeploy(name)
        mesh.backend.wait_synced()  # type: ignore[attr-defined]


def test_a_sidecar_refuses_an_hbone_peer_with_the_wrong_identity(mesh: Mesh) -> None:
    """The sidecar's HBONE client checks the certificate the tunnel presents against the pod's identity."""
    import asyncio

    from meshkit.backends.local.ca import CertificateAuthority
    from meshkit.backends.local.tls import client_context
    from meshkit.backends.local.ztunnel.hbone import connect_http, hbone_context
    from meshkit.http1 import ClientProtocol

    ca = CertificateAuthority.load_or_create(Path(mesh.backend.home) / "ca")  # type: ignore[attr-defined]
    ctx = hbone_context(client_context(ca.issue("tutorial", "customer")))
    pref = _pod(mesh, "preference")
    port, target = int(pref.extra["ztunnel_ports"]["hbone"]), f'127.0.0.1:{pref.extra["ports"]["app"]}'

    async def attempt(expected: str) -> None:
        transport = await connect_http(port, ctx, target, expected, ClientProtocol())
        transport.abort()

    asyncio.run(attempt(PREFERENCE))  # the right identity: the tunnel opens
    with pytest.raises(ssl.SSLError, match="identity verification error: peer is " + re.escape(PREFERENCE)):
        asyncio.run(attempt("spiffe://cluster.local/ns/tutorial/sa/recommendation"))


@pytest.mark.parametrize(("kind", "header"), [
    ("workloads", "NAMESPACE POD NAME ADDRESS NODE WAYPOINT PROTOCOL"),
    ("s", "NAMESPACE SERVICE NAME SERVICE VIP WAYPOINT ENDPOINTS"),
    ("certs", "CERTIFICATE NAME TYPE STATUS VALID CERT SERIAL NUMBER NOT AFTER NOT BEFORE"),
    ("pol", "NAMESPACE POLICY NAME ACTION SCOPE"),
    ("cons", "WORKLOAD DIRECTION LOCAL REMOTE REMOTE TARGET PROTOCOL"),
])
def test_every_ztunnel_config_table_from_the_cli(mesh: Mesh, kind: str, header: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from meshkit.cli import main

    capsys.readouterr()
    assert main(["--backend", "local", "--home", str(mesh.backend.home), "zc", kind]) == 0  # type: ignore[attr-defined]
    lines = capsys.readouterr().out.splitlines()
    assert " ".join(lines[0].split()) == header
    if kind in ("workloads", "certs"):
        assert len(lines) > 1


def test_status_shows_each_pods_data_plane_mode(mesh: Mesh, capsys: pytest.CaptureFixture[str]) -> None:
    from meshkit.cli import main

    capsys.readouterr()
    assert main(["--backend", "local", "--home", str(mesh.backend.home), "status"]) == 0  # type: ignore[attr-defined]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-1] == "DATAPLANE"
    table = lines[1:lines.index("")] if "" in lines else lines[1:]  # the pod rows, before the gateway's address
    modes = {line.split()[0]: line.split()[-1] for line in table}
    assert modes[_pod(mesh, "istio-ingressgateway").name] == "sidecar"
    for app in ("customer", "preference", "recommendation", "curl"):
        assert modes[_pod(mesh, app).name] == "ambient"
    assert modes[_pod(mesh, "ztunnel").name] == "none"  # ztunnel itself is outside the mesh it carries
    assert set(modes) == {p.name for p in mesh.pods()}


def test_another_user_cannot_send_through_a_pods_capture(mesh: Mesh) -> None:
    """ztunnel's outbound listener stands for the pod's own 15001: another local user dialing it would
    be tunnelled under the pod's identity, so ztunnel refuses it (the owner's capture still works)."""
    from meshkit.backends.local.trust import peer_uid

    port = int(_pod(mesh, "curl").extra["ztunnel_ports"]["outbound"])
    mine = Captured(mesh)
    try:
        assert mine.get()[0] == 200  # the owner's (the pod's) connection is served
        assert peer_uid(port, mine.sock.getsockname()[1]) == os.getuid()  # the kernel's record ztunnel asks
    finally:
        mine.close()
    if os.getuid() != 0:
        return  # only root can connect as someone else; the owner's side ran above
    before = len(_log(mesh))
    result_r, result_w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the second user's process
        got = b""
        try:
            os.setgid(65534)
            os.setuid(65534)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"preference:8080\nGET / HTTP/1.1\r\nhost: preference:8080\r\n\r\n")
                try:
                    got = sock.recv(65536)
                except OSError:
                    got = b""
        finally:
            os.write(result_w, (got[:64] or b"-").ljust(64))
            os._exit(0)
    try:
        got = os.read(result_r, 64).rstrip()
    finally:
        os.waitpid(child, 0)
        os.close(result_r)
        os.close(result_w)
    assert got == b"-"  # no answer: reset before a byte was read
    line = _wait_line(mesh, "connection failed", "connection from uid 65534", since=before)
    assert dict(_fields(line))["direction"] == "outbound"
