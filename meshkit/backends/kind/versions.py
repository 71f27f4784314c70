"""The versions the kind backend pins, and the minimum tool versions it accepts.

One place, so the install plan, the prerequisite check and the README agree. Facts and sources:
``reference/real-cluster.md`` §0–§2 (kind v0.32.0 defaults to node v1.36.1; Istio 1.30's precheck
needs Kubernetes ≥ 1.32; the addon manifests below were read at tag 1.30.3).

Example::

    from meshkit.backends.kind import versions
    print(versions.ISTIO_VERSION, versions.NODE_IMAGE)
"""

from __future__ import annotations

import re

KIND_VERSION = "0.32.0"
KUBERNETES_VERSION = "1.36.1"
# kind's release notes say to pin node images by digest; this is the one v0.32.0 was released with.
NODE_IMAGE = "kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5"
ISTIO_VERSION = "1.30.3"
ISTIO_ADDONS_BASE = f"https://raw.githubusercontent.com/istio/istio/{ISTIO_VERSION}/samples/addons"
ISTIO_HELM_REPO = "https://istio-release.storage.googleapis.com/charts"

#: the Gateway API release whose CRDs Istio 1.30 reads (its upgrade notes require v1.5.x), installed
#: before Istio as istio.io's Gateway API guide does; the experimental channel adds HTTPRoute retry
GATEWAY_API_VERSION = "v1.5.1"
GATEWAY_API_RELEASES = "https://github.com/kubernetes-sigs/gateway-api/releases/download"


def gateway_api_manifest(channel: str = "standard") -> str:
    """The release manifest of the Gateway API CRDs for ``channel`` (standard or experimental)."""
    name = "experimental-install.yaml" if channel == "experimental" else "standard-install.yaml"
    return f"{GATEWAY_API_RELEASES}/{GATEWAY_API_VERSION}/{name}"


#: addon name -> manifest URL; fetched at install time by kubectl, never vendored here
ADDONS: dict[str, str] = {name: f"{ISTIO_ADDONS_BASE}/{name}.yaml" for name in ("prometheus", "jaeger", "kiali")}
OPTIONAL_ADDONS: dict[str, str] = {"grafana": f"{ISTIO_ADDONS_BASE}/grafana.yaml"}

#: minimum versions of the host tools; kubectl follows the ±1 minor skew policy around node v1.36
MIN_VERSIONS: dict[str, tuple[int, ...]] = {
    "docker": (20, 10),
    "kind": (0, 31),
    "kubectl": (1, 35),
    "istioctl": (1, 30),
    "helm": (3, 8),
}

_VERSION_RE = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> tuple[int, ...] | None:
    """The first ``major.minor[.patch]`` in a tool's version output, or None.

    >>> parse_version("kind v0.32.0 go1.24.2 linux/amd64")
    (0, 32, 0)
    """
    match = _VERSION_RE.search(text)
    if not match:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


def same_minor(version: str, pinned: str = ISTIO_VERSION) -> bool:
    """True when ``version`` has the pinned release's major.minor (patches may differ).

    >>> same_minor("1.30.4")
    True
    """
    got, want = parse_version(version), parse_version(pinned)
    return got is not None and want is not None and got[:2] == want[:2]


def dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)
