"""The cost of the process boundary: skill code in a pre-forked, confined worker.

Measured on the runner alone, with a host that answers every op at once (no store), so the
figures are the sandbox's own: one invocation of a trivial skill (hand the activation to a
ready worker, run, collect the outcome, end the worker), and one step's round trip between
worker and engine. The same trivial skill run in-process (policy only, no process) is the
baseline beside them.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from sandbox import InProcessRunner, SkillRunner
from sandbox.process_runner import ProcessRunner
from sandbox.protocol import Message

IN_PROCESS = "in_process_invocation_ms"
DESCRIPTION = "the same trivial skill run in the engine's process (policy only, no worker)"
TRIVIAL = "def handler(ctx, step):\n    return step.run('one', lambda: {'ok': True})\n"
LOOP = (
    "def handler(ctx, step):\n    for i in range(ctx.event['data']['n']):\n        step.run('s', lambda: i)\n"
)
PACE_SECONDS = 0.01  # invocations a little apart, as runs arrive, so a spare worker is ready


class AnsweringHost:
    """Answers every op at once and keeps nothing."""

    def call(self, message: Message) -> Message:
        return {"action": "continue"}

    def notify(self, message: Message) -> None:
        pass


def activation(data: dict[str, Any] | None = None) -> dict[str, Any]:
    event = {"id": "evt_bench", "name": "bench", "data": data or {}, "ts": 0.0}
    return {"run_id": "run_bench", "function": "bench", "version": 1, "event": event, "memo": {}}


def invocation_ms(runner: SkillRunner, samples: int) -> list[float]:
    skill = runner.prepare(TRIVIAL)
    host, times = AnsweringHost(), []
    for _ in range(samples + 5):
        started = time.perf_counter()
        outcome = runner.run(skill, activation(), host)
        times.append((time.perf_counter() - started) * 1000)
        if outcome["status"] != "completed":
            raise RuntimeError(f"benchmark skill did not complete: {outcome}")
        time.sleep(PACE_SECONDS)
    return times[5:]  # the first few start the zygote and fill the spares


def step_round_trip_ms(runner: ProcessRunner, steps: int) -> float:
    """(one run of `steps` steps - one run of none) / steps, medians of five each."""
    skill, host = runner.prepare(LOOP), AnsweringHost()

    def run_ms(count: int) -> float:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            runner.run(skill, activation({"n": count}), host)
            times.append((time.perf_counter() - started) * 1000)
            time.sleep(PACE_SECONDS)
        return statistics.median(times)

    return (run_ms(steps) - run_ms(0)) / steps


def measure(samples: int, steps: int) -> dict[str, Any]:
    runner = ProcessRunner()
    try:
        sandboxed = invocation_ms(runner, samples)
        round_trip = step_round_trip_ms(runner, steps)
    finally:
        runner.close()
    in_process = statistics.median(invocation_ms(InProcessRunner(), samples))
    return {"invocations": sandboxed, "round_trip": round_trip, "in_process": in_process}
