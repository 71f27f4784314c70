"""A small wrapper over the kubernetes client: Istio objects by server-side apply, pods, deployments.

Everything goes through :class:`kubernetes.dynamic.DynamicClient`, so a kind is resolved by the
cluster's own discovery (a missing CRD shows up as "not served", not as a guess) and objects come
back as plain dicts. Applies are server-side (``fieldManager=meshkit``, ``force=true``); note that
the dynamic client's ``patch(server_side=True)`` silently sends a strategic-merge patch instead, so
only ``server_side_apply`` is used. Every failure is translated into meshkit's errors.

Example::

    kc = KubeClient.from_kubeconfig(context="kind-meshkit", namespace="tutorial")
    kc.apply(vs_doc)                     # "created" | "configured" | "unchanged"
    [p.name for p in kc.pods()]
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import dynamic
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from meshkit.backends.base import Pod
from meshkit.backends.kind.apierrors import Where, translate
from meshkit.errors import BackendUnavailable, MeshkitError, NotFound

FIELD_MANAGER = "meshkit"
SIDECAR = "istio-proxy"
#: the Istio kinds meshkit lists and deletes, at the API version it talks (v1 where served)
ISTIO_KINDS: tuple[tuple[str, str], ...] = (
    ("networking.istio.io/v1", "VirtualService"),
    ("networking.istio.io/v1", "DestinationRule"),
    ("networking.istio.io/v1", "Gateway"),
    ("networking.istio.io/v1", "ServiceEntry"),
    ("networking.istio.io/v1", "Sidecar"),
    ("networking.istio.io/v1", "WorkloadEntry"),
    ("networking.istio.io/v1", "WorkloadGroup"),
    ("networking.istio.io/v1beta1", "ProxyConfig"),
    ("extensions.istio.io/v1alpha1", "WasmPlugin"),
    ("networking.istio.io/v1alpha3", "EnvoyFilter"),
    ("security.istio.io/v1", "PeerAuthentication"),
    ("security.istio.io/v1", "AuthorizationPolicy"),
    ("security.istio.io/v1", "RequestAuthentication"),
    ("telemetry.istio.io/v1", "Telemetry"),
    # Gateway API (the namespaced kinds; GatewayClasses come with Istio)
    ("gateway.networking.k8s.io/v1", "Gateway"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("gateway.networking.k8s.io/v1", "GRPCRoute"),
    ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant"),
)
_DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def normalise(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An object as meshkit shows it: apiVersion, kind, metadata (name, namespace, labels...), spec."""
    meta = obj.get("metadata") or {}
    out_meta: dict[str, Any] = {"name": meta.get("name", ""), "namespace": meta.get("namespace", "")}
    if meta.get("labels"):
        out_meta["labels"] = dict(meta["labels"])
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _DROPPED_ANNOTATIONS}
    if annotations:
        out_meta["annotations"] = annotations
    out: dict[str, Any] = {
        "apiVersion": obj.get("apiVersion", ""),
        "kind": obj.get("kind", ""),
        "metadata": out_meta,
    }
    if "spec" in obj:
        out["spec"] = obj["spec"]
    if str(obj.get("apiVersion", "")).startswith("gateway.networking.k8s.io/") and obj.get("status"):
        out["status"] = obj["status"]  # the conditions Istio's controller wrote back
    return out


def deployment_of(pod: Mapping[str, Any]) -> str:
    """The Deployment owning a pod: its ReplicaSet's name minus the pod-template hash."""
    meta = pod.get("metadata") or {}
    rs_hash = (meta.get("labels") or {}).get("pod-template-hash", "")
    for owner in meta.get("ownerReferences") or []:
        if owner.get("kind") == "ReplicaSet" and rs_hash and owner["name"].endswith("-" + rs_hash):
            return str(owner["name"][: -len(rs_hash) - 1])
    return ""


def pod_from_object(obj: Mapping[str, Any]) -> Pod:
    """A :class:`Pod` from a Kubernetes Pod dict (2/2 Ready means app and sidecar both ready)."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    labels = meta.get("labels") or {}
    # Istio may inject the proxy as a native sidecar (a restartable init container)
    statuses = list(status.get("containerStatuses") or [])
    statuses += [s for s in status.get("initContainerStatuses") or [] if s.get("name") == SIDECAR]
    names = {c.get("name") for c in spec.get("containers") or []} | {
        c.get("name") for c in spec.get("initContainers") or [] if c.get("name") == SIDECAR
    }
    ready_count = sum(1 for s in statuses if s.get("ready"))
    deleting = bool(meta.get("deletionTimestamp"))
    # istio-cni marks the pods it enrolled in ambient (the redirection is set up in the pod's netns)
    enrolled = (meta.get("annotations") or {}).get("ambient.istio.io/redirection") == "enabled"
    dataplane = "sidecar" if SIDECAR in names else "ambient" if enrolled else "none"
    return Pod(
        name=meta.get("name", ""),
        app=labels.get("app", ""),
        version=labels.get("version", ""),
        deployment=deployment_of(obj),
        ready=bool(statuses) and ready_count == len(statuses) and status.get("phase") == "Running" and not deleting,
        sidecar=SIDECAR in names,
        service_account=spec.get("serviceAccountName", ""),
        namespace=meta.get("namespace", ""),
        restarts=sum(int(s.get("restartCount", 0)) for s in statuses),
        extra={
            "phase": "Terminating" if deleting else status.get("phase", ""),
            "ip": status.get("podIP", ""),
            "containers": f"{ready_count}/{len(statuses)}",
            "dataplane": dataplane,
        },
    )


class KubeClient:
    """One namespace of one cluster, seen through the dynamic client."""

    def __init__(self, api_client: k8s.ApiClient, where: Where, cache_dir: Path | None = None) -> None:
        self.api_client, self.where = api_client, where
        self._cache_dir, self._own_cache = cache_dir, False
        self._dyn: dynamic.DynamicClient | None = None

    @classmethod
    def from_kubeconfig(
        cls, context: str, namespace: str, config_file: str | None = None, cache_dir: Path | None = None
    ) -> KubeClient:
        """Connect through the user's kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``) and ``context``."""
        try:
            api = k8s_config.new_client_from_config(config_file=config_file, context=context)
        except (k8s_config.ConfigException, OSError, ValueError) as exc:
            raise BackendUnavailable(
                f"no usable kubeconfig context {context!r} ({exc}). List contexts with: kubectl config "
                "get-contexts; for the kind backend run meshkit up --backend kind, which creates kind-meshkit"
            ) from None
        return cls(api, Where(context, namespace, api.configuration.host), cache_dir)

    @contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        try:
            yield
        except MeshkitError:
            raise
        except ResourceNotFoundError:
            raise NotFound(
                f"cannot {doing}: the cluster of context {self.where.context} does not serve that kind. "
                "Is Istio installed? Check with: kubectl --context "
                f"{self.where.context} get crd virtualservices.networking.istio.io"
            ) from None
        except Exception as exc:
            raise translate(exc, doing=doing, where=self.where) from None

    @property
    def dyn(self) -> dynamic.DynamicClient:
        if self._dyn is None:
            # the library's default cache is shared by every process in /tmp; keep ours private. A stale
            # entry heals itself: a lookup miss makes the discoverer refetch (CRDs appear during install).
            if self._cache_dir is None:
                self._cache_dir = Path(tempfile.mkdtemp(prefix="meshkit-discovery-"))
                self._own_cache = True
            cache = self._cache_dir / f"discovery-{re.sub(r'[^A-Za-z0-9_.-]', '_', self.where.context)}.json"
            with self._translated("read the API server's discovery"):
                self._dyn = dynamic.DynamicClient(self.api_client, cache_file=str(cache))
        return self._dyn

    def resource(self, api_version: str, kind: str) -> Any:
        with self._translated(f"look up {kind} ({api_version})"):
            return self.dyn.resources.get(api_version=api_version, kind=kind)

    def resolve_kind(self, text: str) -> tuple[str, str]:
        """(apiVersion, Kind) of an Istio kind given as Kind, plural, singular or short name, any case."""
        wanted = text.strip().lower()
        for api_version, kind in ISTIO_KINDS:
            try:
                res = self.dyn.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                continue
            names = {kind.lower(), str(res.name).lower(), str(res.singular_name or "").lower()}
            names |= {s.lower() for s in res.short_names or []}
            group = api_version.split("/")[0]
            # Istio's Gateway is listed first, so a bare "gateway" means it, as it does for istioctl users
            if wanted in names or wanted in {f"{res.name}.{group}", f"{kind.lower()}.{group}"}:
                return api_version, kind
        known = ", ".join(kind for _, kind in ISTIO_KINDS)
        raise NotFound(f"unknown Istio kind {text!r} in context {self.where.context}; meshkit knows: {known}")

    # objects ---------------------------------------------------------------------------------
    def get_object(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        res = self.resource(api_version, kind)
        ns = namespace or self.where.namespace
        try:
            return dict(self.dyn.get(res, name=name, namespace=ns).to_dict())
        except Exception as exc:
            if getattr(exc, "status", None) == 404 and "namespaces" not in str(getattr(exc, "body", "")):
                return None
            raise translate(exc, doing=f"get {kind.lower()}/{name}", where=self.where) from None

    def list_objects(
        self, api_version: str, kind: str, label_selector: str | None = None, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        res = self.resource(api_version, kind)
        with self._translated(f"list {res.name}"):
            listed = self.dyn.get(
                res, namespace=namespace or self.where.namespace, label_selector=label_selector
            ).to_dict()
        return [dict(item) for item in listed.get("items") or []]

    def apply(self, doc: Mapping[str, Any], dry_run: bool = False) -> str:
        """Server-side apply ``doc``; returns created / configured / unchanged (kubectl's words)."""
        kind, name = doc["kind"], doc["metadata"]["name"]
        ns = doc["metadata"].get("namespace") or self.where.namespace
        res = self.resource(doc["apiVersion"], kind)
        before = None if dry_run else self.get_object(doc["apiVersion"], kind, name, ns)
        body = {**doc, "metadata": {**doc["metadata"], "namespace": ns}}
        extra = {"dry_run": "All"} if dry_run else {}
        with self._translated(f"apply {kind.lower()}/{name}"):
            after = self.dyn.server_side_apply(
                res,
                body=body,
                name=name,
                namespace=ns,
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
                **extra,
            )
        if before is None:
            return "created"
        same = before["metadata"].get("resourceVersion") == after.metadata.resourceVersion
        return "unchanged" if same else "configured"

    def delete_object(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> None:
        res = self.resource(api_version, kind)
        with self._translated(f"delete {kind.lower()}/{name}"):
            self.dyn.delete(res, name=name, namespace=namespace or self.where.namespace)

    def merge_patch(self, api_version: str, kind: str, name: str, patch: Mapping[str, Any]) -> None:
        res = self.resource(api_version, kind)
        with self._translated(f"patch {kind.lower()}/{name}"):
            self.dyn.patch(
                res,
                body=dict(patch),
                name=name,
                namespace=self.where.namespace,
                content_type="application/merge-patch+json",
                field_manager=FIELD_MANAGER,
            )

    # pods and raw reads ----------------------------------------------------------------------
    def pods(self, label_selector: str | None = None, namespace: str | None = None) -> list[Pod]:
        objs = self.list_objects("v1", "Pod", label_selector, namespace)
        return sorted((pod_from_object(o) for o in objs), key=lambda p: (p.app, p.version, p.name))

    def get_text(self, path: str, query: list[tuple[str, Any]] | None = None, doing: str = "") -> str:
        """GET an arbitrary API path (pod logs, the service proxy) and return the body as text."""
        with self._translated(doing or f"read {path}"):
            resp = self.dyn.request(
                "get", path, query_params=list(query or []), serialize=False, header_params={"Accept": "*/*"}
            )
        data = resp.data if hasattr(resp, "data") else resp
        return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)

    def service_proxy_get(
        self, namespace: str, service: str, path: str, query: list[tuple[str, Any]] | None = None
    ) -> str:
        """GET ``path`` on ``service`` (``name:port``) through the API server's service proxy."""
        return self.get_text(
            f"/api/v1/namespaces/{namespace}/services/{service}/proxy/{path.lstrip('/')}",
            query,
            doing=f"read {path} from service {service} in {namespace}",
        )

    def pod_log(self, pod: str, container: str, since_seconds: int | None = None, tail_lines: int | None = None) -> str:
        query: list[tuple[str, Any]] = [("container", container), ("timestamps", "false")]
        if since_seconds:
            query.append(("sinceSeconds", since_seconds))
        if tail_lines:
            query.append(("tailLines", tail_lines))
        return self.get_text(
            f"/api/v1/namespaces/{self.where.namespace}/pods/{pod}/log",
            query,
            doing=f"read the {container} log of pod {pod}",
        )

    def close(self) -> None:
        close: Callable[[], None] | None = getattr(self.api_client, "close", None)
        if close is not None:
            close()
        if self._own_cache and self._cache_dir is not None:
            shutil.rmtree(self._cache_dir, ignore_errors=True)
