"""Kubernetes resources on the local mesh, driven as the tutorial drives them (kubectl-style CLI).

One mesh for the module; the tests run in order and build on each other like the tutorial's first
chapter: customer alone, then preference, then recommendation.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshkit.cli import main
from meshkit.mesh import Mesh
from tests.local.conftest import start_mesh, stop_mesh


def run(mesh: Mesh, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``meshkit`` command in this process (its parser, verbs and output), against ``mesh``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--home", str(mesh.backend.home), *args])  # type: ignore[attr-defined]
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def deployment(name: str, app: str, version: str, image: str, replicas: int = 1) -> str:
    """A Deployment shaped like the tutorial's ``<service>/kubernetes/Deployment.yml``."""
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  labels: {{app: {app}, version: {version}}}
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {app}, version: {version}}}
  template:
    metadata:
      labels: {{app: {app}, version: {version}}}
      annotations: {{sidecar.istio.io/inject: "true"}}
    spec:
      containers:
      - name: {app}
        image: {image}
        ports:
        - {{containerPort: 8080, name: http, protocol: TCP}}
      serviceAccount: {app}
"""


def service(app: str) -> str:
    return f"""apiVersion: v1
kind: Service
metadata:
  name: {app}
  labels: {{app: {app}}}
spec:
  ports:
  - {{name: http, port: 8080}}
  selector: {{app: {app}}}
"""


def account(app: str) -> str:
    return f'---\napiVersion: "v1"\nkind: "ServiceAccount"\nmetadata:\n  name: "{app}"\n---\n'


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = start_mesh(tmp_path_factory.mktemp("mesh"))
    yield m
    stop_mesh(m)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tutorial")
    for app, name, version in (("preference", "preference-v1", "v1"), ("recommendation", "recommendation-v1", "v1")):
        (root / app / "kubernetes").mkdir(parents=True)
        image = f"quay.io/rhdevelopers/istio-tutorial-{app}:v1.1"
        (root / app / "kubernetes" / "Deployment.yml").write_text(account(app) + deployment(name, app, version, image))
        (root / app / "kubernetes" / "Service.yml").write_text(service(app))
    return root


def curl(mesh: Mesh) -> str:
    out = run(mesh, "curl")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_first_chapter_step_by_step(mesh: Mesh, files: Path) -> None:
    # customer only: undeploying the last deployment of a service takes its Service with it
    for dep in ("preference-v1", "recommendation-v1", "recommendation-v2"):
        assert run(mesh, "undeploy", f"deployment/{dep}").returncode == 0
    services = [s["metadata"]["name"] for s in mesh.get("services")]
    assert services == ["customer"]
    assert curl(mesh) == "customer => UnknownHostException: preference"
    log = run(mesh, "logs", "deployment/customer", "-c", "customer").stdout
    assert "WARN" in log and "Caused by: java.net.UnknownHostException: preference" in log

    # then preference: its Deployment and Service, applied as the tutorial does (-n tutorial)
    out = run(mesh, "apply", "-f", str(files / "preference/kubernetes/Deployment.yml"), "-n", "tutorial")
    assert out.returncode == 0, out.stderr
    assert "deployment.apps/preference-v1 created" in out.stdout.splitlines()
    assert run(mesh, "apply", "-f", str(files / "preference/kubernetes/Service.yml"), "-n", "tutorial").stdout.strip() \
        == "service/preference created"
    assert curl(mesh) == "customer => Error: 503 - preference => UnknownHostException: recommendation"
    log = run(mesh, "logs", "-l", "app=preference", "-c", "preference", "-n", "tutorial").stdout
    assert "Caused by: java.net.UnknownHostException: recommendation" in log

    # then recommendation: the whole chain answers, the counter starts at 1
    out = run(mesh, "apply", "-f", str(files / "recommendation/kubernetes/Deployment.yml"),
              "-f", str(files / "recommendation/kubernetes/Service.yml"))
    assert out.returncode == 0, out.stderr
    line = curl(mesh)
    assert line.startswith("customer => preference => recommendation v1 from 'recommendation-v1-")
    assert line.endswith("': 1")
    pods = json.loads(run(mesh, "get", "pods", "-l", "app=recommendation", "-o", "json").stdout)
    assert [p["metadata"]["labels"]["version"] for p in pods] == ["v1"]
    assert line.split("'")[1] == pods[0]["metadata"]["name"]


def test_service_without_pods_has_no_healthy_upstream(mesh: Mesh, files: Path) -> None:
    # kubectl delete deployment keeps the Service: its cluster has no endpoint left
    out = run(mesh, "delete", "deployment", "recommendation-v1")
    assert out.returncode == 0, out.stderr
    assert [s["metadata"]["name"] for s in mesh.get("svc", "recommendation")] == ["recommendation"]
    body = mesh.curl()[1]
    assert body == "customer => Error: 503 - preference => Error: 503 - no healthy upstream"
    # the sample's error replies end with a newline each, as its String.format writes them
    code, raw = mesh.exec("customer", "http://preference:8080/")
    assert (code, raw) == (503, "preference => Error: 503 - no healthy upstream\n")
    assert run(mesh, "apply", "-f", str(files / "recommendation/kubernetes/Deployment.yml")).returncode == 0
    assert mesh.curl()[0] == 200


def test_exec_loopback_reaches_the_app_not_the_sidecar(mesh: Mesh) -> None:
    pod = mesh.get("pods", selector="app=recommendation")[0]["metadata"]["name"]
    out = run(mesh, "exec", "-it", f"pod/{pod}", "-c", "recommendation", "--", "curl", "localhost:8080/misbehave")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Following requests to / will return a 503"
    assert mesh.curl()[1] == (f"customer => Error: 503 - preference => Error: 503 - recommendation misbehavior "
                              f"from '{pod}'")
    assert mesh.exec(pod, "http://localhost:8080/behave") == (200, "Following requests to / will return 200\n")
    assert mesh.curl()[0] == 200
    # a name with no Service behind it does not resolve inside a pod either
    assert mesh.exec("customer", "http://nosuchservice:8080/") == (0, "curl: (6) Could not resolve host: nosuchservice")


def test_logs_follow_prints_new_lines(mesh: Mesh) -> None:
    env = dict(os.environ, MESHKIT_HOME=str(mesh.backend.home))  # type: ignore[attr-defined]
    proc = subprocess.Popen([sys.executable, "-m", "meshkit.cli", "logs", "-f", "deployment/recommendation-v1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(2.0)  # the first read (the backlog) is done; what follows is new
        mesh.curl()
        deadline = time.monotonic() + 30
        lines: list[str] = []
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            lines.append(proc.stdout.readline())
            if "recommendation request from" in lines[-1] and lines[-1].rstrip().endswith(": 2"):
                break
        assert lines[-1].rstrip().endswith(": 2"), lines
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_kubectl_style_names_namespaces_and_selectors(mesh: Mesh, tmp_path: Path) -> None:
    out = run(mesh, "get", "pods", "-l", "app=preference", "-o", "name")
    assert out.stdout.strip().startswith("pod/preference-v1-")
    dep = json.loads(run(mesh, "get", "deployment/preference-v1", "-o", "json").stdout)
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"].startswith("quay.io/rhdevelopers/")
    assert run(mesh, "scale", "deployment/preference-v1", "--replicas", "2").returncode == 0
    assert len(mesh.get("pods", selector="app=preference,version=v1")) == 2
    ready = run(mesh, "get", "deploy", "preference-v1").stdout.splitlines()[1].split()
    assert ready[:2] == ["preference-v1", "2/2"]
    assert run(mesh, "scale", "deployment/preference-v1", "--replicas", "1").returncode == 0
    other = tmp_path / "other.yaml"
    other.write_text(service("elsewhere").replace("metadata:\n", "metadata:\n  namespace: other\n", 1))
    out = run(mesh, "apply", "-f", str(other), "-n", "tutorial")
    assert out.returncode == 1
    assert 'the namespace from the provided object "other" does not match the namespace "tutorial"' in out.stderr
    assert run(mesh, "get", "pods", "-l", "app=", "-n", "istio-system").returncode == 0
    assert run(mesh, "get", "svc", "-n", "tutorial").stdout.splitlines()[0].split()[:2] == ["NAME", "TYPE"]


def test_a_scale_is_stored_and_survives_a_control_plane_restart(mesh: Mesh) -> None:
    home = mesh.backend.home  # type: ignore[attr-defined]

    def stored_replicas() -> int:
        items = json.loads((home / "resources.json").read_text())
        [dep] = [r for r in items if r["kind"] == "Deployment" and r["metadata"]["name"] == "preference-v1"]
        return int(dep["spec"]["replicas"])

    assert stored_replicas() == 1  # applied from the tutorial's Deployment.yml
    generation = json.loads(run(mesh, "get", "deployment/preference-v1", "-o", "json").stdout)["metadata"]["generation"]
    assert run(mesh, "scale", "deployment/preference-v1", "--replicas", "2").returncode == 0
    assert stored_replicas() == 2  # on disk before the command returned
    mesh.restart_control_plane()
    dep = json.loads(run(mesh, "get", "deployment/preference-v1", "-o", "json").stdout)
    assert dep["spec"]["replicas"] == 2 and dep["metadata"]["generation"] == generation + 1
    assert len(mesh.get("pods", selector="app=preference,version=v1")) == 2
    assert run(mesh, "scale", "deployment/preference-v1", "--replicas", "1").returncode == 0
    assert stored_replicas() == 1


def test_rbac_names_with_colons_are_read_and_deleted_and_no_name_climbs_out(mesh: Mesh, tmp_path: Path) -> None:
    role = tmp_path / "role.yaml"
    role.write_text("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n"
                    "metadata: {name: 'system:meshkit-reader'}\nrules: []\n")
    assert run(mesh, "apply", "-f", str(role)).returncode == 0
    assert [r["metadata"]["name"] for r in mesh.get("clusterroles", "system:meshkit-reader")] == \
        ["system:meshkit-reader"]
    out = run(mesh, "delete", "clusterrole", "system:meshkit-reader")
    assert out.returncode == 0, out.stderr
    assert mesh.get("clusterroles") == []
    for kind, name, why in (("clusterrole", "..", "may not be '.' or '..'"),
                            ("clusterrole", "a/../../x", "may not contain '/'"),
                            ("virtualservice", "a:b", "RFC 1123 subdomain")):
        out = run(mesh, "delete", kind, name)
        assert out.returncode == 1 and why in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_invalid_and_unrunnable_deployments(mesh: Mesh, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(deployment("x", "x", "v1", "nginx").replace("matchLabels: {app: x, version: v1}",
                                                               "matchLabels: {app: y}"))
    out = run(mesh, "apply", "-f", str(bad))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert (f"error: {bad}, document 1 (line 12): Deployment tutorial/x: spec.template.metadata.labels: Invalid "
            'value: map[string]string{"app":"x", "version":"v1"}: `selector` does not match template `labels`'
            ) == out.stderr.strip()
    other = tmp_path / "nginx.yml"
    other.write_text(deployment("web", "web", "v1", "nginx:1.27"))
    out = run(mesh, "apply", "-f", str(other))
    assert out.returncode == 0, out.stderr
    assert "nginx:1.27 is stored but runs no pods" in out.stderr
    assert run(mesh, "get", "deploy", "web").stdout.splitlines()[1].split()[:2] == ["web", "0/1"]
    assert run(mesh, "delete", "deployment/web").returncode == 0
    # other Kubernetes kinds (Istio's samples carry ConfigMaps, Secrets, RBAC...) are stored, with a warning
    extra = tmp_path / "extra.yaml"
    extra.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n---\n"
                     "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: reader}\n"
                     "rules: []\n")
    out = run(mesh, "apply", "-f", str(extra))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["configmap/settings created",
                                       "clusterrole.rbac.authorization.k8s.io/reader created"]
    assert "the local mesh does not simulate ConfigMaps" in out.stderr
    assert [c["data"] for c in mesh.get("cm", "settings")] == [{"a": b} for b in ["b"]]
    assert run(mesh, "delete", "-f", str(extra)).returncode == 0
    assert mesh.get("configmaps") == [] and mesh.get("clusterroles") == []


def test_remote_jwks_uri_refuses_tokens_and_lets_anonymous_requests_pass(mesh: Mesh) -> None:
    url = "https://raw.githubusercontent.com/istio/istio/release-1.30/security/tools/jwt/samples/jwks.json"
    mesh.apply("apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata:\n  name: jwt\nspec:\n"
               "  selector:\n    matchLabels: {app: customer}\n  jwtRules:\n  - issuer: testing@secure.istio.io\n"
               f"    jwksUri: {url}\n")
    try:
        assert any(url in w and "http://jwks.meshkit.local/jwks.json" in w for w in mesh.warnings), mesh.warnings
        assert mesh.curl()[0] == 200  # no token: RequestAuthentication alone lets it pass
        code, body = mesh.curl(headers={"authorization": f"Bearer {mesh.token(role='customer')}"})
        assert (code, body) == (401, "Jwks doesn't have key to match kid or alg from Jwt")  # stand-in keys
    finally:
        mesh.delete("requestauthentication", "jwt")


def test_advanced_chapters_preference_v2_and_virtualized_recommendation(mesh: Mesh, tmp_path: Path) -> None:
    files = tmp_path / "advanced.yml"
    files.write_text("---\n".join([
        deployment("preference-v2", "preference", "v2", "example/preference:v2"),
        deployment("recommendation-virtualized", "recommendation", "virtualized", "example/recommendation:virtualized"),
        "apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: recommendation}\nspec:\n"
        "  host: recommendation\n  subsets:\n  - {name: version-v1, labels: {version: v1}}\n"
        "  - {name: version-virtualized, labels: {version: virtualized}}\n",
        "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: recommendation}\nspec:\n"
        "  hosts: [recommendation]\n  http:\n  - match:\n    - sourceLabels: {app: preference, version: v2}\n"
        "    route:\n    - destination: {host: recommendation, subset: version-virtualized}\n"
        "  - route:\n    - destination: {host: recommendation, subset: version-v1}\n",
    ]))
    out = run(mesh, "apply", "-f", str(files))
    assert out.returncode == 0, out.stderr
    try:
        load = run(mesh, "load", "-n", "40", "-c", "4", "--json")
        summary = json.loads(load.stdout)
        assert summary["codes"] == {"200": 40}
        replies = summary["replies"]
        assert set(replies) == {"customer => preference => recommendation v1",
                                "customer => PREFERENCE => recommendation v2"}, replies
        assert summary["pods"]["virtualized"] == replies["customer => PREFERENCE => recommendation v2"]
        # Hoverfly's recorded answer, whatever the request count
        bodies = {mesh.curl()[1] for _ in range(6)}
        assert {r for r in bodies if "PREFERENCE" in r} <= {
            "customer => PREFERENCE => recommendation v2 from 'virtualized': 2"}, bodies
    finally:
        for kind, name in (("vs", "recommendation"), ("dr", "recommendation"),
                           ("deployment", "preference-v2"), ("deployment", "recommendation-virtualized")):
            run(mesh, "delete", kind, name)


def test_the_timeout_image_is_the_tutorials_slow_v2(mesh: Mesh, tmp_path: Path) -> None:
    slow = tmp_path / "Deployment-v2-timeout.yml"
    slow.write_text(deployment("recommendation-v2", "recommendation", "v2",
                               "quay.io/rhdevelopers/istio-tutorial-recommendation:v2.2-timeout"))
    assert run(mesh, "apply", "-f", str(slow)).returncode == 0
    try:
        pod = mesh.get("pods", selector="app=recommendation,version=v2")[0]["metadata"]["name"]
        started = time.monotonic()
        code, body = mesh.exec(pod, "http://localhost:8080/")
        took = time.monotonic() - started
        assert code == 200 and body.startswith(f"recommendation v2 from '{pod}'")
        assert took >= 3.0, took  # its timeout() sleeps 3 s before answering
    finally:
        run(mesh, "delete", "deployment", "recommendation-v2")
