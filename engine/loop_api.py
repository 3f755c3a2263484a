"""The facade's loop and statistics calls, mixed into `Engine` (engine/engine.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from engine import loops, stats
from engine.clock import Clock
from engine.errors import LoopNotFound
from engine.records import Loop
from engine.run_history import since_time
from engine.runtime import Runtime
from engine.scheduler import Scheduler
from engine.skills import check_skill_name
from engine.store import Store


class LoopsAndStats:
    """Needs the engine's `store`, `clock`, `rt`, `scheduler` and `_io`."""

    store: Store
    clock: Clock
    rt: Runtime
    scheduler: Scheduler | None
    _io: Callable[..., Awaitable[Any]]

    async def schedule_loop(
        self,
        skill: str,
        cron: str,
        timezone: str = "UTC",
        data: dict[str, Any] | None = None,
        name: str | None = None,
        catch_up: str = "latest",
    ) -> Loop:
        """Start `skill` on every tick of `cron` in `timezone`, with `data` as the event data."""
        loop = loops.new_loop(skill, cron, timezone, data, name, catch_up, self.clock.now())
        await self._io(loops.require_skill, self.rt, skill)
        await self._io(self.store.add_loop, loop)
        self._loops_changed()
        return loop

    async def list_loops(self, skill: str | None = None) -> list[Loop]:
        return await self._io(self.store.list_loops, skill)

    async def get_loop(self, loop_id: str) -> Loop:
        found = await self._io(self.store.get_loop, loop_id) if isinstance(loop_id, str) else None
        if found is None:
            raise LoopNotFound(str(loop_id))
        return found

    async def update_loop(self, loop_id: str, **changes: Any) -> Loop:
        """Change a loop's cron, timezone, data, catch_up or pause it (`paused=True`/`False`)."""
        loop = loops.changed_loop(await self.get_loop(loop_id), changes, self.clock.now())
        if not await self._io(self.store.save_loop, loop):
            raise LoopNotFound(loop_id)
        self._loops_changed()
        return loop

    async def delete_loop(self, loop_id: str) -> None:
        loop = await self.get_loop(loop_id)
        await self._io(self.store.delete_loops, [loop.id])
        self._loops_changed()

    @staticmethod
    def upcoming_ticks(loop: Loop, count: int = 3) -> list[float]:
        """A loop's next fire times (epoch seconds); none while it is paused."""
        return loops.upcoming(loop, count)

    async def get_stats(
        self, function: str | None = None, since: str | float | None = None
    ) -> dict[str, Any]:
        """Per skill: runs by status, success rate, p50/p95 duration, retries, top errors.
        `since` is an ISO-8601 time, epoch seconds, or a duration back from now (`7d`)."""
        if function is not None:
            check_skill_name(function)
        start = None if since is None else self._since(since)
        facts = await self._io(self.store.run_facts, function, start, stats.MAX_STATS_RUNS)
        return stats.skill_stats(facts)

    def _since(self, since: str | float) -> float:
        return since_time(since, self.clock.now())

    def _loops_changed(self) -> None:
        if self.scheduler is not None:
            self.scheduler.loops_changed()
