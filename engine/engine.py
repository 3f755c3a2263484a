"""The `Engine` facade: the one object every surface (MCP, HTTP, CLI) talks to."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from engine import flow, limits, loops
from engine.ai_effect import AiEffect
from engine.backlog import DEFAULT_MAX_BACKLOG, Backlog
from engine.clock import Clock, SystemClock
from engine.durations import parse_instant
from engine.errors import (
    CompileFailed,
    InvalidInput,
    InvalidState,
    RunNotFound,
    SkillNotFound,
)
from engine.event_router import ClaimLocally, append_and_route
from engine.executor import Executor
from engine.http_effect import HttpEffect
from engine.ids import new_id
from engine.jsonutil import encode_limited
from engine.llm_config import LlmSettings
from engine.loop_api import LoopsAndStats
from engine.records import (
    FINAL_STATUSES,
    RUN_STATUSES,
    STEP_DONE,
    Event,
    Run,
    RunPage,
    Skill,
    SkillVersion,
    Step,
)
from engine.redact import Redactor
from engine.runtime import Runtime
from engine.scheduler import LEASE_SECONDS, POLL_SECONDS, Scheduler, owner_id
from engine.skills import (
    check_config,
    check_description,
    check_event_name,
    check_skill_name,
    check_triggers,
    check_version,
)
from engine.store import Store
from engine.trace import build_trace
from sandbox.errors import CompileError
from sandbox.process_runner import ProcessRunner
from sandbox.runner import SkillRunner

log = logging.getLogger(__name__)
T = TypeVar("T")
RESULT_POLL_SECONDS = 0.25
REAL_TIME = SystemClock()  # callers wait in real seconds, whatever clock the engine runs on
DEFAULT_CONCURRENCY = 32


@dataclass(frozen=True)
class Registration:
    version: SkillVersion
    warnings: list[str]


@dataclass(frozen=True)
class SkillDetails:
    skill: Skill
    version: SkillVersion
    versions: list[int]


@dataclass(frozen=True)
class SendResult:
    event_ids: list[str]
    run_ids: list[str]


class Engine(LoopsAndStats):
    """Durable execution of skills over a store.

    Build one per process with its store, runner and clock; `async with engine:` starts the
    scheduler (claiming and running work) and stops it. Without starting, the engine still
    stores skills, events and runs; a started engine on the same database runs them.
    """

    def __init__(
        self,
        store: Store,
        runner: SkillRunner | None = None,
        clock: Clock | None = None,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        lease_seconds: float = LEASE_SECONDS,
        poll_seconds: float = POLL_SECONDS,
        http_allow: list[str] | None = None,
        secrets: dict[str, str] | None = None,
        workers: int = 2,
        llm: LlmSettings | None = None,
        max_backlog: int | None = DEFAULT_MAX_BACKLOG,
    ) -> None:
        self.store = store
        self.runner = runner or ProcessRunner(warm=workers)  # `workers`: pre-forked, kept ready
        self.clock = clock or SystemClock()
        self.rt = Runtime(
            store=store,
            clock=self.clock,
            owner=owner_id(new_id("eng")[-8:]),
            http=HttpEffect(http_allow),
            ai=AiEffect(llm),
            secrets=dict(secrets or {}),
            redact=Redactor({**(llm.secrets() if llm else {}), **(secrets or {})}),
        )
        self.executor = Executor(self.rt, self.runner)
        self._concurrency = concurrency
        self._lease_seconds = lease_seconds
        self._poll_seconds = poll_seconds
        self.scheduler: Scheduler | None = None
        self._io_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="stepkeeper-io")
        self._migrated = False
        self._migrate_lock = asyncio.Lock()
        # `max_backlog=None`: no back-pressure (an embedding program that paces itself).
        self.backlog = Backlog(max_backlog, partial(self._io, self.store.backlog_size), time.monotonic)

    @property
    def owner(self) -> str:
        """This engine's lease-holder id (host:pid:nonce), as it appears on the runs it holds."""
        return self.rt.owner

    @property
    def database(self) -> str:
        """Where the store keeps its data, for people to read (a URL or a description)."""
        return str(getattr(self.store, "display_url", type(self.store).__name__))

    # lifecycle -----------------------------------------------------------------------------

    async def _io(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking store call off the event loop (the schema is brought up to date first)."""
        if not self._migrated:
            await self.migrate()
        return await self._in_thread(partial(fn, *args, **kwargs))

    async def _in_thread(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io_pool, call)

    async def migrate(self) -> None:
        """Create or upgrade the schema; done once, before the first use of the store."""
        async with self._migrate_lock:
            if not self._migrated:
                await self._in_thread(self.store.migrate)
                self._migrated = True

    async def start(self) -> None:
        # httpx is imported on first use (a view or a CLI call never needs it); a running engine
        # will, so import it and make the client now on the side, not in the first step that calls out.
        threading.Thread(target=self.rt.http.warm, name="stepkeeper-http-warm", daemon=True).start()
        await self.migrate()
        self.scheduler = Scheduler(
            self.rt,
            self.executor,
            concurrency=self._concurrency,
            lease_seconds=self._lease_seconds,
            poll_seconds=self._poll_seconds,
        )
        self.rt.wake = self.scheduler.wake
        self.rt.events_added = self.scheduler.events_added
        await self.scheduler.start()

    async def stop(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.stop()
            self.scheduler = None
        self.rt.wake = lambda: None
        self.rt.events_added = lambda: None

    async def close(self) -> None:
        await self.stop()
        self.rt.http.close()
        self.rt.ai.close()
        self.runner.close()
        self._io_pool.shutdown(wait=True)
        self.store.close()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # skills --------------------------------------------------------------------------------

    async def create_skill(
        self,
        name: str,
        code: str,
        description: str = "",
        triggers: list[dict[str, Any]] | None = None,
        config: dict[str, Any] | None = None,
    ) -> Registration:
        return await self._register(name, code, description, triggers or [], config or {}, new_skill=True)

    async def update_skill(
        self,
        name: str,
        code: str | None = None,
        description: str | None = None,
        triggers: list[dict[str, Any]] | None = None,
        config: dict[str, Any] | None = None,
    ) -> Registration:
        check_skill_name(name)
        current = await self._io(self.store.get_skill_version, name)
        if current is None:
            raise SkillNotFound(name)
        return await self._register(
            name,
            current.code if code is None else code,
            current.description if description is None else description,
            current.triggers if triggers is None else triggers,
            current.config if config is None else config,
            new_skill=False,
        )

    async def _register(
        self, name: str, code: str, description: str, triggers: Any, config: Any, *, new_skill: bool
    ) -> Registration:
        check_skill_name(name)
        check_description(description)
        triggers = check_triggers(triggers)
        config = check_config(config)
        if not isinstance(code, str):
            raise InvalidInput("code must be a string")
        if len(code.encode()) > limits.MAX_CODE_BYTES:
            raise InvalidInput(
                f"code is {len(code.encode())} bytes, over the limit of {limits.MAX_CODE_BYTES}"
            )
        try:
            prepared = await self._io(self.runner.prepare, code)
        except CompileError as exc:
            raise CompileFailed(exc.message, exc.line, exc.column) from None
        version = SkillVersion(
            name=name,
            version=0,
            code=code,
            description=description,
            triggers=triggers,
            config=config,
            has_on_failure=prepared.has_on_failure,
            created_at=self.clock.now(),
        )
        stored = await self._io(self.store.add_skill_version, version, new_skill=new_skill)
        if await self._io(loops.sync_trigger_loops, self.rt, name, stored.triggers, self.clock.now()):
            self._loops_changed()
        return Registration(version=stored, warnings=list(prepared.warnings))

    async def delete_skill(self, name: str) -> None:
        check_skill_name(name)
        if not await self._io(self.store.delete_skill, name, self.clock.now()):
            raise SkillNotFound(name)
        if await self._io(loops.sync_trigger_loops, self.rt, name, [], self.clock.now()):
            self._loops_changed()

    def on_run_changed(self, listener: Callable[[str], None]) -> None:
        """Call `listener(run_id)` (from any thread) whenever a run's state or steps change."""
        self.rt.run_changed = listener

    async def get_skill(self, name: str, version: int | None = None) -> SkillDetails:
        check_skill_name(name)
        check_version(version)
        skill = await self._io(self.store.get_skill, name)
        if skill is None:
            raise SkillNotFound(name)
        found = await self._io(self.store.get_skill_version, name, version)
        if found is None:
            raise SkillNotFound(name, version)
        versions = [v.version for v in await self._io(self.store.list_skill_versions, name)]
        return SkillDetails(skill=skill, version=found, versions=versions)

    async def list_skills(self) -> list[Skill]:
        return await self._io(self.store.list_skills)

    # events --------------------------------------------------------------------------------

    async def send_event(
        self, name: str, data: dict[str, Any] | None = None, id: str | None = None
    ) -> SendResult:
        return await self.send_events([{"name": name, "data": data or {}, "id": id}])

    async def send_events(self, items: list[dict[str, Any]]) -> SendResult:
        """Store events (before returning) and route them; an id seen before starts nothing new."""
        if not isinstance(items, list) or not 1 <= len(items) <= limits.MAX_EVENTS_PER_SEND:
            raise InvalidInput(f"send 1 to {limits.MAX_EVENTS_PER_SEND} events at a time")
        now = self.clock.now()
        events = [self._event(item, now) for item in items]
        await self.backlog.admit(len(events))
        routed = await self._create_locally(
            lambda claim: append_and_route(self.store, events, now, claim),
            lambda done: {run_id for ids in done.started.values() for run_id in ids},
            lambda done: done.other_work,
        )
        started = routed.started
        run_ids: list[str] = []
        for event in events:
            if event.id in started:
                run_ids.extend(started[event.id])
            else:  # a duplicate id, or routed meanwhile by another scheduler: read what it started
                run_ids.extend(await self._io(self.store.runs_for_event, event.id))
        return SendResult(event_ids=[event.id for event in events], run_ids=run_ids)

    async def _create_locally(
        self,
        create: Callable[[ClaimLocally | None], T],
        stored_ids: Callable[[T], set[str]],
        other_work: Callable[[T], bool] = lambda _: False,
    ) -> T:
        """Create runs in the store, claimed by this engine's scheduler when it has room, so
        they start without waiting for a claim; the others are queued for any engine, and the
        scheduler is woken for them (only then: a needless claim pass competes with the runs
        just started)."""
        scheduler = self.scheduler
        if scheduler is None:
            return await self._io(create, None)
        claimed: list[Run] = []

        def claim(new_runs: list[Run]) -> None:
            claimed.extend(scheduler.claim_locally(new_runs))

        def create_and_adopt() -> T:
            stored: set[str] = set()
            more = True  # unless the write is known to have made no other work
            try:
                result = create(claim)
                stored = stored_ids(result)
                more = other_work(result)
                return result
            finally:  # from this thread: the runs start without a hop through the event loop
                if scheduler.adopt(claimed, stored) != stored or more:
                    scheduler.wake()

        return await self._io(create_and_adopt)

    def _event(self, item: Any, now: float) -> Event:
        if not isinstance(item, dict) or "name" not in item or set(item) - {"name", "data", "id", "ts"}:
            raise InvalidInput("an event is an object with 'name', and optional 'data', 'id' and 'ts'")
        data = item.get("data")
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise InvalidInput("event data must be a JSON object")
        encode_limited(data, limits.MAX_EVENT_DATA_BYTES, "event data")
        event_id = item.get("id")
        if event_id is not None and (not isinstance(event_id, str) or not 1 <= len(event_id) <= 200):
            raise InvalidInput("an event id must be a string of 1 to 200 characters")
        ts = item.get("ts")
        return Event(
            id=event_id or new_id("evt"),
            name=check_event_name(item["name"]),
            data=data,
            ts=now if ts is None else parse_instant(ts),
            received_at=now,
        )

    async def list_events(self, name: str | None = None, limit: int = 50) -> list[Event]:
        return await self._io(self.store.list_events, name, _limit(limit))

    async def run_ids_for_event(self, event_id: str) -> list[str]:
        """The runs an event started, oldest first."""
        return await self._io(self.store.runs_for_event, event_id)

    # runs ----------------------------------------------------------------------------------

    async def invoke(
        self,
        name: str,
        data: dict[str, Any] | None = None,
        *,
        wait: bool = False,
        timeout: float = 30.0,
    ) -> Run:
        check_skill_name(name)
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise InvalidInput("data must be a JSON object")
        encode_limited(data, limits.MAX_EVENT_DATA_BYTES, "invoke data")
        skill = await self._io(self.store.get_skill, name)
        if skill is None:
            raise SkillNotFound(name)
        await self.backlog.admit(1)
        now = self.clock.now()
        run = self._new_run(
            name,
            skill.latest_version,
            "invoke",
            {"id": new_id("evt"), "name": "stepkeeper/invoke", "data": data, "ts": now},
            now,
        )

        def create(claim: ClaimLocally | None) -> None:
            version = self.executor.version(run.function, run.version)
            if version is not None and version.config.get("priority"):
                run.wake_at = now - flow.priority_seconds(version.config, run.event or {})
            if claim is not None:
                claim([run])
            self.store.create_runs([run])

        await self._create_locally(create, lambda _: {run.id})
        return await self.wait_for_run(run.id, timeout) if wait else run

    def _new_run(
        self,
        function: str,
        version: int,
        trigger: str,
        event: dict[str, Any],
        now: float,
        **fields: Any,
    ) -> Run:
        return Run(
            id=new_id("run"),
            function=function,
            version=version,
            trigger=trigger,
            status="queued",
            event=event,
            created_at=now,
            updated_at=now,
            wake_at=now,
            **fields,
        )

    def _wake(self) -> None:
        if self.scheduler is not None:
            self.scheduler.wake()

    async def wait_for_run(self, run_id: str, timeout: float = 30.0) -> Run:
        """The run once it is final, or as it stands when `timeout` real seconds have passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        signal = self.scheduler.activation_ended() if self.scheduler is not None else asyncio.Event()
        try:
            while True:
                signal.clear()
                run = await self.get_run(run_id)
                remaining = deadline - loop.time()
                if run.status in FINAL_STATUSES or remaining <= 0:
                    return run
                await REAL_TIME.wait(signal, min(remaining, RESULT_POLL_SECONDS))
        finally:
            if self.scheduler is not None:
                self.scheduler.forget(signal)

    async def get_run(self, run_id: str) -> Run:
        if not isinstance(run_id, str):
            raise InvalidInput("run_id must be a string")
        run = await self._io(self.store.get_run, run_id)
        if run is None:
            raise RunNotFound(run_id)
        return run

    async def list_runs(
        self,
        function: str | None = None,
        status: str | None = None,
        since: Any = None,
        until: Any = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> RunPage:
        if status is not None and status not in RUN_STATUSES:
            raise InvalidInput(f"unknown status {status!r}; one of {sorted(RUN_STATUSES)}")
        return await self._io(
            self.store.list_runs,
            function=function,
            status=status,
            since=None if since is None else parse_instant(since),
            until=None if until is None else parse_instant(until),
            limit=_limit(limit),
            cursor=cursor,
        )

    async def get_run_trace(self, run_id: str) -> dict[str, Any]:
        run = await self.get_run(run_id)
        steps = await self._io(self.store.load_steps, run_id)
        attempts = await self._io(self.store.load_attempts, run_id)
        logs = await self._io(self.store.load_logs, run_id)
        children = await self._io(self.store.children, run_id)
        return build_trace(run, steps, attempts, logs, children)

    async def cancel_run(self, run_id: str, reason: str | None = None) -> list[str]:
        """Cancel a run and every run it invoked; returns the ids cancelled."""
        run = await self.get_run(run_id)
        if run.status in FINAL_STATUSES:
            raise InvalidState(f"run {run_id} is already {run.status}")
        tree = [run_id]
        frontier = [run_id]
        while frontier:
            children = await self._io(self.store.children, frontier.pop())
            for child in children:
                tree.append(child.id)
                frontier.append(child.id)
        resolution = flow.parent_resolution(run)
        cancelled = await self._io(self.store.cancel_runs, tree, reason, self.clock.now(), resolution)
        for cancelled_id in cancelled:
            self.rt.run_changed(cancelled_id)
        self._wake()
        return cancelled

    async def rerun(
        self, run_id: str, from_step: str | None = None, data: dict[str, Any] | None = None
    ) -> Run:
        """A new run of the skill's latest version with the same event (or `data`).

        With `from_step`, the steps finished before that step are copied over, so the new run
        resumes there without running them again.
        """
        original = await self.get_run(run_id)
        skill = await self._io(self.store.get_skill, original.function)
        if skill is None:
            raise SkillNotFound(original.function)
        event = dict(original.event)
        if data is not None:
            if not isinstance(data, dict):
                raise InvalidInput("data must be a JSON object")
            encode_limited(data, limits.MAX_EVENT_DATA_BYTES, "rerun data")
            event["data"] = data
        now = self.clock.now()
        run = self._new_run(
            original.function,
            skill.latest_version,
            "rerun",
            event,
            now,
            rerun_of=run_id,
            events=original.events,
        )
        copied = await self._steps_before(original.id, from_step, run.id) if from_step is not None else []
        await self._io(self.store.create_runs, [run], copied)
        self._wake()
        return run

    async def _steps_before(self, run_id: str, from_step: str, new_run_id: str) -> list[Step]:
        steps = await self._io(self.store.load_steps, run_id)
        target = next((s for s in steps if from_step in (s.key, s.step_id)), None)
        if target is None:
            known = sorted({s.step_id for s in steps})
            raise InvalidInput(f"run {run_id} has no step {from_step!r}; its steps are {known}")
        return [
            Step(**{**step.__dict__, "run_id": new_run_id})
            for step in steps
            if step.seq < target.seq and step.status in STEP_DONE
        ]

    async def counts(self) -> dict[str, int]:
        return await self._io(self.store.table_counts)


def _limit(limit: Any) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= limits.MAX_LIST_LIMIT:
        raise InvalidInput(f"limit must be an integer from 1 to {limits.MAX_LIST_LIMIT}")
    return limit


def default_concurrency() -> int:
    return max(4, (os.cpu_count() or 2) * 8)
