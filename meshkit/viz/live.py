"""Live figures: a FigureWidget that a background thread refreshes from a data source.

The thread pulls every ``interval_s``, rebuilds the figure with the same static builder the
notebooks use, and swaps the traces inside ``batch_update()``; the kernel is never blocked and the
thread never prints (its state is shown in a small status line under the figure). Every live
figure stops by itself after ``max_seconds`` (``.start()`` resumes it), so nothing runs forever.

Example::

    runner = mesh.traffic(rate=10)
    runner.start()
    live = live_split(runner, window_s=30)    # displays when it is the cell's last expression
    ...
    live.stop()
"""

from __future__ import annotations

import contextlib
import copy
import functools
import html
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import ipywidgets as widgets
import plotly.graph_objects as go

from meshkit.errors import BackendUnavailable, MeshkitError
from meshkit.viz.codes import codes_over_time
from meshkit.viz.graph import service_graph
from meshkit.viz.latency import latency_figure
from meshkit.viz.layout import UIREVISION, waiting_note
from meshkit.viz.pods import config_push_timeline
from meshkit.viz.split import split_over_time
from meshkit.viz.trace import trace_waterfall

T = TypeVar("T")
Records = list[Mapping[str, Any]]
Window = tuple[Records, tuple[float, float]]


@runtime_checkable
class RecordSource(Protocol):
    """What live figures read traffic from: the runner ``mesh.traffic(...)`` returns fits."""

    def records(self, since: float = 0.0) -> list[dict[str, Any]]: ...


class LiveFigure(Generic[T]):
    """A :class:`plotly.graph_objects.FigureWidget` kept up to date by a daemon thread.

    ``fetch`` is any zero-argument callable returning the builder's input; ``build`` turns it into a
    ``go.Figure``; ``empty`` is the input drawn before the first fetch. ``clock`` is injectable so the
    self-stop after ``max_seconds`` can be tested without waiting.

    Example::

        live = LiveFigure(mesh.graph, service_graph, empty={"elements": {"nodes": [], "edges": []}})
        live.start()
        live.figure.data        # the current traces
    """

    def __init__(
        self,
        fetch: Callable[[], T],
        build: Callable[[T], go.Figure],
        *,
        empty: T,
        interval_s: float = 1.0,
        max_seconds: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0 or max_seconds <= 0:
            raise ValueError(f"interval_s and max_seconds must be > 0, got {interval_s}, {max_seconds}")
        self._fetch, self._build = fetch, build
        self.interval_s, self.max_seconds = interval_s, max_seconds
        self._clock = clock
        self.figure = _figure_widget(build(empty))
        self.status = widgets.HTML(value=_status("ready", "call .start() to go live"))
        self.widget = widgets.VBox([self.figure, self.status])
        self.updates = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        """True while the refresh thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> LiveFigure[T]:
        """Start (or resume) refreshing; the ``max_seconds`` budget starts again. Returns self."""
        with self._lock:
            if self.running:
                return self
            self._stop = threading.Event()
            deadline = self._clock() + self.max_seconds
            self._thread = threading.Thread(
                target=self._run, args=(self._stop, deadline), name="meshkit-live-figure", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop refreshing and wait (up to ``timeout`` s) for the thread to finish its current pass."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def refresh(self) -> bool:
        """One pass: fetch, build, swap into the widget. False (and the status shows why) on error."""
        try:
            fresh = self._build(self._fetch())
            with _widget_lock(self.figure):
                sync_figure(self.figure, fresh)
        except Exception as exc:  # the thread must survive a mesh that is down for a moment
            self.last_error = str(exc) if isinstance(exc, MeshkitError) else f"{type(exc).__name__}: {exc}"
            self.status.value = _status("error", self.last_error)
            return False
        self.updates += 1
        self.last_error = None
        return True

    def _run(self, stop: threading.Event, deadline: float) -> None:
        reason = "by .stop()"
        while not stop.is_set():
            ok = self.refresh()
            left = deadline - self._clock()
            if left <= 0:
                reason = f"by itself after {self.max_seconds:g} s; call .start() to resume"
                break
            if ok:
                self.status.value = _status(
                    "live", f"every {self.interval_s:g} s · {self.updates} updates · stops in {left:.0f} s"
                )
            if stop.wait(self.interval_s):
                break
        error = f" · last error: {self.last_error}" if self.last_error else ""
        self.status.value = _status("stopped", f"{reason} · {self.updates} updates{error}")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def sync_figure(target: go.FigureWidget, fresh: go.Figure) -> None:
    """Make ``target`` show ``fresh``: traces updated in place when their shape matches, else replaced."""

    def shape(fig: Any) -> list[tuple[str, tuple[str, ...]]]:
        return [(t.type, tuple(sorted(k for k in t.to_plotly_json() if k != "uid"))) for t in fig.data]

    layout = fresh.layout.to_plotly_json()
    layout.pop("template", None)  # the same every time and large; the widget already has it
    reshape = shape(target) != shape(fresh)
    if reshape and target.data:  # (plotly.js refuses to delete an empty list of traces)
        # Removing and adding traces are messages of their own, drawn as they arrive: remove first,
        # lay out, then add, so no frame shows the new traces in the old layout (the latency table
        # with a row more than its old area holds, over the axis title) or the reverse.
        target.data = ()
    with target.batch_update():
        if not reshape:
            for old, new in zip(target.data, fresh.data, strict=True):
                props = new.to_plotly_json()
                props.pop("uid", None)
                old.update(props, overwrite=True)
        target.layout.update(layout, overwrite=True)
        target.layout.shapes = fresh.layout.shapes
        target.layout.annotations = fresh.layout.annotations
    if reshape and fresh.data:
        target.add_traces(list(fresh.data))
    # The whole figure as the widget's state, too: anywidget runs plotly's front end only once its
    # module has loaded, and the `_py2js_*` messages that reach the model before (set, then reset to
    # None) are never applied; a view drawn then starts from this state, which was the figure the comm
    # opened with (lab 04's latency view said "waiting for traffic…" after 16 updates).
    with target.hold_sync():
        target._widget_layout = copy.deepcopy(target._layout_obj._props)
        target._widget_data = copy.deepcopy(target._data)


def window_fetcher(
    source: RecordSource | Callable[[], Sequence[Mapping[str, Any]]],
    window_s: float,
    now: Callable[[], float] = time.time,
) -> Callable[[], Window]:
    """A fetch function returning the last ``window_s`` seconds of records and that time range."""

    def fetch() -> Window:
        hi = now()
        lo = hi - window_s
        if isinstance(source, RecordSource):
            recs: Records = list(source.records(since=lo))
        elif callable(source):
            recs = [r for r in source() if r["t"] >= lo]
        else:
            raise TypeError(f"expected a RecordSource or a callable, got {type(source).__name__}")
        return recs, (lo, hi)

    return fetch


def _live_window(
    source: RecordSource | Callable[[], Sequence[Mapping[str, Any]]],
    window_s: float,
    build: Callable[[Window], go.Figure],
    interval_s: float,
    max_seconds: float,
    start: bool,
    now: Callable[[], float],
) -> LiveFigure[Window]:
    """A live figure over the records of a sliding window (the three record-based figures below)."""
    live: LiveFigure[Window] = LiveFigure(
        window_fetcher(source, window_s, now),
        build,
        empty=_empty_window(now, window_s),
        interval_s=interval_s,
        max_seconds=max_seconds,
    )
    return live.start() if start else live


def live_split(
    source: RecordSource | Callable[[], Sequence[Mapping[str, Any]]],
    window_s: float = 30.0,
    bucket_s: float = 1.0,
    *,
    interval_s: float = 1.0,
    max_seconds: float = 600.0,
    start: bool = True,
    now: Callable[[], float] = time.time,
) -> LiveFigure[Window]:
    """Requests per version over a sliding window (see :func:`meshkit.viz.figures.split_over_time`)."""
    return _live_window(source, window_s, lambda d: split_over_time(d[0], bucket_s, t_range=d[1]),
                        interval_s, max_seconds, start, now)


def live_codes(
    source: RecordSource | Callable[[], Sequence[Mapping[str, Any]]],
    window_s: float = 30.0,
    bucket_s: float = 1.0,
    *,
    interval_s: float = 1.0,
    max_seconds: float = 600.0,
    start: bool = True,
    now: Callable[[], float] = time.time,
) -> LiveFigure[Window]:
    """Status codes and response flags over a sliding window."""
    return _live_window(source, window_s, lambda d: codes_over_time(d[0], bucket_s, t_range=d[1]),
                        interval_s, max_seconds, start, now)


def live_latency(
    source: RecordSource | Callable[[], Sequence[Mapping[str, Any]]],
    window_s: float = 60.0,
    *,
    interval_s: float = 2.0,
    max_seconds: float = 600.0,
    start: bool = True,
    now: Callable[[], float] = time.time,
) -> LiveFigure[Window]:
    """Latency histogram and percentiles per version over the last ``window_s`` seconds."""
    return _live_window(source, window_s, lambda d: latency_figure(d[0]), interval_s, max_seconds, start, now)


def live_graph(
    fetch_graph: Callable[[], Mapping[str, Any]],
    *,
    interval_s: float = 2.0,
    max_seconds: float = 600.0,
    start: bool = True,
) -> LiveFigure[Mapping[str, Any]]:
    """The service graph, refetched every ``interval_s`` (e.g. ``live_graph(mesh.graph)``)."""
    live: LiveFigure[Mapping[str, Any]] = LiveFigure(
        fetch_graph,
        service_graph,
        empty={"elements": {"nodes": [], "edges": []}},
        interval_s=interval_s,
        max_seconds=max_seconds,
    )
    return live.start() if start else live


def live_trace(
    fetch_traces: Callable[[], Mapping[str, Any]],
    *,
    interval_s: float = 2.0,
    max_seconds: float = 600.0,
    start: bool = True,
) -> LiveFigure[Mapping[str, Any]]:
    """The waterfall of the first trace the fetch returns (e.g. ``lambda: mesh.traces(limit=1)``)."""
    live: LiveFigure[Mapping[str, Any]] = LiveFigure(
        fetch_traces, _first_trace, empty={"data": []}, interval_s=interval_s, max_seconds=max_seconds
    )
    return live.start() if start else live


def live_config_push(
    fetch_pods: Callable[[], Sequence[Any]],
    *,
    history: int = 300,
    interval_s: float = 1.0,
    max_seconds: float = 600.0,
    start: bool = True,
    now: Callable[[], float] = time.time,
) -> LiveFigure[list[dict[str, Any]]]:
    """Each proxy's config version over time, sampling ``fetch_pods`` (e.g. ``mesh.pods``).

    Keeps the last ``history`` samples, so memory stays bounded however long it runs.
    """
    snapshots: deque[dict[str, Any]] = deque(maxlen=history)

    def fetch() -> list[dict[str, Any]]:
        snapshots.append({"t": now(), "pods": list(fetch_pods())})
        return list(snapshots)

    live: LiveFigure[list[dict[str, Any]]] = LiveFigure(
        fetch, config_push_timeline, empty=[], interval_s=interval_s, max_seconds=max_seconds
    )
    return live.start() if start else live


def _empty_window(now: Callable[[], float], window_s: float) -> Window:
    hi = now()
    return [], (hi - window_s, hi)


def _first_trace(response: Mapping[str, Any]) -> go.Figure:
    if response.get("data"):
        return trace_waterfall(response, 0)
    fig = go.Figure()
    fig.update_layout(title="Trace", uirevision=UIREVISION)
    waiting_note(fig, "no trace yet")
    return fig


def _figure_widget(fig: go.Figure) -> go.FigureWidget:
    try:
        return _opened_with_figure(fig)
    except (ImportError, ValueError) as exc:  # plotly >= 6 needs anywidget for FigureWidget
        raise BackendUnavailable(
            f"live figures need plotly's FigureWidget ({exc}); "
            "install the lab extra: pip install 'meshkit[lab]'"
        ) from exc


def _opened_with_figure(fig: go.Figure) -> go.FigureWidget:
    """A FigureWidget whose comm opens carrying the figure, not an empty one.

    plotly's FigureWidget opens its comm early in its constructor, with no data and an empty layout,
    and sends the figure afterwards as a state update. JupyterLab can draw the view between the two
    (seen in the browser tests: a blank plot with plotly's default axes, −1..6 by −1..4, whose two
    "−1" labels meet at the corner, and a placeholder title), and the view never redraws from a later
    state update: only the live refreshes' restyle/relayout messages reach it, and a panel that was
    never started sends none. Opening the comm once the figure is in place leaves no such window.
    """
    return _widget_class()(fig)


@functools.cache
def _widget_class() -> type[go.FigureWidget]:
    base = go.FigureWidget  # raises ImportError (no anywidget) here, inside _figure_widget's try

    class _FigureWidget(base):  # type: ignore[misc,valid-type]
        def __init__(self, figure: go.Figure) -> None:
            self._meshkit_lock = threading.RLock()
            super().__init__(figure)
            self._meshkit_ready = True
            self._widget_layout = copy.deepcopy(self._layout_obj._props)
            self._widget_data = copy.deepcopy(self._data)
            self.open()

        def open(self) -> None:
            if getattr(self, "_meshkit_ready", False):  # not from inside plotly's constructor
                super().open()

        def set_state(self, sync_data: dict[str, Any]) -> None:
            # A view's message (plotly's acknowledgements of each update) is applied on the kernel's
            # main thread with trait notifications held: a refresh from the live thread in that window
            # had its `_py2js_*` message (set, then reset to None) folded into the reset alone, so the
            # browser never got it and kept its first, empty drawing. One lock keeps them apart.
            with self._meshkit_lock:
                super().set_state(sync_data)

    return _FigureWidget


def _widget_lock(figure: go.FigureWidget) -> Any:
    """The lock a live refresh holds while it edits ``figure`` (a no-op for a plain FigureWidget)."""
    return getattr(figure, "_meshkit_lock", None) or contextlib.nullcontext()


def _status(state: str, text: str) -> str:
    color = {"live": "#2ca02c", "error": "#d62728"}.get(state, "#666666")
    dot = {"live": "●", "error": "✗", "ready": "○"}.get(state, "■")
    return (
        f'<span style="color:{color};font-size:90%">{dot} {html.escape(state)}</span>'
        f' <span style="color:#666;font-size:90%">{html.escape(text, quote=False)}</span>'
    )
