"""The front door: one object for a running mesh, whatever the backend.

Example::

    import meshkit
    mesh = meshkit.up()                       # or meshkit.connect() to an already running mesh
    mesh.apply("cluster/istiofiles/destination-rule-recommendation-v1-v2.yaml")
    print(mesh.load(n=100).summary()["versions"])
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from meshkit.backends.base import ApplyResult, Backend, Pod, get_backend
from meshkit.errors import InvalidConfig
from meshkit.traffic import LoadResult, TrafficRunner, run_load

Source = str | Path | Mapping[str, Any] | Sequence[Mapping[str, Any]]


def load_resources(sources: Sequence[Source], profile: str = "current") -> tuple[list[dict[str, Any]], list[str]]:
    """Parse and validate YAML text, files, directories or dicts; raises InvalidConfig on errors.

    Returns the normalised resources and the warnings (istioctl-style lines).
    """
    from meshkit.resources import Document, load_paths, parse_text, validate_documents

    docs: list[Document] = []
    for src in sources:
        if isinstance(src, Mapping):
            docs.append(Document("<object>", len(docs), dict(src), 1))
        elif isinstance(src, Path) or (isinstance(src, str) and "\n" not in src and ":" not in src):
            docs.extend(load_paths([str(src)]))
        elif isinstance(src, str):
            docs.extend(parse_text(src, "<text>"))
        else:
            docs.extend(Document("<object>", i, dict(d), 1) for i, d in enumerate(src))
    report = validate_documents(docs, profile=profile)
    report.raise_for_errors()
    return report.resources, [w.format() for w in report.warnings]


class Mesh:
    """A mesh on one backend. The CLI is a thin layer over these methods."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.warnings: list[str] = []

    @property
    def profile(self) -> str:
        status = getattr(self.backend, "status", None)
        return str(status().get("profile", "current")) if callable(status) else "current"

    # resources ---------------------------------------------------------------------------------
    def apply(self, *sources: Source) -> list[ApplyResult]:
        """Validate then apply, all or nothing; raises :class:`InvalidConfig` with located messages."""
        resources, self.warnings = load_resources(sources, self.profile)
        if not resources:
            raise InvalidConfig(["error: no objects passed to apply"])
        results = self.backend.apply(resources)
        self.warnings += [f"warning: {w}" for r in results for w in r.warnings]
        return results

    def delete(self, kind: str, name: str) -> ApplyResult:
        from meshkit.resources import resolve_kind

        return self.backend.delete(resolve_kind(kind).kind, name)

    def get(self, kind: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        if kind is None:
            return self.backend.get()
        from meshkit.resources import resolve_kind

        return self.backend.get(resolve_kind(kind).kind, name)

    def reset(self) -> list[ApplyResult]:
        return self.backend.reset()

    # workloads ---------------------------------------------------------------------------------
    def pods(self) -> list[Pod]:
        return self.backend.pods()

    def deploy(self, service: str, version: str, replicas: int = 1, sidecar: bool = True) -> str:
        return self.backend.deploy(service, version, replicas, sidecar)

    def scale(self, deployment: str, replicas: int) -> None:
        self.backend.scale(deployment, replicas)

    def undeploy(self, deployment: str) -> None:
        self.backend.undeploy(deployment)

    def misbehave(self, target: str) -> list[str]:
        return self.backend.misbehave(target, True)

    def behave(self, target: str) -> list[str]:
        return self.backend.misbehave(target, False)

    def delay(self, target: str, seconds: float) -> list[str]:
        return self.backend.delay(target, seconds)

    def kill(self, pod: str) -> str:
        return self.backend.kill(pod)

    def exec(self, pod: str, url: str, headers: Mapping[str, str] | None = None) -> tuple[int, str]:
        return self.backend.exec_request(pod, url, headers)

    def certs(self, pod: str) -> dict[str, Any]:
        """The pod's certificate chain as ``istioctl proxy-config secret`` shows it."""
        return self.backend.certs(pod)  # type: ignore[attr-defined]

    def sniff(self, target: str, requests: int = 3, seconds: float = 3.0) -> list[dict[str, Any]]:
        """What an eavesdropper sees on the wire to ``target`` while a few requests flow."""
        return self.backend.sniff(target, seconds, requests)  # type: ignore[attr-defined]

    def token(self, subject: str | None = None, ttl: float = 3600, **claims: Any) -> str:
        """Mint a test JWT from the local issuer, e.g. ``mesh.token(role="customer")``."""
        return self.backend.token(claims, subject, ttl)  # type: ignore[attr-defined]

    # traffic -----------------------------------------------------------------------------------
    def curl(self, path: str = "/customer", headers: Mapping[str, str] | None = None, *, https: bool = False,
             cacert: str | None = None) -> tuple[int, str]:
        """One request through the ingress gateway: (status, body).

        ``https=True`` uses the gateway's HTTPS listener; ``cacert`` is the PEM to trust (the
        learner's self-signed certificate), and the ``host`` header is also the SNI name.
        """
        ctx = None
        base = self.backend.gateway_url()
        if https:
            base = self.backend.gateway_https_url()  # type: ignore[attr-defined]
            ctx = ssl.create_default_context(cadata=cacert) if cacert else ssl.create_default_context()
        rec = run_load(base, n=1, headers=headers, path=path, ssl_context=ctx).records[0]
        return rec["code"], rec["body"]

    def create_tls_secret(self, name: str, cert_pem: str, key_pem: str) -> None:
        """A TLS credential for a Gateway's ``credentialName`` (``kubectl create secret tls`` in Istio)."""
        self.backend.create_tls_secret(name, cert_pem, key_pem)  # type: ignore[attr-defined]

    def load(
        self,
        n: int | None = None,
        duration: float | None = None,
        concurrency: int = 1,
        qps: float | None = None,
        headers: Mapping[str, str] | None = None,
        path: str = "/customer",
        flags: bool = True,
    ) -> LoadResult:
        """A bounded load through the gateway; each record gets the Envoy flag the mesh recorded."""
        result = run_load(self.backend.gateway_url(), n, duration, concurrency, qps, headers, path)
        if flags and result.records:
            self.attach_flags(result.records)
        return result

    def attach_flags(self, records: list[dict[str, Any]], timeout: float = 5.0) -> None:
        """Join the proxies' records by x-request-id: the flag where each failure originated.

        The proxies ship telemetry every 0.2 s; this waits until the collector has stopped growing
        (at most ``timeout``), so a busy machine does not lose flags.
        """
        since = min(r["t"] for r in records) - 1
        rows: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.25)
            latest = self.backend.request_log(since=since, limit=200_000)
            if rows and len(latest) == len(rows):
                break
            rows = latest
        by_id: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_id.setdefault(row.get("request_id", ""), []).append(row)
        from meshkit.telemetry.explain import flag_of_request

        for rec in records:
            rec["flags"] = flag_of_request(by_id.get(rec["request_id"], []))

    def traffic(self, rate: float = 10.0, concurrency: int = 2, headers: Mapping[str, str] | None = None,
                path: str = "/customer") -> TrafficRunner:
        return TrafficRunner(self.backend.gateway_url(), rate, concurrency, headers, path)

    # telemetry ---------------------------------------------------------------------------------
    def request_log(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Every proxy's per-request records (access-log fields), oldest first."""
        return self.backend.request_log(since)

    def metrics(self, pod: str | None = None) -> str:
        """Istio's metrics in Prometheus text format, merged over every proxy (or one pod)."""
        return self.backend.metrics_text(pod)

    def traces(self, service: str | None = None, limit: int = 20) -> dict[str, Any]:
        """Traces in Jaeger's query-API shape (``{"data": [{"traceID", "spans", "processes"}]}``)."""
        return self.backend.traces(service, limit)

    def graph(self, window_s: float = 60.0) -> dict[str, Any]:
        """The versioned-app service graph of the last ``window_s`` seconds, as Kiali derives it."""
        from meshkit.telemetry.graph import graph

        now = time.time()
        return graph(self.backend.request_log(now - window_s, limit=200_000), window_s, now=now)

    def explain(self, limit: int = 10, since: float = 0.0) -> list[str]:
        """One line per recent failed request: which proxy answered, the flag, and the rule behind it."""
        from meshkit.telemetry.explain import explain

        return explain(self.backend.request_log(since, limit=200_000), limit)

    def rates(self, field: str = "destination_version", window_s: float = 60.0,
              service: str | None = "recommendation") -> list[dict[str, Any]]:
        """Requests per second by ``field`` (version, response_code, response_flags) as tidy rows."""
        from meshkit.telemetry.queries import rate_by

        now = time.time()
        records = self.backend.request_log(now - window_s, limit=200_000)
        return rate_by(records, field, window_s, service=service, now=now)

    def close(self) -> None:
        self.backend.close()


def connect(backend: str = "local", **options: Any) -> Mesh:
    """A handle on a running mesh (raises MeshNotRunning when none runs)."""
    impl = get_backend(backend)(**options)
    if not impl.is_running():
        from meshkit.errors import MeshNotRunning

        raise MeshNotRunning(str(options.get("home", "")))
    return Mesh(impl)


def up(backend: str = "local", profile: str = "current", **options: Any) -> Mesh:
    """Start (or reuse) a mesh and return a handle on it."""
    ctor_opts = {k: v for k, v in options.items() if k in ("home", "context", "namespace", "cluster_name")}
    impl = get_backend(backend)(**ctor_opts)
    impl.up(profile=profile, **{k: v for k, v in options.items() if k not in ctor_opts})
    return Mesh(impl)
