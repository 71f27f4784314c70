"""The real-Istio backends: ``kind`` (meshkit's own kind cluster) and ``kube`` (an existing cluster).

Both implement the same :class:`~meshkit.backends.base.Backend` contract as the local mesh, on the
kubernetes client (server-side apply), ``kubectl exec`` for requests from inside pods, and the
Prometheus/Jaeger addons and proxy access logs for telemetry. ``KindBackend`` owns its cluster
(create, install Istio, build and load the sample, delete); ``KubeBackend`` works inside one
namespace of a cluster where Istio is already installed and never changes anything outside it.

Example::

    from meshkit.backends.kind.backend import KindBackend
    backend = KindBackend(progress=lambda i, n, what: print(f"[{i}/{n}] {what}"))
    backend.up()
    print(backend.gateway_url() + "/customer")
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from meshkit.backends.base import CAP_KIALI, ApplyResult, Backend, Pod
from meshkit.backends.kind import cluster, images, manifests, plan, podexec, versions
from meshkit.backends.kind.client import ISTIO_KINDS, KubeClient
from meshkit.backends.kind.poll import poll_until
from meshkit.backends.kind.prereqs import Runner, check_prerequisites, subprocess_runner
from meshkit.backends.kind.telemetry import ClusterTelemetry
from meshkit.errors import BackendUnavailable, InvalidConfig, MeshkitError, NotFound, Unsupported

GATEWAY_NAME = "customer-gateway"
SAMPLE_CONTAINER_PORT = manifests.SAMPLE_PORT


def _default_home(home: str | None) -> Path:
    return Path(home or os.environ.get("MESHKIT_HOME") or Path.home() / ".meshkit")


class _ClusterBackend(Backend):
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
        from meshkit.backends.kind.client import normalise

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
            raise NotFound(
                f"no pod or deployment {target!r} in namespace {self.namespace}; known: {', '.join(known)}"
            )
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
            fresh = [
                p.name for p in self.kc.pods() if p.deployment == victim.deployment and p.name not in before
            ]
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

    # telemetry -------------------------------------------------------------------------------
    def metrics_text(self, pod: str | None = None) -> str:
        return self.telemetry.metrics_text(pod)

    def request_log(self, since: float = 0.0, limit: int = 10_000) -> list[dict[str, Any]]:
        return self.telemetry.request_log(since, limit, self._gateway_selector())

    def _gateway_selector(self) -> str | None:
        return "istio=ingressgateway"

    def traces(self, service: str | None = None, limit: int = 20) -> dict[str, Any]:
        return self.telemetry.traces(service, limit)

    def prometheus_query(self, promql: str) -> list[dict[str, Any]]:
        """An instant PromQL query as tidy rows: the series labels plus ``value`` and ``time``."""
        return self.telemetry.prometheus_query(promql)

    def wait_until(
        self, check: Any, deadline_s: float = 60.0, what: str = "the mesh to show the change"
    ) -> str:
        """Poll ``check() -> (ok, seen)`` with "not yet, retrying" progress (config propagates eventually)."""

        def report(message: str) -> None:
            if self.progress:
                self.progress(0, 0, message)

        return poll_until(check, deadline_s, 1.0, report, what=what)

    def _wait_pods(self, step: plan.Step) -> None:
        poll_until(
            lambda: cluster.pods_ready(self.kc),
            step.timeout_s,
            2.0,
            self._retry_reporter(step),
            what=step.waits_for or "the sample pods",
        )

    def _retry_reporter(self, step: plan.Step) -> Any:
        def report(message: str) -> None:
            if self.progress:
                self.progress(0, 0, f"{step.description}: {message}")

        return report

    def close(self) -> None:
        if self._kc is not None:
            self._kc.close()
            self._kc = None


class KindBackend(_ClusterBackend):
    """meshkit's own kind cluster (``kind-<cluster_name>``) with Istio, the addons and the sample."""

    name = "kind"

    def __init__(
        self,
        home: str | None = None,
        *,
        cluster_name: str = "meshkit",
        host_port: int = 8080,
        namespace: str = "tutorial",
        progress: cluster.Progress | None = None,
        https_host_port: int = 8443,
        installer: str = "auto",
        run: Runner | None = None,
        kubeconfig: str | None = None,
        client: KubeClient | None = None,
    ) -> None:
        super().__init__(
            _default_home(home) / f"kind-{cluster_name}",
            f"kind-{cluster_name}",
            namespace,
            progress,
            run,
            kubeconfig,
            client,
        )
        self.cluster_name, self.host_port, self.https_host_port = cluster_name, host_port, https_host_port
        self.installer = installer
        self.profile = "current"

    def options(self, installer: str | None = None) -> plan.PlanOptions:
        chosen = installer or self.installer
        if chosen == "auto":
            chosen = "istioctl" if shutil.which("istioctl") or not shutil.which("helm") else "helm"
        return plan.PlanOptions(
            home=self.home,
            cluster_name=self.cluster_name,
            host_port=self.host_port,
            https_host_port=self.https_host_port,
            namespace=self.namespace,
            image=self._image(),
            installer=chosen,
        )

    def plan_steps(self) -> list[plan.Step]:
        """The install plan ``up`` runs; ``format_plan(backend.plan_steps())`` is the ``--dry-run`` text."""
        return plan.install_plan(self.options())

    def up(self, profile: str = "current", **options: Any) -> None:
        if profile not in manifests.PROFILES:
            raise InvalidConfig(
                [f"unknown profile {profile!r}; choose one of: {', '.join(manifests.PROFILES)}"]
            )
        self.profile = profile
        if options.get("dry_run"):
            print(plan.format_plan(self.plan_steps()))
            return
        prereqs = check_prerequisites(installer=self.installer)
        opts = self.options(prereqs.installer)
        actions: dict[str, cluster.Action] = {
            plan.CHECK_PREREQS: lambda step: prereqs.require(),
            plan.CHECK_PORTS: lambda step: (
                None
                if self._cluster_exists()
                else cluster.check_ports_free([opts.host_port, opts.https_host_port])
            ),
            plan.RENDER: lambda step: self.render(opts),
            plan.CHECK_ISTIO_VERSION: lambda step: self._check_istio_version(),
            plan.WAIT_WEBHOOK: lambda step: poll_until(
                lambda: cluster.webhook_answers(self.kc),
                step.timeout_s,
                2.0,
                self._retry_reporter(step),
                what=step.waits_for,
            ),
            plan.WAIT_PODS: self._wait_pods,
            plan.WAIT_GATEWAY: lambda step: poll_until(
                lambda: cluster.http_answers(self.gateway_url() + "/customer"),
                step.timeout_s,
                2.0,
                self._retry_reporter(step),
                what=step.waits_for,
            ),
        }
        cluster.run_plan(plan.install_plan(opts), actions, self.run, self.progress)

    def render(self, opts: plan.PlanOptions) -> None:
        """Write the manifests the plan applies into the state directory and stage the image context."""
        opts.home.mkdir(parents=True, exist_ok=True)
        files = {
            "kind-config.yaml": [
                manifests.kind_config(opts.cluster_name, opts.host_port, opts.https_host_port)
            ],
            "istio-operator.yaml": [manifests.istio_operator(self.profile)],
            "helm-istiod-values.yaml": [manifests.helm_istiod_values(self.profile)],
            "helm-gateway-values.yaml": [manifests.helm_gateway_values()],
            "telemetry.yaml": [manifests.mesh_telemetry()],
            "namespace.yaml": [manifests.namespace(opts.namespace)],
            "sample.yaml": manifests.sample_manifests(opts.image, opts.namespace),
            "gateway-customer.yaml": manifests.gateway_customer(opts.namespace),
        }
        for name, docs in files.items():
            opts.file(name).write_text(manifests.to_yaml(docs))
        images.stage_context(images.source_root(), opts.image_context)

    def _cluster_exists(self) -> bool:
        return self.run(["kind", "get", "kubeconfig", "--name", self.cluster_name], 60.0)[0] == 0

    def _check_istio_version(self) -> None:
        found = istiod_version(self.kc)
        if found and not versions.same_minor(found):
            raise BackendUnavailable(
                f"cluster {self.cluster_name} already runs Istio {found}, but meshkit pins Istio "
                f"{versions.ISTIO_VERSION}, and istioctl refuses to jump minor versions in place. Delete the "
                "cluster with: meshkit down --backend kind (or kind delete cluster --name "
                f"{self.cluster_name}), "
                "then run meshkit up --backend kind again."
            )

    def down(self) -> None:
        self.close()
        opts = plan.PlanOptions(home=self.home, cluster_name=self.cluster_name)
        cluster.run_plan(plan.down_plan(opts), {}, self.run, self.progress)

    def is_running(self) -> bool:
        if not self._cluster_exists():
            return False
        try:
            return bool(self.kc.pods())
        except MeshkitError:
            return False

    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.host_port}"


def istiod_version(kc: KubeClient) -> str:
    """The Istio version istiod runs (from its image tag), or "" when there is no istiod."""
    try:
        deployments = kc.list_objects("apps/v1", "Deployment", "app=istiod", namespace="istio-system")
    except (NotFound, MeshkitError):
        return ""
    for dep in deployments:
        for container in dep["spec"]["template"]["spec"]["containers"]:
            tag = container.get("image", "").rpartition(":")[2]
            if versions.parse_version(tag):
                return tag.split("-")[0]
    return ""


class KubeBackend(_ClusterBackend):
    """One namespace of an existing cluster where Istio is already installed (a workshop cluster)."""

    name = "kube"
    own_namespace_only = True

    def __init__(
        self,
        home: str | None = None,
        *,
        context: str,
        namespace: str,
        progress: cluster.Progress | None = None,
        image: str | None = None,
        gateway_url: str | None = None,
        run: Runner | None = None,
        kubeconfig: str | None = None,
        client: KubeClient | None = None,
    ) -> None:
        super().__init__(
            _default_home(home) / f"kube-{context}-{namespace}".replace("/", "_"),
            context,
            namespace,
            progress,
            run,
            kubeconfig,
            client,
        )
        self.image = image or os.environ.get("MESHKIT_SAMPLE_IMAGE")
        self._gateway_url = gateway_url

    def _image(self) -> str:
        return self.image or super()._image()

    def _gateway_selector(self) -> str | None:
        return None  # the shared gateway's logs belong to every attendee; stay in our namespace

    def verify(self) -> None:
        """Check the context has Istio (CRDs served, istiod running) before changing anything."""
        try:
            self.kc.resolve_kind("VirtualService")
        except NotFound:
            raise BackendUnavailable(
                f"context {self.context} has no Istio: the networking.istio.io/v1 VirtualService kind is not "
                "served. Ask the cluster admin to install Istio "
                f"{versions.ISTIO_VERSION} (istioctl install --set profile=demo), or use: "
                "meshkit up --backend kind"
            ) from None
        found = istiod_version(self.kc)
        if found and not versions.same_minor(found):
            warnings.warn(
                f"context {self.context} runs Istio {found}; the labs are checked against "
                f"{versions.ISTIO_VERSION}, so some defaults may differ",
                stacklevel=2,
            )

    def up(self, profile: str = "current", **options: Any) -> None:
        if profile != "current":
            raise Unsupported(
                f"profile {profile!r} needs istiod flags of a cluster you do not own; the kube "
                "backend runs the cluster's Istio as installed (use the kind backend for it)"
            )
        steps = ["check Istio in context " + self.context, "deploy the sample", "wait for pods 2/2"]
        if options.get("dry_run"):
            print("\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1)))
            return
        check_prerequisites(("kubectl",), installer="").require()
        self._step(1, steps, self.verify)
        image = self._image()
        docs = manifests.sample_manifests(image, self.namespace)
        docs += manifests.gateway_customer(self.namespace, prefix=f"/{self.namespace}/customer")
        self._step(2, steps, lambda: [self.kc.apply(doc) for doc in docs])
        self._step(
            3, steps, lambda: self._wait_pods(plan.Step(steps[2], waits_for="pods 2/2", timeout_s=300))
        )

    def _step(self, index: int, steps: list[str], fn: Any) -> None:
        if self.progress:
            self.progress(index, len(steps), steps[index - 1])
        fn()

    def down(self) -> None:
        """Remove what meshkit created in the namespace (Istio resources, the sample); not the namespace."""
        for doc in self.get():
            self.delete(doc["kind"], doc["metadata"]["name"])
        for pod in {p.deployment for p in self.kc.pods() if p.app in manifests.SERVICES and p.deployment}:
            self.kc.delete_object("apps/v1", "Deployment", pod)
        for svc in manifests.SERVICES:
            for kind in ("Service", "ServiceAccount"):
                if self.kc.get_object("v1", kind, svc) is not None:
                    self.kc.delete_object("v1", kind, svc)

    def is_running(self) -> bool:
        try:
            return any(p.app == "customer" and p.ready for p in self.kc.pods())
        except MeshkitError:
            return False

    def gateway_url(self) -> str:
        if self._gateway_url:
            return self._gateway_url.rstrip("/") + f"/{self.namespace}"
        try:
            svc = self.kc.get_object("v1", "Service", plan.GATEWAY_DEPLOYMENT, namespace="istio-system")
        except MeshkitError:
            svc = None
        for ingress in (svc or {}).get("status", {}).get("loadBalancer", {}).get("ingress") or []:
            host = ingress.get("ip") or ingress.get("hostname")
            if host:
                return f"http://{host}/{self.namespace}"
        raise Unsupported(
            f"the ingress gateway of context {self.context} has no external address meshkit can "
            "read. Pass it: KubeBackend(..., gateway_url='http://<gateway host>'), or run "
            f"kubectl --context {self.context} -n "
            "istio-system port-forward svc/istio-ingressgateway 8080:80 and pass gateway_url='http://127.0.0.1:8080'"
        )
