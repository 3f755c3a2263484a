"""Conversion between store records and table rows (JSON columns encoded as text)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.jsonutil import dumps, loads
from engine.records import Attempt, Event, LogLine, Loop, Run, Skill, SkillVersion, Step


def _json_or_none(value: Any) -> str | None:
    return None if value is None else dumps(value)


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
        triggers=loads(row["triggers"]),
        config=loads(row["config"]),
        has_on_failure=bool(row["has_on_failure"]),
        created_at=row["created_at"],
    )


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
        data=loads(row["data"]),
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
        values[name] = loads(values[name])
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
        values[name] = loads(values[name])
    return Step(**values)


def attempt_to_row(attempt: Attempt) -> dict[str, Any]:
    row = dict(attempt.__dict__)
    row["error"] = _json_or_none(attempt.error)
    return row


def attempt_from_row(row: Mapping[str, Any]) -> Attempt:
    values = dict(row)
    values["error"] = loads(values["error"])
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
    values["data"] = loads(values["data"])
    values["paused"] = bool(values["paused"])
    return Loop(**values)
