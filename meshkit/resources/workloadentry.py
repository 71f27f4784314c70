"""WorkloadEntry and WorkloadGroup: workloads outside Kubernetes (VMs) that join the mesh.

The local mesh honours a WorkloadEntry selected by a ServiceEntry's ``workloadSelector``: its
address (a loopback address, where a process of your own listens) becomes one of the service's
endpoints. WorkloadGroups (templates for auto-registered VMs) are validated and stored.

Example::

    >>> from meshkit.resources.schema import Checker
    >>> ck = Checker()
    >>> WORKLOAD_ENTRY.check({"address": "127.0.0.1", "ports": {"http": 70000}}, ("spec",), ck)
    >>> ck.findings[0].message
    'port number 70000 must be in the range 1..65535'
"""

from __future__ import annotations

from typing import Any

from meshkit.resources.common import LABELS, SELECTOR
from meshkit.resources.gateway import ENDPOINT, endpoint_errors
from meshkit.resources.headers import probe_name_error
from meshkit.resources.model import Path
from meshkit.resources.names import label_errors, port_error
from meshkit.resources.schema import Checker, Int, ListOf, MapOf, Obj, Str


def _entry_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if not value.get("address") and value.get("network"):
        ck.warn((*path, "address"), f'address is unset with network "{value["network"]}"')
    for sub, msg in endpoint_errors(value, None, fqdn_ok=True):
        ck.error((*path, *sub), msg)


WORKLOAD_ENTRY = Obj(ENDPOINT.fields, rules=[_entry_rule])


def _non_negative(what: str) -> Int:
    return Int(lo=0, lo_msg=what + " must be non-negative")


def _probe_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    methods = [k for k in ("httpGet", "tcpSocket", "exec", "grpc") if k in value]
    if not methods:
        ck.error(path, "unknown health check method <nil>")
    http = value.get("httpGet")
    if http is not None:
        if msg := port_error(http.get("port", 0)):
            ck.error((*path, "httpGet", "port"), msg)
        if http.get("scheme", "") not in ("", "HTTP", "HTTPS"):
            ck.error((*path, "httpGet", "scheme"), 'httpGet.scheme must be one of "HTTPS", "HTTP"')
        for i, header in enumerate(http.get("httpHeaders") or []):
            if msg := probe_name_error(header.get("name", "")):
                ck.error((*path, "httpGet", "httpHeaders", i, "name"), msg)
    tcp = value.get("tcpSocket")
    if tcp is not None and (msg := port_error(tcp.get("port", 0))):
        ck.error((*path, "tcpSocket", "port"), msg)
    if "exec" in value and not (value["exec"] or {}).get("command"):
        ck.error((*path, "exec", "command"), "exec.command is required")


PROBE = Obj(
    {
        "initialDelaySeconds": _non_negative("initialDelaySeconds"),
        "timeoutSeconds": _non_negative("timeoutSeconds"),
        "periodSeconds": _non_negative("periodSeconds"),
        "successThreshold": _non_negative("successThreshold"),
        "failureThreshold": _non_negative("failureThreshold"),
        "httpGet": Obj(
            {
                "path": Str(),
                "port": Int(),
                "host": Str(),
                "scheme": Str(),
                "httpHeaders": ListOf(Obj({"name": Str(), "value": Str()})),
            },
            required=("port",),
        ),
        "tcpSocket": Obj({"host": Str(), "port": Int()}, required=("port",)),
        "exec": Obj({"command": ListOf(Str())}, required=("command",)),
        "grpc": Obj({"port": Int(), "service": Str()}),
    },
    rules=[_probe_rule],
)


def _group_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    for msg in label_errors((value.get("metadata") or {}).get("labels") or {}):
        ck.error((*path, "metadata", "labels"), f"invalid labels: {msg}")


WORKLOAD_GROUP = Obj(
    {
        "metadata": Obj({"labels": LABELS, "annotations": MapOf(Str())}),
        "template": Obj(ENDPOINT.fields),
        "probe": PROBE,
    },
    required=("template",),
    rules=[_group_rule],
)


def _proxy_config_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    if value.get("concurrency", 0) < 0:
        ck.error((*path, "concurrency"), "concurrency must be greater than or equal to 0")


PROXY_CONFIG = Obj(
    {
        "selector": SELECTOR,
        "concurrency": Int(),
        "environmentVariables": MapOf(Str()),
        "image": Obj({"imageType": Str()}),
    },
    rules=[_proxy_config_rule],
)
