"""on_failure runs, and cancellation of parents and children."""

from __future__ import annotations

from engine import Engine, InvalidState
from tests.conftest import finished, wait_status

FAILING = """
def handler(ctx, step):
    step.run("doomed", lambda: explode())

def explode():
    raise NonRetriableError("disk on fire")

def on_failure(ctx, step):
    return {"saw": ctx.error["message"], "failed_run": ctx.failed_run_id, "event": ctx.event["data"]}
"""


async def test_on_failure_runs_as_its_own_run_with_error_and_event(engine: Engine) -> None:
    await engine.create_skill("fragile", FAILING)
    run = await engine.invoke("fragile", {"job": 42}, wait=True, timeout=10)
    assert run.status == "failed"
    page = await engine.list_runs(function="fragile")
    [handler_run] = [r for r in page.runs if r.trigger == "on_failure"]
    done = await finished(engine, handler_run.id)
    assert done.kind == "on_failure"
    assert done.output == {"saw": "disk on fire", "failed_run": run.id, "event": {"job": 42}}


async def test_a_failing_on_failure_does_not_chain(engine: Engine) -> None:
    code = FAILING.replace('    return {"saw"', '    explode()\n    return {"saw"')
    await engine.create_skill("fragile", code)
    run = await engine.invoke("fragile", wait=True, timeout=10)
    await engine.wait_for_run(run.id, 5)
    for _ in range(50):
        runs = (await engine.list_runs(function="fragile")).runs
        if all(r.status == "failed" for r in runs) and len(runs) == 2:
            break
        await engine.wait_for_run(runs[0].id, 0.1)
    assert sorted(r.kind for r in runs) == ["handler", "on_failure"]


PARENT = 'def handler(ctx, step):\n    return step.invoke("c", function="waiter")\n'
WAITER = 'def handler(ctx, step):\n    return step.wait_for_event("w", event="never.sent", timeout="1d")\n'


async def test_cancelling_a_parent_cancels_its_children(engine: Engine) -> None:
    await engine.create_skill("waiter", WAITER)
    await engine.create_skill("parent", PARENT)
    parent = await engine.invoke("parent")
    await wait_status(engine, parent.id, "waiting")
    child_id = (await engine.get_run_trace(parent.id))["spans"][0]["child_run_id"]
    await wait_status(engine, child_id, "waiting")

    cancelled = await engine.cancel_run(parent.id, reason="operator said stop")
    assert set(cancelled) == {parent.id, child_id}
    assert (await engine.get_run(child_id)).status == "cancelled"
    assert (await engine.get_run(parent.id)).cancel_reason == "operator said stop"
    # A cancelled waiter stays cancelled even when its event arrives.
    await engine.send_event("never.sent", {})
    assert (await engine.get_run(child_id)).status == "cancelled"


async def test_cancelling_a_child_fails_the_parents_invoke_step(engine: Engine) -> None:
    await engine.create_skill("waiter", WAITER)
    code = PARENT.replace("    return step.invoke", "    try:\n        return step.invoke")
    code += '    except StepError as err:\n        return "child gone: " + str(err)\n'
    await engine.create_skill("parent", code)
    parent = await engine.invoke("parent")
    await wait_status(engine, parent.id, "waiting")
    child_id = (await engine.get_run_trace(parent.id))["spans"][0]["child_run_id"]
    await engine.cancel_run(child_id)
    done = await finished(engine, parent.id)
    assert done.output == f"child gone: the invoked run {child_id} was cancelled"


async def test_cancelling_a_running_run_stops_it_at_its_next_step(engine: Engine) -> None:
    code = """
def handler(ctx, step):
    for i in range(100000):
        step.run("tick", lambda: i)
"""
    await engine.create_skill("spinner", code)
    run = await engine.invoke("spinner")
    await wait_status(engine, run.id, "running")
    await engine.cancel_run(run.id)
    await engine.wait_for_run(run.id, 2)
    count = len(engine.store.load_steps(run.id))
    await engine.wait_for_run(run.id, 0.3)
    assert len(engine.store.load_steps(run.id)) == count  # no step was stored after the cancel
    assert (await engine.get_run(run.id)).status == "cancelled"


async def test_cancelling_a_finished_run_is_refused(engine: Engine) -> None:
    await engine.create_skill("quick", "def handler(ctx, step):\n    return 1\n")
    run = await engine.invoke("quick", wait=True, timeout=10)
    try:
        await engine.cancel_run(run.id)
    except InvalidState as exc:
        assert "already completed" in str(exc)
    else:
        raise AssertionError("cancelling a completed run should be refused")
