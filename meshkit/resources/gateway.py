"""Gateway (ingress servers) and ServiceEntry (services outside the registry, e.g. egress hosts).

Example::

    >>> from meshkit.resources.schema import Checker
    >>> ck = Checker()
    >>> SERVICE_ENTRY.check({"hosts": []}, ("spec",), ck)
    >>> ck.findings[0].message
    'service entry must have at least one host'
"""

from __future__ import annotations

from typing import Any

from meshkit.resources.common import (
    LABELS,
    PORT_NUMBER,
    STRINGS,
    WORKLOAD_SELECTOR,
    host_error,
    ip_or_cidr_error,
)
from meshkit.resources.model import Path
from meshkit.resources.schema import Bool, Checker, Enum, Int, ListOf, MapOf, Obj, Str

GATEWAY_PROTOCOLS = ("HTTP", "HTTPS", "GRPC", "HTTP2", "MONGO", "TCP", "TLS")
SERVICE_ENTRY_PROTOCOLS = ("HTTP", "HTTPS", "GRPC", "HTTP2", "MONGO", "TCP", "TLS")
_TLS_VERSIONS = ("TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3")


def _protocol(allowed: tuple[str, ...]) -> Str:
    def check(value: str) -> str | None:
        if value.upper() not in allowed:
            return f'invalid protocol "{value}": supported protocols are {", ".join(allowed)}'
        return None

    return Str(check)


def _gateway_host(value: str) -> str | None:
    # gateway hosts may carry a namespace prefix: "ns/host", "*/host", "./host"
    _, _, host = value.rpartition("/")
    return host_error(host)


def _server_tls_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    mode = value.get("mode", "PASSTHROUGH" if not value.get("httpsRedirect") else "")
    if (
        mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL")
        and not value.get("credentialName")
        and not value.get("credentialNames")
    ):
        if not value.get("serverCertificate"):
            ck.error((*path, "serverCertificate"), f"{mode} TLS requires a server certificate")
        if not value.get("privateKey"):
            ck.error((*path, "privateKey"), f"{mode} TLS requires a private key")
        if mode != "SIMPLE" and not value.get("caCertificates"):
            ck.error((*path, "caCertificates"), f"{mode} TLS requires a client CA bundle")


SERVER_TLS = Obj(
    {
        "httpsRedirect": Bool(),
        "mode": Enum("PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"),
        "serverCertificate": Str(),
        "privateKey": Str(),
        "caCertificates": Str(),
        "caCrl": Str(),
        "credentialName": Str(),
        "credentialNames": STRINGS,
        "subjectAltNames": STRINGS,
        "verifyCertificateSpki": STRINGS,
        "verifyCertificateHash": STRINGS,
        "minProtocolVersion": Enum(*_TLS_VERSIONS),
        "maxProtocolVersion": Enum(*_TLS_VERSIONS),
        "cipherSuites": STRINGS,
    },
    rules=[_server_tls_rule],
)


def _server_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if not value.get("hosts"):
        ck.error((*path, "hosts"), "server config must contain at least one host")
    protocol = str(value["port"].get("protocol", "")).upper()
    tls = value.get("tls")
    if protocol in ("HTTPS", "TLS") and tls is None:
        ck.error((*path, "tls"), "server must have TLS settings for HTTPS/TLS protocols")
    elif tls is not None and protocol not in ("HTTPS", "TLS") and not tls.get("httpsRedirect"):
        ck.error((*path, "tls"), "server cannot have TLS settings for plain text HTTP ports")


SERVER = Obj(
    {
        "port": Obj(
            {
                "number": PORT_NUMBER,
                "name": Str(),
                "protocol": _protocol(GATEWAY_PROTOCOLS),
                "targetPort": PORT_NUMBER,
            },
            required=("number", "protocol"),
        ),
        "hosts": ListOf(Str(_gateway_host)),
        "tls": SERVER_TLS,
        "bind": Str(),
        "defaultEndpoint": Str(),
        "name": Str(),
    },
    required=("port",),
    rules=[_server_rule],
)


def _gateway_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if not value.get("servers"):
        ck.error((*path, "servers"), "gateway must have at least one server")


GATEWAY = Obj({"selector": LABELS, "servers": ListOf(SERVER)}, rules=[_gateway_rule])


def _service_entry_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if not value.get("hosts"):
        ck.error((*path, "hosts"), "service entry must have at least one host")
    resolution = value.get("resolution", "NONE")
    if resolution == "NONE" and value.get("endpoints"):
        ck.error((*path, "endpoints"), "no endpoints should be provided for resolution type none")
    numbers = [p.get("number") for p in value.get("ports") or []]
    for i, number in enumerate(numbers):
        if number in numbers[:i]:
            ck.error((*path, "ports", i, "number"), f"port number {number} is declared more than once")


SERVICE_ENTRY = Obj(
    {
        "hosts": ListOf(Str(host_error)),
        "addresses": ListOf(Str(ip_or_cidr_error)),
        "ports": ListOf(
            Obj(
                {
                    "number": PORT_NUMBER,
                    "protocol": _protocol(SERVICE_ENTRY_PROTOCOLS),
                    "name": Str(),
                    "targetPort": PORT_NUMBER,
                },
                required=("number",),
            )
        ),
        "location": Enum("MESH_EXTERNAL", "MESH_INTERNAL"),
        "resolution": Enum("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"),
        "endpoints": ListOf(
            Obj(
                {
                    "address": Str(),
                    "ports": MapOf(PORT_NUMBER),
                    "labels": LABELS,
                    "network": Str(),
                    "locality": Str(),
                    "weight": Int(lo=0),
                    "serviceAccount": Str(),
                }
            )
        ),
        "workloadSelector": WORKLOAD_SELECTOR,
        "exportTo": STRINGS,
        "subjectAltNames": STRINGS,
    },
    rules=[_service_entry_rule],
)
