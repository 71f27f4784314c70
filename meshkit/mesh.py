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


def load_resources(
    sources: Sequence[Source], profile: str = "current", namespace: str | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Parse and validate YAML text, files, directories or dicts; raises InvalidConfig on errors.

    ``namespace`` is kubectl's ``-n``: the namespace of resources that name none, and a resource
    naming another one is refused as kubectl refuses it. Returns the normalised resources and the
    warnings (istioctl-style lines).
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
    report = validate_documents(docs, profile=profile, default_namespace=namespace or "tutorial")
    report.raise_for_errors()
    for doc in docs if namespace else []:
        meta = doc.data.get("metadata") if isinstance(doc.data, Mapping) else None
        given = meta.get("namespace") if isinstance(meta, Mapping) else None
        if given and given != namespace and doc.data.get("kind") != "Namespace":
            raise InvalidConfig([
                f'error: the namespace from the provided object "{given}" does not match the namespace '
                f'"{namespace}". You must pass \'--namespace={given}\' to perform this operation.'
            ])
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
    def apply(self, *sources: Source, namespace: str | None = None) -> list[ApplyResult]:
        """Validate then apply, all or nothing; raises :class:`InvalidConfig` with located messages.

        Istio and Kubernetes resources mix freely (``Deployment``, ``Service``, ``ServiceAccount``,
        ``Namespace``): ``mesh.apply("preference/kubernetes/Deployment.yml", namespace="tutorial")``.
        """
        resources, self.warnings = load_resources(sources, self.profile, namespace)
        if not resources:
            raise InvalidConfig(["error: no objects passed to apply"])
        results = self.backend.apply(resources)
        self.warnings += [f"warning: {w}" for r in results for w in r.warnings]
        return results

    def delete(self, kind: str, name: str, namespace: str | None = None) -> ApplyResult:
        from meshkit.resources import resolve_kind

        if namespace:
            return self.backend.delete(resolve_kind(kind).key, name, namespace)  # type: ignore[call-arg]
        return self.backend.delete(resolve_kind(kind).key, name)

    def get(self, kind: str | None = None, name: str | None = None, *, namespace: str | None = None,
            selector: str = "") -> list[dict[str, Any]]:
        """Stored resources; ``get("pods", selector="app=customer")`` lists pods like kubectl does."""
        if kind is None:
            return self.backend.get()
        from meshkit.resources import resolve_kind

        info = resolve_kind(kind)
        if namespace or selector:
            from meshkit.resources.kubernetes import selector_error

            if msg := selector_error(selector):
                raise InvalidConfig([f"error: {msg}"])
            if self.backend.name != "local":
                from meshkit.errors import Unsupported

                raise Unsupported("-n and -l are supported on the local backend; use kubectl on a cluster")
            return self.backend.get(info.key, name, namespace=namespace, selector=selector)  # type: ignore[call-arg]
        return self.backend.get(info.key, name)

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
        """Delete a deployment; with the last deployment of a service its Service goes too."""
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
        rows = self.settled_request_log(since, timeout)
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

    def graph(self, window_s: float = 60.0, now: float | None = None) -> dict[str, Any]:
        """The versioned-app service graph of the ``window_s`` seconds up to ``now`` (default: the
        time of the call), as Kiali derives it."""
        from meshkit.telemetry.graph import graph

        now = time.time() if now is None else now
        tcp = getattr(self.backend, "tcp_increase", None)  # ztunnel's L4 series (ambient), read at once
        return graph(self.settled_request_log(now - window_s), window_s, now=now,
                     tcp=tcp(now - window_s, now) if tcp is not None else ())

    def settled_request_log(self, since: float = 0.0, timeout: float = 5.0) -> list[dict[str, Any]]:
        """:meth:`request_log` once the proxies have reported every request answered before this call.

        The local mesh flushes its sidecars (a barrier); other backends are read until the count
        stops growing, for at most ``timeout`` seconds.
        """
        if self.backend.flush_telemetry():
            return self.backend.request_log(since, limit=200_000)
        rows: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.25)
            latest = self.backend.request_log(since=since, limit=200_000)
            if rows and len(latest) == len(rows):
                break
            rows = latest
        return rows

    def explain(self, limit: int = 10, since: float = 0.0) -> list[str]:
        """One line per recent failed request: which proxy answered, the flag, and the rule behind it.

        It waits for the proxies' reports of the requests already answered, so a diagnosis is never
        made from half of a request's records.

        Example::

            mesh.load(n=40)
            print(*mesh.explain(limit=3, since=time.time() - 30), sep="\n")
        """
        from meshkit.telemetry.explain import explain

        return explain(self.settled_request_log(since), limit)

    def rates(self, field: str = "destination_version", window_s: float = 60.0,
              service: str | None = "recommendation", now: float | None = None) -> list[dict[str, Any]]:
        """Requests per second by ``field`` (version, response_code, response_flags) as tidy rows.

        The window ends at ``now`` (default: the time of the call), so a caller that computed the
        window from its own clock reading can pass that reading and count exactly the same requests.
        """
        from meshkit.telemetry.queries import rate_by

        now = time.time() if now is None else now
        records = self.settled_request_log(now - window_s)
        return rate_by(records, field, window_s, service=service, now=now)

    # data plane introspection (istioctl proxy-config / proxy-status / x describe) ----------------
    def envoy_admin(self, pod: str, path: str = "/config_dump") -> str:
        """GET an Envoy admin path of a pod's proxy, e.g. ``mesh.envoy_admin(pod, "/clusters")``."""
        return self.backend.envoy_admin(pod, path)

    def config_dump(self, pod: str, include_eds: bool = False) -> dict[str, Any]:
        """The pod's Envoy ``/config_dump`` (snake_case ``configs`` array)."""
        import json

        result: dict[str, Any] = json.loads(self.envoy_admin(pod, "/config_dump" + ("?include_eds" if include_eds
                                                                                      else "")))
        return result

    def proxy_config(self, pod: str, kind: str = "clusters", **filters: Any) -> Any:
        """``istioctl proxy-config KIND POD`` as a tidy table (a DataFrame when pandas is there).

        Filters are istioctl's: ``fqdn``, ``port``, ``subset``, ``direction`` (clusters),
        ``port``/``address`` (listeners), ``name`` (routes), ``cluster``/``status`` (endpoints).

        Example::

            mesh.proxy_config("preference", "routes", name="8080")
            mesh.proxy_config("preference", "clusters", fqdn="recommendation", subset="version-v1")
        """
        from meshkit import proxyconfig as pc

        rows, _ = self._proxy_table(pod, kind, **filters)
        return pc.tidy(rows)

    def _proxy_table(self, pod: str, kind: str, **filters: Any) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
        import json

        from meshkit import proxyconfig as pc

        if kind not in pc.KINDS or kind in ("all", "bootstrap"):
            raise InvalidConfig([f"unknown proxy-config type {kind!r}; choose one of: clusters, listeners, "
                                 "routes, endpoints, secret"])
        dump = self.config_dump(pod) if kind != "endpoints" else {}
        status = json.loads(self.envoy_admin(pod, "/clusters?format=json")) if kind == "endpoints" else None
        return pc.table(dump, status, kind, **filters)

    def proxy_config_text(self, pod: str, kind: str = "clusters", output: str = "short", **filters: Any) -> str:
        """What ``meshkit proxy-config`` prints: istioctl's table, or the Envoy objects as JSON/YAML."""
        import json

        from meshkit import proxyconfig as pc

        if output == "short" and kind != "all" and kind != "bootstrap":
            rows, columns = self._proxy_table(pod, kind, **filters)
            return pc.render(rows, columns, pc.PADDING.get(kind, 5))
        dump = self.config_dump(pod, include_eds=kind == "all") if kind != "endpoints" else {}
        status = json.loads(self.envoy_admin(pod, "/clusters?format=json")) if kind in ("endpoints", "all") else {}
        if output == "short":
            return pc.all_tables(dump, status)
        objs = pc.resources(dump, status, kind, **filters)
        if kind == "all":
            return json.dumps(objs, indent=2) + "\n"  # the raw admin dump, snake_case as Envoy prints it
        return (pc.as_yaml(objs) if output == "yaml" else pc.as_json(objs)) + "\n"

    def proxy_status(self, pod: str | None = None, verbose: bool = False) -> Any:
        """``istioctl proxy-status``: one row per proxy; with ``pod``, istiod's view diffed against the proxy's."""
        from meshkit import proxyconfig as pc
        from meshkit.backends.kind.versions import ISTIO_VERSION

        istioctl = getattr(self.backend, "istioctl", None)
        if istioctl is not None:  # a real cluster: the real istioctl answers
            return str(istioctl("proxy-status", *([pod] if pod else []), *(["-v", "1"] if verbose else [])))
        if pod is not None:
            name = pod.rsplit(".", 1)[0] if pod not in {p.name for p in self.pods()} else pod
            return pc.diff_configs(self.backend.istiod_config_dump(name), self.config_dump(name, include_eds=True))
        return pc.status_rows(self.pods(), "istiod-local" if self.backend.name == "local" else "istiod",
                              ISTIO_VERSION, verbose)

    def describe_pod(self, pod: str) -> str:
        """``istioctl x describe pod POD``: service, matching subsets, traffic policy, routes, warnings."""
        from meshkit import proxyconfig as pc

        chosen = [p for p in self.pods() if p.name == pod] or [p for p in self.pods() if p.deployment == pod]
        if not chosen:
            from meshkit.errors import NotFound

            raise NotFound(f'pods "{pod}" not found')
        p = chosen[0]
        labels = {"app": p.app, **({"version": p.version} if p.version else {})}
        info = {"name": p.name, "namespace": p.namespace, "labels": labels, "app": p.app, "sidecar": p.sidecar}
        return pc.describe_pod(info, self.get(), None)

    # ambient ------------------------------------------------------------------------------------
    def label(self, kind: str, name: str, labels: Mapping[str, str | None]) -> dict[str, Any]:
        """``kubectl label ns/NAME`` or ``pod/NAME``: e.g. ``mesh.label("Namespace", "tutorial",
        {"istio.io/dataplane-mode": "ambient"})`` moves the namespace's pods to ambient, no restart."""
        label = getattr(self.backend, "label", None)
        if not callable(label):
            from meshkit.errors import Unsupported

            raise Unsupported("labels are changed with kubectl on a cluster")
        result: dict[str, Any] = label(kind, name, labels)
        return result

    def rollout_restart(self, *deployments: str) -> None:
        """``kubectl rollout restart deployment/NAME...``: the deployments' pods are replaced by new ones,
        with or without a sidecar as the namespace's ``istio-injection`` label now says.

        Example::

            mesh.label("Namespace", "tutorial", {"istio-injection": None})   # no more injection
            mesh.rollout_restart("customer")                                  # customer's new pod: no sidecar
        """
        restart = getattr(self.backend, "rollout_restart", None)
        if not callable(restart):
            from meshkit.errors import Unsupported

            raise Unsupported(f"on a cluster: kubectl rollout restart deployment {' '.join(deployments)}")
        restart(*deployments)

    def ztunnel_dump(self) -> dict[str, Any]:
        """The node ztunnel's config (workloads, services, policies, certificates, connections)."""
        dump = getattr(self.backend, "ztunnel_dump", None)
        if not callable(dump):
            from meshkit.errors import Unsupported

            raise Unsupported("on a cluster: istioctl ztunnel-config all -o json")
        result: dict[str, Any] = dump()
        return result

    def ztunnel_config(self, kind: str = "workloads", namespace: str | None = None) -> list[tuple[str, ...]]:
        """``istioctl ztunnel-config KIND`` as rows, the header first."""
        from meshkit.ztunnelconfig import ztunnel_table

        return ztunnel_table(self.ztunnel_dump(), kind, namespace)

    # waypoints (istioctl waypoint) -------------------------------------------------------------------
    def waypoint_apply(self, namespace: str | None = None, name: str = "waypoint", for_: str | None = "service",
                       enroll_namespace: bool = False, overwrite: bool = False, wait: bool = True) -> list[str]:
        """``istioctl waypoint apply``: a Gateway of class istio-waypoint, its proxy pod; istioctl's lines.

        ``for_=None`` leaves the ``istio.io/waypoint-for`` label off, as istioctl does without ``--for``.

        Example::

            mesh.waypoint_apply(enroll_namespace=True)
            # ['✅ waypoint tutorial/waypoint applied', '✅ waypoint tutorial/waypoint is ready!',
            #  '✅ namespace tutorial labeled with "istio.io/use-waypoint: waypoint"']
        """
        from meshkit import waypointctl

        own = getattr(self.backend, "waypoint_apply", None)
        if callable(own):
            lines: list[str] = own(namespace or "tutorial", name, for_, enroll_namespace, overwrite, wait)
            return lines
        return waypointctl.apply(self, namespace or "tutorial", name, for_, enroll_namespace, overwrite, wait)

    def waypoint_list(self, namespace: str | None = None, all_namespaces: bool = False) -> str:
        """``istioctl waypoint list``: NAME REVISION TRAFFIC TYPE PROGRAMMED (``-A`` adds NAMESPACE).

        Example::

            print(mesh.waypoint_list())
        """
        from meshkit import waypointctl

        own = getattr(self.backend, "waypoint_text", None)
        if callable(own):
            text: str = own("list", namespace or "tutorial", all_namespaces)
            return text
        return waypointctl.list_table(waypointctl.gateways(self, None if all_namespaces else namespace or "tutorial"),
                                      all_namespaces)

    def waypoint_status(self, name: str | None = None, namespace: str | None = None) -> str:
        """``istioctl waypoint status``: NAME STATUS TYPE REASON MESSAGE (each waypoint's Programmed condition).

        Example::

            print(mesh.waypoint_status())
        """
        from meshkit import waypointctl

        own = getattr(self.backend, "waypoint_text", None)
        if callable(own):
            text: str = own("status", namespace or "tutorial", False)
            return text
        gws = waypointctl.gateways(self, namespace or "tutorial")
        return waypointctl.status_table([g for g in gws if name is None or g["metadata"]["name"] == name])

    def waypoint_delete(self, name: str = "waypoint", namespace: str | None = None) -> list[str]:
        """``istioctl waypoint delete NAME``: ``waypoint tutorial/waypoint deleted``.

        Example::

            mesh.waypoint_delete()
        """
        from meshkit import waypointctl

        own = getattr(self.backend, "waypoint_delete", None)
        if callable(own):
            lines: list[str] = own(name, namespace or "tutorial")
            return lines
        return waypointctl.delete(self, namespace or "tutorial", [name])

    def restart_control_plane(self) -> None:
        """Restart the control plane only; the pods keep serving and the new one adopts them.

        Example: ``mesh.restart_control_plane()`` (``meshkit restart``), local backend only.
        """
        restart = getattr(self.backend, "restart", None)
        if not callable(restart):
            from meshkit.errors import Unsupported

            raise Unsupported(f"the {self.backend.name} backend cannot restart its control plane from here")
        restart()

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
