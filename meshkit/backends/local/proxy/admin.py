"""Envoy's admin endpoints for one local proxy: ``/config_dump``, ``/clusters``, ``/stats``.

The counters are the ones the clusters keep on the request path (``Cluster.stats`` and the
per-host counters); gauges (``upstream_rq_pending_active``, ``circuit_breakers.default.*``,
``outlier_detection.ejections_active``) are read from the live pool and detector state when asked,
so nothing is added to a request's cost. Stat names carry Istio's ``alt_stat_name`` (``<cluster>;``),
as real sidecars print them::

    cluster.outbound|8080||recommendation.tutorial.svc.cluster.local;.upstream_rq_pending_overflow: 21

Example::

    admin = EnvoyAdmin(sidecar, dump_context)
    status, content_type, body = admin.handle("/clusters")
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from meshkit.backends.local.proxy.cluster import Cluster, Host
from meshkit.backends.local.proxy.configdump import HIGH_PRIORITY, DumpContext, config_dump, select_resource
from meshkit.backends.local.proxy.downstream import stats_lines
from meshkit.backends.local.proxy.stats_tags import prometheus_text

#: the counters every cluster exposes, in Envoy's names
COUNTERS = (
    "upstream_cx_total", "upstream_cx_connect_fail", "upstream_cx_overflow",
    "upstream_rq_total", "upstream_rq_completed", "upstream_rq_2xx", "upstream_rq_4xx", "upstream_rq_5xx",
    "upstream_rq_pending_total", "upstream_rq_pending_overflow", "upstream_rq_pending_failure_eject",
    "upstream_rq_retry", "upstream_rq_retry_overflow", "upstream_rq_timeout", "upstream_rq_per_try_timeout",
    "outlier_detection.ejections_enforced_total", "outlier_detection.ejections_overflow",
    "outlier_detection.ejections_detected_consecutive_5xx", "outlier_detection.ejections_enforced_consecutive_5xx",
    "outlier_detection.ejections_detected_consecutive_gateway_failure",
    "outlier_detection.ejections_enforced_consecutive_gateway_failure",
)  # fmt: skip
_THRESHOLDS = ("max_connections", "max_pending_requests", "max_requests", "max_retries")


def cluster_gauges(cluster: Cluster) -> dict[str, int]:
    """The live gauges of one cluster: pool occupancy, breaker state and what remains."""
    lim = cluster.spec.limits
    if cluster.spec.outlier is not None:
        cluster.sweep()  # Envoy's interval timer would have lifted due ejections by now
    cx, pending, rq, retries = cluster.connections, cluster.pending, cluster.active_requests, cluster.active_retries
    gauges = {
        "upstream_cx_active": cx,
        "upstream_rq_active": rq,
        "upstream_rq_pending_active": pending,
        "circuit_breakers.default.cx_open": int(cx >= lim.max_connections),
        "circuit_breakers.default.cx_pool_open": 0,
        "circuit_breakers.default.rq_pending_open": int(pending >= lim.max_pending_requests),
        "circuit_breakers.default.rq_open": int(rq >= lim.max_requests),
        "circuit_breakers.default.rq_retry_open": int(retries >= lim.max_retries),
        # Istio sets track_remaining on the default priority only
        "circuit_breakers.default.remaining_cx": max(0, lim.max_connections - cx),
        "circuit_breakers.default.remaining_pending": max(0, lim.max_pending_requests - pending),
        "circuit_breakers.default.remaining_rq": max(0, lim.max_requests - rq),
        "circuit_breakers.default.remaining_retries": max(0, lim.max_retries - retries),
        "circuit_breakers.high.cx_open": 0,
        "circuit_breakers.high.cx_pool_open": 0,
        "circuit_breakers.high.rq_pending_open": 0,
        "circuit_breakers.high.rq_open": 0,
        "circuit_breakers.high.rq_retry_open": 0,
        "membership_healthy": sum(1 for h in cluster.hosts if h.endpoint.ready and not h.ejected),
        "membership_total": len(cluster.hosts),
        "outlier_detection.ejections_active": sum(1 for h in cluster.hosts if h.ejected),
    }
    return gauges


def cluster_stats(clusters: Mapping[str, Cluster]) -> Iterator[tuple[str, str, int, str]]:
    """(cluster, stat, value, counter|gauge) for every cluster, counters then gauges, names sorted."""
    for name in sorted(clusters):
        cluster = clusters[name]
        stats = cluster.stats
        completed = stats["upstream_rq_2xx"] + stats["upstream_rq_4xx"] + stats["upstream_rq_5xx"]
        values: dict[str, tuple[int, str]] = {}
        for stat in COUNTERS:
            values[stat] = (completed if stat == "upstream_rq_completed" else stats[stat], "counter")
        for stat, value in cluster_gauges(cluster).items():
            values[stat] = (value, "gauge")
        for stat in sorted(values):
            value, kind = values[stat]
            yield name, stat, value, kind


def server_stats(clusters: Mapping[str, Cluster]) -> list[tuple[str, int, str]]:
    """The server-wide gauges ``/stats`` ends with (name, value, gauge)."""
    return [("cluster_manager.active_clusters", len(clusters), "gauge"),
            ("cluster_manager.warming_clusters", 0, "gauge"), ("server.live", 1, "gauge"),
            ("server.state", 0, "gauge")]


def envoy_stats(clusters: Mapping[str, Cluster], listeners: Iterable[tuple[str, int, str]] = ()
                ) -> list[tuple[str, int, str]]:
    """Every Envoy stat the proxy keeps, as (full name, value, counter|gauge), in ``/stats`` order:
    the clusters', then the listeners' and HCMs' (``downstream.py``), then the server's."""
    rows = [(f"cluster.{name};.{stat}", value, kind) for name, stat, value, kind in cluster_stats(clusters)]
    return [*rows, *listeners, *server_stats(clusters)]


def stats_text(clusters: Mapping[str, Cluster], pattern: str | None = None, used_only: bool = False,
               listeners: Iterable[tuple[str, int, str]] = ()) -> str:
    """Envoy's ``/stats``: ``name: value`` lines (``?filter=`` is a regex, ``?usedonly`` hides zeros).

    ``listeners`` are the ``http.*`` and ``listener.*`` stats of the proxy's listeners (name, value,
    counter|gauge; see ``downstream.py``), printed between the clusters' and the server's as Envoy
    sorts them.
    """
    regex = re.compile(pattern) if pattern else None
    lines = []
    for full, value, kind in envoy_stats(clusters, listeners):
        if regex is not None and not regex.search(full):
            continue
        if used_only and kind == "counter" and not value:
            continue
        lines.append(f"{full}: {value}")
    return "".join(f"{line}\n" for line in lines)


def stats_prometheus(clusters: Mapping[str, Cluster], listeners: Iterable[tuple[str, int, str]] = ()) -> str:
    """The Envoy part of ``/stats/prometheus``: every stat ``/stats`` prints, tag-extracted with
    Istio's bootstrap specifiers and named as Envoy names them (``stats_tags.py``)::

        envoy_listener_downstream_cx_overflow{listener_address="0.0.0.0_15006"} 1
    """
    return prometheus_text(envoy_stats(clusters, listeners))


def _health_flags(host: Host) -> str:
    flags = ""
    if not host.endpoint.ready:
        flags += "/failed_eds_health"
    if host.ejected:
        flags += "/failed_outlier_check"
    return flags or "healthy"


def _host_stats(host: Host) -> dict[str, tuple[int, str]]:
    return {
        "cx_active": (host.connections, "GAUGE"),
        "cx_connect_fail": (host.cx_connect_fail, "COUNTER"),
        "cx_total": (host.cx_total, "COUNTER"),
        "rq_active": (host.active, "GAUGE"),
        "rq_error": (host.rq_error, "COUNTER"),
        "rq_success": (host.rq_success, "COUNTER"),
        "rq_timeout": (host.rq_timeout, "COUNTER"),
        "rq_total": (host.rq_total, "COUNTER"),
    }


def clusters_text(clusters: Mapping[str, Cluster], static: tuple[str, ...] = ()) -> str:
    """Envoy's ``/clusters``: one ``cluster::key::value`` (or ``cluster::host::key::value``) per line."""
    lines = []
    for name in sorted(clusters):
        cluster = clusters[name]
        spec, od = cluster.spec, cluster.spec.outlier
        if od is not None:
            cluster.sweep()
            lines.append(f"{name}::outlier::success_rate_average::-1")
            lines.append(f"{name}::outlier::success_rate_ejection_threshold::-1")
            lines.append(f"{name}::outlier::local_origin_success_rate_average::-1")
            lines.append(f"{name}::outlier::local_origin_success_rate_ejection_threshold::-1")
        for key in _THRESHOLDS:
            lines.append(f"{name}::default_priority::{key}::{getattr(spec.limits, key)}")
        for key in _THRESHOLDS:
            lines.append(f"{name}::high_priority::{key}::{HIGH_PRIORITY[key]}")
        lines.append(f"{name}::added_via_api::true")
        for host in cluster.hosts:
            ep = host.endpoint
            prefix = f"{name}::{ep.address}:{ep.port}"
            for key, (count, _) in _host_stats(host).items():
                lines.append(f"{prefix}::{key}::{count}")
            lines.append(f"{prefix}::hostname::")
            lines.append(f"{prefix}::health_flags::{_health_flags(host)}")
            for key, value in (("weight", "1"), ("region", ""), ("zone", ""), ("sub_zone", ""),
                               ("canary", "false"), ("priority", "0"), ("success_rate", "-1"),
                               ("local_origin_success_rate", "-1")):
                lines.append(f"{prefix}::{key}::{value}")
    for name in static:
        lines.append(f"{name}::added_via_api::{'true' if name[0].isupper() else 'false'}")
    return "".join(f"{line}\n" for line in lines)


def clusters_json(clusters: Mapping[str, Cluster]) -> dict[str, Any]:
    """``/clusters?format=json`` (what ``istioctl proxy-config endpoints`` reads)."""
    statuses = []
    for name in sorted(clusters):
        cluster = clusters[name]
        if cluster.spec.outlier is not None:
            cluster.sweep()
        lim = cluster.spec.limits
        hosts = []
        for host in cluster.hosts:
            ep = host.endpoint
            health: dict[str, Any] = {"eds_health_status": "HEALTHY" if ep.ready else "UNHEALTHY"}
            if host.ejected:
                health["failed_outlier_check"] = True
            stats = [{"name": k, "value": str(v), **({"type": t} if t == "GAUGE" else {})}
                     for k, (v, t) in _host_stats(host).items()]
            hosts.append({"address": {"socket_address": {"address": ep.address, "port_value": ep.port}},
                          "stats": stats, "health_status": health, "weight": 1, "locality": {}})
        statuses.append({
            "name": name, "added_via_api": True, "observability_name": f"{name};",
            "circuit_breakers": {"thresholds": [
                {**{k: getattr(lim, k) for k in _THRESHOLDS}},
                {"priority": "HIGH", **HIGH_PRIORITY}]},
            "host_statuses": hosts,
        })
    return {"cluster_statuses": statuses}


class EnvoyAdmin:
    """The admin paths of one proxy. ``dump_context`` is called per request (certificate may rotate)."""

    def __init__(self, sidecar: Any, dump_context: Callable[[], DumpContext]) -> None:
        self.sidecar = sidecar
        self.dump_context = dump_context

    def config_dump(self, include_eds: bool = False) -> dict[str, Any]:
        return config_dump(self.sidecar.view, self.dump_context(), include_eds)

    def prometheus(self) -> bytes:
        """The Envoy stats of ``/stats/prometheus`` (the pod puts Istio's own metrics before them)."""
        return stats_prometheus(self.sidecar.clusters, self.listener_stats()).encode()

    def listener_stats(self) -> list[tuple[str, int, str]]:
        """The stats between the clusters' and the server's, sorted: the listeners' and HCMs'
        (``downstream.py``) and the HTTP filters' (the local rate limit's ``<stat_prefix>.http_local_rate_limit.*``)."""
        rows = list(stats_lines(getattr(self.sidecar, "downstreams", None) or []))
        limiter = getattr(getattr(self.sidecar, "security", None), "limiter", None)
        if limiter is not None:
            rows += [(name, value, "counter") for name, value in limiter.stats().items()]
        return sorted(rows)

    def handle(self, target: str) -> tuple[int, str, bytes] | None:
        """(status, content type, body) for an admin path, or None when the path is not Envoy's."""
        url = urlsplit(target)
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        clusters: Mapping[str, Cluster] = self.sidecar.clusters
        if url.path == "/config_dump":
            dump = self.config_dump("include_eds" in q)
            if q.get("resource"):
                selected = select_resource(dump, q["resource"])
                if selected is None:
                    return 404, "text/plain", f"{q['resource']} not found in config dump\n".encode()
                dump = selected
            return 200, "application/json", json.dumps(dump, indent=2).encode()
        if url.path == "/clusters":
            if q.get("format") == "json":
                return 200, "application/json", json.dumps(clusters_json(clusters), indent=2).encode()
            static = ("BlackHoleCluster", "PassthroughCluster", "agent", "prometheus_stats", "sds-grpc", "xds-grpc")
            return 200, "text/plain", clusters_text(clusters, static).encode()
        if url.path == "/stats":
            try:
                text = stats_text(clusters, q.get("filter") or None, "usedonly" in q, self.listener_stats())
            except re.error as exc:
                return 400, "text/plain", f"Invalid regex: {exc}\n".encode()
            return 200, "text/plain", text.encode()
        return None
