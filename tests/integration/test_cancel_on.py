"""`config.cancel_on`: an incoming event cancels matching runs, sleeping and waiting ones too."""

from __future__ import annotations

import pytest

from engine import Engine, InvalidInput, ManualClock
from tests.conftest import wait_status

ORDER = """
def handler(ctx, step):
    step.sleep("cool-off", "1h")
    return step.wait_for_event("approval", event="order.approved", timeout="1d")
"""
RULE = {"event": "order.cancelled", "if": "async.data.order == event.data.order"}


async def start(engine: Engine, order: str) -> str:
    [run_id] = (await engine.send_event("order.placed", {"order": order})).run_ids
    return run_id


async def test_a_matching_event_cancels_a_sleeping_run_and_no_other(manual_engine: Engine) -> None:
    await manual_engine.create_skill(
        "order", ORDER, triggers=[{"event": "order.placed"}], config={"cancel_on": [RULE]}
    )
    first, second = await start(manual_engine, "o-1"), await start(manual_engine, "o-2")
    await wait_status(manual_engine, first, "sleeping")
    await wait_status(manual_engine, second, "sleeping")
    sent = await manual_engine.send_event("order.cancelled", {"order": "o-1"})
    cancelled = await wait_status(manual_engine, first, "cancelled")
    assert cancelled.cancel_reason == f"cancelled by event order.cancelled ({sent.event_ids[0]})"
    assert (await manual_engine.get_run(second)).status == "sleeping"


async def test_a_waiting_run_is_cancelled_and_the_rule_timeout_bounds_it(
    manual_engine: Engine, clock: ManualClock
) -> None:
    code = "def handler(ctx, step):\n    return step.wait_for_event('w', event='never.sent')\n"
    rule = {**RULE, "timeout": "10m"}
    await manual_engine.create_skill(
        "order", code, triggers=[{"event": "order.placed"}], config={"cancel_on": [rule]}
    )
    early = await start(manual_engine, "o-1")
    await wait_status(manual_engine, early, "waiting")
    await manual_engine.send_event("order.cancelled", {"order": "o-1"})
    await wait_status(manual_engine, early, "cancelled")
    late = await start(manual_engine, "o-2")
    await wait_status(manual_engine, late, "waiting")
    clock.advance(11 * 60)
    await manual_engine.send_event("order.cancelled", {"order": "o-2"})
    await manual_engine.send_event("ping", {})  # routed after the cancel event: the cancel was decided
    assert (await manual_engine.get_run(late)).status == "waiting"  # the rule's 10 minutes were over


@pytest.mark.parametrize(
    ("cancel_on", "match"),
    [
        ([{"if": "true"}], "'event'"),
        ([{"event": "x", "if": "async.data."}], "cancel_on\\[0\\]"),
        ([{"event": "bad name!"}], "invalid event name"),
        ([{"event": "x", "timeout": "soon"}], "cancel_on\\[0\\]"),
    ],
)
async def test_bad_cancel_on_is_refused(manual_engine: Engine, cancel_on: list, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        await manual_engine.create_skill("order", ORDER, config={"cancel_on": cancel_on})
