"""The CRD-case checker (tests/resources/istio_crd_cases.py) on a small tree of its own; run it on Istio's
cases with ISTIO_SOURCE=/path/to/istio python -m tests.resources.istio_crd_cases."""

from __future__ import annotations

from pathlib import Path

from tests.resources.istio_crd_cases import CASES, run


def test_valid_and_invalid_cases_are_counted(tmp_path: Path) -> None:
    cases = tmp_path / CASES
    cases.mkdir(parents=True)
    (cases / "sidecar-valid.yaml").write_text(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: ok}\nspec: {egress: [{hosts: ['./*']}]}\n"
    )
    (cases / "sidecar-invalid.yaml").write_text(
        "_err: empty\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: empty}\nspec: {}\n---\n"
        "_err: accepted by mistake\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: fine}\n"
        "spec: {egress: [{hosts: ['./*']}]}\n"
    )
    total, agree, misses = run(tmp_path)
    assert (total, agree) == (3, 2)
    assert misses == ["sidecar-invalid.yaml #1 fine: istio 'accepted by mistake', meshkit 'accepted'"]
