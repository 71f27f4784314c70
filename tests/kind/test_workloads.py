"""misbehave / delay / exec_request / kill on the kind backend, with kubectl exec recorded and the request
program run for real against a server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from meshkit.backends.kind import podexec
from meshkit.backends.kind.backend import KindBackend
from meshkit.backends.kind.client import KubeClient
from meshkit.backends.kind.plan import PlanOptions
from meshkit.errors import MeshkitError, NotFound
from tests.kind.fakeapi import FakeApiServer
from tests.kind.test_requests import add_pods, pod

V2A, V2B = "recommendation-v2-6b8c7f5d9c-aaaaa", "recommendation-v2-6b8c7f5d9c-bbbbb"


@pytest.fixture
def app_server() -> Iterator[tuple[str, list[tuple[str, str, dict]]]]:
    seen: list[tuple[str, str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(("GET", self.path, dict(self.headers.items())))
            code, body = (503, b"recommendation misbehavior\n") if self.path == "/" else (200, b"ok\n")
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def run_locally(argv: Sequence[str], timeout: float) -> tuple[int, str]:
    """Run the program kubectl exec would run in the pod, here, with this Python."""
    python_at = list(argv).index("python")
    done = subprocess.run(
        [sys.executable, *argv[python_at + 1 :]], capture_output=True, text=True, timeout=timeout, check=False
    )
    return done.returncode, done.stdout + done.stderr


def test_request_program_returns_status_and_body_even_for_errors(app_server) -> None:
    url, seen = app_server
    argv = podexec.exec_argv("kind-meshkit", "tutorial", V2A, "recommendation", url + "/", {"user-agent": "Safari"})
    assert argv[:10] == [
        "kubectl",
        "--context",
        "kind-meshkit",
        "-n",
        "tutorial",
        "exec",
        V2A,
        "-c",
        "recommendation",
        "--",
    ]
    code, out = run_locally(argv, 30)
    assert podexec.parse_output(code, out) == (503, "recommendation misbehavior\n")
    assert seen[-1][2]["User-Agent"] == "Safari"


def test_no_http_answer_is_status_zero() -> None:
    argv = podexec.exec_argv("c", "ns", "p", "app", "http://127.0.0.1:9/", timeout_s=2)
    code, out = run_locally(argv, 30)
    assert podexec.parse_output(code, out)[0] == 0


def test_kubectl_failure_is_a_clear_error() -> None:
    with pytest.raises(MeshkitError, match="could not send http://x/ from pod p: Error from server"):
        podexec.parse_output(1, 'Error from server (NotFound): pods "p" not found', pod="p", url="http://x/")


class Exec:
    """Records kubectl exec calls and runs the request program locally against ``target``."""

    def __init__(self, target: str) -> None:
        self.target, self.calls = target, []  # type: ignore[var-annotated]

    def __call__(self, argv: Sequence[str], timeout: float) -> tuple[int, str]:
        self.calls.append(list(argv))
        args = list(argv)
        url_at = args.index("-c", args.index("python")) + 2
        args[url_at] = args[url_at].replace("http://localhost:8080", self.target)
        return run_locally(args, timeout)


def test_misbehave_and_delay_reach_every_pod_of_a_deployment(api: FakeApiServer, kc: KubeClient, app_server) -> None:
    url, seen = app_server
    add_pods(
        api,
        pod(V2A, "recommendation", "v2"),
        pod(V2B, "recommendation", "v2"),
        pod("recommendation-v1-6b8c7f5d9c-ccccc", "recommendation", "v1"),
    )
    run = Exec(url)
    backend = KindBackend(client=kc, run=run)
    assert backend.misbehave("recommendation-v2") == [V2A, V2B]
    assert backend.misbehave(V2B, on=False) == [V2B]
    assert backend.delay("recommendation-v2", 3) == [V2A, V2B]
    assert [path for _, path, _ in seen] == [
        "/misbehave",
        "/misbehave",
        "/behave",
        "/delay?seconds=3",
        "/delay?seconds=3",
    ]
    assert [(c[6], c[8]) for c in run.calls] == [
        (V2A, "recommendation"),
        (V2B, "recommendation"),
        (V2B, "recommendation"),
        (V2A, "recommendation"),
        (V2B, "recommendation"),
    ]
    with pytest.raises(NotFound, match="no pod or deployment 'ratings-v1'"):
        backend.misbehave("ratings-v1")


def test_kill_returns_the_replacement(api: FakeApiServer, kc: KubeClient) -> None:
    add_pods(api, pod(V2A, "recommendation", "v2"))
    api.on_delete = lambda path: add_pods(api, pod(V2B, "recommendation", "v2", ready=(False, False)))
    assert KindBackend(client=kc).kill(V2A) == V2B
    assert api.of("DELETE")[0].path == f"/api/v1/namespaces/tutorial/pods/{V2A}"


def test_render_writes_the_plans_files_with_the_chosen_port_and_image(tmp_path: Path) -> None:
    backend = KindBackend(str(tmp_path), host_port=9080)
    opts = PlanOptions(home=backend.home, host_port=9080, image="meshkit-sample:0123456789ab")
    backend.render(opts)
    kind_cfg = yaml.safe_load((backend.home / "kind-config.yaml").read_text())
    assert kind_cfg["nodes"][0]["extraPortMappings"][0]["hostPort"] == 9080
    sample = list(yaml.safe_load_all((backend.home / "sample.yaml").read_text()))
    images = {
        c["image"] for d in sample if d["kind"] == "Deployment" for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"meshkit-sample:0123456789ab"}
    assert (backend.home / "image-context" / "Dockerfile").is_file()
    assert json.loads(json.dumps(yaml.safe_load((backend.home / "namespace.yaml").read_text())))["metadata"][
        "labels"
    ] == {"istio-injection": "enabled"}


def test_render_for_ambient_labels_the_namespace_for_ztunnel(tmp_path: Path) -> None:
    backend = KindBackend(str(tmp_path))
    backend.render(PlanOptions(home=backend.home, image="meshkit-sample:0123456789ab", dataplane="ambient"))
    ns = yaml.safe_load((backend.home / "namespace.yaml").read_text())
    assert ns["metadata"]["labels"] == {"istio.io/dataplane-mode": "ambient"}
    sample = list(yaml.safe_load_all((backend.home / "sample.yaml").read_text()))
    # nothing in the sample's pods asks for a sidecar: the namespace's label enrolls them
    for d in sample:
        if d["kind"] == "Deployment":
            labels = d["spec"]["template"]["metadata"].get("labels") or {}
            assert labels.get("sidecar.istio.io/inject") != "true"
