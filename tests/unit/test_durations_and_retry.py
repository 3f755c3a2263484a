from __future__ import annotations

import pytest

from engine.durations import iso, parse_duration, parse_instant
from engine.errors import InvalidInput
from engine.retry import RetryPolicy


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (5, 5.0),
        (0.25, 0.25),
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("2h", 7200),
        ("1d", 86400),
        ("PT5M", 300),
        ("P1DT2H", 93600),
        ("pt1.5s", 1.5),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "5 parsecs", "P", "PT", -1, True, None, "1h30"])
def test_bad_durations_are_refused(bad: object) -> None:
    with pytest.raises(InvalidInput, match="duration"):
        parse_duration(bad)


def test_instants_round_trip_in_utc() -> None:
    assert parse_instant("2026-01-31T09:00:00Z") == parse_instant("2026-01-31T10:00:00+01:00")
    assert parse_instant("2026-01-31T09:00:00") == parse_instant("2026-01-31T09:00:00Z")
    assert iso(parse_instant("2026-01-31T09:00:00.250Z")) == "2026-01-31T09:00:00.250Z"
    with pytest.raises(InvalidInput):
        parse_instant("tomorrow")


def test_default_backoff_doubles_within_jitter_and_caps() -> None:
    policy = RetryPolicy.from_config({})
    assert policy.retries == 4
    for failures, base in [(1, 1.0), (2, 2.0), (3, 4.0), (20, 300.0)]:
        delays = [policy.delay(failures) for _ in range(200)]
        assert all(base * 0.8 <= d <= base * 1.2 for d in delays)
        assert max(delays) - min(delays) > 0  # jitter spreads them
    assert policy.attempts_left(4) and not policy.attempts_left(5)


def test_backoff_config_is_validated() -> None:
    custom = RetryPolicy.from_config(
        {"retries": 0, "retry_backoff": {"initial": "2s", "factor": 3, "jitter": 0}}
    )
    assert custom.delay(2) == 6.0 and not custom.attempts_left(1)
    for bad in (
        {"retries": 21},
        {"retries": "3"},
        {"retry_backoff": {"speed": 1}},
        {"retry_backoff": {"jitter": 2}},
    ):
        with pytest.raises(InvalidInput):
            RetryPolicy.from_config(bad)
