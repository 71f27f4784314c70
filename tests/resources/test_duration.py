"""Durations follow Go's syntax and the webhook's 1 ms rules."""

from __future__ import annotations

import pytest

from meshkit.resources.duration import duration_error, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1.000s", 1.0),
        ("500ms", 0.5),
        ("2s", 2.0),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("7.000s", 7.0),
        ("1ms", 0.001),
        ("2000us", 0.002),
    ],
)
def test_valid_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.5ms", "duration must be greater than 1ms"),
        ("0s", "duration must be greater than 1ms"),
        ("-1s", "duration must be greater than 1ms"),
        ("1.5ms", "only durations to ms precision are supported"),
        ("1001us", "only durations to ms precision are supported"),
        ("10", 'missing unit in duration "10" (e.g. "10s")'),
        ("1d", 'unknown unit "d" in duration "1d" (valid units: ns, us, ms, s, m, h)'),
        ("abc", 'invalid duration "abc": use a number and a unit (ms, s, m, h), e.g. "500ms", "1s", "3m"'),
        ("", 'invalid duration "": use a number and a unit (ms, s, m, h), e.g. "500ms", "1s", "3m"'),
    ],
)
def test_invalid_durations_have_the_webhook_message(text: str, message: str) -> None:
    assert duration_error(text) == message
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        parse_duration(text)
