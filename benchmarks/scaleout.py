"""Scale-out on PostgreSQL: real `stepkeeper worker` processes on one database.

- Throughput of 5-step runs with 1, 2 and 4 worker processes, the events sent by this process
  (an engine that stores and routes but runs nothing), timed from the first send to the last
  run's recorded end; reported beside the 1-worker figure.
- Event-to-first-step latency across processes: this process sends one event at a time, a
  worker process runs it, woken by LISTEN/NOTIFY; beside the same on a SQLite file, where the
  worker only finds the event at its next poll (1 s).

Each measurement gets a fresh schema (or SQLite file), dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg

from benchmarks.workloads import MAX_EVENTS_PER_SEND, WorkloadFailed, sequential_steps
from engine import Engine, SqlStore
from engine.postgres import scratch_schema

WORKER_COUNTS = (1, 2, 4)
READY_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 600.0
POLL_S = 0.1
FIRST_STEP = "def handler(ctx, step):\n    return step.run('first', lambda: 1)\n"


def unavailable(url: str) -> str | None:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {url} is not reachable: {exc}"


@asynccontextmanager
async def workers_on(db_url: str, count: int, folder: Path) -> AsyncIterator[list[subprocess.Popen[bytes]]]:
    """`count` worker processes, returned once each has said it is running."""
    env = {**os.environ, "STEPKEEPER_WORKERS": "2"}
    logs = [folder / f"worker-{n}.log" for n in range(count)]
    procs = []
    for log in logs:
        with log.open("wb") as sink:
            command = [sys.executable, "-m", "mcp_server", "--database-url", db_url, "worker"]
            procs.append(subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env))
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all("running on" in log.read_text() for log in logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise WorkloadFailed(f"workers did not start: {logs[0].read_text()[-2000:]}")
            await asyncio.sleep(POLL_S)
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


async def throughput(server_url: str, workers: int, runs: int) -> float:
    """Runs of 5 steps per second with `workers` worker processes."""
    with scratch_schema(server_url) as db_url, tempfile.TemporaryDirectory() as folder:
        sender = Engine(SqlStore(db_url))
        try:
            await sender.create_skill("five", sequential_steps(5), triggers=[{"event": "go"}])
            async with workers_on(db_url, workers, Path(folder)):
                await warm_up(sender, workers)
                sent_at = time.time()
                for offset in range(0, runs, MAX_EVENTS_PER_SEND):
                    count = min(MAX_EVENTS_PER_SEND, runs - offset)
                    await sender.send_events(
                        [{"name": "go", "data": {"n": offset + n}} for n in range(count)]
                    )
                last_end = await wait_completed(sender, "five", runs + workers * 4)
            return runs / (last_end - sent_at)
        finally:
            await sender.close()


async def warm_up(sender: Engine, workers: int) -> None:
    """A few runs per worker first, so that first-use costs are not charged to the workload."""
    await sender.send_events([{"name": "go", "data": {"warm": n}} for n in range(workers * 4)])
    await wait_completed(sender, "five", workers * 4)


async def wait_completed(engine: Engine, function: str, total: int) -> float:
    """Wait until `total` runs of `function` completed; the latest end time among them."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        facts = await asyncio.to_thread(engine.store.run_facts, function, None, total + 10)
        done = [fact.ended_at for fact in facts if fact.status == "completed" and fact.ended_at]
        if len(done) >= total:
            return max(done)
        if any(fact.status in ("failed", "cancelled") for fact in facts):
            raise WorkloadFailed(f"a run of {function} did not complete")
        if time.monotonic() > deadline:
            raise WorkloadFailed(f"{len(done)} of {total} runs completed in {RUN_TIMEOUT_S:.0f} s")
        await asyncio.sleep(POLL_S)


async def cross_process_latencies_ms(db_url: str, samples: int) -> list[float]:
    """One event at a time from this process; a worker process runs its first step."""
    with tempfile.TemporaryDirectory() as folder:
        sender = Engine(SqlStore(db_url))
        try:
            await sender.create_skill("first", FIRST_STEP, triggers=[{"event": "ping"}])
            async with workers_on(db_url, 1, Path(folder)):
                latencies = []
                for n in range(samples + 1):  # the first one warms the worker up
                    sent_at = time.time()
                    [run_id] = (await sender.send_event("ping")).run_ids
                    started = await first_step_started(sender, run_id)
                    if n:
                        latencies.append((started - sent_at) * 1000)
                return latencies
        finally:
            await sender.close()


async def first_step_started(engine: Engine, run_id: str) -> float:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        steps = await asyncio.to_thread(engine.store.load_steps, run_id)
        if steps and steps[0].started_at is not None:
            return steps[0].started_at
        await asyncio.sleep(0.002)
    raise WorkloadFailed(f"run {run_id} never started its first step")


async def measure(server_url: str, runs: int, latency_samples: int) -> dict[str, float]:
    """The scale-out figures, by name."""
    found: dict[str, float] = {}
    for count in WORKER_COUNTS:
        found[f"pg_throughput_{count}_workers_runs_per_s"] = await throughput(server_url, count, runs)
    with scratch_schema(server_url) as db_url:
        pg = await cross_process_latencies_ms(db_url, latency_samples)
    found["pg_notify_start_latency_p50_ms"] = statistics.median(pg)
    found["pg_notify_start_latency_p99_ms"] = percentile_99(pg)
    with tempfile.TemporaryDirectory() as folder:
        lite = await cross_process_latencies_ms(
            f"sqlite:///{Path(folder) / 'x.db'}", max(5, latency_samples // 5)
        )
    found["sqlite_poll_start_latency_p50_ms"] = statistics.median(lite)
    return found


def percentile_99(values: list[float]) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[98]
