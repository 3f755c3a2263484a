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
from engine.expressions import compile_expression, evaluate, matches
from engine.records import Run, RunGate, SkillVersion, StepResolution

if TYPE_CHECKING:  # the store imports this module
    from engine.runtime import Runtime
    from engine.store import RouteReads

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
        integer_between(item["limit"], 1, MAX_CONCURRENCY_LIMIT, f"{where}.limit")
        if item.get("key") is not None:
            check_expression(item["key"], f"{where}.key")
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
        positive_duration(duration, f"config.timeouts.{name}")


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
            cancelled += rt.store.cancel_runs([run.id], reason, now, parent_resolution(run, reason))
    for run_id in cancelled:
        rt.run_changed(run_id)
    return cancelled


def parent_resolution(run: Run, reason: str | None = None) -> StepResolution | None:
    """What cancelling an invoked run does to its parent: the `invoke` step fails."""
    if not (run.parent_run_id and run.parent_step_key):
        return None
    why = f": {reason}" if reason else ""
    error = {"type": "Cancelled", "message": f"the invoked run {run.id} was cancelled{why}", "run_id": run.id}
    return StepResolution(run.parent_run_id, run.parent_step_key, "failed", error=error)


MAX_CANCEL_ON = 5
MAX_CANCELLED_PER_EVENT = 1000


def check_cancel_on(value: Any) -> list[dict[str, Any]]:
    """`config.cancel_on`: `[{event, if, timeout}]`: an incoming event named `event` (for which
    `if`, over `event` (the run's trigger) and `async` (the incoming event), is true) cancels the
    skill's unfinished runs, including sleeping and waiting ones; with `timeout`, only within
    that long of a run's creation."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_CANCEL_ON:
        raise InvalidInput(f"config.cancel_on must be a list of 1 to {MAX_CANCEL_ON} {{event, if, timeout}}")
    checked = []
    for index, rule in enumerate(value):
        where = f"config.cancel_on[{index}]"
        if not isinstance(rule, dict) or set(rule) - {"event", "if", "timeout"} or "event" not in rule:
            raise InvalidInput(f"{where} must be an object with 'event' and optionally 'if' and 'timeout'")
        if not isinstance(rule["event"], str):
            raise InvalidInput(f"{where}.event must be an event name")
        if rule.get("if") is not None:
            check_expression(rule["if"], f"{where}.if")
        if rule.get("timeout") is not None:
            positive_duration(rule["timeout"], f"{where}.timeout")
        checked.append({k: v for k, v in rule.items() if v is not None})
    return checked


def cancellations(
    reads: RouteReads, payload: dict[str, Any], skills: list[SkillVersion], now: float
) -> list[tuple[str, str]]:
    """The unfinished runs an incoming event cancels under its skills' `cancel_on` rules."""
    found: list[tuple[str, str]] = []
    for skill in skills:
        rules = [r for r in skill.config.get("cancel_on") or [] if r["event"] == payload["name"]]
        if not rules:
            continue
        for run in reads.unfinished_runs(skill.name, MAX_CANCELLED_PER_EVENT):
            for rule in rules:
                recent = rule.get("timeout") is None or now <= run.created_at + parse_duration(
                    rule["timeout"]
                )
                if recent and matches(rule.get("if"), {"event": run.event or {}, "async": payload}):
                    found.append((run.id, f"cancelled by event {payload['name']} ({payload.get('id')})"))
                    break
    return found


MAX_PRIORITY_SECONDS = 600


def check_priority(value: Any) -> None:
    """`config.priority`: `{"run": expr}`, an expression over `event` giving seconds."""
    if not isinstance(value, dict) or set(value) != {"run"}:
        raise InvalidInput('config.priority must be an object {"run": expression}')
    check_expression(value["run"], "config.priority.run")


def priority_seconds(config: dict[str, Any], event: dict[str, Any]) -> float:
    """How many seconds earlier (positive) or later (negative) a new run is queued than its
    creation time, from `config.priority.run`, within ±600 s; 0 if it does not evaluate to a
    number."""
    rule = config.get("priority")
    if not rule:
        return 0.0
    try:
        value = evaluate(rule["run"], {"event": event})
    except Exception:  # a missing field: no priority
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(max(-MAX_PRIORITY_SECONDS, min(MAX_PRIORITY_SECONDS, value)))


IDEMPOTENCY_WINDOW_SECONDS = 24 * 3600
GATED_KEYS = ("idempotency", "rate_limit", "singleton", "throttle", "debounce", "batch_events")
MAX_BATCH_SIZE = 100


def check_gates(config: dict[str, Any]) -> None:
    """`idempotency` (an expression), `rate_limit` and `throttle` {limit, period, key} (throttle
    also `burst`), `debounce` {period, key, timeout}, `batch_events` {max_size, timeout, key},
    `singleton` {key, mode}."""
    if "idempotency" in config:
        check_expression(config["idempotency"], "config.idempotency")
    window = {"limit": (1, MAX_CONCURRENCY_LIMIT)}
    rules = {
        "rate_limit": dict(required={"limit", "period"}, durations={"period"}, integers=window),
        "throttle": dict(
            required={"limit", "period"},
            durations={"period"},
            integers={**window, "burst": (0, MAX_CONCURRENCY_LIMIT)},
        ),
        "debounce": dict(required={"period"}, durations={"period", "timeout"}, integers={}),
        "batch_events": dict(
            required={"max_size", "timeout"},
            durations={"timeout"},
            integers={"max_size": (1, MAX_BATCH_SIZE)},
        ),
    }
    for name, shape in rules.items():
        if name in config:
            _check_fields(config[name], f"config.{name}", **shape)  # type: ignore[arg-type]
    if "singleton" in config:
        rule = config["singleton"]
        if (
            not isinstance(rule, dict)
            or set(rule) - {"key", "mode"}
            or rule.get("mode", "skip") not in ("skip", "cancel")
        ):
            raise InvalidInput(
                "config.singleton must be an object with optional 'key' and 'mode' (skip or cancel)"
            )
        if rule.get("key") is not None:
            check_expression(rule["key"], "config.singleton.key")


def _check_fields(
    rule: Any,
    where: str,
    *,
    required: set[str],
    durations: set[str],
    integers: dict[str, tuple[int, int]],
) -> None:
    """An object with the `required` fields and optionally the others and a `key` expression;
    durations must be positive, integers within their bounds."""
    allowed = required | durations | set(integers) | {"key"}
    if not isinstance(rule, dict) or set(rule) - allowed or not required <= set(rule):
        optional = ", ".join(repr(k) for k in sorted(allowed - required))
        names = ", ".join(repr(k) for k in sorted(required))
        raise InvalidInput(f"{where} must be an object with {names} and optionally {optional}")
    for name in durations & set(rule):
        positive_duration(rule[name], f"{where}.{name}")
    for name, (low, high) in integers.items():
        if name in rule:
            integer_between(rule[name], low, high, f"{where}.{name}")
    if rule.get("key") is not None:
        check_expression(rule["key"], f"{where}.key")


def positive_duration(value: Any, where: str) -> float:
    try:
        seconds = parse_duration(value)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc}") from None
    if seconds <= 0:
        raise InvalidInput(f"{where} must be longer than zero")
    return seconds


def integer_between(value: Any, low: int, high: int, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidInput(f"{where} must be an integer from {low} to {high}")
    return value


def check_expression(expression: Any, where: str) -> None:
    try:
        compile_expression(expression)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc}") from None


def gates_for(run: Run, config: dict[str, Any]) -> list[RunGate]:
    """The gates a new run must pass when it is stored (see `RunGate`)."""
    event = run.event or {}
    gates = []
    if config.get("idempotency"):
        key = key_value(config["idempotency"], event)
        gates.append(RunGate(run.id, "idempotency", key, window=IDEMPOTENCY_WINDOW_SECONDS))
    rule = config.get("rate_limit")
    if rule:
        key = key_value(rule["key"], event) if rule.get("key") else ""
        gates.append(
            RunGate(run.id, "rate_limit", key, window=parse_duration(rule["period"]), limit=rule["limit"])
        )
    rule = config.get("throttle")
    if rule:
        key = key_value(rule["key"], event) if rule.get("key") else ""
        capacity = rule["limit"] + rule.get("burst", 0)
        gates.append(RunGate(run.id, "throttle", key, window=parse_duration(rule["period"]), limit=capacity))
    rule = config.get("debounce")
    if rule:
        key = key_value(rule["key"], event) if rule.get("key") else ""
        timeout = parse_duration(rule["timeout"]) if rule.get("timeout") else None
        gates.append(
            RunGate(run.id, "debounce", key, window=parse_duration(rule["period"]), deadline=timeout)
        )
    rule = config.get("batch_events")
    if rule:
        key = key_value(rule["key"], event) if rule.get("key") else ""
        gates.append(
            RunGate(run.id, "batch", key, window=parse_duration(rule["timeout"]), limit=rule["max_size"])
        )
    rule = config.get("singleton")
    if rule is not None:
        key = key_value(rule["key"], event) if rule.get("key") else ""
        gates.append(RunGate(run.id, "singleton", key, mode=rule.get("mode", "skip")))
    return gates


def is_gated(config: dict[str, Any]) -> bool:
    return any(config.get(name) for name in GATED_KEYS) or "singleton" in config
