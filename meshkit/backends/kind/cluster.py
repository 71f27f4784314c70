"""Run an install plan: commands through a subprocess runner, API actions through callables.

Progress goes to ``progress(step_index, total, description)`` (the CLI and notebooks draw a bar);
a step that fails or times out stops the run with a message naming the step, what it waited for,
the command to re-run by hand, and the usual cause.

Example::

    run_plan(install_plan(opts), actions={RENDER: lambda step: render(opts)}, progress=print_bar)
"""

from __future__ import annotations

import shlex
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence

from meshkit.backends.kind.client import KubeClient
from meshkit.backends.kind.plan import Step
from meshkit.backends.kind.prereqs import Runner, subprocess_runner
from meshkit.errors import BackendUnavailable, MeshkitError

Progress = Callable[[int, int, str], None]
Action = Callable[[Step], object]

_TIMED_OUT = 124  # the runner's exit code for "no answer within the timeout"


class InstallStepFailed(MeshkitError):
    """A step of the install plan failed; the message names it and the fix."""

    exit_code = 3


def _tail(text: str, lines: int = 6) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) if kept else "(no output)"


def run_plan(
    steps: Sequence[Step],
    actions: Mapping[str, Action],
    run: Runner | None = None,
    progress: Progress | None = None,
) -> None:
    """Run ``steps`` in order; a step whose ``skip_if`` command succeeds is reported and skipped."""
    run = run or subprocess_runner()
    total = len(steps)
    for index, step in enumerate(steps, 1):
        if progress:
            progress(index, total, step.description)
        if step.skip_if and run(step.skip_if, 60.0)[0] == 0:
            if progress:
                progress(index, total, f"{step.description}: already done, skipped")
            continue
        where = f"step {index}/{total} ({step.description})"
        if step.action:
            try:
                actions[step.action](step)
            except KeyError:
                raise InstallStepFailed(f"{where}: no handler for action {step.action!r}") from None
            continue
        for attempt in range(step.retries + 1):
            code, out = run(step.argv, step.timeout_s)
            if code == 0:
                break
            if attempt < step.retries and progress:
                progress(index, total, f"{step.description}: not yet, retrying ({_tail(out, 1)})")
        else:
            raise InstallStepFailed(_failure(where, step, code, out))


def _failure(where: str, step: Step, code: int, out: str) -> str:
    cmd = shlex.join(step.argv)
    if code == _TIMED_OUT:
        waited = f" waiting for {step.waits_for}" if step.waits_for else ""
        return (
            f"{where} timed out after {step.timeout_s:.0f}s{waited}. Command: {cmd}. A kind cluster with "
            "Istio needs about 8 GB of memory and 4 CPUs for Docker; check `kubectl get pods -A` for "
            "Pending or "
            "crashing pods, then run meshkit up --backend kind again (finished steps are reused)."
        )
    return (
        f"{where} failed (exit code {code}): {_tail(out)}. Command: {cmd}. Fix the cause above and run "
        "meshkit up --backend kind again (an existing cluster and image are reused)."
    )


def check_ports_free(ports: Sequence[int], host: str = "127.0.0.1") -> None:
    """Raise a clear error when a host port the cluster must publish is already taken."""
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError as exc:
                raise BackendUnavailable(
                    f"host port {port} is already in use ({exc.strerror}), so kind cannot publish the "
                    f"ingress gateway on it. Stop whatever listens there (find it with: lsof -iTCP:{port} "
                    f"-sTCP:LISTEN, or ss -ltnp 'sport = :{port}') or start with another host port, "
                    "for example KindBackend(host_port=9080)."
                ) from None


WEBHOOK_PROBE = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "meshkit-webhook-probe", "namespace": "istio-system"},
    "spec": {
        "hosts": ["meshkit-webhook-probe"],
        "http": [{"route": [{"destination": {"host": "meshkit-webhook-probe"}}]}],
    },
}


def webhook_answers(kc: KubeClient) -> tuple[bool, str]:
    """A server-side dry-run apply passes the validation webhook (nothing is stored)."""
    try:
        kc.apply(WEBHOOK_PROBE, dry_run=True)
    except MeshkitError as exc:
        return False, str(exc).split(". ")[0]
    return True, "the validation webhook answered"


def pods_ready(kc: KubeClient, dataplane: str = "sidecar") -> tuple[bool, str]:
    """Every pod in the namespace is Ready with all containers and has its istio-proxy sidecar (with
    ``dataplane="ambient"``: no sidecar, and istio-cni's ``ambient.istio.io/redirection: enabled``)."""
    pods = kc.pods()
    if not pods:
        return False, f"no pods yet in namespace {kc.where.namespace}"
    waiting = [f"{p.name} {p.extra.get('containers')} {p.extra.get('phase')}" for p in pods if not p.ready]
    if dataplane == "ambient":
        outside = [p.name for p in pods if p.extra.get("dataplane") != "ambient"]
        if outside:
            return False, (
                f"pods not enrolled in ambient: {', '.join(outside)} (is namespace {kc.where.namespace} labelled "
                "istio.io/dataplane-mode=ambient, and istio-cni running on the node?)"
            )
        if waiting:
            return False, "not ready: " + ", ".join(waiting)
        return True, ", ".join(f"{p.name} {p.extra.get('containers')} ambient" for p in pods)
    missing = [p.name for p in pods if not p.sidecar]
    if missing:
        return False, (
            f"pods without the istio-proxy sidecar: {', '.join(missing)} (is namespace "
            f"{kc.where.namespace} labelled istio-injection=enabled? restart them after labelling)"
        )
    if waiting:
        return False, "not ready: " + ", ".join(waiting)
    return True, ", ".join(f"{p.name} {p.extra.get('containers')}" for p in pods)


def http_answers(url: str, timeout_s: float = 5.0) -> tuple[bool, str]:
    """GET ``url``; ok on HTTP 200. The observation names the status or the connection error."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            body = resp.read(200).decode("utf-8", "replace").strip()
            return resp.status == 200, f"HTTP {resp.status} {body}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code} {exc.read(200).decode('utf-8', 'replace').strip()}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url}: {getattr(exc, 'reason', exc)}"
