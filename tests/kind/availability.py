"""Whether the real-cluster tests can run here, and if not, the precise reason (shared by the kind suites)."""

from __future__ import annotations

import os
import shutil
import subprocess


def kind_unavailable() -> str | None:
    """None when Docker answers, kind is on PATH and MESHKIT_KIND_TESTS=1; else why not."""
    if shutil.which("docker") is None:
        return "docker is not on PATH"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30s"
    if info.returncode != 0:
        lines = (info.stderr or info.stdout).strip().splitlines()
        return f"`docker info` failed: {lines[-1] if lines else 'exit ' + str(info.returncode)}"
    if shutil.which("kind") is None:
        return "kind is not on PATH"
    if os.environ.get("MESHKIT_KIND_TESTS") != "1":
        # a cold kind + Istio install takes minutes: Docker and kind are here, but the run is on request
        return "Docker and kind are present; real-cluster tests run with `make test-kind` (MESHKIT_KIND_TESTS=1)"
    return None
