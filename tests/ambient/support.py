"""Helpers the ambient tests share."""

from __future__ import annotations

import socket
import ssl

from cryptography import x509


def presented_certificate(port: int) -> x509.Certificate:
    """The certificate an HBONE listener (ztunnel's or a waypoint's) presents to a new handshake."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)
