"""Retries on the current profile: explicit ``retryOn: 5xx`` hides a misbehaving pod; Istio's
default policy no longer retries an application's 503 (Istio >= 1.24); exhausted retries (URX)
and a pool with every host ejected (UH) show their flags.
"""

from __future__ import annotations

import pytest

from meshkit import Mesh
from tests.resiliency.support import (
    NO_HEALTHY_LINE,
    apply,
    destination_rule,
    load,
    misbehavior_line,
    pods_of,
    requests_seen_by,
    summary_line,
    to,
    virtual_service,
)


def test_retry_on_5xx_hides_every_error_of_a_misbehaving_pod(mesh: Mesh) -> None:
    (v2,) = pods_of(mesh, "recommendation-v2")
    mesh.misbehave(v2)
    apply(mesh, virtual_service({"route": [to()], "retries": {"attempts": 3, "retryOn": "5xx"}}))
    before = requests_seen_by(mesh, v2)
    result = load(mesh, n=100, concurrency=4)
    summary = result.summary()
    assert summary["codes"] == {"200": 100}, summary
    assert summary["versions"] == {"v1": 100} and summary["flags"] == {"-": 100}
    hits = requests_seen_by(mesh, v2) - before
    assert hits >= 10  # v2 keeps being tried (and failing): users just do not see it
    summary_line("retry 5xx", requests=100, ok=100, v2_failed_attempts=hits)


@pytest.mark.parametrize("rules", ["none", "virtual service without retries"])
def test_current_profile_default_policy_does_not_retry_a_503(mesh: Mesh, rules: str) -> None:
    (v2,) = pods_of(mesh, "recommendation-v2")
    mesh.misbehave(v2)
    if rules != "none":
        apply(mesh, virtual_service({"route": [to()]}))
    before = requests_seen_by(mesh, v2)
    result = load(mesh, n=100, concurrency=2)
    summary = result.summary()
    errors = [r for r in result.records if r["code"] != 200]
    assert 20 <= len(errors) <= 80, summary  # LEAST_REQUEST sends about half to v2
    assert len(errors) == requests_seen_by(mesh, v2) - before  # each v2 call failed once, unretried
    assert {r["body"] for r in errors} == {misbehavior_line(v2)}
    assert {r["flags"] for r in errors} == {"-"}  # the 503 came from the app, not from a proxy
    summary_line(f"current default retry ({rules})", requests=100, errors_503=len(errors),
                 v1=summary["versions"].get("v1"))


def test_exhausted_retries_are_flagged_urx(mesh: Mesh) -> None:
    (v2,) = pods_of(mesh, "recommendation-v2")
    mesh.misbehave(v2)
    apply(mesh, destination_rule(),
          virtual_service({"route": [to("version-v2")], "retries": {"attempts": 2, "retryOn": "5xx"}}))
    before = requests_seen_by(mesh, v2)
    result = load(mesh, n=10, concurrency=1)
    summary = result.summary()
    assert summary["codes"] == {"503": 10} and summary["flags"] == {"URX": 10}, summary
    assert {r["body"] for r in result.records} == {misbehavior_line(v2)}
    assert requests_seen_by(mesh, v2) - before == 30  # one try and two retries each
    summary_line("URX", requests=10, flags=summary["flags"], v2_attempts=30)


def test_every_host_ejected_answers_no_healthy_upstream(mesh: Mesh) -> None:
    (v2,) = pods_of(mesh, "recommendation-v2")
    mesh.misbehave(v2)
    outlier = {"outlierDetection": {"consecutive5xxErrors": 1, "interval": "10s", "baseEjectionTime": "30s",
                                    "maxEjectionPercent": 100}}
    apply(mesh, destination_rule(v2_policy=outlier),
          virtual_service({"route": [to("version-v2")], "retries": {"attempts": 0}}))
    before = requests_seen_by(mesh, v2)
    result = load(mesh, n=10, concurrency=1)
    bodies = [r["body"] for r in result.records]
    assert bodies[0] == misbehavior_line(v2)
    assert set(bodies[1:]) == {NO_HEALTHY_LINE}
    assert result.summary()["flags"] == {"-": 1, "UH": 9}
    assert requests_seen_by(mesh, v2) - before == 1
    summary_line("UH", requests=10, flags=result.summary()["flags"])
