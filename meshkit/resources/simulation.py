"""What the local mesh simulates of each kind, and the warning apply and analyze give for the rest.

Istio accepts every valid field; the local mesh stores them all (the kind backend sends them to a real
cluster) but runs only part of them. Each unsimulated kind or field gets one warning naming it.

Example::

    >>> not_simulated("ProxyConfig", {"concurrency": 2})[0][1].startswith("ProxyConfig is accepted and stored")
    True
    >>> [p for p, _ in not_simulated("Telemetry", {"tracing": [{"customTags": {"a": {}}}]})]
    [('spec', 'tracing', 0, 'customTags')]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshkit.resources.model import Path

_KINDS = {
    "WorkloadGroup": "auto-registration of VMs from a template",
    "ProxyConfig": "per-workload proxy settings (concurrency, image, environment)",
    "WasmPlugin": "WebAssembly filters in the proxy",
    "TCPRoute": "Gateway API TCP routing (its Gateways have HTTP listeners only)",
    "TLSRoute": "Gateway API TLS passthrough routing (its Gateways have HTTP listeners only)",
}
#: Telemetry fields the local proxies honour, per section
_TELEMETRY_HONOURED = {
    "tracing": ("randomSamplingPercentage", "disableSpanReporting"),
    "accessLogging": ("disabled",),
    "metrics": ("overrides",),
}
_SIDECAR_HONOURED = ("workloadSelector", "egress", "outboundTrafficPolicy")
SUFFIX = "accepted and stored; the local mesh does not simulate it (it takes effect on a real cluster)"


def not_simulated(kind: str, spec: Mapping[str, Any]) -> list[tuple[Path, str]]:
    """``(field path, message)`` for each part of a valid resource the local mesh does not run."""
    if kind in _KINDS:
        return [(("kind",), f"{kind} is accepted and stored; the local mesh does not simulate {_KINDS[kind]}")]
    out: list[tuple[Path, str]] = []
    if kind == "Telemetry":
        for section, honoured in _TELEMETRY_HONOURED.items():
            for i, item in enumerate(spec.get(section) or []):
                for key in item if isinstance(item, Mapping) else ():
                    if key not in honoured and key != "providers":
                        out.append((("spec", section, i, key), f"{section}[].{key} is {SUFFIX}"))
                    elif key == "providers":
                        out.append(
                            (
                                ("spec", section, i, key),
                                f"{section}[].providers is {SUFFIX}; the local mesh has one collector",
                            )
                        )
        for key in ("targetRef", "targetRefs"):
            if key in spec:
                out.append((("spec", key), f"{key} (gateway or waypoint binding) is {SUFFIX}"))
    elif kind == "Sidecar":
        for key in spec:
            if key not in _SIDECAR_HONOURED:
                out.append((("spec", key), f"Sidecar {key} is {SUFFIX}"))
        for i, listener in enumerate(spec.get("egress") or []):
            for key in ("port", "bind", "captureMode"):
                if isinstance(listener, Mapping) and key in listener:
                    out.append((("spec", "egress", i, key), f"Sidecar egress {key} is {SUFFIX}"))
    elif kind == "WorkloadEntry":
        out.append(
            (
                ("kind",),
                "WorkloadEntry is accepted and stored; the local mesh routes to it when a ServiceEntry's "
                "workloadSelector selects its labels and its address is a loopback address",
            )
        )
    return out
