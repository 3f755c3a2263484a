"""What the read-only CLI commands print: aligned tables for a terminal, a tree for one run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.durations import iso


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns as wide as their widest cell; `-` for a missing value."""
    cells = [[str(h) for h in headers]] + [
        ["-" if v is None or v == "" else str(v) for v in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} ms" if value < 10_000 else f"{value / 1000:.1f} s"


def run_tree(trace: dict[str, Any]) -> str:
    """A run and its steps as a tree, with queue and run times, attempts and errors."""
    run = trace["run"]
    lines = [
        f"{run['run_id']}  {run['function']} v{run['version']}  {run['status']}  "
        f"trigger {run['trigger']}  queued {ms(run.get('queue_ms'))}  ran {ms(run.get('duration_ms'))}",
        f"created {run['created_at']}  ended {run['ended_at'] or '-'}",
    ]
    if run.get("error"):
        lines.append(f"error: {run['error'].get('type')}: {run['error'].get('message')}")
    if run.get("cancel_reason"):
        lines.append(f"reason: {run['cancel_reason']}")
    spans = trace["spans"]
    for index, span in enumerate(spans):
        last = index == len(spans) - 1
        branch, stem = ("└─ ", "   ") if last else ("├─ ", "│  ")
        attempts = span.get("attempts") or []
        lines.append(
            f"{branch}{span['key']}  [{span['op']}]  {span['status']}  "
            f"{len(attempts)} attempt{'s' if len(attempts) != 1 else ''}  "
            f"queued {ms(span.get('queue_ms'))}  ran {ms(span.get('run_ms'))}"
        )
        for attempt in attempts:
            if attempt.get("error"):
                kind, message = attempt["error"].get("type"), attempt["error"].get("message")
                lines.append(f"{stem}  attempt {attempt['attempt']} {attempt['status']}: {kind}: {message}")
        if span.get("child_run_id"):
            lines.append(f"{stem}  child run {span['child_run_id']}")
        if span.get("llm"):
            llm = span["llm"]
            lines.append(
                f"{stem}  {llm.get('provider')}:{llm.get('model')}  {llm.get('latency_ms')} ms  "
                f"tokens {llm.get('input_tokens')} in / {llm.get('output_tokens')} out"
            )
    for child in trace.get("children") or []:
        lines.append(f"child {child['run_id']}  {child['function']}  {child['status']}")
    return "\n".join(lines)


def when(value: float | None) -> str:
    return iso(value) or "-"
