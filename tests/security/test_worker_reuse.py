"""A worker whose activation ended with its own outcome serves the next activation of the same
skill version, and nothing else: never another skill or version, never after the engine ended
it mid-activation, never once it has used its CPU allowance for reuse. Every activation still
starts from fresh globals."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from sandbox.limits import REUSE_CPU_SECONDS, WorkerLimits
from sandbox.process_runner import ProcessRunner
from tests.conftest import EngineFactory

COUNTER = """
seen = []

def handler(ctx, step):
    seen.append(ctx.run_id)
    return step.run("count", lambda: len(seen))
"""


async def test_the_next_run_of_a_skill_version_reuses_the_worker_with_fresh_globals(
    make_engine: EngineFactory,
) -> None:
    runner = ProcessRunner()
    engine = make_engine(runner=runner)
    await engine.start()
    await engine.create_skill("counter", COUNTER)
    outputs = [(await engine.invoke("counter", wait=True, timeout=60)).output for _ in range(3)]
    assert outputs == [1, 1, 1]  # module state did not survive from one run to the next
    [worker] = runner.pool.parked_workers()
    assert worker.served == 3


async def test_another_skill_or_version_never_gets_the_worker(make_engine: EngineFactory) -> None:
    runner = ProcessRunner()
    engine = make_engine(runner=runner)
    await engine.start()
    await engine.create_skill("counter", COUNTER)
    await engine.create_skill("other", COUNTER)
    await engine.invoke("counter", wait=True, timeout=60)
    await engine.invoke("other", wait=True, timeout=60)
    await engine.update_skill("counter", COUNTER + "\n# version 2\n")
    await engine.invoke("counter", wait=True, timeout=60)
    parked = runner.pool.parked_workers()
    assert sorted(worker.served for worker in parked) == [1, 1, 1]
    assert len({worker.pid for worker in parked}) == 3


async def test_a_worker_ended_mid_activation_is_not_reused(make_engine: EngineFactory) -> None:
    runner = ProcessRunner()
    engine = make_engine(runner=runner)
    await engine.start()
    code = "def handler(ctx, step):\n    step.sleep('nap', '1s')\n    return step.run('after', lambda: 1)\n"
    await engine.create_skill("napper", code)
    run = await engine.invoke("napper", wait=True, timeout=60)
    assert run.status == "completed", run.error
    [worker] = runner.pool.parked_workers()
    assert worker.served == 1  # the activation that slept was ended by the engine: its worker too


async def test_a_worker_that_used_its_cpu_allowance_for_reuse_is_ended(make_engine: EngineFactory) -> None:
    runner = ProcessRunner(WorkerLimits(cpu_seconds=30))  # room for a burn well past the allowance
    engine = make_engine(runner=runner)
    await engine.start()
    burn = (
        "def handler(ctx, step):\n"
        "    return step.run('burn', lambda: spin())\n"
        "def spin():\n"
        f"    for i in range({REUSE_CPU_SECONDS} * 250):\n"  # 2.5 to 6 s of CPU per allowed second
        "        for j in range(1_000_000):\n"
        "            pass\n"
        "    return 1\n"
    )
    await engine.create_skill("burner", burn)
    run = await engine.invoke("burner", wait=True, timeout=120)
    assert run.status == "completed", run.error
    assert runner.pool.parked_workers() == []


async def test_a_parked_worker_that_died_is_not_handed_to_the_next_run(make_engine: EngineFactory) -> None:
    runner = ProcessRunner()
    engine = make_engine(runner=runner)
    await engine.start()
    await engine.create_skill("counter", COUNTER)
    await engine.invoke("counter", wait=True, timeout=60)
    [dead] = runner.pool.parked_workers()
    os.kill(dead.pid, signal.SIGKILL)  # as the OOM killer might, while it waits
    for _ in range(200):
        if not Path(f"/proc/{dead.pid}").exists():  # reaped by the zygote
            break
        await asyncio.sleep(0.01)
    run = await engine.invoke("counter", wait=True, timeout=60)
    assert run.status == "completed" and run.attempt == 0, run.error  # no failed first try
    [fresh] = runner.pool.parked_workers()
    assert fresh.pid != dead.pid and fresh.served == 1
