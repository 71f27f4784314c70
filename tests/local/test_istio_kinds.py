"""Sidecar egress scoping, WorkloadEntry endpoints, Telemetry metric overrides and the per-route local
rate limit of Istio's sample, on one real local mesh."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from meshkit.mesh import Mesh

PER_ROUTE = Path(__file__).parents[1] / "resources" / "data" / "envoy-filter-local-ratelimit-per-route.yaml"

ONLY_CUSTOMER = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: preference-egress}
spec:
  workloadSelector: {labels: {app: preference}}
  egress:
  - hosts: ["./customer.tutorial.svc.cluster.local", "istio-system/*"]
"""


def pod_of(mesh: Mesh, app: str) -> str:
    return next(p.name for p in mesh.pods() if p.app == app and p.ready)


def test_sidecar_egress_hosts_scope_what_a_proxy_knows(clean: Mesh) -> None:
    clean.apply(ONLY_CUSTOMER)
    code, body = clean.curl()
    assert (code, body) == (503, "customer => Error: 503 - preference => Error: 502 -")
    since = time.time() - 5
    rows = [r for r in clean.settled_request_log(since) if r["route_name"] == "block_all"]
    assert rows and rows[-1]["destination_service_name"] == "BlackHoleCluster"
    # the customer's sidecar is not selected: it still knows preference
    assert clean.exec(pod_of(clean, "customer"), "http://preference:8080/")[0] in (200, 503)
    # the Sidecar's own outbound policy: passthrough instead of the BlackHole
    clean.apply(ONLY_CUSTOMER.replace("  egress:", "  outboundTrafficPolicy: {mode: ALLOW_ANY}\n  egress:"))
    code, body = clean.curl()
    assert code == 503 and "upstream connect error or disconnect/reset before headers" in body
    clean.delete("sidecar", "preference-egress")
    assert clean.curl()[0] == 200


class _Legacy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"legacy vm answered {self.path}\n".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def legacy_vm() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Legacy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_workload_entry_is_an_endpoint_of_a_selecting_service_entry(clean: Mesh, legacy_vm: int) -> None:
    clean.apply(f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: legacy}}
spec:
  hosts: [legacy.example.internal]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector: {{labels: {{app: legacy}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: legacy-vm-1}}
spec:
  address: 127.0.0.1
  labels: {{app: legacy}}
  ports: {{http: {legacy_vm}}}
""")
    customer = pod_of(clean, "customer")
    assert clean.exec(customer, "http://legacy.example.internal:8080/orders") == (200, "legacy vm answered /orders\n")
    clean.delete("workloadentry", "legacy-vm-1")
    code, body = clean.exec(customer, "http://legacy.example.internal:8080/orders")
    assert (code, body) == (503, "no healthy upstream")


TELEMETRY = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: REQUEST_COUNT}
      tagOverrides:
        request_protocol: {operation: REMOVE}
        request_host: {value: "request.host"}
        lab: {value: "'chapter-7'"}
    - match: {metric: REQUEST_DURATION, mode: SERVER}
      disabled: true
"""


def test_telemetry_metric_overrides_reshape_the_proxy_metrics(clean: Mesh) -> None:
    clean.apply(TELEMETRY)
    assert clean.load(n=3, flags=False).summary()["codes"] == {"200": 3}
    text = clean.metrics(pod_of(clean, "preference"))
    counts = [line for line in text.splitlines() if line.startswith("istio_requests_total{")]
    assert counts and all('lab="chapter-7"' in line and "request_protocol" not in line for line in counts)
    assert any('request_host="recommendation:8080"' in line for line in counts)
    durations = [line for line in text.splitlines() if line.startswith("istio_request_duration_milliseconds_count")]
    assert durations and all('reporter="source"' in line for line in durations)  # the server side is disabled
    clean.delete("telemetry", "mesh-default", namespace="istio-system")
    clean.load(n=2, flags=False)
    text = clean.metrics(pod_of(clean, "preference"))
    assert 'reporter="destination"' in "".join(
        line for line in text.splitlines() if line.startswith("istio_request_duration_milliseconds_count")
    )


ONLY_V1 = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: recommendation}
spec:
  host: recommendation
  subsets: [{name: version-v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: recommendation}
spec:
  hosts: [recommendation]
  http: [{route: [{destination: {host: recommendation, subset: version-v1}}]}]
"""


def test_per_route_local_rate_limit_of_istios_sample(clean: Mesh) -> None:
    clean.apply(PER_ROUTE.read_text(), ONLY_V1)
    preference = pod_of(clean, "preference")
    # one recommendation pod serves: its buckets allow 4 requests a minute, and 1 for /admin paths
    assert clean.exec(preference, "http://recommendation:8080/admin")[0] == 404  # passed the limit: the app's 404
    assert clean.exec(preference, "http://recommendation:8080/admin") == (429, "local_rate_limited")
    codes = [clean.exec(preference, "http://recommendation:8080/")[0] for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    clean.delete("envoyfilter", "filter-local-ratelimit-per-route")
    assert clean.exec(preference, "http://recommendation:8080/")[0] == 200


def test_unsimulated_kinds_apply_with_a_warning_and_can_be_read_back(clean: Mesh) -> None:
    results = clean.apply("""
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: legacy}
spec:
  metadata: {labels: {app: legacy}}
  template: {serviceAccount: legacy}
""")
    assert [str(r) for r in results] == ["workloadgroup.networking.istio.io/legacy created"]
    assert [w.split(": kind: ", 1)[1] for w in clean.warnings] == [
        "WorkloadGroup is accepted and stored; the local mesh does not simulate auto-registration of VMs from a "
        "template"
    ]
    assert clean.get("workloadgroup", "legacy")[0]["spec"]["template"] == {"serviceAccount": "legacy"}
    clean.delete("wg", "legacy")
