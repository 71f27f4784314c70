"""Waypoints on a real local mesh: istioctl's apply/list/status, L7 routing, retries and policy through
a waypoint, the identity the destination ztunnel sees, and the waypoint's own telemetry.

One ambient mesh for the module, one waypoint applied once; ``recommendation`` is bound to it with the
``istio.io/use-waypoint`` label on its Service. Each test leaves the mesh as it found it.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509

import meshkit
from meshkit.backends.local.workloadkey import describe_key
from meshkit.mesh import Mesh
from tests.ambient.support import presented_certificate
from tests.local.conftest import stop_mesh

RESET = "curl: (56) Recv failure: Connection reset by peer"
WAYPOINT_ID = "spiffe://cluster.local/ns/tutorial/sa/waypoint"


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mesh, list[str]]]:
    m = meshkit.up(home=str(tmp_path_factory.mktemp("waypoint")), dataplane="ambient")
    try:
        m.deploy("curl", "v1", sidecar=False)
        lines = m.waypoint_apply()
        m.label("Service", "recommendation", {"istio.io/use-waypoint": "waypoint"})
        m.backend.wait_synced()  # type: ignore[attr-defined]
        yield m, lines
    finally:
        stop_mesh(m)


@pytest.fixture
def mesh(applied: tuple[Mesh, list[str]]) -> Iterator[Mesh]:
    m = applied[0]
    yield m
    # what the test applied goes (mesh.reset would take the module's waypoint Gateway with it)
    for res in m.get():
        meta = res["metadata"]
        if res["kind"] in ("VirtualService", "DestinationRule", "AuthorizationPolicy", "HTTPRoute"):
            m.delete(f"{res['kind']}.{res['apiVersion'].rpartition('/')[0]}", meta["name"],
                     meta.get("namespace", "tutorial"))
    m.behave("recommendation-v2")
    m.backend.wait_synced()  # type: ignore[attr-defined]


def _apply(mesh: Mesh, tmp_path: Path, *docs: dict) -> None:
    path = tmp_path / "res.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    mesh.apply(str(path))
    mesh.backend.wait_synced()  # type: ignore[attr-defined]


def _curl_pod(mesh: Mesh) -> str:
    return next(p.name for p in mesh.pods() if p.app == "curl")


def _versions_from_curl(mesh: Mesh, n: int, url: str = "http://recommendation:8080/") -> dict[str, int]:
    counts: dict[str, int] = {}
    pod = _curl_pod(mesh)
    for _ in range(n):
        code, body = mesh.exec(pod, url)
        key = re.search(r"recommendation (v\d)", body).group(1) if code == 200 else str(code)  # type: ignore[union-attr]
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_waypoint_apply_prints_istioctl_lines_and_list_status_columns(applied: tuple[Mesh, list[str]]) -> None:
    mesh, lines = applied
    assert lines == ["✅ waypoint tutorial/waypoint applied", "✅ waypoint tutorial/waypoint is ready!"]
    listed = mesh.waypoint_list().splitlines()
    assert re.split(r"\s{2,}", listed[0]) == ["NAME", "REVISION", "TRAFFIC TYPE", "PROGRAMMED"]
    assert listed[1].split() == ["waypoint", "default", "service", "True"]
    assert mesh.waypoint_list(all_namespaces=True).splitlines()[1].split() == [
        "tutorial", "waypoint", "default", "service", "True"]
    status = mesh.waypoint_status().splitlines()
    assert re.split(r"\s{2,}", status[0]) == ["NAME", "STATUS", "TYPE", "REASON", "MESSAGE"]
    assert re.split(r"\s{2,}", status[1]) == [
        "waypoint", "True", "Programmed", "Programmed",
        "Resource programmed, assigned to service(s) waypoint.tutorial.svc.cluster.local:15008"]
    pod = next(p for p in mesh.pods() if p.app == "waypoint")
    assert pod.namespace == "tutorial" and pod.extra["dataplane"] == "none"
    # ztunnel-config: the Service's waypoint, and the waypoint's own pod as a plain-TCP workload
    services = {r[1]: r for r in mesh.ztunnel_config("services")[1:]}
    assert services["recommendation"][3] == "waypoint" and services["preference"][3] == "None"
    workloads = {r[1]: r for r in mesh.ztunnel_config("workloads")[1:]}
    assert workloads[pod.name][4:] == ("None", "TCP")
    svc = mesh.get("svc", "recommendation", namespace="tutorial")[0]
    assert svc["status"]["conditions"] == [{"type": "istio.io/WaypointBound", "status": "True",
                                            "reason": "WaypointAccepted",
                                            "message": "Successfully attached to waypoint tutorial/waypoint"}]
    assert "conditions" not in (mesh.get("svc", "preference", namespace="tutorial")[0].get("status") or {})
    gw = mesh.get("gtw", "waypoint")[0]
    assert gw["spec"]["listeners"] == [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]
    assert {c["type"]: c["status"] for c in gw["status"]["conditions"]}["Accepted"] == "True"


def test_the_waypoint_presents_an_rsa_2048_certificate_of_its_own_identity(
        applied: tuple[Mesh, list[str]]) -> None:
    """A waypoint is Envoy with istio-agent: its key is the agent's default, not ztunnel's ECDSA."""
    port = next(p for p in applied[0].pods() if p.app == "waypoint").extra["ports"]["hbone"]
    cert = presented_certificate(port)
    assert describe_key(cert.public_key()) == "RSA 2048"
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier) == [WAYPOINT_ID]


def test_virtual_service_weights_apply_at_the_waypoint(mesh: Mesh, tmp_path: Path) -> None:
    _apply(mesh, tmp_path,
           {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "recommendation", "namespace": "tutorial"},
            "spec": {"host": "recommendation", "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                                            {"name": "v2", "labels": {"version": "v2"}}]}},
           {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "recommendation", "namespace": "tutorial"},
            "spec": {"hosts": ["recommendation"], "http": [{"route": [
                {"destination": {"host": "recommendation", "subset": "v1"}, "weight": 80},
                {"destination": {"host": "recommendation", "subset": "v2"}, "weight": 20}]}]}})
    n = 200
    result = mesh.load(n=n, concurrency=4)
    versions = result.summary()["versions"]
    assert sum(versions.values()) == n
    # binomial(200, 0.2): sd 5.7, so 4 sd is 23 requests either way
    tolerance = 4 * math.sqrt(n * 0.2 * 0.8)
    assert abs(versions.get("v2", 0) - 0.2 * n) <= tolerance, versions
    # the split was made by the waypoint: its records say so (the sample's pods have no sidecar)
    metrics = mesh.metrics()
    assert re.search(r'istio_requests_total\{[^}]*destination_version="v2"[^}]*reporter="waypoint"', metrics)


def test_httproute_on_the_service_routes_at_the_waypoint(mesh: Mesh, tmp_path: Path) -> None:
    _apply(mesh, tmp_path, {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "recommendation", "namespace": "tutorial"},
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "recommendation", "port": 8080}],
                 "rules": [{"backendRefs": [{"name": "recommendation-v2", "port": 8080}]}]}})
    assert _versions_from_curl(mesh, 12) == {"v2": 12}
    # ambient's istiod adds ResolvedWaypoints to each parent: recommendation carries istio.io/use-waypoint
    (parent,) = mesh.get("httproute", "recommendation")[0]["status"]["parents"]
    assert parent["conditions"][-1] == {"type": "ResolvedWaypoints", "status": "True", "reason": "ResolvedWaypoints",
                                        "message": "All waypoints resolved", "observedGeneration": 1}


def test_retries_at_the_waypoint_hide_a_misbehaving_pod(mesh: Mesh, tmp_path: Path) -> None:
    mesh.misbehave("recommendation-v2")
    before = _versions_from_curl(mesh, 12)
    assert before.get("503", 0) > 0, before  # Istio >= 1.24's default policy does not retry a 503
    _apply(mesh, tmp_path, {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "recommendation", "namespace": "tutorial"},
        "spec": {"hosts": ["recommendation"], "http": [{"route": [{"destination": {"host": "recommendation"}}],
                                                        "retries": {"attempts": 3, "retryOn": "5xx"}}]}})
    assert _versions_from_curl(mesh, 12) == {"v1": 12}


def test_waypoint_deny_is_a_403_while_an_l4_deny_is_a_reset(mesh: Mesh, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    _apply(mesh, tmp_path,
           {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "no-get", "namespace": "tutorial"},
            "spec": {"targetRefs": [{"kind": "Service", "group": "", "name": "recommendation"}],
                     "action": "DENY", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}},
           {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "no-curl", "namespace": "tutorial"},
            "spec": {"selector": {"matchLabels": {"app": "preference"}}, "action": "DENY",
                     "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/tutorial/sa/curl"]}}]}]}})
    pod = _curl_pod(mesh)
    assert mesh.exec(pod, "http://recommendation:8080/") == (403, "RBAC: access denied")
    assert mesh.exec(pod, "http://preference:8080/") == (0, RESET)
    status = {c["type"]: c for c in mesh.get("AuthorizationPolicy", "no-get")[0]["status"]["conditions"]}
    assert (status["WaypointAccepted"]["status"], status["WaypointAccepted"]["reason"],
            status["WaypointAccepted"]["message"]) == ("True", "Accepted", "bound to tutorial/waypoint")
    # bound, the policy's condition is positive: istioctl analyze has nothing to say about it (no IST0171)
    from meshkit.cli import main

    capsys.readouterr()
    main(["--backend", "local", "--home", str(mesh.backend.home), "analyze"])  # type: ignore[attr-defined]
    assert not [line for line in capsys.readouterr().out.splitlines() if "IST0171" in line and "no-get" in line]


def test_the_destination_ztunnel_sees_the_waypoint_identity(mesh: Mesh, tmp_path: Path) -> None:
    # L4 allow-lists behind a waypoint must name the waypoint, not the client (istio.io l4-policy docs)
    _apply(mesh, tmp_path, {
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "only-waypoint", "namespace": "tutorial"},
        "spec": {"selector": {"matchLabels": {"app": "recommendation"}}, "action": "ALLOW",
                 "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/tutorial/sa/waypoint"]}}]}]}})
    code, body = mesh.exec(_curl_pod(mesh), "http://recommendation:8080/")
    assert code == 200 and "recommendation v" in body
    zt = next(p for p in mesh.pods() if p.app == "ztunnel")
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in mesh.backend.app_log(zt.name).splitlines()  # type: ignore[attr-defined]
                 if "connection complete" in line and 'direction="inbound"' in line
                 and 'dst.workload="recommendation-' in line]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    # an HBONE tunnel from the waypoint's pod (dst.hbone_addr: the CONNECT's pod address:targetPort)
    assert lines and f'src.identity="{WAYPOINT_ID}"' in lines[-1], lines[-1:]
    assert 'src.workload="waypoint-' in lines[-1] and "dst.hbone_addr=" in lines[-1]


def test_waypoint_metrics_carry_reporter_waypoint_and_both_peers(mesh: Mesh) -> None:
    assert mesh.exec(_curl_pod(mesh), "http://recommendation:8080/")[0] == 200
    lines = [line for line in mesh.metrics().splitlines()
             if line.startswith("istio_requests_total{") and 'reporter="waypoint"' in line
             and 'source_workload="curl"' in line
             and 'destination_service="recommendation.tutorial.svc.cluster.local"' in line
             and 'response_code="200"' in line]  # earlier tests left 403 and 503 series too
    assert lines
    labels = dict(re.findall(r'(\w+)="([^"]*)"', lines[0]))
    assert labels["source_principal"] == "spiffe://cluster.local/ns/tutorial/sa/curl"
    assert labels["destination_service_name"] == "recommendation"
    assert labels["destination_workload"].startswith("recommendation-v")
    assert labels["connection_security_policy"] == "mutual_tls"
    assert labels["request_protocol"] == "http" and labels["response_flags"] == "-"
    # and the waypoint's rows reach the collector: it may report as a waypoint (no sidecar may)
    assert mesh.backend.flush_telemetry()  # type: ignore[attr-defined]
    assert any(r["reporter"] == "waypoint" and r["source_workload"] == "curl" for r in mesh.request_log())
    assert mesh.backend.status()["telemetry"]["refused"] == 0  # type: ignore[attr-defined]


def test_source_labels_matches_are_dropped_at_the_waypoint(mesh: Mesh, tmp_path: Path) -> None:
    # rule 0 would send curl's requests to v2 in a sidecar; a waypoint drops that match entry, and with it
    # the rule (it does not become a catch-all), so every request takes rule 1
    _apply(mesh, tmp_path,
           {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "recommendation", "namespace": "tutorial"},
            "spec": {"host": "recommendation", "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                                            {"name": "v2", "labels": {"version": "v2"}}]}},
           {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "recommendation", "namespace": "tutorial"},
            "spec": {"hosts": ["recommendation"], "http": [
                {"match": [{"sourceLabels": {"app": "curl"}}],
                 "route": [{"destination": {"host": "recommendation", "subset": "v2"}}]},
                {"route": [{"destination": {"host": "recommendation", "subset": "v1"}}]}]}})
    assert _versions_from_curl(mesh, 10) == {"v1": 10}


def test_waypoint_traces_access_log_and_graph_edges(mesh: Mesh) -> None:
    since = time.time()
    assert mesh.exec(_curl_pod(mesh), "http://recommendation:8080/")[0] == 200
    wp = next(p.name for p in mesh.pods() if p.app == "waypoint")
    log = mesh.backend.access_log(wp)  # type: ignore[attr-defined]
    assert any('"GET / HTTP/1.1" 200' in line for line in log), log[-3:]
    mesh.backend.flush_telemetry()  # type: ignore[attr-defined]  # the waypoint ships its spans now
    traces = mesh.traces(service="waypoint", limit=5)["data"]
    assert traces
    spans = [s for t in traces for s in t["spans"]
             if t["processes"][s["processID"]]["serviceName"] == "waypoint.tutorial"]
    tags = {t["key"]: t["value"] for t in spans[0]["tags"]}
    assert tags["node_id"].startswith(f"waypoint~127.0.0.1~{wp}.tutorial~") and tags["span.kind"] == "server"
    # the graph: curl -> recommendation (svc) -> a recommendation version, from the waypoint's reports
    deadline = time.monotonic() + 10
    while True:
        graph = mesh.graph(window_s=max(0.01, time.time() - since))
        http = {(e["data"]["source"], e["data"]["target"]): e["data"] for e in graph["elements"]["edges"]
                if e["data"]["protocol"] == "http"}  # ztunnel's TCP edges run between the same nodes
        callers = [k for k in http if k == ("tutorial/curl/v1", "tutorial/svc/recommendation")]
        if callers or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert callers, http
    assert http[callers[0]]["mtlsShare"] == 1.0 and http[callers[0]]["codes"] == {"200": 1}
    assert any(k[0] == "tutorial/svc/recommendation" and k[1].startswith("tutorial/recommendation/v") for k in http)


def test_faults_are_injected_at_the_waypoint(mesh: Mesh, tmp_path: Path) -> None:
    _apply(mesh, tmp_path, {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "recommendation", "namespace": "tutorial"},
        "spec": {"hosts": ["recommendation"], "http": [{
            "fault": {"abort": {"httpStatus": 555, "percentage": {"value": 100}}},
            "route": [{"destination": {"host": "recommendation"}}]}]}})
    assert mesh.exec(_curl_pod(mesh), "http://recommendation:8080/") == (555, "fault filter abort")


def test_enrolling_the_namespace_binds_every_service_but_one_labelled_none(mesh: Mesh) -> None:
    try:
        assert mesh.waypoint_apply(enroll_namespace=True) == [
            "✅ waypoint tutorial/waypoint applied", "✅ waypoint tutorial/waypoint is ready!",
            '✅ namespace tutorial labeled with "istio.io/use-waypoint: waypoint"']
        assert mesh.waypoint_apply(enroll_namespace=True) == [
            "⚠️ Warning: namespace (tutorial) already has an enrolled Waypoint. Consider adding the `--overwrite` "
            "flag to your apply command."]
        mesh.label("Service", "customer", {"istio.io/use-waypoint": "none"})
        mesh.backend.wait_synced()  # type: ignore[attr-defined]
        services = {r[1]: r[3] for r in mesh.ztunnel_config("services")[1:]}
        assert (services["preference"], services["recommendation"], services["customer"]) == (
            "waypoint", "waypoint", "None")
        pod = _curl_pod(mesh)
        assert mesh.exec(pod, "http://preference:8080/")[0] == 200
        assert mesh.exec(pod, "http://customer:8080/")[0] == 200
        seen = {dict(re.findall(r'(\w+)="([^"]*)"', line)).get("destination_service_name")
                for line in mesh.metrics().splitlines()
                if line.startswith("istio_requests_total{") and 'reporter="waypoint"' in line
                and 'source_workload="curl"' in line}
        assert "preference" in seen and "customer" not in seen
    finally:
        mesh.label("Namespace", "tutorial", {"istio.io/use-waypoint": None})
        mesh.label("Service", "customer", {"istio.io/use-waypoint": None})


def test_a_route_timeout_is_kept_by_the_waypoint(mesh: Mesh, tmp_path: Path) -> None:
    _apply(mesh, tmp_path, {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "recommendation", "namespace": "tutorial"},
        "spec": {"hosts": ["recommendation"], "http": [{"timeout": "0.3s",
                                                        "route": [{"destination": {"host": "recommendation"}}]}]}})
    mesh.delay("recommendation", 3.0)  # ten times the timeout: the waypoint answers long before the app
    try:
        assert mesh.exec(_curl_pod(mesh), "http://recommendation:8080/") == (504, "upstream request timeout")
    finally:
        mesh.delay("recommendation", 0.0)


def test_the_cli_speaks_istioctl(mesh: Mesh, capsys: pytest.CaptureFixture[str]) -> None:
    from meshkit.cli import main

    cli = ["--backend", "local", "--home", str(mesh.backend.home)]  # type: ignore[attr-defined]
    capsys.readouterr()
    assert main([*cli, "waypoint", "apply", "-n", "tutorial", "--name", "cli-wp", "--for", "all"]) == 0
    assert capsys.readouterr().out == "✅ waypoint tutorial/cli-wp applied\n"  # no --wait: istioctl returns
    assert main([*cli, "waypoint", "list", "-A"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["NAMESPACE", "NAME", "REVISION", "TRAFFIC", "TYPE", "PROGRAMMED"]
    assert rows[1][:4] == ["tutorial", "cli-wp", "default", "all"] and rows[2][:4] == [
        "tutorial", "waypoint", "default", "service"]
    assert main([*cli, "waypoint", "delete", "cli-wp", "nothere"]) == 0
    assert capsys.readouterr().out == "waypoint tutorial/cli-wp deleted\nwaypoint tutorial/nothere not found\n"
    assert main([*cli, "waypoint", "apply", "--name", "none"]) == 1
    assert "invalid name provided for waypoint, 'none' is a reserved value" in capsys.readouterr().err
