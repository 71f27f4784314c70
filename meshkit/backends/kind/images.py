"""The sample image: built from this source tree, tagged by content, loaded into kind.

The tag is a hash of exactly what the Dockerfile copies (pyproject, README, the ``meshkit``
package) plus the Dockerfile itself, so a code change gives a new tag (and new pods), an unchanged
tree reuses the image, and ``latest`` (which makes Kubernetes pull, ignoring the loaded image) is
never used. The build runs on a staged context holding only those files, so a large work tree
(``.venv``, notebooks) is never sent to Docker.

Example::

    root = source_root()
    ref = image_ref(root)                      # "meshkit-sample:3f2a9c1d7e4b"
    ctx = stage_context(root, Path("/tmp/ctx"))
    print(build_argv(ref, ctx), load_argv(ref, "meshkit"))
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import meshkit
from meshkit.errors import BackendUnavailable

REPOSITORY = "meshkit-sample"


def source_root() -> Path:
    """The checkout meshkit runs from (it holds ``cluster/Dockerfile``); the image is built from it."""
    root = Path(meshkit.__file__).resolve().parent.parent
    if not (root / "cluster" / "Dockerfile").is_file() or not (root / "pyproject.toml").is_file():
        raise BackendUnavailable(
            f"the kind backend builds the sample image from a source checkout, but meshkit is installed "
            f"from {root} without cluster/Dockerfile. Clone the meshkit repository and install it with "
            "pip install -e '.[kind]', or pass a prebuilt image (KubeBackend(image=...))."
        )
    return root


def image_inputs(root: Path) -> list[Path]:
    """Files the image is built from, relative to ``root``, in a stable order."""
    files = [Path("pyproject.toml"), Path("cluster/Dockerfile")]
    if (root / "README.md").is_file():
        files.append(Path("README.md"))
    files += sorted(
        path.relative_to(root)
        for path in (root / "meshkit").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")
    )
    return files


def content_tag(root: Path) -> str:
    """12 hex digits of a SHA-256 over each input's path and bytes."""
    digest = hashlib.sha256()
    for rel in image_inputs(root):
        digest.update(rel.as_posix().encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def image_ref(root: Path) -> str:
    return f"{REPOSITORY}:{content_tag(root)}"


def stage_context(root: Path, dest: Path) -> Path:
    """Copy the image inputs into ``dest`` (Dockerfile at its top); returns ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    for rel in image_inputs(root):
        target = dest / ("Dockerfile" if rel == Path("cluster/Dockerfile") else rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, target)
    # pyproject names README.md as the readme; the build fails without the file
    (dest / "README.md").touch(exist_ok=True)
    return dest


def build_argv(ref: str, context: Path) -> list[str]:
    return ["docker", "build", "-t", ref, "-f", str(context / "Dockerfile"), str(context)]


def present_argv(ref: str) -> list[str]:
    """Exit code 0 when the image is already built (the build step is then skipped)."""
    return ["docker", "image", "inspect", "--format", "{{.Id}}", ref]


def load_argv(ref: str, cluster_name: str) -> list[str]:
    return ["kind", "load", "docker-image", ref, "--name", cluster_name]
