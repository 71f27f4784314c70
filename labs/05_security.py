# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Security: mTLS you can see, the ingress gateway, authorization, JWT and rate limits
#
# **Goal:** encrypt the traffic between sidecars and see the difference on the wire, let requests in
# through the ingress gateway, deny everything and allow the chain back step by step, require a JWT
# from end users, and limit the request rate — with today's resources (PeerAuthentication,
# AuthorizationPolicy, RequestAuthentication and Envoy's local rate limit).

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
# ## 1 · Mutual TLS, before and after
#
# Every workload has an identity, a certificate with a SPIFFE id such as
# `spiffe://cluster.local/ns/tutorial/sa/preference`. First turn mTLS off and look at the bytes that
# reach preference: readable HTTP, with headers such as `x-request-id` and `x-b3-traceid`.

# %%
mesh.apply(lab.istiofile("peer-authentication-all-disable.yaml"))
check.mtls(mesh, expected="none")

# %%
print(lab.cli(mesh, "sniff", "preference"))

# %% [markdown]
# Now require mutual TLS in the whole namespace: the same bytes become TLS records.

# %%
lab.show("peer-authentication-all-strict.yaml")

# %%
mesh.apply(lab.istiofile("peer-authentication-all-strict.yaml"))
check.mtls(mesh, expected="mutual_tls")

# %%
print(lab.cli(mesh, "sniff", "preference"))

# %% [markdown]
# What changed in the proxies: preference's inbound listener (15006) kept only its TLS filter chain
# (`Trans: tls`, the plaintext `raw_buffer` chain is gone), and what it presents there is the
# certificate `istioctl proxy-config secret` shows, whose SPIFFE id names its service account:

# %%
pod = lab.pod_of(mesh, "preference-v1")
print(lab.cli(mesh, "proxy-config", "listeners", pod, "--port", "15006"))
print(lab.cli(mesh, "proxy-config", "secret", pod))
check.workload_identity(mesh, pod)

# %% [markdown]
# ## 2 · The ingress gateway
#
# Requests from outside enter through the ingress gateway, which routes with the VirtualServices bound
# to its Gateway: `/customer` goes to customer, anything else gets a 404 from the gateway itself.

# %%
lab.show("gateway-customer.yaml")

# %%
print(mesh.curl("/customer"))
print(mesh.curl("/nothing-here"))
check.succeeds(mesh, n=10)

# %% [markdown]
# The HTTPS variant: a second Gateway server on port 443 terminates TLS with a certificate you make.
# Istio finds it through `credentialName` (a Kubernetes secret on a cluster); the local mesh keeps the
# secret in its control plane and hands it to the gateway only.

# %%
lab.show("gateway-customer-https.yaml")

# %%
from meshkit.backends.local.tls import make_self_signed

cert, key = make_self_signed(["customer.example.com"])      # like `openssl req -x509 ...`
if mesh.backend.name == "local":                            # on a cluster: kubectl create secret tls ...
    mesh.create_tls_secret("customer-credential", cert, key)
    mesh.apply(lab.istiofile("gateway-customer-https.yaml"))
    print(mesh.curl("/customer", {"host": "customer.example.com"}, https=True, cacert=cert))

# %% [markdown]
# ## 3 · Authorization: deny everything, then allow the chain back
#
# An `AuthorizationPolicy` with an empty spec allows nothing. The proxy that refuses answers
# `403 RBAC: access denied`; each caller wraps the error, so the message tells how far the request got.

# %%
mesh.reset()
mesh.apply(lab.istiofile("authorization-policy-all-deny.yaml"))
check.denied(mesh, "RBAC: access denied")

# %%
mesh.apply(lab.istiofile("authorization-policy-customer-allow.yaml"))
check.denied(mesh, "customer => Error: 403 - RBAC: access denied")

# %%
lab.show("authorization-policy-preference-allow.yaml")

# %%
mesh.apply(lab.istiofile("authorization-policy-preference-allow.yaml"))
check.denied(mesh, "customer => Error: 503 - preference => Error: 403 - RBAC: access denied")

# %%
mesh.apply(lab.istiofile("authorization-policy-recommendation-allow.yaml"))
check.succeeds(mesh, n=10)

# %% [markdown]
# ## 4 · End-user authentication with JWT
#
# customer accepts tokens from the issuer `testing@secure.istio.io`, and only lets in requests whose
# token carries the claim `role: customer`. `mesh.token()` asks the mesh's local test issuer for a signed
# token (`meshkit token --claim role=customer`); the local mesh's RequestAuthentication reads that issuer's
# keys, the one for a real cluster the tutorial's public key set.

# %%
mesh.reset()
keys = "-local" if mesh.backend.name == "local" else ""
mesh.apply(lab.istiofile(f"request-authentication-customer-jwt{keys}.yaml"),
           lab.istiofile("authorization-policy-customer-jwt.yaml"))
good = mesh.token(role="customer")
forged = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
check.denied(mesh, "RBAC: access denied")                                   # no token

# %%
check.denied(mesh, "Jwt verification fails", headers={"authorization": f"Bearer {forged}"}, code=401)

# %%
check.succeeds(mesh, n=5, headers={"authorization": f"Bearer {good}"})

# %%
stranger = mesh.token(role="xxx")
check.denied(mesh, "RBAC: access denied", headers={"authorization": f"Bearer {stranger}"})

# %% [markdown]
# ## 5 · Rate limiting
#
# Envoy's local rate limit is a token bucket in one workload's sidecar: `max_tokens` requests pass at
# once, then `tokens_per_fill` more every `fill_interval`; the rest get `429`. Limit customer to
# 5 requests per minute.

# %%
from meshkit.widgets import rate_limit_panel

mesh.reset()
limit = rate_limit_panel(mesh, app="customer")
limit.controls["max_tokens"].value = 5
limit.controls["tokens_per_fill"].value = 5
limit.controls["fill_interval_s"].value = 60.0
limit.apply()
limit

# %%
check.rate_limited(mesh, allowed=5)

# %% [markdown]
# ### Exercise
#
# Remove the limit on customer (`mesh.reset()`) and put a bucket of **3** tokens per minute on
# **recommendation** instead. How many requests in a row pass now, and why? (Hint: the bucket is per
# pod, and recommendation has two.) Check with `check.rate_limited(mesh, allowed=6, n=12)`.

# %% tags=["exercise"]

# %% jupyter={"source_hidden": true, "outputs_hidden": true} tags=["solution"]
# Solution: its output stays hidden on Run All (lab.solution.show() prints it)
with lab.solution():
    from meshkit.widgets import rate_limit_rule

    mesh.reset()
    mesh.apply(rate_limit_rule("recommendation", 3, 3, 60.0))
    check.rate_limited(mesh, allowed=6, n=12)

# %% [markdown]
# ## Clean up
#
# Remove every resource this lab applied and bring the pods back to normal.

# %%
print(*mesh.reset(), sep="\n")
