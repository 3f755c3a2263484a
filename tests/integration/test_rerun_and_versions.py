"""Rerun from the start or from a named step; version pinning for runs in flight."""

from __future__ import annotations

from engine import Engine, ManualClock
from tests.conftest import finished, wait_status
from tests.support.recorder import Recorder

PIPELINE = """
def handler(ctx, step):
    a = step.run("extract", lambda: http.post("BASE/extract").status_code)
    b = step.run("transform", lambda: http.post("BASE/transform").status_code)
    c = step.run("load", lambda: check(http.post("BASE/load").status_code))
    return [a, b, c]

def check(status):
    if status != 200:
        raise NonRetriableError("load failed with " + str(status))
    return status
"""


async def test_rerun_from_a_step_skips_the_steps_before_it(engine: Engine, recorder: Recorder) -> None:
    recorder.scripts["/load"] = [500]
    await engine.create_skill("etl", PIPELINE.replace("BASE", recorder.base))
    failed = await engine.invoke("etl", wait=True, timeout=10)
    assert failed.status == "failed"
    assert recorder.paths() == ["/extract", "/transform", "/load"]

    again = await engine.rerun(failed.id, from_step="load")
    done = await finished(engine, again.id)
    assert done.status == "completed" and done.output == [200, 200, 200]
    assert done.rerun_of == failed.id and done.trigger == "rerun"
    assert recorder.paths() == ["/extract", "/transform", "/load", "/load"]


async def test_rerun_from_the_start_runs_everything_with_new_data(engine: Engine, recorder: Recorder) -> None:
    await engine.create_skill("etl", PIPELINE.replace("BASE", recorder.base))
    first = await engine.invoke("etl", {"v": 1}, wait=True, timeout=10)
    again = await engine.rerun(first.id, data={"v": 2})
    done = await finished(engine, again.id)
    assert done.status == "completed" and done.event["data"] == {"v": 2}
    assert recorder.count("/extract") == 2


async def test_rerun_of_an_unknown_step_is_refused(engine: Engine, recorder: Recorder) -> None:
    await engine.create_skill("etl", PIPELINE.replace("BASE", recorder.base))
    run = await engine.invoke("etl", wait=True, timeout=10)
    before = await engine.counts()
    try:
        await engine.rerun(run.id, from_step="nope")
    except Exception as exc:
        assert "has no step 'nope'" in str(exc)
    else:
        raise AssertionError("expected a refusal")
    assert await engine.counts() == before


async def test_runs_in_flight_finish_on_their_version(manual_engine: Engine, clock: ManualClock) -> None:
    v1 = 'def handler(ctx, step):\n    step.sleep("wait", "1h")\n    return "v1"\n'
    v2 = 'def handler(ctx, step):\n    step.sleep("wait", "1h")\n    return "v2"\n'
    first = await manual_engine.create_skill("deploy", v1)
    assert first.version.version == 1
    old_run = await manual_engine.invoke("deploy")
    await wait_status(manual_engine, old_run.id, "sleeping")
    second = await manual_engine.update_skill("deploy", code=v2)
    assert second.version.version == 2
    new_run = await manual_engine.invoke("deploy")
    await wait_status(manual_engine, new_run.id, "sleeping")
    clock.advance(3601)
    assert (await finished(manual_engine, old_run.id)).output == "v1"
    assert (await finished(manual_engine, new_run.id)).output == "v2"
    details = await manual_engine.get_skill("deploy", version=1)
    assert details.versions == [1, 2] and details.version.code == v1
