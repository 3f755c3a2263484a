"""Back-pressure: refuse new work from outside while too much accepted work waits to start.

The count (queued runs plus unrouted events) is read from the store at most every
`REFRESH_SECONDS`; between reads the work admitted meanwhile is added, so a burst cannot slip
past the limit while the count is stale. Work that skill code creates (child runs, events sent
by steps) is never refused: it belongs to runs already accepted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from engine.errors import BacklogFull

DEFAULT_MAX_BACKLOG = 50_000
REFRESH_SECONDS = 0.25
RETRY_AFTER_SECONDS = 1.0


class Backlog:
    def __init__(
        self, limit: int | None, count: Callable[[], Awaitable[int]], now: Callable[[], float]
    ) -> None:
        self.limit = limit
        self._count = count
        self._now = now
        self._waiting = 0
        self._read_at: float | None = None

    async def admit(self, incoming: int) -> None:
        """Count `incoming` new items in, or raise BacklogFull (nothing is admitted then)."""
        if self.limit is None:
            return
        now = self._now()
        if self._read_at is None or now - self._read_at >= REFRESH_SECONDS:
            self._waiting = await self._count()
            self._read_at = now
        if self._waiting + incoming > self.limit:
            raise BacklogFull(self._waiting, self.limit, RETRY_AFTER_SECONDS)
        self._waiting += incoming
