"""``istioctl ztunnel-config`` tables from a ztunnel config dump, with istioctl's columns.

Example::

    rows = ztunnel_table(mesh.ztunnel_dump(), "workloads")
    rows[0]     # ('NAMESPACE', 'POD NAME', 'ADDRESS', 'NODE', 'WAYPOINT', 'PROTOCOL')
"""

from __future__ import annotations

from typing import Any

from meshkit.errors import MeshkitError

KINDS = {
    "workload": "workloads", "workloads": "workloads", "w": "workloads",
    "service": "services", "services": "services", "s": "services", "svc": "services",
    "certificate": "certificates", "certificates": "certificates", "certs": "certificates", "cert": "certificates",
    "policy": "policies", "policies": "policies", "pol": "policies", "p": "policies",
    "connections": "connections", "cons": "connections", "all": "all",
}
HEADERS = {
    "workloads": ("NAMESPACE", "POD NAME", "ADDRESS", "NODE", "WAYPOINT", "PROTOCOL"),
    "services": ("NAMESPACE", "SERVICE NAME", "SERVICE VIP", "WAYPOINT", "ENDPOINTS"),
    "certificates": ("CERTIFICATE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER",
                     "NOT BEFORE"),
    "policies": ("NAMESPACE", "POLICY NAME", "ACTION", "SCOPE"),
    "connections": ("WORKLOAD", "DIRECTION", "LOCAL", "REMOTE", "REMOTE TARGET", "PROTOCOL"),
}


def ztunnel_table(dump: dict[str, Any], kind: str, namespace: str | None = None) -> list[tuple[str, ...]]:
    """The rows ``istioctl zc KIND`` prints (header first); ``namespace`` filters like ``--namespace``."""
    which = KINDS.get(kind)
    if which is None or which == "all":
        raise MeshkitError(f'unknown ztunnel-config type "{kind}": workloads, services, certificates, policies, '
                           "connections (all: -o json)")
    rows: list[tuple[str, ...]] = [HEADERS[which]]
    if which == "workloads":
        for w in sorted(dump["workloads"], key=lambda w: (w["namespace"], w["name"])):
            if namespace in (None, w["namespace"]):
                rows.append((w["namespace"], w["name"], ",".join(w["workloadIps"]), w["node"],
                             w.get("waypoint") or "None", w["protocol"]))
    elif which == "services":
        for s in sorted(dump["services"], key=lambda s: (s["namespace"], s["name"])):
            if namespace in (None, s["namespace"]):
                eps = s["endpoints"].values()
                healthy = sum(1 for e in eps if e["status"] == "Healthy")
                rows.append((s["namespace"], s["name"], ",".join(v for v in s["vips"] if v),
                             s.get("waypoint") or "None", f"{healthy}/{len(eps)}"))
    elif which == "certificates":
        for c in dump["certificates"]:
            for i, link in enumerate(c["certChain"]):
                rows.append((c["identity"], link["type"], c["state"] if i == 0 else "Available",
                             str(link["valid"]).lower(), link["serialNumber"] or "NA",
                             link["expirationTime"] or "NA", link["validFrom"] or "NA"))
    elif which == "policies":
        for p in sorted(dump["policies"], key=lambda p: (p["namespace"], p["name"])):
            if namespace in (None, p["namespace"]):
                rows.append((p["namespace"], f'{p["namespace"]}/{p["name"]}', p["action"], p["scope"]))
    else:
        for c in dump["connections"]:
            rows.append((c["workload"], c["direction"].title(), c["local"], c["remote"], c["target"], c["protocol"]))
    return rows
