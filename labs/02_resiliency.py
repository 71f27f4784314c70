# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Resiliency: load balancing, retries, timeouts, circuit breakers and pool ejection
#
# **Goal:** see the proxies protect the chain from slow and failing pods — how they pick a pod, when they
# retry, when they give up waiting, when they refuse to pile up requests, and how they take a failing
# pod out of the pool.
#
# This lab follows **current Istio**, which differs from the tutorial's Istio 1.9 in two places it
# points out: the default load balancer is `LEAST_REQUEST` (not round robin), and a 503 from an app is
# no longer retried by default.

# %% tags=["parameters"]
BACKEND = None      # None: $MESHKIT_BACKEND, else what this mesh home last ran, else "local"
                    # (processes on 127.0.0.1); "kind" (real Istio on kind) or "kube" (a shared cluster)
CONTEXT = None      # kube: the kubectl context (None: $MESHKIT_CONTEXT)
NAMESPACE = None    # kube: your own namespace (None: $MESHKIT_NAMESPACE)
FAST = False        # True scales delays and request counts down (CI, quick demos)

# %%
from meshkit import lab
from meshkit.lab import check

mesh = lab.setup(backend=BACKEND, context=CONTEXT, namespace=NAMESPACE)
FAST = FAST or lab.fast()          # MESHKIT_LAB_FAST=1 (CI, a quick demo) scales every lab down
T = 0.1 if FAST else 1.0          # time scale: delays and timeouts of the tutorial × T

# %% [markdown]
# ## 1 · Load balancing
#
# As in the tutorial, run three replicas of v2 next to v1, then pick the algorithm in the panel (it
# writes a DestinationRule). Requests are sent one after the other, so the order shows the algorithm.

# %%
from meshkit.widgets import lb_panel

mesh.scale("recommendation-v2", 3)
lb = lb_panel(mesh)
lb.controls["simple"].value = "ROUND_ROBIN"
lb.apply()
lb

# %%
check.load_balancing(mesh, "ROUND_ROBIN")

# %%
mesh.apply(lab.istiofile("destination-rule-recommendation-lb_policy_app.yaml"))
check.load_balancing(mesh, "RANDOM")

# %% [markdown]
# `LEAST_REQUEST` (today's default) picks two pods at random and sends the request to the one with fewer
# requests in flight, so a slow pod gets less traffic. Slow one v2 pod down and look at the latencies.

# %%
from meshkit.viz import latency_figure

slow = lab.pod_of(mesh, "recommendation-v2")
mesh.delay(slow, 0.05)
lb.controls["simple"].value = "LEAST_REQUEST"
lb.apply()
latency_figure(mesh.load(n=200, concurrency=8).records)

# %%
check.load_balancing(mesh, "LEAST_REQUEST", slow=slow, n=300)

# %%
mesh.delay(slow, 0)
mesh.scale("recommendation-v2", 1)
mesh.reset();

# %% [markdown]
# ## 2 · Retries
#
# v2 starts to misbehave: it answers 503. With current Istio's default retry policy that 503 reaches
# the user (the tutorial's Istio retried it silently). The codes plot shows each request's status.

# %%
from meshkit.viz import codes_over_time

mesh.misbehave("recommendation-v2")
result = mesh.load(n=40 if FAST else 100, qps=40 if FAST else 20)
codes_over_time(result.records, bucket_s=0.5)

# %%
check.fails(mesh, result=result)      # judges the requests the figure shows

# %% [markdown]
# Add a retry policy: up to 3 attempts on any 5xx. A retry prefers another pod, so v1 answers instead
# and every user sees a 200. Set the controls and press Apply (the next cell sets them from code).

# %%
from meshkit.widgets import timeout_retry_panel

retry = timeout_retry_panel(mesh)
retry.controls["timeout_s"].value = 0
retry.controls["attempts"].value = 3
retry.controls["retry_on"].value = "5xx"
retry.apply()
retry

# %%
check.succeeds(mesh, n=40)

# %% [markdown]
# ## 3 · Timeout
#
# v2 now takes 3 s to answer (the tutorial's `v2-timeout` image). A 1 s timeout on the route makes the
# caller's proxy give up: the user gets `504 upstream request timeout` after 1 s instead of waiting.
# (The tutorial says v2 "disappears"; in fact every request sent to v2 becomes this 504.)

# %%
mesh.behave("recommendation-v2")
mesh.delay("recommendation-v2", 3 * T)
lab.show("virtual-service-recommendation-timeout.yaml", time_scale=T)

# %%
mesh.apply(lab.istiofile("virtual-service-recommendation-timeout.yaml", time_scale=T))
result = mesh.load(n=20, concurrency=5)
latency_figure(result.records)

# %%
check.timeout(mesh, 1 * T, result=result)

# %% [markdown]
# ## 4 · Circuit breaker
#
# v2 is still slow. Twenty users arrive at once, half of them routed to v2. Without limits every request
# waits; with a connection pool of one connection and one pending request, the caller's proxy refuses
# the overflow at once (`503`, flag `UO`) instead of piling requests onto a slow pod.

# %%
mesh.reset()
mesh.apply(lab.istiofile("destination-rule-recommendation-v1-v2.yaml"),
           lab.istiofile("virtual-service-recommendation-v1_and_v2_50_50.yaml"))
check.succeeds(mesh, n=40, concurrency=20)

# %%
lab.show("destination-rule-recommendation-cb_policy_version_v2.yaml")

# %%
mesh.apply(lab.istiofile("destination-rule-recommendation-cb_policy_version_v2.yaml"))
client = lab.pod_of(mesh, "preference-v1")     # the caller's proxy enforces the limits
before = lab.overflows(mesh, client)
result = mesh.load(n=40, concurrency=20)
codes_over_time(result.records, bucket_s=0.25)

# %%
check.circuit_breaker(mesh, result)

# %% [markdown]
# The limits live in the *client's* proxy: preference's sidecar holds, per destination cluster, Envoy's
# circuit-breaker thresholds, and counts what it refused. `istioctl proxy-config cluster -o json` shows
# the thresholds Istio generated from the DestinationRule (`maxConnections` → `max_connections`,
# `http1MaxPendingRequests` → `max_pending_requests`); istio.io's circuit-breaking task then reads the
# client proxy's `pending` statistics through its admin port, `localhost:15000`:

# %%
import json

clusters = json.loads(lab.cli(mesh, "proxy-config", "clusters", client, "--fqdn", "recommendation",
                              "--subset", "version-v2", "-o", "json"))
print(json.dumps(clusters[0]["circuitBreakers"], indent=2))

# %%
stats = lab.cli(mesh, "exec", client, "--", "curl", "localhost:15000/stats")
print(*[line for line in stats.splitlines() if "version-v2" in line and "pending" in line], sep="\n")

# %% [markdown]
# `upstream_rq_pending_overflow` counts the requests turned away with `503 UO`: it grew by exactly the
# number of overflows the load saw. `upstream_rq_pending_total` counts those that waited for a
# connection and got one; the gauges (`upstream_rq_pending_active`, `rq_pending_open`) are back at
# rest now that the load is over.

# %%
check.overflow_counted(mesh, client, before, result)

# %% [markdown]
# ## 5 · Pool ejection
#
# Two v2 pods, one of them misbehaving. Without outlier detection every request sent to the bad pod fails.
# With `consecutive5xxErrors: 1` the first failure ejects it for `baseEjectionTime` (15 s): only
# healthy pods answer until it comes back for another try.

# %%
mesh.reset()
mesh.delay("recommendation-v2", 0)
mesh.scale("recommendation-v2", 2)
bad = lab.pod_of(mesh, "recommendation-v2")
mesh.misbehave(bad)
mesh.apply(lab.istiofile("destination-rule-recommendation-v1-v2.yaml"),
           lab.istiofile("virtual-service-recommendation-v1_and_v2_50_50.yaml"))
check.fails(mesh, n=40)

# %%
lab.show("destination-rule-recommendation-cb_policy_pool_ejection.yaml", time_scale=T)

# %%
mesh.apply(lab.istiofile("destination-rule-recommendation-cb_policy_pool_ejection.yaml", time_scale=T))
check.ejection(mesh, bad)

# %% [markdown]
# The ejection is visible in the caller's proxy: `istioctl proxy-config endpoints` lists the v2 pods
# of preference's sidecar, and the ejected one is still `HEALTHY` for Kubernetes but `FAILED` the
# outlier check (Envoy's `/clusters` says `health_flags::/failed_outlier_check`). Requests go one by
# one until the bad pod, back from its last ejection, fails again: it is ejected right then.

# %%
import time

V2 = "outbound|8080|version-v2|recommendation.tutorial.svc.cluster.local"
client = lab.pod_of(mesh, "preference-v1")
deadline = time.monotonic() + 100 * T + 10
while time.monotonic() < deadline and mesh.load(n=1, flags=False).records[0]["code"] == 200:
    pass
print(lab.cli(mesh, "proxy-config", "endpoints", client, "--cluster", V2))
check.ejected_endpoint(mesh, client, V2)

# %% [markdown]
# ## 6 · All together: ejection plus retries
#
# Ejection still lets one request fail each time the pod is tried again. Add retries on 5xx to the
# 50/50 route and not a single user sees an error.

# %%
mesh.apply("""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: recommendation, namespace: tutorial}
spec:
  hosts: [recommendation]
  http:
  - route:
    - {destination: {host: recommendation, subset: version-v1}, weight: 50}
    - {destination: {host: recommendation, subset: version-v2}, weight: 50}
    retries: {attempts: 3, retryOn: 5xx}
""")
check.succeeds(mesh, n=60)

# %% [markdown]
# ### Exercise
#
# Back to the circuit breaker: make both v2 pods healthy but slow again
# (`mesh.behave("recommendation-v2")`, `mesh.delay("recommendation-v2", 3 * T)`), then use the pool panel
# (`from meshkit.widgets import pool_panel`) to raise the limits until twenty concurrent users see no
# overflow: `check.succeeds(mesh, n=40, concurrency=20)`.

# %% tags=["exercise"]

# %% jupyter={"source_hidden": true, "outputs_hidden": true} tags=["solution"]
# Solution: its output stays hidden on Run All (lab.solution.show() prints it)
with lab.solution():
    from meshkit.widgets import pool_panel

    mesh.behave("recommendation-v2")
    mesh.delay("recommendation-v2", 3 * T)
    pool = pool_panel(mesh)
    pool.controls["max_connections"].value = 100
    pool.controls["pending"].value = 100
    pool.controls["per_connection"].value = 0
    pool.controls["outlier"].value = False
    pool.apply()
    check.succeeds(mesh, n=40, concurrency=20)

# %% [markdown]
# ## Clean up
#
# Remove every resource this lab applied and bring the pods back to normal.

# %%
print(*mesh.reset(), sep="\n")
lab.tidy(mesh)
