"""Validate documents like Istio's admission webhook and normalise them to one stored shape.

Every problem is located (file, document, line, kind/name, field path). Nothing is normalised for
callers when any document has an error: apply is all-or-nothing.

Example::

    >>> from meshkit.resources.loader import parse_text
    >>> report = validate_documents(parse_text('''
    ... apiVersion: networking.istio.io/v1alpha3
    ... kind: VirtualService
    ... metadata: {name: recommendation}
    ... spec:
    ...   hosts: [recommendation]
    ...   http:
    ...   - route:
    ...     - destination: {host: recommendation, subset: version-v1}
    ... ''', "vs.yaml"))
    >>> report.resources[0]["apiVersion"], report.resources[0]["metadata"]["namespace"]
    ('networking.istio.io/v1', 'tutorial')
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from meshkit.errors import InvalidConfig
from meshkit.resources.annotations import annotation_errors
from meshkit.resources.authentication import PEER_AUTHENTICATION, REQUEST_AUTHENTICATION
from meshkit.resources.authorization import AUTHORIZATION_POLICY
from meshkit.resources.common import dns1123_label_error, dns1123_subdomain_error
from meshkit.resources.destinationrule import DESTINATION_RULE
from meshkit.resources.envoyfilter import ENVOY_FILTER
from meshkit.resources.gateway import GATEWAY, SERVICE_ENTRY
from meshkit.resources.gatewayapi import GATEWAY_API_SPECS
from meshkit.resources.kinds import KINDS, KindInfo, key_kind, lookup
from meshkit.resources.kubernetes import is_kubernetes, kubernetes_problems, normalise_kubernetes
from meshkit.resources.legacy import explain_legacy
from meshkit.resources.model import Document, Origin, Path, Problem, format_path
from meshkit.resources.schema import Checker, MapOf, Schema, Str, describe
from meshkit.resources.sidecar import SIDECAR
from meshkit.resources.simulation import not_simulated
from meshkit.resources.telemetry import TELEMETRY
from meshkit.resources.virtualservice import VIRTUAL_SERVICE, normalise_virtual_service
from meshkit.resources.wasmplugin import WASM_PLUGIN
from meshkit.resources.workloadentry import PROXY_CONFIG, WORKLOAD_ENTRY, WORKLOAD_GROUP

SOURCE_API_ANNOTATION = "meshkit.io/source-api-version"
PROFILES = ("current", "tutorial")

SPECS: Mapping[str, Schema] = {
    "VirtualService": VIRTUAL_SERVICE,
    "DestinationRule": DESTINATION_RULE,
    "Gateway": GATEWAY,
    "ServiceEntry": SERVICE_ENTRY,
    "EnvoyFilter": ENVOY_FILTER,
    "PeerAuthentication": PEER_AUTHENTICATION,
    "AuthorizationPolicy": AUTHORIZATION_POLICY,
    "RequestAuthentication": REQUEST_AUTHENTICATION,
    "Telemetry": TELEMETRY,
    "Sidecar": SIDECAR,
    "WorkloadEntry": WORKLOAD_ENTRY,
    "WorkloadGroup": WORKLOAD_GROUP,
    "ProxyConfig": PROXY_CONFIG,
    "WasmPlugin": WASM_PLUGIN,
    **GATEWAY_API_SPECS,
}
#: Istio kinds that exist but that the local mesh does not model
UNSUPPORTED_ISTIO_KINDS: tuple[str, ...] = ()
_TOP_LEVEL = ("apiVersion", "kind", "metadata", "spec", "status")
_IGNORED_META = (
    "generateName",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
    "ownerReferences",
    "managedFields",
    "selfLink",
)
_LABELS = MapOf(Str())


@dataclass
class ValidationReport:
    """Result of :func:`validate_documents`. ``resources`` is filled only when there are no errors.

    ``origins`` maps each resource's ``canonical_key`` to where it came from (for analyze's file:line).
    """

    resources: list[dict[str, Any]] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    origins: dict[tuple[str, str, str], Origin] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_for_errors(self) -> None:
        """Raise :class:`meshkit.errors.InvalidConfig` with one formatted line per error."""
        if self.errors:
            raise InvalidConfig([p.format() for p in self.errors])


class _Subject:
    """What a document's problems are about, as far as the document lets us tell."""

    def __init__(self, doc: Document, default_namespace: str) -> None:
        data: dict[str, Any] = doc.data if isinstance(doc.data, dict) else {}
        meta: dict[str, Any] = data["metadata"] if isinstance(data.get("metadata"), dict) else {}
        self.doc = doc
        self.kind: str = data["kind"] if isinstance(data.get("kind"), str) else ""
        self.name: str = meta["name"] if isinstance(meta.get("name"), str) else ""
        ns = meta.get("namespace")
        self.namespace = ns if isinstance(ns, str) and ns else default_namespace

    def problem(self, level: str, code: str, path: Path, message: str, line_of: Path | None = None) -> Problem:
        """A problem about ``path``; ``line_of`` points the line elsewhere (e.g. at ``kind``)."""
        return Problem(
            level,
            code,
            message,
            source=self.doc.source,
            index=self.doc.index,
            kind=self.kind,
            namespace=self.namespace,
            name=self.name,
            field=format_path(path),
            line=self.doc.line_of(path if line_of is None else line_of),
        )


def _kind_problem(data: dict[str, Any]) -> tuple[Path, str] | None:
    api, kind = data.get("apiVersion"), data.get("kind")
    for key, value in (("apiVersion", api), ("kind", kind)):
        if value is None:
            return (key,), f'required field "{key}" is missing'
        if not isinstance(value, str):
            return (key,), f"expected string, got {describe(value)}"
    assert isinstance(api, str) and isinstance(kind, str)
    gateway_api = api.startswith("gateway.networking.k8s.io/")
    supported = ", ".join(i.kind for i in KINDS.values() if i.group.endswith(".istio.io") != gateway_api)
    info = lookup(api, kind)
    if info is None:
        close = [i.kind for i in KINDS.values() if i.kind.lower() == kind.lower()]
        if close:
            return ("kind",), f'unknown kind "{kind}": did you mean "{close[0]}"? (kinds are case-sensitive)'
        if gateway_api:
            return ("kind",), (
                f'kind "{kind}" ({api}) is a Gateway API kind the local mesh does not model; '
                f"supported Gateway API kinds: {supported}"
            )
        if kind in UNSUPPORTED_ISTIO_KINDS:
            return (
                "kind",
            ), f"{kind} ({api}) is an Istio kind the local mesh does not model; supported kinds: {supported}"
        return (
            "kind",
        ), f'kind "{kind}" ({api}) is not an Istio resource meshkit can apply; supported kinds: {supported}'
    if api not in info.api_versions:
        return ("apiVersion",), (
            f'no matches for kind "{kind}" in version "{api}": served versions are ' + ", ".join(info.api_versions)
        )
    return None


def _check_metadata(meta: Any, ck: Checker) -> None:
    if meta is None:
        ck.error(("metadata",), 'required field "metadata" is missing')
        return
    if not isinstance(meta, dict):
        ck.error(("metadata",), f"expected object, got {describe(meta)}")
        return
    for key, value in meta.items():
        path = ("metadata", str(key))
        if key == "name":
            if not isinstance(value, str):
                ck.error(path, f"expected string, got {describe(value)}")
            elif msg := dns1123_subdomain_error(value):
                ck.error(path, msg)
        elif key == "namespace":
            if not isinstance(value, str):
                ck.error(path, f"expected string, got {describe(value)}")
            elif msg := dns1123_label_error(value):
                ck.error(path, msg.replace("invalid name", "invalid namespace"))
        elif key in ("labels", "annotations"):
            if value is not None:
                _LABELS.check(value, path, ck)
        elif key not in _IGNORED_META:
            ck.error(path, f'unknown field "{key}"')
    if meta.get("name") is None:
        ck.error(("metadata", "name"), 'required field "name" is missing')


def _drop_nulls(node: Any) -> Any:
    """Kubernetes prunes null fields of structural schemas; so do we, so compilers never see None."""
    if isinstance(node, dict):
        return {k: _drop_nulls(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [_drop_nulls(v) for v in node]
    return node


def _normalise(data: dict[str, Any], info: KindInfo, namespace: str) -> dict[str, Any]:
    meta = data["metadata"]
    annotations = dict(meta.get("annotations") or {})
    annotations[SOURCE_API_ANNOTATION] = data["apiVersion"]
    spec = _drop_nulls(copy.deepcopy(data.get("spec") or {}))
    if info.kind == "VirtualService":
        normalise_virtual_service(spec)
    return {
        "apiVersion": info.api_version,
        "kind": info.kind,
        "metadata": {
            "name": meta["name"],
            "namespace": namespace,
            "labels": dict(meta.get("labels") or {}),
            "annotations": annotations,
        },
        "spec": spec,
    }


#: etcd's default --max-request-bytes (1.5 MiB): the largest object a Kubernetes cluster stores
MAX_OBJECT_BYTES = 1536 * 1024


def object_size(data: Any) -> int:
    """The size of ``data`` as the JSON the API server would store (compact, UTF-8)."""
    try:
        return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8", "replace"))
    except (ValueError, TypeError, RecursionError):
        return 0  # not JSON at all: the schema check says what is wrong with it


def validate_document(
    doc: Document, profile: str = "current", default_namespace: str = "tutorial"
) -> tuple[dict[str, Any] | None, list[Problem]]:
    """Validate one document: ``(normalised resource or None, problems)``."""
    subject = _Subject(doc, default_namespace)
    problems = [doc.error] if doc.error else []
    data = doc.data
    if data is None:
        return None, problems
    if not isinstance(data, dict):
        problems.append(
            subject.problem(
                "Error",
                "IST0106",
                (),
                f"a resource must be a mapping with apiVersion, kind, metadata and spec; got {describe(data)}",
            )
        )
        return None, problems
    if is_kubernetes(data):
        return _kubernetes(doc, subject, data, problems)
    legacy = explain_legacy(data)
    if legacy:
        problems.append(subject.problem("Error", "IST0002", (), legacy, line_of=("kind",)))
        return None, problems
    kind_problem = _kind_problem(data)
    if kind_problem:
        problems.append(subject.problem("Error", "IST0106", *kind_problem))
        return None, problems
    size = object_size(data)
    if size > MAX_OBJECT_BYTES:
        # etcd's request limit: the API server passes its refusal on as is
        problems.append(subject.problem(
            "Error", "IST0106", (),
            f"etcdserver: request is too large (the object is {size} bytes as JSON; at most {MAX_OBJECT_BYTES})"))
        return None, problems
    info = lookup(data["apiVersion"], data["kind"])
    assert info is not None
    meta: dict[str, Any] = data["metadata"] if isinstance(data.get("metadata"), dict) else {}
    annotations: dict[str, Any] = meta["annotations"] if isinstance(meta.get("annotations"), dict) else {}
    labels: dict[str, Any] = meta["labels"] if isinstance(meta.get("labels"), dict) else {}
    ck = Checker(
        profile=profile, namespace=subject.namespace, name=subject.name, annotations=annotations, labels=labels
    )
    for key in data:
        if key not in _TOP_LEVEL:
            ck.error((str(key),), f'unknown field "{key}"')
    _check_metadata(data.get("metadata"), ck)
    SPECS[info.key].check({} if data.get("spec") is None else data["spec"], ("spec",), ck)
    if info.group.endswith("istio.io"):
        for key, message in annotation_errors(info.kind, subject.namespace, subject.name, annotations):
            ck.error(("metadata", "annotations", key), message)
    if not ck.error_count:
        for path, message in not_simulated(info.kind, data.get("spec") or {}):
            ck.warn(path, message)
    problems += [subject.problem(f.level, f.code, f.path, f.message) for f in ck.findings]
    if any(p.level == "Error" for p in problems):
        return None, problems
    return _normalise(data, info, subject.namespace), problems


def _kubernetes(
    doc: Document, subject: _Subject, data: dict[str, Any], problems: list[Problem]
) -> tuple[dict[str, Any] | None, list[Problem]]:
    """Kubernetes objects are checked as the API server checks them (see resources.kubernetes)."""
    problems += [subject.problem("Error", "IST0106", path, msg) for path, msg in kubernetes_problems(data)]
    if any(p.level == "Error" for p in problems):
        return None, problems
    return normalise_kubernetes(data, subject.namespace), problems


def validate_documents(
    docs: list[Document], profile: str = "current", default_namespace: str = "tutorial"
) -> ValidationReport:
    """Validate every document; ``profile`` is ``current`` or ``tutorial`` (Istio 1.9-era rules).

    ``resources`` holds the normalised resources (``apiVersion: <group>/v1``, namespace filled in)
    only when no document has an error.
    """
    if profile not in PROFILES and not profile.startswith("tutorial"):
        raise InvalidConfig([f'unknown profile "{profile}": use one of {", ".join(PROFILES)}'])
    report = ValidationReport()
    resources: list[dict[str, Any]] = []
    first_seen: dict[tuple[str, str, str], Document] = {}
    for doc in docs:
        resource, problems = validate_document(doc, profile, default_namespace)
        for p in problems:
            (report.errors if p.level == "Error" else report.warnings).append(p)
        if resource is None:
            continue
        meta = resource["metadata"]
        key = (key_kind(resource), meta.get("namespace", ""), meta["name"])
        if key in first_seen:
            earlier = first_seen[key]
            report.warnings.append(
                Problem(
                    "Warning",
                    "DUPLICATE",
                    f"defined more than once (also {earlier.source}, document "
                    f"{earlier.index + 1}); the last definition wins",
                    source=doc.source,
                    index=doc.index,
                    kind=resource["kind"],
                    namespace=key[1],
                    name=key[2],
                    line=doc.line,
                )
            )
            resources = [
                r for r in resources if (key_kind(r), r["metadata"].get("namespace", ""), r["metadata"]["name"]) != key
            ]
        first_seen[key] = doc
        resources.append(resource)
        report.origins[key] = Origin(doc.source, doc.index, doc.line, doc.lines)
    if not report.errors:
        report.resources = resources
    else:
        report.origins = {}
    return report
