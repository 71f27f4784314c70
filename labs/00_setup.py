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
# **Goal:** start the mesh and look inside it the way `istioctl` does: the pods and their two
# containers, the sidecar's listeners and how traffic reaches them, the control plane pushing
# configuration and the proxies acknowledging it, a VirtualService turning into Envoy routes and
# weighted clusters, and the identity every workload proves with its certificate.
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
# ## 1 · Pods and their two containers
#
# Each row is a pod. `READY 2/2` counts the application container *and* `istio-proxy`, the sidecar
# the injector added next to it. `CONFIG` is the configuration version the proxy has acknowledged,
# `SYNC` whether that is the latest one. The ingress gateway is a proxy without an application: it
# is where requests from outside enter the mesh.

# %%
from meshkit.viz import pods_table

pods_table(mesh.pods())

# %% [markdown]
# `mesh.curl()` sends one request through the ingress gateway to `/customer`, like
# `curl $GATEWAY_URL/customer` in the tutorial. Each service prefixes the answer of the next one, and
# recommendation adds its version, its pod name and how many requests that pod has served.

# %%
code, body = mesh.curl()
print(code, body)

# %%
check.succeeds(mesh, n=20)

# %% [markdown]
# ## 2 · The sidecar's listeners: how traffic reaches the proxy
#
# In Kubernetes the application does not know about its sidecar. An init container installs
# `iptables` rules in the pod's network namespace: every outgoing TCP connection is redirected to the
# proxy's port **15001** (`virtualOutbound`), every incoming one to **15006** (`virtualInbound`).
# The proxy then looks at the original destination: `0.0.0.0_8080` handles outbound HTTP to any
# service on port 8080 with the routes named `8080`; on 15006 one filter chain takes mTLS
# (`Trans: tls`) and, while mTLS is PERMISSIVE, one takes plaintext (`Trans: raw_buffer`), both
# ending in the cluster `inbound|8080||`, the local app. 15021 answers health checks and 15090
# serves the proxy's metrics.
#
# `istioctl proxy-config listeners` prints them; so does `meshkit proxy-config listeners`:

# %%
pod = lab.pod_of(mesh, "preference-v1")
print(lab.cli(mesh, "proxy-config", "listeners", pod))

# %%
check.listeners(mesh, pod)

# %% [markdown]
# **Loopback is not captured.** The iptables rules leave traffic to `127.0.0.1` alone, so a process
# inside the pod that calls `localhost:8080` reaches the application directly, with no proxy on the
# way (and no mTLS, metrics or policies). The tutorial uses exactly this to reach Envoy's admin port,
# `localhost:15000`, from inside the pod. Here `meshkit exec POD -- curl` plays `kubectl exec`:

# %%
print(lab.cli(mesh, "exec", pod, "--", "curl", "localhost:8080/"))               # the app itself
print(lab.cli(mesh, "exec", pod, "--", "curl", "localhost:15000/clusters")[:600])  # Envoy's admin port

# %% [markdown]
# The **clusters** are the destinations a proxy knows, named `outbound|<port>|<subset>|<fqdn>`;
# `endpoints` are the pods behind them (here each pod has its own port on 127.0.0.1 instead of its
# own IP address).

# %%
print(lab.cli(mesh, "proxy-config", "clusters", pod))
print(lab.cli(mesh, "proxy-config", "endpoints", pod, "--cluster",
              "outbound|8080||recommendation.tutorial.svc.cluster.local"))

# %% [markdown]
# ## 3 · The control plane pushes, the proxies acknowledge
#
# The figure below samples every proxy's config version twice a second. Applying a resource makes the
# control plane compute a new configuration and push it: watch every line step up at once. This
# DestinationRule defines the *subsets* `version-v1` and `version-v2` of recommendation (pods
# selected by their `version` label).

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
# Each proxy acknowledges a push by asking for the next one with the version it now runs (an xDS
# ACK). `istioctl proxy-status` lists every proxy with the types of configuration it subscribed to
# (CDS clusters, LDS listeners, EDS endpoints, RDS routes); `-v 1` shows per type whether the proxy
# is `SYNCED` with istiod or still `STALE`. Given one pod, it compares what istiod would send now with
# what the proxy runs.

# %%
print(lab.cli(mesh, "proxy-status"))
print(lab.cli(mesh, "proxy-status", "-v", "1"))
print(lab.cli(mesh, "proxy-status", pod))

# %% [markdown]
# The push gave preference's proxy one cluster per subset:

# %%
print(lab.cli(mesh, "proxy-config", "clusters", pod, "--fqdn", "recommendation.tutorial.svc.cluster.local"))

# %% [markdown]
# ## 4 · A VirtualService becomes routes and weighted clusters
#
# The widget below remembers preference's routes and clusters, applies the 90/10 canary
# VirtualService, and shows what the push changed in that one proxy: the route of the
# `recommendation.tutorial.svc.cluster.local:8080` virtual host now comes from the VirtualService
# `recommendation.tutorial`, and its JSON holds `weightedClusters` 90/10 over the subsets' clusters.

# %%
from meshkit.widgets import PushDiff

diff = PushDiff(mesh, pod)
diff.apply(lab.istiofile("virtual-service-recommendation-v1_and_v2.yaml"))
diff

# %%
print(lab.cli(mesh, "proxy-config", "routes", pod, "--name", "8080"))

# %%
check.weighted_route(mesh, pod, {"version-v1": 90, "version-v2": 10})

# %% [markdown]
# `mesh.proxy_config(pod, "routes")` returns the same table as data, and `-o json` prints the Envoy
# objects themselves (the shape `istioctl proxy-config routes -o json` prints):

# %%
mesh.proxy_config(pod, "routes", name="8080")

# %%
print(lab.cli(mesh, "proxy-config", "routes", pod, "--name", "8080", "-o", "json")[:1500])

# %% [markdown]
# ## 5 · Workload identity
#
# Every sidecar holds a certificate issued by istiod's CA. Its identity is a SPIFFE ID,
# `spiffe://cluster.local/ns/<namespace>/sa/<service account>`, which is what mTLS proves to the
# other side and what authorization policies name. `proxy-config secret` shows the certificate
# chain (`default`) and the root it trusts (`ROOTCA`), their serial numbers and validity. The agent
# next to the proxy asks for a new certificate when half of its lifetime has passed (24 h by default,
# so about every 12 h); connections keep the certificate they were opened with, new ones get the new
# one, and nothing is dropped.

# %%
print(lab.cli(mesh, "proxy-config", "secret", pod))
secret = mesh.proxy_config(pod, "secret")
secret

# %%
check.workload_identity(mesh, pod)

# %% [markdown]
# ### Exercise
#
# Send **every** request to v2: apply `virtual-service-recommendation-v2.yaml`, then confirm in
# preference's proxy with `check.weighted_route(mesh, pod, {"version-v2": 100})` and with traffic:
# `check.all_to(mesh, "v2")`.

# %% tags=["exercise"]

# %% jupyter={"source_hidden": true, "outputs_hidden": true} tags=["solution"]
# Solution: its output stays hidden on Run All (lab.solution.show() prints it)
with lab.solution():
    print(*mesh.apply(lab.istiofile("virtual-service-recommendation-v2.yaml")), sep="\n")
    check.weighted_route(mesh, pod, {"version-v2": 100})
    check.all_to(mesh, "v2")

# %% [markdown]
# ## Clean up
#
# Remove every resource this lab applied and bring the pods back to normal.

# %%
push.stop()
print(*mesh.reset(), sep="\n")
