"""The tutorial's authorization chapter on real sidecars, step by step: deny all, then allow customer,
preference and recommendation; identities come from mTLS certificates and cannot be forged by header.
"""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest

from meshkit.mesh import Mesh
from tests.security_mesh.conftest import RBAC_DENIED, destination, istiofile, records_of, spiffe

CHAIN_OK = "customer => preference => recommendation v"
STEPS = [
    ("authorization-policy-all-deny.yaml", 403, RBAC_DENIED, "customer"),
    ("authorization-policy-customer-allow.yaml", 503, f"customer => Error: 403 - {RBAC_DENIED}", "preference"),
    ("authorization-policy-preference-allow.yaml", 503,
     f"customer => Error: 503 - preference => Error: 403 - {RBAC_DENIED}", "recommendation"),
]


@pytest.fixture
def locked_down(clean: Mesh) -> Mesh:
    """The chapter's end state: deny all + allow customer, preference (from customer), recommendation."""
    clean.apply(*(istiofile(f) for f, *_ in STEPS), istiofile("authorization-policy-recommendation-allow.yaml"))
    return clean


def _denied_by(mesh: Mesh, since: float, request_id: str, app: str) -> dict[str, object]:
    rows = records_of(mesh, [request_id], since,
                      lambda rs: any(r["response_code"] == 403 for r in destination(rs, app)))[request_id]
    (rec,) = [r for r in destination(rows, app) if r["response_code"] == 403]
    return rec


def test_tutorial_chain_deny_all_then_allow_each_service(clean: Mesh) -> None:
    lines = []
    for filename, status, body, denier in STEPS:
        clean.apply(istiofile(filename))
        since = time.time() - 1
        reply = clean.load(n=1, flags=False).records[0]
        lines.append(reply["body"])
        assert (reply["code"], reply["body"]) == (status, body), filename
        # the 403 is answered by the callee's sidecar (Envoy RBAC), before its app sees the request
        rec = _denied_by(clean, since, reply["request_id"], denier)
        assert str(rec["response_code_details"]).startswith("rbac_access_denied")
        assert rec["response_flags"] == "-"  # RBAC sets no Envoy flag, only the details
    clean.apply(istiofile("authorization-policy-recommendation-allow.yaml"))
    status, body = clean.curl()
    lines.append(body)
    assert status == 200 and body.startswith(CHAIN_OK)
    print("\n" + "\n".join(lines))


def test_recommendation_identity_is_not_allowed_on_preference(locked_down: Mesh) -> None:
    assert locked_down.curl()[0] == 200
    assert locked_down.exec("recommendation-v1", "http://preference:8080/") == (403, RBAC_DENIED)
    assert locked_down.exec("customer", "http://recommendation:8080/") == (403, RBAC_DENIED)


def test_forged_identity_headers_do_not_get_in(locked_down: Mesh, curl_pod: str) -> None:
    customer = spiffe("customer")
    xfcc = f"By={spiffe('preference')};URI={customer}"
    peer_meta = base64.b64encode(json.dumps({"WORKLOAD_NAME": "customer", "NAMESPACE": "tutorial",
                                             "LABELS": {"app": "customer", "version": "v1"},
                                             "SERVICE_ACCOUNT": "customer"}).encode()).decode()
    forged = [
        {"x-forwarded-client-cert": xfcc},
        {"x-envoy-peer-metadata": peer_meta,
         "x-envoy-peer-metadata-id": "sidecar~127.0.0.1~customer-1.tutorial~tutorial.svc.cluster.local"},
        {"x-forwarded-client-cert": xfcc, "x-envoy-peer-metadata": peer_meta},
    ]
    for headers in forged:
        # plaintext from outside the mesh, claiming to be customer
        assert locked_down.exec(curl_pod, "http://preference:8080/", headers) == (403, RBAC_DENIED), headers
        # mTLS with recommendation's certificate, claiming to be customer in a header
        assert locked_down.exec("recommendation-v2", "http://preference:8080/", headers) == (403, RBAC_DENIED)
    # while the real customer, proven by its certificate, still gets through
    assert locked_down.curl()[0] == 200


def test_preference_sees_the_verified_peer_not_the_forged_header(clean: Mesh, curl_pod: str) -> None:
    """Without policies the forged XFCC is replaced by the sidecar: the record shows no principal."""
    since, rid = time.time() - 1, str(uuid.uuid4())
    headers = {"x-forwarded-client-cert": f"By={spiffe('preference')};URI={spiffe('customer')}", "x-request-id": rid}
    status, _ = clean.exec(curl_pod, "http://preference:8080/", headers)
    assert status == 200
    rows = records_of(clean, [rid], since, lambda rs: bool(destination(rs, "preference")))[rid]
    (rec,) = destination(rows, "preference")
    assert (rec["source_principal"], rec["connection_security_policy"]) == ("unknown", "none")
