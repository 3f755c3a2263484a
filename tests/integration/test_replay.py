"""Replay with memoization: a finished step's body never runs again; results come from the store."""

from __future__ import annotations

from engine import Engine, ManualClock
from tests.conftest import finished, wait_status
from tests.support.recorder import Recorder

THREE_STEPS = """
def handler(ctx, step):
    a = step.run("a", lambda: http.post("BASE/a", json={"n": 1}).json()["got"]["n"])
    step.sleep("pause", "1h")
    b = step.run("b", lambda: http.post("BASE/b", json={"n": a + 1}).json()["got"]["n"])
    ctx.log.info("after b")
    return {"a": a, "b": b}
"""


async def test_steps_before_a_suspension_do_not_run_again(
    manual_engine: Engine, clock: ManualClock, recorder: Recorder
) -> None:
    await manual_engine.create_skill("three", THREE_STEPS.replace("BASE", recorder.base))
    run = await manual_engine.invoke("three")
    await wait_status(manual_engine, run.id, "sleeping")
    clock.advance(3601)
    done = await finished(manual_engine, run.id)

    assert done.status == "completed"
    assert done.output == {"a": 1, "b": 2}
    assert recorder.paths() == ["/a", "/b"]  # the replay after the sleep did not call /a again
    trace = await manual_engine.get_run_trace(run.id)
    assert [span["key"] for span in trace["spans"]] == ["a", "pause", "b"]
    assert [line["message"] for line in trace["logs"]] == ["after b"]


async def test_repeated_step_ids_get_occurrence_keys(engine: Engine) -> None:
    code = """
def handler(ctx, step):
    return [step.run("item", lambda: i * 10) for i in range(3)]
"""
    await engine.create_skill("loop", code)
    run = await engine.invoke("loop", wait=True, timeout=10)
    assert run.output == [0, 10, 20]
    steps = await engine.get_run_trace(run.id)
    assert [span["key"] for span in steps["spans"]] == ["item", "item#2", "item#3"]


async def test_now_and_uuid_are_memoized_across_replays(manual_engine: Engine, clock: ManualClock) -> None:
    code = """
def handler(ctx, step):
    first = [step.now("t"), step.uuid("u")]
    step.sleep("nap", "10m")
    return {"first": first, "again": [step.now("t2"), step.uuid("u2")]}
"""
    await manual_engine.create_skill("memo", code)
    run = await manual_engine.invoke("memo")
    await wait_status(manual_engine, run.id, "sleeping")
    before = {s.key: s.output for s in manual_engine.store.load_steps(run.id)}
    clock.advance(601)
    done = await finished(manual_engine, run.id)
    assert done.output["first"] == [before["t"], before["u"]]
    assert done.output["again"][0] > done.output["first"][0]


async def test_changed_op_on_replay_is_a_clear_nondeterminism_failure(
    manual_engine: Engine, clock: ManualClock
) -> None:
    await manual_engine.create_skill("shifty", 'def handler(ctx, step):\n    step.sleep("x", "1h")\n')
    run = await manual_engine.invoke("shifty")
    await wait_status(manual_engine, run.id, "sleeping")
    # Simulate code drift in place (versions are immutable, so only a store edit can do this).
    steps = manual_engine.store.load_steps(run.id)
    assert steps[0].op == "sleep"
    from sqlalchemy import update

    from engine.schema import steps as steps_table

    with manual_engine.store.sa_engine.begin() as connection:
        connection.execute(update(steps_table).where(steps_table.c.run_id == run.id).values(op="run"))
    clock.advance(3601)
    done = await finished(manual_engine, run.id)
    assert done.status == "failed"
    assert done.error["type"] == "NonDeterminismError"
    assert "'x'" in done.error["message"]
