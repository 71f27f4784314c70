"""The mesh's processes keep bytecode in a private cache when the environment forbids writing it
beside the sources (PYTHONDONTWRITEBYTECODE, as many container images set), instead of compiling
every module from source on every start."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from meshkit.backends.local.processes import bytecode_env


def test_a_no_bytecode_environment_gets_a_private_cache(tmp_path: Path) -> None:
    env = bytecode_env({"PYTHONDONTWRITEBYTECODE": "1", "XDG_CACHE_HOME": str(tmp_path), "KEEP": "x"})
    cache = tmp_path / "meshkit" / "pycache"
    assert "PYTHONDONTWRITEBYTECODE" not in env
    assert env["PYTHONPYCACHEPREFIX"] == str(cache) and env["KEEP"] == "x"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700


def test_other_environments_are_left_as_they_are(tmp_path: Path) -> None:
    writes = {"XDG_CACHE_HOME": str(tmp_path)}
    assert bytecode_env(writes) == writes
    explicit = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": "/elsewhere", "XDG_CACHE_HOME": str(tmp_path)}
    assert bytecode_env(explicit) == explicit
    assert not (tmp_path / "meshkit").exists()


def test_a_cache_others_could_write_is_not_used(tmp_path: Path) -> None:
    shared = tmp_path / "meshkit"
    shared.mkdir()
    shared.chmod(0o777)
    env = {"PYTHONDONTWRITEBYTECODE": "1", "XDG_CACHE_HOME": str(tmp_path)}
    assert bytecode_env(env) == env


def test_a_child_writes_its_bytecode_into_the_cache_and_not_beside_the_sources(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "probe_module.py").write_text("VALUE = 42\n")
    outer = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
    env = bytecode_env({**outer, "PYTHONDONTWRITEBYTECODE": "1", "XDG_CACHE_HOME": str(tmp_path / "cache"),
                        "PYTHONPATH": str(src)})
    out = subprocess.run([sys.executable, "-c", "import probe_module; print(probe_module.VALUE)"], env=env,
                         capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "42"
    assert not (src / "__pycache__").exists()
    cached = list((tmp_path / "cache" / "meshkit" / "pycache").rglob("probe_module.*.pyc"))
    assert len(cached) == 1
