"""Events: stored before the call returns, routed once, processed when a scheduler starts."""

from __future__ import annotations

from engine import Engine
from engine.records import Event
from tests.conftest import EngineFactory, finished

ECHO = 'def handler(ctx, step):\n    return step.run("echo", lambda: ctx.event["data"])\n'


async def test_events_sent_while_no_scheduler_runs_are_processed_when_one_starts(
    make_engine: EngineFactory,
) -> None:
    offline = make_engine()
    await offline.migrate()  # storing works without a scheduler
    await offline.create_skill("echo", ECHO, triggers=[{"event": "ping"}])
    sent = await offline.send_event("ping", {"n": 1})
    # An event stored but never routed (its sender crashed before routing) is picked up too.
    offline.store.append_events([Event(id="evt-orphan", name="ping", data={"n": 2}, ts=0.0, received_at=0.0)])
    assert (await offline.get_run(sent.run_ids[0])).status == "queued"

    online = make_engine()
    await online.start()
    assert (await finished(online, sent.run_ids[0])).output == {"n": 1}
    for _ in range(100):
        orphan_runs = online.store.runs_for_event("evt-orphan")
        if orphan_runs:
            break
        await online.wait_for_run(sent.run_ids[0], 0.05)
    assert (await finished(online, orphan_runs[0])).output == {"n": 2}


async def test_an_event_id_sent_twice_creates_its_runs_once(engine: Engine) -> None:
    await engine.create_skill("echo", ECHO, triggers=[{"event": "ping"}])
    first = await engine.send_event("ping", {"n": 1}, id="order-7")
    second = await engine.send_event("ping", {"n": 999}, id="order-7")
    assert first.run_ids == second.run_ids and len(first.run_ids) == 1
    assert (await finished(engine, first.run_ids[0])).output == {"n": 1}
    assert len((await engine.list_runs(function="echo")).runs) == 1


async def test_trigger_condition_and_several_triggers(engine: Engine) -> None:
    await engine.create_skill(
        "picky",
        ECHO,
        triggers=[{"event": "order", "if": "event.data.total > 100"}, {"event": "vip"}],
    )
    small = await engine.send_event("order", {"total": 5})
    big = await engine.send_event("order", {"total": 500})
    vip = await engine.send_event("vip", {})
    assert small.run_ids == [] and len(big.run_ids) == 1 and len(vip.run_ids) == 1


async def test_deleted_skills_are_not_triggered_but_keep_their_history(engine: Engine) -> None:
    await engine.create_skill("echo", ECHO, triggers=[{"event": "ping"}])
    sent = await engine.send_event("ping", {})
    await finished(engine, sent.run_ids[0])
    await engine.delete_skill("echo")
    assert (await engine.send_event("ping", {})).run_ids == []
    assert (await engine.get_run(sent.run_ids[0])).status == "completed"
    again = await engine.create_skill("echo", ECHO)
    assert again.version.version == 2  # numbering continues; old versions stay readable


async def test_an_engine_that_was_never_started_migrates_on_first_use(make_engine: EngineFactory) -> None:
    fresh = make_engine()
    registered = await fresh.create_skill("echo", ECHO)  # no start(), no migrate()
    assert registered.version.version == 1
