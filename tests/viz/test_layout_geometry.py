"""Every figure the labs draw, laid out by plotly.js in headless Chromium: no text over other text,
no table row cut off, nothing off the figure, and a latency axis that starts at 0 ms.

This is what a learner saw go wrong: the latency table over its axis title with its second row cut,
the timeout variant's axis from −200 ms, the service graph's edge labels on top of each other.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from typing import Any

import plotly.graph_objects as go
import pytest

from meshkit.viz import (
    codes_over_time,
    config_push_timeline,
    latency_figure,
    pods_table,
    service_graph,
    split_over_time,
    split_pie,
    trace_waterfall,
)
from tests.viz import synthetic as syn
from tests.viz.layout_geometry import CHROMIUM, CHROMIUM_ARGS, NO_CHROMIUM, TEXT_BOXES_JS, FigurePage, problems

pytestmark = pytest.mark.browser


def timeout_records() -> list[dict[str, Any]]:
    """Lab 02's timeout step: fast v1 replies and 504s after 1 s from the slow v2."""
    rng = random.Random(3)
    recs = []
    for i in range(20):
        if i % 4 == 0:
            recs.append(syn.error(syn.T0 + i * 0.05, 504, "UT", "upstream request timeout",
                                  latency=1000 + rng.random() * 30))
        else:
            recs.append(syn._ok(syn.T0 + i * 0.05, "v1", rng.lognormvariate(2.0, 0.3), i))
    return recs


def three_versions_graph() -> dict[str, Any]:
    """Lab 01's graph after the egress step: recommendation v1, v2 and v3 under preference."""
    graph = syn.graph(error_v2=0.1)
    nodes, edges = graph["elements"]["nodes"], graph["elements"]["edges"]
    nodes.append({"data": {"id": "n-rec-v3", "app": "recommendation", "version": "v3", "nodeType": "app",
                           "workload": "recommendation-v3", "namespace": "tutorial"}})
    edges.append({"data": {"id": "e5", "source": "n-pref", "target": "n-rec-v3", "rate": 3.3,
                           "errorRatio": 1.0, "p95": 3.0, "mtls": 1.0}})
    return graph


FIGURES: dict[str, Callable[[], go.Figure]] = {
    "latency two versions": lambda: latency_figure(syn.canary_records(n=200, v2_share=0.5)),
    "latency timeout": lambda: latency_figure(timeout_records()),
    "latency one version": lambda: latency_figure(syn.canary_records(n=50, v2_share=0.0)),
    "codes": lambda: codes_over_time(syn.mixed_codes(), bucket_s=0.5),
    "split": lambda: split_over_time(syn.canary_records(n=300), bucket_s=1.0),
    "pie": lambda: split_pie(syn.canary_records(n=300)),
    "graph": lambda: service_graph(syn.graph(error_v2=0.2)),
    "graph three versions": lambda: service_graph(three_versions_graph()),
    "trace": lambda: trace_waterfall(syn.chain_trace()),
    "pods": lambda: pods_table(syn.pods()),
    "waiting": lambda: split_over_time([]),  # a live figure before the traffic: default axes from −1
    "waiting codes": lambda: codes_over_time([]),
    "config push": lambda: config_push_timeline(
        [{"t": syn.T0 + i, "pods": syn.pods(config_version=3 + i // 2)} for i in range(6)]),
    "config push live": lambda: live_push_samples(),
}


def live_push_samples() -> go.Figure:
    """Lab 00's live figure: samples every 0.5 s from a moment between seconds, one push after 2 s."""
    return config_push_timeline(
        [{"t": syn.T0 + 0.37 + i * 0.5, "pods": syn.pods(config_version=1 + i // 4)} for i in range(12)])


@pytest.fixture(scope="module")
def figure_page() -> Iterator[FigurePage]:
    if not CHROMIUM.exists():
        pytest.skip(NO_CHROMIUM)
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield FigurePage(browser.new_page(viewport={"width": 1000, "height": 900}))
        finally:
            browser.close()


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_text_does_not_overlap(figure_page: FigurePage, name: str) -> None:
    measured = figure_page.measure(FIGURES[name]())
    assert measured["boxes"], "nothing drawn"
    assert problems(measured) == []


@pytest.mark.parametrize("name", ["latency two versions", "latency timeout", "latency one version"])
def test_latency_axis_starts_at_zero(figure_page: FigurePage, name: str) -> None:
    measured = figure_page.measure(FIGURES[name]())
    assert measured["xaxis"][0] >= 0, f"the x axis starts at {measured['xaxis'][0]:.0f} ms"


@pytest.mark.parametrize("width", [600, 1200])
def test_graph_labels_stay_apart_at_other_widths(figure_page: FigurePage, width: int) -> None:
    assert problems(figure_page.measure(service_graph(three_versions_graph()), width=width)) == []


def with_service_nodes(graph: dict[str, Any]) -> dict[str, Any]:
    """The graph as meshkit's telemetry graph draws it: app → service → app hops, one edge per pair."""
    nodes, edges = graph["elements"]["nodes"], graph["elements"]["edges"]
    for app, callee in (("customer", "n-cust"), ("preference", "n-pref"), ("recommendation", None)):
        nodes.append({"data": {"id": f"svc-{app}", "service": app, "app": app, "nodeType": "service",
                               "namespace": "tutorial"}})
        for e in [e["data"] for e in edges]:
            if e["target"] == callee or (callee is None and e["target"].startswith("n-rec-")):
                edges.append({"data": {**e, "id": e["id"] + "-svc", "source": f"svc-{app}"}})
                e["target"] = f"svc-{app}"
    seen: set[tuple[str, str]] = set()
    graph["elements"]["edges"] = [
        e for e in edges if (k := (e["data"]["source"], e["data"]["target"])) not in seen and not seen.add(k)]
    return graph


def lab01_leftovers_graph(services: bool) -> dict[str, Any]:
    """Lab 04 run after lab 01 on the same mesh: lab 01's egress step leaves recommendation v3, its call to
    the external worldtimeapi.org and the BlackHoleCluster it hit under REGISTRY_ONLY. With ``services``
    the graph has the telemetry graph's service nodes between the apps too (11 nodes, as in the browser)."""
    graph = three_versions_graph()
    nodes, edges = graph["elements"]["nodes"], graph["elements"]["edges"]
    nodes += [{"data": {"id": "svc-time", "service": "worldtimeapi.org", "app": "worldtimeapi.org",
                        "nodeType": "service", "namespace": "tutorial"}},
              {"data": {"id": "svc-bh", "service": "BlackHoleCluster", "app": "BlackHoleCluster",
                        "nodeType": "service", "namespace": "tutorial"}}]
    edges += [{"data": {"id": "e6", "source": "n-rec-v3", "target": "svc-time", "rate": 0.0, "errorRatio": 0.0,
                        "p95": 40.0, "mtls": 0.0}},
              {"data": {"id": "e7", "source": "n-rec-v3", "target": "svc-bh", "rate": 0.0, "errorRatio": 1.0,
                        "p95": 1.0, "mtls": 0.0}}]
    return with_service_nodes(graph) if services else graph


def twelve_nodes_graph() -> dict[str, Any]:
    """The leftovers with service nodes and callers from outside the mesh (the ``unknown`` node)."""
    graph = lab01_leftovers_graph(True)
    graph["elements"]["nodes"].append({"data": {"id": "unknown", "nodeType": "unknown", "namespace": "unknown"}})
    graph["elements"]["edges"].append({"data": {"id": "e-out", "source": "unknown", "target": "svc-customer",
                                                "rate": 0.5, "errorRatio": 0.0, "p95": 3.0, "mtls": 0.0}})
    return graph


@pytest.mark.parametrize("graph", [
    lambda: with_service_nodes(syn.graph(error_v2=0.2)), twelve_nodes_graph], ids=["lab 01 fresh", "12 nodes"])
@pytest.mark.parametrize("width", [700, 1000])
def test_graph_with_service_nodes_keeps_labels_apart(
    figure_page: FigurePage, width: int, graph: Callable[[], dict[str, Any]]
) -> None:
    """The telemetry graph's shape even before lab 01's leftovers (gateway, service and app nodes in seven
    columns): at 700 px "istio-ingressgateway" ran into "customer" and "preference v1" into "recommendation"."""
    g = graph()
    measured = figure_page.measure(service_graph(g), width=width)
    assert problems(measured) == []
    assert sum(b["text"].endswith("% err") for b in measured["boxes"]) == len(g["elements"]["edges"])


@pytest.mark.parametrize("services", [False, True], ids=["apps", "apps and services"])
@pytest.mark.parametrize("width", [700, 1000])
def test_graph_of_lab01_leftovers_keeps_labels_apart(figure_page: FigurePage, width: int, services: bool) -> None:
    """Lab 04 in the browser after lab 01 on the same mesh (about 11 nodes): "0.0 rps100.0 % err" was
    drawn over "recommendation v2" and "🔒 … rps 0.0 % err" over "recommendation v1"."""
    graph = lab01_leftovers_graph(services)
    fig = service_graph(graph)
    measured = figure_page.measure(fig, width=width)
    assert problems(measured) == []
    texts = " ".join(b["text"] for b in measured["boxes"])
    assert len(graph["elements"]["nodes"]) == (11 if services else 8)
    for name in ("recommendation v3", "worldtimeapi.org", "BlackHoleCluster"):  # every node is named
        assert name in texts, name
    # every edge's rate and errors still readable on the figure (in the table under the graph)
    assert sum(b["text"].endswith("% err") for b in measured["boxes"]) == len(graph["elements"]["edges"])


def test_config_push_ticks_are_distinct_and_one_line(figure_page: FigurePage) -> None:
    """Lab 00 in the browser: the date under the first time tick ran into the y axis's "0", and
    whole-number versions on a 0.5 step read 0, 1, 1, 2, 2."""
    texts = [b["text"] for b in figure_page.measure(live_push_samples())["boxes"]]
    versions = [t for t in texts if t.isdigit()]
    assert len(versions) >= 2 and len(versions) == len(set(versions)), versions
    times = [t for t in texts if t[:2].isdigit() and ":" in t]
    assert times and all(re.fullmatch(r"\d\d:\d\d:\d\d", t) for t in times), times


def test_latency_table_with_errors_fits_at_notebook_width(figure_page: FigurePage) -> None:
    """Lab 04 in the browser (a 700 px figure): the header wrapped "p50 ms" to two lines and the
    row of failed requests ("no version (error)") fell out of the table's area."""
    recs = syn.canary_records(n=200, v2_share=0.5) + [
        syn.error(syn.T0 + i, 503, "UF", "upstream connect error") for i in range(9)]
    assert problems(figure_page.measure(latency_figure(recs), width=700)) == []


def three_data_planes() -> go.Figure:
    """Lab 06's side-by-side figure: sidecars, ambient, ambient + waypoint (numbers of one run)."""
    from meshkit.lab.ambient import DataPlaneUse
    from meshkit.viz.dataplanes import dataplane_figure

    apps = {"c": "customer v1", "p": "preference v1", "r1": "recommendation v1", "r2": "recommendation v2"}
    sidecars = {k: f"{v} + sidecar" for k, v in apps.items()}
    return dataplane_figure([
        DataPlaneUse("sidecars", 4, 4, dict.fromkeys(apps, 22.4), 19.53, roles=sidecars),
        DataPlaneUse("ambient", 1, 5, {**dict.fromkeys(apps, 18.0), "z": 40.2}, 19.36, roles={**apps, "z": "ztunnel"}),
        DataPlaneUse("ambient + waypoint", 2, 6, {**dict.fromkeys(apps, 18.0), "z": 40.2, "w": 30.6}, 39.21,
                     roles={**apps, "z": "ztunnel", "w": "waypoint"}),
    ])


@pytest.mark.parametrize("width", [700, 1000])
def test_data_plane_figure_fits_at_notebook_width(figure_page: FigurePage, width: int) -> None:
    """Lab 06 at a notebook's 700 px: "ambient + waypoint" tilted into its neighbours and the legend."""
    assert problems(figure_page.measure(three_data_planes(), width=width)) == []


# --- live figures as a JupyterLab view draws them -------------------------------------------------

REPLAY_JS = """async ([states, width, measureSrc]) => {
  const gd = document.getElementById('fig'), measure = eval(measureSrc), drawings = [];
  for (const [i, state] of states.entries()) {
    if (state._widget_layout !== undefined) {  // the comm's opening state: what a new view draws first
      Plotly.purge(gd);
      await Plotly.newPlot(gd, state._widget_data || [], {...state._widget_layout, width}, {staticPlot: true});
      drawings.push([i, measure(gd)]);
      continue;  // a view acts on the _py2js_* messages that follow, not on their opening values
    }
    const m = state._py2js_deleteTraces, a = state._py2js_addTraces, u = state._py2js_update;
    const r = state._py2js_restyle, l = state._py2js_relayout;
    if (!(m || a || u || r || l)) continue;  // edit ids, a _py2js_* reset to None
    if (m) await Plotly.deleteTraces(gd, m.delete_inds);  // (plotly.js refuses an empty list, as the view does)
    if (a) await Plotly.addTraces(gd, a.trace_data);
    if (u) await Plotly.update(gd, u.style_data || {}, {...(u.layout_data || {}), width}, u.style_traces);
    if (r) await Plotly.restyle(gd, r.restyle_data, r.restyle_traces);
    if (l) await Plotly.relayout(gd, {...l.relayout_data, width});
    drawings.push([i, measure(gd)]);
  }
  return {drawings, title: gd.layout.title.text};
}"""


class RecordingComm:
    """Stands in for the kernel's comm: keeps the opening state and every message, in order."""

    def __init__(self, data: dict[str, Any], **_: Any) -> None:
        self.comm_id = f"recorded-{id(self)}"
        self.kernel = object()
        self.messages: list[dict[str, Any]] = [data]

    def send(self, data: dict[str, Any], buffers: Any = None, **_: Any) -> None:
        assert not buffers, "a figure message carried binary buffers this replay does not rebuild"
        self.messages.append(data)

    def on_msg(self, callback: Any) -> None:
        pass

    def close(self, *_: Any, **__: Any) -> None:
        pass


def _window(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], tuple[float, float]]:
    return records, (syn.T0, syn.T0 + 30)


_ERRORS = [syn.error(syn.T0 + i, 503, "UF", "upstream connect error") for i in range(9)]
# each live figure's inputs, refresh after refresh: empty first, then data whose traces change in number
LIVE_STEPS: dict[str, tuple[Callable[[Any], go.Figure], list[Any]]] = {
    "latency": (lambda d: latency_figure(d[0]), [
        _window([]), _window(syn.canary_records(n=200, v2_share=0.0)),
        _window(syn.canary_records(n=200, v2_share=0.5) + _ERRORS),
        _window(syn.canary_records(n=100, v2_share=0.0))]),
    # (the codes figure shares the split's time layout)
    "split": (lambda d: split_over_time(d[0], 1.0, t_range=d[1]), [_window([]), _window(syn.canary_records(n=300))]),
    "config push": (config_push_timeline, [
        [], [{"t": syn.T0 + i, "pods": syn.pods(config_version=3 + i // 2)} for i in range(6)]]),
    "graph": (service_graph, [{"elements": {"nodes": [], "edges": []}}, syn.graph(error_v2=0.2)]),
}


def _recorded_live_figure(monkeypatch: pytest.MonkeyPatch, name: str) -> tuple[Any, list[RecordingComm], Any, Any]:
    """A live figure of ``LIVE_STEPS[name]`` fed its steps one refresh at a time, every comm it opens
    recording the messages it sends; (the live figure, the comms, its builder, its steps)."""
    import ipywidgets.widgets.widget as ipw

    from meshkit.viz.live import LiveFigure

    comms: list[RecordingComm] = []

    def create_comm(**kwargs: Any) -> RecordingComm:
        comms.append(RecordingComm(**kwargs))
        return comms[-1]

    monkeypatch.setattr(ipw.comm, "create_comm", create_comm)
    build, steps = LIVE_STEPS[name]
    inputs = iter(steps[1:])
    return LiveFigure(lambda: next(inputs), build, empty=steps[0]), comms, build, steps


@pytest.mark.parametrize("name", sorted(LIVE_STEPS))
def test_live_figure_views_never_draw_default_axes_or_overlaps(
    figure_page: FigurePage, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lab 01 and 04 in JupyterLab: a live figure's view showed plotly's default axes (−1..6 by −1..4, the
    two "−1" labels on top of each other) under a placeholder title. The widget's comm opened with an
    empty figure and the figure followed as an update the view never redrew from. Here every message a
    live figure sends, from the opening state through refreshes that change its traces, is replayed
    into plotly.js as the view applies it, and each intermediate drawing is measured."""
    from plotly.utils import PlotlyJSONEncoder

    live, comms, build, steps = _recorded_live_figure(monkeypatch, name)
    for _ in steps[1:]:
        assert live.refresh(), live.last_error
    figure_comm = next(c for c in comms if "_widget_layout" in c.messages[0]["state"])
    assert figure_comm.messages[0]["state"]["_widget_layout"].get("title"), "the comm opened on an empty figure"

    states = [json.loads(json.dumps(m["state"], cls=PlotlyJSONEncoder)) for m in figure_comm.messages]
    replay = figure_page.page.evaluate(REPLAY_JS, [states, 860, TEXT_BOXES_JS])
    for i, measured in replay["drawings"]:
        where = f"{name}, message {i} ({sorted(k for k, v in states[i].items() if v is not None)[:4]})"
        assert problems(measured) == [], where
        negative = [b["text"] for b in measured["boxes"] if b["text"].startswith(("−", "-"))]
        assert not negative, f"{where}: tick labels below zero {negative} (plotly's default axes)"
    assert len(replay["drawings"]) >= len(steps)
    final = replay["title"]
    assert final == build(steps[-1]).layout.title.text



WIDGET_VIEWS_JS = """async ([esm, states, final, width, loaded]) => {
  // plotly's own widget front end (its anywidget module) on a model that takes the comm's messages as
  // ipywidgets does: a message's attributes set together, then a change event per attribute that changed
  window.plotlyWidget = window.plotlyWidget || await import(
    URL.createObjectURL(new Blob([esm], {type: 'text/javascript'})));
  const model = {
    attrs: {}, handlers: {},
    get(k) { return this.attrs[k]; },
    set(k, v) { this.attrs[k] = v; },
    on(event, cb) { (this.handlers[event] = this.handlers[event] || []).push(cb); },
    off() {}, save_changes() {}, send() {},
    receive(state) {
      const changed = Object.keys(state).filter(k => JSON.stringify(this.attrs[k]) !== JSON.stringify(state[k]));
      Object.assign(this.attrs, state);
      for (const k of changed) for (const cb of this.handlers['change:' + k] || []) cb();
    },
  };
  const box = () => { const el = document.createElement('div'); el.style.width = width + 'px';
                      document.body.append(el); return el; };
  const drawn = async el => { for (let i = 0; i < 500 && !el.querySelector('.main-svg'); i++)
                                await new Promise(r => setTimeout(r, 10)); };
  // anywidget creates the model from the comm at once, but runs the module's initialize and render
  // only once the module has loaded (seconds for plotly's 5 MB bundle on a busy machine): the first
  // `loaded` messages reach the model's attributes before plotly's handlers are there
  const widget = plotlyWidget.default();
  const view = box();  // the cell's output
  for (const [i, state] of states.entries()) {
    if (i === loaded) { widget.initialize({model}); widget.render({model, el: view}); await drawn(view); }
    model.receive(state);
    await new Promise(r => setTimeout(r, 0));
  }
  if (loaded >= states.length) { widget.initialize({model}); widget.render({model, el: view}); await drawn(view); }
  await new Promise(r => setTimeout(r, 50));
  const reference = box();  // the figure Python holds, drawn directly
  await Plotly.newPlot(reference, final.data, {height: 360, ...final.layout});
  const texts = (el, sel) => [...el.querySelectorAll(sel)].map(t => t.textContent).sort();
  const seen = el => ({traces: el.querySelectorAll('.trace').length, points: el.querySelectorAll('.point').length,
                       notes: texts(el, '.annotation-text'), title: texts(el, '.gtitle'),
                       legend: texts(el, '.legendtext')});
  const result = {view: seen(view), python: seen(reference)};
  view.remove(); reference.remove();
  return result;
}"""


@pytest.mark.parametrize("name", sorted(LIVE_STEPS))
def test_live_view_gets_refreshes_made_while_the_kernel_applies_a_view_message(
    figure_page: FigurePage, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refresh lost on its way to the browser (one of two ways a live view kept a stale drawing; the
    other, seen in lab 04, is the test below). The kernel applies each view message (plotly acknowledges
    every update) on its main thread with trait notifications held; a refresh from the live thread in
    that window lost its `_py2js_*` message, folded into the reset that follows it. Here each refresh
    runs on a thread of its own while a view message is being applied, every message the widget sends
    goes through plotly's own widget front end into a view, and the view must show what Python holds:
    the same traces, bars and points, notes, title and legend."""
    import threading

    from plotly.utils import PlotlyJSONEncoder

    live, comms, build, steps = _recorded_live_figure(monkeypatch, name)
    widget = live.figure
    set_trait = widget.set_trait
    refreshes: list[threading.Thread] = []
    pending: list[bool] = []

    def set_trait_while_refreshing(trait: str, value: Any) -> None:
        # the refresh thread gets the GIL in the middle of the view message (its join is bounded: a
        # refresh kept waiting until the message is applied goes on after it)
        if pending:
            pending.clear()
            refreshes.append(threading.Thread(target=live.refresh))
            refreshes[-1].start()
            refreshes[-1].join(1.0)
        set_trait(trait, value)

    monkeypatch.setattr(widget, "set_trait", set_trait_while_refreshing)
    for _ in steps[1:]:  # an acknowledgement of an edit that is no longer the last (plotly ignores it)
        pending.append(True)
        widget.set_state({"_js2py_traceDeltas": {"trace_deltas": [], "trace_edit_id": -1}})
        refreshes[-1].join(30)
    assert live.updates == len(steps) - 1 and live.last_error is None, live.last_error
    figure_comm = next(c for c in comms if "_widget_layout" in c.messages[0]["state"])
    states = [json.loads(json.dumps(m["state"], cls=PlotlyJSONEncoder)) for m in figure_comm.messages
              if m.get("method", "update") == "update"]
    final = json.loads(build(steps[-1]).to_json())
    seen = figure_page.page.evaluate(WIDGET_VIEWS_JS, [states[0].pop("_esm"), states, final, 860, 1])
    assert seen["python"]["points"] or seen["python"]["traces"], f"{name}: the final figure draws nothing"
    assert seen["view"] == seen["python"], name


@pytest.mark.parametrize("name", sorted(LIVE_STEPS))
def test_live_view_drawn_once_the_widget_module_loaded_shows_the_last_refresh(
    figure_page: FigurePage, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lab 04 after Run All (seen again with the lock above): the live latency view said "waiting for
    traffic…" after 16 updates. The live thread starts before the figure's cell is shown, and anywidget
    runs plotly's front end only once its 5 MB module has loaded; the refreshes' `_py2js_*` messages
    that arrive before are set on the model and reset, never applied, and the view draws the state the
    comm opened with. Every refresh now also sends the whole figure as that state."""
    from plotly.utils import PlotlyJSONEncoder

    live, comms, build, steps = _recorded_live_figure(monkeypatch, name)
    for _ in steps[1:]:
        assert live.refresh(), live.last_error
    figure_comm = next(c for c in comms if "_widget_layout" in c.messages[0]["state"])
    states = [json.loads(json.dumps(m["state"], cls=PlotlyJSONEncoder)) for m in figure_comm.messages]
    final = json.loads(build(steps[-1]).to_json())
    esm = states[0].pop("_esm")
    seen = figure_page.page.evaluate(WIDGET_VIEWS_JS, [esm, states, final, 860, len(states)])
    assert seen["view"] == seen["python"], name
