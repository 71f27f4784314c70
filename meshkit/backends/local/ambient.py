"""Ambient mode in the local control plane: which pods are enrolled, and what the node's ztunnel gets.

Enrollment follows istio-cni's default selectors: a pod labelled ``istio.io/dataplane-mode=ambient``,
or a pod in a namespace so labelled that does not say ``none`` on itself. A pod with a sidecar never
enrolls (sidecar mode wins), nor do gateways, ztunnel itself, or ``kube-system``.

Example::

    dataplane_mode(pod, {"tutorial": {"istio.io/dataplane-mode": "ambient"}})   # "ambient"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshkit.backends.local.workloads import ZTUNNEL, DeploymentSpec, PodState, service_account

LABEL = "istio.io/dataplane-mode"
EXCLUDED_NAMESPACES = ("kube-system",)
ZTUNNEL_SPEC = DeploymentSpec(ZTUNNEL, "", 1, sidecar=False, deployment=ZTUNNEL, namespace="istio-system",
                              pod_labels={"app": ZTUNNEL}, account=ZTUNNEL)


def dataplane_mode(pod: PodState, namespace_labels: Mapping[str, Mapping[str, str]]) -> str:
    """``sidecar``, ``ambient`` or ``none`` (outside the mesh), as ``meshkit status`` shows it."""
    spec = pod.spec
    if spec.waypoint:
        return "none"  # a waypoint pod is labelled istio.io/dataplane-mode=none by its template
    if spec.sidecar:
        return "sidecar"
    if spec.service == ZTUNNEL or spec.gateway or pod.namespace in EXCLUDED_NAMESPACES:
        return "none"
    own = pod.labels().get(LABEL)
    if own in ("ambient", "none"):
        return own
    return "ambient" if namespace_labels.get(pod.namespace, {}).get(LABEL) == "ambient" else "none"


def namespace_labels(namespaces: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {str(n["metadata"]["name"]): dict(n["metadata"].get("labels") or {}) for n in namespaces}


def ztunnel_workloads(pods: list[PodState], ns_labels: Mapping[str, Mapping[str, str]]) -> list[dict[str, Any]]:
    """The workloads ztunnel learns of (its WDS): every pod of the node, with its data-plane mode."""
    out = []
    for p in pods:
        if p.spec.service == ZTUNNEL or (p.spec.gateway and not p.spec.waypoint) or not p.ports:
            continue
        mode = dataplane_mode(p, ns_labels)
        out.append({
            # a waypoint's pod is a workload ztunnel knows (not captured: it speaks HBONE itself)
            "waypoint_of": p.spec.gateway_of if p.spec.waypoint else "",
            "pod": p.name, "namespace": p.namespace, "workload": p.spec.name, "labels": p.labels(),
            "service_account": service_account(p.spec), "dataplane": mode, "ready": p.ready,
            "app_port": p.ports.get("app", 0),
            # how to reach it: an enrolled pod over HBONE, others at the address they listen on
            "hbone_port": p.ztunnel_ports.get("hbone", 0) if mode == "ambient" else
            p.ports.get("hbone", 0) if mode == "sidecar" else 0,  # an HBONE-enabled sidecar takes HBONE too
            "port": p.ports.get("inbound") or p.ports.get("app", 0),
        })
    return out


def authorization_status(resource: Mapping[str, Any], services: set[tuple[str, str]] | None = None,
                         bound: Mapping[tuple[str, str], str] | None = None) -> dict[str, Any]:
    """The status istiod writes on an AuthorizationPolicy when ambient is on: ``ZtunnelAccepted`` for
    the policies ztunnel enforces; for ``targetRefs`` to a Service, ``WaypointAccepted``: True when
    ``bound`` maps the Service to its waypoint (``<ns>/<name>``), else False (nothing enforces it)."""
    from meshkit.backends.local.ztunnel.policy import condition

    meta, spec = resource.get("metadata") or {}, resource.get("spec") or {}
    generation = str(meta.get("generation", 1))
    cond = condition(resource)
    if cond is not None:
        return {"conditions": [{**cond, "observedGeneration": generation}]}
    namespace = str(meta.get("namespace") or "default")
    refs = spec.get("targetRefs") or ([spec["targetRef"]] if spec.get("targetRef") else [])
    for ref in refs:
        if not isinstance(ref, dict) or ref.get("kind") != "Service" or ref.get("group", "") not in ("", "core"):
            continue
        name = f"{namespace}/{ref.get('name')}"
        waypoint = (bound or {}).get((namespace, str(ref.get("name"))))
        if waypoint:
            return {"conditions": [{"type": "WaypointAccepted", "status": "True", "reason": "Accepted",
                                    "message": f"bound to {waypoint}", "observedGeneration": generation}]}
        if services is not None and (namespace, str(ref.get("name"))) not in services:
            reason, message = "TargetNotFound", f"Service {name} was not found"
        else:
            reason, message = "AncestorNotBound", f"Service {name} is not bound to a waypoint"
        return {"conditions": [{"type": "WaypointAccepted", "status": "False", "reason": reason,
                                "message": message, "observedGeneration": generation}]}
    return {}
