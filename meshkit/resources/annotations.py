"""Istio's admission rules on annotations (every Istio kind): dry-run only on AuthorizationPolicy,
and no internal annotations set by users.

Example::

    >>> annotation_errors("VirtualService", "tutorial", "r", {"istio.io/dry-run": "true"})
    [('istio.io/dry-run', 'tutorial/r has unsupported annotation istio.io/dry-run, please remove the annotation')]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DRY_RUN = "istio.io/dry-run"
ALWAYS_REJECT = "internal.istio.io/webhook-always-reject"
INTERNAL = ("internal.istio.io/parent-namespace", "internal.istio.io/parents")


def annotation_errors(kind: str, namespace: str, name: str, annotations: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(annotation, message)`` for each annotation Istio's webhook refuses on this resource."""
    out = []
    if DRY_RUN in annotations and kind != "AuthorizationPolicy":
        out.append((DRY_RUN, f"{namespace}/{name} has unsupported annotation {DRY_RUN}, please remove the annotation"))
    if ALWAYS_REJECT in annotations:
        out.append((ALWAYS_REJECT, f'"{ALWAYS_REJECT}" annotation found, rejecting'))
    for key in INTERNAL:
        if key in annotations:
            out.append((key, f'"{key}" annotation found, this may not be set by users'))
    return out
