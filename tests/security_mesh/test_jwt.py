"""End-user authentication on real sidecars: RequestAuthentication with the mesh's local issuer, Envoy's
401 bodies for bad tokens, claims in AuthorizationPolicy, and no token ever written to a log.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from meshkit.backends.local.controlplane import LOCAL_JWKS_URI
from meshkit.backends.local.jwt import b64url_encode
from meshkit.mesh import Mesh
from tests.security_mesh.conftest import RBAC_DENIED, cli, istiofile

CHAIN_OK = "customer => preference => recommendation v"
REQUEST_AUTHENTICATION = f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: customerjwt, namespace: tutorial}}
spec:
  selector: {{matchLabels: {{app: customer}}}}
  jwtRules:
  - issuer: testing@secure.istio.io
    jwksUri: {LOCAL_JWKS_URI}
"""
USED_TOKENS: list[str] = []  # every token sent in this module, for the log-leak check at the end


def bearer(token: str) -> dict[str, str]:
    USED_TOKENS.append(token)
    return {"authorization": f"Bearer {token}"}


def tampered(token: str, **changes: str) -> str:
    """The same header and signature over a payload with changed claims."""
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return f"{head}.{b64url_encode(json.dumps(claims).encode())}.{signature}"


def unsigned(token: str, signature: str = "") -> str:
    """``alg: none``: the payload of a real token under a header that asks for no signature at all."""
    head = b64url_encode(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{head}.{token.split('.')[1]}.{signature}"


@pytest.fixture
def authn(clean: Mesh) -> Mesh:
    clean.apply(REQUEST_AUTHENTICATION)
    assert clean.warnings == []  # the jwksUri resolves inside the local mesh
    return clean


def test_without_a_token_requests_pass_until_a_policy_asks_for_one(authn: Mesh) -> None:
    status, body = authn.curl()
    assert status == 200 and body.startswith(CHAIN_OK)
    authn.apply(istiofile("authorization-policy-customer-jwt.yaml"))
    assert authn.curl() == (403, RBAC_DENIED)


def test_valid_token_passes(authn: Mesh) -> None:
    status, body = authn.curl(headers=bearer(authn.token(role="customer")))
    assert status == 200 and body.startswith(CHAIN_OK)


@pytest.mark.parametrize(
    ("case", "body"),
    [
        ("wrong signature", "Jwt verification fails"),
        ("alg none, no signature", "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"),
        ("alg none, junk signature", "Jwt header [alg] is not supported"),
        ("expired beyond the 60 s skew", "Jwt is expired"),
        ("issuer not configured", "Jwt issuer is not configured"),
    ],
)
def test_bad_tokens_are_refused_with_envoys_401(authn: Mesh, case: str, body: str) -> None:
    good = authn.token(role="customer")
    token = {
        "wrong signature": lambda: tampered(good, role="admin"),
        "alg none, no signature": lambda: unsigned(good),
        "alg none, junk signature": lambda: unsigned(good, "c2lnbmF0dXJl"),
        "expired beyond the 60 s skew": lambda: authn.token(ttl=-120, role="customer"),
        "issuer not configured": lambda: authn.token(iss="someone@else.example", role="customer"),
    }[case]()
    assert authn.curl(headers=bearer(token)) == (401, body)


def test_token_expired_within_the_clock_skew_is_still_accepted(authn: Mesh) -> None:
    status, _ = authn.curl(headers=bearer(authn.token(ttl=-30, role="customer")))
    assert status == 200  # Envoy allows 60 s of clock skew on exp


def test_claims_drive_the_authorization_policy(authn: Mesh) -> None:
    authn.apply(istiofile("authorization-policy-customer-jwt.yaml"))
    status, body = authn.curl(headers=bearer(authn.token(role="customer")))
    assert status == 200 and body.startswith(CHAIN_OK)
    assert authn.curl(headers=bearer(authn.token(role="xxx"))) == (403, RBAC_DENIED)
    assert authn.curl(headers=bearer(authn.token(subject="someone-else", role="customer"))) == (403, RBAC_DENIED)


def test_cli_token_mints_a_token_the_mesh_accepts(authn: Mesh) -> None:
    out = cli(authn, "token", "--claim", "role=customer")
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert token.count(".") == 2
    authn.apply(istiofile("authorization-policy-customer-jwt.yaml"))
    assert authn.curl(headers=bearer(token))[0] == 200
    bad = cli(authn, "token", "--claim", "role")
    assert bad.returncode != 0 and 'bad claim "role": use --claim name=value' in bad.stderr


def test_no_token_or_private_key_in_any_log(authn: Mesh) -> None:
    """Every token sent in this module (accepted or refused) is absent from every log and record."""
    authn.apply(istiofile("authorization-policy-customer-jwt.yaml"))
    good = authn.token(role="customer")
    sent = {good: 200, authn.token(role="xxx"): 403, tampered(good, role="admin"): 401, unsigned(good): 401,
            authn.token(ttl=-120, role="customer"): 401}
    for token, status in sent.items():
        assert authn.curl(headers=bearer(token))[0] == status
    authn.load(n=3, headers=bearer(good))  # waits for the proxies' records to reach the collector
    home = Path(authn.backend.home)  # type: ignore[attr-defined]
    texts = {"request_log": json.dumps(authn.request_log()), "traces": json.dumps(authn.traces(limit=100))}
    for pod in authn.pods():
        containers = ["istio-proxy"] if pod.app == "istio-ingressgateway" else ["app", "istio-proxy"]
        for container in containers if pod.sidecar else []:
            out = cli(authn, "logs", pod.name, "-c", container)
            assert out.returncode == 0, out.stderr
            texts[f"meshkit logs {pod.name} -c {container}"] = out.stdout
    for path in (home / "logs").rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode("latin-1")
    # the logs looked at are the real ones: access-log lines of these requests and the apps' own lines
    assert any('HTTP/1.1" 401 - jwt_authn_access_denied{Jwt_verification_fails}' in t for t in texts.values())
    assert any("recommendation request from" in t for t in texts.values())
    for where, text in texts.items():
        for token in USED_TOKENS:
            assert token not in text, f"a token leaked into {where}"
            signature = token.split(".")[2]
            assert not signature or signature not in text, f"a token's signature leaked into {where}"
        assert "PRIVATE KEY" not in text, f"a private key leaked into {where}"
