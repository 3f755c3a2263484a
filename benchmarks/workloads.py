"""The workloads, each on a fresh SQLite file, measured in wall-clock time on this machine."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from engine import Engine, SqlStore

TRIVIAL_STEPS = (
    "def handler(ctx, step):\n    for i in range(N):\n        step.run('s', lambda: i)\n    return N\n"
)
FIRST_STEP = "def handler(ctx, step):\n    return step.run('first', lambda: 1)\n"


@dataclass(frozen=True)
class Sizes:
    steps: int  # steps in the one long run
    runs: int  # runs of 5 steps started together
    latency_samples: int
    commits: int  # bare SQLite commits for the baseline


QUICK = Sizes(steps=300, runs=200, latency_samples=50, commits=300)
FULL = Sizes(steps=1000, runs=500, latency_samples=200, commits=1000)


@asynccontextmanager
async def fresh_engine() -> AsyncIterator[Engine]:
    """A started engine on a new database, warmed up by one small run (first-use costs such as
    compiling SQL statements are paid once per process, not per step)."""
    with tempfile.TemporaryDirectory(prefix="stepkeeper-bench-") as folder:
        async with Engine(SqlStore(f"sqlite:///{Path(folder) / 'bench.db'}")) as engine:
            await engine.create_skill("warm-up", TRIVIAL_STEPS.replace("N", "5"))
            await engine.invoke("warm-up", wait=True, timeout=60)
            yield engine


async def step_overhead_ms(sizes: Sizes) -> float:
    """Milliseconds per checkpointed step: one run of N trivial steps, invoke to completion."""
    async with fresh_engine() as engine:
        await engine.create_skill("steps", TRIVIAL_STEPS.replace("N", str(sizes.steps)))
        started = time.perf_counter()
        run = await engine.invoke("steps", wait=True, timeout=600)
        elapsed = time.perf_counter() - started
        assert run.status == "completed", run.error
        return elapsed * 1000 / sizes.steps


async def throughput_runs_per_s(sizes: Sizes) -> float:
    """Runs of 5 steps completed per second, all started together by one batch of events."""
    async with fresh_engine() as engine:
        code = TRIVIAL_STEPS.replace("N", "5")
        await engine.create_skill("five", code, triggers=[{"event": "go"}])
        started = time.perf_counter()
        run_ids: list[str] = []
        for offset in range(0, sizes.runs, 100):
            batch = [{"name": "go", "data": {"n": n}} for n in range(offset, min(offset + 100, sizes.runs))]
            run_ids.extend((await engine.send_events(batch)).run_ids)
        for run_id in run_ids:
            run = await engine.wait_for_run(run_id, timeout=600)
            assert run.status == "completed", run.error
        return sizes.runs / (time.perf_counter() - started)


async def start_latencies_ms(sizes: Sizes) -> list[float]:
    """From just before `send_event` to the moment the first step body starts, per event."""
    async with fresh_engine() as engine:
        await engine.create_skill("first", FIRST_STEP, triggers=[{"event": "ping"}])
        samples = []
        for _ in range(sizes.latency_samples):
            sent_at = time.time()
            [run_id] = (await engine.send_event("ping")).run_ids
            await engine.wait_for_run(run_id, timeout=30)
            [first] = await asyncio.to_thread(engine.store.load_steps, run_id)
            assert first.started_at is not None
            samples.append((first.started_at - sent_at) * 1000)
            await asyncio.sleep(0.005)  # one event at a time, not a burst
        return sorted(samples)


def sqlite_commit_ms(sizes: Sizes) -> float:
    """The floor: one row inserted and committed by bare sqlite3, WAL with synchronous=FULL."""
    with tempfile.TemporaryDirectory(prefix="stepkeeper-bench-") as folder:
        connection = sqlite3.connect(Path(folder) / "floor.db", isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        started = time.perf_counter()
        for n in range(sizes.commits):
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO t (body) VALUES (?)", (f"step {n}",))
            connection.execute("COMMIT")
        elapsed = time.perf_counter() - started
        connection.close()
        return elapsed * 1000 / sizes.commits


def percentile(sorted_samples: list[float], fraction: float) -> float:
    index = min(len(sorted_samples) - 1, round(fraction * (len(sorted_samples) - 1)))
    return sorted_samples[index]
