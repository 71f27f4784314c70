"""Write the lab notebooks (run once after editing: ``python labs/_build.py``).

The notebooks are generated so that every lab keeps the same rhythm and metadata: a ``parameters``
cell, one setup cell, exercise cells followed by a hidden ``solution`` cell that still runs, and no
outputs. Edit the text here, not in the .ipynb files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

PARAMETERS = '''BACKEND = "local"   # "local" (processes on 127.0.0.1) or "kind" (real Istio)
FAST = False        # True scales delays and request counts down (CI, quick demos)'''

SETUP = '''from meshkit import lab
from meshkit.lab import check

mesh = lab.setup(backend=BACKEND)
T = 0.1 if FAST else 1.0          # time scale: delays and timeouts of the tutorial × T'''


def md(text: str) -> tuple[str, str]:
    return ("md", text.strip("\n"))


def code(text: str) -> tuple[str, str]:
    return ("code", text.strip("\n"))


def exercise(text: str, solution: str) -> list[tuple[str, str]]:
    """The exercise text, an empty cell for the learner, then the hidden solution."""
    return [md("### Exercise\n\n" + text.strip("\n")), ("empty", ""), ("solution", solution.strip("\n"))]


def notebook(slug: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """The notebook for one lab, validated."""
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for i, (kind, text) in enumerate(cells):
        if kind == "md":
            cell = new_markdown_cell(text)
        elif kind == "parameters":
            cell = new_code_cell(text, metadata={"tags": ["parameters"]})
        elif kind == "solution":
            cell = new_code_cell(
                "# Solution\n" + text, metadata={"tags": ["solution"], "jupyter": {"source_hidden": True}}
            )
        elif kind == "empty":
            cell = new_code_cell("", metadata={"tags": ["exercise"]})
        else:
            cell = new_code_cell(text)
        cell["id"] = f"{slug.split('_')[0]}-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def build(slug: str, cells: list[tuple[str, str]], out_dir: Path = HERE) -> Path:
    path = out_dir / f"{slug}.ipynb"
    path.write_text(nbformat.writes(notebook(slug, cells)) + "\n")
    return path


def head(title: str, goal: str) -> list[tuple[str, str]]:
    return [md(f"# {title}\n\n{goal.strip()}"), ("parameters", PARAMETERS), code(SETUP)]


CLEANUP = md("## Clean up\n\nRemove every resource this lab applied and bring the pods back to normal.")

LAB00 = [
    *head(
        "00 · Setup: the data plane, the sidecars and the control plane",
        """
**Goal:** start the mesh, see what runs in it, send the first requests, and watch the control
plane push configuration to every proxy.

The sample application is a chain of three services: **customer → preference → recommendation**,
with two versions of recommendation (v1 and v2). In a service mesh every pod runs the application
*and a sidecar proxy* (Envoy, here a faithful Python stand-in). Together the proxies are the
**data plane**: every request leaves through the caller's sidecar and enters through the callee's.
The **control plane** (istiod) stores the Istio resources you apply, computes what each proxy must
know, and pushes it to them.

The next cell starts the mesh on this machine (about a second; `lab.setup` reuses a running mesh
and removes leftovers of earlier labs). With `BACKEND = "kind"` it connects to real Istio instead.
""",
    ),
    md("""
## The pods and their proxies

Each row is a pod. `READY 2/2` means the application container and its `istio-proxy`. `CONFIG` is the
configuration version the proxy has acknowledged, `SYNC` whether that is the latest one — the same
columns as `kubectl get pods` and `istioctl proxy-status`. The ingress gateway is a proxy without an
application: it is where requests from outside enter the mesh.
"""),
    code("""
from meshkit.viz import pods_table

pods_table(mesh.pods())
"""),
    md("""
## First requests

`mesh.curl()` sends one request through the ingress gateway to `/customer`, like
`curl $GATEWAY_URL/customer` in the tutorial. Each service prefixes the answer of the next one, and
recommendation adds its version, its pod name and how many requests that pod has served.
"""),
    code("""
code, body = mesh.curl()
print(code, body)
"""),
    md("""
Without any routing rule the proxies balance requests over every recommendation pod, v1 and v2 alike.
`mesh.load()` sends many requests (like `siege` or `fortio`) and keeps a record of each one.
"""),
    code("""
from meshkit.viz import split_pie

result = mesh.load(n=50 if FAST else 200, concurrency=4)
print(result.summary()["codes"], result.summary()["latency_ms"])
split_pie(result.records)
"""),
    code("check.succeeds(mesh)"),
    md("""
## The control plane pushes configuration

The figure below samples every proxy's config version twice a second. Applying a resource makes the
control plane compute a new configuration and push it: watch every line step up at once. This
DestinationRule defines the *subsets* `version-v1` and `version-v2` of recommendation (pods
selected by their `version` label); the next labs route to them.
"""),
    code("""
from meshkit.viz import live_config_push

push = live_config_push(mesh.pods, interval_s=0.5)
push
"""),
    code('lab.show("destination-rule-recommendation-v1-v2.yaml")'),
    code("""
before = {p.name: p.config_version for p in mesh.pods()}
print(*mesh.apply(lab.istiofile("destination-rule-recommendation-v1-v2.yaml")), sep="\\n")
check.config_pushed(mesh, before)
"""),
    *exercise(
        """
Send **every** request to v2: apply `virtual-service-recommendation-v2.yaml` (the DestinationRule
with the subsets is already applied), watch the push in the figure above, then confirm with
`check.all_to(mesh, "v2")`.
""",
        """
print(*mesh.apply(lab.istiofile("virtual-service-recommendation-v2.yaml")), sep="\\n")
check.all_to(mesh, "v2")
""",
    ),
    CLEANUP,
    code("""
push.stop()
print(*mesh.reset(), sep="\\n")
"""),
]

LAB01 = [
    *head(
        "01 · Traffic control: subsets, canary, user-agent routing, mirroring and egress",
        """
**Goal:** decide which version of recommendation answers — all of them to v1, a 90/10 then 75/25
canary, Safari users to v2, a dark launch that mirrors traffic to v2 — and open the mesh to one
external host. Each step applies the tutorial's file, sends traffic, shows the result and checks it.

A **DestinationRule** names *subsets* of a service's pods (by label); a **VirtualService** says
which subset gets which request. Routing happens in the *caller's* sidecar: here, preference's.
""",
    ),
    md("## 1 · All traffic to v1"),
    code('lab.show("virtual-service-recommendation-v1.yaml")'),
    code("""
print(*mesh.apply(lab.istiofile("destination-rule-recommendation-v1-v2.yaml"),
                  lab.istiofile("virtual-service-recommendation-v1.yaml")), sep="\\n")
check.all_to(mesh, "v1")
"""),
    md("""
## 2 · Canary release: 90/10, then 75/25

Weights split the requests between subsets. Each request is an independent draw, so a 90/10 split is
statistical: over 1,000 requests v2 answers about 10 % of them.
"""),
    code('lab.show("virtual-service-recommendation-v1_and_v2.yaml")'),
    code("""
mesh.apply(lab.istiofile("virtual-service-recommendation-v1_and_v2.yaml"))
check.canary(mesh, v2=10)
"""),
    md("""
Now move the canary with the sliders. Start the traffic below (the live plot shows requests per
version per second), then set v1 to 75 and v2 to 25 in the panel and press **Apply**: the panel shows
the YAML it sends and what the mesh answered, and the plot follows within a second.
"""),
    code("""
from meshkit.widgets import traffic_panel, weights_panel

weights = weights_panel(mesh, weights={"v1": 90, "v2": 10}, with_subsets=True)
weights
"""),
    code("""
traffic = traffic_panel(mesh, rate=20 if FAST else 10)
traffic.start()
traffic
"""),
    md("The next cell does from code what the sliders do, so the lab also runs unattended."),
    code("""
weights.controls["v1"].value, weights.controls["v2"].value = 75, 25
weights.apply()
check.canary(mesh, v2=25, n=2000)
"""),
    code("traffic.stop()"),
    md("""
## 3 · Route by user agent: Safari users to v2

customer copies the `User-Agent` header into `baggage-user-agent`, and preference forwards it, so the
rule on recommendation can match it with a regex. Everyone else goes to v1.
"""),
    code('lab.show("virtual-service-recommendation-safari-v2.yaml")'),
    code("""
mesh.apply(lab.istiofile("virtual-service-recommendation-safari-v2.yaml"))
safari = {"user-agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) Version/17.0 Safari/605.1.15"}
check.header_routing(mesh, safari, "v2", otherwise="v1")
"""),
    md("""
## 4 · Mirroring (dark launch)

Every answer comes from v1, while a copy of each request goes to v2 — fire and forget: its answer is
thrown away. v2's log shows it working on real traffic no user sees.
"""),
    code('lab.show("virtual-service-recommendation-v1-mirror-v2.yaml")'),
    code("""
mesh.apply(lab.istiofile("virtual-service-recommendation-v1-mirror-v2.yaml"))
check.mirroring(mesh, served="v1", mirror="v2")
"""),
    code('print(lab.logs(mesh, "recommendation-v2", tail=3))'),
    md("""
## 5 · Egress: recommendation v3 calls the Internet

v3 asks `worldtimeapi.org` for the time. The mesh runs with `outboundTrafficPolicy: REGISTRY_ONLY`,
so a host that is not in the registry is blocked by v3's sidecar (a 502 that v3's app turns into a 500).
"""),
    code("""
mesh.deploy("recommendation", "v3")
mesh.apply(lab.istiofile("destination-rule-recommendation-v1-v2-v3.yaml"),
           lab.istiofile("virtual-service-recommendation-v3.yaml"))
check.egress_blocked(mesh)
"""),
    md("A **ServiceEntry** adds the external host to the registry, and the call goes through."),
    code('lab.show("service-entry-worldtimeapi-egress.yaml")'),
    code("""
mesh.apply(lab.istiofile("service-entry-worldtimeapi-egress.yaml"))
print(*mesh.curl())
check.egress_open(mesh)
"""),
    *exercise(
        """
Send **Firefox** users to v2 and everyone else to v1, with the header-routing panel:
`from meshkit.widgets import header_panel`, then `panel = header_panel(mesh)`; set the value to
`.*Firefox.*` and press Apply. Check with
`check.header_routing(mesh, {"user-agent": "Firefox/120.0"}, "v2", otherwise="v1")`.
""",
        """
from meshkit.widgets import header_panel

panel = header_panel(mesh, value=".*Firefox.*")
panel.apply()
check.header_routing(mesh, {"user-agent": "Mozilla/5.0 Firefox/120.0"}, "v2", otherwise="v1")
""",
    ),
    CLEANUP,
    code("""
print(*mesh.reset(), sep="\\n")
lab.tidy(mesh)
"""),
]

LAB02 = [
    *head(
        "02 · Resiliency: load balancing, retries, timeouts, circuit breakers and pool ejection",
        """
**Goal:** see the proxies protect the chain from slow and failing pods — how they pick a pod, when they
retry, when they give up waiting, when they refuse to pile up requests, and how they take a failing
pod out of the pool.

This lab follows **current Istio**, which differs from the tutorial's Istio 1.9 in two places it
points out: the default load balancer is `LEAST_REQUEST` (not round robin), and a 503 from an app is
no longer retried by default.
""",
    ),
    md("""
## 1 · Load balancing

As in the tutorial, run three replicas of v2 next to v1, then pick the algorithm in the panel (it
writes a DestinationRule). Requests are sent one after the other, so the order shows the algorithm.
"""),
    code("""
from meshkit.widgets import lb_panel

mesh.scale("recommendation-v2", 3)
lb = lb_panel(mesh)
lb.controls["simple"].value = "ROUND_ROBIN"
lb.apply()
lb
"""),
    code('check.load_balancing(mesh, "ROUND_ROBIN")'),
    code("""
mesh.apply(lab.istiofile("destination-rule-recommendation-lb_policy_app.yaml"))
check.load_balancing(mesh, "RANDOM")
"""),
    md("""
`LEAST_REQUEST` (today's default) picks two pods at random and sends the request to the one with fewer
requests in flight, so a slow pod gets less traffic. Slow one v2 pod down and look at the latencies.
"""),
    code("""
from meshkit.viz import latency_figure

slow = lab.pod_of(mesh, "recommendation-v2")
mesh.delay(slow, 0.05)
lb.controls["simple"].value = "LEAST_REQUEST"
lb.apply()
latency_figure(mesh.load(n=200, concurrency=8).records)
"""),
    code('check.load_balancing(mesh, "LEAST_REQUEST", slow=slow, n=300)'),
    code("""
mesh.delay(slow, 0)
mesh.scale("recommendation-v2", 1)
mesh.reset();
"""),
    md("""
## 2 · Retries

v2 starts to misbehave: it answers 503. With current Istio's default retry policy that 503 reaches
the user (the tutorial's Istio retried it silently). The codes plot shows each request's status.
"""),
    code("""
from meshkit.viz import codes_over_time

mesh.misbehave("recommendation-v2")
result = mesh.load(n=40 if FAST else 100, qps=40 if FAST else 20)
codes_over_time(result.records, bucket_s=0.5)
"""),
    code("check.fails(mesh, n=40)"),
    md("""
Add a retry policy: up to 3 attempts on any 5xx. A retry prefers another pod, so v1 answers instead
and every user sees a 200. Set the controls and press Apply (the next cell sets them from code).
"""),
    code("""
from meshkit.widgets import timeout_retry_panel

retry = timeout_retry_panel(mesh)
retry.controls["timeout_s"].value = 0
retry.controls["attempts"].value = 3
retry.controls["retry_on"].value = "5xx"
retry.apply()
retry
"""),
    code("check.succeeds(mesh, n=40)"),
    md("""
## 3 · Timeout

v2 now takes 3 s to answer (the tutorial's `v2-timeout` image). A 1 s timeout on the route makes the
caller's proxy give up: the user gets `504 upstream request timeout` after 1 s instead of waiting.
(The tutorial says v2 "disappears"; in fact every request sent to v2 becomes this 504.)
"""),
    code("""
mesh.behave("recommendation-v2")
mesh.delay("recommendation-v2", 3 * T)
lab.show("virtual-service-recommendation-timeout.yaml", time_scale=T)
"""),
    code("""
mesh.apply(lab.istiofile("virtual-service-recommendation-timeout.yaml", time_scale=T))
result = mesh.load(n=20, concurrency=5)
latency_figure(result.records)
"""),
    code("check.timeout(mesh, 1 * T)"),
    md("""
## 4 · Circuit breaker

v2 is still slow. Twenty users arrive at once, half of them routed to v2. Without limits every request
waits; with a connection pool of one connection and one pending request, the caller's proxy refuses
the overflow at once (`503`, flag `UO`) instead of piling requests onto a slow pod.
"""),
    code("""
mesh.reset()
mesh.apply(lab.istiofile("destination-rule-recommendation-v1-v2.yaml"),
           lab.istiofile("virtual-service-recommendation-v1_and_v2_50_50.yaml"))
check.succeeds(mesh, n=40, concurrency=20)
"""),
    code('lab.show("destination-rule-recommendation-cb_policy_version_v2.yaml")'),
    code("""
mesh.apply(lab.istiofile("destination-rule-recommendation-cb_policy_version_v2.yaml"))
result = mesh.load(n=40, concurrency=20)
codes_over_time(result.records, bucket_s=0.25)
"""),
    code("check.circuit_breaker(mesh)"),
    md("""
## 5 · Pool ejection

Two v2 pods, one of them misbehaving. Without outlier detection every request sent to the bad pod fails.
With `consecutive5xxErrors: 1` the first failure ejects it for `baseEjectionTime` (15 s): only
healthy pods answer until it comes back for another try.
"""),
    code("""
mesh.reset()
mesh.delay("recommendation-v2", 0)
mesh.scale("recommendation-v2", 2)
bad = lab.pod_of(mesh, "recommendation-v2")
mesh.misbehave(bad)
mesh.apply(lab.istiofile("destination-rule-recommendation-v1-v2.yaml"),
           lab.istiofile("virtual-service-recommendation-v1_and_v2_50_50.yaml"))
check.fails(mesh, n=40)
"""),
    code('lab.show("destination-rule-recommendation-cb_policy_pool_ejection.yaml", time_scale=T)'),
    code("""
mesh.apply(lab.istiofile("destination-rule-recommendation-cb_policy_pool_ejection.yaml", time_scale=T))
check.ejection(mesh, bad)
"""),
    md("""
## 6 · All together: ejection plus retries

Ejection still lets one request fail each time the pod is tried again. Add retries on 5xx to the
50/50 route and not a single user sees an error.
"""),
    code('''
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
'''),
    *exercise(
        """
Back to the circuit breaker: make both v2 pods healthy but slow again
(`mesh.behave("recommendation-v2")`, `mesh.delay("recommendation-v2", 3 * T)`), then use the pool panel
(`from meshkit.widgets import pool_panel`) to raise the limits until twenty concurrent users see no
overflow: `check.succeeds(mesh, n=40, concurrency=20)`.
""",
        """
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
""",
    ),
    CLEANUP,
    code("""
print(*mesh.reset(), sep="\\n")
lab.tidy(mesh)
"""),
]

LAB03 = [
    *head(
        "03 · Chaos: inject aborts and delays",
        """
**Goal:** break the application on purpose, without touching its code: make the caller's proxy answer
503 for half of the requests, then delay half of them by 7 s, and see how the chain reports it.

Faults are injected by the **caller's** sidecar (preference's, for recommendation) *before* routing:
an aborted request never reaches a recommendation pod.
""",
    ),
    md("## 1 · HTTP 503 for 50 % of the requests"),
    code('lab.show("virtual-service-recommendation-503.yaml")'),
    code("""
from meshkit.viz import codes_over_time

mesh.apply(lab.istiofile("destination-rule-recommendation-app.yaml"),
           lab.istiofile("virtual-service-recommendation-503.yaml"))
result = mesh.load(n=60 if FAST else 200, qps=60 if FAST else 20)
codes_over_time(result.records, bucket_s=0.5)
"""),
    code("check.fault_abort(mesh, 50)"),
    md("""
Which proxy answered? `mesh.explain()` reads every proxy's records of a failed request and names where
the failure started (flag `FI`: fault injected), and the chain of messages shows how each service
wrapped the error.
"""),
    code("""
import time

print(*mesh.explain(limit=3, since=time.time() - 30), sep="\\n")
"""),
    md("""
## 2 · A 7 s delay for 50 % of the requests

The delayed requests wait in preference's sidecar before they are sent; recommendation's log shows
them arriving late, not answering late.
"""),
    code('lab.show("virtual-service-recommendation-delay.yaml", time_scale=T)'),
    code("""
from meshkit.viz import latency_figure

mesh.apply(lab.istiofile("virtual-service-recommendation-delay.yaml", time_scale=T))
result = mesh.load(n=40, concurrency=20)
latency_figure(result.records)
"""),
    code("check.fault_delay(mesh, 7 * T, 50)"),
    *exercise(
        """
With the fault panel (`from meshkit.widgets import fault_panel`), abort **20 %** of the requests with
HTTP **500** and no delay. Which status does the user get, and why? Check with
`check.fault_abort(mesh, 20, status=500)`.
""",
        """
from meshkit.widgets import fault_panel

fault = fault_panel(mesh)
fault.controls["abort_status"].value = 500
fault.controls["abort_percent"].value = 20
fault.controls["delay"].value = False
fault.apply()
print(*mesh.curl())     # customer and preference turn any failure below them into a 503
check.fault_abort(mesh, 20, status=500)
""",
    ),
    CLEANUP,
    code('print(*mesh.reset(), sep="\\n")'),
]

LAB04 = [
    *head(
        "04 · Observability: metrics, traces, the service graph, and why requests failed",
        """
**Goal:** answer "what just happened?" the way you would on a cluster: Istio's standard metrics
(Prometheus), distributed traces (Jaeger), the service graph (Kiali), and a one-line explanation of
each failed request.

Every proxy records every request: the caller's proxy as `reporter="source"`, the callee's as
`reporter="destination"`.
""",
    ),
    md("""
## Live traffic

Start steady traffic and keep these plots open while you go through the lab: requests per version,
status codes with Envoy's response flags, and latency percentiles. They refresh every second
without blocking the notebook.
"""),
    code("""
from meshkit.viz import live_codes, live_latency, live_split

runner = mesh.traffic(rate=20, concurrency=2)
runner.start()
split, codes, latency = live_split(runner), live_codes(runner), live_latency(runner, interval_s=1)
split
"""),
    code("codes"),
    code("latency"),
    code("""
import time

time.sleep(3 if FAST else 10)      # let the plots fill
mesh.load(n=100, concurrency=4);
"""),
    md("""
## Metrics

`istio_requests_total` counts requests with Istio's labels; `istio_request_duration_milliseconds`
is a histogram. These are the series Prometheus scrapes from every proxy.
"""),
    code("print(lab.metrics(mesh, \"istio_requests_total\", limit=6))"),
    code("check.metrics(mesh)"),
    md("""
The same questions without PromQL: requests per second and share by destination version, as a table.
"""),
    code("""
from meshkit.telemetry.queries import to_frame

to_frame(mesh.rates("destination_version", window_s=60))
"""),
    md("""
## Traces

Each proxy makes a span per request and propagates the trace headers (B3 and W3C); the apps copy them
to their own calls, so one request through the gateway becomes one trace.
"""),
    code("""
from meshkit.viz import trace_waterfall

mesh.curl()
trace_waterfall(mesh.traces(service="customer", limit=1))
"""),
    code("check.trace(mesh)"),
    md("""
## The service graph

Derived from the same records, as Kiali does: nodes are app versions and services, edges carry
request rate, error ratio, p95 latency and whether the connection was mutual TLS.
"""),
    code("""
from meshkit.viz import service_graph

service_graph(mesh.graph())
"""),
    code("check.graph(mesh)"),
    md("""
## Why did it fail?

Make v2 misbehave while the traffic runs: the codes plot turns partly red, and `mesh.explain()` names,
for each failed request, which proxy or app answered and why.
"""),
    code("""
mesh.misbehave("recommendation-v2")
mesh.load(n=40, flags=False);
print(*mesh.explain(limit=3, since=time.time() - 30), sep="\\n")
"""),
    code('check.explained(mesh, "the app answered")'),
    *exercise(
        """
Make v2 behave again, then inject an **abort of 30 %** on recommendation (fault panel or the
tutorial's files) and find it in the codes plot (flag `FI`) and in `mesh.explain()`.
Check with `check.explained(mesh, "fault injection")`.
""",
        """
from meshkit.widgets import fault_panel

mesh.behave("recommendation-v2")
fault = fault_panel(mesh)
fault.controls["abort_percent"].value = 30
fault.apply()
mesh.load(n=60, flags=False);
check.explained(mesh, "fault injection")
""",
    ),
    CLEANUP,
    code("""
runner.stop()
for live in (split, codes, latency):
    live.stop()
print(*mesh.reset(), sep="\\n")
lab.tidy(mesh)
"""),
]

LAB05 = [
    *head(
        "05 · Security: mTLS you can see, the ingress gateway, authorization, JWT and rate limits",
        """
**Goal:** encrypt the traffic between sidecars and see the difference on the wire, let requests in
through the ingress gateway, deny everything and allow the chain back step by step, require a JWT
from end users, and limit the request rate — with today's resources (PeerAuthentication,
AuthorizationPolicy, RequestAuthentication and Envoy's local rate limit).
""",
    ),
    md("""
## 1 · Mutual TLS, before and after

Every workload has an identity, a certificate with a SPIFFE id such as
`spiffe://cluster.local/ns/tutorial/sa/preference`. First turn mTLS off and look at the bytes that
reach preference: readable HTTP, with headers such as `x-request-id` and `x-b3-traceid`.
"""),
    code("""
mesh.apply(lab.istiofile("peer-authentication-all-disable.yaml"))
check.mtls(mesh, expected="none")
"""),
    code('print(lab.cli(mesh, "sniff", "preference"))'),
    md("Now require mutual TLS in the whole namespace: the same bytes become TLS records."),
    code('lab.show("peer-authentication-all-strict.yaml")'),
    code("""
mesh.apply(lab.istiofile("peer-authentication-all-strict.yaml"))
check.mtls(mesh, expected="mutual_tls")
"""),
    code('print(lab.cli(mesh, "sniff", "preference"))'),
    md("""
## 2 · The ingress gateway

Requests from outside enter through the ingress gateway, which routes with the VirtualServices bound
to its Gateway: `/customer` goes to customer, anything else gets a 404 from the gateway itself.
"""),
    code('lab.show("gateway-customer.yaml")'),
    code("""
print(mesh.curl("/customer"))
print(mesh.curl("/nothing-here"))
check.succeeds(mesh, n=10)
"""),
    md("""
The HTTPS variant: a second Gateway server on port 443 terminates TLS with a certificate you make.
Istio finds it through `credentialName` (a Kubernetes secret on a cluster); the local mesh keeps the
secret in its control plane and hands it to the gateway only.
"""),
    code('lab.show("gateway-customer-https.yaml")'),
    code("""
from meshkit.backends.local.tls import make_self_signed

cert, key = make_self_signed(["customer.example.com"])      # like `openssl req -x509 ...`
if BACKEND == "local":                                       # on a cluster: kubectl create secret tls ...
    mesh.create_tls_secret("customer-credential", cert, key)
    mesh.apply(lab.istiofile("gateway-customer-https.yaml"))
    print(mesh.curl("/customer", {"host": "customer.example.com"}, https=True, cacert=cert))
"""),
    md("""
## 3 · Authorization: deny everything, then allow the chain back

An `AuthorizationPolicy` with an empty spec allows nothing. The proxy that refuses answers
`403 RBAC: access denied`; each caller wraps the error, so the message tells how far the request got.
"""),
    code("""
mesh.reset()
mesh.apply(lab.istiofile("authorization-policy-all-deny.yaml"))
check.denied(mesh, "RBAC: access denied")
"""),
    code("""
mesh.apply(lab.istiofile("authorization-policy-customer-allow.yaml"))
check.denied(mesh, "customer => Error: 403 - RBAC: access denied")
"""),
    code('lab.show("authorization-policy-preference-allow.yaml")'),
    code("""
mesh.apply(lab.istiofile("authorization-policy-preference-allow.yaml"))
check.denied(mesh, "customer => Error: 503 - preference => Error: 403 - RBAC: access denied")
"""),
    code("""
mesh.apply(lab.istiofile("authorization-policy-recommendation-allow.yaml"))
check.succeeds(mesh, n=10)
"""),
    md("""
## 4 · End-user authentication with JWT

customer accepts tokens from the issuer `testing@secure.istio.io`, and only lets in requests whose
token carries the claim `role: customer`. `mesh.token()` asks the mesh's local test issuer for a signed
token (`meshkit token --claim role=customer`); the local mesh's RequestAuthentication reads that issuer's
keys, the one for a real cluster the tutorial's public key set.
"""),
    code("""
mesh.reset()
keys = "-local" if BACKEND == "local" else ""
mesh.apply(lab.istiofile(f"request-authentication-customer-jwt{keys}.yaml"),
           lab.istiofile("authorization-policy-customer-jwt.yaml"))
good = mesh.token(role="customer")
forged = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
check.denied(mesh, "RBAC: access denied")                                   # no token
"""),
    code("""
check.denied(mesh, "Jwt verification fails", headers={"authorization": f"Bearer {forged}"}, code=401)
"""),
    code("""
check.succeeds(mesh, n=5, headers={"authorization": f"Bearer {good}"})
"""),
    code("""
stranger = mesh.token(role="xxx")
check.denied(mesh, "RBAC: access denied", headers={"authorization": f"Bearer {stranger}"})
"""),
    md("""
## 5 · Rate limiting

Envoy's local rate limit is a token bucket in one workload's sidecar: `max_tokens` requests pass at
once, then `tokens_per_fill` more every `fill_interval`; the rest get `429`. Limit customer to
5 requests per minute.
"""),
    code("""
from meshkit.widgets import rate_limit_panel

mesh.reset()
limit = rate_limit_panel(mesh, app="customer")
limit.controls["max_tokens"].value = 5
limit.controls["tokens_per_fill"].value = 5
limit.controls["fill_interval_s"].value = 60.0
limit.apply()
limit
"""),
    code("check.rate_limited(mesh, allowed=5)"),
    *exercise(
        """
Remove the limit on customer (`mesh.reset()`) and put a bucket of **3** tokens per minute on
**recommendation** instead. How many requests in a row pass now, and why? (Hint: the bucket is per
pod, and recommendation has two.) Check with `check.rate_limited(mesh, allowed=6, n=12)`.
""",
        """
from meshkit.widgets import rate_limit_rule

mesh.reset()
mesh.apply(rate_limit_rule("recommendation", 3, 3, 60.0))
check.rate_limited(mesh, allowed=6, n=12)
""",
    ),
    CLEANUP,
    code('print(*mesh.reset(), sep="\\n")'),
]

LABS = {
    "00_setup": LAB00,
    "01_traffic_control": LAB01,
    "02_resiliency": LAB02,
    "03_chaos": LAB03,
    "04_observability": LAB04,
    "05_security": LAB05,
}


def main() -> int:
    for slug, cells in LABS.items():
        print(build(slug, cells).relative_to(HERE.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
