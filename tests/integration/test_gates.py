"""idempotency, rate_limit and singleton: runs that may not start are stored as `skipped`, with
the reason, in the transaction that routes their event."""

from __future__ import annotations

import pytest

from engine import Engine, InvalidInput, ManualClock
from tests.conftest import finished, wait_status

QUICK = "def handler(ctx, step):\n    return step.run('one', lambda: ctx.event['data'])\n"
NAPPER = "def handler(ctx, step):\n    step.sleep('nap', '1h')\n    return 1\n"


async def send(engine: Engine, data: dict) -> str:
    [run_id] = (await engine.send_event("go", data)).run_ids
    return run_id


async def test_idempotency_keeps_one_run_per_key_per_day(manual_engine: Engine, clock: ManualClock) -> None:
    await manual_engine.create_skill(
        "pay", QUICK, triggers=[{"event": "go"}], config={"idempotency": "event.data.order"}
    )
    first = await send(manual_engine, {"order": "o-1"})
    again = await send(manual_engine, {"order": "o-1"})
    other = await send(manual_engine, {"order": "o-2"})
    assert (await finished(manual_engine, first)).status == "completed"
    skipped = await manual_engine.get_run(again)
    assert (
        skipped.status == "skipped"
        and skipped.cancel_reason == f"idempotency key 'o-1' was used by run {first}"
    )
    assert (await finished(manual_engine, other)).status == "completed"
    clock.advance(24 * 3600 + 1)
    assert (await finished(manual_engine, await send(manual_engine, {"order": "o-1"}))).status == "completed"


async def test_rate_limit_skips_the_excess_within_the_period(
    manual_engine: Engine, clock: ManualClock
) -> None:
    config = {"rate_limit": {"limit": 2, "period": "1m", "key": "event.data.user"}}
    await manual_engine.create_skill("notify", QUICK, triggers=[{"event": "go"}], config=config)
    runs = [await send(manual_engine, {"user": "u"}) for _ in range(4)] + [
        await send(manual_engine, {"user": "v"})
    ]
    statuses = [(await finished(manual_engine, run_id)).status for run_id in runs]
    assert statuses == ["completed", "completed", "skipped", "skipped", "completed"]
    assert (
        await manual_engine.get_run(runs[2])
    ).cancel_reason == "rate limit of 2 per 60s reached for key 'u'"
    clock.advance(61)
    assert (await finished(manual_engine, await send(manual_engine, {"user": "u"}))).status == "completed"


async def test_singleton_skip_and_cancel_modes(manual_engine: Engine) -> None:
    await manual_engine.create_skill(
        "sync", NAPPER, triggers=[{"event": "go"}], config={"singleton": {"key": "event.data.repo"}}
    )
    held = await send(manual_engine, {"repo": "a"})
    await wait_status(manual_engine, held, "sleeping")
    second = await send(manual_engine, {"repo": "a"})
    assert (await manual_engine.get_run(second)).status == "skipped"
    await manual_engine.update_skill(
        "sync", config={"singleton": {"key": "event.data.repo", "mode": "cancel"}}
    )
    newest = await send(manual_engine, {"repo": "a"})
    replaced = await manual_engine.get_run(held)
    assert (
        replaced.status == "cancelled"
        and replaced.cancel_reason == f"replaced by run {newest} (singleton key 'a')"
    )
    await wait_status(manual_engine, newest, "sleeping")


async def test_skipped_runs_are_listed_by_status(manual_engine: Engine) -> None:
    await manual_engine.create_skill(
        "pay", QUICK, triggers=[{"event": "go"}], config={"idempotency": "'always'"}
    )
    await send(manual_engine, {})
    skipped = await send(manual_engine, {})
    assert [run.id for run in (await manual_engine.list_runs(status="skipped")).runs] == [skipped]


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"idempotency": "event.data."}, "config.idempotency"),
        ({"rate_limit": {"limit": 2}}, "'limit', 'period'"),
        ({"rate_limit": {"limit": 2, "period": "soon"}}, "rate_limit.period"),
        ({"singleton": {"mode": "queue"}}, "skip or cancel"),
        ({"throttle": {"limit": "x", "period": "1m"}}, "throttle.limit must be an integer"),
        ({"throttle": {"limit": 1, "period": "1m", "burst": -1}}, "throttle.burst"),
        ({"debounce": {"period": 0}}, "debounce.period must be longer than zero"),
        ({"batch_events": {"max_size": 500, "timeout": "1m"}}, "max_size must be an integer from 1 to 100"),
        ({"batch_events": {"max_size": 5}}, "'max_size', 'timeout'"),
    ],
)
async def test_bad_gates_are_refused(manual_engine: Engine, config: dict, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        await manual_engine.create_skill("pay", QUICK, config=config)


async def test_throttle_delays_the_excess_instead_of_dropping_it(
    manual_engine: Engine, clock: ManualClock
) -> None:
    config = {"throttle": {"limit": 2, "period": "1m", "burst": 1}}
    await manual_engine.create_skill("sync", QUICK, triggers=[{"event": "go"}], config=config)
    runs = [await send(manual_engine, {"n": n}) for n in range(5)]
    for run_id in runs[:3]:  # limit 2 + burst 1 start at once
        assert (await finished(manual_engine, run_id)).status == "completed"
    waiting = [await manual_engine.get_run(run_id) for run_id in runs[3:]]
    assert [run.status for run in waiting] == ["queued", "queued"]
    assert all(run.cancel_reason.startswith("throttled: start delayed by") for run in waiting)
    assert waiting[0].wake_at == pytest.approx(clock.now() + 60, abs=1)
    clock.advance(61)
    for run_id in runs[3:]:
        assert (await finished(manual_engine, run_id)).status == "completed"


EVENTS = "def handler(ctx, step):\n    return [e['data']['n'] for e in ctx.events]\n"


async def test_debounce_runs_once_with_the_last_event(manual_engine: Engine, clock: ManualClock) -> None:
    config = {"debounce": {"period": "30s", "key": "event.data.doc", "timeout": "2m"}}
    await manual_engine.create_skill("index", EVENTS, triggers=[{"event": "go"}], config=config)
    first = await send(manual_engine, {"doc": "d", "n": 1})
    for n in (2, 3):
        clock.advance(20)  # each event within the period pushes the run back
        folded = await manual_engine.get_run(await send(manual_engine, {"doc": "d", "n": n}))
        assert (
            folded.status == "skipped"
            and folded.cancel_reason == f"debounced: run {first} runs with this event instead"
        )
    assert (await manual_engine.get_run(first)).status == "queued"
    clock.advance(31)
    done = await finished(manual_engine, first)
    assert done.output == [3] and done.event["data"]["n"] == 3


async def test_batch_events_hands_one_run_the_batch(manual_engine: Engine, clock: ManualClock) -> None:
    config = {"batch_events": {"max_size": 3, "timeout": "1m"}}
    await manual_engine.create_skill("bulk", EVENTS, triggers=[{"event": "go"}], config=config)
    ids = [await send(manual_engine, {"n": n}) for n in range(4)]
    full = await finished(manual_engine, ids[0])  # three events fill the batch: it starts at once
    assert full.output == [0, 1, 2]
    assert [(await manual_engine.get_run(i)).status for i in ids[1:3]] == ["skipped", "skipped"]
    assert (await manual_engine.get_run(ids[3])).status == "queued"  # a new batch, waiting
    clock.advance(61)
    assert (await finished(manual_engine, ids[3])).output == [3]
