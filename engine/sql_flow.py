"""The store's statements for flow control, mixed into `SqlStore`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import and_, or_, select

from engine.records import FINAL_STATUSES, Run
from engine.sql_route_reads import unfinished_runs_statement
from engine.store_rows import readable_run
from engine.tables import runs

MAX_OVERDUE_PER_PASS = 500


class SqlFlow:
    """Needs `_read(statement)` from the class it is mixed into."""

    _read: Callable[[Any], list[Any]]

    def overdue_runs(
        self, function: str, queued_before: float | None, started_before: float | None
    ) -> list[Run]:
        late = []
        if queued_before is not None:
            late.append(and_(runs.c.started_at.is_(None), runs.c.created_at < queued_before))
        if started_before is not None:
            late.append(runs.c.started_at < started_before)
        if not late:
            return []
        statement = (
            select(runs)
            .where(runs.c.function == function, runs.c.status.not_in(FINAL_STATUSES), or_(*late))
            .limit(MAX_OVERDUE_PER_PASS)
        )
        return [readable_run(row) for row in self._read(statement)]

    def unfinished_runs(self, function: str, limit: int) -> list[Run]:
        return [readable_run(row) for row in self._read(unfinished_runs_statement(function, limit))]
