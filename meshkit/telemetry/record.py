"""The per-request record every proxy produces, once per request it handles.

It is the single source for the access-log line, the Istio metrics, the span and ``meshkit explain``:
the proxy fills it while the request flows through its filter chain and hands it to telemetry when
the response is complete. Field names follow Envoy's access-log operators and Istio's metric labels.

Example::

    rec = RequestRecord(proxy="preference-v1-6b8c7f5d9c-x2x7q", reporter="source")
    rec.response_code, rec.response_flags = 503, "UO"
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

UNKNOWN = "unknown"


@dataclass(slots=True)
class RequestRecord:
    proxy: str  # the pod (or gateway pod) whose proxy handled the request
    reporter: str  # "source" (client sidecar, gateway) or "destination" (server sidecar)
    start_time: float = 0.0  # epoch seconds
    duration_ms: float = 0.0
    method: str = "GET"
    path: str = "/"
    protocol: str = "HTTP/1.1"
    authority: str = ""
    user_agent: str = ""
    request_id: str = ""
    x_forwarded_for: str = ""
    response_code: int = 0  # 0: no response (the downstream went away)
    response_flags: str = "-"  # Envoy's short flags, comma-joined: "UO", "URX,UF", "-" for none
    response_code_details: str = "via_upstream"
    upstream_host: str = ""  # "127.0.0.1:40123"
    upstream_cluster: str = ""  # "outbound|8080|version-v2|recommendation.tutorial.svc.cluster.local"
    upstream_pod: str = ""  # the pod behind upstream_host, for explanations
    route_name: str = ""
    bytes_received: int = 0
    bytes_sent: int = 0
    attempts: int = 1
    source_workload: str = UNKNOWN
    source_app: str = UNKNOWN
    source_version: str = UNKNOWN
    source_principal: str = UNKNOWN
    destination_workload: str = UNKNOWN
    destination_app: str = UNKNOWN
    destination_version: str = UNKNOWN
    destination_service: str = UNKNOWN  # FQDN: recommendation.tutorial.svc.cluster.local
    destination_service_name: str = UNKNOWN
    destination_principal: str = UNKNOWN
    namespace: str = "tutorial"
    connection_security_policy: str = UNKNOWN  # mutual_tls | none | unknown (source side)
    trace_id: str = ""
    span_id: str = ""
    parent_span_id: str = ""
    sampled: bool = True
    rule: str = ""  # human description of the policy that decided the outcome, for explain
    # Added for the access log and explain; all optional (the defaults print as "-" / are derived).
    upstream_service_time_ms: int = -1  # X-ENVOY-UPSTREAM-SERVICE-TIME; -1: no upstream answered
    upstream_local_address: str = ""  # "127.0.0.1:51234"
    downstream_local_address: str = ""  # the listener address the request arrived on
    downstream_remote_address: str = ""  # the caller's address
    requested_server_name: str = ""  # SNI on mTLS connections: outbound_.8080_.version-v1_.recommendation...
    upstream_transport_failure_reason: str = ""  # e.g. TLS handshake failure text
    body_excerpt: str = ""  # first ~120 chars of an error response body (code >= 400), for explain

    def to_dict(self) -> dict[str, Any]:
        # dataclasses.asdict deep-copies recursively; every field here is a flat value
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestRecord:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


FIELDS = tuple(f.name for f in fields(RequestRecord))
_FIELDS = FIELDS
