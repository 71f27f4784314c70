"""The sample image: content-addressed tag, minimal staged build context, build/load commands."""

from __future__ import annotations

from pathlib import Path

from meshkit.backends.kind import images


def fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "cluster").mkdir(parents=True)
    (root / "meshkit" / "sample" / "__pycache__").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'meshkit'\n")
    (root / "cluster" / "Dockerfile").write_text("FROM python:3.11-slim\n")
    (root / "meshkit" / "__init__.py").write_text("")
    (root / "meshkit" / "sample" / "app.py").write_text("V = 1\n")
    (root / "meshkit" / "sample" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0junk")
    (root / "notebook.ipynb").write_text("{}")
    return root


def test_tag_depends_on_exactly_the_build_inputs(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    tag = images.content_tag(root)
    assert len(tag) == 12 and int(tag, 16) >= 0
    assert images.content_tag(root) == tag
    (root / "notebook.ipynb").write_text('{"changed": true}')
    (root / "meshkit" / "sample" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"other")
    assert images.content_tag(root) == tag, "files outside the image must not change the tag"
    (root / "meshkit" / "sample" / "app.py").write_text("V = 2\n")
    assert images.content_tag(root) != tag
    assert images.image_ref(root).startswith("meshkit-sample:") and not images.image_ref(root).endswith("latest")


def test_staged_context_holds_only_what_the_dockerfile_copies(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    ctx = images.stage_context(root, tmp_path / "ctx")
    files = sorted(p.relative_to(ctx).as_posix() for p in ctx.rglob("*") if p.is_file())
    assert files == [
        "Dockerfile",
        "README.md",
        "meshkit/__init__.py",
        "meshkit/sample/app.py",
        "pyproject.toml",
    ]
    assert images.build_argv("meshkit-sample:abc", ctx) == [
        "docker",
        "build",
        "-t",
        "meshkit-sample:abc",
        "-f",
        f"{ctx}/Dockerfile",
        str(ctx),
    ]
    assert images.load_argv("meshkit-sample:abc", "meshkit") == [
        "kind",
        "load",
        "docker-image",
        "meshkit-sample:abc",
        "--name",
        "meshkit",
    ]


def test_this_checkout_is_a_valid_source_root() -> None:
    root = images.source_root()
    inputs = {p.as_posix() for p in images.image_inputs(root)}
    assert {"pyproject.toml", "cluster/Dockerfile", "meshkit/sample/__main__.py"} <= inputs
    assert not any(".venv" in p or "__pycache__" in p for p in inputs)
