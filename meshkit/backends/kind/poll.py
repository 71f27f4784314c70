"""Wait for a real cluster to show a behaviour: poll with a deadline and say what was seen.

Config reaches Envoy "eventually" and Istio has no propagation oracle any more (``istioctl x wait``
was removed in 1.23), so every check that follows a change polls the data plane, reporting
"not yet, retrying: <what was seen>" instead of failing on the first look.

Example::

    def gateway_answers() -> tuple[bool, str]:
        status = probe()
        return status == 200, f"HTTP {status}"

    poll_until(gateway_answers, deadline_s=60, interval_s=1, what="the ingress gateway to answer")
"""

from __future__ import annotations

import time
from collections.abc import Callable

from meshkit.errors import MeshkitError


class PollTimeout(MeshkitError):
    """The deadline passed before the check succeeded; the message says what was awaited and seen."""

    def __init__(self, what: str, waited_s: float, last_seen: str, hint: str = "") -> None:
        self.what, self.last_seen = what, last_seen
        message = f"timed out after {waited_s:.0f}s waiting for {what}; last seen: {last_seen}"
        super().__init__(f"{message}. {hint}" if hint else message)


def poll_until(
    check: Callable[[], tuple[bool, str]],
    deadline_s: float,
    interval_s: float = 1.0,
    on_retry: Callable[[str], None] | None = None,
    *,
    what: str = "the condition",
    hint: str = "",
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Call ``check`` until it returns ``(True, seen)``; returns that last ``seen`` text.

    Between attempts ``on_retry`` receives ``"not yet, retrying: <seen>"``. When ``deadline_s``
    seconds have passed, raises :class:`PollTimeout` naming ``what`` and the last observation
    (plus ``hint``, the fix to suggest). ``clock``/``sleep`` are injectable for tests.
    """
    start = clock()
    while True:
        ok, seen = check()
        if ok:
            return seen
        elapsed = clock() - start
        if elapsed >= deadline_s:
            raise PollTimeout(what, elapsed, seen, hint)
        if on_retry is not None:
            on_retry(f"not yet, retrying: {seen}")
        sleep(min(interval_s, max(deadline_s - elapsed, 0.0)))
