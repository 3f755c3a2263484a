"""`config.timeouts`: runs that wait to start, or run, too long are cancelled with the reason."""

from __future__ import annotations

import asyncio

import pytest

from engine import Engine, InvalidInput, ManualClock
from tests.conftest import EngineFactory, wait_status

NAPPER = "def handler(ctx, step):\n    step.sleep('nap', '1h')\n    return 1\n"
QUICK = "def handler(ctx, step):\n    return step.run('one', lambda: 1)\n"


async def test_a_run_past_its_finish_timeout_is_cancelled(manual_engine: Engine, clock: ManualClock) -> None:
    await manual_engine.create_skill("napper", NAPPER, config={"timeouts": {"finish": "10m"}})
    run = await manual_engine.invoke("napper")
    await wait_status(manual_engine, run.id, "sleeping")
    clock.advance(5 * 60)
    await asyncio.sleep(0.3)
    assert (await manual_engine.get_run(run.id)).status == "sleeping"  # not yet
    clock.advance(6 * 60)
    cancelled = await wait_status(manual_engine, run.id, "cancelled")
    assert cancelled.cancel_reason == "timeouts.finish of 10m exceeded"


async def test_a_run_that_waited_past_its_start_timeout_never_starts(
    make_engine: EngineFactory, clock: ManualClock
) -> None:
    offline = make_engine(clock=clock)  # stores runs; nothing runs them yet
    await offline.create_skill("quick", QUICK, config={"timeouts": {"start": "30s"}})
    late = await offline.invoke("quick")
    clock.advance(60)
    fresh = await offline.invoke("quick")
    engine = make_engine(clock=clock)
    await engine.start()
    cancelled = await wait_status(engine, late.id, "cancelled")
    assert cancelled.cancel_reason == "timeouts.start of 30s exceeded" and cancelled.started_at is None
    assert (await wait_status(engine, fresh.id, "completed")).output == 1


@pytest.mark.parametrize(
    ("timeouts", "match"),
    [({"start": "soon"}, "timeouts.start"), ({"finish": 0}, "longer than zero"), ({"stop": "1m"}, "'start'")],
)
async def test_bad_timeouts_are_refused(manual_engine: Engine, timeouts: dict, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        await manual_engine.create_skill("quick", QUICK, config={"timeouts": timeouts})
