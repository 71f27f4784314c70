"""Durable state files of the local mesh: written whole or not at all, read back with a clear error.

A write goes to a temporary file in the same directory, is flushed to disk (``fsync``), renamed
over the target, and the directory is flushed too, so a crash or a power cut leaves either the old
file or the new one, never half of one. A write that fails (a full disk) raises
:class:`StateWriteError` with a one-line reason and leaves the old file in place.

Example::

    write_atomic(home / "resources.json", json.dumps(items).encode())
    items = read_json(home / "resources.json", default=[])
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from meshkit.errors import MeshkitError

RESET_HINT = "meshkit up --reset-state"


class StateWriteError(MeshkitError):
    """A state file could not be written; nothing was changed."""


class CorruptState(MeshkitError):
    """A state file cannot be read back; says which and how to recover."""

    exit_code = 4

    def __init__(self, path: Path, detail: str) -> None:
        self.path, self.detail = path, detail
        super().__init__(
            f"state file {path} is corrupt ({detail}); the mesh cannot start from it. "
            f"Run `{RESET_HINT}` to set it aside (it is kept as {path.name}.corrupt) and start from an "
            "empty state, or restore the file from a backup"
        )


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably (tmp + fsync + rename + dir fsync)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        with_reason = exc.strerror or type(exc).__name__
        try:
            tmp.unlink()
        except OSError:
            pass
        raise StateWriteError(f"could not write {path}: {with_reason}") from None


def read_json(path: Path, default: Any = None, expect: type | None = None) -> Any:
    """The JSON in ``path`` (``default`` when absent); :class:`CorruptState` when unreadable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return default
    except OSError as exc:
        raise CorruptState(path, exc.strerror or type(exc).__name__) from None
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise CorruptState(path, "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise CorruptState(path, f"line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if expect is not None and not isinstance(data, expect):
        raise CorruptState(path, f"expected a JSON {'list' if expect is list else 'object'}")
    return data
