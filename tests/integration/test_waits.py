"""Durable time and events: sleep, sleep_until, wait_for_event (match, condition, timeout)."""

from __future__ import annotations

import asyncio

from engine import Engine, ManualClock
from engine.durations import iso
from tests.conftest import finished, wait_status

WAITER = """
def handler(ctx, step):
    approval = step.wait_for_event("approval", event="order.approved", timeout="1h",
                                   if_="async.data.order == event.data.order")
    if approval is None:
        return "timed out"
    return "approved by " + approval["data"]["by"]
"""


async def test_sleep_holds_no_process_and_wakes_on_time(manual_engine: Engine, clock: ManualClock) -> None:
    await manual_engine.create_skill(
        "napper", 'def handler(ctx, step):\n    step.sleep("nap", "2h")\n    return 1\n'
    )
    run = await manual_engine.invoke("napper")
    sleeping = await wait_status(manual_engine, run.id, "sleeping")
    assert sleeping.lease_owner is None  # no engine holds it while it sleeps
    scheduler = manual_engine.scheduler
    assert scheduler is not None
    for _ in range(100):  # the activation's thread ends a moment after it stored the sleep
        if scheduler.active_runs == 0:
            break
        await asyncio.sleep(0.05)
    assert scheduler.active_runs == 0
    clock.advance(2 * 3600 - 10)
    assert (await manual_engine.get_run(run.id)).status == "sleeping"
    clock.advance(11)
    assert (await finished(manual_engine, run.id)).output == 1


async def test_sleep_until_an_iso_time(manual_engine: Engine, clock: ManualClock) -> None:
    until = iso(clock.now() + 90)
    code = f'def handler(ctx, step):\n    step.sleep_until("later", "{until}")\n    return "woke"\n'
    await manual_engine.create_skill("alarm", code)
    run = await manual_engine.invoke("alarm")
    await wait_status(manual_engine, run.id, "sleeping")
    clock.advance(91)
    assert (await finished(manual_engine, run.id)).output == "woke"


async def test_wait_for_event_matches_only_by_condition(manual_engine: Engine) -> None:
    await manual_engine.create_skill("waiter", WAITER, triggers=[{"event": "order.placed"}])
    sent = await manual_engine.send_event("order.placed", {"order": 7})
    run_id = sent.run_ids[0]
    await wait_status(manual_engine, run_id, "waiting")
    await manual_engine.send_event("order.approved", {"order": 8, "by": "mallory"})
    assert (await manual_engine.get_run(run_id)).status == "waiting"
    await manual_engine.send_event("order.approved", {"order": 7, "by": "alice"})
    assert (await finished(manual_engine, run_id)).output == "approved by alice"


async def test_wait_for_event_times_out_with_none(manual_engine: Engine, clock: ManualClock) -> None:
    await manual_engine.create_skill("waiter", WAITER, triggers=[{"event": "order.placed"}])
    run_id = (await manual_engine.send_event("order.placed", {"order": 1})).run_ids[0]
    await wait_status(manual_engine, run_id, "waiting")
    clock.advance(3601)
    assert (await finished(manual_engine, run_id)).output == "timed out"
    await manual_engine.send_event("order.approved", {"order": 1, "by": "late"})
    assert (await manual_engine.get_run(run_id)).output == "timed out"
