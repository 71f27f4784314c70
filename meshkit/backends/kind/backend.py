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
from typing import Any

from meshkit.backends.kind import cluster, images, manifests, plan, versions
from meshkit.backends.kind.client import KubeClient
from meshkit.backends.kind.clusterbase import ClusterBackend, default_home
from meshkit.backends.kind.poll import poll_until
from meshkit.backends.kind.prereqs import Runner, check_prerequisites
from meshkit.errors import BackendUnavailable, InvalidConfig, MeshkitError, NotFound, Unsupported


class KindBackend(ClusterBackend):
    """meshkit's own kind cluster (``kind-<cluster_name>``) with Istio, the addons and the sample.

    ``host_port``/``https_host_port`` publish the ingress gateway on 127.0.0.1; ``installer`` is
    ``istioctl``, ``helm`` or ``auto``; state (rendered manifests, image context, discovery cache) lives
    in ``<home>/kind-<cluster_name>``. ``run`` (a subprocess runner) and ``client`` (a KubeClient) can be
    injected, as the tests do.

    Example::

        KindBackend(host_port=9080).up(dry_run=True)   # print the install plan only
    """

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
            default_home(home) / f"kind-{cluster_name}",
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
        self.dataplane = "sidecar"  # `up --dataplane ambient`: the ambient profile, the namespace enrolled

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
            dataplane=self.dataplane,
        )

    def plan_steps(self) -> list[plan.Step]:
        """The install plan ``up`` runs; ``format_plan(backend.plan_steps())`` is the ``--dry-run`` text."""
        return plan.install_plan(self.options())

    def up(self, profile: str = "current", **options: Any) -> None:
        if profile not in manifests.PROFILES:
            raise InvalidConfig([f"unknown profile {profile!r}; choose one of: {', '.join(manifests.PROFILES)}"])
        self.profile = profile
        dataplane = str(options.get("dataplane") or "sidecar")
        if dataplane not in ("sidecar", "ambient"):
            raise InvalidConfig([f'unknown data plane "{dataplane}"; choose one of: sidecar, ambient'])
        self.dataplane = dataplane
        if options.get("dry_run"):
            title = "meshkit up --backend kind" + (" --dataplane ambient" if dataplane == "ambient" else "")
            print(plan.format_plan(self.plan_steps(), title))
            return
        prereqs = check_prerequisites(installer=self.installer)
        opts = self.options(prereqs.installer)
        actions: dict[str, cluster.Action] = {
            plan.CHECK_PREREQS: lambda step: prereqs.require(),
            plan.CHECK_PORTS: lambda step: (
                None if self._cluster_exists() else cluster.check_ports_free([opts.host_port, opts.https_host_port])
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
            plan.WAIT_AMBIENT_PODS: lambda step: poll_until(
                lambda: cluster.pods_ready(self.kc, "ambient"),
                step.timeout_s,
                2.0,
                self._retry_reporter(step),
                what=step.waits_for,
            ),
            plan.WAIT_GATEWAY: lambda step: poll_until(
                lambda: cluster.http_answers(self.gateway_url() + "/customer"),
                step.timeout_s,
                2.0,
                self._retry_reporter(step),
                what=step.waits_for,
            ),
        }
        cluster.run_plan(plan.install_plan(opts), actions, self.run, self._track)

    def render(self, opts: plan.PlanOptions) -> None:
        """Write the manifests the plan applies into the state directory and stage the image context."""
        opts.home.mkdir(parents=True, exist_ok=True)
        files = {
            "kind-config.yaml": [manifests.kind_config(opts.cluster_name, opts.host_port, opts.https_host_port)],
            "istio-operator.yaml": [manifests.istio_operator(self.profile)],
            "helm-istiod-values.yaml": [manifests.helm_istiod_values(self.profile)],
            "helm-gateway-values.yaml": [manifests.helm_gateway_values()],
            "telemetry.yaml": [manifests.mesh_telemetry()],
            "namespace.yaml": [manifests.namespace(opts.namespace, opts.dataplane)],
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
        cluster.run_plan(plan.down_plan(opts), {}, self.run, self._track)

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


class KubeBackend(ClusterBackend):
    """One namespace of an existing cluster where Istio is already installed (a workshop cluster).

    ``image`` is the sample image the cluster can pull (default: ``$MESHKIT_SAMPLE_IMAGE``, else the
    local content-hash tag, which only works when it was loaded onto the nodes); ``gateway_url`` the
    ingress gateway's address when its Service has no load-balancer address. Each attendee's routes
    live under ``/<namespace>/customer`` so namespaces sharing one gateway do not collide.

    Example::

        backend = KubeBackend(context="workshop", namespace="alice", gateway_url="http://203.0.113.7")
        backend.up()
    """

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
            default_home(home) / f"kube-{context}-{namespace}".replace("/", "_"),
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
        # kubectl only runs `exec` here, which any supported release does; the server's version rules
        check_prerequisites(("kubectl",), installer="", minimums={"kubectl": (1, 28)}).require()
        self._step(1, steps, self.verify)
        image = self._image()
        docs = manifests.sample_manifests(image, self.namespace)
        docs += manifests.gateway_customer(self.namespace, prefix=f"/{self.namespace}/customer")
        self._step(2, steps, lambda: [self.kc.apply(doc) for doc in docs])
        self._step(3, steps, lambda: self._wait_pods(plan.Step(steps[2], waits_for="pods 2/2", timeout_s=300)))

    def _step(self, index: int, steps: list[str], fn: Any) -> None:
        self._track(index, len(steps), steps[index - 1])
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
