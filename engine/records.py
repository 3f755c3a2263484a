"""Plain records the store hands out and takes in. Times are epoch seconds; JSON is decoded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "skipped"})
RUN_STATUSES = frozenset({"queued", "running", "sleeping", "waiting"}) | FINAL_STATUSES
STEP_DONE = frozenset({"completed", "failed"})
PENDING_STEP = ("sleeping", "waiting")


@dataclass(frozen=True)
class SkillVersion:
    name: str
    version: int
    code: str
    description: str
    triggers: list[dict[str, Any]]
    config: dict[str, Any]
    has_on_failure: bool
    created_at: float


@dataclass(frozen=True)
class Skill:
    name: str
    latest_version: int
    description: str
    created_at: float
    updated_at: float
    deleted_at: float | None = None


@dataclass(frozen=True)
class Event:
    id: str
    name: str
    data: dict[str, Any]
    ts: float
    received_at: float = 0.0
    processed_at: float | None = None
    source_run_id: str | None = None

    def payload(self) -> dict[str, Any]:
        """The event as skill code and expressions see it."""
        return {"id": self.id, "name": self.name, "data": self.data, "ts": self.ts}


@dataclass
class Run:
    id: str
    function: str
    version: int
    trigger: str  # event | invoke | cron | rerun | on_failure
    status: str
    event: dict[str, Any]
    created_at: float
    updated_at: float
    kind: str = "handler"  # handler | on_failure
    events: list[dict[str, Any]] | None = None
    failure: dict[str, Any] | None = None  # for on_failure runs: {error, run_id}
    event_id: str | None = None
    parent_run_id: str | None = None
    parent_step_key: str | None = None
    rerun_of: str | None = None
    output: Any = None
    error: dict[str, Any] | None = None
    attempt: int = 0
    started_at: float | None = None
    ended_at: float | None = None
    wake_at: float | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    cancel_reason: str | None = None


@dataclass
class Step:
    run_id: str
    key: str
    step_id: str
    op: str
    seq: int
    status: str  # completed | failed | sleeping | waiting
    created_at: float
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    attempts: int = 1
    wait_event: str | None = None
    wait_if: str | None = None
    wake_at: float | None = None
    child_run_id: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    meta: dict[str, Any] | None = None  # an LLM step: provider, model, latency
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class Attempt:
    run_id: str
    key: str
    attempt: int
    error: dict[str, Any] | None
    started_at: float
    ended_at: float


@dataclass(frozen=True)
class LogLine:
    run_id: str
    ts: float
    level: str
    message: str
    step_key: str | None = None


@dataclass(frozen=True)
class Wait:
    """A run waiting for an event, with what it needs to judge a candidate."""

    run_id: str
    key: str
    event_name: str
    condition: str | None
    run_event: dict[str, Any]


@dataclass(frozen=True)
class StepResolution:
    """Ends a waiting step from outside the run (an event, a child's end, a timeout)."""

    run_id: str
    key: str
    status: str  # completed | failed
    output: Any = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class EventRoute:
    """What one event does: the runs it starts, the waits it ends, the runs it cancels."""

    event_id: str
    new_runs: list[Run]
    resolutions: list[StepResolution]
    cancels: list[tuple[str, str]] = field(default_factory=list)  # (run id, reason)
    gates: list[RunGate] = field(default_factory=list)  # flow control a new run must pass
    slots: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # concurrency, by run id


@dataclass(frozen=True)
class RunGate:
    """A flow-control check a new run must pass when it is stored, else it is stored as skipped
    (or, for a singleton in cancel mode, the older run is cancelled):
    `idempotency` (no run with this key in `window` seconds), `rate_limit` (fewer than `limit`
    runs with this key in `window` seconds), `singleton` (no unfinished run with this key);
    `throttle` never skips: it delays the start so at most `limit` runs start per `window`;
    `debounce` and `batch` fold a new event into a pending run with the same key."""

    run_id: str
    kind: str
    key: str
    window: float | None = None
    limit: int = 1
    mode: str = "skip"
    deadline: float | None = None  # debounce: the longest a run waits after its first event


@dataclass
class StepCommit:
    """What one step op changes, committed in one transaction while the run is still ours."""

    run_id: str
    step: Step | None = None
    failed_attempt: Attempt | None = None
    new_events: list[Event] = field(default_factory=list)
    new_runs: list[Run] = field(default_factory=list)
    suspend: tuple[str, float | None] | None = None  # (status, wake_at): the run stops here
    replaces: bool = False  # the step row exists (a pending step): update it in place


@dataclass(frozen=True)
class RunPage:
    runs: list[Run]
    next_cursor: str | None


@dataclass
class Loop:
    """A cron schedule that starts runs of a skill: the seed's "loop"."""

    id: str
    skill: str
    cron: str
    timezone: str
    data: dict[str, Any]
    catch_up: str
    paused: bool
    next_fire_at: float | None
    last_fired_at: float | None
    created_at: float
    updated_at: float
    name: str | None = None


@dataclass(frozen=True)
class RunFacts:
    """What run statistics need of one run."""

    function: str
    status: str
    started_at: float | None
    ended_at: float | None
    attempt: int
    error: dict[str, Any] | None
    failed_step_attempts: int
    input_tokens: int = 0  # summed over the run's LLM steps
    output_tokens: int = 0
