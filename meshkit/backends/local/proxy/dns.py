"""Cluster DNS as a pod's application sees it, before any packet reaches its sidecar.

In Kubernetes the app resolves ``preference`` through kube-dns and the pod's search domains
(``<ns>.svc.cluster.local``, ``svc.cluster.local``, ``cluster.local``): a name with no Service
behind it fails in the app itself (Java's ``UnknownHostException``), and the sidecar never sees a
request. Names outside the cluster domain go to the outside resolver, which the lab takes as
answering (the sidecar then decides, e.g. ``REGISTRY_ONLY``'s 502).

Example::

    >>> dns = ClusterDns([{"name": "customer", "namespace": "tutorial"}], "tutorial")
    >>> dns.resolves("customer"), dns.resolves("preference"), dns.resolves("worldtimeapi.org")
    (True, False, True)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

DOMAIN = "svc.cluster.local"


class ClusterDns:
    """The names kube-dns answers for one pod's namespace."""

    def __init__(self, services: Iterable[Mapping[str, Any]], namespace: str) -> None:
        self.namespace = namespace
        self.fqdns = frozenset(f"{s['name']}.{s.get('namespace', namespace)}.{DOMAIN}" for s in services)

    def resolves(self, host: str) -> bool:
        name = host.lower().rstrip(".").split(":")[0]
        if name in ("localhost", "127.0.0.1") or name.replace(".", "").isdigit():
            return True
        candidates = [f"{name}.{self.namespace}.{DOMAIN}", f"{name}.{DOMAIN}", f"{name}.cluster.local", name]
        if any(c in self.fqdns for c in candidates):
            return True
        # a single label, or a name inside the cluster domain, only exists when a Service does
        return "." in name and not name.endswith((".svc", ".cluster.local", f".{self.namespace}"))
