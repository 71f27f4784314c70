"""Istio resources: load YAML, validate like the admission webhook, normalise, analyze like istioctl.

Example::

    from meshkit.resources import load_paths, validate_documents, analyze

    report = validate_documents(load_paths(["canary.yaml"]))
    report.raise_for_errors()            # InvalidConfig with located messages
    for problem in analyze(report.resources, {"recommendation": {"http": 8080}}, pods):
        print(problem.analyze_line())
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshkit.resources.analysis import analyze
    from meshkit.resources.duration import parse_duration
    from meshkit.resources.kinds import KINDS, KindInfo, canonical_key, resolve_kind
    from meshkit.resources.loader import load_paths, parse_text
    from meshkit.resources.model import Document, Origin, Problem
    from meshkit.resources.validation import ValidationReport, validate_documents

# Proxies import a few leaf modules of this package (regex, duration): validation, analysis and the
# YAML loader load on first use, so a sidecar does not carry the admission webhook's code.
_LAZY = {
    "analyze": "analysis", "parse_duration": "duration", "KINDS": "kinds", "KindInfo": "kinds",
    "canonical_key": "kinds", "resolve_kind": "kinds", "load_paths": "loader", "parse_text": "loader",
    "Document": "model", "Origin": "model", "Problem": "model", "ValidationReport": "validation",
    "validate_documents": "validation",
}

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'meshkit.resources' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"meshkit.resources.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
