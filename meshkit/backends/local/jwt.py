"""RequestAuthentication for the local mesh: a local JWT issuer and Envoy's ``jwt_authn`` checks.

Only ``cryptography`` is used. The verifier follows Envoy (``source/common/jwt``,
``filters/http/jwt_authn``): parse, then issuer, then time (``nbf``/``exp`` with a 60 s clock skew,
Envoy's default ``clock_skew_seconds``), then audiences, then the signature against the JWKS key whose
``kid``/``alg`` fit. Failures answer **401** with Envoy's status string as the body — except an
audience mismatch, which Envoy answers with **403**. A request without a token passes with no
principal (Istio: an AuthorizationPolicy must require ``requestPrincipals`` to refuse it).

Tokens are secrets: nothing here logs them, reprs leave them out, and :func:`redact` gives a
loggable fingerprint.

Example:
    >>> issuer = LocalIssuer.load_or_create(state_dir)                                # doctest: +SKIP
    >>> token = issuer.mint({"role": "customer"})                                      # doctest: +SKIP
    >>> rule = JwtRule(issuer=issuer.issuer, jwks=issuer.jwks())                       # doctest: +SKIP
    >>> auth = RequestAuthenticator([rule])                                            # doctest: +SKIP
    >>> auth.authenticate({"authorization": f"Bearer {token}"}).principal              # doctest: +SKIP
    'testing@secure.istio.io/testing@secure.istio.io'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from meshkit.backends.local.peerauth import ROOT_NAMESPACE, selector_matches
from meshkit.errors import InvalidConfig

DEFAULT_ISSUER = "testing@secure.istio.io"
KEY_FILE = "jwt-key.pem"
CLOCK_SKEW_S = 60
DEFAULT_HEADER = ("authorization", "Bearer ")
DEFAULT_PARAM = "access_token"

# Envoy's status strings (source/common/jwt/status.cc), used verbatim as response bodies.
JWT_BAD_FORMAT = "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
JWT_HEADER_BAD_BASE64 = "Jwt header is an invalid Base64url encoded"
JWT_HEADER_BAD_JSON = "Jwt header is an invalid JSON"
JWT_HEADER_BAD_ALG = "Jwt header [alg] field is required and must be a string"
JWT_HEADER_ALG_NOT_IMPLEMENTED = "Jwt header [alg] is not supported"
JWT_HEADER_BAD_KID = "Jwt header [kid] field is not a string"
JWT_PAYLOAD_BAD_BASE64 = "Jwt payload is an invalid Base64url encoded"
JWT_PAYLOAD_BAD_JSON = "Jwt payload is an invalid JSON"
JWT_SIGNATURE_BAD_BASE64 = "Jwt signature is an invalid Base64url encoded"
JWT_UNKNOWN_ISSUER = "Jwt issuer is not configured"
JWT_NOT_YET_VALID = "Jwt not yet valid"
JWT_EXPIRED = "Jwt is expired"
JWT_AUDIENCE_NOT_ALLOWED = "Audiences in Jwt are not allowed"
JWT_VERIFICATION_FAIL = "Jwt verification fails"
JWKS_KID_ALG_MISMATCH = "Jwks doesn't have key to match kid or alg from Jwt"

_IMPLEMENTED_ALGS = frozenset({"ES256", "ES384", "ES512", "HS256", "HS384", "HS512", "RS256", "RS384",
                               "RS512", "PS256", "PS384", "PS512", "EdDSA"})
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"256": hashes.SHA256, "384": hashes.SHA384,
                                                  "512": hashes.SHA512}
_EC_CURVES: dict[str, tuple[type[ec.EllipticCurve], str]] = {"P-256": (ec.SECP256R1, "ES256"),
                                                              "P-384": (ec.SECP384R1, "ES384"),
                                                              "P-521": (ec.SECP521R1, "ES512")}
_B64URL = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")
# Envoy takes the first run of base64url characters and dots after the prefix.
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_.-]+")


def redact(token: str) -> str:
    """A loggable stand-in for a token: its length and a short SHA-256 fingerprint.

    >>> redact("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
    '<jwt redacted: 29 chars, sha256 cc529d9b1b8a>'
    """
    digest = hashlib.sha256(token.encode()).hexdigest()[:12]
    return f"<jwt redacted: {len(token)} chars, sha256 {digest}>"


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding; ValueError on anything else."""
    if not _B64URL.match(text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None


def _int_b64(value: int) -> str:
    return b64url_encode(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _b64_int(text: str) -> int:
    return int.from_bytes(b64url_decode(text), "big")


class LocalIssuer:
    """A local token issuer (RSA 2048, RS256) standing in for the tutorial's gist-hosted JWKS.

    >>> issuer = LocalIssuer.load_or_create(Path("~/.meshkit/jwt").expanduser())   # doctest: +SKIP
    >>> token = issuer.mint({"role": "customer"}, audience="customer")             # doctest: +SKIP
    """

    def __init__(self, key: rsa.RSAPrivateKey, issuer: str = DEFAULT_ISSUER):
        self._key = key
        self.issuer = issuer
        numbers = key.public_key().public_numbers()
        self._public_jwk = {"e": _int_b64(numbers.e), "kty": "RSA", "n": _int_b64(numbers.n)}
        # RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order.
        thumb = json.dumps(self._public_jwk, separators=(",", ":"), sort_keys=True).encode()
        self.kid = b64url_encode(hashlib.sha256(thumb).digest())

    def __repr__(self) -> str:
        return f"LocalIssuer(issuer={self.issuer!r}, kid={self.kid!r})"

    @classmethod
    def load_or_create(cls, state_dir: Path, issuer: str = DEFAULT_ISSUER,
                       make_key: Callable[[], rsa.RSAPrivateKey] | None = None) -> LocalIssuer:
        """Load ``jwt-key.pem`` from ``state_dir`` or create it (0600) the first time, with ``make_key``
        when given (the control plane's key, started as it started)."""
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = state_dir / KEY_FILE
        if path.exists():
            try:
                key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            except ValueError as exc:
                raise InvalidConfig([f"{path}: not a valid PEM private key ({exc})"]) from None
            if not isinstance(key, rsa.RSAPrivateKey):
                raise InvalidConfig([f"{path}: expected an RSA private key"])
            return cls(key, issuer)
        key = make_key() if make_key else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, pem)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return cls(key, issuer)

    def jwks(self) -> dict[str, Any]:
        """The public key set, for ``jwks:`` inline or served at a local ``jwksUri``."""
        return {"keys": [{**self._public_jwk, "alg": "RS256", "use": "sig", "kid": self.kid}]}

    def mint(
        self,
        claims: Mapping[str, Any] | None = None,
        subject: str | None = None,
        ttl_s: float = 3600,
        audience: str | Sequence[str] | None = None,
        now: float | None = None,
    ) -> str:
        """Sign an RS256 token. ``claims`` are added last, so they may override iss/sub/iat/exp."""
        issued = int(time.time() if now is None else now)
        payload: dict[str, Any] = {"iss": self.issuer, "sub": subject or self.issuer,
                                   "iat": issued, "exp": issued + int(ttl_s)}
        if audience is not None:
            payload["aud"] = audience if isinstance(audience, str) else list(audience)
        payload.update(claims or {})
        header = {"alg": "RS256", "kid": self.kid, "typ": "JWT"}
        signing_input = ".".join(b64url_encode(json.dumps(part, separators=(",", ":")).encode())
                                 for part in (header, payload))
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url_encode(signature)}"


def unfetched_jwks(uri: str) -> dict[str, Any]:
    """What istiod hands a proxy when it cannot fetch an issuer's keys: one RSA key (kid "abc")
    that verifies no signature, so a token is refused ("Jwks doesn't have key to match kid or alg
    from Jwt" when it names another kid, "Jwt verification fails" otherwise)."""
    modulus = b64url_encode(f"Error-IstiodFailedToFetchJwksUri-{uri}".encode())
    return {"keys": [{"e": "AQAB", "kid": "abc", "kty": "RSA", "n": modulus}]}


@dataclass(frozen=True)
class _Jwk:
    kid: str
    alg: str
    kty: str
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey = field(repr=False)


def _parse_jwks(jwks: Mapping[str, Any], where: str) -> tuple[_Jwk, ...]:
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise InvalidConfig([f"{where}: Jwks does not have [keys] field"])
    parsed = []
    for i, jwk in enumerate(keys):
        if not isinstance(jwk, Mapping):
            raise InvalidConfig([f"{where}: keys[{i}] is not an object"])
        kty, alg, kid = jwk.get("kty"), str(jwk.get("alg") or ""), str(jwk.get("kid") or "")
        try:
            if kty == "RSA":
                if alg and not alg.startswith(("RS", "PS")):
                    raise ValueError("[alg] is not started with [RS] or [PS] for an RSA key")
                public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey = rsa.RSAPublicNumbers(
                    _b64_int(str(jwk["e"])), _b64_int(str(jwk["n"]))).public_key()
            elif kty == "EC":
                curve_cls, curve_alg = _EC_CURVES[str(jwk.get("crv") or "P-256")]
                if alg and alg != curve_alg:
                    raise ValueError("[crv] field specified is not compatible with [alg] for an EC key")
                public = ec.EllipticCurvePublicNumbers(
                    _b64_int(str(jwk["x"])), _b64_int(str(jwk["y"])), curve_cls()).public_key()
            else:
                # oct (HMAC) and OKP keys are not supported locally; skipping them keeps HS* tokens
                # from ever being checked against anything but an explicit shared secret.
                continue
        except KeyError as exc:
            raise InvalidConfig([f"{where}: keys[{i}] ({kty}) lacks the {exc} field"]) from None
        except (ValueError, TypeError) as exc:
            raise InvalidConfig([f"{where}: keys[{i}] ({kty}) is not a usable public key: {exc}"]) from None
        parsed.append(_Jwk(kid, alg, str(kty), public))
    return tuple(parsed)


@dataclass(frozen=True)
class JwtRule:
    """One ``jwtRules`` entry of a RequestAuthentication, with its JWKS parsed at config time.

    >>> rule = JwtRule.from_spec({"issuer": "testing@secure.istio.io", "jwks": jwks_json})  # doctest: +SKIP
    """

    issuer: str
    jwks: Mapping[str, Any] = field(default_factory=lambda: {"keys": []}, repr=False, compare=False)
    audiences: tuple[str, ...] = ()
    from_headers: tuple[tuple[str, str], ...] = (DEFAULT_HEADER,)
    from_params: tuple[str, ...] = (DEFAULT_PARAM,)
    forward_original_token: bool = False
    output_payload_to_header: str = ""
    output_claim_to_headers: tuple[tuple[str, str], ...] = ()
    jwks_error: str = ""
    keys: tuple[_Jwk, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.keys:
            object.__setattr__(self, "keys", _parse_jwks(self.jwks, f"jwtRule issuer {self.issuer!r}"))

    @classmethod
    def from_spec(
        cls, spec: Mapping[str, Any], where: str = "jwtRules[0]",
        fetch_jwks: Callable[[str], str] | None = None,
    ) -> JwtRule:
        """Build from the YAML shape; ``fetch_jwks(uri) -> str`` reads a local ``jwksUri``."""
        issuer = spec.get("issuer")
        if not isinstance(issuer, str) or not issuer:
            raise InvalidConfig([f"{where}.issuer: required"])
        jwks_error = ""
        if spec.get("jwks"):
            try:
                jwks = json.loads(str(spec["jwks"]))
            except json.JSONDecodeError:
                raise InvalidConfig([f"{where}.jwks: Jwks is an invalid JSON"]) from None
        elif spec.get("jwksUri"):
            uri = str(spec["jwksUri"])
            try:
                if fetch_jwks is None:
                    raise OSError(f"{uri} is not reachable from the local mesh")
                jwks = json.loads(fetch_jwks(uri))
            except Exception as exc:
                # as istiod does: a key set that cannot be fetched becomes one that verifies nothing,
                # so every token is refused while requests without one still pass
                jwks, jwks_error = unfetched_jwks(uri), f"{where}.jwksUri: fetch failed ({type(exc).__name__})"
        else:
            # istiod would find the keys by OpenID discovery (issuer + /.well-known/openid-configuration),
            # which the local mesh cannot reach: the same stand-in key set as a failed fetch
            jwks = unfetched_jwks("")
            jwks_error = (f"{where}: the keys of issuer {issuer!r} cannot be fetched (no jwks or jwksUri, and "
                          f"OpenID discovery at {issuer.rstrip('/')}/.well-known/openid-configuration is not "
                          "reachable from the local mesh): requests with a token get 401, requests without one pass")
        if not isinstance(jwks, Mapping):
            raise InvalidConfig([f"{where}: Jwks is an invalid JSON"])
        headers = tuple((str(h["name"]).lower(), str(h.get("prefix", "")))
                        for h in spec.get("fromHeaders") or [])
        params = tuple(str(p) for p in spec.get("fromParams") or [])
        if not headers and not params:
            headers, params = (DEFAULT_HEADER,), (DEFAULT_PARAM,)
        return cls(
            issuer=issuer,
            jwks=jwks,
            keys=_parse_jwks(jwks, where),
            audiences=tuple(str(a) for a in spec.get("audiences") or []),
            from_headers=headers,
            from_params=params,
            forward_original_token=bool(spec.get("forwardOriginalToken", False)),
            output_payload_to_header=str(spec.get("outputPayloadToHeader") or ""),
            output_claim_to_headers=tuple((str(c["header"]).lower(), str(c["claim"]))
                                          for c in spec.get("outputClaimToHeaders") or []),
            jwks_error=jwks_error,
        )


@dataclass(frozen=True)
class AuthnResult:
    """Outcome of :meth:`RequestAuthenticator.authenticate`; reprs never include tokens or claims."""

    ok: bool
    status: int = 200
    body: bytes = b""
    principal: str = ""
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)
    details: str = ""
    www_authenticate: str = ""
    remove_headers: tuple[str, ...] = ()
    add_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)


class _Failure(Exception):
    def __init__(self, status: str):
        self.status = status


@dataclass(frozen=True)
class _Parsed:
    alg: str
    kid: str
    payload: dict[str, Any]
    payload_b64: str
    signing_input: bytes
    signature: bytes


def _check_uint(payload: Mapping[str, Any], name: str) -> int:
    value = payload.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Failure(f"Jwt payload [{name}] field is not an integer")
    if value < 0 or value >= 2**64:
        raise _Failure(f"Jwt payload [{name}] field is not a positive 64 bit integer")
    return int(value)


def _parse(token: str) -> _Parsed:
    sections = [s for s in token.split(".") if s]
    if len(sections) != 3:
        raise _Failure(JWT_BAD_FORMAT)
    head_b64, body_b64, sig_b64 = sections
    try:
        header = json.loads(b64url_decode(head_b64))
    except ValueError as exc:
        raise _Failure(JWT_HEADER_BAD_JSON if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError)
                       else JWT_HEADER_BAD_BASE64) from None
    if not isinstance(header, dict):
        raise _Failure(JWT_HEADER_BAD_JSON)
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise _Failure(JWT_HEADER_BAD_ALG)
    if alg not in _IMPLEMENTED_ALGS:
        raise _Failure(JWT_HEADER_ALG_NOT_IMPLEMENTED)
    kid = header.get("kid", "")
    if not isinstance(kid, str):
        raise _Failure(JWT_HEADER_BAD_KID)
    try:
        payload = json.loads(b64url_decode(body_b64))
    except ValueError as exc:
        raise _Failure(JWT_PAYLOAD_BAD_JSON if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError)
                       else JWT_PAYLOAD_BAD_BASE64) from None
    if not isinstance(payload, dict):
        raise _Failure(JWT_PAYLOAD_BAD_JSON)
    for name in ("iss", "sub", "jti"):
        if name in payload and not isinstance(payload[name], str):
            raise _Failure(f"Jwt payload [{name}] field is not a string")
    for name in ("iat", "nbf", "exp"):
        _check_uint(payload, name)
    aud = payload.get("aud")
    if aud is not None and not (isinstance(aud, str) or
                                (isinstance(aud, list) and all(isinstance(a, str) for a in aud))):
        raise _Failure("Jwt payload [aud] field is not a string or string list")
    try:
        signature = b64url_decode(sig_b64)
    except ValueError:
        raise _Failure(JWT_SIGNATURE_BAD_BASE64) from None
    return _Parsed(alg, kid, payload, body_b64, f"{head_b64}.{body_b64}".encode(), signature)


def _signature_ok(jwk: _Jwk, parsed: _Parsed) -> bool:
    alg = parsed.alg
    digest = _HASHES.get(alg[-3:], hashes.SHA256)()
    try:
        if isinstance(jwk.key, rsa.RSAPublicKey) and alg.startswith("RS"):
            jwk.key.verify(parsed.signature, parsed.signing_input, padding.PKCS1v15(), digest)
            return True
        if isinstance(jwk.key, rsa.RSAPublicKey) and alg.startswith("PS"):
            pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=padding.PSS.DIGEST_LENGTH)
            jwk.key.verify(parsed.signature, parsed.signing_input, pss, digest)
            return True
        if isinstance(jwk.key, ec.EllipticCurvePublicKey) and alg.startswith("ES"):
            half = len(parsed.signature) // 2
            size = (jwk.key.curve.key_size + 7) // 8
            if half != size or len(parsed.signature) != 2 * size:
                return False
            der = encode_dss_signature(int.from_bytes(parsed.signature[:half], "big"),
                                       int.from_bytes(parsed.signature[half:], "big"))
            jwk.key.verify(der, parsed.signing_input, ec.ECDSA(digest))
            return True
    except InvalidSignature:
        return False
    return False


def _verify_signature(rule: JwtRule, parsed: _Parsed) -> None:
    if not rule.keys:
        raise _Failure(JWT_VERIFICATION_FAIL)
    kid_alg_matched = False
    for jwk in rule.keys:
        if parsed.kid and jwk.kid and jwk.kid != parsed.kid:
            continue
        if jwk.alg and jwk.alg != parsed.alg:
            continue
        kid_alg_matched = True
        if _signature_ok(jwk, parsed):
            return
    raise _Failure(JWT_VERIFICATION_FAIL if kid_alg_matched else JWKS_KID_ALG_MISMATCH)


def _extract(value: str, prefix: str) -> str:
    if prefix:
        pos = value.find(prefix)
        if pos < 0:
            return ""
        value = value[pos + len(prefix):]
    match = _TOKEN_RUN.search(value)
    return match.group(0) if match else ""


def _claim_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return ""


class RequestAuthenticator:
    """Envoy's ``jwt_authn`` for the rules of every RequestAuthentication selecting a workload.

    >>> auth = RequestAuthenticator([rule], now=lambda: 1_700_000_000.0)           # doctest: +SKIP
    >>> auth.authenticate({"authorization": "Bearer not-a-jwt"}).status            # doctest: +SKIP
    401
    """

    def __init__(self, rules: Sequence[JwtRule], now: Callable[[], float] = time.time,
                 clock_skew_s: int = CLOCK_SKEW_S):
        self.rules = tuple(rules)
        self._now = now
        self._skew = clock_skew_s
        self._by_issuer: dict[str, JwtRule] = {}
        headers: dict[tuple[str, str], set[str]] = {}
        params: dict[str, set[str]] = {}
        for rule in self.rules:
            self._by_issuer.setdefault(rule.issuer, rule)
            for location in rule.from_headers:
                headers.setdefault(location, set()).add(rule.issuer)
            for param in rule.from_params:
                params.setdefault(param, set()).add(rule.issuer)
        self._headers = {loc: frozenset(iss) for loc, iss in headers.items()}
        self._params = {name: frozenset(iss) for name, iss in params.items()}

    def __repr__(self) -> str:
        return f"RequestAuthenticator(issuers={sorted(self._by_issuer)!r})"

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(r.jwks_error for r in self.rules if r.jwks_error)

    def _tokens(
        self, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> list[tuple[str, str, frozenset[str]]]:
        found: list[tuple[str, str, frozenset[str]]] = []
        seen: set[str] = set()
        lowered = {k.lower(): v for k, v in headers.items()}
        for (name, prefix), issuers in self._headers.items():
            token = _extract(lowered.get(name, ""), prefix)
            if token and token not in seen:
                seen.add(token)
                found.append((token, name, issuers))
        for name, issuers in self._params.items():
            token = query.get(name, "")
            if token and token not in seen:
                seen.add(token)
                found.append((token, "", issuers))
        return found

    def _verify(self, token: str, issuers: frozenset[str]) -> tuple[JwtRule, _Parsed]:
        parsed = _parse(token)
        iss = parsed.payload.get("iss", "")
        if iss not in issuers or iss not in self._by_issuer:
            raise _Failure(JWT_UNKNOWN_ISSUER)
        rule = self._by_issuer[iss]
        now = int(self._now())
        nbf, exp = _check_uint(parsed.payload, "nbf"), _check_uint(parsed.payload, "exp")
        if now + self._skew < nbf:
            raise _Failure(JWT_NOT_YET_VALID)
        if exp and now > exp + self._skew:
            raise _Failure(JWT_EXPIRED)
        if rule.audiences:
            aud = parsed.payload.get("aud")
            token_auds = [aud] if isinstance(aud, str) else list(aud or [])
            if not any(a in rule.audiences for a in token_auds):
                raise _Failure(JWT_AUDIENCE_NOT_ALLOWED)
        _verify_signature(rule, parsed)
        return rule, parsed

    def authenticate(self, headers: Mapping[str, str], query: Mapping[str, str] | None = None,
                     uri: str = "") -> AuthnResult:
        """Check every token the request carries; all must be valid. ``uri`` fills the realm."""
        tokens = self._tokens(headers, query or {}) if self.rules else []
        principal, claims = "", {}
        remove: list[str] = []
        add: list[tuple[str, str]] = []
        for token, header_name, issuers in tokens:
            try:
                rule, parsed = self._verify(token, issuers)
            except _Failure as failure:
                code = 403 if failure.status == JWT_AUDIENCE_NOT_ALLOWED else 401
                return AuthnResult(
                    ok=False, status=code, body=failure.status.encode(),
                    details="jwt_authn_access_denied{" + re.sub(r"\s", "_", failure.status) + "}",
                    www_authenticate=f'Bearer realm="{uri}", error="invalid_token"',
                )
            if not principal:
                principal = f"{parsed.payload.get('iss', '')}/{parsed.payload.get('sub', '')}"
                claims = parsed.payload
            if header_name and not rule.forward_original_token:
                remove.append(header_name)
            if rule.output_payload_to_header:
                add.append((rule.output_payload_to_header.lower(), parsed.payload_b64))
            for header, claim in rule.output_claim_to_headers:
                text = _claim_text(parsed.payload.get(claim))
                if text:
                    add.append((header, text))
        return AuthnResult(ok=True, principal=principal, claims=claims,
                           remove_headers=tuple(dict.fromkeys(remove)), add_headers=tuple(add))


def compile_request_authentication(
    resources: Iterable[Mapping[str, Any]],
    namespace: str,
    labels: Mapping[str, str],
    fetch_jwks: Callable[[str], str] | None = None,
    now: Callable[[], float] = time.time,
    root_namespace: str = ROOT_NAMESPACE,
) -> RequestAuthenticator:
    """Combine the jwtRules of every RequestAuthentication selecting the workload (Istio merges them)."""
    rules: list[JwtRule] = []
    problems: list[str] = []
    for res in resources:
        if res.get("kind") != "RequestAuthentication":
            continue
        meta, spec = res.get("metadata") or {}, res.get("spec") or {}
        res_ns = meta.get("namespace", "default")
        if res_ns not in (namespace, root_namespace) or not selector_matches(spec.get("selector"), labels):
            continue
        for i, rule_spec in enumerate(spec.get("jwtRules") or []):
            where = f"RequestAuthentication {res_ns}/{meta.get('name', '?')}: jwtRules[{i}]"
            try:
                rules.append(JwtRule.from_spec(rule_spec, where, fetch_jwks))
            except InvalidConfig as exc:
                problems.extend(exc.problems)
            except (KeyError, TypeError, AttributeError) as exc:
                problems.append(f"{where}: malformed rule ({type(exc).__name__}: {exc})")
    if problems:
        raise InvalidConfig(problems)
    return RequestAuthenticator(rules, now=now)
