"""``meshkit analyze --use-kube=false -f FILE``, one test per code: each file carries its own
Services, Pods and Namespaces, as files given to ``istioctl analyze --use-kube=false`` must.

Expected lines are istioctl's: ``Level [CODE] (Kind ns/name file:line) message``, the clean-run
line on stderr, exit code 79 when an Error-level message is printed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from meshkit.cli import main

NAMESPACE = """apiVersion: v1
kind: Namespace
metadata:
  name: tutorial
  labels: {istio-injection: enabled}
"""


def service(name: str, *ports: tuple[str, int], annotations: str = "") -> str:
    listed = "".join(f"\n  - {{name: {n}, port: {p}, targetPort: {p}}}" for n, p in ports or (("http", 8080),))
    meta = f"\n  annotations: {{{annotations}}}" if annotations else ""
    return (f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: tutorial{meta}\n"
            f"spec:\n  selector: {{app: {name}}}\n  ports:{listed}\n")


def pod(name: str, app: str, version: str = "v1", proxy: bool = True, annotations: str = "") -> str:
    containers = f"\n  - {{name: {app}, image: x}}" + ("\n  - {name: istio-proxy, image: proxyv2}" if proxy else "")
    meta = f"\n  annotations: {{{annotations}}}" if annotations else ""
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: tutorial\n"
            f"  labels: {{app: {app}, version: {version}}}{meta}\nspec:\n  containers:{containers}\n")


BASE = [NAMESPACE, service("recommendation"), pod("recommendation-v1-1", "recommendation"),
        pod("recommendation-v2-1", "recommendation", "v2")]


def analyze(tmp_path: Path, capsys: pytest.CaptureFixture[str], *docs: str, name: str = "f.yaml"
            ) -> tuple[int, list[str], str]:
    path = tmp_path / name
    path.write_text("---\n".join(docs))
    code = main(["analyze", "--use-kube=false", "-f", str(path)])
    out = capsys.readouterr()
    prefix = f"{path}:"
    return code, [line.replace(prefix, "f.yaml:") for line in out.out.splitlines() if line], out.err


def line_of(docs: list[str], needle: str) -> int:
    """1-based line of ``needle`` in the documents joined as :func:`analyze` writes them."""
    return "---\n".join(docs).splitlines().index(needle) + 1


def vs(http: str, name: str = "recommendation", extra: str = "") -> str:
    return (f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\n"
            f"  namespace: tutorial\nspec:\n  hosts: [recommendation]{extra}\n  http:\n{http}")


def dr(spec: str, name: str = "recommendation") -> str:
    return (f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: {name}\n"
            f"  namespace: tutorial\nspec:\n{spec}")


SUBSETS = ("  host: recommendation\n  subsets:\n  - {name: version-v1, labels: {version: v1}}\n"
           "  - {name: version-v2, labels: {version: v2}}\n")


def test_clean_files_print_istioctls_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = analyze(tmp_path, capsys, *BASE, dr(SUBSETS),
                             vs("  - route:\n    - destination: {host: recommendation, subset: version-v1}\n"))
    assert (code, out) == (0, [])
    assert err == f"\u2714 No validation issues found when analyzing {tmp_path / 'f.yaml'}.\n"


def test_ist0101_host_subset_gateway_and_exit_code_79(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = [*BASE, dr(SUBSETS), vs("  - match: [{uri: {prefix: /a}}]\n    route:\n    - destination: {host: "
                                   "recomendation}\n  - route:\n    - destination: {host: recommendation, subset: "
                                   "version-v3}\n",
                                   extra="\n  gateways: [no-such-gateway]")]
    code, out, err = analyze(tmp_path, capsys, *docs)
    host = line_of(docs, "    - destination: {host: recomendation}")
    gw = line_of(docs, "  gateways: [no-such-gateway]")
    assert out == [
        f'Error [IST0101] (VirtualService tutorial/recommendation f.yaml:{gw}) Referenced gateway not found: '
        '"no-such-gateway"',
        f'Error [IST0101] (VirtualService tutorial/recommendation f.yaml:{host}) Referenced host not found: '
        '"recomendation"',
        f"Error [IST0101] (VirtualService tutorial/recommendation f.yaml:{host + 2}) Referenced host+subset in "
        'destinationrule not found: "recommendation+version-v3"',
        f"Warning [IST0132] (VirtualService tutorial/recommendation f.yaml:{gw}) one or more host [recommendation] "
        "defined in VirtualService tutorial/recommendation not found in Gateway tutorial/no-such-gateway.",
    ]
    assert code == 79
    assert err.startswith("Error: Analyzers found issues when analyzing namespace: tutorial.\nSee https://istio.io/")


def test_ist0101_export_to_hides_a_service_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entry = ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: time\n  namespace: other\n"
             "spec:\n  hosts: [worldtimeapi.org]\n  exportTo: ['.']\n  ports: [{number: 80, name: http, protocol: "
             "HTTP}]\n")
    route = vs("  - route:\n    - destination: {host: worldtimeapi.org}\n")
    _, out, _ = analyze(tmp_path, capsys, *BASE, entry, route)
    assert [line.split(") ", 1)[1] for line in out] == ['Referenced host not found: "worldtimeapi.org"']
    _, out, _ = analyze(tmp_path, capsys, *BASE, entry.replace("['.']", "['*']"), route)
    assert out == []


def test_ist0106_invalid_document_is_reported_and_analysis_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = vs("  - route:\n    - destination: {host: recommendation}\n      weight: -5\n    - destination: "
                "{host: recommendation}\n      weight: 10\n", name="broken")
    other = vs("  - route:\n    - destination: {host: nowhere}\n", name="other")
    code, out, _ = analyze(tmp_path, capsys, *BASE, broken, other)
    assert [line.split(") ", 1)[1] for line in out] == [
        'Referenced host not found: "nowhere"',
        "Schema validation error: weight -5 < 0",
    ]
    assert out[1].startswith("Error [IST0106] (VirtualService tutorial/broken f.yaml:")
    assert code == 79


def test_ist0102_and_ist0103_injection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: legacy\n"
    docs = [*BASE, plain, pod("old-1", "old", proxy=False), pod("curl-1", "curl", proxy=False,
                                                               annotations='sidecar.istio.io/inject: "false"')]
    code, out, _ = analyze(tmp_path, capsys, *docs)
    assert out == [
        "Warning [IST0103] (Pod tutorial/old-1 f.yaml:" f"{line_of(docs, '  name: old-1') - 3}) The pod "
        "tutorial/old-1 is missing the Istio proxy. This can often be resolved by restarting or redeploying the "
        "workload.",
    ]
    assert code == 0
    main(["analyze", "--use-kube=false", "-A", "-f", str(tmp_path / "f.yaml")])
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("Info [IST0102] (Namespace legacy ") and line.endswith(
        "The namespace is not enabled for Istio injection. Run 'kubectl label namespace legacy "
        "istio-injection=enabled' to enable it, or 'kubectl label namespace legacy istio-injection=disabled' to "
        "explicitly mark it as not needing injection.") for line in lines), lines


def test_ist0109_two_virtual_services_claim_one_mesh_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    route = "  - route:\n    - destination: {host: recommendation}\n"
    _, out, _ = analyze(tmp_path, capsys, *BASE, vs(route, name="a"), vs(route, name="b"))
    assert [line.split(") ", 1)[1] for line in out] == [
        "The VirtualServices tutorial/a,tutorial/b associated with mesh gateway define the same host "
        "*/recommendation.tutorial.svc.cluster.local which can lead to undefined behavior. This can be fixed by "
        "merging the conflicting VirtualServices into a single resource."] * 2
    # exported to different namespaces, they no longer meet
    _, out, _ = analyze(tmp_path, capsys, *BASE, vs(route, name="a", extra="\n  exportTo: ['.']"),
                        vs(route, name="b", extra="\n  exportTo: [other]"))
    assert out == []


def test_ist0112_multiple_ports_need_a_port_on_every_route(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = [NAMESPACE, service("recommendation", ("http", 8080), ("http-metrics", 9779)),
            pod("recommendation-v1-1", "recommendation"), vs("  - route:\n    - destination: {host: recommendation}\n")]
    _, out, _ = analyze(tmp_path, capsys, *docs)
    assert out == [f"Error [IST0112] (VirtualService tutorial/recommendation f.yaml:"
                   f"{line_of(docs, '    - destination: {host: recommendation}')}) This VirtualService routes to a "
                   'service "recommendation" that exposes multiple ports [8080 9779]. Specifying a port in the '
                   "destination is required to disambiguate."]


def test_ist0118_port_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = [NAMESPACE, service("recommendation", ("web", 8080), ("http-admin", 9000), ("grpc", 9090)),
            pod("recommendation-v1-1", "recommendation")]
    _, out, _ = analyze(tmp_path, capsys, *docs)
    assert out == ["Info [IST0118] (Service tutorial/recommendation f.yaml:"
                   f"{line_of(docs, '  - {name: web, port: 8080, targetPort: 8080}')}) Port name web (port: 8080, "
                   "targetPort: 8080) doesn't follow the naming convention of Istio port."]


def test_ist0127_authorization_policy_selects_nobody(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = ("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: allow\n"
              "  namespace: tutorial\nspec:\n  selector:\n    matchLabels: {app: preference}\n")
    _, out, _ = analyze(tmp_path, capsys, *BASE, policy)
    assert [line.split(") ", 1)[1] for line in out] == [
        "No matching workloads for this resource with the following labels: app=preference"]
    _, out, _ = analyze(tmp_path, capsys, *BASE, pod("preference-v1-1", "preference"), policy)
    assert out == []


def test_ist0128_tls_without_ca_certificates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tls = dr("  host: recommendation\n  trafficPolicy:\n    tls: {mode: SIMPLE}\n")
    _, out, _ = analyze(tmp_path, capsys, *BASE, tls)
    assert [line.split(") ", 1)[1] for line in out] == [
        "DestinationRule tutorial/recommendation in namespace tutorial has TLS mode set to SIMPLE but no "
        "caCertificates are set to validate server identity for host: recommendation"]
    _, out, _ = analyze(tmp_path, capsys, *BASE, tls.replace("{mode: SIMPLE}", "{mode: SIMPLE, caCertificates: "
                                                                                "/etc/ca.pem}"))
    assert out == []


def test_ist0130_ist0131_unreachable_rules_http_tcp_tls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    http = ("  - match: [{uri: {prefix: /debug}}]\n    route:\n    - destination: {host: recommendation}\n"
            "  - match: [{uri: {prefix: /debug/x}}]\n    route:\n    - destination: {host: recommendation}\n"
            "  - route:\n    - destination: {host: recommendation}\n"
            "  - route:\n    - destination: {host: recommendation}\n")
    tcp = ("\n  tcp:\n  - match: [{port: 9000}]\n    route: [{destination: {host: recommendation, port: {number: "
           "8080}}}]\n  - match: [{port: 9000}]\n    route: [{destination: {host: recommendation, port: {number: "
           "8080}}}]")
    _, out, _ = analyze(tmp_path, capsys, *BASE, vs(http, extra=tcp))
    assert [line.split(" (", 1)[0] + " " + line.split(") ", 1)[1] for line in out] == [
        "Warning [IST0130] VirtualService rule #1 not used (all matches used by prior rules).",
        "Warning [IST0130] VirtualService rule #3 not used (only the last rule can have no matches).",
        "Info [IST0131] VirtualService rule #1 match #0 is not used (duplicate/overlapping match in rule #0).",
        "Info [IST0131] VirtualService rule #1 match #0 of prefix /debug/x is not used (duplicate/overlapping "
        "match in rule #0 of prefix /debug on #0).",
    ]


def test_ist0157_access_log_without_provider(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    telemetry = ("apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata:\n  name: logs\n  namespace: tutorial\n"
                 "spec:\n  accessLogging:\n  - {}\n")
    _, out, _ = analyze(tmp_path, capsys, *BASE, telemetry)
    assert [line.split(") ", 1)[1] for line in out] == [
        'The Telemetry logs in namespace "tutorial" with empty providers will be ignored.']
    _, out, _ = analyze(tmp_path, capsys, *BASE, telemetry.replace("- {}", "- providers: [{name: envoy}]"))
    assert not [line for line in out if "IST0157" in line]


def test_ist0171_negative_condition(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entry = ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: time\n  namespace: tutorial\n"
             "spec:\n  hosts: [worldtimeapi.org]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n"
             "status:\n  conditions:\n  - {type: istio.io/WaypointBound, status: 'False', reason: WaypointNotFound, "
             "message: no waypoint}\n")
    _, out, _ = analyze(tmp_path, capsys, *BASE, entry)
    assert [line.split(") ", 1)[1] for line in out] == [
        "A condition with a negative status is present: type=istio.io/WaypointBound, reason=WaypointNotFound, "
        "message=no waypoint."]


def test_ist0173_subset_selects_no_pod_and_ist0174_unknown_host(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = [*BASE, dr(SUBSETS + "  - {name: version-v3, labels: {version: v3}}\n"),
            dr("  host: ratings\n", name="ratings")]
    code, out, _ = analyze(tmp_path, capsys, *docs)
    assert [line.split(" (", 1)[0] + " " + line.split(") ", 1)[1] for line in out] == [
        "Error [IST0173] The Subset version-v3 defined in the DestinationRule does not select any pods. Which may "
        "lead to 503 UH (NoHealthyUpstream).",
        "Warning [IST0174] The host ratings defined in the DestinationRule does not match any services in the mesh.",
    ]
    assert code == 79
    # the file's own pod for v3 makes the subset whole
    _, out, _ = analyze(tmp_path, capsys, *docs[:-1], pod("recommendation-v3-1", "recommendation", "v3"))
    assert out == []


def test_remote_jwks_uri_names_the_url_and_the_local_issuer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = "https://raw.githubusercontent.com/istio/istio/release-1.30/security/tools/jwt/samples/jwks.json"
    ra = ("apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata:\n  name: jwt\n  namespace: "
          f"tutorial\nspec:\n  selector:\n    matchLabels: {{app: recommendation}}\n  jwtRules:\n  - issuer: "
          f"testing@secure.istio.io\n    jwksUri: {url}\n")
    code, out, _ = analyze(tmp_path, capsys, *BASE, ra)
    assert code == 0 and len(out) == 1
    assert out[0].startswith("Warning [IST0133] (RequestAuthentication tutorial/jwt f.yaml:")
    assert f"jwksUri {url} cannot be fetched from the local mesh" in out[0]
    assert "issuer: testing@secure.istio.io, jwksUri: http://jwks.meshkit.local/jwks.json" in out[0]
    _, out, _ = analyze(tmp_path, capsys, *BASE, ra.replace(url, "http://jwks.meshkit.local/jwks.json"))
    assert out == []
