"""The engine survives whatever a worker does: dies, hangs, floods, breaks the protocol or
exceeds a limit. The step attempt (or the handler) fails with a clear error, the normal retry
rules apply, and the next run is served."""

from __future__ import annotations

import json

import pytest

from engine import Engine
from sandbox.limits import WorkerLimits
from sandbox.process_runner import ProcessRunner
from tests.conftest import EngineFactory, finished

FAST_LIMITS = WorkerLimits(cpu_seconds=1, wall_seconds=3)

SPIN_IN_STEP = """
def handler(ctx, step):
    try:
        step.run("spin", lambda: spin())
    except StepError as exc:
        return {"fallback": True, "error": str(exc), "type": exc.error_type}

def spin():
    while True:
        pass
"""


async def test_a_cpu_bomb_in_a_step_fails_attempts_under_the_retry_rules(make_engine: EngineFactory) -> None:
    engine = make_engine(runner=ProcessRunner(FAST_LIMITS))
    await engine.start()
    await engine.create_skill(
        "spinner", SPIN_IN_STEP, config={"retries": 1, "retry_backoff": {"initial": "0s"}}
    )
    run = await engine.invoke("spinner", wait=True, timeout=60)
    assert run.status == "completed", run.error
    assert run.output == {"fallback": True, "error": "CPU time limit of 1 s exceeded", "type": "WorkerError"}
    [span] = (await engine.get_run_trace(run.id))["spans"]
    assert span["status"] == "failed" and len(span["attempts"]) == 2  # the first try and one retry


async def test_a_hang_meets_the_wall_clock_limit(make_engine: EngineFactory) -> None:
    engine = make_engine(runner=ProcessRunner(WorkerLimits(cpu_seconds=30, wall_seconds=1)))
    await engine.start()
    await engine.create_skill("spinner", SPIN_IN_STEP, config={"retries": 0})
    run = await engine.invoke("spinner", wait=True, timeout=60)
    assert run.output["error"] == "wall-clock limit of 1 s exceeded"


@pytest.fixture
async def rogue(make_engine: EngineFactory) -> Engine:
    engine = make_engine(runner=ProcessRunner(FAST_LIMITS, entry="tests.support.rogue:serve"))
    await engine.start()
    await engine.create_skill(
        "rogue", "def handler(ctx, step):\n    return step.run('a', lambda: 1)\n", config={"retries": 0}
    )
    return engine


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("oversized", "over the limit of"),
        ("garbage", "not valid JSON"),
        ("claims_suspended", "status must be completed or failed"),
        ("malformed_step", "key must be a non-empty string"),
        ("bad_outcome", "an error must be an object"),
        ("unknown_op", "unknown request 'read_database'"),
        ("flood", "more than 20000 messages"),
        ("dies", "exited with code 3"),
        ("hangs", "wall-clock limit of 3 s exceeded"),
    ],
)
async def test_a_rogue_worker_fails_its_run_and_the_engine_goes_on(
    rogue: Engine, mode: str, error: str
) -> None:
    run = await rogue.invoke("rogue", {"mode": mode}, wait=True, timeout=60)
    run = await finished(rogue, run.id, timeout=60)
    assert run.status == "failed"
    assert run.error["type"] == "WorkerError" and error in run.error["message"], json.dumps(run.error)
    assert (await rogue.list_runs(function="rogue")).runs[0].id == run.id  # nothing else was started
