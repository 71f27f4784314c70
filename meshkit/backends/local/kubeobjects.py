"""The Kubernetes side of the local control plane: Namespaces, ServiceAccounts, Services, Deployments.

Services decide what the mesh's registry (and cluster DNS) knows: a proxy builds a cluster per
Service, whose endpoints are the pods its selector picks. A Deployment whose image is one of the
tutorial's (``quay.io/rhdevelopers/istio-tutorial-<service>``, the advanced chapters'
``example/<service>:<tag>``) or the project's own (``meshkit-sample``) runs that sample, with the
pod template's labels; any other image is stored and runs nothing (the lab runs no containers).

Example::

    >>> spec, warning = deployment_spec({"kind": "Deployment", "metadata": {"name": "preference-v2"},
    ...     "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "preference", "version": "v2"}},
    ...     "spec": {"containers": [{"name": "p", "image": "example/preference:v2"}]}}}})
    >>> spec.service, spec.version, spec.name, warning
    ('preference', 'v2', 'preference-v2', None)
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from meshkit.backends.local.store import ResourceStore
from meshkit.backends.local.workloads import GATEWAY, Deployments, DeploymentSpec, PodState
from meshkit.resources.kubernetes import STORED_ONLY, selector_matches

SAMPLE = ("customer", "preference", "recommendation")
_TUTORIAL_IMAGE = re.compile(r"(?:^|/)istio-tutorial-(customer|preference|recommendation)(?:[:@].*)?$")
_EXAMPLE_IMAGE = re.compile(r"(?:^|/)example/(customer|preference|recommendation)(?::([\w.-]+))?$")
_OWN_IMAGE = re.compile(r"(?:^|/)meshkit-sample(?:[:@].*)?$")
_CURL_IMAGE = re.compile(r"(?:^|/)(?:curlimages/curl|curl|sleep)(?:[:@].*)?$")
INJECT = "sidecar.istio.io/inject"


def _arg(args: list[Any], flag: str) -> str | None:
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return str(args[i + 1])
        if isinstance(a, str) and a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


#: the tutorial's slow v2 ("Modify recommendation:v2 to have timeout"): its timeout() sleeps 3 s
TIMEOUT_IMAGE_DELAY = 3.0


def _sample(container: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """(service, version from the image or args) when the container runs one of the lab's samples."""
    image = str(container.get("image", ""))
    if m := _TUTORIAL_IMAGE.search(image):
        return m.group(1), None
    if m := _EXAMPLE_IMAGE.search(image):
        return m.group(1), m.group(2)
    if _OWN_IMAGE.search(image):
        args = [*(container.get("command") or []), *(container.get("args") or [])]
        service = _arg(args, "--service")
        return (service, _arg(args, "--version")) if service in SAMPLE else None
    if _CURL_IMAGE.search(image):
        return "curl", None
    return None


def deployment_spec(obj: Mapping[str, Any]) -> tuple[DeploymentSpec | None, str | None]:
    """The pods a Deployment asks for, or ``(None, why it runs no pods here)``."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    template = spec.get("template") or {}
    tmeta, pod = template.get("metadata") or {}, template.get("spec") or {}
    labels = {str(k): str(v) for k, v in (tmeta.get("labels") or {}).items()}
    found = [s for c in pod.get("containers") or [] if (s := _sample(c))]
    name = str(meta.get("name", ""))
    if not found:
        images = ", ".join(str(c.get("image", "")) for c in pod.get("containers") or [])
        return None, (
            f"deployment {name}: the local mesh runs the tutorial's images (quay.io/rhdevelopers/istio-tutorial-*, "
            f"example/<service>:<tag>, meshkit-sample, curl); {images} is stored but runs no pods"
        )
    service, image_version = found[0]
    version = labels.get("version") or image_version or "v1"
    annotations = {**(tmeta.get("annotations") or {}), **{k: v for k, v in labels.items() if k == INJECT}}
    sidecar = str(annotations.get(INJECT, "true")).lower() != "false"
    account = str(pod.get("serviceAccountName") or pod.get("serviceAccount") or "")
    return (
        DeploymentSpec(
            service,
            version,
            int(spec.get("replicas", 1)),
            sidecar,
            deployment=name,
            namespace=str(meta.get("namespace") or "tutorial"),
            pod_labels=labels,
            account=account or ("default" if service != "curl" else "curl"),
            delay=TIMEOUT_IMAGE_DELAY if any(str(c.get("image", "")).endswith("-timeout")
                                             for c in pod.get("containers") or []) else 0.0,
        ),
        None,
    )


def default_objects() -> list[dict[str, Any]]:
    """What the tutorial's first chapter creates besides the Deployments: namespace, accounts, services."""
    out: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": "tutorial", "labels": {"istio-injection": "enabled"}, "annotations": {}}},
    ]
    for svc in SAMPLE:
        meta = {"name": svc, "namespace": "tutorial", "labels": {"app": svc}, "annotations": {}}
        out.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(meta)})
        out.append({"apiVersion": "v1", "kind": "Service", "metadata": dict(meta),
                    "spec": {"ports": [{"name": "http", "port": 8080}], "selector": {"app": svc}}})
    return out


class KubeObjects:
    """Applies, lists and deletes the Kubernetes kinds; Deployments run through :class:`Deployments`."""

    def __init__(self, store: ResourceStore, deployments: Deployments) -> None:
        self.store = store
        self.deployments = deployments

    def seed(self, first: Sequence[dict[str, Any]] = ()) -> None:
        """Store the sample's namespace, accounts and Services (after ``first``) in one durable write:
        one write per object cost some 20 ms each on a busy disk, on ``up``'s critical path."""
        if all(action == "unchanged" for _, action in self.store.put_all([*first, *default_objects()])):
            self.store.save()

    # registry -----------------------------------------------------------------------------------
    def services(self) -> list[dict[str, Any]]:
        """The Services proxies know (the snapshot's ``services``)."""
        out = []
        for svc in self.store.list("Service"):
            spec = svc.get("spec") or {}
            if spec.get("type") == "ExternalName" or not spec.get("ports"):
                continue
            out.append({
                "name": svc["metadata"]["name"],
                "namespace": svc["metadata"].get("namespace", "tutorial"),
                "port": int(spec["ports"][0]["port"]),
                "selector": dict(spec.get("selector") or {}),
                "labels": dict(svc["metadata"].get("labels") or {}),
            })
        return out

    # writes -------------------------------------------------------------------------------------
    async def apply(self, obj: dict[str, Any]) -> tuple[str, list[str]]:
        """Store ``obj``; a Deployment converges its pods. Returns (action, warnings)."""
        action = self.store.put(obj)
        if obj["kind"] in STORED_ONLY:
            return action, [f"{obj['kind']} {obj['metadata']['name']} is stored; the local mesh does not simulate "
                            f"{obj['kind']}s (it takes effect on a real cluster)"]
        if obj["kind"] != "Deployment":
            return action, []
        spec, warning = deployment_spec(obj)
        name = obj["metadata"]["name"]
        old = self.deployments.specs.get(name)
        if spec is None:
            if old is not None:
                await self.deployments.remove(name)
            return action, [warning] if warning else []
        if old is not None and old.template_hash() != spec.template_hash():
            await self.deployments.remove(name)  # a new pod template replaces every pod
        await self.deployments.ensure(spec)
        return action, []

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        removed = self.store.delete((kind, namespace, name)) is not None
        if kind == "Deployment" and name in self.deployments.specs:
            await self.deployments.remove(name)
            removed = True
        return removed

    async def undeploy(self, name: str) -> list[str]:
        """``meshkit undeploy``: the deployment goes, and its Service with the last deployment behind it."""
        spec = self.deployments.specs[name]
        app = spec.labels().get("app", spec.service)
        await self.delete("Deployment", spec.namespace, name)
        left = [s for s in self.deployments.specs.values() if s.labels().get("app", s.service) == app]
        gone = []
        if not left:
            for svc in self.store.list("Service"):
                if svc["metadata"]["name"] == app and svc["metadata"].get("namespace") == spec.namespace:
                    self.store.delete(("Service", spec.namespace, app))
                    gone.append(app)
        return gone

    def ensure_service(self, spec: DeploymentSpec) -> bool:
        """``meshkit deploy`` of a sample service brings its Service back when ``undeploy`` removed it."""
        if spec.service not in SAMPLE or self.store.list("Service", spec.service):
            return False
        for obj in default_objects():
            if obj["kind"] == "Service" and obj["metadata"]["name"] == spec.service:
                self.store.put(obj)
        return True

    def scaled(self, name: str, replicas: int) -> None:
        """``kubectl scale``: the stored Deployment's ``spec.replicas`` (its generation moves on), written to
        ``resources.json`` before anyone sees it, so a restarted control plane keeps the scale."""
        changed = []
        for obj in self.store.list("Deployment", name):
            copy = json.loads(json.dumps(obj))  # the stored object changes only once it is stored
            copy.setdefault("spec", {})["replicas"] = replicas
            changed.append(copy)
        if changed:
            self.store.put_all(changed)

    # reads --------------------------------------------------------------------------------------
    def objects(self, kind: str, name: str | None = None, namespace: str | None = None,
             selector: str = "") -> list[dict[str, Any]]:
        if kind == "Deployment":
            items = self._deployments()
        elif kind == "Pod":
            items = [self._pod(p) for p in sorted(self.deployments.pods.values(), key=lambda p: p.name)]
        else:
            items = self.store.list(kind)
        return [
            o for o in items
            if (name is None or o["metadata"]["name"] == name)
            and (namespace is None or kind == "Namespace" or o["metadata"].get("namespace") == namespace)
            and selector_matches(selector, o["metadata"].get("labels") or {})
        ]

    def _deployments(self) -> list[dict[str, Any]]:
        stored = {o["metadata"]["name"]: o for o in self.store.list("Deployment")}
        out = []
        for name in [*stored, *(n for n in self.deployments.specs if n not in stored)]:
            spec = self.deployments.specs.get(name)
            obj = dict(stored.get(name) or _synthesised(spec))  # type: ignore[arg-type]
            pods = [p for p in self.deployments.pods.values() if p.deployment == name and not p.stopping]
            ready = sum(1 for p in pods if p.ready)
            want = spec.replicas if spec else int((obj.get("spec") or {}).get("replicas", 1))
            obj["status"] = {"replicas": len(pods), "readyReplicas": ready, "availableReplicas": ready,
                             "updatedReplicas": len(pods), "observedGeneration": 1, "wanted": want}
            out.append(obj)
        return out

    def _pod(self, pod: PodState) -> dict[str, Any]:
        labels = {k: v for k, v in pod.labels().items() if k != "workload"}
        labels["pod-template-hash"] = pod.spec.template_hash()
        containers = 1 if pod.spec.gateway or not pod.spec.sidecar else 2
        annotations = {} if pod.spec.sidecar else {INJECT: "false"}
        if pod.ztunnel_ports:  # istio-cni's mark on a pod it handed to ztunnel
            annotations["ambient.istio.io/redirection"] = "enabled"
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod.name, "namespace": pod.namespace, "labels": labels,
                         "annotations": annotations,
                         "ownerReferences": [{"kind": "ReplicaSet", "name": f"{pod.deployment}-"
                                              f"{pod.spec.template_hash()}"}]},
            "spec": {"containers": [{"name": pod.spec.service}] * (not pod.spec.gateway)
                     + [{"name": "istio-proxy"}] * (pod.spec.sidecar or pod.spec.gateway)},
            "status": {"phase": "Running" if pod.proc and pod.proc.returncode is None else "Pending",
                       "ready": f"{containers if pod.ready else 0}/{containers}", "restarts": pod.restarts},
        }


def _synthesised(spec: DeploymentSpec) -> dict[str, Any]:
    """The Deployment ``meshkit deploy`` (or ``up``) made, as kubectl would show it."""
    labels = {k: v for k, v in spec.labels().items() if k not in ("workload", "istio")} if not spec.gateway else {
        "app": GATEWAY, "istio": "ingressgateway"}
    ns = "istio-system" if spec.gateway else spec.namespace
    annotations = {} if spec.sidecar else {INJECT: "false"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": spec.name, "namespace": ns, "labels": labels, "annotations": {},
                     "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels, "annotations": annotations},
                         "spec": {"containers": [{"name": spec.service, "image": "meshkit-sample:dev",
                                                  "args": ["--service", spec.service, "--version", spec.version]}]}},
        },
    }



