"""get_stats: the figures a review loop reads, computed from the runs as stored."""

from __future__ import annotations

from engine import Engine

ONCE_FLAKY = """
def handler(ctx, step):
    return step.run("shaky", lambda: shaky(ctx.attempt))

def shaky(attempt):
    if attempt == 0:
        raise RuntimeError("first try fails")
    return attempt
"""


async def test_stats_count_retries_and_scope_by_skill_and_time(engine: Engine) -> None:
    config = {"retries": 2, "retry_backoff": {"initial": "0s"}}
    await engine.create_skill("shaky", ONCE_FLAKY, config=config)
    await engine.create_skill("calm", "def handler(ctx, step):\n    return 1\n")
    for _ in range(3):
        assert (await engine.invoke("shaky", wait=True, timeout=20)).status == "completed"
    await engine.invoke("calm", wait=True, timeout=20)
    everything = await engine.get_stats()
    assert set(everything) == {"shaky", "calm"}
    assert everything["shaky"]["retries"] == 3 and everything["calm"]["retries"] == 0
    assert everything["shaky"]["success_rate"] == 1.0
    assert set(await engine.get_stats(function="calm")) == {"calm"}
    assert await engine.get_stats(since=engine.clock.now() + 60) == {}
