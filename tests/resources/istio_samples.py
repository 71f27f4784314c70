"""Does every YAML file of Istio's ``samples/`` validate as the admission webhook would?

Istio's files are not part of this repository. Point the script at a checkout::

    ISTIO_SAMPLES=/path/to/istio/samples python -m tests.resources.istio_samples

It prints one line per file that holds Istio or Kubernetes resources and is refused (with the first
problems), then the counts. Files whose documents are all outside both (Helm templates, kustomize
configs, CRDs of other projects) are counted apart. The suite runs the same function on its own
representative files (``tests/resources/samples``).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from meshkit.resources import KINDS, load_paths, validate_documents

#: API groups of Istio resources
ISTIO_GROUPS = ("networking.istio.io", "security.istio.io", "telemetry.istio.io", "extensions.istio.io")
_ISTIO_KINDS = {k for k, info in KINDS.items() if info.group in ISTIO_GROUPS}


#: API groups Kubernetes itself serves (core is "")
KUBERNETES_GROUPS = ("", "apps", "batch", "policy", "autoscaling")


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def is_istio(api_version: str) -> bool:
    return group_of(api_version) in ISTIO_GROUPS


def is_kubernetes(api_version: str) -> bool:
    group = group_of(api_version)
    return group in KUBERNETES_GROUPS or (group.endswith(".k8s.io") and group != "certmanager.k8s.io")


@dataclass
class SampleRun:
    checked: list[str] = field(default_factory=list)
    refused: dict[str, list[str]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    #: files with Istio resources, and those refused because of an Istio resource
    istio: list[str] = field(default_factory=list)
    istio_refused: dict[str, list[str]] = field(default_factory=dict)


def check_samples(root: Path) -> SampleRun:
    """Validate every ``*.yaml``/``*.yml`` under ``root`` that holds Istio or Kubernetes resources."""
    run = SampleRun()
    for path in sorted([*root.rglob("*.yaml"), *root.rglob("*.yml")]):
        rel = str(path.relative_to(root))
        docs = load_paths([str(path)])
        kinds = [
            (d.data.get("apiVersion"), d.data.get("kind"))
            for d in docs
            if isinstance(d.data, dict)
            and isinstance(d.data.get("apiVersion"), str)
            and isinstance(d.data.get("kind"), str)
        ]
        if any(d.error for d in docs) and not kinds:
            run.skipped.append(rel)  # not YAML resources at all (e.g. Helm templates)
            continue
        ours = [k for k in kinds if is_istio(str(k[0])) or is_kubernetes(str(k[0]))]
        if not ours:
            run.skipped.append(rel)
            continue
        run.checked.append(rel)
        report = validate_documents(docs, default_namespace="default")
        if report.errors:
            run.refused[rel] = [p.format() for p in report.errors]
        if any(is_istio(str(k[0])) for k in kinds):
            run.istio.append(rel)
            istio_errors = [p.format() for p in report.errors if p.kind in _ISTIO_KINDS]
            if istio_errors:
                run.istio_refused[rel] = istio_errors
    return run


def main() -> int:
    root = os.environ.get("ISTIO_SAMPLES")
    if not root or not Path(root).is_dir():
        print("set ISTIO_SAMPLES to the samples/ directory of an Istio checkout", file=sys.stderr)
        return 2
    run = check_samples(Path(root))
    for rel, problems in run.refused.items():
        print(f"REFUSED {rel}")
        for line in problems[:3]:
            print(f"    {line}")
    refused_kinds = sorted(
        {
            line.split(": kind: kind ")[1].split(" (")[0]
            for lines in run.refused.values()
            for line in lines
            if ": kind: kind " in line
        }
    )
    print(
        f"{len(run.checked)} files with Istio or Kubernetes resources: {len(run.checked) - len(run.refused)} "
        f"apply, {len(run.refused)} refused; {len(run.skipped)} other YAML files skipped"
    )
    print(
        f"{len(run.istio)} files with Istio resources: {len(run.istio) - len(run.istio_refused)} with every Istio "
        f"resource valid, {len(run.istio_refused)} with an Istio resource refused"
    )
    if refused_kinds:
        print("kinds refused: " + ", ".join(refused_kinds))
    return 1 if run.refused else 0


if __name__ == "__main__":
    sys.exit(main())
