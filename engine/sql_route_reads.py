"""What routing an event reads (live skill versions, waits, unfinished runs), on any connection:
a reader's, or the write transaction that routes, so the plan and its writes see one state of
the database and no separate read round trip is paid for the plan.

Skill versions are immutable and their numbers are never reused, so each is decoded once per
store; only the (name, latest version) pairs of the live skills are read each time.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import and_, bindparam, select
from sqlalchemy.engine import Connection

from engine.jsonutil import loads
from engine.records import FINAL_STATUSES, Run, SkillVersion, Wait
from engine.sql_compiled import fetch_compiled
from engine.store_rows import readable_run, version_from_row
from engine.tables import runs, skills, steps, versions

_LIVE = select(skills.c.name, skills.c.latest_version).where(skills.c.deleted_at.is_(None))
_VERSION = select(versions).where(
    and_(versions.c.name == bindparam("name"), versions.c.version == bindparam("version"))
)
_WAITS = (
    select(steps.c.run_id, steps.c.key, steps.c.wait_event, steps.c.wait_if, steps.c.created_at, runs.c.event)
    .join(runs, runs.c.id == steps.c.run_id)
    .where(steps.c.wait_event == bindparam("name"), steps.c.status == "waiting")
)


class SkillVersionCache:
    """The decoded skill versions this store has read (thread-safe)."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int], SkillVersion] = {}
        self._lock = threading.Lock()

    def live(self, connection: Connection) -> list[SkillVersion]:
        """The latest version of every skill that is not deleted."""
        keys = [(row["name"], row["latest_version"]) for row in fetch_compiled(connection, _LIVE, {})]
        found = []
        for name, number in keys:
            with self._lock:
                version = self._known.get((name, number))
            if version is None:
                rows = fetch_compiled(connection, _VERSION, {"name": name, "version": number})
                if not rows:  # not visible in this snapshot: skip it, as a join would
                    continue
                version = version_from_row(rows[0])
                with self._lock:
                    self._known[(name, number)] = version
            found.append(version)
        return found


def waits_for(connection: Connection, event_names: set[str]) -> list[Wait]:
    """The steps waiting for any of these event names, oldest first."""
    rows = sorted(
        (row for name in sorted(event_names) for row in fetch_compiled(connection, _WAITS, {"name": name})),
        key=lambda row: row["created_at"],
    )
    return [
        Wait(
            run_id=row["run_id"],
            key=row["key"],
            event_name=row["wait_event"],
            condition=row["wait_if"],
            run_event=_trigger(row),
        )
        for row in rows
    ]


def unfinished_runs_statement(function: str, limit: int) -> Any:
    return (
        select(runs)
        .where(runs.c.function == function, runs.c.status.not_in(FINAL_STATUSES))
        .order_by(runs.c.created_at)
        .limit(limit)
    )


class TransactionReads:
    """`engine.store.RouteReads` inside a write transaction."""

    def __init__(self, connection: Connection, skill_versions: SkillVersionCache) -> None:
        self._connection = connection
        self._skill_versions = skill_versions

    def live_skill_versions(self) -> list[SkillVersion]:
        return self._skill_versions.live(self._connection)

    def waits_for(self, event_names: set[str]) -> list[Wait]:
        return waits_for(self._connection, event_names)

    def unfinished_runs(self, function: str, limit: int) -> list[Run]:
        rows = self._connection.execute(unfinished_runs_statement(function, limit)).mappings()
        return [readable_run(row) for row in rows]


def _trigger(row: Any) -> Any:
    """The waiting run's trigger event, for its `if`; empty when the stored event is corrupt (the
    wait then matches only conditions that do not look at it)."""
    try:
        return loads(row["event"])
    except ValueError:
        return {}
