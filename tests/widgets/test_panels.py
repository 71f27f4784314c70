"""Policy panels and the traffic panel, driven from code as a lab (or a learner's clicks) would."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import pytest
import yaml

from meshkit.backends.base import ApplyResult
from meshkit.errors import InvalidConfig, MeshNotRunning
from meshkit.widgets import (
    authz_panel,
    fault_panel,
    header_panel,
    lb_panel,
    mirror_panel,
    mtls_panel,
    pool_panel,
    rate_limit_panel,
    timeout_retry_panel,
    traffic_panel,
    weights_panel,
)
from meshkit.widgets.panel import ERROR_COLOR, PolicyPanel
from tests.viz import synthetic as syn


class FakeApply:
    """apply(yaml_text) -> lines, recording what it was sent; ``error`` makes it raise instead."""

    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[str] = []
        self.error = error

    def __call__(self, text: str) -> list[str]:
        self.sent.append(text)
        if self.error is not None:
            raise self.error
        return [
            f"{d['kind'].lower()}.networking.istio.io/{d['metadata']['name']} configured"
            for d in yaml.safe_load_all(text)
        ]


class FakeMesh:
    """The Mesh duck type: apply() returns ApplyResult objects whose str() is the kubectl line."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def apply(self, text: str) -> list[ApplyResult]:
        self.sent.append(text)
        return [
            ApplyResult(
                kind=d["kind"],
                group="networking.istio.io",
                name=d["metadata"]["name"],
                action="created",
                warnings=("IST0101 host not found",) if d["kind"] == "VirtualService" else (),
            )
            for d in yaml.safe_load_all(text)
        ]


def docs(panel: PolicyPanel) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(panel.yaml))


def route(panel: PolicyPanel) -> list[dict[str, Any]]:
    return docs(panel)[-1]["spec"]["http"][0]["route"]


# --- the panel mechanics (weights panel) --------------------------------------------------------


def test_slider_changes_regenerate_the_yaml() -> None:
    panel = weights_panel(FakeApply(), versions=("v1", "v2"))
    assert isinstance(panel.widget, widgets.VBox)
    assert [(r["destination"]["subset"], r["weight"]) for r in route(panel)] == [("version-v1", 100)]
    panel.controls["v1"].value = 90
    panel.controls["v2"].value = 10
    assert [(r["destination"]["subset"], r["weight"]) for r in route(panel)] == [
        ("version-v1", 90),
        ("version-v2", 10),
    ]
    assert "weight: 10" in panel.preview.value
    assert panel.note.value == "effective split: v1 90 % · v2 10 %"
    panel.controls["v1"].value = 30  # relative weights: 30 and 10 make 75/25
    assert panel.note.value == "effective split: v1 75 % · v2 25 %"


def test_apply_sends_the_yaml_and_shows_the_lines() -> None:
    fake = FakeApply()
    panel = weights_panel(fake, weights={"v1": 75, "v2": 25})
    lines = panel.apply()
    assert fake.sent == [panel.yaml]
    assert lines == ["virtualservice.networking.istio.io/recommendation configured"]
    assert panel.ok is True
    assert "✓ virtualservice.networking.istio.io/recommendation configured" in panel.output.value


def test_validation_errors_show_inline_in_red_without_a_traceback() -> None:
    problem = (
        "error: VirtualService tutorial/recommendation (-:1): spec.http[0].route[1].weight: weight -5 < 0"
    )
    panel = weights_panel(FakeApply(InvalidConfig([problem, "error: second problem"])))
    assert panel.apply() == []
    assert panel.ok is False
    assert panel.messages == [problem, "error: second problem"]
    out = panel.output.value
    assert out.count(f"color:{ERROR_COLOR}") == 2
    assert "weight -5 &lt; 0" in out  # escaped, shown verbatim
    assert "Traceback" not in out


def test_other_failures_are_one_red_line_too() -> None:
    panel = weights_panel(FakeApply(MeshNotRunning("/tmp/m")))
    panel.apply()
    assert panel.messages == ["no mesh is running (MESHKIT_HOME=/tmp/m); start one with: meshkit up"]
    panel = weights_panel(FakeApply(RuntimeError("connection reset")))
    panel.apply()
    assert panel.messages == ["RuntimeError: connection reset"]
    assert ERROR_COLOR in panel.output.value


def test_the_button_applies_and_mesh_objects_work_with_their_warnings() -> None:
    mesh = FakeMesh()
    panel = weights_panel(mesh, with_subsets=True)
    assert [d["kind"] for d in docs(panel)] == ["DestinationRule", "VirtualService"]
    panel.button.click()
    assert mesh.sent == [panel.yaml]
    assert panel.messages[:2] == [
        "destinationrule.networking.istio.io/recommendation created",
        "virtualservice.networking.istio.io/recommendation created",
    ]
    assert (
        "⚠ virtualservice.networking.istio.io/recommendation created: IST0101 host not found"
        in panel.output.value
    )


def test_controls_that_cannot_build_disable_apply_and_say_why() -> None:
    fake = FakeApply()
    panel = weights_panel(fake)
    panel.controls["v1"].value = 0
    assert panel.yaml == ""
    assert panel.button.disabled
    assert "every weight is 0" in panel.preview.value
    assert panel.apply() == [] and fake.sent == []
    assert "every weight is 0" in panel.output.value
    panel.controls["v2"].value = 100
    assert not panel.button.disabled and route(panel)[0]["destination"]["subset"] == "version-v2"


def test_a_target_without_apply_is_refused_clearly() -> None:
    with pytest.raises(TypeError, match=r"expected a Mesh \(with .apply\) or a function apply\(yaml_text\)"):
        weights_panel(42)


# --- each policy panel --------------------------------------------------------------------------


def test_header_panel() -> None:
    panel = header_panel(FakeApply())
    http = docs(panel)[0]["spec"]["http"]
    assert http[0]["match"] == [{"headers": {"baggage-user-agent": {"regex": ".*Safari.*"}}}]
    panel.controls["value"].value = ".*Firefox.*"
    panel.controls["default_version"].value = None
    http = docs(panel)[0]["spec"]["http"]
    assert http == [
        {
            "match": [{"headers": {"baggage-user-agent": {"regex": ".*Firefox.*"}}}],
            "route": [{"destination": {"host": "recommendation", "subset": "version-v2"}}],
        }
    ]


def test_mirror_panel() -> None:
    panel = mirror_panel(FakeApply())
    panel.controls["percent"].value = 20.0
    rule = docs(panel)[0]["spec"]["http"][0]
    assert rule["mirror"] == {"host": "recommendation", "subset": "version-v2"}
    assert rule["mirrorPercentage"] == {"value": 20.0}


def test_timeout_retry_panel() -> None:
    panel = timeout_retry_panel(FakeApply())
    assert docs(panel)[0]["spec"]["http"][0] == {
        "route": [{"destination": {"host": "recommendation"}}],
        "timeout": "1s",
    }
    panel.controls["timeout_s"].value = 0.0
    panel.controls["attempts"].value = 3
    panel.controls["per_try_timeout_s"].value = 0.5
    panel.controls["retry_on"].value = "5xx"
    assert docs(panel)[0]["spec"]["http"][0] == {
        "route": [{"destination": {"host": "recommendation"}}],
        "retries": {"attempts": 3, "perTryTimeout": "0.5s", "retryOn": "5xx"},
    }


def test_pool_panel_defaults_to_the_tutorials_circuit_breaker() -> None:
    panel = pool_panel(FakeApply())
    spec = docs(panel)[0]["spec"]
    assert spec["trafficPolicy"] == {
        "connectionPool": {
            "tcp": {"maxConnections": 1},
            "http": {"http1MaxPendingRequests": 1, "maxRequestsPerConnection": 1},
        },
        "outlierDetection": {
            "consecutive5xxErrors": 1,
            "interval": "1s",
            "baseEjectionTime": "180s",
            "maxEjectionPercent": 100,
        },
    }
    panel.controls["outlier"].value = False
    panel.controls["subset"].value = "v2"
    panel.controls["max_connections"].value = 3
    spec = docs(panel)[0]["spec"]
    assert "trafficPolicy" not in spec
    assert spec["subsets"][1]["trafficPolicy"] == {
        "connectionPool": {
            "tcp": {"maxConnections": 3},
            "http": {"http1MaxPendingRequests": 1, "maxRequestsPerConnection": 1},
        }
    }


def test_fault_panel() -> None:
    panel = fault_panel(FakeApply())
    assert docs(panel)[0]["spec"]["http"][0]["fault"] == {
        "abort": {"httpStatus": 503, "percentage": {"value": 50.0}}
    }
    panel.controls["abort"].value = False
    panel.controls["delay"].value = True
    panel.controls["delay_s"].value = 3.0
    assert docs(panel)[0]["spec"]["http"][0]["fault"] == {
        "delay": {"fixedDelay": "3s", "percentage": {"value": 50.0}}
    }
    panel.controls["delay"].value = False
    assert "fault" not in docs(panel)[0]["spec"]["http"][0]


def test_lb_panel() -> None:
    panel = lb_panel(FakeApply())
    panel.controls["simple"].value = "ROUND_ROBIN"
    spec = docs(panel)[0]["spec"]
    assert spec["trafficPolicy"] == {"loadBalancer": {"simple": "ROUND_ROBIN"}}
    assert [s["name"] for s in spec["subsets"]] == ["version-v1", "version-v2"]
    panel.controls["keep_subsets"].value = False
    assert "subsets" not in docs(panel)[0]["spec"]


def test_mtls_panel_toggles_the_mode() -> None:
    panel = mtls_panel(FakeApply())
    assert isinstance(panel.controls["mode"], widgets.ToggleButtons)
    assert list(panel.controls["mode"].options) == ["DISABLE", "PERMISSIVE", "STRICT"]
    panel.controls["mode"].value = "STRICT"
    assert docs(panel)[0]["spec"] == {"mtls": {"mode": "STRICT"}}
    panel.controls["workload"].value = "preference"
    assert docs(panel)[0]["metadata"]["name"] == "preference"


def test_authz_panel_builds_the_tutorials_chain_and_reports_bad_claims() -> None:
    panel = authz_panel(FakeApply())
    panel.controls["deny_all"].value = True
    panel.controls["app"].value = "preference"
    panel.controls["principals"].value = "cluster.local/ns/tutorial/sa/customer"
    deny, allow = docs(panel)
    assert deny["metadata"]["name"] == "deny-all" and deny["spec"] == {}
    assert allow["metadata"]["name"] == "allow-preference"
    assert allow["spec"]["rules"] == [
        {
            "from": [{"source": {"principals": ["cluster.local/ns/tutorial/sa/customer"]}}],
            "to": [{"operation": {"methods": ["GET"]}}],
        }
    ]
    panel.controls["claims"].value = "role=customer"
    assert docs(panel)[1]["spec"]["rules"][0]["when"] == [
        {"key": "request.auth.claims[role]", "values": ["customer"]}
    ]
    panel.controls["claims"].value = "role"
    assert panel.yaml == "" and "claim 'role' must look like key=value" in panel.preview.value


def test_rate_limit_panel() -> None:
    panel = rate_limit_panel(FakeApply())
    panel.controls["max_tokens"].value = 3
    panel.controls["tokens_per_fill"].value = 1
    panel.controls["fill_interval_s"].value = 2.0
    typed = docs(panel)[0]["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["value"]
    assert typed["token_bucket"] == {"max_tokens": 3, "tokens_per_fill": 1, "fill_interval": "2s"}
    assert panel.note.value == (
        "each recommendation pod lets through about 0.50 requests/s (1 per 2 s), bursts up to 3"
    )


# --- traffic panel ------------------------------------------------------------------------------


class FakeRunner:
    def __init__(self, rate: float, concurrency: int, headers: dict[str, str] | None) -> None:
        self.rate, self.concurrency, self.headers = rate, concurrency, headers
        self.running = False
        self.log: list[str] = []
        self._records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def start(self) -> FakeRunner:
        self.running = True
        self.log.append("start")
        with self._lock:
            self._records = syn.canary_records(n=100, rate=10.0)
        return self

    def stop(self) -> None:
        self.running = False
        self.log.append("stop")

    def set_rate(self, rps: float) -> None:
        self.log.append(f"rate {rps:g}")

    def set_concurrency(self, n: int) -> None:
        self.log.append(f"concurrency {n}")

    def records(self, since: float = 0.0) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self._records if r["t"] >= since]


class TrafficMesh:
    def __init__(self, error: Exception | None = None) -> None:
        self.runners: list[FakeRunner] = []
        self.error = error

    def traffic(
        self, rate: float = 10.0, concurrency: int = 2, headers: dict[str, str] | None = None
    ) -> FakeRunner:
        if self.error:
            raise self.error
        self.runners.append(FakeRunner(rate, concurrency, headers))
        return self.runners[-1]


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.01)
    return condition()


def test_traffic_panel_drives_the_runner_and_the_live_split() -> None:
    mesh = TrafficMesh()
    panel = traffic_panel(mesh, rate=10, concurrency=2, interval_s=0.02, now=lambda: syn.T0 + 10.0)
    assert mesh.runners == [] and not panel.live.running
    panel.toggle.value = True
    try:
        (runner,) = mesh.runners
        assert (runner.rate, runner.concurrency, runner.headers) == (10, 2, None)
        assert runner.log == ["start"] and panel.running
        assert panel.toggle.description == "Stop traffic"
        assert "running: 10 requests/s, 2 concurrent" in panel.status.value
        assert wait_until(lambda: sum(sum(t.y) for t in panel.live.figure.data) == 100)
        panel.rate.value = 20.0
        panel.concurrency.value = 4
        assert runner.log == ["start", "rate 20", "concurrency 4"]
        panel.user_agent.value = "Safari"  # headers are per runner: a new one starts
        assert runner.log[-1] == "stop"
        assert mesh.runners[-1].headers == {"user-agent": "Safari"}
        assert (mesh.runners[-1].rate, mesh.runners[-1].concurrency) == (20.0, 4)
    finally:
        panel.toggle.value = False
    assert mesh.runners[-1].log[-1] == "stop"
    assert not panel.live.running
    assert panel.toggle.description == "Start traffic"
    assert "stopped · 100 requests recorded" in panel.status.value


def test_traffic_panel_reports_a_mesh_that_is_not_running() -> None:
    panel = traffic_panel(TrafficMesh(error=MeshNotRunning()))
    panel.toggle.value = True
    assert panel.toggle.value is False
    assert "no mesh is running; start one with: meshkit up" in panel.status.value
    assert not panel.live.running


def test_traffic_panel_needs_a_mesh_with_traffic() -> None:
    with pytest.raises(TypeError, match=r"expected a Mesh with .traffic\(...\)"):
        traffic_panel(object())
