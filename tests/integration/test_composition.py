"""Runs that start other work: invoke (result and failure), send_event, parallel."""

from __future__ import annotations

from engine import Engine
from tests.conftest import finished, wait_status
from tests.support.recorder import Recorder

CHILD = """
def handler(ctx, step):
    n = ctx.event["data"]["n"]
    if n < 0:
        raise NonRetriableError("negative input")
    return step.run("square", lambda: n * n)
"""

PARENT = """
def handler(ctx, step):
    try:
        return {"ok": step.invoke("child", function="squarer", data={"n": ctx.event["data"]["n"]})}
    except StepError as err:
        return {"failed": str(err)}
"""


async def test_invoke_returns_the_child_result(engine: Engine) -> None:
    await engine.create_skill("squarer", CHILD)
    await engine.create_skill("parent", PARENT)
    run = await engine.invoke("parent", {"n": 12}, wait=True, timeout=10)
    assert run.output == {"ok": 144}
    trace = await engine.get_run_trace(run.id)
    [child] = trace["children"]
    assert child["function"] == "squarer" and child["parent_run_id"] == run.id
    assert trace["spans"][0]["child_run_id"] == child["run_id"]


async def test_invoke_raises_step_error_when_the_child_fails(engine: Engine) -> None:
    await engine.create_skill("squarer", CHILD)
    await engine.create_skill("parent", PARENT)
    run = await engine.invoke("parent", {"n": -1}, wait=True, timeout=10)
    assert run.status == "completed"
    assert run.output == {"failed": "negative input"}


async def test_send_event_starts_triggered_runs_once(engine: Engine, recorder: Recorder) -> None:
    listener = 'def handler(ctx, step):\n    return step.run("got", lambda: ctx.event["data"]["x"])\n'
    sender = """
def handler(ctx, step):
    ids = step.send_event("announce", "thing.happened", {"x": 5})
    step.sleep("short", "50ms")
    return ids
"""
    await engine.create_skill("listener", listener, triggers=[{"event": "thing.happened"}])
    await engine.create_skill("sender", sender)
    run = await engine.invoke("sender", wait=True, timeout=10)
    assert run.status == "completed"
    [event_id] = run.output
    started = engine.store.runs_for_event(event_id)
    assert len(started) == 1  # the replay after the sleep did not send again
    assert (await finished(engine, started[0])).output == 5


async def test_parallel_runs_each_branch_as_its_own_step(engine: Engine) -> None:
    code = """
def handler(ctx, step):
    return step.parallel("fan", [("a", lambda: 1), ("b", lambda: 2), ("c", lambda: 3)])
"""
    await engine.create_skill("fan", code)
    run = await engine.invoke("fan", wait=True, timeout=10)
    assert run.output == [1, 2, 3]
    trace = await engine.get_run_trace(run.id)
    assert [span["key"] for span in trace["spans"]] == ["fan/a", "fan/b", "fan/c"]


async def test_child_of_a_waiting_parent_is_visible_while_it_runs(engine: Engine) -> None:
    slow = 'def handler(ctx, step):\n    step.sleep("s", "300ms")\n    return "slow done"\n'
    await engine.create_skill("slow", slow)
    await engine.create_skill(
        "boss", 'def handler(ctx, step):\n    return step.invoke("c", function="slow")\n'
    )
    run = await engine.invoke("boss")
    waiting = await wait_status(engine, run.id, "waiting")
    assert waiting.status == "waiting"
    assert (await finished(engine, run.id)).output == "slow done"


async def test_large_step_arguments_are_noted_not_stored(engine: Engine) -> None:
    code = """
def handler(ctx, step):
    blob = "x" * 100000
    return step.run("measure", lambda b: len(b), blob)
"""
    await engine.create_skill("big-args", code)
    run = await engine.invoke("big-args", wait=True, timeout=10)
    assert run.output == 100000
    [span] = (await engine.get_run_trace(run.id))["spans"]
    assert span["input"] == {"truncated": True, "bytes": 100004, "limit": 65536}  # ["x...x"]
