"""PeerAuthentication (mTLS mode per namespace/workload/port) and RequestAuthentication (JWT rules).

Example::

    >>> from meshkit.resources.schema import Checker
    >>> ck = Checker()
    >>> PEER_AUTHENTICATION.check({"portLevelMtls": {8080: {"mode": "DISABLE"}}}, ("spec",), ck)
    >>> ck.findings[0].message
    'portLevelMtls requires selector: mesh/namespace peer authentication cannot have port level mTLS'
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlparse

from meshkit.resources.common import SELECTOR, TARGET_REF
from meshkit.resources.headers import strict_name_error
from meshkit.resources.model import Path
from meshkit.resources.schema import Bool, Checker, Dur, Enum, ListOf, MapOf, Obj, Str

MTLS_MODES = ("UNSET", "DISABLE", "PERMISSIVE", "STRICT")
MTLS = Obj({"mode": Enum(*MTLS_MODES)})


def _port_key(key: Any) -> str | None:
    try:
        port = int(key)
    except (TypeError, ValueError):
        return f'port "{key}" in portLevelMtls is not a port number'
    return None if 1 <= port <= 65535 else "port must be between 1-65535"


def _peer_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if "portLevelMtls" in value and not (value.get("selector") or {}).get("matchLabels"):
        ck.error(
            (*path, "portLevelMtls"),
            "portLevelMtls requires selector: mesh/namespace peer authentication cannot have port level mTLS",
        )
    elif "portLevelMtls" in value and not value["portLevelMtls"]:
        ck.error((*path, "portLevelMtls"), "port level mTLS, if defined, must have at least one element")


PEER_AUTHENTICATION = Obj(
    {"selector": SELECTOR, "mtls": MTLS, "portLevelMtls": MapOf(MTLS, key=_port_key, int_keys=True)},
    rules=[_peer_rule],
)


def _jwks_error(value: str) -> str | None:
    try:
        doc = json.loads(value)
    except json.JSONDecodeError as exc:
        return f"jwks parse error: failed to unmarshal JWK set: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    if not isinstance(doc, dict) or not isinstance(doc.get("keys", []), list):
        return 'jwks parse error: a JSON Web Key Set is an object with a "keys" list'
    if "keys" not in doc and "kty" not in doc:
        return "jwks parse error: failed to parse a JWK: missing kty"
    return None


def _url_error(value: str) -> str | None:
    if urlparse(value).scheme not in ("http", "https"):
        return "url must have scheme http:// or https://"
    return None


_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


#: the local mesh's own token issuer and where its keys are served (see backends/local/jwt.py)
LOCAL_ISSUER = "testing@secure.istio.io"
LOCAL_JWKS_URI = "http://jwks.meshkit.local/jwks.json"


def _jwt_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if not value.get("issuer") and not value.get("jwksUri"):
        ck.error(path, "issuer or jwksUri must be non-empty string")
    if "jwks" in value and ("jwksUri" in value or "jwks_uri" in value):
        ck.error(path, "only one of jwks or jwksUri can be set")
    if value.get("issuer") and not value.get("jwks") and not value.get("jwksUri"):
        issuer = str(value["issuer"]).rstrip("/")
        ck.warn(path, f"no jwks or jwksUri: istiod looks the keys up by OpenID discovery at "
                      f"{issuer}/.well-known/openid-configuration; while they cannot be fetched (the local mesh "
                      "never can) requests with a token get 401 and requests without one pass")
    uri = value.get("jwksUri")
    if isinstance(uri, str) and uri and uri != LOCAL_JWKS_URI and not _url_error(uri):
        # istiod fetches the keys; the local mesh reaches no remote host, so it does what istiod does
        # when a fetch fails: a key set that verifies nothing
        ck.warn((*path, "jwksUri"), f"jwksUri {uri} cannot be fetched from the local mesh: as istiod does when a "
                f"fetch fails, requests with a token get 401 and requests without "
                f"one pass; to try tokens locally use the local issuer: issuer: {LOCAL_ISSUER}, "
                f"jwksUri: {LOCAL_JWKS_URI} (meshkit token mints them)")
    for i, header in enumerate(value.get("fromHeaders") or []):
        if not header.get("name"):
            ck.error((*path, "fromHeaders", i, "name"), "location header name must be non-empty string")
    for i, claim in enumerate(value.get("outputClaimToHeaders") or []):
        where = (*path, "outputClaimToHeaders", i)
        if not claim.get("claim") or not claim.get("header"):
            ck.error(where, "outputClaimToHeaders header and claim value must be non-empty string")
        elif msg := strict_name_error(claim["header"]):
            ck.error((*where, "header"), msg)
    if value.get("jwks") and not _jwks_error(value["jwks"]):
        keys = json.loads(value["jwks"]).get("keys") or []
        for i, key in enumerate(keys):
            if isinstance(key, dict) and any(m in key for m in _PRIVATE_MEMBERS):
                ck.warn(
                    (*path, "jwks"),
                    f"jwks key at index {i} contains private key material; only public keys are used for verification",
                )


def _non_empty(message: str) -> Str:
    return Str(lambda v: message if v == "" else None)


JWT_RULE = Obj(
    {
        "issuer": Str(),
        "audiences": ListOf(_non_empty("audience must be non-empty string")),
        "jwksUri": Str(_url_error),
        "jwks_uri": Str(_url_error),
        "jwks": Str(_jwks_error),
        "fromHeaders": ListOf(Obj({"name": Str(), "prefix": Str()}, required=("name",))),
        "fromParams": ListOf(_non_empty("location query must be non-empty string")),
        "fromCookies": ListOf(_non_empty("cookie name must be non-empty string")),
        "outputPayloadToHeader": Str(),
        "outputClaimToHeaders": ListOf(Obj({"header": Str(), "claim": Str()}, required=("header", "claim"))),
        "forwardOriginalToken": Bool(),
        "timeout": Dur(),
        "spaceDelimitedClaims": ListOf(_non_empty("spaceDelimitedClaims[] in body should be at least 1 chars long")),
    },
    rules=[_jwt_rule],
)


def _request_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if sum(1 for k in ("selector", "targetRef", "targetRefs") if value.get(k)) > 1:
        ck.error(path, "only one of targetRefs or selector can be set")


REQUEST_AUTHENTICATION = Obj(
    {
        "selector": SELECTOR,
        "targetRef": TARGET_REF,
        "targetRefs": ListOf(TARGET_REF),
        "jwtRules": ListOf(JWT_RULE),
    },
    rules=[_request_rule],
)
