"""`python -m benchmarks [--quick] [--repeat N] [--json results.json] [--postgres URL]`, run
from the repository.

Measures stepkeeper on this machine, each workload on a fresh SQLite file in the temp dir, and
prints the medians, the cost of one step beside a bare SQLite commit (the floor). With
`--postgres`, also the scale-out figures: throughput with 1, 2 and 4 worker processes on that
server, and event-to-first-step latency across processes through LISTEN/NOTIFY.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

from benchmarks import baseline, dbos, report, sandbox, scaleout, suite
from benchmarks.workloads import Stepkeeper


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller workloads, one repetition")
    parser.add_argument("--repeat", type=positive, help="repetitions, median reported (default 3; quick 1)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON here")
    parser.add_argument(
        "--compare", choices=["dbos"], help="also measure DBOS Transact (pip install -e '.[bench]')"
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        nargs="?",
        const="postgresql://postgres@127.0.0.1:5432/test",
        help="also measure scale-out on this PostgreSQL server (default URL: the local test database)",
    )
    return parser.parse_args(argv)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    mode = "quick" if args.quick else "full"
    sizes = suite.QUICK if args.quick else suite.FULL
    repeat = args.repeat or (1 if args.quick else 3)
    started = time.perf_counter()
    contenders: list[suite.Contender] = [Stepkeeper()]
    if args.compare == "dbos":
        missing = dbos.available()
        if missing:
            print(f"python -m benchmarks: {missing}", file=sys.stderr)
            return 2
        contenders.append(dbos.Dbos())
    samples = asyncio.run(suite.measure(contenders, sizes, repeat))
    figures = suite.figures(samples) + asyncio.run(suite.measure_history(repeat))
    if args.postgres:
        reason = scaleout.unavailable(args.postgres)
        if reason:
            print(f"python -m benchmarks: {reason}", file=sys.stderr)
            return 2
        figures += asyncio.run(suite.measure_scaleout(args.postgres, sizes, repeat))
    elapsed = time.perf_counter() - started
    baselines = {
        baseline.NAME: baseline.DESCRIPTION,
        sandbox.IN_PROCESS: sandbox.DESCRIPTION,
        "start_latency_p50_ms": "the same start latency without a concurrency key",
        "pg_throughput_1_workers_runs_per_s": "the same workload with one worker process",
        "sqlite_poll_start_latency_p50_ms": "the same across processes on SQLite (found by the 1 s poll)",
    }
    print(report.table(figures, baselines))
    print(f"{mode} mode, median of {repeat}, {elapsed:.0f} s")
    if args.json:
        meta = {**report.machine(), "mode": mode, "repeat": repeat, "sizes": asdict(sizes)}
        report.write_json(args.json, figures, {**meta, "samples": samples.values})
    return 0


if __name__ == "__main__":
    sys.exit(main())
