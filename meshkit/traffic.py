"""The load generator (fortio/siege-like) and its results, against the ingress gateway only.

Every request gets its own ``x-request-id`` so the result can be joined with what the proxies
recorded (the response flag of each request). Loads are bounded in count or time and stop by
themselves; the background runner stops after ``max_seconds`` at the latest.

Example::

    result = run_load("http://127.0.0.1:31380", n=100, concurrency=4)
    print(result.summary()["versions"])    # {'v1': 51, 'v2': 49}
"""

from __future__ import annotations

import asyncio
import re
import ssl
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from meshkit.http1 import Connection, Request, connect

REPLY = re.compile(r"recommendation (v\d+)(?: \S+)? from '([^']+)': (\d+)")


def parse_reply(body: str) -> tuple[str, str]:
    """(version, pod) of the recommendation that answered, or ("", "")."""
    m = REPLY.search(body)
    return (m.group(1), m.group(2)) if m else ("", "")


def reply_chain(body: str) -> str:
    """``customer => PREFERENCE => recommendation v2`` of a successful reply (pod and counter dropped)."""
    return body.split(" from '", 1)[0].strip()


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(pct / 100.0 * (len(ordered) - 1))))
    return ordered[k]


@dataclass
class LoadResult:
    """Per-request records and the summary ``meshkit load --json`` prints."""

    records: list[dict[str, Any]]
    duration_s: float

    def summary(self) -> dict[str, Any]:
        lat = [r["latency_ms"] for r in self.records]
        n = len(self.records)
        return {
            "requests": n,
            "duration_s": round(self.duration_s, 3),
            "rps": round(n / self.duration_s, 1) if self.duration_s else 0.0,
            "codes": dict(Counter(str(r["code"]) for r in self.records)),
            "versions": dict(Counter(r["version"] for r in self.records if r["version"])),
            "pods": dict(Counter(r["pod"] for r in self.records if r["pod"])),
            # the chain that answered, without pod and counter: the advanced chapters' "PREFERENCE =>"
            "replies": dict(Counter(reply_chain(r["body"]) for r in self.records if r["version"])),
            "flags": dict(Counter(r.get("flags", "-") for r in self.records)),
            "latency_ms": {
                "p50": round(percentile(lat, 50), 3),
                "p90": round(percentile(lat, 90), 3),
                "p99": round(percentile(lat, 99), 3),
                "max": round(max(lat), 3) if lat else 0.0,
            },
        }

    def share(self, version: str) -> float:
        """Fraction of successful replies that came from ``version``."""
        ok = [r for r in self.records if r["version"]]
        return sum(r["version"] == version for r in ok) / len(ok) if ok else 0.0


@dataclass
class _Plan:
    base: str
    path: str
    headers: Mapping[str, str]
    n: int | None
    duration: float | None
    concurrency: int
    qps: float | None
    timeout: float = 30.0
    sink: Callable[[dict[str, Any]], None] | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    ssl_context: ssl.SSLContext | None = None  # for an https:// base URL


async def _worker(plan: _Plan, counter: list[int], out: list[dict[str, Any]], t0: float, interval: float) -> None:
    url = urlsplit(plan.base)
    host, port = url.hostname or "127.0.0.1", url.port or (443 if url.scheme == "https" else 80)
    sni = plan.headers.get("host", host).split(":")[0]
    tls = plan.ssl_context if url.scheme == "https" else None
    if url.scheme == "https" and tls is None:
        tls = ssl.create_default_context()
    conn: Connection | None = None
    while not plan.stop.is_set():
        i = counter[0]
        if plan.n is not None and i >= plan.n:
            return
        if plan.duration is not None and time.monotonic() - t0 >= plan.duration:
            return
        counter[0] += 1
        if interval:
            due = t0 + i * interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        headers = {"host": f"{host}:{port}", "user-agent": "meshkit-load", **plan.headers}
        if plan.n != 1 or "x-request-id" not in plan.headers:
            headers["x-request-id"] = str(uuid.uuid4())  # each request of a load is its own
        started_wall, started = time.time(), time.perf_counter()
        code, body = 0, ""
        try:
            if conn is None or not conn.usable:
                conn = await connect(host, port, tls, server_hostname=sni)
            resp = await asyncio.wait_for(conn.roundtrip(Request("GET", plan.path, headers)), plan.timeout)
            code, body = resp.status, resp.body.decode("utf-8", "replace")
            if not resp.keep_alive:
                conn.close()
                conn = None
        except Exception as exc:
            body = f"{type(exc).__name__}: {exc}"
            if conn is not None:
                conn.close()
            conn = None
        version, pod = parse_reply(body)
        rec = {
            "t": started_wall,
            "latency_ms": (time.perf_counter() - started) * 1000.0,
            "code": code,
            "version": version,
            "pod": pod,
            "flags": "-",
            "body": body.strip(),
            "request_id": headers["x-request-id"],
        }
        out.append(rec)
        if plan.sink is not None:
            plan.sink(rec)
    if conn is not None:
        conn.close()


async def _run(plan: _Plan) -> LoadResult:
    out: list[dict[str, Any]] = []
    counter = [0]
    t0 = time.monotonic()
    interval = 1.0 / plan.qps if plan.qps else 0.0
    await asyncio.gather(*(_worker(plan, counter, out, t0, interval) for _ in range(max(1, plan.concurrency))))
    return LoadResult(sorted(out, key=lambda r: r["t"]), time.monotonic() - t0)


def run_load(
    base_url: str,
    n: int | None = None,
    duration: float | None = None,
    concurrency: int = 1,
    qps: float | None = None,
    headers: Mapping[str, str] | None = None,
    path: str = "/customer",
    ssl_context: ssl.SSLContext | None = None,
) -> LoadResult:
    """Send a bounded load through the gateway and wait for it (safe inside a notebook)."""
    if n is None and duration is None:
        n = 100
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}
    plan = _Plan(base_url, path, hdrs, n, duration, concurrency, qps, ssl_context=ssl_context)
    result: list[LoadResult] = []

    def target() -> None:
        result.append(asyncio.run(_run(plan)))

    # a thread of its own: never blocks (or deadlocks with) a caller's running event loop
    thread = threading.Thread(target=target, name="meshkit-load", daemon=True)
    thread.start()
    thread.join()
    return result[0]


class TrafficRunner:
    """Background traffic for live plots: start/stop, adjustable rate; stops by itself.

    Example::

        runner = TrafficRunner("http://127.0.0.1:31380", rate=10).start()
        ...
        runner.stop(); print(len(runner.records()))
    """

    def __init__(
        self,
        base_url: str,
        rate: float = 10.0,
        concurrency: int = 2,
        headers: Mapping[str, str] | None = None,
        path: str = "/customer",
        max_seconds: float = 600.0,
        capacity: int = 20_000,
    ) -> None:
        self.base_url = base_url
        self.rate = rate
        self.concurrency = concurrency
        self.headers = dict(headers or {})
        self.path = path
        self.max_seconds = max_seconds
        self._records: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._plan: _Plan | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> TrafficRunner:
        if self.running:
            return self
        plan = _Plan(self.base_url, self.path, self.headers, None, self.max_seconds, self.concurrency,
                     self.rate, sink=self._records.append)
        self._plan = plan
        self._thread = threading.Thread(target=lambda: asyncio.run(_run(plan)), name="meshkit-traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._plan is not None:
            self._plan.stop.set()
        if self._thread is not None:
            self._thread.join(timeout=35)
        self._thread = None

    def set_rate(self, rps: float) -> None:
        self.rate = rps
        if self.running:
            self.stop()
            self.start()

    def set_concurrency(self, n: int) -> None:
        self.concurrency = n
        if self.running:
            self.stop()
            self.start()

    def records(self, since: float = 0.0) -> list[dict[str, Any]]:
        return [r for r in list(self._records) if r["t"] >= since]
