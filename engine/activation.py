"""The host side of one activation: answers the skill's step ops and records them durably.

Runs in the thread that drives the runner. Every op that changes state is committed before
the skill is allowed to go on, and only while this engine still holds the run's lease; when
it does not (the run was cancelled or taken over), the skill is told to abort.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from engine import limits, run_history
from engine.durations import iso, parse_duration, parse_instant
from engine.errors import InvalidInput, StepkeeperError, StoreUnavailable
from engine.expressions import compile_expression
from engine.http_effect import HttpFailed, HttpRefused
from engine.ids import new_id
from engine.jsonutil import dumps, encode_limited
from engine.records import Attempt, Event, LogLine, Run, Step, StepCommit
from engine.retry import RetryPolicy
from engine.runtime import Runtime
from engine.skills import check_event_name, check_skill_name
from sandbox import protocol as p

log = logging.getLogger(__name__)

MAX_REPORTED_ELAPSED_SECONDS = 3600.0
ABORT = {"action": "abort", "reason": "the run was cancelled or is no longer held by this engine"}
CONTINUE = {"action": "continue"}


def _bounded_input(value: Any) -> Any:
    """A step's input is kept for the trace only: past the limit, a note of its size replaces it."""
    try:
        size = len(dumps(value).encode())
    except (RecursionError, ValueError):
        return {"truncated": True, "reason": "nested too deeply to record"}
    if size <= limits.MAX_STEP_INPUT_BYTES:
        return value
    return {"truncated": True, "bytes": size, "limit": limits.MAX_STEP_INPUT_BYTES}


def _elapsed(value: Any) -> float:
    """How long a step had run when its start notice was sent (the worker's word: trace only)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return min(float(value), MAX_REPORTED_ELAPSED_SECONDS)
    return 0.0


def refuse(message: str) -> p.Message:
    return {"action": "error", "error": {"type": "NonRetriableError", "message": message}}


class ActivationHost:
    def __init__(
        self, rt: Runtime, run: Run, policy: RetryPolicy, steps: list[Step], failed: dict[str, int]
    ) -> None:
        self.rt = rt
        self.run = run
        self.policy = policy
        self.steps = {step.key: step for step in steps}
        self.failed_attempts = failed
        self.next_seq = max((step.seq for step in steps), default=-1) + 1
        self.started: dict[str, float] = {}
        self.logs_written = 0
        self.lost = False
        self.store_failed = False
        self._handlers = {
            p.OP_STEP: self._step,
            p.OP_SLEEP: self._sleep,
            p.OP_SLEEP_UNTIL: self._sleep,
            p.OP_WAIT: self._wait,
            p.OP_INVOKE: self._invoke,
            p.OP_SEND: self._send,
            p.OP_NOW: self._now,
            p.OP_UUID: self._uuid,
            p.OP_HTTP: self._http,
            p.OP_RUNS: self._runs,
            p.OP_AI: self._ai,
        }

    # Host protocol -------------------------------------------------------------------------

    def notify(self, message: p.Message) -> None:
        if message.get("op") == p.OP_STEP_START:
            self.started[message["key"]] = self.rt.clock.now() - _elapsed(message.get("elapsed"))
        elif message.get("op") == p.OP_LOG:
            self._log(message)

    def call(self, message: p.Message) -> p.Message:
        if self.lost:
            return ABORT
        handler = self._handlers.get(message.get("op", ""))
        if handler is None:
            return refuse(f"unknown op {message.get('op')!r}")
        key = message.get("key")
        if key is not None and key not in self.steps and self.next_seq >= limits.MAX_STEPS_PER_RUN:
            return refuse(f"a run may have at most {limits.MAX_STEPS_PER_RUN} steps")
        keyed_by_secret = self._secret_in("a step id", key)
        if keyed_by_secret:
            return refuse(keyed_by_secret)
        try:
            return handler(message)
        except StoreUnavailable as exc:  # not the skill's fault: end the activation, retry the run
            log.warning("run %s: store unavailable during %s: %s", self.run.id, message.get("op"), exc)
            self.store_failed = True
            self.lost = True
            return ABORT
        except StepkeeperError as exc:
            return refuse(str(exc))

    # ops -----------------------------------------------------------------------------------

    def _step(self, message: p.Message) -> p.Message:
        key = message["key"]
        if message["status"] == "completed":
            try:
                encode_limited(
                    message.get("output"),
                    limits.MAX_STEP_OUTPUT_BYTES,
                    f"the result of step {key!r}",
                )
            except InvalidInput as exc:
                return self._step_failed(
                    message, {"type": "NonRetriableError", "message": str(exc)}, retriable=False
                )
            step = self._new_step(
                message, "completed", output=message.get("output"), input=message.get("input")
            )
            return self._commit(StepCommit(run_id=self.run.id, step=step)) or CONTINUE
        return self._step_failed(message, message["error"], retriable=bool(message.get("retriable")))

    def _step_failed(self, message: p.Message, error: dict[str, Any], *, retriable: bool) -> p.Message:
        key = message["key"]
        error = self.rt.redact(error)
        failures = self.failed_attempts.get(key, 0) + 1
        now = self.rt.clock.now()
        if retriable and self.policy.attempts_left(failures):
            delay = self._retry_delay(message.get("retry_after"), failures, now)
            attempt = Attempt(self.run.id, key, failures, error, self.started.get(key, now), now)
            commit = StepCommit(run_id=self.run.id, failed_attempt=attempt, suspend=("queued", now + delay))
            return self._commit(commit) or {"action": "retry"}
        step = self._new_step(message, "failed", error=error, input=message.get("input"), attempts=failures)
        return self._commit(StepCommit(run_id=self.run.id, step=step)) or {
            "action": "raise",
            "error": error,
        }

    def _retry_delay(self, retry_after: Any, failures: int, now: float) -> float:
        if retry_after is None:
            return self.policy.delay(failures)
        try:
            return parse_duration(retry_after)
        except InvalidInput:
            return max(0.0, parse_instant(retry_after) - now)

    def _sleep(self, message: p.Message) -> p.Message:
        key, now = message["key"], self.rt.clock.now()
        pending = self.steps.get(key)
        if pending is not None and pending.status == "sleeping":
            wake_at = pending.wake_at
        elif message["op"] == p.OP_SLEEP:
            wake_at = now + min(parse_duration(message.get("duration")), limits.MAX_SLEEP_SECONDS)
        else:
            wake_at = parse_instant(message.get("until"))
        if wake_at is None or wake_at <= now:
            step = self._new_step(message, "completed", input={"until": iso(wake_at)})
            return self._commit(StepCommit(run_id=self.run.id, step=step)) or CONTINUE
        step = self._new_step(message, "sleeping", input={"until": iso(wake_at)}, wake_at=wake_at)
        return self._commit(StepCommit(run_id=self.run.id, step=step, suspend=("sleeping", wake_at))) or {
            "action": "suspend"
        }

    def _wait(self, message: p.Message) -> p.Message:
        key = message["key"]
        pending = self.steps.get(key)
        if pending is not None and pending.status == "waiting":
            return self._resuspend(pending)
        event_name = check_event_name(message.get("event"))
        condition = message.get("if")
        self._no_secret("the awaited event's name", event_name)
        self._no_secret("a wait condition", condition)
        if condition is not None:
            compile_expression(condition)
        timeout_at = self._deadline(message.get("timeout"))
        step = self._new_step(
            message,
            "waiting",
            input={"event": event_name, "if": condition, "timeout_at": iso(timeout_at)},
            wait_event=event_name,
            wait_if=condition,
            wake_at=timeout_at,
        )
        return self._commit(StepCommit(run_id=self.run.id, step=step, suspend=("waiting", timeout_at))) or {
            "action": "suspend"
        }

    def _invoke(self, message: p.Message) -> p.Message:
        key = message["key"]
        pending = self.steps.get(key)
        if pending is not None and pending.status == "waiting":
            return self._resuspend(pending)
        function = check_skill_name(message.get("function"))
        skill = self.rt.store.get_skill(function)
        if skill is None:
            return refuse(f"step.invoke: skill {function!r} does not exist")
        data = self.rt.redact(message.get("data") or {})  # stored as the child run's event
        encode_limited(data, limits.MAX_EVENT_DATA_BYTES, "invoke data")
        timeout_at = self._deadline(message.get("timeout"))
        now = self.rt.clock.now()
        child = Run(
            id=new_id("run"),
            function=function,
            version=skill.latest_version,
            trigger="invoke",
            status="queued",
            event={"id": new_id("evt"), "name": "stepkeeper/invoke", "data": data, "ts": now},
            created_at=now,
            updated_at=now,
            wake_at=now,
            parent_run_id=self.run.id,
            parent_step_key=key,
        )
        step = self._new_step(
            message,
            "waiting",
            input={"function": function, "data": data, "timeout_at": iso(timeout_at)},
            wake_at=timeout_at,
            child_run_id=child.id,
        )
        commit = StepCommit(run_id=self.run.id, step=step, new_runs=[child], suspend=("waiting", timeout_at))
        reply = self._commit(commit) or {"action": "suspend"}
        self.rt.wake()
        return reply

    def _send(self, message: p.Message) -> p.Message:
        batch = message.get("events")
        if not isinstance(batch, list) or not 1 <= len(batch) <= limits.MAX_EVENTS_PER_SEND:
            return refuse(f"step.send_event takes 1 to {limits.MAX_EVENTS_PER_SEND} events")
        now = self.rt.clock.now()
        new_events = [self._event(item, now) for item in batch]
        ids = [event.id for event in new_events]
        sent = [{"id": e.id, "name": e.name} for e in new_events]  # the data lives in the events
        step = self._new_step(message, "completed", output=ids, input=sent)
        reply = self._commit(StepCommit(run_id=self.run.id, step=step, new_events=new_events))
        if reply is not None:
            return reply
        self.rt.events_added()
        return {"action": "continue", "output": ids}

    def _event(self, item: Any, now: float) -> Event:
        if not isinstance(item, dict) or set(item) - {"name", "data", "id"}:
            raise InvalidInput("each event must be an object with 'name', optional 'data' and 'id'")
        data = item.get("data") or {}
        if not isinstance(data, dict):
            raise InvalidInput("event data must be an object")
        data = self.rt.redact(data)  # events are stored and shown: a receiver reads `secrets` itself
        encode_limited(data, limits.MAX_EVENT_DATA_BYTES, "event data")
        event_id = str(item.get("id") or new_id("evt"))
        name = check_event_name(item.get("name"))
        self._no_secret("an event's name", name)
        self._no_secret("an event's id", event_id)
        return Event(
            id=event_id,
            name=name,
            data=data,
            ts=now,
            received_at=now,
            source_run_id=self.run.id,
        )

    def _now(self, message: p.Message) -> p.Message:
        return self._memoized_value(message, iso(self.rt.clock.now()))

    def _uuid(self, message: p.Message) -> p.Message:
        return self._memoized_value(message, str(uuid.uuid4()))

    def _memoized_value(self, message: p.Message, value: Any) -> p.Message:
        step = self._new_step(message, "completed", output=value)
        return self._commit(StepCommit(run_id=self.run.id, step=step)) or {
            "action": "continue",
            "output": value,
        }

    def _http(self, message: p.Message) -> p.Message:
        try:
            return {"response": self.rt.http.perform(message)}
        except (HttpRefused, InvalidInput) as exc:
            return {"error": {"type": "NonRetriableError", "message": str(exc)}}
        except HttpFailed as exc:
            return {"error": {"type": exc.kind, "message": f"{exc.kind}: {exc}"}}

    def _runs(self, message: p.Message) -> p.Message:
        try:
            return {"result": run_history.answer(self.rt.store, message, self.rt.clock.now())}
        except InvalidInput as exc:
            return {"error": {"type": "NonRetriableError", "message": str(exc)}}

    def _ai(self, message: p.Message) -> p.Message:
        """An LLM call made here, in the engine; its answer is stored like any step result."""
        key, request = message["key"], message.get("request")
        self.started[key] = self.rt.clock.now()
        outcome = self.rt.ai.perform(request, self.failed_attempts.get(key, 0) + 1)
        if outcome.error is not None:
            failed = {**message, "input": request, "retry_after": outcome.retry_after}
            return self._step_failed(failed, outcome.error, retriable=outcome.retriable)
        step = self._new_step(
            message,
            "completed",
            input=request,
            output=outcome.output,
            meta=outcome.meta,
            input_tokens=outcome.input_tokens,
            output_tokens=outcome.output_tokens,
        )
        return self._commit(StepCommit(run_id=self.run.id, step=step)) or {
            "action": "continue",
            "output": step.output,
        }

    def _log(self, message: p.Message) -> None:
        if self.logs_written >= limits.MAX_LOGS_PER_RUN:
            return
        self.logs_written += 1
        text = self.rt.redact(str(message.get("message", ""))[: limits.MAX_LOG_MESSAGE_CHARS])
        level = message.get("level") if message.get("level") in ("info", "warning", "error") else "info"
        key = self.rt.redact(message.get("key")) if isinstance(message.get("key"), str) else None
        self.rt.store.append_logs([LogLine(self.run.id, self.rt.clock.now(), level, text, step_key=key)])

    # helpers -------------------------------------------------------------------------------

    def _secret_in(self, what: str, text: Any) -> str | None:
        """A refusal when `text`, an id or name stored as it is (a key: no marker can replace
        it), holds a secret's value; the message names the secret, never its value."""
        name = self.rt.redact.secret_in(text)
        if name is None:
            return None
        return (
            f"{what} contains the value of secret {name!r}: secrets are kept out of the store, "
            "so step ids, event names and ids and wait conditions may not hold them"
        )

    def _no_secret(self, what: str, text: Any) -> None:
        refusal = self._secret_in(what, text)
        if refusal:
            raise InvalidInput(refusal)

    def _deadline(self, timeout: Any) -> float | None:
        if timeout is None:
            return None
        return self.rt.clock.now() + min(parse_duration(timeout), limits.MAX_SLEEP_SECONDS)

    def _new_step(self, message: p.Message, status: str, **fields: Any) -> Step:
        key, now = message["key"], self.rt.clock.now()
        existing = self.steps.get(key)
        seq = existing.seq if existing is not None else self.next_seq
        for name in ("output", "input", "error", "meta"):
            if name in fields:
                fields[name] = self.rt.redact(fields[name])
        if "input" in fields:
            fields["input"] = _bounded_input(fields["input"])
        return Step(
            run_id=self.run.id,
            key=key,
            step_id=message.get("id", key),
            op=message["op"] if message["op"] != p.OP_STEP else "run",
            seq=seq,
            status=status,
            created_at=existing.created_at if existing is not None else now,
            started_at=self.started.get(key, now),
            ended_at=now if status in ("completed", "failed") else None,
            attempts=fields.pop("attempts", self.failed_attempts.get(key, 0) + 1),
            **fields,
        )

    def _resuspend(self, pending: Step) -> p.Message:
        status = "sleeping" if pending.op in ("sleep", "sleep_until") else "waiting"
        ok = self.rt.store.suspend_run(
            self.run.id, self.rt.owner, status, pending.wake_at, self.rt.clock.now()
        )
        if not ok:
            self.lost = True
            return ABORT
        return {"action": "suspend"}

    def _commit(self, commit: StepCommit) -> p.Message | None:
        """Commit; None when stored, ABORT when the run is no longer ours."""
        commit.replaces = commit.step is not None and commit.step.key in self.steps
        if not self.rt.store.commit_step(self.rt.owner, commit, self.rt.clock.now()):
            self.lost = True
            return ABORT
        if commit.step is not None:
            self.steps[commit.step.key] = commit.step
            self.next_seq = max(self.next_seq, commit.step.seq + 1)
        self.rt.run_changed(self.run.id)
        return None
