"""Every choice a learner can make in a panel gives a resource the mesh accepts (or a disabled Apply
that says why), and no dropdown ever shows an empty box.

The controls are varied pairwise: every choice of one control against every choice of another, the
rest at their defaults. That is how "0 (retries off)" met "retry on 5xx" and produced a resource
Istio refuses.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import pytest

from meshkit.resources import parse_text, validate_documents
from meshkit.widgets import panels
from meshkit.widgets.panel import PolicyPanel
from meshkit.widgets.traffic import traffic_panel
from tests.widgets.test_panels import TrafficMesh

FACTORIES: dict[str, Callable[[], PolicyPanel]] = {
    "weights": lambda: panels.weights_panel(lambda _: [], with_subsets=True),
    "header": lambda: panels.header_panel(lambda _: []),
    "mirror": lambda: panels.mirror_panel(lambda _: []),
    "timeout_retry": lambda: panels.timeout_retry_panel(lambda _: []),
    "pool": lambda: panels.pool_panel(lambda _: []),
    "fault": lambda: panels.fault_panel(lambda _: []),
    "lb": lambda: panels.lb_panel(lambda _: []),
    "mtls": lambda: panels.mtls_panel(lambda _: []),
    "authz": lambda: panels.authz_panel(lambda _: []),
    "rate_limit": lambda: panels.rate_limit_panel(lambda _: []),
}


def choices(control: widgets.Widget) -> list[Any]:
    """What a learner can pick: every option, both states, a slider's ends and its start."""
    if isinstance(control, widgets.widget_selection._Selection):
        return [value for _, value in control._options_full]
    if isinstance(control, widgets.Checkbox | widgets.ToggleButton):
        return [False, True]
    if isinstance(control, widgets.Combobox):
        return [control.value, "", *control.options]
    if hasattr(control, "min") and hasattr(control, "max"):
        return sorted({control.min, control.value, control.max})
    return [control.value]


def assert_accepted(panel: PolicyPanel, picked: dict[str, Any]) -> None:
    if panel.build_problems:  # Apply is disabled and the preview says why: acceptable
        assert panel.button.disabled
        return
    report = validate_documents(parse_text(panel.yaml))
    errors = [p.format() for p in report.errors]
    assert not errors, f"{picked} built a resource the mesh refuses: {errors}"


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_every_pair_of_choices_validates(name: str) -> None:
    panel = FACTORIES[name]()
    defaults = {k: c.value for k, c in panel.controls.items()}
    options = {k: choices(c) for k, c in panel.controls.items()}
    tried = 0
    for a, b in itertools.combinations(panel.controls, 2):
        for va, vb in itertools.product(options[a], options[b]):
            for key, value in defaults.items():
                panel.controls[key].value = value
            panel.controls[a].value, panel.controls[b].value = va, vb
            assert_accepted(panel, {a: va, b: vb})
            tried += 1
    assert tried > 0 or len(panel.controls) < 2


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_no_dropdown_shows_an_empty_box(name: str) -> None:
    panel = FACTORIES[name]()
    for key, control in panel.controls.items():
        if isinstance(control, widgets.Dropdown):
            assert control.label, f"{name}.{key} starts blank"
            for value in choices(control):
                control.value = value
                assert control.label, f"{name}.{key} shows blank for {value!r}"
            control.value = None  # from code, None means the "not set" choice where there is one
            assert control.label or control.index is None


def test_the_traffic_panels_user_agent_starts_visible() -> None:
    panel = traffic_panel(TrafficMesh(), interval_s=0.02)
    assert panel.user_agent.label == "default"
    panel.user_agent.value = "Safari"
    panel.user_agent.value = ""
    assert panel.user_agent.label == "default"
