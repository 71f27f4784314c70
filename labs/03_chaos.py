# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Chaos: inject aborts and delays
#
# **Goal:** break the application on purpose, without touching its code: make the caller's proxy answer
# 503 for half of the requests, then delay half of them by 7 s, and see how the chain reports it.
#
# Faults are injected by the **caller's** sidecar (preference's, for recommendation) *before* routing:
# an aborted request never reaches a recommendation pod.

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
# ## 1 · HTTP 503 for 50 % of the requests

# %%
lab.show("virtual-service-recommendation-503.yaml")

# %%
from meshkit.viz import codes_over_time

mesh.apply(lab.istiofile("destination-rule-recommendation-app.yaml"),
           lab.istiofile("virtual-service-recommendation-503.yaml"))
result = mesh.load(n=60 if FAST else 200, qps=60 if FAST else 20)
codes_over_time(result.records, bucket_s=0.5)

# %%
check.fault_abort(mesh, 50)

# %% [markdown]
# The fault is not in recommendation: Istio put it on the *route* in the caller's proxy. In
# preference's sidecar the route to `recommendation.tutorial.svc.cluster.local:8080` carries the
# fault filter's config (`typedPerFilterConfig` → `envoy.filters.http.fault`), with the percentage as
# a fraction of a million, as `istioctl proxy-config routes -o json` shows:

# %%
import json

client = lab.pod_of(mesh, "preference-v1")
routes = json.loads(lab.cli(mesh, "proxy-config", "routes", client, "--name", "8080", "-o", "json"))
vhost = next(v for rc in routes for v in rc["virtualHosts"] if v["name"].startswith("recommendation."))
print(json.dumps(vhost["routes"][0]["typedPerFilterConfig"], indent=2))

# %% [markdown]
# Which proxy answered? `mesh.explain()` reads every proxy's records of a failed request and names where
# the failure started (flag `FI`: fault injected), and the chain of messages shows how each service
# wrapped the error.

# %%
import time

print(*mesh.explain(limit=3, since=time.time() - 30), sep="\n")

# %% [markdown]
# ## 2 · A 7 s delay for 50 % of the requests
#
# The delayed requests wait in preference's sidecar before they are sent; recommendation's log shows
# them arriving late, not answering late.

# %%
lab.show("virtual-service-recommendation-delay.yaml", time_scale=T)

# %%
from meshkit.viz import latency_figure

mesh.apply(lab.istiofile("virtual-service-recommendation-delay.yaml", time_scale=T))
result = mesh.load(n=100, concurrency=50)
latency_figure(result.records)

# %%
check.fault_delay(mesh, 7 * T, 50, result=result)

# %% [markdown]
# ### Exercise
#
# With the fault panel (`from meshkit.widgets import fault_panel`), abort **20 %** of the requests with
# HTTP **500** and no delay. Which status does the user get, and why? Check with
# `check.fault_abort(mesh, 20, status=500)`.

# %% tags=["exercise"]

# %% jupyter={"source_hidden": true, "outputs_hidden": true} tags=["solution"]
# Solution: its output stays hidden on Run All (lab.solution.show() prints it)
with lab.solution():
    from meshkit.widgets import fault_panel

    fault = fault_panel(mesh)
    fault.controls["abort_status"].value = 500
    fault.controls["abort_percent"].value = 20
    fault.controls["delay"].value = False
    fault.apply()
    print(*mesh.curl())     # customer and preference turn any failure below them into a 503
    check.fault_abort(mesh, 20, status=500)

# %% [markdown]
# ## Clean up
#
# Remove every resource this lab applied and bring the pods back to normal.

# %%
print(*mesh.reset(), sep="\n")
