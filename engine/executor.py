"""Drives one claimed run through one activation: replay from the store, run, record the end."""

from __future__ import annotations

import logging
import threading
from typing import Any

from engine import flow, limits
from engine.activation import ActivationHost
from engine.errors import CorruptRecord, InvalidInput, StoreUnavailable
from engine.flow import Slot
from engine.ids import new_id
from engine.jsonutil import encode_limited
from engine.records import PENDING_STEP, Run, SkillVersion, Step, StepResolution
from engine.retry import RetryPolicy
from engine.runtime import Runtime
from sandbox.errors import CompileError
from sandbox.runner import PreparedSkill, SkillRunner

log = logging.getLogger(__name__)
STORE_RETRY_SECONDS = 1.0


class Executor:
    def __init__(self, rt: Runtime, runner: SkillRunner) -> None:
        self.rt = rt
        self.runner = runner
        self._prepared: dict[tuple[str, int], PreparedSkill] = {}
        self._versions: dict[tuple[str, int], SkillVersion] = {}
        self._lock = threading.Lock()

    def prepared(self, name: str, version: int, source: str) -> PreparedSkill:
        with self._lock:
            skill = self._prepared.get((name, version))
        if skill is None:
            skill = self.runner.prepare(source)  # versions are immutable: compile once
            with self._lock:
                self._prepared[(name, version)] = skill
        return skill

    def version(self, name: str, number: int) -> SkillVersion | None:
        """A skill version, read once and kept (versions are immutable)."""
        return self._version(name, number)

    def _version(self, name: str, number: int) -> SkillVersion | None:
        key = (name, number)
        with self._lock:
            found = self._versions.get(key)
        if found is None:
            found = self.rt.store.get_skill_version(name, number)
            if found is not None:  # versions are immutable, so they can be kept
                with self._lock:
                    self._versions[key] = found
        return found

    def slots_of(self, run: Run) -> list[Slot]:
        """The concurrency slots `run` needs (none if its skill sets no `concurrency`)."""
        version = self._version(run.function, run.version)
        return flow.slots_for(run, version.config) if version is not None else []

    def must_queue(self, run: Run) -> bool:
        """A new run whose flow control (idempotency, rate limit, throttle, singleton,
        debounce, batches) the store decides as it stores it: never claimed at creation."""
        version = self._version(run.function, run.version)
        if version is None:
            return True
        if version.config.get("concurrency") and run.trigger != "event":
            return True  # only event routes carry slots for the store to check at creation
        return flow.is_gated(version.config)

    def execute(self, run: Run, *, fresh: bool = False) -> None:
        """Run one activation of a run this engine has claimed. Never raises for skill errors.

        `fresh`: the run was created and claimed by this engine a moment ago, so it has no
        history to load.
        """
        try:
            steps, failed = ([], {}) if fresh else self._history(run)
            version = self._version(run.function, run.version)
        except CorruptRecord as exc:  # retrying cannot mend it: the run fails, naming the record
            log.error("run %s cannot go on: %s", run.id, exc)
            self._finish(run, "failed", error={"type": "CorruptRecord", "message": str(exc)})
            return
        except StoreUnavailable:  # the fault may pass: back to the queue
            self._give_back(run)
            return
        if version is None:
            self._finish(
                run,
                "failed",
                error={
                    "type": "SkillNotFound",
                    "message": f"version {run.version} of skill {run.function!r} is gone",
                },
            )
            return
        try:
            skill = self.prepared(run.function, run.version, version.code)
        except CompileError as exc:
            self._finish(run, "failed", error={"type": "CompileError", "message": str(exc)})
            return
        policy = RetryPolicy.from_config(version.config)
        host = ActivationHost(self.rt, run, policy, steps, failed)
        outcome = self.runner.run(skill, self._activation(run, steps, failed), host)
        if host.store_failed:
            self._give_back(run)
            return
        self._conclude(run, policy, outcome, has_on_failure=version.has_on_failure)

    def _give_back(self, run: Run) -> None:
        """After a store failure, put the run back in the queue; if even that fails, its lease
        (no longer renewed) expires and another claim recovers it."""
        now = self.rt.clock.now()
        try:
            self.rt.store.requeue_run(run.id, self.rt.owner, now + STORE_RETRY_SECONDS, run.attempt, now)
        except StoreUnavailable:
            log.warning("run %s stays leased until its lease expires", run.id)

    def _history(self, run: Run) -> tuple[list[Step], dict[str, int]]:
        """The run's stored steps (ending the sleeps and waits now due) and failed attempts."""
        store, now = self.rt.store, self.rt.clock.now()
        steps = store.load_steps(run.id)
        if any(s.status in PENDING_STEP and s.wake_at is not None and s.wake_at <= now for s in steps):
            store.resolve_due_steps(run.id, now)
            steps = store.load_steps(run.id)
        failed: dict[str, int] = {}
        for attempt in store.load_attempts(run.id):
            failed[attempt.key] = max(failed.get(attempt.key, 0), attempt.attempt)
        return steps, failed

    def _activation(self, run: Run, steps: list[Any], failed: dict[str, int]) -> dict[str, Any]:
        done = {step.key for step in steps}
        retrying = [count for key, count in failed.items() if key not in done]
        return {
            "run_id": run.id,
            "function": run.function,
            "version": run.version,
            "kind": run.kind,
            "event": run.event,
            "events": run.events,
            "attempt": max(retrying, default=run.attempt),
            "memo": {
                step.key: {
                    "op": step.op,
                    "status": step.status,
                    "output": step.output,
                    "error": step.error,
                }
                for step in steps
            },
            "secrets": self.rt.secrets,
            "error": (run.failure or {}).get("error"),
            "failed_run_id": (run.failure or {}).get("run_id"),
        }

    def _conclude(
        self, run: Run, policy: RetryPolicy, outcome: dict[str, Any], *, has_on_failure: bool
    ) -> None:
        status = outcome["status"]
        if status == "completed":
            try:
                encode_limited(outcome.get("output"), limits.MAX_RUN_OUTPUT_BYTES, "the run's result")
            except InvalidInput as exc:
                self._finish(run, "failed", error={"type": "PayloadTooLarge", "message": str(exc)})
                return
            self._finish(run, "completed", output=self.rt.redact(outcome.get("output")))
        elif status == "failed":
            error = self.rt.redact(outcome["error"])
            failures = run.attempt + 1
            if outcome.get("retriable") and policy.attempts_left(failures):
                now = self.rt.clock.now()
                self.rt.store.requeue_run(run.id, self.rt.owner, now + policy.delay(failures), failures, now)
            else:
                self._finish(run, "failed", error=error, on_failure=has_on_failure)
        # suspended: already recorded with the op that suspended; aborted: not ours any more

    def _finish(
        self,
        run: Run,
        status: str,
        *,
        output: Any = None,
        error: dict[str, Any] | None = None,
        on_failure: bool = False,
    ) -> None:
        now = self.rt.clock.now()
        resolution = None
        if run.parent_run_id and run.parent_step_key:
            resolution = StepResolution(
                run_id=run.parent_run_id,
                key=run.parent_step_key,
                status="completed" if status == "completed" else "failed",
                output=output,
                error=None if status == "completed" else {**(error or {}), "run_id": run.id},
            )
        follow_up = []
        if status == "failed" and on_failure and run.kind == "handler":
            follow_up.append(failure_run(run, error or {}, now))
        finished = self.rt.store.finish_run(
            run.id,
            self.rt.owner,
            status,
            now,
            output=output,
            error=error,
            resolution=resolution,
            new_runs=follow_up,
        )
        if finished and (resolution or follow_up):
            self.rt.wake()


def failure_run(run: Run, error: dict[str, Any], now: float) -> Run:
    """The `on_failure` run that follows a failed run, with the error and the original event."""
    return Run(
        id=new_id("run"),
        function=run.function,
        version=run.version,
        kind="on_failure",
        trigger="on_failure",
        status="queued",
        event=run.event,
        events=run.events,
        failure={"error": error, "run_id": run.id},
        created_at=now,
        updated_at=now,
        wake_at=now,
    )
