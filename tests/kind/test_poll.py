"""poll_until on an injected clock: retries with "not yet, retrying", then success or a located timeout."""

from __future__ import annotations

import pytest

from meshkit.backends.kind.poll import PollTimeout, poll_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_retries_until_the_check_passes() -> None:
    clock, seen = FakeClock(), iter([(False, "v1 v1 v1"), (False, "v1 v2 v1"), (True, "v2 v2 v2")])
    messages: list[str] = []
    result = poll_until(lambda: next(seen), 30, 2, messages.append, clock=clock, sleep=clock.sleep)
    assert result == "v2 v2 v2"
    assert messages == ["not yet, retrying: v1 v1 v1", "not yet, retrying: v1 v2 v1"]
    assert clock.slept == [2, 2]


def test_timeout_names_what_was_awaited_and_the_last_observation() -> None:
    clock = FakeClock()
    with pytest.raises(PollTimeout) as err:
        poll_until(
            lambda: (False, f"HTTP 503 at t={clock.now:.0f}"),
            5,
            2,
            None,
            what="the gateway to answer",
            hint="check the pods",
            clock=clock,
            sleep=clock.sleep,
        )
    assert str(err.value) == (
        "timed out after 5s waiting for the gateway to answer; last seen: HTTP 503 at t=105. check the pods"
    )
    assert clock.slept == [2, 2, 1]  # the last sleep is cut to the deadline
