# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Traffic control: subsets, canary, user-agent routing, mirroring and egress
#
# **Goal:** decide which version of recommendation answers — all of them to v1, a 90/10 then 75/25
# canary, Safari users to v2, a dark launch that mirrors traffic to v2 — and open the mesh to one
# external host. Each step applies the tutorial's file, sends traffic, shows the result and checks it.
#
# A **DestinationRule** names *subsets* of a service's pods (by label); a **VirtualService** says
# which subset gets which request. Routing happens in the *caller's* sidecar: here, preference's.
#
# Every step also exists in the **Kubernetes Gateway API** form istio.io now teaches first: set
# `API = "gateway"` below and the lab applies **HTTPRoutes** bound to the recommendation Service
# instead. An HTTPRoute has no subsets; it splits traffic between Services, one per version
# (`recommendation-v1`, `recommendation-v2`, like Istio's `bookinfo-versions.yaml`).

# %% tags=["parameters"]
BACKEND = None      # None: $MESHKIT_BACKEND, else what this mesh home last ran, else "local"
                    # (processes on 127.0.0.1); "kind" (real Istio on kind) or "kube" (a shared cluster)
CONTEXT = None      # kube: the kubectl context (None: $MESHKIT_CONTEXT)
NAMESPACE = None    # kube: your own namespace (None: $MESHKIT_NAMESPACE)
FAST = False        # True scales delays and request counts down (CI, quick demos)
API = "istio"       # "istio": VirtualService + DestinationRule; "gateway": Kubernetes Gateway API HTTPRoute

# %%
from functools import partial

from meshkit import lab
from meshkit.lab import check

mesh = lab.setup(backend=BACKEND, context=CONTEXT, namespace=NAMESPACE)
FAST = FAST or lab.fast()          # MESHKIT_LAB_FAST=1 (CI, a quick demo) scales every lab down
T = 0.1 if FAST else 1.0          # time scale: delays and timeouts of the tutorial × T
GATEWAY_API = API == "gateway"
rule = partial(lab.pick, API)      # rule(istio_file, gateway_file): the step's file in this lab's API

# %% [markdown]
# ## 1 · All traffic to v1

# %%
lab.show(rule("virtual-service-recommendation-v1.yaml", "httproute-recommendation-v1.yaml"))

# %%
if GATEWAY_API:
    print(*mesh.apply(lab.istiofile("httproute-recommendation-v1.yaml")), sep="\n")
else:
    print(*mesh.apply(lab.istiofile("destination-rule-recommendation-v1-v2.yaml"),
                      lab.istiofile("virtual-service-recommendation-v1.yaml")), sep="\n")
check.all_to(mesh, "v1")

# %% [markdown]
# ## 2 · Canary release: 90/10, then 75/25
#
# Weights split the requests between subsets. Each request is an independent draw, so a 90/10 split is
# statistical: over 1,000 requests v2 answers about 10 % of them.

# %%
lab.show(rule("virtual-service-recommendation-v1_and_v2.yaml", "httproute-recommendation-v1_and_v2.yaml"))

# %%
mesh.apply(lab.istiofile(rule("virtual-service-recommendation-v1_and_v2.yaml",
                              "httproute-recommendation-v1_and_v2.yaml")))
check.canary(mesh, v2=10)

# %% [markdown]
# Now move the canary with the sliders. Start the traffic below (the live plot shows requests per
# version per second), then set v1 to 75 and v2 to 25 in the panel and press **Apply**: the panel shows
# the YAML it sends and what the mesh answered, and the plot follows within a second.

# %%
from meshkit.widgets import traffic_panel, weights_panel

weights = weights_panel(mesh, weights={"v1": 90, "v2": 10}, with_subsets=True, api=API)
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
check.canary(mesh, v2=25, n=2000)

# %%
traffic.stop()

# %% [markdown]
# ## 3 · Route by user agent: Safari users to v2
#
# customer copies the `User-Agent` header into `baggage-user-agent`, and preference forwards it, so the
# rule on recommendation can match it with a regex. Everyone else goes to v1.

# %%
lab.show(rule("virtual-service-recommendation-safari-v2.yaml", "httproute-recommendation-safari-v2.yaml"))

# %%
mesh.apply(lab.istiofile(rule("virtual-service-recommendation-safari-v2.yaml",
                              "httproute-recommendation-safari-v2.yaml")))
safari = {"user-agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) Version/17.0 Safari/605.1.15"}
check.header_routing(mesh, safari, "v2", otherwise="v1")

# %% [markdown]
# In preference's proxy the rule became two routes of the same virtual host, tried in order: the
# first requires the `user-agent` header to match the regex and goes to the v2 subset's cluster, the
# second takes everything else to v1. `istioctl proxy-config routes` lists both (its MATCH column
# shows only the path); `-o json` shows the header matcher:

# %%
import json

client = lab.pod_of(mesh, "preference-v1")
print(lab.cli(mesh, "proxy-config", "routes", client, "--name", "8080"))
routes = json.loads(lab.cli(mesh, "proxy-config", "routes", client, "--name", "8080", "-o", "json"))
vhost = next(v for rc in routes for v in rc["virtualHosts"] if v["name"].startswith("recommendation."))
print(json.dumps([{"match": r["match"], "cluster": r["route"]["cluster"]} for r in vhost["routes"]], indent=2))

# %% [markdown]
# ## 4 · Mirroring (dark launch)
#
# Every answer comes from v1, while a copy of each request goes to v2 — fire and forget: its answer is
# thrown away. v2's log shows it working on real traffic no user sees.

# %%
lab.show(rule("virtual-service-recommendation-v1-mirror-v2.yaml", "httproute-recommendation-v1-mirror-v2.yaml"))

# %%
mesh.apply(lab.istiofile(rule("virtual-service-recommendation-v1-mirror-v2.yaml",
                              "httproute-recommendation-v1-mirror-v2.yaml")))
check.mirroring(mesh, served="v1", mirror="v2")

# %% [markdown]
# The mirror is a `requestMirrorPolicies` entry on the route in preference's proxy (100 % of the
# requests: a million out of a million):

# %%
routes = json.loads(lab.cli(mesh, "proxy-config", "routes", client, "--name", "8080", "-o", "json"))
vhost = next(v for rc in routes for v in rc["virtualHosts"] if v["name"].startswith("recommendation."))
print(json.dumps(vhost["routes"][0]["route"]["requestMirrorPolicies"], indent=2))

# %%
print(lab.logs(mesh, "recommendation-v2", tail=3))

# %% [markdown]
# ## 5 · Egress: recommendation v3 calls the Internet
#
# v3 asks `worldtimeapi.org` for the time. The mesh runs with `outboundTrafficPolicy: REGISTRY_ONLY`,
# so a host that is not in the registry is blocked by v3's sidecar (a 502 that v3's app turns into a 500).

# %%
mesh.deploy("recommendation", "v3")
if GATEWAY_API:
    mesh.apply(lab.istiofile("httproute-recommendation-v3.yaml"))
else:
    mesh.apply(lab.istiofile("destination-rule-recommendation-v1-v2-v3.yaml"),
               lab.istiofile("virtual-service-recommendation-v3.yaml"))
check.egress_blocked(mesh)

# %% [markdown]
# A **ServiceEntry** adds the external host to the registry, and the call goes through.

# %%
lab.show("service-entry-worldtimeapi-egress.yaml")

# %%
mesh.apply(lab.istiofile("service-entry-worldtimeapi-egress.yaml"))
print(*mesh.curl())
check.egress_open(mesh)

# %% [markdown]
# ### Exercise
#
# Send **Firefox** users to v2 and everyone else to v1, with the header-routing panel:
# `from meshkit.widgets import header_panel`, then `panel = header_panel(mesh)`; set the value to
# `.*Firefox.*` and press Apply. Check with
# `check.header_routing(mesh, {"user-agent": "Firefox/120.0"}, "v2", otherwise="v1")`.

# %% tags=["exercise"]

# %% jupyter={"source_hidden": true, "outputs_hidden": true} tags=["solution"]
# Solution: its output stays hidden on Run All (lab.solution.show() prints it)
with lab.solution():
    from meshkit.widgets import header_panel

    panel = header_panel(mesh, value=".*Firefox.*", api=API)
    panel.apply()
    check.header_routing(mesh, {"user-agent": "Mozilla/5.0 Firefox/120.0"}, "v2", otherwise="v1")

# %% [markdown]
# ## What has no Gateway API form
#
# The Gateway API covers routing — matches, weights, header edits, redirects, rewrites, mirroring,
# timeouts (and retries in its experimental channel) — but not the rest of the book:
#
# * **Fault injection** (delays and aborts): no HTTPRoute field; istio.io's request-timeouts task
#   injects its delay with a VirtualService even in its Gateway API tab.
# * **Subsets**: an HTTPRoute names Services, so versions need a Service each; a DestinationRule still
#   defines subsets for VirtualServices.
# * **Circuit breakers, outlier detection, load-balancer choice, connection pools, TLS to the
#   upstream**: traffic *policy* is a DestinationRule's job in either form.
#
# And mind the overlap: when a VirtualService and an HTTPRoute both route the same host, sidecars do
# not merge them — the older one applies and the other is ignored. `meshkit analyze` says so (IST0109).

# %% [markdown]
# ## Clean up
#
# Remove every resource this lab applied and bring the pods back to normal.

# %%
print(*mesh.reset(), sep="\n")
lab.tidy(mesh)
