"""The Gateway API form of the traffic widgets' YAML: HTTPRoutes bound to a Service (GAMMA).

An HTTPRoute has no subsets: it splits traffic between Services, one per version
(``recommendation-v1``...), as Istio's bookinfo-versions.yaml adds. The panels take ``api="gateway"``
to generate these instead of VirtualServices and DestinationRules.

Example::

    >>> route = weights_route("recommendation", {"v1": 75, "v2": 25})
    >>> [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]]
    [('recommendation-v1', 75), ('recommendation-v2', 25)]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshkit.errors import InvalidConfig
from meshkit.widgets.builders import NAMESPACE, Resource, resource

GATEWAY_API = "gateway.networking.k8s.io/v1"
PORT = 8080
APIS = ("istio", "gateway")


def check_api(api: str) -> str:
    """``istio`` (VirtualService, DestinationRule) or ``gateway`` (HTTPRoute); anything else is refused."""
    if api not in APIS:
        raise InvalidConfig([f'api must be "istio" or "gateway", got {api!r}'])
    return api


def backend(service: str, version: str | None = None, weight: int | None = None) -> dict[str, Any]:
    """A backendRef to the version's Service (``recommendation-v2``), or the whole Service."""
    out: dict[str, Any] = {"name": f"{service}-{version}" if version else service, "port": PORT}
    if weight is not None:
        out["weight"] = weight
    return out


def mesh_route(service: str, rules: list[dict[str, Any]], namespace: str = NAMESPACE) -> Resource:
    """An HTTPRoute named after ``service`` whose parent is the Service itself (mesh traffic)."""
    parent = {"group": "", "kind": "Service", "name": service, "port": PORT}
    return resource("HTTPRoute", service, {"parentRefs": [parent], "rules": rules}, api=GATEWAY_API,
                    namespace=namespace)


def weights_route(service: str = "recommendation", weights: Mapping[str, int] | None = None, *,
                  namespace: str = NAMESPACE) -> Resource:
    """Relative weights per version; a weight of 0 leaves the version out (Istio drops it anyway)."""
    weights = dict(weights or {"v1": 100})
    bad = [f"weights_route: weight for {v!r} must be an integer, got {w!r}" for v, w in weights.items()
           if isinstance(w, bool) or not isinstance(w, int)]
    if bad:
        raise InvalidConfig(bad)
    refs = [backend(service, v, w) for v, w in weights.items() if w != 0]
    if not refs:
        raise InvalidConfig(["weights_route: every weight is 0; give at least one version a weight above 0"])
    if len(refs) == 1:
        refs[0].pop("weight")
    return mesh_route(service, [{"backendRefs": refs}], namespace)


def header_route(service: str, header: str, match_type: str, value: str, version: str,
                 default_version: str | None, *, namespace: str = NAMESPACE) -> Resource:
    """Requests whose header matches go to ``version``, the others to ``default_version`` (or 404)."""
    if match_type not in ("exact", "regex"):
        raise InvalidConfig([f'header_route: the Gateway API matches headers "exact" or "regex", not {match_type!r}'])
    kind = "RegularExpression" if match_type == "regex" else "Exact"
    rules: list[dict[str, Any]] = [{"matches": [{"headers": [{"name": header.lower(), "type": kind, "value": value}]}],
                                    "backendRefs": [backend(service, version)]}]
    if default_version:
        rules.append({"backendRefs": [backend(service, default_version)]})
    return mesh_route(service, rules, namespace)
