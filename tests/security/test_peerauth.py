"""PeerAuthentication composition (mesh > namespace > workload, oldest wins, UNSET inherits) and auto mTLS."""

from __future__ import annotations

from typing import Any

import pytest

from meshkit.backends.local.peerauth import (
    client_tls_mode,
    compose_peer_authentication,
    effective_mtls_mode,
)
from meshkit.errors import InvalidConfig

CUSTOMER = {"app": "customer", "version": "v1"}


def pa(
    name: str,
    namespace: str,
    mode: str | None = None,
    selector: dict[str, str] | None = None,
    ports: dict[Any, str | None] | None = None,
    created: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if mode is not None:
        spec["mtls"] = {"mode": mode}
    if selector is not None:
        spec["selector"] = {"matchLabels": selector}
    if ports is not None:
        spec["portLevelMtls"] = {p: ({"mode": m} if m else {}) for p, m in ports.items()}
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if created:
        meta["creationTimestamp"] = created
    return {
        "apiVersion": "security.istio.io/v1beta1",
        "kind": "PeerAuthentication",
        "metadata": meta,
        "spec": spec,
    }


MESH_STRICT = pa("default", "istio-system", "STRICT")
NS_DISABLE = pa("default", "tutorial", "DISABLE")
NS_UNSET = pa("default", "tutorial", "UNSET")
WL_PERMISSIVE = pa("customer", "tutorial", "PERMISSIVE", selector={"app": "customer"})
WL_UNSET_PORTS = pa("customer", "tutorial", None, selector={"app": "customer"}, ports={8080: "DISABLE", 9000: None})
OTHER_NS_STRICT = pa("default", "other", "STRICT")
OTHER_WL_STRICT = pa("x", "tutorial", "STRICT", selector={"app": "preference"})
ROOT_SELECTOR_DISABLE = pa("root-wl", "istio-system", "DISABLE", selector={"app": "customer"})


@pytest.mark.parametrize(
    ("resources", "port", "expected"),
    [
        ([], 8080, "PERMISSIVE"),  # root default
        ([MESH_STRICT], 8080, "STRICT"),
        ([MESH_STRICT, NS_DISABLE], 8080, "DISABLE"),  # namespace beats mesh
        ([MESH_STRICT, NS_UNSET], 8080, "STRICT"),  # UNSET inherits from the mesh
        ([MESH_STRICT, NS_DISABLE, WL_PERMISSIVE], 8080, "PERMISSIVE"),  # workload beats namespace
        ([MESH_STRICT, WL_UNSET_PORTS], 8080, "DISABLE"),  # port level beats workload
        ([MESH_STRICT, WL_UNSET_PORTS], 9000, "STRICT"),  # UNSET port inherits the workload's (mesh) mode
        ([MESH_STRICT, WL_UNSET_PORTS], 9090, "STRICT"),  # port not listed
        ([NS_DISABLE, WL_UNSET_PORTS], 9000, "DISABLE"),
        ([OTHER_NS_STRICT], 8080, "PERMISSIVE"),  # another namespace's policy does not apply
        ([OTHER_WL_STRICT], 8080, "PERMISSIVE"),  # selector does not match the pod labels
        (
            [ROOT_SELECTOR_DISABLE, MESH_STRICT],
            8080,
            "STRICT",
        ),  # selector policies in the root ns are ignored
    ],
)
def test_precedence_table(resources: list[dict[str, Any]], port: int, expected: str) -> None:
    assert effective_mtls_mode(resources, "tutorial", CUSTOMER, port) == expected


def test_oldest_policy_of_a_level_wins() -> None:
    newer = pa("b-newer", "tutorial", "STRICT", created="2024-05-02T10:00:00Z")
    older = pa("z-older", "tutorial", "DISABLE", created="2024-05-01T10:00:00Z")
    assert effective_mtls_mode([newer, older], "tutorial", CUSTOMER, 8080) == "DISABLE"
    wl_new = pa("a", "tutorial", "STRICT", selector={"app": "customer"}, created="2024-05-02T00:00:00+00:00")
    wl_old = pa("b", "tutorial", "DISABLE", selector={"version": "v1"}, created="2024-05-01T23:00:00-02:00")
    # 23:00 at -02:00 is 01:00 UTC on May 2nd: younger than midnight UTC, so "a" is the oldest
    assert effective_mtls_mode([wl_old, wl_new], "tutorial", CUSTOMER, 8080) == "STRICT"


def test_without_timestamps_name_order_decides() -> None:
    resources = [pa("beta", "tutorial", "STRICT"), pa("alpha", "tutorial", "DISABLE")]
    assert effective_mtls_mode(resources, "tutorial", CUSTOMER, 8080) == "DISABLE"
    dated = pa("zeta", "tutorial", "STRICT", created="2020-01-01T00:00:00Z")
    assert effective_mtls_mode([*resources, dated], "tutorial", CUSTOMER, 8080) == "STRICT"


def test_empty_match_labels_is_namespace_wide() -> None:
    empty_selector = pa("default", "tutorial", "STRICT", selector={})
    assert effective_mtls_mode([empty_selector], "tutorial", {"app": "anything"}, 8080) == "STRICT"


def test_workloads_in_the_root_namespace_get_the_mesh_policy() -> None:
    assert effective_mtls_mode([MESH_STRICT], "istio-system", {"istio": "ingressgateway"}, 8080) == "STRICT"


def test_merged_policy_explains_its_sources() -> None:
    merged = compose_peer_authentication([MESH_STRICT, NS_UNSET, WL_UNSET_PORTS], "tutorial", CUSTOMER)
    assert merged.mode == "STRICT"
    assert dict(merged.per_port) == {8080: "DISABLE", 9000: "STRICT"}
    assert merged.sources == ("PeerAuthentication istio-system/default",)


def test_other_kinds_are_skipped() -> None:
    dr = {"kind": "DestinationRule", "metadata": {"name": "x", "namespace": "tutorial"}, "spec": {}}
    assert effective_mtls_mode([dr], "tutorial", CUSTOMER, 8080) == "PERMISSIVE"


@pytest.mark.parametrize(
    ("resource", "fragment"),
    [
        (pa("bad", "tutorial", "STRICTEST"), "PeerAuthentication tutorial/bad: mtls mode 'STRICTEST'"),
        (pa("p", "tutorial", None, selector={"app": "customer"}, ports={"http": "STRICT"}), "key 'http'"),
        (pa("p", "tutorial", None, selector={"app": "customer"}, ports={70000: "STRICT"}), "out of range"),
    ],
)
def test_bad_resources_are_located_errors(resource: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidConfig) as err:
        effective_mtls_mode([resource], "tutorial", CUSTOMER, 8080)
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("dr_mode", "sidecar", "server_mode", "expected"),
    [
        (None, True, "PERMISSIVE", "ISTIO_MUTUAL"),  # auto mTLS
        (None, True, "STRICT", "ISTIO_MUTUAL"),
        (None, True, "DISABLE", "DISABLE"),
        (None, False, "PERMISSIVE", "DISABLE"),  # no sidecar on the server: plaintext
        (None, False, "STRICT", "DISABLE"),
        ("", True, "PERMISSIVE", "ISTIO_MUTUAL"),
        ("DISABLE", True, "STRICT", "DISABLE"),  # DR wins; the STRICT server will reset it
        ("ISTIO_MUTUAL", False, "PERMISSIVE", "ISTIO_MUTUAL"),
        ("istio_mutual", True, "DISABLE", "ISTIO_MUTUAL"),
        ("SIMPLE", False, "PERMISSIVE", "SIMPLE"),
        ("MUTUAL", False, "PERMISSIVE", "MUTUAL"),
    ],
)
def test_client_tls_mode(dr_mode: str | None, sidecar: bool, server_mode: str, expected: str) -> None:
    assert client_tls_mode(dr_mode, sidecar, server_mode) == expected


def test_client_tls_mode_rejects_unknown_modes() -> None:
    with pytest.raises(InvalidConfig, match=r"tls\.mode 'TLS13'"):
        client_tls_mode("TLS13", True, "STRICT")
    with pytest.raises(InvalidConfig, match="server mtls mode"):
        client_tls_mode(None, True, "OPEN")
