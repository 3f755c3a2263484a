"""Checks on what a worker sends: the shape of each request and of the activation's outcome.

A worker runs hostile code, so nothing it sends is trusted: a malformed message ends the
activation (ProtocolViolation) before it reaches the engine's handlers.
"""

from __future__ import annotations

from typing import Any

from sandbox import protocol as p

CALL_OPS = frozenset(
    {
        p.OP_STEP,
        p.OP_SLEEP,
        p.OP_SLEEP_UNTIL,
        p.OP_WAIT,
        p.OP_INVOKE,
        p.OP_SEND,
        p.OP_NOW,
        p.OP_UUID,
        p.OP_HTTP,
        p.OP_RUNS,
        p.OP_AI,
    }
)
ONE_WAY_OPS = frozenset({p.OP_STEP_START, p.OP_LOG})
UNKEYED_OPS = frozenset({p.OP_HTTP, p.OP_RUNS, p.OP_LOG})
MAX_KEY_CHARS = 240
MAX_ERROR_TYPE_CHARS = 200
MAX_ERROR_MESSAGE_CHARS = 4000


class ProtocolViolation(Exception):
    """A worker sent something the protocol does not allow."""


def check_request(message: Any, *, one_way: bool) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise ProtocolViolation("a request must be an object")
    op = message.get("op")
    if op not in (ONE_WAY_OPS if one_way else CALL_OPS):
        raise ProtocolViolation(f"unknown {'notification' if one_way else 'request'} {op!r}")
    if op not in UNKEYED_OPS:
        _check_text(message.get("key"), "key", MAX_KEY_CHARS)
        if "id" in message:
            _check_text(message.get("id"), "id", MAX_KEY_CHARS)
    if op == p.OP_STEP:
        return _check_step_result(message)
    if op == p.OP_LOG:
        _check_text(message.get("message"), "message", None, allow_empty=True)
        if message.get("key") is not None:  # the step whose body logged it
            _check_text(message.get("key"), "key", MAX_KEY_CHARS)
    return message


def _check_step_result(message: dict[str, Any]) -> dict[str, Any]:
    status = message.get("status")
    if status == "completed":
        return message
    if status != "error":
        raise ProtocolViolation(f"a step result's status must be completed or error, not {status!r}")
    return {
        **message,
        "error": check_error(message.get("error")),
        "retriable": message.get("retriable") is True,
        "retry_after": _retry_after(message.get("retry_after")),
    }


def check_outcome(outcome: Any) -> dict[str, Any]:
    """A worker may only complete or fail; suspensions and aborts are the engine's to declare."""
    if not isinstance(outcome, dict):
        raise ProtocolViolation("an outcome must be an object")
    status = outcome.get("status")
    if status == "completed":
        return {"status": "completed", "output": outcome.get("output")}
    if status == "failed":
        return {
            "status": "failed",
            "error": check_error(outcome.get("error")),
            "retriable": outcome.get("retriable") is True,
            "retry_after": _retry_after(outcome.get("retry_after")),
        }
    raise ProtocolViolation(f"an outcome's status must be completed or failed, not {status!r}")


def check_error(error: Any) -> dict[str, str]:
    if not isinstance(error, dict):
        raise ProtocolViolation("an error must be an object with type and message")
    return {
        "type": str(error.get("type", "Error"))[:MAX_ERROR_TYPE_CHARS],
        "message": str(error.get("message", ""))[:MAX_ERROR_MESSAGE_CHARS],
    }


def _retry_after(value: Any) -> Any:
    if (
        value is None
        or isinstance(value, str)
        or (isinstance(value, int | float) and not isinstance(value, bool))
    ):
        return value
    raise ProtocolViolation("retry_after must be seconds, a duration or an ISO time")


def _check_text(value: Any, name: str, limit: int | None, *, allow_empty: bool = False) -> None:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise ProtocolViolation(f"{name} must be a non-empty string")
    if limit is not None and len(value) > limit:
        raise ProtocolViolation(f"{name} is longer than {limit} characters")
