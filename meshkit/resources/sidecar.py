"""Sidecar: which hosts a workload's proxy knows (egress), its inbound listeners, and its outbound policy.

The local mesh honours ``egress[].hosts`` (a sidecar only knows the services they name; a call to any
other host gets the outbound traffic policy: BlackHole under ``REGISTRY_ONLY``, passthrough under
``ALLOW_ANY``) and ``outboundTrafficPolicy.mode``. Ingress listeners, ports, binds and capture
modes are validated and stored.

Example::

    >>> from meshkit.resources.schema import Checker
    >>> ck = Checker()
    >>> SIDECAR.check({"egress": [{"hosts": ["istio-system/*", "./*"]}]}, ("spec",), ck)
    >>> ck.findings
    []
    >>> SIDECAR.check({"egress": [{"hosts": ["recommendation"]}]}, ("spec",), ck)
    >>> ck.findings[0].message
    'host must be of form namespace/dnsName'
"""

from __future__ import annotations

from typing import Any

from meshkit.resources.common import DESTINATION, LABELS, WORKLOAD_SELECTOR
from meshkit.resources.destinationrule import CONNECTION_POOL
from meshkit.resources.gateway import SERVER_TLS
from meshkit.resources.model import Path
from meshkit.resources.names import (
    HTTP_PROTOCOLS,
    TLS_PROTOCOLS,
    UNIX_PREFIX,
    fqdn_error,
    ip_error,
    namespace_slash_host_errors,
    port_error,
    port_name_error,
    protocol_error,
    protocol_of,
    selector_errors,
    unix_address_error,
)
from meshkit.resources.schema import Checker, Enum, Int, ListOf, Obj, Str

_PORT = Obj({"number": Int(), "protocol": Str(), "name": Str(), "targetPort": Int()})


def _port_bind_errors(port: dict[str, Any], bind: str, *, egress: bool, capture: str) -> list[str]:
    out = []
    if port.get("name") and (msg := port_name_error(port["name"])):
        out.append(msg)
    if msg := protocol_error(port.get("protocol", "")):
        out.append(msg)
    number = port.get("number", 0)
    if egress and number == 0:
        if not bind.startswith(UNIX_PREFIX):
            out.append("sidecar: ports with 0 value must have a unix domain socket bind address")
        elif msg := unix_address_error(bind.removeprefix(UNIX_PREFIX)):
            out.append(msg)
        if capture not in ("DEFAULT", "NONE"):
            out.append("sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners")
        return out
    if msg := port_error(number):
        out.append(msg)
    if bind and (msg := ip_error(bind)):
        out.append(msg)
    return out


def _default_endpoint_errors(endpoint: str) -> list[str]:
    if endpoint.startswith(UNIX_PREFIX):
        msg = unix_address_error(endpoint.removeprefix(UNIX_PREFIX))
        return [msg] if msg else []
    host, sep, port = endpoint.rpartition(":")
    if not sep:
        return [f"address {endpoint}: missing port in address"]
    out = []
    host = host.strip("[]")
    if host and host not in ("127.0.0.1", "0.0.0.0", "::1", "::"):
        out.append(
            "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,"
            "unix://filepath or unset"
        )
    if not port.isdigit():
        out.append(
            f'sidecar: defaultEndpoint port ({port}) is not a number: strconv.Atoi: parsing "{port}": invalid syntax'
        )
    elif msg := port_error(int(port)):
        out.append(msg)
    return out


def _ingress(value: list[dict[str, Any]], path: Path, ck: Checker) -> None:
    numbers: set[int] = set()
    for i, listener in enumerate(value):
        where = (*path, "ingress", i)
        port = listener.get("port")
        if port is None:
            ck.error((*where, "port"), "sidecar: port is required for ingress listeners")
            continue
        if port.get("targetPort", 0) > 0:
            ck.error((*where, "port", "targetPort"), "targetPort has no impact on Sidecars")
        for msg in _port_bind_errors(port, listener.get("bind", ""), egress=False, capture=""):
            ck.error((*where, "port"), msg)
        if port.get("number", 0) in numbers:
            ck.error((*where, "port"), "sidecar: ports on IP bound listeners must be unique")
        numbers.add(port.get("number", 0))
        if listener.get("defaultEndpoint"):
            for msg in _default_endpoint_errors(listener["defaultEndpoint"]):
                ck.error((*where, "defaultEndpoint"), msg)
        tls = listener.get("tls")
        if tls is not None:
            for key, msg in (
                ("subjectAltNames", "sidecar: subjectAltNames is not supported in ingress tls"),
                ("httpsRedirect", "sidecar: httpsRedirect is not supported"),
                ("credentialName", "sidecar: credentialName is not currently supported"),
                ("credentialNames", "sidecar: credentialNames is not currently supported"),
                ("tlsCertificates", "sidecar: tls_certificates is not currently supported"),
            ):
                if tls.get(key):
                    ck.error((*where, "tls", key), msg)
            if tls.get("mode") in ("ISTIO_MUTUAL", "AUTO_PASSTHROUGH"):
                ck.error(
                    (*where, "tls", "mode"),
                    f"configuration is invalid: cannot set mode to {tls['mode']} in sidecar ingress tls",
                )
            if protocol_of(port.get("protocol", "")) not in TLS_PROTOCOLS:
                ck.error((*where, "tls"), "server cannot have TLS settings for non HTTPS/TLS ports")
        pool = listener.get("connectionPool") or {}
        if pool.get("http") and protocol_of(port.get("protocol", "")) not in HTTP_PROTOCOLS:
            ck.warn(
                (*where, "connectionPool", "http"),
                f"sidecar: HTTP connection pool settings are configured for port {port.get('number', 0)} "
                f'("{port.get("name", "")}") but its protocol is not HTTP ({port.get("protocol", "")}); only TCP '
                "settings will apply",
            )


def _egress(value: list[dict[str, Any]], path: Path, ck: Checker) -> None:
    numbers: set[int] = set()
    binds: set[str] = set()
    catch_all = False
    for i, listener in enumerate(value):
        where = (*path, "egress", i)
        port = listener.get("port")
        if port is None:
            if catch_all:
                ck.error(where, "sidecar: egress can have only one listener with empty port")
                continue
            if i == len(value) - 1:
                catch_all = True
            else:
                ck.error(where, "sidecar: the egress listener with empty port should be the last listener in the list")
        else:
            if port.get("targetPort", 0) > 0:
                ck.error((*where, "port", "targetPort"), "targetPort has no impact on Sidecars")
            bind = listener.get("bind", "")
            capture = listener.get("captureMode", "DEFAULT")
            for msg in _port_bind_errors(port, bind, egress=True, capture=capture):
                ck.error((*where, "port"), msg)
            number = port.get("number", 0)
            if number == 0:
                if bind in binds:
                    ck.error((*where, "bind"), "sidecar: unix domain socket values for listeners must be unique")
                binds.add(bind)
            else:
                if number in numbers:
                    ck.error((*where, "port"), "sidecar: ports on IP bound listeners must be unique")
                numbers.add(number)
        hosts = listener.get("hosts") or []
        if not hosts:
            ck.error((*where, "hosts"), "sidecar: egress listener must contain at least one host")
            continue
        per_ns: dict[str, set[str]] = {}
        for j, host in enumerate(hosts):
            ns, slash, name = host.partition("/")
            if slash and not ns.startswith("~"):
                ns = ck.namespace if ns == "." else ns
                names = per_ns.setdefault(ns, set())
                if (name != "*" and (name in names or "*" in names)) or (name == "*" and names):
                    ck.warn((*where, "hosts", j), f"duplicated egress host: {host}")
                names.add(name)
            for msg in namespace_slash_host_errors(host, gateway=False):
                ck.error((*where, "hosts", j), msg)
        if "*" in per_ns.get("*", set()) and len(per_ns) != 1:
            ck.warn((*where, "hosts"), "`*/*` host select all resources, no other hosts can be added")


def _outbound(value: dict[str, Any], path: Path, ck: Checker) -> None:
    policy = value.get("outboundTrafficPolicy")
    if not policy or "egressProxy" not in policy:
        return
    where = (*path, "outboundTrafficPolicy", "egressProxy")
    if policy.get("mode", "REGISTRY_ONLY") != "ALLOW_ANY":
        ck.error(where, "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode")
        return
    proxy = policy["egressProxy"]
    if msg := fqdn_error(proxy.get("host", "")):
        ck.error((*where, "host"), msg)
    if "port" not in proxy:
        ck.error((*where, "port"), "sidecar: egress_proxy port must be non-nil")


def _sidecar_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if "workloadSelector" in value:
        labels = (value["workloadSelector"] or {}).get("labels") or {}
        for msg in selector_errors(labels):
            ck.error((*path, "workloadSelector"), msg)
        if not labels:
            ck.warn(
                (*path, "workloadSelector"),
                "sidecar: workload selector specified without labels, will be applied to all services in namespace",
            )
    if not any(value.get(k) for k in ("egress", "ingress", "outboundTrafficPolicy", "inboundConnectionPool")):
        ck.error(path, "sidecar: empty configuration provided")
        return
    _ingress(value.get("ingress") or [], path, ck)
    _egress(value.get("egress") or [], path, ck)
    _outbound(value, path, ck)


SIDECAR = Obj(
    {
        "workloadSelector": Obj({"labels": LABELS}),
        "ingress": ListOf(
            Obj(
                {
                    "port": _PORT,
                    "bind": Str(),
                    "captureMode": Enum("DEFAULT", "IPTABLES", "NONE"),
                    "defaultEndpoint": Str(),
                    "tls": SERVER_TLS,
                    "connectionPool": CONNECTION_POOL,
                }
            )
        ),
        "egress": ListOf(
            Obj(
                {
                    "port": _PORT,
                    "bind": Str(),
                    "captureMode": Enum("DEFAULT", "IPTABLES", "NONE"),
                    "hosts": ListOf(Str()),
                },
                required=("hosts",),
            )
        ),
        "outboundTrafficPolicy": Obj(
            {
                "mode": Enum("REGISTRY_ONLY", "ALLOW_ANY", "ALLOW_ANY_DYNAMIC_DNS"),
                "egressProxy": Obj({"host": Str(), "subset": Str(), "port": DESTINATION.fields["port"]}),
            },
            rules=[
                lambda v, p, ck: (
                    ck.error(
                        (*p, "mode"),
                        "sidecar: ALLOW_ANY_DYNAMIC_DNS mode is only supported in MeshConfig, not in Sidecar resource",
                    )
                    if v.get("mode") == "ALLOW_ANY_DYNAMIC_DNS"
                    else None
                )
            ],
        ),
        "inboundConnectionPool": CONNECTION_POOL,
    },
    rules=[_sidecar_rule],
)
_ = WORKLOAD_SELECTOR
