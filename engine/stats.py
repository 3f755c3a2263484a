"""Run statistics per skill: what a review loop reads to decide what to change.

Plain logic over the store's `run_facts`: runs by status, success rate over finished runs,
p50/p95 duration of finished runs, retries (failed step attempts plus handler retries), and the
most frequent errors of failed runs.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from typing import Any

from engine.records import RunFacts

MAX_STATS_RUNS = 100_000  # the newest runs looked at; older ones are not counted
TOP_ERRORS = 5


def skill_stats(facts: list[RunFacts]) -> dict[str, dict[str, Any]]:
    by_function: dict[str, list[RunFacts]] = defaultdict(list)
    for fact in facts:
        by_function[fact.function].append(fact)
    return {function: _one_skill(runs) for function, runs in sorted(by_function.items())}


def _one_skill(runs: list[RunFacts]) -> dict[str, Any]:
    by_status = Counter(run.status for run in runs)
    finished = by_status["completed"] + by_status["failed"]
    durations = [
        run.ended_at - run.started_at
        for run in runs
        if run.status in ("completed", "failed") and run.started_at is not None and run.ended_at is not None
    ]
    errors = Counter(
        f"{(run.error or {}).get('type', 'Error')}: {(run.error or {}).get('message', '')}"[:300]
        for run in runs
        if run.status == "failed"
    )
    return {
        "runs": len(runs),
        "by_status": dict(sorted(by_status.items())),
        "success_rate": round(by_status["completed"] / finished, 4) if finished else None,
        "duration_p50_ms": _percentile_ms(durations, 50),
        "duration_p95_ms": _percentile_ms(durations, 95),
        "retries": sum(run.failed_step_attempts + run.attempt for run in runs),
        "top_errors": [{"error": text, "count": count} for text, count in errors.most_common(TOP_ERRORS)],
        "tokens": {
            "input": sum(run.input_tokens for run in runs),
            "output": sum(run.output_tokens for run in runs),
        },
    }


def _percentile_ms(values: list[float], rank: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0] * 1000, 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[rank - 1] * 1000, 3)
