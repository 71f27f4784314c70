"""Running a plan: progress, skips, retries, failure and timeout messages; port and pod checks."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

import pytest

from meshkit.backends.kind import cluster
from meshkit.backends.kind.backend import KindBackend
from meshkit.backends.kind.client import KubeClient
from meshkit.backends.kind.plan import Step
from meshkit.errors import BackendUnavailable
from tests.kind.fakeapi import FakeApiServer
from tests.kind.test_requests import add_pods, pod


class Recorder:
    """A runner answering from a script: argv[0:2] -> list of (code, output) answers in turn."""

    def __init__(self, answers: dict[tuple[str, ...], list[tuple[int, str]]]) -> None:
        self.answers, self.calls = answers, []  # type: ignore[var-annotated]

    def __call__(self, argv: Sequence[str], timeout: float) -> tuple[int, str]:
        self.calls.append(tuple(argv))
        queue = self.answers.get(tuple(argv[:2]), [(0, "")])
        return queue.pop(0) if len(queue) > 1 else queue[0]


def test_progress_skip_and_retry() -> None:
    steps = [
        Step("create cluster", ("kind", "create"), skip_if=("kind", "get")),
        Step("addons", ("kubectl", "apply"), retries=2),
        Step("render", action="render"),
    ]
    run = Recorder({("kubectl", "apply"): [(1, "error: no matches for kind"), (0, "created")]})
    progress: list[tuple[int, int, str]] = []
    rendered: list[str] = []
    cluster.run_plan(
        steps,
        {"render": lambda step: rendered.append(step.description)},
        run,
        lambda i, n, what: progress.append((i, n, what)),
    )
    assert run.calls == [("kind", "get"), ("kubectl", "apply"), ("kubectl", "apply")]
    assert progress == [
        (1, 3, "create cluster"),
        (1, 3, "create cluster: already done, skipped"),
        (2, 3, "addons"),
        (2, 3, "addons: not yet, retrying (error: no matches for kind)"),
        (3, 3, "render"),
    ]
    assert rendered == ["render"]


def test_a_failing_step_stops_with_its_output_and_command() -> None:
    steps = [Step("install Istio", ("istioctl", "install", "-y")), Step("never", ("kubectl", "apply"))]
    run = Recorder({("istioctl", "install"): [(1, "Istiod encountered an error\nerror: failed to wait")]})
    with pytest.raises(cluster.InstallStepFailed) as err:
        cluster.run_plan(steps, {}, run)
    assert str(err.value).startswith(
        "step 1/2 (install Istio) failed (exit code 1): Istiod encountered an error | "
        "error: failed to wait. Command: istioctl install -y."
    )
    assert run.calls == [("istioctl", "install", "-y")]


def test_a_timeout_says_what_it_waited_for() -> None:
    steps = [
        Step(
            "wait for istiod",
            ("kubectl", "wait"),
            waits_for="deployment istiod to be Available",
            timeout_s=310,
        )
    ]
    with pytest.raises(cluster.InstallStepFailed) as err:
        cluster.run_plan(steps, {}, Recorder({("kubectl", "wait"): [(124, "no answer within 310s")]}))
    assert "step 1/1 (wait for istiod) timed out after 310s waiting for deployment istiod to be Available" in str(
        err.value
    )
    assert "8 GB" in str(err.value)


def test_taken_host_port_is_reported_with_the_fix() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(BackendUnavailable) as err:
            cluster.check_ports_free([port])
    text = str(err.value)
    assert text.startswith(f"host port {port} is already in use")
    assert f"lsof -iTCP:{port} -sTCP:LISTEN" in text and "KindBackend(host_port=9080)" in text
    cluster.check_ports_free([port])  # released: free again


def test_pods_ready_check_explains_what_is_missing(api: FakeApiServer, kc: KubeClient) -> None:
    assert cluster.pods_ready(kc) == (False, "no pods yet in namespace tutorial")
    add_pods(api, pod("customer-6b8c7f5d9c-a1b2c", "customer", "v1", ready=(True, False)))
    ok, seen = cluster.pods_ready(kc)
    assert not ok and seen == "not ready: customer-6b8c7f5d9c-a1b2c 1/2 Running"
    add_pods(api, pod("preference-v1-6b8c7f5d9c-zz9q8", "preference", "v1", sidecar=False))
    ok, seen = cluster.pods_ready(kc)
    assert not ok and "without the istio-proxy sidecar: preference-v1-6b8c7f5d9c-zz9q8" in seen
    api.objects.clear()
    add_pods(api, pod("customer-6b8c7f5d9c-a1b2c", "customer", "v1"))
    assert cluster.pods_ready(kc) == (True, "customer-6b8c7f5d9c-a1b2c 2/2")


def test_webhook_probe_is_a_server_dry_run(api: FakeApiServer, kc: KubeClient) -> None:
    api.fail(
        "PATCH",
        "meshkit-webhook-probe",
        500,
        {
            "kind": "Status",
            "code": 500,
            "message": 'Internal error occurred: failed calling webhook "validation.istio.io": connection refused',
        },
    )
    ok, seen = cluster.webhook_answers(kc)
    assert not ok and seen.startswith("Istio's validation webhook is not answering yet")
    assert cluster.webhook_answers(kc) == (True, "the validation webhook answered")
    assert all(p.query["dryRun"] == ["All"] for p in api.of("PATCH"))
    assert (
        api.of("PATCH")[0].path == "/apis/networking.istio.io/v1/namespaces/istio-system/virtualservices/"
        "meshkit-webhook-probe"
    )


def test_http_answers_reports_connection_errors() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ok, seen = cluster.http_answers(f"http://127.0.0.1:{port}/customer", timeout_s=2)
    assert not ok and "refused" in seen.lower()


def test_up_stops_at_prerequisites_and_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    run = Recorder({})
    with pytest.raises(BackendUnavailable) as err:
        KindBackend(str(tmp_path / "home"), run=run).up()
    text = str(err.value)
    assert "Docker is installed" in text and "kind is not on PATH" in text and "kubectl is not on PATH" in text
    assert run.calls == [] and not (tmp_path / "home" / "kind-meshkit" / "sample.yaml").exists()


def test_dry_run_prints_the_plan_without_running_anything(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = Recorder({})
    KindBackend(str(tmp_path), run=run, installer="istioctl").up(dry_run=True)
    out = capsys.readouterr().out
    assert out.startswith("meshkit up --backend kind: 23 steps (Istio 1.30.3")
    assert f"{tmp_path}/kind-meshkit/kind-config.yaml" in out and run.calls == []


def test_pods_ready_in_ambient_wants_istio_cnis_mark_and_no_sidecar(api: FakeApiServer, kc: KubeClient) -> None:
    add_pods(api, pod("customer-6b8c7f5d9c-a1b2c", "customer", "v1", ready=(True,), sidecar=False))
    ok, seen = cluster.pods_ready(kc, "ambient")
    assert not ok and seen.startswith("pods not enrolled in ambient: customer-6b8c7f5d9c-a1b2c (is namespace "
                                      "tutorial labelled istio.io/dataplane-mode=ambient")
    enrolled = pod("customer-6b8c7f5d9c-a1b2c", "customer", "v1", ready=(True,), sidecar=False)
    enrolled["metadata"]["annotations"] = {"ambient.istio.io/redirection": "enabled"}
    add_pods(api, enrolled)
    assert cluster.pods_ready(kc, "ambient") == (True, "customer-6b8c7f5d9c-a1b2c 1/1 ambient")
    assert [p.extra["dataplane"] for p in kc.pods()] == ["ambient"]
    add_pods(api, pod("preference-v1-6b8c7f5d9c-zz9q8", "preference", "v1"))  # a sidecar pod never enrolls
    ok, seen = cluster.pods_ready(kc, "ambient")
    assert not ok and "preference-v1-6b8c7f5d9c-zz9q8" in seen


def test_dry_run_with_the_ambient_data_plane(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = Recorder({})
    KindBackend(str(tmp_path), run=run, installer="istioctl").up(dry_run=True, dataplane="ambient")
    out = capsys.readouterr().out
    assert out.startswith("meshkit up --backend kind --dataplane ambient: 25 steps (Istio 1.30.3")
    assert "--set profile=ambient" in out and run.calls == []
    from meshkit.errors import InvalidConfig

    with pytest.raises(InvalidConfig, match='unknown data plane "sidecars"; choose one of: sidecar, ambient'):
        KindBackend(str(tmp_path), run=run).up(dry_run=True, dataplane="sidecars")
