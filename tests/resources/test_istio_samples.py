"""The samples checker (tests/resources/istio_samples.py) on this suite's own files written in the forms
Istio's samples/ use; run it on a real checkout with ISTIO_SAMPLES=... python -m tests.resources.istio_samples."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.resources.istio_samples import check_samples

SAMPLES = Path(__file__).parent / "samples"


def test_representative_samples_validate() -> None:
    run = check_samples(SAMPLES)
    assert sorted(run.checked) == sorted(p.name for p in SAMPLES.glob("*.yaml"))
    assert run.refused == {}
    assert len(run.istio) == 5 and run.istio_refused == {}


def test_a_refused_file_is_reported(tmp_path: Path) -> None:
    shutil.copy(SAMPLES / "gateway-tls.yaml", tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s}\nspec: {}\n")
    (tmp_path / "Chart.yaml").write_text("name: chart\nversion: 1.0.0\n")
    run = check_samples(tmp_path)
    assert run.skipped == ["Chart.yaml"]
    assert list(run.refused) == ["bad.yaml"] and list(run.istio_refused) == ["bad.yaml"]
    assert "sidecar: empty configuration provided" in run.refused["bad.yaml"][0]
