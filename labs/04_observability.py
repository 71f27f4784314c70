# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Observability: metrics, traces, the service graph, and why requests failed
#
# **Goal:** answer "what just happened?" the way you would on a cluster: Istio's standard metrics
# (Prometheus), distributed traces (Jaeger), the service graph (Kiali), and a one-line explanation of
# each failed request.
#
# Every proxy records every request: the caller's proxy as `reporter="source"`, the callee's as
# `reporter="destination"`.

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
# ## Live traffic
#
# Start steady traffic and keep these plots open while you go through the lab: requests per version,
# status codes with Envoy's response flags, and latency percentiles. They refresh every second
# without blocking the notebook.

# %%
from meshkit.viz import live_codes, live_latency, live_split

runner = mesh.traffic(rate=20, concurrency=2)
runner.start()
split, codes, latency = live_split(runner), live_codes(runner), live_latency(runner, interval_s=1)
split

# %%
codes

# %%
latency

# %%
import time

time.sleep(3 if FAST else 10)      # let the plots fill
mesh.load(n=100, concurrency=4);

# %% [markdown]
# ## Metrics
#
# `istio_requests_total` counts requests with Istio's labels; `istio_request_duration_milliseconds`
# is a histogram. These are the series Prometheus scrapes from every proxy.

# %%
print(lab.metrics(mesh, "istio_requests_total", limit=6))

# %%
check.metrics(mesh)

# %% [markdown]
# The same questions without PromQL: requests per second and share by destination version, as a table.

# %%
from meshkit.telemetry.queries import to_frame

to_frame(mesh.rates("destination_version", window_s=60))

# %% [markdown]
# ## Traces
#
# Each proxy makes a span per request and propagates the trace headers (B3 and W3C); the apps copy them
# to their own calls, so one request through the gateway becomes one trace.

# %%
from meshkit.viz import trace_waterfall

mesh.curl()
trace_waterfall(mesh.traces(service="customer", limit=1))

# %%
check.trace(mesh)

# %% [markdown]
# ## The service graph
#
# Derived from the same records, as Kiali does: nodes are app versions and services, edges carry
# request rate, error ratio, p95 latency and whether the connection was mutual TLS.

# %%
from meshkit.viz import service_graph

service_graph(mesh.graph())

# %%
check.graph(mesh)

# %% [markdown]
# The same views in the browser: on the local backend the **Mesh dashboard** (graph, requests per service,
# recent traces, proxy status; also in JupyterLab's launcher), on kind Kiali, Jaeger and Prometheus. The
# links go through this Jupyter server (jupyter-server-proxy), so they work on a hub, on Binder and locally.

# %%
from meshkit.serverproxy import Links

Links(mesh)

# %% [markdown]
# ## Why did it fail?
#
# Make v2 misbehave while the traffic runs: the codes plot turns partly red, and `mesh.explain()` names,
# for each failed request, which proxy or app answered and why.

# %%
mesh.misbehave("recommendation-v2")
mesh.load(n=40, flags=False);
print(*mesh.explain(limit=3, since=time.time() - 30), sep="\n")

# %%
check.explained(mesh, "the app answered")

# %% [markdown]
# ### Exercise
#
# Make v2 behave again, then inject an **abort of 30 %** on recommendation (fault panel or the
# tutorial's files) and find it in the codes plot (flag `FI`) and in `mesh.explain()`.
# Check with `check.explained(mesh, "fault injection")`.

# %% tags=["exercise"]

# %% jupyter={"source_hidden": true, "outputs_hidden": true} tags=["solution"]
# Solution: its output stays hidden on Run All (lab.solution.show() prints it)
with lab.solution():
    from meshkit.widgets import fault_panel

    mesh.behave("recommendation-v2")
    fault = fault_panel(mesh)
    fault.controls["abort_percent"].value = 30
    fault.apply()
    mesh.load(n=60, flags=False);
    check.explained(mesh, "fault injection")

# %% [markdown]
# ## Clean up
#
# Remove every resource this lab applied and bring the pods back to normal.

# %%
runner.stop()
for live in (split, codes, latency):
    live.stop()
print(*mesh.reset(), sep="\n")
lab.tidy(mesh)
