"""TLS contexts for the local mesh: Istio mutual TLS between sidecars, SIMPLE/MUTUAL toward external
hosts, the ingress gateway's TLS, and certificate rotation that never drops a connection.

Identity comes from the verified peer certificate (its SPIFFE URI), never from a header: hostname
checking is off for mesh connections because a sidecar checks the SPIFFE id with
:func:`verify_peer` instead, as Envoy checks SANs.

Example:
    >>> contexts = RotatingContexts(ca.issue("tutorial", "preference"))     # doctest: +SKIP
    >>> server = await asyncio.start_server(handle, "127.0.0.1", 0,
    ...                                     ssl=contexts.listener_context)  # doctest: +SKIP
    >>> contexts.rotate(ca.issue("tutorial", "preference"))                 # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import socket
import ssl
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshkit.backends.local.ca import WorkloadCert, peer_spiffe_id, principal_of
from meshkit.errors import InvalidConfig, MeshkitError

# A TLS record starts with content type 22 (handshake) and major version 3.
TLS_HANDSHAKE_RECORD = 0x16
TLS_PEEK_BYTES = 3


class PeerIdentityError(MeshkitError):
    """The peer's certificate was valid but did not carry an identity this connection accepts."""


class MeshClientContext(ssl.SSLContext):
    """A client SSLContext that remembers which SPIFFE ids the server may present."""

    expected_spiffe: frozenset[str] | None = None


def _load_chain(ctx: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    """Load a PEM chain and key from memory.

    ``SSLContext.load_cert_chain`` only reads files; an anonymous memory file (Linux) keeps the
    private key off the disk, and elsewhere a 0600 file in a private temp dir lives for one call.
    """
    data = (key_pem + "\n" + cert_pem).encode()
    if hasattr(os, "memfd_create") and Path("/proc/self/fd").is_dir():
        fd = os.memfd_create("meshkit-tls", 0)
        try:
            os.write(fd, data)
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="meshkit-tls-") as tmp:
        path = Path(tmp) / "chain.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        ctx.load_cert_chain(str(path))


def _harden(ctx: ssl.SSLContext) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION


def server_context(cert: WorkloadCert) -> ssl.SSLContext:
    """Inbound ISTIO_MUTUAL: present the workload cert, require a client cert signed by the mesh root.

    >>> ctx = server_context(ca.issue("tutorial", "preference"))            # doctest: +SKIP
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=cert.root_pem)
    _load_chain(ctx, cert.chain_pem, cert.key_pem)
    return ctx


def client_context(cert: WorkloadCert, expected_spiffe: str | None = None) -> MeshClientContext:
    """Outbound ISTIO_MUTUAL: present the workload cert and verify the server against the mesh root.

    ``expected_spiffe`` (a SPIFFE id or principal) is checked by :func:`verify_peer` after the
    handshake; ``None`` accepts any identity the mesh root vouches for.

    >>> ctx = client_context(cert, "spiffe://cluster.local/ns/tutorial/sa/preference")  # doctest: +SKIP
    """
    ctx = MeshClientContext(ssl.PROTOCOL_TLS_CLIENT)
    _harden(ctx)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=cert.root_pem)
    _load_chain(ctx, cert.chain_pem, cert.key_pem)
    ctx.expected_spiffe = frozenset({_as_spiffe(expected_spiffe)}) if expected_spiffe else None
    return ctx


def _as_spiffe(identity: str) -> str:
    return identity if identity.startswith("spiffe://") else f"spiffe://{identity}"


def verify_peer(
    ssl_object: ssl.SSLObject | ssl.SSLSocket | None, allowed: Iterable[str] | None = None
) -> str:
    """Return the peer's SPIFFE id, or raise :class:`PeerIdentityError` if it is absent or not allowed.

    ``allowed`` holds SPIFFE ids or principals; when None the context's ``expected_spiffe`` (see
    :func:`client_context`) applies, and when that is None too any mesh identity is accepted.

    >>> verify_peer(ssl_object, {"cluster.local/ns/tutorial/sa/customer"})  # doctest: +SKIP
    'spiffe://cluster.local/ns/tutorial/sa/customer'
    """
    spiffe = peer_spiffe_id(ssl_object)
    if spiffe is None:
        raise PeerIdentityError("peer presented no verified certificate with a SPIFFE identity")
    wanted: frozenset[str] | None
    if allowed is not None:
        wanted = frozenset(_as_spiffe(a) for a in allowed)
    else:
        context = getattr(ssl_object, "context", None)
        wanted = context.expected_spiffe if isinstance(context, MeshClientContext) else None
    if wanted is not None and spiffe not in wanted:
        names = ", ".join(sorted(principal_of(w) for w in wanted))
        raise PeerIdentityError(f"peer identity {principal_of(spiffe)} is not one of: {names}")
    return spiffe


def simple_client_context(ca_pem: str | None = None, insecure_skip_verify: bool = False) -> ssl.SSLContext:
    """DestinationRule ``tls.mode: SIMPLE`` toward an external host: verify the server (hostname
    included) against ``ca_pem`` (``caCertificates``) or the system trust store.

    >>> ctx = simple_client_context()                                        # doctest: +SKIP
    """
    ctx = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    _harden(ctx)
    if insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def mutual_client_context(cert_pem: str, key_pem: str, ca_pem: str | None = None) -> ssl.SSLContext:
    """DestinationRule ``tls.mode: MUTUAL``: like SIMPLE, also presenting a client certificate."""
    ctx = simple_client_context(ca_pem)
    _load_chain(ctx, cert_pem, key_pem)
    return ctx


def gateway_server_context(cert_pem: str, key_pem: str, ca_pem: str | None = None) -> ssl.SSLContext:
    """Gateway ``tls.mode: SIMPLE`` with a learner-made certificate; with ``ca_pem``, Gateway MUTUAL.

    >>> cert_pem, key_pem = make_self_signed(["customer.example.com"])      # doctest: +SKIP
    >>> ctx = gateway_server_context(cert_pem, key_pem)                      # doctest: +SKIP
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx)
    try:
        _load_chain(ctx, cert_pem, key_pem)
        if ca_pem:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cadata=ca_pem)
    except ssl.SSLError as exc:
        problem = f"gateway TLS credential: certificate or key is not usable ({exc.reason})"
        raise InvalidConfig([problem]) from None
    return ctx


def make_self_signed(hosts: Iterable[str], days: int = 365) -> tuple[str, str]:
    """Mint a self-signed server certificate for ``hosts`` (DNS names or IPs) — the learner's
    ``openssl req -x509`` for the HTTPS gateway. Returns ``(cert_pem, key_pem)``.

    >>> cert_pem, key_pem = make_self_signed(["customer.example.com"])
    >>> cert_pem.startswith("-----BEGIN CERTIFICATE-----")
    True
    """
    names = [h.strip() for h in hosts if h.strip()]
    if not names:
        raise InvalidConfig(["make_self_signed: give at least one host name"])
    sans: list[x509.GeneralName] = []
    for host in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def is_tls_client_hello(first_bytes: bytes) -> bool:
    """Whether a connection's first bytes start a TLS handshake (a PERMISSIVE listener's peek).

    Needs at least :data:`TLS_PEEK_BYTES` bytes; no HTTP/1 method starts with 0x16.

    >>> is_tls_client_hello(b"\\x16\\x03\\x01\\x02\\x00\\x01")
    True
    >>> is_tls_client_hello(b"GET / HTTP/1.1\\r\\n")
    False
    """
    if len(first_bytes) < TLS_PEEK_BYTES:
        return False
    if first_bytes[0] != TLS_HANDSHAKE_RECORD or first_bytes[1] != 0x03 or first_bytes[2] > 0x04:
        return False
    # Byte 5, when present, is the handshake message type: 1 = ClientHello.
    return len(first_bytes) < 6 or first_bytes[5] == 0x01


async def peek_is_tls(sock: socket.socket, timeout: float = 5.0) -> bool:
    """Wait for a freshly accepted (non-blocking) socket's first bytes and tell TLS from plaintext
    without consuming them, so the socket can then be handed to
    ``loop.connect_accepted_socket(factory, sock, ssl=ctx_or_None)``. Raises TimeoutError when the
    client sends nothing, ConnectionError when it closes first.

    >>> sock, _ = await loop.sock_accept(listener)                           # doctest: +SKIP
    >>> tls = await peek_is_tls(sock)                                        # doctest: +SKIP
    """
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def ready() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(fd, ready)
    try:
        await asyncio.wait_for(readable, timeout)
    finally:
        loop.remove_reader(fd)
    first = sock.recv(8, socket.MSG_PEEK)
    if not first:
        raise ConnectionError("client closed the connection before sending anything")
    # A short first segment still tells: no plaintext protocol we serve starts with 0x16.
    return is_tls_client_hello(first) if len(first) >= TLS_PEEK_BYTES else first[0] == TLS_HANDSHAKE_RECORD


class RotatingContexts:
    """A workload's current server and client contexts, swapped as a unit by :meth:`rotate`.

    Connections already established keep the context they were made with, so rotation drops
    nothing; new connections get the new certificate. Use :attr:`server` per connection (e.g. with
    ``loop.start_tls``) or :attr:`listener_context` for a listener created once, which switches each
    new handshake to the current context.

    >>> contexts = RotatingContexts(cert)                                    # doctest: +SKIP
    >>> contexts.rotate_if_needed(lambda: ca.issue("tutorial", "customer"), time.time())  # doctest: +SKIP
    False
    """

    def __init__(self, cert: WorkloadCert):
        self._state = self._build(cert)
        self.generation = 0
        self.rotated_at = time.time()  # when the current certificate was installed (SDS last_updated)
        listener = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        _harden(listener)
        listener.verify_mode = ssl.CERT_REQUIRED
        listener.load_verify_locations(cadata=cert.root_pem)
        _load_chain(listener, cert.chain_pem, cert.key_pem)
        listener.sni_callback = self._switch
        self.listener_context = listener

    def __repr__(self) -> str:
        return f"RotatingContexts(spiffe_id={self.cert.spiffe_id!r}, generation={self.generation})"

    @staticmethod
    def _build(cert: WorkloadCert) -> tuple[WorkloadCert, ssl.SSLContext, MeshClientContext]:
        return cert, server_context(cert), client_context(cert)

    def _switch(self, ssl_object: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        ssl_object.context = self._state[1]

    @property
    def cert(self) -> WorkloadCert:
        return self._state[0]

    @property
    def server(self) -> ssl.SSLContext:
        return self._state[1]

    @property
    def client(self) -> MeshClientContext:
        return self._state[2]

    def client_for(self, expected_spiffe: str | None) -> MeshClientContext:
        """A client context for one destination identity, built from the current certificate."""
        return client_context(self.cert, expected_spiffe)

    def rotate(self, new_cert: WorkloadCert) -> None:
        """Install ``new_cert``: contexts are built first, then swapped in one assignment."""
        if new_cert.root_pem != self.cert.root_pem:
            # Trust both roots on the long-lived listener so peers holding either still connect.
            self.listener_context.load_verify_locations(cadata=new_cert.root_pem)
        self._state = self._build(new_cert)
        self.generation += 1
        self.rotated_at = time.time()

    def rotate_if_needed(self, issue: Callable[[], WorkloadCert], now: dt.datetime | float) -> bool:
        """Rotate when the current certificate passed half its life; returns whether it rotated."""
        if not self.cert.needs_rotation(now):
            return False
        self.rotate(issue())
        return True
