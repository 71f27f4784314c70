"""Why the proxies match with RE2: ``python -m benchmarks.regex_match``.

The header match ``regex: '(a+)+$'`` against ``"a" * n + "!"``: a backtracking engine (Python's
``re``, what the local mesh used before) doubles its time with every extra character, so a
40-character User-Agent would hold a proxy for days; RE2 (Envoy's engine, and now the local
mesh's) stays at microseconds, linear in the value's length.
"""

from __future__ import annotations

import re
import time

from meshkit.backends.local.proxy.matching import string_matcher

PATTERN = "(a+)+$"


def _time(match: object, value: str, budget: float = 0.2) -> float:
    """Seconds per call (repeated until ``budget`` seconds have passed, at least once)."""
    calls, started = 0, time.perf_counter()
    while True:
        match(value)  # type: ignore[operator]
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= budget:
            return elapsed / calls


def main(argv: list[str] | None = None) -> None:
    backtracking = re.compile(PATTERN).fullmatch
    re2 = string_matcher({"regex": PATTERN})
    print(f"header regex {PATTERN!r} against 'a' * n + '!'          re (backtracking)      RE2 (proxies)")
    for n in (12, 16, 18, 20, 22):
        value = "a" * n + "!"
        print(f"  n = {n:5d}  {_time(backtracking, value) * 1e3:31.3f} ms  {_time(re2, value) * 1e6:14.2f} µs")
    for n in (40, 4000, 60 * 1024):
        value = "a" * n + "!"
        doubling = f"~{2 ** (n - 22) * _time(backtracking, 'a' * 22 + '!'):.3g} s (extrapolated)" if n == 40 else "-"
        print(f"  n = {n:5d}  {doubling:>34s}  {_time(re2, value) * 1e6:14.2f} µs")


if __name__ == "__main__":
    main()
