"""The store interface: every query the engine needs, named in domain terms.

The store is the only code that speaks SQL. `engine.sql_store.SqlStore` implements this for
SQLite (and, later, PostgreSQL); `tests/conformance` checks any implementation against it.
Methods are synchronous and thread-safe: the engine calls them from worker threads.
Every method that changes several rows does so in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from engine.flow import SlotsOf
from engine.records import (
    Attempt,
    Event,
    EventRoute,
    LogLine,
    Loop,
    Run,
    RunFacts,
    RunPage,
    Skill,
    SkillVersion,
    Step,
    StepCommit,
    StepResolution,
    Wait,
)


class RouteReads(Protocol):
    """What routing events reads: the store itself, or the transaction that routes them."""

    def live_skill_versions(self) -> list[SkillVersion]: ...
    def waits_for(self, event_names: set[str]) -> list[Wait]: ...
    def unfinished_runs(self, function: str, limit: int) -> list[Run]: ...


# Given what the store reads and the events just stored, the route of each of them (in order).
RoutePlanner = Callable[[RouteReads, list[Event]], list[EventRoute]]


class Store(Protocol):
    # lifecycle
    def migrate(self) -> None: ...
    def close(self) -> None: ...
    def watch(self, listener: Callable[[set[str]], None]) -> Callable[[], None]:
        """Hear what other processes sharing the database changed ("work": runs to claim,
        "events": events to route, "loops"), where the backend can tell; returns a function
        that stops it."""

    # skills
    def add_skill_version(self, version: SkillVersion, *, new_skill: bool) -> SkillVersion:
        """Store the next version of a skill (its number is assigned here, atomically).

        `new_skill=True` refuses a name that is live; `False` refuses one that is not.
        """

    def get_skill(self, name: str) -> Skill | None: ...
    def get_skill_version(self, name: str, version: int | None = None) -> SkillVersion | None: ...
    def list_skills(self) -> list[Skill]: ...
    def list_skill_versions(self, name: str) -> list[SkillVersion]: ...
    def delete_skill(self, name: str, now: float) -> bool: ...
    def live_skill_versions(self) -> list[SkillVersion]:
        """The latest version of every skill that is not deleted (for trigger matching)."""

    # events
    def append_events(
        self, events: list[Event], now: float = 0.0, *, plan: RoutePlanner | None = None
    ) -> list[bool]:
        """Insert events whose id is new; True for each one inserted, False for a duplicate id.

        Without `plan` they are stored unrouted (`pending_events`). With `plan`, the store calls
        it in the same transaction, with reads of that transaction and the events it inserted,
        and applies the routes it returns (it may be called again if the transaction is retried).
        """

    def pending_events(self, limit: int) -> list[Event]: ...
    def get_events(self, ids: list[str]) -> list[Event]: ...
    def list_events(self, name: str | None, limit: int) -> list[Event]: ...
    def waits_for(self, event_names: set[str]) -> list[Wait]: ...
    def apply_events(self, routes: list[EventRoute], now: float) -> list[bool]:
        """For each route: mark its event processed, create its runs, end the waits it matched.

        All in one transaction; a route whose event was already processed changes nothing and
        gets False.
        """

    def runs_for_event(self, event_id: str) -> list[str]: ...

    # runs
    def create_runs(self, runs: list[Run], copied_steps: list[Step] | None = None) -> None: ...
    def get_run(self, run_id: str) -> Run | None: ...
    def list_runs(
        self,
        function: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> RunPage: ...
    def children(self, run_id: str) -> list[Run]: ...
    def claim_due_runs(
        self, owner: str, now: float, lease_until: float, limit: int, slots_of: SlotsOf | None = None
    ) -> list[Run]:
        """Take up to `limit` runs that are due, in wake-time order; each goes to one owner only.
        With `slots_of`, a run is taken only if each of its concurrency slots has room among the
        runs now running (decided in the claim's transaction), and the slots are recorded."""

    def next_wake_at(self) -> float | None: ...
    def extend_leases(self, owner: str, lease_until: float, run_ids: list[str]) -> int:
        """Renew the leases of the runs this owner is still working on (and only those)."""

    def lease_owners(self) -> list[str]: ...
    def release_leases(
        self, now: float, *, owner: str | None = None, expired_before: float | None = None
    ) -> int:
        """Put running runs back in the queue: one owner's, or those whose lease expired."""

    def commit_step(self, owner: str, commit: StepCommit, now: float) -> bool:
        """Record a step op; False (nothing written) when the run is no longer ours to run."""

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
    ) -> bool: ...
    def requeue_run(self, run_id: str, owner: str, wake_at: float, attempt: int, now: float) -> bool:
        """Give a running run back to the queue (a retry of the handler, or work left over)."""

    def suspend_run(
        self, run_id: str, owner: str, status: str, wake_at: float | None, now: float
    ) -> bool: ...
    def cancel_runs(
        self, run_ids: list[str], reason: str | None, now: float, resolution: StepResolution | None
    ) -> list[str]:
        """Cancel the runs that are not final yet; returns those cancelled."""

    def resolve_due_steps(self, run_id: str, now: float) -> int:
        """End the run's sleeps that are due and its waits that timed out."""

    # steps, attempts, logs
    def load_steps(self, run_id: str) -> list[Step]: ...
    def load_attempts(self, run_id: str) -> list[Attempt]: ...
    def append_logs(self, logs: list[LogLine]) -> None:
        """Queue log lines for writing; they are committed with the run's next write or soon after."""

    def load_logs(self, run_id: str) -> list[LogLine]: ...

    def backlog_size(self) -> int:
        """Queued runs plus events not yet routed: what back-pressure limits."""
        ...

    def table_counts(self) -> dict[str, int]: ...

    # loops (cron schedules)
    def add_loop(self, loop: Loop) -> None: ...
    def get_loop(self, loop_id: str) -> Loop | None: ...
    def list_loops(self, skill: str | None = None) -> list[Loop]: ...
    def save_loop(self, loop: Loop) -> bool:
        """Store a changed loop (not its id or creation time); False if it is gone."""

    def delete_loops(self, loop_ids: list[str]) -> int: ...
    def next_loop_fire_at(self) -> float | None:
        """The earliest next tick of any loop that is not paused."""

    def due_loops(self, now: float) -> list[Loop]: ...
    def fire_loop(
        self,
        loop_id: str,
        expected_next: float,
        next_fire_at: float | None,
        fired_at: float | None,
        new_runs: list[Run],
        now: float,
    ) -> bool:
        """If the loop's next tick is still `expected_next`, move it to `next_fire_at` and create
        the runs, in one transaction; False (nothing changed) if another process fired it."""

    # flow control
    def overdue_runs(
        self, function: str, queued_before: float | None, started_before: float | None
    ) -> list[Run]:
        """Unfinished runs of `function` created before `queued_before` that never started, or
        first started before `started_before`."""

    def unfinished_runs(self, function: str, limit: int) -> list[Run]:
        """Runs of `function` not yet completed, failed or cancelled, oldest first."""

    # statistics
    def run_facts(self, function: str | None, since: float | None, limit: int) -> list[RunFacts]:
        """The newest `limit` runs created since `since` (of `function`, if given)."""
