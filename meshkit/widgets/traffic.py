"""The traffic panel: start and stop load through the ingress gateway, and watch the split live.

A toggle starts ``mesh.traffic(rate, concurrency, headers)``; the sliders change the running
load; the User-Agent picker exercises header routing (Safari → v2); below, a live split figure
reads the runner's records.

Example::

    panel = traffic_panel(mesh, rate=10)
    panel.start()            # or click "Start traffic"
    panel.rate.value = 20
    panel.stop()
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as widgets

from meshkit.errors import MeshkitError
from meshkit.viz.live import LiveFigure, Window, live_split

USER_AGENTS: list[tuple[str, str]] = [
    ("default", ""),  # not None: a Dropdown whose value is None shows an empty box
    ("Safari", "Safari"),
    ("Firefox", "Firefox"),
    ("Mobile", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"),
]


class TrafficPanel:
    """Start/stop toggle, rate and concurrency sliders, a User-Agent picker and a live split figure.

    It is itself the live figure's record source (``records(since)`` reads the current runner), so
    restarting traffic with other settings keeps the same figure.
    """

    def __init__(
        self,
        mesh: Any,
        rate: float = 10.0,
        concurrency: int = 2,
        window_s: float = 30.0,
        headers: Mapping[str, str] | None = None,
        *,
        interval_s: float = 1.0,
        max_seconds: float = 600.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        if not callable(getattr(mesh, "traffic", None)):
            raise TypeError(f"traffic_panel: expected a Mesh with .traffic(...), got {type(mesh).__name__}")
        self._mesh = mesh
        self.headers = dict(headers or {})
        self.runner: Any = None
        self.error: str | None = None
        self._syncing = False  # set while the panel itself moves the toggle, so it does not recurse
        self.toggle = widgets.ToggleButton(
            value=False, description="Start traffic", icon="play", button_style="success"
        )
        self.rate = widgets.FloatSlider(
            value=rate, min=0.5, max=50.0, step=0.5, description="requests/s", continuous_update=False
        )
        self.concurrency = widgets.IntSlider(
            value=concurrency, min=1, max=16, description="concurrency", continuous_update=False
        )
        self.user_agent = widgets.Dropdown(options=USER_AGENTS, value="", description="User-Agent")
        self.status = widgets.HTML(value=_note("stopped"))
        self.live: LiveFigure[Window] = live_split(
            self, window_s=window_s, interval_s=interval_s, max_seconds=max_seconds, start=False, now=now
        )
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.toggle, self.status]),
                widgets.HBox([self.rate, self.concurrency]),
                self.user_agent,
                self.live.widget,
            ]
        )
        self.toggle.observe(self._on_toggle, names="value")
        self.rate.observe(self._on_rate, names="value")
        self.concurrency.observe(self._on_concurrency, names="value")
        self.user_agent.observe(self._on_user_agent, names="value")

    @property
    def running(self) -> bool:
        """True while the load generator runs."""
        return bool(self.runner is not None and self.runner.running)

    def records(self, since: float = 0.0) -> list[dict[str, Any]]:
        """The current runner's records (none before the first start)."""
        return list(self.runner.records(since=since)) if self.runner is not None else []

    def start(self) -> None:
        """Start load with the sliders' settings (and the live figure). No-op when running."""
        if self.running:
            self._show()
            return
        headers = dict(self.headers)
        if self.user_agent.value:
            headers["user-agent"] = self.user_agent.value
        try:
            self.runner = self._mesh.traffic(
                rate=self.rate.value, concurrency=self.concurrency.value, headers=headers or None
            )
            self.runner.start()
        except Exception as exc:  # a mesh that is down must show a message, not a traceback
            self.error = str(exc) if isinstance(exc, MeshkitError) else f"{type(exc).__name__}: {exc}"
            self.runner = None
            self._set_toggle(False)
            self.status.value = _note(self.error, error=True)
            return
        self.error = None
        self.live.start()
        self._set_toggle(True)
        self._show()

    def stop(self) -> None:
        """Stop the load, draw the figure one last time and stop refreshing it."""
        if self.runner is not None:
            self.runner.stop()
        self.live.stop()
        self.live.refresh()
        self._set_toggle(False)
        self._show()

    def _show(self) -> None:
        if self.running:
            ua = f", User-Agent {self.user_agent.label}" if self.user_agent.value else ""
            self.status.value = _note(
                f"running: {self.rate.value:g} requests/s, {self.concurrency.value} concurrent{ua}"
            )
        else:
            sent = len(self.records())
            self.status.value = _note(f"stopped · {sent} requests recorded" if sent else "stopped")

    def _set_toggle(self, on: bool) -> None:
        self._syncing = True
        try:
            self.toggle.value = on
        finally:
            self._syncing = False
        self.toggle.description = "Stop traffic" if on else "Start traffic"
        self.toggle.icon = "stop" if on else "play"
        self.toggle.button_style = "danger" if on else "success"

    def _on_toggle(self, change: Mapping[str, Any]) -> None:
        if self._syncing:
            return
        if change["new"]:
            self.start()
        else:
            self.stop()

    def _on_rate(self, change: Mapping[str, Any]) -> None:
        if self.running:
            self.runner.set_rate(float(change["new"]))
            self._show()

    def _on_concurrency(self, change: Mapping[str, Any]) -> None:
        if self.running:
            self.runner.set_concurrency(int(change["new"]))
            self._show()

    def _on_user_agent(self, _change: Mapping[str, Any]) -> None:
        if self.running:  # headers are fixed per runner: restart with the new one
            self.runner.stop()
            self.runner = None
            self.start()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def traffic_panel(
    mesh: Any,
    rate: float = 10.0,
    concurrency: int = 2,
    window_s: float = 30.0,
    headers: Mapping[str, str] | None = None,
    **options: Any,
) -> TrafficPanel:
    """Build a :class:`TrafficPanel` for ``mesh`` (see its docstring); traffic starts on the toggle.

    Example::

        traffic_panel(mesh, rate=10, concurrency=2)
    """
    return TrafficPanel(mesh, rate, concurrency, window_s, headers, **options)


def _note(text: str, error: bool = False) -> str:
    color = "#d62728" if error else "#555555"
    return f'<span style="color:{color};font-size:90%">{html.escape(text, quote=False)}</span>'
