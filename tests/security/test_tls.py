"""Real TLS handshakes on 127.0.0.1: mesh mTLS, refusals, rotation, PERMISSIVE peeking, gateway TLS."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cryptography import x509

from meshkit.backends.local.ca import CertificateAuthority, WorkloadCert, peer_spiffe_id
from meshkit.backends.local.tls import (
    PeerIdentityError,
    RotatingContexts,
    client_context,
    gateway_server_context,
    is_tls_client_hello,
    make_self_signed,
    mutual_client_context,
    peek_is_tls,
    server_context,
    simple_client_context,
    verify_peer,
)
from meshkit.errors import InvalidConfig

TIMEOUT = 5.0
CUSTOMER = "spiffe://cluster.local/ns/tutorial/sa/customer"
PREFERENCE = "spiffe://cluster.local/ns/tutorial/sa/preference"


def _serial(ssl_object: Any) -> int:
    return x509.load_der_x509_certificate(ssl_object.getpeercert(binary_form=True)).serial_number


class EchoIdentity:
    """A TLS server that answers each line with the caller identity taken from its certificate."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, int]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        self.seen.append((peer_spiffe_id(ssl_object), _serial(ssl_object)))
        try:
            while line := await reader.readline():
                # Whatever the request claims (headers included), identity comes from the certificate.
                writer.write(f"{peer_spiffe_id(ssl_object)} {line.decode().strip()}\n".encode())
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


async def _with_server(ctx: ssl.SSLContext, body: Callable[[int, EchoIdentity], Awaitable[None]]) -> EchoIdentity:
    echo = EchoIdentity()
    server = await asyncio.start_server(echo.handle, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        await asyncio.wait_for(body(port, echo), TIMEOUT)
    finally:
        server.close()
        await server.wait_closed()
    return echo


async def _ask(port: int, ctx: ssl.SSLContext | None, line: bytes = b"hello\n") -> bytes | BaseException:
    """Connect, send one line, return the reply line — or the exception the attempt ended with."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        writer.write(line)
        await writer.drain()
        reply = await reader.readline()
        writer.close()
        return reply
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
        return exc


def _refused(result: bytes | BaseException) -> bool:
    return isinstance(result, BaseException) or result == b""


def test_mutual_tls_between_two_workloads(customer: WorkloadCert, preference: WorkloadCert) -> None:
    async def body(port: int, echo: EchoIdentity) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(customer, PREFERENCE))
        ssl_object = writer.get_extra_info("ssl_object")
        assert verify_peer(ssl_object) == PREFERENCE
        assert ssl_object.version() == "TLSv1.3"
        writer.write(b"GET /\n")
        assert await reader.readline() == f"{CUSTOMER} GET /\n".encode()
        writer.close()

    echo = asyncio.run(_with_server(server_context(preference), body))
    assert echo.seen == [(CUSTOMER, customer.serial_number)]


def test_forged_identity_header_is_irrelevant(customer: WorkloadCert, preference: WorkloadCert) -> None:
    forged = b"x-forwarded-client-cert: By=x;URI=spiffe://cluster.local/ns/tutorial/sa/admin\n"

    async def body(port: int, echo: EchoIdentity) -> None:
        reply = await _ask(port, client_context(customer), forged)
        assert isinstance(reply, bytes) and reply.startswith(CUSTOMER.encode() + b" x-forwarded-client-cert")

    asyncio.run(_with_server(server_context(preference), body))


def test_plaintext_client_is_refused_by_a_tls_only_server(preference: WorkloadCert) -> None:
    async def body(port: int, echo: EchoIdentity) -> None:
        result = await _ask(port, None, b"GET / HTTP/1.1\r\nHost: preference\r\n\r\n")
        assert _refused(result)

    echo = asyncio.run(_with_server(server_context(preference), body))
    assert echo.seen == []


def test_client_without_certificate_is_refused(preference: WorkloadCert) -> None:
    no_cert = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    no_cert.check_hostname = False
    no_cert.load_verify_locations(cadata=preference.root_pem)

    async def body(port: int, echo: EchoIdentity) -> None:
        assert _refused(await _ask(port, no_cert))

    assert asyncio.run(_with_server(server_context(preference), body)).seen == []


def test_certificate_from_another_ca_is_refused_both_ways(
    ca: CertificateAuthority, other_ca: CertificateAuthority, preference: WorkloadCert
) -> None:
    impostor = other_ca.issue("tutorial", "customer")  # same identity, wrong issuer
    impostor_ctx = client_context(impostor)
    impostor_ctx.load_verify_locations(cadata=ca.root_pem)  # it trusts the server; the server must not trust it

    async def client_side(port: int, echo: EchoIdentity) -> None:
        assert _refused(await _ask(port, impostor_ctx))

    assert asyncio.run(_with_server(server_context(preference), client_side)).seen == []

    async def server_side(port: int, echo: EchoIdentity) -> None:
        result = await _ask(port, client_context(ca.issue("tutorial", "customer")))
        assert isinstance(result, ssl.SSLCertVerificationError)

    foreign_server = other_ca.issue("tutorial", "preference")
    asyncio.run(_with_server(server_context(foreign_server), server_side))


def test_expired_certificates_are_refused(ca: CertificateAuthority, preference: WorkloadCert) -> None:
    two_hours_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    expired_client = ca.issue("tutorial", "customer", ttl_s=600, now=two_hours_ago)
    assert not expired_client.is_valid()

    async def expired_caller(port: int, echo: EchoIdentity) -> None:
        assert _refused(await _ask(port, client_context(expired_client)))

    assert asyncio.run(_with_server(server_context(preference), expired_caller)).seen == []

    expired_server = ca.issue("tutorial", "preference", ttl_s=600, now=two_hours_ago)

    async def expired_callee(port: int, echo: EchoIdentity) -> None:
        result = await _ask(port, client_context(ca.issue("tutorial", "customer")))
        assert isinstance(result, ssl.SSLCertVerificationError)
        assert "expired" in str(result)

    asyncio.run(_with_server(server_context(expired_server), expired_callee))


def test_verify_peer_rejects_an_unexpected_identity(customer: WorkloadCert, preference: WorkloadCert) -> None:
    async def body(port: int, echo: EchoIdentity) -> None:
        _reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(customer, "cluster.local/ns/tutorial/sa/recommendation")
        )
        ssl_object = writer.get_extra_info("ssl_object")
        with pytest.raises(PeerIdentityError, match="tutorial/sa/preference is not one of"):
            verify_peer(ssl_object)
        assert verify_peer(ssl_object, {"cluster.local/ns/tutorial/sa/preference"}) == PREFERENCE
        writer.close()

    asyncio.run(_with_server(server_context(preference), body))
    with pytest.raises(PeerIdentityError, match="no verified certificate"):
        verify_peer(None)


def test_rotation_keeps_open_connections_and_new_ones_use_the_new_cert(ca: CertificateAuthority) -> None:
    server_certs = RotatingContexts(ca.issue("tutorial", "preference"))
    client_certs = RotatingContexts(ca.issue("tutorial", "customer"))
    old_server, old_client = server_certs.cert, client_certs.cert

    async def body(port: int, echo: EchoIdentity) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_certs.client)
        writer.write(b"before\n")
        assert (await reader.readline()).endswith(b"before\n")

        server_certs.rotate(ca.issue("tutorial", "preference"))
        client_certs.rotate(ca.issue("tutorial", "customer"))
        assert server_certs.generation == client_certs.generation == 1

        writer.write(b"after\n")  # the connection made before the rotation still works
        assert (await reader.readline()).endswith(b"after\n")
        assert _serial(writer.get_extra_info("ssl_object")) == old_server.serial_number

        reader2, writer2 = await asyncio.open_connection("127.0.0.1", port, ssl=client_certs.client)
        writer2.write(b"new\n")
        assert await reader2.readline() == f"{CUSTOMER} new\n".encode()
        assert _serial(writer2.get_extra_info("ssl_object")) == server_certs.cert.serial_number
        writer.close()
        writer2.close()

    echo = asyncio.run(_with_server(server_certs.listener_context, body))
    assert [serial for _, serial in echo.seen] == [old_client.serial_number, client_certs.cert.serial_number]
    assert server_certs.cert.serial_number != old_server.serial_number


def test_rotate_if_needed_waits_for_half_life(ca: CertificateAuthority) -> None:
    start = dt.datetime.now(dt.UTC)
    contexts = RotatingContexts(ca.issue("tutorial", "customer", ttl_s=3600, now=start))
    issued: list[WorkloadCert] = []

    def issue() -> WorkloadCert:
        issued.append(ca.issue("tutorial", "customer"))
        return issued[-1]

    assert contexts.rotate_if_needed(issue, start + dt.timedelta(minutes=10)) is False
    assert contexts.rotate_if_needed(issue, start + dt.timedelta(minutes=40)) is True
    assert contexts.cert is issued[0] and contexts.generation == 1
    assert "PRIVATE KEY" not in repr(contexts)


def test_permissive_listener_peeks_tls_versus_plaintext(customer: WorkloadCert, preference: WorkloadCert) -> None:
    """The recipe for a PERMISSIVE inbound port: accept, peek, then serve TLS or plaintext."""
    contexts = RotatingContexts(preference)
    request = b"GET / HTTP/1.1\r\nHost: preference\r\nx-b3-traceid: 463ac35c9f6413ad\r\n\r\n"
    seen: list[str] = []

    class Inbound(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            ssl_object = transport.get_extra_info("ssl_object")
            seen.append(f"mtls {peer_spiffe_id(ssl_object)}" if ssl_object else "plaintext")

        def data_received(self, data: bytes) -> None:
            seen.append(data.split(b"\r\n")[0].decode())
            assert isinstance(self.transport, asyncio.WriteTransport)
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    async def accept_loop(listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            sock, _addr = await loop.sock_accept(listener)
            tls = await peek_is_tls(sock)
            await loop.connect_accepted_socket(Inbound, sock, ssl=contexts.server if tls else None)

    async def call(port: int, ctx: ssl.SSLContext | None) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        writer.write(request)
        await writer.drain()
        reply = await reader.readuntil(b"ok")
        writer.close()
        return reply

    async def main() -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        port = listener.getsockname()[1]
        acceptor = asyncio.ensure_future(accept_loop(listener))
        try:
            assert (await call(port, None)).endswith(b"ok")
            assert (await call(port, client_context(customer))).endswith(b"ok")
        finally:
            acceptor.cancel()
            listener.close()

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    assert seen == ["plaintext", "GET / HTTP/1.1", f"mtls {CUSTOMER}", "GET / HTTP/1.1"]


def test_peek_reports_a_client_that_sends_nothing() -> None:
    async def main() -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        loop = asyncio.get_running_loop()
        client = socket.create_connection(listener.getsockname())
        sock, _ = await loop.sock_accept(listener)
        with pytest.raises(TimeoutError):
            await peek_is_tls(sock, timeout=0.05)
        client.close()
        with pytest.raises(ConnectionError):
            await peek_is_tls(sock, timeout=TIMEOUT)
        sock.close()
        listener.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00", True),
        (b"\x16\x03\x03", True),
        (b"\x16\x03", False),
        (b"\x16\x03\x01\x02\x00\x02", False),  # a handshake record, but not a ClientHello
        (b"\x17\x03\x03\x00\x10", False),  # application data
        (b"GET / HTTP/1.1\r\n", False),
        (b"PRI * HTTP/2.0\r\n", False),
        (b"", False),
    ],
)
def test_is_tls_client_hello(data: bytes, expected: bool) -> None:
    assert is_tls_client_hello(data) is expected


def test_gateway_tls_simple_with_a_learner_made_certificate() -> None:
    cert_pem, key_pem = make_self_signed(["customer.example.com", "127.0.0.1"])
    parsed = x509.load_pem_x509_certificate(cert_pem.encode())
    names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["customer.example.com"]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"customer => preference => recommendation v1\n")
        await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=gateway_server_context(cert_pem, key_pem))
        port = server.sockets[0].getsockname()[1]
        try:
            trusted = simple_client_context(cert_pem)
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=trusted, server_hostname="customer.example.com"
            )
            writer.write(b"GET /\n")
            assert (await reader.readline()).startswith(b"customer =>")
            writer.close()
            with pytest.raises(ssl.SSLCertVerificationError, match=r"[Hh]ostname"):
                await asyncio.open_connection("127.0.0.1", port, ssl=trusted, server_hostname="other.example.com")
            with pytest.raises(ssl.SSLCertVerificationError):  # not in the system trust store
                await asyncio.open_connection(
                    "127.0.0.1", port, ssl=simple_client_context(), server_hostname="customer.example.com"
                )
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def test_gateway_mutual_requires_a_client_certificate() -> None:
    server_pem, server_key = make_self_signed(["gw.example.com"])
    client_pem, client_key = make_self_signed(["client.example.com"])

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"ok\n")
        await writer.drain()
        writer.close()

    async def main() -> None:
        ctx = gateway_server_context(server_pem, server_key, ca_pem=client_pem)
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            with_cert = mutual_client_context(client_pem, client_key, ca_pem=server_pem)
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=with_cert, server_hostname="gw.example.com"
            )
            writer.write(b"hi\n")
            assert await reader.readline() == b"ok\n"
            writer.close()
            anonymous = simple_client_context(server_pem)
            result: bytes | BaseException
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=anonymous, server_hostname="gw.example.com"
                )
                writer.write(b"hi\n")
                result = await reader.readline()
            except (OSError, ssl.SSLError) as exc:
                result = exc
            assert _refused(result)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def test_gateway_credential_errors_are_located() -> None:
    cert_pem, _key = make_self_signed(["a.example.com"])
    _other_cert, other_key = make_self_signed(["b.example.com"])
    with pytest.raises(InvalidConfig, match="gateway TLS credential"):
        gateway_server_context(cert_pem, other_key)
    with pytest.raises(InvalidConfig, match="at least one host"):
        make_self_signed([" "])
