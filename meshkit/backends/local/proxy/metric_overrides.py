"""Telemetry ``metrics[].overrides`` for the proxy's Istio metrics: disable a metric, remove a tag, or
add/replace one with a value computed from the request (Istio's CEL attributes, the simple ones).

Istio merges Telemetry resources from the root namespace (mesh-wide), then the workload's namespace,
then the ones selecting the workload; later overrides win for the same metric and tag. Only the
``prometheus`` provider (or none named) is the local mesh's metrics.

Supported tag expressions: a quoted string (``"'lab'"``), ``request.host``, ``request.method``,
``request.url_path``, ``request.path``, ``request.scheme``, ``request.protocol``,
``request.useragent``, ``response.code``, ``destination.port``, ``source.workload.name`` ...
also inside ``string(...)``; anything else gives ``unknown`` (Envoy would fail to evaluate it).

Example::

    >>> o = MetricOverrides.from_specs([{"metrics": [{"overrides": [
    ...     {"match": {"metric": "REQUEST_COUNT"}, "tagOverrides": {"request_protocol": {"operation": "REMOVE"}}},
    ...     {"match": {"metric": "REQUEST_DURATION", "mode": "CLIENT"}, "disabled": True}]}]}])
    >>> o.disabled("istio_request_duration_milliseconds", "source"), o.disabled("istio_requests_total", "source")
    (True, False)
    >>> "request_protocol" in o.labels("istio_requests_total", ("reporter", "request_protocol"))
    False
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshkit.telemetry.record import RequestRecord

#: Telemetry's metric names -> the Prometheus families they name
METRIC_FAMILIES = {
    "REQUEST_COUNT": "istio_requests_total",
    "REQUEST_DURATION": "istio_request_duration_milliseconds",
    "REQUEST_SIZE": "istio_request_bytes",
    "RESPONSE_SIZE": "istio_response_bytes",
    "TCP_OPENED_CONNECTIONS": "istio_tcp_connections_opened_total",
    "TCP_CLOSED_CONNECTIONS": "istio_tcp_connections_closed_total",
    "TCP_SENT_BYTES": "istio_tcp_sent_bytes_total",
    "TCP_RECEIVED_BYTES": "istio_tcp_received_bytes_total",
    "GRPC_REQUEST_MESSAGES": "istio_request_messages_total",
    "GRPC_RESPONSE_MESSAGES": "istio_response_messages_total",
}
_MODES = {"CLIENT": ("source",), "SERVER": ("destination",), "CLIENT_AND_SERVER": ("source", "destination")}
_LITERAL = re.compile(r"""^(?:'([^']*)'|"([^"]*)")$""")
_STRING_CALL = re.compile(r"^string\((.+)\)$")


def _attribute(expr: str, rec: RequestRecord) -> str:
    attributes = {
        "request.host": lambda: rec.authority,
        "request.method": lambda: rec.method,
        "request.path": lambda: rec.path,
        "request.url_path": lambda: rec.path.split("?", 1)[0],
        "request.scheme": lambda: "http",
        "request.protocol": lambda: rec.protocol,
        "request.useragent": lambda: rec.user_agent,
        "request.id": lambda: rec.request_id,
        "response.code": lambda: str(rec.response_code),
        "response.flags": lambda: rec.response_flags,
        "destination.port": lambda: (rec.upstream_host.rpartition(":")[2] or "8080"),
        "source.workload.name": lambda: rec.source_workload,
        "destination.workload.name": lambda: rec.destination_workload,
        "node.metadata['NAMESPACE']": lambda: rec.namespace,
    }
    getter = attributes.get(expr)
    return getter() if getter else "unknown"


def evaluate(expr: str, rec: RequestRecord) -> str:
    """The value of a tag expression for one request (see the module's list of supported forms)."""
    expr = expr.strip()
    literal = _LITERAL.match(expr)
    if literal:
        return literal.group(1) if literal.group(1) is not None else literal.group(2)
    call = _STRING_CALL.match(expr)
    return _attribute(call.group(1).strip() if call else expr, rec)


@dataclass(frozen=True)
class _Override:
    families: tuple[str, ...]
    reporters: tuple[str, ...]
    disabled: bool | None
    tags: tuple[tuple[str, str, str], ...]  # (tag, operation, value)


@dataclass(frozen=True)
class MetricOverrides:
    """The overrides that apply to one proxy, in the order Istio applies them."""

    overrides: tuple[_Override, ...] = ()
    _cache: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = field(default_factory=dict, compare=False)

    def __bool__(self) -> bool:
        return bool(self.overrides)

    @classmethod
    def from_specs(cls, specs: Iterable[Mapping[str, Any]]) -> MetricOverrides:
        out = []
        for spec in specs:
            for metrics in spec.get("metrics") or []:
                providers = [p.get("name") for p in metrics.get("providers") or []]
                if providers and "prometheus" not in providers:
                    continue
                for o in metrics.get("overrides") or []:
                    match = o.get("match") or {}
                    metric = match.get("metric", "ALL_METRICS")
                    if "customMetric" in match:
                        families: tuple[str, ...] = (str(match["customMetric"]),)
                    elif metric == "ALL_METRICS":
                        families = tuple(METRIC_FAMILIES.values())
                    else:
                        families = (METRIC_FAMILIES.get(metric, metric),)
                    tags = tuple(
                        (str(name), str((t or {}).get("operation", "UPSERT")), str((t or {}).get("value", "")))
                        for name, t in (o.get("tagOverrides") or {}).items()
                    )
                    reporters = _MODES.get(str(match.get("mode", "CLIENT_AND_SERVER")), ("source", "destination"))
                    out.append(_Override(families, reporters, o.get("disabled"), tags))
        return cls(tuple(out))

    def disabled(self, family: str, reporter: str) -> bool:
        state = False
        for o in self.overrides:
            if family in o.families and reporter in o.reporters and o.disabled is not None:
                state = bool(o.disabled)
        return state

    def labels(self, family: str, base: tuple[str, ...], reporter: str = "") -> tuple[str, ...]:
        """The label names of ``family`` once tags are removed or added (for ``reporter``, or any)."""
        key = (family + "|" + reporter, base)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        names = list(base)
        for o in self.overrides:
            if family not in o.families or (reporter and reporter not in o.reporters):
                continue
            for tag, operation, _ in o.tags:
                if operation == "REMOVE" and tag in names:
                    names.remove(tag)
                elif operation == "UPSERT" and tag not in names:
                    names.append(tag)
        result = tuple(names)
        self._cache[key] = result
        return result

    def values(self, family: str, base: Mapping[str, str], rec: RequestRecord) -> dict[str, str]:
        """Label values for one request: the standard ones with this proxy's removals and upserts."""
        values = dict(base)
        for o in self.overrides:
            if family not in o.families or rec.reporter not in o.reporters:
                continue
            for tag, operation, expr in o.tags:
                if operation == "REMOVE":
                    values.pop(tag, None)
                else:
                    values[tag] = evaluate(expr, rec)
        return values


def overrides_for(resources: Iterable[Mapping[str, Any]], namespace: str, labels: Mapping[str, str],
                  root_namespace: str = "istio-system") -> MetricOverrides:
    """Merge the Telemetry resources that apply to a workload: mesh, then namespace, then selector."""
    mesh, ns_wide, selected = [], [], []
    for r in resources:
        if r.get("kind") != "Telemetry":
            continue
        spec = r.get("spec") or {}
        r_ns = (r.get("metadata") or {}).get("namespace", namespace)
        if spec.get("targetRef") or spec.get("targetRefs"):
            continue
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        if selector:
            if r_ns == namespace and all(labels.get(k) == v for k, v in selector.items()):
                selected.append(spec)
        elif r_ns == namespace and namespace != root_namespace:
            ns_wide.append(spec)
        elif r_ns == root_namespace:
            mesh.append(spec)
    return MetricOverrides.from_specs([*mesh, *ns_wide, *selected])
