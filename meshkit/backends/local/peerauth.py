"""PeerAuthentication: which mTLS mode a workload's inbound port enforces, and auto mTLS on the client.

Istio's composition rules (ISTIO ``pilot/pkg/security/authn/policy_applier.go``
``ComposePeerAuthentication``):

* mesh level = a policy in the root namespace (``istio-system``) without a selector (an empty
  ``matchLabels`` counts as none); namespace level = a policy without a selector in the workload's
  namespace; workload level = a policy in the workload's namespace whose ``selector.matchLabels``
  are all among the pod labels. A policy with a selector in the root namespace is ignored.
* Among several at one level the oldest wins (``metadata.creationTimestamp``; ties and missing
  timestamps fall back to name order).
* ``UNSET`` (or no ``mtls``) inherits from the level above; the root default is ``PERMISSIVE``.
  ``portLevelMtls`` is read from the workload-level policy only, and an UNSET port inherits the
  workload's resolved mode.

Example:
    >>> pa = {"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
    ...       "metadata": {"name": "default", "namespace": "tutorial"},
    ...       "spec": {"mtls": {"mode": "STRICT"}}}
    >>> effective_mtls_mode([pa], "tutorial", {"app": "customer"}, 8080)
    'STRICT'
    >>> client_tls_mode(None, server_has_sidecar=True, server_mode="PERMISSIVE")
    'ISTIO_MUTUAL'
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshkit.errors import InvalidConfig

ROOT_NAMESPACE = "istio-system"
MODES = ("UNSET", "DISABLE", "PERMISSIVE", "STRICT")
DR_TLS_MODES = ("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL")
DEFAULT_MODE = "PERMISSIVE"


def _where(res: Mapping[str, Any]) -> str:
    meta = res.get("metadata") or {}
    return f"{res.get('kind', 'PeerAuthentication')} {meta.get('namespace', '?')}/{meta.get('name', '?')}"


def _mode(value: Any, where: str) -> str:
    mode = "UNSET" if value is None else str(value).upper()
    if mode not in MODES:
        raise InvalidConfig([f"{where}: mtls mode {value!r} is not one of {', '.join(MODES)}"])
    return mode


def creation_order(res: Mapping[str, Any]) -> tuple[float, str]:
    """Sort key "oldest first": ``metadata.creationTimestamp`` (ISO 8601), then name.

    A missing or unreadable timestamp sorts after every dated resource.
    """
    meta = res.get("metadata") or {}
    stamp = meta.get("creationTimestamp")
    when = math.inf
    if isinstance(stamp, dt.datetime):
        when = (stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)).timestamp()
    elif isinstance(stamp, str) and stamp:
        try:
            parsed = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            when = (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).timestamp()
        except ValueError:
            pass
    return (when, str(meta.get("name", "")))


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """``selector.matchLabels`` ⊆ ``labels`` (an absent or empty selector matches everything)."""
    match = (selector or {}).get("matchLabels") or {}
    return all(labels.get(k) == str(v) for k, v in match.items())


def _has_selector(spec: Mapping[str, Any]) -> bool:
    return bool((spec.get("selector") or {}).get("matchLabels"))


@dataclass(frozen=True)
class MergedPeerAuthentication:
    """The composed policy for one workload: a mode plus per-port overrides, and where each came from.

    >>> merged = compose_peer_authentication([pa], "tutorial", {"app": "customer"})  # doctest: +SKIP
    >>> merged.mode_for(8080)                                                        # doctest: +SKIP
    'STRICT'
    """

    mode: str = DEFAULT_MODE
    per_port: Mapping[int, str] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    def mode_for(self, port: int) -> str:
        return self.per_port.get(int(port), self.mode)


def compose_peer_authentication(
    resources: Iterable[Mapping[str, Any]],
    namespace: str,
    labels: Mapping[str, str],
    root_namespace: str = ROOT_NAMESPACE,
) -> MergedPeerAuthentication:
    """Compose the PeerAuthentications that apply to one workload (compile once per config push)."""
    mesh: list[Mapping[str, Any]] = []
    ns_level: list[Mapping[str, Any]] = []
    workload: list[Mapping[str, Any]] = []
    for res in resources:
        if res.get("kind") != "PeerAuthentication":
            continue
        meta = res.get("metadata") or {}
        spec = res.get("spec") or {}
        res_ns = meta.get("namespace", "default")
        if not _has_selector(spec):
            if res_ns == root_namespace:
                mesh.append(res)
            elif res_ns == namespace:
                ns_level.append(res)
        elif res_ns == namespace != root_namespace and selector_matches(spec.get("selector"), labels):
            workload.append(res)

    mode, sources = DEFAULT_MODE, []
    for level in (mesh, ns_level):
        if level:
            chosen = min(level, key=creation_order)
            level_mode = _mode(((chosen.get("spec") or {}).get("mtls") or {}).get("mode"), _where(chosen))
            if level_mode != "UNSET":
                mode = level_mode
                sources.append(_where(chosen))
    per_port: dict[int, str] = {}
    if workload:
        chosen = min(workload, key=creation_order)
        spec = chosen.get("spec") or {}
        where = _where(chosen)
        level_mode = _mode((spec.get("mtls") or {}).get("mode"), where)
        if level_mode != "UNSET":
            mode = level_mode
            sources.append(where)
        for port_key, port_mtls in (spec.get("portLevelMtls") or {}).items():
            try:
                port = int(port_key)
            except (TypeError, ValueError):
                problem = f"{where}: portLevelMtls key {port_key!r} is not a port number"
                raise InvalidConfig([problem]) from None
            if not 0 < port < 65536:
                raise InvalidConfig([f"{where}: portLevelMtls port {port} is out of range 1-65535"])
            port_mode = _mode((port_mtls or {}).get("mode"), f"{where} portLevelMtls[{port}]")
            per_port[port] = mode if port_mode == "UNSET" else port_mode
    return MergedPeerAuthentication(mode=mode, per_port=per_port, sources=tuple(sources))


def effective_mtls_mode(
    resources: Iterable[Mapping[str, Any]],
    namespace: str,
    labels: Mapping[str, str],
    port: int,
    root_namespace: str = ROOT_NAMESPACE,
) -> str:
    """The mode ("DISABLE" | "PERMISSIVE" | "STRICT") the workload's inbound ``port`` enforces."""
    return compose_peer_authentication(resources, namespace, labels, root_namespace).mode_for(port)


def client_tls_mode(
    destination_rules_tls_mode: str | None, server_has_sidecar: bool, server_mode: str
) -> str:
    """What the calling sidecar speaks: "DISABLE" (plaintext), "ISTIO_MUTUAL", "SIMPLE" or "MUTUAL".

    A DestinationRule ``tls.mode`` wins when set; otherwise auto mTLS sends Istio mTLS exactly
    when the server has a sidecar and its PeerAuthentication mode for the port is not DISABLE.

    >>> client_tls_mode("DISABLE", True, "STRICT")   # the server will refuse: 503 UF/UC
    'DISABLE'
    >>> client_tls_mode(None, False, "PERMISSIVE")   # no sidecar to talk mTLS with
    'DISABLE'
    """
    if destination_rules_tls_mode:
        mode = destination_rules_tls_mode.upper()
        if mode not in DR_TLS_MODES:
            raise InvalidConfig([f"DestinationRule tls.mode {destination_rules_tls_mode!r} is not one of "
                                 f"{', '.join(DR_TLS_MODES)}"])
        return mode
    server = server_mode.upper()
    if server not in MODES:
        raise InvalidConfig([f"server mtls mode {server_mode!r} is not one of {', '.join(MODES)}"])
    return "ISTIO_MUTUAL" if server_has_sidecar and server != "DISABLE" else "DISABLE"
