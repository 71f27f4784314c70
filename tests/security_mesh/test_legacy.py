"""The book's security objects (Istio 1.0 era) applied to a real mesh: refused, with today's resource
named in the message, and nothing stored or pushed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from meshkit.errors import InvalidConfig
from meshkit.mesh import Mesh
from tests.security_mesh.conftest import cli, istiofile

POLICY = """\
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: default, namespace: tutorial}
spec:
  peers:
  - mtls: {}
  origins:
  - jwt:
      issuer: testing@secure.istio.io
      jwksUri: https://raw.githubusercontent.com/istio/istio/release-1.1/security/tools/jwt/samples/jwks.json
  principalBinding: USE_ORIGIN
"""
MEMQUOTA = """\
apiVersion: config.istio.io/v1alpha2
kind: memquota
metadata: {name: handler, namespace: istio-system}
spec:
  quotas:
  - name: requestcount.quota.istio-system
    maxAmount: 1
    validDuration: 1s
"""
QUOTA_HANDLER = """\
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: quotahandler, namespace: istio-system}
spec:
  compiledAdapter: memquota
  params:
    quotas:
    - {name: requestcountquota.instance.istio-system, maxAmount: 1, validDuration: 1s}
"""
SERVICE_ROLE = """\
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: service-viewer, namespace: tutorial}
spec:
  rules:
  - services: ["*"]
    methods: ["GET"]
    constraints:
    - key: destination.labels[app]
      values: [customer, preference, recommendation]
"""


@pytest.mark.parametrize(
    ("text", "removed", "replacement"),
    [
        (POLICY, "Policy (authentication.istio.io/v1alpha1)",
         ["PeerAuthentication", "RequestAuthentication"]),
        (MEMQUOTA, "memquota (config.istio.io/v1alpha2)",
         ["Envoy's local rate limit (an EnvoyFilter)", "kind: EnvoyFilter", "envoy.filters.http.local_ratelimit"]),
        (SERVICE_ROLE, "ServiceRole (rbac.istio.io/v1alpha1)", ["kind: AuthorizationPolicy"]),
    ],
    ids=["authentication-Policy", "mixer-memquota", "rbac-ServiceRole"],
)
def test_legacy_security_kinds_name_their_replacement_and_apply_nothing(
    clean: Mesh, text: str, removed: str, replacement: list[str]
) -> None:
    before, version = clean.get(), clean.backend.status()["version"]  # type: ignore[attr-defined]
    with pytest.raises(InvalidConfig) as err:
        clean.apply(text)
    (problem,) = err.value.problems
    assert problem.startswith("error: <text>, document 1 (line 2): ")
    assert f"{removed} was removed from Istio" in problem
    for word in replacement:
        assert word in problem
    assert "Equivalent today:\n" in problem
    assert clean.get() == before
    assert clean.backend.status()["version"] == version  # type: ignore[attr-defined]


def test_mixer_quota_handler_points_to_local_rate_limit(clean: Mesh) -> None:
    """Istio 1.1+ wrote the quota as a ``handler`` with ``compiledAdapter: memquota``: still a quota."""
    before = clean.get()
    with pytest.raises(InvalidConfig) as err:
        clean.apply(QUOTA_HANDLER)
    (problem,) = err.value.problems
    assert "handler (config.istio.io/v1alpha2) was removed from Istio (1.8, Mixer)" in problem
    assert "use Envoy's local rate limit (an EnvoyFilter) for quotas and rate limits instead" in problem
    assert "max_tokens: 1" in problem and "fill_interval: 1s" in problem  # the handler's own quota
    assert clean.get() == before


def test_a_legacy_object_in_a_batch_applies_nothing_of_the_batch(clean: Mesh, tmp_path: Path) -> None:
    strict = Path(istiofile("peer-authentication-all-strict.yaml")).read_text()
    batch = tmp_path / "security.yaml"
    batch.write_text(f"{strict}\n---\n{SERVICE_ROLE}")
    out = cli(clean, "apply", "-f", str(batch))
    assert out.returncode == 1 and out.stdout == ""
    assert "ServiceRole (rbac.istio.io/v1alpha1) was removed from Istio" in out.stderr
    assert "Traceback" not in out.stderr
    assert clean.get("PeerAuthentication") == []
