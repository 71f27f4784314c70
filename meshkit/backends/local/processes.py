"""The local mesh's OS processes: who they are, whether they still run, how to end them.

A pid alone names a process only until it exits: the kernel hands the number out again. Every
process the mesh records is therefore kept as (pid, start time), the start time read from
``/proc/<pid>/stat``; a signal goes to a recorded process only while both still match. Pods run
in sessions of their own, so the control plane's death (or a signal to its group) leaves them
serving, as Envoy keeps serving when istiod goes away.

Example::

    rec = ProcessRecord.of(os.getpid())
    assert rec is not None and rec.alive()
    terminate([rec_a, rec_b], grace=2.0)      # SIGTERM, then SIGKILL what still runs
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import signal
import stat
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

MODULES = ("meshkit.backends.local.controlplane", "meshkit.backends.local.pod")


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: the fields start after the last ')'
    return raw.rsplit(")", 1)[-1].split()


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None once it has exited (or is a zombie)."""
    fields = _stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # field 22 of proc(5); fields[0] is field 3


@dataclass(frozen=True)
class ProcessRecord:
    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> ProcessRecord | None:
        started = start_time(pid)
        return None if started is None else cls(pid, started)

    @classmethod
    def from_dict(cls, data: Any) -> ProcessRecord | None:
        try:
            return cls(int(data["pid"]), int(data["start"]))
        except (KeyError, TypeError, ValueError):
            return None

    def alive(self) -> bool:
        """Still the same process (not a recycled pid), and not a zombie."""
        return start_time(self.pid) == self.start

    def signal(self, sig: int) -> bool:
        """Send ``sig`` to the process (and its group when it leads one); False when it is gone."""
        if not self.alive():
            return False
        try:
            if os.getpgid(self.pid) == self.pid:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True


def bytecode_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment for the mesh's own Python processes (control plane and pods).

    With ``PYTHONDONTWRITEBYTECODE`` set (common in containers and CI) and no ``.pyc`` next to the
    sources, every pod would compile some 300 modules from source on each start: about 0.7 s of
    CPU per process, five pods at once on ``up``. Such an environment asks Python not to write into
    the source tree; the mesh's processes then keep their bytecode in a cache of this user's own
    (``$XDG_CACHE_HOME/meshkit/pycache``, 0700) instead. Anything else is left as it is: an explicit
    ``PYTHONPYCACHEPREFIX``, an environment that writes bytecode, a cache directory that is not
    private to this user.

    Example::

        subprocess.Popen([sys.executable, "-m", "meshkit.backends.local.controlplane", ...],
                         env=bytecode_env(os.environ))
    """
    out = dict(env)
    if not out.get("PYTHONDONTWRITEBYTECODE") or out.get("PYTHONPYCACHEPREFIX"):
        return out
    base = Path(out.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = base / "meshkit" / "pycache"
    try:
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path in (cache.parent, cache):
            info = path.stat()
            if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o022:
                return out  # another user could write bytecode there: compile from source instead
    except (OSError, RuntimeError):
        return out  # no home, or a read-only one
    del out["PYTHONDONTWRITEBYTECODE"]
    out["PYTHONPYCACHEPREFIX"] = str(cache)
    return out


def reap(pid: int) -> None:
    """Collect the exit status when ``pid`` is our own child (no zombie left behind)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def mesh_processes(home: Path) -> list[ProcessRecord]:
    """Every control plane and pod process of the mesh in ``home``, found by their command lines.

    Records can miss a process (one started just before its control plane was killed); the
    command line cannot: both carry the home they belong to.
    """
    home_s = str(home.resolve())
    found = []
    me = os.getuid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != me:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if not any(m in args for m in MODULES):
            continue
        if _home_of(args) == home_s:
            rec = ProcessRecord.of(int(entry.name))
            if rec is not None and rec.pid != os.getpid():
                found.append(rec)
    return found


def _home_of(args: list[str]) -> str:
    if "--home" in args:
        i = args.index("--home")
        return str(Path(args[i + 1]).resolve()) if i + 1 < len(args) else ""
    for arg in args:
        if arg.startswith("{"):
            try:
                return str(Path(json.loads(arg).get("home", "")).resolve())
            except (ValueError, AttributeError):
                return ""
    return ""


def terminate(records: Iterable[ProcessRecord], grace: float = 2.0) -> list[ProcessRecord]:
    """SIGTERM each live record, wait up to ``grace`` s, SIGKILL the rest; returns what was killed."""
    live = [r for r in records if r.signal(signal.SIGTERM)]
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        for r in live:
            reap(r.pid)
        if not any(r.alive() for r in live):
            return []
        time.sleep(0.02)
    killed = [r for r in live if r.signal(signal.SIGKILL)]
    deadline = time.monotonic() + 2.0
    while killed and time.monotonic() < deadline and any(r.alive() for r in killed):
        for r in killed:
            reap(r.pid)
        time.sleep(0.02)
    return killed


class AdoptedProcess:
    """A pod process this control plane did not start (it outlived its parent): the part of
    :class:`asyncio.subprocess.Process` the workload controller uses, watched through a pidfd."""

    def __init__(self, record: ProcessRecord) -> None:
        self.record = record
        self.pid = record.pid
        self.returncode: int | None = None

    async def wait(self) -> int:
        if self.returncode is not None:
            return self.returncode
        try:
            fd = os.pidfd_open(self.pid)
        except OSError:
            fd = -1
        if fd >= 0:
            loop = asyncio.get_running_loop()
            exited: asyncio.Future[None] = loop.create_future()

            def on_exit() -> None:
                if not exited.done():
                    exited.set_result(None)

            loop.add_reader(fd, on_exit)
            try:
                if self.record.alive():  # the pid may have been recycled before the pidfd was taken
                    await exited
            finally:
                loop.remove_reader(fd)
                os.close(fd)
        else:
            while self.record.alive():
                await asyncio.sleep(0.2)
        self.returncode = -1  # not our child: its exit status went to its new parent
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.record.signal(sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class HomeLock:
    """An exclusive ``flock`` on a file in the mesh's home; the kernel drops it when its holder dies.

    Example::

        with HomeLock(home / "lifecycle.lock").hold(timeout=60, what="meshkit up"):
            ...
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: IO[str] | None = None

    def try_acquire(self, what: str = "") -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")  # noqa: SIM115 - held for as long as the lock is
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            f.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "what": what}))
        f.flush()
        self.file = f
        return True

    def holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return "another process"
        return f"{info.get('what') or 'another process'} (pid {info.get('pid', '?')})"

    def release(self) -> None:
        if self.file is not None:
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
            self.file = None

    def held_by_other(self, settle_s: float = 0.0) -> bool:
        """Whether another process holds the lock. ``settle_s`` waits that long for a holder that is
        exiting: a killed multi-threaded process shows as a zombie before its last thread has let
        go of its files (and so of the lock)."""
        deadline = time.monotonic() + settle_s
        while not self.try_acquire():
            if time.monotonic() >= deadline or start_time(self._holder_pid()) is not None:
                return True  # a live holder, or one that will not let go
            time.sleep(0.02)
        self.release()
        return False

    def _holder_pid(self) -> int:
        try:
            return int(json.loads(self.path.read_text() or "{}").get("pid", 0))
        except (OSError, ValueError, TypeError, AttributeError):
            return 0

    @contextlib.contextmanager
    def hold(self, timeout: float, what: str) -> Iterator[None]:
        from meshkit.errors import MeshkitError

        deadline = time.monotonic() + timeout
        while not self.try_acquire(what):
            if time.monotonic() >= deadline:
                raise MeshkitError(f"{self.holder()} is still changing the mesh in {self.path.parent} "
                                   f"after {timeout:g}s; try again once it has finished")
            time.sleep(0.05)
        try:
            yield
        finally:
            self.release()
