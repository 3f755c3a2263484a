"""DBOS Transact as a contender: each workload in a fresh interpreter running
`benchmarks.dbos_runner` on a new SQLite file (WAL, 1 ms polling: its best settings here)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.memory import PeakMemory
from benchmarks.workloads import RUN_TIMEOUT_SECONDS, WorkloadFailed

READY_TIMEOUT_S = 60.0


def available() -> str | None:
    """None when DBOS can be imported, else how to install it."""
    try:
        import dbos  # noqa: F401
    except ImportError:
        return "DBOS is not installed: pip install -e '.[bench]'"
    return None


def _run(workload: str, arg: str, folder: str) -> dict[str, Any]:
    """Run one workload in a fresh interpreter; its peak memory (PSS, like stepkeeper's) is
    sampled from here and added as `peak_mb`."""
    command = [sys.executable, "-m", "benchmarks.dbos_runner", workload, arg, str(Path(folder) / "dbos.db")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with PeakMemory(process.pid) as peak:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
    if process.returncode != 0 or not stdout.strip():
        raise WorkloadFailed(f"DBOS {workload} failed: {stderr[-2000:]}")
    found: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    found["peak_mb"] = peak.mb
    return found


class Dbos:
    name = "dbos"

    def __init__(self) -> None:
        self.last_peak_mb: float | None = None

    async def _workload(self, workload: str, arg: object) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="dbos-bench-") as folder:
            return await asyncio.to_thread(_run, workload, str(arg), folder)

    async def step_overhead_ms(self, steps: int) -> float:
        return float((await self._workload("steps", steps))["step_overhead_ms"])

    async def throughput_runs_per_s(self, runs: int) -> float:
        found = await self._workload("throughput", runs)
        self.last_peak_mb = float(found["peak_mb"])
        return float(found["throughput_runs_per_s"])

    async def keyed_throughput_runs_per_s(self, runs: int) -> float:
        return float((await self._workload("keyed", runs))["throughput_runs_per_s"])

    async def start_latencies_ms(self, samples: int, config: dict[str, Any] | None = None) -> list[float]:
        return [float(v) for v in (await self._workload("latency", samples))["latencies_ms"]]

    async def recovery(self) -> tuple[float, int]:
        return await asyncio.to_thread(_recovery)


def _recovery() -> tuple[float, int]:
    """Kill the runner at step 6 of 10, start a new one: seconds from its spawn to completion,
    and stored steps (1-5) that ran again."""
    with tempfile.TemporaryDirectory(prefix="dbos-recovery-") as folder:
        log, db = Path(folder) / "steps.log", str(Path(folder) / "dbos.db")
        command = [sys.executable, "-m", "benchmarks.dbos_runner"]
        first = subprocess.Popen([*command, "start", str(log), db], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not (Path(folder) / "at-step-6").exists():
            if time.monotonic() > deadline or first.poll() is not None:
                first.kill()
                raise WorkloadFailed("DBOS never reached step 6")
            time.sleep(0.002)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        (Path(folder) / "at-step-6").unlink()
        spawned = time.time()
        resumed = subprocess.run(
            [*command, "resume", str(log), db], capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS
        )
        if resumed.returncode != 0:
            raise WorkloadFailed(f"DBOS recovery failed: {resumed.stderr[-2000:]}")
        completed_at = json.loads(resumed.stdout.strip().splitlines()[-1])["completed_at"]
        calls = Counter(int(line) for line in log.read_text().split())
        return completed_at - spawned, sum(calls[i] - 1 for i in range(1, 6))
