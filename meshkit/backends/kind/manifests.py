"""Every Kubernetes/Istio document the kind backend applies, built by small functions.

These functions are the single source: the backend renders them with its options (host port,
namespace, image tag) into its state directory, and ``cluster/`` holds the same documents rendered
with the defaults, for people who run kind/istioctl/kubectl by hand. A test keeps the two equal;
after changing a function, regenerate with ``python -m meshkit.backends.kind.manifests cluster``.

Example::

    docs = sample_manifests(image="meshkit-sample:3f2a9c1d7e4b", namespace="tutorial")
    print(to_yaml(docs))
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

from meshkit.backends.kind import versions
from meshkit.sample.ingress import gateway_customer

Doc = dict[str, Any]

GATEWAY_NODEPORT_HTTP = 30080
GATEWAY_NODEPORT_HTTPS = 30443
SAMPLE_PORT = 8080
#: the tag committed in cluster/sample; the backend always substitutes its content-hash tag
DEV_IMAGE = "meshkit-sample:dev"
#: deployments ``meshkit up`` creates; recommendation-v3 is deployed later by the egress lab
DEFAULT_WORKLOADS: tuple[tuple[str, str], ...] = (
    ("customer", "v1"),
    ("preference", "v1"),
    ("recommendation", "v1"),
    ("recommendation", "v2"),
)
SERVICES = ("customer", "preference", "recommendation")


def kind_config(
    cluster_name: str = "meshkit",
    host_port: int = 8080,
    https_host_port: int = 8443,
    node_image: str = versions.NODE_IMAGE,
) -> Doc:
    """One control-plane node; the gateway's fixed NodePorts published on 127.0.0.1 of the host."""
    # kind requires containerPort == the Service's nodePort; listen on loopback only
    mappings = [
        {"containerPort": node, "hostPort": host, "listenAddress": "127.0.0.1", "protocol": "TCP"}
        for node, host in ((GATEWAY_NODEPORT_HTTP, host_port), (GATEWAY_NODEPORT_HTTPS, https_host_port))
    ]
    return {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": cluster_name,
        "nodes": [{"role": "control-plane", "image": node_image, "extraPortMappings": mappings}],
    }


def _mesh_config() -> Doc:
    return {
        "accessLogFile": "/dev/stdout",
        "enableTracing": True,
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        "extensionProviders": [
            {
                "name": "jaeger",
                "opentelemetry": {"service": "jaeger-collector.istio-system.svc.cluster.local", "port": 4317},
            }
        ],
    }


def _gateway_ports(target_http: int, target_https: int) -> list[Doc]:
    return [
        {"name": "status-port", "port": 15021, "targetPort": 15021, "protocol": "TCP"},
        {
            "name": "http2",
            "port": 80,
            "targetPort": target_http,
            "nodePort": GATEWAY_NODEPORT_HTTP,
            "protocol": "TCP",
        },
        {
            "name": "https",
            "port": 443,
            "targetPort": target_https,
            "nodePort": GATEWAY_NODEPORT_HTTPS,
            "protocol": "TCP",
        },
    ]


#: istiod feature flags that bring back the tutorial-era (Istio 1.6–1.9) defaults, profile "tutorial"
TUTORIAL_ERA_ENV = {
    "ENABLE_LEGACY_LB_ALGORITHM_DEFAULT": "true",  # ROUND_ROBIN instead of LEAST_REQUEST
    "EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY": "false",  # retry an app's 503 by default again
    "DISABLE_SHADOW_HOST_SUFFIX": "false",  # mirrored requests carry the -shadow Host suffix
    "ENABLE_INBOUND_RETRY_POLICY": "false",
}
PROFILES = ("current", "tutorial")


def _pilot_values(profile: str) -> Doc:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    pilot: Doc = {"traceSampling": 100}
    if profile == "tutorial":
        pilot["env"] = dict(TUTORIAL_ERA_ENV)
    return pilot


def istio_operator(profile: str = "current") -> Doc:
    """``istioctl install -f`` config: demo profile, access logs, 100 % tracing, REGISTRY_ONLY egress."""
    return {
        "apiVersion": "install.istio.io/v1alpha1",
        "kind": "IstioOperator",
        "metadata": {"name": "meshkit", "namespace": "istio-system"},
        "spec": {
            "profile": "demo",
            "meshConfig": _mesh_config(),
            "values": {"pilot": _pilot_values(profile)},
            "components": {
                "ingressGateways": [
                    {
                        "name": "istio-ingressgateway",
                        "enabled": True,
                        # the demo profile's gateway listens on 8080/8443 inside the pod
                        "k8s": {"service": {"type": "NodePort", "ports": _gateway_ports(8080, 8443)}},
                    }
                ]
            },
        },
    }


def helm_istiod_values(profile: str = "current") -> Doc:
    """Values for the ``istio/istiod`` chart: the same mesh config as :func:`istio_operator`."""
    return {"profile": "demo", "meshConfig": _mesh_config(), "pilot": _pilot_values(profile)}


def helm_gateway_values() -> Doc:
    """Values for ``istio/gateway`` released as ``istio-ingressgateway`` (label istio: ingressgateway)."""
    # the gateway chart's pod binds 80/443 itself (unprivileged-port sysctl), unlike the demo profile
    return {"service": {"type": "NodePort", "ports": _gateway_ports(80, 443)}}


def mesh_telemetry() -> Doc:
    """Mesh-wide Telemetry: every request traced to the ``jaeger`` provider."""
    return {
        "apiVersion": "telemetry.istio.io/v1",
        "kind": "Telemetry",
        "metadata": {"name": "mesh-default", "namespace": "istio-system"},
        "spec": {"tracing": [{"providers": [{"name": "jaeger"}], "randomSamplingPercentage": 100.0}]},
    }


def namespace(name: str = "tutorial", dataplane: str = "sidecar") -> Doc:
    """The sample's namespace: sidecar injection on, or (``dataplane="ambient"``) enrolled in ambient."""
    labels = {"istio.io/dataplane-mode": "ambient"} if dataplane == "ambient" else {"istio-injection": "enabled"}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def deployment_name(service: str, version: str) -> str:
    """The tutorial's names: ``customer`` for customer v1, else ``<service>-<version>``."""
    return service if (service, version) == ("customer", "v1") else f"{service}-{version}"


def service_account(service: str, ns: str = "tutorial") -> Doc:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": service, "namespace": ns, "labels": {"app": service}},
    }


def service(service: str, ns: str = "tutorial") -> Doc:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service, "namespace": ns, "labels": {"app": service}},
        "spec": {
            "selector": {"app": service},
            "ports": [{"name": "http", "port": SAMPLE_PORT, "targetPort": SAMPLE_PORT, "protocol": "TCP"}],
        },
    }


def deployment(
    service: str,
    version: str,
    image: str = DEV_IMAGE,
    ns: str = "tutorial",
    replicas: int = 1,
    sidecar: bool = True,
) -> Doc:
    """One version of one sample service; the image's entrypoint is ``python -m meshkit.sample``."""
    labels = {"app": service, "version": version}
    pod_labels = dict(labels) if sidecar else {**labels, "sidecar.istio.io/inject": "false"}

    def probe(path: str) -> Doc:
        return {"httpGet": {"path": path, "port": SAMPLE_PORT}, "periodSeconds": 5, "timeoutSeconds": 2}

    container = {
        "name": service,
        "image": image,
        # a loaded image must never be pulled: a pull of an unpublished tag would fail
        "imagePullPolicy": "IfNotPresent",
        # the sidecar delivers inbound traffic to the pod IP (Istio >= 1.10), so bind all interfaces
        "args": ["--service", service, "--version", version, "--port", str(SAMPLE_PORT), "--host", "0.0.0.0"],
        "ports": [{"name": "http", "containerPort": SAMPLE_PORT, "protocol": "TCP"}],
        "readinessProbe": probe("/health/ready"),
        "livenessProbe": {**probe("/health/live"), "initialDelaySeconds": 5},
        "resources": {"requests": {"cpu": "20m", "memory": "48Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment_name(service, version), "namespace": ns, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {"serviceAccountName": service, "containers": [container]},
            },
        },
    }


def service_manifests(svc: str, ns: str = "tutorial") -> list[Doc]:
    return [service_account(svc, ns), service(svc, ns)]


def sample_manifests(
    image: str = DEV_IMAGE,
    namespace: str = "tutorial",
    workloads: tuple[tuple[str, str], ...] = DEFAULT_WORKLOADS,
) -> list[Doc]:
    """ServiceAccounts and Services for the three apps, then one Deployment per (service, version)."""
    docs = [doc for svc in SERVICES for doc in service_manifests(svc, namespace)]
    return docs + [deployment(svc, ver, image, namespace) for svc, ver in workloads]


class _PlainDumper(yaml.SafeDumper):
    """No ``&id001`` anchors for shared dicts (labels reused as the selector): plain, readable YAML."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(docs: list[Doc], header: str = "") -> str:
    """Multi-document YAML, keys in the order built (kubectl's reading order)."""
    dump = [yaml.dump(doc, Dumper=_PlainDumper, sort_keys=False, default_flow_style=False) for doc in docs]
    comment = (
        "".join(f"# {line}\n" for line in textwrap.wrap(header, 100, break_on_hyphens=False, break_long_words=False))
        if header
        else ""
    )
    return comment + "---\n".join(dump)


_GENERATED = "generated by meshkit.backends.kind.manifests; edit the functions there, then regenerate"
_GATEWAY_NOTE = ("The ingress gateway lets requests in on port 80 for any host; /customer is rewritten to / "
                 "and sent to the customer service, anything else gets a 404 from the gateway.")


def cluster_files() -> dict[str, str]:
    """Relative path under ``cluster/`` -> text, rendered with the defaults."""
    image_note = (
        f"{_GENERATED}. The backend substitutes its content-hash image tag for {DEV_IMAGE}; by hand: "
        f"docker build -t {DEV_IMAGE} -f cluster/Dockerfile . && "
        f"kind load docker-image {DEV_IMAGE} --name meshkit"
    )
    files = {
        "kind-config.yaml": to_yaml([kind_config()], _GENERATED),
        "istio/istio-operator.yaml": to_yaml([istio_operator()], _GENERATED),
        "istio/helm-istiod-values.yaml": to_yaml([helm_istiod_values()], _GENERATED),
        "istio/helm-gateway-values.yaml": to_yaml([helm_gateway_values()], _GENERATED),
        "istio/addons.txt": f"# {_GENERATED}\n# Istio {versions.ISTIO_VERSION} addons, applied with kubectl"
        " apply -f <url> (fetched at install time)\n"
        + "".join(f"{url}\n" for url in versions.ADDONS.values())
        + "".join(f"# optional: {url}\n" for url in versions.OPTIONAL_ADDONS.values()),
        "telemetry.yaml": to_yaml([mesh_telemetry()], _GENERATED),
        "namespace.yaml": to_yaml([namespace()], _GENERATED),
        # a learner reads this one in lab 05: its comment explains the resource, not how it is made
        "istiofiles/gateway-customer.yaml": to_yaml(gateway_customer(), _GATEWAY_NOTE),
    }
    for svc in SERVICES:
        workloads = [deployment(svc, ver) for s, ver in DEFAULT_WORKLOADS if s == svc]
        files[f"sample/{svc}.yaml"] = to_yaml(service_manifests(svc) + workloads, image_note)
    files["sample/recommendation-v3.yaml"] = to_yaml([deployment("recommendation", "v3")], image_note)
    return files


def write_cluster_files(root: Path) -> list[Path]:
    """Write :func:`cluster_files` under ``root`` (the repo's ``cluster/``); returns the paths."""
    written = []
    for rel, text in cluster_files().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_cluster_files(Path(sys.argv[1] if len(sys.argv) > 1 else "cluster")):
        print(written_path)
