"""The route filter: virtual host lookup, first-match rule selection, rewrites and header edits.

Istio semantics: the rules of a VirtualService are tried in order and the first whose match holds
is used; when none does, Envoy answers 404 with flag NR. Unknown hosts are blocked with a 502
(route ``block_all``) under ``REGISTRY_ONLY`` and passed through under ``ALLOW_ANY``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from meshkit.backends.local.proxy.config import Cors, ProxyView, Redirect, Route, VirtualHost
from meshkit.backends.local.proxy.exchange import Exchange, Filter, Handler
from meshkit.backends.local.proxy.matching import RequestView, split_query
from meshkit.http1 import Response

#: ``req.context`` key naming the Service a waypoint was sent the request for (its vhost)
VHOST_KEY = "waypoint_service"


class RouteFilter(Filter):
    """Picks the virtual host and the route; everything after it reads ``ex.route``."""

    def __init__(self, view: Callable[[], ProxyView], gateway_name: str = "mesh", server_port: int = 80) -> None:
        self.view = view
        self.gateway_name = gateway_name
        self.server_port = server_port  # gateways: which Gateway server (80 or 443) this listener is

    async def __call__(self, ex: Exchange, next_: Handler) -> Response:
        view = self.view()
        req = ex.req
        authority = req.headers.get("host", "")
        ex.rec.authority = authority
        if view.identity.gateway:
            candidates = _gateway_vhosts(view, authority, self.server_port)
            if not candidates:
                ex.rec.route_name = "-"
                return ex.local_reply(404, "NR", "route_not_found", rule="no VirtualService bound to the gateway")
        else:
            # a waypoint routes by the Service the connection was addressed to, whatever the Host says
            vhost = view.vhost_for(req.context.get(VHOST_KEY) or authority)
            if vhost is None:
                return _unknown_host(ex, view, authority)
            candidates = [vhost]
        path, query = split_query(req.path)
        rv = RequestView(
            req.method,
            path,
            req.headers,
            query,
            self.gateway_name,
            view.identity.labels,
            authority.split(":")[0],
            self.server_port if view.identity.gateway else candidates[0].port,
            view.identity.namespace,
        )
        for vhost in candidates:
            for route in vhost.routes:
                block = route.matches.first(rv)
                if block is None:
                    continue
                ex.vhost, ex.route = vhost, route
                ex.rec.route_name = route.name
                if route.cors is not None and (preflight := _cors_preflight(ex, route.cors)) is not None:
                    return preflight
                if route.redirect is not None:
                    return _redirect(ex, route.redirect, block.uri_prefix, path, self.server_port)
                _rewrite(ex, route, block.uri_prefix, path)
                edit_headers(req.headers, route.request_headers)
                if route.direct_response is not None:
                    status, body = route.direct_response
                    return ex.local_reply(status, "", "direct_response", body)
                origin = req.headers.get("origin")
                resp = await next_(ex)
                edit_headers(resp.headers, route.response_headers)
                if route.cors is not None and origin is not None:
                    _cors_response(resp.headers, route.cors, origin)
                return resp
        ex.rec.route_name = "-"
        rule = f"no rule of {candidates[0].routes[0].origin or 'the route table'} matched" if candidates else ""
        return ex.local_reply(404, "NR", "route_not_found", rule=rule)


def _gateway_vhosts(view: ProxyView, authority: str, server_port: int) -> list[VirtualHost]:
    host = authority.split(":")[0].lower()
    return [
        v for v in view.gateway_routes.get(server_port, ())
        if v.name in ("*", host) or (v.name.startswith("*.") and host.endswith(v.name[1:]))
    ]


def _unknown_host(ex: Exchange, view: ProxyView, authority: str) -> Response:
    host = authority.split(":")[0]
    ex.rec.destination_service = ex.rec.destination_service_name = (
        "BlackHoleCluster" if view.outbound_policy == "REGISTRY_ONLY" else "PassthroughCluster"
    )
    if view.outbound_policy == "REGISTRY_ONLY":
        ex.rec.route_name = "block_all"
        ex.rec.upstream_cluster = "BlackHoleCluster"
        return ex.local_reply(
            502, "", "direct_response", rule=f"REGISTRY_ONLY blocked {host} (no ServiceEntry for it)"
        )
    ex.rec.upstream_cluster = "PassthroughCluster"
    return ex.local_reply(
        503,
        "UF",
        "upstream_reset_before_response_started{connection_failure}",
        b"upstream connect error or disconnect/reset before headers. reset reason: connection failure",
        rule=f"ALLOW_ANY passthrough to {host}: host unreachable from the local mesh",
    )


def _rewrite(ex: Exchange, route: Route, prefix: str | None, path: str) -> None:
    req = ex.req
    if route.rewrite_regex is not None or (route.gateway_semantics and route.rewrite_uri == "/" and prefix):
        # Envoy's regex_rewrite; Istio strips a Gateway API prefix with ^<prefix>(/?)(.*) -> /\2
        if route.rewrite_regex is not None:
            pattern, substitution = route.rewrite_regex
        else:
            pattern, substitution = f"^{re.escape((prefix or '').rstrip('/'))}(/?)(.*)", "/\\2"
        req.headers.setdefault("x-envoy-original-path", req.path)
        query = req.path[len(path) :]
        req.path = re.sub(pattern, substitution, path, count=1) + query
    elif route.rewrite_uri is not None:
        req.headers.setdefault("x-envoy-original-path", req.path)
        query = req.path[len(path) :]
        if prefix is not None:
            req.path = route.rewrite_uri + path[len(prefix) :] + query
        else:
            req.path = route.rewrite_uri + query
        if not req.path.startswith("/"):
            req.path = "/" + req.path
    if route.rewrite_authority:
        req.headers["host"] = route.rewrite_authority


def edit_headers(headers: dict[str, str], ops: Mapping[str, Any]) -> None:
    if not ops:
        return
    for name, value in (ops.get("set") or {}).items():
        headers[name.lower()] = str(value)
    for name, value in (ops.get("add") or {}).items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else str(value)
    for name in ops.get("remove") or []:
        headers.pop(name.lower(), None)


def _redirect(ex: Exchange, redirect: Redirect, prefix: str | None, path: str, server_port: int) -> Response:
    """Envoy's redirect action: ``Location`` built from the request and the route's redirect."""
    req = ex.req
    host, _, port = req.headers.get("host", "").partition(":")
    scheme = redirect.scheme or ("https" if server_port == 443 else "http")
    authority = redirect.authority or host
    if redirect.port:
        port = str(redirect.port)
    elif redirect.derive_port == "FROM_PROTOCOL_DEFAULT" or (
        redirect.authority and redirect.derive_port != "FROM_REQUEST_PORT"
    ):
        port = ""
    if port and port == {"http": "80", "https": "443"}.get(scheme):
        port = ""
    query = req.path[len(path) :]
    new_path = path
    if redirect.uri is not None:
        new_path = redirect.uri
        if "?" in new_path:
            query = ""
    elif redirect.prefix_rewrite is not None and prefix is not None:
        rest = path[len(prefix.rstrip("/")) :]
        base = redirect.prefix_rewrite
        new_path = (base.rstrip("/") + rest) if rest.startswith("/") else base + rest
        new_path = new_path or "/"
    location = f"{scheme}://{authority}{':' + port if port else ''}{new_path}{query}"
    ex.rec.response_code_details = "direct_response"
    return Response(redirect.status, {"location": location}, b"")


def _origin_allowed(cors: Cors, origin: str) -> bool:
    return any(match(origin) for match in cors.origins)


def _cors_preflight(ex: Exchange, cors: Cors) -> Response | None:
    """Envoy's CORS filter on a preflight (OPTIONS with Origin and Access-Control-Request-Method)."""
    req = ex.req
    origin = req.headers.get("origin")
    if req.method != "OPTIONS" or origin is None or "access-control-request-method" not in req.headers:
        return None
    if not _origin_allowed(cors, origin):
        if cors.forward_unmatched_preflights:
            return None
        ex.rec.response_code_details = "cors_response"
        return Response(200, {}, b"")
    headers = {"access-control-allow-origin": origin}
    for name, value in (("access-control-allow-methods", cors.methods), ("access-control-allow-headers", cors.headers),
                        ("access-control-max-age", cors.max_age)):
        if value:
            headers[name] = value
    if cors.credentials:
        headers["access-control-allow-credentials"] = "true"
    ex.rec.response_code_details = "cors_response"
    return Response(200, headers, b"")


def _cors_response(headers: dict[str, str], cors: Cors, origin: str) -> None:
    if not _origin_allowed(cors, origin):
        return
    headers["access-control-allow-origin"] = origin
    if cors.credentials:
        headers["access-control-allow-credentials"] = "true"
    if cors.expose:
        headers["access-control-expose-headers"] = cors.expose
