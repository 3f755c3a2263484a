"""The workloads on stepkeeper, each on a fresh SQLite file in the temp dir.

Times are taken from the engine's own records (epoch seconds, `time.time()`, the engine's
`SystemClock`) where they are more precise than polling for a result would be.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from benchmarks.memory import PeakMemory
from engine import Engine, SqlStore
from engine.records import Run

LATENCY_GAP_SECONDS = 0.01  # between latency samples: one event at a time, not a burst
RUN_TIMEOUT_SECONDS = 600.0
MAX_EVENTS_PER_SEND = 100  # engine.limits.MAX_EVENTS_PER_SEND
KEYED_THROUGHPUT = {"concurrency": [{"limit": 5, "key": "event.data.service"}]}


class WorkloadFailed(RuntimeError):
    """A run under measurement did not complete; the figure would be meaningless."""


def sequential_steps(count: int) -> str:
    """A skill of `count` trivial sequential steps, all with the same id."""
    return (
        "def handler(ctx, step):\n"
        f"    for i in range({count}):\n"
        "        step.run('s', lambda: i)\n"
        f"    return {count}\n"
    )


class Stepkeeper:
    """The engine under test, as the suite's `Contender`."""

    name = "stepkeeper"

    async def step_overhead_ms(self, steps: int) -> float:
        """Milliseconds per checkpointed step: one run of `steps` trivial steps, invoke to end."""
        async with fresh_engine() as engine:
            await engine.create_skill("steps", sequential_steps(steps))
            sent_at = time.time()
            run = await engine.invoke("steps", wait=True, timeout=RUN_TIMEOUT_SECONDS)
            return (ended_at(run) - sent_at) * 1000 / steps

    def __init__(self) -> None:
        self.last_peak_mb: float | None = None

    async def throughput_runs_per_s(self, runs: int) -> float:
        """Runs of 5 steps completed per second, all sent as events at once; the peak memory of
        the engine and its sandbox processes during it is kept in `last_peak_mb`."""
        with PeakMemory() as peak:
            found = await self._throughput(runs, {})
        self.last_peak_mb = peak.mb
        return found

    async def keyed_throughput_runs_per_s(self, runs: int) -> float:
        """The same under `concurrency: [{limit: 5, key: event.data.service}]` over 10 services."""
        return await self._throughput(runs, KEYED_THROUGHPUT)

    async def recovery(self) -> tuple[float, int]:
        from benchmarks.recovery import recovery  # it uses this module's WorkloadFailed

        return await recovery()

    async def _throughput(self, runs: int, config: dict[str, Any]) -> float:
        async with fresh_engine() as engine:
            await engine.create_skill("five", sequential_steps(5), triggers=[{"event": "go"}], config=config)
            sent_at = time.time()
            run_ids: list[str] = []
            for offset in range(0, runs, MAX_EVENTS_PER_SEND):
                count = min(MAX_EVENTS_PER_SEND, runs - offset)
                data = [{"n": offset + n, "service": f"svc-{(offset + n) % 10}"} for n in range(count)]
                batch = [{"name": "go", "data": item} for item in data]
                run_ids.extend((await engine.send_events(batch)).run_ids)
            if len(run_ids) != runs:
                raise WorkloadFailed(f"{runs} events started {len(run_ids)} runs")
            finished = [await engine.wait_for_run(run_id, RUN_TIMEOUT_SECONDS) for run_id in run_ids]
            return runs / (max(ended_at(run) for run in finished) - sent_at)

    async def start_latencies_ms(self, samples: int, config: dict[str, Any] | None = None) -> list[float]:
        """Per event, sequentially: from just before `send_event` to the first step body."""
        async with fresh_engine() as engine:
            code = "def handler(ctx, step):\n    return step.run('first', lambda: 1)\n"
            await engine.create_skill("first", code, triggers=[{"event": "ping"}], config=config or {})
            latencies = []
            for _ in range(samples):
                latencies.append(await first_step_latency_ms(engine, "ping"))
                await asyncio.sleep(LATENCY_GAP_SECONDS)
            return latencies


@asynccontextmanager
async def fresh_engine() -> AsyncIterator[Engine]:
    """A started engine on a new database, warmed up by one small run, so that per-process
    first-use costs (compiling SQL statements, importing) are not charged to the workload."""
    with tempfile.TemporaryDirectory(prefix="stepkeeper-bench-") as folder:
        async with Engine(SqlStore(f"sqlite:///{Path(folder) / 'bench.db'}")) as engine:
            await engine.create_skill("warm-up", sequential_steps(5))
            ended_at(await engine.invoke("warm-up", wait=True, timeout=RUN_TIMEOUT_SECONDS))
            yield engine


async def first_step_latency_ms(engine: Engine, event: str) -> float:
    sent_at = time.time()
    [run_id] = (await engine.send_event(event)).run_ids
    ended_at(await engine.wait_for_run(run_id, RUN_TIMEOUT_SECONDS))
    steps = await asyncio.to_thread(engine.store.load_steps, run_id)
    if not steps or steps[0].started_at is None:
        raise WorkloadFailed(f"run {run_id} recorded no start for its first step")
    return (steps[0].started_at - sent_at) * 1000


def ended_at(run: Run) -> float:
    """When a completed run ended; anything else is a failed measurement."""
    if run.status != "completed" or run.ended_at is None:
        raise WorkloadFailed(f"run {run.id} of {run.function!r} is {run.status}: {run.error}")
    return run.ended_at
