"""The install plan of ``meshkit up --backend kind``: ordered steps, each a command or an API check.

The plan is data, so ``--dry-run`` prints exactly what would run and the runner
(:mod:`meshkit.backends.kind.cluster`) executes the same list. Waits come in Istio's order: CRDs
Established, istiod Available, the validation webhook answering, the gateway, the addons, then the
sample's pods 2/2 (app + sidecar).

Example::

    opts = PlanOptions(home=Path("/home/me/.meshkit/kind-meshkit"), image="meshkit-sample:3f2a9c1d7e4b")
    steps = install_plan(opts)
    print(format_plan(steps))
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from meshkit.backends.kind import images, versions
from meshkit.resources.gatewayapi.schema import experimental_channel

GATEWAY_API_CRDS = tuple(
    f"{plural}.gateway.networking.k8s.io"
    for plural in ("gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants")
)
ISTIO_CRDS = (
    "virtualservices.networking.istio.io",
    "destinationrules.networking.istio.io",
    "gateways.networking.istio.io",
    "serviceentries.networking.istio.io",
    "sidecars.networking.istio.io",
    "peerauthentications.security.istio.io",
    "authorizationpolicies.security.istio.io",
    "requestauthentications.security.istio.io",
    "telemetries.telemetry.istio.io",
)
GATEWAY_DEPLOYMENT = "istio-ingressgateway"

# API actions the runner knows; a Step with ``action`` set runs one of these instead of a command
CHECK_PREREQS = "check-prerequisites"
CHECK_PORTS = "check-host-ports"
RENDER = "render-files"
CHECK_ISTIO_VERSION = "check-istio-version"
WAIT_WEBHOOK = "wait-webhook"
WAIT_PODS = "wait-pods"
WAIT_AMBIENT_PODS = "wait-ambient-pods"
WAIT_GATEWAY = "wait-gateway-route"


@dataclass(frozen=True)
class PlanOptions:
    """What the plan depends on. ``home`` is the state directory the rendered files go to."""

    home: Path
    cluster_name: str = "meshkit"
    host_port: int = 8080
    https_host_port: int = 8443
    namespace: str = "tutorial"
    image: str = f"{images.REPOSITORY}:dev"
    installer: str = "istioctl"  # or "helm"
    grafana: bool = False
    dataplane: str = "sidecar"  # or "ambient": istio-cni and ztunnel, the namespace enrolled

    @property
    def ambient(self) -> bool:
        return self.dataplane == "ambient"

    @property
    def context(self) -> str:
        return f"kind-{self.cluster_name}"

    def file(self, name: str) -> Path:
        return self.home / name

    @property
    def image_context(self) -> Path:
        return self.home / "image-context"


@dataclass(frozen=True)
class Step:
    """One step: a command (``argv``) or an API action; what it waits for and its timeout."""

    description: str
    argv: tuple[str, ...] = ()
    action: str = ""
    waits_for: str = ""
    timeout_s: float = 120.0
    skip_if: tuple[str, ...] = ()  # a command whose exit code 0 means the step is already done
    retries: int = 0  # extra attempts for commands that can fail on timing
    files: tuple[str, ...] = field(default=())

    def command(self) -> str:
        return shlex.join(self.argv) if self.argv else f"[meshkit] {self.action}"


def _kubectl(opts: PlanOptions, *args: str) -> tuple[str, ...]:
    return ("kubectl", "--context", opts.context, *args)


def _apply(opts: PlanOptions, name: str) -> tuple[str, ...]:
    return _kubectl(opts, "apply", "--server-side", "--field-manager=meshkit", "-f", str(opts.file(name)))


def _wait_available(opts: PlanOptions, ns: str, targets: list[str], timeout: int) -> tuple[str, ...]:
    return _kubectl(opts, "-n", ns, "wait", "--for=condition=Available", f"--timeout={timeout}s", *targets)


def _istio_install_steps(opts: PlanOptions) -> list[Step]:
    if opts.installer == "istioctl":
        # the ambient profile: istiod with ambient on, istio-cni and the ztunnel DaemonSet; the file's
        # mesh config and ingress gateway stay
        profile = ("--set", "profile=ambient") if opts.ambient else ()
        what = "ambient profile: istiod, istio-cni, ztunnel" if opts.ambient else "demo profile"
        return [
            Step(
                f"install Istio {versions.ISTIO_VERSION} ({what}, access logs, 100% tracing, "
                "REGISTRY_ONLY, gateway on NodePort 30080/30443)",
                (
                    "istioctl",
                    "install",
                    "-y",
                    "-f",
                    str(opts.file("istio-operator.yaml")),
                    *profile,
                    "--context",
                    opts.context,
                ),
                waits_for="istiod and the gateways to be ready (istioctl waits itself)",
                timeout_s=600,
            )
        ]
    helm = ("helm", "--kube-context", opts.context)
    chart = ("-n", "istio-system", "--version", versions.ISTIO_VERSION, "--wait", "--timeout", "10m")
    ambient = ("--set", "profile=ambient") if opts.ambient else ()
    ambient_charts = [
        Step(
            "install istio-cni (chart istio/cni, ambient profile): the node agent that enrolls ambient pods",
            (*helm, "upgrade", "--install", "istio-cni", "istio/cni", *chart, *ambient),
            waits_for="the istio-cni-node DaemonSet to be ready",
            timeout_s=600,
        ),
        Step(
            "install ztunnel (chart istio/ztunnel): the node proxy of ambient mode",
            (*helm, "upgrade", "--install", "ztunnel", "istio/ztunnel", *chart),
            waits_for="the ztunnel DaemonSet to be ready",
            timeout_s=600,
        ),
    ] if opts.ambient else []
    return [
        Step(
            "add the Istio Helm repository",
            ("helm", "repo", "add", "--force-update", "istio", versions.ISTIO_HELM_REPO),
            timeout_s=120,
        ),
        Step(
            f"install the Istio {versions.ISTIO_VERSION} CRDs (chart istio/base)",
            (*helm, "upgrade", "--install", "istio-base", "istio/base", *chart, "--create-namespace"),
            waits_for="the release to be deployed",
            timeout_s=600,
        ),
        Step(
            "install istiod (chart istio/istiod, demo profile values)",
            (
                *helm,
                "upgrade",
                "--install",
                "istiod",
                "istio/istiod",
                *chart,
                "-f",
                str(opts.file("helm-istiod-values.yaml")),
                *ambient,
            ),
            waits_for="istiod to be ready",
            timeout_s=600,
        ),
        *ambient_charts,
        Step(
            "install the ingress gateway (chart istio/gateway, NodePort 30080/30443)",
            (
                *helm,
                "upgrade",
                "--install",
                GATEWAY_DEPLOYMENT,
                "istio/gateway",
                *chart,
                "-f",
                str(opts.file("helm-gateway-values.yaml")),
            ),
            waits_for="the gateway to be ready",
            timeout_s=600,
        ),
    ]


def _gateway_api_steps(opts: PlanOptions) -> list[Step]:
    channel = "experimental" if experimental_channel() else "standard"
    return [
        Step(
            f"install the Gateway API CRDs {versions.GATEWAY_API_VERSION} ({channel} channel), which Istio "
            f"{versions.ISTIO_VERSION} reads",
            _kubectl(opts, "apply", "--server-side", "-f", versions.gateway_api_manifest(channel)),
            timeout_s=120,
        ),
        Step(
            "wait for the Gateway API CRDs",
            _kubectl(opts, "wait", "--for=condition=Established", "--timeout=120s",
                     *(f"crd/{crd}" for crd in GATEWAY_API_CRDS)),
            waits_for="each CRD to be Established",
            timeout_s=130,
        ),
    ]


def install_plan(opts: PlanOptions) -> list[Step]:
    """Every step of ``meshkit up --backend kind``, in order."""
    tools = "kind, kubectl, " + opts.installer
    addons = dict(versions.ADDONS) | (dict(versions.OPTIONAL_ADDONS) if opts.grafana else {})
    files = ["kind-config.yaml", "telemetry.yaml", "namespace.yaml", "sample.yaml", "gateway-customer.yaml"]
    files += (
        ["istio-operator.yaml"]
        if opts.installer == "istioctl"
        else ["helm-istiod-values.yaml", "helm-gateway-values.yaml"]
    )
    return [
        Step(
            f"check prerequisites: Docker running; {tools} on PATH at their minimum versions",
            action=CHECK_PREREQS,
            timeout_s=60,
        ),
        Step(
            f"check that host ports {opts.host_port} and {opts.https_host_port} are free "
            f"(skipped when cluster {opts.cluster_name} exists)",
            action=CHECK_PORTS,
            timeout_s=5,
        ),
        Step(
            f"render the cluster, Istio and sample manifests into {opts.home}",
            action=RENDER,
            files=tuple(files),
            timeout_s=30,
        ),
        Step(
            f"create the kind cluster {opts.cluster_name} (node {versions.KUBERNETES_VERSION})",
            (
                "kind",
                "create",
                "cluster",
                "--name",
                opts.cluster_name,
                "--image",
                versions.NODE_IMAGE,
                "--config",
                str(opts.file("kind-config.yaml")),
                "--wait",
                "120s",
            ),
            waits_for="the control plane to be ready",
            timeout_s=600,
            skip_if=("kind", "get", "kubeconfig", "--name", opts.cluster_name),
        ),
        Step(
            f"check that an Istio already in the cluster is {versions.ISTIO_VERSION}",
            action=CHECK_ISTIO_VERSION,
            timeout_s=30,
        ),
        *_gateway_api_steps(opts),
        *_istio_install_steps(opts),
        Step(
            "wait for the Istio CRDs",
            _kubectl(
                opts,
                "wait",
                "--for=condition=Established",
                "--timeout=120s",
                *(f"crd/{crd}" for crd in ISTIO_CRDS),
            ),
            waits_for="each CRD to be Established",
            timeout_s=130,
        ),
        Step(
            "wait for istiod",
            _wait_available(opts, "istio-system", ["deployment/istiod"], 300),
            waits_for="deployment istiod to be Available",
            timeout_s=310,
        ),
        *(
            [
                Step(
                    f"wait for {ds}",
                    _kubectl(opts, "-n", "istio-system", "rollout", "status", f"daemonset/{ds}", "--timeout=300s"),
                    waits_for=f"daemonset {ds} to be ready on every node",
                    timeout_s=310,
                )
                for ds in ("istio-cni-node", "ztunnel")
            ]
            if opts.ambient
            else []
        ),
        Step(
            "wait for the validation webhook (server dry-run of a VirtualService)",
            action=WAIT_WEBHOOK,
            waits_for="no more 'failed calling webhook \"validation.istio.io\"'",
            timeout_s=180,
        ),
        Step(
            "wait for the ingress gateway",
            _wait_available(opts, "istio-system", [f"deployment/{GATEWAY_DEPLOYMENT}"], 300),
            waits_for=f"deployment {GATEWAY_DEPLOYMENT} to be Available",
            timeout_s=310,
        ),
        Step(
            f"install the addons: {', '.join(addons)} (Istio {versions.ISTIO_VERSION} samples)",
            _kubectl(opts, "apply", *(arg for url in addons.values() for arg in ("-f", url))),
            timeout_s=180,
            retries=2,
        ),  # Istio's docs: the first apply can fail on timing; re-run it
        Step(
            "wait for the addons",
            _wait_available(opts, "istio-system", [f"deployment/{name}" for name in addons], 600),
            waits_for="each addon deployment to be Available",
            timeout_s=610,
        ),
        Step(
            "enable tracing mesh-wide (Telemetry mesh-default -> jaeger, 100%)",
            _apply(opts, "telemetry.yaml"),
            timeout_s=60,
        ),
        Step(
            f"create namespace {opts.namespace} with "
            + ("istio.io/dataplane-mode=ambient" if opts.ambient else "istio-injection=enabled"),
            _apply(opts, "namespace.yaml"),
            timeout_s=60,
        ),
        Step(
            f"build the sample image {opts.image}",
            tuple(images.build_argv(opts.image, opts.image_context)),
            timeout_s=900,
            skip_if=tuple(images.present_argv(opts.image)),
        ),
        Step(
            f"load {opts.image} into the kind node",
            tuple(images.load_argv(opts.image, opts.cluster_name)),
            timeout_s=300,
        ),
        Step(
            "deploy customer, preference-v1, recommendation-v1 and -v2",
            _apply(opts, "sample.yaml"),
            timeout_s=60,
        ),
        Step(
            "route /customer through the ingress gateway (Gateway + VirtualService customer-gateway)",
            _apply(opts, "gateway-customer.yaml"),
            timeout_s=60,
        ),
        Step(
            "wait for the sample deployments",
            _wait_available(opts, opts.namespace, ["deployment", "--all"], 300),
            waits_for="each deployment to be Available",
            timeout_s=310,
        ),
        Step(
            "check every sample pod runs 1/1 without a sidecar, enrolled in ambient by istio-cni",
            action=WAIT_AMBIENT_PODS,
            waits_for="all containers Ready and ambient.istio.io/redirection: enabled on each pod",
            timeout_s=120,
        )
        if opts.ambient
        else Step(
            "check every sample pod runs 2/2 (app + istio-proxy)",
            action=WAIT_PODS,
            waits_for="all containers Ready and a sidecar in each pod",
            timeout_s=120,
        ),
        Step(
            f"check http://127.0.0.1:{opts.host_port}/customer answers through the gateway",
            action=WAIT_GATEWAY,
            waits_for="HTTP 200 from customer",
            timeout_s=120,
        ),
    ]


def down_plan(opts: PlanOptions) -> list[Step]:
    """``meshkit down --backend kind``: deleting the cluster removes everything meshkit created."""
    return [
        Step(
            f"delete the kind cluster {opts.cluster_name}",
            ("kind", "delete", "cluster", "--name", opts.cluster_name),
            timeout_s=300,
        )
    ]


def format_plan(steps: list[Step], title: str = "meshkit up --backend kind") -> str:
    """The ``--dry-run`` text: one numbered step per block, with its exact command and wait."""
    lines = [
        f"{title}: {len(steps)} steps (Istio {versions.ISTIO_VERSION}, kind {versions.KIND_VERSION}, "
        f"node kindest/node:v{versions.KUBERNETES_VERSION})"
    ]
    for index, step in enumerate(steps, 1):
        lines.append(f"{index:2}. {step.description}")
        lines.append(f"    $ {step.command()}")
        if step.files:
            lines.append(f"    writes: {', '.join(step.files)}")
        if step.skip_if:
            lines.append(f"    skipped when this succeeds: {shlex.join(step.skip_if)}")
        wait = f"waits for {step.waits_for}; " if step.waits_for else ""
        retry = f"; retried {step.retries}x" if step.retries else ""
        lines.append(f"    {wait}timeout {step.timeout_s:.0f}s{retry}")
    return "\n".join(lines)
