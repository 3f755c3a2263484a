"""Recovery after SIGKILL: a `stepkeeper worker` runs a 10-step skill whose steps each call a
loopback log server; when step 6 calls, the worker is killed (steps 1-5 are stored). A new
worker is started; the figure is the time from its spawn to the run's recorded end, and the
count of stored steps (1-5) that ran again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchmarks.workloads import WorkloadFailed
from engine import Engine, SqlStore

SKILL = """
def handler(ctx, step):
    total = 0
    for i in range(1, 11):
        total += step.run("step-" + str(i), lambda: http.post("BASE/step/" + str(i)).status_code)
    return total
"""
KILL_AT = "/step/6"


class StepLog:
    """A loopback server that counts each step's calls and runs `on_kill` at step 6."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.on_kill: Any = None
        log = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                log.calls[self.path] += 1
                if self.path == KILL_AT and log.on_kill is not None:
                    log.on_kill()
                    log.on_kill = None
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.allow = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _worker(db_url: str, allow: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "mcp_server", "--database-url", db_url, "worker"]
    env = {**os.environ, "STEPKEEPER_HTTP_ALLOW": allow}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def recovery() -> tuple[float, int]:
    """(seconds from the new worker's spawn to completion, stored steps that ran again)."""
    log = StepLog()
    with tempfile.TemporaryDirectory(prefix="stepkeeper-recovery-") as folder:
        db_url = f"sqlite:///{Path(folder) / 'recovery.db'}"
        offline = Engine(SqlStore(db_url))
        try:
            await offline.create_skill("ten", SKILL.replace("BASE", f"http://{log.allow}"))
            run = await offline.invoke("ten")
            first = _worker(db_url, log.allow)
            killed = threading.Event()
            log.on_kill = lambda: (os.kill(first.pid, signal.SIGKILL), killed.set())
            if not await asyncio.to_thread(killed.wait, 60):
                raise WorkloadFailed("the first worker never reached step 6")
            first.wait()
            spawned = time.time()
            second = _worker(db_url, log.allow)
            try:
                done = await offline.wait_for_run(run.id, timeout=60)
            finally:
                second.terminate()
                second.wait()
            if done.status != "completed" or done.ended_at is None:
                raise WorkloadFailed(f"the recovered run is {done.status}")
            repeated = sum(log.calls[f"/step/{i}"] - 1 for i in range(1, 6))
            return done.ended_at - spawned, repeated
        finally:
            await offline.close()
            log.close()
