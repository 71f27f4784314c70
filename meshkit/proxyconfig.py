"""``istioctl proxy-config`` / ``proxy-status`` / ``x describe pod``, read from Envoy's own JSON.

Every function here takes what a real Envoy admin port returns (``/config_dump`` and
``/clusters?format=json``), so the tables are the same whether the dump came from a local proxy
or from an istio-proxy container on a cluster. Columns, sort orders and cell wording follow
istioctl's writers (``istioctl/pkg/writer/envoy/configdump``).

Example::

    dump = mesh.config_dump("preference-v1-6d5f8b7c9-abcde")
    print(render(cluster_rows(dump, fqdn="recommendation"), CLUSTER_COLUMNS))
"""

from __future__ import annotations

import base64
import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

CLUSTER_COLUMNS = ("SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE")
LISTENER_COLUMNS = ("ADDRESSES", "PORT", "MATCH", "DESTINATION")
ROUTE_COLUMNS = ("NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE")
ENDPOINT_COLUMNS = ("ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER")
SECRET_COLUMNS = ("RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER", "NOT BEFORE")
STATUS_COLUMNS = ("NAME", "CLUSTER", "ISTIOD", "VERSION", "SUBSCRIBED TYPES")
STATUS_VERBOSE_COLUMNS = ("NAME", "CLUSTER", "CDS", "ECDS", "EDS", "LDS", "RDS", "ISTIOD", "VERSION")
KINDS = ("clusters", "listeners", "routes", "endpoints", "secret", "all", "bootstrap")
# istioctl's tabwriter padding per table (clusters, routes, endpoints, secrets: 5; listeners: 1)
PADDING = {"clusters": 5, "listeners": 1, "routes": 5, "endpoints": 5, "secret": 5}


def render(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], padding: int = 5) -> str:
    """A Go tabwriter-style table: each column as wide as its widest cell plus ``padding``."""
    table = [list(columns)] + [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    lines = []
    for row in table:
        cells = [cell.ljust(widths[i] + padding) if i < len(row) - 1 else cell for i, cell in enumerate(row)]
        lines.append("".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def _section(dump: Mapping[str, Any], name: str) -> dict[str, Any]:
    for cfg in dump.get("configs", []):
        if str(cfg.get("@type", "")).endswith("." + name):
            return dict(cfg)
    return {}


def _istio_config(meta: Mapping[str, Any] | None) -> str:
    """``/apis/networking.istio.io/v1/namespaces/tutorial/destination-rule/x`` → ``x.tutorial``."""
    path = str(((meta or {}).get("filter_metadata") or {}).get("istio", {}).get("config", ""))
    if not path:
        return ""
    if path.startswith("/apis/networking.istio.io/"):
        pieces = path.split("/")
        return f"{pieces[7]}.{pieces[5]}" if len(pieces) == 8 else ""
    return "<unknown>"


# clusters -------------------------------------------------------------------------------------------


def clusters(dump: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every Cluster of the dump (dynamic then static), sorted as istioctl sorts them."""
    section = _section(dump, "ClustersConfigDump")
    found = [c["cluster"] for c in section.get("dynamic_active_clusters", []) if c.get("cluster")]
    found += [c["cluster"] for c in section.get("static_clusters", []) if c.get("cluster")]

    def key(c: Mapping[str, Any]) -> tuple[str, str, int, str]:
        parts = str(c["name"]).split("|")
        if len(parts) > 3:
            return parts[3], parts[2], int(parts[1] or 0), parts[0]
        return str(c["name"]), "", 0, ""

    return sorted(found, key=key)


def _cluster_ok(name: str, fqdn: str = "", port: int = 0, subset: str = "", direction: str = "") -> bool:
    if fqdn and fqdn not in name:
        return False
    if direction and direction not in name:
        return False
    if subset and subset not in name:
        return False
    return not (port and f"|{port}|" not in name)


def cluster_rows(dump: Mapping[str, Any], fqdn: str = "", port: int = 0, subset: str = "",
                 direction: str = "") -> list[dict[str, Any]]:
    """``istioctl proxy-config clusters`` rows (``--fqdn`` is a substring, as in istioctl)."""
    rows = []
    for c in clusters(dump):
        name = str(c["name"])
        if not _cluster_ok(name, fqdn, port, subset, direction):
            continue
        parts = name.split("|")
        if len(parts) > 3:
            row = {"SERVICE FQDN": parts[3], "PORT": parts[1], "SUBSET": parts[2] or "-", "DIRECTION": parts[0]}
        else:
            row = {"SERVICE FQDN": name, "PORT": "-", "SUBSET": "-", "DIRECTION": "-"}
        row["TYPE"] = c.get("type", "")
        row["DESTINATION RULE"] = _istio_config(c.get("metadata"))
        rows.append(row)
    return rows


def cluster_resources(dump: Mapping[str, Any], fqdn: str = "", port: int = 0, subset: str = "",
                      direction: str = "") -> list[dict[str, Any]]:
    return [c for c in clusters(dump) if _cluster_ok(str(c["name"]), fqdn, port, subset, direction)]


# listeners ------------------------------------------------------------------------------------------


def listeners(dump: Mapping[str, Any]) -> list[dict[str, Any]]:
    section = _section(dump, "ListenersConfigDump")
    return [d["active_state"]["listener"] for d in section.get("dynamic_listeners", [])
            if (d.get("active_state") or {}).get("listener")]


def _listener_port(lst: Mapping[str, Any]) -> int:
    return int(((lst.get("address") or {}).get("socket_address") or {}).get("port_value", 0))


def _listener_address(lst: Mapping[str, Any]) -> str:
    return str(((lst.get("address") or {}).get("socket_address") or {}).get("address", ""))


_APP_PROTOCOLS = {
    ("http/1.0", "http/1.1", "h2c", "istio-http/1.0", "istio-http/1.1", "istio-h2"): "App: HTTP TLS",
    ("istio", "istio-http/1.0", "istio-http/1.1", "istio-h2"): "App: Istio HTTP Plain",
    ("istio-peer-exchange", "istio"): "App: TCP TLS",
    ("http/1.0", "http/1.1", "h2c"): "App: HTTP",
}


def _chain_match(m: Mapping[str, Any] | None) -> str:
    m = m or {}
    parts = []
    if m.get("server_names"):
        parts.append("SNI: " + ",".join(m["server_names"]))
    if m.get("transport_protocol"):
        parts.append(f"Trans: {m['transport_protocol']}")
    if m.get("application_protocols"):
        protos = tuple(m["application_protocols"])
        parts.append(_APP_PROTOCOLS.get(protos, "App: " + ",".join(protos)))
    port = f":{m['destination_port']}" if m.get("destination_port") else ""
    if m.get("prefix_ranges"):
        ranges = ",".join(f"{p['address_prefix']}/{p.get('prefix_len', 0)}" for p in m["prefix_ranges"])
        parts.append(f"Addr: {ranges}{port}")
    elif port:
        parts.append(f"Addr: *{port}")
    return "; ".join(parts) or "ALL"


def _describe_match(match: Mapping[str, Any]) -> str:
    conds = []
    if match.get("prefix"):
        conds.append(f"{match['prefix']}*")
    if match.get("path_separated_prefix"):
        conds.append(f"PathPrefix:{match['path_separated_prefix']}")
    if match.get("path"):
        conds.append(str(match["path"]))
    if match.get("safe_regex"):
        conds.append(f"regex {match['safe_regex'].get('regex', '')}")
    return " ".join(conds)


def _inline_route(rc: Mapping[str, Any]) -> str:
    vhosts = rc.get("virtual_hosts") or []
    if len(vhosts) == 1 and vhosts[0].get("domains") == ["*"] and len(vhosts[0].get("routes") or []) == 1:
        r = vhosts[0]["routes"][0]
        cluster = (r.get("route") or {}).get("cluster")
        if r.get("match", {}).get("prefix") == "/" and cluster:
            return cluster if "Cluster" in cluster else f"Cluster: {cluster}"
    described = []
    for vh in vhosts:
        routes = ", ".join(_describe_match(r.get("match") or {}) for r in vh.get("routes") or [])
        domains = "" if vh.get("domains") == ["*"] else "/".join(vh.get("domains") or [])
        described.append(f"{domains} {routes}".strip())
    return "Inline Route: " + "; ".join(described)


def _chain_destination(filters: Iterable[Mapping[str, Any]]) -> str:
    for f in filters:
        typed = f.get("typed_config") or {}
        if f.get("name") == "envoy.filters.network.http_connection_manager":
            if typed.get("route_config") is not None:
                return _inline_route(typed["route_config"])
            if (typed.get("rds") or {}).get("route_config_name"):
                return f"Route: {typed['rds']['route_config_name']}"
            return "HTTP"
        if f.get("name") == "envoy.filters.network.tcp_proxy":
            cluster = str(typed.get("cluster", ""))
            if cluster == "BlackHoleCluster":
                continue
            return cluster if "Cluster" in cluster else f"Cluster: {cluster}"
    return "Non-HTTP/Non-TCP"


def listener_rows(dump: Mapping[str, Any], port: int = 0, address: str = "") -> list[dict[str, Any]]:
    """``istioctl proxy-config listeners`` rows (verbose: one per filter chain)."""
    rows = []
    chosen = [lst for lst in listeners(dump)
              if (not port or _listener_port(lst) == port) and (not address or _listener_address(lst) == address)]
    for lst in sorted(chosen, key=lambda x: (_listener_port(x), _listener_address(x))):
        chains = list(lst.get("filter_chains") or [])
        if lst.get("default_filter_chain"):
            chains.append(lst["default_filter_chain"])
        matches = [(_chain_match(fc.get("filter_chain_match")), _chain_destination(fc.get("filters") or []))
                   for fc in chains]
        for match, dest in sorted(matches, key=lambda md: md[1], reverse=True):
            rows.append({"ADDRESSES": _listener_address(lst), "PORT": str(_listener_port(lst)),
                         "MATCH": match, "DESTINATION": dest})
    return rows


def listener_resources(dump: Mapping[str, Any], port: int = 0, address: str = "") -> list[dict[str, Any]]:
    return [lst for lst in listeners(dump)
            if (not port or _listener_port(lst) == port) and (not address or _listener_address(lst) == address)]


# routes ---------------------------------------------------------------------------------------------


def route_configs(dump: Mapping[str, Any]) -> list[dict[str, Any]]:
    section = _section(dump, "RoutesConfigDump")
    found = [d["route_config"] for d in section.get("dynamic_route_configs", []) if d.get("route_config")]
    found += [d["route_config"] for d in section.get("static_route_configs", []) if d.get("route_config")]
    numeric = sorted((rc for rc in found if str(rc.get("name", "")).isdigit()), key=lambda rc: int(rc["name"]))
    return numeric + [rc for rc in found if not str(rc.get("name", "")).isdigit()]


def _unexpand(domains: Sequence[str]) -> list[str]:
    unique = set(domains)
    drop = set()
    for d in domains:
        for suffix in (".svc.cluster.local", ".svc"):
            stripped = d.removesuffix(suffix)
            if stripped != d and stripped in unique:
                drop.add(d)
    return [d for d in domains if d not in drop]


def describe_domains(domains: Sequence[str]) -> str:
    """istioctl's DOMAINS cell: port-less names, expanded duplicates dropped, two then ``+ N more...``."""
    if not domains:
        return ""
    if len(domains) == 1:
        return domains[0]
    bare = _unexpand([d for d in domains if ":" not in d or (d.count(":") > 2 and d.endswith("]"))])
    if len(bare) > 2:
        return f"{', '.join(bare[:2])} + {len(bare) - 2} more..."
    return ", ".join(bare)


def route_rows(dump: Mapping[str, Any], name: str = "") -> list[dict[str, Any]]:
    """``istioctl proxy-config routes`` rows (passthrough routes are left out, as istioctl does)."""
    rows = []
    for rc in route_configs(dump):
        if name and rc.get("name") != name:
            continue
        for vh in rc.get("virtual_hosts") or []:
            base = {"NAME": rc.get("name", ""), "VHOST NAME": vh.get("name", ""),
                    "DOMAINS": describe_domains(vh.get("domains") or [])}
            for r in vh.get("routes") or []:
                if (r.get("route") or {}).get("cluster") == "PassthroughCluster":
                    continue
                rows.append({**base, "MATCH": _describe_match(r.get("match") or {}),
                             "VIRTUAL SERVICE": _istio_config(r.get("metadata"))})
            if not vh.get("routes"):
                rows.append({**base, "MATCH": "/*", "VIRTUAL SERVICE": "404"})
    return rows


def route_resources(dump: Mapping[str, Any], name: str = "") -> list[dict[str, Any]]:
    return [rc for rc in route_configs(dump) if not name or rc.get("name") == name]


# endpoints ------------------------------------------------------------------------------------------


def endpoint_rows(clusters_status: Mapping[str, Any], cluster: str = "", address: str = "", port: int = 0,
                  status: str = "") -> list[dict[str, Any]]:
    """``istioctl proxy-config endpoints`` rows from ``/clusters?format=json``; an ejected host
    shows ``HEALTHY`` / ``FAILED``."""
    found = []
    for c in clusters_status.get("cluster_statuses") or []:
        for h in c.get("host_statuses") or []:
            sock = (h.get("address") or {}).get("socket_address") or {}
            addr, p = str(sock.get("address", "")), int(sock.get("port_value", 0))
            health = h.get("health_status") or {}
            eds = str(health.get("eds_health_status", "UNKNOWN"))
            if cluster and cluster.lower() != str(c.get("name", "")).lower():
                continue
            if address and address.lower() != addr.lower():
                continue
            if port and port != p:
                continue
            if status and status.upper() != eds:
                continue
            found.append((addr, p, str(c.get("name", "")), eds, bool(health.get("failed_outlier_check"))))
    found.sort(key=lambda x: (x[0], x[1], x[2]))
    return [{"ENDPOINT": f"{a}:{p}" if p else a, "STATUS": eds, "OUTLIER CHECK": "FAILED" if failed else "OK",
             "CLUSTER": name} for a, p, name, eds, failed in found]


def endpoint_resources(clusters_status: Mapping[str, Any], cluster: str = "") -> list[dict[str, Any]]:
    return [c for c in clusters_status.get("cluster_statuses") or []
            if c.get("host_statuses") and (not cluster or cluster.lower() == str(c.get("name", "")).lower())]


# secrets --------------------------------------------------------------------------------------------


def secret_rows(dump: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``istioctl proxy-config secret`` rows, read from the certificates in the dump."""
    from datetime import UTC, datetime

    from cryptography import x509

    rows = []
    section = _section(dump, "SecretsConfigDump")
    for entry in section.get("dynamic_active_secrets") or []:
        secret = entry.get("secret") or {}
        if "tls_certificate" in secret:
            kind, raw = "Cert Chain", secret["tls_certificate"].get("certificate_chain", {}).get("inline_bytes", "")
        else:
            kind = "CA"
            raw = (secret.get("validation_context") or {}).get("trusted_ca", {}).get("inline_bytes", "")
        row = {"RESOURCE NAME": entry.get("name", ""), "TYPE": kind, "STATUS": "ACTIVE", "VALID CERT": "false",
               "SERIAL NUMBER": "", "NOT AFTER": "", "NOT BEFORE": ""}
        try:
            cert = x509.load_pem_x509_certificate(base64.b64decode(raw))
        except ValueError:
            rows.append(row)
            continue
        now = datetime.now(UTC)
        sans = []
        try:
            ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            sans = [str(u) for u in ext.value.get_values_for_type(x509.UniformResourceIdentifier)]
        except x509.ExtensionNotFound:
            pass
        row.update({
            "VALID CERT": str(cert.not_valid_before_utc <= now < cert.not_valid_after_utc).lower(),
            "SERIAL NUMBER": format(cert.serial_number, "x"),
            "NOT AFTER": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "NOT BEFORE": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "SPIFFE ID": ", ".join(sans),
        })
        rows.append(row)
    return rows


# all ------------------------------------------------------------------------------------------------


def all_tables(dump: Mapping[str, Any], clusters_status: Mapping[str, Any]) -> str:
    """``istioctl proxy-config all``: the tables stacked, names prefixed with their type."""
    out = []
    crow = [{"NAME": f"cluster/{c['SERVICE FQDN']}" if c["PORT"] == "-" else
             f"cluster/{c['DIRECTION']}|{c['PORT']}|{'' if c['SUBSET'] == '-' else c['SUBSET']}|{c['SERVICE FQDN']}",
             **c} for c in cluster_rows(dump)]
    out.append(render(crow, ("NAME", *CLUSTER_COLUMNS)))
    lrow = [{"NAME": "listener/" + _listener_name_for(dump, r), **r} for r in listener_rows(dump)]
    out.append(render(lrow, ("NAME", *LISTENER_COLUMNS), 1))
    rrow = [{**r, "NAME": f"route/{r['NAME']}"} for r in route_rows(dump)]
    out.append(render(rrow, ROUTE_COLUMNS))
    srow = [{**r, "RESOURCE NAME": f"secret/{r['RESOURCE NAME']}"} for r in secret_rows(dump)]
    out.append(render(srow, SECRET_COLUMNS))
    erow = [{"NAME": f"endpoint/{r['ENDPOINT']}", "STATUS": r["STATUS"], "LOCALITY": "", "CLUSTER": r["CLUSTER"]}
            for r in endpoint_rows(clusters_status)]
    out.append(render(erow, ("NAME", "STATUS", "LOCALITY", "CLUSTER")))
    return "\n".join(out)


def _listener_name_for(dump: Mapping[str, Any], row: Mapping[str, Any]) -> str:
    for lst in listeners(dump):
        if str(_listener_port(lst)) == row["PORT"] and _listener_address(lst) == row["ADDRESSES"]:
            return str(lst.get("name", ""))
    return ""


# JSON as istioctl prints it -------------------------------------------------------------------------

_MAP_FIELDS = {"typed_per_filter_config", "typed_extension_protocol_options"}  # map keys, message values


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def camel(value: Any, map_keys: bool = False) -> Any:
    """proto3 JSON as istioctl marshals it: camelCase field names; map keys and Structs untouched."""
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            key = k if map_keys or k.startswith("@") else _camel(k)
            if k == "filter_metadata" or (k == "metadata" and isinstance(v, Mapping) and "filter_metadata" not in v):
                out[key] = v  # map<string, Struct> (or a bare Struct such as the node's metadata)
            else:
                out[key] = camel(v, k in _MAP_FIELDS)
        return out
    if isinstance(value, list):
        return [camel(v) for v in value]
    return value


def as_json(resources: Any) -> str:
    return json.dumps(camel(resources), indent=4)


def as_yaml(resources: Any) -> str:
    import yaml

    return str(yaml.safe_dump(camel(resources), sort_keys=False))


# proxy-status ---------------------------------------------------------------------------------------


def diff_configs(istiod: Mapping[str, Any], envoy: Mapping[str, Any]) -> str:
    """``istioctl proxy-status POD``: istiod's view against the proxy's, per type."""
    out = []
    pairs = (("Clusters", lambda d: sorted((c for c in clusters(d)
                                            if str(c["name"]) not in _STATIC), key=lambda c: str(c["name"]))),
             ("Listeners", lambda d: sorted(listeners(d), key=lambda x: str(x.get("name", "")))),
             ("Routes", lambda d: route_configs(d)))
    for title, pick in pairs:
        want = json.dumps(pick(istiod), indent=2, sort_keys=True).splitlines()
        have = json.dumps(pick(envoy), indent=2, sort_keys=True).splitlines()
        if want == have:
            if title == "Routes":
                out.append(f"Routes Match (RDS last loaded at {_rds_loaded(envoy)})")
            else:
                out.append(f"{title} Match")
        else:
            out.extend(difflib.unified_diff(want, have, f"Istiod {title}", f"Envoy {title}", lineterm=""))
    return "\n".join(out) + "\n"


_STATIC = {"agent", "prometheus_stats", "sds-grpc", "xds-grpc"}


def _rds_loaded(dump: Mapping[str, Any]) -> str:
    from datetime import datetime

    stamps = [d.get("last_updated", "") for d in _section(dump, "RoutesConfigDump").get("dynamic_route_configs", [])]
    if not stamps or not max(stamps):
        return "unknown"
    moment = datetime.strptime(max(stamps)[:19], "%Y-%m-%dT%H:%M:%S")
    return moment.strftime("%a, %d %b %Y %H:%M:%S UTC")


# describe -------------------------------------------------------------------------------------------


def _labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def describe_pod(pod: Mapping[str, Any], resources: Sequence[Mapping[str, Any]], dump: Mapping[str, Any] | None,
                 ports: Sequence[tuple[int, str]] = ((8080, "http"),)) -> str:
    """``istioctl x describe pod``: the pod's service, the DestinationRule subsets it matches, the
    traffic policy, and the VirtualService routes that reach it, with istioctl's warnings."""
    name, ns = str(pod["name"]), str(pod.get("namespace", "tutorial"))
    labels: Mapping[str, str] = pod.get("labels") or {}
    app = str(labels.get("app", pod.get("app", "")))
    lines = [f"Pod: {name}", "   Pod Revision: default"]
    if not pod.get("sidecar", True):
        lines.append(f"   Pod Ports: {ports[0][0]} ({app})")
        lines.append(f"WARNING: {name} is not part of mesh; no Istio sidecar")
        return "\n".join(lines) + "\n"
    lines.append(f"   Pod Ports: {ports[0][0]} ({app}), 15090 (istio-proxy)")
    if app == "istio-ingressgateway":
        lines.append("--------------------")
        gws = [r for r in resources if r.get("kind") == "Gateway"
               and _labels_match((r.get("spec") or {}).get("selector") or {}, labels)]
        for gw in gws:
            hosts = [h for s in gw["spec"].get("servers") or [] for h in s.get("hosts") or []]
            lines.append(f"Gateway: {gw['metadata']['name']}.{gw['metadata'].get('namespace', ns)}")
            lines.append(f"   Hosts: {', '.join(hosts)}")
        return "\n".join(lines) + "\n"
    lines.append("--------------------")
    lines.append(f"Service: {app}")
    for port, pname in ports:
        lines.append(f"   Port: {pname} {port}/HTTP targets pod port {port}")
    drs = [r for r in resources if r.get("kind") == "DestinationRule" and _host_is(r["spec"].get("host", ""), app, ns)]
    vss = [r for r in resources if r.get("kind") == "VirtualService"
           and any(_host_is(h, app, ns) for h in r["spec"].get("hosts") or [])
           and "mesh" in (r["spec"].get("gateways") or ["mesh"])]
    matching: list[str] = []
    nonmatching: list[str] = []
    dr = drs[0] if drs else None
    if dr is not None:
        spec = dr["spec"]
        subsets = spec.get("subsets") or []
        matching = [s["name"] for s in subsets if _labels_match(s.get("labels") or {}, labels)]
        nonmatching = [s["name"] for s in subsets if s["name"] not in matching]
        lines.append(f'DestinationRule: {dr["metadata"]["name"]} for "{spec.get("host", "")}"')
        if subsets:
            if not matching:
                others = ",".join(nonmatching)
                lines.append(f"   WARNING POD DOES NOT MATCH ANY SUBSETS.  (Non matching subsets {others})")
            lines.append(f"   Matching subsets: {','.join(matching)}")
            if nonmatching:
                lines.append(f"      (Non-matching subsets {','.join(nonmatching)})")
        # istioctl describes the top-level policy only (a subset's own policy is not shown)
        policy = spec.get("trafficPolicy")
        if policy is None:
            lines.append("   No Traffic Policy")
        else:
            if (policy.get("tls") or {}).get("mode"):
                lines.append(f"   Traffic Policy TLS Mode: {policy['tls']['mode']}")
            kinds = [label for key, label in (("loadBalancer", "load balancer"), ("connectionPool", "connection pool"),
                                              ("outlierDetection", "outlier detection")) if key in policy]
            if kinds:
                lines.append(f"   Policies: {'/'.join(kinds)}")
    for vs in vss:
        lines.append(f"VirtualService: {vs['metadata']['name']}")
        lines.extend(_describe_vs(vs, app, ns, matching, nonmatching, dr))
    return "\n".join(lines) + "\n"


def _host_is(host: str, app: str, ns: str) -> bool:
    host = host.lower()
    return host in (app, f"{app}.{ns}", f"{app}.{ns}.svc", f"{app}.{ns}.svc.cluster.local")


def _rule_facts(rule: Mapping[str, Any], app: str, ns: str, matching: Sequence[str], nonmatching: Sequence[str],
                dr: Mapping[str, Any] | None) -> tuple[bool, list[str]]:
    """Whether one http rule can reach the pod, and what istioctl says about it."""
    facts: list[str] = []
    notes: list[str] = []
    reaches = False
    for dest in rule.get("route") or []:
        d = dest.get("destination") or {}
        host, subset, weight = str(d.get("host", "")), str(d.get("subset", "")), int(dest.get("weight") or 0)
        if _host_is(host, app, ns):
            if subset and subset in nonmatching:
                notes.append(f"Route to non-matching subset {subset} for ({_render_matches(rule.get('match'))})")
                continue
            if subset and subset not in matching:
                notes.append(f"Warning: Route to subset {subset} but NO DESTINATION RULE defining subsets!"
                             if dr is None else f"Warning: Route to UNKNOWN subset {subset}; check DestinationRule "
                             f"{dr['metadata']['name']}")
                continue
            reaches = True
            if weight > 0:
                fact = f'Route to host "{host}"' + (f' subset "{subset}"' if subset else "")
                facts.append(f"{fact} with weight {weight}%")
        elif not subset:
            facts.append(f'Route to host "{host}" with weight {weight}%')
        else:
            facts.append(f"Route to {host} with invalid config")
    if reaches:
        extra = [f"Fault injection {_compact(rule['fault'])}"] if rule.get("fault") else []
        extra += [_render_match(m) for m in rule.get("match") or []]
        if extra:
            facts.append(", ".join(extra))
    elif notes:
        facts.extend(notes)
    return reaches, facts


def _describe_vs(vs: Mapping[str, Any], app: str, ns: str, matching: Sequence[str], nonmatching: Sequence[str],
                 dr: Mapping[str, Any] | None) -> list[str]:
    out: list[str] = []
    http = vs["spec"].get("http") or []
    reached, printed, notes = 0, 0, []
    for rule in http:
        reaches, facts = _rule_facts(rule, app, ns, matching, nonmatching, dr)
        if reaches:
            reached += 1
            out.extend(f"   {f}" for f in facts)
            printed += len(facts)
        else:
            notes.extend(facts)
    if not reached:
        if http:
            out.append(f"   WARNING: No destinations match pod subsets (checked {len(http)} HTTP routes)")
        out.extend(f"      {n}" for n in notes)
        return out
    if reached < len(http):
        out.append(f"   {len(http) - reached} additional destination(s) that will not reach this pod")
        if not printed:
            out.extend(f"      {n}" for n in notes)
        return out
    if not printed:
        out.append(f"   {len(http)} HTTP route(s)")
    return out


def _render_string(sm: Mapping[str, Any] | None) -> str:
    sm = sm or {}
    if "exact" in sm:
        return str(sm["exact"])
    if "prefix" in sm:
        return f"{sm['prefix']}*"
    if "regex" in sm:
        return f'regex:"{sm["regex"]}"'
    return ""


def _render_match(m: Mapping[str, Any]) -> str:
    text = "Match: "
    if m.get("uri"):
        text += _render_string(m["uri"]) + (" uncased" if m.get("ignoreUriCase") else "")
    if m.get("headers"):
        conds = [f"{k}={_render_string(v)}" for k, v in m["headers"].items()]
        text += " when headers are " + "; ".join(conds)
    return text.strip()


def _render_matches(matches: Sequence[Mapping[str, Any]] | None) -> str:
    return ", ".join(_render_match(m) for m in matches) if matches else "everything"


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def tidy(rows: list[dict[str, Any]]) -> Any:
    """A pandas DataFrame when pandas is installed, else the list of row dicts."""
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows)


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# what the Mesh methods call ---------------------------------------------------------------------------


def table(dump: Mapping[str, Any], clusters_status: Mapping[str, Any] | None, kind: str,
          **filters: Any) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """The rows and default columns of one ``proxy-config`` type (``clusters``, ``routes``...)."""
    f = {k: v for k, v in filters.items() if v not in (None, "", 0)}
    if kind == "clusters":
        return cluster_rows(dump, f.get("fqdn", ""), int(f.get("port", 0)), f.get("subset", ""),
                            f.get("direction", "")), CLUSTER_COLUMNS
    if kind == "listeners":
        return listener_rows(dump, int(f.get("port", 0)), f.get("address", "")), LISTENER_COLUMNS
    if kind == "routes":
        return route_rows(dump, str(f.get("name", ""))), ROUTE_COLUMNS
    if kind == "endpoints":
        return endpoint_rows(clusters_status or {}, f.get("cluster", ""), f.get("address", ""),
                             int(f.get("port", 0)), f.get("status", "")), ENDPOINT_COLUMNS
    if kind == "secret":
        return secret_rows(dump), SECRET_COLUMNS
    raise ValueError(f"unknown proxy-config type {kind!r}; choose one of: {', '.join(KINDS)}")


def resources(dump: Mapping[str, Any], clusters_status: Mapping[str, Any] | None, kind: str,
              **filters: Any) -> Any:
    """The raw Envoy objects behind one table (what ``-o json`` prints)."""
    f = {k: v for k, v in filters.items() if v not in (None, "", 0)}
    if kind == "clusters":
        return cluster_resources(dump, f.get("fqdn", ""), int(f.get("port", 0)), f.get("subset", ""),
                                 f.get("direction", ""))
    if kind == "listeners":
        return listener_resources(dump, int(f.get("port", 0)), f.get("address", ""))
    if kind == "routes":
        return route_resources(dump, str(f.get("name", "")))
    if kind == "endpoints":
        return endpoint_resources(clusters_status or {}, f.get("cluster", ""))
    if kind == "secret":
        return _section(dump, "SecretsConfigDump")
    if kind == "bootstrap":
        return _section(dump, "BootstrapConfigDump")
    if kind == "all":
        return dump
    raise ValueError(f"unknown proxy-config type {kind!r}; choose one of: {', '.join(KINDS)}")


def status_rows(pods: Iterable[Any], istiod: str, version: str, verbose: bool = False,
                now: float | None = None) -> list[dict[str, Any]]:
    """``istioctl proxy-status`` rows (1.27+ columns; ``verbose``: per-type sync state)."""
    rows = []
    for p in pods:
        if not p.sidecar:
            continue
        gateway = p.app == "istio-ingressgateway"
        ns = "istio-system" if gateway and p.namespace == "tutorial" else p.namespace
        row: dict[str, Any] = {"NAME": f"{p.name}.{ns}", "CLUSTER": "Kubernetes", "ISTIOD": istiod,
                               "VERSION": version}
        types = ("CDS", "LDS", "EDS", "RDS")
        row["SUBSCRIBED TYPES"] = f"{len(types)} ({','.join(types)})"
        state = "SYNCED" if p.synced else "STALE"
        if not p.config_version:
            state = "NOT SENT"
        for t in types:
            row[t] = state
        row["ECDS"] = "IGNORED"
        rows.append(row)
    return rows
