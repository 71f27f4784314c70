"""Kubernetes kinds the lab applies beside Istio's: Namespace, ServiceAccount, Service, Deployment.

Validation follows the API server's own checks for the basics (names, labels, ports, replicas, the
Deployment selector against its template labels) with its wording (``Invalid value``, ``Required
value``); the rest of a PodSpec is stored as given, as the lab does not simulate containers.

Example::

    >>> problems = kubernetes_problems({"apiVersion": "apps/v1", "kind": "Deployment",
    ...     "metadata": {"name": "customer"}, "spec": {"selector": {"matchLabels": {"app": "customer"}},
    ...     "template": {"metadata": {"labels": {"app": "other"}},
    ...                  "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
    >>> problems[0][1]
    'Invalid value: map[string]string{"app":"other"}: `selector` does not match template `labels`'
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from meshkit.resources.kinds import KindInfo

Path = tuple[str | int, ...]
Finding = tuple[Path, str]

#: the Kubernetes kinds meshkit applies, by kind name (core group "" is apiVersion "v1")
KUBE_KINDS: Mapping[str, KindInfo] = {
    info.kind: info
    for info in (
        KindInfo("Namespace", "", "namespaces", ("ns",), ("v1",), namespaced=False),
        KindInfo("ServiceAccount", "", "serviceaccounts", ("sa",), ("v1",)),
        KindInfo("Service", "", "services", ("svc",), ("v1",)),
        KindInfo("Deployment", "apps", "deployments", ("deploy",), ("v1",)),
        # stored and listed, not simulated (the lab runs no containers and has no API server of its own)
        KindInfo("ConfigMap", "", "configmaps", ("cm",), ("v1",)),
        KindInfo("Secret", "", "secrets", (), ("v1",)),
        KindInfo("DaemonSet", "apps", "daemonsets", ("ds",), ("v1",)),
        KindInfo("StatefulSet", "apps", "statefulsets", ("sts",), ("v1",)),
        KindInfo("ReplicaSet", "apps", "replicasets", ("rs",), ("v1",)),
        KindInfo("Job", "batch", "jobs", (), ("v1",)),
        KindInfo("CronJob", "batch", "cronjobs", ("cj",), ("v1",)),
        KindInfo("Role", "rbac.authorization.k8s.io", "roles", (), ("v1",)),
        KindInfo("RoleBinding", "rbac.authorization.k8s.io", "rolebindings", (), ("v1",)),
        KindInfo("ClusterRole", "rbac.authorization.k8s.io", "clusterroles", (), ("v1",), namespaced=False),
        KindInfo("ClusterRoleBinding", "rbac.authorization.k8s.io", "clusterrolebindings", (), ("v1",),
                 namespaced=False),
        KindInfo("Ingress", "networking.k8s.io", "ingresses", ("ing",), ("v1",)),
        KindInfo("IngressClass", "networking.k8s.io", "ingressclasses", (), ("v1",), namespaced=False),
        KindInfo("NetworkPolicy", "networking.k8s.io", "networkpolicies", ("netpol",), ("v1",)),
        KindInfo("PodDisruptionBudget", "policy", "poddisruptionbudgets", ("pdb",), ("v1",)),
        KindInfo("HorizontalPodAutoscaler", "autoscaling", "horizontalpodautoscalers", ("hpa",), ("v2", "v1")),
        KindInfo("CSIDriver", "storage.k8s.io", "csidrivers", (), ("v1",), namespaced=False),
        KindInfo("CustomResourceDefinition", "apiextensions.k8s.io", "customresourcedefinitions", ("crd",),
                 ("v1",), namespaced=False),
        KindInfo("ValidatingWebhookConfiguration", "admissionregistration.k8s.io",
                 "validatingwebhookconfigurations", (), ("v1",), namespaced=False),
        KindInfo("MutatingWebhookConfiguration", "admissionregistration.k8s.io",
                 "mutatingwebhookconfigurations", (), ("v1",), namespaced=False),
    )
}
#: kinds that are stored as given and change nothing in the local mesh (apply says so)
STORED_ONLY = frozenset(KUBE_KINDS) - {"Namespace", "ServiceAccount", "Service", "Deployment"}
_PATH_SEGMENT = re.compile(r"^[^/%]+$")
#: listed by ``get`` but never applied (the local mesh's pods come from Deployments)
POD_KIND = KindInfo("Pod", "", "pods", ("po",), ("v1",))
#: apiVersions Kubernetes served once for these kinds and removed since (1.16)
_REMOVED = {
    "Deployment": ("extensions/v1beta1", "apps/v1beta1", "apps/v1beta2"),
}
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_PORT_PROTOCOLS = ("TCP", "UDP", "SCTP")
_SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")


def api_version(info: KindInfo) -> str:
    """``v1`` for the core group, ``apps/v1`` otherwise."""
    return f"{info.group}/{info.versions[0]}" if info.group else info.versions[0]


def is_kubernetes(data: Mapping[str, Any]) -> bool:
    """True when ``data`` names one of :data:`KUBE_KINDS` (served or removed apiVersion)."""
    kind, api = data.get("kind"), data.get("apiVersion")
    if not isinstance(kind, str) or kind not in KUBE_KINDS or not isinstance(api, str):
        return False
    return api in KUBE_KINDS[kind].api_versions or api in _REMOVED.get(kind, ())


def _go_map(labels: Mapping[str, Any]) -> str:
    inner = ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items()))
    return f"map[string]string{{{inner}}}"


def _dns_label(value: str) -> str | None:
    if len(value) > 63:
        return f'Invalid value: "{value}": must be no more than 63 characters'
    if not _DNS1123_LABEL.match(value):
        return (
            f'Invalid value: "{value}": a lowercase RFC 1123 label must consist of lower case alphanumeric '
            "characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
            "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        )
    return None


def _dns_subdomain(value: str) -> str | None:
    if len(value) > 253 or not all(_DNS1123_LABEL.match(p) for p in value.split(".")):
        return (
            f'Invalid value: "{value}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric '
            "characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
            "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        )
    return None


def _path_segment(value: str) -> str | None:
    if value in (".", "..") or not _PATH_SEGMENT.match(value):
        return f'Invalid value: "{value}": may not be \'.\' or \'..\' and may not contain \'/\' or \'%\''
    return None


def _dns1035(value: str) -> str | None:
    if len(value) > 63 or not _DNS1035_LABEL.match(value):
        return (
            f'Invalid value: "{value}": a DNS-1035 label must consist of lower case alphanumeric characters or '
            "'-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
            "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
        )
    return None


def _labels(value: Any, path: Path, out: list[Finding]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        out.append((path, f"Invalid value: {value!r}: must be a map of string keys to string values"))
        return {}
    clean: dict[str, str] = {}
    for key, val in value.items():
        key_s = str(key)
        name = key_s.rpartition("/")[2]
        if not name or len(name) > 63 or not _LABEL_NAME.match(name):
            out.append(
                (
                    path,
                    f'Invalid value: "{key_s}": name part must consist of alphanumeric characters, \'-\', \'_\' or '
                    "'.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
                    "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                )
            )
            continue
        if not isinstance(val, str):
            out.append(((*path, key_s), f"Invalid value: {val!r}: label values must be strings"))
            continue
        if len(val) > 63 or not _LABEL_VALUE.match(val):
            out.append(
                (
                    path,
                    f'Invalid value: "{val}": a valid label must be an empty string or consist of alphanumeric '
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
                    "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                )
            )
            continue
        clean[key_s] = val
    return clean


def _metadata(data: Mapping[str, Any], kind: str, out: list[Finding]) -> None:
    meta = data.get("metadata")
    if not isinstance(meta, dict):
        out.append((("metadata", "name"), "Required value: name or generateName is required"))
        return
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        out.append((("metadata", "name"), "Required value: name or generateName is required"))
    else:
        check = {"Namespace": _dns_label, "Service": _dns1035}.get(kind, _dns_subdomain)
        if kind in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"):
            check = _path_segment  # RBAC names may hold ":" ("system:auth-delegator")
        if msg := check(name):
            out.append((("metadata", "name"), msg))
    ns = meta.get("namespace")
    if ns is not None and KUBE_KINDS[kind].namespaced and (not isinstance(ns, str) or (msg := _dns_label(ns))):
        out.append((("metadata", "namespace"), msg or f"Invalid value: {ns!r}"))
    _labels(meta.get("labels"), ("metadata", "labels"), out)
    annotations = meta.get("annotations")
    if annotations is not None and not isinstance(annotations, dict):
        out.append((("metadata", "annotations"), "Invalid value: annotations must be a map of strings"))


def _port(value: Any, path: Path, out: list[Finding], what: str = "port") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        out.append((path, f"Invalid value: {value!r}: {what} must be an integer"))
    elif not 1 <= value <= 65535:
        out.append((path, f"Invalid value: {value}: must be between 1 and 65535, inclusive"))


def _service(spec: Mapping[str, Any], out: list[Finding]) -> None:
    kind = spec.get("type", "ClusterIP")
    if kind not in _SERVICE_TYPES:
        out.append((("spec", "type"), f'Unsupported value: "{kind}": supported values: "' + '", "'.join(
            _SERVICE_TYPES) + '"'))
    ports = spec.get("ports")
    if kind == "ExternalName":
        if not spec.get("externalName"):
            out.append((("spec", "externalName"), "Required value"))
    elif not ports:
        out.append((("spec", "ports"), "Required value"))
    if ports is None or not isinstance(ports, list):
        if ports is not None:
            out.append((("spec", "ports"), "Invalid value: must be a list of ports"))
        ports = []
    names: set[str] = set()
    numbers: set[tuple[Any, str]] = set()
    for i, port in enumerate(ports or []):
        base: Path = ("spec", "ports", i)
        if not isinstance(port, dict):
            out.append((base, "Invalid value: a port must be an object"))
            continue
        name = port.get("name")
        if len(ports) > 1 and not name:
            out.append(((*base, "name"), "Required value"))
        elif name:
            if msg := _dns_label(str(name)):
                out.append(((*base, "name"), msg))
            elif name in names:
                out.append(((*base, "name"), f'Duplicate value: "{name}"'))
            names.add(str(name))
        if "port" not in port:
            out.append(((*base, "port"), "Required value"))
        else:
            _port(port["port"], (*base, "port"), out)
        protocol = port.get("protocol", "TCP")
        if protocol not in _PORT_PROTOCOLS:
            out.append(((*base, "protocol"), f'Unsupported value: "{protocol}": supported values: "SCTP", "TCP", '
                        '"UDP"'))
        key = (port.get("port") if isinstance(port.get("port"), int) else -1, str(protocol))
        if key in numbers and key[0] != -1:
            out.append(((*base,), f'Duplicate value: core.ServicePort{{Port:{key[0]}, Protocol:"{protocol}"}}'))
        numbers.add(key)
        target = port.get("targetPort")
        if isinstance(target, int) and not isinstance(target, bool):
            _port(target, (*base, "targetPort"), out)
    _labels(spec.get("selector"), ("spec", "selector"), out)


def _deployment(spec: Mapping[str, Any], out: list[Finding]) -> None:
    replicas = spec.get("replicas", 1)
    if isinstance(replicas, bool) or not isinstance(replicas, int):
        out.append((("spec", "replicas"), f"Invalid value: {replicas!r}: must be an integer"))
    elif replicas < 0:
        out.append((("spec", "replicas"), f"Invalid value: {replicas}: must be greater than or equal to 0"))
    selector = spec.get("selector")
    match: dict[str, str] = {}
    if not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        out.append((("spec", "selector"), "Required value"))
    else:
        match = _labels(selector.get("matchLabels"), ("spec", "selector", "matchLabels"), out)
    template = spec.get("template")
    template = template if isinstance(template, dict) else {}
    tmeta: dict[str, Any] = template["metadata"] if isinstance(template.get("metadata"), dict) else {}
    labels = _labels(tmeta.get("labels"), ("spec", "template", "metadata", "labels"), out)
    if match and any(labels.get(k) != v for k, v in match.items()):
        out.append(
            (
                ("spec", "template", "metadata", "labels"),
                f"Invalid value: {_go_map(labels)}: `selector` does not match template `labels`",
            )
        )
    pod: dict[str, Any] = template["spec"] if isinstance(template.get("spec"), dict) else {}
    containers = pod.get("containers")
    if not isinstance(containers, list) or not containers:
        out.append((("spec", "template", "spec", "containers"), "Required value"))
        return
    seen: set[str] = set()
    for i, c in enumerate(containers):
        base: Path = ("spec", "template", "spec", "containers", i)
        if not isinstance(c, dict):
            out.append((base, "Invalid value: a container must be an object"))
            continue
        name = c.get("name")
        if not name:
            out.append(((*base, "name"), "Required value"))
        elif msg := _dns_label(str(name)):
            out.append(((*base, "name"), msg))
        elif name in seen:
            out.append(((*base, "name"), f'Duplicate value: "{name}"'))
        seen.add(str(name))
        if not c.get("image"):
            out.append(((*base, "image"), "Required value"))
        for j, p in enumerate(c.get("ports") or []):
            if isinstance(p, dict):
                _port(p.get("containerPort"), (*base, "ports", j, "containerPort"), out, "containerPort")


def kubernetes_problems(data: Mapping[str, Any]) -> list[Finding]:
    """The API server's validation errors for one Kubernetes object, as ``(field path, message)``."""
    kind, api = str(data.get("kind")), str(data.get("apiVersion"))
    if api in _REMOVED.get(kind, ()):
        return [(("apiVersion",), f'no matches for kind "{kind}" in version "{api}" (removed in Kubernetes 1.16): '
                 f"use apiVersion {api_version(KUBE_KINDS[kind])}")]
    out: list[Finding] = []
    _metadata(data, kind, out)
    spec = data.get("spec")
    if spec is not None and not isinstance(spec, dict):
        out.append((("spec",), "Invalid value: spec must be an object"))
        return out
    if kind == "Service":
        _service(spec or {}, out)
    elif kind == "Deployment":
        _deployment(spec or {}, out)
    return out


def normalise_kubernetes(data: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """The stored shape: the object as given, namespace filled in (none for a Namespace)."""
    obj = copy.deepcopy(dict(data))
    meta = obj.setdefault("metadata", {})
    meta["labels"] = dict(meta.get("labels") or {})
    meta["annotations"] = dict(meta.get("annotations") or {})
    if not KUBE_KINDS[obj["kind"]].namespaced:
        meta.pop("namespace", None)
    else:
        meta["namespace"] = meta.get("namespace") or namespace
    if obj["kind"] == "Deployment":
        obj.setdefault("spec", {}).setdefault("replicas", 1)
    obj.pop("status", None)
    return obj


def selector_error(selector: str) -> str | None:
    """kubectl's complaint about a ``-l`` selector it cannot parse, or ``None``."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key = re.split(r"!=|==|=", term.lstrip("!"), maxsplit=1)[0].strip()
        if not key or not _LABEL_NAME.match(key.rpartition("/")[2]):
            return f'unable to parse requirement: invalid label key "{key}"'
    return None


def selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Kubernetes equality-based selectors: ``app=customer,version!=v2``, ``app``, ``!canary``.

    Example::

        >>> selector_matches("app=customer,version!=v2", {"app": "customer", "version": "v1"})
        True
    """
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True
