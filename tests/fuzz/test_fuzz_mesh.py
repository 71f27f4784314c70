"""Fuzzing a real local mesh: the control plane's API (with the owner's credential) and the proxies'
HTTP listeners (raw bytes over real sockets). Zero 500s, zero tracebacks in any log, every
process still serving, memory (PSS) within a few MB of where it started.

Destructive verbs (``/shutdown``) are left out, and the bodies are random rather than valid, so
the fuzzer probes the input checks without scaling the mesh or stopping it.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.proc import pss_mb
from meshkit import Mesh
from tests.fuzz.conftest import TRIED

ROUTES = ["/healthz", "/xds", "/register", "/certs", "/secrets", "/token", "/jwks", "/telemetry", "/status",
          "/apply", "/delete", "/resources", "/deploy", "/scale", "/undeploy", "/kill", "/records", "/traces",
          "/metrics", "/flush", "/nothing", "/", "//", "/%00", "/apply/../status"]
KEYS = ["pod", "ports", "resources", "kind", "name", "namespace", "deployment", "replicas", "service", "version",
        "sidecar", "claims", "subject", "ttl", "audience", "rows", "cert", "key", "since", "limit", "token"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70), st.floats(),
                    st.text(max_size=24))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner,
                                                 max_size=5)), max_leaves=20)
queries = st.lists(st.tuples(st.sampled_from([*KEYS, "x"]), st.text(max_size=10)), max_size=3).map(
    lambda pairs: "&".join(f"{k}={v}" for k, v in pairs))


class _Reply:
    """Reads one HTTP response (or the connection's end) from a socket."""

    def __init__(self) -> None:
        self.status = 0
        self.done = False
        self.body = b""

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done = True


def _exchange(port: int, data: bytes, patience: float = 1.0, timeout: float = 3.0) -> tuple[int, bytes]:
    """Send raw bytes; the first response's status (0: none, the server closed) and its body.

    A server still waiting for more of a request after ``patience`` seconds gets the end of the
    stream (a half-close), so an incomplete request costs a second, not the stream idle timeout.
    """
    reply = _Reply()
    parser = httptools.HttpResponseParser(reply)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass
        sock.settimeout(patience)
        deadline = time.monotonic() + timeout
        half_closed = False
        while not reply.done and time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if half_closed or reply.status:
                    break
                half_closed = True
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    break
                continue
            except OSError:
                break
            if not chunk:
                break
            try:
                parser.feed_data(chunk)
            except httptools.HttpParserError:
                raise AssertionError(f"malformed HTTP from the server: {chunk[:200]!r}") from None
            if reply.status == 0 and parser.get_status_code():
                reply.status = parser.get_status_code()
    return reply.status, reply.body


def _logs(mesh: Mesh) -> str:
    logs = Path(mesh.backend.home) / "logs"  # type: ignore[attr-defined]
    return "".join(p.read_text(errors="replace") for p in sorted(logs.glob("*.log")))


@pytest.fixture(scope="module")
def api(mesh: Mesh) -> dict[str, Any]:
    backend = mesh.backend
    state = backend._state()  # type: ignore[attr-defined]
    return {"port": int(state["api_port"]), "auth": f"Bearer {backend._credential()}",  # type: ignore[attr-defined]
            "pid": int(state["pid"]), "pss": pss_mb(int(state["pid"]))}


@settings(settings.get_profile("meshkit-fuzz"), max_examples=200)
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
       route=st.one_of(st.sampled_from(ROUTES), st.sampled_from(ROUTES),
                       st.text(alphabet="/abcxyz%.?&=", max_size=12).map(lambda t: "/" + t)),
       query=queries,
       body=st.one_of(st.dictionaries(st.sampled_from(KEYS), json_values, max_size=5).map(json.dumps).map(str.encode),
                      json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200)))
def test_the_control_plane_api_never_answers_500(api: dict[str, Any], method: str, route: str, query: str,
                                                 body: bytes) -> None:
    TRIED["control-plane API"] += 1
    if route.rstrip("/") == "/shutdown":
        return
    target = route + (f"?{query}" if query else "")
    head = (f"{method} {target} HTTP/1.1\r\nhost: istiod\r\nauthorization: {api['auth']}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n")
    status, reply = _exchange(api["port"], head.encode("latin-1", "replace") + body)
    assert status != 0, "the API closed the connection without an answer"
    assert status < 500 or status in (503, 504), (status, reply[:300])


def _request_bytes(draw: st.DrawFn) -> bytes:
    """Mostly well-formed requests (so they reach routing, filters and the apps) with hostile parts."""
    method = draw(st.sampled_from([b"GET"] * 6 + [b"POST"] * 3 + [b"PUT", b"HEAD", b"OPTIONS", b"CONNECT",
                                                                   b"G\x00T", b"PRI"]))
    target = draw(st.sampled_from([b"/customer"] * 5 + [b"/", b"*", b"http://customer:8080/", b"/customer?a=%zz",
                                                        b"/\xff\xfe", b"/customer/" + b"a" * 300]))
    version = draw(st.sampled_from([b"HTTP/1.1"] * 8 + [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/9", b""]))
    names = st.sampled_from([b"host", b"content-length", b"transfer-encoding", b"expect", b"user-agent",
                             b"x-request-id", b"traceparent", b"x-b3-traceid", b"x-b3-sampled", b"authorization",
                             b"x-envoy-peer-metadata", b"baggage", b"upgrade", b"x-forwarded-for"])
    known = st.sampled_from([b"chunked", b"100-continue", b"-1", b"18446744073709551616", b"keep-alive",
                             b"Bearer x.y.z", b"00-zz-zz-01", b"customer:8080", b"0", b"5", b"a" * 2000, b"eyJ4Ijoi",
                             b"Safari", "é".encode()])
    printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30).map(str.encode)
    values = st.one_of(known, known, printable, printable, st.binary(max_size=30))
    headers = draw(st.lists(st.tuples(st.one_of(names, names, names, st.binary(max_size=10)), values), max_size=5))
    body = draw(st.one_of(st.just(b""), st.binary(max_size=300), st.just(b"5\r\nhello\r\n0\r\n\r\n"),
                          st.just(b"zz\r\n")))
    head = method + b" " + target + b" " + version + b"\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    return head + b"connection: close\r\n\r\n" + body


@st.composite
def _wellformed(draw: st.DrawFn) -> bytes:
    """Requests the parser accepts, so they reach routing, the filters and the apps: hostile values only."""
    method = draw(st.sampled_from([b"GET", b"POST", b"HEAD", b"DELETE", b"OPTIONS"]))
    target = draw(st.sampled_from([b"/customer", b"/customer/x?y=%zz&y=2", b"/", b"/customer/" + b"a" * 3000,
                                   b"/customer#frag", b"http://customer:8080/customer"]))
    printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(str.encode)
    names = st.sampled_from([b"user-agent", b"x-request-id", b"traceparent", b"tracestate", b"x-b3-traceid",
                             b"x-b3-spanid", b"x-b3-sampled", b"b3", b"authorization", b"x-envoy-peer-metadata",
                             b"x-envoy-peer-metadata-id", b"baggage", b"x-forwarded-for", b"x-forwarded-proto",
                             b"cookie", b"x-envoy-attempt-count", b"expect", b"te", b"host"])
    headers = draw(st.lists(st.tuples(names, printable), max_size=6))
    body = draw(st.binary(max_size=200)) if method == b"POST" else b""
    lines = [method + b" " + target + b" HTTP/1.1", *(k + b": " + v for k, v in headers)]
    if body:
        lines.append(b"content-length: %d" % len(body))
    return b"\r\n".join([*lines, b"connection: close", b"", b""]) + body


raw_inputs = st.one_of(_wellformed(), _wellformed(), st.composite(_request_bytes)(), st.binary(max_size=600))


@pytest.fixture(scope="module")
def listeners(mesh: Mesh) -> dict[str, Any]:
    pods = mesh.pods()
    gateway = next(p for p in pods if p.app == "istio-ingressgateway")
    customer = next(p for p in pods if p.app == "customer")
    return {"gateway": int(gateway.extra["ports"]["outbound"]), "inbound": int(customer.extra["ports"]["inbound"]),
            "pids": {p.name: int(p.extra["pid"]) for p in pods},
            "pss": {p.name: pss_mb(int(p.extra["pid"])) for p in pods}}


@settings(settings.get_profile("meshkit-fuzz"), max_examples=250)
@given(data=raw_inputs, target=st.sampled_from(["gateway", "inbound"]))
def test_the_proxy_listeners_never_answer_500_to_raw_bytes(listeners: dict[str, Any], data: bytes,
                                                           target: str) -> None:
    TRIED["proxy listeners (raw bytes)"] += 1
    status, reply = _exchange(listeners[target], data)
    # the proxy answers (4xx/2xx, or an upstream's 5xx with Envoy's flags) or just closes: never a bug's 500
    assert status != 500, reply[:300]
    assert b"Traceback" not in reply


def test_after_fuzzing_every_process_serves_logs_no_traceback_and_memory_held(
        mesh: Mesh, api: dict[str, Any], listeners: dict[str, Any]) -> None:
    mesh.reset()
    assert mesh.curl("/customer")[0] == 200
    assert "Traceback" not in _logs(mesh)
    assert pss_mb(api["pid"]) < api["pss"] + 25, "the control plane's memory grew while fuzzed"
    for name, pid in listeners["pids"].items():
        assert pss_mb(pid) < listeners["pss"][name] + 10, name
