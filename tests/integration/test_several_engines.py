"""Several engines on one database (several server processes) never run the same work twice."""

from __future__ import annotations

import asyncio
from collections import Counter

from tests.conftest import EngineFactory, finished
from tests.support.recorder import Recorder

WORK = """
def handler(ctx, step):
    n = ctx.event["data"]["n"]
    for part in ["a", "b", "c"]:
        step.run(part, lambda: http.post("BASE/" + str(n) + "/" + part).status_code)
    return n
"""


async def test_two_engines_share_the_queue_without_duplicates(
    make_engine: EngineFactory, recorder: Recorder
) -> None:
    first, second = make_engine(concurrency=4), make_engine(concurrency=4)
    await first.start()
    await second.start()
    await first.create_skill("work", WORK.replace("BASE", recorder.base), triggers=[{"event": "job"}])
    sent = await asyncio.gather(
        *[(first if n % 2 else second).send_event("job", {"n": n}) for n in range(40)]
    )
    run_ids = [run_id for result in sent for run_id in result.run_ids]
    assert len(run_ids) == 40
    outputs = {(await finished(first, run_id, timeout=30)).output for run_id in run_ids}
    assert outputs == set(range(40))
    calls = Counter(recorder.paths())
    assert len(calls) == 120 and set(calls.values()) == {1}
