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

from meshkit.resources.common import LABELS, STRINGS, WORKLOAD_SELECTOR
from meshkit.resources.model import Path
from meshkit.resources.names import (
    HTTP_PROTOCOLS,
    PROTOCOLS,
    TCP_PROTOCOLS,
    TLS_PROTOCOLS,
    UNIX_PREFIX,
    export_to_errors,
    fqdn_error,
    ip_error,
    ip_subnet_error,
    is_dns1123_label,
    is_ip,
    label_errors,
    namespace_slash_host_errors,
    partial_wildcard_error,
    port_error,
    port_name_error,
    protocol_error,
    protocol_of,
    unix_address_error,
    wildcard_domain_error,
)
from meshkit.resources.schema import Bool, Checker, Enum, Int, ListOf, MapOf, Obj, Str

GATEWAY_PROTOCOLS = PROTOCOLS
SERVICE_ENTRY_PROTOCOLS = PROTOCOLS
_TLS_VERSIONS = ("TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3")
#: cipher suites Envoy's BoringSSL accepts on a gateway
CIPHER_SUITES = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
)
_CERT_FIELDS = (
    "serverCertificate",
    "privateKey",
    "caCertificates",
    "tlsCertificates",
    "credentialName",
    "credentialNames",
)


def _ciphers(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if value.get("minProtocolVersion") in ("TLSV1_0", "TLSV1_1") and not value.get("cipherSuites"):
        ck.warn(
            path,
            "TLS version below TLSV1_2 require setting compatible ciphers as by default they no longer include "
            "compatible ciphers.",
        )
    invalid, valid, duplicate = set(), set(), set()
    for cipher in value.get("cipherSuites") or []:
        if cipher not in CIPHER_SUITES and cipher not in ("", "ALL"):
            invalid.add(cipher)
        elif cipher in valid:
            duplicate.add(cipher)
        else:
            valid.add(cipher)
    if invalid:
        ck.warn((*path, "cipherSuites"), f"ignoring invalid cipher suites: [{' '.join(sorted(invalid))}]")
    if duplicate:
        ck.warn((*path, "cipherSuites"), f"ignoring duplicate cipher suites: [{' '.join(sorted(duplicate))}]")


def server_tls_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    """Istio's ``validateTLSOptions`` for a server's TLS settings (Gateway servers, Sidecar ingress)."""
    _ciphers(value, path, ck)
    mode = value.get("mode", "PASSTHROUGH")
    if mode == "ISTIO_MUTUAL":
        for key, what in (
            ("serverCertificate", "server certificate"),
            ("privateKey", "private key"),
            ("caCertificates", "CA bundle"),
            ("tlsCertificates", "tlsCertificates"),
            ("credentialName", "credentialName"),
            ("credentialNames", "credentialNames"),
        ):
            if value.get(key):
                ck.error((*path, key), f"ISTIO_MUTUAL TLS cannot have associated {what}")
        return
    if mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH") and (value.get("caCrl") or any(value.get(k) for k in _CERT_FIELDS)):
        ck.warn(path, f"{mode} mode does not use certificates, they will be ignored")
    sources = sum(
        [
            bool(value.get("serverCertificate") and value.get("privateKey")),
            bool(value.get("credentialName")),
            bool(value.get("credentialNames")),
            bool(value.get("tlsCertificates")),
        ]
    )
    if sources > 1:
        ck.error(
            path,
            "only one of credential_name, credential_names, server_certificate/private_key, tls_certificates "
            "should be specified",
        )
    terminating = mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL")
    if terminating and (value.get("credentialName") or value.get("credentialNames")):
        return
    if terminating:
        prefix = "SIMPLE TLS" if mode == "SIMPLE" else "MUTUAL TLS"
        if mode != "SIMPLE" and not value.get("caCertificates"):
            ck.error((*path, "caCertificates"), f"{prefix} requires a client CA bundle")
        certs = value.get("tlsCertificates") or [
            {"serverCertificate": value.get("serverCertificate"), "privateKey": value.get("privateKey")}
        ]
        if len(certs) > 2:
            ck.warn((*path, "tlsCertificates"), f"{prefix} can support up to 2 server certificates")
        for cert in certs:
            if not cert.get("serverCertificate"):
                ck.error((*path, "serverCertificate"), f"{prefix} requires a server certificate")
            if not cert.get("privateKey"):
                ck.error((*path, "privateKey"), f"{prefix} requires a private key")
    if value.get("caCrl"):
        if value.get("credentialName"):
            ck.error(
                (*path, "caCrl"),
                "CRL is not supported with credentialName. CRL has to be specified in the credential",
            )
        if mode == "SIMPLE":
            ck.error((*path, "caCrl"), "CRL is not supported with SIMPLE TLS")


def _server_tls_shape(value: dict[str, Any], path: Path, ck: Checker) -> None:
    """The CRD's one-of rules between the certificate sources."""
    if "tlsCertificates" in value and "credentialNames" in value:
        ck.error(path, "only one of credentialNames or tlsCertificates can be set")
    if "credentialName" in value and "credentialNames" in value:
        ck.error(path, "only one of credentialName or credentialNames can be set")


SERVER_TLS = Obj(
    {
        "httpsRedirect": Bool(),
        "mode": Enum("PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"),
        "serverCertificate": Str(),
        "privateKey": Str(),
        "caCertificates": Str(),
        "caCrl": Str(),
        "credentialName": Str(),
        "credentialNames": ListOf(Str()),
        "caCertCredentialName": Str(),
        "tlsCertificates": ListOf(Obj({"serverCertificate": Str(), "privateKey": Str(), "caCertificates": Str()})),
        "subjectAltNames": STRINGS,
        "verifyCertificateSpki": STRINGS,
        "verifyCertificateHash": STRINGS,
        "minProtocolVersion": Enum(*_TLS_VERSIONS),
        "maxProtocolVersion": Enum(*_TLS_VERSIONS),
        "cipherSuites": STRINGS,
        "insecureSkipVerify": Bool(),
    },
    rules=[_server_tls_shape, server_tls_rule],
)


def _server_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    hosts = value.get("hosts") or []
    if not hosts:
        ck.error((*path, "hosts"), "server config must contain at least one host")
    for i, host in enumerate(hosts):
        for problem in namespace_slash_host_errors(host, gateway=True):
            ck.error((*path, "hosts", i), problem)
    port = value["port"]
    bind = value.get("bind", "")
    port_ok = True
    protocol = protocol_of(port.get("protocol", ""))
    if not protocol:
        ck.error(
            (*path, "port", "protocol"),
            f'invalid protocol "{port.get("protocol", "")}", supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, '
            "MONGO, REDIS, MYSQL, TCP",
        )
        port_ok = False
    number = port.get("number", 0)
    if (number > 0 or not bind.startswith(UNIX_PREFIX)) and (msg := port_error(number)):
        ck.error((*path, "port", "number"), msg)
        port_ok = False
    if port.get("targetPort", 0) > 0:
        ck.error((*path, "port", "targetPort"), "targetPort has no impact on Gateways")
        port_ok = False
    if not port.get("name"):
        ck.error((*path, "port", "name"), f"port name must be set: {_show_port(port)}")
        port_ok = False
    if bind.startswith(UNIX_PREFIX):
        if msg := unix_address_error(bind.removeprefix(UNIX_PREFIX)):
            ck.error((*path, "bind"), msg)
        if number:
            ck.error((*path, "bind"), f"port number must be 0 for unix domain socket: {_show_port(port)}")
    elif bind and (msg := ip_error(bind)):
        ck.error((*path, "bind"), msg)
    tls = value.get("tls")
    if not port_ok:
        return
    if protocol in TLS_PROTOCOLS and tls is None:
        ck.error((*path, "tls"), "server must have TLS settings for HTTPS/TLS protocols")
    elif protocol not in TLS_PROTOCOLS and tls is not None:
        if protocol in HTTP_PROTOCOLS:
            passthrough = tls.get("mode", "PASSTHROUGH") == "PASSTHROUGH"
            if not passthrough or any(tls.get(k) for k in ("caCertificates", "privateKey", "serverCertificate")):
                ck.error((*path, "tls"), "server cannot have TLS settings for plain text HTTP ports")
        else:
            ck.error((*path, "tls"), "server cannot have TLS settings for non HTTPS/TLS ports")


def _show_port(port: dict[str, Any]) -> str:
    parts = [f"number:{port['number']}"] if port.get("number") else []
    parts += [f'{k}:"{port[k]}"' for k in ("protocol", "name") if port.get(k)]
    return " ".join(parts)


SERVER = Obj(
    {
        "port": Obj(
            {"number": Int(), "name": Str(), "protocol": Str(), "targetPort": Int()},
            required=("number", "protocol", "name"),
        ),
        "hosts": ListOf(Str()),
        "tls": SERVER_TLS,
        "bind": Str(),
        "defaultEndpoint": Str(),
        "name": Str(),
    },
    required=("port", "hosts"),
    rules=[_server_rule],
)


def _gateway_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if ck.name and not is_dns1123_label(ck.name):
        ck.error(("metadata", "name"), f'invalid gateway name: "{ck.name}"')
    servers = value.get("servers") or []
    if not servers:
        ck.error((*path, "servers"), "gateway must have at least one server")
    names: set[str] = set()
    for i, server in enumerate(servers):
        port = server.get("port") or {}
        name = port.get("name", "")
        if name in names:
            ck.error(
                (*path, "servers", i, "port", "name"), f"port names in servers must be unique: duplicate name {name}"
            )
        names.add(name)
        if protocol_of(port.get("protocol", "")) not in HTTP_PROTOCOLS and (server.get("tls") or {}).get(
            "httpsRedirect"
        ):
            ck.warn(
                (*path, "servers", i, "tls", "httpsRedirect"), "tls.httpsRedirect should only be used with http servers"
            )


GATEWAY = Obj({"selector": LABELS, "servers": ListOf(SERVER)}, rules=[_gateway_rule])


def endpoint_errors(ep: dict[str, Any], ports: set[str] | None, *, fqdn_ok: bool) -> list[tuple[tuple[str, ...], str]]:
    """Istio's ``validateWorkloadEntry`` (a ServiceEntry endpoint or a WorkloadEntry)."""
    out: list[tuple[tuple[str, ...], str]] = []
    addr = ep.get("address", "")
    if not addr:
        if not ep.get("network"):
            return [(("address",), "address is required")]
    elif addr.startswith(UNIX_PREFIX):
        if msg := unix_address_error(addr.removeprefix(UNIX_PREFIX)):
            out.append((("address",), msg))
        if ep.get("ports"):
            out.append((("ports",), f"unix endpoint {addr} must not include ports"))
    elif not is_ip(addr):
        if not fqdn_ok:
            out.append((("address",), f'endpoint address "{addr}" is not a valid IP address'))
        elif fqdn_error(addr):
            out.append((("address",), f'endpoint address "{addr}" is not a valid FQDN or an IP address'))
    for name, number in (ep.get("ports") or {}).items():
        if ports is not None and name not in ports:
            out.append((("ports", name), f"endpoint port {number} is not defined by the service entry"))
        if msg := port_name_error(name):
            out.append((("ports", name), msg))
        if isinstance(number, int) and (msg := port_error(number)):
            out.append((("ports", name), msg))
    out += [(("labels",), msg) for msg in label_errors(ep.get("labels") or {})]
    if addr.startswith(UNIX_PREFIX) and ports is not None and len(ports) != 1:
        out.append(((), "exactly 1 service port required for unix endpoints"))
    return out


def _auto_allocated(resolution: str, ck: Checker) -> bool:
    """Istio (PILOT_ENABLE_IP_AUTOALLOCATE, on by default) gives an address to a ServiceEntry that has
    none, unless its resolution is NONE or it opts out with a label."""
    opted_out = str(ck.labels.get("networking.istio.io/enable-autoallocate-ip", "")).lower() == "false"
    return resolution != "NONE" and not opted_out


def _service_entry_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    hosts = value.get("hosts") or []
    resolution = value.get("resolution", "NONE")
    endpoints = value.get("endpoints") or []
    ports = value.get("ports") or []
    addresses = value.get("addresses") or []
    if "workloadSelector" in value:
        labels = (value["workloadSelector"] or {}).get("labels") or {}
        if not labels:
            ck.warn(
                (*path, "workloadSelector"),
                "service entry: workload selector specified without labels, will be applied to all services in "
                "namespace",
            )
        if "endpoints" in value:
            ck.error(path, "only one of WorkloadSelector or Endpoints is allowed in Service Entry")
    if not hosts:
        ck.error((*path, "hosts"), "service entry must have at least one host")
    for i, host in enumerate(hosts):
        if host == "*":
            ck.error((*path, "hosts", i), "invalid host *")
            continue
        if msg := wildcard_domain_error(host):
            ck.error((*path, "hosts", i), msg)
        elif resolution != "DYNAMIC_DNS" and (msg := partial_wildcard_error(host)):
            ck.warn((*path, "hosts", i), msg)
    for i, address in enumerate(addresses):
        if msg := ip_subnet_error(address):
            ck.error((*path, "addresses", i), msg)
    if any("/" in a for a in addresses) and resolution not in ("NONE", "STATIC"):
        ck.error((*path, "addresses"), "CIDR addresses are allowed only for NONE/STATIC resolution types")
    names: set[str] = set()
    numbers: set[int] = set()
    for i, port in enumerate(ports):
        where = (*path, "ports", i)
        name, number = port.get("name", ""), port.get("number", 0)
        if name in names:
            ck.error((*where, "name"), f'service entry port name "{name}" already defined')
        if number in numbers:
            ck.error((*where, "number"), f"service entry port {number} already defined")
        names.add(name)
        numbers.add(number)
        if msg := port_name_error(name):
            ck.error((*where, "name"), msg)
        if msg := protocol_error(port.get("protocol", "")):
            ck.error((*where, "protocol"), msg)
        if msg := port_error(number):
            ck.error((*where, "number"), msg)
        if port.get("targetPort") and (msg := port_error(port["targetPort"])):
            ck.error((*where, "targetPort"), msg)
        if not addresses and not _auto_allocated(resolution, ck) and port.get("protocol", "TCP") == "TCP":
            ck.warn(
                (*where, "protocol"),
                "addresses are required for ports serving TCP (or unset) protocol when IP Autoallocation is not "
                "enabled",
            )
    if resolution == "NONE":
        if endpoints:
            ck.error((*path, "endpoints"), "no endpoints should be provided for resolution type none")
        if "workloadSelector" in value:
            ck.warn((*path, "workloadSelector"), "workloadSelector should not be set when resolution mode is NONE")
    elif resolution == "STATIC":
        for i, ep in enumerate(endpoints):
            for sub, msg in endpoint_errors(ep, names, fqdn_ok=False):
                ck.error((*path, "endpoints", i, *sub), msg)
    elif resolution in ("DNS", "DNS_ROUND_ROBIN"):
        if not endpoints:
            for i, host in enumerate(hosts):
                if msg := fqdn_error(host):
                    ck.error(
                        (*path, "hosts", i),
                        "hosts must be FQDN or contain only prefix wildcards if no endpoints are provided for "
                        f"resolution mode {resolution}, {msg}",
                    )
                    break
        if resolution == "DNS_ROUND_ROBIN" and len(endpoints) > 1:
            ck.error((*path, "endpoints"), f"there must only be 0 or 1 endpoint for resolution mode {resolution}")
        for i, ep in enumerate(endpoints):
            addr = ep.get("address", "")
            if not is_ip(addr) and fqdn_error(addr):
                ck.error(
                    (*path, "endpoints", i, "address"),
                    f'endpoint address "{addr}" is not a valid FQDN or an IP address',
                )
            for msg in label_errors(ep.get("labels") or {}):
                ck.error((*path, "endpoints", i, "labels"), msg)
            for name, number in (ep.get("ports") or {}).items():
                where = (*path, "endpoints", i, "ports", name)
                if name not in names:
                    ck.error(where, f"endpoint port {number} is not defined by the service entry")
                if msg := port_name_error(name) or (port_error(number) if isinstance(number, int) else None):
                    ck.error(where, msg)
        if addresses and len(hosts) > 1 and any(protocol_of(p.get("protocol", "")) in TCP_PROTOCOLS for p in ports):
            ck.warn(
                (*path, "hosts"),
                "service entry can not have more than one host specified simultaneously with address and tcp port",
            )
    elif resolution == "DYNAMIC_DNS":
        for i, host in enumerate(hosts):
            if not host.startswith("*"):
                ck.error((*path, "hosts", i), f"host must be wildcarded for resolution mode {resolution}")
        if addresses:
            ck.error(
                (*path, "addresses"),
                f"addresses cannot be set for resolution type {resolution}. HTTP route domains will only be "
                "generatedfrom the hosts field values",
            )
        if endpoints:
            ck.error(
                (*path, "endpoints"),
                f"endpoints cannot be set for resolution type {resolution}. Destination IP address determined from "
                "hostsfield values",
            )
        for i, port in enumerate(ports):
            if protocol_of(port.get("protocol", "")) not in ("HTTP", "TLS", "GRPC", "HTTP2"):
                ck.error(
                    (*path, "ports", i, "protocol"),
                    f"only HTTP, TLS, GRPC, and HTTP2 protocols are supported for resolution type {resolution}",
                )
    if resolution != "NONE" and len(hosts) > 1:
        for i, port in enumerate(ports):
            protocol = protocol_of(port.get("protocol", ""))
            if protocol not in HTTP_PROTOCOLS and protocol not in TLS_PROTOCOLS:
                ck.error((*path, "ports", i, "protocol"), "multiple hosts provided with non-HTTP, non-TLS ports")
                break
    for msg in export_to_errors(ck.namespace, value.get("exportTo") or [], service_entry=True):
        ck.error((*path, "exportTo"), msg)


ENDPOINT = Obj(
    {
        "address": Str(),
        "ports": MapOf(Int()),
        "labels": LABELS,
        "network": Str(),
        "locality": Str(),
        "weight": Int(lo=0),
        "serviceAccount": Str(),
    }
)
SERVICE_ENTRY = Obj(
    {
        "hosts": ListOf(Str()),
        "addresses": ListOf(Str()),
        "ports": ListOf(
            Obj(
                {"number": Int(), "protocol": Str(), "name": Str(), "targetPort": Int()},
                required=("number", "name"),
            )
        ),
        "location": Enum("MESH_EXTERNAL", "MESH_INTERNAL"),
        "resolution": Enum("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"),
        "endpoints": ListOf(ENDPOINT),
        "workloadSelector": WORKLOAD_SELECTOR,
        "exportTo": STRINGS,
        "subjectAltNames": STRINGS,
    },
    rules=[_service_entry_rule],
)
