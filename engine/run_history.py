"""Run history as skill code reads it through `runs` (read-only), for review loops:
`runs.list(function=, status=, since=, limit=)` and `runs.stats(function=, since=)`, the same
figures the MCP `get_stats` tool returns."""

from __future__ import annotations

from typing import Any

from engine import stats
from engine.durations import iso, parse_duration, parse_instant
from engine.errors import InvalidInput
from engine.records import RUN_STATUSES, Run
from engine.skills import check_skill_name
from engine.store import Store

MAX_LIST = 200
MAX_EPOCH = 32503680000  # year 3000


def since_time(since: Any, now: float) -> float:
    """`since` as epoch seconds: epoch seconds, ISO-8601, or a duration back from now (`7d`)."""
    if isinstance(since, int | float) and not isinstance(since, bool):
        if not 0 <= since <= MAX_EPOCH:
            raise InvalidInput(f"since must be epoch seconds from 0 to {MAX_EPOCH}, a duration or ISO-8601")
        return float(since)
    try:
        return now - parse_duration(since)
    except InvalidInput:
        return parse_instant(since)


def answer(store: Store, query: dict[str, Any], now: float) -> Any:
    """Answer one `runs.list` or `runs.stats` call; InvalidInput for bad arguments."""
    kind = query.get("query")
    function, status = query.get("function"), query.get("status")
    if function is not None:
        check_skill_name(function)
    if status is not None and not isinstance(status, str):
        raise InvalidInput("status must be a string")
    since = None if query.get("since") is None else since_time(query["since"], now)
    if kind == "stats":
        return stats.skill_stats(store.run_facts(function, since, stats.MAX_STATS_RUNS))
    if kind == "list":
        limit = query.get("limit", 20)
        if status is not None and status not in RUN_STATUSES:
            raise InvalidInput(f"unknown status {status!r}; one of {sorted(RUN_STATUSES)}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
            raise InvalidInput(f"limit must be an integer from 1 to {MAX_LIST}")
        page = store.list_runs(function=function, status=status, since=since, limit=limit)
        return [summary(run) for run in page.runs]
    raise InvalidInput(f"unknown runs query {kind!r}")


def summary(run: Run) -> dict[str, Any]:
    duration = None if run.ended_at is None or run.started_at is None else run.ended_at - run.started_at
    return {
        "run_id": run.id,
        "function": run.function,
        "version": run.version,
        "status": run.status,
        "trigger": run.trigger,
        "attempt": run.attempt,
        "error": run.error,
        "reason": run.cancel_reason,
        "created_at": iso(run.created_at),
        "ended_at": iso(run.ended_at),
        "duration_ms": None if duration is None else round(duration * 1000, 3),
    }
