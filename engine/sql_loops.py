"""The store's statements for loops (cron schedules), mixed into `SqlStore`.

A tick is fired by a compare-and-set on the loop's `next_fire_at` in the same transaction that
creates its runs, so however many processes share the database, each tick fires once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from engine import sql_writes as writes
from engine.records import Loop, Run
from engine.sql_backend import LOOPS, WORK
from engine.store_rows import loop_from_row, loop_to_row
from engine.store_writer import announce
from engine.tables import schedules

T = TypeVar("T")


class SqlLoops:
    """Needs `_read(statement)` and `_write()` (a StoreWriter) from the class it is mixed into."""

    _read: Callable[[Any], list[Any]]
    _write: Callable[[], Any]

    def add_loop(self, loop: Loop) -> None:
        self._call(lambda connection: connection.execute(insert(schedules), [loop_to_row(loop)]), LOOPS)

    def get_loop(self, loop_id: str) -> Loop | None:
        rows = self._read(select(schedules).where(schedules.c.id == loop_id))
        return loop_from_row(rows[0]) if rows else None

    def list_loops(self, skill: str | None = None) -> list[Loop]:
        statement = select(schedules).order_by(schedules.c.created_at, schedules.c.id)
        if skill is not None:
            statement = statement.where(schedules.c.skill == skill)
        return [loop_from_row(row) for row in self._read(statement)]

    def save_loop(self, loop: Loop) -> bool:
        row = loop_to_row(loop)
        del row["id"], row["created_at"]

        def write(connection: Connection) -> bool:
            result = connection.execute(update(schedules).where(schedules.c.id == loop.id).values(**row))
            return result.rowcount == 1

        return self._call(write, LOOPS)

    def delete_loops(self, loop_ids: list[str]) -> int:
        if not loop_ids:
            return 0
        return self._call(
            lambda connection: (
                connection.execute(delete(schedules).where(schedules.c.id.in_(loop_ids))).rowcount
            ),
            LOOPS,
        )

    def next_loop_fire_at(self) -> float | None:
        rows = self._read(select(func.min(schedules.c.next_fire_at)).where(schedules.c.paused.is_(False)))
        return rows[0][next(iter(rows[0].keys()))] if rows else None

    def due_loops(self, now: float) -> list[Loop]:
        statement = select(schedules).where(schedules.c.paused.is_(False), schedules.c.next_fire_at <= now)
        return [loop_from_row(row) for row in self._read(statement)]

    def fire_loop(
        self,
        loop_id: str,
        expected_next: float,
        next_fire_at: float | None,
        fired_at: float | None,
        new_runs: list[Run],
        now: float,
    ) -> bool:
        """Move the loop past its due ticks and create their runs, if no one else did first."""

        def write(connection: Connection) -> bool:
            values: dict[str, Any] = {"next_fire_at": next_fire_at, "updated_at": now}
            if fired_at is not None:
                values["last_fired_at"] = fired_at
            moved = connection.execute(
                update(schedules)
                .where(
                    schedules.c.id == loop_id,
                    schedules.c.next_fire_at == expected_next,
                    schedules.c.paused.is_(False),
                )
                .values(**values)
            )
            if moved.rowcount != 1:
                return False
            writes.insert_runs(connection, new_runs)
            return True

        return self._call(write, WORK if new_runs else LOOPS)

    def _call(self, write: Callable[[Connection], T], announces: str) -> T:
        """Run `write`; other processes hear `announces` once it commits (loops re-read their
        next tick; work is claimed)."""

        def write_and_announce(connection: Connection) -> T:
            result = write(connection)
            announce(connection, announces)
            return result

        result: T = self._write().call(write_and_announce)
        return result
