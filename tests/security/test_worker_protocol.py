"""The worker's side of the channel, read frame by frame from a real confined worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.pool import Worker, WorkerPool
from sandbox.process_runner import ProcessRunner

SKILL = """
def handler(ctx, step):
    step.run("brief", lambda: 1)
    return step.run("slow", lambda: len([i * i for i in range(900000)]))
"""


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    pool = WorkerPool()
    yield pool
    pool.close()


def read(worker: Worker) -> tuple[float, dict[str, Any]]:
    message = worker.channel.receive(timeout=30)
    return time.monotonic(), message


def test_a_brief_steps_notice_rides_with_its_result_and_a_slow_ones_goes_ahead(pool: WorkerPool) -> None:
    runner = ProcessRunner()
    try:
        compiled = runner.prepare(SKILL).compiled
    finally:
        runner.close()
    event = {"id": "evt_1", "name": "test", "data": {}, "ts": 0.0}
    activation = {"run_id": "run_1", "function": "t", "version": 1, "event": event, "memo": {}}
    worker = pool.acquire()
    try:
        worker.channel.send({"cmd": "run", "code": compiled, "activation": activation})
        _, notice = read(worker)
        _, result = read(worker)
        assert notice["notify"]["op"] == "step_start" and notice["notify"]["key"] == "brief"
        assert 0 < notice["notify"]["elapsed"] < 0.002  # held back, then sent with the result
        assert result["call"]["key"] == "brief" and result["call"]["status"] == "completed"
        worker.channel.send({"action": "continue"})
        noticed_at, notice = read(worker)
        finished_at, result = read(worker)
        assert notice["notify"]["key"] == "slow" and notice["notify"]["elapsed"] >= 0.002
        assert result["call"]["key"] == "slow" and finished_at - noticed_at > 0.01  # sent ahead, alone
        worker.channel.send({"action": "continue"})
        _, outcome = read(worker)
        assert outcome == {"outcome": {"status": "completed", "output": 900000}}
    finally:
        pool.release(worker)
