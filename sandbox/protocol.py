"""The messages between skill code (the worker side) and the engine (the host side).

Everything skill code does to the world is one of these messages; host objects never cross.
Requests are dicts with an `op`; replies are dicts with an `action`:

- `continue` (with `output`): go on; `retry`/`suspend`: the activation ends (Suspend);
- `raise` (with `error`): raise StepError; `error` (with `error`): raise NonRetriableError for a
  bad call; `abort` (with `reason`): the run was cancelled or lost (Abort).

An activation's outcome is `{"status": "completed", "output": ...}`,
`{"status": "failed", "error": {...}, "retriable": bool, "retry_after": seconds|None}`,
`{"status": "suspended"}` or `{"status": "aborted", "reason": str}`.
"""

from __future__ import annotations

from typing import Any, Protocol

Message = dict[str, Any]

OP_STEP = "step"  # a step.run result or failure
OP_STEP_START = "step_start"  # one-way: a step body is about to run
OP_SLEEP = "sleep"
OP_SLEEP_UNTIL = "sleep_until"
OP_WAIT = "wait_for_event"
OP_INVOKE = "invoke"
OP_SEND = "send_event"
OP_NOW = "now"
OP_UUID = "uuid"
OP_LOG = "log"  # one-way
OP_HTTP = "http"
OP_RUNS = "runs"  # run history, read-only (runs.list, runs.stats)
OP_AI = "ai"


class Host(Protocol):
    """The engine side of one activation."""

    def call(self, message: Message) -> Message:
        """Send a request and wait for the reply."""

    def notify(self, message: Message) -> None:
        """Send a one-way message."""


def error_dict(exc: BaseException) -> dict[str, str]:
    """An exception as it crosses the boundary: type name and message, never the object."""
    name = type(exc).__name__
    return {"type": name, "message": str(exc)[:4000] or name}  # MemoryError() says nothing itself
