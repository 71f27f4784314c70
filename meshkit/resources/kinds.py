"""The Istio resource kinds meshkit serves, and how users may name them (``vs``, ``virtualservices``...).

Example::

    >>> resolve_kind("vs").kind
    'VirtualService'
    >>> resolve_kind("destinationrule.networking.istio.io").plural
    'destinationrules'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshkit.errors import NotFound

DEFAULT_NAMESPACE = "tutorial"


@dataclass(frozen=True)
class KindInfo:
    """One served kind. ``versions`` lists served versions, the stored (normalised) one first."""

    kind: str
    group: str
    plural: str
    short_names: tuple[str, ...]
    versions: tuple[str, ...]
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """The apiVersion resources of this kind are normalised to (``networking.istio.io/v1``)."""
        return f"{self.group}/{self.versions[0]}" if self.group else self.versions[0]

    @property
    def api_versions(self) -> tuple[str, ...]:
        return tuple(f"{self.group}/{v}" if self.group else v for v in self.versions)

    @property
    def key(self) -> str:
        """How the store keys this kind: the kind, qualified by group outside Istio's groups
        (Gateway API's ``Gateway`` must not collide with Istio's)."""
        return f"{self.kind}.{self.group}" if self.group == "gateway.networking.k8s.io" else self.kind


_NET = "networking.istio.io"
_SEC = "security.istio.io"
_TEL = "telemetry.istio.io"
_GW = "gateway.networking.k8s.io"
_NET_VERSIONS = ("v1", "v1beta1", "v1alpha3")
_SEC_VERSIONS = ("v1", "v1beta1")

#: every kind meshkit validates and stores, by store key (:attr:`KindInfo.key`)
KINDS: Mapping[str, KindInfo] = {
    info.key: info
    for info in (
        KindInfo("VirtualService", _NET, "virtualservices", ("vs",), _NET_VERSIONS),
        KindInfo("DestinationRule", _NET, "destinationrules", ("dr",), _NET_VERSIONS),
        KindInfo("Gateway", _NET, "gateways", ("gw",), _NET_VERSIONS),
        KindInfo("ServiceEntry", _NET, "serviceentries", ("se",), _NET_VERSIONS),
        KindInfo("EnvoyFilter", _NET, "envoyfilters", (), ("v1alpha3",)),
        KindInfo("PeerAuthentication", _SEC, "peerauthentications", ("pa",), _SEC_VERSIONS),
        KindInfo("AuthorizationPolicy", _SEC, "authorizationpolicies", ("ap",), _SEC_VERSIONS),
        KindInfo("RequestAuthentication", _SEC, "requestauthentications", ("ra",), _SEC_VERSIONS),
        KindInfo("Telemetry", _TEL, "telemetries", ("telemetry",), ("v1", "v1alpha1")),
        KindInfo("Sidecar", _NET, "sidecars", (), _NET_VERSIONS),
        KindInfo("WorkloadEntry", _NET, "workloadentries", ("we",), _NET_VERSIONS),
        KindInfo("WorkloadGroup", _NET, "workloadgroups", ("wg",), _NET_VERSIONS),
        KindInfo("ProxyConfig", _NET, "proxyconfigs", (), ("v1beta1",)),
        KindInfo("WasmPlugin", "extensions.istio.io", "wasmplugins", (), ("v1alpha1",)),
        # Gateway API v1.5, the versions Istio 1.30 reads
        KindInfo("GatewayClass", _GW, "gatewayclasses", ("gc",), ("v1", "v1beta1"), namespaced=False),
        KindInfo("Gateway", _GW, "gateways", ("gtw",), ("v1", "v1beta1")),
        KindInfo("HTTPRoute", _GW, "httproutes", (), ("v1", "v1beta1")),
        KindInfo("GRPCRoute", _GW, "grpcroutes", (), ("v1",)),
        KindInfo("ReferenceGrant", _GW, "referencegrants", ("refgrant",), ("v1beta1", "v1")),
        KindInfo("TCPRoute", _GW, "tcproutes", (), ("v1alpha2",)),
        KindInfo("TLSRoute", _GW, "tlsroutes", (), ("v1",)),  # v1alpha2 is experimental-only since v1.5
    )
}


def lookup(api_version: str, kind: str) -> KindInfo | None:
    """The served kind for an ``apiVersion``/``kind`` pair (the group tells Istio's Gateway from Gateway API's)."""
    group = api_version.rpartition("/")[0]
    for info in KINDS.values():
        if info.kind == kind and (info.group == group or not group):
            return info
    for info in KINDS.values():
        if info.kind == kind:
            return info
    return None


def key_kind(resource: Mapping[str, Any]) -> str:
    """The store's kind key of a resource dict (see :attr:`KindInfo.key`)."""
    kind = str(resource.get("kind", ""))
    info = lookup(str(resource.get("apiVersion", "")), kind)
    return info.key if info is not None else kind


def _names(info: KindInfo) -> set[str]:
    return {info.kind.lower(), info.plural, *info.short_names}


def resolve_kind(name: str) -> KindInfo:
    """Find a kind by kind name, plural, short name, or ``<any of those>.<group>`` (case-insensitive).

    Raises :class:`meshkit.errors.NotFound` listing the valid names when nothing matches.
    """
    from meshkit.resources.kubernetes import KUBE_KINDS, POD_KIND  # the module imports KindInfo from here

    wanted = name.strip().lower()
    base, _, group = wanted.partition(".")
    every = [*KINDS.values(), *KUBE_KINDS.values(), POD_KIND]
    for info in every:
        if base in _names(info) and (not group or group == info.group):
            return info
    valid = ", ".join(f"{i.plural} ({', '.join(i.short_names)})" if i.short_names else i.plural for i in every)
    raise NotFound(f'unknown resource type "{name}"; valid types: {valid}')


def canonical_key(resource: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(kind, namespace, name)`` of a resource dict; namespace defaults to ``tutorial``."""
    meta = resource.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return (
        key_kind(resource),
        str(meta.get("namespace") or DEFAULT_NAMESPACE),
        str(meta.get("name", "")),
    )
