"""The one schema, as SQLModel tables. Times are epoch seconds (float); JSON is stored as text.

Changing a table here needs a migration in `engine/migrations/versions/`; the migration test
checks that the migrations produce exactly this schema.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel


def _text() -> Column:
    return Column(Text, nullable=True)


class SkillRow(SQLModel, table=True):
    __tablename__ = "skills"

    name: str = Field(primary_key=True, max_length=64)
    latest_version: int
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    created_at: float
    updated_at: float
    deleted_at: float | None = None


class SkillVersionRow(SQLModel, table=True):
    __tablename__ = "skill_versions"

    name: str = Field(primary_key=True, max_length=64)
    version: int = Field(primary_key=True)
    code: str = Field(sa_column=Column(Text, nullable=False))
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    triggers: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    config: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    has_on_failure: bool = False
    created_at: float


class EventRow(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_pending", "processed_at", "received_at"),
        Index("ix_events_name_received", "name", "received_at"),
    )

    id: str = Field(primary_key=True, max_length=200)
    name: str = Field(max_length=256)
    data: str = Field(sa_column=Column(Text, nullable=False))
    ts: float
    received_at: float
    processed_at: float | None = None
    source_run_id: str | None = None


class RunRow(SQLModel, table=True):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_function_created", "function", "created_at"),
        Index("ix_runs_status_created", "status", "created_at"),
        Index("ix_runs_created", "created_at"),
        Index("ix_runs_status_wake", "status", "wake_at"),
        Index("ix_runs_parent", "parent_run_id"),
        Index("ix_runs_lease_owner", "lease_owner"),
    )

    id: str = Field(primary_key=True, max_length=40)
    function: str = Field(max_length=64)
    version: int
    kind: str = Field(default="handler", max_length=16)
    trigger: str = Field(max_length=16)
    status: str = Field(max_length=16)
    event: str = Field(sa_column=Column(Text, nullable=False))
    events: str | None = Field(default=None, sa_column=_text())
    failure: str | None = Field(default=None, sa_column=_text())
    event_id: str | None = None
    parent_run_id: str | None = None
    parent_step_key: str | None = None
    rerun_of: str | None = None
    output: str | None = Field(default=None, sa_column=_text())
    error: str | None = Field(default=None, sa_column=_text())
    attempt: int = 0
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    updated_at: float
    wake_at: float | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    cancel_reason: str | None = Field(default=None, sa_column=_text())


class StepRow(SQLModel, table=True):
    __tablename__ = "steps"
    __table_args__ = (Index("ix_steps_waiting_event", "wait_event", "status"),)

    run_id: str = Field(primary_key=True, max_length=40)
    key: str = Field(primary_key=True, max_length=220)
    step_id: str = Field(max_length=200)
    op: str = Field(max_length=24)
    seq: int
    status: str = Field(max_length=16)
    input: str | None = Field(default=None, sa_column=_text())
    output: str | None = Field(default=None, sa_column=_text())
    error: str | None = Field(default=None, sa_column=_text())
    attempts: int = 1
    wait_event: str | None = None
    wait_if: str | None = Field(default=None, sa_column=_text())
    wake_at: float | None = None
    child_run_id: str | None = None
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    meta: str | None = Field(default=None, sa_column=_text())  # JSON: what an LLM step used
    input_tokens: int | None = None
    output_tokens: int | None = None


class StepAttemptRow(SQLModel, table=True):
    """A failed attempt of a step; the final attempt's times live on the step itself."""

    __tablename__ = "step_attempts"

    run_id: str = Field(primary_key=True, max_length=40)
    key: str = Field(primary_key=True, max_length=220)
    attempt: int = Field(primary_key=True)
    error: str | None = Field(default=None, sa_column=_text())
    started_at: float
    ended_at: float


class RunLogRow(SQLModel, table=True):
    __tablename__ = "run_logs"
    __table_args__ = (Index("ix_run_logs_run", "run_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(max_length=40)
    ts: float
    level: str = Field(max_length=8)
    message: str = Field(sa_column=Column(Text, nullable=False))
    step_key: str | None = None


class RunSlotRow(SQLModel, table=True):
    """A concurrency slot a run takes while it is running (`config.concurrency`): a slot is
    held by the runs that have it and are in status `running`."""

    __tablename__ = "run_slots"
    __table_args__ = (Index("ix_run_slots_slot", "slot"),)

    run_id: str = Field(primary_key=True, max_length=40)
    slot: str = Field(primary_key=True, max_length=400)
    capacity: int


class RunKeyRow(SQLModel, table=True):
    """A flow-control key a stored run carries (idempotency, rate_limit, singleton)."""

    __tablename__ = "run_keys"
    __table_args__ = (Index("ix_run_keys_lookup", "function", "kind", "key", "created_at"),)

    run_id: str = Field(primary_key=True, max_length=40)
    kind: str = Field(primary_key=True, max_length=16)
    function: str = Field(max_length=64)
    key: str = Field(max_length=400)
    created_at: float


class ScheduleRow(SQLModel, table=True):
    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_due", "paused", "next_fire_at"),)

    id: str = Field(primary_key=True, max_length=40)
    skill: str = Field(max_length=64)
    name: str | None = None
    cron: str = Field(max_length=120)
    timezone: str = Field(default="UTC", max_length=64)
    data: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    catch_up: str = Field(default="latest", max_length=16)
    paused: bool = False
    next_fire_at: float | None = None
    last_fired_at: float | None = None
    created_at: float
    updated_at: float


metadata = SQLModel.metadata

# The tables as SQLAlchemy Core sees them, for the store's statements.
skills = SkillRow.__table__
versions = SkillVersionRow.__table__
events = EventRow.__table__
runs = RunRow.__table__
steps = StepRow.__table__
attempts = StepAttemptRow.__table__
run_logs = RunLogRow.__table__
schedules = ScheduleRow.__table__
run_slots = RunSlotRow.__table__
run_keys = RunKeyRow.__table__
ALL_TABLES = (skills, versions, events, runs, steps, attempts, run_logs, schedules, run_slots, run_keys)
