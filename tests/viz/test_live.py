"""Live figures: a fake record source feeds the FigureWidget from the refresh thread (no kernel)."""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go
import pytest

from meshkit.errors import MeshNotRunning
from meshkit.viz.live import (
    LiveFigure,
    RecordSource,
    live_codes,
    live_config_push,
    live_graph,
    live_latency,
    live_split,
    live_trace,
    sync_figure,
)
from meshkit.viz.palette import ERROR_RED
from tests.viz import synthetic as syn

WAIT_S = 30.0  # an upper bound only (each wait returns when the condition holds); a busy 2-core box took >5 s


def assert_no_repeated_word(status_html: str) -> None:
    """The status line as the learner reads it never says a word twice in a row ("stopped stopped")."""
    words = re.sub("<[^>]+>", " ", status_html).split()
    doubled = [a for a, b in itertools.pairwise(words) if a == b and a.isalpha()]
    assert not doubled, f"{doubled} repeated in {words}"


class FakeSource:
    """The runner's duck type: records(since) over a list the test fills."""

    def __init__(self, records: list[dict[str, Any]] | None = None) -> None:
        self._lock = threading.Lock()
        self._records = list(records or [])
        self.calls = 0

    def add(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            self._records.extend(records)

    def records(self, since: float = 0.0) -> list[dict[str, Any]]:
        with self._lock:
            self.calls += 1
            return [r for r in self._records if r["t"] >= since]


class StepClock:
    """A monotonic clock that moves ``step`` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        value = self.now
        self.now += self.step
        return value


def wait_until(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def totals(fig: go.FigureWidget) -> dict[str, int]:
    return {t.name: int(sum(t.y)) for t in fig.data}


def test_fake_source_satisfies_the_protocol() -> None:
    assert isinstance(FakeSource(), RecordSource)


def test_live_split_updates_the_figure_widget_from_its_thread() -> None:
    src = FakeSource()
    now = syn.T0 + 10.0
    live = live_split(src, window_s=30, interval_s=0.02, now=lambda: now)
    try:
        assert isinstance(live.figure, go.FigureWidget)
        assert wait_until(lambda: live.updates >= 1)
        assert len(live.figure.data) == 0  # nothing sent yet: the waiting note
        assert live.figure.layout.annotations[0].text == "waiting for traffic…"
        recs = syn.canary_records(n=200, v2_share=0.1, rate=20.0)  # T0 .. T0+9.95
        src.add(recs)
        expected = dict(Counter(r["version"] for r in recs))
        assert wait_until(lambda: totals(live.figure) == expected)
        assert live.figure.layout.annotations == ()  # the note is gone once data arrived
        assert live.figure.data[1].marker.color == "#E69F00"
        assert "live" in live.status.value
    finally:
        live.stop()
    assert not live.running
    assert "stopped" in live.status.value
    assert_no_repeated_word(live.status.value)


def test_live_split_keeps_only_its_window() -> None:
    recs = syn.canary_records(n=200, rate=10.0)  # T0 .. T0+19.9
    clock = {"now": syn.T0 + 25.0}
    live = live_split(FakeSource(recs), window_s=10, interval_s=0.02, now=lambda: clock["now"])
    try:
        in_window = Counter(r["version"] for r in recs if r["t"] >= syn.T0 + 15.0)
        assert wait_until(lambda: totals(live.figure) == dict(in_window))
        clock["now"] = syn.T0 + 100.0  # the traffic is long gone
        assert wait_until(lambda: len(live.figure.data) == 0)
    finally:
        live.stop()


def test_live_figure_stops_by_itself_after_max_seconds() -> None:
    src = FakeSource(syn.canary_records(n=10))
    clock = StepClock(step=4.0)  # start reads 0 → deadline 10; refreshes see 4, 8, then 12
    live: LiveFigure[Any] = LiveFigure(
        lambda: src.records(),
        lambda recs: go.Figure(go.Bar(y=[len(recs)])),
        empty=[],
        interval_s=0.001,
        max_seconds=10.0,
        clock=clock,
    )
    live.start()
    assert wait_until(lambda: not live.running)
    assert live.updates == 3
    assert "stopped by itself after 10 s" in re.sub("<[^>]+>", "", live.status.value)
    assert_no_repeated_word(live.status.value)
    assert live.figure.data[0].y == (10,)
    live.start()  # resumes with a fresh budget
    assert wait_until(lambda: not live.running)
    assert live.updates == 6


def test_stop_returns_promptly_even_with_a_long_interval() -> None:
    live = live_codes(FakeSource(), interval_s=60.0)
    assert wait_until(lambda: live.updates == 1)
    t = time.monotonic()
    live.stop()
    assert time.monotonic() - t < 20.0  # far below the 60 s interval it must not wait out; a busy box took >2 s
    assert not live.running


def test_a_failing_source_shows_the_error_and_the_thread_survives() -> None:
    state = {"fail": True}

    def fetch() -> list[dict[str, Any]]:
        if state["fail"]:
            raise MeshNotRunning("/tmp/mesh-a")
        return syn.mixed_codes()

    live = live_codes(fetch, interval_s=0.02, now=lambda: syn.T0 + 10.0)
    try:
        assert wait_until(lambda: live.last_error is not None)
        assert "no mesh is running (MESHKIT_HOME=/tmp/mesh-a)" in live.status.value
        assert live.running
        state["fail"] = False
        assert wait_until(lambda: live.last_error is None and len(live.figure.data) == 4)
        assert [t.name for t in live.figure.data] == ["200", "503 FI", "503 UO", "504 UT"]
    finally:
        live.stop()


def test_live_latency_builds_the_table_from_the_source() -> None:
    recs = syn.canary_records(n=300, v2_share=0.2, rate=30.0)
    live = live_latency(FakeSource(recs), window_s=60, interval_s=0.02, now=lambda: syn.T0 + 20.0)
    try:
        assert wait_until(
            lambda: any(t.type == "table" and len(t.cells.values[0]) == 2 for t in live.figure.data)
        )
        table = next(t for t in live.figure.data if t.type == "table")
        assert list(table.cells.values[1]) == [Counter(r["version"] for r in recs)[v] for v in ("v1", "v2")]
    finally:
        live.stop()


def test_live_graph_turns_an_edge_red_when_errors_appear() -> None:
    state = {"err": 0.0}
    live = live_graph(lambda: syn.graph(error_v2=state["err"]), interval_s=0.02)
    try:

        def edge_color() -> str | None:
            return next((t.line.color for t in live.figure.data if t.meta == "e4"), None)

        assert wait_until(lambda: edge_color() == "#6b6b6b")
        state["err"] = 0.5
        assert wait_until(lambda: edge_color() == ERROR_RED)
    finally:
        live.stop()


def test_live_trace_waits_for_a_trace_then_draws_it() -> None:
    state: dict[str, Any] = {"resp": {"data": []}}
    live = live_trace(lambda: state["resp"], interval_s=0.02)
    try:
        assert wait_until(lambda: live.updates >= 1)
        assert live.figure.layout.annotations[0].text == "no trace yet"
        state["resp"] = {"data": [syn.chain_trace()]}
        assert wait_until(lambda: sum(len(t.y) for t in live.figure.data) == 6)
    finally:
        live.stop()


def test_live_config_push_keeps_a_bounded_history() -> None:
    versions = iter(range(1, 1000))
    live = live_config_push(lambda: syn.pods(next(versions)), history=5, interval_s=0.005)
    try:
        assert wait_until(lambda: live.updates >= 8)
    finally:
        live.stop()
    assert all(len(t.x) == 5 for t in live.figure.data)
    first = live.figure.data[0].customdata
    assert list(first) == list(range(first[0], first[0] + 5))


def test_sync_figure_replaces_traces_when_the_shape_changes_and_updates_in_place_otherwise() -> None:
    target = go.FigureWidget(go.Figure(go.Bar(x=[1], y=[1], name="a")))
    sync_figure(target, go.Figure([go.Scatter(x=[1, 2], y=[3, 4]), go.Bar(x=[1], y=[2])]))
    assert [t.type for t in target.data] == ["scatter", "bar"]
    uid = target.data[0].uid
    fresh = go.Figure([go.Scatter(x=[5, 6], y=[7, 8]), go.Bar(x=[1], y=[9])])
    fresh.add_annotation(text="hello", showarrow=False)
    sync_figure(target, fresh)
    assert target.data[0].uid == uid  # the same trace, updated
    assert target.data[0].y == (7, 8) and target.data[1].y == (9,)
    assert target.layout.annotations[0].text == "hello"
    sync_figure(target, go.Figure([go.Scatter(x=[1], y=[1]), go.Bar(x=[1], y=[1])]))
    assert target.layout.annotations == ()


def test_bad_intervals_and_sources_are_refused() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        LiveFigure(lambda: [], lambda d: go.Figure(), empty=[], interval_s=0)
    live = live_split(42, start=False)  # type: ignore[arg-type]
    assert live.refresh() is False
    assert live.last_error == "TypeError: expected a RecordSource or a callable, got int"
