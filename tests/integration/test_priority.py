"""`config.priority`: a run's priority expression moves it ahead in (or back in) the queue."""

from __future__ import annotations

import asyncio

import pytest

from engine import Engine, InvalidInput
from tests.conftest import finished

BUSY = """
def handler(ctx, step):
    return step.run("work", lambda: len([i * i for i in range(200000)]))
"""


async def test_higher_priority_runs_start_before_earlier_ones(engine: Engine) -> None:
    config = {"concurrency": [{"limit": 1}], "priority": {"run": "event.data.vip ? 300 : 0"}}
    await engine.create_skill("busy", BUSY, triggers=[{"event": "job"}], config=config)
    jobs = [{"name": "job", "data": {"n": n, "vip": n >= 6}} for n in range(8)]
    run_ids = (await engine.send_events(jobs)).run_ids  # one runs at a time; the rest queue
    done = await asyncio.gather(*(finished(engine, run_id, 60) for run_id in run_ids))
    order = [run.event["data"]["n"] for run in sorted(done, key=lambda run: run.started_at)]
    assert set(order[:2]) == {6, 7} or set(order[1:3]) == {6, 7}, order  # the VIPs jump the queue
    assert order.index(6) < order.index(1) and order.index(7) < order.index(1), order


async def test_without_priority_the_queue_is_first_come_first_served(engine: Engine) -> None:
    await engine.create_skill(
        "busy", BUSY, triggers=[{"event": "job"}], config={"concurrency": [{"limit": 1}]}
    )
    run_ids = (await engine.send_events([{"name": "job", "data": {"n": n}} for n in range(8)])).run_ids
    done = await asyncio.gather(*(finished(engine, run_id, 60) for run_id in run_ids))
    assert [run.event["data"]["n"] for run in sorted(done, key=lambda run: run.started_at)] == list(range(8))


@pytest.mark.parametrize(
    ("priority", "match"), [({"run": "event.data."}, "priority.run"), ({"fn": "1"}, "run")]
)
async def test_bad_priority_is_refused(engine: Engine, priority: dict, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        await engine.create_skill("busy", BUSY, config={"priority": priority})
