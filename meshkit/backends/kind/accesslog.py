"""Parse Envoy access-log lines in Istio's default text format into RequestRecord dicts.

Istio's default format (``meshConfig.accessLogFile: /dev/stdout``)::

    [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE%
    %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS%
    "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
    %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
    "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW%
    %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS%
    %REQUESTED_SERVER_NAME% %ROUTE_NAME%

The line says little about workloads, so the caller passes the pod whose proxy wrote it and a map
of pod IPs to pods; the record then carries the same source/destination fields as the local mesh's.

Example::

    rec = parse_line(line, proxy=pod, pods_by_ip={"10.244.0.15": rec_v1_pod})
    rec["response_code"], rec["response_flags"], rec["upstream_pod"]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from meshkit.backends.base import Pod
from meshkit.telemetry.record import UNKNOWN, RequestRecord

_Q = r'"([^"]*)"'  # a quoted field
_T = r"(\S+)"  # a bare field
LINE_RE = re.compile(
    r"^\[(?P<start>[^\]]+)\] "
    r'"(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]+)" '
    rf"{_T} {_T} {_T} {_T} {_Q} {_T} {_T} {_T} {_T} "
    rf"{_Q} {_Q} {_Q} {_Q} {_Q} {_T} {_T} {_T} {_T} {_T} {_T}\s*$"
)
_FIELDS = (
    "response_code",
    "response_flags",
    "response_code_details",
    "termination_details",
    "transport_failure",
    "bytes_received",
    "bytes_sent",
    "duration_ms",
    "upstream_service_time",
    "x_forwarded_for",
    "user_agent",
    "request_id",
    "authority",
    "upstream_host",
    "upstream_cluster",
    "upstream_local",
    "downstream_local",
    "downstream_remote",
    "requested_server_name",
    "route_name",
)


def _val(text: str) -> str:
    return "" if text == "-" else text


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def _ip(address: str) -> str:
    return address.rsplit(":", 1)[0] if address else ""


def parse_line(
    line: str, *, proxy: Pod | None = None, pods_by_ip: Mapping[str, Pod] | None = None
) -> dict[str, Any] | None:
    """One access-log line as a :class:`RequestRecord` dict, or None for other proxy log lines."""
    match = LINE_RE.match(line.strip())
    if not match:
        return None
    raw = dict(zip(_FIELDS, match.groups()[4:], strict=True))
    pods_by_ip = pods_by_ip or {}
    try:
        start = datetime.fromisoformat(match["start"].replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
    cluster = _val(raw["upstream_cluster"])
    inbound = cluster.startswith("inbound|")
    upstream_host = _val(raw["upstream_host"])
    rec = RequestRecord(
        proxy=proxy.name if proxy else "",
        reporter="destination" if inbound else "source",
        start_time=start,
        duration_ms=float(_int(raw["duration_ms"])),
        method=match["method"],
        path=match["path"],
        protocol=match["protocol"],
        authority=_val(raw["authority"]),
        user_agent=_val(raw["user_agent"]),
        request_id=_val(raw["request_id"]),
        x_forwarded_for=_val(raw["x_forwarded_for"]),
        response_code=_int(raw["response_code"]),
        response_flags=raw["response_flags"],
        response_code_details=_val(raw["response_code_details"]),
        upstream_host=upstream_host,
        upstream_cluster=cluster,
        route_name=_val(raw["route_name"]),
        bytes_received=_int(raw["bytes_received"]),
        bytes_sent=_int(raw["bytes_sent"]),
    )
    if proxy is not None:
        rec.namespace = proxy.namespace
    me = _side(proxy)
    if inbound:
        rec.destination_workload, rec.destination_app, rec.destination_version = me
        if proxy is not None:
            rec.destination_service_name = proxy.app or UNKNOWN
            rec.destination_service = f"{proxy.app}.{proxy.namespace}.svc.cluster.local" if proxy.app else UNKNOWN
        caller = pods_by_ip.get(_ip(_val(raw["downstream_remote"])))
        rec.source_workload, rec.source_app, rec.source_version = _side(caller)
        # Istio's client sidecar sets this SNI on mTLS connections; plaintext arrives without one
        sni = _val(raw["requested_server_name"])
        rec.connection_security_policy = "mutual_tls" if sni.startswith("outbound_") else "none"
    else:
        rec.source_workload, rec.source_app, rec.source_version = me
        fqdn = cluster.split("|")[-1] if cluster.startswith("outbound|") else ""
        if fqdn:
            rec.destination_service, rec.destination_service_name = fqdn, fqdn.split(".")[0]
        callee = pods_by_ip.get(_ip(upstream_host))
        rec.destination_workload, rec.destination_app, rec.destination_version = _side(callee)
        if callee is not None:
            rec.upstream_pod = callee.name
    return rec.to_dict()


def _side(pod: Pod | None) -> tuple[str, str, str]:
    if pod is None:
        return UNKNOWN, UNKNOWN, UNKNOWN
    return pod.deployment or UNKNOWN, pod.app or UNKNOWN, pod.version or UNKNOWN


def parse_log(
    text: str, *, proxy: Pod | None = None, pods_by_ip: Mapping[str, Pod] | None = None, since: float = 0.0
) -> list[dict[str, Any]]:
    """Every access-log record in a proxy's log text that started at or after ``since``."""
    records = (parse_line(line, proxy=proxy, pods_by_ip=pods_by_ip) for line in text.splitlines())
    return [rec for rec in records if rec is not None and rec["start_time"] >= since]
