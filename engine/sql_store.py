"""The store on SQLAlchemy Core over the SQLModel tables: SQLite (the embedded default) or
PostgreSQL (scale-out), chosen by the URL; `engine.sql_backend` holds what differs.

Writes go through `StoreWriter` (one connection, group commit) and the statements in
`engine.sql_writes`; reads use separate pooled connections that never hold a write lock.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any, TypeVar

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError

from engine import migrate
from engine import sql_writes as writes
from engine.errors import CorruptRecord, InvalidInput, SkillExists, SkillNotFound, StoreUnavailable
from engine.flow import Slot, SlotsOf
from engine.jsonutil import dumps
from engine.records import (
    PENDING_STEP,
    Attempt,
    LogLine,
    Run,
    RunPage,
    Skill,
    SkillVersion,
    Step,
    StepCommit,
    StepResolution,
)
from engine.sql_backend import EVENTS, WORK, Listener, backend_for, store_error
from engine.sql_cancel import cancel_runs
from engine.sql_compiled import fetch_compiled
from engine.sql_events import SqlEvents
from engine.sql_flow import SqlFlow
from engine.sql_loops import SqlLoops
from engine.sql_route_reads import SkillVersionCache
from engine.sql_stats import SqlStats
from engine.store_rows import (
    attempt_from_row,
    attempt_to_row,
    log_from_row,
    log_to_row,
    readable_run,
    run_from_row,
    skill_from_row,
    step_from_row,
    step_to_row,
    version_from_row,
    version_to_row,
)
from engine.store_writer import StoreWriter, announce
from engine.tables import (
    ALL_TABLES,
    attempts,
    events,
    run_logs,
    runs,
    skills,
    steps,
    versions,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

WAKEABLE = ("queued", "sleeping", "waiting")


CLAIM_LOOKAHEAD = 64  # due runs looked at beyond the limit, when some may wait for a slot


def _admitted(
    connection: Connection, candidates: Iterable[Run], slots_of: SlotsOf, limit: int
) -> list[tuple[Run, list[Slot]]]:
    """The candidates, oldest first, whose every slot has room (FIFO within a slot)."""
    held = writes.held_slots(connection)
    chosen: list[tuple[Run, list[Slot]]] = []
    for run in candidates:
        slots = slots_of(run)
        if any(held.get(name, 0) >= capacity for name, capacity in slots):
            continue
        for name, _ in slots:
            held[name] = held.get(name, 0) + 1
        chosen.append((run, slots))
        if len(chosen) == limit:
            break
    return chosen


class SqlStore(SqlEvents, SqlLoops, SqlStats, SqlFlow):
    """`engine.store.Store` on SQLite or PostgreSQL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._backend = backend_for(url)
        self._engine, self._write_engine = self._backend.engines()
        self._writer: StoreWriter | None = None
        self._skill_versions = SkillVersionCache()
        self._stop_listening: list[Callable[[], None]] = []
        self._closed = False

    @property
    def backend(self) -> str:
        return self._backend.name

    @property
    def display_url(self) -> str:
        """The URL without its password, for logs and views."""
        return make_url(self.url).render_as_string(hide_password=True)

    # lifecycle ---------------------------------------------------------------------------

    @property
    def sa_engine(self) -> Engine:
        """The engine that writes (for migrations and tools); the store's own reads use another."""
        return self._write_engine

    def migrate(self) -> None:
        try:
            migrate.upgrade(self._write_engine)
        except DBAPIError as exc:  # most often: the server is down or the URL is wrong
            reason = str(exc.orig).strip().splitlines()[0]
            raise StoreUnavailable(f"cannot open the database {self.display_url}: {reason}") from None

    def _write(self) -> StoreWriter:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        if self._writer is None:
            self._writer = StoreWriter(self._write_engine, self._backend)
        return self._writer

    def watch(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with what other processes announce they changed (`engine.sql_backend`),
        from a thread of its own, until the returned function is called (or the store closes);
        a backend without notifications never calls it."""
        stop = self._backend.listen(listener)
        self._stop_listening.append(stop)

        def stop_watching() -> None:
            if stop in self._stop_listening:
                self._stop_listening.remove(stop)
                stop()

        return stop_watching

    def close(self) -> None:
        self._closed = True
        for stop in self._stop_listening:
            stop()
        self._stop_listening = []
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._engine.dispose()
        self._write_engine.dispose()

    def _read(self, statement: Any) -> list[Any]:
        return self._read_with(lambda connection: list(connection.execute(statement).mappings()))

    def _read_compiled(self, statement: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
        """A hot read built once at import (see `engine.sql_compiled`)."""
        return self._read_with(lambda connection: fetch_compiled(connection, statement, params))

    def _read_with(self, read: Callable[[Connection], T]) -> T:
        """`read` on a reader's connection."""
        try:
            with self._engine.connect() as connection:
                return read(connection)
        except DBAPIError as exc:  # locked, I/O error: say so, as writes do
            raise store_error(exc, "read", self._backend.busy_seconds) from None

    # skills ------------------------------------------------------------------------------

    def add_skill_version(self, version: SkillVersion, *, new_skill: bool) -> SkillVersion:
        def write(connection: Connection) -> SkillVersion:
            current = (
                connection.execute(select(skills).where(skills.c.name == version.name)).mappings().first()
            )
            live = current is not None and current["deleted_at"] is None
            if new_skill and live:
                raise SkillExists(version.name)
            if not new_skill and not live:
                raise SkillNotFound(version.name)
            number = 1 if current is None else current["latest_version"] + 1
            stored = SkillVersion(**{**version.__dict__, "version": number})
            connection.execute(insert(versions).values(version_to_row(stored)))
            row = {
                "latest_version": number,
                "description": stored.description,
                "updated_at": stored.created_at,
                "deleted_at": None,
            }
            if current is None:
                connection.execute(
                    insert(skills).values(name=stored.name, created_at=stored.created_at, **row)
                )
            else:
                connection.execute(update(skills).where(skills.c.name == stored.name).values(**row))
            return stored

        return self._write().call(write, serial=True)  # the version number is read, then taken

    def get_skill(self, name: str) -> Skill | None:
        rows = self._read(select(skills).where(skills.c.name == name, skills.c.deleted_at.is_(None)))
        return skill_from_row(rows[0]) if rows else None

    def get_skill_version(self, name: str, version: int | None = None) -> SkillVersion | None:
        if version is None:
            skill = self.get_skill(name)
            if skill is None:
                return None
            version = skill.latest_version
        rows = self._read(select(versions).where(versions.c.name == name, versions.c.version == version))
        return version_from_row(rows[0]) if rows else None

    def list_skills(self) -> list[Skill]:
        rows = self._read(select(skills).where(skills.c.deleted_at.is_(None)).order_by(skills.c.name))
        return [skill_from_row(row) for row in rows]

    def list_skill_versions(self, name: str) -> list[SkillVersion]:
        rows = self._read(select(versions).where(versions.c.name == name).order_by(versions.c.version))
        return [version_from_row(row) for row in rows]

    def delete_skill(self, name: str, now: float) -> bool:
        def write(connection: Connection) -> bool:
            result = connection.execute(
                update(skills)
                .where(skills.c.name == name, skills.c.deleted_at.is_(None))
                .values(deleted_at=now, updated_at=now)
            )
            return result.rowcount == 1

        return self._write().call(write)

    def live_skill_versions(self) -> list[SkillVersion]:
        return self._read_with(self._skill_versions.live)

    # runs --------------------------------------------------------------------------------

    def create_runs(self, new_runs: list[Run], copied_steps: list[Step] | None = None) -> None:
        def write(connection: Connection) -> None:
            writes.insert_runs(connection, new_runs)
            if copied_steps:
                connection.execute(insert(steps), [step_to_row(s) for s in copied_steps])
            announce(connection, WORK)

        self._write().call(write)

    def get_run(self, run_id: str) -> Run | None:
        rows = self._read_compiled(_GET_RUN, {"run_id": run_id})
        return readable_run(rows[0]) if rows else None

    def list_runs(
        self,
        function: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> RunPage:
        statement = select(runs)
        if function is not None:
            statement = statement.where(runs.c.function == function)
        if status is not None:
            statement = statement.where(runs.c.status == status)
        if since is not None:
            statement = statement.where(runs.c.created_at >= since)
        if until is not None:
            statement = statement.where(runs.c.created_at < until)
        if cursor is not None:
            created, run_id = _decode_cursor(cursor)
            statement = statement.where(
                or_(
                    runs.c.created_at < created,
                    and_(runs.c.created_at == created, runs.c.id < run_id),
                )
            )
        statement = statement.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit + 1)
        found = [readable_run(row) for row in self._read(statement)]
        page, more = found[:limit], len(found) > limit
        next_cursor = _encode_cursor(page[-1].created_at, page[-1].id) if more and page else None
        return RunPage(runs=page, next_cursor=next_cursor)

    def children(self, run_id: str) -> list[Run]:
        rows = self._read(select(runs).where(runs.c.parent_run_id == run_id).order_by(runs.c.created_at))
        return [readable_run(row) for row in rows]

    def claim_due_runs(
        self, owner: str, now: float, lease_until: float, limit: int, slots_of: SlotsOf | None = None
    ) -> list[Run]:
        def due(connection: Connection, count: int) -> list[Any]:
            statement = (
                select(runs)
                .where(runs.c.status.in_(WAKEABLE), runs.c.wake_at <= now)
                .order_by(runs.c.wake_at, runs.c.created_at)
                .limit(count)
                .with_for_update(skip_locked=True)  # another claimant's rows are its to take
            )
            return list(connection.execute(statement).mappings().all())

        def write(connection: Connection) -> list[Run]:
            rows = due(connection, limit)
            if slots_of is None:
                chosen_runs = list(_decoded(connection, rows, now))
            else:
                chosen = _admitted(connection, _decoded(connection, rows, now), slots_of, limit)
                if len(chosen) < limit and len(rows) == limit:  # some wait for a slot: look further
                    rows = due(connection, limit * 4 + CLAIM_LOOKAHEAD)
                    chosen = _admitted(connection, _decoded(connection, rows, now), slots_of, limit)
                writes.take_slots(connection, chosen)
                chosen_runs = [run for run, _ in chosen]
            if not chosen_runs:
                return []
            ids = [run.id for run in chosen_runs]
            result = connection.execute(
                update(runs)
                .where(runs.c.id.in_(ids), runs.c.status.in_(WAKEABLE))
                .values(
                    status="running",
                    lease_owner=owner,
                    lease_expires_at=lease_until,
                    started_at=func.coalesce(runs.c.started_at, now),
                    updated_at=now,
                    wake_at=None,
                )
            )
            if result.rowcount == len(ids):  # all taken (the rows are locked): no need to read them back
                return [_as_claimed(run, owner, lease_until, now) for run in chosen_runs]
            rows = connection.execute(select(runs).where(runs.c.id.in_(ids))).mappings()
            claimed = [run_from_row(row) for row in rows if row["lease_owner"] == owner]
            claimed.sort(key=lambda run: ids.index(run.id))
            return claimed

        return self._write().call(write, serial=slots_of is not None)  # slot room is counted

    def next_wake_at(self) -> float | None:
        rows = self._read(select(func.min(runs.c.wake_at)).where(runs.c.status.in_(WAKEABLE)))
        return rows[0][next(iter(rows[0].keys()))] if rows else None

    def extend_leases(self, owner: str, lease_until: float, run_ids: list[str]) -> int:
        if not run_ids:
            return 0

        def write(connection: Connection) -> int:
            result = connection.execute(
                update(runs)
                .where(runs.c.id.in_(run_ids), runs.c.lease_owner == owner, runs.c.status == "running")
                .values(lease_expires_at=lease_until)
            )
            return result.rowcount

        return self._write().call(write)

    def lease_owners(self) -> list[str]:
        rows = self._read(select(runs.c.lease_owner).where(runs.c.status == "running").distinct())
        return [row["lease_owner"] for row in rows if row["lease_owner"]]

    def release_leases(
        self, now: float, *, owner: str | None = None, expired_before: float | None = None
    ) -> int:
        condition = runs.c.status == "running"
        if owner is not None:
            condition = and_(condition, runs.c.lease_owner == owner)
        if expired_before is not None:
            condition = and_(condition, runs.c.lease_expires_at < expired_before)

        def write(connection: Connection) -> int:
            result = connection.execute(
                update(runs)
                .where(condition)
                .values(
                    status="queued",
                    wake_at=now,
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                )
            )
            if result.rowcount:
                announce(connection, WORK)
            return result.rowcount

        return self._write().call(write)

    def commit_step(self, owner: str, commit: StepCommit, now: float) -> bool:
        def write(connection: Connection) -> bool:
            plain_insert = commit.step is not None and not commit.replaces
            if plain_insert:  # the common case: one statement that checks the lease and inserts
                if not writes.insert_step_if_owned(connection, commit.step, owner):
                    return False
            elif not writes.owns(connection, commit.run_id, owner):
                return False
            if commit.step is not None and not plain_insert:
                writes.write_step(connection, commit.step, replaces=True)
            if commit.failed_attempt is not None:
                connection.execute(insert(attempts).values(attempt_to_row(commit.failed_attempt)))
            for item in commit.new_events:
                writes.insert_event(connection, item)
            writes.insert_runs(connection, commit.new_runs)
            if commit.new_events:
                announce(connection, EVENTS)  # routed by this engine next, or by any at its poll
            if commit.new_runs:
                announce(connection, WORK)
            if commit.suspend is not None:
                status, wake_at = commit.suspend
                writes.release(connection, commit.run_id, status=status, wake_at=wake_at, now=now)
            return True

        return self._write().call(write)

    def finish_run(
        self,
        run_id: str,
        owner: str,
        status: str,
        now: float,
        *,
        output: Any = None,
        error: dict[str, Any] | None = None,
        resolution: StepResolution | None = None,
        new_runs: list[Run] | None = None,
    ) -> bool:
        def write(connection: Connection) -> bool:
            if not writes.finish(connection, run_id, owner, status, (output, error, now)):
                return False
            if resolution is not None:
                writes.resolve_step(connection, resolution, now)
            writes.insert_runs(connection, new_runs or [])
            if resolution is not None or new_runs:
                announce(connection, WORK)
            writes.announce_freed_slot(connection, run_id)
            return True

        return self._write().call(write)

    def requeue_run(self, run_id: str, owner: str, wake_at: float, attempt: int, now: float) -> bool:
        def write(connection: Connection) -> bool:
            if not writes.owns(connection, run_id, owner):
                return False
            connection.execute(update(runs).where(runs.c.id == run_id).values(attempt=attempt))
            writes.release(connection, run_id, status="queued", wake_at=wake_at, now=now)
            announce(connection, WORK)
            return True

        return self._write().call(write)

    def suspend_run(self, run_id: str, owner: str, status: str, wake_at: float | None, now: float) -> bool:
        def write(connection: Connection) -> bool:
            if not writes.owns(connection, run_id, owner):
                return False
            writes.release(connection, run_id, status=status, wake_at=wake_at, now=now)
            return True

        return self._write().call(write)

    def cancel_runs(
        self, run_ids: list[str], reason: str | None, now: float, resolution: StepResolution | None
    ) -> list[str]:
        def write(connection: Connection) -> list[str]:
            live = cancel_runs(connection, run_ids, reason, now)
            if live and resolution is not None:
                writes.resolve_step(connection, resolution, now)
            if live:
                announce(connection, WORK)
            return live

        return self._write().call(write)

    def resolve_due_steps(self, run_id: str, now: float) -> int:
        def write(connection: Connection) -> int:
            pending = connection.execute(
                select(steps.c.key, steps.c.op).where(
                    steps.c.run_id == run_id,
                    steps.c.status.in_(PENDING_STEP),
                    steps.c.wake_at <= now,
                )
            ).all()
            for key, op in pending:
                if op == "invoke":
                    error = {
                        "type": "TimeoutError",
                        "message": "the invoked run did not finish in time",
                    }
                    values: dict[str, Any] = {"status": "failed", "error": dumps(error)}
                else:  # a sleep that is due, or a wait that timed out (its result is null)
                    values = {"status": "completed", "output": dumps(None)}
                connection.execute(
                    update(steps)
                    .where(
                        steps.c.run_id == run_id,
                        steps.c.key == key,
                        steps.c.status.in_(PENDING_STEP),
                    )
                    .values(ended_at=now, **values)
                )
            return len(pending)

        return self._write().call(write)

    # steps, attempts, logs ---------------------------------------------------------------

    def load_steps(self, run_id: str) -> list[Step]:
        return [step_from_row(row) for row in self._read_compiled(_STEPS_OF, {"run_id": run_id})]

    def load_attempts(self, run_id: str) -> list[Attempt]:
        return [attempt_from_row(row) for row in self._read_compiled(_ATTEMPTS_OF, {"run_id": run_id})]

    def append_logs(self, logs: list[LogLine]) -> None:
        if logs:
            rows = [log_to_row(line) for line in logs]
            self._write().submit(lambda connection: connection.execute(insert(run_logs), rows))

    def load_logs(self, run_id: str) -> list[LogLine]:
        rows = self._read(select(run_logs).where(run_logs.c.run_id == run_id).order_by(run_logs.c.id))
        return [log_from_row(row) for row in rows]

    def backlog_size(self) -> int:
        """Work accepted but not started: queued runs and events not yet routed."""
        [row] = self._read_compiled(_BACKLOG, {})
        return int(row["queued"]) + int(row["unrouted"])

    def table_counts(self) -> dict[str, int]:
        return {
            table.name: self._read(select(func.count().label("n")).select_from(table))[0]["n"]
            for table in ALL_TABLES
        }


# Read by every wait for a run's result, and by every run claimed from the queue: compiled once.
_GET_RUN = select(runs).where(runs.c.id == bindparam("run_id"))
_STEPS_OF = select(steps).where(steps.c.run_id == bindparam("run_id")).order_by(steps.c.seq)
_ATTEMPTS_OF = (
    select(attempts)
    .where(attempts.c.run_id == bindparam("run_id"))
    .order_by(attempts.c.key, attempts.c.attempt)
)

# Read on the send path (every few sends, for back-pressure): one statement, compiled once.
_BACKLOG = select(
    select(func.count()).select_from(runs).where(runs.c.status == "queued").scalar_subquery().label("queued"),
    select(func.count())
    .select_from(events)
    .where(events.c.processed_at.is_(None))
    .scalar_subquery()
    .label("unrouted"),
)


def _decoded(connection: Connection, rows: list[Any], now: float) -> Iterator[Run]:
    """The due runs, except those whose stored record is corrupt: they fail here, with the
    error naming the record, rather than stopping every claim (and so every run) for good.
    Decoded as they are asked for: a claim that counts slots stops at its limit."""
    for row in rows:
        try:
            yield run_from_row(row)
        except CorruptRecord as exc:
            log.error("run %s cannot start: %s", row["id"], exc)
            error = dumps({"type": "CorruptRecord", "message": str(exc)})
            connection.execute(
                update(runs)
                .where(runs.c.id == row["id"], runs.c.status.in_(WAKEABLE))
                .values(status="failed", error=error, ended_at=now, updated_at=now, wake_at=None)
            )


def _as_claimed(run: Run, owner: str, lease_until: float, now: float) -> Run:
    """The run as the claim's UPDATE left it."""
    started_at = run.started_at if run.started_at is not None else now
    return replace(
        run,
        status="running",
        lease_owner=owner,
        lease_expires_at=lease_until,
        started_at=started_at,
        updated_at=now,
        wake_at=None,
    )


def _encode_cursor(created_at: float, run_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at!r}|{run_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        created, run_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return float(created), run_id
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput(f"invalid cursor {cursor!r}: pass back a next_cursor you were given") from None
