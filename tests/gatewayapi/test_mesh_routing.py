"""Gateway API on one real local mesh: GAMMA routes at the client sidecars, the north-south gateway, status.

Requests go from the customer pod's sidecar (as ``curl`` inside the pod would) to
``recommendation:8080``; the versions, codes, flags and headers are Envoy's as Istio configures them.
"""

from __future__ import annotations

import http.client
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshkit.backends.local.trust import OWNER_HEADER, read_owner_credential
from meshkit.mesh import Mesh
from meshkit.resources.gatewayapi.schema import EXPERIMENTAL_ENV
from tests.local.conftest import start_mesh, stop_mesh

ISTIOFILES = Path(__file__).resolve().parents[2] / "cluster" / "istiofiles"
ROUTE_HEAD = """apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: {name}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: {parent}
    port: 8080
  rules:
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    # the experimental channel, so HTTPRoute retry is accepted (the control plane inherits it)
    old = os.environ.get(EXPERIMENTAL_ENV)
    os.environ[EXPERIMENTAL_ENV] = "experimental"
    m = start_mesh(Path(tmp_path_factory.mktemp("gwapi")))
    try:
        yield m
    finally:
        stop_mesh(m)
        if old is None:
            os.environ.pop(EXPERIMENTAL_ENV, None)
        else:
            os.environ[EXPERIMENTAL_ENV] = old


@pytest.fixture
def clean(mesh: Mesh) -> Iterator[Mesh]:
    mesh.reset()
    yield mesh
    mesh.reset()
    for dep in ("recommendation-v1", "recommendation-v2"):
        mesh.behave(dep)
        mesh.delay(dep, 0)


def route(rules: str, name: str = "recommendation", parent: str = "recommendation") -> str:
    return ROUTE_HEAD.format(name=name, parent=parent) + rules


def sidecar_port(mesh: Mesh, app: str = "customer") -> int:
    pod = next(p for p in mesh.pods() if p.app == app and p.ready)
    return int(pod.extra["ports"]["outbound"])


def send(mesh: Mesh, path: str = "/", headers: dict[str, str] | None = None, method: str = "GET",
         host: str = "recommendation:8080", port: int | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request into the customer pod's sidecar (no redirect following): status, headers, body."""
    conn = http.client.HTTPConnection("127.0.0.1", port or sidecar_port(mesh), timeout=30)
    owner = {OWNER_HEADER: read_owner_credential(mesh.backend.home)}  # type: ignore[attr-defined]
    try:
        conn.request(method, path, headers={"host": host, **owner, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def versions(mesh: Mesh, n: int, **kw: Any) -> Counter[str]:
    port = sidecar_port(mesh)
    out: Counter[str] = Counter()
    for _ in range(n):
        status, _, body = send(mesh, port=port, **kw)
        text = body.decode()
        out[text.split()[1] if status == 200 and text.startswith("recommendation") else str(status)] += 1
    return out


def status_conditions(mesh: Mesh, name: str) -> dict[str, tuple[str, str, str]]:
    res = mesh.get("httproute", name)[0]
    return {c["type"]: (c["status"], c["reason"], c["message"])
            for p in res["status"]["parents"] for c in p["conditions"]}


def test_istiofiles_gateway_api_variants_route_as_documented(clean: Mesh) -> None:
    # traffic shifting (istio.io's task in Gateway API form): counts within 3 points over 2,000 requests
    for name, v1 in (("v1_and_v2", 90), ("v1_and_v2_75_25", 75), ("v1_and_v2_50_50", 50)):
        clean.apply(str(ISTIOFILES / f"httproute-recommendation-{name}.yaml"))
        summary = clean.load(n=2000, concurrency=8).summary()
        assert summary["codes"] == {"200": 2000}
        share = 100 * summary["versions"]["v1"] / 2000
        assert abs(share - v1) <= 3, (name, summary["versions"])
    clean.apply(str(ISTIOFILES / "httproute-recommendation-v1.yaml"))
    assert clean.load(n=50).summary()["versions"] == {"v1": 50}
    clean.apply(str(ISTIOFILES / "httproute-recommendation-v2.yaml"))
    assert clean.load(n=50).summary()["versions"] == {"v2": 50}
    # request routing by header
    clean.apply(str(ISTIOFILES / "httproute-recommendation-safari-v2.yaml"))
    assert clean.load(n=50, headers={"user-agent": "Safari"}).summary()["versions"] == {"v2": 50}
    assert clean.load(n=50).summary()["versions"] == {"v1": 50}
    # request timeouts: v2 slowed past the route's 1 s answers 504
    clean.delay("recommendation-v2", 2.0)
    clean.apply(str(ISTIOFILES / "httproute-recommendation-timeout.yaml"))
    codes = Counter(send(clean)[0] for _ in range(8))
    assert set(codes) == {200, 504}, codes


def test_weight_zero_is_dropped_and_all_zero_answers_500(clean: Mesh) -> None:
    clean.apply(route("""  - backendRefs:
    - {name: recommendation-v1, port: 8080, weight: 0}
    - {name: recommendation-v2, port: 8080}
"""))
    assert versions(clean, 20) == Counter({"v2": 20})
    clean.apply(route("""  - backendRefs:
    - {name: recommendation-v1, port: 8080, weight: 0}
    - {name: recommendation-v2, port: 8080, weight: 0}
"""))
    status, _, body = send(clean)
    assert (status, body) == (500, b"")


def test_missing_backend_answers_500_empty_body_flag_nc(clean: Mesh) -> None:
    clean.apply(route("""  - backendRefs:
    - {name: recommendation-v9, port: 8080}
"""))
    status, _, body = send(clean)
    assert (status, body) == (500, b"")
    assert status_conditions(clean, "recommendation")["ResolvedRefs"] == (
        "False", "BackendNotFound", "backend(recommendation-v9.tutorial.svc.cluster.local) not found")
    log = clean.backend.access_log(next(p.name for p in clean.pods() if p.app == "customer"))  # type: ignore[attr-defined]
    last = [line for line in log if "recommendation-v9" in line][-1]
    assert '" 500 NC cluster_not_found ' in last and "tutorial.recommendation.0" in last
    # mixed with a valid backend: the missing share gets the 500s, as the spec requires
    clean.apply(route("""  - backendRefs:
    - {name: recommendation-v9, port: 8080}
    - {name: recommendation-v1, port: 8080}
"""))
    got = versions(clean, 200)
    assert set(got) == {"500", "v1"} and 60 <= got["500"] <= 140, got


def test_header_routing_and_path_separated_prefix(clean: Mesh) -> None:
    clean.apply(route("""  - matches:
    - headers:
      - {name: end-user, value: jason}
    backendRefs:
    - {name: recommendation-v2, port: 8080}
  - backendRefs:
    - {name: recommendation-v1, port: 8080}
"""))
    assert versions(clean, 10, headers={"end-user": "jason"}) == Counter({"v2": 10})
    assert versions(clean, 10) == Counter({"v1": 10})
    clean.apply(route("""  - matches:
    - path: {type: PathPrefix, value: /api}
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: x-rule, value: api}]
    backendRefs:
    - {name: recommendation-v2, port: 8080}
  - filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: x-rule, value: default}]
    backendRefs:
    - {name: recommendation-v1, port: 8080}
"""))
    assert send(clean, "/api/x")[1]["x-rule"] == "api"
    assert send(clean, "/api")[1]["x-rule"] == "api"
    assert send(clean, "/apix")[1]["x-rule"] == "default"  # whole path segments only


def test_precedence_exact_over_prefix_over_regex_on_the_wire(clean: Mesh) -> None:
    def rule(match: str, tag: str) -> str:
        return f"""  - matches: [{match}]
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier: {{set: [{{name: x-rule, value: {tag}}}]}}
    backendRefs: [{{name: recommendation-v1, port: 8080}}]
"""
    clean.apply(route(
        rule("{path: {type: RegularExpression, value: '/p/.*'}}", "regex")
        + rule("{path: {type: PathPrefix, value: /p}}", "prefix")
        + rule("{path: {type: Exact, value: /p/exact}}", "exact")
        + rule("{path: {type: PathPrefix, value: /p}, method: POST}", "method")
        + rule("{path: {type: PathPrefix, value: /p}, queryParams: [{name: q, value: '1'}]}", "query")))
    assert send(clean, "/p/exact")[1]["x-rule"] == "exact"
    assert send(clean, "/p/other")[1]["x-rule"] == "prefix"
    assert send(clean, "/p/other", method="POST")[1]["x-rule"] == "method"
    assert send(clean, "/p/other?q=1")[1]["x-rule"] == "query"


def test_request_header_modifier_url_rewrite_and_redirect(clean: Mesh) -> None:
    # preference's route sets the header the app propagates; recommendation's route matches on it
    clean.apply(route("""  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: baggage-user-agent, value: Safari}]
    backendRefs:
    - {name: preference, port: 8080}
""", name="preference", parent="preference"), route("""  - matches:
    - headers: [{name: baggage-user-agent, value: Safari}]
    backendRefs: [{name: recommendation-v2, port: 8080}]
  - backendRefs: [{name: recommendation-v1, port: 8080}]
"""))
    status, _, body = send(clean, host="preference:8080")
    assert status == 200 and body.startswith(b"preference => recommendation v2"), body
    clean.apply(route("""  - matches: [{path: {type: PathPrefix, value: /v1api}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}
    backendRefs: [{name: recommendation-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect:
        hostname: new.example
        statusCode: 301
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}
  - backendRefs: [{name: recommendation-v1, port: 8080}]
"""))
    assert send(clean, "/v1api")[0] == 200  # the app only serves "/": the prefix was stripped
    assert send(clean, "/elsewhere")[0] == 404
    status, headers, body = send(clean, "/old/page?x=1")
    assert (status, headers["location"], body) == (301, "http://new.example:8080/new/page?x=1", b"")


def test_mirror_percent_and_cors(clean: Mesh) -> None:
    clean.apply(route("""  - filters:
    - type: RequestMirror
      requestMirror:
        backendRef: {name: recommendation-v2, port: 8080}
        percent: 100
    - type: CORS
      cors:
        allowOrigins: ["https://shop.example"]
        allowMethods: [GET, POST]
        allowHeaders: [x-token]
        maxAge: 60
    backendRefs: [{name: recommendation-v1, port: 8080}]
"""))
    def served() -> int:  # recommendation v2's request count, as its reply says (one more each time)
        return int(send(clean, host="recommendation-v2:8080")[2].decode().rsplit(":", 1)[1])

    before = served()
    assert versions(clean, 10) == Counter({"v1": 10})
    deadline = time.monotonic() + 10
    while (after := served()) < before + 12 and time.monotonic() < deadline:
        time.sleep(0.1)
        before += 1  # that look was a request too
    assert after == before + 11  # every request shadowed, plus the look itself
    status, headers, _ = send(clean, method="OPTIONS", headers={
        "origin": "https://shop.example", "access-control-request-method": "POST"})
    assert status == 200 and headers["access-control-allow-origin"] == "https://shop.example"
    assert headers["access-control-allow-methods"] == "GET,POST" and headers["access-control-max-age"] == "60"
    _, headers, _ = send(clean, headers={"origin": "https://shop.example"})
    assert headers["access-control-allow-origin"] == "https://shop.example"
    _, headers, _ = send(clean, headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in headers


def test_unsupported_filter_leaves_the_service_default_routing(clean: Mesh) -> None:
    clean.apply(route("""  - filters:
    - type: ExtensionRef
      extensionRef: {group: example.io, kind: Plugin, name: p}
    backendRefs: [{name: recommendation-v1, port: 8080}]
"""))
    assert set(versions(clean, 40)) == {"v1", "v2"}  # no route from the HTTPRoute: the Service's own balancing
    assert status_conditions(clean, "recommendation") == {
        "Accepted": ("True", "Accepted", "Route was valid"),
        "ResolvedRefs": ("False", "InvalidFilter", 'unsupported filter type "ExtensionRef"')}


def test_timeouts_request_and_backend_request(clean: Mesh) -> None:
    clean.delay("recommendation-v1", 1.0)
    for field in ("request", "backendRequest"):
        clean.apply(route(f"""  - timeouts: {{{field}: 300ms}}
    backendRefs: [{{name: recommendation-v1, port: 8080}}]
"""))
        start = time.monotonic()
        status, _, body = send(clean)
        # a 504 while the pod holds every reply 1 s: the 300 ms timeout fired, not a longer one (that would
        # have seen the 200); and not before its 300 ms (a lower bound, which load cannot break)
        assert (status, body) == (504, b"upstream request timeout")
        assert time.monotonic() - start >= 0.3


def test_retry_codes_from_the_experimental_channel(clean: Mesh) -> None:
    # a retry stays in the chosen backend's cluster: use the Service that has both pods
    clean.misbehave("recommendation-v2")
    clean.apply(route("""  - backendRefs:
    - {name: recommendation, port: 8080}
"""))
    assert "503" in versions(clean, 30)  # Istio's default policy does not retry an app's 503
    clean.apply(route("""  - retry: {attempts: 3, codes: [503]}
    backendRefs:
    - {name: recommendation, port: 8080}
"""))
    assert versions(clean, 30) == Counter({"v1": 30})


def test_older_virtual_service_wins_over_a_newer_httproute_at_sidecars(clean: Mesh) -> None:
    clean.apply("""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: recommendation}
spec:
  hosts: [recommendation]
  http:
  - route:
    - destination: {host: recommendation-v2}
""")
    time.sleep(1.1)  # creation timestamps have one-second resolution
    clean.apply(route("""  - backendRefs: [{name: recommendation-v1, port: 8080}]
"""))
    assert versions(clean, 10) == Counter({"v2": 10})
    from meshkit.resources import analyze

    objects = [*clean.get(), *clean.get("services"), *clean.get("pods")]
    clash = [p.message for p in analyze(objects) if p.code == "IST0109" and p.kind == "HTTPRoute"]
    assert clash and "Sidecars do not merge them: VirtualService tutorial/recommendation applies" in clash[0]
    clean.delete("virtualservice", "recommendation")
    assert versions(clean, 10) == Counter({"v1": 10})


def test_north_south_gateway_deploys_its_pod_and_routes(clean: Mesh) -> None:
    clean.apply(str(ISTIOFILES / "gateway-api-customer.yaml"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pods = [p for p in clean.pods() if p.deployment == "tutorial-gateway-istio" and p.ready]
        if pods:
            break
        time.sleep(0.1)
    assert pods and pods[0].service_account == "tutorial-gateway-istio"
    clean.backend.wait_synced()  # type: ignore[attr-defined]
    status, _, body = send(clean, "/customer", host="shop.example", port=int(pods[0].extra["ports"]["outbound"]))
    assert status == 200 and body.startswith(b"customer => preference => recommendation"), body
    gw = clean.get("gateways.gateway.networking.k8s.io", "tutorial-gateway")[0]["status"]
    assert [(c["type"], c["status"]) for c in gw["conditions"]] == [
        ("Accepted", "True"), ("Programmed", "True"), ("ResolvedRefs", "True")]
    assert gw["listeners"][0]["attachedRoutes"] == 1 and gw["addresses"][0]["value"] == "127.0.0.1"
    clean.delete("gateways.gateway.networking.k8s.io", "tutorial-gateway")
    deadline = time.monotonic() + 10
    while any(p.deployment == "tutorial-gateway-istio" for p in clean.pods()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(p.deployment == "tutorial-gateway-istio" for p in clean.pods())


def test_proxy_config_routes_shows_the_generated_names(clean: Mesh) -> None:
    import subprocess
    import sys

    clean.apply(str(ISTIOFILES / "httproute-recommendation-safari-v2.yaml"))
    pod = next(p.name for p in clean.pods() if p.app == "preference")
    env = {**os.environ, "MESHKIT_HOME": str(clean.backend.home)}  # type: ignore[attr-defined]
    out = subprocess.run([sys.executable, "-m", "meshkit.cli", "proxy-config", "routes", pod, "--name", "8080",
                          "-o", "json"], env=env, capture_output=True, text=True, check=True).stdout
    import json

    vhost = next(v for rc in json.loads(out) for v in rc["virtualHosts"] if v["name"].startswith("recommendation."))
    assert [r["name"] for r in vhost["routes"]] == ["tutorial.recommendation.0", "tutorial.recommendation.1"]
    table = subprocess.run([sys.executable, "-m", "meshkit.cli", "proxy-config", "routes", pod, "--name", "8080"],
                           env=env, capture_output=True, text=True, check=True).stdout
    assert "tutorial~8080~recommendation.tutorial.svc.cluster.local.tutorial" in table
