"""Envoy's limits on a real local mesh (one mesh for the module), with margins measured in the test.

* a header match ``regex: '(a+)+$'`` and a 40-character ``aaa…!`` User-Agent: answered as fast as
  a harmless one, within 5 ms of it (RE2 is linear; a backtracking engine takes minutes here);
* 100 KiB of request headers at the gateway: 431, and the gateway keeps serving; the 431 counted in
  ``/stats/prometheus`` as a real gateway names it (Istio's tag specifiers), as is a connection over
  the listener cap, and every stat of ``/stats`` is a sample there with the same value;
* a 128 MB upload through the gateway (a generated stream, from another process): every pod
  stays under 60 MB PSS and within half as much again as before, and a steady client is never held
  up by it (its p99 stays within a margin of its own p99 measured just before);
* a 128 MB download from recommendation through every proxy to another process: the same bounds
  on every pod's PSS, the body's hash checked, each proxy's record counting every byte;
* HEAD through the whole chain: the GET's headers and no body, as fast as a GET, the keep-alive
  connection reusable after it, the rows saying HEAD with 0 bytes sent;
* hostile YAML through the CLI's ``apply``: one located error each, exit code 1, no traceback.
"""

from __future__ import annotations

import http.client
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from benchmarks.download import download_route, measure_download
from benchmarks.upload import measure_upload, quantile
from meshkit import Mesh
from meshkit.cli import main as cli_main
from meshkit.sample.ingress import gateway_customer

HOSTILE_UA = "a" * 40 + "!"


def _gateway(mesh: Mesh) -> tuple[str, int]:
    url = urlsplit(mesh.backend.gateway_url())
    return url.hostname or "127.0.0.1", int(url.port or 80)


def _regex_gateway_vs() -> dict:
    """The tutorial's gateway VirtualService with a first rule that matches User-Agent ``(a+)+$``."""
    vs = gateway_customer()[1]
    rules = vs["spec"]["http"]
    guarded = {**rules[0], "match": [{"uri": {"prefix": "/customer"}, "headers": {"user-agent": {"regex": "(a+)+$"}}}]}
    vs["spec"]["http"] = [guarded, *rules]
    return vs


def test_a_catastrophic_regex_is_answered_as_fast_as_a_harmless_one(clean: Mesh) -> None:
    clean.apply(_regex_gateway_vs())
    host, port = _gateway(clean)
    conn = http.client.HTTPConnection(host, port, timeout=30)
    times: dict[str, list[float]] = {"hostile": [], "benign": []}
    deadline = time.monotonic() + 10
    while True:  # the new route is live once a request matches nothing but the default rule
        conn.request("GET", "/customer", headers={"user-agent": "Mozilla/5.0"})
        resp = conn.getresponse()
        resp.read()
        if resp.status == 200 or time.monotonic() > deadline:
            break
    for i in range(60):  # interleaved, so both see the same machine
        for kind, agent in (("hostile", HOSTILE_UA), ("benign", "Mozilla/5.0 Safari")):
            started = time.perf_counter()
            conn.request("GET", "/customer", headers={"user-agent": agent})
            resp = conn.getresponse()
            body = resp.read()
            if i >= 5:  # warm-up excluded
                times[kind].append(time.perf_counter() - started)
            assert resp.status == 200, body
    conn.close()
    hostile, benign = statistics.median(times["hostile"]), statistics.median(times["benign"])
    spread = quantile(times["benign"], 0.9) - benign  # how much this machine wobbles right now
    print(f"p50 hostile {hostile * 1e3:.2f} ms, benign {benign * 1e3:.2f} ms, benign p90-p50 {spread * 1e3:.2f} ms")
    assert hostile - benign < 0.005 + spread


def _stats(mesh: Mesh, pod: str) -> dict[str, int]:
    """A proxy's ``/stats`` as a dict."""
    return {n: int(v) for n, _, v in (line.partition(": ") for line in mesh.envoy_admin(pod, "/stats").splitlines())}


def _prometheus(mesh: Mesh, pod: str) -> dict[str, float]:
    """A proxy's ``/stats/prometheus`` samples, keyed by their text left of the value."""
    lines = mesh.envoy_admin(pod, "/stats/prometheus").splitlines()
    return {k: float(v) for k, _, v in (line.rpartition(" ") for line in lines if line and not line.startswith("#"))}


GATEWAY_4XX = 'envoy_http_downstream_rq{response_code_class="4xx",http_conn_manager_prefix="outbound_0.0.0.0_8080"}'


def test_100_kib_of_headers_get_431_at_the_gateway_which_keeps_serving(mesh: Mesh) -> None:
    host, port = _gateway(mesh)
    gateway = next(p.name for p in mesh.pods() if p.app == "istio-ingressgateway")
    before = _prometheus(mesh, gateway).get(GATEWAY_4XX, 0)
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"GET /customer HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 100 * 1024 + b"\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    # Prometheus sees it as a real gateway shows it: Istio's tag specifiers cut the class and the
    # HCM's stat prefix (``outbound_0.0.0.0_8080;``) out of ``http.<prefix>;.downstream_rq_4xx``
    after = _prometheus(mesh, gateway)[GATEWAY_4XX]
    assert after == before + 1
    assert after == _stats(mesh, gateway)["http.outbound_0.0.0.0_8080;.downstream_rq_4xx"]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/customer")
    assert conn.getresponse().status == 200
    conn.close()


def test_stats_prometheus_renders_every_envoy_stat_with_istios_tags(mesh: Mesh) -> None:
    """Every stat of ``/stats`` is a sample of ``/stats/prometheus`` with the same value: counters then
    gauges, one ``# TYPE`` per metric, named ``envoy_<tag-extracted name>`` with Istio's tags."""
    from prometheus_client.parser import text_string_to_metric_families

    host, port = _gateway(mesh)
    conn = http.client.HTTPConnection(host, port, timeout=30)
    for _ in range(3):
        conn.request("GET", "/customer")
        assert conn.getresponse().read().startswith(b"customer => ")
    conn.close()
    pods = {p.app: p.name for p in mesh.pods()}
    rec = "outbound|8080||recommendation.tutorial.svc.cluster.local"
    expected = {  # (pod, /stats name, /stats/prometheus sample), written out by hand from the rules
        ("preference", "listener.0.0.0.0_15006.downstream_cx_total",
         'envoy_listener_downstream_cx_total{listener_address="0.0.0.0_15006"}'),
        ("preference", "http.inbound_0.0.0.0_8080;.downstream_rq_total",
         'envoy_http_downstream_rq_total{http_conn_manager_prefix="inbound_0.0.0.0_8080"}'),
        ("preference", "http.outbound_0.0.0.0_8080;.downstream_rq_2xx",
         'envoy_http_downstream_rq{response_code_class="2xx",http_conn_manager_prefix="outbound_0.0.0.0_8080"}'),
        ("preference", f"cluster.{rec};.upstream_rq_2xx",
         f'envoy_cluster_upstream_rq{{cluster_name="{rec}",response_code_class="2xx"}}'),
        ("preference", f"cluster.{rec};.circuit_breakers.default.remaining_rq",
         f'envoy_cluster_circuit_breakers_default_remaining_rq{{cluster_name="{rec}"}}'),
        ("istio-ingressgateway", "server.live", "envoy_server_live{}"),
        ("istio-ingressgateway", "listener.0.0.0.0_8080.downstream_cx_active",
         'envoy_listener_downstream_cx_active{listener_address="0.0.0.0_8080"}'),
    }
    for app in ("istio-ingressgateway", "preference"):
        pod = pods[app]
        for _ in range(5):  # a pair of reads between two equal /stats reads (nothing else moved them)
            stats, text, again = _stats(mesh, pod), mesh.envoy_admin(pod, "/stats/prometheus"), _stats(mesh, pod)
            if stats == again:
                break
        else:
            pytest.fail(f"{pod}'s stats never held still for two reads")
        envoy = text[text.index("# TYPE envoy_"):]
        assert "istio_requests_total{" in text[:text.index("# TYPE envoy_")]  # Istio's metrics come first
        samples = {k: float(v) for k, _, v in (line.rpartition(" ") for line in envoy.splitlines())
                   if k and not k.startswith("#")}
        assert len(samples) == len(stats) and sum(samples.values()) == sum(stats.values()), (len(samples), len(stats))
        for want_app, name, sample in expected:
            if want_app == app:
                assert stats[name] > 0 or name.endswith("_active"), name
                assert samples[sample] == stats[name], (sample, name)
        types = [line.split() for line in envoy.splitlines() if line.startswith("# TYPE ")]
        assert len({t[2] for t in types}) == len(types)  # one TYPE per metric
        kinds = [t[3] for t in types]
        assert kinds == sorted(kinds, key=("counter", "gauge").index) and "gauge" in kinds and "counter" in kinds
        assert all(block.startswith("# TYPE ") for block in envoy.strip("\n").split("\n\n"))
        assert {f.name for f in text_string_to_metric_families(text)} >= {"istio_requests", "envoy_server_live"}


def _exchange(sock: socket.socket, request: bytes, buffered: bytearray) -> tuple[bytes, dict[str, str]]:
    """Send ``request`` and read one response head from ``sock``; what follows stays in ``buffered``."""
    sock.sendall(request)
    while b"\r\n\r\n" not in buffered:
        chunk = sock.recv(65536)
        assert chunk, bytes(buffered)
        buffered += chunk
    head, _, rest = bytes(buffered).partition(b"\r\n\r\n")
    buffered[:] = rest
    lines = head.decode("latin-1").split("\r\n")
    return lines[0].encode(), {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}


def test_head_through_the_chain_answers_the_gets_headers_with_no_body_on_a_reusable_connection(mesh: Mesh) -> None:
    """HEAD /customer through gateway → customer → preference → recommendation (the services run their
    GET for it, as JAX-RS does): the GET's headers, content-length included, no body, as fast as a GET,
    and the same keep-alive connection then serves a GET; the gateway's and customer's rows say HEAD
    and 0 bytes sent."""
    host, port = _gateway(mesh)
    get = b"GET /customer HTTP/1.1\r\nhost: x\r\n\r\n"
    head = b"HEAD /customer HTTP/1.1\r\nhost: x\r\nuser-agent: head-test\r\n\r\n"
    mark = time.time()
    with socket.create_connection((host, port), timeout=30) as sock:
        buffered = bytearray()
        get_times = []
        for _ in range(5):  # the normal time of this request on this machine now
            started = time.perf_counter()
            status, headers = _exchange(sock, get, buffered)
            while len(buffered) < int(headers["content-length"]):
                buffered += sock.recv(65536)
            get_times.append(time.perf_counter() - started)
            assert status.startswith(b"HTTP/1.1 200"), status
            body = bytes(buffered)
            buffered.clear()
        started = time.perf_counter()
        status, headers = _exchange(sock, head, buffered)
        head_time = time.perf_counter() - started
        assert status.startswith(b"HTTP/1.1 200"), status
        assert abs(int(headers["content-length"]) - len(body)) <= 2  # the counter in the text may gain a digit
        assert headers["content-type"].startswith("text/plain")
        # nothing follows the head: a body here would be taken for the next response's status line
        status, headers = _exchange(sock, get, buffered)
        assert status.startswith(b"HTTP/1.1 200"), (status, bytes(buffered)[:80])
        while len(buffered) < int(headers["content-length"]):
            buffered += sock.recv(65536)
        assert bytes(buffered).startswith(b"customer => preference => recommendation")
    assert head_time < max(1.0, 3 * max(get_times)), (head_time, get_times)
    assert mesh.backend.flush_telemetry()  # type: ignore[attr-defined]
    rows = [r for r in mesh.request_log(since=mark - 1) if r.get("user_agent") == "head-test"]
    seen = {(r["proxy"].split("-")[0], r["reporter"]) for r in rows}
    assert {("istio", "source"), ("customer", "destination")} <= seen, seen
    for row in rows:
        assert row["method"] == "HEAD" and row["response_code"] == 200 and row["bytes_sent"] == 0, row


def test_refused_requests_reach_the_access_log_metrics_stats_and_collector(mesh: Mesh) -> None:
    """What a listener's codec refuses is logged and counted like any request (Envoy's DPE), by the
    gateway as the source and by a sidecar as the destination, and the collector takes both rows."""
    host, port = _gateway(mesh)
    gateway = next(p for p in mesh.pods() if p.app == "istio-ingressgateway")
    preference = next(p for p in mesh.pods() if p.app == "preference")
    inbound = int(preference.extra["ports"]["inbound"])  # the pod's plain inbound socket (PERMISSIVE)
    before = {p.name: mesh.envoy_admin(p.name, "/stats") for p in (gateway, preference)}
    mark = time.time()
    for target in (port, inbound):
        with socket.create_connection((host, target), timeout=10) as sock:
            sock.sendall(b"\x16\x03\x01\x02\x00 no HTTP here\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 400 Bad Request")

    def count(text: str, name: str) -> int:
        return next(int(v) for n, _, v in (line.partition(": ") for line in text.splitlines()) if n == name)

    for pod, stat in ((gateway, "http.outbound_0.0.0.0_8080;.downstream_cx_protocol_error"),
                      (preference, "http.inbound_0.0.0.0_8080;.downstream_cx_protocol_error")):
        assert count(mesh.envoy_admin(pod.name, "/stats"), stat) == count(before[pod.name], stat) + 1
    log = mesh.envoy_admin(gateway.name, "/access_log").splitlines()
    assert any('"- - HTTP/1.1" 400 DPE http1.codec_error' in line for line in log), log[-3:]
    assert 'response_flags="DPE"' in mesh.metrics(gateway.name)
    assert mesh.backend.flush_telemetry()  # type: ignore[attr-defined]
    rows = [r for r in mesh.request_log(since=mark - 1) if r["response_flags"] == "DPE"]
    seen = {(r["reporter"], r["source_workload"], r["destination_workload"]) for r in rows}
    assert seen == {("source", "istio-ingressgateway", "unknown"), ("destination", "unknown", "preference-v1")}, seen
    status = mesh.backend.status()  # type: ignore[attr-defined]
    assert status["telemetry"]["refused"] == 0  # the proxies' own rows are never taken for lies


def test_connections_over_the_gateways_cap_are_closed_at_accept_and_counted(mesh: Mesh) -> None:
    """The gateway's listener takes at most 1024 connections (the cap every listener has here); the
    rest are closed as soon as they are accepted and counted in ``downstream_cx_overflow``."""
    host, port = _gateway(mesh)
    gateway = next(p.name for p in mesh.pods() if p.app == "istio-ingressgateway")
    cap, extra = 1024, 8

    def stat(name: str) -> int:
        text = mesh.envoy_admin(gateway, "/stats?filter=" + name)
        return next(int(v) for n, _, v in (line.partition(": ") for line in text.splitlines()) if n == name)

    overflow, active = "listener.0.0.0.0_8080.downstream_cx_overflow", "listener.0.0.0.0_8080.downstream_cx_active"
    before, already = stat(overflow), stat(active)
    socks = []
    try:
        for _ in range(cap + extra):
            socks.append(socket.create_connection((host, port), timeout=30))
        closed = 0
        for sock in socks[cap:]:  # always past the cap (accepted in order; we hold the first ones)
            try:
                sock.settimeout(30)
                closed += sock.recv(1) == b""
            except ConnectionResetError:
                closed += 1
        # connections still open from before may have closed meanwhile: they made room for as many
        grown = stat(overflow) - before
        assert extra <= grown <= extra + already, (grown, already)
        # the same counter in /stats/prometheus, named and labelled as Envoy with Istio's tags does
        prom = _prometheus(mesh, gateway)['envoy_listener_downstream_cx_overflow{listener_address="0.0.0.0_8080"}']
        assert prom == stat(overflow) == before + grown
        assert closed >= extra
    finally:
        for sock in socks:
            sock.close()
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("GET", "/customer")
    assert conn.getresponse().status == 200  # places free again once they closed
    conn.close()


def test_a_large_upload_streams_through_the_gateway_in_bounded_memory(mesh: Mesh) -> None:
    """128 MB here to keep the suite fast (the benchmark sends 256 MB): memory does not follow the size."""
    figures = measure_upload(mesh, megabytes=128, rate=20.0, baseline_s=3.0)
    assert figures["status"] == 200 and figures["reply"].startswith("customer => preference => recommendation")
    upload_mb = figures["megabytes"]
    for name, peak in figures["pss_peak_mb"].items():
        before = figures["pss_before_mb"][name]
        assert before > 0, name
        assert peak < 60, (name, peak)  # every proxy under 60 MB PSS
        assert peak < 1.5 * before, (name, before, peak)  # at most half as much again as it had
        assert peak - before < 0.1 * upload_mb, (name, before, peak)  # nothing like the body's size
    # the upload really went through the gateway and the customer's sidecar, all of it
    deadline = time.monotonic() + 10
    sizes: set[int] = set()
    while time.monotonic() < deadline and upload_mb * 2**20 not in sizes:
        sizes = {r.get("bytes_received", 0) for r in mesh.request_log() if r.get("method") == "POST"}
        time.sleep(0.3)
    assert upload_mb * 2**20 in sizes
    baseline, during = figures["baseline_latencies"], figures["during_latencies"]
    assert len(baseline) >= 20 and len(during) >= 5
    assert figures["other_failures"] == 0
    # Nobody waits for the upload: the steady client's p99 stays a fraction of the upload's time.
    # On a quiet machine that p99 is under 50 ms (the benchmark's figure); here the upload's three
    # busy processes share two cores with everything else, so the bound is the larger of a margin
    # over the client's own p99 just before and a fifth of the upload's duration.
    limit = max(0.050 + 3 * quantile(baseline, 0.99), figures["seconds"] / 5)
    assert quantile(during, 0.99) < limit, (quantile(during, 0.99), limit, figures["seconds"])


def test_a_large_download_streams_through_every_proxy_in_bounded_memory(mesh: Mesh) -> None:
    """128 MB from recommendation through preference, customer and the gateway (each pod's sidecar
    in and out), read by another process and hashed: memory does not follow the size."""
    host, port = _gateway(mesh)
    mesh.apply(download_route())
    try:
        deadline = time.monotonic() + 10
        while True:  # the new rule is live once a small download answers its bytes
            conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.request("GET", "/customer/bytes?n=10")
            resp = conn.getresponse()
            small = resp.read()
            conn.close()
            if resp.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert resp.status == 200 and small == bytes(range(10))
        figures = measure_download(mesh, megabytes=128, rate=20.0, baseline_s=2.0)
    finally:
        mesh.apply(gateway_customer()[1])
    size = 128 * 2**20
    assert figures["status"] == 200 and figures["error"] == "", figures["error"]
    assert figures["bytes"] == size and figures["digest_ok"]  # every byte, in order
    for name, peak in figures["pss_peak_mb"].items():
        before = figures["pss_before_mb"][name]
        assert before > 0, name
        assert peak < 60, (name, peak)  # every proxy under 60 MB PSS
        assert peak < 1.5 * before, (name, before, peak)
        assert peak - before < 0.1 * 128, (name, before, peak)  # nothing like the body's size
    # each proxy's record is written when the body ended, with all of it counted
    path = f"/bytes?n={size}"
    deadline = time.monotonic() + 10
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = [r for r in mesh.request_log() if str(r.get("path", "")).endswith(path)]
        if len(rows) >= 6:
            break
        time.sleep(0.3)
    seen = {(r["proxy"].split("-")[0], r["reporter"]) for r in rows}
    assert {("istio", "source"), ("customer", "destination"), ("customer", "source"), ("preference", "destination"),
            ("preference", "source"), ("recommendation", "destination")} <= seen, seen
    for row in rows:
        assert row["bytes_sent"] == size and row["response_code"] == 200 and row["response_flags"] == "-", row
    baseline, during = figures["baseline_latencies"], figures["during_latencies"]
    assert len(baseline) >= 10 and figures["other_failures"] == 0
    limit = max(0.050 + 3 * quantile(baseline, 0.99), figures["seconds"] / 5)  # as for the upload
    assert not during or quantile(during, 0.99) < limit, (quantile(during, 0.99), limit, figures["seconds"])


def test_hostile_yaml_through_the_cli_apply_is_one_located_error_each(
        mesh: Mesh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    laughs = "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 10))
    cases = {
        "control.yaml": ("kind: Virtual\x01Service\n", "unacceptable character #x0001"),
        "infx.yaml": ("kind: !!float .infx\n", "cannot decode '.infx' as float"),
        "nested.yaml": ("a: " + "[" * 5000 + "]" * 5000 + "\n", "exceeded maximum nesting depth"),
        "laughs.yaml": (laughs, "document contains excessive aliasing"),
    }
    home = str(mesh.backend.home)  # type: ignore[attr-defined]
    monkeypatch.setenv("MESHKIT_HOME", home)
    for name, (text, expected) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        assert cli_main(["apply", "-f", str(path)]) == 1, name
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and name in errors[0] and expected in errors[0], errors
    # and once as the learner runs it, a process of its own: no traceback on its stderr
    env = dict(os.environ, MESHKIT_HOME=home, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    done = subprocess.run([sys.executable, "-m", "meshkit.cli", "apply", "-f", str(tmp_path / "laughs.yaml")],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "document contains excessive aliasing" in done.stderr
