"""Prerequisite messages, with small shell-script stand-ins for the tools on a fake PATH."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from meshkit.backends.kind import prereqs
from meshkit.backends.kind.prereqs import check_prerequisites, check_tool
from meshkit.errors import BackendUnavailable

OUTPUTS = {
    "docker": "27.3.1",
    "kind": "kind v0.32.0 go1.24.4 linux/amd64",
    "kubectl": "Client Version: v1.36.1\nKustomize Version: v5.7.1",
    "istioctl": "client version: 1.30.3",
    "helm": "v3.18.4+g8c2a4d9",
}


def fake_bin(tmp_path: Path, **tools: str | None) -> str:
    """A PATH holding one script per tool printing its version; ``None`` omits the tool."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    sh = shutil.which("sh")
    assert sh
    for name, default in OUTPUTS.items():
        out = tools.get(name, default)
        if out is None:
            continue
        script = bin_dir / name
        if out.startswith("FAIL:"):
            script.write_text(f"#!{sh}\necho '{out[5:]}' >&2\nexit 1\n")
        else:
            script.write_text(f"#!{sh}\nprintf '%s\\n' '{out}'\n")
        script.chmod(0o755)
    return str(bin_dir)


def test_all_tools_present_and_recent(tmp_path: Path) -> None:
    report = check_prerequisites(path=fake_bin(tmp_path), system="Linux")
    assert report.problems == [] and report.installer == "istioctl"
    assert [(t.name, t.version) for t in report.tools] == [
        ("docker", (27, 3, 1)),
        ("kind", (0, 32, 0)),
        ("kubectl", (1, 36, 1)),
        ("istioctl", (1, 30, 3)),
    ]
    report.require()


@pytest.mark.parametrize(
    ("tool", "install"),
    [
        ("docker", "curl -fsSL https://get.docker.com | sh"),
        ("kind", "https://kind.sigs.k8s.io/dl/v0.32.0/kind-linux-"),
        ("kubectl", "https://dl.k8s.io/release/v1.36.1/bin/linux/"),
    ],
)
def test_each_missing_tool_names_its_linux_install_command(tmp_path: Path, tool: str, install: str) -> None:
    report = check_prerequisites(path=fake_bin(tmp_path, **{tool: None}), system="Linux")
    (problem,) = report.problems
    assert problem.startswith(f"{tool} is not on PATH; meshkit needs it for real clusters. Install it with: ")
    assert install in problem
    with pytest.raises(BackendUnavailable, match=f"{tool} is not on PATH"):
        report.require()


def test_macos_hints_use_homebrew(tmp_path: Path) -> None:
    report = check_prerequisites(path=fake_bin(tmp_path, kind=None, kubectl=None), system="Darwin")
    assert [p.split("Install it with: ")[1] for p in report.problems] == [
        "brew install kind (or: go install sigs.k8s.io/kind@v0.32.0)",
        "brew install kubectl",
    ]


def test_docker_installed_but_not_running(tmp_path: Path) -> None:
    path = fake_bin(
        tmp_path,
        docker="FAIL:Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
    )
    (problem,) = check_prerequisites(path=path, system="Linux").problems
    assert problem.startswith("Docker is installed (")
    assert "but its daemon is not answering (docker info: Cannot connect to the Docker daemon" in problem
    assert "sudo systemctl start docker" in problem


def test_old_versions_say_what_is_needed(tmp_path: Path) -> None:
    path = fake_bin(tmp_path, kind="kind v0.20.0 go1.20 linux/amd64", kubectl="Client Version: v1.29.2")
    problems = check_prerequisites(path=path, system="Linux").problems
    assert problems[0].startswith("kind 0.20.0 at ") and "is too old; meshkit needs >= 0.31" in problems[0]
    assert problems[1].startswith("kubectl 1.29.2 at ") and ">= 1.35" in problems[1]


def test_istioctl_of_another_minor_would_install_the_wrong_istio(tmp_path: Path) -> None:
    (problem,) = check_prerequisites(path=fake_bin(tmp_path, istioctl="1.31.0", helm=None), system="Linux").problems
    assert "istioctl 1.31.0" in problem and "meshkit pins Istio 1.30.3" in problem
    assert "ISTIO_VERSION=1.30.3 sh -" in problem
    assert "Or use helm instead: install it with: curl -fsSL https://raw.githubusercontent.com/helm" in problem


def test_auto_installer_falls_back_to_helm(tmp_path: Path) -> None:
    report = check_prerequisites(path=fake_bin(tmp_path, istioctl=None), system="Linux")
    assert report.problems == [] and report.installer == "helm"


def test_neither_istioctl_nor_helm(tmp_path: Path) -> None:
    (problem,) = check_prerequisites(path=fake_bin(tmp_path, istioctl=None, helm=None), system="Linux").problems
    assert problem.startswith("istioctl is not on PATH") and "Or use helm instead" in problem


def test_unreadable_version(tmp_path: Path) -> None:
    status = check_tool("kind", path=fake_bin(tmp_path, kind="kind dev build"), system="Linux")
    assert status.problem.startswith("could not read the version of kind")


def test_the_real_docker_on_this_machine_is_reported_honestly() -> None:
    status = check_tool("docker", path=os.environ.get("PATH"))
    if status.path is None:
        assert status.problem.startswith("docker is not on PATH")
    elif status.ok:
        assert status.version is not None
    else:
        assert status.problem.startswith("Docker is installed") or "too old" in status.problem


def test_install_hint_arm64() -> None:
    assert "kind-linux-arm64" in prereqs.install_hint("kind", "Linux", "aarch64")
