"""Scale-out on PostgreSQL: three real `stepkeeper worker` processes share one database.

1,000 runs of a three-step skill under `concurrency: [{limit: 3, key: "event.data.group"}]`,
started by events another process sends; one worker is killed with SIGKILL once a third of the
step bodies have run. Checked afterwards, from the store and from the loopback server's log of
every step body (each call is held 10 ms, so the log has the span it was in progress):
- every run completed with its three steps stored;
- no stored step ran again: no call for a step arrived after that step's stored end;
- at no instant were more than 3 calls of one group in progress, across all workers;
- work ran in parallel (more than 3 calls at once overall), so the limit was what held it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from engine import Engine, SqlStore
from tests.support.overlap import most_at_once
from tests.support.postgres import database_url
from tests.support.recorder import Recorder

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

RUNS, GROUPS, LIMIT, STEPS, WORKERS = 1000, 4, 3, 3, 3
SKILL = """
def handler(ctx, step):
    data = ctx.event["data"]
    for i in range(STEPS):
        step.run("s" + str(i), lambda: post(ctx.run_id, i, data["group"]))
    return data["n"]

def post(run_id, i, group):
    return http.post("BASE/work", json={"run": run_id, "step": i, "group": group}).status_code
"""


def start_worker(db_url: str, recorder: Recorder, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "mcp_server", "--database-url", db_url, "worker"]
    env = {
        **os.environ,
        "STEPKEEPER_HTTP_ALLOW": recorder.allow,
        "STEPKEEPER_WORKERS": "2",
        "STEPKEEPER_LEASE_SECONDS": "3",
    }
    with log.open("ab") as sink:
        return subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)


async def wait_all_completed(engine: Engine, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        by_status = (await engine.get_stats(function="work")).get("work", {}).get("by_status", {})
        if by_status.get("completed", 0) == RUNS or time.monotonic() > deadline:
            return by_status
        await asyncio.sleep(0.5)


async def test_three_workers_survive_a_sigkill_and_hold_a_shared_concurrency_limit(
    tmp_path: Path, recorder: Recorder
) -> None:
    with database_url("postgresql", tmp_path) as db_url:
        await run_the_workload(db_url, tmp_path, recorder)


async def run_the_workload(db_url: str, tmp_path: Path, recorder: Recorder) -> None:
    offline = Engine(SqlStore(db_url))  # never started: it stores events and reads
    code = SKILL.replace("STEPS", str(STEPS)).replace("BASE", recorder.base)
    config = {"concurrency": [{"limit": LIMIT, "key": "event.data.group"}]}
    await offline.create_skill("work", code, triggers=[{"event": "job"}], config=config)
    workers = [start_worker(db_url, recorder, tmp_path / f"worker-{n}.log") for n in range(WORKERS)]
    recorder.hold = 0.01
    killed_at: list[float] = []
    calls = [0]
    lock = threading.Lock()

    def kill_a_third_of_the_way(_: str) -> None:
        with lock:
            calls[0] += 1
            if calls[0] == RUNS * STEPS // 3 and not killed_at:
                os.kill(workers[0].pid, signal.SIGKILL)
                killed_at.append(time.time())

    recorder.on_call = kill_a_third_of_the_way
    try:
        await asyncio.sleep(2)  # the workers are up and listening
        for first in range(0, RUNS, 100):
            batch = [
                {"name": "job", "data": {"n": n, "group": f"g{n % GROUPS}"}}
                for n in range(first, first + 100)
            ]
            await offline.send_events(batch)
        by_status = await wait_all_completed(offline, timeout=300)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
    log_tail = (tmp_path / "worker-1.log").read_text()[-3000:]
    assert by_status == {"completed": RUNS}, (by_status, log_tail)
    assert killed_at and workers[0].returncode == -signal.SIGKILL

    # No stored step ran again: every call for a step arrived before the step's stored end.
    arrivals: dict[tuple[str, str], list[float]] = defaultdict(list)
    for _, payload, start, _ in recorder.spans:
        arrivals[(payload["run"], f"s{payload['step']}")].append(start)
    store = offline.store
    page = await offline.list_runs(function="work", limit=500)
    run_ids = {run.id for run in page.runs}
    while page.next_cursor:
        page = await offline.list_runs(function="work", limit=500, cursor=page.next_cursor)
        run_ids.update(run.id for run in page.runs)
    assert len(run_ids) == RUNS
    repeated_after_store, ran_twice = 0, 0
    for run_id in run_ids:
        stored = await asyncio.to_thread(store.load_steps, run_id)
        assert [s.key for s in stored] == [f"s{i}" for i in range(STEPS)]
        for step in stored:
            seen = arrivals[(run_id, step.key)]
            assert seen, (run_id, step.key)
            ran_twice += len(seen) > 1
            repeated_after_store += sum(1 for at in seen if at > step.ended_at)
    assert repeated_after_store == 0
    assert ran_twice <= 16  # at most the killed worker's activations that were inside a step

    # The limit held across the workers; and without it more would have run at once.
    by_group: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _, payload, start, end in recorder.spans:
        by_group[payload["group"]].append((start, end))
    most = {group: most_at_once(spans) for group, spans in by_group.items()}
    assert max(most.values()) <= LIMIT, most
    overall = most_at_once([span for spans in by_group.values() for span in spans])
    assert overall > LIMIT, overall
    print(
        f"runs={RUNS} calls={len(recorder.spans)} ran_twice={ran_twice} most_per_group={most} "
        f"most_overall={overall} kill_after_calls={RUNS * STEPS // 3}"
    )
    await offline.close()
