"""Cancelling runs inside a write transaction: the one statement every cancel path uses
(a caller's `cancel_run`, `cancel_on`, `timeouts`, a singleton replaced)."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from engine.records import FINAL_STATUSES
from engine.tables import runs


def cancel_runs(connection: Connection, run_ids: list[str], reason: str | None, now: float) -> list[str]:
    """Cancel those of the runs that are not final yet; returns their ids."""
    live = [
        row[0]
        for row in connection.execute(
            select(runs.c.id).where(runs.c.id.in_(run_ids), runs.c.status.not_in(FINAL_STATUSES))
        )
    ]
    if live:
        connection.execute(
            update(runs)
            .where(runs.c.id.in_(live))
            .values(
                status="cancelled",
                cancel_reason=reason,
                ended_at=now,
                updated_at=now,
                wake_at=None,
                lease_owner=None,
                lease_expires_at=None,
            )
        )
    return live
