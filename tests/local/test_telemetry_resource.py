"""The Telemetry resource: trace sampling and access logging switched from the mesh's config."""

from __future__ import annotations

import time

from meshkit.mesh import Mesh

OFF = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - providers: [{name: jaeger}]
    randomSamplingPercentage: 0
  accessLogging:
  - disabled: true
"""


def test_sampling_and_access_logs_follow_the_telemetry_resource(clean: Mesh) -> None:
    customer = next(p.name for p in clean.pods() if p.app == "customer")
    clean.load(n=5, flags=False)
    time.sleep(0.5)  # records ship every 0.2 s
    lines_before = len(clean.backend.access_log(customer))  # type: ignore[attr-defined]
    assert lines_before >= 10  # inbound and outbound lines of the first requests
    clean.apply(OFF)
    since = time.time()
    result = clean.load(n=10, flags=False)
    assert result.summary()["codes"] == {"200": 10}
    time.sleep(0.5)
    assert len(clean.backend.access_log(customer)) == lines_before  # type: ignore[attr-defined]
    rows = [r for r in clean.request_log(since) if r["request_id"] in {x["request_id"] for x in result.records}]
    assert rows and not any(r["sampled"] for r in rows)  # metrics and records go on; no span is sampled
    clean.delete("telemetry", "mesh-default")
