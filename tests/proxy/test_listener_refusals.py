"""Requests a proxy's listener refuses itself are logged, measured and counted as Envoy does.

A sidecar (and a gateway) run in this process on real loopback sockets; a raw client sends what the
HTTP codec must refuse: bytes that are no HTTP (400), a head over 60 KiB or over 100 headers (431), a
request that stalls (408 after the stream idle timeout), and more connections than the listener's
cap (closed at accept, counted in ``downstream_cx_overflow``). Names are Envoy's and Istio's:
response flag DPE (SI for the idle timeout), details ``http1.codec_error`` & co., ``/stats`` counters
``http.<stat_prefix>.downstream_cx_protocol_error`` and ``listener.<address>.downstream_cx_overflow``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from prometheus_client.parser import text_string_to_metric_families

from meshkit.backends.local.proxy.accesslog import parse_line
from meshkit.backends.local.proxy.admin import EnvoyAdmin
from meshkit.backends.local.proxy.config import ProxyIdentity
from meshkit.backends.local.proxy.configdump import DumpContext
from meshkit.backends.local.proxy.sidecar import Sidecar
from meshkit.http1 import Limits, Request, Response, serve
from tests.proxy.support import run

GATEWAY = ProxyIdentity("istio-ingressgateway-7d4f8c9b6-abcde", "istio-ingressgateway", "",
                        {"app": "istio-ingressgateway", "workload": "istio-ingressgateway"}, "istio-system",
                        "istio-ingressgateway-service-account", gateway=True)
PREFERENCE = ProxyIdentity("preference-v1-6b8c7f5d9c-x2x7q", "preference", "v1",
                           {"app": "preference", "version": "v1", "workload": "preference-v1"}, "tutorial",
                           "preference")


async def _raw(port: int, data: bytes, wait: float = 30.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the proxy closes it (or ``wait`` passes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    out = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), wait):
            out += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    writer.close()
    return out


def _stats(sidecar: Sidecar) -> dict[str, int]:
    answer = EnvoyAdmin(sidecar, lambda: DumpContext({}, "PERMISSIVE")).handle("/stats")
    assert answer is not None and answer[0] == 200
    return {name: int(value) for name, _, value in (line.partition(": ") for line in answer[2].decode().splitlines())}


def _requests_total(sidecar: Sidecar) -> list[dict[str, str]]:
    """One dict of labels (with the count under ``value``) per istio_requests_total series."""
    text = sidecar.telemetry.stats.exposition().decode()
    return [{**s.labels, "value": str(int(s.value))} for fam in text_string_to_metric_families(text)
            for s in fam.samples if s.name == "istio_requests_total"]


def _with(identity: ProxyIdentity, limits: Limits, body: Callable[[Sidecar], Awaitable[None]]) -> None:
    async def go() -> None:
        sidecar = Sidecar(identity)
        await sidecar.start(limits=limits)
        try:
            await body(sidecar)
        finally:
            await sidecar.stop()

    run(go())


def test_codec_refusals_at_a_gateway_are_logged_measured_and_counted() -> None:
    async def body(gw: Sidecar) -> None:
        port = gw.ports["outbound"]
        assert (await _raw(port, b"\x16\x03\x01 this is no HTTP\r\n\r\n")).startswith(b"HTTP/1.1 400 Bad Request")
        big = b"GET /customer HTTP/1.1\r\nhost: customer.example.com\r\nx-big: " + b"a" * 70 * 1024 + b"\r\n\r\n"
        assert (await _raw(port, big)).startswith(b"HTTP/1.1 431")
        many = "".join(f"x-h{i}: v\r\n" for i in range(101)).encode()
        assert (await _raw(port, b"GET / HTTP/1.1\r\nhost: x\r\n" + many + b"\r\n")).startswith(b"HTTP/1.1 431")
        # a head that stops halfway: answered 408 once the stream idle timeout passes (waited for, not timed)
        assert (await _raw(port, b"GET /customer HTTP/1.1\r\nhost: cust")).startswith(b"HTTP/1.1 408")

        lines = [parse_line(line) for line in gw.telemetry.access_log.tail()]
        got = [(r["response_code"], r["response_flags"], r["response_code_details"], r["method"], r["path"])
               for r in lines]
        assert got == [(400, "DPE", "http1.codec_error", "", ""),
                       (431, "DPE", "http1.headers_too_large", "", ""),
                       (431, "DPE", "http1.too_many_headers", "", ""),
                       (408, "SI", "stream_idle_timeout", "", "")], got
        assert all(r["bytes_sent"] > 0 and r["upstream_cluster"] == "" and r["route_name"] == "" for r in lines)
        assert all(r["downstream_local_address"] == f"127.0.0.1:{port}" for r in lines)
        assert lines[3]["duration_ms"] >= 200  # the idle timeout the stalled request waited out

        series = {(s["response_code"], s["response_flags"]): s for s in _requests_total(gw)}
        assert {k: int(s["value"]) for k, s in series.items()} == {("400", "DPE"): 1, ("431", "DPE"): 2,
                                                                   ("408", "SI"): 1}
        for s in series.values():  # the gateway knows itself, and nothing of a request no route took
            assert (s["reporter"], s["source_workload"], s["source_workload_namespace"]) == (
                "source", "istio-ingressgateway", "istio-system")
            assert s["destination_service"] == s["destination_workload"] == "unknown"
        assert len(gw.telemetry.drain()) == 4  # and each is shipped to the collector

        stats = _stats(gw)
        http = "http.outbound_0.0.0.0_8080;."
        assert stats[f"{http}downstream_cx_protocol_error"] == 3
        assert stats[f"{http}downstream_rq_idle_timeout"] == 1
        assert stats[f"{http}downstream_rq_4xx"] == 4 and stats[f"{http}downstream_rq_total"] == 4
        assert stats["listener.0.0.0.0_8080.downstream_cx_total"] == 4
        assert stats["listener.0.0.0.0_8080.downstream_cx_overflow"] == 0
        assert stats["http.outbound_0.0.0.0_8443;.downstream_cx_protocol_error"] == 0  # the HTTPS listener's own

    _with(GATEWAY, Limits(stream_idle_timeout=0.2), body)


def test_an_http_1_0_request_gets_426_as_from_envoy_and_an_app_still_answers_it() -> None:
    """Envoy's codec refuses HTTP/1.0 unless accept_http_10 is set (Istio leaves it unset: `ab` and
    `curl -0` get 426 from every proxy); a server that is no proxy keeps answering it."""
    async def body(gw: Sidecar) -> None:
        port = gw.ports["outbound"]
        answer = await _raw(port, b"GET /customer HTTP/1.0\r\nhost: customer.example.com\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 426 Upgrade Required\r\n") and answer.endswith(b"\r\n\r\nUpgrade Required")
        assert b"connection: close" in answer.lower()
        [line] = [parse_line(line) for line in gw.telemetry.access_log.tail()]
        assert (line["response_code"], line["response_flags"], line["response_code_details"], line["method"],
                line["path"]) == (426, "DPE", "low_version", "GET", "/customer")
        stats = _stats(gw)
        http = "http.outbound_0.0.0.0_8080;."
        assert stats[f"{http}downstream_cx_protocol_error"] == 1 and stats[f"{http}downstream_rq_4xx"] == 1

        async def hello(req: Request) -> Response:
            return Response(200, {"content-type": "text/plain"}, b"hi\n")

        app = await serve(hello, "127.0.0.1", 0)
        try:
            plain = await _raw(app.sockets[0].getsockname()[1], b"GET / HTTP/1.0\r\nhost: app\r\n\r\n", wait=5.0)
            assert plain.startswith(b"HTTP/1.1 200") and plain.endswith(b"hi\n")
        finally:
            app.close()

    _with(GATEWAY, Limits(), body)


def _stall(identity: ProxyIdentity, host: str) -> dict[str, str]:
    """A request whose body stops halfway (408 after the stream idle timeout); its series' labels."""
    found: dict[str, str] = {}

    async def body(proxy: Sidecar) -> None:
        head = (f"POST /customer?x=1 HTTP/1.1\r\nhost: {host}\r\nuser-agent: slow/1.0\r\n"
                "x-request-id: stalled-1\r\ncontent-length: 100\r\n\r\n").encode()
        answer = await _raw(proxy.ports["outbound"], head + b"only part of it")
        assert answer.startswith(b"HTTP/1.1 408") and answer.endswith(b"stream timeout")
        [line] = [parse_line(line) for line in proxy.telemetry.access_log.tail()]
        assert (line["method"], line["path"], line["authority"], line["user_agent"], line["request_id"]) == (
            "POST", "/customer?x=1", host, "slow/1.0", "stalled-1")
        assert (line["response_code"], line["response_flags"], line["response_code_details"]) == (
            408, "SI", "stream_idle_timeout")
        assert line["bytes_received"] >= len(b"only part of it")
        assert _stats(proxy)["http.outbound_0.0.0.0_8080;.downstream_rq_idle_timeout"] == 1
        [series] = _requests_total(proxy)
        found.update(series)

    _with(identity, Limits(stream_idle_timeout=0.2), body)
    return found


def test_a_request_whose_body_stalls_is_logged_with_its_head() -> None:
    # no route was taken: a sidecar's outbound stats fall back to the Host header for the service ...
    series = _stall(PREFERENCE, "recommendation:8080")
    assert (series["reporter"], series["source_workload"]) == ("source", "preference-v1")
    assert series["destination_service"] == series["destination_service_name"] == "recommendation:8080"
    # ... a gateway's do not (Istio sets disable_host_header_fallback for gateways and inbound)
    series = _stall(GATEWAY, "customer.example.com")
    assert series["destination_service"] == series["destination_service_name"] == "unknown"


def test_an_inbound_refusal_is_reported_by_the_destination_as_itself() -> None:
    async def body(sidecar: Sidecar) -> None:
        port = sidecar.ports["inbound"]
        answer = await _raw(port, b"GET /\x00 HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400")
        [line] = [parse_line(line) for line in sidecar.telemetry.access_log.tail()]
        assert (line["response_code"], line["response_flags"]) == (400, "DPE")
        [series] = _requests_total(sidecar)
        assert (series["reporter"], series["destination_workload"], series["destination_app"],
                series["destination_principal"]) == ("destination", "preference-v1", "preference",
                                                     "spiffe://cluster.local/ns/tutorial/sa/preference")
        assert (series["source_workload"], series["destination_service"], series["connection_security_policy"]) \
            == ("unknown", "unknown", "none")
        assert _stats(sidecar)["http.inbound_0.0.0.0_8080;.downstream_cx_protocol_error"] == 1
        assert _stats(sidecar)["listener.0.0.0.0_15006.downstream_cx_total"] == 1

    _with(PREFERENCE, Limits(), body)


def test_connections_over_the_listener_cap_are_closed_and_counted_as_overflow() -> None:
    cap, extra = 4, 3

    async def body(gw: Sidecar) -> None:
        port = gw.ports["outbound"]
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(cap)]
        await asyncio.sleep(0)  # let the proxy take them
        refused = 0
        for _ in range(extra):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            try:
                # closed at accept: end of stream or a reset, never an HTTP answer
                data = await asyncio.wait_for(reader.read(1024), 30)
                refused += data == b""
            except (ConnectionResetError, BrokenPipeError):
                refused += 1
            writer.close()
        assert refused == extra
        stats = _stats(gw)
        listener = "listener.0.0.0.0_8080."
        assert stats[f"{listener}downstream_cx_overflow"] == extra
        # a connection closed at accept is no connection of the listener's, nor of its HCM (as in Envoy)
        assert stats[f"{listener}downstream_cx_total"] == cap
        assert stats[f"{listener}downstream_cx_active"] == cap
        assert stats["http.outbound_0.0.0.0_8080;.downstream_cx_total"] == cap
        assert gw.telemetry.access_log.tail() == []  # Envoy logs no request for a connection it never read
        for _, writer in held:
            writer.close()
        # a connection that closes frees its place: the next one is taken (a new one gets a reply)
        for _ in range(200):
            if gw.outbound_downstream.listener.open == 0:
                break
            await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x00\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(1024), 30)).startswith(b"HTTP/1.1 400")
        writer.close()
        assert _stats(gw)[f"{listener}downstream_cx_overflow"] == extra

    _with(GATEWAY, Limits(max_connections=cap), body)
