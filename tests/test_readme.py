"""Every command the README shows runs as written.

The README is read at test time, so a command added to it is run here without anyone listing it:
the fenced shell blocks in order (the five-command tour, the kind dry run), the Python example, and
every inline `meshkit ...` span that is a whole command (no placeholder such as POD or NAME).
Commands that need Docker, kind or a kube context are run when those are there and skipped with
the reason otherwise; commands that start an interactive server are named below with why.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
MESHKIT = [sys.executable, "-m", "meshkit.cli"]

# Whole commands that are not run here, each with the reason (the quick start has its own runner: CI).
NOT_RUN = {
    "make lab": "opens JupyterLab and waits for the learner; CI runs the labs through make test",
    "make test": "this very suite",
    "meshkit lab": "opens JupyterLab and waits for the learner",
}
# A template rather than a command: an all-capitals word (POD, NAME, NS, N), an ellipsis, a bracket or a
# choice (a|b).
PLACEHOLDER = re.compile(r"(?<![\w-])[A-Z][A-Z0-9_]*(?!\w)|…|\.\.\.|<|\[|\|")


def fenced_blocks(lang: str = "") -> list[str]:
    return [m.group(2) for m in re.finditer(r"^```(\w*)\n(.*?)^```", README, re.S | re.M) if m.group(1) == lang]


def commands(block: str) -> list[str]:
    """Lines of a shell block, continuations joined and trailing comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    out = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def inline_commands() -> list[str]:
    spans = [" ".join(m.group(1).split()) for m in re.finditer(r"`(meshkit [^`]+)`", README)]
    return [s for s in dict.fromkeys(spans) if not PLACEHOLDER.search(s)]  # in the README's order, once each


def docker_running() -> bool:
    if not shutil.which("docker") or not shutil.which("kind"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def kube_context(name: str) -> bool:
    if not shutil.which("kubectl"):
        return False
    out = subprocess.run(["kubectl", "config", "get-contexts", "-o", "name"],
                         capture_output=True, text=True, timeout=30)
    return name in out.stdout.split()


def needs(cmd: str) -> str | None:
    """Why a command cannot run on this machine, or None."""
    args = shlex.split(cmd)
    if "kind" in args and "--dry-run" not in args and not docker_running():
        return "needs a running Docker engine and kind (the kind backend creates a cluster)"
    if "kube" in args:
        ctx = args[args.index("--context") + 1] if "--context" in args else ""
        if not kube_context(ctx):
            return f"needs the kube context {ctx!r} of an existing cluster"
    return None


class Shell:
    """Runs README commands from the repository's root with a mesh home of their own."""

    def __init__(self, home: Path) -> None:
        self.env = {**os.environ, "MESHKIT_HOME": str(home), "PYTHONPATH": str(REPO)}

    def run(self, cmd: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        args = shlex.split(cmd)
        if args[0] == "meshkit":
            args = [*MESHKIT, *args[1:]]
        proc = subprocess.run(args, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"`{cmd}` exited {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    sh = Shell(tmp_path / "home")
    yield sh
    subprocess.run([*MESHKIT, "down"], cwd=REPO, env=sh.env, capture_output=True, timeout=60)


def test_the_readme_has_the_two_command_quick_start() -> None:
    assert ["make lab", "make test"] in [commands(b) for b in fenced_blocks()]


def test_the_local_mesh_tour_runs_as_written(shell: Shell) -> None:
    tour = next(commands(b) for b in fenced_blocks() if commands(b)[:1] == ["meshkit up"])
    outputs = {cmd.split()[1]: shell.run(cmd).stdout for cmd in tour}
    assert "recommendation" in outputs["status"]
    load = outputs["load"]
    assert re.search(r"\bv1\b", load) and re.search(r"\bv2\b", load), load
    status = subprocess.run([*MESHKIT, "status"], cwd=REPO, env=shell.env, capture_output=True, text=True, timeout=60)
    assert status.returncode != 0 and "meshkit up" in (status.stdout + status.stderr), "down left a mesh behind"


def test_the_python_example_runs_as_written(shell: Shell) -> None:
    example = fenced_blocks("python")[0]
    lines = example.splitlines()
    *body, last = lines
    expected = re.search(r"#\s*(.+)$", last)
    script = "\n".join([*body, f"print({last.split('#')[0].strip()})"])  # the fixture's `meshkit down` ends it
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=shell.env, capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert expected and out.stdout.strip().splitlines()[-1] == expected.group(1).strip()


@pytest.mark.parametrize("cmd", [c for b in fenced_blocks() for c in commands(b) if "--backend" in c])
def test_the_real_cluster_commands_run_where_they_can(shell: Shell, cmd: str) -> None:
    reason = needs(cmd)
    if reason:
        pytest.skip(reason)
    out = shell.run(cmd, timeout=1800)
    if "--dry-run" in cmd:
        assert re.search(r"^\s*1\. ", out.stdout, re.M), out.stdout


def test_every_inline_command_runs_on_a_mesh(shell: Shell) -> None:
    cmds = inline_commands()
    assert len(cmds) >= 8, cmds  # the README names commands in its prose; an empty list means the parser broke
    shell.run("meshkit up")
    ran = []
    for cmd in cmds:
        if cmd in NOT_RUN or needs(cmd) or cmd.split()[1] in ("up", "down"):
            continue  # `up` and its variants have their own test below
        shell.run(cmd)
        ran.append(cmd)
    assert ran, cmds


@pytest.mark.parametrize("cmd", [c for c in inline_commands() if c.startswith("meshkit up ") and "kind" not in c])
def test_every_inline_up_variant_starts_a_mesh(shell: Shell, cmd: str) -> None:
    shell.run(cmd)
    shell.run("meshkit status")
    shell.run("meshkit down")
