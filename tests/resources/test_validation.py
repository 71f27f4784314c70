"""The envelope (apiVersion, kind, metadata), located messages, and all-or-nothing reports."""

from __future__ import annotations

import pytest

from meshkit.errors import InvalidConfig
from meshkit.resources import Problem, parse_text, validate_documents
from tests.resources.helpers import errors, validate

CANARY = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: recommendation
spec:
  host: recommendation
  subsets:
  - name: version-v1
    labels: {version: v1}
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: recommendation
  namespace: tutorial
spec:
  hosts:
  - recommendation
  http:
  - route:
    - destination:
        host: recommendation
        subset: version-v1
      weight: 105
    - destination:
        host: recommendation
        subset: version-v2
      weight: -5
    timeout: 10
    retries:
      attempts: 3
      retryOn: 5xx,sometimes
"""


def test_every_problem_of_a_file_is_reported_and_located_exactly() -> None:
    report = validate_documents(parse_text(CANARY, "canary.yaml"))
    assert [p.format() for p in report.errors] == [
        "error: canary.yaml, document 2 (line 28): VirtualService tutorial/recommendation: "
        "spec.http[0].route[1].weight: weight -5 < 0",
        "error: canary.yaml, document 2 (line 29): VirtualService tutorial/recommendation: "
        'spec.http[0].timeout: expected duration string (e.g. "1s", "500ms"), got integer 10',
        "error: canary.yaml, document 2 (line 32): VirtualService tutorial/recommendation: "
        'spec.http[0].retries.retryOn: "sometimes" is not a valid retryOn policy',
    ]
    assert report.resources == [] and report.origins == {}
    with pytest.raises(InvalidConfig) as err:
        report.raise_for_errors()
    assert err.value.problems == [p.format() for p in report.errors]
    assert str(err.value).count("\n") == 2


def test_problem_fields() -> None:
    problem = validate_documents(parse_text(CANARY, "canary.yaml")).errors[0]
    assert problem == Problem(
        "Error",
        "IST0106",
        "weight -5 < 0",
        source="canary.yaml",
        index=1,
        kind="VirtualService",
        namespace="tutorial",
        name="recommendation",
        field="spec.http[0].route[1].weight",
        line=28,
    )
    assert (
        problem.analyze_line()
        == "Error [IST0106] (VirtualService tutorial/recommendation canary.yaml:28) weight -5 < 0"
    )


def test_stdin_and_unlocated_problems_format() -> None:
    assert Problem("Warning", "IST0103", "m").format() == "warning: m"
    assert Problem("Info", "X", "m", source="-", index=0, line=3).format() == "info: <stdin>, document 1 (line 3): m"
    assert Problem("Error", "IST0101", "m", kind="VirtualService", namespace="ns", name="n").analyze_line() == (
        "Error [IST0101] (VirtualService ns/n) m"
    )


def test_a_valid_batch_is_normalised_and_remembers_origins() -> None:
    text = CANARY.split("---")[0]
    report = validate_documents(parse_text(text, "dr.yaml"))
    assert report.ok and len(report.resources) == 1
    origin = report.origins[("DestinationRule", "tutorial", "recommendation")]
    assert (origin.source, origin.index, origin.line, origin.line_of(("spec", "subsets", 0))) == ("dr.yaml", 0, 1, 8)
    report.raise_for_errors()  # no errors: nothing raised


def test_one_bad_document_means_nothing_is_returned() -> None:
    text = CANARY.split("---")[0] + "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\n"
    report = validate_documents(parse_text(text))
    assert report.resources == [] and len(report.errors) == 1


def test_unknown_kind_and_version() -> None:
    assert errors("apiVersion: networking.istio.io/v1\nkind: VirtualServce\nmetadata: {name: a}\n") == [
        (
            "kind",
            'kind "VirtualServce" (networking.istio.io/v1) is not an Istio resource meshkit can apply; '
            "supported kinds: VirtualService, DestinationRule, Gateway, ServiceEntry, EnvoyFilter, PeerAuthentication, "
            "AuthorizationPolicy, RequestAuthentication, Telemetry, Sidecar, WorkloadEntry, WorkloadGroup, "
            "ProxyConfig, "
            "WasmPlugin",
        )
    ]
    assert errors("apiVersion: networking.istio.io/v1\nkind: virtualservice\nmetadata: {name: a}\n") == [
        ("kind", 'unknown kind "virtualservice": did you mean "VirtualService"? (kinds are case-sensitive)')
    ]
    assert errors("apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: a}\n") == [
        (
            "apiVersion",
            'no matches for kind "VirtualService" in version "networking.istio.io/v2": served versions are '
            "networking.istio.io/v1, networking.istio.io/v1beta1, networking.istio.io/v1alpha3",
        )
    ]
    assert errors("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: a}\n") == [
        ("spec", "sidecar: empty configuration provided")
    ]
    assert errors("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: a}\n")[0][1].startswith(
        'kind "Widget" (example.com/v1) is not an Istio resource meshkit can apply'
    )
    # Kubernetes' own kinds are the API server's: a ConfigMap is accepted, a removed version is not
    assert errors("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n") == []
    assert errors("apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: a}\n")[0][1].startswith(
        'no matches for kind "Deployment" in version "extensions/v1beta1"'
    )


def test_missing_or_mistyped_envelope() -> None:
    assert errors("kind: VirtualService\nmetadata: {name: a}\n") == [
        ("apiVersion", 'required field "apiVersion" is missing')
    ]
    assert errors("apiVersion: networking.istio.io/v1\nmetadata: {name: a}\n") == [
        ("kind", 'required field "kind" is missing')
    ]
    assert errors("apiVersion: 1\nkind: VirtualService\n") == [("apiVersion", "expected string, got integer 1")]
    assert errors("- just\n- a list\n") == [
        ("", "a resource must be a mapping with apiVersion, kind, metadata and spec; got list")
    ]


def test_metadata_rules() -> None:
    head = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nspec: {host: r}\n"
    assert errors(head) == [("metadata", 'required field "metadata" is missing')]
    assert errors(head + "metadata: {namespace: tutorial}\n") == [("metadata.name", 'required field "name" is missing')]
    got = errors(head + "metadata: {name: Recommendation_V1}\n")
    assert got[0][0] == "metadata.name"
    assert got[0][1].startswith('invalid name "Recommendation_V1": a lowercase RFC 1123 subdomain must consist of')
    assert errors(head + "metadata: {name: r, namespace: Tutorial}\n")[0][1].startswith('invalid namespace "Tutorial"')
    assert errors(head + "metadata: {name: r, labels: {version: 2}}\n") == [
        ("metadata.labels.version", "expected string, got integer 2")
    ]
    assert errors(head + "metadata: {name: r, owner: me}\n") == [("metadata.owner", 'unknown field "owner"')]
    assert errors(head + "metadata: {name: r}\nextra: 1\n") == [("extra", 'unknown field "extra"')]


def test_status_and_server_metadata_are_accepted_and_dropped() -> None:
    text = (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r, uid: abc, generation: 3}\n"
        "spec: {host: r}\nstatus: {observedGeneration: 3}\n"
    )
    report = validate(text)
    assert report.errors == []
    assert set(report.resources[0]) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(report.resources[0]["metadata"]) == {"name", "namespace", "labels", "annotations"}


def test_same_resource_twice_warns_and_keeps_the_last() -> None:
    one = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: %s}\n"
    report = validate(one % "a" + "---\n" + one % "b", source="two.yaml")
    assert [r["spec"]["host"] for r in report.resources] == ["b"]
    assert [w.format() for w in report.warnings] == [
        "warning: two.yaml, document 2 (line 6): DestinationRule tutorial/r: defined more than once "
        "(also two.yaml, document 1); the last definition wins"
    ]


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(InvalidConfig, match=r'unknown profile "1\.9"'):
        validate("kind: X\n", profile="1.9")
    assert validate(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: r}\n",
        profile="tutorial-1.9",
    ).ok


def test_null_spec_is_an_empty_spec() -> None:
    assert (
        errors("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-all}\nspec:\n") == []
    )
    assert errors("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\n") == [
        ("spec.host", 'required field "host" is missing')
    ]
