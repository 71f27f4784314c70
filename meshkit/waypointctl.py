"""``istioctl waypoint``: the Gateway it writes and the tables it prints (istioctl/pkg/waypoint).

``apply`` writes a Gateway of class ``istio-waypoint`` with one listener ``mesh`` on 15008 (HBONE),
labelled ``istio.io/waypoint-for`` only when a traffic type is given (istiod then defaults to
``service``); ``list`` and ``status`` print istioctl's columns through Go's tabwriter layout
(columns padded to the widest cell plus 5 spaces; the last column unpadded).

Example::

    gateway = waypoint_gateway("tutorial", "waypoint", "service")
    print(list_table([gateway_with_status], all_namespaces=False, any_gateway=True))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from meshkit.errors import MeshkitError

GROUP = "gateway.networking.k8s.io"
CLASS = "istio-waypoint"
WAYPOINT_FOR = "istio.io/waypoint-for"
USE_WAYPOINT = "istio.io/use-waypoint"
TRAFFIC_TYPES = ("all", "none", "service", "workload")
NONE_FOUND = "No waypoints found."


def waypoint_gateway(namespace: str, name: str = "waypoint", for_: str | None = None) -> dict[str, Any]:
    """The Gateway ``istioctl waypoint apply`` writes; raises with istioctl's words on a bad name or type."""
    if not name:
        name = "waypoint"
    if name == "none":
        raise MeshkitError("failed to create gateway: invalid name provided for waypoint, 'none' is a reserved value")
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if for_:
        if for_ not in TRAFFIC_TYPES:
            raise MeshkitError(f"failed to create gateway: invalid traffic type: {for_}. Valid options are: "
                               f"[{' '.join(TRAFFIC_TYPES)}]")
        meta["labels"] = {WAYPOINT_FOR: for_}
    return {"apiVersion": f"{GROUP}/v1", "kind": "Gateway", "metadata": meta,
            "spec": {"gatewayClassName": CLASS,
                     "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}}


def is_waypoint(gw: Mapping[str, Any]) -> bool:
    return (gw.get("spec") or {}).get("gatewayClassName") == CLASS


def condition(gw: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in (gw.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def programmed(gw: Mapping[str, Any]) -> bool:
    cond = condition(gw, "Programmed")
    return cond is not None and cond.get("status") == "True"


def tabwriter(rows: Sequence[Sequence[str]], padding: int = 5) -> str:
    """Go's ``tabwriter.NewWriter(w, 0, 8, 5, ' ', 0)`` layout: every cell but a line's last is padded."""
    widths: dict[int, int] = {}
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell))
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i] + padding) for i, cell in enumerate(row[:-1])]
        lines.append("".join(cells) + (row[-1] if row else ""))
    return "\n".join(lines) + "\n"


def _sorted(gateways: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    def key(g: Mapping[str, Any]) -> tuple[str, str]:
        meta = g.get("metadata") or {}
        return str(meta.get("namespace", "")), str(meta.get("name", ""))

    return sorted((g for g in gateways if is_waypoint(g)), key=key)


def list_table(gateways: Sequence[Mapping[str, Any]], all_namespaces: bool = False) -> str:
    """``istioctl waypoint list``: NAME REVISION TRAFFIC TYPE PROGRAMMED (``-A``: NAMESPACE first).

    ``gateways`` are every Gateway API Gateway of the namespace (istioctl says "No waypoints found."
    only when there is no Gateway at all; other classes are then left out of the table)."""
    if not gateways:
        return NONE_FOUND + "\n"
    head = ["NAME", "REVISION", "TRAFFIC TYPE", "PROGRAMMED"]
    rows = [["NAMESPACE", *head] if all_namespaces else head]
    for gw in _sorted(gateways):
        meta = gw.get("metadata") or {}
        labels = meta.get("labels") or {}
        cond = condition(gw, "Programmed")
        row = [str(meta.get("name")), labels.get("istio.io/rev") or "default", labels.get(WAYPOINT_FOR) or "none",
               str(cond.get("status")) if cond else "False"]
        rows.append([str(meta.get("namespace")), *row] if all_namespaces else row)
    return tabwriter(rows)


def status_table(gateways: Sequence[Mapping[str, Any]], all_namespaces: bool = False) -> str:
    """``istioctl waypoint status``: NAME STATUS TYPE REASON MESSAGE, from each waypoint's Programmed
    condition (or its last condition while it has no Programmed one)."""
    if not gateways:
        return NONE_FOUND + "\n"
    head = ["NAME", "STATUS", "TYPE", "REASON", "MESSAGE"]
    rows = [["NAMESPACE", *head] if all_namespaces else head]
    for gw in _sorted(gateways):
        meta = gw.get("metadata") or {}
        conds = (gw.get("status") or {}).get("conditions") or []
        cond = condition(gw, "Programmed") or (conds[-1] if conds else {})
        row = [str(meta.get("name")), str(cond.get("status", "")), str(cond.get("type", "")),
               str(cond.get("reason", "")), str(cond.get("message", ""))]
        rows.append([str(meta.get("namespace")), *row] if all_namespaces else row)
    return tabwriter(rows)


# the verbs, over any backend that applies, gets, labels and deletes ---------------------------------

WAIT_TIMEOUT_S = 90.0  # istioctl's --waypoint-timeout default


def _namespace_labels(mesh: Any, namespace: str) -> dict[str, str]:
    found = [n for n in mesh.get("Namespace") if (n.get("metadata") or {}).get("name") == namespace]
    if not found:
        raise MeshkitError(f"namespace: {namespace} not found")
    return dict((found[0].get("metadata") or {}).get("labels") or {})


def gateways(mesh: Any, namespace: str | None) -> list[dict[str, Any]]:
    """Every Gateway API Gateway (with status) of ``namespace``, or of all namespaces for None."""
    return [g for g in mesh.get(f"gateways.{GROUP}")
            if namespace is None or (g.get("metadata") or {}).get("namespace", "tutorial") == namespace]


def apply(mesh: Any, namespace: str, name: str, for_: str | None, enroll_namespace: bool, overwrite: bool,
          wait: bool, timeout_s: float = WAIT_TIMEOUT_S) -> list[str]:
    """``istioctl waypoint apply``; returns its output lines."""
    import time

    out: list[str] = []
    gw = waypoint_gateway(namespace, name, for_)
    name = gw["metadata"]["name"]
    ns_labels = _namespace_labels(mesh, namespace)
    if enroll_namespace:
        if not overwrite and ns_labels.get(USE_WAYPOINT):
            return [f"⚠️ Warning: namespace ({namespace}) already has an enrolled Waypoint. Consider adding the "
                    "`--overwrite` flag to your apply command."]
        if ns_labels.get("istio.io/dataplane-mode") != "ambient":
            out.append("⚠️ Warning: namespace is not enrolled in ambient. Consider running\t"
                       f"`kubectl label namespace {namespace} istio.io/dataplane-mode=ambient`")
    mesh.apply(gw)
    out.append(f"✅ waypoint {namespace}/{name} applied")
    if wait:
        deadline = time.monotonic() + timeout_s
        while not any(programmed(g) for g in gateways(mesh, namespace) if g["metadata"]["name"] == name):
            if time.monotonic() > deadline:
                raise MeshkitError(f"timed out while waiting for waypoint\t{namespace}/{name}")
            time.sleep(0.1)
        out.append(f"✅ waypoint {namespace}/{name} is ready!")
    if enroll_namespace:
        mesh.label("Namespace", namespace, {USE_WAYPOINT: name})
        out.append(f'✅ namespace {namespace} labeled with "{USE_WAYPOINT}: {name}"')
    return out


def delete(mesh: Any, namespace: str, names: Sequence[str]) -> list[str]:
    """``istioctl waypoint delete NAME...``; returns its output lines."""
    present = {g["metadata"]["name"] for g in gateways(mesh, namespace) if is_waypoint(g)}
    out = []
    for name in names:
        if name not in present:
            out.append(f"waypoint {namespace}/{name} not found")
            continue
        mesh.delete(f"gateways.{GROUP}", name, namespace)
        out.append(f"waypoint {namespace}/{name} deleted")
    return out
