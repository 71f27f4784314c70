"""Reading the shapes the figures consume: traffic records, buckets of time, percentiles.

Pure Python on purpose (no pandas, no numpy): a live figure rebuilds every second from a few
thousand records, which this does in a few milliseconds, and the module stays importable anywhere.

Example::

    recs = check_records([{"t": 1.2, "latency_ms": 8.0, "code": 200, "version": "v1",
                           "pod": "", "flags": "-", "body": ""}])
    percentile([1.0, 2.0, 3.0, 4.0], 50)   # 2.5
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from meshkit.errors import MeshkitError

#: the keys a traffic record must carry, with the types they must have
RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "t": (int, float),
    "latency_ms": (int, float),
    "code": (int,),
    "version": (str,),
}


class InvalidData(MeshkitError, ValueError):
    """A figure was given data of the wrong shape; the message says where (``record 3: ...``)."""


def check_records(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Return the records as a list after checking the fields the figures read.

    Raises :class:`InvalidData` listing every bad record (at most five, then a count).
    """
    out = list(records)
    problems: list[str] = []
    for i, rec in enumerate(out):
        if not isinstance(rec, Mapping):
            problems.append(f"record {i}: expected a dict, got {type(rec).__name__}")
            continue
        for key, types in RECORD_FIELDS.items():
            if key not in rec:
                problems.append(f"record {i}: missing {key!r}")
            elif isinstance(rec[key], bool) or not isinstance(rec[key], types):
                want = " or ".join(t.__name__ for t in types)
                problems.append(f"record {i}: {key!r} must be {want}, got {rec[key]!r}")
    if problems:
        more = f"\n... and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise InvalidData("\n".join(problems[:5]) + more)
    return out


def bucket_starts(
    times: Iterable[float], bucket_s: float, t_range: tuple[float, float] | None = None
) -> list[float]:
    """Every bucket start (a multiple of ``bucket_s``) from the first to the last time, gaps included.

    Buckets sit on an absolute grid, so a sliding window keeps its buckets stable between refreshes.
    """
    if bucket_s <= 0:
        raise InvalidData(f"bucket_s must be > 0, got {bucket_s}")
    ts = list(times)
    if t_range is not None:
        lo, hi = t_range
    elif ts:
        lo, hi = min(ts), max(ts)
    else:
        return []
    first = math.floor(lo / bucket_s)
    last = math.floor(hi / bucket_s)
    return [k * bucket_s for k in range(first, last + 1)]


def bucket_of(t: float, bucket_s: float) -> float:
    """The start of the bucket holding ``t``."""
    return math.floor(t / bucket_s) * bucket_s


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile with linear interpolation between closest ranks (numpy's default).

    >>> percentile([10.0, 20.0, 30.0, 40.0], 90)
    37.0
    """
    if not values:
        raise InvalidData("percentile of no values")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def code_label(code: int, flags: str | None) -> str:
    """The series a response belongs to: ``"200"``, ``"503 UO"``, ``"504 UT"``, ``"no response"``.

    The flag is part of the label because the same 503 means a circuit breaker (UO), an injected
    fault (FI) or the application itself (no flag), and the labs are about telling them apart.
    """
    flag = (flags or "-").strip()
    if code == 0:
        return "no response" if flag in ("-", "") else f"no response {flag}"
    return str(code) if flag in ("-", "") else f"{code} {flag}"


def version_key(version: str) -> tuple[int, str]:
    """Sort key putting v1 < v2 < v10 and the empty version (no reply) last."""
    if not version:
        return (1_000_000, "")
    digits = "".join(ch for ch in version if ch.isdigit())
    return (int(digits) if digits else 999_999, version)


def in_range(
    records: list[Mapping[str, Any]], t_range: tuple[float, float] | None
) -> list[Mapping[str, Any]]:
    """The records whose start time ``t`` lies in ``t_range`` (all of them when it is None)."""
    if t_range is None:
        return records
    lo, hi = t_range
    return [r for r in records if lo <= r["t"] <= hi]
