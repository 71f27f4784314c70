"""Kubernetes Gateway API (v1.5, the version Istio 1.30 reads): schemas, translation, status.

``schema`` validates like the CRDs' OpenAPI rules and CEL constraints; ``translate`` turns
HTTPRoutes and Gateways into the VirtualServices and Istio Gateways istiod generates from them;
``status`` computes the conditions Istio's controller writes back.

Example::

    >>> sorted(GATEWAY_API_SPECS)[:2]
    ['GRPCRoute.gateway.networking.k8s.io', 'Gateway.gateway.networking.k8s.io']
"""

from __future__ import annotations

from collections.abc import Mapping

from meshkit.resources.gatewayapi.schema import (
    GATEWAY,
    GATEWAY_CLASS,
    GRPC_ROUTE,
    HTTP_ROUTE,
    REFERENCE_GRANT,
    TCP_ROUTE,
    TLS_ROUTE,
    experimental_channel,
)
from meshkit.resources.schema import Schema

GROUP = "gateway.networking.k8s.io"
#: the Gateway API release whose CRDs Istio 1.30 is built against
BUNDLE_VERSION = "v1.5.1"

GATEWAY_API_SPECS: Mapping[str, Schema] = {
    f"GatewayClass.{GROUP}": GATEWAY_CLASS,
    f"Gateway.{GROUP}": GATEWAY,
    f"HTTPRoute.{GROUP}": HTTP_ROUTE,
    f"GRPCRoute.{GROUP}": GRPC_ROUTE,
    f"ReferenceGrant.{GROUP}": REFERENCE_GRANT,
    f"TCPRoute.{GROUP}": TCP_ROUTE,
    f"TLSRoute.{GROUP}": TLS_ROUTE,
}


def is_gateway_api(resource: Mapping[str, object]) -> bool:
    """True for a resource of the ``gateway.networking.k8s.io`` group."""
    return str(resource.get("apiVersion", "")).startswith(GROUP + "/")


__all__ = ["BUNDLE_VERSION", "GATEWAY_API_SPECS", "GROUP", "experimental_channel", "is_gateway_api"]
