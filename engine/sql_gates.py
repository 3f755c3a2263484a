"""Storing new runs through their flow-control gates (idempotency, rate limit, singleton).

Runs inside the transaction that stores the runs, so the database decides, whatever number of
engines route events. A run that does not pass is stored as `skipped`, with the reason.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from engine.jsonutil import dumps, loads
from engine.records import FINAL_STATUSES, Run, RunGate
from engine.sql_cancel import cancel_runs
from engine.sql_compiled import execute_compiled
from engine.store_rows import run_to_row
from engine.tables import run_keys, runs

INSERT_RUN = insert(runs)  # every column a bind parameter: compiled once (see sql_compiled)


def store_gated_runs(connection: Connection, new_runs: list[Run], gates: list[RunGate], now: float) -> None:
    by_run: dict[str, list[RunGate]] = defaultdict(list)
    for gate in gates:
        by_run[gate.run_id].append(gate)
    for run in new_runs:
        gates_of = by_run[run.id]
        reason = next((why for gate in gates_of if (why := _blocked(connection, run, gate, now))), None)
        reason = reason or next((why for g in gates_of if (why := _merged(connection, run, g, now))), None)
        if reason is not None:
            _skip(run, reason, now)
        starts_at = {
            g.kind: _throttled_start(connection, run, g, now) for g in gates_of if g.kind == "throttle"
        }
        for gate in gates_of:
            if reason is None and gate.kind in ("debounce", "batch"):  # the first of its kind waits
                run.wake_at = now + (gate.window or 0.0)
                run.events = [run.event] if run.event else None
        if reason is None and starts_at.get("throttle", now) > now:
            run.wake_at = max(run.wake_at or now, starts_at["throttle"])
            run.cancel_reason = f"throttled: start delayed by {starts_at['throttle'] - now:.3g}s"
        execute_compiled(connection, INSERT_RUN, run_to_row(run))
        if reason is None and gates_of:
            rows = [
                {
                    "run_id": run.id,
                    "kind": g.kind,
                    "function": run.function,
                    "key": g.key,
                    "created_at": starts_at.get(g.kind, now),  # a throttled run: its start slot
                }
                for g in gates_of
            ]
            connection.execute(insert(run_keys), rows)


def _skip(run: Run, reason: str, now: float) -> None:
    run.status, run.wake_at, run.ended_at, run.cancel_reason = "skipped", None, now, reason
    run.started_at = run.lease_owner = run.lease_expires_at = None


def _same_key(run: Run, gate: RunGate) -> list[object]:
    return [run_keys.c.function == run.function, run_keys.c.kind == gate.kind, run_keys.c.key == gate.key]


def _merged(connection: Connection, run: Run, gate: RunGate, now: float) -> str | None:
    """Debounce and batching: fold the new run's event into a pending run with the same key
    (one that has not started yet), and say so; None if there is none to fold into."""
    if gate.kind not in ("debounce", "batch"):
        return None
    pending = connection.execute(
        select(runs.c.id, runs.c.created_at, runs.c.events)
        .join(run_keys, runs.c.id == run_keys.c.run_id)
        .where(*_same_key(run, gate), runs.c.status == "queued", runs.c.started_at.is_(None))
        .order_by(runs.c.created_at)
        .limit(1)
    ).first()
    if pending is None:
        return None
    target, created, events = pending
    if gate.kind == "debounce":  # the last event wins; the wait starts again, up to the timeout
        wake_at = now + (gate.window or 0.0)
        if gate.deadline is not None:
            wake_at = min(wake_at, created + gate.deadline)
        values = {"event": dumps(run.event), "events": dumps([run.event]), "wake_at": wake_at}
        connection.execute(update(runs).where(runs.c.id == target).values(updated_at=now, **values))
        return f"debounced: run {target} runs with this event instead"
    batch = [*(loads(events) or []), run.event]
    values = {"events": dumps(batch)}
    if len(batch) >= gate.limit:  # full: it starts now and takes no more events
        values["wake_at"] = now
        connection.execute(delete(run_keys).where(run_keys.c.run_id == target, run_keys.c.kind == "batch"))
    connection.execute(update(runs).where(runs.c.id == target).values(updated_at=now, **values))
    return f"batched: run {target} receives this event in ctx.events"


def _throttled_start(connection: Connection, run: Run, gate: RunGate, now: float) -> float:
    """The earliest start that keeps at most `limit` starts with this key in any `window`
    (the starts already given out are the keys' times): a sliding-window throttle."""
    window = gate.window or 0.0
    recent = [
        row[0]
        for row in connection.execute(
            select(run_keys.c.created_at)
            .where(*_same_key(run, gate), run_keys.c.created_at > now - window)
            .order_by(run_keys.c.created_at.desc())
            .limit(gate.limit)
        )
    ]
    if len(recent) < gate.limit:
        return now
    return max(now, recent[-1] + window)


def _blocked(connection: Connection, run: Run, gate: RunGate, now: float) -> str | None:
    if gate.kind not in ("idempotency", "rate_limit", "singleton"):
        return None  # throttle delays; debounce and batch fold into a pending run
    if gate.kind == "idempotency":
        window = gate.window or 0.0
        earlier = connection.execute(
            select(run_keys.c.run_id)
            .where(*_same_key(run, gate), run_keys.c.created_at >= now - window)
            .limit(1)
        ).first()
        return None if earlier is None else f"idempotency key {gate.key!r} was used by run {earlier[0]}"
    if gate.kind == "rate_limit":
        window = gate.window or 0.0
        count = connection.execute(
            select(func.count()).where(*_same_key(run, gate), run_keys.c.created_at >= now - window)
        ).scalar_one()
        if count >= gate.limit:
            return f"rate limit of {gate.limit} per {window:g}s reached for key {gate.key!r}"
        return None
    holders = [
        row[0]
        for row in connection.execute(
            select(run_keys.c.run_id)
            .join(runs, runs.c.id == run_keys.c.run_id)
            .where(*_same_key(run, gate), runs.c.status.not_in(FINAL_STATUSES))
        )
    ]
    if not holders:
        return None
    if gate.mode == "skip":
        return f"singleton key {gate.key!r} is held by unfinished run {holders[0]}"
    # mode "cancel": the newest run wins
    cancel_runs(connection, holders, f"replaced by run {run.id} (singleton key {gate.key!r})", now)
    return None
