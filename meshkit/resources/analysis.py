"""``istioctl analyze`` for the lab: cross-resource checks with Istio's codes and message templates.

Example::

    >>> vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
    ...       "metadata": {"name": "recommendation", "namespace": "tutorial"},
    ...       "spec": {"hosts": ["recommendation"], "http": [{"route": [
    ...           {"destination": {"host": "recommendation", "subset": "version-v3"}}]}]}}
    >>> [p.message for p in analyze([vs], {"recommendation": {"http": 8080}}, [])]
    ['Referenced host+subset in destinationrule not found: "recommendation+version-v3"']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshkit.resources.hosts import Registry, wildcard_match
from meshkit.resources.kinds import canonical_key
from meshkit.resources.model import LEVELS, Document, Origin, Path, Problem, format_path
from meshkit.resources.validation import validate_document

_SCHEMA_PREFIX = {"IST0106": "Schema validation error: ", "IST0133": "Schema validation warning: "}
_SELECTOR_PATHS = {
    "PeerAuthentication": ("selector", "matchLabels"),
    "AuthorizationPolicy": ("selector", "matchLabels"),
    "RequestAuthentication": ("selector", "matchLabels"),
    "Telemetry": ("selector", "matchLabels"),
    "EnvoyFilter": ("workloadSelector", "labels"),
}
ROOT_NAMESPACE = "istio-system"


class _Run:
    """One analysis: the inputs, indexes over them, and the problems found so far."""

    def __init__(
        self,
        resources: list[dict[str, Any]],
        services: Mapping[str, Mapping[str, int]],
        pods: list[dict[str, Any]],
        origins: Mapping[tuple[str, str, str], Origin],
    ) -> None:
        self.resources = resources
        self.pods = pods
        self.origins = origins
        self.services = services
        self.by_kind: dict[str, list[dict[str, Any]]] = {}
        self.registry = Registry(services, [])
        self.problems: list[Problem] = []

    def index(self, valid: list[dict[str, Any]]) -> None:
        """Cross-resource checks only look at resources that passed schema validation."""
        for r in valid:
            self.by_kind.setdefault(r["kind"], []).append(r)
        self.registry = Registry(self.services, self.by_kind.get("ServiceEntry", []))

    def report(self, resource: dict[str, Any], level: str, code: str, message: str, path: Path = ()) -> None:
        kind, ns, name = canonical_key(resource)
        origin = self.origins.get((kind, ns, name))
        self.problems.append(
            Problem(
                level,
                code,
                message,
                source=origin.source if origin else "",
                index=origin.index if origin else 0,
                kind=kind,
                namespace=ns,
                name=name,
                field=format_path(path),
                line=origin.line_of(path) if origin else None,
            )
        )

    # -- helpers ---------------------------------------------------------------------------------
    def subsets(self, host: str, ns: str) -> set[str] | None:
        """Subset names DestinationRules define for ``host`` (None when no DR covers the host)."""
        fqdn = self.registry.fqdn(host, ns)
        found: set[str] | None = None
        for dr in self.by_kind.get("DestinationRule", []):
            dr_host = self.registry.fqdn(dr["spec"].get("host", ""), dr["metadata"]["namespace"])
            if wildcard_match(dr_host, fqdn):
                found = (found or set()) | {s.get("name") for s in dr["spec"].get("subsets") or []}
        return found

    def gateway(self, ref: str, ns: str) -> dict[str, Any] | None:
        gw_ns, _, name = ref.rpartition("/")
        gw_ns = gw_ns or ns
        for gw in self.by_kind.get("Gateway", []):
            if gw["metadata"]["name"] == name and gw["metadata"]["namespace"] == gw_ns:
                return gw
        return None

    def pods_matching(self, labels: Mapping[str, str], namespace: str | None) -> list[dict[str, Any]]:
        return [
            p
            for p in self.pods
            if (namespace is None or p.get("namespace", "tutorial") == namespace)
            and all((p.get("labels") or {}).get(k) == v for k, v in labels.items())
        ]


def _schema(run: _Run, profile: str) -> list[dict[str, Any]]:
    valid = []
    for r in run.resources:
        if not isinstance(r, dict):
            continue
        key = canonical_key(r)
        origin = run.origins.get(key)
        doc = Document(
            origin.source if origin else "",
            origin.index if origin else 0,
            r,
            origin.line if origin else 1,
            origin.lines if origin else {},
        )
        normalised, problems = validate_document(doc, profile, key[1])
        for p in problems:
            message = _SCHEMA_PREFIX.get(p.code, "") + p.message
            run.problems.append(
                Problem(
                    p.level,
                    p.code,
                    message,
                    p.source,
                    p.index,
                    p.kind,
                    p.namespace,
                    p.name,
                    p.field,
                    p.line if origin else None,
                )
            )
        if normalised is not None:
            valid.append(normalised)
    return valid


def _destination(
    run: _Run, vs: dict[str, Any], dest: dict[str, Any], path: Path, mirror: bool, gateway_bound: bool
) -> None:
    ns = vs["metadata"]["namespace"]
    host = dest.get("host", "")
    if not host or host.startswith("*"):
        return
    ports = run.registry.lookup(host, ns)
    what = "mirror host" if mirror else "host"
    if ports is None:
        run.report(vs, "Error", "IST0101", f'Referenced {what} not found: "{host}"', (*path, "host"))
        return
    subset = dest.get("subset")
    if subset and subset not in (run.subsets(host, ns) or set()):
        what = "mirror+subset in destinationrule" if mirror else "host+subset in destinationrule"
        run.report(vs, "Error", "IST0101", f'Referenced {what} not found: "{host}+{subset}"', (*path, "subset"))
    number = (dest.get("port") or {}).get("number")
    if number is not None and ports and number not in ports.values():
        run.report(vs, "Error", "IST0101", f'Referenced host:port not found: "{host}:{number}"', (*path, "port"))
    if number is None and gateway_bound and len(set(ports.values())) > 1:
        listed = " ".join(str(p) for p in sorted(set(ports.values())))
        run.report(
            vs,
            "Error",
            "IST0112",
            f'This VirtualService routes to a service "{host}" that exposes '
            f"multiple ports [{listed}]. Specifying a port in the destination is required to disambiguate.",
            path,
        )


def _virtual_service(run: _Run, vs: dict[str, Any], mesh_hosts: dict[str, list[dict[str, Any]]]) -> None:
    spec, ns = vs["spec"], vs["metadata"]["namespace"]
    gateways = spec.get("gateways") or ["mesh"]
    gateway_bound = any(g != "mesh" for g in gateways)
    for section in ("http", "tcp", "tls"):
        for i, route in enumerate(spec.get(section) or []):
            base: Path = ("spec", section, i)
            for j, rd in enumerate(route.get("route") or []):
                _destination(
                    run,
                    vs,
                    rd.get("destination") or {},
                    (*base, "route", j, "destination"),
                    False,
                    gateway_bound,
                )
            if route.get("mirror"):
                _destination(run, vs, route["mirror"], (*base, "mirror"), True, gateway_bound)
            for j, m in enumerate(route.get("mirrors") or []):
                _destination(
                    run,
                    vs,
                    m.get("destination") or {},
                    (*base, "mirrors", j, "destination"),
                    True,
                    gateway_bound,
                )
            for j, match in enumerate(route.get("match") or []):
                for ref in match.get("gateways") or [] if isinstance(match, dict) else []:
                    if ref != "mesh" and run.gateway(ref, ns) is None:
                        run.report(
                            vs,
                            "Error",
                            "IST0101",
                            f'Referenced gateway not found: "{ref}"',
                            (*base, "match", j, "gateways"),
                        )
    for k, ref in enumerate(spec.get("gateways") or []):
        if ref == "mesh":
            continue
        gw = run.gateway(ref, ns)
        if gw is None:
            run.report(vs, "Error", "IST0101", f'Referenced gateway not found: "{ref}"', ("spec", "gateways", k))
            continue
        gw_hosts = [h.rpartition("/")[2] for s in gw["spec"].get("servers") or [] for h in s.get("hosts") or []]
        missing = [
            h
            for h in spec.get("hosts") or []
            if not any(wildcard_match(g, h) or wildcard_match(h, g) for g in gw_hosts)
        ]
        if missing:
            gw_name = f"{gw['metadata']['namespace']}/{gw['metadata']['name']}"
            run.report(
                vs,
                "Warning",
                "IST0132",
                f"one or more host [{' '.join(missing)}] defined in VirtualService "
                f"{ns}/{vs['metadata']['name']} not found in Gateway {gw_name}.",
                ("spec", "hosts"),
            )
    if "mesh" in gateways:
        for host in spec.get("hosts") or []:
            mesh_hosts.setdefault(run.registry.fqdn(host, ns), []).append(vs)


def _conflicting_hosts(run: _Run, mesh_hosts: dict[str, list[dict[str, Any]]]) -> None:
    for host, services in mesh_hosts.items():
        if len(services) < 2:
            continue
        names = ",".join(sorted(f"{v['metadata']['namespace']}/{v['metadata']['name']}" for v in services))
        for vs in services:
            run.report(
                vs,
                "Error",
                "IST0109",
                f"The VirtualServices {names} associated with mesh gateway define the "
                f"same host */{host} which can lead to undefined behavior. This can be fixed by merging the "
                "conflicting VirtualServices into a single resource.",
                ("spec", "hosts"),
            )


def _destination_rule(run: _Run, dr: dict[str, Any]) -> None:
    spec, ns = dr["spec"], dr["metadata"]["namespace"]
    host = spec.get("host", "")
    fqdn = run.registry.fqdn(host, ns)
    known = (
        run.registry.matches_any(fqdn)
        if fqdn.startswith("*")
        else (run.registry.service_ports(fqdn) is not None or run.registry.entry_ports(fqdn) is not None)
    )
    if not known:
        run.report(
            dr,
            "Warning",
            "IST0174",
            f"The host {host} defined in the DestinationRule does not match any services in the mesh.",
            ("spec", "host"),
        )
        return
    if run.registry.service_ports(fqdn) is None:
        return  # ServiceEntry or wildcard host: no pods of ours to select
    app, svc_ns = fqdn.split(".")[0], fqdn.split(".")[1]
    for i, subset in enumerate(spec.get("subsets") or []):
        labels = subset.get("labels") or {}
        if labels and not run.pods_matching({"app": app, **labels}, svc_ns):
            run.report(
                dr,
                "Error",
                "IST0173",
                f"The Subset {subset.get('name')} defined in the DestinationRule does "
                "not select any pods. Which may lead to 503 UH (NoHealthyUpstream).",
                ("spec", "subsets", i),
            )


def _selectors(run: _Run) -> None:
    for kind, (outer, inner) in _SELECTOR_PATHS.items():
        for r in run.by_kind.get(kind, []):
            labels = ((r["spec"].get(outer) or {}).get(inner)) or {}
            if not labels:
                continue
            ns = r["metadata"]["namespace"]
            if not run.pods_matching(labels, None if ns == ROOT_NAMESPACE else ns):
                shown = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
                run.report(
                    r,
                    "Warning",
                    "IST0127",
                    f"No matching workloads for this resource with the following labels: {shown}",
                    ("spec", outer, inner),
                )
    for gw in run.by_kind.get("Gateway", []):
        labels = gw["spec"].get("selector") or {}
        if labels and not run.pods_matching(labels, None):
            shown = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            run.report(gw, "Error", "IST0101", f'Referenced selector not found: "{shown}"', ("spec", "selector"))


def _pods(run: _Run) -> None:
    for pod in run.pods:
        if pod.get("sidecar", True) is False:
            ns = pod.get("namespace", "tutorial")
            run.problems.append(
                Problem(
                    "Warning",
                    "IST0103",
                    f"The pod {ns}/{pod['name']} is missing the Istio proxy. This can often be "
                    "resolved by restarting or redeploying the workload.",
                    kind="Pod",
                    namespace=ns,
                    name=pod["name"],
                )
            )


def analyze(
    resources: list[dict[str, Any]],
    services: Mapping[str, Mapping[str, int]],
    pods: list[dict[str, Any]],
    *,
    origins: Mapping[tuple[str, str, str], Origin] | None = None,
    profile: str = "current",
) -> list[Problem]:
    """Run the analyzers over normalised ``resources`` (see :func:`validate_documents`).

    ``services`` maps a service name (or ``name.namespace``) to its ports, ``pods`` lists workloads
    as ``{"name", "labels", "namespace", "sidecar"}``; ``origins`` (``ValidationReport.origins``)
    adds file:line to each message. Problems come sorted: errors, then warnings, then infos.
    """
    run = _Run(resources, services, pods, origins or {})
    run.index(_schema(run, profile))
    mesh_hosts: dict[str, list[dict[str, Any]]] = {}
    for vs in run.by_kind.get("VirtualService", []):
        _virtual_service(run, vs, mesh_hosts)
    _conflicting_hosts(run, mesh_hosts)
    for dr in run.by_kind.get("DestinationRule", []):
        _destination_rule(run, dr)
    _selectors(run)
    _pods(run)
    unique = {(p.level, p.code, p.kind, p.namespace, p.name, p.field, p.message): p for p in run.problems}
    return sorted(
        unique.values(),
        key=lambda p: (LEVELS.index(p.level), p.code, p.kind, p.namespace, p.name, p.line or 0, p.message),
    )
