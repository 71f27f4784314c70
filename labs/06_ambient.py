# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Ambient mode: the same sample without sidecars
#
# **Goal:** move the sample from sidecars to Istio's *ambient* data plane on the mesh you are running,
# see mutual TLS without a sidecar in any pod, enforce an L4 AuthorizationPolicy at ztunnel, find out
# what happens to HTTP rules when nothing can read HTTP, and measure what each data plane costs on
# your own machine.
#
# In ambient mode (GA since Istio 1.24) a pod has no `istio-proxy` container. One **ztunnel** per node
# carries every enrolled pod's connections as mutual TLS (HBONE: HTTP/2 `CONNECT` over mTLS to port
# 15008) and enforces L4 policy; HTTP features (routing, retries, L7 authorization) need a **waypoint**
# proxy, deployed only where you want them.

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
# ## 1 · From sidecars to ambient
#
# The sample runs with sidecars: every pod is `2/2` (the app and `istio-proxy`). Measure what that
# costs now — memory of the pods, proxies, latency — to compare with ambient at the end.

# %%
from meshkit.lab import ambient

N = 60 if FAST else 400           # requests per latency measurement
sidecars = ambient.measure(mesh, "sidecars", n=N)
print(sidecars)
ambient.pods_frame(mesh)

# %% [markdown]
# Install the ambient profile over the running mesh — on a cluster `istioctl install --set
# profile=ambient`, here `meshkit up --dataplane ambient`. A **ztunnel** pod joins the node; nothing
# else changes.

# %%
print(lab.cli(mesh, "up", "--dataplane", "ambient"))
print(lab.cli(mesh, "status"))

# %% [markdown]
# Enroll the namespace: `kubectl label namespace tutorial istio.io/dataplane-mode=ambient`. A label
# restarts nothing — and a pod that still has a sidecar **never enrolls**: sidecar mode wins.

# %%
before = ambient.pids(mesh)
mesh.label("Namespace", "tutorial", {"istio.io/dataplane-mode": "ambient"})
check.dataplane(mesh, "sidecar", same_pids=before)

# %% [markdown]
# So the sidecars must go: turn injection off and restart the deployments (Istio's migration guide:
# `kubectl label namespace tutorial istio-injection-`, then `kubectl rollout restart deployment`).
# The new pods are `1/1`, and since their namespace is labelled they are in ambient from their first
# connection.

# %%
print(*ambient.remove_sidecars(mesh), sep="\n")
check.dataplane(mesh, "ambient")
ambient.pods_frame(mesh)

# %% [markdown]
# Moving an app in or out of ambient is a label, and restarts nothing: take recommendation v2 out with a
# pod label (`istio.io/dataplane-mode=none` wins over the namespace's), then put it back. Look at the PID
# and AGE columns: the same processes.

# %%
before = ambient.pids(mesh)
v2 = lab.pod_of(mesh, "recommendation-v2")
mesh.label("Pod", v2, {"istio.io/dataplane-mode": "none"})
print(ambient.pods_frame(mesh).loc[v2].to_dict())
mesh.label("Pod", v2, {"istio.io/dataplane-mode": None})
check.dataplane(mesh, "ambient", same_pids=before)

# %%
print(lab.cli(mesh, "status"))

# %% [markdown]
# ## 2 · Mutual TLS without sidecars
#
# ztunnel holds a certificate for each identity on its node (`istioctl ztunnel-config certificates`)
# and carries every connection between enrolled pods inside an HTTP/2 `CONNECT` over mutual TLS to the
# destination's port 15008. Its metrics (`istio_tcp_*`, Prometheus on port 15020) name both ends by the
# SPIFFE identity their certificates carry, and `connection_security_policy="mutual_tls"`.

# %%
print(lab.cli(mesh, "zc", "workloads"))
print(lab.cli(mesh, "zc", "certificates"))

# %%
print(*mesh.curl())
print(lab.metrics(mesh, "istio_tcp_connections_opened_total", limit=2))
check.ztunnel_identity(mesh, "customer", "preference")

# %% [markdown]
# What a sniffer on the wire to preference sees now: not HTTP, but TLS records on the HBONE port. (With
# sidecars and mTLS off, lab 05 showed readable headers in the same place.)

# %%
print(lab.cli(mesh, "sniff", "preference"))

# %% [markdown]
# Measure this data plane the way you measured the sidecars; the comparison comes in step 6.

# %%
in_ambient = ambient.measure(mesh, "ambient", n=N)
print(in_ambient)

# %% [markdown]
# ## 3 · L4 authorization at ztunnel
#
# ztunnel enforces AuthorizationPolicy fields it can see at L4: who connects (`principals`,
# `namespaces`, `serviceAccounts`, `ipBlocks`) and to which port. Allow only customer to reach
# preference, then call preference from a `curl` pod in the same namespace.

# %%
lab.show("authorization-policy-preference-l4-allow-customer.yaml")

# %%
curl = mesh.deploy("curl", "v1", sidecar=False)
client = lab.pod_of(mesh, curl)
mesh.apply(lab.istiofile("authorization-policy-preference-l4-allow-customer.yaml"))
print(*mesh.curl())               # customer is allowed: the chain answers
print(*mesh.exec(client, "http://preference:8080/"))

# %% [markdown]
# No HTTP status comes back: ztunnel cannot answer 403, because it never speaks HTTP. The destination's
# ztunnel refuses the tunnel and the caller's ztunnel resets the app's connection — curl exits with
# `56`. ztunnel's log says why.

# %%
check.connection_reset(mesh, client, "http://preference:8080/")

# %% [markdown]
# ## 4 · HTTP rules need a waypoint
#
# A rule on `methods`, `paths` or headers needs someone who reads HTTP. Put "GET only" on recommendation
# with a selector, as you would with sidecars. ztunnel drops the rule it cannot check — and an ALLOW
# policy with no rule left allows **nothing**: it fails safe. The status istiod writes says so.

# %%
lab.show("authorization-policy-recommendation-l7-get-only.yaml")

# %%
mesh.reset()
mesh.apply(lab.istiofile("authorization-policy-recommendation-l7-get-only.yaml"))
print(*mesh.curl())
check.policy_status(mesh, "recommendation-get-only", "ZtunnelAccepted", "UnsupportedValue",
                    "ztunnel does not support HTTP attributes (found: methods)")

# %%
check.denied(mesh, "customer => Error: 503 - preference => IOException: Connection reset by peer")

# %% [markdown]
# HTTP rules belong to a **waypoint**: a proxy that reads HTTP, deployed per namespace
# (`istioctl waypoint apply -n tutorial`) and used by the Services bound to it with the label
# `istio.io/use-waypoint`. The traffic to recommendation then goes caller's ztunnel → waypoint →
# recommendation's ztunnel.

# %%
print(*mesh.waypoint_apply(), sep="\n")
mesh.label("Service", "recommendation", {"istio.io/use-waypoint": "waypoint"})
print(mesh.waypoint_list())
print(lab.cli(mesh, "zc", "services"))

# %% [markdown]
# Attach the rule to the Service with `targetRefs` instead of a selector: istiod sends it to the
# waypoint, not to ztunnel. The chain's `GET /` passes; any other request to recommendation now gets an
# HTTP answer, `403 RBAC: access denied`, from the waypoint — an answer ztunnel could never give.

# %%
lab.show("authorization-policy-recommendation-l7-waypoint.yaml")

# %%
mesh.apply(lab.istiofile("authorization-policy-recommendation-l7-waypoint.yaml"))
print(*mesh.exec(client, "http://recommendation:8080/admin"))
check.succeeds(mesh, n=10)

# %%
check.http_denied(mesh, client, "http://recommendation:8080/admin")

# %% [markdown]
# ## 5 · Traffic shifting through a waypoint
#
# Routing is L7 too: with a waypoint bound to recommendation, the same DestinationRule and
# VirtualService as in lab 01 split its traffic — applied by the waypoint now, not by preference's
# sidecar (preference has none). Start the traffic (the plot shows requests per version per second),
# then move the canary to 75/25 with the sliders and press **Apply**; the panel shows the YAML it sends.

# %%
from meshkit.widgets import traffic_panel, weights_panel

mesh.delete("AuthorizationPolicy", "recommendation-get-only")
weights = weights_panel(mesh, weights={"v1": 90, "v2": 10}, with_subsets=True)
weights.apply()
weights

# %%
traffic = traffic_panel(mesh, rate=20 if FAST else 10)
traffic.start()
traffic

# %% [markdown]
# The next cell does from code what the sliders do, so the lab also runs unattended.

# %%
weights.controls["v1"].value, weights.controls["v2"].value = 75, 25
weights.apply()
check.canary(mesh, v2=25, n=300 if FAST else 2000, tolerance=10 if FAST else 4)   # ± 4 standard deviations

# %%
traffic.stop()

# %% [markdown]
# The waypoint counts the requests it routed with Istio's HTTP metrics, as `reporter="waypoint"`:

# %%
print(*[x for x in mesh.metrics().splitlines() if 'reporter="waypoint"' in x][:2], sep="\n")
check.metrics(mesh, reporters=("waypoint",))

# %% [markdown]
# ## 6 · What each data plane costs
#
# Measure once more, with the waypoint in recommendation's path, and put the three side by side. In
# ambient the pods hold only their apps and one ztunnel carries the traffic of all of them; per hop a
# request crosses ztunnel twice (the caller's side and the destination's; on one node the same process)
# instead of two sidecars, and the waypoint adds a proxy pass on the hops that use it. Which costs less
# depends on how many pods share a node and on the proxies themselves: these are your machine's
# numbers, for this mesh's Python proxies, not Envoy's and Rust ztunnel's.

# %%
with_waypoint = ambient.measure(mesh, "ambient + waypoint", n=N)
print(sidecars, in_ambient, with_waypoint, sep="\n")

# %%
from meshkit.viz import dataplane_figure

dataplane_figure([sidecars, in_ambient, with_waypoint])

# %% [markdown]
# ### Exercise
#
# Allow preference to be called **only from the `tutorial` namespace, on port 8080** — with
# `namespaces` and `ports`, both L4 — and check that the chain still answers while the rule is in
# place: `check.succeeds(mesh, n=10)`. Then look at `meshkit zc policies`.

# %% tags=["exercise"]

# %% jupyter={"source_hidden": true, "outputs_hidden": true} tags=["solution"]
# Solution: its output stays hidden on Run All (lab.solution.show() prints it)
with lab.solution():
    mesh.reset()
    mesh.apply({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                "metadata": {"name": "preference-from-tutorial", "namespace": "tutorial"},
                "spec": {"selector": {"matchLabels": {"app": "preference"}}, "action": "ALLOW",
                         "rules": [{"from": [{"source": {"namespaces": ["tutorial"]}}],
                                    "to": [{"operation": {"ports": ["8080"]}}]}]}})
    check.succeeds(mesh, n=10)
    print(lab.cli(mesh, "zc", "policies"))

# %% [markdown]
# ## Clean up
#
# Remove every resource this lab applied and bring the sample back to sidecars, as the other labs expect.

# %%
print(*mesh.reset(), sep="\n")
lab.tidy(mesh)
check.dataplane(mesh, "sidecar")
