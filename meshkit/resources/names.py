"""Istio's rules for names: DNS names and wildcards, labels, ports, protocols, IPs, exportTo, durations.

Each function returns Istio's own message for a bad value, or ``None`` when the value is valid, so
the kinds' schemas can reuse them. They follow ``pkg/config/validation`` (and its ``agent`` package)
of Istio 1.30; the wording of every message is Istio's.

Example::

    >>> wildcard_domain_error("*-foo.baz") is None
    True
    >>> wildcard_domain_error("foo.*.com")
    'domain name "*.com" invalid (label "*" invalid)'
    >>> label_errors({"version": "v 1"})
    ['invalid tag value: "v 1"']
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from meshkit.resources.duration import parse_nanos

_LABEL_FMT = r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
_DNS1123_LABEL = re.compile(rf"^{_LABEL_FMT}$")
_WILDCARD_LABEL = re.compile(rf"^(\*|(\*|\*-)?{_LABEL_FMT})$")
_QUALIFIED = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_TAG_KEY = re.compile(rf"^({_LABEL_FMT}(?:\.{_LABEL_FMT})*/)?({_QUALIFIED})$")
_TAG_VALUE = re.compile(rf"^({_QUALIFIED})?$")
UNIX_PREFIX = "unix://"

#: protocol names Istio's ``protocol.Parse`` knows (case-insensitive)
PROTOCOLS = ("TCP", "UDP", "GRPC", "GRPC-WEB", "HTTP", "HTTP_PROXY", "HTTP2", "HTTPS", "TLS", "MONGO", "REDIS", "MYSQL")
HTTP_PROTOCOLS = ("HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB")
TLS_PROTOCOLS = ("HTTPS", "TLS")
TCP_PROTOCOLS = ("TCP", "HTTPS", "TLS", "MONGO", "REDIS", "MYSQL")


def is_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and bool(_DNS1123_LABEL.match(value))


def _preconditions(name: str) -> str | None:
    if len(name) > 255:
        return f'domain name "{name}" too long (max 255)'
    if not name:
        return "empty domain name not allowed"
    return None


def _labels_error(domain: str) -> str | None:
    parts = domain.split(".")
    top = parts[-1]
    if top.isdigit():
        return f'domain name "{domain}" invalid (top level domain "{top}" cannot be all-numeric)'
    for i, label in enumerate(parts):
        if i == len(parts) - 1 and label == "":
            return None
        if not is_dns1123_label(label):
            return f'domain name "{domain}" invalid (label "{label}" invalid)'
    return None


def fqdn_error(name: str) -> str | None:
    """Istio's ``ValidateFQDN``: DNS-1123 labels, no wildcard."""
    return _preconditions(name) or _labels_error(name)


def wildcard_domain_error(domain: str) -> str | None:
    """Istio's ``ValidateWildcardDomain``: an FQDN whose first label may be ``*``, ``*foo`` or ``*-foo``."""
    if msg := _preconditions(domain):
        return msg
    first, dot, rest = domain.partition(".")
    if not (len(first) <= 63 and _WILDCARD_LABEL.match(first)):
        return f'domain name "{domain}" invalid (label "{first}" invalid)'
    return _labels_error(rest) if dot else None


def partial_wildcard_error(host: str) -> str | None:
    if "*" in host and len(host) != 1 and not host.startswith("*."):
        return f'partial wildcard "{host}" not allowed'
    return None


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def ip_error(value: str) -> str | None:
    return None if is_ip(value) else f"{value} is not a valid IP"


def ip_subnet_error(value: str) -> str | None:
    """Istio's ``ValidateIPSubnet``: ``a.b.c.d/xx`` or a plain address."""
    if value.count("/") == 1:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return f"{value} is not a valid CIDR block"
        return None
    return ip_error(value)


def port_error(port: int) -> str | None:
    return None if 1 <= port <= 65535 else f"port number {port} must be in the range 1..65535"


def port_name_error(name: str) -> str | None:
    return None if is_dns1123_label(name) else f"invalid port name: {name}"


def protocol_of(value: str) -> str:
    """The protocol Istio parses ``value`` as (upper case), or ``""`` when it is unsupported."""
    upper = value.upper()
    return upper if upper in PROTOCOLS else ""


def protocol_error(value: str) -> str | None:
    """Istio's ``ValidateProtocol``: empty means sniffing; anything else must parse."""
    if value and not protocol_of(value):
        return f"unsupported protocol: {value}"
    return None


def unix_address_error(addr: str) -> str | None:
    if not addr:
        return "unix address must not be empty"
    if addr.startswith("@"):
        return None
    if not addr.startswith("/") or addr.endswith("/"):
        return f"{addr} is not an absolute path to a file"
    return None


def label_errors(labels: Mapping[str, Any]) -> list[str]:
    """Istio's ``labels.Instance.Validate``: Kubernetes label keys and values."""
    out = []
    for key, value in labels.items():
        match = _TAG_KEY.match(str(key))
        if not match:
            out.append(f'invalid tag key: "{key}"')
        elif match.group(1) and len(match.group(1)) - 1 > 253:
            out.append(f'invalid tag key: "{key}" (DNS prefix is too long)')
        elif len(match.group(2)) > 63:
            out.append(f'invalid tag key: "{key}" (name is too long)')
        if not isinstance(value, str) or not _TAG_VALUE.match(value):
            out.append(f'invalid tag value: "{value}"')
    return out


def selector_errors(labels: Mapping[str, Any]) -> list[str]:
    """Workload selectors: no empty keys, no ``*`` in keys or values."""
    out = []
    for key, value in labels.items():
        if key == "":
            out.append(f'empty key is not supported in selector: "{key}={value}"')
        if "*" in str(key) or "*" in str(value):
            out.append(f'wildcard is not supported in selector: "{key}={value}"')
    return out


def export_to_errors(
    namespace: str, export_to: Iterable[str], *, service_entry: bool = False, selector: bool = False
) -> list[str]:
    """Istio's ``validateExportTo``: ``.``, ``*``, namespaces, and ``~`` on ServiceEntries only."""
    entries = list(export_to)
    out: list[str] = []
    seen: set[str] = set()
    for entry in entries:
        key = namespace if entry == "." else entry
        if key in seen:
            if key != entry:
                out.append(f"duplicate entries in exportTo: . and current namespace {namespace}")
            else:
                out.append(f"duplicate entries in exportTo for entry {entry}")
        elif service_entry and entry == "~":
            seen.add(key)
        elif key == "~":
            out.append("exportTo ~ (none) is not allowed for Istio configuration objects")
        elif key != "*" and not is_dns1123_label(key):
            out.append("only .,*, or a valid DNS 1123 label is allowed as exportTo entry")
        else:
            seen.add(key)
    if selector and seen:
        if namespace in seen:
            if len(seen) > 1:
                out.append("destination rule with workload selector cannot have multiple entries in exportTo")
        else:
            out.append("destination rule with workload selector cannot have exportTo beyond current namespace")
    if "*" in seen and len(entries) > 1:
        out.append("cannot have both public (*) and non-public exportTo values for a resource")
    if "~" in seen and len(entries) > 1:
        out.append("cannot export service entry to no one (~) and someone")
    return out


def duration_nanos(text: str) -> int | None:
    try:
        return parse_nanos(text)
    except ValueError:
        return None


def namespace_slash_host_errors(hostname: str, *, gateway: bool) -> list[str]:
    """Istio's ``ValidateNamespaceSlashWildcardHostname`` (Gateway servers and Sidecar egress hosts)."""
    ns, slash, name = hostname.partition("/")
    if not slash:
        if gateway:
            return _host_part_errors(hostname, gateway=True)
        return ["host must be of form namespace/dnsName"]
    out = []
    if not ns or not name:
        out.append("config namespace and dnsName in host entry cannot be empty")
    if not gateway:
        bare = ns.removeprefix("~")
        if bare not in ("", "*", ".") and not is_dns1123_label(bare):
            out.append(f'invalid namespace value "{ns}" in sidecar')
    elif ns not in ("*", ".") and not is_dns1123_label(ns):
        out.append(f'invalid namespace value "{ns}" in gateway')
    return out + _host_part_errors(name, gateway=gateway)


def _host_part_errors(hostname: str, *, gateway: bool) -> list[str]:
    out = []
    if hostname != "*" and "." not in hostname:
        out.append("short names (non FQDN) are not allowed")
    if msg := wildcard_domain_error(hostname):
        if not gateway:
            out.append(msg)
        if not is_ip(hostname):
            out.append(msg)
    if msg := partial_wildcard_error(hostname):
        out.append(msg)
    return out


def host_matches(a: str, b: str) -> bool:
    """Istio's ``host.Name.Matches``: equal, or one wildcard covers the other (in either direction)."""
    a_wild, b_wild = a.startswith("*"), b.startswith("*")
    if a_wild:
        if b_wild:
            return b[1:].endswith(a[1:]) if len(a) < len(b) else a[1:].endswith(b[1:])
        return b.endswith(a[1:])
    if b_wild:
        return a.endswith(b[1:])
    return a == b


def host_subset_of(a: str, b: str) -> bool:
    """Istio's ``host.Name.SubsetOf``: every name ``a`` matches is matched by ``b``."""
    if b.startswith("*"):
        if a.startswith("*"):
            return a[1:].endswith(b[1:])
        return a.endswith(b[1:])
    if a.startswith("*"):
        return False
    return a == b
