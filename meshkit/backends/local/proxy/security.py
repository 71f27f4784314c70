"""The sidecar's security: mTLS both ways, and the server-side filters Istio puts on inbound traffic.

Compiled once per config push from the stored resources:

* the workload's PeerAuthentication mode (DISABLE / PERMISSIVE / STRICT), and every other pod's,
  so this sidecar's clusters pick mTLS or plaintext per endpoint (Istio's auto mTLS, overridden by
  a DestinationRule ``tls.mode``);
* the inbound filters, in Envoy's order: local rate limit (the EnvoyFilter Istio documents),
  JWT authentication (RequestAuthentication), then RBAC (AuthorizationPolicy).

Identity always comes from the peer's verified certificate, never from a header: the inbound
side replaces any ``x-forwarded-client-cert`` it receives.

Example::

    security = WorkloadSecurity(identity, contexts)
    security.apply(view, jwks={})
    filters = security.inbound_filters()
"""

from __future__ import annotations

import hashlib
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshkit.backends.local.ca import peer_spiffe_id, principal_of
from meshkit.backends.local.jwt import RequestAuthenticator, compile_request_authentication
from meshkit.backends.local.peerauth import compose_peer_authentication
from meshkit.backends.local.proxy.authz import (
    DENIED_BODY,
    DENIED_STATUS,
    AuthzPolicySet,
    AuthzRequest,
    compile_policies,
)
from meshkit.backends.local.proxy.cluster import ClusterSpec, Endpoint
from meshkit.backends.local.proxy.config import ProxyIdentity, ProxyView
from meshkit.backends.local.proxy.exchange import Exchange, Filter, Handler
from meshkit.backends.local.proxy.matching import split_query
from meshkit.backends.local.proxy.ratelimit import LocalRateLimit, LocalRateLimiter
from meshkit.backends.local.tls import RotatingContexts
from meshkit.http1 import ResetConnection, Response

XFCC = "x-forwarded-client-cert"
SERVICE_PORT = 8080


@dataclass(frozen=True)
class CompiledSecurity:
    mode: str
    server_modes: dict[str, str]
    authz: AuthzPolicySet
    authn: RequestAuthenticator
    rate: LocalRateLimit | None
    fingerprint: str


class WorkloadSecurity:
    def __init__(self, identity: ProxyIdentity, contexts: RotatingContexts | None) -> None:
        self.identity = identity
        self.contexts = contexts
        self.mode = "PERMISSIVE"
        self.server_modes: dict[str, str] = {}
        self.authz: AuthzPolicySet = compile_policies([], identity.namespace, identity.labels)
        self.authn: RequestAuthenticator = compile_request_authentication([], identity.namespace, identity.labels)
        self.rate_config: LocalRateLimit | None = None
        self.limiter: LocalRateLimiter | None = None
        self.fingerprint = ""
        self.warnings: list[str] = []
        self._hbone: tuple[int, ssl.SSLContext] | None = None  # (certificate generation, HBONE client context)
        # ISTIO_META_ENABLE_HBONE: HBONE to ambient pods (waypoints always; a sidecar pod as it was injected)
        self.send_hbone = True

    # config -------------------------------------------------------------------------------------
    def apply(self, view: ProxyView, jwks: Mapping[str, Any]) -> bool:
        """Compile the security view; True when mTLS modes changed (pooled connections are stale)."""
        return self.commit(self.compile(view, jwks))

    def compile(self, view: ProxyView, jwks: Mapping[str, Any]) -> CompiledSecurity:
        """Everything :meth:`apply` builds, without touching this object: raises on a resource it cannot use."""
        me, res = self.identity, view.resources
        mode = compose_peer_authentication(res, me.namespace, me.labels).mode_for(SERVICE_PORT)
        modes = {}
        for spec in view.clusters.values():
            for ep in spec.endpoints:
                ns = ep.principal.split("/ns/")[1].split("/")[0] if "/ns/" in ep.principal else me.namespace
                modes[ep.pod] = compose_peer_authentication(res, ns, ep.labels).mode_for(SERVICE_PORT)
        authz = compile_policies(res, me.namespace, me.labels)

        def fetch(uri: str) -> str:
            if uri not in jwks:
                raise OSError(f"jwksUri {uri} is not reachable from the local mesh")
            return json.dumps(jwks[uri])

        authn = compile_request_authentication(res, me.namespace, me.labels, fetch)
        rate = None
        for r in res:
            if r.get("kind") == "EnvoyFilter":
                rate = LocalRateLimit.from_envoyfilter(r, me.labels, me.namespace) or rate
        tls_policy = sorted((name, spec.tls) for name, spec in view.clusters.items())
        fingerprint = hashlib.sha256(json.dumps([sorted(modes.items()), tls_policy]).encode()).hexdigest()
        return CompiledSecurity(mode, modes, authz, authn, rate, fingerprint)

    def commit(self, compiled: CompiledSecurity) -> bool:
        """Swap a compiled security view in; True when mTLS modes changed."""
        self.mode, self.authz, self.authn = compiled.mode, compiled.authz, compiled.authn
        if compiled.rate != self.rate_config:
            self.rate_config, self.limiter = compiled.rate, compiled.rate.new_limiter() if compiled.rate else None
        self.warnings = [*self.authz.warnings, *self.authn.warnings]
        changed = compiled.fingerprint != self.fingerprint
        self.server_modes, self.fingerprint = compiled.server_modes, compiled.fingerprint
        return changed

    # client side --------------------------------------------------------------------------------
    def ssl_for(self, ep: Endpoint, spec: ClusterSpec) -> tuple[ssl.SSLContext | None, int]:
        """The TLS context and port to reach ``ep`` (Istio auto mTLS unless a DR sets tls.mode)."""
        if self.send_hbone and not spec.external and ep.hbone_port and self.contexts is not None:
            # an ambient pod: the sidecar tunnels to its ztunnel over HBONE, as Istio's HBONE-enabled sidecars do
            return self.hbone_client(), ep.hbone_port
        if spec.external or not ep.tls_port or self.contexts is None:
            return None, ep.port
        mode = spec.tls
        if mode == "DISABLE":
            return None, ep.port
        if mode == "ISTIO_MUTUAL" or self.server_modes.get(ep.pod, "PERMISSIVE") != "DISABLE":
            return self.contexts.client, ep.tls_port
        return None, ep.port

    def hbone_client(self) -> ssl.SSLContext:
        """The workload's certificate as HBONE's client side (TLS 1.3, ALPN h2), remade after a rotation."""
        from meshkit.backends.local.tls import client_context
        from meshkit.backends.local.ztunnel.hbone import hbone_context

        assert self.contexts is not None
        if self._hbone is None or self._hbone[0] != self.contexts.generation:
            self._hbone = (self.contexts.generation, hbone_context(client_context(self.contexts.cert)))
        return self._hbone[1]

    # server side --------------------------------------------------------------------------------
    def inbound_filters(self) -> list[Filter]:
        return [PeerAuthnFilter(self), RateLimitFilter(self), JwtFilter(self), AuthzFilter(self)]


class PeerAuthnFilter(Filter):
    """PeerAuthentication: plaintext is reset under STRICT, TLS under DISABLE; the peer's identity
    is read from its certificate."""

    def __init__(self, sec: WorkloadSecurity) -> None:
        self.sec = sec

    async def __call__(self, ex: Exchange, next_: Handler) -> Response:
        req, rec = ex.req, ex.rec
        tls = req.ssl_object is not None
        if (self.sec.mode == "STRICT" and not tls) or (self.sec.mode == "DISABLE" and tls):
            raise ResetConnection(f"PeerAuthentication {self.sec.mode} refuses {'mTLS' if tls else 'plaintext'}")
        req.headers.pop(XFCC, None)  # a downstream never gets to claim an identity by header
        spiffe = None
        if tls:
            # the identity is the connection's: read the certificate once, not on every request
            conn = req.connection if req.connection is not None else {}
            spiffe = conn.get("spiffe")
            if spiffe is None:
                spiffe = conn["spiffe"] = peer_spiffe_id(req.ssl_object) or ""
        if spiffe:
            rec.source_principal = spiffe
            rec.connection_security_policy = "mutual_tls"
            own = f"spiffe://cluster.local/ns/{self.sec.identity.namespace}/sa/{self.sec.identity.service_account}"
            req.headers[XFCC] = f"By={own};URI={spiffe}"
            ex.req.context["principal"] = principal_of(spiffe)
        else:
            rec.source_principal = "unknown"
            rec.connection_security_policy = "none"
        return await next_(ex)


class RateLimitFilter(Filter):
    """Envoy's local rate limit: a token bucket per workload proxy; over the limit, 429 RL."""

    def __init__(self, sec: WorkloadSecurity) -> None:
        self.sec = sec

    async def __call__(self, ex: Exchange, next_: Handler) -> Response:
        limiter = self.sec.limiter
        if limiter is None:
            return await next_(ex)
        decision = limiter.check(ex.req.path.split("?", 1)[0], ex.req.headers, ex.req.peer[0] if ex.req.peer else "")
        if decision.allowed:
            return await next_(ex)
        cfg = limiter.config
        rule = (f"local rate limit of EnvoyFilter {cfg.namespace}/{cfg.name} "
                f"({cfg.max_tokens} tokens, {cfg.tokens_per_fill} per {cfg.fill_interval_s:g}s)")
        resp = ex.local_reply(decision.status, decision.flag, decision.details, decision.body, rule)
        resp.headers.update(dict(decision.headers))
        return resp


class JwtFilter(Filter):
    """RequestAuthentication: a present but invalid token is refused (401); a valid one sets the
    request principal and claims for authorization."""

    def __init__(self, sec: WorkloadSecurity) -> None:
        self.sec = sec

    async def __call__(self, ex: Exchange, next_: Handler) -> Response:
        authn = self.sec.authn
        if not authn.rules:
            return await next_(ex)
        _, query = split_query(ex.req.path)
        result = authn.authenticate(ex.req.headers, query, ex.req.path)
        if not result.ok:
            resp = ex.local_reply(result.status, "", result.details or "jwt_authn_access_denied", result.body,
                                  rule="RequestAuthentication: invalid token")
            if result.www_authenticate:
                resp.headers["www-authenticate"] = result.www_authenticate
            return resp
        for name in result.remove_headers:
            ex.req.headers.pop(name, None)
        for name, value in result.add_headers:
            ex.req.headers[name] = value
        ex.req.context["request_principal"] = result.principal
        ex.req.context["claims"] = result.claims
        return await next_(ex)


class AuthzFilter(Filter):
    """AuthorizationPolicy (Envoy RBAC): denial answers 403 ``RBAC: access denied`` from here."""

    def __init__(self, sec: WorkloadSecurity) -> None:
        self.sec = sec

    async def __call__(self, ex: Exchange, next_: Handler) -> Response:
        policies = self.sec.authz
        if not (policies.deny or policies.allow or policies.audit):
            return await next_(ex)
        req = ex.req
        ctx = req.context
        decision = policies.evaluate(
            AuthzRequest(
                method=req.method,
                path=req.path,
                host=req.headers.get("host", ""),
                port=SERVICE_PORT,
                headers=req.headers,
                source_principal=ctx.get("principal", ""),
                source_ip=req.peer[0] if req.peer else "",
                request_principal=ctx.get("request_principal", ""),
                claims=ctx.get("claims", {}),
                destination_ip="127.0.0.1",
            )
        )
        if decision.allowed:
            return await next_(ex)
        return ex.local_reply(DENIED_STATUS, "", decision.response_code_details, DENIED_BODY,
                              rule=f"AuthorizationPolicy: {decision.reason}")
