"""Statements that run inside the store's write transactions (called by `SqlStore` only)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, bindparam, cast, delete, exists, func, insert, select, update
from sqlalchemy.engine import Connection

from engine.jsonutil import dumps
from engine.records import PENDING_STEP, Event, EventRoute, Run, Step, StepResolution
from engine.sql_backend import WORK
from engine.sql_cancel import cancel_runs
from engine.sql_compiled import execute_compiled, fetch_compiled
from engine.sql_gates import INSERT_RUN, store_gated_runs
from engine.store_rows import event_to_row, run_to_row, step_to_row
from engine.store_writer import announce, announcing
from engine.tables import events, run_slots, runs, steps

FinalOutcome = tuple[Any, dict[str, Any] | None, float]  # output, error, when it ended

_EVENT_EXISTS = select(events.c.id).where(events.c.id == bindparam("id"))
_INSERT_EVENT = insert(events)
_MARK_ROUTED = (
    update(events)
    .where(events.c.id == bindparam("event_id"), events.c.processed_at.is_(None))
    .values(processed_at=bindparam("now"))
)


def insert_event(connection: Connection, item: Event, processed_at: float | None = None) -> bool:
    """Store an event unless its id is taken; `processed_at` when it is routed in this same
    transaction (so no second statement marks it). True if it was stored."""
    if fetch_compiled(connection, _EVENT_EXISTS, {"id": item.id}):
        return False
    row = event_to_row(item)
    if processed_at is not None:
        row["processed_at"] = processed_at
    execute_compiled(connection, _INSERT_EVENT, row)
    return True


def apply_route(connection: Connection, route: EventRoute, now: float) -> bool:
    """Route a stored event, unless another engine routed it first (then False)."""
    if execute_compiled(connection, _MARK_ROUTED, {"event_id": route.event_id, "now": now}) != 1:
        return False
    route_effects(connection, route, now)
    return True


def route_effects(connection: Connection, route: EventRoute, now: float) -> None:
    """What a route does, for an event marked routed in this transaction."""
    admit_claimed(connection, route, now)
    store_gated_runs(connection, route.new_runs, route.gates, now)
    for resolution in route.resolutions:
        resolve_step(connection, resolution, now)
    for run_id, reason in route.cancels:
        cancel_runs(connection, [run_id], reason, now)


def admit_claimed(connection: Connection, route: EventRoute, now: float) -> None:
    """Runs the engine claimed at creation keep their claim only if each of their concurrency
    slots has room (taken in queue order); the others are stored queued, for the next claim."""
    claimed = sorted(
        (run for run in route.new_runs if run.status == "running"), key=lambda run: run.wake_at or 0
    )
    limited = [run for run in claimed if route.slots.get(run.id)]
    held = held_slots(connection) if limited else {}
    admitted = []
    for run in claimed:
        slots = route.slots.get(run.id) or []
        if any(held.get(name, 0) >= capacity for name, capacity in slots):
            run.status, run.started_at, run.lease_owner, run.lease_expires_at = "queued", None, None, None
            continue
        run.wake_at = None  # running
        for name, _ in slots:
            held[name] = held.get(name, 0) + 1
        if slots:
            admitted.append((run, slots))
    for run, slots in admitted:
        for name, capacity in slots:
            execute_compiled(connection, _INSERT_SLOT, {"run_id": run.id, "slot": name, "capacity": capacity})


_INSERT_SLOT = insert(run_slots)
_HELD_SLOTS = (
    select(run_slots.c.slot, func.count().label("held"))
    .select_from(run_slots.join(runs, runs.c.id == run_slots.c.run_id))
    .where(runs.c.status == "running")
    .group_by(run_slots.c.slot)
)


def held_slots(connection: Connection) -> dict[str, int]:
    """How many running runs hold each concurrency slot."""
    return {row["slot"]: row["held"] for row in fetch_compiled(connection, _HELD_SLOTS, {})}


def take_slots(connection: Connection, chosen: list[tuple[Run, list[tuple[str, int]]]]) -> None:
    """Record the slots of runs being claimed (replacing what an earlier claim recorded)."""
    ids = [run.id for run, _ in chosen]
    connection.execute(delete(run_slots).where(run_slots.c.run_id.in_(ids)))
    rows = [
        {"run_id": run.id, "slot": name, "capacity": capacity}
        for run, slots in chosen
        for name, capacity in slots
    ]
    if rows:
        connection.execute(insert(run_slots), rows)


def insert_runs(connection: Connection, new_runs: list[Run]) -> None:
    for run in new_runs:
        if run.status == "running":
            run.wake_at = None  # claimed at creation: it has no wake time
    for run in new_runs:
        execute_compiled(connection, INSERT_RUN, run_to_row(run))


# Hot-path statements are built once with bind parameters, so SQLAlchemy compiles each once.
# Lease checks lock the run's row for share (PostgreSQL; SQLite's writer is alone anyway): a
# claimant that takes the run over waits for this write, then reads the step it stored.
OWNER_OF = (
    select(runs.c.status, runs.c.lease_owner)
    .where(runs.c.id == bindparam("run_id"))
    .with_for_update(read=True)
)
_INSERT_STEP = insert(steps)
_STEP_VALUE_COLUMNS = [c.name for c in steps.columns if c.name not in ("run_id", "key")]
_UPDATE_STEP = (
    update(steps)
    .where(steps.c.run_id == bindparam("where_run_id"), steps.c.key == bindparam("where_key"))
    .values({name: bindparam(name) for name in _STEP_VALUE_COLUMNS})
)
_RELEASE = (
    update(runs)
    .where(runs.c.id == bindparam("run_id"))
    .values(
        status=bindparam("status"),
        wake_at=bindparam("wake_at"),
        lease_owner=None,
        lease_expires_at=None,
        updated_at=bindparam("now"),
    )
)


_FINISH = (
    update(runs)
    .where(runs.c.id == bindparam("run_id"), runs.c.lease_owner == bindparam("owner"))
    .where(runs.c.status == "running")
    .values(
        status=bindparam("status"),
        output=bindparam("output"),
        error=bindparam("error"),
        ended_at=bindparam("now"),
        updated_at=bindparam("now"),
        wake_at=None,
        lease_owner=None,
        lease_expires_at=None,
    )
)


def finish(connection: Connection, run_id: str, owner: str, status: str, outcome: FinalOutcome) -> bool:
    """End a run this owner holds, with its output or error; False if it no longer holds it."""
    output, error, now = outcome
    params = {
        "run_id": run_id,
        "owner": owner,
        "status": status,
        "output": None if output is None else dumps(output),
        "error": None if error is None else dumps(error),
        "now": now,
    }
    return execute_compiled(connection, _FINISH, params) == 1


def _step_value(name: str) -> Any:
    """A step column's value as a typed bind (PostgreSQL needs the type of a NULL float)."""
    column = steps.c[name]
    value = bindparam(name, type_=column.type)
    return cast(value, Float) if isinstance(column.type, Float) else value


_STEP_COLUMNS = [c.name for c in steps.columns]
_INSERT_STEP_IF_OWNED = insert(steps).from_select(
    _STEP_COLUMNS,
    select(*[_step_value(name) for name in _STEP_COLUMNS]).where(
        exists(
            select(runs.c.id)
            .where(
                runs.c.id == bindparam("run_id"),
                runs.c.status == "running",
                runs.c.lease_owner == bindparam("owner"),
            )
            .with_for_update(read=True)
        )
    ),
)


def insert_step_if_owned(connection: Connection, step: Step, owner: str) -> bool:
    row = step_to_row(step)
    row["owner"] = owner
    return execute_compiled(connection, _INSERT_STEP_IF_OWNED, row) == 1


def owns(connection: Connection, run_id: str, owner: str) -> bool:
    row = connection.execute(OWNER_OF, {"run_id": run_id}).first()
    return row is not None and row[0] == "running" and row[1] == owner


def release(connection: Connection, run_id: str, *, status: str, wake_at: float | None, now: float) -> None:
    connection.execute(_RELEASE, {"run_id": run_id, "status": status, "wake_at": wake_at, "now": now})
    announce_freed_slot(connection, run_id)


_HELD_A_SLOT = select(run_slots.c.run_id).where(run_slots.c.run_id == bindparam("run_id")).limit(1)


def announce_freed_slot(connection: Connection, run_id: str) -> None:
    """A run that stops running frees its concurrency slots: a run queued behind it may start in
    another process. Looked up only where announcements reach anyone (not on SQLite's hot path)."""
    if announcing(connection) and connection.execute(_HELD_A_SLOT, {"run_id": run_id}).first():
        announce(connection, WORK)


def write_step(connection: Connection, step: Step, *, replaces: bool) -> None:
    row = step_to_row(step)
    if replaces:  # a pending step (sleep, wait, invoke) that now ends or is re-recorded
        row["where_run_id"], row["where_key"] = row.pop("run_id"), row.pop("key")
        if connection.execute(_UPDATE_STEP, row).rowcount == 1:
            return
        row["run_id"], row["key"] = row.pop("where_run_id"), row.pop("where_key")
    connection.execute(_INSERT_STEP, row)


def resolve_step(connection: Connection, resolution: StepResolution, now: float) -> None:
    """End a pending step and queue its run, unless something else ended it first."""
    result = connection.execute(
        update(steps)
        .where(
            steps.c.run_id == resolution.run_id,
            steps.c.key == resolution.key,
            steps.c.status.in_(PENDING_STEP),
        )
        .values(
            status=resolution.status,
            output=dumps(resolution.output),
            error=None if resolution.error is None else dumps(resolution.error),
            ended_at=now,
        )
    )
    if result.rowcount == 1:
        connection.execute(
            update(runs)
            .where(runs.c.id == resolution.run_id, runs.c.status.in_(PENDING_STEP))
            .values(status="queued", wake_at=now, updated_at=now)
        )
