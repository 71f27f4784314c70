"""What the builders produce is what meshkit's own validation (the admission webhook) accepts."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from meshkit.resources import parse_text, validate_documents
from meshkit.resources.envoyfilter import IMPLEMENTATION_WARNING
from meshkit.widgets import builders as b
from meshkit.widgets.panel import PolicyPanel
from meshkit.widgets.panels import timeout_retry_panel

BUILT = [
    b.subsets_rule(),
    b.subsets_rule("recommendation", ("v1", "v2", "v3")),
    b.weights_rule("recommendation", {"v1": 90, "v2": 10}),
    b.header_rule(),
    b.header_rule(match_type="prefix", value="Mozilla", default_version=None),
    b.mirror_rule(percent=50.0),
    b.timeout_retry_rule(timeout_s=1, attempts=3, per_try_timeout_s=0.5, retry_on="5xx"),
    b.timeout_retry_rule(attempts=0),
    b.connection_pool_rule(
        max_connections=1,
        pending=1,
        per_connection=1,
        consecutive_5xx=1,
        interval_s=1,
        base_ejection_s=180,
        max_ejection_percent=100,
    ),
    b.connection_pool_rule(subset="v2", max_connections=1, consecutive_5xx=1, interval_s=0.5),
    b.fault_rule(abort_status=503, abort_percent=50, delay_s=7, delay_percent=50, route_version="v1"),
    b.load_balancer_rule("recommendation", "RANDOM", ("v1", "v2")),
    b.mtls_rule("STRICT"),
    b.mtls_rule("DISABLE", workload="preference"),
    b.authz_rule(
        "allow-preference",
        "preference",
        principals=["cluster.local/ns/tutorial/sa/customer"],
        methods=["GET"],
    ),
    b.authz_rule("require-role", "customer", claims={"role": "customer"}),
    b.deny_all(),
    b.rate_limit_rule("recommendation", max_tokens=5, tokens_per_fill=5, fill_interval_s=60),
]


@pytest.mark.parametrize("resource", BUILT, ids=lambda r: f"{r['kind']}-{r['metadata']['name']}")
def test_every_builder_output_passes_validation_cleanly(resource: dict[str, Any]) -> None:
    report = validate_documents(parse_text(b.to_yaml(resource)))
    assert [p.format() for p in report.errors] == []
    # Istio warns on every EnvoyFilter (its fields are Envoy's internals); nothing else may warn
    assert [p.message for p in report.warnings] == (
        [IMPLEMENTATION_WARNING] if resource["kind"] == "EnvoyFilter" else []
    )


def test_a_negative_weight_is_left_for_the_mesh_to_reject_with_its_message() -> None:
    text = b.to_yaml(b.weights_rule("recommendation", {"v1": 105, "v2": -5}))
    report = validate_documents(parse_text(text))
    assert len(report.errors) == 1
    assert report.errors[0].format().endswith("spec.http[0].route[1].weight: weight -5 < 0")


def test_a_panel_backed_by_real_validation_shows_the_webhook_message_inline() -> None:
    def apply(text: str) -> list[str]:
        report = validate_documents(parse_text(text))
        report.raise_for_errors()
        return [f"{r['kind'].lower()}.networking.istio.io/{r['metadata']['name']} configured" for r in report.resources]

    panel = PolicyPanel("weights", {}, lambda _: [b.weights_rule("recommendation", {"v1": 105, "v2": -5})], apply)
    assert panel.apply() == []
    (message,) = panel.messages
    assert message.startswith("error: ")
    assert message.endswith("VirtualService tutorial/recommendation: spec.http[0].route[1].weight: weight -5 < 0")
    assert "#d62728" in panel.output.value


def test_retries_off_drops_the_fields_istio_refuses_with_zero_attempts() -> None:
    panel = timeout_retry_panel(lambda _: [])
    panel.controls["attempts"].value = 0
    panel.controls["per_try_timeout_s"].value = 0.5
    panel.controls["retry_on"].value = "5xx"
    assert docs_of(panel.yaml)[0]["spec"]["http"][0]["retries"] == {"attempts": 0}
    assert "retries off" in panel.note.value
    assert validate_documents(parse_text(panel.yaml)).errors == []


def docs_of(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]
