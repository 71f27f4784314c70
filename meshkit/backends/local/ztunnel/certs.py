"""ztunnel's certificates: one per workload identity on its node, requested and rotated by ztunnel.

ztunnel makes the key, sends the CA a CSR naming the *workload's* SPIFFE identity and proves itself
with its own token (the CA signs only for ambient pods of ztunnel's node), and asks for the lifetime
it is configured with (ztunnel's ``SECRET_TTL``, here ``MESHKIT_ZTUNNEL_SECRET_TTL`` in seconds). Each
certificate is renewed at half its life from issuance, as ztunnel's secret manager does; the listeners switch every
new handshake to the newest certificate while open connections keep the one they were made with.

``dump()`` is the ``certificates`` part of ztunnel's ``config_dump``: per identity its state
(``Initializing``, ``Available``, ``Unavailable: <why>``), the leaf chain and the roots, serial numbers in
decimal, times in RFC 3339 to the second.

Example::

    certs = Certificates(request=ask_the_ca)            # async (pod, identity, ttl_s) -> WorkloadCert
    held = await certs.get("spiffe://cluster.local/ns/tutorial/sa/curl", pod="curl-5f6d7-abcde")
    held.hbone_listener        # an SSLContext for a listener: each handshake uses the current cert
    await certs.refresh_due(time.time())                 # renews those past half their life
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cryptography import x509

from meshkit.backends.local.ca import BACKDATE, WorkloadCert
from meshkit.backends.local.tls import client_context, server_context
from meshkit.backends.local.ztunnel import hbone

TTL_ENV = "MESHKIT_ZTUNNEL_SECRET_TTL"
DEFAULT_TTL_S = 24 * 3600.0  # ztunnel's default SECRET_TTL
Request = Callable[[str, str, float], Awaitable[WorkloadCert]]


def configured_ttl() -> float:
    """ztunnel's requested certificate lifetime: ``MESHKIT_ZTUNNEL_SECRET_TTL`` seconds, or 24 h."""
    raw = os.environ.get(TTL_ENV, "")
    try:
        ttl = float(raw) if raw else DEFAULT_TTL_S
    except ValueError:
        return DEFAULT_TTL_S
    return ttl if ttl > 0 else DEFAULT_TTL_S


@dataclass
class Held:
    """The certificate of one identity, and the TLS contexts made from it."""

    cert: WorkloadCert
    hbone_server: ssl.SSLContext
    hbone_client: ssl.SSLContext
    mtls_server: ssl.SSLContext
    pods: set[str] = field(default_factory=set)  # the enrolled pods with this identity
    hbone_listener: ssl.SSLContext | None = None
    mtls_listener: ssl.SSLContext | None = None
    generation: int = 0

    @classmethod
    def build(cls, cert: WorkloadCert) -> Held:
        held = cls(cert, hbone.hbone_context(server_context(cert)), hbone.hbone_context(client_context(cert)),
                   server_context(cert))
        # listeners are made once: their contexts hand each handshake to the current certificate's
        held.hbone_listener = hbone.hbone_context(server_context(cert))
        held.hbone_listener.sni_callback = lambda obj, _name, _ctx: setattr(obj, "context", held.hbone_server)
        held.mtls_listener = server_context(cert)
        held.mtls_listener.sni_callback = lambda obj, _name, _ctx: setattr(obj, "context", held.mtls_server)
        return held

    def install(self, cert: WorkloadCert) -> None:
        """A renewed certificate: new handshakes use it, open connections keep theirs."""
        self.hbone_server = hbone.hbone_context(server_context(cert))
        self.hbone_client = hbone.hbone_context(client_context(cert))
        self.mtls_server = server_context(cert)
        self.cert = cert
        self.generation += 1


class Certificates:
    """ztunnel's secret manager: a certificate per identity, fetched on demand, renewed at half-life."""

    def __init__(self, request: Request, ttl_s: float | None = None) -> None:
        self.request = request
        self.ttl_s = ttl_s if ttl_s is not None else configured_ttl()
        self.held: dict[str, Held] = {}
        self.state: dict[str, str] = {}  # identity -> Initializing | Available | Unavailable: <why>

    async def get(self, identity: str, pod: str) -> Held:
        """The identity's certificate (requested for ``pod`` the first time); ``pod`` now shares it."""
        held = self.held.get(identity)
        if held is None:
            self.state[identity] = "Initializing"
            try:
                cert = await self.request(pod, identity, self.ttl_s)
            except Exception as exc:
                self.state[identity] = f"Unavailable: {exc}"
                raise
            held = self.held[identity] = Held.build(cert)
            self.state[identity] = "Available"
        held.pods.add(pod)
        return held

    def release(self, identity: str, pod: str) -> None:
        """``pod`` left ambient; an identity no pod needs any more is forgotten, as ztunnel does."""
        held = self.held.get(identity)
        if held is None:
            return
        held.pods.discard(pod)
        if not held.pods:
            del self.held[identity]
            self.state.pop(identity, None)

    async def refresh_due(self, now: float) -> list[str]:
        """Renew every certificate past half its life (the old one serves until the new one arrives).
        Returns the identities renewed; a failed renewal keeps the old certificate and says why."""
        renewed = []
        for identity, held in list(self.held.items()):
            if not held.cert.needs_rotation(now) or not held.pods:
                continue
            try:
                cert = await self.request(sorted(held.pods)[0], identity, self.ttl_s)
            except Exception as exc:
                if not held.cert.is_valid(now):
                    self.state[identity] = f"Unavailable: {exc}"
                continue
            held.install(cert)
            self.state[identity] = "Available"
            renewed.append(identity)
        return renewed

    def next_refresh(self, now: float) -> float:
        """Seconds until the earliest renewal is due (at most 1 s, so a new identity is seen soon)."""
        # half the life from issuance (the CA back-dates not_before for clock skew; WorkloadCert.needs_rotation)
        due = [((h.cert.not_before + BACKDATE).timestamp() + h.cert.not_after.timestamp()) / 2 - now
               for h in self.held.values()]
        return max(0.05, min([1.0, *due]))

    def dump(self) -> list[dict[str, object]]:
        """ztunnel's ``certificates`` in its config dump, sorted by identity."""
        out: list[dict[str, object]] = []
        for identity in sorted(self.state):
            entry: dict[str, object] = {"identity": identity, "state": self.state[identity], "certChain": [],
                                        "rootCerts": []}
            held = self.held.get(identity)
            if held is not None and self.state[identity] == "Available":
                entry["certChain"] = [_cert_dump(pem) for pem in _pems(held.cert.cert_pem)]
                entry["rootCerts"] = [_cert_dump(pem) for pem in _pems(held.cert.root_pem)]
            out.append(entry)
        return out


def _pems(text: str) -> list[str]:
    marker = "-----END CERTIFICATE-----"
    return [part.strip() + "\n" + marker + "\n" for part in text.split(marker) if part.strip()]


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cert_dump(pem: str) -> dict[str, object]:
    cert = x509.load_pem_x509_certificate(pem.encode())
    return {"pem": base64.b64encode(pem.encode()).decode(), "serialNumber": str(cert.serial_number),
            "validFrom": _rfc3339(cert.not_valid_before_utc),
            "expirationTime": _rfc3339(cert.not_valid_after_utc)}


__all__ = ["Certificates", "Held", "configured_ttl"]
