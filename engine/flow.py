"""Flow control from a skill's config, as plain logic the store and scheduler call into.

`timeouts` cancel runs that wait or run too long. `concurrency` is a list of up to two
`{limit, key}` constraints. Each gives a run a slot named by the skill, the constraint's
position and the key's value for the run's event; a slot admits at most `limit` runs in status
`running` (sleeping and waiting runs hold none). The store checks the slots when it claims runs,
in the claim's transaction, so the database decides, whatever number of engines claim.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.durations import parse_duration
from engine.errors import InvalidInput
from engine.expressions import compile_expression, evaluate
from engine.records import Run, StepResolution

if TYPE_CHECKING:  # the runtime's store imports this module
    from engine.runtime import Runtime

MAX_CONCURRENCY_CONSTRAINTS = 2
MAX_CONCURRENCY_LIMIT = 10_000
MAX_KEY_CHARS = 200
Slot = tuple[str, int]  # (slot name, capacity)


def check_concurrency(value: Any) -> list[dict[str, Any]]:
    """`config.concurrency`: a list of up to two `{limit, key}`; a bare number means `[{limit}]`."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [{"limit": value}]
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_CONCURRENCY_CONSTRAINTS:
        raise InvalidInput("config.concurrency must be a list of one or two {limit, key} objects")
    checked = []
    for index, item in enumerate(value):
        where = f"config.concurrency[{index}]"
        if not isinstance(item, dict) or set(item) - {"limit", "key"} or "limit" not in item:
            raise InvalidInput(f"{where} must be an object with 'limit' and optionally 'key'")
        limit = item["limit"]
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_CONCURRENCY_LIMIT:
            raise InvalidInput(f"{where}.limit must be an integer from 1 to {MAX_CONCURRENCY_LIMIT}")
        if item.get("key") is not None:
            try:
                compile_expression(item["key"])
            except InvalidInput as exc:
                raise InvalidInput(f"{where}.key: {exc}") from None
        checked.append({k: v for k, v in item.items() if v is not None})
    return checked


def slots_for(run: Run, config: dict[str, Any]) -> list[Slot]:
    """The slots `run` must get before it may run."""
    slots = []
    for index, constraint in enumerate(config.get("concurrency") or []):
        name = f"{run.function}/{index}"
        if constraint.get("key") is not None:
            name += "/" + key_value(constraint["key"], run.event or {})
        slots.append((name, int(constraint["limit"])))
    return slots


def key_value(expression: str, event: dict[str, Any]) -> str:
    """A key expression's value for an event, as slot text; an expression that fails to
    evaluate (a missing field) gives the empty key, shared by all such runs."""
    try:
        value = evaluate(expression, {"event": event})
    except Exception:  # the CEL binding raises its own error types for missing fields
        return ""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:MAX_KEY_CHARS]


SlotsOf = Callable[[Run], list[Slot]]


def check_timeouts(value: Any) -> None:
    """`config.timeouts`: `start` (longest a run may wait in the queue before it first starts)
    and `finish` (longest from its first start to its end), as durations."""
    if not isinstance(value, dict) or not value or set(value) - {"start", "finish"}:
        raise InvalidInput("config.timeouts must be an object with 'start' and/or 'finish' durations")
    for name, duration in value.items():
        try:
            seconds = parse_duration(duration)
        except InvalidInput as exc:
            raise InvalidInput(f"config.timeouts.{name}: {exc}") from None
        if seconds <= 0:
            raise InvalidInput(f"config.timeouts.{name} must be longer than zero")


def cancel_overdue(rt: Runtime, now: float) -> list[str]:
    """Cancel the runs that waited to start, or ran, longer than their skill's `timeouts`
    (the skill's latest version says how long). Returns the ids cancelled."""
    cancelled: list[str] = []
    for version in rt.store.live_skill_versions():
        timeouts = version.config.get("timeouts")
        if not timeouts:
            continue
        start = parse_duration(timeouts["start"]) if "start" in timeouts else None
        finish = parse_duration(timeouts["finish"]) if "finish" in timeouts else None
        overdue = rt.store.overdue_runs(
            version.name,
            None if start is None else now - start,
            None if finish is None else now - finish,
        )
        for run in overdue:
            which = "start" if run.started_at is None else "finish"
            reason = f"timeouts.{which} of {timeouts[which]} exceeded"
            cancelled += rt.store.cancel_runs([run.id], reason, now, _parent_resolution(run, reason))
    for run_id in cancelled:
        rt.run_changed(run_id)
    return cancelled


def _parent_resolution(run: Run, reason: str) -> StepResolution | None:
    if not (run.parent_run_id and run.parent_step_key):
        return None
    error = {
        "type": "Cancelled",
        "message": f"the invoked run {run.id} was cancelled: {reason}",
        "run_id": run.id,
    }
    return StepResolution(run.parent_run_id, run.parent_step_key, "failed", error=error)
