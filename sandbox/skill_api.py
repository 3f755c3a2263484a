"""The objects skill code holds: `step`, `ctx`, `http`, `secrets`. Each turns calls into messages.

The memo (finished steps, sent with the activation) is consulted here, so a replay costs no
round trip; only new steps reach the engine. A suspension or abort is sticky: once raised, every
further op raises it again, so skill code that swallows it cannot do more work.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sandbox import protocol as p
from sandbox.errors import (
    Abort,
    NonDeterminismError,
    NonRetriableError,
    RetryAfterError,
    StepError,
    Suspend,
)
from sandbox.guards import Capability
from sandbox.limits import MAX_LOG_CHARS, MAX_LOGS_PER_ACTIVATION, MAX_RESULT_BYTES

MAX_STEP_ID_CHARS = 200


class Step(Capability):
    exposed = frozenset(
        {
            "run",
            "sleep",
            "sleep_until",
            "wait_for_event",
            "invoke",
            "send_event",
            "parallel",
            "now",
            "uuid",
            "ai",
        }
    )

    def __init__(self, host: p.Host, memo: dict[str, dict[str, Any]]) -> None:
        self._host = host
        self._memo = memo
        self._unvisited = {key for key, entry in memo.items() if entry["status"] in ("completed", "failed")}
        self._occurrences: dict[str, int] = {}
        self._in_step = False
        self.current_key: str | None = None  # the step whose body is running
        self._ended: BaseException | None = None

    # state the runner and the other capabilities read ------------------------------------

    @property
    def ended(self) -> BaseException | None:
        return self._ended

    @property
    def replaying(self) -> bool:
        return bool(self._unvisited)

    @property
    def in_step(self) -> bool:
        return self._in_step

    # step ops ------------------------------------------------------------------------------

    def run(self, step_id: str, fn: Callable[..., Any], *args: Any) -> Any:
        key, stored = self._begin(step_id, "run")
        if stored is not None:
            return self._replayed(step_id, stored)
        if self._in_step:
            raise NonRetriableError(
                "steps cannot be nested: call step.run from the handler, not inside a step"
            )
        if not callable(fn):
            raise NonRetriableError(f"step.run({step_id!r}, fn): fn must be a function or lambda")
        self._host.notify({"op": p.OP_STEP_START, "key": key, "id": step_id})
        self._in_step, self.current_key = True, key
        try:
            output = _plain_json(fn(*args))
        except (Suspend, Abort, NonDeterminismError):
            raise
        except Exception as exc:
            return self._failed(step_id, key, exc)
        finally:
            self._in_step, self.current_key = False, None
        reply = self._call(
            {
                "op": p.OP_STEP,
                "key": key,
                "id": step_id,
                "status": "completed",
                "output": output,
                "input": _plain_args(args),
            }
        )
        return reply.get("output", output)

    def sleep(self, step_id: str, duration: Any) -> None:
        self._pending_op(step_id, p.OP_SLEEP, {"duration": duration})

    def sleep_until(self, step_id: str, when: Any) -> None:
        self._pending_op(step_id, p.OP_SLEEP_UNTIL, {"until": when})

    def wait_for_event(self, step_id: str, event: str, timeout: Any = None, if_: str | None = None) -> Any:
        return self._pending_op(step_id, p.OP_WAIT, {"event": event, "timeout": timeout, "if": if_})

    def invoke(self, step_id: str, function: str, data: Any = None, timeout: Any = None) -> Any:
        return self._pending_op(
            step_id, p.OP_INVOKE, {"function": function, "data": data, "timeout": timeout}
        )

    def send_event(self, step_id: str, name: Any, data: Any = None) -> Any:
        batch = name if isinstance(name, list) else [{"name": name, "data": data}]
        return self._pending_op(step_id, p.OP_SEND, {"events": batch})

    def now(self, step_id: str) -> str:
        return self._pending_op(step_id, p.OP_NOW, {})

    def uuid(self, step_id: str) -> str:
        return self._pending_op(step_id, p.OP_UUID, {})

    def ai(self, step_id: str, **request: Any) -> Any:
        return self._pending_op(step_id, p.OP_AI, {"request": request})

    def parallel(self, step_id: str, branches: list[Any]) -> list[Any]:
        """Run each `(sub_id, fn)` as its own checkpointed step `step_id/sub_id`; results in order."""
        if not isinstance(branches, list | tuple):
            raise NonRetriableError("step.parallel takes a list of (sub_id, fn) pairs")
        results = []
        for branch in branches:
            if not (isinstance(branch, list | tuple) and len(branch) == 2):
                raise NonRetriableError("step.parallel takes a list of (sub_id, fn) pairs")
            results.append(self.run(f"{step_id}/{branch[0]}", branch[1]))
        return results

    # helpers -------------------------------------------------------------------------------

    def _begin(self, step_id: str, op: str) -> tuple[str, dict[str, Any] | None]:
        if self._ended is not None:
            raise self._ended
        if not isinstance(step_id, str) or not step_id or len(step_id) > MAX_STEP_ID_CHARS:
            raise NonRetriableError(
                f"a step id must be a non-empty string of at most {MAX_STEP_ID_CHARS} characters"
            )
        count = self._occurrences.get(step_id, 0) + 1
        self._occurrences[step_id] = count
        key = step_id if count == 1 else f"{step_id}#{count}"
        stored = self._memo.get(key)
        if stored is not None and stored["op"] != op:
            self._end(
                NonDeterminismError(
                    f"step {key!r} was a {stored['op']!r} step in this run's history, "
                    f"but the code now calls {op!r}"
                )
            )
        if stored is not None and stored["status"] not in ("completed", "failed"):
            return key, None  # still pending: ask the engine again
        self._unvisited.discard(key)
        return key, stored

    def _replayed(self, step_id: str, stored: dict[str, Any]) -> Any:
        if stored["status"] == "failed":
            error = stored.get("error") or {}
            raise StepError(error.get("message", "step failed"), error.get("type", "Error"), step_id)
        return stored.get("output")

    def _pending_op(self, step_id: str, op: str, fields: dict[str, Any]) -> Any:
        key, stored = self._begin(step_id, op)
        if stored is not None:
            return self._replayed(step_id, stored)
        if self._in_step:
            raise NonRetriableError(f"step.{op} cannot be called inside a step")
        reply = self._call({"op": op, "key": key, "id": step_id, **fields})
        self._memo[key] = {"op": op, "status": "completed", "output": reply.get("output")}
        return reply.get("output")

    def _failed(self, step_id: str, key: str, exc: Exception) -> Any:
        retry_after = exc.retry_after if isinstance(exc, RetryAfterError) else None
        message = {
            "op": p.OP_STEP,
            "key": key,
            "id": step_id,
            "status": "error",
            "error": p.error_dict(exc),
            "retriable": not isinstance(exc, NonRetriableError),
            "retry_after": retry_after,
        }
        self._call(message)  # replies `raise` (StepError) or `retry` (Suspend)
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(self, message: p.Message) -> p.Message:
        reply = self._host.call(message)
        action = reply.get("action")
        if action == "continue":
            return reply
        if action in ("suspend", "retry"):
            self._end(Suspend(action))
        if action == "abort":
            self._end(Abort(reply.get("reason", "aborted")))
        error = reply.get("error") or {}
        if action == "raise":
            raise StepError(
                error.get("message", "step failed"),
                error.get("type", "Error"),
                message.get("id", ""),
            )
        raise NonRetriableError(error.get("message", f"the engine refused {message['op']}"))

    def _end(self, exc: BaseException) -> None:
        self._ended = exc
        raise exc


class Logger(Capability):
    exposed = frozenset({"info", "warning", "error"})

    def __init__(self, host: p.Host, step: Step) -> None:
        self._host = host
        self._step = step
        self._room = MAX_LOGS_PER_ACTIVATION

    def _log(self, level: str, message: Any) -> None:
        if self._step.replaying or self._room <= 0:  # replayed logs were recorded the first time
            return
        self._room -= 1
        text = str(message)[:MAX_LOG_CHARS]
        self._host.notify({"op": p.OP_LOG, "level": level, "message": text, "key": self._step.current_key})

    def info(self, message: Any) -> None:
        self._log("info", message)

    def warning(self, message: Any) -> None:
        self._log("warning", message)

    def error(self, message: Any) -> None:
        self._log("error", message)


class Context(Capability):
    exposed = frozenset(
        {
            "event",
            "events",
            "run_id",
            "attempt",
            "function",
            "version",
            "log",
            "error",
            "failed_run_id",
        }
    )

    def __init__(self, activation: dict[str, Any], logger: Logger) -> None:
        self.event = activation["event"]
        self.events = activation.get("events") or [activation["event"]]
        self.run_id = activation["run_id"]
        self.attempt = activation.get("attempt", 0)
        self.function = activation["function"]
        self.version = activation["version"]
        self.error = activation.get("error")
        self.failed_run_id = activation.get("failed_run_id")
        self.log = logger


class Response(Capability):
    exposed = frozenset({"status_code", "headers", "text", "json", "ok"})

    def __init__(self, data: dict[str, Any]) -> None:
        self.status_code = data["status_code"]
        self.headers = data["headers"]
        self.text = data["text"]
        self.ok = 200 <= self.status_code < 400

    def json(self) -> Any:
        return json.loads(self.text)


class Http(Capability):
    """Outbound HTTP, performed by the engine, only inside a step (so never repeated on replay)."""

    exposed = frozenset({"get", "post", "put", "patch", "delete", "request"})

    def __init__(self, host: p.Host, step: Step) -> None:
        self._host = host
        self._step = step

    def request(
        self,
        method: str,
        url: str,
        json: Any = None,
        headers: Any = None,
        params: Any = None,
        timeout: Any = None,
        data: Any = None,
    ) -> Response:
        if not self._step.in_step:
            raise NonRetriableError(
                "http calls must be made inside step.run, so they are not repeated on replay"
            )
        message = {
            "op": p.OP_HTTP,
            "method": method,
            "url": url,
            "json": json,
            "headers": headers,
            "params": params,
            "timeout": timeout,
            "data": data,
        }
        reply = self._host.call(message)
        if reply.get("action") == "abort":
            raise Abort(reply.get("reason", "aborted"))
        if "response" not in reply:
            error = reply.get("error") or {}
            raise _http_error(error)
        return Response(reply["response"])

    def get(self, url: str, **options: Any) -> Response:
        return self.request("GET", url, **options)

    def post(self, url: str, **options: Any) -> Response:
        return self.request("POST", url, **options)

    def put(self, url: str, **options: Any) -> Response:
        return self.request("PUT", url, **options)

    def patch(self, url: str, **options: Any) -> Response:
        return self.request("PATCH", url, **options)

    def delete(self, url: str, **options: Any) -> Response:
        return self.request("DELETE", url, **options)


class Runs(Capability):
    """Read-only run history (for review loops), answered by the engine, only inside a step
    (so a replay sees the figures the first run saw)."""

    exposed = frozenset({"list", "stats"})

    def __init__(self, host: p.Host, step: Step) -> None:
        self._host = host
        self._step = step

    def list(self, function: Any = None, status: Any = None, since: Any = None, limit: Any = 20) -> Any:
        return self._ask(
            {"query": "list", "function": function, "status": status, "since": since, "limit": limit}
        )

    def stats(self, function: Any = None, since: Any = None) -> Any:
        return self._ask({"query": "stats", "function": function, "since": since})

    def _ask(self, query: dict[str, Any]) -> Any:
        if not self._step.in_step:
            raise NonRetriableError("runs must be read inside step.run, so a replay sees the same figures")
        reply = self._host.call({"op": p.OP_RUNS, **query})
        if reply.get("action") == "abort":
            raise Abort(reply.get("reason", "aborted"))
        if "result" not in reply:
            raise NonRetriableError((reply.get("error") or {}).get("message", "runs query refused"))
        return reply["result"]


def _http_error(error: dict[str, Any]) -> Exception:
    message = error.get("message", "http call failed")
    return (
        NonRetriableError(message) if error.get("type") == "NonRetriableError" else ConnectionError(message)
    )


def _plain_json(value: Any) -> Any:
    """A step's result as JSON will store it (so first run and replay return the same thing)."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise NonRetriableError(
            f"a step must return plain JSON (dict, list, str, number, bool, None): {exc}"
        ) from None
    if len(text) > MAX_RESULT_BYTES:  # characters: a lower bound of the encoded size
        raise NonRetriableError(
            f"a step's result is {len(text)} characters, over the limit of {MAX_RESULT_BYTES}"
        )
    return json.loads(text)


def _plain_args(args: tuple[Any, ...]) -> Any:
    try:
        return json.loads(json.dumps(list(args), allow_nan=False)) if args else None
    except (TypeError, ValueError):
        return [repr(arg)[:200] for arg in args]
