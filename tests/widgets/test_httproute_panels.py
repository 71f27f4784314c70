"""The traffic panels in Gateway API form (api="gateway"): HTTPRoutes that validate and route like the files."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from meshkit.errors import InvalidConfig
from meshkit.resources import parse_text, validate_documents
from meshkit.widgets import header_panel, weights_panel
from meshkit.widgets.httproute import header_route, weights_route


class FakeApply:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, text: str) -> list[str]:
        self.sent.append(text)
        return [f"{d['kind'].lower()}.gateway.networking.k8s.io/{d['metadata']['name']} configured"
                for d in yaml.safe_load_all(text)]


def only(text: str) -> dict[str, Any]:
    (doc,) = list(yaml.safe_load_all(text))
    report = validate_documents(parse_text(text, "panel.yaml"))
    assert report.errors == []
    return dict(doc)


def test_weights_panel_in_gateway_form_sends_one_httproute_over_version_services() -> None:
    fake = FakeApply()
    panel = weights_panel(fake, weights={"v1": 90, "v2": 10}, with_subsets=True, api="gateway")
    route = only(panel.yaml)
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1" and route["kind"] == "HTTPRoute"
    assert route["spec"]["parentRefs"] == [{"group": "", "kind": "Service", "name": "recommendation", "port": 8080}]
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"name": "recommendation-v1", "port": 8080, "weight": 90},
        {"name": "recommendation-v2", "port": 8080, "weight": 10}]
    panel.controls["v1"].value, panel.controls["v2"].value = 75, 25
    assert panel.apply() == ["httproute.gateway.networking.k8s.io/recommendation configured"]
    assert yaml.safe_load(fake.sent[-1])["spec"]["rules"][0]["backendRefs"][1]["weight"] == 25
    panel.controls["v2"].value = 0
    assert only(panel.yaml)["spec"]["rules"][0]["backendRefs"] == [{"name": "recommendation-v1", "port": 8080}]


def test_header_panel_in_gateway_form() -> None:
    panel = header_panel(FakeApply(), api="gateway")
    rules = only(panel.yaml)["spec"]["rules"]
    assert rules[0]["matches"] == [{"headers": [{"name": "baggage-user-agent", "type": "RegularExpression",
                                                 "value": ".*Safari.*"}]}]
    assert [r["backendRefs"][0]["name"] for r in rules] == ["recommendation-v2", "recommendation-v1"]


def test_gateway_form_refuses_what_it_cannot_say() -> None:
    with pytest.raises(InvalidConfig, match='api must be "istio" or "gateway"'):
        weights_panel(FakeApply(), api="kubernetes")
    with pytest.raises(InvalidConfig, match="every weight is 0"):
        weights_route("recommendation", {"v1": 0, "v2": 0})
    with pytest.raises(InvalidConfig, match='matches headers "exact" or "regex"'):
        header_route("recommendation", "x", "prefix", "a", "v2", "v1")
