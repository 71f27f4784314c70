"""``istioctl ztunnel-config`` tables from a ztunnel config dump, with istioctl's columns.

Example::

    rows = ztunnel_table(mesh.ztunnel_dump(), "workloads")
    rows[0]     # ('NAMESPACE', 'POD NAME', 'ADDRESS', 'NODE', 'WAYPOINT', 'PROTOCOL')
"""

from __future__ import annotations

import datetime as dt
import time
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


def ztunnel_table(dump: dict[str, Any], kind: str, namespace: str | None = None,
                  now: float | None = None) -> list[tuple[str, ...]]:
    """The rows ``istioctl zc KIND`` prints (header first); ``namespace`` filters like ``--namespace``;
    ``now`` is the clock VALID CERT is judged by (the current time by default)."""
    which = KINDS.get(kind)
    if which is None or which == "all":
        raise MeshkitError(f'unknown ztunnel-config type "{kind}": workloads, services, certificates, policies, '
                           "connections (all: -o json)")
    rows: list[tuple[str, ...]] = [HEADERS[which]]
    if which == "workloads":
        for w in sorted(dump["workloads"], key=lambda w: (w["namespace"], w["name"])):
            if namespace in (None, w["namespace"]):
                rows.append((w["namespace"], w["name"], ",".join(w["workloadIps"]), w["node"],
                             _waypoint_name(w.get("waypoint"), dump["services"]), w["protocol"]))
    elif which == "services":
        for s in sorted(dump["services"], key=lambda s: (s["namespace"], s["name"])):
            if namespace in (None, s["namespace"]):
                eps = s["endpoints"].values()
                healthy = sum(1 for e in eps if e["status"] == "Healthy")
                rows.append((s["namespace"], s["name"], ",".join(v for v in s["vips"] if v),
                             _waypoint_name(s.get("waypoint"), dump["services"]), f"{healthy}/{len(eps)}"))
    elif which == "certificates":
        rows += _certificate_rows(dump["certificates"], time.time() if now is None else now)
    elif which == "policies":
        for p in sorted(dump["policies"], key=lambda p: (p["namespace"], p["name"])):
            if namespace in (None, p["namespace"]):
                rows.append((p["namespace"], p["name"], p["action"], p["scope"]))  # istioctl: the bare name
    else:
        rows += _connection_rows(dump, namespace)
    return rows


def _certificate_rows(certs: list[dict[str, Any]], now: float) -> list[tuple[str, ...]]:
    """istioctl's rows: the leaf (then intermediates), then each root; serials in hex, NA for missing values,
    VALID CERT from the times (false before NOT BEFORE and from NOT AFTER on)."""
    rows: list[tuple[str, ...]] = []
    for c in certs:
        state = "Unavailable" if "Unavailable" in c["state"] else c["state"]
        chain = c.get("certChain") or []
        if not chain:
            rows.append((c["identity"], "NA", state, "false", "NA", "NA", "NA"))
            continue
        links = [("Leaf" if i == 0 else "Intermediate", link) for i, link in enumerate(chain)]
        links += [("Root", link) for link in c.get("rootCerts") or []]
        for kind, link in links:
            rows.append((c["identity"], kind, state, str(_not_expired(link, now)).lower(),
                         format(int(link["serialNumber"] or 0), "x"), link["expirationTime"] or "NA",
                         link["validFrom"] or "NA"))
    return rows


def _not_expired(link: dict[str, Any], now: float) -> bool:
    try:
        start = dt.datetime.fromisoformat(link["validFrom"].replace("Z", "+00:00")).timestamp()
        end = dt.datetime.fromisoformat(link["expirationTime"].replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return False
    return start < now < end


def _connection_rows(dump: dict[str, Any], namespace: str | None) -> list[tuple[str, ...]]:
    """istioctl's connection rows: per workload (by namespace, then name) its inbound then outbound
    connections. istioctl names an address by the Service or workload owning its IP; every local pod
    shares 127.0.0.1, so here the port says whose it is (a pod's app or HBONE port, a Service's name)."""
    owners: dict[str, str] = {}
    for w in dump["workloads"]:
        for port in (w.get("ports") or {}).values():
            owners[f"127.0.0.1:{port}"] = f'{w["name"]}.{w["namespace"]}'
        if w.get("appPort"):
            owners[f'127.0.0.1:{w["appPort"]}'] = f'{w["name"]}.{w["namespace"]}'

    def lookup(addr: str) -> str:
        owner = owners.get(addr)
        return f"{owner}:{addr.rsplit(':', 1)[1]}" if owner else addr

    rows: list[tuple[str, ...]] = []
    states = sorted(dump.get("workloadState", {}).values(), key=lambda s: (s["info"]["namespace"], s["info"]["name"]))
    for state in states:
        info = state["info"]
        if namespace not in (None, info["namespace"]):
            continue
        name = f'{info["name"]}.{info["namespace"]}'
        for c in state["connections"]["inbound"]:
            rows.append((name, "Inbound", lookup(c["actualDst"]), lookup(c["src"]), c["originalDst"] or "",
                         c["protocol"]))
        for c in state["connections"]["outbound"]:
            rows.append((name, "Outbound", lookup(c["src"]), lookup(c["actualDst"]), lookup(c["originalDst"]),
                         c["protocol"]))
    return rows


def _waypoint_name(address: Any, services: list[dict[str, Any]]) -> str:
    """istioctl's WAYPOINT cell: the name of the Service the waypoint address names (``None`` unbound)."""
    if not address:
        return "None"
    destination = str(address.get("destination", "")) if isinstance(address, dict) else str(address)
    for svc in services:
        if f"{svc['namespace']}/{svc['hostname']}" == destination or destination in svc.get("vips", []):
            return str(svc["name"])
    # the waypoint's own Service, named like its Gateway
    return destination.partition("/")[2].split(".", 1)[0] or "NA"
