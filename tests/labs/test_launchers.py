"""Binder, Codespaces and CI files: what repo2docker installs agrees with its base environment's
lock, the badge names this clone's repository, the devcontainer has Docker for the kind backend,
and the workflow runs make test and make test-kind."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import yaml
from packaging.requirements import Requirement

from tests.labs.conftest import REPO

# repo2docker's base environment lock (2025-10-16), which requirements.txt is installed over
BASE_LOCK = {"jupyterlab": "4.4.9", "notebook": "7.4.7", "jupyter-server": "2.17.0", "ipywidgets": "8.1.7",
             "jupyterhub-singleuser": "5.4.0"}


def binder_requirements() -> list[Requirement]:
    lines = (REPO / "binder" / "requirements.txt").read_text().splitlines()
    return [Requirement(x.strip()) for x in lines if x.strip() and not x.lstrip().startswith(("#", "-e"))]


def test_binder_requirements_admit_the_base_environments_jupyter() -> None:
    reqs = binder_requirements()
    assert reqs, "binder/requirements.txt lists nothing"
    for req in reqs:
        name = req.name.lower().replace("_", "-")
        if name in BASE_LOCK:
            assert req.specifier.contains(BASE_LOCK[name]), f"{req} conflicts with the base's {BASE_LOCK[name]}"
    names = {r.name.lower() for r in reqs}
    assert "jupyterlab" not in names and "notebook" not in names  # left to the base environment
    assert {"plotly", "anywidget"} <= names  # FigureWidget needs anywidget named explicitly
    proxy = next(r for r in reqs if r.name == "jupyter-server-proxy")
    assert not proxy.specifier.contains("4.1.0") and proxy.specifier.contains("4.2.0")  # CVE-2024-35225


def test_meshkit_core_dependencies_do_not_pin_jupyter() -> None:
    text = (REPO / "pyproject.toml").read_text()
    core = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    assert "jupyter" not in core and "ipywidgets" not in core


def test_postbuild_ships_the_settings_without_news() -> None:
    post = (REPO / "binder" / "postBuild").read_text()
    assert post.startswith("#!/bin/bash") and "set -euo pipefail" in post
    assert "meshkit/lab/jupyterlab/overrides.json" in post and "share/jupyter/lab/settings" in post
    overrides = json.loads((REPO / "meshkit" / "lab" / "jupyterlab" / "overrides.json").read_text())
    notification = overrides["@jupyterlab/apputils-extension:notification"]
    assert notification == {"fetchNews": "false", "checkForUpdates": False}


def test_the_badge_is_built_from_the_clones_remote() -> None:
    spec = importlib.util.spec_from_file_location("badge", REPO / "binder" / "badge.py")
    assert spec is not None and spec.loader is not None
    badge = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(badge)
    assert badge.github_repo("git@github.com:alice/meshkit.git") == "alice/meshkit"
    assert badge.github_repo("https://github.com/bob/istio-lab/") == "bob/istio-lab"
    assert badge.badge("alice/meshkit").endswith(
        "(https://mybinder.org/v2/gh/alice/meshkit/HEAD?urlpath=lab/tree/labs/00_setup.ipynb)")
    readme = (REPO / "README.md").read_text()
    assert "python binder/badge.py" in readme
    assert not re.search(r"mybinder\.org/v2/gh/(?!OWNER/REPO)[\w-]+/", readme), "a badge hard-codes a repository"


def test_devcontainer_has_docker_in_docker_and_the_workflow_runs_both_suites() -> None:
    dev = json.loads((REPO / ".devcontainer" / "devcontainer.json").read_text())
    assert any("docker-in-docker" in f for f in dev["features"])
    assert (REPO / dev["postCreateCommand"].split()[-1]).is_file()
    flow = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    runs = {name: " ".join(step.get("run", "") for step in job["steps"]) for name, job in flow["jobs"].items()}
    assert "make test " in runs["test"] + " " and "make test-kind" in runs["test-kind"]
    assert "kind" in runs["test-kind"] and "istioctl" in runs["test-kind"]


def test_the_workflow_uploads_the_screenshots_the_browser_tests_save() -> None:
    flow = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    job = flow["jobs"]["test"]
    assert any("make screenshots" in step.get("run", "") for step in job["steps"])
    shots = job["env"]["MESHKIT_SCREENSHOTS"].replace("${{ github.workspace }}/", "")
    uploads = [step["with"]["path"].rstrip("/") for step in job["steps"]
               if step.get("uses", "").startswith("actions/upload-artifact") and step.get("if") == "always()"]
    assert shots in uploads, (shots, uploads)


def test_meshkit_lab_starts_jupyterlab_with_the_shipped_settings() -> None:
    from meshkit.cli.workshop import jupyterlab_args

    args = dict(a.split("=", 1) for a in jupyterlab_args(REPO))
    assert args["--LabApp.default_url"] == "/lab/tree/labs/00_setup.ipynb"  # the first lab opened
    assert (Path(args["--LabApp.app_settings_dir"]) / "overrides.json").is_file()
    assert args["--LabApp.news_url"] == "None"
    assert args["--LabApp.check_for_updates_class"] == "jupyterlab.NeverCheckForUpdate"
    assert args["--ServerApp.ip"] == "127.0.0.1"
