"""What Envoy's cluster counters cost on the request path, and what reading them costs (no mesh needed).

On the request path a cluster counts in plain integers: per request ``upstream_rq_total`` and the
host's ``rq_total`` when the request gets a connection, ``upstream_rq_<class>xx`` and the host's
``rq_success``/``rq_error`` when its outcome is reported (plus ``upstream_rq_pending_total`` and
``upstream_cx_total`` when it waits or opens a connection). Gauges are computed only when
``/stats`` or ``/clusters`` is read. The figures compare one request's counting with a proxy pass
(about 0.1-0.3 ms here) and show the price of rendering the admin pages and the config dump.

Example::

    python -m benchmarks.envoystats
"""

from __future__ import annotations

import time
from collections.abc import Callable

from meshkit.backends.local.proxy.admin import clusters_text, stats_prometheus, stats_text
from meshkit.backends.local.proxy.cluster import Cluster, ClusterSpec, Endpoint, OutlierSpec
from meshkit.backends.local.proxy.config import ProxyIdentity, compile_view
from meshkit.backends.local.proxy.configdump import DumpContext, config_dump


def _per_call_us(fn: Callable[[], object], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6


def _clusters(n: int = 8) -> dict[str, Cluster]:
    out = {}
    for i in range(n):
        eps = tuple(Endpoint(f"pod-{i}-{j}", "127.0.0.1", 40000 + 10 * i + j) for j in range(2))
        spec = ClusterSpec(f"outbound|8080|v{i}|svc{i}.tutorial.svc.cluster.local", endpoints=eps,
                           outlier=OutlierSpec() if i % 2 else None)
        out[spec.name] = Cluster(spec, clock=time.monotonic)
    return out


def measure(n: int = 100_000) -> dict[str, float]:
    """Microseconds: counting one request's outcome, and rendering /stats, /clusters and /config_dump."""
    clusters = _clusters()
    cluster = next(iter(clusters.values()))
    host = cluster.hosts[0]

    def count_request() -> None:  # what acquire() and report() add for one request
        host.rq_total += 1
        cluster.stats["upstream_rq_total"] += 1
        cluster.report(host, 200)

    snapshot = {"version": 2, "services": [{"name": s, "namespace": "tutorial", "port": 8080}
                                           for s in ("customer", "preference", "recommendation")]}
    view = compile_view(snapshot, ProxyIdentity("preference-v1-x", "preference", "v1", {"app": "preference"}))
    return {
        "count one request (request path)": _per_call_us(count_request, n),
        "/stats, 8 clusters (on read)": _per_call_us(lambda: stats_text(clusters), n // 500),
        "/stats/prometheus envoy_cluster_* (on read)": _per_call_us(lambda: stats_prometheus(clusters), n // 500),
        "/clusters, 8 clusters (on read)": _per_call_us(lambda: clusters_text(clusters), n // 500),
        "/config_dump, sample mesh (on read)": _per_call_us(lambda: config_dump(view, DumpContext(), True), n // 500),
    }


def main() -> None:
    print("Envoy cluster stats, cost")
    for name, us in measure().items():
        print(f"  {name:44s} {us:9.2f} µs")


if __name__ == "__main__":
    main()
