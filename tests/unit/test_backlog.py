"""Back-pressure's admission arithmetic: the stored count, plus what was admitted since it was read."""

from __future__ import annotations

import pytest

from engine.backlog import REFRESH_SECONDS, Backlog
from engine.errors import BacklogFull


async def test_admits_up_to_the_limit_between_reads_then_rereads_the_store() -> None:
    stored, reads, clock = [7], [], [0.0]

    async def count() -> int:
        reads.append(clock[0])
        return stored[0]

    backlog = Backlog(10, count, lambda: clock[0])
    await backlog.admit(2)
    await backlog.admit(1)  # 7 stored + 3 admitted since the read = the limit
    with pytest.raises(BacklogFull, match="10 queued runs and unrouted events are waiting") as refused:
        await backlog.admit(1)
    assert refused.value.retry_after == 1.0
    assert reads == [0.0]  # one read served the whole burst
    stored[0], clock[0] = 2, REFRESH_SECONDS  # the backlog drained meanwhile
    await backlog.admit(8)
    assert reads == [0.0, REFRESH_SECONDS]
    with pytest.raises(BacklogFull):
        await backlog.admit(1)


async def test_no_limit_never_reads_the_store() -> None:
    async def count() -> int:
        raise AssertionError("read")

    await Backlog(None, count, lambda: 0.0).admit(1_000_000)
