"""``istioctl analyze`` for Gateway API resources: negative status conditions (IST0171) and the clash of
an HTTPRoute with a VirtualService on the same host at the sidecars.

The status comes from the mesh when the resource was read from it; for a file it is computed as
Istio's controller would (:func:`meshkit.resources.gatewayapi.translate.translate`).

Example::

    >>> route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
    ...          "metadata": {"name": "r", "namespace": "tutorial"},
    ...          "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "ghost", "port": 8080}],
    ...                   "rules": [{"backendRefs": [{"name": "ghost", "port": 8080}]}]}}
    >>> [m for _, _, m in findings([route], [], {})][0][:72]
    'A condition with a negative status is present: type=Accepted, reason=NoM'
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from meshkit.resources.gatewayapi.translate import GROUP, SUFFIX, translate

NEGATIVE = "IST0171"
CONFLICT = "IST0109"
_ROUTE_KINDS = ("HTTPRoute", "GRPCRoute")


def _key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return str(obj.get("kind")), str(meta.get("namespace") or "tutorial"), str(meta.get("name"))


def _services(objects: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[int, ...]]:
    """Services the objects declare, plus the per-version ones the local mesh derives from its pods."""
    out: dict[tuple[str, str], tuple[int, ...]] = {}
    for obj in objects:
        ns = str((obj.get("metadata") or {}).get("namespace") or "tutorial")
        if obj.get("kind") == "Service":
            ports = tuple(int(p.get("port", 0)) for p in (obj.get("spec") or {}).get("ports") or [])
            out[(ns, str(obj["metadata"]["name"]))] = ports
        elif obj.get("kind") == "Pod":
            labels = (obj.get("metadata") or {}).get("labels") or {}
            if labels.get("app") and labels.get("version"):
                out.setdefault((ns, f"{labels['app']}-{labels['version']}"), (8080,))
    return out


def findings(
    gateway_api: list[dict[str, Any]],
    others: list[dict[str, Any]],
    statuses: Mapping[tuple[str, str, str], Any],
) -> Iterator[tuple[dict[str, Any], str, str]]:
    """``(object, code, message)`` for each problem; ``statuses`` holds the status read with each object."""
    tx = translate([*gateway_api, *others], _services(others), ())
    for obj in gateway_api:
        kind, ns, name = _key(obj)
        given = obj.get("status") or statuses.get((f"{kind}.{GROUP}", ns, name))
        status = given if isinstance(given, dict) and given else tx.statuses.get((kind, ns, name), {})
        if kind == "Gateway" and not given:
            status = {k: v for k, v in status.items() if k != "conditions"}  # readiness is unknown from a file
        conditions = list(status.get("conditions") or [])
        for parent in status.get("parents") or []:
            conditions += parent.get("conditions") or []
        for listener in status.get("listeners") or []:
            conditions += [c for c in listener.get("conditions") or [] if c.get("type") != "Conflicted"]
        for cond in conditions:
            negative = "True" if cond.get("type") == "Conflicted" else "False"
            if isinstance(cond, dict) and str(cond.get("status")) == negative:
                yield obj, NEGATIVE, ("A condition with a negative status is present: "
                                      f"type={cond.get('type')}, reason={cond.get('reason', '')}, "
                                      f"message={cond.get('message', '')}.")
    yield from _clashes(gateway_api, others, tx.virtual_services)


def _fqdn(host: str, ns: str) -> str:
    return f"{host}.{ns}.{SUFFIX}" if "." not in host else host


def _clashes(gateway_api: list[dict[str, Any]], others: list[dict[str, Any]],
             generated: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], str, str]]:
    """A VirtualService and an HTTPRoute on one host for the mesh: sidecars keep the older and drop the other."""
    routes = {f"{r['kind']}/{r['metadata']['name']}.{r['metadata'].get('namespace') or 'tutorial'}": r
              for r in gateway_api if r.get("kind") in _ROUTE_KINDS}
    for vs in generated:
        if vs["spec"].get("gateways") != ["mesh"]:
            continue
        host = vs["spec"]["hosts"][0]
        owners = [routes[p] for p in vs["metadata"]["annotations"]["internal.istio.io/parents"].split(",")
                  if p in routes]
        for real in others:
            if real.get("kind") != "VirtualService":
                continue
            ns = str(real["metadata"].get("namespace") or "tutorial")
            gateways = real["spec"].get("gateways") or ["mesh"]
            if "mesh" not in gateways or host not in {_fqdn(h, ns) for h in real["spec"].get("hosts") or []}:
                continue
            for route in owners:
                older, newer = sorted(
                    [real, route], key=lambda o: (str(o["metadata"].get("creationTimestamp") or "~"),
                                                   o["metadata"].get("namespace") or "", o["metadata"]["name"]))
                stamped = all(o["metadata"].get("creationTimestamp") for o in (real, route))
                winner = f"{older['kind']} {ns}/{older['metadata']['name']}" if stamped else "the older one"
                message = (f"The VirtualService {ns}/{real['metadata']['name']} and the {route['kind']} "
                           f"{route['metadata'].get('namespace') or 'tutorial'}/{route['metadata']['name']} "
                           f"both route host {host} for the mesh. Sidecars do not merge them: {winner} applies "
                           "and the other is ignored. Keep one of them.")
                del newer
                yield real, CONFLICT, message
                yield route, CONFLICT, message
