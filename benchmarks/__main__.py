"""`python -m benchmarks [--quick] [--repeat N] [--json results.json]`, run from the repository.

Measures stepkeeper on this machine, each workload on a fresh SQLite file in the temp dir, and
prints the medians, the cost of one step beside a bare SQLite commit (the floor).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

from benchmarks import baseline, report, sandbox, suite
from benchmarks.workloads import Stepkeeper


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller workloads, one repetition")
    parser.add_argument("--repeat", type=positive, help="repetitions, median reported (default 3; quick 1)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON here")
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
    samples = asyncio.run(suite.measure([Stepkeeper()], sizes, repeat))
    figures = suite.figures(samples)
    elapsed = time.perf_counter() - started
    baselines = {
        baseline.NAME: baseline.DESCRIPTION,
        sandbox.IN_PROCESS: sandbox.DESCRIPTION,
        "start_latency_p50_ms": "the same start latency without a concurrency key",
    }
    print(report.table(figures, baselines))
    print(f"{mode} mode, median of {repeat}, {elapsed:.0f} s")
    if args.json:
        meta = {**report.machine(), "mode": mode, "repeat": repeat, "sizes": asdict(sizes)}
        report.write_json(args.json, figures, {**meta, "samples": samples.values})
    return 0


if __name__ == "__main__":
    sys.exit(main())
