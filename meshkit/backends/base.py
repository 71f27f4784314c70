"""The Backend contract: the one small interface the local mesh and real Istio both implement.

The API (:class:`meshkit.Mesh`), the CLI and the notebooks only talk to this contract. Shapes that
cross it are plain data (dicts and lists of JSON-able values, or the small dataclasses below), so a
result from the kind backend looks exactly like one from the local backend.

Example::

    from meshkit.backends import get_backend
    backend = get_backend("local")(home="/tmp/mesh-a")
    backend.up(profile="current")
    print([p.name for p in backend.pods()])
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from meshkit.errors import BackendUnavailable

#: capability flags a backend may offer; labs check them in one place
CAP_LOCAL_TIME = "injected-clock"  # timing can be scaled down in tests
CAP_SNIFF = "sniff"  # can show the bytes on the wire to a pod
CAP_KIALI = "kiali"


@dataclass(frozen=True)
class Pod:
    """One pod of the sample app (or the ingress gateway), as ``meshkit status`` lists it."""

    name: str
    app: str
    version: str
    deployment: str
    ready: bool
    sidecar: bool = True
    service_account: str = ""
    namespace: str = "tutorial"
    config_version: int = 0
    synced: bool = True
    restarts: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["extra"] = dict(self.extra)
        return d


@dataclass(frozen=True)
class ApplyResult:
    """One line of ``meshkit apply``: ``virtualservice.networking.istio.io/recommendation created``."""

    kind: str
    group: str
    name: str
    action: str  # created | configured | unchanged | deleted
    warnings: tuple[str, ...] = ()

    def __str__(self) -> str:
        kind = f"{self.kind.lower()}.{self.group}" if self.group else self.kind.lower()  # core: service/x
        return f"{kind}/{self.name} {self.action}"


class Backend(ABC):
    """What every backend implements. Keep it small; optional features are capability flags.

    Resources cross the contract as plain dicts in Kubernetes shape
    (``apiVersion``, ``kind``, ``metadata``, ``spec``), already validated by :mod:`meshkit.resources`.
    """

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[str]] = frozenset()

    # lifecycle -------------------------------------------------------------------------------
    @abstractmethod
    def up(self, profile: str = "current", **options: Any) -> None:
        """Start (or reuse) the mesh and deploy the sample; idempotent."""

    @abstractmethod
    def down(self) -> None:
        """Stop everything this backend started."""

    @abstractmethod
    def is_running(self) -> bool:
        """True when a mesh answers for this backend's home / context."""

    # resources -------------------------------------------------------------------------------
    @abstractmethod
    def apply(self, resources: Sequence[Mapping[str, Any]]) -> list[ApplyResult]:
        """Apply validated resources, all or nothing."""

    @abstractmethod
    def delete(self, kind: str, name: str) -> ApplyResult:
        """Delete one resource by kind (any case, plural or short name accepted) and name."""

    @abstractmethod
    def get(self, kind: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        """Stored resources, optionally filtered by kind and name."""

    @abstractmethod
    def reset(self) -> list[ApplyResult]:
        """Remove every Istio resource except the ingress gateway's (the tutorial's clean.sh)."""

    # workloads -------------------------------------------------------------------------------
    @abstractmethod
    def pods(self) -> list[Pod]:
        """All pods with their proxy sync state."""

    @abstractmethod
    def deploy(self, service: str, version: str, replicas: int = 1, sidecar: bool = True) -> str:
        """Create a deployment (``recommendation-v3``); returns its name."""

    @abstractmethod
    def scale(self, deployment: str, replicas: int) -> None: ...

    @abstractmethod
    def undeploy(self, deployment: str) -> None: ...

    @abstractmethod
    def misbehave(self, target: str, on: bool = True) -> list[str]:
        """Make a pod or every pod of a deployment answer 503 (``on=False``: behave); returns pods."""

    @abstractmethod
    def delay(self, target: str, seconds: float) -> list[str]:
        """Make the app of a pod or deployment answer after ``seconds`` (0 clears); returns pods."""

    @abstractmethod
    def kill(self, pod: str) -> str:
        """Kill a pod; its deployment starts a replacement, whose name is returned."""

    @abstractmethod
    def exec_request(
        self, pod: str, url: str, headers: Mapping[str, str] | None = None, method: str = "GET"
    ) -> tuple[int, str]:
        """Send a request from inside a pod, through its sidecar; returns (status, body)."""

    # traffic ---------------------------------------------------------------------------------
    @abstractmethod
    def gateway_url(self) -> str:
        """Base URL of the ingress gateway, e.g. ``http://127.0.0.1:31380``."""

    # telemetry -------------------------------------------------------------------------------
    @abstractmethod
    def metrics_text(self, pod: str | None = None) -> str:
        """Prometheus text exposition, merged over all proxies or for one pod."""

    @abstractmethod
    def request_log(self, since: float = 0.0, limit: int = 10_000) -> list[dict[str, Any]]:
        """Recent per-request records from every proxy (access-log fields as a dict)."""

    @abstractmethod
    def traces(self, service: str | None = None, limit: int = 20) -> dict[str, Any]:
        """Traces in Jaeger's query-API shape: ``{"data": [{"traceID", "spans", "processes"}]}``."""

    # data-plane introspection (optional) ------------------------------------------------------
    def envoy_admin(self, pod: str, path: str) -> str:
        """GET ``path`` on the pod's Envoy admin port (``/config_dump``, ``/clusters``, ``/stats``)."""
        raise BackendUnavailable(f"the {self.name} backend cannot read Envoy's admin port")

    def istiod_config_dump(self, pod: str) -> dict[str, Any]:
        """The config the control plane would push to ``pod`` now, as an Envoy config dump."""
        raise BackendUnavailable(f"the {self.name} backend cannot show istiod's view of a proxy")

    def flush_telemetry(self) -> bool:
        """Make every request that has completed visible to :meth:`request_log`, if the backend can.

        True when it did (the local mesh's sidecars ship their buffered records at once); False when
        the backend has no such barrier and readers must wait for the telemetry to arrive.
        """
        return False

    def close(self) -> None:  # noqa: B027 - optional hook with a sensible default
        """Release client resources (connections); does not stop the mesh."""


_REGISTRY: dict[str, tuple[str, str]] = {
    # name -> (dotted path of the Backend class, install hint when its import fails)
    "local": ("meshkit.backends.local.backend:LocalBackend", "pip install meshkit"),
    "kind": ("meshkit.backends.kind.backend:KindBackend", "pip install 'meshkit[kind]'"),
    "kube": ("meshkit.backends.kind.backend:KubeBackend", "pip install 'meshkit[kind]'"),
}


def registered_backends() -> list[str]:
    """Names accepted by ``--backend``."""
    return sorted(_REGISTRY)


def get_backend(name: str) -> type[Backend]:
    """The Backend class registered under ``name``, imported on first use."""
    try:
        path, hint = _REGISTRY[name]
    except KeyError:
        raise BackendUnavailable(
            f"unknown backend {name!r}; choose one of: {', '.join(registered_backends())}"
        ) from None
    module, _, attr = path.partition(":")
    try:
        cls: type[Backend] = getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise BackendUnavailable(f"backend {name!r} needs {exc.name}: {hint}") from None
    return cls
