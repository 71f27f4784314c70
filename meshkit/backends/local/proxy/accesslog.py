"""Envoy access-log lines in Istio's default text format, and a bounded per-proxy buffer of them.

The format is Istio's default (``pilot/pkg/model/telemetry_logging.go``, on in the demo profile)::

    [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE%
    %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS%
    "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
    %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
    "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW%
    %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS%
    %REQUESTED_SERVER_NAME% %ROUTE_NAME%

(one line). Empty values print as ``-``. A line carries only these fields: never request headers
beyond the four named ones, so no Authorization header or token can reach the log.

Example::

    line = format_line(rec)
    # [2024-01-01T12:00:00.123Z] "GET / HTTP/1.1" 200 - via_upstream - "-" 0 83 5 4 "-"
    # "curl/8.5.0" "8e3c…" "recommendation:8080" "127.0.0.1:40123"
    # outbound|8080|version-v1|recommendation.tutorial.svc.cluster.local
    # 127.0.0.1:51234 127.0.0.1:15001 127.0.0.1:33100 - default
    parse_line(line)["response_code"]   # 200
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from meshkit.telemetry.record import RequestRecord

_TOKEN = re.compile(r'\[(?P<bracket>[^\]]*)\]|"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>\S+)')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# field names of the tokens after the request line, in the current format
_FIELDS_AFTER_REQUEST = (
    "response_code", "response_flags", "response_code_details", "connection_termination_details",
    "upstream_transport_failure_reason", "bytes_received", "bytes_sent", "duration_ms",
    "upstream_service_time_ms", "x_forwarded_for", "user_agent", "request_id", "authority",
    "upstream_host", "upstream_cluster", "upstream_local_address", "downstream_local_address",
    "downstream_remote_address", "requested_server_name", "route_name",
)  # fmt: skip
# Istio 1.5–1.8 printed "%DYNAMIC_METADATA(istio.mixer:status)%" (quoted) where details are now
_FIELDS_AFTER_REQUEST_1_5 = ("response_code", "response_flags", "mixer_status", *_FIELDS_AFTER_REQUEST[4:])
_INT_FIELDS = {
    "response_code": 0,
    "bytes_received": 0,
    "bytes_sent": 0,
    "duration_ms": 0,
    "upstream_service_time_ms": -1,
}


def format_time(epoch_s: float) -> str:
    """Envoy's ``%START_TIME%``: UTC, millisecond precision, e.g. ``2024-01-01T12:00:00.123Z``."""
    # Envoy truncates to the millisecond; the epsilon absorbs binary error (x.123 stored as x.12299…)
    ms = math.floor(epoch_s * 1000 + 1e-6)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def _bare(value: str) -> str:
    # an unquoted field must stay one token: Envoy replaces whitespace in code details the same way;
    # a stray quote is percent-encoded so it cannot open a quoted token
    if not value:
        return "-"
    return _CONTROL.sub("?", "_".join(value.split())).replace('"', "%22")


def _quoted(value: str) -> str:
    if not value:
        return '"-"'
    # escaping keeps a hostile user-agent from forging fields or extra lines
    return '"' + _CONTROL.sub("?", value.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def _upstream_service_time(rec: RequestRecord) -> str:
    if rec.upstream_service_time_ms >= 0:
        return str(rec.upstream_service_time_ms)
    if rec.upstream_host and rec.response_code_details == "via_upstream":
        return str(int(rec.duration_ms))  # not measured separately: the proxy's own share is tiny
    return "-"


def format_line(rec: RequestRecord) -> str:
    """One access-log line for a completed request, in Istio's default text format (no newline)."""
    request = f"{_bare(rec.method)} {_bare(rec.path)} {_bare(rec.protocol)}"
    return (
        f'[{format_time(rec.start_time)}] "{request}" {rec.response_code} {_bare(rec.response_flags)} '
        f"{_bare(rec.response_code_details)} - {_quoted(rec.upstream_transport_failure_reason)} "
        f"{rec.bytes_received} {rec.bytes_sent} {int(rec.duration_ms)} {_upstream_service_time(rec)} "
        f"{_quoted(rec.x_forwarded_for)} {_quoted(rec.user_agent)} {_quoted(rec.request_id)} "
        f"{_quoted(rec.authority)} {_quoted(rec.upstream_host)} {_bare(rec.upstream_cluster)} "
        f"{_bare(rec.upstream_local_address)} {_bare(rec.downstream_local_address)} "
        f"{_bare(rec.downstream_remote_address)} {_bare(rec.requested_server_name)} {_bare(rec.route_name)}"
    )


def _parse_time(text: str) -> float:
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    raise ValueError(f"START_TIME {text!r} is not like 2024-01-01T12:00:00.123Z")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def parse_line(line: str) -> dict[str, Any]:
    """The fields of an access-log line, keyed like :class:`RequestRecord` (``-`` becomes ``""``/0).

    Tolerant: accepts the 1.5–1.8 default format too, TCP lines (``"- - -"``), missing trailing
    fields and extra custom ones (returned under ``"extra"``). Raises ValueError, naming what was
    expected, for a line that is not an access-log line at all.

    Example::

        RequestRecord.from_dict(parse_line(line))   # back to a record (fields the line carries)
    """
    tokens = [(m.lastgroup, m.group(m.lastgroup or "bare")) for m in _TOKEN.finditer(line.strip())]
    if len(tokens) < 3 or tokens[0][0] != "bracket" or tokens[1][0] != "quoted":
        raise ValueError(
            f'not an Envoy access-log line (expected [START_TIME] "METHOD PATH PROTOCOL" CODE ...): {line[:80]!r}'
        )
    out: dict[str, Any] = {"start_time": _parse_time(tokens[0][1])}
    method, _, rest = tokens[1][1].partition(" ")
    path, _, protocol = rest.rpartition(" ") if " " in rest else (rest, "", "")
    for key, value in (("method", method), ("path", path), ("protocol", protocol)):
        out[key] = "" if value == "-" else value
    after = tokens[2:]
    names = _FIELDS_AFTER_REQUEST_1_5 if len(after) > 2 and after[2][0] == "quoted" else _FIELDS_AFTER_REQUEST
    for name, (kind, raw) in zip(names, after, strict=False):
        value = _unescape(raw) if kind == "quoted" else raw
        if name in _INT_FIELDS:
            try:
                out[name] = _INT_FIELDS[name] if value == "-" else int(value)
            except ValueError:
                raise ValueError(f"{name} must be an integer or '-', got {value!r} in {line[:80]!r}") from None
        elif name == "response_flags":
            out[name] = value
        else:
            out[name] = "" if value == "-" else value
    if len(after) > len(names):
        out["extra"] = [raw for _, raw in after[len(names) :]]
    return out


class AccessLog:
    """The last ``capacity`` access-log lines of one proxy (a ring buffer; older lines fall off).

    Records are kept and formatted when read, so appending costs one deque append per request.
    Memory is bounded by ``capacity`` records (about 1 KB each).

    Example::

        log = AccessLog(capacity=2000)
        log.append(rec)
        print("\\n".join(log.tail(20)))
    """

    def __init__(self, capacity: int = 2000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._records: deque[RequestRecord] = deque(maxlen=capacity)

    def append(self, rec: RequestRecord) -> None:
        self._records.append(rec)

    def tail(self, n: int | None = None) -> list[str]:
        """The last ``n`` lines (all when None), oldest first, as ``kubectl logs --tail`` prints them."""
        if n is not None and n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        records = list(self._records)
        if n is not None:
            records = records[len(records) - n :] if n else []
        return [format_line(r) for r in records]

    def __len__(self) -> int:
        return len(self._records)
