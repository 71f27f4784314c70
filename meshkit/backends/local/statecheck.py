"""Checks a mesh home's state files before a control plane starts from them.

A corrupt file stops ``meshkit up`` at once with its name and the way out (``--reset-state``),
instead of a control plane that crashes with a traceback or a mesh that answers 503 everywhere
(a CA certificate that does not belong to its key).

Example::

    check_state(home)                  # raises CorruptState naming the file
    for path in broken_files(home): ...
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from meshkit.backends.local.durable import CorruptState, read_json
from meshkit.errors import InvalidConfig

CONFIG_FILES = ("resources.json", "deployments.json", "secrets.json", "state.json")
KEY_FILES = ("ca/root-cert.pem", "ca/root-key.pem", "jwt/jwt-key.pem")


def state_files(home: Path) -> list[Path]:
    """What ``up --reset-state`` sets aside: the stored config and deployments, and any broken key."""
    broken = set(broken_files(home))
    return [home / name for name in CONFIG_FILES] + [home / k for k in KEY_FILES if home / k in broken]


def _pair_of(path: Path) -> set[Path]:
    return {path.parent / "root-cert.pem", path.parent / "root-key.pem"}


def broken_files(home: Path) -> list[Path]:
    out = []
    for check in (_check_resources, _check_deployments, _check_secrets, _check_state, _check_ca, _check_jwt):
        try:
            check(home)
        except CorruptState as exc:
            out.append(exc.path)
            if exc.path.parent.name == "ca":
                out.extend(p for p in _pair_of(exc.path) if p != exc.path)
    return out


def check_state(home: Path) -> None:
    """Raise :class:`CorruptState` for the first state file a control plane could not start from."""
    for check in (_check_resources, _check_deployments, _check_secrets, _check_state, _check_ca, _check_jwt):
        check(home)


def _check_resources(home: Path) -> None:
    path = home / "resources.json"
    for i, res in enumerate(read_json(path, default=[], expect=list)):
        meta = res.get("metadata") if isinstance(res, dict) else None
        if not isinstance(res, dict) or not isinstance(res.get("kind"), str) or not isinstance(meta, dict) \
                or not isinstance(meta.get("name"), str):
            raise CorruptState(path, f"item {i} is not a resource with a kind and a metadata.name")


def _check_deployments(home: Path) -> None:
    from meshkit.backends.local.workloads import DeploymentSpec

    known = {f.name for f in fields(DeploymentSpec)}
    path = home / "deployments.json"
    for i, dep in enumerate(read_json(path, default=[], expect=list)):
        if not isinstance(dep, dict) or not isinstance(dep.get("service"), str) or set(dep) - known:
            raise CorruptState(path, f"item {i} is not a deployment")
        if not isinstance(dep.get("replicas", 1), int) or isinstance(dep.get("replicas", 1), bool):
            raise CorruptState(path, f"item {i}: replicas is not an integer")


def _check_secrets(home: Path) -> None:
    path = home / "secrets.json"
    for name, value in read_json(path, default={}, expect=dict).items():
        if not isinstance(value, dict) or not all(isinstance(value.get(k), str) for k in ("cert", "key")):
            raise CorruptState(path, f"secret {name!r} has no cert and key")


def _check_state(home: Path) -> None:
    read_json(home / "state.json", default={}, expect=dict)


def _check_ca(home: Path) -> None:
    cert, key = home / KEY_FILES[0], home / KEY_FILES[1]
    if cert.exists() != key.exists():
        missing = key if cert.exists() else cert
        raise CorruptState(missing, "missing: the CA needs its certificate and its key")
    if not cert.exists():
        return  # a fresh home: nothing to check, and no reason to load the X.509 code on `up`'s path
    from meshkit.backends.local.ca import CertificateAuthority

    try:
        CertificateAuthority.load_or_create(home / "ca")
    except InvalidConfig as exc:
        raise CorruptState(cert, "; ".join(exc.problems).replace(f"{cert}: ", "")) from None


def _check_jwt(home: Path) -> None:
    path = home / KEY_FILES[2]
    if not path.exists():
        return
    from meshkit.backends.local.jwt import LocalIssuer

    try:
        LocalIssuer.load_or_create(path.parent)
    except InvalidConfig as exc:
        raise CorruptState(path, "; ".join(exc.problems)) from None
