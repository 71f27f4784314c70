"""Prerequisites of the kind backend: a running Docker, and kind, kubectl, istioctl (or helm).

Each missing or outdated tool becomes one paragraph that says how to install the right version on
this platform; all problems are reported at once, before anything is changed.

Example::

    report = check_prerequisites()
    if report.problems:
        print("\\n\\n".join(report.problems))
    report.require()  # raises BackendUnavailable with the same text
"""

from __future__ import annotations

import os
import platform as _platform
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from meshkit.backends.kind import versions
from meshkit.errors import BackendUnavailable

#: runs argv, returns (exit code, stdout+stderr); injectable so tests can fake the tools
Runner = Callable[[Sequence[str], float], tuple[int, str]]

_VERSION_ARGS: dict[str, list[str]] = {
    "docker": ["info", "--format", "{{.ServerVersion}}"],
    "kind": ["version"],
    "kubectl": ["version", "--client"],
    "istioctl": ["version", "--remote=false"],
    "helm": ["version", "--short"],
}


@dataclass(frozen=True)
class ToolStatus:
    """What the check found for one tool: where it is, its version, and a problem ("" if fine)."""

    name: str
    path: str | None
    version: tuple[int, ...] | None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem


@dataclass(frozen=True)
class Prerequisites:
    """The tools checked, the Istio installer chosen (``istioctl``/``helm``/``""``) and the problems."""

    tools: tuple[ToolStatus, ...]
    installer: str

    @property
    def problems(self) -> list[str]:
        return [tool.problem for tool in self.tools if tool.problem]

    def require(self) -> None:
        """Raise :class:`BackendUnavailable` listing every problem (one paragraph each), if any."""
        if self.problems:
            raise BackendUnavailable("\n\n".join(self.problems))


def subprocess_runner(env_path: str | None = None) -> Runner:
    """A :data:`Runner` on :func:`subprocess.run`, optionally with another PATH."""

    def run(argv: Sequence[str], timeout: float) -> tuple[int, str]:
        env = dict(os.environ)
        if env_path is not None:
            env["PATH"] = env_path
        try:
            done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env, check=False)
        except subprocess.TimeoutExpired:
            return 124, f"no answer within {timeout:.0f}s"
        except OSError as exc:
            return 127, str(exc)
        return done.returncode, (done.stdout + done.stderr).strip()

    return run


def install_hint(tool: str, system: str | None = None, machine: str | None = None) -> str:
    """The command that installs the pinned/minimum version of ``tool`` on Linux or macOS."""
    system = (system or _platform.system()).lower()
    arch = "arm64" if (machine or _platform.machine()).lower() in ("arm64", "aarch64") else "amd64"
    mac = system == "darwin"
    kind, kube, istio = versions.KIND_VERSION, versions.KUBERNETES_VERSION, versions.ISTIO_VERSION
    hints = {
        "docker": "install Docker Desktop (brew install --cask docker) or Colima "
        "(brew install colima docker && colima start --cpu 4 --memory 8)"
        if mac
        else "install Docker Engine: curl -fsSL https://get.docker.com | sh "
        "(then: sudo usermod -aG docker $USER and log in again)",
        "kind": f"brew install kind (or: go install sigs.k8s.io/kind@v{kind})"
        if mac
        else f"curl -Lo ./kind https://kind.sigs.k8s.io/dl/v{kind}/kind-linux-{arch} && chmod +x ./kind "
        "&& sudo mv ./kind /usr/local/bin/kind",
        "kubectl": "brew install kubectl"
        if mac
        else f"curl -LO https://dl.k8s.io/release/v{kube}/bin/linux/{arch}/kubectl "
        "&& sudo install -m 0755 kubectl /usr/local/bin/kubectl",
        "istioctl": f"curl -L https://istio.io/downloadIstio | ISTIO_VERSION={istio} sh - "
        f'&& export PATH="$PWD/istio-{istio}/bin:$PATH"',
        "helm": "brew install helm"
        if mac
        else "curl -fsSL https://raw.githubusercontent.com/helm/helm/main/scripts/get-helm-3 | bash",
    }
    return hints[tool]


def check_tool(
    name: str,
    *,
    path: str | None = None,
    run: Runner | None = None,
    system: str | None = None,
    minimum: tuple[int, ...] | None = None,
) -> ToolStatus:
    """Locate ``name`` on ``path`` (default: $PATH), ask its version and compare it to the minimum."""
    run = run or subprocess_runner(path)
    exe = shutil.which(name, path=path)
    if exe is None:
        return ToolStatus(
            name,
            None,
            None,
            f"{name} is not on PATH; meshkit needs it for real clusters. Install it with: {install_hint(name, system)}",
        )
    code, out = run([exe, *_VERSION_ARGS[name]], 20.0)
    if name == "docker" and code != 0:
        start = (
            "start Docker Desktop (or: colima start)"
            if (system or _platform.system()).lower() == "darwin"
            else "start it with: sudo systemctl start docker (or start Docker Desktop)"
        )
        first_line = out.splitlines()[-1] if out else f"exit code {code}"
        return ToolStatus(
            name,
            exe,
            None,
            f"Docker is installed ({exe}) but its daemon is not answering "
            f"(docker info: {first_line}). The kind backend runs the cluster in Docker: {start}, "
            "then check with: docker info",
        )
    found = versions.parse_version(out) if code == 0 else None
    minimum = minimum or versions.MIN_VERSIONS[name]
    if found is None:
        return ToolStatus(
            name,
            exe,
            None,
            f"could not read the version of {name} ({exe}: {out or f'exit code {code}'}); "
            f"meshkit needs {name} >= {versions.dotted(minimum)}. Reinstall it with: "
            f"{install_hint(name, system)}",
        )
    if found[: len(minimum)] < minimum:
        return ToolStatus(
            name,
            exe,
            found,
            f"{name} {versions.dotted(found)} at {exe} is too old; meshkit needs "
            f">= {versions.dotted(minimum)}. Upgrade it with: {install_hint(name, system)}",
        )
    if name == "istioctl" and not versions.same_minor(versions.dotted(found)):
        return ToolStatus(
            name,
            exe,
            found,
            f"istioctl {versions.dotted(found)} at {exe} would install Istio "
            f"{versions.dotted(found)}, but meshkit pins Istio {versions.ISTIO_VERSION} (the labs "
            "are checked "
            f"against it). Get the matching istioctl with: {install_hint('istioctl', system)}",
        )
    return ToolStatus(name, exe, found)


def check_prerequisites(
    tools: Sequence[str] = ("docker", "kind", "kubectl"),
    installer: str = "auto",
    *,
    path: str | None = None,
    run: Runner | None = None,
    system: str | None = None,
    minimums: Mapping[str, tuple[int, ...]] | None = None,
) -> Prerequisites:
    """Check ``tools`` and an Istio installer (``"istioctl"``, ``"helm"``, ``"auto"`` or ``""`` for none).

    ``auto`` takes istioctl when a matching one is on PATH, else helm when present, else reports
    istioctl (the recommended path) as missing with helm named as the alternative.
    """
    minimums = minimums or {}
    statuses = [check_tool(tool, path=path, run=run, system=system, minimum=minimums.get(tool)) for tool in tools]
    chosen = installer
    if installer in ("istioctl", "helm"):
        statuses.append(check_tool(installer, path=path, run=run, system=system))
    elif installer == "auto":
        istioctl = check_tool("istioctl", path=path, run=run, system=system)
        helm = check_tool("helm", path=path, run=run, system=system) if not istioctl.ok else None
        if istioctl.ok or helm is None:
            chosen = "istioctl"
            statuses.append(istioctl)
        elif helm.ok:
            chosen = "helm"
            statuses.append(helm)
        else:
            chosen = "istioctl"
            alt = "\nOr use helm instead: " + (
                helm.problem if helm.path else f"install it with: {install_hint('helm', system)}"
            )
            statuses.append(ToolStatus("istioctl", istioctl.path, istioctl.version, istioctl.problem + alt))
    elif installer:
        raise BackendUnavailable(f"unknown Istio installer {installer!r}; choose istioctl, helm or auto")
    return Prerequisites(tuple(statuses), chosen)
