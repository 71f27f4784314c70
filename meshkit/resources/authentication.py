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
from meshkit.resources.model import Path
from meshkit.resources.schema import Bool, Checker, Dur, Enum, ListOf, MapOf, Obj, Str

MTLS_MODES = ("UNSET", "DISABLE", "PERMISSIVE", "STRICT")
MTLS = Obj({"mode": Enum(*MTLS_MODES)})


def _port_key(key: Any) -> str | None:
    try:
        port = int(key)
    except (TypeError, ValueError):
        return f'port "{key}" in portLevelMtls is not a port number'
    return None if 1 <= port <= 65535 else f"port {port} in portLevelMtls must be in the range 1..65535"


def _peer_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if value.get("portLevelMtls") and not (value.get("selector") or {}).get("matchLabels"):
        ck.error(
            (*path, "portLevelMtls"),
            "portLevelMtls requires selector: mesh/namespace peer authentication cannot have port level mTLS",
        )


PEER_AUTHENTICATION = Obj(
    {"selector": SELECTOR, "mtls": MTLS, "portLevelMtls": MapOf(MTLS, key=_port_key, int_keys=True)},
    rules=[_peer_rule],
)


def _jwks_error(value: str) -> str | None:
    try:
        doc = json.loads(value)
    except json.JSONDecodeError as exc:
        return f"jwks is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        return 'jwks must be a JSON Web Key Set: an object with a "keys" list'
    return None


def _url_error(value: str) -> str | None:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return f'jwksUri "{value}" is not a valid http(s) URL'
    return None


def _jwt_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if not value.get("issuer"):
        ck.error((*path, "issuer"), "issuer must be set")
    if value.get("jwks") and value.get("jwksUri"):
        ck.warn(path, "both jwks and jwksUri are set; jwks takes precedence")
    if value.get("issuer") and not value.get("jwks") and not value.get("jwksUri"):
        issuer = str(value["issuer"]).rstrip("/")
        ck.warn(path, f"no jwks or jwksUri: istiod looks the keys up by OpenID discovery at "
                      f"{issuer}/.well-known/openid-configuration; while they cannot be fetched (the local mesh "
                      "never can) requests with a token get 401 and requests without one pass")


JWT_RULE = Obj(
    {
        "issuer": Str(),
        "audiences": ListOf(Str(), no_empty_strings=True),
        "jwksUri": Str(_url_error),
        "jwks": Str(_jwks_error),
        "fromHeaders": ListOf(Obj({"name": Str(), "prefix": Str()}, required=("name",))),
        "fromParams": ListOf(Str(), no_empty_strings=True),
        "fromCookies": ListOf(Str(), no_empty_strings=True),
        "outputPayloadToHeader": Str(),
        "outputClaimToHeaders": ListOf(Obj({"header": Str(), "claim": Str()}, required=("header", "claim"))),
        "forwardOriginalToken": Bool(),
        "timeout": Dur(),
    },
    rules=[_jwt_rule],
)


def _request_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if value.get("selector") and (value.get("targetRef") or value.get("targetRefs")):
        ck.error(path, "only one of targetRefs or workload selector can be set")
    issuers: dict[str, int] = {}
    for i, rule in enumerate(value.get("jwtRules") or []):
        issuer = rule.get("issuer")
        if issuer in issuers:
            ck.error(
                (*path, "jwtRules", i, "issuer"),
                f'issuer "{issuer}" is already used in jwtRules[{issuers[issuer]}]',
            )
        issuers.setdefault(issuer, i)


REQUEST_AUTHENTICATION = Obj(
    {
        "selector": SELECTOR,
        "targetRef": TARGET_REF,
        "targetRefs": ListOf(TARGET_REF),
        "jwtRules": ListOf(JWT_RULE),
    },
    rules=[_request_rule],
)
