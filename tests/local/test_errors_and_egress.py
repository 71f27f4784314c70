"""Envoy's answers when routing cannot succeed (NC, UH, NR), egress under REGISTRY_ONLY, ServiceEntry."""

from __future__ import annotations

import time

from meshkit.mesh import Mesh

DR_V1_V2_V3 = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: recommendation}
spec:
  host: recommendation
  subsets:
  - {name: version-v1, labels: {version: v1}}
  - {name: version-v2, labels: {version: v2}}
  - {name: version-v3, labels: {version: v3}}
"""


def vs_subset(subset: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: recommendation}}
spec:
  hosts: [recommendation]
  http:
  - route:
    - destination: {{host: recommendation, subset: {subset}}}
"""


ONLY_FIREFOX = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: recommendation}
spec:
  hosts: [recommendation]
  http:
  - match:
    - headers:
        baggage-user-agent: {regex: ".*Firefox.*"}
    route:
    - destination: {host: recommendation}
"""

SERVICE_ENTRY = """
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: worldclockapi-egress-rule
spec:
  hosts:
  - worldtimeapi.org
  ports:
  - name: http-80
    number: 80
    protocol: http
"""


def test_undefined_subset_is_503_nc(clean: Mesh) -> None:
    clean.apply(vs_subset("version-v3"))  # no DestinationRule defines it
    result = clean.load(n=5)
    assert {r["code"] for r in result.records} == {503}
    assert result.records[0]["body"] == "customer => Error: 503 - preference => Error: 503 -"
    assert result.summary()["flags"] == {"NC": 5}


def test_subset_without_pods_is_503_uh(clean: Mesh) -> None:
    clean.apply(DR_V1_V2_V3, vs_subset("version-v3"))
    result = clean.load(n=5)
    assert result.records[0]["body"] == "customer => Error: 503 - preference => Error: 503 - no healthy upstream"
    assert result.summary()["flags"] == {"UH": 5}


def test_no_matching_rule_is_404_nr(clean: Mesh) -> None:
    clean.apply(ONLY_FIREFOX)
    result = clean.load(n=4, headers={"user-agent": "curl/8"})
    assert result.records[0]["body"] == "customer => Error: 503 - preference => Error: 404 -"
    assert result.summary()["flags"] == {"NR": 4}
    ok = clean.load(n=4, headers={"user-agent": "Firefox/120"})
    assert ok.summary()["codes"] == {"200": 4}


def test_gateway_404_for_unknown_path(clean: Mesh) -> None:
    code, body = clean.curl("/nothing-here")
    assert (code, body) == (404, "")


def test_egress_blocked_then_opened_by_service_entry(clean: Mesh) -> None:
    clean.deploy("recommendation", "v3")
    try:
        clean.apply(DR_V1_V2_V3, vs_subset("version-v3"))
        code, body = clean.curl()
        assert code == 503
        assert body == (
            "customer => Error: 503 - preference => Error: 500 - "
            "<html><head><title>Error</title></head><body>Internal Server Error</body></html>"
        )
        time.sleep(0.5)  # proxies ship their records to the collector every 0.2 s
        blocked = [r for r in clean.request_log() if r["route_name"] == "block_all"]
        assert blocked and blocked[-1]["response_code"] == 502
        assert blocked[-1]["destination_service_name"] == "BlackHoleCluster"
        clean.apply(SERVICE_ENTRY)
        code, body = clean.curl()
        assert code == 200
        assert body.startswith("customer => preference => recommendation v3 20")
        assert "from 'recommendation-v3-" in body
    finally:
        clean.undeploy("recommendation-v3")


def test_misbehaving_pod_error_chain(clean: Mesh) -> None:
    clean.apply(DR_V1_V2_V3, vs_subset("version-v2"))
    pods = clean.misbehave("recommendation-v2")
    code, body = clean.curl()
    assert code == 503
    assert body == f"customer => Error: 503 - preference => Error: 503 - recommendation misbehavior from '{pods[0]}'"
