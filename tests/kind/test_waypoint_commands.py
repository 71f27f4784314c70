"""The kind backend's waypoint verbs and labels: the istioctl and kubectl commands it runs (the real
tools answer on a cluster; tests/kind/test_kind_ambient_live.py runs them there)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from meshkit.backends.kind.backend import KindBackend
from meshkit.errors import MeshkitError
from meshkit.mesh import Mesh


class Recorder:
    def __init__(self, code: int = 0, out: str = "") -> None:
        self.code, self.out, self.calls = code, out, []  # type: ignore[var-annotated]

    def __call__(self, argv: Sequence[str], timeout: float) -> tuple[int, str]:
        self.calls.append(list(argv))
        return self.code, self.out


def _mesh(tmp_path: Path, run: Recorder) -> Mesh:
    return Mesh(KindBackend(str(tmp_path), run=run))


def test_waypoint_verbs_run_istioctl_with_its_flags(tmp_path: Path) -> None:
    run = Recorder()
    mesh = _mesh(tmp_path, run)
    mesh.waypoint_apply(enroll_namespace=True)
    mesh.waypoint_apply("other", name="wp", for_=None, overwrite=True, wait=False)
    mesh.waypoint_list(all_namespaces=True)
    mesh.waypoint_status()
    mesh.waypoint_delete()
    base = ["istioctl", "--context", "kind-meshkit", "-n", "tutorial"]
    assert run.calls == [
        [*base, "waypoint", "apply", "-n", "tutorial", "--name", "waypoint", "--for", "service",
         "--enroll-namespace", "--wait"],
        [*base, "waypoint", "apply", "-n", "other", "--name", "wp", "--overwrite"],
        [*base, "waypoint", "list", "-n", "tutorial", "-A"],
        [*base, "waypoint", "status", "-n", "tutorial"],
        [*base, "waypoint", "delete", "-n", "tutorial", "waypoint"],
    ]


def test_istioctl_failing_is_one_message_with_its_words(tmp_path: Path) -> None:
    mesh = _mesh(tmp_path, Recorder(1, "Error: failed to create gateway: invalid name provided for waypoint, "
                                       "'none' is a reserved value\n"))
    with pytest.raises(MeshkitError, match="'none' is a reserved value"):
        mesh.waypoint_apply(name="none")


def test_labels_go_through_kubectl_label(tmp_path: Path) -> None:
    run = Recorder()
    mesh = _mesh(tmp_path, run)
    mesh.label("Service", "recommendation", {"istio.io/use-waypoint": "waypoint"})
    mesh.label("Namespace", "tutorial", {"istio.io/use-waypoint": None})
    assert run.calls == [
        ["kubectl", "--context", "kind-meshkit", "-n", "tutorial", "label", "service", "recommendation",
         "istio.io/use-waypoint=waypoint", "--overwrite"],
        ["kubectl", "--context", "kind-meshkit", "label", "namespace", "tutorial", "istio.io/use-waypoint-",
         "--overwrite"],
    ]
    with pytest.raises(MeshkitError, match='kind: Unsupported value: "Deployment"'):
        mesh.label("Deployment", "customer", {"a": "b"})
