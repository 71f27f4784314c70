"""Agreement with Istio's own CRD validation cases (pkg/config/validation/testdata/crds in istio/istio).

Istio's files are not part of this repository. Point the script at a checkout::

    ISTIO_SOURCE=/path/to/istio python -m tests.resources.istio_crd_cases

Each document of a ``*-valid.yaml`` must validate; each of a ``*-invalid.yaml`` must be refused
(its ``_err`` field, Istio's expected message, is shown next to meshkit's when they disagree).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from meshkit.resources import parse_text, validate_documents

CASES = Path("pkg/config/validation/testdata/crds")


def run(root: Path) -> tuple[int, int, list[str]]:
    """``(cases, agreeing, disagreements)`` over every case file under ``root``."""
    total = agree = 0
    misses: list[str] = []
    for path in sorted((root / CASES).glob("*.yaml")):
        valid = path.stem.endswith("-valid")
        for i, doc in enumerate(d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)):
            expected = doc.pop("_err", "")
            report = validate_documents(
                parse_text(yaml.safe_dump(doc), f"{path.name}#{i}"), default_namespace="default"
            )
            ok = (not report.errors) if valid else bool(report.errors)
            total += 1
            agree += ok
            if not ok:
                got = report.errors[0].message if report.errors else "accepted"
                misses.append(
                    f"{path.name} #{i} {doc.get('metadata', {}).get('name', '?')}: istio {expected!r}, meshkit {got!r}"
                )
    return total, agree, misses


def main() -> int:
    root = os.environ.get("ISTIO_SOURCE")
    if not root or not (Path(root) / CASES).is_dir():
        print("set ISTIO_SOURCE to an istio/istio checkout", file=sys.stderr)
        return 2
    total, agree, misses = run(Path(root))
    for line in misses:
        print(line)
    print(f"{agree}/{total} of Istio's CRD validation cases agree")
    return 0 if agree == total else 1


if __name__ == "__main__":
    sys.exit(main())
