"""The policy panel: controls → live YAML preview → Apply → what the mesh said.

Every panel in :mod:`meshkit.widgets.panels` is one of these. It can be driven from code as well
as by hand, which is how the tests and the labs' checks use it: set a control's ``value``, read
``.yaml``, call ``.apply()``. Errors (the builder's or the mesh's validation) are shown inline in
red, one per line, never as a traceback.

Example::

    panel = weights_panel(mesh)
    panel.controls["v2"].value = 10
    print(panel.yaml)
    panel.apply()        # ['virtualservice.networking.istio.io/recommendation configured']
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import ipywidgets as widgets

from meshkit.errors import InvalidConfig, MeshkitError
from meshkit.widgets.builders import Resource, to_yaml

ERROR_COLOR = "#d62728"
OK_COLOR = "#2a7a2a"
WARN_COLOR = "#b26a00"


class _Unset(str):
    """The value of a dropdown's "not set" choice (ipywidgets cannot select ``None``: it shows blank)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


#: a "not set" choice; a panel's ``values`` turn it into ``None`` for the builders
UNSET = _Unset("")


class Choice(widgets.Dropdown):
    """A dropdown whose "not set" option is selectable and visible; ``value = None`` selects it.

    Example::

        c = Choice(options=[("not set", UNSET), ("v1", "v1")], value=None)
        c.label             # 'not set'   (a plain Dropdown with value None shows an empty box)
    """

    def __setattr__(self, name: str, value: Any) -> None:
        # traitlets lets None through without validation, so it is replaced before it is set
        if name == "value" and value is None and any(v is UNSET for v in self._options_values or ()):
            value = UNSET
        super().__setattr__(name, value)


@runtime_checkable
class Applier(Protocol):
    """Anything with ``apply(yaml_text)``: the Mesh object is one."""

    def apply(self, text: str) -> Iterable[Any]: ...


ApplyTarget = Applier | Callable[[str], Iterable[Any]]


def apply_function(target: ApplyTarget, where: str) -> Callable[[str], Iterable[Any]]:
    """``target.apply`` for a Mesh-like object, the target itself for a plain function."""
    if isinstance(target, Applier):
        return target.apply
    if callable(target):
        return target
    raise TypeError(
        f"{where}: expected a Mesh (with .apply) or a function apply(yaml_text) -> lines, "
        f"got {type(target).__name__}"
    )


class PolicyPanel:
    """Controls that build Istio resources, their YAML, and a button that applies them.

    ``build`` receives the controls' current values by name and returns the resources; it may
    raise :class:`~meshkit.errors.InvalidConfig`, which the preview shows instead of YAML.
    ``describe`` (optional) turns the same values into a one-line note above the preview.
    """

    def __init__(
        self,
        title: str,
        controls: Mapping[str, widgets.Widget],
        build: Callable[[dict[str, Any]], list[Resource]],
        target: ApplyTarget,
        describe: Callable[[dict[str, Any]], str] | None = None,
    ) -> None:
        self.title = title
        self.controls = dict(controls)
        self._build = build
        self._describe = describe
        self._apply = apply_function(target, title)
        self.resources: list[Resource] = []
        self.build_problems: list[str] = []
        self.messages: list[str] = []
        self.ok: bool | None = None  # None until the first apply
        self.note = widgets.HTML()
        self.preview = widgets.HTML()
        self.button = widgets.Button(description="Apply", button_style="primary", icon="check")
        self.output = widgets.HTML()
        self.widget = widgets.VBox(
            [
                widgets.HTML(f"<b>{html.escape(title)}</b>"),
                widgets.VBox(list(self.controls.values())),
                self.note,
                self.preview,
                self.button,
                self.output,
            ]
        )
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.button.on_click(lambda _button: self.apply())
        self.refresh()

    @property
    def values(self) -> dict[str, Any]:
        """The controls' current values, by name ("not set" choices as ``None``)."""
        return {name: None if control.value is UNSET else control.value for name, control in self.controls.items()}

    @property
    def yaml(self) -> str:
        """The YAML the Apply button would send ('' while the controls cannot build a resource)."""
        return to_yaml(self.resources) if self.resources else ""

    def refresh(self) -> None:
        """Rebuild the resources and the preview from the controls (called on every change)."""
        values = self.values
        try:
            self.resources = self._build(values)
            self.build_problems = []
        except InvalidConfig as exc:
            self.resources, self.build_problems = [], list(exc.problems)
        if self.build_problems:
            self.preview.value = _lines(self.build_problems, ERROR_COLOR, "✗ ")
        else:
            self.preview.value = (
                '<pre style="background:#f7f7f7;padding:6px;max-height:24em;overflow:auto;margin:4px 0">'
                f"{html.escape(self.yaml, quote=False)}</pre>"
            )
        self.button.disabled = bool(self.build_problems)
        note = self._describe(values) if self._describe and not self.build_problems else ""
        self.note.value = html.escape(note, quote=False)

    def apply(self) -> list[str]:
        """Send the YAML to the mesh; show and return its kubectl-style lines ([] on rejection)."""
        if self.build_problems:
            return self._fail(self.build_problems)
        try:
            result = self._apply(self.yaml)
            lines, warnings = _result_lines(result)
        except InvalidConfig as exc:
            return self._fail(list(exc.problems) or [str(exc)])
        except MeshkitError as exc:
            return self._fail(str(exc).splitlines() or [type(exc).__name__])
        except Exception as exc:  # a learner's click must end in a message, never a traceback
            return self._fail([f"{type(exc).__name__}: {exc}"])
        self.ok, self.messages = True, lines + warnings
        self.output.value = _lines(lines, OK_COLOR, "✓ ") + _lines(warnings, WARN_COLOR, "⚠ ")
        return lines

    def _fail(self, problems: list[str]) -> list[str]:
        self.ok, self.messages = False, problems
        self.output.value = _lines(problems, ERROR_COLOR, "✗ ")
        return []

    def _on_change(self, _change: Mapping[str, Any]) -> None:
        self.refresh()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _result_lines(result: Any) -> tuple[list[str], list[str]]:
    if isinstance(result, str):
        return result.splitlines(), []
    items = list(result or [])
    lines = [str(item) for item in items]
    warnings = [f"{item}: {w}" for item in items for w in getattr(item, "warnings", ()) or ()]
    return lines, warnings


def _lines(lines: list[str], color: str, mark: str) -> str:
    style = f"color:{color};font-family:monospace;white-space:pre-wrap"
    return "".join(f'<div style="{style}">{mark}{html.escape(line, quote=False)}</div>' for line in lines)
