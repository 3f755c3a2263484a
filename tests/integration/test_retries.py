"""Retries per step with backoff; NonRetriableError; RetryAfterError; StepError when exhausted."""

from __future__ import annotations

import pytest

from engine import Engine, ManualClock
from tests.conftest import finished, wait_status
from tests.support.recorder import Recorder

FLAKY = """
def call():
    response = http.post("BASE/flaky")
    if response.status_code >= 500:
        raise RuntimeError("upstream said " + str(response.status_code))
    return response.status_code

def handler(ctx, step):
    return step.run("call", call)
"""


async def test_a_failing_step_is_retried_with_exponential_backoff(
    manual_engine: Engine, clock: ManualClock, recorder: Recorder
) -> None:
    recorder.scripts["/flaky"] = [500, 503]
    config = {"retries": 3, "retry_backoff": {"initial": "10s", "factor": 2, "jitter": 0.1}}
    await manual_engine.create_skill("flaky", FLAKY.replace("BASE", recorder.base), config=config)
    run = await manual_engine.invoke("flaky")

    first = await wait_status(manual_engine, run.id, "queued")
    while first.wake_at is None or recorder.count("/flaky") < 1:
        first = await wait_status(manual_engine, run.id, "queued")
    assert first.wake_at - clock.now() == pytest.approx(10, rel=0.11)
    clock.advance(11)
    second = await wait_status(manual_engine, run.id, "queued")
    while recorder.count("/flaky") < 2:
        second = await wait_status(manual_engine, run.id, "queued")
    assert second.wake_at - clock.now() == pytest.approx(20, rel=0.11)
    clock.advance(22)
    done = await finished(manual_engine, run.id)

    assert done.status == "completed" and done.output == 200
    assert recorder.count("/flaky") == 3
    [span] = (await manual_engine.get_run_trace(run.id))["spans"]
    assert [a["status"] for a in span["attempts"]] == ["failed", "failed", "completed"]
    assert "upstream said 500" in span["attempts"][0]["error"]["message"]


async def test_exhausted_retries_raise_step_error_into_the_handler(
    engine: Engine, recorder: Recorder
) -> None:
    recorder.scripts["/flaky"] = [500] * 10
    code = FLAKY.replace("BASE", recorder.base).replace(
        '    return step.run("call", call)',
        '    try:\n        return step.run("call", call)\n    except StepError as err:\n'
        '        return "fallback after: " + str(err)',
    )
    await engine.create_skill("flaky", code, config={"retries": 2, "retry_backoff": {"initial": "1ms"}})
    run = await engine.invoke("flaky", wait=True, timeout=10)
    assert run.output == "fallback after: upstream said 500"
    assert recorder.count("/flaky") == 3  # 1 attempt + 2 retries


async def test_non_retriable_error_fails_at_once(engine: Engine, recorder: Recorder) -> None:
    code = """
def handler(ctx, step):
    step.run("check", lambda: http.get("BASE/check").status_code)
    step.run("refuse", fail)

def fail():
    raise NonRetriableError("bad data: not worth retrying")
""".replace("BASE", recorder.base)
    await engine.create_skill("strict", code, config={"retries": 5, "retry_backoff": {"initial": "1ms"}})
    run = await engine.invoke("strict", wait=True, timeout=10)
    assert run.status == "failed"
    assert run.error == {"type": "StepError", "message": "bad data: not worth retrying"}
    [_check, refuse] = (await engine.get_run_trace(run.id))["spans"]
    assert refuse["status"] == "failed" and len(refuse["attempts"]) == 1
    assert recorder.count("/check") == 1


async def test_retry_after_error_sets_the_next_attempt_time(
    manual_engine: Engine, clock: ManualClock
) -> None:
    code = """
def handler(ctx, step):
    return step.run("limited", lambda: attempt(ctx))

def attempt(ctx):
    if ctx.attempt == 0:
        raise RetryAfterError("rate limited", "90s")
    return ctx.attempt
"""
    await manual_engine.create_skill("patient", code)
    run = await manual_engine.invoke("patient")
    queued = await wait_status(manual_engine, run.id, "queued")
    while queued.wake_at is None or queued.wake_at <= clock.now():
        queued = await wait_status(manual_engine, run.id, "queued")
    assert queued.wake_at - clock.now() == pytest.approx(90, abs=1)
    clock.advance(91)
    assert (await finished(manual_engine, run.id)).output == 1


async def test_handler_errors_outside_steps_retry_the_run(engine: Engine) -> None:
    code = """
def handler(ctx, step):
    step.run("once", lambda: 1)
    if ctx.attempt < 2:
        raise ValueError("not yet")
    return ctx.attempt
"""
    await engine.create_skill("stubborn", code, config={"retries": 3, "retry_backoff": {"initial": "1ms"}})
    run = await engine.invoke("stubborn", wait=True, timeout=10)
    assert run.status == "completed" and run.output == 2 and run.attempt == 2
