"""Small builders shared by the resources tests."""

from __future__ import annotations

from typing import Any

import yaml

from meshkit.resources import ValidationReport, parse_text, validate_documents


def doc(kind: str, spec: Any, *, name: str = "recommendation", api: str = "", namespace: str | None = None) -> str:
    groups = {
        "VirtualService": "networking.istio.io/v1",
        "DestinationRule": "networking.istio.io/v1",
        "Gateway": "networking.istio.io/v1",
        "ServiceEntry": "networking.istio.io/v1",
        "EnvoyFilter": "networking.istio.io/v1alpha3",
        "PeerAuthentication": "security.istio.io/v1",
        "AuthorizationPolicy": "security.istio.io/v1",
        "RequestAuthentication": "security.istio.io/v1",
        "Telemetry": "telemetry.istio.io/v1",
    }
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    body = {"apiVersion": api or groups[kind], "kind": kind, "metadata": meta, "spec": spec}
    return yaml.safe_dump(body, sort_keys=False)


def validate(text: str, profile: str = "current", source: str = "t.yaml") -> ValidationReport:
    return validate_documents(parse_text(text, source), profile=profile)


def errors(text: str, profile: str = "current") -> list[tuple[str, str]]:
    """(field, message) of every error."""
    return [(p.field, p.message) for p in validate(text, profile).errors]


def warnings(text: str) -> list[tuple[str, str, str]]:
    return [(p.code, p.field, p.message) for p in validate(text).warnings]


def vs(*http: dict[str, Any], **spec: Any) -> str:
    return doc("VirtualService", {"hosts": ["recommendation"], "http": list(http), **spec})


def route(*dests: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"route": list(dests) or [{"destination": {"host": "recommendation"}}], **extra}


def dest(subset: str | None = None, weight: int | None = None, host: str = "recommendation") -> dict[str, Any]:
    d: dict[str, Any] = {"destination": {"host": host}}
    if subset:
        d["destination"]["subset"] = subset
    if weight is not None:
        d["weight"] = weight
    return d


def dr(**spec: Any) -> str:
    return doc("DestinationRule", {"host": "recommendation", **spec})
