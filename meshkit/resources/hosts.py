"""Host names as Istio resolves them: short names in the resource's namespace, FQDNs, wildcards.

Example::

    >>> reg = Registry({"recommendation": {"http": 8080}}, [])
    >>> reg.fqdn("recommendation", "tutorial")
    'recommendation.tutorial.svc.cluster.local'
    >>> reg.lookup("recommendation.tutorial", "default")
    {'http': 8080}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SUFFIX = "svc.cluster.local"
DEFAULT_NAMESPACE = "tutorial"


def wildcard_match(pattern: str, host: str) -> bool:
    """``*`` matches everything, ``*.example.com`` any name under example.com, otherwise equality."""
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return pattern == host


class Registry:
    """Known services (name or ``name.ns`` -> ports) and ServiceEntry hosts, queried by host name."""

    def __init__(self, services: Mapping[str, Mapping[str, int]], service_entries: list[dict[str, Any]]) -> None:
        self.namespaces = {DEFAULT_NAMESPACE}
        self.services: dict[str, dict[str, int]] = {}
        for key, ports in services.items():
            name, _, ns = key.partition(".")
            ns = ns or DEFAULT_NAMESPACE
            self.namespaces.add(ns)
            self.services[f"{name}.{ns}.{SUFFIX}"] = dict(ports)
        # (host pattern, port numbers) per ServiceEntry host
        self.entries: list[tuple[str, list[int]]] = []
        for se in service_entries:
            ns = se["metadata"]["namespace"]
            self.namespaces.add(ns)
        for se in service_entries:
            spec = se.get("spec") or {}
            numbers = [p["number"] for p in spec.get("ports") or [] if isinstance(p, dict) and "number" in p]
            for host in spec.get("hosts") or []:
                self.entries.append((self.fqdn(host, se["metadata"]["namespace"]), numbers))

    def fqdn(self, host: str, namespace: str) -> str:
        """Resolve ``host`` as written in a resource of ``namespace``."""
        host = host.lower().rstrip(".")
        if host.startswith("*"):
            return host
        parts = host.split(".")
        if len(parts) == 1:
            return f"{host}.{namespace}.{SUFFIX}"
        if len(parts) == 2 and parts[1] in self.namespaces:
            return f"{host}.{SUFFIX}"
        if len(parts) == 3 and parts[2] == "svc":
            return f"{host}.cluster.local"
        return host

    def service_ports(self, fqdn: str) -> dict[str, int] | None:
        return self.services.get(fqdn)

    def entry_ports(self, fqdn: str) -> list[int] | None:
        for pattern, ports in self.entries:
            if wildcard_match(pattern, fqdn):
                return ports
        return None

    def lookup(self, host: str, namespace: str) -> dict[str, int] | None:
        """Ports (name -> number) of the service or ServiceEntry ``host`` names, or None if unknown."""
        fqdn = self.fqdn(host, namespace)
        ports = self.service_ports(fqdn)
        if ports is not None:
            return ports
        entry = self.entry_ports(fqdn)
        if entry is not None:
            return {str(p): p for p in entry}
        return None

    def matches_any(self, pattern: str) -> bool:
        """Does a (possibly wildcard) FQDN pattern cover at least one known service or entry host?"""
        return any(wildcard_match(pattern, h) for h in self.services) or any(
            wildcard_match(pattern, h) or wildcard_match(h, pattern) for h, _ in self.entries
        )
