"""RequestAuthentication: the local issuer and Envoy's jwt_authn checks, attack by attack."""

from __future__ import annotations

import hashlib
import hmac
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from meshkit.backends.local.jwt import (
    JWKS_KID_ALG_MISMATCH,
    JWT_AUDIENCE_NOT_ALLOWED,
    JWT_BAD_FORMAT,
    JWT_EXPIRED,
    JWT_HEADER_ALG_NOT_IMPLEMENTED,
    JWT_HEADER_BAD_BASE64,
    JWT_HEADER_BAD_JSON,
    JWT_NOT_YET_VALID,
    JWT_UNKNOWN_ISSUER,
    JWT_VERIFICATION_FAIL,
    KEY_FILE,
    JwtRule,
    LocalIssuer,
    RequestAuthenticator,
    b64url_encode,
    compile_request_authentication,
    redact,
)
from meshkit.errors import InvalidConfig

NOW = 1_800_000_000.0
ISS = "testing@secure.istio.io"
PRINCIPAL = f"{ISS}/{ISS}"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> LocalIssuer:
    return LocalIssuer.load_or_create(tmp_path_factory.mktemp("jwt"))


@pytest.fixture(scope="module")
def rule(issuer: LocalIssuer) -> JwtRule:
    return JwtRule(issuer=ISS, jwks=issuer.jwks())


def auth(*rules: JwtRule) -> RequestAuthenticator:
    return RequestAuthenticator(list(rules), now=lambda: NOW)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def craft(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"sig") -> str:
    head = b64url_encode(json.dumps(header).encode())
    body = b64url_encode(json.dumps(payload).encode())
    return f"{head}.{body}.{b64url_encode(signature)}"


def signing_input(token: str) -> bytes:
    return token.rsplit(".", 1)[0].encode()


def test_issuer_key_is_persisted_0600_and_reused(tmp_path: Path) -> None:
    first = LocalIssuer.load_or_create(tmp_path)
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    again = LocalIssuer.load_or_create(tmp_path)
    assert again.kid == first.kid and again.jwks() == first.jwks()
    key = first.jwks()["keys"][0]
    assert (key["kty"], key["alg"], key["use"], key["kid"]) == ("RSA", "RS256", "sig", first.kid)
    assert "PRIVATE" not in repr(first)


def test_valid_token_gives_principal_and_claims(issuer: LocalIssuer, rule: JwtRule) -> None:
    token = issuer.mint({"role": "customer"}, now=NOW)
    result = auth(rule).authenticate(bearer(token))
    assert result.ok and result.status == 200
    assert result.principal == PRINCIPAL
    assert result.claims["role"] == "customer" and result.claims["exp"] == int(NOW) + 3600
    assert result.remove_headers == ("authorization",)  # forwardOriginalToken defaults to false


def test_missing_token_passes_without_principal(rule: JwtRule) -> None:
    result = auth(rule).authenticate({"user-agent": "curl"})
    assert result.ok and result.principal == "" and dict(result.claims) == {}


def expect_failure(result: Any, status: int, body: str) -> None:
    assert (result.ok, result.status, result.body.decode()) == (False, status, body)


def test_wrong_signature(issuer: LocalIssuer, rule: JwtRule) -> None:
    token = issuer.mint({"role": "guest"}, now=NOW)
    head, _body, sig = token.split(".")
    tampered = f"{head}.{b64url_encode(json.dumps({'iss': ISS, 'sub': ISS, 'role': 'admin'}).encode())}.{sig}"
    expect_failure(auth(rule).authenticate(bearer(tampered)), 401, JWT_VERIFICATION_FAIL)
    # a different key claiming our kid
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = craft({"alg": "RS256", "kid": issuer.kid}, {"iss": ISS, "sub": ISS})
    signature = attacker.sign(signing_input(forged), padding.PKCS1v15(), hashes.SHA256())
    forged = forged.rsplit(".", 1)[0] + "." + b64url_encode(signature)
    expect_failure(auth(rule).authenticate(bearer(forged)), 401, JWT_VERIFICATION_FAIL)
    # another issuer's key under its own kid: no key of ours fits
    other = LocalIssuer(attacker, ISS)
    expect_failure(auth(rule).authenticate(bearer(other.mint(now=NOW))), 401, JWKS_KID_ALG_MISMATCH)


def test_alg_none_is_refused(rule: JwtRule) -> None:
    unsigned = craft({"alg": "none"}, {"iss": ISS, "sub": ISS})
    expect_failure(auth(rule).authenticate(bearer(unsigned)), 401, JWT_HEADER_ALG_NOT_IMPLEMENTED)
    empty_signature = unsigned.rsplit(".", 1)[0] + "."
    expect_failure(auth(rule).authenticate(bearer(empty_signature)), 401, JWT_BAD_FORMAT)


def test_alg_confusion_hs256_with_the_rsa_public_key(issuer: LocalIssuer) -> None:
    public_pem = issuer._key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = craft({"alg": "HS256", "kid": issuer.kid}, {"iss": ISS, "sub": ISS})
    mac = hmac.new(public_pem, signing_input(token), hashlib.sha256).digest()
    token = token.rsplit(".", 1)[0] + "." + b64url_encode(mac)
    with_alg = JwtRule(issuer=ISS, jwks=issuer.jwks())
    expect_failure(auth(with_alg).authenticate(bearer(token)), 401, JWKS_KID_ALG_MISMATCH)
    without_alg = JwtRule(
        issuer=ISS, jwks={"keys": [{k: v for k, v in issuer.jwks()["keys"][0].items() if k != "alg"}]}
    )
    expect_failure(auth(without_alg).authenticate(bearer(token)), 401, JWT_VERIFICATION_FAIL)


def test_expiry_and_not_before_with_envoys_60s_skew(issuer: LocalIssuer, rule: JwtRule) -> None:
    def at(claims: dict[str, Any]) -> Any:
        return auth(rule).authenticate(bearer(issuer.mint(claims, now=NOW - 7200)))

    expect_failure(at({"exp": int(NOW) - 61}), 401, JWT_EXPIRED)
    assert at({"exp": int(NOW) - 59}).ok
    expect_failure(at({"exp": int(NOW) + 3600, "nbf": int(NOW) + 61}), 401, JWT_NOT_YET_VALID)
    assert at({"exp": int(NOW) + 3600, "nbf": int(NOW) + 59}).ok
    assert auth(rule).authenticate(bearer(issuer.mint(now=NOW - 4000))).ok is False  # ttl 3600 elapsed


def test_unknown_issuer(issuer: LocalIssuer, rule: JwtRule) -> None:
    token = issuer.mint({"iss": "evil@example.com"}, now=NOW)
    expect_failure(auth(rule).authenticate(bearer(token)), 401, JWT_UNKNOWN_ISSUER)


def test_audiences(issuer: LocalIssuer) -> None:
    strict = JwtRule(issuer=ISS, jwks=issuer.jwks(), audiences=("customer",))
    expect_failure(
        auth(strict).authenticate(bearer(issuer.mint(audience="other", now=NOW))),
        403,
        JWT_AUDIENCE_NOT_ALLOWED,
    )
    expect_failure(auth(strict).authenticate(bearer(issuer.mint(now=NOW))), 403, JWT_AUDIENCE_NOT_ALLOWED)
    assert auth(strict).authenticate(bearer(issuer.mint(audience=["x", "customer"], now=NOW))).ok


@pytest.mark.parametrize(
    ("token", "body"),
    [
        ("not-a-jwt", JWT_BAD_FORMAT),
        ("a.b.c.d", JWT_BAD_FORMAT),
        ("a.e30.c2ln", JWT_HEADER_BAD_BASE64),
        ("!!!.e30.c2ln", JWT_BAD_FORMAT),  # extraction starts at the first base64url character: ".e30.c2ln"
        (b64url_encode(b"{nope") + ".e30.c2ln", JWT_HEADER_BAD_JSON),
        (craft({"typ": "JWT"}, {}), "Jwt header [alg] field is required and must be a string"),
        (craft({"alg": "RS256", "kid": 7}, {}), "Jwt header [kid] field is not a string"),
        (craft({"alg": "RS256"}, {"iss": 1}), "Jwt payload [iss] field is not a string"),
        (craft({"alg": "RS256"}, {"iss": ISS, "exp": "soon"}), "Jwt payload [exp] field is not an integer"),
        (
            craft({"alg": "RS256"}, {"iss": ISS, "nbf": -5}),
            "Jwt payload [nbf] field is not a positive 64 bit integer",
        ),
        (
            craft({"alg": "RS256"}, {"iss": ISS, "aud": [1]}),
            "Jwt payload [aud] field is not a string or string list",
        ),
        (
            b64url_encode(b'{"alg":"RS256"}') + "." + b64url_encode(b"[1]") + ".c2ln",
            "Jwt payload is an invalid JSON",
        ),
    ],
)
def test_malformed_tokens_get_envoys_messages(rule: JwtRule, token: str, body: str) -> None:
    expect_failure(auth(rule).authenticate(bearer(token)), 401, body)


def test_failure_response_details(issuer: LocalIssuer, rule: JwtRule) -> None:
    result = auth(rule).authenticate(bearer("not-a-jwt"), uri="http://customer/")
    assert result.www_authenticate == 'Bearer realm="http://customer/", error="invalid_token"'
    assert result.details.startswith("jwt_authn_access_denied{Jwt_is_not_in_the_form")


def test_token_locations(issuer: LocalIssuer, rule: JwtRule) -> None:
    token = issuer.mint(now=NOW)
    by_param = auth(rule).authenticate({}, {"access_token": token})
    assert by_param.ok and by_param.principal == PRINCIPAL and by_param.remove_headers == ()
    custom = JwtRule.from_spec(
        {"issuer": ISS, "jwks": json.dumps(issuer.jwks()), "fromHeaders": [{"name": "X-Jwt-Assertion"}]}
    )
    assert auth(custom).authenticate({"x-jwt-assertion": token}).principal == PRINCIPAL
    # with explicit fromHeaders, the default Authorization header is not read
    assert auth(custom).authenticate(bearer(token)).principal == ""
    assert auth(rule).authenticate({"Authorization": f"Bearer {token}"}).principal == PRINCIPAL
    assert auth(rule).authenticate({"authorization": f"Basic {token}"}).principal == ""


def test_every_token_must_be_valid(issuer: LocalIssuer, rule: JwtRule) -> None:
    good = issuer.mint(now=NOW)
    result = auth(rule).authenticate(bearer(good), {"access_token": "garbage"})
    expect_failure(result, 401, JWT_BAD_FORMAT)


def test_forward_and_output_headers(issuer: LocalIssuer) -> None:
    forward = JwtRule.from_spec(
        {
            "issuer": ISS,
            "jwks": json.dumps(issuer.jwks()),
            "forwardOriginalToken": True,
            "outputPayloadToHeader": "X-Jwt-Payload",
            "outputClaimToHeaders": [
                {"header": "x-role", "claim": "role"},
                {"header": "x-admin", "claim": "admin"},
            ],
        }
    )
    token = issuer.mint({"role": "customer", "admin": False}, now=NOW)
    result = auth(forward).authenticate(bearer(token))
    assert result.remove_headers == ()
    added = dict(result.add_headers)
    assert added["x-jwt-payload"] == token.split(".")[1]
    assert (added["x-role"], added["x-admin"]) == ("customer", "false")


def test_es256_keys_are_supported() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "alg": "ES256",
        "kid": "ec1",
        "x": b64url_encode(numbers.x.to_bytes(32, "big")),
        "y": b64url_encode(numbers.y.to_bytes(32, "big")),
    }
    rule = JwtRule(issuer="ec-issuer", jwks={"keys": [jwk]})
    token = craft({"alg": "ES256", "kid": "ec1"}, {"iss": "ec-issuer", "sub": "bob"})
    r, s = decode_dss_signature(key.sign(signing_input(token), ec.ECDSA(hashes.SHA256())))
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    token = token.rsplit(".", 1)[0] + "." + b64url_encode(raw)
    assert auth(rule).authenticate(bearer(token)).principal == "ec-issuer/bob"
    short = token.rsplit(".", 1)[0] + "." + b64url_encode(raw[:40])
    expect_failure(auth(rule).authenticate(bearer(short)), 401, JWT_VERIFICATION_FAIL)


def resource(spec: dict[str, Any], name: str = "customerjwt", namespace: str = "tutorial") -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1beta1",
        "kind": "RequestAuthentication",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def test_compile_from_resources_inline_and_uri(issuer: LocalIssuer) -> None:
    served = {"http://127.0.0.1:15014/jwks.json": json.dumps(issuer.jwks())}
    resources = [
        resource(
            {
                "selector": {"matchLabels": {"app": "customer"}},
                "jwtRules": [{"issuer": ISS, "jwksUri": "http://127.0.0.1:15014/jwks.json"}],
            }
        ),
        resource({"jwtRules": [{"issuer": "inline", "jwks": json.dumps(issuer.jwks())}]}, name="ns-wide"),
        resource({"selector": {"matchLabels": {"app": "preference"}}, "jwtRules": [{"issuer": "pref"}]}, name="p"),
    ]
    authenticator = compile_request_authentication(
        resources, "tutorial", {"app": "customer"}, fetch_jwks=served.__getitem__, now=lambda: NOW
    )
    assert [r.issuer for r in authenticator.rules] == [ISS, "inline"]
    assert authenticator.authenticate(bearer(issuer.mint(now=NOW))).principal == PRINCIPAL
    inline_token = issuer.mint({"iss": "inline", "sub": "carol"}, now=NOW)
    assert authenticator.authenticate(bearer(inline_token)).principal == "inline/carol"
    assert authenticator.warnings == ()


def test_unreachable_jwks_uri_fails_every_token(issuer: LocalIssuer) -> None:
    def unreachable(uri: str) -> str:
        raise ConnectionRefusedError(uri)

    authenticator = compile_request_authentication(
        [resource({"jwtRules": [{"issuer": ISS, "jwksUri": "http://127.0.0.1:1/jwks"}]})],
        "tutorial",
        {"app": "customer"},
        fetch_jwks=unreachable,
        now=lambda: NOW,
    )
    assert authenticator.warnings == (
        "RequestAuthentication tutorial/customerjwt: jwtRules[0].jwksUri: fetch failed (ConnectionRefusedError)",
    )
    # istiod's stand-in key set has one key, kid "abc": a token naming another kid matches no key
    expect_failure(authenticator.authenticate(bearer(issuer.mint(now=NOW))), 401, JWKS_KID_ALG_MISMATCH)
    no_kid = craft({"alg": "RS256", "typ": "JWT"}, {"iss": ISS, "sub": "x", "exp": int(NOW) + 60})
    expect_failure(authenticator.authenticate(bearer(no_kid)), 401, JWT_VERIFICATION_FAIL)
    assert authenticator.authenticate({}).ok  # no token: RequestAuthentication lets it through


@pytest.mark.parametrize("rule_spec", [{"issuer": ISS}, {"issuer": ISS, "jwksUri": "https://example.com/jwks"}])
def test_keys_that_cannot_be_fetched_refuse_tokens_and_pass_the_rest(issuer: LocalIssuer,
                                                                      rule_spec: dict[str, Any]) -> None:
    """Offline, as istiod: issuer-only (OpenID discovery) or an unreachable jwksUri compiles, with a warning."""
    authenticator = compile_request_authentication([resource({"jwtRules": [rule_spec]})], "tutorial", {},
                                                   now=lambda: NOW)
    assert len(authenticator.warnings) == 1 and "jwtRules[0]" in authenticator.warnings[0]
    expect_failure(authenticator.authenticate(bearer(issuer.mint(now=NOW))), 401, JWKS_KID_ALG_MISMATCH)
    assert authenticator.authenticate({"user-agent": "curl"}).ok


@pytest.mark.parametrize(
    ("rule_spec", "fragment"),
    [
        ({"jwks": "{}"}, "jwtRules[0].issuer: required"),
        ({"issuer": ISS, "jwks": "{not json"}, "jwtRules[0].jwks: Jwks is an invalid JSON"),
        ({"issuer": ISS, "jwks": "{}"}, "Jwks does not have [keys] field"),
        (
            {"issuer": ISS, "jwks": json.dumps({"keys": [{"kty": "RSA", "n": "AQAB"}]})},
            "keys[0] (RSA) lacks the 'e' field",
        ),
    ],
)
def test_bad_rules_are_located_errors(rule_spec: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidConfig) as err:
        compile_request_authentication([resource({"jwtRules": [rule_spec]})], "tutorial", {})
    assert "RequestAuthentication tutorial/customerjwt" in str(err.value)
    assert fragment in str(err.value)


def test_tokens_and_keys_never_reach_reprs(issuer: LocalIssuer, rule: JwtRule) -> None:
    token = issuer.mint({"role": "customer"}, now=NOW)
    signature = token.split(".")[2]
    ok = auth(rule).authenticate(bearer(token))
    bad = auth(rule).authenticate(bearer(token[:-4] + "AAAA"))
    texts = [repr(ok), repr(bad), repr(rule), repr(issuer), repr(auth(rule)), str(bad.body), bad.details]
    for text in texts:
        assert signature not in text and token not in text and "PRIVATE KEY" not in text
    assert redact(token).startswith(f"<jwt redacted: {len(token)} chars, sha256 ")
    assert token.split(".")[0] not in redact(token)
