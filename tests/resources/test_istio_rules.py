"""Each of Istio's validation rules (tests/resources/istio_rules.py): the valid case passes, the invalid
case gets Istio's message (as an error, or as a warning where Istio warns)."""

from __future__ import annotations

import pytest
import yaml

from meshkit.resources import parse_text, validate_documents
from meshkit.resources.kinds import KINDS
from tests.resources.istio_rules import RULES, Rule, counts


def _report(r: Rule, spec: dict[str, object], name: str = "", valid: bool = False) -> tuple[list[str], list[str]]:
    info = KINDS[r.kind]
    meta: dict[str, object] = {"name": name or r.resource_name, "namespace": r.namespace}
    if r.annotations and (r.valid_annotations or not valid):
        meta["annotations"] = dict(r.annotations)
    text = yaml.safe_dump({"apiVersion": info.api_version, "kind": r.kind, "metadata": meta, "spec": spec})
    report = validate_documents(parse_text(text, "rule.yaml"))
    return [p.message for p in report.errors], [p.message for p in report.warnings]


@pytest.mark.parametrize("r", RULES, ids=[f"{r.kind}: {r.name}" for r in RULES])
def test_rule(r: Rule) -> None:
    errors, warnings = _report(r, r.valid, valid=True)
    assert errors == [], f"valid case refused: {errors}"
    assert r.message not in warnings, "the valid case must not get the rule's warning"
    errors, warnings = _report(r, r.invalid, r.invalid_name)
    assert r.message in (warnings if r.warning else errors), (errors, warnings)
    if r.warning:
        assert errors == []


def test_every_kind_istio_validates_has_rules() -> None:
    """The tally (python -m tests.resources.istio_rules) covers every Istio kind meshkit serves."""
    tally = counts()
    istio = [k for k, info in KINDS.items() if info.group.endswith("istio.io")]
    assert sorted(k for k in istio if tally[k] == 0) == []
    assert len({(r.kind, r.name) for r in RULES}) == len(RULES)
