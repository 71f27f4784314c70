"""Counters and histograms in the Prometheus text format (0.0.4), small enough for every proxy.

A proxy counts each request in a handful of series and renders them when scraped. This module does
only that: no locks (a proxy's requests all run on its one event loop thread), a histogram
observation is one bisection, and the text is what ``prometheus_client.generate_latest`` writes for
the same data (label names sorted, Go's float formatting, no ``_created`` samples, as Envoy has none),
without loading that library, its HTTP server and e-mail parser into every proxy.

Example::

    requests = Family("istio_requests_total", "Requests handled by this proxy.", "counter", ("response_code",))
    requests.labels("200").inc()
    text = exposition([requests, *process_families("istio_agent")])
"""

from __future__ import annotations

import math
import os
import resource
from bisect import bisect_left
from collections.abc import Iterable, Sequence

INF = math.inf


def go_float(value: float) -> str:
    """A sample value or bucket bound as Prometheus' Go code prints it (``1.8e+06``, ``+Inf``, ``0.5``)."""
    d = float(value)
    if d == INF:
        return "+Inf"
    if d == -INF:
        return "-Inf"
    if d != d:
        return "NaN"
    text = repr(d)
    dot = text.find(".")
    if d > 0 and dot > 6:  # Go switches to an exponent sooner than Python's repr
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(pairs))


class CounterChild:
    """One counter series."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        self.value += amount


class HistogramChild:
    """One histogram series: a count per bucket (not cumulative until rendered) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1  # the first bucket whose bound >= amount
        self.sum += amount


class Family:
    """A metric family: a name, its help and type, label names, and a series per label values.

    ``kind`` is ``counter``, ``histogram`` or ``gauge``; a counter's name carries its ``_total``.
    A family without label names has its one series from the start (rendered even at zero).
    """

    def __init__(self, name: str, documentation: str, kind: str, labelnames: Sequence[str] = (),
                 buckets: Sequence[float] = ()) -> None:
        if kind not in ("counter", "histogram", "gauge"):
            raise ValueError(f"unsupported metric type {kind!r}")
        self.name, self.documentation, self.kind = name, documentation, kind
        self.labelnames = tuple(labelnames)
        bounds = tuple(float(b) for b in buckets)
        self.bounds = bounds if not bounds or bounds[-1] == INF else (*bounds, INF)
        self._le = tuple(go_float(b) for b in self.bounds)
        self.children: dict[tuple[str, ...], CounterChild | HistogramChild] = {}
        self._rendered: dict[tuple[str, ...], tuple[str, str]] = {}
        if not self.labelnames:
            self.labels()

    def labels(self, *values: str) -> CounterChild | HistogramChild:
        """The series of these label values (created on first use)."""
        child = self.children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name}: expected {len(self.labelnames)} label values, got {len(values)}")
            values = tuple(str(v) for v in values)
            child = HistogramChild(self.bounds) if self.kind == "histogram" else CounterChild()
            self.children[values] = child
        return child

    def counter(self, *values: str) -> CounterChild:
        """The series of these label values in a counter or gauge family."""
        child = self.labels(*values)
        if not isinstance(child, CounterChild):
            raise TypeError(f"{self.name} is a {self.kind}")
        return child

    def histogram(self, *values: str) -> HistogramChild:
        """The series of these label values in a histogram family."""
        child = self.labels(*values)
        if not isinstance(child, HistogramChild):
            raise TypeError(f"{self.name} is a {self.kind}")
        return child

    def inc(self, amount: float = 1.0) -> None:
        """Increment the series of a family without labels."""
        child = self.children[()]
        assert isinstance(child, CounterChild)
        child.inc(amount)

    def set(self, value: float) -> None:
        """Set the series of a gauge without labels."""
        child = self.children[()]
        assert isinstance(child, CounterChild)
        child.value = float(value)

    def header(self) -> str:
        doc = self.documentation.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {self.name} {doc}\n# TYPE {self.name} {self.kind}\n"

    def samples(self) -> Iterable[str]:
        """The sample lines of every series, in the order the series were created."""
        for values, child in self.children.items():
            if isinstance(child, CounterChild):
                labels = _labels(zip(self.labelnames, values, strict=True))
                yield f"{self.name}{{{labels}}} {go_float(child.value)}\n" if labels else \
                    f"{self.name} {go_float(child.value)}\n"
                continue
            before, after = self._rendered.get(values) or self._render(values)
            total = 0
            for le, count in zip(self._le, child.counts, strict=True):
                total += count
                yield f'{self.name}_bucket{{{before}le="{le}"{after}}} {go_float(total)}\n'
            labels = _labels(zip(self.labelnames, values, strict=True))
            braces = f"{{{labels}}}" if labels else ""
            yield f"{self.name}_count{braces} {go_float(total)}\n"
            yield f"{self.name}_sum{braces} {go_float(child.sum)}\n"

    def _render(self, values: tuple[str, ...]) -> tuple[str, str]:
        # label names are sorted in the text, so ``le`` falls among them: the parts before and after it
        pairs = sorted(zip(self.labelnames, values, strict=True))
        before = "".join(f'{k}="{_escape(v)}",' for k, v in pairs if k < "le")
        after = "".join(f',{k}="{_escape(v)}"' for k, v in pairs if k > "le")
        self._rendered[values] = (before, after)
        return before, after


def exposition(families: Iterable[Family]) -> bytes:
    """The text exposition of ``families`` in order (``text/plain; version=0.0.4``). Families of one
    name (one metric under two label sets) are rendered as one: the first one's HELP and TYPE, then
    the series of each."""
    by_name: dict[str, list[Family]] = {}
    for family in families:
        by_name.setdefault(family.name, []).append(family)
    out: list[str] = []
    for same in by_name.values():
        out.append(same[0].header())
        for family in same:
            out.extend(family.samples())
    return "".join(out).encode()


_PAGE = resource.getpagesize()
_TICKS = os.sysconf("SC_CLK_TCK")


def _boot_time() -> float:
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def process_families(prefix: str) -> list[Family]:
    """This process's memory, start time, CPU and file descriptors, read now from ``/proc/self``,
    as the standard ``process_*`` metrics (``{prefix}_process_resident_memory_bytes`` ...)."""
    p = f"{prefix}_process_" if prefix else "process_"
    out: list[Family] = []
    btime = _boot_time()
    if not btime:
        return out

    def gauge(name: str, doc: str, value: float, kind: str = "gauge") -> Family:
        family = Family(p + name, doc, kind)
        family.set(value)
        return family

    try:
        with open("/proc/self/stat", "rb") as f:
            parts = f.read().split(b")")[-1].split()
        out += [
            gauge("virtual_memory_bytes", "Virtual memory size in bytes.", float(parts[20])),
            gauge("resident_memory_bytes", "Resident memory size in bytes.", float(parts[21]) * _PAGE),
            gauge("start_time_seconds", "Start time of the process since unix epoch in seconds.",
                  float(parts[19]) / _TICKS + btime),
            gauge("cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                  (float(parts[11]) + float(parts[12])) / _TICKS, "counter"),
        ]
    except OSError:
        pass
    try:
        max_fds = None
        with open("/proc/self/limits", "rb") as f:
            for line in f:
                if line.startswith(b"Max open file"):
                    max_fds = float(line.split()[3])
                    break
        out.append(gauge("open_fds", "Number of open file descriptors.", float(len(os.listdir("/proc/self/fd")))))
        if max_fds is not None:
            out.append(gauge("max_fds", "Maximum number of open file descriptors.", max_fds))
    except OSError:
        pass
    return out
