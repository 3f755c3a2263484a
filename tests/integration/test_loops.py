"""Cron loops: ticks fire runs on a manual clock, DST-correct, with catch-up after downtime."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from engine import Engine, InvalidInput, LoopNotFound, ManualClock
from engine.cron import due_ticks, fire_times
from tests.conftest import EngineFactory, finished

TICK = "def handler(ctx, step):\n    return {'ts': ctx.event['ts'], 'data': ctx.event['data']}\n"


def at(text: str, zone: str = "UTC") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def local(ts: float, zone: str) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(zone)).isoformat()


@pytest.mark.parametrize(
    ("zone", "spring", "autumn", "gap_fire"),
    [
        ("America/New_York", "2026-03-07T12:00", "2026-10-31T12:00", "2026-03-08T03:30:00-04:00"),
        ("Europe/Berlin", "2026-03-28T12:00", "2026-10-24T12:00", "2026-03-29T03:30:00+02:00"),
    ],
)
def test_a_daily_0230_tick_fires_once_on_both_dst_days(
    zone: str, spring: str, autumn: str, gap_fire: str
) -> None:
    # 02:30 does not exist on the spring-forward night: it fires once, just after the gap.
    ticks = fire_times("30 2 * * *", zone, at(spring, zone), 3)
    assert local(ticks[0], zone) == gap_fire
    # 03:30 on the gap day to 02:30 the next day is 23 hours; then daily again.
    assert [round(b - a) for a, b in itertools.pairwise(ticks)] == [23 * 3600, 24 * 3600]
    # 02:30 happens twice on the fall-back night in Berlin (once in New York at 01:30): once.
    hour = "1" if zone == "America/New_York" else "2"
    ticks = fire_times(f"30 {hour} * * *", zone, at(autumn, zone), 3)
    days = [local(t, zone)[:10] for t in ticks]
    assert len(set(days)) == 3  # one tick per day, none doubled in the repeated hour
    assert ticks[1] - ticks[0] == 25 * 3600  # the day of the change is an hour longer


def test_six_fields_put_seconds_first() -> None:
    ticks = fire_times("*/20 * * * * *", "UTC", at("2026-01-01T00:00:00"), 3)
    assert [t - at("2026-01-01T00:00:00") for t in ticks] == [20, 40, 60]


@pytest.mark.parametrize(("policy", "fired"), [("none", 0), ("latest", 1), ("all", 4)])
def test_catch_up_policies_after_a_downtime(policy: str, fired: int) -> None:
    missed = due_ticks("0 * * * *", "UTC", at("2026-01-01T07:00"), at("2026-01-01T10:30"), policy)
    assert len(missed) == fired
    if fired:
        assert missed[-1] == at("2026-01-01T10:00")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=at("2026-01-01T00:00:30"))


def move_to(clock: ManualClock, when: float) -> None:
    clock.advance(when - clock.now())


@pytest.fixture
async def timed(make_engine: EngineFactory, clock: ManualClock) -> Engine:
    engine = make_engine(clock=clock)
    await engine.start()
    await engine.create_skill("tick", TICK)
    return engine


async def ticks_of(engine: Engine) -> list[float]:
    runs = (await engine.list_runs(function="tick", limit=100)).runs
    done = [await finished(engine, run.id) for run in runs]
    assert all(run.status == "completed" and run.trigger == "cron" for run in done)
    return sorted(run.output["ts"] for run in done)


async def test_a_loop_fires_each_tick_with_its_data(timed: Engine, clock: ManualClock) -> None:
    loop = await timed.schedule_loop("tick", "* * * * *", data={"service": "api"}, name="every minute")
    assert Engine.upcoming_ticks(loop) == [
        at("2026-01-01T00:01"),
        at("2026-01-01T00:02"),
        at("2026-01-01T00:03"),
    ]
    for minute in (1, 2, 3):
        move_to(clock, at(f"2026-01-01T00:0{minute}:00"))
        await wait_until_runs(timed, minute)
    assert await ticks_of(timed) == [at("2026-01-01T00:01"), at("2026-01-01T00:02"), at("2026-01-01T00:03")]
    run = (await timed.list_runs(function="tick")).runs[0]
    assert (await finished(timed, run.id)).output["data"] == {"service": "api"}


async def wait_until_runs(engine: Engine, count: int) -> None:
    for _ in range(500):
        if len((await engine.list_runs(function="tick", limit=100)).runs) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {count} runs of 'tick'")


async def test_paused_loops_do_not_fire_and_resume_from_the_next_tick(
    timed: Engine, clock: ManualClock
) -> None:
    loop = await timed.schedule_loop("tick", "* * * * *", catch_up="all")
    paused = await timed.update_loop(loop.id, paused=True)
    assert paused.paused and Engine.upcoming_ticks(paused) == []
    move_to(clock, at("2026-01-01T00:05:10"))
    await asyncio.sleep(0.2)  # the scheduler runs with the new time; a paused loop stays quiet
    resumed = await timed.update_loop(loop.id, paused=False)
    assert resumed.next_fire_at == at("2026-01-01T00:06")  # the paused minutes are not caught up
    assert (await timed.list_runs(function="tick")).runs == []


async def test_bad_loops_are_refused_with_a_specific_error(timed: Engine) -> None:
    with pytest.raises(InvalidInput, match="5 \\(minute"):
        await timed.schedule_loop("tick", "* * *")
    with pytest.raises(InvalidInput, match="unknown timezone"):
        await timed.schedule_loop("tick", "* * * * *", timezone="Mars/Olympus")
    with pytest.raises(InvalidInput, match="catch_up"):
        await timed.schedule_loop("tick", "* * * * *", catch_up="sometimes")
    with pytest.raises(LoopNotFound):
        await timed.update_loop("loop_missing", paused=True)
    assert await timed.list_loops() == []


async def test_cron_triggers_become_loops_that_follow_the_skill(timed: Engine, clock: ManualClock) -> None:
    code = TICK
    await timed.update_skill("tick", code, triggers=[{"cron": "*/2 * * * *", "timezone": "Europe/Paris"}])
    [loop] = await timed.list_loops("tick")
    assert (loop.cron, loop.timezone, loop.name) == ("*/2 * * * *", "Europe/Paris", "trigger: */2 * * * *")
    await timed.update_skill("tick", description="same triggers")  # unchanged: the loop is kept
    assert [item.id for item in await timed.list_loops("tick")] == [loop.id]
    move_to(clock, at("2026-01-01T00:02:00"))
    await wait_until_runs(timed, 1)
    await timed.delete_skill("tick")
    assert await timed.list_loops("tick") == []


@pytest.mark.parametrize(("policy", "expected"), [("none", 0), ("latest", 1), ("all", 3)])
async def test_ticks_missed_while_no_engine_ran_follow_the_catch_up_policy(
    make_engine: EngineFactory, clock: ManualClock, policy: str, expected: int
) -> None:
    offline = make_engine(clock=clock)  # stores the loop; nothing fires while no engine runs
    await offline.create_skill("tick", TICK)
    await offline.schedule_loop("tick", "0 * * * *", catch_up=policy)  # hourly, first at 01:00
    move_to(clock, at("2026-01-01T03:30:00"))  # down through 01:00, 02:00 and 03:00
    engine = make_engine(clock=clock)
    await engine.start()
    await asyncio.sleep(0.5)  # the scheduler's first passes fire what is due
    assert len(await ticks_of(engine)) == expected
    if expected:
        assert (await ticks_of(engine))[-1] == at("2026-01-01T03:00")
    [loop] = await engine.list_loops()
    assert loop.next_fire_at == at("2026-01-01T04:00")
