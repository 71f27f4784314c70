"""istioctl's views of a live local mesh: proxy-config tables, Envoy admin counters from real traffic.

Runs on the resiliency suite's shared mesh (no extra mesh start). The static shape of every field
is covered by tests/proxy/test_configdump.py; here the point is that the tables and counters are
the proxies' own: what a push changed, which host outlier detection ejected, how many requests the
circuit breaker turned away.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from typing import Any

import pytest

from meshkit import Mesh
from meshkit.cli import main
from meshkit.errors import MeshkitError
from tests.resiliency.support import (
    apply,
    destination_rule,
    load,
    misbehavior_line,
    pods_of,
    resource,
    summary_line,
    to,
    virtual_service,
)

FQDN = "recommendation.tutorial.svc.cluster.local"
V1 = f"outbound|8080|version-v1|{FQDN}"
V2 = f"outbound|8080|version-v2|{FQDN}"
PLAIN = f"outbound|8080||{FQDN}"
#: the seven stats istio.io's circuit-breaking task greps from the client's proxy
CB_TASK_STATS = ("circuit_breakers.default.remaining_pending", "circuit_breakers.default.rq_pending_open",
                 "circuit_breakers.high.rq_pending_open", "upstream_rq_pending_active",
                 "upstream_rq_pending_failure_eject", "upstream_rq_pending_overflow", "upstream_rq_pending_total")


def preference(mesh: Mesh) -> str:
    return pods_of(mesh, "preference-v1")[0]


def cli(mesh: Mesh, *args: str, exit_code: int = 0) -> str:
    """Run ``meshkit ARGS`` in-process against the mesh; its stdout (the exit code is checked)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--home", str(mesh.backend.home), *args])  # type: ignore[attr-defined]
    assert code == exit_code, out.getvalue()
    return out.getvalue()


def stats(mesh: Mesh, pod: str, cluster: str) -> dict[str, int]:
    """The cluster's stats as ``/stats`` prints them (``cluster.<name>;.<stat>: value``)."""
    text = mesh.envoy_admin(pod, "/stats?filter=" + re.escape(cluster).replace("|", "%7C"))
    prefix = f"cluster.{cluster};."
    return {line.split(": ")[0].removeprefix(prefix): int(line.split(": ")[1])
            for line in text.splitlines() if line.startswith(prefix)}


def test_a_push_turns_a_virtual_service_into_weighted_clusters(mesh: Mesh) -> None:
    pod = preference(mesh)
    before = mesh.proxy_config(pod, "clusters", fqdn=FQDN)
    rows = before.to_dict("records") if hasattr(before, "to_dict") else before
    assert [r["SUBSET"] for r in rows] == ["-"]
    apply(mesh, destination_rule(), virtual_service({"route": [to("version-v1", 90), to("version-v2", 10)]}))
    table = cli(mesh, "proxy-config", "clusters", pod, "--fqdn", FQDN)
    assert table.splitlines()[0].split() == ["SERVICE", "FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE",
                                             "DESTINATION", "RULE"]
    assert [line.split()[2] for line in table.splitlines()[1:]] == ["-", "version-v1", "version-v2"]
    assert all(line.split()[-1] == "recommendation.tutorial" for line in table.splitlines()[1:])
    raw = cli(mesh, "proxy-config", "routes", pod, "--name", "8080", "-o", "json")
    vhost = next(v for rc in json.loads(raw) for v in rc["virtualHosts"] if v["name"] == f"{FQDN}:8080")
    assert vhost["routes"][0]["route"]["weightedClusters"]["clusters"] == [{"name": V1, "weight": 90},
                                                                           {"name": V2, "weight": 10}]
    routes = cli(mesh, "pc", "routes", pod, "--name", "8080")
    line = next(x for x in routes.splitlines() if x.startswith("8080") and f"{FQDN}:8080" in x)
    assert line.split()[-2:] == ["/*", "recommendation.tutorial"]
    # the push reached the proxy: istiod's view and the proxy's agree, every type SYNCED
    diff = cli(mesh, "proxy-status", pod)
    assert diff.splitlines()[:2] == ["Clusters Match", "Listeners Match"] and "Routes Match" in diff
    ps = cli(mesh, "proxy-status", "-v", "1")
    row = next(x for x in ps.splitlines() if x.startswith(pod))
    assert row.split()[1:7] == ["Kubernetes", "SYNCED", "IGNORED", "SYNCED", "SYNCED", "SYNCED"]


def test_timeout_retries_header_match_mirror_and_fault_reach_the_routes(mesh: Mesh) -> None:
    safari = {"match": [{"headers": {"user-agent": {"regex": ".*Safari.*"}}}], "route": [to("version-v2")],
              "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 50}}}}
    rest = {"route": [to("version-v1")], "timeout": "1s", "retries": {"attempts": 3, "perTryTimeout": "2s",
                                                                      "retryOn": "5xx"},
            "mirror": {"host": "recommendation", "subset": "version-v2"}}
    apply(mesh, destination_rule(), virtual_service(safari, rest))
    routes = json.loads(mesh.proxy_config_text(preference(mesh), "routes", "json", name="8080"))
    vhost = next(v for rc in routes for v in rc["virtualHosts"] if v["name"] == f"{FQDN}:8080")
    first, second = vhost["routes"]
    assert first["match"]["headers"][0]["stringMatch"] == {"safeRegex": {"regex": ".*Safari.*"}}
    assert first["typedPerFilterConfig"]["envoy.filters.http.fault"]["abort"] == {
        "httpStatus": 503, "percentage": {"numerator": 500000, "denominator": "MILLION"}}
    assert second["route"]["timeout"] == "1s"
    assert second["route"]["retryPolicy"]["retryOn"] == "5xx" and second["route"]["retryPolicy"]["numRetries"] == 3
    assert second["route"]["retryPolicy"]["perTryTimeout"] == "2s"
    assert second["route"]["requestMirrorPolicies"][0]["cluster"] == V2


def test_outlier_detection_ejects_a_host_as_istioctl_shows_it(mesh: Mesh) -> None:
    mesh.scale("recommendation-v2", 2)
    bad, _good = pods_of(mesh, "recommendation-v2")
    mesh.misbehave(bad)
    policy = {"outlierDetection": {"consecutive5xxErrors": 1, "interval": "1s", "baseEjectionTime": "60s",
                                   "maxEjectionPercent": 100}}
    apply(mesh, destination_rule(v2_policy=policy), virtual_service({"route": [to("version-v2")]}))
    result = mesh.load(n=12, concurrency=1, flags=False)
    assert [r["body"] for r in result.records if r["code"] != 200] == [misbehavior_line(bad)]
    pod = preference(mesh)
    rows = mesh.proxy_config(pod, "endpoints", cluster=V2)
    rows = rows.to_dict("records") if hasattr(rows, "to_dict") else rows
    flags = sorted((r["STATUS"], r["OUTLIER CHECK"]) for r in rows)
    assert flags == [("HEALTHY", "FAILED"), ("HEALTHY", "OK")], rows
    table = cli(mesh, "pc", "endpoints", pod, "--cluster", V2)
    assert re.search(r"HEALTHY\s+FAILED\s+" + re.escape(V2), table), table
    clusters = mesh.envoy_admin(pod, "/clusters")
    assert len(re.findall(re.escape(V2) + r"::127\.0\.0\.1:\d+::health_flags::/failed_outlier_check", clusters)) == 1
    counted = stats(mesh, pod, V2)
    assert counted["outlier_detection.ejections_active"] == 1
    assert counted["outlier_detection.ejections_enforced_consecutive_5xx"] == 1
    assert counted["upstream_rq_5xx"] == 1 and counted["upstream_rq_2xx"] == 11


def test_istio_io_circuit_breaking_task_on_the_local_mesh(mesh: Mesh) -> None:
    """istio.io's task: maxConnections 1, http1MaxPendingRequests 1, maxRequestsPerConnection 1,
    3 concurrent clients, 30 requests; the client proxy's pending stats against the 503 UO count."""
    pod = preference(mesh)
    mesh.delay("recommendation", 0.02)  # both versions: each request holds the one connection a while
    cb = {"connectionPool": {"tcp": {"maxConnections": 1},
                             "http": {"http1MaxPendingRequests": 1, "maxRequestsPerConnection": 1}}}
    apply(mesh, resource("DestinationRule", "recommendation", {"host": "recommendation", "trafficPolicy": cb}))
    table = cli(mesh, "pc", "clusters", pod, "--fqdn", FQDN, "-o", "json")
    thresholds = next(c for c in json.loads(table) if c["name"] == PLAIN)["circuitBreakers"]["thresholds"][0]
    assert (thresholds["maxConnections"], thresholds["maxPendingRequests"]) == (1, 1)
    before = stats(mesh, pod, PLAIN)
    result = load(mesh, n=30, concurrency=3)
    after = stats(mesh, pod, PLAIN)
    uo = sum(1 for r in result.records if r["flags"] == "UO")
    ok = sum(1 for r in result.records if r["code"] == 200)
    assert uo + ok == 30 and uo > 0, result.summary()
    # counters grow by what this run did; the gauges are back at rest
    delta = {k: after[k] - before.get(k, 0) for k in after}
    assert delta["upstream_rq_pending_overflow"] == uo
    assert after["upstream_rq_pending_active"] == 0 and after["upstream_rq_pending_failure_eject"] == 0
    assert after["circuit_breakers.default.rq_pending_open"] == after["circuit_breakers.high.rq_pending_open"] == 0
    assert after["circuit_breakers.default.remaining_pending"] == 1
    assert 0 < delta["upstream_rq_pending_total"] <= ok  # every request that waited got through
    assert delta["upstream_rq_total"] == ok and delta["upstream_rq_2xx"] == ok
    # the same seven lines through the tutorial's way in: curl localhost:15000 inside the pod
    text = cli(mesh, "exec", pod, "--", "curl", "localhost:15000/stats")
    seven = [line for line in text.splitlines() if line.startswith(f"cluster.{PLAIN};.")
             and line.split(";.")[1].split(":")[0] in CB_TASK_STATS]
    overflow_line = f"cluster.{PLAIN};.upstream_rq_pending_overflow: {after['upstream_rq_pending_overflow']}"
    assert len(seven) == 7 and overflow_line in seven
    # Prometheus sees the same counter, labelled the way Istio's tag regex labels it
    prom = mesh.envoy_admin(pod, "/stats/prometheus")
    assert f'envoy_cluster_upstream_rq_pending_overflow{{cluster_name="{PLAIN}"}} ' \
        f'{after["upstream_rq_pending_overflow"]}' in prom
    summary_line("circuit-breaking task", requests=30, ok=ok, uo_503=uo, **{k: after[k] for k in CB_TASK_STATS})


def test_loopback_is_not_captured_and_secrets_show_the_spiffe_id(mesh: Mesh) -> None:
    pod = preference(mesh)
    body = cli(mesh, "exec", pod, "--", "curl", "localhost:8080/")
    assert body.startswith("preference => recommendation")  # the app itself, no sidecar hop
    body = cli(mesh, "exec", pod, "--", "curl", "localhost:9999/", exit_code=7)
    assert "Failed to connect to localhost port 9999" in body
    rows: Any = mesh.proxy_config(pod, "secret")
    rows = rows.to_dict("records") if hasattr(rows, "to_dict") else rows
    assert [(r["RESOURCE NAME"], r["TYPE"], r["STATUS"], r["VALID CERT"]) for r in rows] == [
        ("default", "Cert Chain", "ACTIVE", "true"), ("ROOTCA", "CA", "ACTIVE", "true")]
    assert rows[0]["SPIFFE ID"] == "spiffe://cluster.local/ns/tutorial/sa/preference"
    described = cli(mesh, "x", "describe", "pod", pods_of(mesh, "recommendation-v1")[0])
    assert "Service: recommendation" in described and "Pod Revision: default" in described


def test_push_diff_widget_shows_what_a_virtual_service_changed_in_one_proxy(mesh: Mesh) -> None:
    from meshkit.widgets import PushDiff

    diff = PushDiff(mesh, "preference-v1")
    diff.apply(destination_rule(), virtual_service({"route": [to("version-v1", 90), to("version-v2", 10)]}))
    changes = diff.changes
    assert int(changes["version"][1]) > int(changes["version"][0])
    assert sorted(r["SUBSET"] for r in changes["clusters"]["added"]) == ["version-v1", "version-v2"]
    assert [(r["VHOST NAME"], r["VIRTUAL SERVICE"]) for r in changes["routes"]["changed"]] == [
        (f"{FQDN}:8080", "recommendation.tutorial")]
    assert any('"weightedClusters"' in line and line.startswith("+") for line in changes["route_diff"])
    assert "version-v2" in diff.output.value and "proxy-config clusters" in diff.output.value
    # a second apply compares with the state after the first one: same table rows, new route JSON
    diff.apply(virtual_service({"route": [to("version-v2")]}))
    assert not diff.changes["clusters"]["added"] and not diff.changes["routes"]["changed"]
    assert any(line.startswith("+") and line.strip("+ ") == f'"cluster": "{V2}",'
               for line in diff.changes["route_diff"]), diff.changes["route_diff"]


def test_all_bootstrap_yaml_and_resource_selection(mesh: Mesh) -> None:
    pod = preference(mesh)
    stacked = cli(mesh, "pc", "all", pod)
    assert stacked.startswith("NAME") and f"cluster/outbound|8080||{FQDN}" in stacked
    assert "listener/virtualInbound" in stacked and "route/8080" in stacked and "secret/default" in stacked
    assert "endpoint/127.0.0.1:" in stacked
    raw = json.loads(cli(mesh, "pc", "all", pod, "-o", "json"))
    assert [c["@type"].rsplit(".", 1)[1] for c in raw["configs"]][:3] == [
        "BootstrapConfigDump", "ClustersConfigDump", "EndpointsConfigDump"]
    boot = cli(mesh, "pc", "bootstrap", pod, "-o", "yaml")
    assert f"id: sidecar~127.0.0.1~{pod}.tutorial~tutorial.svc.cluster.local" in boot
    selected = json.loads(mesh.envoy_admin(pod, "/config_dump?resource=dynamic_active_clusters"))
    assert {c["@type"] for c in selected["configs"]} == {
        "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.DynamicCluster"}
    with pytest.raises(MeshkitError, match="nonsense not found in config dump"):
        mesh.envoy_admin(pod, "/config_dump?resource=nonsense")
