"""What is measured, how often, and how repetitions become the figures in the report.

Every engine measured is a `Contender`; stepkeeper is always the first. `--compare dbos` adds
DBOS Transact; within each repetition the contenders run one after the other, so both see the
same machine, and each figure gains a column per engine.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from benchmarks import baseline, history, sandbox, scaleout
from benchmarks.report import Figure


@dataclass(frozen=True)
class Sizes:
    steps: int  # steps in the one long run
    runs: int  # runs of 5 steps started together
    latency_samples: int  # events sent one at a time
    commits: int  # bare SQLite commits for the baseline
    invocations: int  # trivial skills run through the sandbox one after another


QUICK = Sizes(steps=300, runs=200, latency_samples=50, commits=300, invocations=100)
FULL = Sizes(steps=1000, runs=500, latency_samples=200, commits=1000, invocations=300)


# A concurrency key that never delays a run here (one run at a time is sent): the cost of the check.
KEYED = {"concurrency": [{"limit": 5, "key": "event.data.service"}]}


class Contender(Protocol):
    name: str

    async def step_overhead_ms(self, steps: int) -> float: ...

    async def throughput_runs_per_s(self, runs: int) -> float: ...

    async def start_latencies_ms(self, samples: int, config: dict[str, Any] | None = None) -> list[float]: ...

    async def keyed_throughput_runs_per_s(self, runs: int) -> float: ...

    async def recovery(self) -> tuple[float, int]: ...

    last_peak_mb: float | None


@dataclass
class Samples:
    """One value per repetition for each figure, keyed by figure name, then engine name."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, figure: str, engine: str, value: float) -> None:
        self.values.setdefault(figure, {}).setdefault(engine, []).append(value)

    def medians(self, figure: str) -> dict[str, float]:
        return {engine: statistics.median(values) for engine, values in self.values[figure].items()}


async def measure(contenders: Sequence[Contender], sizes: Sizes, repeat: int) -> Samples:
    """Every figure `repeat` times, each time on fresh databases; the floor before each round."""
    samples = Samples()
    for _ in range(repeat):
        samples.add(baseline.NAME, "baseline", baseline.sqlite_commit_ms(sizes.commits))
        for contender in contenders:
            await measure_once(contender, sizes, samples)
        await measure_sandbox(sizes, samples)
    return samples


async def measure_sandbox(sizes: Sizes, samples: Samples) -> None:
    found = await asyncio.to_thread(sandbox.measure, sizes.invocations, sizes.steps)
    samples.add("sandbox_invocation_p50_ms", "stepkeeper", statistics.median(found["invocations"]))
    samples.add("sandbox_invocation_p99_ms", "stepkeeper", percentile(found["invocations"], 99))
    samples.add("sandbox_step_round_trip_ms", "stepkeeper", found["round_trip"])
    samples.add(sandbox.IN_PROCESS, "baseline", found["in_process"])


async def measure_once(contender: Contender, sizes: Sizes, samples: Samples) -> None:
    name = contender.name
    samples.add("step_overhead_ms", name, await contender.step_overhead_ms(sizes.steps))
    samples.add("throughput_runs_per_s", name, await contender.throughput_runs_per_s(sizes.runs))
    if contender.last_peak_mb is not None:
        samples.add("peak_rss_mb", name, contender.last_peak_mb)
    latencies = await contender.start_latencies_ms(sizes.latency_samples)
    samples.add("start_latency_p50_ms", name, statistics.median(latencies))
    samples.add("start_latency_p99_ms", name, percentile(latencies, 99))
    if name == "stepkeeper":  # DBOS has no concurrency key on a direct start
        keyed = await contender.start_latencies_ms(sizes.latency_samples, KEYED)
        samples.add("keyed_start_latency_p50_ms", name, statistics.median(keyed))
    samples.add("keyed_throughput_runs_per_s", name, await contender.keyed_throughput_runs_per_s(sizes.runs))
    seconds, repeated = await contender.recovery()
    samples.add("recovery_s", name, seconds)
    samples.add("recovered_steps_repeated", name, repeated)


def figures(samples: Samples) -> list[Figure]:
    """The medians as the report's rows; the per-step cost is set beside the SQLite floor."""
    floor = samples.medians(baseline.NAME)["baseline"]
    return [
        Figure("step_overhead_ms", "ms", samples.medians("step_overhead_ms"), floor, baseline.NAME),
        Figure("throughput_runs_per_s", "runs/s", samples.medians("throughput_runs_per_s")),
        Figure("start_latency_p50_ms", "ms", samples.medians("start_latency_p50_ms")),
        Figure("start_latency_p99_ms", "ms", samples.medians("start_latency_p99_ms")),
        Figure("keyed_throughput_runs_per_s", "runs/s", samples.medians("keyed_throughput_runs_per_s")),
        Figure("recovery_s", "s", samples.medians("recovery_s")),
        Figure("recovered_steps_repeated", "steps", samples.medians("recovered_steps_repeated")),
        Figure("peak_rss_mb", "MB", samples.medians("peak_rss_mb")),
        Figure(
            "keyed_start_latency_p50_ms",
            "ms",
            samples.medians("keyed_start_latency_p50_ms"),
            samples.medians("start_latency_p50_ms")["stepkeeper"],
            "start_latency_p50_ms",
        ),
        Figure(
            "sandbox_invocation_p50_ms",
            "ms",
            samples.medians("sandbox_invocation_p50_ms"),
            samples.medians(sandbox.IN_PROCESS)["baseline"],
            sandbox.IN_PROCESS,
        ),
        Figure("sandbox_invocation_p99_ms", "ms", samples.medians("sandbox_invocation_p99_ms")),
        Figure("sandbox_step_round_trip_ms", "ms", samples.medians("sandbox_step_round_trip_ms")),
    ]


HISTORY_RUNS = 100_000


async def measure_history(repeat: int) -> list[Figure]:
    """List latency over 100,000 stored runs (medians of `repeat` fresh databases)."""
    samples = Samples()
    for _ in range(repeat):
        for name, value in (await history.measure(HISTORY_RUNS)).items():
            samples.add(name, "stepkeeper", value)
    return [Figure(name, "ms", samples.medians(name)) for name in samples.values]


async def measure_scaleout(server_url: str, sizes: Sizes, repeat: int) -> list[Figure]:
    """The PostgreSQL scale-out figures (medians of `repeat`), throughput beside one worker's."""
    samples = Samples()
    for _ in range(repeat):
        found = await scaleout.measure(server_url, sizes.runs, sizes.latency_samples)
        for name, value in found.items():
            samples.add(name, "stepkeeper", value)
    one = samples.medians("pg_throughput_1_workers_runs_per_s")["stepkeeper"]
    rows = [
        Figure(name, "runs/s", samples.medians(name), one, "pg_throughput_1_workers_runs_per_s")
        for name in (f"pg_throughput_{count}_workers_runs_per_s" for count in scaleout.WORKER_COUNTS)
    ]
    poll = samples.medians("sqlite_poll_start_latency_p50_ms")["stepkeeper"]
    return [
        *rows,
        Figure(
            "pg_notify_start_latency_p50_ms",
            "ms",
            samples.medians("pg_notify_start_latency_p50_ms"),
            poll,
            "sqlite_poll_start_latency_p50_ms",
        ),
        Figure("pg_notify_start_latency_p99_ms", "ms", samples.medians("pg_notify_start_latency_p99_ms")),
    ]


def percentile(values: Sequence[float], rank: int) -> float:
    """The `rank`-th percentile, interpolated between the closest samples."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[rank - 1]
