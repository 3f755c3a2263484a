"""A run's trace: the run and its steps as spans, with every attempt, the logs and the children."""

from __future__ import annotations

from typing import Any

from engine.durations import iso
from engine.records import Attempt, LogLine, Run, Step


def _ms(start: float | None, end: float | None) -> float | None:
    # A step body's start is measured in the worker and can precede its record by a hair.
    return None if start is None or end is None else round(max(0.0, end - start) * 1000, 3)


def run_view(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "function": run.function,
        "version": run.version,
        "kind": run.kind,
        "trigger": run.trigger,
        "status": run.status,
        "event": run.event,
        "output": run.output,
        "error": run.error,
        "attempt": run.attempt,
        "parent_run_id": run.parent_run_id,
        "rerun_of": run.rerun_of,
        "failure": run.failure,
        "cancel_reason": run.cancel_reason,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "wake_at": iso(run.wake_at),
        "duration_ms": _ms(run.started_at, run.ended_at),
        "queue_ms": _ms(run.created_at, run.started_at),  # waiting to start, apart from running
    }


def _failed_attempt(a: Attempt) -> dict[str, Any]:
    return {
        "attempt": a.attempt,
        "status": "failed",
        "started_at": iso(a.started_at),
        "ended_at": iso(a.ended_at),
        "error": a.error,
    }


def step_span(step: Step, failed: list[Attempt]) -> dict[str, Any]:
    attempts = [_failed_attempt(a) for a in failed]
    attempts.append(
        {
            "attempt": step.attempts,
            "status": step.status,
            "started_at": iso(step.started_at),
            "ended_at": iso(step.ended_at),
            "error": step.error,
        }
    )
    span = {
        "key": step.key,
        "step_id": step.step_id,
        "op": step.op,
        "status": step.status,
        "attempts": attempts,
        "input": step.input,
        "output": step.output,
        "error": step.error,
        "child_run_id": step.child_run_id,
        "queued_at": iso(step.created_at),
        "started_at": iso(step.started_at),
        "ended_at": iso(step.ended_at),
        "wake_at": iso(step.wake_at),
        "queue_ms": _ms(step.created_at, step.started_at),
        "run_ms": _ms(step.started_at, step.ended_at),
    }
    if step.meta is not None:  # an LLM step: which provider and model answered, how fast, tokens
        span["llm"] = {**step.meta, "input_tokens": step.input_tokens, "output_tokens": step.output_tokens}
    return span


def build_trace(
    run: Run, steps: list[Step], attempts: list[Attempt], logs: list[LogLine], children: list[Run]
) -> dict[str, Any]:
    by_key: dict[str, list[Attempt]] = {}
    for attempt in attempts:
        by_key.setdefault(attempt.key, []).append(attempt)
    spans = [step_span(step, by_key.pop(step.key, [])) for step in steps]
    for key, failed in by_key.items():  # a step still between retries has attempts but no row
        spans.append(
            {
                "key": key,
                "step_id": key,
                "op": "run",
                "status": "retrying",
                "attempts": [_failed_attempt(a) for a in failed],
                "error": failed[-1].error,
            }
        )
    return {
        "run": run_view(run),
        "spans": spans,
        "logs": [
            {"ts": iso(line.ts), "level": line.level, "message": line.message, "step": line.step_key}
            for line in logs
        ],
        "children": [run_view(child) for child in children],
    }
