"""The store's statements for events, mixed into `SqlStore`: storing them, routing them (the
runs they start, the waits they end) in the same transaction, and reading them back."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from engine import sql_route_reads as route_reads
from engine import sql_writes as writes
from engine.records import Event, EventRoute, Run, Wait
from engine.sql_backend import EVENTS, WORK
from engine.sql_route_reads import SkillVersionCache, TransactionReads
from engine.store import RoutePlanner
from engine.store_rows import event_from_row
from engine.store_writer import announce
from engine.tables import events, runs


class SqlEvents:
    """Needs `_read(statement)`, `_read_with(fn)`, `_write()` (a StoreWriter) and `_skill_versions`
    from the class it is mixed into."""

    _read: Callable[[Any], list[Any]]
    _read_with: Callable[[Callable[[Connection], Any]], Any]
    _write: Callable[[], Any]
    _skill_versions: SkillVersionCache

    def append_events(
        self, new_events: list[Event], now: float = 0.0, *, plan: RoutePlanner | None = None
    ) -> list[bool]:
        if plan is not None:
            return self._append_and_plan(new_events, plan, now)

        def write(connection: Connection) -> list[bool]:
            inserted = [writes.insert_event(connection, item) for item in new_events]
            if any(inserted):
                announce(connection, EVENTS)  # routed by this engine next, or by any at its poll
            return inserted

        return self._write().call(write)

    def _append_and_plan(self, new_events: list[Event], plan: RoutePlanner, now: float) -> list[bool]:
        """Store the new events already marked routed, then plan and apply their routes, all in
        one transaction: the plan reads what the transaction sees, and no statement marks them."""

        def write(connection: Connection) -> list[bool]:
            inserted = [writes.insert_event(connection, item, processed_at=now) for item in new_events]
            stored = [item for item, is_new in zip(new_events, inserted, strict=True) if is_new]
            if stored:
                routes = plan(TransactionReads(connection, self._skill_versions), stored)
                for route in routes:
                    writes.route_effects(connection, route, now)
                announce(connection, WORK)
            return inserted

        return self._write().call(write, serial=True)  # gates and slots decide from stored runs

    def pending_events(self, limit: int) -> list[Event]:
        statement = (
            select(events).where(events.c.processed_at.is_(None)).order_by(events.c.received_at).limit(limit)
        )
        return [event_from_row(row) for row in self._read(statement)]

    def get_events(self, ids: list[str]) -> list[Event]:
        if not ids:
            return []
        rows = self._read(select(events).where(events.c.id.in_(ids)))
        by_id = {row["id"]: event_from_row(row) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    def list_events(self, name: str | None, limit: int) -> list[Event]:
        statement = select(events).order_by(events.c.received_at.desc()).limit(limit)
        if name is not None:
            statement = statement.where(events.c.name == name)
        return [event_from_row(row) for row in self._read(statement)]

    def waits_for(self, event_names: set[str]) -> list[Wait]:
        return self._read_with(partial(route_reads.waits_for, event_names=event_names))

    def apply_events(self, routes: list[EventRoute], now: float) -> list[bool]:
        restore = _restorer([run for route in routes for run in route.new_runs])

        def write(connection: Connection) -> list[bool]:
            restore()
            applied = [writes.apply_route(connection, route, now) for route in routes]
            if any(applied):
                announce(connection, WORK)
            return applied

        return self._write().call(write, serial=True)

    def runs_for_event(self, event_id: str) -> list[str]:
        rows = self._read(select(runs.c.id).where(runs.c.event_id == event_id).order_by(runs.c.created_at))
        return [row["id"] for row in rows]


def _restorer(runs: list[Run]) -> Callable[[], None]:
    """Routing marks the runs it is given (skipped, queued instead of claimed...), and callers
    read those marks after the write; a transaction that is retried must start from the runs as
    they were, so this puts them back."""
    saved = [(run, dict(run.__dict__)) for run in runs]

    def restore() -> None:
        for run, state in saved:
            run.__dict__.update(state)

    return restore
