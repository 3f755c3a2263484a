"""Cron expressions: validation and fire times in a time zone, correct across DST changes.

Five fields (minute hour day month weekday) or six with seconds first. Times are walked in the
zone's local wall-clock time and then placed on the time line, so a daily 02:30 tick fires once
on both DST days: in the spring-forward gap it fires at the first instant after the gap (03:30
in New York), and in the repeated hour of the fall-back night only at its first occurrence.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.errors import InvalidInput

MAX_CRON_CHARS = 120
CATCH_UP_POLICIES = ("none", "latest", "all")
MAX_CATCH_UP_TICKS = 100  # `all` fires at most this many missed ticks, the latest ones
ON_TIME_SECONDS = 60.0  # a tick fired this late still counts as on time, not as missed
_MAX_CANDIDATES = 10_000  # wall-clock times tried for one fire time (a cron that never matches)


def check_cron(expr: object) -> str:
    if not isinstance(expr, str) or not expr.strip() or len(expr) > MAX_CRON_CHARS:
        raise InvalidInput(f"cron must be a non-empty string of at most {MAX_CRON_CHARS} characters")
    fields = expr.split()
    if len(fields) not in (5, 6):
        raise InvalidInput(
            f"cron {expr!r} has {len(fields)} fields; use 5 (minute hour day month weekday) "
            "or 6 (second first)"
        )
    try:
        from croniter import croniter  # on first use, like every costly import

        walker = croniter(expr, datetime(2026, 1, 1), second_at_beginning=len(fields) == 6)
    except (ValueError, KeyError) as exc:  # croniter's errors are ValueErrors
        raise InvalidInput(f"invalid cron {expr!r}: {exc}") from None
    try:
        walker.get_next(datetime)
    except ValueError:  # CroniterBadDateError: a day that no month has, such as February 30
        raise InvalidInput(f"cron {expr!r} never fires: no date matches its day and month") from None
    return " ".join(fields)


def check_timezone(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > 64:
        raise InvalidInput("timezone must be an IANA zone name such as 'UTC' or 'Europe/Paris'")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown timezone {name!r}; use an IANA name such as 'Europe/Paris'") from None
    return name


def check_catch_up(policy: object) -> str:
    if policy not in CATCH_UP_POLICIES:
        raise InvalidInput(f"catch_up must be one of {', '.join(CATCH_UP_POLICIES)}, got {policy!r}")
    return str(policy)


def fire_times(expr: str, timezone: str, after: float, count: int) -> list[float]:
    """The next `count` fire instants (epoch seconds) strictly after `after`."""
    return _walk(expr, timezone, after, count, forward=True)


def next_fire(expr: str, timezone: str, after: float) -> float | None:
    found = fire_times(expr, timezone, after, 1)
    return found[0] if found else None


def due_ticks(expr: str, timezone: str, first_due: float, now: float, policy: str) -> list[float]:
    """The ticks to fire now, oldest first, for a loop whose next tick was `first_due` (≤ now).

    The most recent due tick counts as on time if it is at most `ON_TIME_SECONDS` old; the
    others were missed (no server ran, or the loop was paused) and follow the policy: `none`
    fires none of them, `latest` only the most recent, `all` each of them (the latest
    `MAX_CATCH_UP_TICKS`)."""
    recent = [t for t in _walk(expr, timezone, now, MAX_CATCH_UP_TICKS, forward=False) if t >= first_due]
    recent.reverse()  # oldest first
    if not recent:
        return []
    if policy == "all":
        return recent
    if policy == "latest" or now - recent[-1] <= ON_TIME_SECONDS:
        return recent[-1:]
    return []


def _walk(expr: str, timezone: str, start: float, count: int, *, forward: bool) -> list[float]:
    """Fire instants strictly after (or, backwards, at or before) `start`, walking wall time."""
    zone = ZoneInfo(timezone)
    wall = datetime.fromtimestamp(start, zone).replace(tzinfo=None)
    if not forward:
        wall = wall.replace(microsecond=0) + timedelta(seconds=1)  # get_prev is strict: include `start`
    from croniter import croniter

    walker = croniter(expr, wall, second_at_beginning=len(expr.split()) == 6)
    step = walker.get_next if forward else walker.get_prev
    found: list[float] = []
    for _ in range(_MAX_CANDIDATES):
        if len(found) == count:
            break
        try:
            moment = step(datetime)
        except ValueError:  # CroniterBadDateError: no further date matches (stored before it was checked)
            break
        instant = moment.replace(tzinfo=zone).timestamp()  # fold=0: a gap time maps past it
        bound = found[-1] if found else start
        # Two wall times can land on one instant (around a DST gap): keep each instant once.
        if (instant > bound) if forward else (instant <= bound and instant not in found):
            found.append(instant)
    return found
