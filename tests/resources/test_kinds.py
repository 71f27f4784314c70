"""Kind names, short names and canonical keys."""

from __future__ import annotations

import pytest

from meshkit.errors import NotFound
from meshkit.resources import KINDS, canonical_key, resolve_kind


@pytest.mark.parametrize(
    "name",
    ["vs", "virtualservice", "VirtualService", "virtualservices", "virtualservice.networking.istio.io", " VS "],
)
def test_resolve_virtual_service_names(name: str) -> None:
    info = resolve_kind(name)
    assert (info.kind, info.group, info.plural) == ("VirtualService", "networking.istio.io", "virtualservices")
    assert info.api_version == "networking.istio.io/v1"
    assert info.api_versions == (
        "networking.istio.io/v1",
        "networking.istio.io/v1beta1",
        "networking.istio.io/v1alpha3",
    )


def test_resolve_other_kinds() -> None:
    assert resolve_kind("destinationrule.networking.istio.io").kind == "DestinationRule"
    assert resolve_kind("ap").kind == "AuthorizationPolicy"
    assert resolve_kind("envoyfilters").api_version == "networking.istio.io/v1alpha3"
    assert resolve_kind("telemetry").api_version == "telemetry.istio.io/v1"
    assert set(KINDS) >= {"Gateway", "ServiceEntry", "PeerAuthentication", "RequestAuthentication"}


def test_unknown_kind_lists_valid_names() -> None:
    with pytest.raises(NotFound) as err:
        resolve_kind("routerule")
    assert 'unknown resource type "routerule"' in str(err.value)
    assert "virtualservices (vs)" in str(err.value) and "envoyfilters" in str(err.value)


def test_wrong_group_is_not_found() -> None:
    with pytest.raises(NotFound):
        resolve_kind("virtualservice.security.istio.io")


def test_canonical_key_defaults_namespace() -> None:
    assert canonical_key({"kind": "VirtualService", "metadata": {"name": "r"}}) == ("VirtualService", "tutorial", "r")
    assert canonical_key({"kind": "Gateway", "metadata": {"name": "g", "namespace": "istio-system"}}) == (
        "Gateway",
        "istio-system",
        "g",
    )
