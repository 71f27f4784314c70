# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Setup: the data plane, the sidecars and the control plane
#
# **Goal:** start the mesh, see what runs in it, send the first requests, and watch the control
# plane push configuration to every proxy.
#
# The sample application is a chain of three services: **customer → preference → recommendation**,
# with two versions of recommendation (v1 and v2). In a service mesh every pod runs the application
# *and a sidecar proxy* (Envoy, here a faithful Python stand-in). Together the proxies are the
# **data plane**: every request leaves through the caller's sidecar and enters through the callee's.
# The **control plane** (istiod) stores the Istio resources you apply, computes what each proxy must
# know, and pushes it to them.
#
# The next cell starts the mesh on this machine (about a second; `lab.setup` reuses a running mesh
# and removes leftovers of earlier labs). With `BACKEND = "kind"` it connects to real Istio instead.

# %% tags=["parameters"]
BACKEND = "local"   # "local" (processes on 127.0.0.1) or "kind" (real Istio)
FAST = False        # True scales delays and request counts down (CI, quick demos)

# %%
from meshkit import lab
from meshkit.lab import check

mesh = lab.setup(backend=BACKEND)
T = 0.1 if FAST else 1.0          # time scale: delays and timeouts of the tutorial × T

# %% [markdown]
# ## The pods and their proxies
#
# Each row is a pod. `READY 2/2` means the application container and its `istio-proxy`. `CONFIG` is the
# configuration version the proxy has acknowledged, `SYNC` whether that is the latest one — the same
# columns as `kubectl get pods` and `istioctl proxy-status`. The ingress gateway is a proxy without an
# application: it is where requests from outside enter the mesh.

# %%
from meshkit.viz import pods_table

pods_table(mesh.pods())

# %% [markdown]
# ## First requests
#
# `mesh.curl()` sends one request through the ingress gateway to `/customer`, like
# `curl $GATEWAY_URL/customer` in the tutorial. Each service prefixes the answer of the next one, and
# recommendation adds its version, its pod name and how many requests that pod has served.

# %%
code, body = mesh.curl()
print(code, body)

# %% [markdown]
# Without any routing rule the proxies balance requests over every recommendation pod, v1 and v2 alike.
# `mesh.load()` sends many requests (like `siege` or `fortio`) and keeps a record of each one.

# %%
from meshkit.viz import split_pie

result = mesh.load(n=50 if FAST else 200, concurrency=4)
print(result.summary()["codes"], result.summary()["latency_ms"])
split_pie(result.records)

# %%
check.succeeds(mesh)

# %% [markdown]
# ## The control plane pushes configuration
#
# The figure below samples every proxy's config version twice a second. Applying a resource makes the
# control plane compute a new configuration and push it: watch every line step up at once. This
# DestinationRule defines the *subsets* `version-v1` and `version-v2` of recommendation (pods
# selected by their `version` label); the next labs route to them.

# %%
from meshkit.viz import live_config_push

push = live_config_push(mesh.pods, interval_s=0.5)
push

# %%
lab.show("destination-rule-recommendation-v1-v2.yaml")

# %%
before = {p.name: p.config_version for p in mesh.pods()}
print(*mesh.apply(lab.istiofile("destination-rule-recommendation-v1-v2.yaml")), sep="\n")
check.config_pushed(mesh, before)

# %% [markdown]
# ### Exercise
#
# Send **every** request to v2: apply `virtual-service-recommendation-v2.yaml` (the DestinationRule
# with the subsets is already applied), watch the push in the figure above, then confirm with
# `check.all_to(mesh, "v2")`.

# %% tags=["exercise"]

# %% jupyter={"source_hidden": true, "outputs_hidden": true} tags=["solution"]
# Solution
print(*mesh.apply(lab.istiofile("virtual-service-recommendation-v2.yaml")), sep="\n")
check.all_to(mesh, "v2")

# %% [markdown]
# ## Clean up
#
# Remove every resource this lab applied and bring the pods back to normal.

# %%
push.stop()
print(*mesh.reset(), sep="\n")
