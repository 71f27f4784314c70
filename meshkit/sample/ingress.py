"""The tutorial's ingress for the sample: one definition, used by the local mesh and by cluster/.

Example::

    gateway, virtual_service = gateway_customer()
"""

from __future__ import annotations

from typing import Any

SAMPLE_PORT = 8080
Doc = dict[str, Any]


def gateway_customer(ns: str = "tutorial", prefix: str = "/customer") -> list[Doc]:
    """The tutorial's ``customer-gateway``: Gateway on port 80 plus a VS rewriting ``prefix`` to ``/``."""
    meta = {"name": "customer-gateway", "namespace": ns}
    return [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": dict(meta),
            "spec": {
                "selector": {"istio": "ingressgateway"},
                "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": dict(meta),
            "spec": {
                "hosts": ["*"],
                "gateways": ["customer-gateway"],
                "http": [
                    {
                        "match": [{"uri": {"prefix": prefix}}],
                        "rewrite": {"uri": "/"},
                        "route": [{"destination": {"host": "customer", "port": {"number": SAMPLE_PORT}}}],
                    }
                ],
            },
        },
    ]
