"""Istio resources: load YAML, validate like the admission webhook, normalise, analyze like istioctl.

Example::

    from meshkit.resources import load_paths, validate_documents, analyze

    report = validate_documents(load_paths(["canary.yaml"]))
    report.raise_for_errors()            # InvalidConfig with located messages
    for problem in analyze(report.resources, {"recommendation": {"http": 8080}}, pods):
        print(problem.analyze_line())
"""

from meshkit.resources.analysis import analyze
from meshkit.resources.duration import parse_duration
from meshkit.resources.kinds import KINDS, KindInfo, canonical_key, resolve_kind
from meshkit.resources.loader import load_paths, parse_text
from meshkit.resources.model import Document, Origin, Problem
from meshkit.resources.validation import ValidationReport, validate_documents

__all__ = [
    "KINDS",
    "Document",
    "KindInfo",
    "Origin",
    "Problem",
    "ValidationReport",
    "analyze",
    "canonical_key",
    "load_paths",
    "parse_duration",
    "parse_text",
    "resolve_kind",
    "validate_documents",
]
