"""The store's statement for run statistics, mixed into `SqlStore`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from engine.jsonutil import loads
from engine.records import RunFacts
from engine.tables import attempts, runs, steps


def _token_sum(column: Any) -> Any:
    return select(func.sum(column)).where(steps.c.run_id == runs.c.id).scalar_subquery()


class SqlStats:
    """Needs `_read(statement)` from the class it is mixed into."""

    _read: Callable[[Any], list[Any]]

    def run_facts(self, function: str | None, since: float | None, limit: int) -> list[RunFacts]:
        failed = (
            select(func.count()).select_from(attempts).where(attempts.c.run_id == runs.c.id).scalar_subquery()
        )
        statement = select(
            runs.c.function,
            runs.c.status,
            runs.c.started_at,
            runs.c.ended_at,
            runs.c.attempt,
            runs.c.error,
            failed.label("failed_step_attempts"),
            _token_sum(steps.c.input_tokens).label("input_tokens"),
            _token_sum(steps.c.output_tokens).label("output_tokens"),
        )
        if function is not None:
            statement = statement.where(runs.c.function == function)
        if since is not None:
            statement = statement.where(runs.c.created_at >= since)
        statement = statement.order_by(runs.c.created_at.desc()).limit(limit)
        return [
            RunFacts(
                function=row["function"],
                status=row["status"],
                started_at=row["started_at"],
                ended_at=row["ended_at"],
                attempt=row["attempt"],
                error=loads(row["error"]) if row["error"] else None,
                failed_step_attempts=row["failed_step_attempts"],
                input_tokens=int(row["input_tokens"] or 0),
                output_tokens=int(row["output_tokens"] or 0),
            )
            for row in self._read(statement)
        ]
