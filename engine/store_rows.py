"""Conversion between store records and table rows (JSON columns encoded as text)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import CorruptRecord
from engine.jsonutil import dumps, loads
from engine.records import Attempt, Event, LogLine, Loop, Run, Skill, SkillVersion, Step


def _json_or_none(value: Any) -> str | None:
    return None if value is None else dumps(value)


def _load(row: Mapping[str, Any], column: str, table: str, record: str) -> Any:
    """A JSON column's value, or a `CorruptRecord` that names the record and the column: a
    value that is not the JSON the engine wrote must stop its own run, not the engine."""
    try:
        return loads(row[column])
    except (ValueError, TypeError) as exc:
        raise CorruptRecord(f"{record} is corrupt: {table}.{column} is not valid JSON ({exc})") from None


def skill_from_row(row: Mapping[str, Any]) -> Skill:
    return Skill(
        name=row["name"],
        latest_version=row["latest_version"],
        description=row["description"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        deleted_at=row["deleted_at"],
    )


def version_to_row(version: SkillVersion) -> dict[str, Any]:
    return {
        "name": version.name,
        "version": version.version,
        "code": version.code,
        "description": version.description,
        "triggers": dumps(version.triggers),
        "config": dumps(version.config),
        "has_on_failure": version.has_on_failure,
        "created_at": version.created_at,
    }


def version_from_row(row: Mapping[str, Any]) -> SkillVersion:
    return SkillVersion(
        name=row["name"],
        version=row["version"],
        code=row["code"],
        description=row["description"],
        triggers=_load(row, "triggers", "skill_versions", _version_name(row)),
        config=_load(row, "config", "skill_versions", _version_name(row)),
        has_on_failure=bool(row["has_on_failure"]),
        created_at=row["created_at"],
    )


def _version_name(row: Mapping[str, Any]) -> str:
    return f"version {row['version']} of skill {row['name']!r}"


def event_to_row(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "name": event.name,
        "data": dumps(event.data),
        "ts": event.ts,
        "received_at": event.received_at,
        "processed_at": event.processed_at,
        "source_run_id": event.source_run_id,
    }


def event_from_row(row: Mapping[str, Any]) -> Event:
    return Event(
        id=row["id"],
        name=row["name"],
        data=_load(row, "data", "events", f"event {row['id']!r}"),
        ts=row["ts"],
        received_at=row["received_at"],
        processed_at=row["processed_at"],
        source_run_id=row["source_run_id"],
    )


_RUN_JSON = ("event", "events", "failure", "output", "error")


def run_to_row(run: Run) -> dict[str, Any]:
    row = dict(run.__dict__)
    for name in _RUN_JSON:
        row[name] = _json_or_none(row[name])
    return row


def run_from_row(row: Mapping[str, Any]) -> Run:
    values = dict(row)
    for name in _RUN_JSON:
        values[name] = _load(row, name, "runs", f"run {row['id']}")
    return Run(**values)


def readable_run(row: Mapping[str, Any]) -> Run:
    """The run for people to read even when a JSON column is corrupt: that column is left empty
    and the run's error says what is wrong (the run itself is failed when it is next claimed)."""
    try:
        return run_from_row(row)
    except CorruptRecord as exc:
        values, problem = dict(row), {"type": "CorruptRecord", "message": str(exc)}
        for name in _RUN_JSON:
            try:
                values[name] = loads(row[name])
            except (ValueError, TypeError):
                values[name] = {} if name == "event" else None
        values["error"] = problem
        return Run(**values)


_STEP_JSON = ("input", "output", "error", "meta")


def step_to_row(step: Step) -> dict[str, Any]:
    row = dict(step.__dict__)
    for name in _STEP_JSON:
        row[name] = _json_or_none(row[name])
    return row


def step_from_row(row: Mapping[str, Any]) -> Step:
    values = dict(row)
    for name in _STEP_JSON:
        values[name] = _load(row, name, "steps", f"step {row['key']!r} of run {row['run_id']}")
    return Step(**values)


def attempt_to_row(attempt: Attempt) -> dict[str, Any]:
    row = dict(attempt.__dict__)
    row["error"] = _json_or_none(attempt.error)
    return row


def attempt_from_row(row: Mapping[str, Any]) -> Attempt:
    values = dict(row)
    record = f"attempt {row['attempt']} of step {row['key']!r} of run {row['run_id']}"
    values["error"] = _load(row, "error", "step_attempts", record)
    return Attempt(**values)


def log_to_row(line: LogLine) -> dict[str, Any]:
    return dict(line.__dict__)


def log_from_row(row: Mapping[str, Any]) -> LogLine:
    return LogLine(
        run_id=row["run_id"],
        ts=row["ts"],
        level=row["level"],
        message=row["message"],
        step_key=row["step_key"],
    )


def loop_to_row(loop: Loop) -> dict[str, Any]:
    row = dict(loop.__dict__)
    row["data"] = dumps(loop.data)
    return row


def loop_from_row(row: Mapping[str, Any]) -> Loop:
    values = dict(row)
    values["data"] = _load(row, "data", "schedules", f"loop {row['id']!r}")
    values["paused"] = bool(values["paused"])
    return Loop(**values)
