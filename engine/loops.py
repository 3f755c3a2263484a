"""Loops: cron schedules that start runs of a skill (the seed's "a cron plus a decision-maker").

Plain logic over the store. A loop's due ticks are fired by whichever engine sees them first;
the store's compare-and-set makes that exactly once. Missed ticks (no server ran, or the loop
was paused) follow the loop's catch-up policy.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from engine import cron, limits
from engine.errors import InvalidInput, SkillNotFound
from engine.ids import new_id
from engine.jsonutil import encode_limited
from engine.records import Loop, Run
from engine.runtime import Runtime
from engine.skills import check_skill_name

log = logging.getLogger(__name__)
CRON_EVENT = "stepkeeper/cron"
MAX_LOOP_NAME_CHARS = 200
MAX_LOOPS_FIRED_PER_PASS = 100


def new_loop(skill: str, expr: Any, timezone: Any, data: Any, name: Any, catch_up: Any, now: float) -> Loop:
    """A checked, unsaved loop whose first tick is the next one after `now`."""
    expr, timezone = cron.check_cron(expr), cron.check_timezone(timezone)
    loop = Loop(
        id=new_id("loop"),
        skill=check_skill_name(skill),
        cron=expr,
        timezone=timezone,
        data=check_data(data),
        catch_up=cron.check_catch_up(catch_up),
        paused=False,
        next_fire_at=cron.next_fire(expr, timezone, now),
        last_fired_at=None,
        created_at=now,
        updated_at=now,
        name=check_name(name),
    )
    return loop


def changed_loop(loop: Loop, changes: dict[str, Any], now: float) -> Loop:
    """The loop with `changes` (cron, timezone, paused, data, catch_up) applied and checked.
    A new schedule, or resuming, starts from the next tick after now: ticks that passed while
    paused are not fired."""
    unknown = set(changes) - {"cron", "timezone", "paused", "data", "catch_up"}
    if unknown:
        raise InvalidInput(f"a loop has no field {sorted(unknown)[0]!r} to change")
    updated = replace(loop, updated_at=now)
    if changes.get("cron") is not None:
        updated.cron = cron.check_cron(changes["cron"])
    if changes.get("timezone") is not None:
        updated.timezone = cron.check_timezone(changes["timezone"])
    if changes.get("data") is not None:
        updated.data = check_data(changes["data"])
    if changes.get("catch_up") is not None:
        updated.catch_up = cron.check_catch_up(changes["catch_up"])
    if changes.get("paused") is not None:
        if not isinstance(changes["paused"], bool):
            raise InvalidInput("paused must be true or false")
        updated.paused = changes["paused"]
    rescheduled = (updated.cron, updated.timezone) != (loop.cron, loop.timezone)
    if rescheduled or (loop.paused and not updated.paused):
        updated.next_fire_at = cron.next_fire(updated.cron, updated.timezone, now)
    return updated


def check_data(data: Any) -> dict[str, Any]:
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise InvalidInput("loop data must be a JSON object")
    encode_limited(data, limits.MAX_EVENT_DATA_BYTES, "loop data")
    return data


def check_name(name: Any) -> str | None:
    if name is not None and (not isinstance(name, str) or not 0 < len(name) <= MAX_LOOP_NAME_CHARS):
        raise InvalidInput(f"a loop's name must be a string of 1 to {MAX_LOOP_NAME_CHARS} characters")
    return name


TRIGGER_LOOP_PREFIX = "trigger: "


def sync_trigger_loops(rt: Runtime, skill: str, triggers: list[dict[str, Any]], now: float) -> bool:
    """Make the skill's trigger loops match its cron triggers; True if anything changed.
    Loops an agent scheduled itself (with `schedule_loop`) are left alone."""
    wanted = [t for t in triggers if "cron" in t]
    current = [
        loop for loop in rt.store.list_loops(skill) if (loop.name or "").startswith(TRIGGER_LOOP_PREFIX)
    ]
    shape = [(t["cron"], t["timezone"], t["catch_up"]) for t in wanted]
    if sorted(shape) == sorted((loop.cron, loop.timezone, loop.catch_up) for loop in current):
        return False
    rt.store.delete_loops([loop.id for loop in current])
    for expr, timezone, catch_up in shape:
        rt.store.add_loop(new_loop(skill, expr, timezone, {}, f"{TRIGGER_LOOP_PREFIX}{expr}", catch_up, now))
    return True


def upcoming(loop: Loop, count: int = 3) -> list[float]:
    if loop.paused or loop.next_fire_at is None:
        return []
    return [loop.next_fire_at, *cron.fire_times(loop.cron, loop.timezone, loop.next_fire_at, count - 1)]


def require_skill(rt: Runtime, skill: str) -> None:
    found = rt.store.get_skill(check_skill_name(skill))
    if found is None or found.deleted_at is not None:
        raise SkillNotFound(skill)


def fire_due_loops(rt: Runtime, now: float) -> int:
    """Fire every loop whose next tick has come; returns the runs started."""
    started = 0
    for loop in rt.store.due_loops(now)[:MAX_LOOPS_FIRED_PER_PASS]:
        started += _fire(rt, loop, now)
    return started


def _fire(rt: Runtime, loop: Loop, now: float) -> int:
    assert loop.next_fire_at is not None
    ticks = cron.due_ticks(loop.cron, loop.timezone, loop.next_fire_at, now, loop.catch_up)
    following = cron.next_fire(loop.cron, loop.timezone, now)
    skill = rt.store.get_skill(loop.skill)
    if skill is None or skill.deleted_at is not None:
        log.warning("loop %s: skill %r is gone; its ticks pass without runs", loop.id, loop.skill)
        ticks = []
    new_runs = [_tick_run(loop, skill.latest_version if skill else 0, tick, now) for tick in ticks]
    fired_at = ticks[-1] if ticks else None
    if rt.store.fire_loop(loop.id, loop.next_fire_at, following, fired_at, new_runs, now):
        return len(new_runs)
    return 0


def _tick_run(loop: Loop, version: int, tick: float, now: float) -> Run:
    event = {"id": f"evt_{loop.id}_{int(tick * 1000)}", "name": CRON_EVENT, "data": loop.data, "ts": tick}
    return Run(
        id=new_id("run"),
        function=loop.skill,
        version=version,
        trigger="cron",
        status="queued",
        event=event,
        created_at=now,
        updated_at=now,
        wake_at=now,
    )
