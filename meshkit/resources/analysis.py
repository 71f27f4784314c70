"""``istioctl analyze`` for the lab: Istio's analyzers, codes and message templates, never aborting.

The inputs are a set of objects, the union of a running mesh's and some files', or the files alone
(``--use-kube=false``): Istio resources, and the Kubernetes Services, Pods and Namespaces the
analyzers look at. An invalid document is one ``IST0106`` and the analysis goes on without it.
The rules are Istio's (``pkg/config/analysis/analyzers``), in meshkit's own words:

* destinations (IST0101 host / host:port / subset, IST0112) are looked up in the ServiceEntries
  and Services *visible* from the VirtualService's namespace (``exportTo``, the
  ``networking.istio.io/exportTo`` annotation); a short host is ``<host>.<vs namespace>.svc.cluster.local``;
* gateways (IST0101, IST0132): a VirtualService warns for each bound gateway that none of its
  hosts matches; mesh hosts claimed twice (IST0109); a Gateway whose selector picks no pod (IST0101);
* subsets (IST0173: no pod carries the subset's labels), DestinationRule hosts (IST0174), TLS
  without ``caCertificates`` (IST0128), Service port names (IST0118), injection (IST0102 and
  IST0103, pods that opted out are fine), Telemetry access logs without a provider (IST0157),
  negative status conditions (IST0171), AuthorizationPolicy selectors (IST0127);
* the webhook's warnings (IST0130/IST0131 unreachable rules and matches) come from validation.

Example::

    >>> vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
    ...       "metadata": {"name": "recommendation", "namespace": "tutorial"},
    ...       "spec": {"hosts": ["recommendation"], "http": [{"route": [
    ...           {"destination": {"host": "recommendation", "subset": "version-v3"}}]}]}}
    >>> [p.message for p in analyze([vs], {"recommendation": {"http": 8080}}, [])]
    ['Referenced host+subset in destinationrule not found: "recommendation+version-v3"']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from meshkit.resources.gatewayapi import is_gateway_api
from meshkit.resources.kinds import canonical_key, key_kind
from meshkit.resources.model import LEVELS, Document, Origin, Path, Problem, format_path
from meshkit.resources.validation import validate_document

ROOT_NAMESPACE = "istio-system"
DOMAIN = "svc.cluster.local"
EXPORT_TO = "networking.istio.io/exportTo"
INJECT = "sidecar.istio.io/inject"
_SCHEMA_PREFIX = {"IST0106": "Schema validation error: ", "IST0133": "Schema validation warning: "}
_FQDN = re.compile(r"^(.+)\.(.+)\.svc\.cluster\.local$")
_PROTOCOLS = {"http", "http2", "https", "grpc", "grpc-web", "tcp", "tls", "mongo", "mysql", "redis", "udp",
              "http_proxy", "h2c", "sctp"}
_CONDITIONS = {
    "Service": {"istio.io/WaypointBound": "False"},
    "ServiceEntry": {"istio.io/WaypointBound": "False"},
    "WorkloadEntry": {"istio.io/WaypointBound": "False"},
    "AuthorizationPolicy": {"ZtunnelAccepted": "False", "WaypointAccepted": "False"},
}
_KUBE = ("Service", "Pod", "Namespace", "Deployment", "ServiceAccount")


def to_fqdn(namespace: str, host: str) -> str:
    """Istio's ``ConvertHostToFQDN``: only a name without a dot (and no wildcard) is qualified."""
    return host if host.startswith("*") or "." in host else f"{host}.{namespace}.{DOMAIN}"


def _name_of_host(namespace: str, host: str) -> tuple[str, str]:
    """``GetResourceNameFromHost``: (namespace, name) of an FQDN, else the host in ``namespace``."""
    m = _FQDN.match(host)
    return (m.group(2), m.group(1)) if m else (namespace, host)


def host_matches(a: str, b: str) -> bool:
    """Istio's ``host.Name.Matches``: wildcards on either side."""
    if a == b:
        return True
    if a.startswith("*") and b.startswith("*"):
        return a[1:].endswith(b[1:]) or b[1:].endswith(a[1:])
    if a.startswith("*"):
        return b.endswith(a[1:]) or a == "*"
    if b.startswith("*"):
        return a.endswith(b[1:]) or b == "*"
    return False


def _selector_string(labels: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _selects(labels: Mapping[str, Any], target: Mapping[str, Any]) -> bool:
    return all(target.get(k) == v for k, v in labels.items())


class _Run:
    """One analysis: the objects, their origins, and the problems found so far."""

    def __init__(self, origins: Mapping[tuple[str, str, str], Origin]) -> None:
        self.origins = origins
        self.by_kind: dict[str, list[dict[str, Any]]] = {}
        self.problems: list[Problem] = []
        self.hosts: dict[str, dict[str, Any]] = {}  # "<scope>/<fqdn>" -> {"ports": [...], "selector": {...}}

    def add(self, obj: dict[str, Any]) -> None:
        self.by_kind.setdefault(key_kind(obj), []).append(obj)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return self.by_kind.get(kind, [])

    def report(self, obj: dict[str, Any], level: str, code: str, message: str, path: Path = ()) -> None:
        kind, ns, name = canonical_key(obj)
        if kind == "Namespace":
            ns = ""
        origin = self.origins.get((kind, ns or "tutorial", name)) or self.origins.get((kind, ns, name))
        self.problems.append(Problem(
            level, code, message, source=origin.source if origin else "", index=origin.index if origin else 0,
            kind=str(obj.get("kind") or kind), namespace=ns, name=name, field=format_path(path),
            line=origin.line_of(path) if origin else None,
        ))

    # service registry as the analyzers see it (ServiceEntries and Services, per exportTo scope) -----
    def index_hosts(self) -> None:
        for se in self.of("ServiceEntry"):
            ns, spec = se["metadata"]["namespace"], se["spec"]
            entry = {"ports": [int(p.get("number", 0)) for p in spec.get("ports") or []],
                     "selector": (spec.get("workloadSelector") or {}).get("labels") or {}}
            export = spec.get("exportTo") or ["*"]
            for h in spec.get("hosts") or []:
                for scope in (["*"] if "*" in export else [ns if e == "." else e for e in export]):
                    self.hosts[f"{scope}/{to_fqdn(ns, h)}"] = entry
        for svc in self.of("Service"):
            meta = svc["metadata"]
            ns = meta.get("namespace", "tutorial")
            ports = [int(p.get("port", 0)) for p in (svc.get("spec") or {}).get("ports") or [] if isinstance(p, dict)]
            entry = {"ports": ports, "selector": {}}
            anno = str((meta.get("annotations") or {}).get(EXPORT_TO, "")).strip()
            scopes = [ns if s.strip() == "." else s.strip() for s in anno.split(",")] if anno else ["*"]
            for scope in scopes:
                self.hosts[f"{scope}/{to_fqdn(ns, meta['name'])}"] = entry

    def destination(self, source_ns: str, export_to: list[str], host: str) -> dict[str, Any] | None:
        """Istio's ``GetDestinationHost``: the service entry (or Service) ``host`` names, if visible."""
        fqdn = to_fqdn(source_ns, host)
        if (found := self.hosts.get(f"*/{fqdn}")) is not None:
            return found
        for scope in export_to or [source_ns]:
            if (found := self.hosts.get(f"{source_ns if scope == '.' else scope}/{fqdn}")) is not None:
                return found
        for key, entry in self.hosts.items():
            scope, _, se_host = key.partition("/")
            if se_host.startswith("*") and scope in ("*", source_ns) and host.lstrip("*").endswith(se_host[1:]):
                return entry
        return None

    def pods(self) -> list[dict[str, Any]]:
        return self.of("Pod")


# -- virtual services ----------------------------------------------------------------------------
def _destinations(spec: Mapping[str, Any]) -> Iterable[tuple[dict[str, Any], Path, str]]:
    """(destination, where its messages point, what) for every route destination, then the HTTP
    mirrors, in Istio's order. Messages point at the destination's ``host`` line, as Istio's do
    (``mirrors`` at the resource: Istio's line lookup for them names a field that does not exist)."""
    for section in ("tcp", "tls", "http"):
        for i, rule in enumerate(spec.get(section) or []):
            for j, rd in enumerate(rule.get("route") or []):
                yield rd.get("destination") or {}, ("spec", section, i, "route", j, "destination", "host"), "host"
    for i, rule in enumerate(spec.get("http") or []):
        if rule.get("mirror"):
            yield rule["mirror"], ("spec", "http", i, "mirror", "host"), "mirror host"
        for m in rule.get("mirrors") or []:
            yield m.get("destination") or {}, (), "mirror host"


def _destination_hosts(run: _Run, vs: dict[str, Any]) -> None:
    ns, spec = vs["metadata"]["namespace"], vs["spec"]
    for dest, path, what in _destinations(spec):
        host = str(dest.get("host", ""))
        entry = run.destination(ns, spec.get("exportTo") or [], host)
        if entry is None:
            run.report(vs, "Error", "IST0101", f'Referenced {what} not found: "{host}"', path)
            continue
        number = (dest.get("port") or {}).get("number")
        if number is None:
            if len(entry["ports"]) > 1:
                ports = " ".join(str(p) for p in entry["ports"])
                run.report(vs, "Error", "IST0112", f'This VirtualService routes to a service "{host}" that exposes '
                           f"multiple ports [{ports}]. Specifying a port in the destination is required to "
                           "disambiguate.", path)
        elif int(number) not in entry["ports"]:
            run.report(vs, "Error", "IST0101", f'Referenced host:port not found: "{host}:{number}"', path)


def _destination_subsets(run: _Run, vs: dict[str, Any]) -> None:
    known = {(*_name_of_host(dr["metadata"]["namespace"], dr["spec"].get("host", "")), s.get("name"))
             for dr in run.of("DestinationRule") for s in dr["spec"].get("subsets") or []}
    ns = vs["metadata"]["namespace"]
    for dest, path, what in _destinations(vs["spec"]):
        subset = dest.get("subset")
        if subset and (*_name_of_host(ns, str(dest.get("host", ""))), subset) not in known:
            ref = "mirror+subset in destinationrule" if what == "mirror host" else "host+subset in destinationrule"
            run.report(vs, "Error", "IST0101", f'Referenced {ref} not found: "{dest.get("host")}+{subset}"', path)


def _gateways(run: _Run, vs: dict[str, Any]) -> None:
    ns, spec = vs["metadata"]["namespace"], vs["spec"]
    hosts = [str(h) for h in spec.get("hosts") or []]
    for k, ref in enumerate(spec.get("gateways") or []):
        if ref == "mesh":
            continue
        gw_ns, _, gw_name = ref.rpartition("/")
        gw_ns = gw_ns or ns
        gateway = next((g for g in run.of("Gateway")
                        if g["metadata"]["name"] == gw_name and g["metadata"]["namespace"] == gw_ns), None)
        if gateway is None:
            run.report(vs, "Error", "IST0101", f'Referenced gateway not found: "{ref}"', ("spec", "gateways", k))
        if not _host_in_gateway(gateway, hosts, ns):
            run.report(vs, "Warning", "IST0132", f"one or more host [{' '.join(hosts)}] defined in VirtualService "
                       f"{ns}/{vs['metadata']['name']} not found in Gateway {gw_ns}/{gw_name}.",
                       ("spec", "gateways", k))


def _host_in_gateway(gateway: dict[str, Any] | None, vs_hosts: list[str], vs_ns: str) -> bool:
    """Any VirtualService host matches any host of the gateway's servers visible from ``vs_ns``."""
    if gateway is None:
        return False
    gw_ns = gateway["metadata"]["namespace"]
    for server in gateway["spec"].get("servers") or []:
        for raw in server.get("hosts") or []:
            scope, _, name = str(raw).rpartition("/")
            scope = gw_ns if scope == "." else scope
            if scope not in ("", "*", vs_ns):
                continue
            if any(host_matches(name, h) for h in vs_hosts):
                return True
    return False


def _conflicting_mesh_hosts(run: _Run) -> None:
    claims: dict[str, list[dict[str, Any]]] = {}
    for vs in run.of("VirtualService"):
        spec, ns = vs["spec"], vs["metadata"]["namespace"]
        if spec.get("gateways") and "mesh" not in spec["gateways"]:
            continue
        export = spec.get("exportTo") or ["*"]
        scopes = ["*"] if "*" in export else sorted({ns if e == "." else e for e in export})
        for scope in scopes:
            for h in spec.get("hosts") or []:
                claims.setdefault(f"{scope}/{to_fqdn(ns, h)}", []).append(vs)
    reported: set[tuple[str, str]] = set()
    for scoped, claimants in claims.items():
        scope, _, fqdn = scoped.partition("/")
        everyone = list(claimants)
        if scope != "*":
            everyone += [v for key, vs_list in claims.items() if key.startswith("*/")
                         and host_matches(fqdn, key[2:]) for v in vs_list]
        if len(everyone) < 2:
            continue
        names = ",".join(sorted(f"{v['metadata']['namespace']}/{v['metadata']['name']}" for v in everyone))
        for vs in everyone:
            key = (vs["metadata"]["namespace"], vs["metadata"]["name"])
            if key in reported:
                continue
            reported.add(key)
            run.report(vs, "Error", "IST0109", f"The VirtualServices {names} associated with mesh gateway define the "
                       f"same host {scoped} which can lead to undefined behavior. This can be fixed by merging the "
                       "conflicting VirtualServices into a single resource.", ("metadata", "name"))


# -- destination rules ---------------------------------------------------------------------------
def _destination_rules(run: _Run) -> None:
    for dr in run.of("DestinationRule"):
        spec, ns = dr["spec"], dr["metadata"]["namespace"]
        entry = run.destination(ns, spec.get("exportTo") or [], str(spec.get("host", "")))
        if entry is None:
            run.report(dr, "Warning", "IST0174", f"The host {spec.get('host')} defined in the DestinationRule does "
                       "not match any services in the mesh.")
        else:
            for subset in spec.get("subsets") or []:
                wanted = {**entry["selector"], **(subset.get("labels") or {})}
                if not any(_selects(wanted, p["metadata"].get("labels") or {}) for p in run.pods()):
                    run.report(dr, "Error", "IST0173", f"The Subset {subset.get('name')} defined in the "
                               "DestinationRule does not select any pods. Which may lead to 503 UH "
                               "(NoHealthyUpstream).")
        _ca_certificates(run, dr)


def _ca_certificates(run: _Run, dr: dict[str, Any]) -> None:
    spec, ns, name = dr["spec"], dr["metadata"]["namespace"], dr["metadata"]["name"]
    policy = spec.get("trafficPolicy") or {}

    def unverified(tls: Mapping[str, Any]) -> bool:
        return (tls.get("mode") in ("SIMPLE", "MUTUAL") and not tls.get("caCertificates")
                and not (tls.get("credentialName") and spec.get("workloadSelector")))

    tls = policy.get("tls") or {}
    if unverified(tls):
        run.report(dr, "Warning", "IST0128", f"DestinationRule {ns}/{name} in namespace {ns} has TLS mode set to "
                   f"{tls['mode']} but no caCertificates are set to validate server identity for host: "
                   f"{spec.get('host')}")
    for port in policy.get("portLevelSettings") or []:
        tls = port.get("tls") or {}
        if unverified(tls):
            number = (port.get("port") or {}).get("number", 0)
            run.report(dr, "Warning", "IST0129", f"DestinationRule {ns}/{name} in namespace {ns} has TLS mode set to "
                       f"{tls['mode']} but no caCertificates are set to validate server identity for host: "
                       f"{spec.get('host')} at port number:{number}")


# -- workloads, services, namespaces -------------------------------------------------------------
def _gateway_selectors(run: _Run) -> None:
    for gw in run.of("Gateway"):
        selector = gw["spec"].get("selector") or {}
        if not any(_selects(selector, p["metadata"].get("labels") or {}) for p in run.pods()):
            first = sorted(selector)[:1]
            run.report(gw, "Error", "IST0101", f'Referenced selector not found: "{_selector_string(selector)}"',
                       ("spec", "selector", *first))


def _authorization_selectors(run: _Run) -> None:
    by_ns: dict[str, list[dict[str, Any]]] = {}
    for pod in run.pods():
        by_ns.setdefault(pod["metadata"].get("namespace", "tutorial"), []).append(pod["metadata"].get("labels") or {})
    for ap in run.of("AuthorizationPolicy"):
        ns = ap["metadata"]["namespace"]
        selector = (ap["spec"].get("selector") or {}).get("matchLabels")
        if ns == ROOT_NAMESPACE:
            pools = [labels for group in by_ns.values() for labels in group]
            if selector is not None and not any(_selects(selector, lb) for lb in pools):
                run.report(ap, "Warning", "IST0127", "No matching workloads for this resource with the following "
                           f"labels: {_selector_string(selector)}")
        elif selector is None:
            if not by_ns.get(ns):
                run.report(ap, "Warning", "IST0127", "No matching workloads for this resource with the following "
                           "labels: ")
        elif not any(_selects(selector, lb) for lb in by_ns.get(ns, [])):
            run.report(ap, "Warning", "IST0127", "No matching workloads for this resource with the following labels: "
                       f"{_selector_string(selector)}")


def _injection(run: _Run) -> None:
    injected: set[str] = set()
    for ns in run.of("Namespace"):
        name, labels = ns["metadata"]["name"], ns["metadata"].get("labels") or {}
        if name == ROOT_NAMESPACE or labels.get("istio.io/dataplane-mode") == "ambient":
            continue
        value = labels.get("istio-injection")
        if value is None and "istio.io/rev" not in labels:
            run.report(ns, "Info", "IST0102", "The namespace is not enabled for Istio injection. Run 'kubectl label "
                       f"namespace {name} istio-injection=enabled' to enable it, or 'kubectl label namespace {name} "
                       "istio-injection=disabled' to explicitly mark it as not needing injection.",
                       ("metadata", "name"))
        elif value == "enabled":
            injected.add(name)
    for pod in run.pods():
        meta = pod["metadata"]
        if meta.get("namespace", "tutorial") not in injected:
            continue
        opt = (meta.get("annotations") or {}).get(INJECT, "")
        opt = (meta.get("labels") or {}).get(INJECT, opt)
        spec = pod.get("spec") or {}
        if str(opt).lower() == "false" or spec.get("hostNetwork"):
            continue  # opted out: nothing is missing
        containers = [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
        if not any(isinstance(c, dict) and c.get("name") == "istio-proxy" for c in containers):
            run.report(pod, "Warning", "IST0103", f"The pod {meta.get('namespace', 'tutorial')}/{meta['name']} is "
                       "missing the Istio proxy. This can often be resolved by restarting or redeploying the workload.")


def _port_names(run: _Run) -> None:
    for svc in run.of("Service"):
        meta, spec = svc["metadata"], svc.get("spec") or {}
        if meta.get("namespace") == ROOT_NAMESPACE and (meta.get("labels") or {}).get("app") == "istiod":
            continue
        for i, port in enumerate(spec.get("ports") or []):
            if not isinstance(port, dict):
                continue
            name = str(port.get("name", ""))
            if str(port.get("protocol", "TCP")).upper() == "UDP" or _known_protocol(port.get("appProtocol")):
                continue
            if _known_protocol(name.split("-", 1)[0]) or _known_protocol(name):
                continue
            target = port.get("targetPort", 0)
            run.report(svc, "Info", "IST0118", f"Port name {name} (port: {port.get('port')}, targetPort: {target}) "
                       "doesn't follow the naming convention of Istio port.", ("spec", "ports", i, "port"))


def _known_protocol(value: Any) -> bool:
    return isinstance(value, str) and value.lower() in _PROTOCOLS


def _telemetry_providers(run: _Run) -> None:
    for tel in run.of("Telemetry"):
        for logging in tel["spec"].get("accessLogging") or []:
            if logging.get("disabled") is True or logging.get("providers"):
                continue
            run.report(tel, "Warning", "IST0157", f"The Telemetry {tel['metadata']['name']} in namespace "
                       f"\"{tel['metadata']['namespace']}\" with empty providers will be ignored.")


def _conditions(run: _Run, statuses: Mapping[tuple[str, str, str], Any]) -> None:
    for kind, negative in _CONDITIONS.items():
        for obj in run.of(kind):
            status = obj.get("status") or statuses.get(canonical_key(obj)) or {}
            for cond in status.get("conditions") or [] if isinstance(status, dict) else []:
                if not isinstance(cond, dict):
                    continue
                kind_type, state, reason = cond.get("type"), str(cond.get("status")), cond.get("reason", "")
                partial = kind == "AuthorizationPolicy" and kind_type == "WaypointAccepted" and \
                    reason == "PartiallyInvalid"
                if negative.get(str(kind_type)) == state or partial:
                    run.report(obj, "Warning", "IST0171", "A condition with a negative status is present: "
                               f"type={kind_type}, reason={reason}, message={cond.get('message', '')}.")


def _gateway_api(run: _Run, statuses: Mapping[tuple[str, str, str], Any]) -> None:
    from meshkit.resources.gatewayapi.analysis import CONFLICT, findings

    suffix = ".gateway.networking.k8s.io"
    gateway_api = [o for kind, objs in run.by_kind.items() if kind.endswith(suffix) for o in objs]
    if not gateway_api:
        return
    others = [o for kind, objs in run.by_kind.items() if not kind.endswith(suffix) for o in objs]
    for obj, code, message in findings(gateway_api, others, statuses):
        run.report(obj, "Error" if code == CONFLICT else "Warning", code, message)


# -- the analysis --------------------------------------------------------------------------------
def _old_style(services: Mapping[str, Mapping[str, int]], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Services as ``{"name" or "name.ns": {port name: number}}`` and pods as flat dicts, as objects."""
    out: list[dict[str, Any]] = []
    for key, ports in services.items():
        name, _, ns = key.partition(".")
        out.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns or "tutorial"},
                    "spec": {"ports": [{"name": n, "port": p} for n, p in ports.items()], "selector": {"app": name}}})
    for p in pods:
        containers = [{"name": "app"}] + ([{"name": "istio-proxy"}] if p.get("sidecar", True) else [])
        out.append({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": p["name"], "namespace": p.get("namespace", "tutorial"),
                                 "labels": dict(p.get("labels") or {}),
                                 "annotations": dict(p.get("annotations") or {})},
                    "spec": {"containers": containers}})
    return out


def _valid(run: _Run, objects: list[Any], profile: str, statuses: dict[tuple[str, str, str], Any]) -> list[Any]:
    """Schema validation of every object: problems are reported (IST0106...), invalid ones dropped."""
    valid = []
    for obj in objects:
        if not isinstance(obj, dict):
            continue
        if obj.get("kind") == "Pod" and str(obj.get("apiVersion")) == "v1":
            valid.append(obj)  # pods are only looked at (labels, containers), never applied
            continue
        api = str(obj.get("apiVersion", ""))
        if obj.get("kind") not in _KUBE and "istio.io" not in api.split("/")[0] and not is_gateway_api(obj):
            continue  # kinds no analyzer reads (ConfigMaps...) are passed over, as istioctl does
        key = canonical_key(obj)
        origin = run.origins.get(key)
        doc = Document(origin.source if origin else "", origin.index if origin else 0, obj,
                       origin.line if origin else 1, origin.lines if origin else {})
        normalised, problems = validate_document(doc, profile, key[1])
        for p in problems:
            run.problems.append(Problem(p.level, p.code, _SCHEMA_PREFIX.get(p.code, "") + p.message, p.source,
                                        p.index, p.kind, p.namespace, p.name, p.field, p.line if origin else None))
        if normalised is not None:
            created = (obj.get("metadata") or {}).get("creationTimestamp")
            if (created and is_gateway_api(normalised)) or (normalised.get("kind") == "VirtualService" and created):
                normalised["metadata"]["creationTimestamp"] = created  # who is older decides a host clash
            if isinstance(obj.get("status"), dict):
                statuses[canonical_key(normalised)] = obj["status"]
            valid.append(normalised)
    return valid


def analyze(
    resources: list[dict[str, Any]],
    services: Mapping[str, Mapping[str, int]] | None = None,
    pods: list[dict[str, Any]] | None = None,
    *,
    origins: Mapping[tuple[str, str, str], Origin] | None = None,
    profile: str = "current",
    namespace: str | None = None,
) -> list[Problem]:
    """Run Istio's analyzers over ``resources`` (Istio resources, Services, Pods, Namespaces).

    ``services`` (``{"recommendation": {"http": 8080}}``) and ``pods`` (``{"name", "labels",
    "namespace", "sidecar"}``) are a shorthand for Service and Pod objects; ``origins``
    (``ValidationReport.origins``) adds file:line to each message; ``namespace`` keeps only the
    problems about that namespace (and the cluster-scoped ones), as ``istioctl analyze -n`` does.
    Problems come sorted: errors, then warnings, then infos.
    """
    run = _Run(origins or {})
    statuses: dict[tuple[str, str, str], Any] = {}
    objects = [*resources, *_old_style(services or {}, pods or [])]
    for obj in _valid(run, objects, profile, statuses):
        run.add(obj)
    run.index_hosts()
    for vs in run.of("VirtualService"):
        _destination_hosts(run, vs)
        _destination_subsets(run, vs)
        _gateways(run, vs)
    _conflicting_mesh_hosts(run)
    _destination_rules(run)
    _gateway_selectors(run)
    _authorization_selectors(run)
    _injection(run)
    _port_names(run)
    _telemetry_providers(run)
    _conditions(run, statuses)
    _gateway_api(run, statuses)
    # like istioctl -n: that namespace's resources, the control plane's and the cluster-scoped ones
    problems = [p for p in run.problems if namespace is None
                or (p.name if p.kind == "Namespace" else p.namespace) in ("", namespace, ROOT_NAMESPACE)]
    unique = {(p.level, p.code, p.kind, p.namespace, p.name, p.field, p.message): p for p in problems}
    return sorted(unique.values(),
                  key=lambda p: (LEVELS.index(p.level), p.code, p.kind, p.namespace, p.name, p.line or 0, p.message))
