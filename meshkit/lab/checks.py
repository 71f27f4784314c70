"""The checks of the labs: measure the mesh, answer ✓ or ✗ with what was seen and a hint.

Example::

    from meshkit.lab import check
    check.canary(mesh, v2=10)        # ✓ canary 90/10: v2 answered 9.6 % of 1000 replies (expected 10 % ± 4)
"""

from __future__ import annotations

import functools
import html
import itertools
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshkit.lab import progress
from meshkit.mesh import Mesh
from meshkit.traffic import LoadResult

GATEWAY = "istio-ingressgateway"
# a check raises instead of reporting when this is 1 (the test suite executes the labs that way)
STRICT_ENV = "MESHKIT_LAB_STRICT"

@dataclass(frozen=True)
class CheckResult:
    """The answer of a check: ✓ or ✗, what was seen, what was expected and, on ✗, a hint."""

    name: str
    ok: bool
    seen: str
    expected: str
    hint: str = ""

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return str(self)

    def __str__(self) -> str:
        text = f"{'✓' if self.ok else '✗'} {self.name}: {self.seen} (expected {self.expected})"
        return text if self.ok or not self.hint else f"{text}\n  hint: {self.hint}"

    def _repr_html_(self) -> str:
        color, mark = ("#2a7a2a", "✓") if self.ok else ("#d62728", "✗")
        hint = "" if self.ok or not self.hint else f"<div>💡 {html.escape(self.hint)}</div>"
        return (f'<div style="border-left:4px solid {color};padding:4px 8px;margin:4px 0">'
                f'<b style="color:{color}">{mark} {html.escape(self.name)}</b><br>'
                f"seen: {html.escape(self.seen)}<br>expected: {html.escape(self.expected)}{hint}</div>")


def _strict(strict: bool | None) -> bool:
    if strict is not None:
        return strict
    return os.environ.get(STRICT_ENV, "").lower() in ("1", "true", "yes")


def poll(measure: Callable[[], CheckResult], deadline_s: float, interval_s: float = 3.0,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> CheckResult:
    """Measure until ✓ or until ``deadline_s`` has passed, saying "not yet, retrying" between attempts.

    Example::

        poll(lambda: check.all_to(mesh, "v1", strict=False, deadline_s=0), deadline_s=60)
    """
    end = clock() + deadline_s
    while True:
        result = measure()
        if result.ok or clock() + interval_s > end:
            return result
        print(f"not yet, retrying: {result.seen}", flush=True)
        sleep(interval_s)


def _check(measure: Callable[..., CheckResult]) -> Callable[..., CheckResult]:
    @functools.wraps(measure)
    def run(mesh: Mesh, *args: Any, strict: bool | None = None, deadline_s: float | None = None,
            **kwargs: Any) -> CheckResult:
        if deadline_s is None:  # the local control plane pushes before apply() returns
            deadline_s = 0.0 if mesh.backend.name == "local" else 90.0
        result = poll(lambda: measure(mesh, *args, **kwargs), deadline_s)
        progress.record(progress.CURRENT.get("lab"), measure.__name__, result.ok, result.seen)
        if _strict(strict) and not result.ok:
            raise AssertionError(str(result))
        return result

    return run


def _errors(recs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in recs if r["code"] != 200]


def _first_error(recs: Sequence[Mapping[str, Any]]) -> str:
    bad = _errors(recs)
    return f"; first error: {bad[0]['code']} {bad[0]['body'][:120]!r}" if bad else ""


def _judged(mesh: Mesh, result: LoadResult | None, flags: bool, n: int, concurrency: int) -> tuple[LoadResult, int]:
    """The load to judge: the one given (flags attached if asked and missing) or a new one of ``n``."""
    if result is None:
        return mesh.load(n=n, concurrency=concurrency, flags=flags), n
    if flags and result.records and any("flags" not in r for r in result.records):
        mesh.attach_flags(result.records)
    return result, len(result.records)


def _dest_rows(mesh: Mesh, result: LoadResult, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The servers' records of the requests in ``result`` (joined by x-request-id).

    Proxies ship their records every 0.2 s; this reads until the count stops growing (at most
    ``timeout``), so a busy machine does not make a lesson look wrong.
    """
    ids = {r["request_id"] for r in result.records}
    since = min((r["t"] for r in result.records), default=time.time()) - 1
    return [r for r in mesh.settled_request_log(since, timeout)
            if r.get("reporter") == "destination" and r.get("request_id") in ids]


class Checks:
    """The lessons' claims, measured. Every check takes the mesh first and returns a CheckResult;
    ``strict=True`` raises instead of answering ✗, ``deadline_s`` bounds the retries."""

    @staticmethod
    @_check
    def canary(mesh: Mesh, v2: float = 10, n: int = 1000, tolerance: float = 4, version: str = "v2") -> CheckResult:
        """``version`` answers ``v2`` % (± ``tolerance`` points) of ``n`` requests, none failing."""
        result = mesh.load(n=n, concurrency=8, flags=False)
        versions = Counter(r["version"] for r in result.records if r["version"])
        replies = sum(versions.values())
        share = 100.0 * versions[version] / replies if replies else 0.0
        errors = len(_errors(result.records))
        ok = errors == 0 and abs(share - v2) <= tolerance
        hint = (f"some requests failed{_first_error(result.records)}" if errors else
                f"are the weights {100 - v2:g}/{v2:g}? see mesh.get('virtualservice', 'recommendation')")
        seen = f"{version} answered {share:.1f} % of {replies} replies" + (f", {errors} failed" if errors else "")
        return CheckResult(f"canary {100 - v2:g}/{v2:g}", ok, seen, f"{v2:g} % ± {tolerance:g}", hint)

    @staticmethod
    @_check
    def all_to(mesh: Mesh, version: str, n: int = 40, headers: Mapping[str, str] | None = None) -> CheckResult:
        """Every one of ``n`` requests is answered by ``version``."""
        result = mesh.load(n=n, concurrency=4, headers=headers, flags=False)
        versions = dict(Counter(r["version"] or f"error {r['code']}" for r in result.records))
        ok = versions == {version: n}
        return CheckResult(f"all traffic to {version}", ok, f"replies by version {versions}",
                           f"{{{version!r}: {n}}}",
                           f"apply the DestinationRule with the subsets and the VirtualService routing to {version}"
                           + _first_error(result.records))

    @staticmethod
    @_check
    def header_routing(mesh: Mesh, headers: Mapping[str, str], version: str, otherwise: str | None = None,
                       n: int = 20) -> CheckResult:
        """Requests with ``headers`` go to ``version``; the others (if ``otherwise``) to that version."""
        matched = Counter(r["version"] or f"error {r['code']}"
                          for r in mesh.load(n=n, headers=headers, flags=False).records)
        seen = f"with {dict(headers)}: {dict(matched)}"
        ok = matched == Counter({version: n})
        expected = f"all {n} with the header to {version}"
        if otherwise is not None:
            rest = Counter(r["version"] or f"error {r['code']}" for r in mesh.load(n=n, flags=False).records)
            seen += f"; without: {dict(rest)}"
            ok = ok and rest == Counter({otherwise: n})
            expected += f", all others to {otherwise}"
        return CheckResult("header routing", ok, seen, expected,
                           "customer copies user-agent into baggage-user-agent; match that header with a regex")

    @staticmethod
    @_check
    def mirroring(mesh: Mesh, served: str = "v1", mirror: str = "v2", n: int = 30) -> CheckResult:
        """Replies all come from ``served`` while ``mirror`` receives a copy of each request."""
        result = mesh.load(n=n, flags=False)
        versions = dict(Counter(r["version"] or f"error {r['code']}" for r in result.records))
        deadline = time.monotonic() + 5.0
        while True:  # a mirrored copy is fire and forget: it may still be on its way when the reply came
            copies = sum(1 for r in _dest_rows(mesh, result)
                         if r.get("destination_app") == "recommendation" and r.get("destination_version") == mirror)
            if copies >= n or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        ok = versions == {served: n} and copies >= n
        return CheckResult("mirroring", ok, f"replies {versions}, {copies} copies reached {mirror}",
                           f"{n} replies from {served} and {n} copies at {mirror}",
                           "route 100 % to the served subset and set mirror: {host, subset} on the same rule")

    @staticmethod
    @_check
    def egress_blocked(mesh: Mesh) -> CheckResult:
        """v3's call to worldtimeapi.org fails: REGISTRY_ONLY and no ServiceEntry."""
        code, body = mesh.curl()
        ok = code != 200 and "Error: 500" in body
        return CheckResult("egress blocked", ok, f"{code} {body[:140]!r}",
                           "503 with preference => Error: 500 inside",
                           "route all traffic to v3, and delete the ServiceEntry if one is applied")

    @staticmethod
    @_check
    def egress_open(mesh: Mesh) -> CheckResult:
        """v3 reaches worldtimeapi.org and prints the time."""
        code, body = mesh.curl()
        ok = code == 200 and "recommendation v3 " in body
        return CheckResult("egress through a ServiceEntry", ok, f"{code} {body[:140]!r}",
                           "200 with 'recommendation v3 <datetime>'",
                           "apply service-entry-worldtimeapi-egress.yaml (host worldtimeapi.org, port 80 http)")

    @staticmethod
    @_check
    def succeeds(mesh: Mesh, n: int = 40, concurrency: int = 1,
                 headers: Mapping[str, str] | None = None) -> CheckResult:
        """Every one of ``n`` requests answers 200."""
        result = mesh.load(n=n, concurrency=concurrency, headers=headers, flags=False)
        codes = dict(Counter(str(r["code"]) for r in result.records))
        return CheckResult("every request succeeds", codes == {"200": n}, f"codes {codes}", f"{{'200': {n}}}",
                           "mesh.explain() names the proxy that answered" + _first_error(result.records))

    @staticmethod
    @_check
    def fails(mesh: Mesh, n: int = 40, at_least: int = 1, flag: str | None = None, body: str | None = None,
              concurrency: int = 1, result: LoadResult | None = None) -> CheckResult:
        """At least ``at_least`` of ``n`` requests fail (with Envoy ``flag``, or ``body`` in the reply).

        ``result`` judges that load (the one a figure above shows) instead of sending a new one.
        """
        result, n = _judged(mesh, result, flag is not None, n=n, concurrency=concurrency)
        bad = [r for r in _errors(result.records)
               if (flag is None or r.get("flags") == flag) and (body is None or body in r["body"])]
        what = " ".join(x for x in (flag and f"flag {flag}", body and repr(body)) if x) or "any error"
        return CheckResult("failures are visible", len(bad) >= at_least,
                           f"{len(bad)} of {n} failed ({what}){_first_error(result.records)}",
                           f"at least {at_least} failing with {what}",
                           "is a pod misbehaving (mesh.misbehave) and are retries still hiding it?")

    @staticmethod
    @_check
    def timeout(mesh: Mesh, seconds: float, n: int = 10, concurrency: int = 5,
                result: LoadResult | None = None) -> CheckResult:
        """Slow replies become 504 "upstream request timeout" (only a route timeout says that), none
        before ``seconds``; the rest succeed. How fast the successes were is not judged: a busy
        machine makes them slow without any timeout involved."""
        result, n = _judged(mesh, result, False, n=n, concurrency=concurrency)
        timed = [r["latency_ms"] / 1000 for r in result.records if "upstream request timeout" in r["body"]]
        fast = [r["latency_ms"] / 1000 for r in result.records if r["code"] == 200]
        ok = bool(timed) and all(seconds * 0.95 <= t for t in timed) and len(timed) + len(fast) == n
        seen = (f"{len(timed)} timed out after {min(timed, default=0):.2f}–{max(timed, default=0):.2f} s, "
                f"{len(fast)} succeeded" + (f", {n - len(timed) - len(fast)} other" if len(timed) + len(fast) != n
                                            else ""))
        return CheckResult(f"timeout {seconds:g} s", ok, seen,
                           f"some 504 'upstream request timeout', none before {seconds:g} s, the rest 200",
                           "is a pod slowed down (mesh.delay) and the VirtualService timeout applied?")

    @staticmethod
    @_check
    def circuit_breaker(mesh: Mesh, result: LoadResult | None = None, n: int = 40,
                        concurrency: int = 20) -> CheckResult:
        """With ``concurrency`` clients some requests overflow the pool (503 UO) and some pass.

        Pass the ``result`` a figure shows, so the check and the figure count the same requests.

        Example::

            result = mesh.load(n=40, concurrency=20)
            codes_over_time(result.records)
            check.circuit_breaker(mesh, result)
        """
        result, n = _judged(mesh, result, True, n=n, concurrency=concurrency)
        # what the user got: a request that overflowed once but was retried to a 200 is a 200, as in the figure
        flags = dict(Counter(f"{r['code']} {r.get('flags', '-') if r['code'] != 200 else '-'}" for r in result.records))
        overflow = sum(1 for r in result.records if r["code"] == 503
                       and (r.get("flags") == "UO" or "reset reason: overflow" in r["body"]))
        ok = overflow >= 1 and any(r["code"] == 200 for r in result.records)
        return CheckResult("circuit breaker", ok, f"{overflow} overflows (UO) of {n}; {flags}",
                           "some 503 UO and some 200",
                           "apply the DestinationRule with connectionPool maxConnections 1, "
                           "http1MaxPendingRequests 1 and keep a pod slow")

    @staticmethod
    @_check
    def ejection(mesh: Mesh, pod: str, n: int = 60, max_errors: int = 1) -> CheckResult:
        """A misbehaving ``pod`` fails at most ``max_errors`` times, then is ejected from the pool."""
        result = mesh.load(n=n, flags=False)
        bad = [i for i, r in enumerate(result.records) if r["code"] != 200]
        hits = sum(1 for r in result.records if pod in r["body"])
        return CheckResult("pool ejection", len(bad) <= max_errors,
                           f"{len(bad)} errors in {n} requests (positions {bad[:8]}), {hits} answered by {pod}",
                           f"at most {max_errors} error(s): the first failure ejects the pod",
                           "outlierDetection with consecutive5xxErrors: 1 on the subset of the misbehaving pod")

    @staticmethod
    @_check
    def fault_abort(mesh: Mesh, percent: float, n: int = 1000, tolerance: float = 5,
                    status: int | None = None) -> CheckResult:
        """About ``percent`` % of requests are aborted by the caller's proxy ("fault filter abort")."""
        result = mesh.load(n=n, concurrency=8, flags=False)
        aborted = [r for r in result.records if "fault filter abort" in r["body"]]
        share = 100.0 * len(aborted) / n
        right_status = status is None or all(f"Error: {status} - fault filter abort" in r["body"] for r in aborted)
        other = len(_errors(result.records)) - len(aborted)
        ok = abs(share - percent) <= tolerance and right_status and other == 0
        seen = f"{share:.1f} % of {n} aborted" + ("" if right_status else f", not with {status}") + \
            (f", {other} other errors" if other else "")
        return CheckResult(f"abort {percent:g} %", ok, seen, f"{percent:g} % ± {tolerance:g}"
                           + (f" with status {status}" if status else ""),
                           "fault.abort {httpStatus, percentage.value} on the route to recommendation")

    @staticmethod
    @_check
    def fault_delay(mesh: Mesh, seconds: float, percent: float, n: int = 100, concurrency: int = 50,
                    tolerance: float = 20, result: LoadResult | None = None) -> CheckResult:
        """About ``percent`` % of requests were delayed by the caller's proxy (flag ``DI``), each by at
        least ``seconds``. The proxies' flags say which ones, so a busy machine's slow replies do not
        count as delayed."""
        result, n = _judged(mesh, result, True, n=n, concurrency=concurrency)
        delayed = [r for r in result.records if r.get("flags") == "DI"]
        short = [r for r in delayed if r["latency_ms"] < seconds * 950]
        share = 100.0 * len(delayed) / n
        errors = len(_errors(result.records))
        ok = abs(share - percent) <= tolerance and errors == 0 and not short
        seen = f"{share:.0f} % of {n} delayed (flag DI)" + (f", {len(short)} of them by less than {seconds:g} s"
                                                             if short else "")
        return CheckResult(f"delay {seconds:g} s for {percent:g} %", ok,
                           seen + (f", {errors} failed" if errors else ""),
                           f"{percent:g} % ± {tolerance:g}, each ≥ {seconds:g} s",
                           "fault.delay {fixedDelay, percentage.value}; without percentage no request is delayed")

    @staticmethod
    @_check
    def load_balancing(mesh: Mesh, policy: str, n: int = 80, slow: str | None = None) -> CheckResult:
        """ROUND_ROBIN cycles the pods, RANDOM repeats them irregularly, LEAST_REQUEST avoids ``slow``."""
        pods = [p.name for p in mesh.pods() if p.app == "recommendation"]
        concurrency = 8 if policy == "LEAST_REQUEST" else 1
        order = [r["pod"] for r in mesh.load(n=n, concurrency=concurrency, flags=False).records]
        counts = Counter(order)
        repeats = sum(a == b for a, b in itertools.pairwise(order))
        seen = f"{dict(counts)}, {repeats} back-to-back repeats"
        if policy == "ROUND_ROBIN":
            ok = repeats == 0 and set(counts) == set(pods) and max(counts.values()) - min(counts.values()) <= 1
            expected = f"every pod in turn ({n // len(pods)} each), no repeats"
        elif policy == "RANDOM":
            ok = repeats >= 1 and set(counts) == set(pods)
            expected = "every pod, in an irregular order (some repeats)"
        elif policy == "LEAST_REQUEST":
            if slow is None:
                raise ValueError("load_balancing('LEAST_REQUEST') needs slow=<the slowed-down pod>")
            fair = n / len(pods)
            ok = counts[slow] < 0.7 * fair
            expected = f"the slow pod {slow} well under its fair share of {fair:.0f}"
        else:
            raise ValueError(f"policy must be ROUND_ROBIN, RANDOM or LEAST_REQUEST, got {policy!r}")
        return CheckResult(f"load balancing {policy}", ok, seen, expected,
                           f"DestinationRule trafficPolicy.loadBalancer.simple: {policy}")

    @staticmethod
    @_check
    def denied(mesh: Mesh, expected_body: str, n: int = 3, headers: Mapping[str, str] | None = None,
               code: int | None = None) -> CheckResult:
        """Every request is refused with exactly ``expected_body`` (and ``code`` when given)."""
        result = mesh.load(n=n, headers=headers, flags=False)
        seen = Counter(f"{r['code']} {r['body']!r}" for r in result.records)
        ok = all(r["code"] != 200 and r["body"].strip() == expected_body.strip()
                 and (code is None or r["code"] == code) for r in result.records)
        return CheckResult("refused", ok, "; ".join(f"{v}× {k}" for k, v in seen.items()),
                           f"{code or 'an error'} {expected_body!r}",
                           "the innermost sidecar that refuses answers 403 'RBAC: access denied'; callers wrap it")

    @staticmethod
    @_check
    def mtls(mesh: Mesh, expected: str = "mutual_tls", n: int = 20) -> CheckResult:
        """The servers' proxies report ``connection_security_policy == expected`` for every request."""
        rows = [r for r in _dest_rows(mesh, mesh.load(n=n, flags=False))
                if r.get("namespace", "tutorial") == "tutorial"]
        policies = dict(Counter(str(r.get("connection_security_policy")) for r in rows))
        ok = bool(rows) and set(policies) == {expected}
        return CheckResult(f"connections are {expected}", ok, f"server-side reports {policies}",
                           f"every report {expected!r}",
                           "PeerAuthentication mode (STRICT or PERMISSIVE) and auto mTLS decide it")

    @staticmethod
    @_check
    def rate_limited(mesh: Mesh, allowed: int, n: int | None = None) -> CheckResult:
        """Of ``n`` quick requests exactly ``allowed`` pass; the rest are refused with 429."""
        total = n if n is not None else 2 * allowed
        result = mesh.load(n=total, flags=True)
        passed = sum(1 for r in result.records if r["code"] == 200)
        # a refusal is Envoy's RL flag or its body passed up the chain; never a bare "429", which a
        # successful reply's per-pod counter can contain (recommendation v1 from '…': 4291)
        limited = sum(1 for r in result.records
                      if r["code"] != 200 and (r.get("flags") == "RL" or "local_rate_limited" in r["body"]))
        ok = passed == allowed and limited == total - allowed
        return CheckResult("rate limit", ok, f"{passed} passed, {limited} refused with 429 of {total}",
                           f"{allowed} passed, {total - allowed} refused",
                           "the token bucket holds max_tokens and refills tokens_per_fill every fill_interval"
                           + _first_error(result.records))

    @staticmethod
    @_check
    def config_pushed(mesh: Mesh, before: Mapping[str, int]) -> CheckResult:
        """Every sidecar's config version moved past ``before`` (name → version) and is in sync."""
        pods = [p for p in mesh.pods() if p.sidecar and p.name in before]
        moved = [p.name for p in pods if p.config_version > before[p.name] and p.synced]
        seen = ", ".join(f"{p.name.split('-')[0]} v{before[p.name]}→v{p.config_version}" for p in pods)
        return CheckResult("config pushed to every proxy", bool(pods) and len(moved) == len(pods), seen,
                           "every proxy on a newer version, SYNCED", "apply a resource, then look again")

    @staticmethod
    @_check
    def metrics(mesh: Mesh, metric: str = "istio_requests_total",
                reporters: Sequence[str] = ("destination", "source")) -> CheckResult:
        """The proxies expose ``metric`` as each of ``reporters`` (source and destination; a waypoint
        reports ``waypoint``)."""
        mesh.load(n=10, flags=False)
        lines = [x for x in mesh.metrics().splitlines() if x.startswith(metric + "{")]
        want = sorted(reporters)
        found = sorted({r for r in want for x in lines if f'reporter="{r}"' in x})
        return CheckResult(f"metric {metric}", found == want,
                           f"{len(lines)} series, reporters {found}", f"series from reporters {want}",
                           "send some traffic first; each request is counted by the caller's and the server's proxy"
                           " (in ambient, by the waypoint)")

    @staticmethod
    @_check
    def trace(mesh: Mesh, services: Sequence[str] = (GATEWAY, "customer", "preference", "recommendation"),
              ) -> CheckResult:
        """One request yields one trace whose spans cover every service on its path."""
        mesh.curl()
        best: set[str] = set()
        deadline = time.monotonic() + 5.0
        while best != set(services) and time.monotonic() < deadline:
            time.sleep(0.25)  # spans travel with the proxies' records, shipped every 0.2 s
            for tr in mesh.traces(service="customer", limit=5).get("data", []):
                names = {str(p.get("serviceName", "")) for p in tr.get("processes", {}).values()}
                covered = {s for s in services if any(n == s or n.startswith(s + ".") for n in names)}
                best = max(best, covered, key=len)
        return CheckResult("trace of the whole chain", best == set(services),
                           f"services in the best trace {sorted(best)}", f"{list(services)}",
                           "apps must forward the B3/W3C headers so spans join one trace")

    @staticmethod
    @_check
    def graph(mesh: Mesh, path: Sequence[str] = ("customer", "preference", "recommendation"),
              window_s: float = 60.0) -> CheckResult:
        """The service graph has an edge from each app of ``path`` to the next one's service."""
        g = mesh.graph(window_s)
        nodes = {n["data"]["id"]: n["data"] for n in g["elements"]["nodes"]}
        pairs = {(nodes[e["data"]["source"]].get("app"), nodes[e["data"]["target"]].get("app"))
                 for e in g["elements"]["edges"]}
        wanted = list(itertools.pairwise(path))
        missing = [f"{a}→{b}" for a, b in wanted if (a, b) not in pairs]
        return CheckResult("service graph", not missing, f"{len(pairs)} edges; missing {missing or 'none'}",
                           " → ".join(path), "send traffic in the last minute; the graph is built from it")

    @staticmethod
    @_check
    def explained(mesh: Mesh, contains: str, seconds: float = 60.0) -> CheckResult:
        """``mesh.explain()`` names the cause: one of its lines contains ``contains``."""
        since, deadline = time.time() - seconds, time.monotonic() + 5.0
        while True:  # the proxies ship their records every 0.2 s: give the latest ones time to land
            lines = mesh.explain(limit=20, since=since)
            hit = next((x for x in lines if contains in x), None)
            if hit is not None or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        return CheckResult("failure explained", hit is not None, hit or f"{len(lines)} lines, none matching",
                           f"a line with {contains!r}", "generate failing traffic first")


    # the data plane, as istioctl shows it ---------------------------------------------------------
    @staticmethod
    @_check
    def listeners(mesh: Mesh, pod: str) -> CheckResult:
        """The sidecar has Istio's capture listeners: 15001 (outbound) and 15006 (inbound)."""
        rows = _rows(mesh.proxy_config(pod, "listeners"))
        ports = sorted({r["PORT"] for r in rows}, key=int)
        ok = {"15001", "15006"} <= set(ports) and any(r["DESTINATION"] == "Cluster: inbound|8080||" for r in rows)
        return CheckResult("sidecar listeners", ok, f"ports {', '.join(ports)}",
                           "15001 (virtualOutbound), 15006 (virtualInbound → inbound|8080||), the service port",
                           "is the pod's sidecar running? (meshkit status)")

    @staticmethod
    @_check
    def weighted_route(mesh: Mesh, pod: str, weights: Mapping[str, int], host: str = "recommendation") -> CheckResult:
        """The proxy's route to ``host`` splits over the subsets' clusters with these weights."""
        import json

        configs = json.loads(mesh.proxy_config_text(pod, "routes", "json"))
        fqdn = f"{host}.tutorial.svc.cluster.local"
        found: dict[str, int] = {}
        for rc in configs:
            for vh in rc.get("virtualHosts") or []:
                if vh.get("name", "").startswith(fqdn + ":"):
                    route = (vh.get("routes") or [{}])[-1].get("route") or {}
                    for c in (route.get("weightedClusters") or {}).get("clusters") or []:
                        found[c["name"].split("|")[2]] = int(c["weight"])
                    if route.get("cluster"):
                        found[route["cluster"].split("|")[2] or "-"] = 100
        return CheckResult("weighted clusters in the proxy", found == dict(weights), str(found), str(dict(weights)),
                           "apply the DestinationRule with the subsets and the VirtualService with the weights")

    @staticmethod
    @_check
    def ejected_endpoint(mesh: Mesh, pod: str, cluster: str) -> CheckResult:
        """``proxy-config endpoints`` shows one host of ``cluster`` as ``HEALTHY  FAILED`` (ejected)."""
        rows = _rows(mesh.proxy_config(pod, "endpoints", cluster=cluster))
        failed = [r["ENDPOINT"] for r in rows if r["OUTLIER CHECK"] == "FAILED"]
        seen = ", ".join(f"{r['ENDPOINT']} {r['STATUS']} {r['OUTLIER CHECK']}" for r in rows) or "no endpoints"
        return CheckResult("ejected endpoint", len(failed) >= 1 and len(failed) < len(rows), seen,
                           "one endpoint HEALTHY FAILED (outlier check), the others OK",
                           "send traffic so the misbehaving pod fails, with outlierDetection applied")

    @staticmethod
    @_check
    def overflow_counted(mesh: Mesh, pod: str, before: int, result: LoadResult,
                         fqdn: str = "recommendation") -> CheckResult:
        """The client proxy's ``upstream_rq_pending_overflow`` (summed over ``fqdn``'s clusters) grew
        from ``before`` by the number of 503 UO in ``result``."""
        if any("flags" not in r for r in result.records):
            mesh.attach_flags(result.records)
        uo = sum(1 for r in result.records if r.get("flags") == "UO")
        grown = overflows(mesh, pod, fqdn) - before
        return CheckResult("overflow counted by the client proxy", uo > 0 and grown == uo,
                           f"upstream_rq_pending_overflow +{grown}, {uo} requests answered 503 UO",
                           "the counter grows by exactly the number of 503 UO", "run the load with the limits applied")

    @staticmethod
    @_check
    def workload_identity(mesh: Mesh, pod: str) -> CheckResult:
        """The proxy holds an active, valid certificate whose SPIFFE ID names its service account."""
        rows = _rows(mesh.proxy_config(pod, "secret"))
        chain = next((r for r in rows if r["RESOURCE NAME"] == "default"), {})
        sa = next((p.service_account for p in mesh.pods() if p.name == pod), "")
        want = f"spiffe://cluster.local/ns/tutorial/sa/{sa}"
        ok = chain.get("VALID CERT") == "true" and chain.get("SPIFFE ID") == want
        return CheckResult("workload identity", ok, f"{chain.get('SPIFFE ID', 'no certificate')}, valid "
                           f"{chain.get('VALID CERT', '-')}, serial {chain.get('SERIAL NUMBER', '-')}", want,
                           "the sidecar gets its certificate from istiod at start; is the pod ready?")

    # ambient (lab 06) ------------------------------------------------------------------------------
    @staticmethod
    @_check
    def dataplane(mesh: Mesh, mode: str, same_pids: Mapping[str, int] | None = None,
                  apps: Sequence[str] = ("customer", "preference", "recommendation")) -> CheckResult:
        """Every pod of ``apps`` runs in data plane ``mode`` (``sidecar``, ``ambient``, ``none``); with
        ``same_pids`` (pod → pid from before) those pods are still there, in the same process."""
        pods = [p for p in mesh.pods() if p.app in apps]
        modes = dict(Counter(str(p.extra.get("dataplane", "sidecar" if p.sidecar else "none")) for p in pods))
        ok = bool(pods) and set(modes) == {mode}
        seen = f"data planes {modes}"
        if same_pids is not None:
            now = {p.name: int(p.extra.get("pid") or 0) for p in mesh.pods()}
            moved = [name for name, pid in same_pids.items() if now.get(name) != pid]
            ok = ok and not moved
            seen += f"; {len(same_pids) - len(moved)} of {len(same_pids)} pods in the same process"
        return CheckResult(f"data plane {mode}", ok, seen, f"every pod of {', '.join(apps)} {mode}"
                           + (", none restarted" if same_pids is not None else ""),
                           "a pod with a sidecar never enrolls; label the namespace istio.io/dataplane-mode=ambient "
                           "and restart the deployments without injection")

    @staticmethod
    @_check
    def connection_reset(mesh: Mesh, pod: str, url: str, log: str = "connection closed due to policy rejection",
                         ) -> CheckResult:
        """A call from ``pod`` to ``url`` gets no HTTP status, only a reset (curl's exit 56), and the
        node's ztunnel logs ``log`` for it."""
        code, body = mesh.exec(pod, url)
        app_log = getattr(mesh.backend, "app_log", None)
        zt = next((p.name for p in mesh.pods() if p.app == "ztunnel"), None)
        line = None
        deadline = time.monotonic() + 5.0
        while callable(app_log) and zt is not None:  # written when the connection closes
            line = next((x for x in reversed(str(app_log(zt)).splitlines()) if log in x), None)
            if line is not None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        reset = code == 0 and "(56)" in body
        ok = reset and (line is not None or not callable(app_log))
        why = line[line.find('error="'):] if line and 'error="' in line else (line or "no such line")[-160:]
        seen = f"{code} {body.strip()[:90]!r}; ztunnel: {why}"
        return CheckResult("connection reset by ztunnel", ok, seen,
                           f"curl: (56) Recv failure: Connection reset by peer, and a ztunnel line with {log!r}",
                           "an L4 AuthorizationPolicy (principals, namespaces, ports) on the destination decides")

    @staticmethod
    @_check
    def ztunnel_identity(mesh: Mesh, source: str, destination: str) -> CheckResult:
        """The destination's ztunnel counts connections from app ``source`` to app ``destination`` as
        ``mutual_tls``, with both SPIFFE identities (taken from the peers' certificates) as labels."""
        import re

        accounts = {p.app: p.service_account or p.app for p in mesh.pods()}
        want = {f"spiffe://cluster.local/ns/tutorial/sa/{accounts.get(a, a)}" for a in (source, destination)}
        mesh.curl()
        lines = [x for x in mesh.metrics().splitlines() if x.startswith("istio_tcp_connections_opened_total{")
                 and 'reporter="destination"' in x and f'source_canonical_service="{source}"' in x
                 and f'destination_canonical_service="{destination}"' in x]
        line = lines[-1] if lines else ""
        ids = set(re.findall(r'(?:source|destination)_principal="([^"]+)"', line))
        policy = re.search(r'connection_security_policy="([^"]+)"', line)
        seen = (f"{source}→{destination}: {policy.group(1) if policy else 'no connection counted'}, "
                f"identities {sorted(ids) or 'none'}")
        return CheckResult("identity from the certificate", bool(policy) and policy.group(1) == "mutual_tls"  # type: ignore[union-attr]
                           and ids == want, seen, f"mutual_tls, {sorted(want)}",
                           "both pods must be enrolled (istio.io/dataplane-mode=ambient) for HBONE mTLS")

    @staticmethod
    @_check
    def http_denied(mesh: Mesh, pod: str, url: str, code: int = 403, body: str = "RBAC: access denied") -> CheckResult:
        """A call from ``pod`` to ``url`` gets an HTTP answer ``code`` with ``body``: a proxy that reads
        HTTP (a waypoint, a sidecar) refused it, where ztunnel could only reset the connection."""
        got, text = mesh.exec(pod, url)
        ok = got == code and text.strip() == body
        return CheckResult("refused at L7", ok, f"{got} {text.strip()[:120]!r}", f"{code} {body!r}",
                           "bind the Service to a waypoint (istio.io/use-waypoint) and attach the policy to it "
                           "with targetRefs")

    @staticmethod
    @_check
    def policy_status(mesh: Mesh, name: str, type_: str, reason: str, message: str = "") -> CheckResult:
        """AuthorizationPolicy ``name`` carries the condition istiod writes: ``type_`` with ``reason``
        (and ``message`` in its text)."""
        found = [r for r in mesh.get("AuthorizationPolicy") if r["metadata"]["name"] == name]
        conds = [c for r in found for c in (r.get("status") or {}).get("conditions") or []]
        hit = next((c for c in conds if c.get("type") == type_ and c.get("reason") == reason
                    and message in str(c.get("message", ""))), None)
        seen = "; ".join(f"{c.get('type')} {c.get('status')} {c.get('reason')}: {c.get('message')}" for c in conds)
        return CheckResult(f"status of {name}", hit is not None, seen or "no condition",
                           f"{type_} {reason}" + (f" saying {message!r}" if message else ""),
                           "ambient's istiod writes ZtunnelAccepted (selector policies) or WaypointAccepted "
                           "(targetRefs); meshkit get authorizationpolicy NAME -o yaml shows it")


def _rows(table: Any) -> list[dict[str, Any]]:
    return list(table.to_dict("records")) if hasattr(table, "to_dict") else list(table)


def cluster_stats(mesh: Mesh, pod: str, cluster: str) -> dict[str, int]:
    """One cluster's Envoy stats as ``curl localhost:15000/stats`` prints them, by stat name.

    Example::

        stats = cluster_stats(mesh, pod, "outbound|8080||recommendation.tutorial.svc.cluster.local")
        stats["upstream_rq_pending_overflow"]
    """
    prefix = f"cluster.{cluster};."
    out = {}
    for line in mesh.envoy_admin(pod, "/stats").splitlines():
        if line.startswith(prefix):
            name, _, value = line[len(prefix):].partition(": ")
            out[name] = int(value)
    return out



def overflows(mesh: Mesh, pod: str, fqdn: str = "recommendation") -> int:
    """``upstream_rq_pending_overflow`` of the pod's proxy, summed over the clusters of ``fqdn``."""
    total = 0
    for line in mesh.envoy_admin(pod, "/stats").splitlines():
        name, _, value = line.partition(": ")
        if name.endswith(";.upstream_rq_pending_overflow") and f"|{fqdn}." in name:
            total += int(value)
    return total


check = Checks()
