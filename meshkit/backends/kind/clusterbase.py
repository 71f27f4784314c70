"""What the kind and kube backends share once a mesh is up: resources, workloads, telemetry.

Resources go through server-side apply (all documents dry-run first, so an apply is all or nothing);
requests from inside pods through ``kubectl exec``; telemetry through the API server's proxies.

Example::

    class MyClusterBackend(ClusterBackend):  # supply up/down/is_running/gateway_url
        ...
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from meshkit.backends.base import CAP_KIALI, ApplyResult, Backend, Pod
from meshkit.backends.kind import cluster, images, manifests, plan, podexec
from meshkit.backends.kind.client import ISTIO_KINDS, KubeClient, normalise
from meshkit.backends.kind.poll import poll_until
from meshkit.backends.kind.prereqs import Runner, subprocess_runner
from meshkit.backends.kind.telemetry import ClusterTelemetry
from meshkit.errors import InvalidConfig, MeshkitError, NotFound

GATEWAY_NAME = "customer-gateway"
SAMPLE_CONTAINER_PORT = manifests.SAMPLE_PORT


def default_home(home: str | None) -> Path:
    return Path(home or os.environ.get("MESHKIT_HOME") or Path.home() / ".meshkit")


class ClusterBackend(Backend):
    """What both real-cluster backends share: everything after the mesh is up."""

    capabilities: ClassVar[frozenset[str]] = frozenset({CAP_KIALI})
    own_namespace_only = False  # KubeBackend: refuse resources for other namespaces

    def __init__(
        self,
        home: Path,
        context: str,
        namespace: str,
        progress: cluster.Progress | None,
        run: Runner | None,
        kubeconfig: str | None,
        client: KubeClient | None,
    ) -> None:
        self.home, self.context, self.namespace = home, context, namespace
        self.progress, self.run = progress, run or subprocess_runner()
        self._kubeconfig = kubeconfig
        self._kc: KubeClient | None = client
        self._at = (0, 1)  # (step, total) of the running install, for retry messages

    # plumbing --------------------------------------------------------------------------------
    @property
    def kc(self) -> KubeClient:
        if self._kc is None:
            self.home.mkdir(parents=True, exist_ok=True)
            self._kc = KubeClient.from_kubeconfig(self.context, self.namespace, self._kubeconfig, self.home)
        return self._kc

    @property
    def telemetry(self) -> ClusterTelemetry:
        return ClusterTelemetry(self.kc)

    def _image(self) -> str:
        return images.image_ref(images.source_root())

    def _in_namespace(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        meta = dict(doc.get("metadata") or {})
        ns = meta.get("namespace") or self.namespace
        if ns == "tutorial":  # the tutorial's files name their namespace; follow this backend's
            ns = self.namespace
        if self.own_namespace_only and ns != self.namespace:
            raise InvalidConfig(
                [
                    f"{doc.get('kind')}/{meta.get('name')}: namespace {ns} is outside this "
                    f"backend's namespace {self.namespace}; the kube backend only changes its own"
                ]
            )
        return {**doc, "metadata": {**meta, "namespace": ns}}

    # resources -------------------------------------------------------------------------------
    def apply(self, resources: Sequence[Mapping[str, Any]]) -> list[ApplyResult]:
        docs = [self._in_namespace(doc) for doc in resources]
        problems: list[str] = []
        for doc in docs:  # server-side dry run of everything first: all or nothing
            try:
                self.kc.apply(doc, dry_run=True)
            except InvalidConfig as exc:
                problems += exc.problems
        if problems:
            raise InvalidConfig(problems)
        results = []
        for doc in docs:
            action = self.kc.apply(doc)
            group = doc["apiVersion"].rpartition("/")[0]
            results.append(ApplyResult(doc["kind"], group, doc["metadata"]["name"], action))
        return results

    def delete(self, kind: str, name: str) -> ApplyResult:
        api_version, real_kind = self.kc.resolve_kind(kind)
        if self.kc.get_object(api_version, real_kind, name) is None:
            raise NotFound(
                f"{real_kind.lower()} {name!r} not found in namespace {self.namespace}; "
                "list what exists with: meshkit get"
            )
        self.kc.delete_object(api_version, real_kind, name)
        return ApplyResult(real_kind, api_version.rpartition("/")[0], name, "deleted")

    def get(self, kind: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        kinds = [self.kc.resolve_kind(kind)] if kind else list(ISTIO_KINDS)
        out = []
        for api_version, real_kind in kinds:
            try:
                objs = self.kc.list_objects(api_version, real_kind)
            except NotFound:
                if kind:
                    raise
                continue  # a kind this Istio does not serve
            out += [normalise(o) for o in objs if name is None or o["metadata"]["name"] == name]
        return out

    def reset(self) -> list[ApplyResult]:
        results = []
        for doc in self.get():
            kind, name = doc["kind"], doc["metadata"]["name"]
            if kind in ("Gateway", "VirtualService") and name == GATEWAY_NAME:
                continue  # the tutorial's clean.sh keeps the ingress route
            results.append(self.delete(kind, name))
        return results

    # workloads -------------------------------------------------------------------------------
    def pods(self) -> list[Pod]:
        return self.kc.pods()

    def _pod(self, name: str) -> Pod:
        for pod in self.kc.pods():
            if pod.name == name:
                return pod
        raise NotFound(f"no pod {name!r} in namespace {self.namespace}; see the pods with: meshkit status")

    def _targets(self, target: str) -> list[Pod]:
        pods = self.kc.pods()
        chosen = [p for p in pods if p.name == target] or [
            p for p in pods if p.deployment == target and p.extra.get("phase") == "Running"
        ]
        if not chosen:
            known = sorted({p.deployment for p in pods} | {p.name for p in pods})
            raise NotFound(f"no pod or deployment {target!r} in namespace {self.namespace}; known: {', '.join(known)}")
        return chosen

    def deploy(self, service: str, version: str, replicas: int = 1, sidecar: bool = True) -> str:
        if service not in manifests.SERVICES:
            raise InvalidConfig(
                [f"deploy: unknown service {service!r}; choose one of: {', '.join(manifests.SERVICES)}"]
            )
        if not (version.startswith("v") and version[1:].isdigit()):
            raise InvalidConfig([f"deploy: version must look like v1, v2, v3; got {version!r}"])
        docs = [
            *manifests.service_manifests(service, self.namespace),
            manifests.deployment(service, version, self._image(), self.namespace, replicas, sidecar),
        ]
        for doc in docs:
            self.kc.apply(doc)
        return manifests.deployment_name(service, version)

    def scale(self, deployment: str, replicas: int) -> None:
        if replicas < 0:
            raise InvalidConfig([f"scale {deployment}: replicas must be >= 0, got {replicas}"])
        if self.kc.get_object("apps/v1", "Deployment", deployment) is None:
            raise NotFound(f"no deployment {deployment!r} in namespace {self.namespace}")
        self.kc.merge_patch("apps/v1", "Deployment", deployment, {"spec": {"replicas": replicas}})

    def undeploy(self, deployment: str) -> None:
        if self.kc.get_object("apps/v1", "Deployment", deployment) is None:
            raise NotFound(f"no deployment {deployment!r} in namespace {self.namespace}")
        self.kc.delete_object("apps/v1", "Deployment", deployment)

    def _app_request(self, pod: Pod, path: str) -> None:
        status, body = self.exec_request(pod.name, f"http://localhost:{SAMPLE_CONTAINER_PORT}{path}")
        if status != 200:
            raise MeshkitError(f"pod {pod.name} answered {path} with HTTP {status}: {body.strip()[:200]}")

    def misbehave(self, target: str, on: bool = True) -> list[str]:
        pods = self._targets(target)
        for pod in pods:
            self._app_request(pod, "/misbehave" if on else "/behave")
        return [p.name for p in pods]

    def delay(self, target: str, seconds: float) -> list[str]:
        if seconds < 0:
            raise InvalidConfig([f"delay {target}: seconds must be >= 0, got {seconds}"])
        pods = self._targets(target)
        for pod in pods:
            self._app_request(pod, f"/delay?seconds={seconds:g}")
        return [p.name for p in pods]

    def kill(self, pod: str) -> str:
        victim = self._pod(pod)
        before = {p.name for p in self.kc.pods()}
        self.kc.delete_object("v1", "Pod", pod)
        found: list[str] = []

        def replacement() -> tuple[bool, str]:
            fresh = [p.name for p in self.kc.pods() if p.deployment == victim.deployment and p.name not in before]
            found[:] = fresh
            return bool(fresh), f"no new pod of {victim.deployment} yet"

        poll_until(
            replacement,
            90,
            1.0,
            what=f"a replacement pod of deployment {victim.deployment}",
            hint="check the deployment with: kubectl describe deployment " + victim.deployment,
        )
        return found[0]

    def exec_request(
        self, pod: str, url: str, headers: Mapping[str, str] | None = None, method: str = "GET"
    ) -> tuple[int, str]:
        target = self._pod(pod)
        argv = podexec.exec_argv(self.context, self.namespace, pod, target.app or "app", url, headers, method)
        code, out = self.run(argv, 60.0)
        return podexec.parse_output(code, out, pod=pod, url=url)

    # data-plane introspection (what istioctl reads) ------------------------------------------
    def envoy_admin(self, pod: str, path: str) -> str:
        """GET ``path`` on the pod's Envoy admin port, as istioctl does: ``pilot-agent request`` run in
        the istio-proxy container through ``kubectl exec`` (the admin port listens on localhost only)."""
        target = self._pod(pod)
        if not target.sidecar:
            raise MeshkitError(f"pod {target.name} has no istio-proxy container")
        argv = ["kubectl", "--context", self.context, "-n", self.namespace, "exec", target.name, "-c",
                "istio-proxy", "--", "pilot-agent", "request", "GET", path.lstrip("/")]
        code, out = self.run(argv, 60.0)
        if code != 0:
            last = out.strip().splitlines()[-1] if out.strip() else f"exit code {code}"
            raise MeshkitError(f"could not read {path} from pod {target.name}: {last} (kubectl exec needs the "
                               "pod Running and your user allowed pods/exec)")
        return out

    def istioctl(self, *args: str) -> str:
        """Run the real ``istioctl`` against this cluster and namespace; its output."""
        code, out = self.run(["istioctl", "--context", self.context, "-n", self.namespace, *args], 120.0)
        if code != 0:
            raise MeshkitError(f"istioctl {' '.join(args)} failed: {out.strip()}")
        return out

    # ambient: labels and waypoints through kubectl and the real istioctl ------------------------------
    def label(self, kind: str, name: str, labels: Mapping[str, str | None]) -> dict[str, Any]:
        """``kubectl label`` a Namespace, Service or Pod (``--overwrite``; None removes a label)."""
        from meshkit.backends.kind.waypoint import KUBECTL_KINDS, label_args

        if kind not in KUBECTL_KINDS:
            raise MeshkitError(f'kind: Unsupported value: "{kind}": supported values: "Namespace", "Pod", "Service"')
        code, out = self.run(label_args(self.context, self.namespace, kind, name, labels), 60.0)
        if code != 0:
            raise MeshkitError(out.strip() or f"kubectl label failed (exit code {code})")
        return {"kind": kind, "name": name, "labels": dict(labels)}

    def waypoint_apply(self, namespace: str, name: str, for_: str | None, enroll_namespace: bool,
                       overwrite: bool, wait: bool) -> list[str]:
        from meshkit.backends.kind.waypoint import waypoint_args

        out = self.istioctl(*waypoint_args("apply", self._ns(namespace), name, for_, enroll_namespace, overwrite,
                                           wait))
        return [line for line in out.splitlines() if line.strip()]

    def waypoint_text(self, action: str, namespace: str, all_namespaces: bool) -> str:
        from meshkit.backends.kind.waypoint import waypoint_args

        return self.istioctl(*waypoint_args(action, self._ns(namespace), all_namespaces=all_namespaces))

    def waypoint_delete(self, name: str, namespace: str) -> list[str]:
        from meshkit.backends.kind.waypoint import waypoint_args

        out = self.istioctl(*waypoint_args("delete", self._ns(namespace), name))
        return [line for line in out.splitlines() if line.strip()]

    def _ns(self, namespace: str) -> str:
        # the tutorial's namespace is this backend's (a workshop attendee's own, on the kube backend)
        return self.namespace if namespace == "tutorial" else namespace

    # telemetry -------------------------------------------------------------------------------
    def metrics_text(self, pod: str | None = None) -> str:
        return self.telemetry.metrics_text(pod)

    def request_log(self, since: float = 0.0, limit: int = 10_000) -> list[dict[str, Any]]:
        return self.telemetry.request_log(since, limit, self._gateway_selector())

    def _gateway_selector(self) -> str | None:
        return "istio=ingressgateway"

    def traces(self, service: str | None = None, limit: int = 20) -> dict[str, Any]:
        return self.telemetry.traces(service, limit)

    def kiali_graph(self, duration: str = "60s") -> dict[str, Any]:
        """Kiali's versioned-app graph of this namespace (capability ``kiali``)."""
        return self.telemetry.kiali_graph(duration)

    def prometheus_query(self, promql: str) -> list[dict[str, Any]]:
        """An instant PromQL query as tidy rows: the series labels plus ``value`` and ``time``."""
        return self.telemetry.prometheus_query(promql)

    def wait_until(
        self,
        check: Callable[[], tuple[bool, str]],
        deadline_s: float = 60.0,
        what: str = "the mesh to show the change",
        on_retry: Callable[[str], None] | None = print,
    ) -> str:
        """Poll ``check() -> (ok, seen)`` until it holds; config reaches Envoy eventually, not at once.

        Each miss calls ``on_retry("not yet, retrying: <seen>")``; the deadline raises PollTimeout.
        """
        return poll_until(check, deadline_s, 1.0, on_retry, what=what)

    def _track(self, index: int, total: int, description: str) -> None:
        """The progress callback given to the plan runner: remembers where the install is."""
        self._at = (index, total)
        if self.progress:
            self.progress(index, total, description)

    def _retry_reporter(self, step: plan.Step) -> Callable[[str], None]:
        def report(message: str) -> None:
            if self.progress:
                self.progress(*self._at, f"{step.description}: {message}")

        return report

    def _wait_pods(self, step: plan.Step) -> None:
        poll_until(
            lambda: cluster.pods_ready(self.kc),
            step.timeout_s,
            2.0,
            self._retry_reporter(step),
            what=step.waits_for or "the sample pods",
        )

    def close(self) -> None:
        if self._kc is not None:
            self._kc.close()
            self._kc = None
