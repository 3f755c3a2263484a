"""A real `stepkeeper worker` process is killed with SIGKILL mid-run; a new one finishes the run.

The loopback HTTP server is the external side-effect log: it proves steps 1..k, stored before
the kill, ran exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from engine import Engine, SqlStore
from tests.support.model_server import ModelServer, Reply
from tests.support.recorder import Recorder

STEPS = 6
SKILL = """
def handler(ctx, step):
    total = 0
    for i in range(1, STEPS + 1):
        total += step.run("step-" + str(i), lambda: call(i))
    return total

def call(i):
    return http.post("BASE/step/" + str(i), json={"i": i}).json()["got"]["i"]
"""

pytestmark = pytest.mark.slow


def start_worker(
    db_url: str, recorder: Recorder, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "mcp_server",
        "--database-url",
        db_url,
        "--http-allow",
        recorder.allow,
        "worker",
    ]
    with log.open("ab") as sink:
        return subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )


async def wait_final(engine: Engine, run_id: str, timeout: float) -> str:
    for _ in range(int(timeout / 0.05)):
        status = (await engine.get_run(run_id)).status
        if status in ("completed", "failed", "cancelled"):
            return status
        await asyncio.sleep(0.05)
    return (await engine.get_run(run_id)).status


async def a_new_worker_completes(
    offline: Engine,
    run_id: str,
    db_url: str,
    recorder: Recorder,
    tmp_path: Path,
    env: dict[str, str] | None = None,
) -> None:
    """Start a second worker, wait for the run to complete, stop the worker cleanly."""
    survivor = start_worker(db_url, recorder, tmp_path / "worker2.log", env)
    try:
        status = await wait_final(offline, run_id, timeout=30)
    finally:
        survivor.send_signal(signal.SIGTERM)
        survivor.wait(10)
    assert status == "completed", (tmp_path / "worker2.log").read_text()
    assert survivor.returncode == 0


@pytest.mark.parametrize("k", [1, 4])
async def test_sigkill_after_k_steps_then_a_new_process_completes_the_run(
    tmp_path: Path, recorder: Recorder, k: int
) -> None:
    db_url = f"sqlite:///{tmp_path / 'crash.db'}"
    offline = Engine(SqlStore(db_url))  # never started: it only stores and reads
    await offline.migrate()
    await offline.create_skill("six", SKILL.replace("STEPS", str(STEPS)).replace("BASE", recorder.base))
    run = await offline.invoke("six")

    killed = threading.Event()
    worker = start_worker(db_url, recorder, tmp_path / "worker1.log")

    def kill_on_step(path: str) -> None:
        if path == f"/step/{k + 1}" and not killed.is_set():
            os.kill(worker.pid, signal.SIGKILL)  # step k+1 is running; steps 1..k are stored
            killed.set()

    recorder.on_call = kill_on_step
    try:
        assert await asyncio.to_thread(killed.wait, 60), (tmp_path / "worker1.log").read_text()
        assert await asyncio.to_thread(worker.wait, 10) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()
    stored = [s.key for s in offline.store.load_steps(run.id)]
    assert stored == [f"step-{i}" for i in range(1, k + 1)]
    assert (await offline.get_run(run.id)).status == "running"  # still leased to the dead process

    recorder.on_call = None
    await a_new_worker_completes(offline, run.id, db_url, recorder, tmp_path)
    assert (await offline.get_run(run.id)).output == sum(range(1, STEPS + 1))
    for i in range(1, k + 1):
        assert recorder.count(f"/step/{i}") == 1, f"stored step {i} ran again"
    assert recorder.count(f"/step/{k + 1}") == 2  # in flight at the kill: at least once
    for i in range(k + 2, STEPS + 1):
        assert recorder.count(f"/step/{i}") == 1
    await offline.close()


AI_SKILL = """
def handler(ctx, step):
    verdict = step.ai("classify", prompt="cpu 97% on api-1", schema={"type": "object"})
    step.run("notify", lambda: http.post("BASE/notify", json=verdict).status_code)
    return verdict
"""


async def test_sigkill_after_an_ai_answer_is_stored_never_pays_for_it_again(
    tmp_path: Path, recorder: Recorder
) -> None:
    model = ModelServer()
    model.script = [Reply({"severity": "high"})]
    llm = {
        "STEPKEEPER_LLM_PROVIDER": "openai",
        "STEPKEEPER_LLM_BASE_URL": f"{model.base}/v1",
        "STEPKEEPER_LLM_MODEL": "scripted",
    }
    db_url = f"sqlite:///{tmp_path / 'crash.db'}"
    offline = Engine(SqlStore(db_url))
    await offline.create_skill("assess", AI_SKILL.replace("BASE", recorder.base))
    run = await offline.invoke("assess")
    worker = start_worker(db_url, recorder, tmp_path / "worker1.log", llm)
    killed = threading.Event()

    def kill_on_notify(path: str) -> None:
        if path == "/notify" and not killed.is_set():
            os.kill(worker.pid, signal.SIGKILL)  # the ai step's answer is stored; notify runs
            killed.set()

    recorder.on_call = kill_on_notify
    try:
        assert await asyncio.to_thread(killed.wait, 60), (tmp_path / "worker1.log").read_text()
        assert await asyncio.to_thread(worker.wait, 10) == -signal.SIGKILL
        assert [s.key for s in offline.store.load_steps(run.id)] == ["classify"]
        recorder.on_call = None
        await a_new_worker_completes(offline, run.id, db_url, recorder, tmp_path, llm)
        assert (await offline.get_run(run.id)).output == {"severity": "high"}
        assert len(model.calls()) == 1  # the stored answer was replayed, not asked for again
        assert recorder.count("/notify") == 2  # in flight at the kill, then run again
    finally:
        if worker.poll() is None:
            worker.kill()
        model.close()
        await offline.close()
