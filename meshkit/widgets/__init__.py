"""Widgets that build Istio resources, show their YAML and apply them; and the traffic panel.

The builders (:mod:`meshkit.widgets.builders`) are pure and always importable; the panels need
the ``lab`` extra (ipywidgets, plotly, anywidget) and are imported on first use.

Example::

    from meshkit.widgets import weights_panel, to_yaml, weights_rule
    weights_panel(mesh)                                   # in a notebook
    print(to_yaml(weights_rule("recommendation", {"v1": 90, "v2": 10})))
"""

from __future__ import annotations

import importlib
from typing import Any

from meshkit.errors import BackendUnavailable
from meshkit.widgets.builders import (
    authz_rule,
    connection_pool_rule,
    deny_all,
    fault_rule,
    header_rule,
    load_balancer_rule,
    mirror_rule,
    mtls_rule,
    rate_limit_rule,
    subsets_rule,
    timeout_retry_rule,
    to_yaml,
    weights_rule,
)

_PANELS = (
    "PolicyPanel",
    "TrafficPanel",
    "authz_panel",
    "fault_panel",
    "header_panel",
    "lb_panel",
    "mirror_panel",
    "mtls_panel",
    "pool_panel",
    "rate_limit_panel",
    "timeout_retry_panel",
    "traffic_panel",
    "weights_panel",
)
_PUSH = ("PushDiff",)  # meshkit.widgets.push: what a push changed in one proxy

__all__ = [
    *_PANELS,
    *_PUSH,
    "authz_rule",
    "connection_pool_rule",
    "deny_all",
    "fault_rule",
    "header_rule",
    "load_balancer_rule",
    "mirror_rule",
    "mtls_rule",
    "rate_limit_rule",
    "subsets_rule",
    "timeout_retry_rule",
    "to_yaml",
    "weights_rule",
]


def __getattr__(name: str) -> Any:
    if name not in _PANELS and name not in _PUSH:
        raise AttributeError(f"module 'meshkit.widgets' has no attribute {name!r}")
    try:
        module = importlib.import_module("meshkit.widgets.push" if name in _PUSH else "meshkit.widgets.panels")
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("meshkit"):  # our own bug, not a missing extra
            raise
        raise BackendUnavailable(
            f"meshkit.widgets panels need {exc.name!r}, part of the lab extra: pip install 'meshkit[lab]'"
        ) from exc
    return getattr(module, name)
