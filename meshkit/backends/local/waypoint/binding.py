"""Which waypoint serves a Service or a pod: the ``istio.io/use-waypoint`` rules istiod applies.

* The object's own ``istio.io/use-waypoint`` label wins; ``none`` opts it out (even from its
  namespace's waypoint). Without one, its Namespace's label is used. ``istio.io/use-waypoint-namespace``
  names a waypoint in another namespace.
* The waypoint's ``istio.io/waypoint-for`` label (on the Gateway; default ``service``) says what it
  takes: Services bind only to a ``service`` or ``all`` waypoint, pods only to ``workload`` or ``all``.
  A Service labelled for a ``workload`` waypoint is refused (``UnsupportedTrafficType``); a pod that
  inherits a service waypoint from its namespace simply has none.
* A waypoint that does not exist yet, or whose pod is not ready, leaves the object unbound
  (``WaypointIsNotReady``): traffic goes straight to the destination ztunnel meanwhile.

Example::

    wps = {"tutorial/waypoint": Waypoint("waypoint", "tutorial", "service", True)}
    bind_service({"istio.io/use-waypoint": "waypoint"}, "tutorial", {}, wps).waypoint.name   # "waypoint"
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

USE_WAYPOINT = "istio.io/use-waypoint"
USE_WAYPOINT_NAMESPACE = "istio.io/use-waypoint-namespace"
WAYPOINT_FOR = "istio.io/waypoint-for"
WAYPOINT_CLASS = "istio-waypoint"
TRAFFIC_TYPES = ("all", "none", "service", "workload")
GROUP = "gateway.networking.k8s.io"


@dataclass(frozen=True)
class Waypoint:
    name: str
    namespace: str
    traffic_type: str  # service | workload | all | none
    ready: bool

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def identity(self) -> str:
        return f"spiffe://cluster.local/ns/{self.namespace}/sa/{self.name}"


@dataclass(frozen=True)
class Binding:
    """The outcome for one object: the waypoint it uses, or why it has none (``reason`` empty: not asked)."""

    waypoint: Waypoint | None = None
    reason: str = ""
    message: str = ""


def is_waypoint_gateway(res: Mapping[str, Any]) -> bool:
    return (res.get("kind") == "Gateway" and str(res.get("apiVersion", "")).startswith(GROUP)
            and (res.get("spec") or {}).get("gatewayClassName") == WAYPOINT_CLASS)


def waypoints(resources: Iterable[Mapping[str, Any]], ready: Iterable[str]) -> dict[str, Waypoint]:
    """Every waypoint Gateway by ``<ns>/<name>``; ``ready`` names the ``<ns>/<name>`` with a ready pod."""
    up = set(ready)
    out = {}
    for res in resources:
        if not is_waypoint_gateway(res):
            continue
        meta = res.get("metadata") or {}
        ns, name = str(meta.get("namespace") or "default"), str(meta.get("name"))
        traffic = str((meta.get("labels") or {}).get(WAYPOINT_FOR) or "service")
        out[f"{ns}/{name}"] = Waypoint(name, ns, traffic, f"{ns}/{name}" in up)
    return out


def _use(labels: Mapping[str, str], namespace: str) -> tuple[str | None, bool]:
    """(``<ns>/<name>`` asked for, opted out with ``none``)."""
    value = labels.get(USE_WAYPOINT)
    if value is None:
        return None, False
    if value == "none":
        return None, True
    return f"{labels.get(USE_WAYPOINT_NAMESPACE) or namespace}/{value}", False


def _target(labels: Mapping[str, str], namespace: str, ns_labels: Mapping[str, str],
            wps: Mapping[str, Waypoint]) -> tuple[Binding, bool]:
    """The waypoint an object asks for (its own label, else its namespace's); True when its own label."""
    own, opted_out = _use(labels, namespace)
    if opted_out:
        return Binding(), True
    key, direct = (own, True) if own else (_use(ns_labels, namespace)[0], False)
    if key is None:
        return Binding(), direct
    wp = wps.get(key)
    if wp is None or not wp.ready:
        return Binding(None, "WaypointIsNotReady", f'waypoint "{key}" is not ready'), direct
    return Binding(wp), direct


def bind_service(labels: Mapping[str, str], namespace: str, ns_labels: Mapping[str, str],
                 wps: Mapping[str, Waypoint]) -> Binding:
    """The waypoint a Service's traffic goes through (only ``service`` or ``all`` waypoints take it)."""
    if labels.get("gateway.istio.io/managed") == "istio.io-mesh-controller":
        return Binding()  # a waypoint's own Service never has a waypoint
    binding, _ = _target(labels, namespace, ns_labels, wps)
    wp = binding.waypoint
    if wp is not None and wp.traffic_type not in ("service", "all"):
        return Binding(None, "UnsupportedTrafficType", f'attempting to bind to traffic type "service" which the '
                       f'waypoint "{wp.key}" does not support')
    return binding


def bind_workload(labels: Mapping[str, str], namespace: str, ns_labels: Mapping[str, str],
                  wps: Mapping[str, Waypoint]) -> Binding:
    """The waypoint traffic addressed to a pod goes through (``workload`` or ``all`` waypoints only)."""
    binding, direct = _target(labels, namespace, ns_labels, wps)
    wp = binding.waypoint
    if wp is not None and wp.traffic_type not in ("workload", "all"):
        if not direct:
            return Binding()  # a namespace's service waypoint is no error for its pods
        return Binding(None, "UnsupportedTrafficType", f'attempting to bind to traffic type "workload" which the '
                       f'waypoint "{wp.key}" does not support')
    return binding


def with_waypoint(svc: Mapping[str, Any], binding: Binding, pods: Iterable[Any]) -> dict[str, Any]:
    """A registry Service as ztunnel gets it: with ``waypoint`` (where its tunnel goes) when bound."""
    out = dict(svc)
    wp = binding.waypoint
    if wp is None:
        return out
    for pod in pods:
        spec = pod.spec
        if spec.waypoint and spec.gateway_of == wp.name and pod.namespace == wp.namespace and pod.ready \
                and pod.ports.get("hbone"):
            out["waypoint"] = {"name": wp.name, "namespace": wp.namespace, "identity": wp.identity, "key": wp.key,
                               "hbone_port": pod.ports["hbone"], "pod": pod.name}
            break
    return out


def bound_condition(binding: Binding) -> dict[str, str] | None:
    """istiod's ``istio.io/WaypointBound`` condition on a Service (None: no waypoint asked for)."""
    if binding.waypoint is not None:
        return {"type": "istio.io/WaypointBound", "status": "True", "reason": "WaypointAccepted",
                "message": f"Successfully attached to waypoint {binding.waypoint.key}"}
    if binding.reason:
        return {"type": "istio.io/WaypointBound", "status": "False", "reason": binding.reason,
                "message": binding.message}
    return None


MISSING_LABEL = ("istio.io/use-waypoint label missing from parent and parent namespace; in ambient mode, route "
                 "will not be respected")


def _configured(labels: Mapping[str, str]) -> bool:
    value = labels.get(USE_WAYPOINT, "")
    return bool(value) and value.lower() != "none"


def with_resolved_waypoints(status: Mapping[str, Any], route_ns: str, generation: int,
                            services: Mapping[tuple[str, str], Mapping[str, str]],
                            ns_labels: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """A route's status as istiod writes it with ambient on: each parent also gets ``ResolvedWaypoints``
    (always True; its message says when a Service parent, and its namespace, lack ``istio.io/use-waypoint``
    — the route then binds no waypoint — or when the parent Service does not exist)."""
    parents = []
    for entry in status.get("parents") or []:
        ref = entry.get("parentRef") or {}
        message = "All waypoints resolved"
        if ref.get("kind") == "Service" and ref.get("group", "") in ("", "core"):
            key = (str(ref.get("namespace") or route_ns), str(ref.get("name")))
            if key not in services:
                message = "parent not found"
            elif not _configured(services[key]) and key[0] in ns_labels and not _configured(ns_labels[key[0]]):
                message = MISSING_LABEL
        cond = {"type": "ResolvedWaypoints", "status": "True", "reason": "ResolvedWaypoints", "message": message,
                "observedGeneration": generation}
        parents.append({**entry, "conditions": [*(entry.get("conditions") or []), cond]})
    return {**status, "parents": parents}
