"""Lists stay fast with history: 100,000 stored runs, then `list_runs` (newest first, filtered,
and a deep page) through the engine, and the dashboard's runs page through a real
`stepkeeper serve --http`, each timed as the median of repeated calls. SQLite's plan for the
list query is printed, to show it walks an index rather than sorting the table."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.scaleout import READY_TIMEOUT_S
from engine import Engine, SqlStore
from engine.ids import new_id
from engine.records import Run

FUNCTIONS = ("health-check", "triage", "notify", "review")
STATUSES = ("completed", "completed", "completed", "failed")
BATCH = 2000
REPEAT = 30
PLANNED = "SELECT * FROM runs WHERE function = ? AND status = ? ORDER BY created_at DESC, id DESC LIMIT 21"


def fill(store: SqlStore, count: int) -> None:
    """`count` finished runs over four skills, a second apart, in batches of one transaction."""
    start = time.time() - count
    for offset in range(0, count, BATCH):
        runs = []
        for n in range(offset, min(count, offset + BATCH)):
            at = start + n
            runs.append(
                Run(
                    id=new_id("run"),
                    function=FUNCTIONS[n % 4],
                    version=1,
                    trigger="event",
                    status=STATUSES[(n // 4) % 4],
                    event={"name": "e", "data": {"n": n}},
                    created_at=at,
                    updated_at=at,
                    started_at=at,
                    ended_at=at + 0.05,
                )
            )
        store.create_runs(runs)


async def timed_ms(call: object) -> float:
    samples = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        await call()  # type: ignore[operator]
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def measure(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="stepkeeper-history-") as folder:
        path = Path(folder) / "stepkeeper.db"
        engine = Engine(SqlStore(f"sqlite:///{path}"))
        await engine.migrate()
        await asyncio.to_thread(fill, engine.store, count)  # type: ignore[arg-type]
        deep = await engine.list_runs(limit=500)
        for _ in range(20):  # 10,000 runs back
            deep = await engine.list_runs(limit=500, cursor=deep.next_cursor)
        found = {
            "list_runs_newest_100k_ms": await timed_ms(lambda: engine.list_runs(limit=20)),
            "list_runs_filtered_100k_ms": await timed_ms(
                lambda: engine.list_runs(function="triage", status="failed", limit=20)
            ),
            "list_runs_deep_page_100k_ms": await timed_ms(
                lambda: engine.list_runs(limit=20, cursor=deep.next_cursor)
            ),
        }
        await engine.close()
        found["runs_page_100k_ms"] = await runs_page_ms(folder)
        print_plan(path)
        return found


async def runs_page_ms(home: str) -> float:
    port = 18000 + os.getpid() % 1000
    command = [sys.executable, "-m", "mcp_server", "serve", "--http", "--port", str(port)]
    env = {**os.environ, "STEPKEEPER_HOME": home, "STEPKEEPER_WORKERS": "1"}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while True:
                try:
                    if (await http.get("/runs")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not start")
                await asyncio.sleep(0.1)
            return await timed_ms(lambda: http.get("/runs", params={"skill": "triage", "status": "failed"}))
    finally:
        server.terminate()
        server.wait(timeout=20)


def print_plan(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        plan = connection.execute(f"EXPLAIN QUERY PLAN {PLANNED}", ("triage", "failed")).fetchall()
    print("plan of the filtered list: " + "; ".join(row[-1] for row in plan), file=sys.stderr)
