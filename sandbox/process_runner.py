"""The runner the engine uses: activations run in confined, pre-forked worker processes.

A worker serves one activation, and then, if the activation ended with the worker's own outcome
(completed, or failed in skill code) and the worker has used little of its limits, the next
activations of the same skill version, never another skill's or version's. A worker the engine
ended mid-activation (a suspension, retry or abort it recorded, a lost step, a protocol breach,
a time limit) is never reused.

The engine side relays the worker's requests to the `Host` and enforces what the worker cannot
be trusted to: a wall-clock budget (time spent in host calls does not count), a cap on messages
and their size, the shape of every request and outcome. Whatever the worker does (dies, hangs,
floods, breaks the protocol), the activation ends with a clear error: inside a step body it is a
failed attempt of that step, under the step's retry rules; elsewhere a failure of the handler.
"""

from __future__ import annotations

import base64
import logging
import marshal
import signal
import time
from dataclasses import dataclass
from typing import Any

from sandbox import protocol as p
from sandbox.channel import ChannelClosed, ChannelError
from sandbox.errors import CompileError
from sandbox.inbound import ProtocolViolation, check_outcome, check_request
from sandbox.limits import MAX_CALLS_PER_ACTIVATION, WorkerLimits
from sandbox.policy import compile_skill
from sandbox.pool import WORKER_ENTRY, PoolUnavailable, Worker, WorkerPool
from sandbox.runner import PreparedSkill

log = logging.getLogger(__name__)
# What a host handler raises on a field of the wrong kind, too big a number, too deep a nesting.
MALFORMED = (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError)
COMPILE_SECONDS = 10.0


@dataclass
class _Lost:
    """The worker went away inside step `key`, whose failure the host stored for good."""

    key: str
    error: dict[str, Any]


class ProcessRunner:
    def __init__(self, limits: WorkerLimits | None = None, warm: int = 2, entry: str = WORKER_ENTRY) -> None:
        self.limits = limits or WorkerLimits()
        self.pool = WorkerPool(self.limits, warm=warm, entry=entry)

    def start(self) -> None:
        self.pool.start()

    def close(self) -> None:
        self.pool.close()

    # registration --------------------------------------------------------------------------

    def prepare(self, source: str) -> PreparedSkill:
        """Validate in a worker first (a compiler crash or hang costs a worker, not the engine),
        then compile here the code that workers will run."""
        reply = self._validate(source)
        if "compile_error" in reply:
            error = reply["compile_error"]
            raise CompileError(str(error.get("message")), error.get("line"), error.get("column"))
        compiled = compile_skill(source)
        return PreparedSkill(
            source=source,
            has_on_failure=compiled.has_on_failure,
            warnings=compiled.warnings,
            compiled=base64.b64encode(marshal.dumps(compiled.code)).decode(),
        )

    def _validate(self, source: str) -> dict[str, Any]:
        worker = self.pool.acquire()
        try:
            worker.channel.send({"cmd": "compile", "source": source})
            reply = worker.channel.receive(timeout=COMPILE_SECONDS)
        except TimeoutError:
            raise CompileError(f"compiling took longer than {COMPILE_SECONDS:g} s") from None
        except ChannelClosed:
            raise CompileError(f"compiling failed: {self.describe_death(worker)}") from None
        finally:
            self.pool.release(worker)
        if not isinstance(reply, dict) or not ({"compiled", "compile_error"} & set(reply)):
            raise CompileError("the compiler's worker sent a malformed reply")
        return reply

    # activations ---------------------------------------------------------------------------

    def run(self, skill: PreparedSkill, activation: dict[str, Any], host: p.Host) -> p.Message:
        memo = dict(activation.get("memo") or {})
        while True:
            result = self._activate(skill, {**activation, "memo": memo}, host)
            if not isinstance(result, _Lost):
                return result
            # The step failed for good when its worker died: replay so the handler sees StepError.
            memo[result.key] = {"op": "run", "status": "failed", "output": None, "error": result.error}

    def _activate(self, skill: PreparedSkill, activation: dict[str, Any], host: p.Host) -> p.Message | _Lost:
        key = (activation.get("function"), activation.get("version"), skill.compiled)
        try:
            worker = self._parked_worker(key) or self.pool.acquire()
        except PoolUnavailable as exc:
            return _handler_failed("SandboxUnavailable", str(exc))
        relay = Relay(self, worker, host)
        try:
            result = relay.run({"cmd": "run", "code": skill.compiled, "activation": activation})
        except BaseException:
            self.pool.release(worker)
            raise
        if relay.answered:
            worker.served += 1
            if worker.reusable():
                self.pool.park(worker, key)
                return result
        self.pool.release(worker)
        return result

    def _parked_worker(self, key: tuple[Any, ...]) -> Worker | None:
        """A parked worker of this skill version that is still there to serve: its channel is
        open and holds nothing it sent after its outcome (or while it was parked)."""
        while (worker := self.pool.take_parked(key)) is not None:
            if worker.channel.idle():
                return worker
            self.pool.release(worker)
        return None

    def describe_death(self, worker: Worker) -> str:
        status = self.pool.exit_status(worker.pid)
        if status is not None and status.signal == signal.SIGXCPU:
            return f"CPU time limit of {self.limits.cpu_seconds} s exceeded"
        return f"the worker process {status.describe() if status else 'went away'}"


class Relay:
    """One activation: the worker's messages relayed to the host until an outcome or a loss."""

    def __init__(self, runner: ProcessRunner, worker: Worker, host: p.Host) -> None:
        self.runner = runner
        self.worker = worker
        self.host = host
        self.budget = runner.limits.wall_seconds
        self.calls = 0
        self.step: tuple[str, str] | None = None  # (key, id) of the step body now running
        self.answered = False  # the worker sent its outcome: it is waiting for a next command

    def run(self, command: dict[str, Any]) -> p.Message | _Lost:
        try:
            self.worker.channel.send(command)
        except ChannelClosed:
            return self._lost(self.runner.describe_death(self.worker))
        while True:
            try:
                message = self._receive()
            except TimeoutError:
                return self._lost(f"wall-clock limit of {self.runner.limits.wall_seconds:g} s exceeded")
            except ChannelClosed:
                return self._lost(self.runner.describe_death(self.worker))
            except (ChannelError, ProtocolViolation) as exc:
                return self._lost(f"the worker broke the protocol: {exc}")
            try:
                result = self._handle(message)
            except ProtocolViolation as exc:
                return self._lost(f"the worker broke the protocol: {exc}")
            if result is not None:
                return result

    def _receive(self) -> Any:
        started = time.monotonic()
        message = self.worker.channel.receive(timeout=max(self.budget, 0.001))
        self.budget -= time.monotonic() - started
        self.calls += 1
        if self.calls > MAX_CALLS_PER_ACTIVATION:
            raise ProtocolViolation(f"more than {MAX_CALLS_PER_ACTIVATION} messages in one activation")
        if not isinstance(message, dict) or len(message) != 1:
            raise ProtocolViolation("a message must be an object with one of call, notify, outcome")
        return message

    def _handle(self, message: dict[str, Any]) -> p.Message | None:
        if "outcome" in message:
            outcome = check_outcome(message["outcome"])
            self.answered = True
            return outcome
        if "notify" in message:
            request = check_request(message["notify"], one_way=True)
            if request["op"] == p.OP_STEP_START:
                self.step = (request["key"], request.get("id") or request["key"])
            self._call_host(request, one_way=True)
            return None
        if "call" not in message:
            raise ProtocolViolation("a message must be an object with one of call, notify, outcome")
        request = check_request(message["call"], one_way=False)
        reply = self._call_host(request)
        if request["op"] == p.OP_STEP:
            self.step = None
        action = reply.get("action")
        if action in ("suspend", "retry"):  # recorded by the host; the worker is ended, not told
            return {"status": "suspended"}
        if action == "abort":
            return {"status": "aborted", "reason": str(reply.get("reason", "aborted"))}
        try:
            self.worker.channel.send(reply)
        except ChannelClosed:
            return self._lost(self.runner.describe_death(self.worker))
        return None

    def _call_host(self, request: dict[str, Any], *, one_way: bool = False) -> p.Message:
        # The host's handlers read the fields they need; a field of the wrong kind (or a value
        # that overflows, or nests too deep) from a hostile worker must end this activation as
        # a failure under the run's retry rules, never escape into the engine thread running it
        # (which would leave the run leased and re-activated at every lease expiry).
        try:
            if one_way:
                self.host.notify(request)
                return {}
            return self.host.call(request)
        except Exception as exc:
            if not isinstance(exc, MALFORMED):
                log.exception("the engine failed on a %r request", request.get("op"))
            raise ProtocolViolation(
                f"a malformed {request['op']!r} request ({type(exc).__name__}: {exc})"
            ) from exc

    def _lost(self, reason: str) -> p.Message | _Lost:
        """The worker is gone or misbehaved: fail the step it was in, or else the handler."""
        if self.step is None:
            return _handler_failed("WorkerError", reason)
        key, step_id = self.step
        error = {"type": "WorkerError", "message": reason}
        failure = {
            "op": p.OP_STEP,
            "key": key,
            "id": step_id,
            "status": "error",
            "error": error,
            "retriable": True,
        }
        reply = self.host.call(failure)
        action = reply.get("action")
        if action in ("suspend", "retry"):
            return {"status": "suspended"}
        if action == "raise":
            return _Lost(key, reply.get("error") or error)
        if action == "abort":
            return {"status": "aborted", "reason": str(reply.get("reason", "aborted"))}
        return _handler_failed("WorkerError", reason)


def _handler_failed(error_type: str, message: str) -> p.Message:
    return {
        "status": "failed",
        "error": {"type": error_type, "message": message},
        "retriable": True,
        "retry_after": None,
    }
