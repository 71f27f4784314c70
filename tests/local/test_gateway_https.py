"""The ingress gateway's HTTPS variant: a Gateway server on 443 with a learner-made certificate."""

from __future__ import annotations

import pytest

from meshkit.backends.local.tls import make_self_signed
from meshkit.errors import MeshkitError
from meshkit.mesh import Mesh

HTTPS = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: customer-gateway-https}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [customer.example.com]
    tls: {mode: SIMPLE, credentialName: customer-credential}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: customer-https}
spec:
  hosts: [customer.example.com]
  gateways: [customer-gateway-https]
  http:
  - match: [{uri: {prefix: /secure}}]
    rewrite: {uri: /}
    route: [{destination: {host: customer, port: {number: 8080}}}]
"""


def test_https_gateway_with_learner_certificate(clean: Mesh) -> None:
    cert, key = make_self_signed(["customer.example.com"])
    clean.create_tls_secret("customer-credential", cert, key)
    clean.apply(HTTPS)
    host = {"host": "customer.example.com"}
    code, body = clean.curl("/secure", host, https=True, cacert=cert)
    assert code == 200 and body.startswith("customer => preference => recommendation")
    # the HTTPS VirtualService is bound to the 443 server only: plain HTTP does not know /secure
    assert clean.curl("/secure", host)[0] == 404
    # an SNI name no Gateway server lists gets no certificate: the handshake is refused
    assert clean.curl("/secure", {"host": "other.example.com"}, https=True, cacert=cert)[0] == 0
    # a client that does not trust the learner's certificate refuses it
    assert clean.curl("/secure", host, https=True)[0] == 0


def test_missing_credential_is_reported(clean: Mesh) -> None:
    clean.apply(HTTPS.replace("customer-credential", "nowhere"))
    assert clean.curl("/secure", {"host": "customer.example.com"}, https=True)[0] == 0


def test_bad_secret_is_refused(clean: Mesh) -> None:
    cert, _ = make_self_signed(["a.example.com"])
    _, other_key = make_self_signed(["b.example.com"])
    with pytest.raises(MeshkitError, match="certificate or key is not usable"):
        clean.create_tls_secret("mismatched", cert, other_key)
