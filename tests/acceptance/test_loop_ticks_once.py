"""Real `stepkeeper worker` processes on one database (two on a SQLite file, three on
PostgreSQL): each tick of a loop fires once."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from engine import Engine, SqlStore

pytestmark = pytest.mark.slow
SKILL = "def handler(ctx, step):\n    return step.run('tick', lambda: ctx.event['ts'])\n"


def start_worker(db_url: str, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "mcp_server", "--database-url", db_url, "worker"]
    with log.open("ab") as sink:
        return subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)


async def test_workers_fire_each_tick_of_a_per_second_loop_once(shared_db_url: str, tmp_path: Path) -> None:
    db_url = shared_db_url
    count = 3 if db_url.startswith("postgresql") else 2
    offline = Engine(SqlStore(db_url))  # never started: it only stores and reads
    await offline.create_skill("tick", SKILL)
    workers = [start_worker(db_url, tmp_path / f"worker-{n}.log") for n in range(count)]
    try:
        await asyncio.sleep(1.5)  # both are up and polling
        loop = await offline.schedule_loop("tick", "* * * * * *", catch_up="none")  # every second
        await asyncio.sleep(5)
        await offline.update_loop(loop.id, paused=True)
        await asyncio.sleep(1.5)  # the last runs finish
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=20)
    runs = (await offline.list_runs(function="tick", limit=100)).runs
    await offline.close()
    ticks = Counter(run.event["ts"] for run in runs)
    assert len(ticks) >= 3, (tmp_path / "worker-0.log").read_text()[-2000:]
    assert max(ticks.values()) == 1, ticks  # no tick fired twice
    ordered = sorted(ticks)
    assert all(b - a == 1 for a, b in itertools.pairwise(ordered)), ordered  # none skipped
    assert all(run.status == "completed" for run in runs)
