"""`python -m benchmarks [--quick] [--repeat N] [--json results.json]`.

Measures stepkeeper on this machine and prints medians side by side with a baseline run in the
same process: a bare SQLite commit (the floor every durable step pays).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from pathlib import Path

from benchmarks import report, workloads


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller workloads, one repetition")
    parser.add_argument("--repeat", type=int, help="repetitions per figure (median is reported)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


async def measure(sizes: workloads.Sizes, repeat: int) -> list[report.Figure]:
    floor, steps, throughput, p50, p99 = [], [], [], [], []
    for _ in range(repeat):
        floor.append(workloads.sqlite_commit_ms(sizes))
        steps.append(await workloads.step_overhead_ms(sizes))
        throughput.append(await workloads.throughput_runs_per_s(sizes))
        latencies = await workloads.start_latencies_ms(sizes)
        p50.append(workloads.percentile(latencies, 0.50))
        p99.append(workloads.percentile(latencies, 0.99))
    commit = statistics.median(floor)
    return [
        report.Figure("sqlite_commit_ms", "ms", commit),
        report.Figure("step_overhead_ms", "ms", statistics.median(steps), commit, "sqlite_commit_ms"),
        report.Figure("throughput_runs_per_s", "runs/s", statistics.median(throughput)),
        report.Figure("start_latency_p50_ms", "ms", statistics.median(p50), commit, "sqlite_commit_ms"),
        report.Figure("start_latency_p99_ms", "ms", statistics.median(p99), commit, "sqlite_commit_ms"),
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sizes = workloads.QUICK if args.quick else workloads.FULL
    repeat = args.repeat or (1 if args.quick else 3)
    started = time.perf_counter()
    figures = asyncio.run(measure(sizes, repeat))
    print(report.table(figures))
    mode = "quick" if args.quick else "full"
    print(f"\n{mode} mode, median of {repeat}, {time.perf_counter() - started:.0f} s")
    if args.json:
        meta = {
            **report.machine(),
            "mode": "quick" if args.quick else "full",
            "repeat": repeat,
            "sizes": vars(sizes),
        }
        report.write_json(args.json, figures, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
