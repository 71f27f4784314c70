"""Synthetic per-proxy records of requests through gateway → customer → preference → recommendation.

Each hop leaves two records as in a real mesh: ``reporter="source"`` at the caller's proxy and
``reporter="destination"`` at the callee's sidecar. A failure mode stops or changes the chain the way
the local proxy would record it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshkit.telemetry.record import UNKNOWN, RequestRecord

NS = "tutorial"
GATEWAY_POD = "istio-ingressgateway-7d4f8c9b6-abcde"


@dataclass(frozen=True)
class Workload:
    app: str
    version: str
    pod: str

    @property
    def workload(self) -> str:
        return "istio-ingressgateway" if self.app == "istio-ingressgateway" else f"{self.app}-{self.version}"

    @property
    def principal(self) -> str:
        if self.app == "istio-ingressgateway":
            return "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
        return f"spiffe://cluster.local/ns/{NS}/sa/{self.app}"

    @property
    def fqdn(self) -> str:
        return f"{self.app}.{NS}.svc.cluster.local"


GATEWAY = Workload("istio-ingressgateway", UNKNOWN, GATEWAY_POD)
CUSTOMER = Workload("customer", "v1", "customer-v1-5c4b9b9f5d-k7x2p")
PREFERENCE = Workload("preference", "v1", "preference-v1-6b8c7f5d9c-x2x7q")
RECOMMENDATION = {
    "v1": Workload("recommendation", "v1", "recommendation-v1-7d9f8b6c4-q8w2e"),
    "v2": Workload("recommendation", "v2", "recommendation-v2-6f7c9d9b5-kq2xz"),
}
MISBEHAVIOR = "recommendation misbehavior from 'recommendation-v2-6f7c9d9b5-kq2xz'"


def hop(
    caller: Workload,
    callee: Workload,
    reporter: str,
    *,
    t: float,
    duration_ms: float,
    code: int = 200,
    flags: str = "-",
    request_id: str = "",
    mtls: bool = True,
    reached: bool = True,
    subset: str = "",
    details: str = "via_upstream",
    **extra: object,
) -> RequestRecord:
    """One record of a call from ``caller`` to ``callee`` as seen by the caller's or callee's proxy."""
    proxy = caller.pod if reporter == "source" else callee.pod
    if reporter == "source":
        cluster = f"outbound|8080|{subset}|{callee.fqdn}"
        csp = UNKNOWN
    else:
        cluster = "inbound|8080||"
        csp = "mutual_tls" if mtls else "none"
    rec = RequestRecord(
        proxy=proxy,
        reporter=reporter,
        start_time=t,
        duration_ms=duration_ms,
        path="/",
        authority=f"{callee.app}:8080",
        user_agent="curl/8.5.0",
        request_id=request_id,
        response_code=code,
        response_flags=flags,
        response_code_details=details,
        upstream_host="127.0.0.1:40123" if reached else "",
        upstream_cluster=cluster,
        upstream_pod=callee.pod if reached else "",
        route_name="default",
        bytes_received=0,
        bytes_sent=83 if code == 200 else 60,
        source_workload=caller.workload,
        source_app=caller.app,
        source_version=caller.version,
        source_principal=caller.principal if (mtls or reporter == "source") else UNKNOWN,
        destination_workload=callee.workload if reached else UNKNOWN,
        destination_app=callee.app if reached else UNKNOWN,
        destination_version=callee.version if reached else UNKNOWN,
        destination_service=callee.fqdn,
        destination_service_name=callee.app,
        destination_principal=callee.principal if reached else UNKNOWN,
        connection_security_policy=csp,
    )
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def chain(
    request_id: str,
    t0: float,
    *,
    version: str = "v1",
    failure: str | None = None,
    mtls: bool = True,
) -> list[RequestRecord]:
    """All records of one request entering at the gateway. ``failure``: None, ``app503``, ``UO``,
    ``FI``, ``NR``, ``NC`` or ``URX`` (recommendation answers 503 to three attempts)."""
    rec_wl = RECOMMENDATION[version]
    hops = [(GATEWAY, CUSTOMER), (CUSTOMER, PREFERENCE), (PREFERENCE, rec_wl)]
    out: list[RequestRecord] = []
    if failure == "NR":
        return [
            hop(
                GATEWAY,
                CUSTOMER,
                "source",
                t=t0,
                duration_ms=0.4,
                code=404,
                flags="NR",
                request_id=request_id,
                reached=False,
                details="route_not_found",
                upstream_cluster="",
                upstream_host="",
                destination_service=UNKNOWN,
                destination_service_name=UNKNOWN,
                authority="shop.example.com",
            )
        ]
    code_up = 503 if failure in ("app503", "UO", "FI", "NC", "URX") else 200
    last = 2 if failure != "FI" else 1
    for i, (caller, callee) in enumerate(hops[: last + 1]):
        t = t0 + 0.002 * i
        duration = 10.0 - 3 * i
        kw: dict[str, Any] = {"request_id": request_id, "mtls": mtls, "code": code_up}
        if i == last and failure == "FI":
            out.append(
                hop(
                    caller,
                    callee,
                    "source",
                    t=t,
                    duration_ms=0.2,
                    flags="FI",
                    reached=False,
                    details="fault_filter_abort",
                    rule="abort 503 for 100% of requests",
                    **kw,
                )
            )
            break
        if i == last and failure in ("UO", "NC"):
            subset = "version-v2" if failure == "UO" else "version-v3"
            details = "upstream_reset_before_response_started{overflow}" if failure == "UO" else "cluster_not_found"
            rule = "maxConnections 1" if failure == "UO" else ""
            out.append(
                hop(
                    caller,
                    callee,
                    "source",
                    t=t,
                    duration_ms=0.3,
                    flags=failure,
                    reached=False,
                    subset=subset,
                    details=details,
                    rule=rule,
                    **kw,
                )
            )
            break
        if i == last and failure == "URX":
            out.append(
                hop(
                    caller,
                    callee,
                    "source",
                    t=t,
                    duration_ms=duration,
                    flags="URX",
                    attempts=3,
                    rule="retries: attempts 3, retryOn 5xx",
                    **kw,
                )
            )
            for attempt in range(3):
                out.append(
                    hop(
                        caller,
                        callee,
                        "destination",
                        t=t + 0.0005 + 0.002 * attempt,
                        duration_ms=1.0,
                        body_excerpt=MISBEHAVIOR,
                        **kw,
                    )
                )
            break
        body = MISBEHAVIOR if failure == "app503" and i == last else ""
        out.append(hop(caller, callee, "source", t=t, duration_ms=duration, **kw))
        out.append(hop(caller, callee, "destination", t=t + 0.0005, duration_ms=duration - 1, body_excerpt=body, **kw))
    return out
