"""The ``meshkit`` command as a learner types it: real subprocesses against a real mesh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from meshkit.mesh import Mesh


def run(
    mesh: Mesh | None, *args: str, stdin: str | None = None, home: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MESHKIT_HOME=home or str(mesh.backend.home))  # type: ignore[union-attr]
    return subprocess.run([sys.executable, "-m", "meshkit.cli", *args], capture_output=True, text=True,
                          input=stdin, env=env, timeout=120)


def test_status_json_lists_pods(clean: Mesh) -> None:
    out = run(clean, "status", "-o", "json")
    assert out.returncode == 0, out.stderr
    pods = json.loads(out.stdout)["pods"]
    assert {p["app"] for p in pods} == {"customer", "preference", "recommendation", "istio-ingressgateway"}
    for p in pods:
        assert {"name", "app", "version", "ready"} <= set(p)
        assert p["ready"] is True
    names = [p["name"] for p in pods if p["app"] == "recommendation"]
    assert all(n.startswith(("recommendation-v1-", "recommendation-v2-")) and n.count("-") == 3 for n in names)


def test_apply_file_and_stdin_and_get(clean: Mesh, tmp_path: Path) -> None:
    f = tmp_path / "dr.yaml"
    f.write_text("apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata:\n  name: recommendation\n"
                 "spec:\n  host: recommendation\n  subsets:\n  - name: version-v1\n    labels: {version: v1}\n")
    out = run(clean, "apply", "-f", str(f))
    assert out.stdout.strip() == "destinationrule.networking.istio.io/recommendation created"
    vs = ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: recommendation}\n"
          "spec:\n  hosts: [recommendation]\n  http:\n  - route:\n    - destination: {host: recommendation, "
          "subset: version-v1}\n")
    out = run(clean, "apply", "-f", "-", stdin=vs)
    assert out.stdout.strip() == "virtualservice.networking.istio.io/recommendation created"
    got = run(clean, "get", "vs", "recommendation", "-o", "json")
    assert json.loads(got.stdout)["spec"]["http"][0]["route"][0]["destination"]["subset"] == "version-v1"
    curl = run(clean, "curl", "-n", "3")
    lines = curl.stdout.strip().splitlines()
    assert len(lines) == 3 and all("recommendation v1 from" in line for line in lines)
    assert run(clean, "delete", "vs", "recommendation").stdout.strip() == (
        "virtualservice.networking.istio.io/recommendation deleted")


def test_bad_yaml_is_located_and_nothing_applied(clean: Mesh, tmp_path: Path) -> None:
    clean.apply("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: keep}\n"
                "spec: {host: recommendation}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: recommendation}\n"
                   "spec:\n  hosts: [recommendation]\n  http:\n  - route:\n    - destination: {host: recommendation}\n"
                   "      weight: -5\n    - destination: {host: recommendation}\n      weight: 10\n")
    out = run(clean, "apply", "-f", str(bad))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "bad.yaml" in out.stderr and "weight -5 < 0" in out.stderr
    assert "spec.http[0].route[0].weight" in out.stderr
    assert [r["metadata"]["name"] for r in clean.get()] == ["customer-gateway", "customer-gateway", "keep"]


def test_load_json_shape(clean: Mesh) -> None:
    out = run(clean, "load", "-n", "50", "-c", "2", "--json")
    summary = json.loads(out.stdout)
    assert summary["requests"] == 50
    assert set(summary) >= {"requests", "duration_s", "rps", "codes", "versions", "pods", "latency_ms", "flags"}
    assert set(summary["latency_ms"]) == {"p50", "p90", "p99", "max"}
    assert sum(summary["versions"].values()) == 50


def test_analyze_reports_missing_subset(clean: Mesh, tmp_path: Path) -> None:
    vs = tmp_path / "vs.yaml"
    vs.write_text("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: recommendation}\n"
                  "spec:\n  hosts: [recommendation]\n  http:\n  - route:\n    - destination: {host: recommendation, "
                  "subset: version-v3}\n")
    out = run(clean, "analyze", "-f", str(vs))
    assert out.returncode == 79  # istioctl's exit code for issues at Error level
    assert ('Error [IST0101] (VirtualService tutorial/recommendation' in out.stdout
            and 'Referenced host+subset in destinationrule not found: "recommendation+version-v3"' in out.stdout)


def test_unknown_target_lists_valid_ones(clean: Mesh) -> None:
    out = run(clean, "misbehave", "recomendation-v9")
    assert out.returncode == 1
    assert "recommendation-v1" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("verb", [["status"], ["curl"], ["apply", "-f", "-"]])
def test_without_a_mesh_one_line_says_how_to_start(tmp_path: Path, verb: list[str]) -> None:
    out = run(None, *verb, stdin="", home=str(tmp_path / "nothing"))
    assert out.returncode == 1
    assert out.stderr.strip().endswith("start one with: meshkit up")
    assert len(out.stderr.strip().splitlines()) == 1


def test_control_plane_admits_only_valid_resources(clean: Mesh) -> None:
    """A client that skips meshkit's validation still meets the webhook in the control plane."""
    import urllib.error
    import urllib.request

    state = clean.backend._state()  # type: ignore[attr-defined]
    bad = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "x"},
           "spec": {"hosts": ["recommendation"], "http": [{"route": [{"destination": {"host": "recommendation"},
                                                                      "weight": -5}, {"destination": {
                                                                          "host": "recommendation"}}]}]}}
    credential = (clean.backend.home / "owner-credential").read_text()  # type: ignore[attr-defined]
    req = urllib.request.Request(f"http://127.0.0.1:{state['api_port']}/apply", method="POST",
                                 data=json.dumps({"resources": [bad]}).encode(),
                                 headers={"authorization": f"Bearer {credential}"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400
    assert "weight -5 < 0" in err.value.read().decode()
    assert clean.get("vs", "x") == []
