"""`config.concurrency`: at most `limit` runs per key are running at any instant."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest

from engine import Engine, InvalidInput
from tests.conftest import finished
from tests.support.overlap import most_at_once

WORK = """
def handler(ctx, step):
    a = step.run("first", lambda: sum([i for i in range(20000)]))
    b = step.run("second", lambda: a + len(ctx.event["data"]["service"]))
    return b
"""


async def run_all(engine: Engine, count: int, keys: int) -> dict[str, list[tuple[float, float]]]:
    batch = [{"name": "work", "data": {"service": f"svc-{n % keys}", "n": n}} for n in range(count)]
    run_ids: list[str] = []
    for offset in range(0, count, 100):
        run_ids += (await engine.send_events(batch[offset : offset + 100])).run_ids
    done = await asyncio.gather(*(finished(engine, run_id, timeout=120) for run_id in run_ids))
    by_key: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for run in done:
        assert run.status == "completed", run.error
        by_key[run.event["data"]["service"]].append(await working_time(engine, run.id))
    return by_key


async def working_time(engine: Engine, run_id: str) -> tuple[float, float]:
    """From the first step's start to the last step's end, as the engine recorded them while
    the run held its lease: inside the time it was running. (The run's own `started_at` is the
    scheduler's reading of the clock just before it claimed, so it can be a little early.)"""
    steps = await asyncio.to_thread(engine.store.load_steps, run_id)
    return min(step.started_at for step in steps), max(step.ended_at for step in steps)


async def test_200_runs_over_5_keys_never_exceed_2_running_per_key(engine: Engine) -> None:
    config = {"concurrency": [{"limit": 2, "key": "event.data.service"}]}
    await engine.create_skill("work", WORK, triggers=[{"event": "work"}], config=config)
    by_key = await run_all(engine, 200, 5)
    assert sorted(by_key) == [f"svc-{n}" for n in range(5)]
    peaks = {key: most_at_once(intervals) for key, intervals in by_key.items()}
    assert max(peaks.values()) <= 2, peaks
    assert max(peaks.values()) == 2  # the limit is reached, so it is the limit that held them back


async def test_without_the_limit_the_same_runs_overlap_more(engine: Engine) -> None:
    """The control: the workload itself does run more than 2 per key at once when unlimited."""
    await engine.create_skill("work", WORK, triggers=[{"event": "work"}])
    by_key = await run_all(engine, 200, 5)
    assert max(most_at_once(intervals) for intervals in by_key.values()) > 2


async def test_sleeping_runs_hold_no_slot(engine: Engine) -> None:
    code = "def handler(ctx, step):\n    step.sleep('nap', 0.3)\n    return step.run('done', lambda: 1)\n"
    await engine.create_skill("napper", code, config={"concurrency": [{"limit": 1}]})
    runs = [await engine.invoke("napper") for _ in range(3)]
    await asyncio.sleep(0.2)
    statuses = sorted([(await engine.get_run(run.id)).status for run in runs])
    assert statuses == ["sleeping", "sleeping", "sleeping"]  # each slept, freeing the slot
    for run in runs:
        assert (await finished(engine, run.id)).status == "completed"


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"concurrency": [{"limit": 0}]}, "limit must be an integer"),
        ({"concurrency": [{"limit": 1, "key": "event.data."}]}, "concurrency\\[0\\].key"),
        ({"concurrency": [{"limit": 1}, {"limit": 2}, {"limit": 3}]}, "one or two"),
        ({"concurrency": [{"limit": 1, "scope": "env"}]}, "'limit' and optionally 'key'"),
    ],
)
async def test_bad_concurrency_config_is_refused(engine: Engine, config: dict, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        await engine.create_skill("work", WORK, config=config)
