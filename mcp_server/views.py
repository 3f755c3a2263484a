"""The shapes tools return: pydantic models, so every tool has an output schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from engine.durations import iso
from engine.engine import Registration, SkillDetails
from engine.records import Loop, Run, RunPage, Skill


class SkillRegistered(BaseModel):
    name: str
    version: int
    triggers: list[dict[str, Any]]
    warnings: list[str] = Field(description="code that compiles but breaks replay; fix these")

    @classmethod
    def of(cls, registration: Registration) -> SkillRegistered:
        version = registration.version
        return cls(
            name=version.name,
            version=version.version,
            triggers=version.triggers,
            warnings=registration.warnings,
        )


class SkillSummary(BaseModel):
    name: str
    latest_version: int
    description: str
    updated_at: str | None

    @classmethod
    def of(cls, skill: Skill) -> SkillSummary:
        return cls(
            name=skill.name,
            latest_version=skill.latest_version,
            description=skill.description,
            updated_at=iso(skill.updated_at),
        )


class SkillList(BaseModel):
    skills: list[SkillSummary]


class SkillDetail(BaseModel):
    name: str
    version: int
    latest_version: int
    versions: list[int]
    description: str
    code: str
    triggers: list[dict[str, Any]]
    config: dict[str, Any]

    @classmethod
    def of(cls, details: SkillDetails) -> SkillDetail:
        found = details.version
        return cls(
            name=found.name,
            version=found.version,
            latest_version=details.skill.latest_version,
            versions=details.versions,
            description=found.description,
            code=found.code,
            triggers=found.triggers,
            config=found.config,
        )


class Deleted(BaseModel):
    name: str
    deleted: bool


class RunSummary(BaseModel):
    run_id: str
    function: str
    version: int
    status: str = Field(
        description="queued, running, sleeping, waiting, completed, failed, cancelled or skipped"
    )
    trigger: str
    output: Any = None
    error: dict[str, Any] | None = None
    reason: str | None = Field(default=None, description="why it was cancelled or skipped")
    created_at: str | None
    ended_at: str | None = None

    @classmethod
    def of(cls, run: Run) -> RunSummary:
        return cls(
            run_id=run.id,
            function=run.function,
            version=run.version,
            status=run.status,
            trigger=run.trigger,
            output=run.output,
            error=run.error,
            reason=run.cancel_reason,
            created_at=iso(run.created_at),
            ended_at=iso(run.ended_at),
        )


class RunPageView(BaseModel):
    runs: list[RunSummary]
    next_cursor: str | None = Field(description="pass back as `cursor` for the next page; null at the end")

    @classmethod
    def of(cls, page: RunPage) -> RunPageView:
        return cls(runs=[RunSummary.of(run) for run in page.runs], next_cursor=page.next_cursor)


class EventSent(BaseModel):
    event_id: str
    run_ids: list[str]


class EventsSent(BaseModel):
    event_ids: list[str] = Field(description="in the order sent; an id sent before keeps its first runs")
    run_ids: list[str]


class Cancelled(BaseModel):
    cancelled: list[str] = Field(description="the run and the child runs that were cancelled")


class Trace(BaseModel):
    run: dict[str, Any]
    spans: list[dict[str, Any]]
    logs: list[dict[str, Any]]
    children: list[dict[str, Any]]


class LoopView(BaseModel):
    loop_id: str
    skill: str
    name: str | None
    cron: str
    timezone: str
    data: dict[str, Any]
    catch_up: str
    paused: bool
    next_fire_times: list[str] = Field(description="the next three ticks (ISO-8601, UTC); none while paused")
    last_fired_at: str | None

    @classmethod
    def of(cls, loop: Loop, upcoming: list[float]) -> LoopView:
        return cls(
            loop_id=loop.id,
            skill=loop.skill,
            name=loop.name,
            cron=loop.cron,
            timezone=loop.timezone,
            data=loop.data,
            catch_up=loop.catch_up,
            paused=loop.paused,
            next_fire_times=[iso(t) or "" for t in upcoming],
            last_fired_at=iso(loop.last_fired_at),
        )


class LoopList(BaseModel):
    loops: list[LoopView]


class LoopDeleted(BaseModel):
    loop_id: str
    deleted: bool


class ErrorCount(BaseModel):
    error: str
    count: int


class TokenUsage(BaseModel):
    input: int
    output: int


class SkillStats(BaseModel):
    runs: int
    by_status: dict[str, int]
    success_rate: float | None = Field(
        description="completed / (completed + failed); null before any finished"
    )
    duration_p50_ms: float | None
    duration_p95_ms: float | None
    retries: int = Field(description="failed step attempts plus handler retries")
    top_errors: list[ErrorCount]
    tokens: TokenUsage = Field(description="LLM tokens of the runs' step.ai answers")


class Stats(BaseModel):
    skills: dict[str, SkillStats]
