"""Read real Istio telemetry: Prometheus (metrics), Jaeger (traces) and the proxies' access logs.

All reads go through the Kubernetes API server (the service proxy, pod proxy and pod log
subresources), so no port-forward process is needed and the same code works on kind and on an
existing cluster. Prometheus scrapes every 15 s, so fresh traffic shows up there with a lag; a
single pod's numbers are read from its own sidecar (port 15020) instead, without lag.

Example::

    tel = ClusterTelemetry(kube_client)
    tel.prometheus_query('sum by (destination_version) (rate(istio_requests_total[1m]))')
    tel.traces("customer", limit=5)["data"][0]["spans"]
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

from meshkit.backends.kind import accesslog
from meshkit.backends.kind.client import SIDECAR, KubeClient
from meshkit.backends.kind.versions import ADDONS
from meshkit.errors import MeshkitError, NotFound

PROMETHEUS = "prometheus:9090"
JAEGER = "tracing:80"
KIALI = "kiali:20001"
JAEGER_BASE = "jaeger"  # the addon's jaeger_query base_path
AGENT_METRICS_PORT = 15020  # istio-agent's merged (Envoy + app) Prometheus endpoint
ISTIO_METRICS = '{__name__=~"istio_.*"}'


def tidy_vector(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Prometheus' ``/api/v1/query`` JSON as rows: the series labels plus ``value`` and ``time``.

    >>> tidy_vector({"status": "success", "data": {"resultType": "vector",
    ...     "result": [{"metric": {"destination_version": "v1"}, "value": [1.5e9, "0.25"]}]}})
    [{'destination_version': 'v1', 'value': 0.25, 'time': 1500000000.0}]
    """
    if payload.get("status") != "success":
        raise MeshkitError(f"Prometheus answered {payload.get('errorType', 'error')}: {payload.get('error', payload)}")
    data = payload.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list):
        return [{"value": float(result[1]), "time": float(result[0])}]
    rows = []
    for series in result or []:
        if "value" in series:
            ts, value = series["value"]
            rows.append({**series.get("metric", {}), "value": float(value), "time": float(ts)})
        else:  # a matrix (range vector): keep every sample
            samples = [(float(ts), float(v)) for ts, v in series.get("values", [])]
            rows.append({**series.get("metric", {}), "values": samples})
    return rows


class ClusterTelemetry:
    """Telemetry readers for one namespace; ``istio_ns`` is where the addons run."""

    def __init__(self, kc: KubeClient, istio_ns: str = "istio-system", clock: Callable[[], float] = time.time) -> None:
        self.kc, self.istio_ns, self.clock = kc, istio_ns, clock

    def _addon_get(self, service: str, addon: str, path: str, query: list[tuple[str, Any]]) -> str:
        try:
            return self.kc.service_proxy_get(self.istio_ns, service, path, query)
        except NotFound as exc:
            raise NotFound(
                f"the {addon} addon does not answer in namespace {self.istio_ns} ({exc}). Install it with: "
                f"kubectl --context {self.kc.where.context} apply -f {ADDONS[addon]}"
            ) from None

    def prometheus_query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant PromQL query as tidy rows (see :func:`tidy_vector`)."""
        query: list[tuple[str, Any]] = [("query", promql)]
        if at is not None:
            query.append(("time", f"{at:.3f}"))
        text = self._addon_get(PROMETHEUS, "prometheus", "api/v1/query", query)
        return tidy_vector(json.loads(text))

    def metrics_text(self, pod: str | None = None) -> str:
        """Istio metrics in Prometheus text format: federated over the mesh, or one pod's sidecar."""
        if pod:
            ns = self.kc.where.namespace
            path = f"/api/v1/namespaces/{ns}/pods/{pod}:{AGENT_METRICS_PORT}/proxy/stats/prometheus"
            text = self.kc.get_text(path, doing=f"read the sidecar metrics of pod {pod}")
            return "".join(
                line + "\n"
                for line in text.splitlines()
                if line.startswith(("istio_", "# HELP istio_", "# TYPE istio_"))
            )
        # two selectors, unioned by Prometheus: traffic into and out of this namespace (the gateway's too)
        ns = self.kc.where.namespace
        matches = [ISTIO_METRICS[:-1] + f',{side}_workload_namespace="{ns}"}}' for side in ("destination", "source")]
        return self._addon_get(PROMETHEUS, "prometheus", "federate", [("match[]", m) for m in matches])

    def traces(self, service: str | None = None, limit: int = 20, lookback: str = "1h") -> dict[str, Any]:
        """Jaeger's ``/api/traces`` answer; Istio names services ``<app>.<namespace>``."""
        name = service or "istio-ingressgateway.istio-system"
        if "." not in name:
            name = f"{name}.{self.kc.where.namespace}"
        text = self._addon_get(
            JAEGER,
            "jaeger",
            f"{JAEGER_BASE}/api/traces",
            [("service", name), ("limit", limit), ("lookback", lookback)],
        )
        payload = json.loads(text)
        return {"data": payload.get("data") or [], "errors": payload.get("errors")}

    def kiali_graph(self, duration: str = "60s", graph_type: str = "versionedApp") -> dict[str, Any]:
        """Kiali's service graph of the namespace (Cytoscape JSON: ``elements.nodes`` / ``elements.edges``).

        Kiali needs at least two requests inside ``duration`` before an edge shows.
        """
        query = [("namespaces", self.kc.where.namespace), ("graphType", graph_type), ("duration", duration)]
        result: dict[str, Any] = json.loads(self._addon_get(KIALI, "kiali", "kiali/api/namespaces/graph", query))
        return result

    def request_log(
        self, since: float = 0.0, limit: int = 10_000, gateway_selector: str | None = "istio=ingressgateway"
    ) -> list[dict[str, Any]]:
        """Access-log records from every sidecar in the namespace (and the ingress gateway)."""
        pods = [p for p in self.kc.pods() if p.sidecar]
        gateways = self.kc.pods(gateway_selector, self.istio_ns) if gateway_selector else []
        by_ip = {str(p.extra.get("ip")): p for p in pods + gateways if p.extra.get("ip")}
        since_s = math.ceil(self.clock() - since) + 1 if since > 0 else None
        records: list[dict[str, Any]] = []
        for pod in pods:
            text = self.kc.pod_log(pod.name, SIDECAR, since_seconds=since_s)
            records += accesslog.parse_log(text, proxy=pod, pods_by_ip=by_ip, since=since)
        for gw in gateways:
            text = self.kc.get_text(
                f"/api/v1/namespaces/{self.istio_ns}/pods/{gw.name}/log",
                [("container", SIDECAR), *([("sinceSeconds", since_s)] if since_s else [])],
                doing=f"read the log of gateway pod {gw.name}",
            )
            records += accesslog.parse_log(text, proxy=gw, pods_by_ip=by_ip, since=since)
        records.sort(key=lambda r: r["start_time"])
        return records[-limit:] if limit else records
