"""A small Kubernetes API server on 127.0.0.1 for tests: discovery, object storage, a request log.

It serves what the real kubernetes client asks for (``/version``, ``/api``, ``/apis`` and the
resource lists of the groups meshkit uses), stores objects sent by server-side apply (merging
nothing: an apply replaces the object, enough for these tests), answers GET/LIST/DELETE, and
records every request (method, path, query, headers, body) so tests can assert the exact HTTP
that meshkit's code made the real client send. Canned answers cover the service proxy and logs;
``fail`` makes the next matching request fail with a Kubernetes ``Status``.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def _res(name: str, kind: str, namespaced: bool = True, short: tuple[str, ...] = (), singular: str = "") -> dict:
    verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
    return {
        "name": name,
        "singularName": singular or kind.lower(),
        "namespaced": namespaced,
        "kind": kind,
        "verbs": verbs,
        "shortNames": list(short),
    }


GROUPS: dict[str, dict[str, list[dict]]] = {
    "apps": {
        "v1": [
            _res("deployments", "Deployment", short=("deploy",)),
            {"name": "deployments/scale", "namespaced": True, "kind": "Scale", "verbs": ["get", "patch"]},
        ]
    },
    "networking.istio.io": {
        version: [
            _res("virtualservices", "VirtualService", short=("vs",)),
            _res("destinationrules", "DestinationRule", short=("dr",)),
            _res("gateways", "Gateway", short=("gw",)),
            _res("serviceentries", "ServiceEntry", short=("se",)),
            _res("sidecars", "Sidecar"),
        ]
        + ([_res("envoyfilters", "EnvoyFilter")] if version == "v1alpha3" else [])
        for version in ("v1", "v1beta1", "v1alpha3")
    },
    "security.istio.io": {
        "v1": [
            _res("peerauthentications", "PeerAuthentication", short=("pa",)),
            _res("authorizationpolicies", "AuthorizationPolicy", short=("ap",)),
            _res("requestauthentications", "RequestAuthentication", short=("ra",)),
        ]
    },
    "telemetry.istio.io": {"v1": [_res("telemetries", "Telemetry", short=("telemetry",))]},
    "gateway.networking.k8s.io": {
        "v1": [
            _res("gatewayclasses", "GatewayClass", namespaced=False, short=("gc",)),
            _res("gateways", "Gateway", short=("gtw",)),
            _res("httproutes", "HTTPRoute"),
            _res("grpcroutes", "GRPCRoute"),
        ],
        "v1beta1": [_res("referencegrants", "ReferenceGrant", short=("refgrant",))],
    },
}
CORE = [
    _res("pods", "Pod", short=("po",)),
    _res("services", "Service", short=("svc",)),
    _res("serviceaccounts", "ServiceAccount", short=("sa",)),
    _res("namespaces", "Namespace", namespaced=False, short=("ns",)),
    {"name": "pods/log", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
    {"name": "pods/proxy", "namespaced": True, "kind": "PodProxyOptions", "verbs": ["get"]},
    {"name": "services/proxy", "namespaced": True, "kind": "ServiceProxyOptions", "verbs": ["get"]},
]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


def status_body(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class FakeApiServer:
    """Start with ``with FakeApiServer() as api:``; point a client at ``api.url``."""

    def __init__(self, groups: dict[str, dict[str, list[dict]]] | None = None) -> None:
        self.groups = GROUPS if groups is None else groups
        self.objects: dict[str, dict] = {}
        self.requests: list[Recorded] = []
        self.canned: dict[str, tuple[int, str, str]] = {}
        self._fail: list[tuple[str, str, int, dict | str]] = []
        self._rv = 0
        self.on_delete: Any = None  # called with the deleted path (a test can create a replacement pod)
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                owner._serve(self)

            do_GET = do_PATCH = do_DELETE = do_POST = do_PUT = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> FakeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # test controls ------------------------------------------------------------------------------
    def fail(self, method: str, path_part: str, code: int, body: dict | str) -> None:
        """The next ``method`` request whose path contains ``path_part`` answers ``code`` with ``body``."""
        self._fail.append((method, path_part, code, body))

    def put(self, path: str, obj: dict) -> None:
        """Store ``obj`` at its object path, e.g. ``/api/v1/namespaces/tutorial/pods/customer-x``."""
        self._rv += 1
        obj = copy.deepcopy(obj)
        obj.setdefault("metadata", {})["resourceVersion"] = str(self._rv)
        self.objects[path] = obj

    def of(self, method: str, part: str = "") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and part in r.path]

    # serving -------------------------------------------------------------------------------------
    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        path, query = split.path, parse_qs(split.query)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode()
        with self._lock:
            self.requests.append(Recorded(h.command, path, query, dict(h.headers.items()), body))
            code, ctype, payload = self._answer(h.command, path, query, body)
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _answer(self, method: str, path: str, query: dict, body: Any) -> tuple[int, str, Any]:
        js = "application/json"
        for i, (m, part, code, fbody) in enumerate(self._fail):
            if m == method and part in path:
                del self._fail[i]
                return code, js if isinstance(fbody, dict) else "text/plain", fbody
        if path in self.canned:
            return self.canned[path]
        if path == "/version":
            return 200, js, {"major": "1", "minor": "36", "gitVersion": "v1.36.1"}
        if path == "/api":
            return 200, js, {"kind": "APIVersions", "versions": ["v1"]}
        if path == "/api/v1":
            return 200, js, {"kind": "APIResourceList", "groupVersion": "v1", "resources": CORE}
        if path == "/apis":
            groups = [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                    "preferredVersion": {"groupVersion": f"{g}/{next(iter(vs))}", "version": next(iter(vs))},
                }
                for g, vs in self.groups.items()
            ]
            return 200, js, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        parts = path.strip("/").split("/")
        if parts[0] == "apis" and len(parts) == 3:
            resources = self.groups.get(parts[1], {}).get(parts[2])
            if resources is None:
                return (
                    404,
                    js,
                    status_body(404, "NotFound", "the server could not find the requested resource"),
                )
            return (
                200,
                js,
                {"kind": "APIResourceList", "groupVersion": f"{parts[1]}/{parts[2]}", "resources": resources},
            )
        return self._objects(method, path, query, body)

    def _objects(self, method: str, path: str, query: dict, body: Any) -> tuple[int, str, Any]:
        js = "application/json"
        resource, name = path.rstrip("/").split("/")[-2:]
        if method == "GET" and path in self.objects:
            return 200, js, self.objects[path]
        if method == "GET" and name in {r["name"] for g in self.groups.values() for v in g.values() for r in v} | {
            r["name"] for r in CORE
        }:
            selector = dict(kv.split("=", 1) for kv in (query.get("labelSelector", [""])[0]).split(",") if kv)
            items = [
                o
                for p, o in self.objects.items()
                if p.rsplit("/", 1)[0] == path
                and all((o["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
            ]
            return (
                200,
                js,
                {
                    "kind": "List",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(self._rv)},
                    "items": items,
                },
            )
        if method == "PATCH":
            old = self.objects.get(path)
            if query.get("dryRun"):
                return 200, js, body
            if old is None and "apply-patch" not in self.requests[-1].headers.get("Content-Type", ""):
                return 404, js, status_body(404, "NotFound", f'{resource} "{name}" not found')
            new = (
                dict(body)
                if "apply-patch" in self.requests[-1].headers.get("Content-Type", "")
                else _merge(old or {}, body)
            )
            same = old is not None and {k: v for k, v in old.items() if k != "metadata"} == {
                k: v for k, v in new.items() if k != "metadata"
            }
            if same:
                return 200, js, old
            self.put(path, new)
            return (201 if old is None else 200), js, new
        if method == "DELETE" and path in self.objects:
            del self.objects[path]
            if self.on_delete:
                self.on_delete(path)
            return 200, js, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        return 404, js, status_body(404, "NotFound", f'{resource} "{name}" not found')


def _merge(old: dict, patch: dict) -> dict:
    out = dict(old)
    for key, value in patch.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out
