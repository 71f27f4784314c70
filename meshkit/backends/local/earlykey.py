"""Private keys made by a child process while the process that needs them starts.

istio-agent makes a proxy's key while Envoy starts, and istiod makes its root key as it starts
(here the control plane's local JWT issuer makes its key then too).
An RSA-2048 key takes tens of milliseconds of CPU, and OpenSSL makes it holding Python's GIL, so
a thread would stall the process as much as making it inline. A child forked before the process
imports its modules (some 0.2 s of work) makes the key on the other core instead; the key comes
back through a pipe and never leaves the process's own children.

This module imports nothing heavy: it runs first in a pod and in the control plane.

Example (at the top of a pod's main module, then when the pod asks for its certificate)::

    prefetch(sys.argv)
    key = take(KeySpec.from_env())
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from meshkit.backends.local.workloadkey import KeySpec, WorkloadKey

_pending: dict[str, tuple[int, int]] = {}  # what for → (child pid, read end of its pipe)
# seconds a start waits for a key its child makes (an RSA-4096 key takes a few on a busy host); past
# them the child is ended and the key made in-process, so a stopped or deadlocked child never holds a start
COLLECT_TIMEOUT = 30.0


def prefetch(argv: list[str]) -> None:
    """In a pod started with ``argv``: start making its proxy's key (a sidecar, gateway or waypoint;
    not ztunnel, which makes a key per identity it holds, nor a pod without a proxy)."""
    try:
        args = json.loads(argv[1])
    except (IndexError, ValueError):
        return
    if isinstance(args, dict) and args.get("service") != "ztunnel" and (args.get("sidecar") or args.get("waypoint")):
        _fork("workload", _workload_key_pem)


def prefetch_root(argv: list[str]) -> None:
    """In the control plane started with ``argv``: start making the CA's root key and the local JWT
    issuer's key when its home has none."""
    home = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--home"), None)
    if not home:
        return
    # where the control plane keeps them (ca.ROOT_KEY_FILE, jwt.KEY_FILE), named here to import nothing
    if not (Path(home).expanduser() / "ca" / "root-key.pem").exists():
        _fork("root", _root_key_pem)
    if not (Path(home).expanduser() / "jwt" / "jwt-key.pem").exists():
        _fork("jwt", _jwt_key_pem)


def take(spec: KeySpec) -> WorkloadKey:
    """The key :func:`prefetch` started when it is of ``spec``'s kind, else one made now."""
    from meshkit.backends.local.workloadkey import describe_key

    key = _collect("workload")
    return key if key is not None and describe_key(key) == spec.describe() else spec.generate()


def take_root(bits: int) -> rsa.RSAPrivateKey:
    """The root key :func:`prefetch_root` started when it has ``bits`` bits, else one made now."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = _collect("root")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size == bits:
        return key
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def take_jwt() -> rsa.RSAPrivateKey:
    """The JWT issuer's key :func:`prefetch_root` started (RSA 2048, for RS256), else one made now."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = _collect("jwt")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048:
        return key
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def make(spec: KeySpec, timeout: float = 30.0) -> WorkloadKey:
    """A fresh key of ``spec``'s kind made by a child while this process's event loop keeps serving (a
    rotation: istio-agent makes the new key beside Envoy, which never waits for it). Made here when
    the child cannot be started or does not answer within ``timeout`` seconds."""
    import asyncio

    from meshkit.backends.local.workloadkey import describe_key, key_pem

    try:
        read, pid = _spawn(lambda: key_pem(spec.generate()).encode())
    except OSError:
        return spec.generate()
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        chunk = os.read(read, 65536)
        if chunk:
            chunks.append(chunk)
        elif not done.done():
            done.set_result(None)

    loop.add_reader(read, readable)
    finished = False
    try:
        await asyncio.wait_for(done, timeout)
        finished = True
    except TimeoutError:
        chunks.clear()
    finally:  # a child that has not answered (timed out, or the pod is stopping) is ended, and always reaped
        loop.remove_reader(read)
        os.close(read)
        if not finished:
            _kill(pid)
        os.waitpid(pid, 0)
    key = _parse(b"".join(chunks))
    return key if key is not None and describe_key(key) == spec.describe() else spec.generate()


def _kill(pid: int) -> None:
    import signal

    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _default_signals() -> None:
    """In a key child: SIGTERM and SIGINT end it (its parent's event loop handled them, through a
    wakeup descriptor the child no longer holds)."""
    import signal

    try:
        signal.set_wakeup_fd(-1)
    except ValueError:  # forked from another thread than the main one: it has none
        pass
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)


def _workload_key_pem() -> bytes:
    from meshkit.backends.local.workloadkey import KeySpec, key_pem

    return key_pem(KeySpec.from_env().generate()).encode()


def _root_key_pem() -> bytes:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from meshkit.backends.local.workloadkey import key_pem, root_key_bits

    return key_pem(rsa.generate_private_key(public_exponent=65537, key_size=root_key_bits())).encode()


def _jwt_key_pem() -> bytes:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from meshkit.backends.local.workloadkey import key_pem

    return key_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)).encode()


def _fork(slot: str, make: Callable[[], bytes]) -> None:
    read, pid = _spawn(make)
    _pending[slot] = (pid, read)


def _spawn(make: Callable[[], bytes]) -> tuple[int, int]:
    """Fork a child that writes ``make()`` to a pipe and exits; the pipe's read end and the child's pid."""
    # the modules the key needs, imported once here (the process needs them anyway) and not again in the
    # child, so the child's work is the key alone
    from meshkit.backends.local import workloadkey  # noqa: F401

    read, write = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read)
        os.close(write)
        raise
    if pid == 0:  # the child: make the key, hand it over, and leave without running anything else
        status = 1
        try:
            # the child keeps its pipe and stdio only: a socket, listener or key file of the process held
            # here would stay open on the wire after the process closes it, for as long as the key takes
            os.closerange(3, write)
            os.closerange(write + 1, max(write + 1, os.sysconf("SC_OPEN_MAX")))
            _default_signals()
            data = make()
            while data:
                data = data[os.write(write, data):]
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    return read, pid


def _collect(slot: str) -> WorkloadKey | None:
    pending = _pending.pop(slot, None)
    if pending is None:
        return None
    pid, read = pending
    import select
    import time

    chunks: list[bytes] = []
    deadline = time.monotonic() + COLLECT_TIMEOUT
    finished = False
    poller = select.poll()  # not select(): a descriptor past 1023 is fine
    poller.register(read, select.POLLIN)
    try:
        while (left := deadline - time.monotonic()) > 0:
            if not poller.poll(left * 1000):
                break
            chunk = os.read(read, 65536)
            if not chunk:
                finished = True
                break
            chunks.append(chunk)
    finally:  # a child that has not answered in time (stopped, deadlocked) is ended; always reaped
        os.close(read)
        if not finished:
            _kill(pid)
        os.waitpid(pid, 0)
    return _parse(b"".join(chunks)) if finished else None


def _parse(pem: bytes) -> WorkloadKey | None:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        # made by this process's own child a moment ago: OpenSSL's consistency check (some 50 ms for an
        # RSA-2048 key) would only cost time
        key = load_pem_private_key(pem, None, unsafe_skip_rsa_key_validation=True)
    except ValueError:
        return None
    return key if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) else None
