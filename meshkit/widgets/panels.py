"""One ipywidgets panel per Istio policy the labs teach, each built on :class:`PolicyPanel`.

``mesh`` is the Mesh object (anything with ``.apply(yaml_text)``) or a plain function
``apply(yaml_text) -> lines``. Controls are keyed by the builder argument they feed, so a lab or a
test can drive a panel from code: ``panel.controls["v2"].value = 10; panel.apply()``.

Example::

    from meshkit.widgets.panels import weights_panel
    weights_panel(mesh, versions=("v1", "v2"))     # sliders, YAML preview, Apply
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as widgets

from meshkit.errors import InvalidConfig
from meshkit.widgets import builders as b
from meshkit.widgets import httproute
from meshkit.widgets.httproute import check_api
from meshkit.widgets.panel import UNSET, ApplyTarget, Choice, PolicyPanel
from meshkit.widgets.traffic import TrafficPanel, traffic_panel

__all__ = [
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
]

APPS = ("customer", "preference", "recommendation")
_STYLE = {"description_width": "15em"}  # "per try timeout s (0 = none)" whole (the browser test measures it)


def weights_panel(
    mesh: ApplyTarget,
    service: str = "recommendation",
    versions: Sequence[str] = ("v1", "v2"),
    weights: Mapping[str, int] | None = None,
    with_subsets: bool = False,
    api: str = "istio",
) -> PolicyPanel:
    """A weight slider per version (canary 90/10, 75/25...). ``with_subsets`` also sends the DR.

    ``api="gateway"`` generates an HTTPRoute over the per-version Services instead (no subsets).

    Example::

        p = weights_panel(mesh, weights={"v1": 90, "v2": 10})
        p.controls["v2"].value = 25
    """
    check_api(api)
    start = dict(weights or {v: 100 if i == 0 else 0 for i, v in enumerate(versions)})
    controls = {v: _slider(v, start.get(v, 0), 0, 100) for v in versions}

    def build(values: dict[str, Any]) -> list[b.Resource]:
        if api == "gateway":
            return [httproute.weights_route(service, {v: values[v] for v in versions})]
        docs = [b.subsets_rule(service, versions)] if with_subsets else []
        return [*docs, b.weights_rule(service, {v: values[v] for v in versions})]

    def describe(values: dict[str, Any]) -> str:
        total = sum(max(values[v], 0) for v in versions)
        if not total:
            return ""
        return "effective split: " + " · ".join(
            f"{v} {100 * max(values[v], 0) / total:.0f} %" for v in versions
        )

    return PolicyPanel(f"Traffic split for {service}", controls, build, mesh, describe)


def header_panel(
    mesh: ApplyTarget,
    service: str = "recommendation",
    versions: Sequence[str] = ("v1", "v2"),
    header: str = "baggage-user-agent",
    value: str = ".*Safari.*",
    api: str = "istio",
) -> PolicyPanel:
    """Route requests whose header matches to one version, the rest to another (Safari → v2).

    ``api="gateway"`` generates an HTTPRoute (exact or regex header matches) instead.
    """
    check_api(api)
    controls = {
        "header": widgets.Text(value=header, description="header", style=_STYLE, layout=_wide()),
        "match_type": widgets.ToggleButtons(
            options=b.MATCH_TYPES, value="regex", description="match", style=_STYLE
        ),
        "value": widgets.Text(value=value, description="value", style=_STYLE, layout=_wide()),
        "version": _choice("matching requests to", versions, versions[-1]),
        "default_version": _choice("other requests to", [("nowhere (404 NR)", UNSET), *versions], versions[0]),
    }

    def build(values: dict[str, Any]) -> list[b.Resource]:
        if api == "gateway":
            default = values["default_version"]
            return [httproute.header_route(service, values["header"], values["match_type"], values["value"],
                                           values["version"], None if default is UNSET else default)]
        return [
            b.header_rule(
                service,
                values["header"],
                values["match_type"],
                values["value"],
                values["version"],
                values["default_version"],
            )
        ]

    return PolicyPanel(f"Header routing for {service}", controls, build, mesh)


def mirror_panel(
    mesh: ApplyTarget, service: str = "recommendation", versions: Sequence[str] = ("v1", "v2")
) -> PolicyPanel:
    """Serve every request from one version and mirror a share of them to another (dark launch)."""
    controls = {
        "version": _choice("serve from", versions, versions[0]),
        "mirror_version": _choice("mirror to", versions, versions[-1]),
        "percent": _fslider("mirrored %", 100.0, 0.0, 100.0, 1.0),
    }

    def build(values: dict[str, Any]) -> list[b.Resource]:
        return [b.mirror_rule(service, values["version"], values["mirror_version"], values["percent"])]

    return PolicyPanel(f"Mirroring for {service}", controls, build, mesh)


def timeout_retry_panel(mesh: ApplyTarget, service: str = "recommendation") -> PolicyPanel:
    """Request timeout and retry policy; 0 means "not set" for the timeouts."""
    attempts = [("not set (Istio's default: 2 retries)", UNSET), ("0 (retries off)", 0)] + [
        (str(n), n) for n in range(1, 6)
    ]
    controls = {
        "timeout_s": _fslider("timeout s (0 = none)", 1.0, 0.0, 10.0, 0.1),
        "attempts": Choice(options=attempts, value=UNSET, description="retry attempts", style=_STYLE, layout=_wide()),
        "per_try_timeout_s": _fslider("per try timeout s (0 = none)", 0.0, 0.0, 5.0, 0.1),
        "retry_on": widgets.Combobox(
            value="",
            placeholder="e.g. 5xx or gateway-error,connect-failure",
            description="retry on",
            options=["5xx", "gateway-error", "connect-failure,refused-stream", "retriable-status-codes,503"],
            style=_STYLE,
            layout=_wide(),
            ensure_option=False,
        ),
    }

    def build(values: dict[str, Any]) -> list[b.Resource]:
        if values["attempts"] is None and (values["per_try_timeout_s"] or values["retry_on"].strip()):
            raise InvalidConfig(["retry attempts: choose a number of attempts to set a per-try timeout or "
                                 "retry on (Istio refuses a retry policy without attempts)"])
        return [
            b.timeout_retry_rule(
                service,
                timeout_s=values["timeout_s"] or None,
                attempts=values["attempts"],
                per_try_timeout_s=values["per_try_timeout_s"] or None,
                retry_on=values["retry_on"].strip() or None,
            )
        ]

    def describe(values: dict[str, Any]) -> str:
        if values["attempts"] == 0 and (values["per_try_timeout_s"] or values["retry_on"].strip()):
            return "retries off: the per-try timeout and retry on are not sent (Istio refuses them with 0 attempts)"
        return ""

    return PolicyPanel(f"Timeout and retries for {service}", controls, build, mesh, describe)


def pool_panel(
    mesh: ApplyTarget, service: str = "recommendation", versions: Sequence[str] = ("v1", "v2")
) -> PolicyPanel:
    """Circuit breaker (connection pool) and pool ejection (outlier detection), the tutorial's values."""
    controls = {
        "subset": _choice("apply to", [("the whole service", UNSET), *versions], UNSET),
        "pool": widgets.Checkbox(value=True, description="connection pool (circuit breaker)", indent=False),
        "max_connections": _int("tcp.maxConnections", 1, 1, 10_000),
        "pending": _int("http1MaxPendingRequests", 1, 1, 10_000),
        "per_connection": _int("maxRequestsPerConnection", 1, 0, 10_000),
        "outlier": widgets.Checkbox(
            value=True, description="outlier detection (pool ejection)", indent=False
        ),
        "consecutive_5xx": _int("consecutive5xxErrors", 1, 0, 1000),
        "interval_s": _float("interval s", 1.0, 0.001, 3600.0),
        "base_ejection_s": _float("baseEjectionTime s", 180.0, 0.001, 86_400.0),
        "max_ejection_percent": _slider("maxEjectionPercent", 100, 0, 100),
    }

    def build(values: dict[str, Any]) -> list[b.Resource]:
        pool = values["pool"]
        outlier = values["outlier"]
        return [
            b.connection_pool_rule(
                service,
                subset=values["subset"],
                max_connections=values["max_connections"] if pool else None,
                pending=values["pending"] if pool else None,
                per_connection=values["per_connection"] if pool else None,
                consecutive_5xx=values["consecutive_5xx"] if outlier else None,
                interval_s=values["interval_s"] if outlier else None,
                base_ejection_s=values["base_ejection_s"] if outlier else None,
                max_ejection_percent=values["max_ejection_percent"] if outlier else None,
                versions=versions,
            )
        ]

    return PolicyPanel(f"Circuit breaker for {service}", controls, build, mesh)


def fault_panel(
    mesh: ApplyTarget, service: str = "recommendation", versions: Sequence[str] = ("v1", "v2")
) -> PolicyPanel:
    """Inject aborts (an HTTP status for a share of requests) and/or fixed delays."""
    controls = {
        "abort": widgets.Checkbox(value=True, description="abort", indent=False),
        "abort_status": _int("HTTP status", 503, 200, 599),
        "abort_percent": _fslider("aborted %", 50.0, 0.0, 100.0, 1.0),
        "delay": widgets.Checkbox(value=False, description="delay", indent=False),
        "delay_s": _fslider("delay s", 7.0, 0.1, 30.0, 0.1),  # Istio refuses a delay under 1 ms
        "delay_percent": _fslider("delayed %", 50.0, 0.0, 100.0, 1.0),
        "route_version": _choice("route to", [("the whole service", UNSET), *versions], UNSET),
    }

    def build(values: dict[str, Any]) -> list[b.Resource]:
        abort, delay = values["abort"], values["delay"]
        return [
            b.fault_rule(
                service,
                abort_status=values["abort_status"] if abort else None,
                abort_percent=values["abort_percent"] if abort else None,
                delay_s=values["delay_s"] if delay else None,
                delay_percent=values["delay_percent"] if delay else None,
                route_version=values["route_version"],
            )
        ]

    return PolicyPanel(f"Fault injection for {service}", controls, build, mesh)


def lb_panel(
    mesh: ApplyTarget, service: str = "recommendation", versions: Sequence[str] = ("v1", "v2")
) -> PolicyPanel:
    """Pick the load-balancing algorithm; keeping the subsets keeps version routes working."""
    controls = {
        "simple": widgets.ToggleButtons(
            options=b.LB_POLICIES, value="RANDOM", description="algorithm", style=_STYLE
        ),
        "keep_subsets": widgets.Checkbox(
            value=True, description=f"keep subsets {', '.join(versions)}", indent=False
        ),
    }

    def build(values: dict[str, Any]) -> list[b.Resource]:
        return [b.load_balancer_rule(service, values["simple"], versions if values["keep_subsets"] else ())]

    return PolicyPanel(f"Load balancing for {service}", controls, build, mesh)


def mtls_panel(
    mesh: ApplyTarget, namespace: str = b.NAMESPACE, workloads: Sequence[str] = APPS
) -> PolicyPanel:
    """PeerAuthentication mode for the namespace or one app: DISABLE, PERMISSIVE or STRICT."""
    controls = {
        "mode": widgets.ToggleButtons(
            options=("DISABLE", "PERMISSIVE", "STRICT"),
            value="PERMISSIVE",
            description="mTLS mode",
            style=_STYLE,
        ),
        "workload": _choice("for", [(f"namespace {namespace}", UNSET), *workloads], UNSET),
    }

    def build(values: dict[str, Any]) -> list[b.Resource]:
        return [b.mtls_rule(values["mode"], namespace, values["workload"])]

    return PolicyPanel("Mutual TLS", controls, build, mesh)


def authz_panel(mesh: ApplyTarget, apps: Sequence[str] = APPS, namespace: str = b.NAMESPACE) -> PolicyPanel:
    """An AuthorizationPolicy for one app: who (principals), what (methods, paths), JWT claims.

    Lists are comma-separated; claims are ``key=value`` pairs (``role=customer``).
    """
    controls = {
        "deny_all": widgets.Checkbox(
            value=False, description="also send deny-all for the namespace", indent=False
        ),
        "app": _choice("app", list(apps), apps[0]),
        "action": widgets.ToggleButtons(
            options=b.AUTHZ_ACTIONS[:2], value="ALLOW", description="action", style=_STYLE
        ),
        "name": widgets.Text(
            value="",
            placeholder="default: allow-<app> / deny-<app>",
            description="name",
            style=_STYLE,
            layout=_wide(),
        ),
        "principals": widgets.Text(
            value="",
            placeholder="cluster.local/ns/tutorial/sa/customer",
            description="from principals",
            style=_STYLE,
            layout=_wide(),
        ),
        "methods": widgets.SelectMultiple(
            options=("GET", "POST", "PUT", "DELETE"),
            value=("GET",),
            description="methods",
            style=_STYLE,
            rows=4,
        ),
        "paths": widgets.Text(
            value="", placeholder="/, /health/*", description="paths", style=_STYLE, layout=_wide()
        ),
        "claims": widgets.Text(
            value="", placeholder="role=customer", description="JWT claims", style=_STYLE, layout=_wide()
        ),
    }

    def build(values: dict[str, Any]) -> list[b.Resource]:
        app, action = values["app"], values["action"]
        name = values["name"].strip() or f"{action.lower()}-{app}"
        policy = b.authz_rule(
            name,
            app,
            action,
            principals=_split(values["principals"]),
            methods=list(values["methods"]),
            paths=_split(values["paths"]),
            claims=_claims(values["claims"]),
            namespace=namespace,
        )
        return [b.deny_all(namespace), policy] if values["deny_all"] else [policy]

    return PolicyPanel("Authorization policy", controls, build, mesh)


def rate_limit_panel(
    mesh: ApplyTarget, apps: Sequence[str] = APPS, app: str = "recommendation"
) -> PolicyPanel:
    """Envoy's local rate limit on an app's sidecar: a token bucket, 429 (flag RL) when it is empty."""
    controls = {
        "app": _choice("app", list(apps), app if app in apps else apps[0]),
        "max_tokens": _slider("max tokens (burst)", 5, 1, 100),
        "tokens_per_fill": _slider("tokens per fill", 5, 1, 100),
        "fill_interval_s": _fslider("fill interval s", 60.0, 0.1, 300.0, 0.1),
    }

    def build(values: dict[str, Any]) -> list[b.Resource]:
        return [
            b.rate_limit_rule(
                values["app"], values["max_tokens"], values["tokens_per_fill"], values["fill_interval_s"]
            )
        ]

    def describe(values: dict[str, Any]) -> str:
        rps = values["tokens_per_fill"] / values["fill_interval_s"]
        return (
            f"each {values['app']} pod lets through about {rps:.2f} requests/s "
            f"({values['tokens_per_fill']} per {values['fill_interval_s']:g} s), bursts up to "
            f"{values['max_tokens']}"
        )

    return PolicyPanel("Local rate limit", controls, build, mesh, describe)


def _wide() -> widgets.Layout:
    return widgets.Layout(width="38em")


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _claims(text: str) -> dict[str, str] | None:
    pairs = _split(text)
    bad = [p for p in pairs if "=" not in p or not p.split("=", 1)[0].strip()]
    if bad:
        raise InvalidConfig(
            [f"authz_panel: claim {p!r} must look like key=value (e.g. role=customer)" for p in bad]
        )
    claims = {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in pairs)}
    return claims or None


def _slider(label: str, value: int, lo: int, hi: int) -> widgets.IntSlider:
    return widgets.IntSlider(value=value, min=lo, max=hi, description=label, style=_STYLE, layout=_wide())


def _fslider(label: str, value: float, lo: float, hi: float, step: float) -> widgets.FloatSlider:
    return widgets.FloatSlider(
        value=value, min=lo, max=hi, step=step, description=label, style=_STYLE, layout=_wide()
    )


def _int(label: str, value: int, lo: int, hi: int) -> widgets.BoundedIntText:
    return widgets.BoundedIntText(value=value, min=lo, max=hi, description=label, style=_STYLE)


def _float(label: str, value: float, lo: float, hi: float) -> widgets.BoundedFloatText:
    return widgets.BoundedFloatText(value=value, min=lo, max=hi, description=label, style=_STYLE)


def _choice(label: str, options: Sequence[Any], value: Any) -> Choice:
    # every option as (label, value): ipywidgets reads a list mixing pairs and plain values as plain values
    pairs = [o if isinstance(o, tuple) else (str(o), o) for o in options]
    return Choice(options=pairs, value=value, description=label, style=_STYLE)
