"""The downstream side of a proxy's listeners, as Envoy counts and logs it.

Each listening socket stands for one Envoy listener with one HTTP connection manager (HCM) on it,
named as an Istio sidecar names them: the inbound capture ``virtualInbound`` (``0.0.0.0_15006``,
HCM ``inbound_0.0.0.0_8080;``), the outbound capture ``0.0.0.0_15001`` (HCM ``outbound_0.0.0.0_8080;``)
and a gateway's ``0.0.0.0_8080`` / ``0.0.0.0_8443``. (Istio ends every HCM stat prefix with ``;``, its
``DelimitedStatsPrefix``: its bootstrap's ``http_conn_manager_prefix`` tag looks for it, see
``stats_tags.py``.) ``/stats`` prints, per Envoy listener,
``listener.<address>.downstream_cx_{total,active,overflow}`` (a connection over the listener's cap
is closed at once and counted in ``downstream_cx_overflow``: Envoy sends no HTTP answer and writes
no access log for it) and per HCM ``http.<stat_prefix>.downstream_rq_{total,1xx..5xx,completed}``,
``downstream_cx_protocol_error`` (requests the codec refused: 400 and 431), ``downstream_rq_idle_timeout``
(408 after a stream idle timeout) and ``downstream_rq_too_large`` (413). (A real sidecar keeps
these only when its ``proxyStatsMatcher`` includes ``http\\..*`` and ``listener\\..*``: Istio's default
stats matcher drops them, as it drops most ``cluster.*`` stats, which the local mesh shows too.)

A request the codec refuses never reaches the filter chain, but Envoy still logs and measures it:
its local reply gets an access-log line with flag ``DPE`` (``SI`` for the idle timeout) and counts
in ``istio_requests_total``. Only what the proxy knows about itself is labelled: its own side
(source for the outbound listeners and gateways, destination for the inbound one); the peer and
the destination service, which no route was picked to name, are ``unknown`` (a sidecar's outbound
listener that had the whole request head names it after the Host header: Istio's stats filter falls
back to it there, and is configured not to on inbound listeners and gateways).

Example::

    hcm = Downstream("0.0.0.0_15006", "inbound_0.0.0.0_8080;", Limits(), report=telemetry.report)
    server = await serve(handler, listener=hcm.listener)
    hcm.begin(); hcm.request(200)          # a request the filter chain answered
    print("\\n".join(f"{n}: {v}" for n, v, _ in hcm.stats()))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from meshkit.http1 import Limits, Listener, Refusal
from meshkit.telemetry.record import RequestRecord

_DETAIL_COUNTERS = {"DPE": "downstream_cx_protocol_error", "SI": "downstream_rq_idle_timeout"}


class Downstream:
    """One Envoy listener and the HTTP connection manager on it: counters, and the refused requests."""

    __slots__ = ("_make_record", "_report", "address", "codes", "counters", "host_fallback", "listener",
                 "started", "stat_prefix")

    def __init__(
        self,
        address: str,
        stat_prefix: str,
        limits: Limits,
        make_record: Callable[[], RequestRecord] | None = None,
        report: Callable[[RequestRecord], None] | None = None,
        host_fallback: bool = False,
    ) -> None:
        self.address = address  # the listener's stat name: 0.0.0.0_15006
        self.stat_prefix = stat_prefix  # the HCM's: inbound_0.0.0.0_8080;
        self.listener = Listener(limits, self._refused, envoy=True)
        self.codes = [0] * 10  # downstream_rq_<n>xx by the status' first digit
        self.started = 0  # downstream_rq_total: requests begun (answered or not yet)
        self.counters = {"downstream_cx_protocol_error": 0, "downstream_rq_idle_timeout": 0,
                         "downstream_rq_too_large": 0}
        self._make_record = make_record
        self._report = report
        # Istio's disable_host_header_fallback is set for inbound and gateway listeners, not outbound
        self.host_fallback = host_fallback

    def begin(self) -> None:
        """Count a request that reached the HCM's filter chain."""
        self.started += 1

    def request(self, status: int) -> None:
        """Count one request the HCM answered (through the filter chain or as a local reply)."""
        self.codes[status // 100] += 1  # statuses are 0-999 here: a list index, no bounds work

    def _refused(self, refusal: Refusal) -> None:
        self.started += 1
        self.request(refusal.status)
        if refusal.status == 413:
            self.counters["downstream_rq_too_large"] += 1
        else:
            self.counters[_DETAIL_COUNTERS.get(refusal.flag, "downstream_cx_protocol_error")] += 1
        if self._make_record is None or self._report is None:
            return
        rec = self._make_record()
        fill_refusal(rec, refusal, self.host_fallback)
        self._report(rec)

    def stats(self) -> Iterator[tuple[str, int, str]]:
        """(name, value, counter|gauge) as Envoy's ``/stats`` prints them, names sorted."""
        listener = self.listener
        http = f"http.{self.stat_prefix}."
        completed = sum(self.codes[1:6])
        rows = [
            (f"{http}downstream_cx_active", listener.open, "gauge"),
            (f"{http}downstream_cx_total", listener.total, "counter"),
            *((f"{http}{name}", value, "counter") for name, value in self.counters.items()),
            (f"{http}downstream_rq_completed", completed, "counter"),
            (f"{http}downstream_rq_total", self.started, "counter"),
            *((f"{http}downstream_rq_{n}xx", self.codes[n], "counter") for n in range(1, 6)),
        ]
        prefix = f"listener.{self.address}."
        rows += [
            (f"{prefix}downstream_cx_active", listener.open, "gauge"),
            (f"{prefix}downstream_cx_overflow", listener.overflow, "counter"),
            (f"{prefix}downstream_cx_total", listener.total, "counter"),
        ]
        return iter(sorted(rows))


def fill_refusal(rec: RequestRecord, refusal: Refusal, host_fallback: bool = False) -> None:
    """Fill ``rec`` (its own side already set) with what the codec knew of a request it refused;
    ``host_fallback`` names the destination service after the Host header (sidecar outbound only)."""
    rec.start_time = refusal.started or time.time()
    rec.duration_ms = refusal.duration_ms
    rec.response_code = refusal.status
    rec.response_flags = refusal.flag
    rec.response_code_details = refusal.details
    rec.method = refusal.method
    rec.path = refusal.headers.get("x-envoy-original-path", refusal.path)
    rec.protocol = "HTTP/1.1"
    headers = refusal.headers
    rec.authority = headers.get("host", "")
    rec.user_agent = headers.get("user-agent", "")
    rec.request_id = headers.get("x-request-id", "")
    rec.x_forwarded_for = headers.get("x-forwarded-for", "")
    rec.bytes_received = refusal.bytes_received
    rec.bytes_sent = refusal.bytes_sent
    rec.upstream_host = rec.upstream_cluster = rec.route_name = ""
    rec.downstream_local_address = f"127.0.0.1:{refusal.local_port}" if refusal.local_port else ""
    if refusal.peer:
        rec.downstream_remote_address = f"{refusal.peer[0]}:{refusal.peer[1]}"
    if host_fallback and rec.authority:  # no cluster was picked to name the service
        rec.destination_service = rec.destination_service_name = rec.authority
    if rec.reporter == "destination":  # the inbound side knows how the connection came in
        rec.connection_security_policy = "mutual_tls" if refusal.tls else "none"
    rec.sampled = False  # no span: the request never reached the tracer


def stats_lines(downstreams: list[Downstream]) -> Iterator[tuple[str, int, str]]:
    """Every listener's and HCM's stats, merged by name (two sockets may share one Envoy listener)."""
    merged: dict[str, tuple[int, str]] = {}
    for downstream in downstreams:
        for name, value, kind in downstream.stats():
            old = merged.get(name)
            merged[name] = ((old[0] if old else 0) + value, kind)
    for name in sorted(merged):
        yield name, merged[name][0], merged[name][1]


__all__ = ["Downstream", "fill_refusal", "stats_lines"]
